"""SpikEmo (github.com/Yu-xm/SpikEmo, commit a3d2791, on github.com/TaoShi1998/MultiEMO, commit e96458b):
reference counts, shapes, DialogueRNN, gradients, state, padding, spikes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from emocli.core.errors import ConfigError
from emocli.models.base import count_parameters
from emocli.models.registry import get_model
from emocli.models.spikemo import DialogueRNN, SpikEmo, SpikEmoConfig, reversal_index

WIDTHS = {"text": 12, "audio": 10, "visual": 8}
SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(WIDTHS, r)]
B, L = 3, 6


def small_config(modalities=tuple(WIDTHS), **overrides) -> SpikEmoConfig:
    # Small widths; τ = 2 and threshold 0.5 so that a 16-wide Spikformer fires within 8 steps.
    settings = dict(
        modalities={m: {"dim": WIDTHS[m], "kind": "vector"} for m in modalities},
        num_classes=4,
        num_parties=3,
        model_dim=16,
        fusion_heads=2,
        fusion_layers=1,
        fusion_ffn_dim=32,
        mlp_hidden=16,
        spike_heads=2,
        spike_steps=8,
        spike_tau=2.0,
        spike_threshold=0.5,
        context={"text": "none", "audio": "forward", "visual": "bidirectional"},
    )
    settings.update(overrides)
    return SpikEmoConfig(**settings)


def dialogues(modalities=tuple(WIDTHS), seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(B, L, WIDTHS[m], generator=generator, dtype=dtype) for m in modalities}
    inputs["speaker"] = torch.randint(0, 3, (B, L), generator=generator)
    utterance = torch.ones(B, L, dtype=torch.bool)
    utterance[1, 4:] = False  # dialogue 1 has 4 utterances
    return inputs, {"utterance": utterance}


def test_reference_parameter_counts():
    entry = get_model("spikemo")
    meld = entry.build(entry.config("meld"))
    assert abs(count_parameters(meld) - entry.references["meld"]) <= entry.reference_tolerance
    assert count_parameters(meld) == 31_458_567
    assert count_parameters(meld.spikformer) == 1_719_808  # the released Model/spikformer.py: depth 2, width 256
    iemocap = SpikEmo(SpikEmoConfig.reference("iemocap"))
    assert abs(count_parameters(iemocap) - 31_390_000) <= 5_000
    # The default build leaves out what MELD never runs: the text DialogueRNN (two directions +
    # Linear), the backward direction and Linear of audio and visual, and the Spikformer's transforms; it
    # adds the LayerNorm in front of the spike encoder.
    default = entry.build(entry.config("meld", faithful=False))
    rnn, linear, transform, input_norm = 1_577_728, 131_328, 66_304, 512
    dead = (2 * rnn + linear) + 2 * (rnn + linear) + 2 * transform
    assert count_parameters(meld) - count_parameters(default) == dead - input_norm == 6_836_992


def test_loss_terms_follow_faithful_and_the_recipes_weights():
    from emocli.models.spikemo import SpikEmoObjective
    from emocli.training.config import resolve_config

    assert set(SpikEmoObjective({}, SpikEmoConfig.reference("meld")).weights) == {"ce"}  # faithful: CE only
    assert SpikEmoObjective({}, small_config()).weights == {"ce": 0.4, "dsc": 1.0, "hgr": 0.3}
    iemocap = resolve_config("spikemo", "spikemo-iemocap")
    assert SpikEmoObjective({**iemocap.loss, "terms": "ce+dsc+hgr"}, SpikEmoConfig.reference("iemocap")).weights == {
        "ce": 0.2, "dsc": 0.4, "hgr": 0.4}


@pytest.mark.parametrize("modalities", SUBSETS)
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_output_shapes_for_every_subset_and_head(modalities, task):
    model = SpikEmo(small_config(modalities, task=task))
    inputs, masks = dialogues(modalities)
    out = model(inputs, masks)
    assert out.logits.shape == (B, L, 4)
    assert set(out.aux) == {f"fused_{m}" for m in modalities} | {"fc_outputs"}
    assert all(v.shape == (B, L, 16) for v in out.aux.values())


def test_sequence_inputs_are_pooled_and_speakers_default_to_one_party():
    model = SpikEmo(small_config(("text", "audio")))
    frames = torch.randn(B, L, 5, WIDTHS["audio"])
    frame_mask = torch.ones(B, L, 5, dtype=torch.bool)
    frame_mask[..., 3:] = False
    text = torch.randn(B, L, WIDTHS["text"])
    model.eval()
    with torch.no_grad():
        pooled = model({"text": text, "audio": frames[:, :, :3].mean(2)}).logits
        direct = model({"text": text, "audio": frames}, {"audio": frame_mask}).logits
    assert torch.allclose(pooled, direct, atol=1e-6)
    with pytest.raises(ConfigError):
        model({"text": text, "audio": frames[:, :, 0], "speaker": torch.full((B, L), 7)})


def released_dialogue_rnn(cell: DialogueRNN, u, qmask):
    """The released DialogueRNNCell loop (MultiEMO's Model/DialogueRNN.py): GRU_P over every party, one-hot qmask
    select/update."""
    batch, parties, dim = u.shape[1], qmask.shape[2], u.shape[2]
    q, g_hist, e, out = torch.zeros(batch, parties, dim), [], torch.zeros(batch, dim), []
    for u_t, qm in zip(u, qmask):
        idx = qm.argmax(1)
        q_sel = q[torch.arange(batch), idx]
        g = cell.global_cell(torch.cat([u_t, q_sel], 1), g_hist[-1] if g_hist else torch.zeros(batch, dim))
        if g_hist:
            hist = torch.stack(g_hist)
            c = torch.bmm(cell.attention(hist).softmax(0).permute(1, 2, 0), hist.transpose(0, 1))[:, 0]
        else:
            c = torch.zeros(batch, dim)
        g_hist.append(g)
        uc = torch.cat([u_t, c], 1).unsqueeze(1).expand(-1, parties, -1).reshape(-1, 2 * dim)
        qs = cell.party_cell(uc, q.reshape(-1, dim)).view(batch, parties, dim)
        q = q * (1 - qm.unsqueeze(2)) + qs * qm.unsqueeze(2)
        e = cell.emotion_cell(q[torch.arange(batch), idx], e)
        out.append(e)
    return torch.stack(out)


def test_dialogue_rnn_matches_the_released_cell():
    """Outputs and gradients (the attention's running softmax against the released stacked one)."""
    torch.manual_seed(0)
    cell = DialogueRNN(dim=8, dropout=0.0)
    u = torch.randn(L, B, 8, requires_grad=True)
    speaker = torch.randint(0, 3, (L, B))
    real = torch.ones(L, B, dtype=torch.bool)
    real[4:, 1] = False
    qmask = F.one_hot(speaker, 3).float() * real.unsqueeze(-1)  # padded rows are all zeros
    weights = torch.randn(L, B, 8)
    results = []
    for run in (lambda: cell(u, speaker.masked_fill(~real, 0), real, 3), lambda: released_dialogue_rnn(cell, u, qmask)):
        out = run()
        grads = torch.autograd.grad((out * weights).sum(), [u, *cell.parameters()])
        results.append((out.detach(), grads))
    (ours, our_grads), (released, released_grads) = results
    assert torch.allclose(ours, released, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5 * float(b.abs().max())) for a, b in zip(our_grads, released_grads))
    assert float(our_grads[-1].abs().max()) > 0  # the attention's weight


def test_dialogue_rnn_keeps_linear_memory_in_the_dialogue_length():
    """The attention's history is kept as running sums: what the autograd graph saves grows linearly with
    the dialogue's length, not with its square (one growing [t, B, D] stack per step)."""
    saved: list[int] = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    cell = DialogueRNN(dim=8, dropout=0.0)
    totals = {}
    for steps in (10, 100):
        saved.clear()
        u = torch.randn(steps, 2, 8, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            cell(u, torch.zeros(steps, 2, dtype=torch.long), torch.ones(steps, 2, dtype=torch.bool), parties=1)
        totals[steps] = sum(saved)
    assert totals[100] < 12 * totals[10]  # 10x the steps: ~10x (the stacked history gave ~18x)


def test_reversal_index_reverses_within_each_dialogue():
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert reversal_index(mask).T.tolist() == [[2, 1, 0], [1, 0, 2]]


@pytest.mark.parametrize("faithful", [False, True])
def test_gradients_reach_every_trainable_parameter(faithful):
    torch.manual_seed(0)
    model = SpikEmo(small_config(faithful=faithful))
    inputs, masks = dialogues()
    model(inputs, masks).logits.sum().backward()
    dead_prefixes = ("context.text.", "context.audio.backward_rnn.", "context.audio.linear.", "spikformer.transforms.")
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith(dead_prefixes) for n in names) == faithful  # dead modules only in the reference build
    for name, p in model.named_parameters():
        received = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert received != name.startswith(dead_prefixes), name


@pytest.mark.parametrize("train", [False, True])
def test_identical_batches_give_identical_outputs(train):
    model = SpikEmo(small_config()).train(train)  # dropout 0 (the scripts'): training forwards are fixed too
    a, masks = dialogues(seed=1)
    b, _ = dialogues(seed=2)
    with torch.no_grad():
        first = model(a, masks).logits
        model(b, masks)
        assert torch.equal(first, model(a, masks).logits)


def test_faithful_membranes_leak_between_modalities():
    torch.manual_seed(0)
    leaking = SpikEmo(small_config(faithful=True)).eval()
    resetting = SpikEmo(small_config(faithful=True, reset_between_modalities=True)).eval()
    resetting.load_state_dict(leaking.state_dict())
    inputs, masks = dialogues()
    with torch.no_grad():
        assert not torch.allclose(leaking(inputs, masks).logits, resetting(inputs, masks).logits)


def test_batch_independence_default_and_padding_dependence_faithful():
    torch.manual_seed(0)
    default = SpikEmo(small_config()).double().eval()
    released = small_config(faithful=True, keep_unused_modules=False, normalize_spike_input=True)
    faithful = SpikEmo(released).double().eval()
    faithful.load_state_dict(default.state_dict())
    inputs, masks = dialogues(dtype=torch.float64)
    alone = {m: x[1:2, :4] for m, x in inputs.items()}  # dialogue 1 without its padding
    with torch.no_grad():
        assert torch.allclose(default(inputs, masks).logits[1, :4], default(alone).logits[0], atol=1e-9)
        # released: padded utterances enter the softmax and the attention, so the batch's length matters
        assert not torch.allclose(faithful(inputs, masks).logits[1, :4], faithful(alone).logits[0], atol=1e-4)


def test_firing_rates_and_energy():
    model = SpikEmo(small_config()).eval()
    inputs, masks = dialogues()
    with model.monitor_spikes() as monitor, torch.no_grad():
        model(inputs, masks)
    rates = monitor.firing_rates()
    neurons = [n for n, m in model.named_modules() if type(m).__name__ == "LIFNode"]
    assert set(rates) == set(neurons) | {"spikformer.encoder"} and len(neurons) == 2 * 7
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    assert set(model.spiking_modules()) == {"spikformer"}
    estimate = model.energy(inputs, masks)
    assert estimate.label == "compute-only estimate (45 nm, Horowitz 2014)"
    assert estimate.macs > 0 and estimate.acs > 0 and estimate.energy_pj > 0


def test_on_dialogues_of_one_the_spiking_branch_cannot_change_the_output():
    """DSWA's softmax runs over a dialogue's utterances: with one utterance it is 1 whatever the Spikformer
    says (F + F * 1), which is why RAVDESS clips run as dialogues of one leave SpikEmo's spiking part idle."""
    torch.manual_seed(0)
    model = SpikEmo(small_config()).eval()
    single = {m: torch.randn(4, 1, WIDTHS[m]) for m in WIDTHS}
    several = {m: torch.randn(4, 3, WIDTHS[m]) for m in WIDTHS}
    before_single, before_several = model(single).logits, model(several).logits
    with torch.no_grad():
        for parameter in model.spikformer.parameters():
            parameter.add_(torch.randn_like(parameter))
    assert torch.allclose(model(single).logits, before_single)
    assert not torch.allclose(model(several).logits, before_several)  # with several utterances it matters


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_fused_lif_kernels_give_the_torch_reference_model_on_gpu(backend):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    reference = SpikEmo(small_config()).eval()
    inputs, masks = dialogues()
    on_cpu = reference(inputs, masks).logits
    outputs = {}
    for name in ("torch", backend):
        model = SpikEmo(small_config(backend=name)).cuda().eval()
        model.load_state_dict(reference.state_dict())
        cuda_inputs = {m: x.cuda() for m, x in inputs.items()}
        cuda_inputs["audio"].requires_grad_()
        try:
            logits = model(cuda_inputs, {k: v.cuda() for k, v in masks.items()}).logits
        except RuntimeError as error:  # that kernel is not installed on this machine
            pytest.skip(f"spikingjelly backend {name!r} unavailable: {error}")
        (grad,) = torch.autograd.grad(logits[masks["utterance"].cuda()].sum(), cuda_inputs["audio"])
        outputs[name] = (logits.detach().cpu(), grad.cpu())
    assert torch.allclose(outputs["torch"][0], on_cpu, atol=1e-4)  # the GPU computes the CPU's model
    assert torch.allclose(outputs[backend][0], outputs["torch"][0], atol=1e-5)
    assert torch.allclose(outputs[backend][1], outputs["torch"][1], atol=1e-5)


@pytest.mark.parametrize("faithful", [False, True])
def test_spikformer_has_the_released_initialisation(faithful):
    """Model/spikformer.py (github.com/Yu-xm/SpikEmo, commit a3d2791): Linear N(0, 0.02) with zero bias,
    LayerNorm 1 and 0, in the Spikformer only."""
    torch.manual_seed(0)
    model = SpikEmo(SpikEmoConfig.reference("meld").model_copy(update={"faithful": faithful})).requires_grad_(False)
    linears = [m for m in model.spikformer.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * (4 + 2) + (2 if faithful else 0)  # per block: q, k, v, proj, fc1, fc2 (+ transforms)
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert float(weights.abs().max()) > 4 * 0.02  # a normal's tail, beyond any default uniform bound here
    assert abs(float(weights.mean())) < 1e-4 and float(weights.std()) == pytest.approx(0.02, rel=0.01)
    assert all(float(m.weight.std()) == pytest.approx(0.02, rel=0.05) for m in linears)
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    norms = [m for m in model.spikformer.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0 for m in norms)
    # The rest of the model keeps PyTorch's defaults (uniform in ±1/√fan_in), as the released code does.
    assert float(model.fc.weight.abs().max()) <= 1 / math.sqrt(model.fc.in_features)


def _dswa_weights(model: SpikEmo, inputs, masks) -> list[torch.Tensor]:
    """The utterance softmax of each modality's Spikformer output (DSWA's weights), from a training forward."""
    weights: list[torch.Tensor] = []
    real = masks["utterance"]

    def record(module, args, output):
        weights.append(output.detach().masked_fill(~real.unsqueeze(-1), float("-inf")).softmax(1))

    handle = model.spikformer.register_forward_hook(record)
    try:
        out = model(inputs, masks)
    finally:
        handle.remove()
    return out, weights


def test_dswa_weights_vary_over_utterances_on_relu_streams_and_the_spikformer_learns():
    """Every stream through a DialogueRNN (ReLU outputs, non-negative): the released encoder fires everywhere,
    each dialogue's weights are exactly 1/n and the Spikformer gets no gradient (the paper's "w/o DSWA");
    with the input LayerNorm (default) the weights depend on the utterance and the Spikformer learns."""
    context = {m: "forward" for m in WIDTHS}
    inputs, masks = dialogues()
    real = masks["utterance"]
    lengths = real.sum(1, keepdim=True).unsqueeze(-1)
    labels = torch.randint(0, 4, (B, L), generator=torch.Generator().manual_seed(3))
    spikformer_grads = {}
    for normalize in (True, False):
        torch.manual_seed(0)
        model = SpikEmo(small_config(context=context, normalize_spike_input=normalize))
        out, weights = _dswa_weights(model, inputs, masks)
        assert len(weights) == 3
        for w in weights:
            spread = (w - 1 / lengths).abs().masked_fill(~real.unsqueeze(-1), 0).amax()
            assert (spread > 1e-3) if normalize else (spread < 1e-6)
        F.cross_entropy(out.logits[real], labels[real]).backward()
        norm = lambda module: float(torch.sqrt(sum(p.grad.pow(2).sum() for p in module.parameters())))  # noqa: E731
        spikformer_grads[normalize] = norm(model.spikformer.blocks) / norm(model.projections)
    assert spikformer_grads[True] > 1e-2
    assert spikformer_grads[False] < 1e-5


@pytest.mark.parametrize("faithful", [False, True])
def test_checkpointing_gives_the_same_outputs_gradients_and_membranes(faithful):
    """Chunked activation checkpointing of the Spikformer's time steps, and of the fusion layers, changes
    memory, not the maths: the same logits and gradients, also when membranes leak from one modality's pass
    to the next (faithful)."""
    results = {}
    for chunks in (0, 3):  # 3 chunks of T = 8 steps: 3 + 3 + 2; the fusion layers checkpointed with them
        torch.manual_seed(0)
        config = small_config(faithful=faithful, spike_checkpoint_chunks=chunks, fusion_checkpointing=chunks > 0)
        model = SpikEmo(config).double()
        inputs, masks = dialogues(dtype=torch.float64)
        inputs["audio"].requires_grad_()
        logits = model(inputs, masks).logits
        logits[masks["utterance"]].pow(2).sum().backward()
        membranes = [m.v.detach().clone() for m in model.spikformer.modules() if type(m).__name__ == "LIFNode"]
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results[chunks] = (logits.detach(), inputs["audio"].grad, grads, membranes)
    (logits, audio, grads, membranes), (c_logits, c_audio, c_grads, c_membranes) = results[0], results[3]
    assert torch.allclose(logits, c_logits, atol=1e-12)
    assert torch.allclose(audio, c_audio, atol=1e-12) and float(audio.abs().max()) > 0
    assert grads.keys() == c_grads.keys() and any(n.startswith("spikformer.blocks") for n in grads)
    assert all(torch.allclose(grads[n], c_grads[n], atol=1e-12) for n in grads)
    assert all(torch.equal(a, b) for a, b in zip(membranes, c_membranes))  # the last pass's final membranes
