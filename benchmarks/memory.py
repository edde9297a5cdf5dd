"""Peak resident memory of one training step (forward, the paper's losses, backward, optimizer step) of every
registry model at its reference configuration and its training recipe's batch, on this machine's CPU:
does each one train within the budget (8 GiB)?

Each case runs in a fresh process (this script with --case), which builds the model, one batch and the
recipe's optimizer, then runs two steps through the model's `TrainStep` (the second one with the
optimizer's state allocated, as in every later step) and reports the process's peak resident set size
(`getrusage` ru_maxrss) and its resident size before the first step. The parent samples the child's
resident size from /proc and stops it above --limit-gb, so a case that would exhaust a shared machine is
reported as over the limit instead. The batch sizes are the training presets' (emocli/presets/train).

Inputs are random at the reference widths, in the shapes of the data:
  * SMILE and MMER: aligned CMU-MOSEI, 60 steps per modality.
  * CFN-SR: RAVDESS clips of 30 frames of 224 x 224 and MFCCs [212, 13].
  * SpikEmo: batches of whole dialogues, the B longest (the largest padded batch an epoch can draw).
    MELD: the dialogue lengths of MELD's training split, counted from meld/train_sent_emo.csv in
    ../shared/data (or $EMO_SHARED_DATA): 1038 dialogues, 9989 utterances, the longest 24.
    IEMOCAP: the lengths below, 151 dialogues, 7380 utterances, the longest 110, counted from
    Datasets/IEMOCAP/utterance-ordered.json and labels.json of https://github.com/tae898/erc (commit 9073e03),
    keeping the utterances labelled with the six classes SpikEmo and MultiEMO train on (happiness, sadness,
    neutral, anger, excited, frustration).
The cases named .../no-checkpointing turn the models' activation checkpointing off, for comparison
(SpikEmo: `spike_checkpoint_chunks=0`, `fusion_checkpointing=false`; MMER: `encoder_checkpointing=false`;
CFN-SR: `video_checkpointing=false`).

    python benchmarks/memory.py [--cases spikemo/meld,cfnsr/ravdess] [--limit-gb 12] [--budget-gb 8]
                                [--threads 1] [--batch N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
SHARED_DATA = Path(os.environ.get("EMO_SHARED_DATA", REPO.parent / "shared" / "data"))
MELD_TRAIN = SHARED_DATA / "meld" / "train_sent_emo.csv"

# IEMOCAP, six classes: utterances per dialogue, sorted (source and counting rule in the module docstring).
IEMOCAP_DIALOGUE_LENGTHS = (
    8, 18, 18, 20, 23, 24, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27, 28, 28, 29, 29, 30, 30, 31, 32, 32, 33, 34,
    34, 34, 34, 35, 35, 36, 37, 37, 37, 37, 38, 38, 38, 39, 39, 40, 40, 40, 40, 41, 41, 41, 41, 42, 42, 43, 43, 43,
    43, 43, 43, 43, 44, 44, 44, 44, 44, 44, 45, 45, 45, 46, 46, 47, 47, 47, 47, 47, 47, 48, 49, 49, 50, 50, 50, 51,
    51, 51, 51, 52, 52, 52, 52, 52, 53, 53, 53, 53, 53, 53, 53, 54, 54, 54, 54, 54, 56, 57, 57, 58, 58, 58, 58, 59,
    59, 59, 59, 59, 60, 60, 60, 61, 61, 61, 62, 62, 62, 63, 63, 63, 63, 64, 66, 66, 67, 69, 69, 69, 72, 74, 74, 75,
    77, 78, 79, 83, 83, 83, 84, 87, 91, 94, 110,
)  # fmt: skip

SPIKEMO_PLAIN = {"spike_checkpoint_chunks": 0, "fusion_checkpointing": False}
# name -> (model, reference, training preset, dialogue lengths for conversation models, model overrides)
CASES = {
    "smile/mosei": ("smile", "mosei", "smile-mosei", None, {}),
    "mmer/mosei": ("mmer", "mosei", "mmer-mosei", None, {}),
    "mmer/mosei/no-checkpointing": ("mmer", "mosei", "mmer-mosei", None, {"encoder_checkpointing": False}),
    "cfnsr/ravdess": ("cfnsr", "ravdess", "cfnsr-ravdess", None, {}),
    "cfnsr/ravdess/no-checkpointing": ("cfnsr", "ravdess", "cfnsr-ravdess", None, {"video_checkpointing": False}),
    "spikemo/meld": ("spikemo", "meld", "spikemo-meld", "meld", {}),
    "spikemo/meld/no-checkpointing": ("spikemo", "meld", "spikemo-meld", "meld", SPIKEMO_PLAIN),
    "spikemo/iemocap": ("spikemo", "iemocap", "spikemo-iemocap", "iemocap", {}),
    "spikemo/iemocap/no-checkpointing": ("spikemo", "iemocap", "spikemo-iemocap", "iemocap", SPIKEMO_PLAIN),
    # The generic SpikEmo preset's batch of 64 dialogues on IEMOCAP-sized ones.
    "spikemo/iemocap/batch-64": ("spikemo", "iemocap", "spikemo", "iemocap", {}),
}  # fmt: skip


def train_config(name: str):
    """The case's training configuration: its recipe (the training preset, with its extends chain)."""
    from emocli.training.config import resolve_config

    model_name, _, preset, _, _ = CASES[name]
    return resolve_config(model_name, preset)


def case_config(name: str):
    """The model configuration of a case: the named reference (the registry lists the ones with published
    parameter counts, and every one builds) with the case's overrides."""
    from emocli.models.registry import get_model

    model_name, reference, _, _, overrides = CASES[name]
    return get_model(model_name).config(reference, **overrides)


def dialogue_lengths(dataset: str) -> list[int]:
    if dataset == "iemocap":
        return list(IEMOCAP_DIALOGUE_LENGTHS)
    if not MELD_TRAIN.is_file():
        raise SystemExit(f"MELD's annotations not found at {MELD_TRAIN}: the MELD-sized cases need them")
    with MELD_TRAIN.open(encoding="utf-8") as handle:
        return sorted(Counter(row["Dialogue_ID"] for row in csv.DictReader(handle)).values())


def make_batch(entry, config, batch: int, dataset: str | None):
    """Random inputs in the reference widths and the data's shapes, with targets (see the module docstring)."""
    import numpy as np
    import torch

    from emocli.data.batches import Batch

    generator = torch.Generator().manual_seed(0)
    inputs, masks = {}, {}
    if dataset is not None:  # dialogues: the B longest, padded to the longest
        lengths = torch.tensor(dialogue_lengths(dataset)[-batch:])
        masks["utterance"] = torch.arange(int(lengths.max())) < lengths[:, None]
        shape = tuple(masks["utterance"].shape)
        for name, spec in config.modalities.items():
            inputs[name] = torch.randn(*shape, spec.dim, generator=generator)
        inputs["speaker"] = torch.randint(0, config.num_parties, shape, generator=generator)
        count = int(lengths.sum())
    else:
        for name, spec in config.modalities.items():
            if spec.kind == "clip":  # RAVDESS: 30 face frames of 224 x 224
                inputs[name] = torch.randn(batch, 3, 30, 224, 224, generator=generator)
                continue
            steps = 212 if entry.name == "cfnsr" else 60  # CFN-SR's MFCCs [212, 13]; MOSEI's aligned 60 steps
            inputs[name] = torch.randn(batch, steps, spec.dim, generator=generator)
            masks[name] = torch.ones(batch, steps, dtype=torch.bool)
        count = batch
    if config.task == "multi_label":
        targets = (torch.rand(count, config.num_classes, generator=generator) < 0.3).float()
    else:
        targets = torch.randint(0, config.num_classes, (count,), generator=generator)
    return Batch(inputs, masks, targets, np.arange(count))


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20


def run_case(name: str, batch_override: int | None) -> dict:
    """In the child process: two training steps of one case; its memory and time as a dict."""
    import torch

    from emocli.models.base import count_parameters
    from emocli.models.registry import get_model
    from emocli.training.steps import STEPS

    model_name, reference, preset, dataset, _ = CASES[name]
    entry = get_model(model_name)
    config = case_config(name)
    recipe = train_config(name)
    batch_size = batch_override or recipe.batch_size
    torch.manual_seed(0)
    model = entry.build(config).train()
    batch = make_batch(entry, config, batch_size, dataset)
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    optimizer = optimizer_class[recipe.optimizer.name](model.parameters(), lr=recipe.optimizer.lr)
    step = STEPS[entry.train_step](recipe.step, entry.objective(recipe.loss, config))
    clip = recipe.clip_grad_norm or None
    before = resident_mib()
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        step.train_step(model, batch, optimizer, clip)
        seconds.append(time.perf_counter() - start)
    shape = {k: list(v.shape) for k, v in batch.inputs.items() if k != "speaker"}
    return {
        "model": model_name,
        "reference": reference,
        "preset": preset,
        "batch": batch_size,
        "inputs": " ".join(f"{k} {'x'.join(map(str, v[1:]))}" for k, v in shape.items()),
        "parameters": count_parameters(model),
        "spike_checkpoint_chunks": getattr(config, "spike_checkpoint_chunks", None),
        "rss_before_step_mib": round(before),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "seconds_first_step": round(seconds[0], 1),
        "seconds_second_step": round(seconds[1], 1),
    }


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def measure(name: str, limit_mib: float, threads: int, batch: int | None) -> dict:
    """Run one case in a fresh process; stop it when its resident memory passes the limit."""
    command = [sys.executable, __file__, "--case", name, "--threads", str(threads)]
    command += ["--batch", str(batch)] if batch else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampled_peak, stopped = 0.0, False
    while process.poll() is None:
        sampled_peak = max(sampled_peak, rss_mib(process.pid))
        if sampled_peak > limit_mib:
            process.kill()
            stopped = True
        time.sleep(0.05)
    output, errors = process.communicate()
    if stopped:
        model_name, reference, preset, *_ = CASES[name]
        return {"model": model_name, "reference": reference, "preset": preset, "batch": batch or train_config(name).batch_size,
                "peak_rss_mib": f"over {round(limit_mib)} (stopped)"}  # fmt: skip
    if process.returncode != 0:
        raise SystemExit(f"case {name} failed ({process.returncode}):\n{errors}")
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--limit-gb", type=float, default=12.0, help="stop a case whose resident memory passes this")
    parser.add_argument("--budget-gb", type=float, default=8.0, help="the memory a reference configuration should fit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each case's process")
    parser.add_argument("--batch", type=int, help="one batch size for every case instead of the recipes' (scaling)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # the child process: run one case, print JSON
    args = parser.parse_args()
    if args.case:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_case(args.case, args.batch)))
        return

    budget_mib = args.budget_gb * 1024
    figures: dict = {"budget_gib": args.budget_gb, "torch_threads": args.threads, "cases": {}}
    for name in args.cases.split(","):
        result = measure(name, args.limit_gb * 1024, args.threads, args.batch)
        peak = result["peak_rss_mib"]
        result["within_budget"] = isinstance(peak, int) and peak <= budget_mib
        figures["cases"][name] = result
        print(f"{name:<34} batch {result.get('batch', '?'):>4}  peak {peak} MiB  "
              f"{'within' if result['within_budget'] else 'OVER'} {args.budget_gb:g} GiB", flush=True)  # fmt: skip
    print(f"wrote {write_results('memory', figures)}")


if __name__ == "__main__":
    main()
