"""Facial-expression class probabilities (or embeddings) per segment: `emo extract` with `face-expression`.

For each sample: `n_frames` frames sampled evenly over the segment (video.py; a still image is one frame,
and a frame shown at several sample times is used once), the largest face of each found and cropped by
faces.py (MTCNN, aligned on the eyes, by default; `detector = "none"` takes the centre square of the
whole image as the face, for datasets of face crops such as FER2013 and CK+), then the expression
classifier(s) of expression.py on every face, averaged over the frames that have one:

* `output = "probs"`: the 7 class probabilities (angry, disgust, fear, happy, sad, surprise, neutral);
* `output = "log-probs"`: their logarithms (from the logits, so never -inf);
* `output = "embedding"`: the classifier's 128-d input.

`model = "ensemble"` runs both classifiers and concatenates their outputs (14 probabilities: mini-Xception's
then facemood's; their mean is the ensemble's own answer). A segment in which no sampled frame has a face
gets zeros and the flag "no_face", as the other face extractors do; `last_face_reports` says, per sample of
the last batch, how many frames had a face (None with `detector = "none"`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from emocli.core.types import Features
from emocli.features.audio.io import sample_segment
from emocli.features.base import Extractor, ExtractorParams, package_versions
from emocli.features.visual.expression import EXPRESSION_CLASSES, EXPRESSION_MODELS
from emocli.features.visual.faces import Crops, FaceReport, centre_square, face_crops
from emocli.features.visual.video import VIDEO_IO_LIBRARIES, read_frames, sample_video_path, video_input_fingerprint

ENSEMBLE = ("mini-xception", "facemood")
# Detected faces are cut at the largest input any classifier takes and resized for each, so that a model's
# numbers do not depend on which others run beside it.
CROP_SIZE = max(spec.size for spec in EXPRESSION_MODELS.values())


class FaceExpressionParams(ExtractorParams):
    model: Literal["mini-xception", "facemood", "ensemble"] = Field(
        "ensemble", description="expression classifier: mini-xception (fer), facemood, or both (outputs concatenated)"
    )
    output: Literal["probs", "log-probs", "embedding"] = Field(
        "probs", description="7 class probabilities per model, their logarithms, or the 128-d embedding"
    )
    n_frames: int = Field(4, ge=1, description="frames sampled evenly over the segment (a still image: one)")
    detector: Literal["mtcnn", "haar", "none"] = Field(
        "mtcnn", description="face detector; none: the whole image is the face (datasets of face crops)"
    )
    align: bool = Field(True, description="rotate each face crop so the eyes are level (mtcnn only)")
    face_margin: float = Field(
        0.0, ge=0, description="added to each side of the detected face box, as a fraction of its size (0: the "
        "tight framing of FER2013, which the classifiers were trained on)"
    )
    device: str = "cpu"


class FaceExpressionExtractor(Extractor):
    name: ClassVar[str] = "face-expression"
    modality: ClassVar[str] = "visual"
    kind = "vector"
    Params: ClassVar[type[FaceExpressionParams]] = FaceExpressionParams
    batch_size: ClassVar[int] = 8
    libraries: ClassVar[tuple[str, ...]] = (
        *VIDEO_IO_LIBRARIES, "torch", "h5py", "opencv-python-headless", "facenet-pytorch"
    )
    execution_params: ClassVar[frozenset[str]] = frozenset({"device"})

    params: FaceExpressionParams

    def __init__(self, params: FaceExpressionParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.last_face_reports: list[FaceReport | None] = []

    @property
    def models(self) -> tuple[str, ...]:
        return ENSEMBLE if self.params.model == "ensemble" else (self.params.model,)

    @property
    def dim(self) -> int:
        if self.params.output == "embedding":
            return sum(EXPRESSION_MODELS[name].embedding_dim for name in self.models)
        return len(EXPRESSION_CLASSES) * len(self.models)

    def feature_names(self) -> list[str] | None:
        if self.params.output == "embedding":
            return None
        prefix = "log_" if self.params.output == "log-probs" else ""
        return [f"{model}:{prefix}{label}" for model in self.models for label in EXPRESSION_CLASSES]

    def versions(self) -> dict[str, str]:
        # The packages the weights come from: only those of the models used.
        projects = [EXPRESSION_MODELS[name].weights.project for name in self.models]
        return package_versions(*self.libraries, *projects)

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "weights_sha256": {name: EXPRESSION_MODELS[name].weights.sha256 for name in self.models}}

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return video_input_fingerprint(sample)

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        from emocli.features.visual.expression import expression_model

        crops = [self._faces(sample) for sample in samples]
        self.last_face_reports = [clip.report for clip in crops]
        faces = [face for clip in crops if not clip.zeros for face in clip.images]
        per_face = [self._outputs(expression_model(name, self.params.device).classify(faces)) for name in self.models]
        values = np.concatenate(per_face, axis=1) if faces else np.zeros((0, self.dim), np.float32)
        features, offset = [], 0
        for clip in crops:
            if clip.zeros:
                features.append(Features(np.zeros(self.dim, np.float32), flags=clip.flags))
                continue
            features.append(Features(values[offset : offset + len(clip.images)].mean(axis=0), flags=clip.flags))
            offset += len(clip.images)
        return features

    def _outputs(self, outputs) -> np.ndarray:
        if self.params.output == "probs":
            return outputs.probabilities
        return outputs.log_probabilities if self.params.output == "log-probs" else outputs.embedding

    def _faces(self, sample: Mapping[str, Any]) -> Crops:
        """The sample's faces as RGB uint8 images (a list or an array), or `zeros` when none was found."""
        p = self.params
        path = sample_video_path(sample)
        start_s, end_s = sample_segment(sample)
        sampled = read_frames(path, start_s=start_s, end_s=end_s, n_frames=p.n_frames)
        # A frame on screen at several sample times (a still image, a short segment) counts once.
        _, first = np.unique(sampled.times, return_index=True)
        frames, times = sampled.frames[first], sampled.times[first]
        if p.detector == "none":
            x, y, w, h = centre_square(frames.shape[1:])
            return Crops(images=frames[:, y : y + h, x : x + w], times=times, report=None)
        return face_crops(
            frames,
            times,
            size=CROP_SIZE,
            margin=p.face_margin,
            fallback="zeros",
            missing="skip",
            detector=p.detector,
            align=p.align,
            device=p.device,
            path=path,
        )
