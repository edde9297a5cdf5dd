"""load_audio: the ways audio reaches the toolkit (lossless files, video containers) and the ways it fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from emocli.core.errors import ExtractionError
from emocli.features.audio.io import (
    audio_input_fingerprint,
    load_audio,
    sample_audio_path,
    sample_segment,
)

RATE = 44100
SECONDS = 2.0


def _tones(rate: int = RATE, seconds: float = SECONDS) -> np.ndarray:
    """[2, samples]: 440 Hz on the left channel, 220 Hz on the right."""
    t = np.arange(int(rate * seconds)) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 220 * t)
    return np.stack([left, right]).astype(np.float32)


def _dominant_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()])


def write_video(path: Path, audio: np.ndarray | None, rate: int = RATE) -> Path:
    """An h264 mp4 of black frames, with `audio` [channels, samples] as an AAC track when given."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("h264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        if audio is not None:
            track = container.add_stream("aac", rate=rate)
            track.layout = "stereo" if audio.shape[0] == 2 else "mono"
        for _ in range(int(25 * SECONDS)):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        if audio is not None:
            for start in range(0, audio.shape[1], 1024):
                chunk = np.ascontiguousarray(audio[:, start : start + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=track.layout.name)
                frame.sample_rate, frame.pts = rate, start
                container.mux(track.encode(frame))
            container.mux(track.encode(None))
        container.mux(video.encode(None))
    return path


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tones.wav"
    sf.write(path, _tones().T, RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def stereo_mp4(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "tones.mp4", _tones())


def test_wav_mono_is_the_channel_mean_at_the_file_rate(stereo_wav):
    signal, rate = load_audio(stereo_wav)
    assert rate == RATE and signal.dtype == np.float32 and signal.shape == (int(RATE * SECONDS),)
    np.testing.assert_allclose(signal, _tones().mean(axis=0), atol=1e-6)


def test_channels_kept_first_when_not_mono(stereo_wav):
    signal, rate = load_audio(stereo_wav, mono=False)
    assert signal.shape == (2, int(RATE * SECONDS))
    np.testing.assert_allclose(signal, _tones(), atol=1e-6)


def test_resampling_keeps_pitch_and_duration(stereo_wav):
    signal, rate = load_audio(stereo_wav, sample_rate=16000, mono=False)
    assert rate == 16000 and signal.shape == (2, int(16000 * SECONDS))
    assert _dominant_hz(signal[0], rate) == pytest.approx(440, abs=1)
    assert _dominant_hz(signal[1], rate) == pytest.approx(220, abs=1)


def test_segment_is_cut_at_the_file_rate_then_resampled(stereo_wav):
    full, _ = load_audio(stereo_wav)
    segment, _ = load_audio(stereo_wav, start_s=0.5, end_s=1.25)
    np.testing.assert_array_equal(segment, full[round(0.5 * RATE) : round(1.25 * RATE)])
    resampled, rate = load_audio(stereo_wav, sample_rate=8000, start_s=0.5, end_s=1.25)
    assert rate == 8000 and len(resampled) == 6000


def test_segment_end_past_the_file_is_clipped(stereo_wav):
    signal, _ = load_audio(stereo_wav, start_s=1.5, end_s=9.0)
    assert len(signal) == int(RATE * 0.5)


def test_flac_int16_matches_the_source(tmp_path):
    path = tmp_path / "tones.flac"
    sf.write(path, _tones().T, RATE, subtype="PCM_16")
    signal, rate = load_audio(path)
    np.testing.assert_allclose(signal, _tones().mean(axis=0), atol=1e-4)


def test_video_audio_track_decodes_like_the_source(stereo_mp4):
    signal, rate = load_audio(stereo_mp4)
    source = _tones().mean(axis=0)
    assert rate == RATE
    assert abs(len(signal) - len(source)) < 2048  # AAC pads to whole 1024-sample frames
    middle = slice(RATE // 2, RATE)  # lossy codec: compare the waveform shape, not the samples
    assert np.corrcoef(signal[middle], source[middle])[0, 1] > 0.99


def test_video_channels_segment_and_resampling(stereo_mp4):
    channels, _ = load_audio(stereo_mp4, mono=False)
    assert channels.shape[0] == 2
    assert _dominant_hz(channels[0], RATE) == pytest.approx(440, abs=1)
    assert _dominant_hz(channels[1], RATE) == pytest.approx(220, abs=1)
    segment, rate = load_audio(stereo_mp4, sample_rate=16000, start_s=0.5, end_s=1.0)
    assert rate == 16000 and len(segment) == 8000


def test_misnamed_video_falls_back_to_ffmpeg(stereo_mp4, tmp_path):
    misnamed = tmp_path / "actually-mp4.wav"
    misnamed.write_bytes(stereo_mp4.read_bytes())
    np.testing.assert_array_equal(load_audio(misnamed)[0], load_audio(stereo_mp4)[0])


def test_real_ravdess_clip(ravdess_root):
    path = next((ravdess_root / "audio" / "Actor_01").glob("*.flac"))
    signal, rate = load_audio(path)
    assert rate == 16000 and signal.ndim == 1 and 2.5 < len(signal) / rate < 6
    assert np.abs(signal).max() <= 1.0 and np.abs(signal).max() > 0.01


def _bad_file(kind: str, directory: Path) -> Path:
    if kind == "missing":
        return directory / "absent.wav"
    if kind == "empty":
        path = directory / "empty.wav"
        path.write_bytes(b"")
    elif kind == "video-without-audio":
        path = write_video(directory / "silent.mp4", None)
    else:  # corrupt-flac, corrupt-mp4: bytes that are no such format
        path = directory / ("bad.flac" if kind == "corrupt-flac" else "bad.mp4")
        path.write_bytes(b"not media" * 50)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "not found"),
        ("empty", "empty"),
        ("corrupt-flac", "cannot decode"),
        ("corrupt-mp4", "cannot decode"),
        ("video-without-audio", "no audio stream"),
    ],
)
def test_bad_files_raise_extraction_error_naming_the_file(tmp_path, kind, message):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(ExtractionError, match=message) as raised:
        load_audio(path)
    assert raised.value.path == path


@pytest.mark.parametrize(
    ("start_s", "end_s", "message"),
    [
        (1.0, 1.0, "is empty"),
        (1.5, 1.0, "is empty"),
        (5.0, None, "no audio samples"),
        (-1.0, None, "negative"),
    ],
)
def test_empty_segments_raise(stereo_wav, stereo_mp4, start_s, end_s, message):
    for path in (stereo_wav, stereo_mp4):
        with pytest.raises(ExtractionError, match=message):
            load_audio(path, start_s=start_s, end_s=end_s)


def test_sample_segment_reads_na_as_whole_file():
    assert sample_segment({"start_s": pd.NA, "end_s": float("nan")}) == (None, None)
    assert sample_segment({"start_s": 1, "end_s": 2.5}) == (1.0, 2.5)
    assert sample_segment({}) == (None, None)


def test_a_video_without_audio_path_gives_its_own_track(stereo_mp4):
    assert sample_audio_path({"audio_path": None, "video_path": str(stereo_mp4)}) == stereo_mp4
    assert sample_audio_path({"audio_path": "speech.wav", "video_path": str(stereo_mp4)}).name == "speech.wav"


def test_input_fingerprint_covers_the_segment_and_the_file(stereo_wav, tmp_path):
    whole = audio_input_fingerprint({"audio_path": str(stereo_wav)})
    part = audio_input_fingerprint({"audio_path": str(stereo_wav), "start_s": 0.5, "end_s": 1.0})
    assert whole != part
    with pytest.raises(ExtractionError, match="no audio_path or video_path"):
        audio_input_fingerprint({"audio_path": pd.NA, "video_path": None, "sample_id": "s1"})
    with pytest.raises(ExtractionError, match="cannot read"):
        audio_input_fingerprint({"audio_path": str(tmp_path / "absent.wav")})
