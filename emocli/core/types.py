"""Types every stage shares: tasks, modalities, feature kinds, the per-sample feature container, label maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Task = Literal["single_label", "multi_label"]
Modality = Literal["text", "audio", "visual"]
# vector [D]; sequence [T, D]; clip: raw video frames stored as a sequence [T, S*S*3] (features/visual/clips.py)
FeatureKind = Literal["vector", "sequence", "clip"]
SPLITS = ("train", "valid", "test")


# emo's shared emotion vocabulary: the classes a model trained across corpora (and the shipped model) speaks.
# Each speech or face corpus maps its own classes onto these (`DatasetAdapter.shared_labels`); classes with no
# counterpart in another corpus (RAVDESS's calm is neutral, EmoDB's boredom has none) are mapped or left out.
SHARED_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


# Audio augmentations a sample-table row may name in its `augmentation` column (features/audio/augment.py).
AUGMENTATIONS: tuple[str, ...] = ("noise", "reverb", "gain", "speed", "telephone")


@dataclass(frozen=True)
class LabelMap:
    """Ordered class names; a class's index is its position."""

    names: tuple[str, ...]
    task: Task = "single_label"

    def index(self, name: str) -> int:
        return self.names.index(name)

    def to_json(self) -> dict:
        return {"names": list(self.names), "task": self.task}

    @classmethod
    def from_json(cls, data: dict) -> LabelMap:
        return cls(names=tuple(data["names"]), task=data["task"])


@dataclass
class Features:
    """Output for one sample: a vector [D], or a sequence [T, D] with frame times [T] in seconds.

    `flags` name what the extractor could not find or had to change, so that a prediction can say so
    instead of guessing silently: "no_face" (no face in any frame), "no_speech" (silence), "cropped"
    (only part of the segment was read, e.g. Whisper's 30-s window).
    """

    values: np.ndarray
    times: np.ndarray | None = None
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.times is not None:
            self.times = np.asarray(self.times, dtype=np.float64)
            if self.values.ndim != 2 or len(self.times) != len(self.values):
                raise ValueError("a sequence needs values [T, D] and one time per frame")


@dataclass(frozen=True)
class Cue:
    """Timed text: a subtitle cue, a transcript line or a transcribed segment; [start_s, end_s) seconds
    (None: not timed)."""

    start_s: float | None
    end_s: float | None
    text: str
    # What the recogniser doubted about a transcribed segment (predictions show them as "text:<flag>"):
    # "repetitive" (Whisper looped on words even after its fallbacks), "unsure" (low decoding confidence).
    flags: tuple[str, ...] = ()


def real_utterances(values, utterance_mask):
    """[B, L, ...] per-utterance outputs of a conversation model -> [N, ...] of its real utterances, in the
    order of the batch's targets; anything else (utterance models' [B, ...]) is returned as it is.
    Works on any tensor type, so this module needs no torch."""
    if utterance_mask is None or values.dim() < 3 or tuple(values.shape[:2]) != tuple(utterance_mask.shape):
        return values
    return values[utterance_mask]
