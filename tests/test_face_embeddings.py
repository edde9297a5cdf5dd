"""The face-mobilenet presets: MTCNN-aligned faces of generated videos embedded by the offline MobileNetV2."""

from __future__ import annotations

import numpy as np
import pytest
from media import needs_mtcnn, needs_offline_mobilenet, write_video

from emocli.core.errors import ConfigError
from emocli.features.presets import build_extractor
from emocli.features.visual.faces import NO_FACE
from emocli.features.visual.frames import load_backbone

pytestmark = [needs_mtcnn, needs_offline_mobilenet]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("face_embeddings")
    return {
        "face": write_video(folder / "face.mp4", seconds=2, fps=10, size=(320, 240), face=True),
        "plain": write_video(folder / "plain.mp4", seconds=2, fps=10, size=(320, 240)),
    }


@pytest.fixture(scope="module")
def pooled():
    return build_extractor("face-mobilenet")


@pytest.fixture(scope="module")
def sequence():
    return build_extractor("face-mobilenet-seq")


def row(path, start_s=None, end_s=None):
    return {"sample_id": path.stem, "video_path": str(path), "start_s": start_s, "end_s": end_s}


def test_the_presets_embed_aligned_faces_with_the_offline_imagenet_mobilenet(pooled, sequence, videos):
    assert (pooled.kind, pooled.dim, sequence.kind, sequence.dim) == ("vector", 1280, "sequence", 1280)
    assert pooled.spec()["weights_sha256"].startswith("b0353104")  # torchvision's own file name prefix
    assert pooled.feature_set_name != sequence.feature_set_name

    frames = sequence.extract(row(videos["face"]))
    # 4 frames a second over 2 s, every one with a face: those on screen at 0.125, 0.375, ... 1.875 s.
    assert frames.values.shape == (8, 1280) and frames.flags == ()
    np.testing.assert_allclose(frames.times, [0.1, 0.3, 0.6, 0.8, 1.1, 1.3, 1.6, 1.8], atol=1e-6)
    assert sequence.last_face_reports[0].to_json() == {"sampled": 8, "with_face": 8, "fallback": None}
    assert (frames.values >= 0).all() and frames.values.mean() > 0.1  # post-ReLU6 features of a real image

    vector = pooled.extract(row(videos["face"]))
    assert vector.values.shape == (1280,) and vector.flags == ()
    np.testing.assert_allclose(vector.values, frames.values.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_a_video_without_a_face_is_flagged_and_zero_not_guessed(pooled, sequence, videos):
    vector = pooled.extract(row(videos["plain"]))
    assert vector.flags == (NO_FACE,) and not vector.values.any()
    assert pooled.last_face_reports[0].to_json() == {"sampled": 8, "with_face": 0, "fallback": "zeros"}
    frames = sequence.extract(row(videos["plain"]))
    assert frames.flags == (NO_FACE,) and frames.values.shape == (8, 1280) and not frames.values.any()
    # Asking for the whole frames instead still says that no face was seen.
    whole = build_extractor("face-mobilenet", {"face_fallback": "full_frame"}).extract(row(videos["plain"]))
    assert whole.flags == (NO_FACE,) and whole.values.any()


def test_embeddings_are_deterministic_and_agree_across_batch_sizes(pooled, sequence, videos):
    first, second = row(videos["face"], 0.0, 1.0), row(videos["face"], 1.0, 2.0)
    alone = sequence.extract(first)
    np.testing.assert_array_equal(alone.values, sequence.extract(first).values)  # same input, same batch

    batch = sequence.extract_batch([first, row(videos["plain"]), second])
    np.testing.assert_allclose(batch[0].values, alone.values, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(batch[0].times, alone.times)
    assert batch[1].flags == (NO_FACE,) and batch[0].flags == batch[2].flags == ()
    np.testing.assert_allclose(batch[2].values, sequence.extract(second).values, rtol=1e-4, atol=1e-4)
    pooled_batch = pooled.extract_batch([first, second])
    np.testing.assert_allclose(pooled_batch[1].values, pooled.extract(second).values, rtol=1e-4, atol=1e-4)
    # The two halves show the same still face: close, though the frames' index blocks differ.
    assert np.corrcoef(batch[0].values.mean(0), batch[2].values.mean(0))[0, 1] > 0.95


def test_face_crops_change_the_embedding(videos):
    faces = build_extractor("face-mobilenet").extract(row(videos["face"]))
    whole = build_extractor("face-mobilenet", {"faces": False}).extract(row(videos["face"]))
    assert np.corrcoef(faces.values, whole.values)[0, 1] < 0.9


def test_offline_weights_exist_for_mobilenet_v2_only():
    with pytest.raises(ConfigError, match="no offline weights for 'resnet18'"):
        load_backbone("resnet18", "offline")
