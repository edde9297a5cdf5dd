"""The 3D ResNeXt-50 backbone (Hara et al., CVPR 2018, as CFN-SR's networks/resnext.py at commit 2443494 of
github.com/skeletonNN/CFN-SR builds it): size, map shape, stem switch, local weights loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from emocli.core.errors import EmoError
from emocli.models.base import count_parameters
from emocli.models.blocks.resnext3d import ResNeXt3D, resnext3d50

# conv1 + bn1 + layers 1-4 of the Kinetics ResNeXt-50, no classifier: CFN-SR's 26,301,417 minus its
# MFCCNet (20,704), cross-modal block (385,345) and head (29,704).
BACKBONE_PARAMETERS = 25_865_664


def _expected_map(t: int, h: int, w: int) -> tuple[int, int, int]:
    """Stride arithmetic: conv1 (7, pad 3, stride (1, 2, 2)), max-pool (3, pad 1, stride 2), stride 2 in layers 2-4."""

    def down(size: int, kernel: int, stride: int, pad: int) -> int:
        return (size + 2 * pad - kernel) // stride + 1

    sizes = []
    for size, first_stride in ((t, 1), (h, 2), (w, 2)):
        size = down(down(size, 7, first_stride, 3), 3, 2, 1)
        for _ in range(3):
            size = down(size, 3, 2, 1)
        sizes.append(size)
    return tuple(sizes)


@pytest.fixture(scope="module")
def backbone() -> ResNeXt3D:
    torch.manual_seed(0)
    return resnext3d50().eval()


def test_parameter_count(backbone):
    assert count_parameters(backbone) == BACKBONE_PARAMETERS
    with torch.device("meta"):
        assert count_parameters(resnext3d50(num_classes=400)) == BACKBONE_PARAMETERS + 2048 * 400 + 400


def test_reference_clip_gives_the_spec_map():
    # A real 30x224x224 forward is too heavy for a CPU test: the meta device runs the same shape logic.
    with torch.device("meta"):
        model = resnext3d50()
        features = model.forward_features(torch.empty(2, 3, 30, 224, 224))
    assert tuple(features.shape) == (2, 2048, 2, 7, 7)
    assert _expected_map(30, 224, 224) == (2, 7, 7)


def test_small_clip_shapes_follow_the_strides(backbone):
    clip = torch.randn(1, 3, 6, 40, 72)
    with torch.no_grad():
        features = backbone.forward_features(clip)
        pooled = backbone(clip)
    assert tuple(features.shape) == (1, 2048, *_expected_map(6, 40, 72))
    assert tuple(features.shape[2:]) == (1, 2, 3)
    assert torch.allclose(pooled, features.mean(dim=(2, 3, 4)), atol=1e-5)


def test_stem_relu_switch_changes_the_output_not_the_parameters(backbone):
    without = resnext3d50(stem_relu=False).eval()
    without.load_state_dict(backbone.state_dict())
    assert isinstance(without.relu, torch.nn.Identity) and isinstance(backbone.relu, torch.nn.ReLU)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(without(clip), backbone(clip))


def test_weights_round_trip_through_safetensors(backbone, tmp_path):
    path = tmp_path / "resnext.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, path)
    torch.manual_seed(1)  # a different initialisation, overwritten by the file
    loaded = resnext3d50(weights=path).eval()
    for key, value in backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(clip), backbone(clip))


def test_torch_checkpoint_with_wrapper_and_dataparallel_prefix(tmp_path):
    torch.manual_seed(2)
    source = resnext3d50(num_classes=8)
    path = tmp_path / "fold_0.pth"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 3, "arch": "resnext-50", "state_dict": state}, path)
    loaded = resnext3d50(weights=path, num_classes=8)
    assert torch.equal(loaded.fc.weight, source.fc.weight)
    assert torch.equal(loaded.layer4[2].conv3.weight, source.layer4[2].conv3.weight)

    # The same file into a model without a classifier: strict, and the message names the extra keys.
    with pytest.raises(EmoError, match=r"2 unexpected keys \(fc.bias, fc.weight\)") as error:
        resnext3d50(weights=path)
    assert "fold_0.pth" in str(error.value) and "no missing keys" in str(error.value)


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(EmoError, match="not found"):
        resnext3d50(weights=tmp_path / "absent.pth")

    partial = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7, 7)}, partial)
    with pytest.raises(EmoError, match=r"missing keys \(bn1.bias"):
        resnext3d50(weights=partial)

    pickled = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled module, refused by weights_only loading
    with pytest.raises(EmoError, match="tensor-only"):
        resnext3d50(weights=pickled)

    with torch.device("meta"):
        state = resnext3d50().state_dict()
    wrong = {k: torch.zeros(v.shape) for k, v in state.items()}
    wrong["conv1.weight"] = torch.zeros(64, 3, 3, 7, 7)
    wrong_path = tmp_path / "wrong.safetensors"
    save_file(wrong, wrong_path)
    with pytest.raises(EmoError, match="size mismatch"):
        resnext3d50(weights=wrong_path)
