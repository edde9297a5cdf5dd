"""Per-feature standardisation, fitted on a unit's training rows and stored beside its weights.

Clip-level features span orders of magnitude (openSMILE functionals run from 1e-4 to 1e4; OpenFace
intensities 0..5), and the papers fed theirs pre-normalised (CMU-MOSEI's aligned features) or through a
BatchNorm (CFN-SR's MFCCNet). A z-score per feature dimension, learned from the training rows only, puts
every input on one scale without letting validation or test statistics leak in: each unit (seed x fold)
fits its own, writes it to `normalization.safetensors`, and `emo evaluate` and `emo predict` apply that
file, so what they see is exactly what the model trained on.

Vector features are standardised per dimension over samples; sequence features per dimension over every
frame of the training samples. A dimension that is constant on the training rows is only centred. Raw
clips are left to the collator, which normalises their pixels with ImageNet's statistics.

`normalize = "speaker"` first standardises each speaker's features by that speaker's own statistics
(`standardize_groups`; labels are not read), in training, evaluation and prediction alike (a recording is a
speaker there): what removes a voice's, a microphone's and a studio's offset. Across corpora it is worth
+9 points of unweighted average recall to a linear probe when a speaker brings 20 samples or more
(docs/RESULTS.md); a speaker with fewer than `speaker_min_samples` is not standardised and not predicted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emocli.core.errors import EmoError
from emocli.core.io import regular_file, write_with
from emocli.data.tables import EmotionData

FIT_CHUNK = 256  # samples per partial_fit call: sequence stores need not be concatenated whole


def group_keys(samples) -> np.ndarray:  # (pandas.DataFrame) -> [N] str
    """Whose statistics standardise each sample: its speaker, else its dialogue (a predicted input: a recording)."""
    speakers = samples["speaker"].astype("object")
    return speakers.where(speakers.notna(), samples["dialogue_id"].astype("object")).astype(str).to_numpy()


def standardize_groups(data: EmotionData, keys: np.ndarray, min_size: int = 1) -> tuple[EmotionData, np.ndarray]:
    """Each group's features standardised by the group's own mean and deviation over all its samples' frames
    (an unsupervised adaptation: no label is read), and which samples were: those of groups of at least
    `min_size` samples (the others are left as they are)."""
    adapted = np.zeros(len(keys), dtype=bool)
    features = {}
    for modality, values in data.features.items():
        if data.inputs[modality].kind == "clip":
            features[modality] = values
            continue
        out = [np.asarray(v, dtype=np.float32) for v in values]
        for key in np.unique(keys):
            members = np.flatnonzero(keys == key)
            if len(members) < min_size:
                continue
            frames = np.concatenate([out[i].reshape(-1, out[i].shape[-1]) for i in members])
            mean, scale = frames.mean(axis=0), frames.std(axis=0)
            scale[scale == 0] = 1.0
            for i in members:
                out[i] = (out[i] - mean) / scale
            adapted[members] = True
        features[modality] = out
    return replace(data, features=features), adapted


@dataclass(frozen=True)
class Standardizer:
    """modality -> (mean [D], scale [D]), float32; x' = (x - mean) / scale."""

    stats: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def fit(cls, data: EmotionData, rows: np.ndarray) -> Standardizer:
        from sklearn.preprocessing import StandardScaler

        if not len(rows):
            raise EmoError("cannot fit feature standardisation on an empty training split")
        stats = {}
        for modality, table in data.features.items():
            if data.inputs[modality].kind == "clip":
                continue  # pixels: normalised with ImageNet statistics by the collator, as the 3D CNN expects
            scaler = StandardScaler()
            for start in range(0, len(rows), FIT_CHUNK):
                chunk = [np.asarray(table[r], dtype=np.float64) for r in rows[start : start + FIT_CHUNK]]
                frames = np.concatenate([a.reshape(-1, a.shape[-1]) for a in chunk])
                if len(frames):
                    scaler.partial_fit(frames)
            if not hasattr(scaler, "mean_"):
                raise EmoError(f"cannot fit feature standardisation: no {modality} frames in the training split")
            stats[modality] = (scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32))
        return cls(stats)

    def apply(self, data: EmotionData) -> EmotionData:
        """A copy of `data` with standardised features (the targets and sample table are shared)."""
        clips = {m for m in data.features if data.inputs[m].kind == "clip"}
        missing = set(data.features) - set(self.stats) - clips
        if missing:
            raise EmoError(f"the stored standardisation has no statistics for {sorted(missing)}")
        features = {}
        for modality, table in data.features.items():
            if modality in clips:
                features[modality] = table
                continue
            mean, scale = self.stats[modality]
            features[modality] = [((np.asarray(a, dtype=np.float32) - mean) / scale) for a in table]
        return replace(data, features=features)

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        tensors = {f"{m}.{name}": value for m, (mean, scale) in self.stats.items() for name, value in (("mean", mean), ("scale", scale))}
        write_with(path, lambda temporary: save_file(tensors, str(temporary), metadata={"format": "emo-standardizer-1"}))

    @classmethod
    def load(cls, path: Path) -> Standardizer:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        regular_file(path, missing="missing feature standardisation file of a run trained with normalize = 'standard'")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise EmoError(f"cannot read the feature standardisation ({error})", path=path) from None
        modalities = sorted({key.rsplit(".", 1)[0] for key in tensors})
        try:
            stats = {m: (tensors[f"{m}.mean"], tensors[f"{m}.scale"]) for m in modalities}
        except KeyError as error:
            raise EmoError(f"incomplete feature standardisation: no {error.args[0]!r}", path=path) from None
        for modality, (mean, scale) in stats.items():
            # A damaged or hand-made file must not turn every input into NaN or infinity without a word.
            if mean.ndim != 1 or mean.shape != scale.shape:
                raise EmoError(f"{modality}: mean {list(mean.shape)} and scale {list(scale.shape)} are not one vector "
                               "each of the same length", path=path)  # fmt: skip
            if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
                raise EmoError(f"{modality}: the statistics hold NaN, infinite or non-positive scales", path=path)
        return cls(stats)

