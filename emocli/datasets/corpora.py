"""Several emotion corpora read as one dataset, in emo's shared emotions: what models are trained and tested
across corpora on (leave-one-corpus-out, `emo cross-corpus`), and what the shipped model's heads learn from.

Each corpus is read by its own adapter from its own folder: `$EMO_<NAME>_ROOT` where it is set, else
`<home>/<name>`, where home is `--root` or the data home (`$EMO_DATA`, else the per-user data folder), so
`emo extract --dataset corpora` finds what `emo extract --dataset NAME` finds. A public corpus that is missing
is downloaded first, as its own adapter would (unless --no-download).

One row per sample of every corpus, with:
- `sample_id` and `speaker` prefixed by the corpus (`emodb/03a01Fa`, `emodb/speaker_03`);
- `label` mapped onto emo's shared emotions by the corpus's `shared_labels` (RAVDESS's calm is neutral);
  samples of classes without a counterpart (EmoDB's boredom) are left out, and a note counts them;
- `corpus`, and `fold` = the corpus's position in `corpora`: `--folds all` holds out one corpus at a time;
- `corpus_fold`: the corpus's own speaker fold (within-corpus protocols), `split`: its own speaker-independent
  train/test split (a corpus's valid speakers train here; training carves validation speakers itself);
- `evaluate_only`: the corpus is only ever tested on (`--option evaluate_only=casia`): all its samples are
  in the test split, and `emo cross-corpus` never trains on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError, DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import AUGMENTATIONS, SHARED_EMOTIONS, LabelMap
from emocli.datasets.base import AdapterOptions, DatasetAdapter, DefaultExtractor

# The modality each corpus kind is read for; a corpus belongs to the kind its default extraction reads.
KIND_MODALITY = {"speech": "audio", "faces": "visual"}
KIND_COLUMN = {"speech": "audio_path", "faces": "video_path"}


class CorporaOptions(AdapterOptions):
    corpora: str = ""
    """Comma-separated corpora (each a dataset name, e.g. ravdess,emodb); empty: every corpus of `kind` with
    shared emotions whose folder is there."""
    kind: Literal["speech", "faces"] = "speech"
    """speech: corpora of recorded speech (audio); faces: corpora of face images or videos (visual)."""
    evaluate_only: str = ""
    """Comma-separated corpora that are only ever tested on (a licence that allows no training): their samples
    are all in the test split and `emo cross-corpus` never trains on them."""
    members: dict[str, dict[str, Any]] = {}
    """Options of member corpora: --option members.fer2013.train_part=PublicTest."""
    augment: int = Field(0, ge=0, le=len(AUGMENTATIONS))
    """Speech: augmented copies of each sample of a corpus's training speakers (features/audio/augment.py: noise,
    reverberation, gain, speed, a telephone line), each a transform drawn for the sample; training material only."""


def member_names(kind: str) -> list[str]:
    """The dataset adapters with shared emotions whose default extraction reads `kind`'s modality."""
    from emocli.datasets import ADAPTERS, adapter_class

    names = []
    for name in ADAPTERS:
        if name == CorporaAdapter.name:
            continue
        adapter = adapter_class(name)
        # A corpus whose default extraction reads the media of this kind (RAVDESS's visual default is a table of
        # action units beside the clips, not its faces).
        if adapter.shared_labels and any(d.modality == KIND_MODALITY[kind] and d.requires is None
                                         for d in adapter.default_extraction):
            names.append(name)
    return names


def augmented_copies(table, copies: int):  # (pandas.DataFrame, int) -> pandas.DataFrame
    """`copies` augmented rows per training-speaker sample: `<sample_id>#<augmentation>`, the augmentations drawn
    without repeats for each sample (seeded by its sample_id), in an `augmentation` column."""
    import hashlib

    import pandas as pd

    originals = table[table["split"] == "train"]
    rows = []
    for row in originals.to_dict("records"):
        seed = int.from_bytes(hashlib.sha256(row["sample_id"].encode()).digest()[:8], "little")
        for kind in np.random.default_rng(seed).permutation(AUGMENTATIONS)[:copies]:
            rows.append({**row, "sample_id": f"{row['sample_id']}#{kind}", "augmentation": str(kind)})
    return pd.DataFrame(rows, columns=[*table.columns, "augmentation"])


def member_folder(name: str, home: Path) -> Path:
    """A member corpus's folder: $EMO_<NAME>_ROOT where it is set, else `home`/<name>."""
    from emocli.datasets.home import root_variable

    variable = os.environ.get(root_variable(name))
    return Path(os.path.abspath(Path(variable).expanduser())) if variable else home / name


class CorporaAdapter(DatasetAdapter):
    name = "corpora"
    summary = "several corpora as one, in emo's shared emotions: leave-one-corpus-out folds (emo cross-corpus)"
    needs_on_disk = (
        "the member corpora, each in its own folder as its adapter reads it: $EMO_<NAME>_ROOT, else <root>/<name> "
        "(--root: a folder of dataset folders; default: the data home)"
    )
    Options = CorporaOptions
    licence = None  # each member's own: `emo datasets NAME`
    default_extraction = (
        DefaultExtractor(modality="audio", preset="whisper-base"),
        DefaultExtractor(modality="visual", preset="face-expression-crops"),
    )

    @classmethod
    def prepare(cls, location, *, download: bool = True, progress: bool = True, console=None, options=None) -> Path:
        """The home folder the members are read from, after fetching the public members that are missing."""
        from emocli.datasets import adapter_class
        from emocli.datasets.download import ensure_available
        from emocli.datasets.home import DatasetLocation, data_home

        home = location.path if location.origin == "--root" else data_home()[0]
        chosen = CorporaOptions.parse(cls.name, options or {})
        for name in cls._names(chosen, home, require_present=False):
            folder = member_folder(name, home)
            member = adapter_class(name)
            if folder.exists() or not member.remote_files:
                continue
            ensure_available(member, DatasetLocation(name, folder, "corpora", ()), download=download,
                             progress=progress, console=console)
        return home

    @classmethod
    def _names(cls, options: CorporaOptions, home: Path, require_present: bool) -> list[str]:
        known = member_names(options.kind)
        if not options.corpora.strip():
            return [n for n in known if member_folder(n, home).exists()] if require_present else known
        names = [n.strip() for n in options.corpora.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"dataset corpora: {', '.join(unknown)} is not a {options.kind} corpus with shared "
                              f"emotions (those are: {', '.join(known)})")
        if len(set(names)) != len(names):
            raise ConfigError(f"dataset corpora: a corpus is named twice in {options.corpora!r}")
        return names

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        from emocli.datasets import adapter_class

        root = Path(root)
        names = self._names(self.options, root, require_present=True)
        evaluate_only = {n.strip() for n in self.options.evaluate_only.split(",") if n.strip()}
        if evaluate_only - set(names):
            raise ConfigError(f"dataset corpora: evaluate_only names {', '.join(sorted(evaluate_only - set(names)))}, "
                              f"not among the corpora read ({', '.join(names)})")
        if len(names) < 2:
            found = ", ".join(names) or "none"
            raise DatasetError(f"cross-corpus sets need two corpora or more; found {found} (looked in {root} and "
                               f"$EMO_<NAME>_ROOT for {', '.join(member_names(self.options.kind))})", path=root)
        tables, notes, protocols = [], [], {}
        column = KIND_COLUMN[self.options.kind]
        for index, name in enumerate(names):
            adapter = adapter_class(name)
            folder = member_folder(name, root)
            if not folder.exists():
                raise DatasetError(f"corpus {name} is not here: {folder} (set ${'EMO_' + name.upper() + '_ROOT'} or "
                                   f"put it under {root})", path=folder)
            unknown = set(self.options.members) - set(names)
            if unknown:
                raise ConfigError(f"dataset corpora: members.{sorted(unknown)[0]}: not one of the corpora ({', '.join(names)})")
            members = adapter(**self.options.members.get(name, {})).load(folder)
            table = members.table[members.table[column].notna()].copy()
            mapped = table["label"].map(adapter.shared_labels)
            dropped = table.loc[mapped.isna(), "label"].value_counts()
            if len(dropped):
                notes.append(f"{name}: left out {', '.join(f'{n} {label}' for label, n in dropped.items())} "
                             "(no shared emotion)")
            table = table[mapped.notna()].assign(label=mapped[mapped.notna()])
            if table["speaker"].isna().any():  # FER2013 names no one: each image is its own group
                notes.append(f"{name}: {int(table['speaker'].isna().sum())} samples name no speaker; each is its own "
                             "group in speaker-independent splits (a person may recur among them)")
                table["speaker"] = table["speaker"].fillna(table["sample_id"])
            table["speaker"] = name + "/" + table["speaker"].astype(str)
            table["sample_id"] = name + "/" + table["sample_id"].astype(str)
            if table["dialogue_id"].notna().any():
                table["dialogue_id"] = name + "/" + table["dialogue_id"].astype(str)
            table["corpus_fold"] = table["fold"]
            table["fold"] = index
            table["split"] = table["split"].where(table["split"] == "test", "train")
            table["corpus"] = name
            table["evaluate_only"] = name in evaluate_only
            if name in evaluate_only:
                table["split"] = "test"
            if "language" not in table:
                table["language"] = pd.NA
            canonical = [c for c in table.columns if c in members.table.columns[:13]]
            tables.append(table[canonical + ["corpus", "corpus_fold", "language", "evaluate_only"]])
            notes += [f"{name}: {note}" for note in members.notes]
            protocols[name] = f"fold {index}; {len(table)} samples, {table['speaker'].nunique()} speakers"
        table = pd.concat(tables, ignore_index=True)
        if self.options.augment:
            table = pd.concat([table, augmented_copies(table, self.options.augment)], ignore_index=True)
        table["corpus"] = table["corpus"].astype("string")
        table["language"] = table["language"].astype("string")
        table["corpus_fold"] = table["corpus_fold"].astype("Int64")
        table["evaluate_only"] = table["evaluate_only"].astype(bool)
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=SHARED_EMOTIONS, task="single_label"),
            protocols={"fold": "leave one corpus out: fold i holds out corpus i", **protocols,
                       "split": "each corpus's own speaker-independent test speakers"},
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
