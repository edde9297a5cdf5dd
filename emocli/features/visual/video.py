"""Decoding video with PyAV (FFmpeg) and sampling frames over an utterance.

Every visual extractor reads frames through `read_frames`, so training and `emo predict` see the same
pixels. Timestamps come from each decoded frame's presentation time (`frame.time`), never from an
assumed frame rate, so variable-frame-rate files (phone recordings, screen captures) are sampled at the
right instants. The frame sampled for a time t is the one on screen at t: the last frame whose
presentation time is <= t.

Decoding is kept cheap: a segment that starts late is reached by seeking to the keyframe before it,
decoding stops right after the last frame needed, only the sampled frames are converted to RGB, and
FFmpeg decodes with its own frame/slice threads (thread_type "AUTO").

A still image (JPEG, PNG, BMP, WebP, TIFF, ...: any file FFmpeg opens with one of its image demuxers) is a
one-frame video: it gives that one frame, at time 0, however many frames are asked for, so face datasets
of photos (FER2013, CK+) go through the same reader as videos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emocli.core.errors import ExtractionError
from emocli.features.audio.io import segment_fingerprint  # segments read alike for every modality

# Distributions whose code shapes the decoded frames.
VIDEO_IO_LIBRARIES = ("av",)


@dataclass
class SampledFrames:
    """Frames sampled from a video: RGB uint8 [T, H, W, 3] and their presentation times [T] in seconds.

    Times are positions in the file (not relative to the segment start), so they line up with the
    audio of the same file. `segment` is the (start, end) interval the frames were sampled over.
    """

    frames: np.ndarray
    times: np.ndarray
    segment: tuple[float, float]


def sample_times(
    start_s: float, end_s: float, n_frames: int | None = None, fps: float | None = None
) -> np.ndarray:
    """Target times over [start_s, end_s): `n_frames` uniformly spaced, or one every 1/`fps` seconds.

    Both rules take the centre of each of the equal-length bins, so no target sits on the segment end
    (where there may be no frame) and N frames of a 3 s clip land at 0.05, 0.15, ... 2.95 s for N = 30.
    With both given, `fps` is used unless it would give more than `n_frames` times; then the count
    caps it and `n_frames` uniform times are returned (VisExtNet's "up to 20 frames").
    """
    length = end_s - start_s
    if length <= 0:
        raise ValueError(f"empty segment [{start_s}, {end_s})")
    if fps is not None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        count = max(1, math.floor(length * fps))
        if n_frames is None or count <= n_frames:
            return start_s + (np.arange(count) + 0.5) / fps
    if n_frames is None or n_frames < 1:
        raise ValueError("give n_frames >= 1 or fps")
    return start_s + (np.arange(n_frames) + 0.5) * (length / n_frames)


def read_frames(
    path: str | os.PathLike,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    n_frames: int | None = None,
    fps: float | None = None,
) -> SampledFrames:
    """Decode the frames on screen at the sample times of [start_s, end_s) (None: file start / end).

    Returns one frame per target time (a frame repeats when targets are closer than the frame
    interval); a still image returns its one frame at time 0 (segment (0, 0)) whatever `n_frames` and
    `fps` ask. Raises ExtractionError naming the file for a missing or unreadable file, a file with
    no video stream, a broken stream, or a segment outside the video (for a still, one starting after 0).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise ExtractionError("video file not found" if not path.exists() else "not a file", path=path)
    start = 0.0 if start_s is None else float(start_s)
    if start < 0:
        raise ExtractionError(f"segment start {start} s is negative", path=path)
    if end_s is not None and end_s <= start:
        raise ExtractionError(f"segment [{start}, {end_s}) s is empty", path=path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ExtractionError("has no video stream", path=path)
            stream = container.streams.video[0]
            if _is_still_image(container):
                return _read_still(path, container, stream, start)
            stream.thread_type = "AUTO"
            end = _segment_end(path, container, stream, start, end_s)
            targets = sample_times(start, end, n_frames=n_frames, fps=fps)
            if start > 0 and stream.time_base is not None:
                # Lands on the keyframe at or before `start`; decoding runs forward from there.
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            frames, times = _decode_at(container.decode(stream), targets)
    except ExtractionError:
        raise
    except (av.FFmpegError, ValueError, OverflowError) as error:
        raise ExtractionError(f"cannot decode video: {error}", path=path) from error

    if not frames:
        raise ExtractionError("video stream has no decodable frames with timestamps", path=path)
    if times[-1] < start:
        raise ExtractionError(
            f"segment [{start:.3f}, {end:.3f}) s starts after the last decodable frame ({times[-1]:.3f} s)",
            path=path,
        )
    return SampledFrames(
        frames=np.stack(frames), times=np.asarray(times, dtype=np.float64), segment=(start, end)
    )


def _is_still_image(container) -> bool:
    """Whether FFmpeg opened the file with an image demuxer ("image2", "jpeg_pipe", "png_pipe", ...)."""
    return any(name == "image2" or name.endswith("_pipe") for name in container.format.name.split(","))


def _read_still(path: Path, container, stream, start: float) -> SampledFrames:
    """The one frame of a still image, shown at time 0."""
    if start > 0:
        raise ExtractionError(f"segment start {start:.3f} s is past the end of a still image (one frame at 0 s)",
                              path=path)
    for frame in container.decode(stream):
        return SampledFrames(frames=frame.to_ndarray(format="rgb24")[None], times=np.zeros(1), segment=(0.0, 0.0))
    raise ExtractionError("image has no decodable frame", path=path)


def _segment_end(path: Path, container, stream, start: float, end_s: float | None) -> float:
    """The segment end clipped to the video's duration (a row's end may overshoot by a few ms)."""
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base) + _start_offset(stream)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # container durations are in AV_TIME_BASE (µs)
    if duration is None:
        if end_s is None:
            raise ExtractionError("video duration unknown; give the segment end (end_s)", path=path)
        return float(end_s)
    if start >= duration:
        raise ExtractionError(
            f"segment start {start:.3f} s is past the end of the video ({duration:.3f} s)", path=path
        )
    return duration if end_s is None else min(float(end_s), duration)


def _start_offset(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


@dataclass
class _Shown:
    """A decoded frame and its RGB array, converted once however many targets it serves."""

    time: float
    frame: Any  # av.VideoFrame
    _rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self.frame.to_ndarray(format="rgb24")
        return self._rgb


def _decode_at(decoded, targets: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Walk decoded frames in presentation order, taking the frame on screen at each target time."""
    frames: list[np.ndarray] = []
    times: list[float] = []
    shown: _Shown | None = None  # the latest frame at or before the next target
    index = 0
    for frame in decoded:
        if frame.time is None:  # no timestamp: it cannot be placed in time, so it cannot be sampled
            continue
        incoming = _Shown(frame.time, frame)
        while index < len(targets) and targets[index] < incoming.time:
            # A target before the first decoded frame takes that frame (streams may start after 0).
            source = shown if shown is not None else incoming
            frames.append(source.rgb())
            times.append(source.time)
            index += 1
        if index == len(targets):
            break
        shown = incoming
    # Targets after the last frame (the stream ended early): the last frame stays on screen.
    if shown is not None:
        for _ in range(index, len(targets)):
            frames.append(shown.rgb())
            times.append(shown.time)
    return frames, times


def sample_video_path(sample: Mapping[str, Any]) -> Path:
    """The video file of a sample-table row."""
    import pandas as pd

    path = sample.get("video_path")
    if pd.isna(path):
        raise ExtractionError("sample has no video_path", row=sample.get("sample_id"))
    return Path(path)


def video_input_fingerprint(sample: Mapping[str, Any]) -> str:
    return segment_fingerprint(sample_video_path(sample), sample, "video")
