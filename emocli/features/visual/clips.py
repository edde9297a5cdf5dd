"""Raw face clips for 3D CNNs (CFN-SR's 3D ResNeXt-50): `emo extract clips`.

CFN-SR (Fu et al., arXiv 2111.02172; dataset_prep.py of github.com/skeletonNN/CFN-SR at commit 2443494)
feeds its video network 30 frames at uniformly spaced times over the clip, each cropped to the face and
resized to 224x224, normalised with ImageNet statistics. This extractor stores those frames, not features
of them, so the network is trained end to end on them.

Storage convention. The feature store holds float32 `Features`; a clip is a sequence [T, S*S*3]:
row t is frame t's pixels, flattened in H, W, C order, with integer values 0..255, and `times` are the
frames' presentation times. In float32 that costs T*S*S*3*4 bytes: 4.5 MB per clip at the default
S = 112, 18 MB at CFN-SR's 224 (26 GB for RAVDESS's 1440 clips before Parquet compression, which
integer-valued floats compress well). S is therefore a parameter: 112 suits training on a CPU or a
small GPU; 224 reproduces the paper. `clip_tensor` turns a stored clip back into the network's
normalised [3, T, S, S] input; `clip_frames` gives the uint8 frames [T, S, S, 3] for augmentation
(CFN-SR crops and flips every frame independently while training).

Faces are found by MTCNN and aligned on the eyes by default (faces.py; `detector="haar"` for OpenCV's
cascade, `align=false` for upright crops). Frames where the detector misses take the face of the
nearest frame that has one, so every clip keeps exactly `n_frames` frames as the 3D network needs; a
clip with no face at all gets `face_fallback` ("full_frame": the centre square of the frames; "zeros":
black frames; "error") and, unless it is an error, the flag "no_face" in its Features.

channel_order "bgr" reproduces CFN-SR's quirk: its frames are written as JPEGs and read back with
`cv2.imread` (video_utils.py, ravdess.py), so they reach the network in BGR order but are normalised with
the RGB ImageNet mean/std. Store "bgr" clips and call `clip_tensor` with the default (RGB) statistics to
feed checkpoints trained that way (MSAF's and CFN-SR's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from emocli.core.types import Features
from emocli.features.audio.io import sample_segment
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.visual.faces import FaceDetectorName, FaceFallback, FaceReport, face_crops, full_frames
from emocli.features.visual.frames import IMAGENET_MEAN, IMAGENET_STD
from emocli.features.visual.video import (
    VIDEO_IO_LIBRARIES,
    read_frames,
    sample_video_path,
    video_input_fingerprint,
)


class ClipParams(ExtractorParams):
    n_frames: int = Field(
        30, ge=1, description="frames at uniformly spaced times over the segment (CFN-SR: 30)"
    )
    size: int = Field(
        112, ge=16, description="square frame side in pixels (CFN-SR: 224; 4x the storage of 112)"
    )
    faces: bool = Field(True, description="crop each frame to the largest face")
    detector: FaceDetectorName = Field("mtcnn", description="face detector: mtcnn (landmarks) or haar")
    align: bool = Field(True, description="rotate each face crop so the eyes are level (mtcnn only)")
    face_margin: float = Field(
        0.2, ge=0, description="added to each side of the face box, as a fraction of its size"
    )
    face_fallback: FaceFallback = Field(
        "full_frame", description='a clip with no face: full_frame, zeros (both flagged "no_face") or error'
    )
    channel_order: Literal["rgb", "bgr"] = Field("rgb", description='"bgr" reproduces CFN-SR\'s colour quirk')


class ClipExtractor(Extractor):
    """Face clips [n_frames, size*size*3] (pixel values 0..255) with the frames' times."""

    name: ClassVar[str] = "clips"
    modality: ClassVar[str] = "visual"
    kind = "clip"
    Params: ClassVar[type[ClipParams]] = ClipParams
    libraries: ClassVar[tuple[str, ...]] = (*VIDEO_IO_LIBRARIES, "opencv-python-headless", "torch", "facenet-pytorch")

    params: ClipParams

    def __init__(self, params: ClipParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        # Per sample of the last extract_batch call in this process: the face report, or None when
        # faces=false. Worker processes log the same through the `emocli.features.visual.faces` logger.
        self.last_face_reports: list[FaceReport | None] = []

    @property
    def dim(self) -> int:
        return self.params.size * self.params.size * 3

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return video_input_fingerprint(sample)

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        self.last_face_reports = []
        return [self._extract(sample) for sample in samples]

    def _extract(self, sample: Mapping[str, Any]) -> Features:
        p = self.params
        path = sample_video_path(sample)
        start_s, end_s = sample_segment(sample)
        sampled = read_frames(path, start_s=start_s, end_s=end_s, n_frames=p.n_frames)
        if p.faces:
            crops = face_crops(
                sampled.frames,
                sampled.times,
                size=p.size,
                margin=p.face_margin,
                fallback=p.face_fallback,
                missing="nearest",
                detector=p.detector,
                align=p.align,
                path=path,
            )
            images, report, flags = crops.images, crops.report, crops.flags
        else:
            images, report, flags = full_frames(sampled.frames, p.size), None, ()
        self.last_face_reports.append(report)
        if p.channel_order == "bgr":
            images = images[..., ::-1]
        return Features(images.reshape(len(images), -1), times=sampled.times, flags=flags)


def clip_frames(features: Features | np.ndarray) -> np.ndarray:
    """A stored clip [T, S*S*3] back as uint8 frames [T, S, S, 3] (in the channel order it was stored)."""
    values = np.asarray(features.values if isinstance(features, Features) else features)
    if values.ndim != 2 or values.shape[1] % 3:
        raise ValueError(f"a clip is [T, S*S*3], not {list(values.shape)}")
    size = math.isqrt(values.shape[1] // 3)
    if size * size * 3 != values.shape[1]:
        raise ValueError(f"clip rows of {values.shape[1]} values are not square frames S*S*3")
    return values.reshape(len(values), size, size, 3).astype(np.uint8)


def clip_tensor(
    features: Features | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
):
    """A stored clip as the normalised float32 input [3, T, S, S] of a 3D CNN (a torch.Tensor).

    Pixels are scaled to [0, 1], then standardised per channel with `mean` / `std` in storage order:
    ImageNet's RGB statistics by default, which for "bgr" clips is CFN-SR's behaviour.
    """
    import torch

    frames = torch.from_numpy(clip_frames(features)).permute(3, 0, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    return (frames - mean_t) / std_t
