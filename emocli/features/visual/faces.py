"""Face detection, alignment and square face crops, offline.

Two detectors, chosen by the extractors' `detector` parameter:

* "mtcnn" (the default): MTCNN (Zhang et al. 2016, https://arxiv.org/abs/1604.02878), the network
  and weights of facenet-pytorch 2.6.0 (https://github.com/timesler/facenet-pytorch; the weights ship
  in its wheel and are checked by sha256, see `weights.py`). It gives each face a box, a score and five
  landmarks: the two eyes, the nose tip and the two mouth corners. It runs on torch, batched over a
  clip's frames, and finds faces turned or tilted further than the Haar cascade does.
* "haar": OpenCV's Haar frontal-face cascade (Viola-Jones, shipped inside the opencv-python wheels).
  No landmarks, so its crops are not rotated. OpenCV 5 moved the cascade out of its main modules:
  with opencv-python-headless >= 5 it raises ConfigError and asks for OpenCV 4.

Per frame the largest face is kept (the speaker is usually the biggest face in an utterance clip).
Alignment rotates the frame about the face's centre so that the line between the eyes is level, then
cuts a square `margin` x the box size larger on each side and resizes it to the model's input size,
all in one affine warp (pixels outside the frame are black). Frames without a face are either skipped
(feature extractors that pool over frames, as VisExtNet does) or take the face of the nearest frame
that has one (fixed-length clips for 3D CNNs). A clip with no face in any sampled frame gets the
configured fallback, and its crops carry the flag "no_face" so that its features say so; a
`FaceReport` records what happened.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.visual.weights import MTCNN_WEIGHTS, load_state_dict

logger = logging.getLogger(__name__)

FaceDetectorName = Literal["mtcnn", "haar"]

FaceFallback = Literal["full_frame", "zeros", "error"]
"""What a clip with no face in any sampled frame becomes: the whole frames, zeros (VisExtNet), or an error.
Either way but "error", its features carry the flag NO_FACE."""

MissingFace = Literal["skip", "nearest"]
"""What a frame without a face becomes when others have one: dropped, or cropped with the nearest face."""

NO_FACE = "no_face"
"""The `Features.flags` entry of a clip in which no sampled frame has a face."""

Box = tuple[int, int, int, int]  # x, y, width, height in pixels

# Detection runs on frames scaled down to this height at most: faces in utterance clips are large, and
# the detectors' cost grows with the pixel count. MTCNN gets more pixels for its landmarks' precision
# (per frame on one core, 360 p costs about what 240 p does: its later stages dominate).
_DETECT_HEIGHT = {"haar": 240, "mtcnn": 360}
# The smallest face searched for, as a fraction of the frame height: smaller faces are background people.
_MIN_FACE_FRACTION = 0.1
# MTCNN's three stage thresholds and image-pyramid step: facenet-pytorch's and the paper's defaults.
_MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)
_MTCNN_PYRAMID_STEP = 0.709
# Frames per MTCNN pass: bounds the memory of its image pyramid.
_MTCNN_FRAMES_PER_PASS = 16


@dataclass(frozen=True, eq=False)
class Face:
    """A face in a frame: its box (x, y, width, height, in pixels) and, from MTCNN, five landmarks.

    `landmarks` [5, 2] are (x, y) of the eye on the image's left, the eye on its right, the nose tip,
    and the mouth corners (left, right); `score` is the detector's confidence, where it gives one.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    score: float | None = None

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def eye_angle(self) -> float | None:
        """Angle in degrees of the line from the left to the right eye (0: level; positive: the right
        eye is lower in the image), or None without landmarks."""
        if self.landmarks is None:
            return None
        (left_x, left_y), (right_x, right_y) = self.landmarks[0], self.landmarks[1]
        return math.degrees(math.atan2(right_y - left_y, right_x - left_x))


class HaarDetector:
    """The largest frontal face of an RGB frame, by OpenCV's Haar cascade (boxes only)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5):
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise ConfigError(
                f"the Haar face detector needs OpenCV's cascade classifier, which OpenCV {cv2.__version__} "
                "does not have (OpenCV 5 moved it out of the main modules): install "
                "opencv-python-headless<5, or use detector=mtcnn"
            )
        cascade_file = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(cascade_file))
        if self._cascade.empty():
            raise ConfigError(f"cannot load the Haar face cascade from {cascade_file}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def detect(self, frame: np.ndarray) -> Face | None:
        """The largest face in an RGB uint8 frame [H, W, 3], or None when there is none."""
        import cv2

        scale = min(1.0, _DETECT_HEIGHT["haar"] / frame.shape[0])
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)  # the cascade was trained on contrast-normalised windows
        smallest = max(24, round(_MIN_FACE_FRACTION * grey.shape[0]))  # 24 px: the cascade's window
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(smallest, smallest)
        )
        if len(found) == 0:
            return None
        x, y, w, h = max(found, key=lambda box: box[2] * box[3])
        return Face(box=(x / scale, y / scale, w / scale, h / scale))

    def detect_batch(self, frames: np.ndarray) -> list[Face | None]:
        return [self.detect(frame) for frame in frames]


class MtcnnDetector:
    """The largest face of each RGB frame with its five landmarks, by MTCNN (facenet-pytorch's weights)."""

    def __init__(self, device: str = "cpu"):
        import torch

        try:
            from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
        except ModuleNotFoundError:
            raise ConfigError(
                "the MTCNN face detector needs facenet-pytorch (pip install --no-deps facenet-pytorch==2.6.0; "
                "`make install` does it), or use detector=haar"
            ) from None
        self.device = torch.device(device)
        nets = []
        for name, network in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
            net = network(pretrained=False)  # facenet-pytorch would read the file unchecked; we verify it
            net.load_state_dict(load_state_dict(MTCNN_WEIGHTS[name]))
            nets.append(net.eval().to(self.device))
        self._nets = tuple(nets)

    def detect(self, frame: np.ndarray) -> Face | None:
        return self.detect_batch(frame[None])[0]

    def detect_batch(self, frames: np.ndarray) -> list[Face | None]:
        """The largest face of each RGB uint8 frame [T, H, W, 3] (frames of one size), or None."""
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        scale = min(1.0, _DETECT_HEIGHT["mtcnn"] / frames.shape[1])
        small = _resize_frames(frames, scale)
        smallest = max(20, round(_MIN_FACE_FRACTION * small.shape[1]))  # 20 px: facenet-pytorch's default
        if min(small.shape[1:3]) < smallest:  # no face of the smallest size fits (and MTCNN would fail)
            return [None] * len(frames)
        faces: list[Face | None] = []
        with torch.inference_mode():
            for start in range(0, len(small), _MTCNN_FRAMES_PER_PASS):
                boxes, points = detect_face(
                    small[start : start + _MTCNN_FRAMES_PER_PASS],
                    smallest,
                    *self._nets,
                    list(_MTCNN_THRESHOLDS),
                    _MTCNN_PYRAMID_STEP,
                    self.device,
                )
                faces.extend(_largest_face(b, p, scale) for b, p in zip(boxes, points, strict=True))
        return faces


def _resize_frames(frames: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale >= 1.0:
        return frames
    return np.stack([cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames])


def _largest_face(boxes, points, scale: float) -> Face | None:
    """The largest of one frame's MTCNN detections ([K, 5] x0, y0, x1, y1, score; [K, 5, 2]), in
    full-frame pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if not len(boxes):
        return None
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    k = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    x0, y0, x1, y1, score = boxes[k]
    return Face(
        box=(x0 / scale, y0 / scale, (x1 - x0) / scale, (y1 - y0) / scale),
        landmarks=points[k] / scale,
        score=float(score),
    )


def face_detector(name: FaceDetectorName = "mtcnn", device: str = "cpu") -> HaarDetector | MtcnnDetector:
    """One detector per process and device: weights are loaded once and never pickled to workers."""
    return _detector(name, device)


@functools.cache
def _detector(name: str, device: str) -> HaarDetector | MtcnnDetector:
    if name == "mtcnn":
        return MtcnnDetector(device)
    if name == "haar":
        return HaarDetector()
    raise ConfigError(f"unknown face detector {name!r}; choose mtcnn or haar")


def crop_transform(face: Face, size: int, margin: float, align: bool) -> np.ndarray:
    """The affine map [2, 3] from frame pixels to the [size, size] crop of `face`.

    The crop is a square on the box's centre, `margin` x the box's larger side added on each side;
    with `align` (and landmarks) it is rotated about that centre so that the eyes are level.
    """
    import cv2

    centre = face.centre
    side = max(face.box[2], face.box[3]) * (1 + 2 * margin)
    angle = (face.eye_angle() or 0.0) if align else 0.0
    # Positive angles turn the image counter-clockwise on screen, lifting the lower right eye.
    matrix = cv2.getRotationMatrix2D(centre, angle, size / side)
    matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
    return matrix


def aligned_crop(frame: np.ndarray, face: Face, size: int, margin: float, align: bool = True) -> np.ndarray:
    """The face's square crop [size, size, 3] of an RGB frame (see `crop_transform`)."""
    import cv2

    matrix = crop_transform(face, size, margin, align)
    if np.hypot(*matrix[0, :2]) < 1.0:
        frame, matrix = _shrink_around(frame, matrix, size)
    return cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _shrink_around(frame: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of `frame` the crop covers, shrunk to the crop's scale by area averaging, and the map
    from it to the crop. warpAffine interpolates bilinearly, which aliases when it shrinks by more than
    about 2x (a 600-px face in a 1080p frame becomes 224 px)."""
    import cv2

    frame_h, frame_w = frame.shape[:2]
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    in_frame = corners @ inverse[:, :2].T + inverse[:, 2]
    left, top = (max(0, math.floor(v) - 1) for v in in_frame.min(axis=0))
    right = min(frame_w, math.ceil(in_frame[:, 0].max()) + 1)
    bottom = min(frame_h, math.ceil(in_frame[:, 1].max()) + 1)
    if right - left < 2 or bottom - top < 2:  # the crop lies (almost) outside the frame: nothing to shrink
        return frame, matrix
    scale = float(np.hypot(*matrix[0, :2]))
    width, height = max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))
    region = cv2.resize(frame[top:bottom, left:right], (width, height), interpolation=cv2.INTER_AREA)
    sx, sy = width / (right - left), height / (bottom - top)
    # A pixel u of the shrunk region is the frame's x = (u + 0.5) / sx - 0.5 + left (resize keeps centres).
    to_frame = np.array([[1 / sx, 0, left + 0.5 / sx - 0.5], [0, 1 / sy, top + 0.5 / sy - 0.5], [0, 0, 1]])
    return region, matrix @ to_frame


def centre_square(frame_shape: tuple[int, ...]) -> Box:
    """The largest centred square of a frame: the whole-frame input, as ImageNet's centre crop takes it."""
    frame_h, frame_w = frame_shape[:2]
    side = min(frame_h, frame_w)
    return (frame_w - side) // 2, (frame_h - side) // 2, side, side


def crop_resize(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The `box` region of `frame`, resized to [size, size, 3] (area averaging when shrinking)."""
    import cv2

    x, y, w, h = box
    region = frame[y : y + h, x : x + w]
    interpolation = cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interpolation)


@dataclass(frozen=True)
class FaceReport:
    """What face cropping did to one clip: frames sampled, frames with a face, fallback taken (or None)."""

    sampled: int
    with_face: int
    fallback: str | None

    def to_json(self) -> dict:
        return {"sampled": self.sampled, "with_face": self.with_face, "fallback": self.fallback}


@dataclass
class Crops:
    """Square crops [T, size, size, 3] uint8 with their frame times [T]; `zeros` means "use a zero output".

    `report` is None for whole frames taken without face detection; `flags` go into the clip's Features.
    """

    images: np.ndarray
    times: np.ndarray
    report: FaceReport | None
    zeros: bool = False
    flags: tuple[str, ...] = ()


def face_crops(
    frames: np.ndarray,
    times: np.ndarray,
    *,
    size: int,
    margin: float,
    fallback: FaceFallback,
    missing: MissingFace,
    detector: FaceDetectorName = "mtcnn",
    align: bool = True,
    device: str = "cpu",
    path: str | Path | None = None,
) -> Crops:
    """Crop the largest face of each frame [T, H, W, 3] to [size, size, 3], aligned on the eyes.

    Frames without a face are dropped (`missing="skip"`) or cropped with the face of the nearest frame
    that has one (`missing="nearest"`, keeping T). With no face in any frame, `fallback` decides:
    "full_frame" crops the centre square of every frame, "zeros" returns the frames blank with
    `zeros=True` (the caller emits its zero output), both flagged NO_FACE; "error" raises
    ExtractionError naming `path`.
    """
    faces = face_detector(detector, device).detect_batch(frames)
    found = [index for index, face in enumerate(faces) if face is not None]
    if not found:
        if fallback == "error":
            raise ExtractionError(f"no face found in any of the {len(frames)} sampled frames", path=path)
        logger.info("%s: no face in %d sampled frames; fallback %s", path, len(frames), fallback)
        report = FaceReport(sampled=len(frames), with_face=0, fallback=fallback)
        if fallback == "zeros":
            blank = np.zeros((len(frames), size, size, 3), dtype=np.uint8)
            return Crops(images=blank, times=times, report=report, zeros=True, flags=(NO_FACE,))
        return Crops(images=full_frames(frames, size), times=times, report=report, flags=(NO_FACE,))

    if missing == "skip":
        keep = found
        chosen = [faces[index] for index in found]
    else:
        keep = list(range(len(frames)))
        chosen = [faces[min(found, key=lambda f: abs(times[f] - times[index]))] for index in keep]
    images = np.stack(
        [aligned_crop(frames[i], face, size, margin, align) for i, face in zip(keep, chosen, strict=True)]
    )
    report = FaceReport(sampled=len(frames), with_face=len(found), fallback=None)
    return Crops(images=images, times=times[keep], report=report)


def full_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """The centre square of each frame [T, H, W, 3], resized to [T, size, size, 3]."""
    box = centre_square(frames.shape[1:])
    return np.stack([crop_resize(frame, box, size) for frame in frames])
