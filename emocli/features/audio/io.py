"""Reading audio from any file the toolkit meets: a speech recording, or the audio track of a video.

One loader for every audio extractor and for `emo predict`, so a clip gives the same samples whether it
is extracted for training or predicted on later. libsndfile (soundfile) reads the lossless formats it
knows sample-exactly; everything else (mp4, m4a, mp3, webm, avi, mkv, ...) goes through FFmpeg (PyAV).
Channels are mixed down by averaging, and resampling is done with soxr (the resampler librosa uses by
default), never by FFmpeg, so both paths treat channels and rates identically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emocli.core.errors import ExtractionError
from emocli.core.io import file_fingerprint

# Formats libsndfile decodes itself; the rest are containers FFmpeg demuxes.
SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})

# Distributions whose code shapes the samples `load_audio` returns (decoders and the resampler).
AUDIO_IO_LIBRARIES = ("soundfile", "av", "soxr")


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    start_s: float | None = None,
    end_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode `path` (optionally the segment [start_s, end_s) seconds) to float32 samples (full scale 1).

    Returns (signal, rate): signal is [samples] when `mono` (the mean of all channels), otherwise
    [channels, samples]; rate is `sample_rate` when given (soxr resampling), else the file's own rate.
    An `end_s` past the end of the file is clipped to it. Raises ExtractionError naming the file for
    a missing, empty or undecodable file, a video without audio, and an empty segment.
    """
    path = Path(path)
    if not path.is_file():
        raise ExtractionError("audio file not found" if not path.exists() else "not a file", path=path)
    if path.stat().st_size == 0:
        raise ExtractionError("file is empty", path=path)
    if start_s is not None and start_s < 0:
        raise ExtractionError(f"segment start {start_s} s is negative", path=path)
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ExtractionError(f"segment [{start_s}, {end_s}) s is empty", path=path)

    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            signal, rate = _read_soundfile(path, start_s, end_s)
        except ExtractionError as soundfile_error:
            # A misnamed file (an m4a saved as .wav) or a codec this libsndfile lacks: FFmpeg may read it.
            try:
                signal, rate = _read_pyav(path, start_s, end_s)
            except ExtractionError:
                raise soundfile_error from None
    else:
        signal, rate = _read_pyav(path, start_s, end_s)

    if signal.shape[1] == 0:
        where = "the file" if start_s is None and end_s is None else f"segment [{start_s}, {end_s}) s"
        raise ExtractionError(f"{where} holds no audio samples", path=path)
    if mono:
        signal = signal.mean(axis=0)
    if sample_rate is not None and sample_rate != rate:
        signal = _resample(signal, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(signal, dtype=np.float32), rate


def _segment_frames(rate: int, start_s: float | None, end_s: float | None) -> tuple[int, int | None]:
    """Sample indices of a segment at `rate` (rounded as librosa.load rounds its offset and duration)."""
    start = round(start_s * rate) if start_s is not None else 0
    stop = round(end_s * rate) if end_s is not None else None
    return start, stop


def _read_soundfile(path: Path, start_s: float | None, end_s: float | None) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        with soundfile.SoundFile(path) as audio:
            rate = audio.samplerate
            start, stop = _segment_frames(rate, start_s, end_s)
            start = min(start, audio.frames)
            audio.seek(start)
            frames = -1 if stop is None else max(min(stop, audio.frames) - start, 0)
            data = audio.read(frames, dtype="float32", always_2d=True)  # [samples, channels]
    except soundfile.SoundFileError as error:
        raise ExtractionError(f"cannot decode audio: {error}", path=path) from error
    return data.T, rate


def _read_pyav(path: Path, start_s: float | None, end_s: float | None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any FFmpeg-readable file to float planar [channels, samples].

    Samples are counted from the first decoded frame (as librosa/audioread do), and decoding stops once
    the segment end is reached, so a short segment of a long video does not decode the whole track.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ExtractionError("has no audio stream", path=path)
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            channels = stream.codec_context.channels
            if not rate:
                raise ExtractionError("audio stream declares no sample rate", path=path)
            start, stop = _segment_frames(rate, start_s, end_s)
            # Convert the sample format only: keeping the stream's layout and rate leaves mixdown and
            # resampling to load_audio, identical to the soundfile path.
            resampler = av.AudioResampler(format="fltp")
            chunks: list[np.ndarray] = []
            decoded = 0
            for frame in container.decode(stream):
                for planar in resampler.resample(frame):
                    chunks.append(planar.to_ndarray())
                    decoded += planar.samples
                if stop is not None and decoded >= stop:
                    break
            else:  # the whole track was read: take what the resampler still buffers
                chunks.extend(planar.to_ndarray() for planar in resampler.resample(None))
    except ExtractionError:
        raise
    except (av.FFmpegError, ValueError) as error:
        raise ExtractionError(f"cannot decode audio: {error}", path=path) from error

    signal = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return signal[:, start:stop], rate


def _resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    import soxr

    # soxr wants [samples] or [samples, channels]; multichannel signals here are [channels, samples].
    if signal.ndim == 1:
        return soxr.resample(signal, rate, target)
    return soxr.resample(signal.T, rate, target).T


def sample_audio_path(sample: Mapping[str, Any]) -> Path:
    """The audio file of a sample-table row: audio_path, else the video whose own track is the audio."""
    for column in ("audio_path", "video_path"):
        path = sample.get(column)
        if not _missing(path):
            return Path(path)
    raise ExtractionError("sample has no audio_path or video_path", row=sample.get("sample_id"))


def sample_segment(sample: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(start_s, end_s) of a sample-table row; None where the row says NA (the whole file)."""
    start_s, end_s = sample.get("start_s"), sample.get("end_s")
    return (None if _missing(start_s) else float(start_s), None if _missing(end_s) else float(end_s))


def segment_fingerprint(path: Path, sample: Mapping[str, Any], medium: str) -> str:
    """Identity of the media a sample reads: the file's size and mtime plus the segment bounds."""
    try:
        identity = file_fingerprint(path)
    except OSError as error:
        raise ExtractionError(f"cannot read {medium} file: {error.strerror}", path=path) from error
    start_s, end_s = sample_segment(sample)
    return f"{identity}:{start_s}-{end_s}"


def audio_input_fingerprint(sample: Mapping[str, Any]) -> str:
    return segment_fingerprint(sample_audio_path(sample), sample, "audio")


def _missing(value: Any) -> bool:
    """True for None, pandas.NA and NaN: the ways a table cell says 'no value'."""
    import pandas as pd

    return bool(pd.isna(value))


