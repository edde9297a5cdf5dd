"""Reading audio from any file the toolkit meets: a speech recording, or the audio track of a video.

One loader for every audio extractor and for `emo predict`, so a clip gives the same samples whether it
is extracted for training or predicted on later. libsndfile (soundfile) reads the lossless formats it
knows sample-exactly; everything else (mp4, m4a, mp3, webm, avi, mkv, ...) goes through FFmpeg (PyAV).
Channels are mixed down by averaging, and resampling is done with soxr (the resampler librosa uses by
default), never by FFmpeg, so both paths treat channels and rates identically.

A file that holds less audio than its header promises (a copy cut short, a download interrupted) is an
error, never a shorter clip: libsndfile and FFmpeg both quietly read a truncated WAV or AIFF as complete,
so the frame count its header declares is read here and compared with what the file holds.
"""

from __future__ import annotations

import os
import struct
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

# Sample rates outside these bounds are a damaged or crafted header, not a recording: resampling 2**31 Hz
# "audio" to 16 kHz gives no samples at all, and 768 kHz is the highest rate audio interfaces record.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
# Decoders of compressed audio add or drop a few frames of priming and padding around what the container
# declares; more missing than this (seconds, or this fraction of the stream) means the file is cut short.
DURATION_SLACK_S = 0.1
DURATION_SLACK_FRACTION = 0.02


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
    a missing, empty or undecodable file, a file holding less audio than its header declares
    ("truncated"), a sample rate outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], a video without audio,
    and an empty segment.
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
        except _Undecodable as soundfile_error:
            # A misnamed file (an m4a saved as .wav) or a codec this libsndfile lacks: FFmpeg may read it.
            try:
                signal, rate = _read_pyav(path, start_s, end_s)
            except ExtractionError:
                raise ExtractionError(soundfile_error.problem, path=path) from None
    else:
        signal, rate = _read_pyav(path, start_s, end_s)

    where = "the file" if start_s is None and end_s is None else f"segment [{start_s}, {end_s}) s"
    if signal.shape[1] == 0:
        raise ExtractionError(f"{where} holds no audio samples", path=path)
    if mono:
        signal = signal.mean(axis=0)
    if sample_rate is not None and sample_rate != rate:
        signal = _resample(signal, rate, sample_rate)
        rate = sample_rate
        if signal.shape[-1] == 0:
            raise ExtractionError(f"{where} is shorter than one sample at {sample_rate} Hz", path=path)
    return np.ascontiguousarray(signal, dtype=np.float32), rate


def _check_rate(rate: int, path: Path) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ExtractionError(
            f"implausible sample rate {rate} Hz in the header (expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)",
            path=path,
        )


class _Undecodable(ExtractionError):
    """libsndfile cannot read the file at all (a misnamed container, a codec it lacks): FFmpeg may."""


def _truncated(path: Path, declared: int, holds: int) -> ExtractionError:
    return ExtractionError(f"truncated: header says {declared} frames, file holds {holds}", path=path)


def declared_frames(path: str | os.PathLike) -> int | None:
    """The frame count a WAV (RIFF) or AIFF header promises, None for other formats or when it is unknown.

    Our own reading of the two headers, because libsndfile (and FFmpeg) trim the count to what the file
    holds without saying so: a WAV whose data chunk declares 3.3 s but holds 1.65 s reads as a complete
    1.65-s clip. Chunk layouts: RIFF/WAVE (little-endian, 'fmt ' block align, 'data' byte size) and
    FORM/AIFF (big-endian, 'COMM' numSampleFrames). Streamed WAVs that leave the size unset (0 or
    0xFFFFFFFF) and RF64 files declare nothing usable.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12:
                return None
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                return _riff_frames(handle)
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_frames(handle)
    except OSError:
        return None
    return None


def _chunks(handle, endian: str):
    """(chunk id, size, offset of its data) of each chunk after a 12-byte RIFF/FORM header."""
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return
        chunk, size = header[:4], struct.unpack(f"{endian}I", header[4:])[0]
        offset = handle.tell()
        yield chunk, size, offset
        handle.seek(offset + size + (size & 1))  # chunks are padded to an even length


def _riff_frames(handle) -> int | None:
    block_align = None
    for chunk, size, offset in _chunks(handle, "<"):
        if chunk == b"fmt " and size >= 16:
            handle.seek(offset + 12)
            block_align = struct.unpack("<H", handle.read(2))[0]
        elif chunk == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
    return None


def _aiff_frames(handle) -> int | None:
    for chunk, size, offset in _chunks(handle, ">"):
        if chunk == b"COMM" and size >= 6:
            handle.seek(offset + 2)
            return struct.unpack(">I", handle.read(4))[0]
    return None


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
            _check_rate(rate, path)
            declared = declared_frames(path)
            holds = audio.frames
            start, stop = _segment_frames(rate, start_s, end_s)
            if declared is not None and declared > holds and (stop is None or stop > holds):
                raise _truncated(path, declared, holds)  # the audio asked for is not all there
            start = min(start, holds)
            audio.seek(start)
            frames = max((holds if stop is None else min(stop, holds)) - start, 0)
            data = audio.read(frames, dtype="float32", always_2d=True)  # [samples, channels]
    except soundfile.SoundFileError as error:
        raise _Undecodable(f"cannot decode audio: {error}", path=path) from error
    if len(data) < frames:  # the decoder stopped before the frames the file declares
        raise _truncated(path, holds, start + len(data))
    return data.T, rate


def _read_pyav(path: Path, start_s: float | None, end_s: float | None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any FFmpeg-readable file to float planar [channels, samples].

    Samples are counted from the first decoded frame (as librosa/audioread do), and decoding stops once
    the segment end is reached, so a short segment of a long video does not decode the whole track.
    """
    import av

    declared = decoded = None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ExtractionError("has no audio stream", path=path)
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            channels = stream.codec_context.channels
            if not rate:
                raise ExtractionError("audio stream declares no sample rate", path=path)
            _check_rate(rate, path)
            declared = _stream_frames(stream, rate)
            start, stop = _segment_frames(rate, start_s, end_s)
            # Convert the sample format only: keeping the stream's layout and rate leaves mixdown and
            # resampling to load_audio, identical to the soundfile path. A stream whose rate or channels
            # change part-way (recordings concatenated as they are) has its later parts converted to the
            # first part's rate and layout, so the samples keep one rate (PyAV's resampler would pass them
            # through, labelled with the first rate).
            first = (rate, stream.codec_context.layout.name)
            key, resampler = first, av.AudioResampler(format="fltp")
            chunks: list[np.ndarray] = []
            decoded = 0

            def take(frames) -> None:
                nonlocal decoded
                for planar in frames:
                    chunks.append(planar.to_ndarray())
                    decoded += planar.samples

            for frame in container.decode(stream):
                if (frame.sample_rate, frame.layout.name) != key:
                    take(resampler.resample(None))  # what the last part's converter still holds, in order
                    key = (frame.sample_rate, frame.layout.name)
                    resampler = (av.AudioResampler(format="fltp") if key == first else
                                 av.AudioResampler(format="fltp", layout=first[1], rate=first[0]))
                take(resampler.resample(frame))
                if stop is not None and decoded >= stop:
                    break
            else:  # the whole track was read: take what the resampler still buffers
                take(resampler.resample(None))
                wanted = declared if stop is None or declared is None else min(stop, declared)
                if wanted is not None and decoded < wanted - max(DURATION_SLACK_S * rate, DURATION_SLACK_FRACTION * wanted):
                    raise _truncated(path, declared, decoded)
    except ExtractionError:
        raise
    except (av.FFmpegError, ValueError) as error:
        if decoded and declared and decoded < declared:  # the data ran out part-way, mid-packet
            raise ExtractionError(
                f"truncated: header says {declared} frames, file holds {decoded} before it breaks off ({error})",
                path=path,
            ) from error
        raise ExtractionError(f"cannot decode audio: {error}", path=path) from error

    signal = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return signal[:, start:stop], rate


def _stream_frames(stream, rate: int) -> int | None:
    """The samples an FFmpeg audio stream declares (its duration), None when the container says nothing."""
    if stream.duration is None or stream.time_base is None:
        return None
    return round(float(stream.duration * stream.time_base) * rate)


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
        if path.is_symlink():
            raise ExtractionError(f"{medium} file is a symbolic link to {os.readlink(path)}, which does not exist", path=path) from error
        raise ExtractionError(f"cannot read {medium} file: {error.strerror}", path=path) from error
    start_s, end_s = sample_segment(sample)
    return f"{identity}:{start_s}-{end_s}"


def audio_input_fingerprint(sample: Mapping[str, Any]) -> str:
    augmentation = sample.get("augmentation")
    suffix = "" if _missing(augmentation) else f"|{augmentation}"
    return segment_fingerprint(sample_audio_path(sample), sample, "audio") + suffix


def read_sample_audio(sample: Mapping[str, Any], sample_rate: int | None = None, mono: bool = True,
                      start_s: float | None = None, end_s: float | None = None) -> tuple[np.ndarray, int]:
    """A sample's audio (its segment, or [start_s, end_s) when given) as `load_audio` reads it, through the
    sample's `augmentation` where it names one (augment.py): what every audio extractor reads."""
    if start_s is None and end_s is None:
        start_s, end_s = sample_segment(sample)
    signal, rate = load_audio(sample_audio_path(sample), sample_rate=sample_rate, mono=mono, start_s=start_s, end_s=end_s)
    augmentation = sample.get("augmentation")
    if _missing(augmentation) or augmentation is None:
        return signal, rate
    from emocli.features.audio.augment import augment

    if signal.ndim == 2:
        return np.stack([augment(channel, rate, str(augmentation), str(sample.get("sample_id"))) for channel in signal]), rate
    return augment(signal, rate, str(augmentation), str(sample.get("sample_id"))), rate


def _missing(value: Any) -> bool:
    """True for None, pandas.NA and NaN: the ways a table cell says 'no value'."""
    import pandas as pd

    return bool(pd.isna(value))


