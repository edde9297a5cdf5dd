"""The contract every registered model keeps, checked on its miniature (the registration's `small`):
shapes for each input kind and head, gradients through its own objective, padding that changes nothing,
a sample independent of its batch in eval mode, repeatable eval, a tiny batch it can overfit, and the
original models' parameter counts at the reference configurations. A plugin model registered through the
`emocli.models` entry point is checked by the same tests."""

from __future__ import annotations

import pytest
import torch

from emocli.models.base import ModelConfig, count_parameters, count_parameters_of
from emocli.models.registry import ModelEntry, get_model, model_names

WIDTHS = {"text": 6, "audio": 5, "visual": 4}
B, L, T = 4, 3, 5  # samples (or dialogues), utterances per dialogue, frames per sequence
CLASSES = 3


def no_dropout(config: ModelConfig) -> ModelConfig:
    """The same configuration with every dropout rate at 0 (padding checks compare exact functions)."""
    zeros = {name: 0.0 for name in type(config).model_fields if "dropout" in name}
    return config.model_copy(update=zeros)


def miniature(entry: ModelEntry, kind: str, task: str = "single_label") -> ModelConfig:
    modalities = {m: {"dim": WIDTHS[m], "kind": kind} for m in entry.modalities}
    return entry.config(modalities=modalities, num_classes=CLASSES, task=task, **entry.small)


def kinds(entry: ModelEntry) -> list[str]:
    return [k for k in ("vector", "sequence") if k in entry.input_kinds]


def cases() -> list[tuple[str, str]]:
    return [(name, kind) for name in model_names() for kind in kinds(get_model(name))]


def inputs_for(entry: ModelEntry, config: ModelConfig, seed: int = 0, lengths: list[int] | None = None):
    """Random inputs and masks of the model's unit: B samples, or B dialogues of L utterances."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [T] * B
    lead = (B, L) if entry.conversation else (B,)
    inputs, masks = {}, {}
    for m, spec in config.modalities.items():
        if spec.kind == "vector":
            inputs[m] = torch.randn(*lead, spec.dim, generator=g)
        else:
            inputs[m] = torch.randn(*lead, T, spec.dim, generator=g)
            frames = torch.arange(T) < torch.tensor(lengths).view(B, *([1] * (len(lead) - 1)), 1)
            masks[m] = frames.expand(*lead, T).clone()
            inputs[m] = inputs[m] * masks[m].unsqueeze(-1)
    if entry.conversation:
        masks["utterance"] = torch.ones(B, L, dtype=torch.bool)
        masks["utterance"][1, L - 1 :] = False  # dialogue 1 is shorter
    return inputs, masks


def targets_for(config: ModelConfig, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if config.task == "multi_label":
        return (torch.rand(n, CLASSES, generator=g) > 0.5).float()
    return torch.arange(n) % CLASSES


def n_items(entry: ModelEntry, masks) -> int:
    return int(masks["utterance"].sum()) if entry.conversation else B


@pytest.mark.parametrize(("name", "kind"), cases())
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_forward_shapes_and_gradients_through_the_objective(name, kind, task):
    entry = get_model(name)
    config = miniature(entry, kind, task)
    torch.manual_seed(0)
    model = entry.build(config)
    inputs, masks = inputs_for(entry, config)
    output = model(inputs, masks)
    assert output.logits.shape == ((B, L, CLASSES) if entry.conversation else (B, CLASSES))
    objective = entry.objective({}, config)
    terms = objective.losses(output, targets_for(config, n_items(entry, masks)), masks.get("utterance"), training=True)
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if kind == "sequence":
        # Most of the network learns from one step on sequences. (Attention over a single vector has no
        # gradient by design, nor a spiking branch that did not fire: each model's own tests say which.)
        reached = sum(g.numel() for g in grads if g.abs().sum() > 0)
        assert reached > 0.5 * count_parameters(model, trainable_only=True)
    probs = objective.probabilities(output.logits.detach())
    assert ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize(("name", "kind"), cases())
def test_eval_is_repeatable_and_a_sample_does_not_depend_on_its_batch(name, kind):
    entry = get_model(name)
    config = no_dropout(miniature(entry, kind))
    torch.manual_seed(0)
    model = entry.build(config).eval()
    inputs, masks = inputs_for(entry, config)
    with torch.no_grad():
        together = model(inputs, masks).logits
        again = model(inputs, masks).logits
        alone = model({m: v[:1] for m, v in inputs.items()}, {m: v[:1] for m, v in masks.items()}).logits
    torch.testing.assert_close(together, again, rtol=0, atol=0)
    torch.testing.assert_close(alone[0], together[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in model_names() if "sequence" in get_model(n).input_kinds])
def test_padding_changes_nothing(name):
    """Frames past a sample's length, whatever their values, do not change its output."""
    entry = get_model(name)
    config = no_dropout(miniature(entry, "sequence"))
    torch.manual_seed(0)
    model = entry.build(config).eval()
    inputs, masks = inputs_for(entry, config, lengths=[T, T - 2, T, 2])
    noisy = {m: torch.where(masks[m].unsqueeze(-1), v, torch.full_like(v, 7.0)) if m in masks and m != "utterance"
             else v for m, v in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(noisy, masks).logits, model(inputs, masks).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", model_names())
def test_overfits_a_tiny_batch(name):
    entry = get_model(name)
    config = no_dropout(miniature(entry, kinds(entry)[0]))
    torch.manual_seed(0)
    model = entry.build(config)
    objective = entry.objective({}, config)
    inputs, masks = inputs_for(entry, config)
    targets = targets_for(config, n_items(entry, masks))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = sum(objective.losses(model(inputs, masks), targets, masks.get("utterance"), training=False).values())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


@pytest.mark.parametrize("name", model_names())
def test_reference_configurations_reproduce_the_original_parameter_counts(name):
    entry = get_model(name)
    for reference, expected in entry.references.items():
        config = entry.config(reference)
        counted = count_parameters_of(entry.model_class, config)  # on the meta device, as `emo models` counts
        if expected is not None:
            assert abs(counted - expected) <= entry.reference_tolerance, reference
    assert count_parameters(entry.build(miniature(entry, kinds(entry)[0]))) < 200_000  # the miniature is one
