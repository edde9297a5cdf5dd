"""CFN-SR (Fu et al., arXiv 2111.02172): reference sizes, shapes for every input form, gradients, batch
(in)dependence, per-fold backbone weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from emocli.core.errors import ConfigError, EmoError
from emocli.models.base import count_parameters
from emocli.models.blocks.attention import MulTEncoder, sinusoidal_positions
from emocli.models.blocks.resnext3d import ResNeXt3D, resnext3d50
from emocli.models.cfnsr import CFNSR, CFNSRConfig, MFCCNet, resolve_weights
from emocli.models.registry import get_model

AUDIO_LENGTHS = [40, 25, 9]  # 9 < MFCCNet.MIN_FRAMES: zero-padded to 12 inside
VISUAL_LENGTHS = [5, 2, 1]


def config(audio="sequence", visual="sequence", **overrides) -> CFNSRConfig:
    modalities = {}
    if audio:
        modalities["audio"] = {"dim": 13, "kind": audio}
    if visual:
        modalities["visual"] = {"dim": 3, "kind": "clip"} if visual == "clip" else {"dim": 10, "kind": visual}
    settings = dict(modalities=modalities, num_classes=5, video_dim=32, transformer_layers=2)
    if visual == "clip":
        settings["video_dim"] = 2048
    return CFNSRConfig(**{**settings, **overrides})


def batch(cfg: CFNSRConfig, seed: int = 0, clip_size: tuple[int, int, int] = (4, 64, 64)):
    generator = torch.Generator().manual_seed(seed)
    inputs, masks = {}, {}
    for m, spec in cfg.modalities.items():
        lengths = torch.tensor(AUDIO_LENGTHS if m == "audio" else VISUAL_LENGTHS)
        if spec.kind == "clip":
            inputs[m] = torch.randn(3, 3, *clip_size, generator=generator)
        elif spec.kind == "vector":
            inputs[m] = torch.randn(3, spec.dim, generator=generator)
        else:
            masks[m] = torch.arange(int(lengths.max())) < lengths[:, None]
            inputs[m] = torch.randn(3, int(lengths.max()), spec.dim, generator=generator) * masks[m][..., None]
    return inputs, masks


def test_reference_parameter_counts():
    entry = get_model("cfnsr")
    reference = entry.config("ravdess")
    with torch.device("meta"):
        assert count_parameters(entry.build(reference)) == entry.references["ravdess"] == 26_301_417
        # The released ablations: no cross-modal block (msaf_ravdess_ab_1.py), no residual (msaf_ravdess_ab_2.py).
        assert count_parameters(entry.build(entry.config("ravdess", cross_modal=False))) == 25_916_072
        assert count_parameters(entry.build(entry.config("ravdess", residual=False))) == 26_301_417
        assert count_parameters(MFCCNet(13)) == 20_704
    assert reference.summed_attention is False and reference.video_stem_relu is True
    faithful = entry.config("ravdess", faithful=True)
    assert faithful.summed_attention is True and faithful.video_stem_relu is False


def test_reference_shapes():
    model = get_model("cfnsr").build(get_model("cfnsr").config("ravdess")).eval()
    assert model.head.in_features == 2048 + 64 * 26
    audio, lengths = model.audio(torch.randn(2, 13, 212), torch.tensor([212, 212]))
    assert audio.shape == (2, 64, 26) and lengths.tolist() == [26, 26]
    with torch.no_grad():
        logits = model({"audio": torch.randn(2, 212, 13), "visual": torch.randn(2, 3, 4, 64, 64)}).logits
        shorter = model({"audio": torch.randn(2, 150, 13), "visual": torch.randn(2, 3, 4, 64, 64)}).logits
    assert logits.shape == shorter.shape == (2, 8)
    with pytest.raises(ConfigError, match="flattens 212"):
        model({"audio": torch.randn(2, 213, 13), "visual": torch.randn(2, 3, 4, 64, 64)})


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize(
    "audio,visual",
    [
        ("sequence", None),
        ("vector", None),
        (None, "sequence"),
        (None, "vector"),
        (None, "clip"),
        ("sequence", "sequence"),
        ("vector", "sequence"),
        ("sequence", "vector"),
        ("sequence", "clip"),
    ],
)
def test_every_input_form_and_head(audio, visual, task):
    cfg = config(audio, visual, task=task)
    model = CFNSR(cfg).eval()
    with torch.no_grad():
        logits = model(*batch(cfg, clip_size=(2, 32, 32))).logits
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()
    assert model.cross_modal == (audio is not None and visual is not None)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    cfg = config("sequence", "clip")
    model = CFNSR(cfg).train()
    inputs, masks = batch(cfg)  # a 4x64x64 clip leaves a 1x2x2 map: the attention has 4 positions to weigh
    F.cross_entropy(model(inputs, masks).logits, torch.tensor([0, 3, 4])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def _alone_versus_batch(model: CFNSR) -> float:
    """The largest change of a sample's logits between running alone (unpadded) and in its padded batch."""
    inputs, masks = batch(model.config)
    with torch.no_grad():
        together = model(inputs, masks).logits
        worst = 0.0
        for i in range(3):
            alone = {}
            for m, x in inputs.items():
                length = (AUDIO_LENGTHS if m == "audio" else VISUAL_LENGTHS)[i]
                alone[m] = x[i : i + 1, :length] if m in masks else x[i : i + 1]
            worst = max(worst, (model(alone).logits[0] - together[i]).abs().max().item())
    return worst


@pytest.mark.parametrize("visual", ["sequence", "clip"])
def test_batch_independence_and_the_faithful_batch_summed_map(visual):
    torch.manual_seed(0)
    model = CFNSR(config("sequence", visual)).eval()
    assert _alone_versus_batch(model) < 1e-5

    torch.manual_seed(0)
    faithful = CFNSR(config("sequence", visual, faithful=True)).eval()
    assert _alone_versus_batch(faithful) > 1e-3
    if visual == "clip":
        assert isinstance(faithful.video.relu, torch.nn.Identity) and isinstance(model.video.relu, torch.nn.ReLU)


def test_video_weights_from_a_local_file(tmp_path):
    torch.manual_seed(4)
    source = resnext3d50(num_classes=8)  # with the Kinetics-style classifier, which CFN-SR ignores
    path = tmp_path / "video.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    model = CFNSR(config("sequence", "clip", video_weights=str(path)))
    assert torch.equal(model.video.conv1.weight, source.conv1.weight)
    assert torch.equal(model.video.layer3[5].conv2.weight, source.layer3[5].conv2.weight)


def _save_mfccnet(path, seed: int, classifier: bool = True) -> MFCCNet:
    """An MFCCNet checkpoint as MSAF saves one (torch state dict, with its 1664 -> 8 classifier `fc1`)."""
    torch.manual_seed(seed)
    net = MFCCNet(13)
    state = dict(net.state_dict())
    if classifier:
        state |= {"fc1.weight": torch.randn(8, 1664), "fc1.bias": torch.randn(8)}
    torch.save(state, path)
    return net


def test_per_fold_audio_weights_from_a_path_template(tmp_path):
    sources = {fold: _save_mfccnet(tmp_path / f"fold_{fold + 1}_mfccNet_best.pth", seed=fold) for fold in range(2)}
    template = config("sequence", None, audio_weights=str(tmp_path / "fold_{fold_number}_mfccNet_best.pth"))
    for fold, source in sources.items():
        resolved = resolve_weights(template, fold)
        assert resolved.audio_weights == str(tmp_path / f"fold_{fold + 1}_mfccNet_best.pth")
        model = CFNSR(resolved)
        for name, value in source.state_dict().items():
            assert torch.equal(model.audio.state_dict()[name], value), name
    zero_based = config("sequence", None, audio_weights=str(tmp_path / "fold{fold}.pth"))
    assert resolve_weights(zero_based, 3).audio_weights == str(tmp_path / "fold3.pth")
    with pytest.raises(ConfigError, match="resolve_weights"):
        CFNSR(template)  # a template is never read as a path
    with pytest.raises(ConfigError, match="has no folds"):
        resolve_weights(template, None)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        resolve_weights(config("sequence", None, audio_weights=str(tmp_path / "{seed}.pth")), 0)


def test_one_weights_file_for_several_folds_is_refused_unless_it_saw_no_test_actor(tmp_path):
    path = tmp_path / "mfcc.safetensors"
    torch.manual_seed(5)
    source = MFCCNet(13)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    shared = config("sequence", None, audio_weights=str(path))
    with pytest.raises(ConfigError, match="leak them into training"):
        resolve_weights(shared, 0)
    assert resolve_weights(shared, None) == shared  # a run without folds (an official test split)
    declared = config("sequence", None, audio_weights=str(path), weights_exclude_test_actors=True)
    model = CFNSR(resolve_weights(declared, 4))
    assert torch.equal(model.audio.conv3.weight, source.conv3.weight)


def test_weights_errors_name_the_file(tmp_path):
    with pytest.raises(EmoError, match="not found"):
        CFNSR(config("sequence", None, audio_weights=str(tmp_path / "absent.pth")))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(EmoError, match="missing keys"):
        CFNSR(config("sequence", None, audio_weights=str(tmp_path / "other.pth")))
    with pytest.raises(ValueError, match="must be a clip"):
        config("sequence", "sequence", video_weights=str(tmp_path / "video.pth"))
    with pytest.raises(ValueError, match="audio input"):
        config(None, "sequence", audio_weights=str(tmp_path / "mfcc.pth"))


def test_video_checkpointing_gives_the_same_gradients_and_batch_norm_statistics():
    """The ResNeXt-3D's stem and blocks recomputed in the backward pass: the same features and gradients,
    and each BatchNorm's running statistics updated once per training forward, not again when recomputed."""
    results = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        net = ResNeXt3D((1, 1, 1, 1), checkpointing=checkpointing).train()  # one block per stage: quick
        clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        features = net.forward_features(clip)
        features.pow(2).sum().backward()
        buffers = {n: b.clone() for n, b in net.named_buffers()}
        results[checkpointing] = (features.detach(), {n: p.grad for n, p in net.named_parameters()}, buffers)
    (features, grads, buffers), (c_features, c_grads, c_buffers) = results[False], results[True]
    assert torch.allclose(features, c_features, atol=1e-6)
    assert all(torch.allclose(grads[n], c_grads[n], rtol=1e-4, atol=1e-6 * float(grads[n].abs().max())) for n in grads)
    assert float(grads["conv1.weight"].abs().max()) > 0
    assert all(torch.allclose(buffers[n], c_buffers[n], rtol=1e-6, atol=1e-7) for n in buffers)
    assert int(c_buffers["bn1.num_batches_tracked"]) == 1
    assert CFNSR(config("sequence", "clip")).video.checkpointing  # on by default in CFN-SR


def test_configuration_and_input_errors():
    with pytest.raises(ValueError, match="'audio' and/or 'visual'"):
        CFNSRConfig(modalities={"text": {"dim": 4}}, num_classes=2)
    with pytest.raises(ValueError, match="video_dim 2048"):
        CFNSRConfig(modalities={"visual": {"dim": 3, "kind": "clip"}}, num_classes=2, video_dim=64)
    model = CFNSR(config("sequence", None))
    holes = torch.tensor([[True, False, True] + [True] * 9])
    with pytest.raises(ConfigError, match="padding at the end"):
        model({"audio": torch.randn(1, 12, 13)}, {"audio": holes})
    with pytest.raises(ConfigError, match="width 13"):
        model({"audio": torch.randn(1, 12, 20)})


def test_mult_encoder_is_causal_with_fairseq_positions():
    table = sinusoidal_positions(3, 8)
    frequencies = 10000.0 ** (-torch.arange(4) / 3)
    assert torch.allclose(table[0], torch.cat([torch.sin(frequencies), torch.cos(frequencies)]))  # position 1
    assert torch.allclose(table[2, :4], torch.sin(3 * frequencies))

    torch.manual_seed(0)
    encoder = MulTEncoder(16, 4, 2, embed_dropout=0.3, dropout=0.1, causal=True).eval()
    x = torch.randn(2, 6, 16)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 2, 16)
    with torch.no_grad():
        before, after = encoder(x), encoder(changed)
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-6)  # the past does not see the future
    assert not torch.allclose(before[:, 4:], after[:, 4:])
