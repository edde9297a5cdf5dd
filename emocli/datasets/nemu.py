"""NEMu (NetEase Cloud Music, HHMPN/MMER/SMILE): songs with comments, lyrics, cover art and audio,
multi-label emotions.

The data is one torch-saved dict, as read by MMER's NEMuDataset: data[split] for split in train / valid /
test holds
    'com'  comment token features, one [T, D] sequence per song (GloVe)
    'lyr'  lyrics token features, one [T, D] sequence per song (GloVe)
    'img'  one vector per song (ResNet features of the cover), [D] or [1, D]
    'aud'  audio frame features, one [T, D] sequence per song (librosa MFCC)
    'tgt'  the multi-hot label vector [C]
Label names are not published: they are read from the file when it carries them (data['labels'],
data['label_names'], data['dict']['tgt'] or data[split]['label_names']), otherwise label_0.. are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from emocli.core.errors import DatasetError
from emocli.core.io import file_fingerprint
from emocli.core.samples import PrecomputedFeatures, SampleSet
from emocli.core.types import Features, LabelMap
from emocli.datasets.base import ALLOW_PICKLE_HELP, AdapterOptions, DatasetAdapter, GatedAccess, Licence
from emocli.datasets.pickled import load_pickled

SPLITS = ("train", "valid", "test")
SUFFIXES = (".pt", ".pth", ".pkl")
# key -> (feature name, modality, kind, model input)
MODALITIES = {
    "com": ("comments", "text", "sequence", "comments"),
    "lyr": ("lyrics", "text", "sequence", "lyrics"),
    "img": ("image", "visual", "vector", "image"),
    "aud": ("audio", "audio", "sequence", "audio"),
}
DESCRIPTIONS = {
    "com": "comment token features (GloVe per SMILE's README); times = token index",
    "lyr": "lyrics token features (GloVe per SMILE's README); times = token index",
    "img": "one cover-image vector per song (ResNet per SMILE's README)",
    "aud": "audio frame features (librosa MFCC per SMILE's README); times = frame index",
}
ID_KEYS = ("id", "ids", "song_id", "song_ids")
SPECIAL_TOKENS = {"<blank>", "<pad>", "<unk>", "<s>", "</s>", "<bos>", "<eos>"}


class NemuOptions(AdapterOptions):
    file: str | None = None
    """The data file, relative to the root (default: the root itself when it is a file, else the one
    .pt/.pth/.pkl file in the root folder)."""
    allow_pickle: bool = Field(False, description=ALLOW_PICKLE_HELP)


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _items(values, n: int, path: Path, where: str) -> list[np.ndarray]:
    if hasattr(values, "detach") or isinstance(values, np.ndarray):
        block = _numpy(values)
        if len(block) != n:
            raise DatasetError(f"{where} has {len(block)} songs but 'tgt' has {n}", path=path)
        return list(np.ascontiguousarray(block, dtype=np.float32))
    items = [np.asarray(_numpy(v), dtype=np.float32) for v in values]
    if len(items) != n:
        raise DatasetError(f"{where} has {len(items)} songs but 'tgt' has {n}", path=path)
    return items


def _label_names(data: dict, n_labels: int, path: Path) -> list[str] | None:
    """Names from the file, when it carries a list (or id->name / name->id mapping) of n_labels names."""
    candidates = [data.get("labels"), data.get("label_names")]
    if isinstance(data.get("dict"), dict):
        candidates.append(data["dict"].get("tgt"))
    for split in SPLITS:
        if isinstance(data.get(split), dict):
            candidates.append(data[split].get("label_names"))
    for candidate in candidates:
        if candidate is None:
            continue
        if isinstance(candidate, dict):
            if all(isinstance(k, str) for k in candidate):
                pairs = sorted((int(v), k) for k, v in candidate.items() if k not in SPECIAL_TOKENS)
            else:
                pairs = sorted((int(k), str(v)) for k, v in candidate.items() if str(v) not in SPECIAL_TOKENS)
            names = [name for _, name in pairs]
        elif isinstance(candidate, (list, tuple)) and all(isinstance(name, str) for name in candidate):
            names = [str(name) for name in candidate if str(name) not in SPECIAL_TOKENS]
        else:
            continue
        if len(names) == n_labels and len(set(names)) == n_labels:
            return names
        raise DatasetError(
            f"the file names {len(names)} labels but 'tgt' vectors have {n_labels} entries", path=path
        )
    return None


def find_file(root: Path, named: str | None) -> Path:
    if named is not None:
        path = Path(named).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DatasetError("NEMu data file does not exist", path=path)
        return path
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetError("NEMu root does not exist", path=root)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise DatasetError(
            f"expected one NEMu data file (.pt/.pth/.pkl) in this folder, found {found}; set the file option",
            path=root,
        )
    return files[0]


class NemuAdapter(DatasetAdapter):
    name = "nemu"
    summary = "NEMu songs (NetEase Cloud Music): comments, lyrics, cover, audio features; multi-label"
    needs_on_disk = (
        "the NEMu torch file, a .pt holding per split (train, valid, test) 'com', 'lyr', 'img', 'aud' and "
        "'tgt' as read by MMER: the root itself, or the only .pt/.pth/.pkl in the root folder"
    )
    Options = NemuOptions
    licence = Licence(
        name="none stated",
        url="https://github.com/MANLP-suda/Data-set",
        meaning="its authors publish no licence: research use; ask them before anything else",
    )
    gated = GatedAccess(
        what="NEMu",
        request_url="https://github.com/MANLP-suda/Data-set",
        how="its authors share it through a Baidu Netdisk link with an access code, given in that README",
        place="the NEMu .pt file",
    )  # it ships features (comments, lyrics, cover, audio): no extraction defaults

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        path = find_file(root, self.options.file)
        # MMER's NEMuDataset layout: a pickled dict of tensors, arrays and lists, read as plain data only
        # unless the user allows full unpickling (see datasets/pickled.py).
        data = load_pickled(path, "NEMu file", allow_pickle=self.options.allow_pickle)
        if not isinstance(data, dict):
            raise DatasetError(
                f"expected a dict with train/valid/test, got a {type(data).__name__}", path=path
            )
        missing = [s for s in SPLITS if s not in data]
        if missing:
            raise DatasetError(f"missing split(s) {', '.join(missing)}", path=path)

        rows = []
        values: dict[str, dict] = {key: {} for key in MODALITIES}
        dims: dict[str, int] = {}
        n_labels = None
        steps: dict[int, np.ndarray] = {}
        targets = []
        for split in SPLITS:
            part = data[split]
            absent = [k for k in (*MODALITIES, "tgt") if not (isinstance(part, dict) and k in part)]
            if absent:
                raise DatasetError(f"data[{split!r}] lacks {', '.join(absent)}", path=path)
            target = [np.asarray(_numpy(t)).reshape(-1) for t in part["tgt"]]
            n = len(target)
            ids = next((part[k] for k in ID_KEYS if k in part), None)
            ids = [str(i) for i in ids] if ids is not None else [f"{split}/{i}" for i in range(n)]
            if len(ids) != n:
                raise DatasetError(f"data[{split!r}] has {len(ids)} ids but {n} targets", path=path)
            arrays = {key: _items(part[key], n, path, f"data[{split!r}][{key!r}]") for key in MODALITIES}
            for i in range(n):
                where = f"data[{split!r}] song {i}"
                vector = target[i]
                if n_labels is None:
                    n_labels = len(vector)
                if len(vector) != n_labels or not np.isin(vector, (0, 1)).all():
                    raise DatasetError(
                        f"{where}: 'tgt' should be a multi-hot 0/1 vector of {n_labels} labels, "
                        f"got {vector.tolist()}",
                        path=path,
                    )
                targets.append(vector.astype(bool))
                rows.append({"sample_id": ids[i], "split": split})
                for key, (_, _, kind, _) in MODALITIES.items():
                    array = arrays[key][i]
                    if kind == "vector":
                        if array.size != array.shape[-1]:
                            raise DatasetError(
                                f"{where}: '{key}' should be one vector, got {array.shape}", path=path
                            )
                        array = array.reshape(-1)
                        features = Features(array)
                    else:
                        if array.ndim != 2:
                            raise DatasetError(
                                f"{where}: '{key}' should be a [steps, dim] sequence, got {array.shape}",
                                path=path,
                            )
                        features = Features(
                            array, steps.setdefault(len(array), np.arange(len(array), dtype=float))
                        )
                    if dims.setdefault(key, array.shape[-1]) != array.shape[-1]:
                        raise DatasetError(
                            f"{where}: '{key}' has dim {array.shape[-1]}, others {dims[key]}", path=path
                        )
                    values[key][ids[i]] = features
        if not rows:
            raise DatasetError("the file holds no songs", path=path)

        notes = []
        names = _label_names(data, n_labels, path)
        if names is None:
            names = [f"label_{i}" for i in range(n_labels)]
            notes.append(
                f"the file carries no label names: the {n_labels} labels are called "
                f"label_0..label_{n_labels - 1} in 'tgt' order (NEMu's names are not published)"
            )
        for row, vector in zip(rows, targets):
            row["labels"] = [names[j] for j in np.flatnonzero(vector)]
        source_of = {"file": str(path), "fingerprint": file_fingerprint(path)}
        precomputed = [
            PrecomputedFeatures(
                name=feature,
                modality=modality,
                kind=kind,
                dim=dims[key],
                values=values[key],
                source={**source_of, "description": DESCRIPTIONS[key], "key": key},
                input_name=input_name,
            )
            for key, (feature, modality, kind, input_name) in MODALITIES.items()
        ]
        return SampleSet(
            dataset=self.name,
            root=root,
            table=pd.DataFrame(rows),
            labels=LabelMap(names=tuple(names), task="multi_label"),
            protocols={"split": "the file's train/valid/test (15125 / 1891 / 1891 in HHMPN's release)"},
            options=self.options.model_dump(mode="json"),
            precomputed=precomputed,
            notes=notes,
        )
