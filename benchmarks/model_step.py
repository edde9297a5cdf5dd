"""Forward + backward time per batch of every registry model at its reference widths, on this machine.

For spiking models it also reports the share of that time spent inside the spiking layers
(forward and backward, measured with module hooks around `model.spiking_modules()`).

    python benchmarks/model_step.py [--models smile,mmer] [--repeats 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import write_results
from emocli.models.base import count_parameters
from emocli.registry import MODELS


def reference_inputs(entry, config, batch: int, seq_len: int, dialogue_len: int):
    """Random inputs of the reference widths, in the model's input convention (models/base.py)."""
    inputs, masks = {}, {}
    for name, spec in config.modalities.items():
        if spec.kind == "clip":
            inputs[name] = torch.randn(batch, 3, 30, 224, 224)
        elif entry.input_unit == "dialogue":
            inputs[name] = torch.randn(batch, dialogue_len, spec.dim)
        elif spec.kind == "sequence":
            length = 212 if entry.name == "cfnsr" else seq_len  # CFN-SR's MFCC recipe: [212, 13]
            inputs[name] = torch.randn(batch, length, spec.dim)
            masks[name] = torch.ones(batch, length, dtype=torch.bool)
        else:
            inputs[name] = torch.randn(batch, spec.dim)
    if entry.input_unit == "dialogue":
        masks["utterance"] = torch.ones(batch, dialogue_len, dtype=torch.bool)
    return inputs, masks


class SpikingTimer:
    """Accumulates wall time spent in the forward and backward of the given modules."""

    def __init__(self, modules):
        self.seconds = 0.0
        self._handles = []
        for module in modules:
            self._handles += [
                module.register_forward_pre_hook(self._start),
                module.register_forward_hook(self._stop),
                module.register_full_backward_pre_hook(self._start),
                module.register_full_backward_hook(self._stop),
            ]

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self.seconds += time.perf_counter() - self._t0

    def close(self):
        for handle in self._handles:
            handle.remove()


def time_step(model, inputs, masks, repeats: int) -> tuple[float, float]:
    spiking = model.spiking_modules() if hasattr(model, "spiking_modules") else []
    timer = SpikingTimer(spiking)
    model.train()
    durations = []
    for repeat in range(repeats + 1):  # the first step warms up allocators and is not counted
        timer.seconds = 0.0
        start = time.perf_counter()
        output = model(inputs, masks)
        output.logits.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
        if repeat:
            durations.append((time.perf_counter() - start, timer.seconds))
    timer.close()
    total = sum(d for d, _ in durations) / len(durations)
    spiking_time = sum(s for _, s in durations) / len(durations)
    return total, spiking_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=60, help="MOSEI's aligned length")
    parser.add_argument("--dialogue-len", type=int, default=12, help="utterances per MELD-like dialogue")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)

    figures = {"batch": args.batch, "models": {}}
    print(f"{'model':<10}{'reference':<11}{'params':>13}{'s/step':>10}{'spiking share':>15}")
    for name in args.models.split(","):
        entry = MODELS[name]
        reference = next(iter(entry.references))
        config = entry.config(reference)
        model = entry.build(config)
        inputs, masks = reference_inputs(entry, config, args.batch, args.seq_len, args.dialogue_len)
        seconds, spiking_seconds = time_step(model, inputs, masks, args.repeats)
        share = spiking_seconds / seconds if entry.spiking else None
        figures["models"][name] = {
            "reference": reference,
            "parameters": count_parameters(model),
            "seconds_per_step": round(seconds, 4),
            "spiking_share": None if share is None else round(share, 4),
        }
        share_text = "-" if share is None else f"{share:.1%}"
        print(f"{name:<10}{reference:<11}{count_parameters(model):>13,}{seconds:>10.3f}{share_text:>15}")
    print(f"wrote {write_results('model_step', figures)}")


if __name__ == "__main__":
    main()
