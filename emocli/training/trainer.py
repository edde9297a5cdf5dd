"""`train_run`, what `emo train` calls: every (seed, fold) unit of a run, then the run's results.

For each unit, `UnitTrainer` (loop.py) carves the splits, trains with the model's objective and train
step, keeps the weights of the best epoch on the selection split (validation, unless `--protocol paper`
asks for the paper's own rule), then scores those weights on the test split exactly as `emo evaluate`
does. Finished units are skipped and interrupted ones resume, so re-running a command finishes what is
left and nothing more. Under `torchrun` (WORLD_SIZE > 1) the units train with DDP; rank 0 writes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emocli.core.errors import EmoError
from emocli.core.io import check_writable, make_folder
from emocli.runs import layout
from emocli.runs.config import TrainConfig
from emocli.runs.results import collect_results, fold_label, print_results
from emocli.training import tracking
from emocli.training.distributed import setup_distributed
from emocli.training.loop import TrainingCallback, UnitTrainer
from emocli.training.prepare import card_info, choose_root, plan, run_info
from emocli.training.progress import RunClock, print_setup
from emocli.training.tracking import TrackerName


@dataclass
class RunSummary:
    root: Path
    results: list[dict[str, Any]]  # one per unit: seed, fold, best_epoch, metrics
    summary: dict[str, Any]  # metrics.summarize over the units
    skipped: bool = False  # everything was already done


def trained_anything(root: Path) -> bool:
    """Whether some unit of the run has kept weights or a checkpoint: work a failure must not delete."""
    return any(next(root.glob(f"seed=*/fold=*/{name}"), None) for name in (layout.CHECKPOINT, layout.WEIGHTS))


def _finished_results(root: Path) -> dict[str, Any] | None:
    """results.json of a finished run; None when it is absent or damaged (the results are collected again)."""
    path = root / layout.RESULTS_JSON
    if not path.is_file():
        return None
    try:
        results = layout.read_json(path, dict)
    except EmoError:
        return None
    return results if {"units", "summary", "task", "dataset"} <= set(results) else None


def train_run(
    model_name: str,
    store_path: str | Path,
    config: TrainConfig,
    out: str | Path = "runs",
    name: str | None = None,
    device: str | None = None,
    command: list[str] | None = None,
    console: Any = None,
    callbacks: list[TrainingCallback] | tuple = (),
    tracker: TrackerName = "none",
) -> RunSummary | None:
    """Train every (seed, fold) unit of a run; returns the summary on rank 0 (None on other ranks)."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    ctx = setup_distributed(device)
    try:
        run = plan(model_name, store_path, config)
        root = ctx.broadcast(choose_root(Path(out), run, name) if ctx.main else None)
        cfg = run.config
        finished = _finished_results(root) if all(
            (layout.unit_dir(root, s, f) / layout.TEST_METRICS).is_file() for s in cfg.seeds for f in run.folds
        ) else None
        if finished is not None:
            if ctx.main:
                console.print(f"[green]already finished:[/] results in {escape(str(root / layout.RESULTS_JSON))}")
                print_results(console, run.entry.name, finished)
                return RunSummary(root, finished["units"], finished["summary"], skipped=True)
            return None

        if ctx.main:
            check_writable(root, folder=True)  # before the features load, not after an epoch
        data = run.load_data()
        created = not root.exists()
        try:
            if ctx.main:
                make_folder(root)
                callbacks = [*callbacks, *tracking.tracker(tracker, Path(out), f"{run.entry.name}-{run.dataset}")]
                if not (root / layout.RUN_INFO).is_file():
                    layout.write_json(root / layout.RUN_INFO, run_info(run, command))
                print_setup(console, run, data, root)
            units = [(seed, fold) for seed in cfg.seeds for fold in run.folds]
            to_train = [(s, f) for s, f in units if not (layout.unit_dir(root, s, f) / layout.TEST_METRICS).is_file()]
            clock = RunClock(cfg.epochs)
            for seed, fold in units:
                unit = layout.unit_dir(root, seed, fold)
                if (seed, fold) not in to_train:
                    if ctx.main:
                        (unit / layout.CHECKPOINT).unlink(missing_ok=True)  # killed just after finishing
                        console.print(f"seed={seed} fold={fold_label(fold)}: finished before, kept ({unit})",
                                      markup=False)
                    continue
                clock.units_after = len(to_train) - to_train.index((seed, fold)) - 1
                UnitTrainer(run, data, ctx, unit, seed, fold, console, callbacks, clock=clock).fit()
        except Exception:
            # A run that failed before anything trained (a setting that does not fit the data, a full disk)
            # leaves no half folder behind; one with trained epochs stays, and the same command resumes it.
            if created and ctx.main and not trained_anything(root):
                shutil.rmtree(root, ignore_errors=True)
            raise
        if not ctx.main:
            return None
        results = collect_results(root, card_info(run, root.name, []), run.folds,
                                  show=lambda results: print_results(console, run.entry.name, results))
        console.print(f"results: {root / layout.RESULTS_CSV}", markup=False)
        return RunSummary(root, results["units"], results["summary"])
    finally:
        if ctx.owns_group:
            torch.distributed.destroy_process_group()
