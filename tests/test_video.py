"""Video decoding and frame sampling (emocli.features.visual.video) on mp4 files written by tests/media.py."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import pytest
from media import frame_index, truncate, write_audio_only, write_garbage, write_video

from emocli.core.errors import ExtractionError
from emocli.features.visual.video import (
    _decode_at,
    read_frames,
    sample_times,
    sample_video_path,
    video_input_fingerprint,
)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """3 s at 20 fps, 96x64, with an aac track: frame k is shown over [k/20, (k+1)/20)."""
    return write_video(
        tmp_path_factory.mktemp("video") / "clip.mp4", seconds=3, fps=20, size=(96, 64), audio="tone"
    )


def shown_at(targets, fps=20):
    """Index of the frame on screen at each target time of a constant-rate video."""
    return [int(np.floor(t * fps + 1e-9)) for t in targets]


def test_sample_times_are_bin_centres():
    np.testing.assert_allclose(sample_times(0.0, 3.0, n_frames=30)[[0, 1, -1]], [0.05, 0.15, 2.95])
    np.testing.assert_allclose(sample_times(1.0, 2.0, fps=4), [1.125, 1.375, 1.625, 1.875])
    # A rate that would give more frames than n_frames falls back to n_frames uniform times.
    np.testing.assert_allclose(sample_times(0.0, 2.0, n_frames=2, fps=10), [0.5, 1.5])
    with pytest.raises(ValueError):
        sample_times(1.0, 1.0, n_frames=3)


def test_uniform_frames_over_whole_file(video):
    sampled = read_frames(video, n_frames=6)
    assert sampled.frames.shape == (6, 64, 96, 3) and sampled.frames.dtype == np.uint8
    assert sampled.segment == pytest.approx((0.0, 3.0))
    targets = sample_times(0.0, 3.0, n_frames=6)
    assert [frame_index(f) for f in sampled.frames] == shown_at(targets)
    np.testing.assert_allclose(sampled.times, np.array(shown_at(targets)) / 20)


def test_segment_seeks_and_samples_inside_it(video):
    sampled = read_frames(video, start_s=1.62, end_s=2.5, n_frames=4)
    targets = sample_times(1.62, 2.5, n_frames=4)
    assert [frame_index(f) for f in sampled.frames] == shown_at(targets)
    assert sampled.times.min() >= 1.6 - 1e-9 and sampled.times.max() < 2.5


def test_rate_sampling(video):
    sampled = read_frames(video, start_s=0.5, end_s=1.5, fps=4)
    assert [frame_index(f) for f in sampled.frames] == shown_at(sample_times(0.5, 1.5, fps=4))


def test_end_past_the_file_is_clipped_and_dense_sampling_repeats_frames(video):
    sampled = read_frames(video, start_s=2.9, end_s=10.0, n_frames=6)
    assert sampled.segment == pytest.approx((2.9, 3.0))
    assert [frame_index(f) for f in sampled.frames] == [58, 58, 58, 59, 59, 59]


def test_variable_frame_rate_uses_presentation_times(tmp_path):
    times = [0.0, 0.1, 0.15, 0.4, 0.9, 1.0]
    path = write_video(tmp_path / "vfr.mp4", fps=10, size=(64, 64), frame_times=times)
    sampled = read_frames(path, start_s=0.0, end_s=1.0, n_frames=5)  # targets 0.1, 0.3, 0.5, 0.7, 0.9
    assert [frame_index(f) for f in sampled.frames] == [1, 2, 3, 3, 4]
    np.testing.assert_allclose(sampled.times, [0.1, 0.15, 0.4, 0.4, 0.9], atol=1e-3)


@dataclass
class FakeFrame:
    time: float
    conversions: list

    def to_ndarray(self, format):
        self.conversions.append(self.time)
        return np.full((2, 2, 3), int(self.time * 10), np.uint8)


def test_decoding_stops_after_the_last_needed_frame_and_converts_only_sampled_frames():
    conversions: list[float] = []
    consumed: list[float] = []

    def decoded():
        for k in range(100):
            consumed.append(k / 10)
            yield FakeFrame(k / 10, conversions)

    frames, times = _decode_at(decoded(), np.array([0.25, 0.27, 0.55]))
    assert times == [0.2, 0.2, 0.5]
    assert consumed[-1] == pytest.approx(0.6)  # the frame after the last target ends the walk
    assert conversions == [0.2, 0.5]  # a frame used twice is converted once
    assert frames[0] is frames[1]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d / "absent.mp4", "not found"),
        (lambda d: write_garbage(d / "garbage.mp4"), "cannot decode video"),
        (
            lambda d: truncate(write_video(d / "full.mp4", seconds=1), d / "cut.mp4", keep=0.5),
            "cannot decode video",
        ),
        (lambda d: write_audio_only(d / "speech.m4a"), "no video stream"),
    ],
    ids=["missing", "garbage", "truncated", "audio-only"],
)
def test_unreadable_inputs_raise_extraction_error_naming_the_file(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(ExtractionError, match=problem) as error:
        read_frames(path, n_frames=3)
    assert error.value.path == path and str(path) in str(error.value)


def test_segments_outside_the_video_are_errors(video):
    with pytest.raises(ExtractionError, match="past the end"):
        read_frames(video, start_s=5.0, end_s=6.0, n_frames=3)
    with pytest.raises(ExtractionError, match="empty"):
        read_frames(video, start_s=1.0, end_s=1.0, n_frames=3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_a_still_image_is_a_one_frame_video(tmp_path, suffix):
    """FER2013's JPEGs and CK+'s PNGs reach the face extractors through read_frames: one frame at 0 s."""
    import cv2

    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[:, :8] = (200, 30, 60)  # two flat halves: JPEG keeps them within a few levels
    rgb[:, 8:] = (20, 160, 90)
    path = tmp_path / f"face{suffix}"
    cv2.imwrite(str(path), rgb[..., ::-1])
    for asked in ({"n_frames": 20}, {"fps": 4.0}, {"start_s": 0.0, "end_s": 3.0, "n_frames": 5}):
        sampled = read_frames(path, **asked)
        assert sampled.frames.shape == (1, 12, 16, 3) and sampled.times.tolist() == [0.0]
        assert sampled.segment == (0.0, 0.0)
        tolerance = 0 if suffix != ".jpg" else 8
        assert np.abs(sampled.frames[0].astype(int) - rgb).max() <= tolerance
    with pytest.raises(ExtractionError, match="past the end of a still image") as error:
        read_frames(path, start_s=1.0, n_frames=1)
    assert error.value.path == path


def test_a_broken_image_is_an_error_naming_it(tmp_path):
    path = write_garbage(tmp_path / "face.png")
    with pytest.raises(ExtractionError) as error:
        read_frames(path, n_frames=1)
    assert error.value.path == path


def test_input_fingerprint_covers_file_and_segment(video):
    row = {"sample_id": "a", "video_path": str(video), "start_s": 0.5, "end_s": float("nan")}
    whole = {**row, "start_s": None}
    assert video_input_fingerprint(row) != video_input_fingerprint(whole)
    assert video_input_fingerprint(row).endswith(":0.5-None")
    with pytest.raises(ExtractionError, match="no video_path"):
        sample_video_path({"sample_id": "b", "video_path": None})


@pytest.mark.skipif(
    importlib.util.find_spec("emocli.features.audio.io") is None,
    reason="emocli.features.audio.io (the audio loader) is not in this checkout",
)
def test_audio_track_of_a_video_through_load_audio(video, tmp_path):
    from emocli.features.audio.io import load_audio

    signal, rate = load_audio(video, sample_rate=16000)
    assert rate == 16000 and abs(len(signal) / rate - 3.0) < 0.1
    assert 0.3 < np.abs(signal).max() <= 1.0  # the 0.5-amplitude tone survives aac
    silent = write_video(tmp_path / "silent.mp4", seconds=1, size=(64, 64))
    with pytest.raises(ExtractionError, match="no audio stream"):
        load_audio(silent)
