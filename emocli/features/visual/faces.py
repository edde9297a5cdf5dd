"""Face detection and square face crops, offline, with OpenCV's Haar frontal-face cascade.

The cascade (Viola-Jones, `haarcascade_frontalface_default.xml`, shipped inside the opencv-python
wheels) needs no download and no GPU, and finds the large frontal faces of acted emotion corpora
(RAVDESS, IEMOCAP, MELD close-ups) well enough; it misses profiles and small faces, which is why every
caller decides what a frame or clip without a face becomes. OpenCV 5 moved the cascade classifier out
of its main modules: with opencv-python-headless >= 5 face cropping raises ConfigError and asks for
OpenCV 4, or faces=false.

Per frame the largest face is kept (the speaker is usually the biggest face in an utterance clip). Its
box is grown by a margin, made square around its centre, shifted to lie inside the frame and resized to
the model's input size. Frames without a face are either skipped (feature extractors that pool over
frames, as VisExtNet does) or take the box of the nearest frame with a face (fixed-length clips for 3D
CNNs). A clip with no face at all gets the configured fallback, and a `FaceReport` records which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from emocli.core.errors import ConfigError, ExtractionError

logger = logging.getLogger(__name__)

FaceFallback = Literal["full_frame", "zeros", "error"]
"""What a clip with no face in any sampled frame becomes: the whole frames, zeros (VisExtNet), or an error."""

MissingFace = Literal["skip", "nearest"]
"""What a frame without a face becomes when others have one: dropped, or cropped with the nearest face box."""

Box = tuple[int, int, int, int]  # x, y, width, height in pixels

# Detection runs on frames scaled down to this height at most: faces in utterance clips are large, and
# the cascade's cost grows with the pixel count.
_DETECT_HEIGHT = 240
# The smallest face searched for, as a fraction of the frame height: smaller faces are background people.
_MIN_FACE_FRACTION = 0.1


class FaceDetector:
    """The largest frontal face of an RGB frame, by OpenCV's Haar cascade."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5):
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise ConfigError(
                f"face cropping needs OpenCV's Haar cascade classifier, which OpenCV {cv2.__version__} does "
                "not have (OpenCV 5 moved it out of the main modules): install opencv-python-headless<5, "
                "or set faces=false"
            )
        cascade_file = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(cascade_file))
        if self._cascade.empty():
            raise ConfigError(f"cannot load the Haar face cascade from {cascade_file}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def detect(self, frame: np.ndarray) -> Box | None:
        """Box of the largest face in an RGB uint8 frame [H, W, 3], or None when there is none."""
        import cv2

        height = frame.shape[0]
        scale = min(1.0, _DETECT_HEIGHT / height)
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)  # the cascade was trained on contrast-normalised windows
        smallest = max(24, round(_MIN_FACE_FRACTION * grey.shape[0]))  # 24 px: the cascade's window
        faces = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(smallest, smallest)
        )
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda box: box[2] * box[3])
        return round(x / scale), round(y / scale), round(w / scale), round(h / scale)


@cache
def face_detector() -> FaceDetector:
    """One detector per process: the cascade is loaded once and never pickled to worker processes."""
    return FaceDetector()


def square_box(box: Box, margin: float, frame_shape: tuple[int, ...]) -> Box:
    """A square around `box`'s centre, `margin` x its size larger on each side, shifted into the frame.

    The side is capped at the frame's shorter side, so the crop never needs padding.
    """
    x, y, w, h = box
    frame_h, frame_w = frame_shape[:2]
    side = min(round(max(w, h) * (1 + 2 * margin)), frame_h, frame_w)
    centre_x, centre_y = x + w / 2, y + h / 2
    left = int(np.clip(round(centre_x - side / 2), 0, frame_w - side))
    top = int(np.clip(round(centre_y - side / 2), 0, frame_h - side))
    return left, top, side, side


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

    `report` is None for whole frames taken without face detection.
    """

    images: np.ndarray
    times: np.ndarray
    report: FaceReport | None
    zeros: bool = False


def face_crops(
    frames: np.ndarray,
    times: np.ndarray,
    *,
    size: int,
    margin: float,
    fallback: FaceFallback,
    missing: MissingFace,
    path: str | Path | None = None,
) -> Crops:
    """Crop the largest face of each frame [T, H, W, 3] to [size, size, 3].

    Frames without a face are dropped (`missing="skip"`) or cropped with the box of the nearest frame
    that has one (`missing="nearest"`, keeping T). With no face in any frame, `fallback` decides:
    "full_frame" crops the centre square of every frame, "zeros" returns the frames blank with
    `zeros=True` (the caller emits its zero output), "error" raises ExtractionError naming `path`.
    """
    detector = face_detector()
    boxes = [detector.detect(frame) for frame in frames]
    found = [index for index, box in enumerate(boxes) if box is not None]
    if not found:
        if fallback == "error":
            raise ExtractionError(f"no face found in any of the {len(frames)} sampled frames", path=path)
        logger.info("%s: no face in %d sampled frames; fallback %s", path, len(frames), fallback)
        report = FaceReport(sampled=len(frames), with_face=0, fallback=fallback)
        if fallback == "zeros":
            blank = np.zeros((len(frames), size, size, 3), dtype=np.uint8)
            return Crops(images=blank, times=times, report=report, zeros=True)
        return Crops(images=full_frames(frames, size), times=times, report=report)

    if missing == "skip":
        keep = found
        chosen = [boxes[index] for index in found]
    else:
        keep = list(range(len(frames)))
        chosen = [boxes[min(found, key=lambda f: abs(times[f] - times[index]))] for index in keep]
    images = np.stack(
        [
            crop_resize(frames[i], square_box(box, margin, frames[i].shape), size)
            for i, box in zip(keep, chosen, strict=True)
        ]
    )
    report = FaceReport(sampled=len(frames), with_face=len(found), fallback=None)
    return Crops(images=images, times=times[keep], report=report)


def full_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """The centre square of each frame [T, H, W, 3], resized to [T, size, size, 3]."""
    box = centre_square(frames.shape[1:])
    return np.stack([crop_resize(frame, box, size) for frame in frames])
