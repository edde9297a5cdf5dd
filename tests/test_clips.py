"""Raw face clips for 3D CNNs (emocli.features.visual.clips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import frame_index, needs_haar, needs_mtcnn, write_video

from emocli.core.errors import ExtractionError
from emocli.core.types import Features
from emocli.features.presets import build_extractor
from emocli.features.visual.clips import ClipExtractor, clip_frames, clip_tensor


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        # Square frames: the whole-frame crop is the entire picture, index blocks included.
        "square": write_video(folder / "square.mp4", seconds=3, fps=10, size=(64, 64)),
        "face": write_video(folder / "face.mp4", seconds=1.5, fps=20, size=(160, 120), face=True),
    }


def row(path):
    return {"sample_id": path.stem, "video_path": str(path), "start_s": None, "end_s": None}


def test_whole_frame_clip_layout_and_content(videos):
    extractor = build_extractor("clips", n_frames=30, size=64, faces=False)
    assert extractor.kind == "clip" and extractor.dim == 64 * 64 * 3
    features = extractor.extract(row(videos["square"]))
    assert features.values.shape == (30, 64 * 64 * 3) and features.values.dtype == np.float32
    assert features.values.min() >= 0 and features.values.max() <= 255
    np.testing.assert_array_equal(features.values, np.round(features.values))  # integer pixel values
    frames = clip_frames(features)
    assert frames.shape == (30, 64, 64, 3) and frames.dtype == np.uint8
    # 30 frames of a 3 s, 10 fps clip: each bin centre (0.05, 0.15, ...) shows frame 0, 1, ..., 29.
    assert [frame_index(frame) for frame in frames] == list(range(30))
    np.testing.assert_allclose(features.times, np.arange(30) / 10)
    assert extractor.last_face_reports == [None]


def test_bgr_reverses_the_channels(videos):
    rgb = ClipExtractor(n_frames=4, size=32, faces=False).extract(row(videos["square"]))
    bgr = ClipExtractor(n_frames=4, size=32, faces=False, channel_order="bgr").extract(row(videos["square"]))
    np.testing.assert_array_equal(clip_frames(bgr), clip_frames(rgb)[..., ::-1])
    assert not np.array_equal(clip_frames(bgr), clip_frames(rgb))  # the ramp's channels do differ


def test_clip_tensor_is_the_normalised_network_input():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    stored = Features(frames.reshape(5, -1).astype(np.float32), times=np.arange(5) / 10)
    tensor = clip_tensor(stored)
    assert tensor.shape == (3, 5, 8, 8) and tensor.dtype == torch.float32
    # Channel 1, frame 2, pixel (3, 4): (x / 255 - mean_g) / std_g.
    assert tensor[1, 2, 3, 4].item() == pytest.approx((frames[2, 3, 4, 1] / 255 - 0.456) / 0.224, abs=1e-5)
    plain = clip_tensor(stored.values, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(plain.permute(1, 2, 3, 0).numpy() * 255, frames, atol=1e-3)
    with pytest.raises(ValueError, match="square"):
        clip_frames(np.zeros((2, 3 * 8 * 9), np.float32))


def test_an_unreadable_video_is_an_extraction_error(tmp_path):
    with pytest.raises(ExtractionError, match="not found"):
        ClipExtractor(faces=False).extract(row(tmp_path / "absent.mp4"))


@pytest.mark.parametrize(
    "detector", [pytest.param("mtcnn", marks=needs_mtcnn), pytest.param("haar", marks=needs_haar)]
)
def test_face_clips_keep_every_frame(videos, detector):
    extractor = ClipExtractor(n_frames=30, size=48, detector=detector)
    features = extractor.extract(row(videos["face"]))
    assert features.values.shape == (30, 48 * 48 * 3) and features.flags == ()
    report = extractor.last_face_reports[0]
    assert report.sampled == 30 and report.with_face > 0 and report.fallback is None
    whole = ClipExtractor(n_frames=30, size=48, faces=False).extract(row(videos["face"]))
    assert not np.array_equal(features.values, whole.values)


@needs_mtcnn
@pytest.mark.parametrize("fallback", ["full_frame", "zeros", "error"])
def test_a_clip_without_faces_gets_the_fallback_and_the_no_face_flag(videos, fallback):
    extractor = ClipExtractor(n_frames=6, size=32, face_fallback=fallback)
    sample = row(videos["square"])
    if fallback == "error":
        with pytest.raises(ExtractionError, match="no face"):
            extractor.extract(sample)
        return
    features = extractor.extract(sample)
    assert features.values.shape == (6, 32 * 32 * 3) and features.flags == ("no_face",)
    assert extractor.last_face_reports[0].fallback == fallback
    if fallback == "zeros":
        assert not features.values.any()
    else:
        whole = ClipExtractor(n_frames=6, size=32, faces=False).extract(sample)
        np.testing.assert_array_equal(features.values, whole.values)
