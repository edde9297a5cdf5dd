"""Forward + backward time per batch of every registry model at its reference widths, on this machine.

For spiking models it also reports the share of that time spent in the spiking layers
(`model.spiking_modules()`, forward and backward, replayed alone on the inputs of a real forward).
When MMER is measured, its soft top-k mask (MOSEI's reference batch of 128 x 60 steps, k = 24, 100
Sinkhorn iterations) is timed forward + backward with the implicit backward MMER uses and with autograd
through the unrolled iterations, side by side, with the relative difference of their score gradients.

    python benchmarks/model_step.py [--models smile,mmer] [--repeats 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_results

from emocli.models.base import count_parameters
from emocli.models.registry import get_model, model_names


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


def time_step(model, inputs, masks, repeats: int) -> float:
    """Mean seconds of one forward + backward (after one warm-up step)."""
    model.train()
    durations = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        model(inputs, masks).logits.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
        if repeat:
            durations.append(time.perf_counter() - start)
    return sum(durations) / len(durations)


def _detached(value):
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _leaf(value):
    """A fresh input that asks for its gradient, as a layer inside the model gets one."""
    if isinstance(value, torch.Tensor):
        return value.clone().requires_grad_(value.is_floating_point())
    return value


def time_spiking_layers(model, inputs, masks, repeats: int) -> float:
    """Mean seconds per step spent in the spiking layers' forward + backward.

    Their inputs are captured during a real forward; each call is then replayed alone, state reset
    first, as the models do between calls in their default mode.
    """
    from spikingjelly.activation_based import functional

    calls = []
    hooks = [
        module.register_forward_pre_hook(
            lambda module, args: calls.append((module, [_detached(a) for a in args]))
        )
        for module in model.spiking_modules().values()
    ]
    model.train()
    with torch.no_grad():
        model(inputs, masks)
    for hook in hooks:
        hook.remove()
    durations = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        for module, args in calls:
            functional.reset_net(module)
            args = [_leaf(a) for a in args]
            output = module(*args)
            output = output[0] if isinstance(output, tuple) else output
            output.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
        if repeat:
            durations.append(time.perf_counter() - start)
    return sum(durations) / len(durations)


def time_soft_top_k(repeats: int, batch: int = 128, steps: int = 60, k: int = 24, iterations: int = 100) -> dict:
    """Milliseconds (wall and process CPU, the median over repeats) of MMER's soft bottom-k mask, forward +
    backward, per backward mode; and how far the unrolled score gradient is from the implicit one.

    One thread: the unrolled graph is 400 small operations, which a second thread on a busy machine slows
    down by an order of magnitude, and that would be measuring the machine, not the method."""
    from emocli.models.mmer import soft_bottom_k

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(batch, steps, generator=generator)
    real = torch.ones(batch, steps, dtype=torch.bool)
    downstream = torch.randn(batch, steps, generator=generator)
    figures, gradients = {}, {}
    for backward in ("implicit", "unrolled"):
        wall, cpu = [], []
        for _ in range(repeats + 1):
            leaf = scores.clone().requires_grad_()
            start, start_cpu = time.perf_counter(), time.process_time()
            mask = soft_bottom_k(leaf, real, k, epsilon=0.1, iterations=iterations, backward=backward)
            (mask * downstream).sum().backward()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        gradients[backward] = leaf.grad
        figures[backward] = {
            "wall_ms": round(1000 * sorted(wall[1:])[len(wall[1:]) // 2], 1),
            "cpu_ms": round(1000 * sorted(cpu[1:])[len(cpu[1:]) // 2], 1),
        }
    torch.set_num_threads(threads)
    difference = (gradients["unrolled"] - gradients["implicit"]).norm() / gradients["implicit"].norm()
    return {
        "shape": f"{batch}x{steps}, k {k}, {iterations} iterations",
        "torch_threads": 1,
        "backward": figures,
        "speed_up_wall": round(figures["unrolled"]["wall_ms"] / figures["implicit"]["wall_ms"], 1),
        "unrolled_vs_implicit_gradient_rel_diff": float(f"{float(difference):.2g}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(model_names()))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=60, help="MOSEI's aligned length")
    parser.add_argument("--dialogue-len", type=int, default=12, help="utterances per MELD-like dialogue")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)

    figures = {"batch": args.batch, "models": {}}
    print(f"{'model':<10}{'reference':<11}{'params':>13}{'s/step':>10}{'spiking share':>15}")
    for name in args.models.split(","):
        entry = get_model(name)
        reference = next(iter(entry.references))
        config = entry.config(reference)
        model = entry.build(config)
        inputs, masks = reference_inputs(entry, config, args.batch, args.seq_len, args.dialogue_len)
        seconds = time_step(model, inputs, masks, args.repeats)
        share = time_spiking_layers(model, inputs, masks, args.repeats) / seconds if entry.spiking else None
        figures["models"][name] = {
            "reference": reference,
            "parameters": count_parameters(model),
            "seconds_per_step": round(seconds, 4),
            "spiking_share": None if share is None else round(share, 4),
        }
        share_text = "-" if share is None else f"{share:.1%}"
        print(f"{name:<10}{reference:<11}{count_parameters(model):>13,}{seconds:>10.3f}{share_text:>15}")
    if "mmer" in figures["models"]:
        top_k = time_soft_top_k(max(args.repeats, 5))
        figures["mmer_soft_top_k"] = top_k
        implicit, unrolled = top_k["backward"]["implicit"], top_k["backward"]["unrolled"]
        print(
            f"MMER soft top-k ({top_k['shape']}), forward + backward: implicit {implicit['wall_ms']} ms "
            f"(CPU {implicit['cpu_ms']} ms), unrolled {unrolled['wall_ms']} ms (CPU {unrolled['cpu_ms']} ms); "
            f"score gradients differ by {top_k['unrolled_vs_implicit_gradient_rel_diff']:.2g} (relative)"
        )
    print(f"wrote {write_results('model_step', figures)}")


if __name__ == "__main__":
    main()
