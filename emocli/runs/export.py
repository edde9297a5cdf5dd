"""`emo export`: a trained unit as an ONNX graph that takes the extracted features and gives probabilities.

The graph includes the unit's feature standardisation and its objective's softmax or sigmoid, so what goes
in is what the run's extractors (feature_spec.json) produce and what comes out is what `emo predict`
shows; a `<name>.json` beside it records the inputs, the classes, the threshold and the extractors. Every
export is checked with onnxruntime against emo's own probabilities on random inputs of two batch and
sizes, and refused when they differ by more than `tolerance`. The batch axis is dynamic; a sequence input's
frame axis is fixed when exporting (`frames`: pad shorter sequences with zeros and mark them False in the
mask): the convolutions and pools of the models' encoders give torch.export a static frame count.

Spiking models (SMILE, SpikEmo) are refused: their LIF neurons run spikingjelly's custom multi-step
operators, which ONNX has no operators for; predict with `emo predict` on the run folder instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import check_writable, write_text
from emocli.core.paths import check_not_input
from emocli.models.blocks.spiking import SpikingModel
from emocli.runs import layout
from emocli.runs.inference import LoadedUnit, TrainedUnit

CLIP_FRAMES, CLIP_SIZE = 4, 32
DEFAULT_FRAMES = 200  # a sequence input's frame axis in the graph, unless the model or the user fixes another


class ProbabilityGraph(nn.Module):
    """features (and masks) -> standardised -> the model's logits -> probabilities, as one module."""

    def __init__(self, loaded: LoadedUnit, names: list[str], masked: list[str]):
        super().__init__()
        self.model, self.objective = loaded.model, loaded.objective
        self.names, self.masked = names, masked
        for m in names:
            stats = loaded.standardizer.stats.get(m) if loaded.standardizer is not None else None
            mean, scale = stats if stats is not None else (np.zeros(1, np.float32), np.ones(1, np.float32))
            self.register_buffer(f"mean_{m}", torch.from_numpy(np.asarray(mean, np.float32)))
            self.register_buffer(f"scale_{m}", torch.from_numpy(np.asarray(scale, np.float32)))

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features, masks = tensors[: len(self.names)], tensors[len(self.names) :]
        inputs = {m: (x - getattr(self, f"mean_{m}")) / getattr(self, f"scale_{m}") for m, x in zip(self.names, features)}
        return self.objective.probabilities(self.model.predict_logits(inputs, dict(zip(self.masked, masks))))


@dataclass
class ExportReport:
    path: Path
    description: Path
    max_difference: float
    inputs: list[str]


def _examples(loaded: LoadedUnit, batch: int, length: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[str]]:
    """Random features of the unit's inputs (in the graph's order) and the names of the masked ones; every
    sample but the first has a few padded frames."""
    tensors, masks, masked = [], [], []
    for m, spec in loaded.unit.inputs.items():
        if spec.kind == "vector":
            tensors.append(torch.randn(batch, spec.dim, generator=generator))
        elif spec.kind == "sequence":
            tensors.append(torch.randn(batch, length, spec.dim, generator=generator))
            mask = torch.ones(batch, length, dtype=torch.bool)
            mask[1:, length - 3 :] = False
            masks.append(mask)
            masked.append(m)
        else:  # raw clips: [B, 3, T, S, S] as the collator makes them
            tensors.append(torch.randn(batch, 3, CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE, generator=generator))
    return tensors + masks, masked


def _dynamic_shapes(loaded: LoadedUnit, masked: list[str]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1)
    return tuple({0: batch} for _ in range(len(loaded.unit.inputs) + len(masked)))


def _shape(spec: Any, frames: int) -> list[Any]:
    if spec.kind == "clip":  # the collator's input: frames as [3, T, S, S], ImageNet-normalised
        return ["batch", 3, "frames", "size", "size"]
    return ["batch", *([frames] if spec.kind == "sequence" else []), spec.dim]


def export_onnx(
    unit: str | Path, out: str | Path, tolerance: float = 1e-4, frames: int | None = None, opset: int = 18
) -> ExportReport:
    """Write `out` (.onnx) and its description; raise ConfigError for models ONNX cannot express.

    The graph's forward takes its tensors as varargs (one per input, then the masks): torch.export reads one
    dynamic-shape entry for them, a tuple of per-tensor dimension maps."""
    import onnxruntime

    trained = TrainedUnit.read(unit)
    if trained.conversation:
        raise ConfigError(f"{trained.model_name} reads whole dialogues; ONNX export covers utterance models")
    loaded = trained.load("cpu")
    if isinstance(loaded.model, SpikingModel):
        raise ConfigError(
            f"{trained.model_name} is a spiking model: its LIF neurons run spikingjelly's multi-step operators, "
            "which ONNX has no operators for. Predict with `emo predict` on the run folder instead"
        )
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError("the output of an ONNX export is a .onnx file", path=out)
    check_writable(out)
    check_writable(out.with_suffix(".json"))
    for written in (out, out.with_suffix(".json")):  # `-o unit/config.onnx` would write its description over config.json
        check_not_input(written, [Path(unit) / name for name in layout.UNIT_INPUTS], "--output")
    frames = frames or DEFAULT_FRAMES
    generator = torch.Generator().manual_seed(0)
    example, masked = _examples(loaded, 2, frames, generator)
    names = list(trained.inputs)
    graph = ProbabilityGraph(loaded, names, masked).eval()
    input_names = names + [f"{m}_mask" for m in masked]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(
            graph, tuple(example), str(out), input_names=input_names, output_names=["probabilities"],
            dynamic_shapes=(_dynamic_shapes(loaded, masked),), opset_version=opset, dynamo=True, verbose=False,
        )
    except Exception as error:  # noqa: BLE001 - the exporter raises many kinds; say which model and why
        raise EmoError(f"ONNX export of {trained.model_name} failed: {str(error).splitlines()[0]}", path=out) from None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (2, 5):
        tensors, _ = _examples(loaded, batch, frames, generator)
        with torch.no_grad():
            expected = graph(*tensors).numpy()
        got = session.run(None, {n: t.numpy() for n, t in zip(input_names, tensors)})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= tolerance:
        out.unlink(missing_ok=True)
        raise EmoError(f"the ONNX graph's probabilities differ from emo's by {worst:.2e} (> {tolerance:.0e}); "
                       "nothing written", path=out)
    description = out.with_suffix(".json")
    write_text(description, json.dumps({
        "model": trained.model_name,
        "unit": str(trained.path),
        "classes": list(trained.label_map.names),
        "task": trained.label_map.task,
        **({"threshold": loaded.threshold} if trained.label_map.task == "multi_label" else {}),
        "inputs": {
            m: {"kind": spec.kind, "dim": spec.dim, "extractor": spec.extractor_spec, "shape": _shape(spec, frames)}
            for m, spec in trained.inputs.items()
        },
        "masks": {f"{m}_mask": f"bool [batch, {frames}], True for real frames" for m in masked},
        "output": "probabilities [batch, classes]",
        "checked": {"max_abs_difference": worst, "tolerance": tolerance, "runtime": f"onnxruntime {onnxruntime.__version__}"},
    }, indent=2) + "\n")
    return ExportReport(out, description, worst, input_names)
