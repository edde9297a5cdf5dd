"""The training loop: seeds × folds, validation-only selection, resumable epochs, DDP under torchrun.

`train_run` is what `emo train` calls. For each (seed, fold) unit it carves the splits, builds the model
from the chosen feature sets, trains with the model family's `TrainStep`, keeps the weights of the best
epoch on the selection split (validation, unless `--protocol paper` asks for the paper's own rule), then
scores those weights on the test split exactly as `emo evaluate` does (`evaluate_unit`), and writes the
run directory (runs.py). Finished units are skipped, interrupted ones resume from their checkpoint, so
re-running a command finishes what is left and nothing more.

Distributed: under `torchrun` (WORLD_SIZE > 1) every rank trains a DDP replica on its DistributedSampler
share; per-epoch evaluation shards the split across ranks and all-gathers the predictions, so each sample
is scored exactly once and every rank takes the same selection decision; rank 0 writes. The final test
scoring runs on rank 0 alone, in one process, so that it is the very computation `emo evaluate` repeats
(batch composition matters to SMILE's batch softmax in faithful mode).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emocli.core.errors import ConfigError, EmoError
from emocli.training import runs
from emocli.training.config import SchedulerConfig, TrainConfig
from emocli.training.data import (
    EmotionData,
    InputSpec,
    dataset_folds,
    eval_loader,
    load_data,
    make_splits,
    select_inputs,
    store_label_map,
    train_loader,
)
from emocli.training.normalize import Standardizer
from emocli.training.steps import TrainStep, step_class, unwrap

# Scalar metrics shown in tables, per task (all scalars are stored).
HEADLINE = {
    "single_label": ("accuracy", "weighted_f1", "macro_f1", "unweighted_accuracy"),
    "multi_label": ("jaccard_accuracy", "hamming_loss", "micro_f1", "macro_f1", "micro_precision", "micro_recall"),
}
# Selection metrics of one task mapped to the other's (metric, mode), for recipes run on the other task.
TASK_COUNTERPART = {
    "single_label": {m: ("weighted_f1", "max") for m in ("jaccard_accuracy", "micro_f1", "subset_accuracy")}
    | {"hamming_loss": ("loss", "min")},
    "multi_label": {m: ("jaccard_accuracy", "max") for m in ("accuracy", "weighted_f1", "unweighted_accuracy")},
}
PAPER_WARNING = (
    "PAPER PROTOCOL: the checkpoint was selected on the {split} split by {metric}, as the paper's code does; "
    "these numbers are optimistic and not comparable to validation-selected results"
)


# ----------------------------------------------------------------------------------- distributed


@dataclass
class Distributed:
    """This process's place in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this module initialised the process group and tears it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def gather(self, value: Any) -> list[Any]:
        if self.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def setup_distributed(device: str | None = None) -> Distributed:
    """Join torchrun's process group when there is one (gloo on CPU, NCCL on GPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device in (None, "auto") else device.startswith("cuda")
    if not use_cuda:
        chosen = torch.device("cpu")
    elif world_size > 1:
        chosen = torch.device("cuda", local_rank)  # one GPU per process
    else:
        chosen = torch.device("cuda" if device in (None, "auto") else device)
    owns = False
    if world_size > 1 and not torch.distributed.is_initialized():
        if use_cuda:
            torch.cuda.set_device(chosen)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return Distributed(rank, world_size, local_rank, chosen, owns)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # CPU kernels are deterministic already (and the switch below costs seconds of imports there).
    if deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


# ------------------------------------------------------------------------------------- the run


@dataclass
class Prepared:
    """What every unit of a run shares: data, inputs, the model configuration, the resolved config."""

    entry: Any  # registry.ModelEntry
    store_path: Path
    dataset: str
    data: EmotionData
    model_config: Any
    config: TrainConfig  # resolved: no None defaults left, folds a list or None
    step_cls: type[TrainStep]

    @property
    def conversation(self) -> bool:
        return self.entry.input_unit == "dialogue"

    @property
    def parties(self) -> int | None:
        return getattr(self.model_config, "num_parties", None)

    @property
    def folds(self) -> list[int | None]:
        return list(self.config.folds) if self.config.folds is not None else [None]

    def fingerprint(self) -> str:
        """Identity of what trains: the resolved model configuration and feature sets rather than how they
        were spelled (`--set model.d_model=30` is the default, `--feature audio=egemaps` its feature set)."""
        blob = json.dumps(
            {
                "config": self.config.model_dump(mode="json", exclude={"model_params", "features"}),
                "model": self.model_config.model_dump(mode="json"),
                "dataset": self.dataset,
                "inputs": sorted(i.feature_set for i in self.data.inputs.values()),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_model_config(entry: Any, config: TrainConfig, inputs: dict[str, InputSpec], label_map: Any) -> Any:
    """Modalities and widths from the feature sets, classes and task from the label map, then overrides."""
    fields = {
        "modalities": {m: {"dim": spec.dim, "kind": spec.kind} for m, spec in inputs.items()},
        "num_classes": len(label_map.names),
        "task": label_map.task,
        **config.model_params,
    }
    try:
        return entry.config(config.reference, **fields)
    except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid {entry.name} configuration for these features: {error}") from None


def prepare(model_name: str, store_path: str | Path, config: TrainConfig) -> Prepared:
    from emocli.features.store import FeatureStore
    from emocli.registry import get_model

    entry = get_model(model_name)
    store = FeatureStore(store_path)
    label_map = store_label_map(store)
    inputs = select_inputs(store, entry, config.modalities, config.features)
    data = load_data(store, inputs, label_map)
    model_config = build_model_config(entry, config, inputs, label_map)
    cls = step_class(model_name)
    resolved = config.resolve_with_model(model_config)
    if resolved.threshold is None:
        resolved.threshold = cls.paper_threshold
    for selection in (resolved.selection, resolved.paper.selection):
        # A recipe's metric for the other task (MMER's Jaccard on single-label RAVDESS): its counterpart.
        counterpart = TASK_COUNTERPART[label_map.task].get(selection.metric)
        if counterpart is not None:
            selection.metric, selection.mode = counterpart
    if resolved.folds == "all":
        resolved.folds = dataset_folds(data.samples)
        if not resolved.folds:
            raise ConfigError("--folds all: the dataset defines no folds", path=store.path)
    dataset = store.dataset().get("dataset", store.path.name)
    return Prepared(entry, Path(store_path).resolve(), dataset, data, model_config, resolved, cls)


@dataclass
class RunSummary:
    root: Path
    results: list[dict[str, Any]]  # one per unit: seed, fold, best_epoch, metrics
    summary: dict[str, Any]  # metrics.summarize over the units
    skipped: bool = False  # everything was already done


def train_run(
    model_name: str,
    store_path: str | Path,
    config: TrainConfig,
    out: str | Path = "runs",
    name: str | None = None,
    device: str | None = None,
    command: list[str] | None = None,
    console: Any = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary | None:
    """Train every (seed, fold) unit of a run; returns the summary on rank 0 (None on other ranks)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    ctx = setup_distributed(device)
    try:
        prepared = prepare(model_name, store_path, config)
        root = ctx.broadcast(choose_root(Path(out), prepared, name) if ctx.main else None)
        cfg = prepared.config
        if ctx.main:
            root.mkdir(parents=True, exist_ok=True)
            if not (root / runs.RUN_INFO).is_file():
                runs.write_json(root / runs.RUN_INFO, run_info(prepared, command))
            _print_setup(console, prepared, root)
        if (root / runs.RESULTS_JSON).is_file() and all(
            (runs.unit_dir(root, s, f) / runs.TEST_METRICS).is_file() for s in cfg.seeds for f in prepared.folds
        ):
            if ctx.main:
                console.print(f"[green]already finished:[/] results in {root / runs.RESULTS_JSON}")
                results = runs.read_json(root / runs.RESULTS_JSON)
                print_results(console, prepared.entry.name, results)
                return RunSummary(root, results["units"], results["summary"], skipped=True)
            return None

        for seed in cfg.seeds:
            for fold in prepared.folds:
                unit = runs.unit_dir(root, seed, fold)
                if (unit / runs.TEST_METRICS).is_file():
                    if ctx.main:
                        console.print(f"seed={seed} fold={_fold(fold)}: finished before, kept ({unit})")
                    continue
                train_unit(prepared, ctx, unit, seed, fold, console, on_epoch_end)
        if not ctx.main:
            return None
        results = collect_results(root, prepared)
        print_results(console, prepared.entry.name, results)
        console.print(f"results: {root / runs.RESULTS_CSV}")
        return RunSummary(root, results["units"], results["summary"])
    finally:
        if ctx.owns_group:
            torch.distributed.destroy_process_group()


def choose_root(out: Path, prepared: Prepared, name: str | None) -> Path:
    """The run's directory: `--name`, else the latest run of the same configuration, else a new one."""
    stem = f"{prepared.entry.name}-{prepared.dataset}"
    fingerprint = prepared.fingerprint()
    if name is not None:
        root = out / f"{stem}-{name}"
        info = root / runs.RUN_INFO
        if info.is_file() and runs.read_json(info).get("fingerprint") != fingerprint:
            raise ConfigError("holds a run of another configuration; choose another --name", path=root)
        return root
    for candidate in sorted(out.glob(f"{stem}-*"), reverse=True):
        info = candidate / runs.RUN_INFO
        if info.is_file() and runs.read_json(info).get("fingerprint") == fingerprint:
            return candidate
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root, suffix = out / f"{stem}-{stamp}", 1
    while root.exists():  # another configuration started within the same second (emo tune's trials)
        suffix += 1
        root = out / f"{stem}-{stamp}-{suffix}"
    return root


def run_info(prepared: Prepared, command: list[str] | None) -> dict[str, Any]:
    cfg = prepared.config
    return {
        "model": prepared.entry.name,
        "dataset": prepared.dataset,
        "store": str(prepared.store_path),
        "fingerprint": prepared.fingerprint(),
        "command": command or sys.argv,
        "seeds": cfg.seeds,
        "folds": cfg.folds,
        "protocol": cfg.protocol,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def _fold(fold: int | None) -> str:
    return "none" if fold is None else str(fold)


def _print_setup(console: Any, prepared: Prepared, root: Path) -> None:
    cfg = prepared.config
    inputs = ", ".join(f"{m}={s.feature_set} ({s.kind}, {s.dim})" for m, s in prepared.data.inputs.items())
    console.print(f"[bold]{prepared.entry.name}[/] on {prepared.dataset}: {len(prepared.data)} samples; {inputs}")
    if prepared.data.dropped:
        console.print("left out: " + ", ".join(f"{n} ({why})" for why, n in prepared.data.dropped.items()))
    if cfg.protocol == "paper":
        selection = cfg.effective_selection()
        console.print(f"[bold red]{PAPER_WARNING.format(split=selection.split, metric=selection.metric)}[/]")
    console.print(f"run directory: {root}")


# ------------------------------------------------------------------------------------ one unit


class EpochSchedule:
    """The learning rate per epoch: set before the epoch (step/model), or stepped after it (plateau)."""

    def __init__(self, config: SchedulerConfig, optimizer: torch.optim.Optimizer, model_config: Any):
        self.config = config
        self.optimizer = optimizer
        self.model_config = model_config
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.plateau = None
        if config.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=config.factor, patience=config.patience, threshold=config.threshold
            )
        if config.name == "model" and not hasattr(model_config, "learning_rate"):
            raise ConfigError("scheduler.name = 'model': this model's configuration has no learning_rate(epoch)")

    def before_epoch(self, epoch: int) -> float:
        if self.config.name in ("step", "model"):
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                if self.config.name == "step":
                    group["lr"] = base * self.config.gamma ** (epoch // self.config.step_size)
                else:  # the model's schedule, rescaled when optimizer.lr overrides the model's own lr
                    own = getattr(self.model_config, "lr", None) or base
                    group["lr"] = self.model_config.learning_rate(epoch) * base / own
        return self.optimizer.param_groups[0]["lr"]

    def after_epoch(self, monitored_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(monitored_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = config.optimizer
    parameters = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(parameters, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(parameters, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of a metrics dict (no per-class tables, matrices or bookkeeping)."""
    skip = {"n_samples", "threshold"}
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip
    }


def score(data: EmotionData, rows: np.ndarray, probs: np.ndarray, threshold: float, empty_rule: str) -> dict[str, Any]:
    from emocli.metrics import multi_label_metrics, single_label_metrics

    names = list(data.label_map.names)
    if data.label_map.task == "multi_label":
        return multi_label_metrics(data.targets[rows], probs, names, threshold=threshold, empty_rule=empty_rule)
    return single_label_metrics(data.targets[rows], probs, names)


@dataclass
class Predictions:
    rows: np.ndarray  # [N] row positions, sorted
    probs: np.ndarray  # [N, C]
    losses: dict[str, float]  # sample-weighted means of the step's loss terms and "loss"


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    step: TrainStep,
    data: EmotionData,
    rows: np.ndarray,
    *,
    conversation: bool,
    batch_size: int,
    device: torch.device,
    parties: int | None = None,
    ctx: Distributed | None = None,
) -> Predictions:
    """Eval-mode predictions of `rows`; with a ctx of several ranks each scores its share and all gather."""
    ctx = ctx or Distributed(device=device)
    model.eval()
    loader = eval_loader(
        data, rows, conversation=conversation, batch_size=batch_size, rank=ctx.rank,
        world_size=ctx.world_size, parties=parties,
    )
    seen, probs, sums, count = [], [], {}, 0
    for batch in loader:
        batch = batch.to(device)
        output = step.forward(model, batch)
        terms = step.losses(output, batch, training=False)
        n = len(batch.rows)
        for name, value in {**terms, "loss": sum(terms.values())}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * n
        count += n
        seen.append(batch.rows)
        probs.append(step.probabilities(batch.flatten(output.logits)).float().cpu().numpy())
    shares = ctx.gather((seen, probs, sums, count))
    all_rows = np.concatenate([r for share in shares for r in share[0]])
    all_probs = np.concatenate([p for share in shares for p in share[1]])
    total = sum(share[3] for share in shares)
    losses = {name: sum(share[2].get(name, 0.0) for share in shares) / total for name in shares[0][2]}
    order = np.argsort(all_rows, kind="stable")
    return Predictions(all_rows[order], all_probs[order], losses)


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if mode == "min" else value > best


def train_unit(
    p: Prepared,
    ctx: Distributed,
    unit: Path,
    seed: int,
    fold: int | None,
    console: Any,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    from torch.nn.parallel import DistributedDataParallel

    cfg, data = p.config, p.data
    splits = make_splits(
        data.samples, fold=fold, seed=seed, valid_fraction=cfg.effective_valid_fraction(),
        group_by=cfg.split.group_by, conversation=p.conversation,
    )
    if not len(splits["test"]):
        raise ConfigError(f"seed={seed} fold={_fold(fold)}: the test split is empty")
    selection = cfg.effective_selection()
    # No validation split (e.g. --set split.valid_fraction=0) leaves nothing to select on: keep the last epoch.
    select_last = not len(splits[selection.split])
    standardizer = Standardizer.fit(data, splits["train"]) if cfg.normalize == "standard" else None
    if ctx.main:
        write_unit_files(p, unit, splits, seed, fold, standardizer)
    if standardizer is not None:
        data = standardizer.apply(data)

    seed_everything(seed, cfg.deterministic)
    model = p.entry.build(p.model_config).to(ctx.device)
    step = p.step_cls(cfg.step, p.model_config)
    optimizer = build_optimizer(cfg, model)
    schedule = EpochSchedule(cfg.scheduler, optimizer, p.model_config)
    start, best, best_epoch, stale = 0, None, None, 0
    state = runs.load_checkpoint(unit / runs.CHECKPOINT)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, best, best_epoch, stale = state["epoch"], state["best"], state["best_epoch"], state["stale"]
        rng = state["rng"]
        runs.set_rng_state(rng[ctx.rank] if len(rng) == ctx.world_size else rng[0])
        if ctx.main:
            runs.truncate_jsonl(unit / runs.METRICS, start)
            console.print(f"seed={seed} fold={_fold(fold)}: resuming after epoch {start}")
    elif ctx.main:
        (unit / runs.METRICS).unlink(missing_ok=True)
    ctx.barrier()

    trained = model
    if ctx.world_size > 1:
        # torch >= 2.14 renamed broadcast_buffers (rank 0's buffers copied before each forward).
        renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": cfg.distributed.broadcast_buffers}
        trained = DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=cfg.distributed.find_unused_parameters,
            **sync,
        )
    loader = train_loader(
        data, splits["train"], conversation=p.conversation, batch_size=cfg.batch_size, seed=seed,
        rank=ctx.rank, world_size=ctx.world_size, drop_last=cfg.drop_last, parties=p.parties,
    )
    clip = cfg.clip_grad_norm or None
    eval_splits = ["valid"] if len(splits["valid"]) else []
    if selection.split == "test":
        eval_splits.append("test")

    with _progress(console, enabled=ctx.main) as progress:
        for epoch in range(start, cfg.epochs):
            started = time.perf_counter()
            lr = schedule.before_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            trained.train()
            task = progress.add_task(f"seed={seed} fold={_fold(fold)} epoch {epoch + 1}/{cfg.epochs}", total=len(loader), loss="")
            sums, count, seen, probs = {}, 0, [], []
            for batch in loader:
                batch = batch.to(ctx.device)
                out = step.train_step(trained, batch, optimizer, clip)
                n = len(batch.rows)
                for name, value in out.losses.items():
                    sums[name] = sums.get(name, 0.0) + value * n
                count += n
                seen.append(batch.rows)
                probs.append(step.probabilities(out.logits).float().cpu().numpy())
                progress.update(task, advance=1, loss=f"loss {out.losses['loss']:.4f}")
            progress.remove_task(task)

            shares = ctx.gather((sums, count, seen, probs))
            total = sum(s[1] for s in shares)
            train_record = {name: sum(s[0][name] for s in shares) / total for name in shares[0][0]}
            # Predictions made while training (dropout on, weights moving), as the papers log them; rows a
            # DistributedSampler repeated to even out the shares count once.
            rows = np.concatenate([r for s in shares for r in s[2]])
            train_probs = np.concatenate([q for s in shares for q in s[3]])
            rows, first = np.unique(rows, return_index=True)
            train_record.update(scalars(score(data, rows, train_probs[first], cfg.threshold, cfg.empty_rule)))
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train": train_record}
            for split in eval_splits:
                pred = predict(
                    unwrap(trained), step, data, splits[split], conversation=p.conversation,
                    batch_size=cfg.eval_batch_size, device=ctx.device, parties=p.parties, ctx=ctx,
                )
                record[split] = {**pred.losses, **scalars(score(data, pred.rows, pred.probs, cfg.threshold, cfg.empty_rule))}
            schedule.after_epoch(record["valid"]["loss"] if "valid" in record else train_record["loss"])

            if select_last:
                improved = True
            else:
                if selection.metric not in record[selection.split]:
                    known = ", ".join(record[selection.split])
                    raise ConfigError(f"selection metric {selection.metric!r} is not recorded; choose one of {known}")
                value = record[selection.split][selection.metric]
                improved = _better(value, best, selection.mode)
            if improved:
                best = None if select_last else value
                best_epoch, stale = epoch + 1, 0
                if ctx.main:
                    runs.save_weights(unwrap(trained), unit / runs.WEIGHTS, {"epoch": str(epoch + 1)})
            else:
                stale += 1
            record.update(seconds=round(time.perf_counter() - started, 3), selected=improved)
            rng = ctx.gather(runs.rng_state())
            if ctx.main:
                runs.append_jsonl(unit / runs.METRICS, record)
                runs.save_checkpoint(
                    unit / runs.CHECKPOINT,
                    {
                        "model": unwrap(trained).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "epoch": epoch + 1,
                        "best": best,
                        "best_epoch": best_epoch,
                        "stale": stale,
                        "rng": rng,
                    },
                )
                _print_epoch(console, progress, record, eval_splits, selection.metric, cfg.epochs)
            ctx.barrier()
            if on_epoch_end is not None:
                on_epoch_end(record)
            if cfg.early_stopping is not None and stale >= cfg.early_stopping:
                break

    if ctx.main:
        finish_unit(p, unit, seed, fold, best_epoch, best, console)
    ctx.barrier()


def write_unit_files(
    p: Prepared, unit: Path, splits: dict[str, np.ndarray], seed: int, fold: int | None, standardizer: Standardizer | None
) -> None:
    """What `emo evaluate` and `emo predict` need to rebuild the model and its inputs."""
    unit.mkdir(parents=True, exist_ok=True)
    if standardizer is not None:
        standardizer.save(unit / runs.NORMALIZATION)
    runs.write_json(
        unit / runs.CONFIG,
        {
            "model_name": p.entry.name,
            "model": p.model_config.model_dump(mode="json"),
            "train": p.config.model_dump(mode="json"),
            "dataset": p.dataset,
            "store": str(p.store_path),
            "seed": seed,
            "fold": fold,
        },
    )
    runs.write_json(unit / runs.LABEL_MAP, p.data.label_map.to_json())
    runs.write_json(
        unit / runs.FEATURE_SPEC,
        {
            "input_unit": p.entry.input_unit,
            "inputs": {m: spec.to_json() for m, spec in p.data.inputs.items()},
        },
    )
    ids = p.data.samples["sample_id"]
    runs.write_json(unit / runs.SPLITS, {name: ids.iloc[rows].tolist() for name, rows in splits.items()})


def finish_unit(
    p: Prepared, unit: Path, seed: int, fold: int | None, best_epoch: int | None, best: float | None, console: Any
) -> None:
    """Score the best weights on the test split, then plots and model card; the checkpoint goes.

    The selection split's score of those weights is kept beside the test metrics: it is what
    hyperparameters may be compared on without looking at test."""
    from emocli.training.report import plot_confusion_matrix, plot_learning_curves, render_model_card

    cfg = p.config
    selection = cfg.effective_selection()
    result = evaluate_unit(unit, "test", data=p.data, spiking_report=p.entry.spiking)
    result["best_epoch"] = best_epoch
    result["selection_score"] = {"split": selection.split, "metric": selection.metric, "value": best}
    runs.write_json(unit / runs.TEST_METRICS, result)
    plot_learning_curves(unit / runs.METRICS, unit / "learning_curves.png", selection.metric)
    plot_confusion_matrix(confusion(result), p.data.label_map.names, unit / "confusion_matrix.png")
    card = card_info(p, unit.parent.parent.name + f" (seed {seed}, fold {_fold(fold)})", [result["metrics"]])
    card["seeds"], card["folds"] = [seed], None if fold is None else [fold]
    if result.get("spiking"):
        card["spiking"] = result["spiking"]
    card["parameters"] = result["parameters"]
    (unit / "README.md").write_text(render_model_card(card))
    (unit / runs.CHECKPOINT).unlink(missing_ok=True)


def confusion(result: dict[str, Any]) -> np.ndarray:
    """Single-label: the confusion matrix. Multi-label: true label (rows) × predicted label (columns)
    counts over the samples, i.e. how often a sample carrying label i was predicted label j."""
    if "confusion_matrix" in result["metrics"]:
        return np.asarray(result["metrics"]["confusion_matrix"])
    return np.asarray(result["label_confusion"])


def card_info(p: Prepared, name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = p.config
    selection = cfg.effective_selection()
    info = {
        "name": name,
        "model": {
            "name": p.entry.name,
            "title": p.entry.title,
            "paper": p.entry.paper,
            "faithful": bool(getattr(p.model_config, "faithful", False)),
        },
        "task": p.data.label_map.task,
        "dataset": {"name": p.dataset, "labels": list(p.data.label_map.names)},
        "features": {
            m: {"extractor": s.extractor, "params": s.extractor_spec.get("params", {}), "set": s.feature_set}
            for m, s in p.data.inputs.items()
        },
        "protocol": cfg.protocol,
        "selection": selection.model_dump(),
        "seeds": cfg.seeds,
        "folds": cfg.folds,
        "results": results,
    }
    if cfg.protocol == "paper" and cfg.paper.note:
        info["protocol_note"] = cfg.paper.note
    if p.data.label_map.task == "multi_label":
        info.update(threshold=cfg.threshold, empty_rule=cfg.empty_rule)
    return info


# ------------------------------------------------------------------------------------ evaluation


def evaluate_unit(
    unit: Path,
    split: str = "test",
    *,
    data: EmotionData | None = None,
    store: str | Path | None = None,
    threshold: float | None = None,
    empty_rule: str | None = None,
    device: str | None = None,
    spiking_report: bool = False,
) -> dict[str, Any]:
    """Rebuild a unit's model from its directory and score one split: what `emo evaluate` prints.

    The predictions go through `predict` in one process with the run's eval batch size and the split's
    stored sample order, so evaluating a finished run reproduces its test_metrics.json exactly. `data`
    holds the store's values: the unit's stored standardisation is applied here.
    """
    from emocli.core.types import LabelMap
    from emocli.features.store import FeatureStore
    from emocli.models.base import count_parameters

    trained = runs.TrainedUnit.read(unit)
    train_cfg = TrainConfig.model_validate(trained.config["train"])
    model = trained.build_model()
    torch_device = torch.device(device if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(torch_device)
    if data is None:
        inputs = {m: InputSpec.from_json(s) for m, s in trained.feature_spec["inputs"].items()}
        data = load_data(FeatureStore(store or trained.config["store"]), inputs, LabelMap.from_json(trained.label_map))
    standardizer = trained.standardizer()
    if standardizer is not None:
        data = standardizer.apply(data)
    ids = runs.read_json(unit / runs.SPLITS).get(split)
    if ids is None:
        raise EmoError(f"the run has no {split!r} split (splits.json)", path=unit)
    position = {sid: i for i, sid in enumerate(data.samples["sample_id"])}
    missing = [sid for sid in ids if sid not in position]
    if missing:
        raise EmoError(f"{len(missing)} {split} samples have no features in the store (e.g. {missing[0]!r})", path=unit)
    if not ids:
        raise EmoError(f"the {split} split of this run is empty", path=unit)
    rows = np.sort(np.array([position[sid] for sid in ids]))
    step = step_class(trained.config["model_name"])(train_cfg.step, model.config)
    threshold = train_cfg.threshold if threshold is None else threshold
    empty_rule = empty_rule or train_cfg.empty_rule
    conversation = trained.feature_spec["input_unit"] == "dialogue"
    parties = getattr(model.config, "num_parties", None)

    spiking: dict[str, Any] = {}
    if spiking_report and hasattr(model, "monitor_spikes"):
        with model.monitor_spikes() as monitor:
            pred = predict(model, step, data, rows, conversation=conversation, batch_size=train_cfg.eval_batch_size,
                           device=torch_device, parties=parties)
        spiking["firing_rates"] = monitor.firing_rates()
        spiking["energy"] = energy_per_sample(model, data, rows, conversation, parties, torch_device)
        # The monitored pass is the scored pass: both are the same deterministic eval forward.
    else:
        pred = predict(model, step, data, rows, conversation=conversation, batch_size=train_cfg.eval_batch_size,
                       device=torch_device, parties=parties)
    metrics = score(data, pred.rows, pred.probs, threshold, empty_rule)
    if data.label_map.task == "multi_label":
        y_pred = (pred.probs > threshold).astype(np.int64)
        label_confusion = (data.targets[pred.rows].T.astype(np.int64) @ y_pred).tolist()
    selection = train_cfg.effective_selection()
    result: dict[str, Any] = {
        "split": split,
        "n_samples": len(rows),
        "protocol": train_cfg.protocol,
        "selection": selection.model_dump(),
        "losses": pred.losses,
        "metrics": metrics,
        "parameters": count_parameters(model),
    }
    if data.label_map.task == "multi_label":
        result["label_confusion"] = label_confusion
    if train_cfg.protocol == "paper":
        result["warning"] = PAPER_WARNING.format(split=selection.split, metric=selection.metric)
    if spiking:
        result["spiking"] = spiking
    return result


def energy_per_sample(
    model: torch.nn.Module, data: EmotionData, rows: np.ndarray, conversation: bool, parties: int | None, device: torch.device
) -> dict[str, Any]:
    """Compute-only energy of one forward pass on the first (up to 8) items, per sample."""
    loader = eval_loader(data, rows, conversation=conversation, batch_size=8, parties=parties)
    batch = next(iter(loader)).to(device)
    estimate = model.energy(batch.inputs, batch.masks).as_dict()
    n = len(batch.rows)
    return {**estimate, "samples": n, "energy_pj_per_sample": estimate["energy_pj"] / n}


# --------------------------------------------------------------------------------------- results


def collect_results(root: Path, p: Prepared) -> dict[str, Any]:
    """results.json / results.csv / README.md at the run root: every unit and mean ± std over them."""
    import pandas as pd

    from emocli.metrics import summarize
    from emocli.training.report import render_model_card

    cfg = p.config
    units, metrics, scores = [], [], []
    for seed in cfg.seeds:
        for fold in p.folds:
            result = runs.read_json(runs.unit_dir(root, seed, fold) / runs.TEST_METRICS)
            score = (result.get("selection_score") or {}).get("value")
            units.append({"seed": seed, "fold": fold, "best_epoch": result.get("best_epoch"),
                          "selection_score": score, **scalars(result["metrics"])})
            metrics.append(result["metrics"])
            scores.append(score)
    summary = summarize(metrics)
    if None not in scores:  # absent when a unit kept its last epoch (no validation rows)
        spread = summarize([{"selection_score": score} for score in scores])
        summary["mean"]["selection_score"] = spread["mean"]["selection_score"]
        summary["std"]["selection_score"] = spread["std"]["selection_score"]
    selection = cfg.effective_selection()
    results: dict[str, Any] = {
        "model": p.entry.name,
        "dataset": p.dataset,
        "task": p.data.label_map.task,
        "protocol": cfg.protocol,
        "selection": selection.model_dump(),
        "units": units,
        "summary": summary,
    }
    if cfg.protocol == "paper":
        results["warning"] = PAPER_WARNING.format(split=selection.split, metric=selection.metric)
    table = pd.DataFrame(units)
    columns = [c for c in table.columns if c not in ("seed", "fold", "best_epoch")]
    mean = {"seed": "mean", **{c: summary["mean"].get(c) for c in columns}}
    std = {"seed": "std", **{c: summary["std"].get(c) for c in columns}}
    table = pd.concat([table, pd.DataFrame([mean, std])], ignore_index=True)
    table.insert(0, "protocol", cfg.protocol)
    temporary = root / f".{runs.RESULTS_CSV}.tmp"
    table.to_csv(temporary, index=False)
    os.replace(temporary, root / runs.RESULTS_CSV)
    runs.write_json(root / runs.RESULTS_JSON, results)
    (root / "README.md").write_text(render_model_card(card_info(p, root.name, metrics)))
    return results


def print_results(console: Any, model_name: str, results: dict[str, Any], split: str = "test") -> None:
    from rich.table import Table

    headline = HEADLINE[results["task"]]
    paper = results.get("protocol") == "paper"
    title = f"{model_name} on {results['dataset']}: {split}"
    if paper:
        title = f"[bold red]{results['warning']}[/]\n" + title
    table = Table(title=title, title_justify="left")
    # Training results carry the selection split's score of each unit's best weights (emo evaluate's do not).
    selection = results.get("selection") if "selection_score" in results["summary"]["mean"] else None
    columns = ("selection_score", *headline) if selection else headline
    for column in ("seed", "fold", "best epoch"):
        table.add_column(column, justify="right")
    if selection:
        table.add_column(f"{selection['split']} {selection['metric']}", justify="right", style="dim")
    for column in headline:
        table.add_column(f"{split} {column}" if selection else column, justify="right")
    for unit in results["units"]:
        table.add_row(str(unit["seed"]), _fold(unit["fold"]), str(unit["best_epoch"]),
                      *(f"{unit.get(k, float('nan')):.4f}" for k in columns))
    summary = results["summary"]
    if summary["n"] > 1:
        table.add_row("mean ± std", "", "", *(f"{summary['mean'][k]:.4f} ± {summary['std'][k]:.4f}" for k in columns),
                      style="bold")
    console.print(table)


# ------------------------------------------------------------------------------------- progress


class _Quiet:
    """Stands in for rich's Progress when nothing is shown (not a TTY, or not rank 0)."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def remove_task(self, *args: Any) -> None:
        return None


def _progress(console: Any, enabled: bool) -> Any:
    if not (enabled and console.is_terminal):
        return _Quiet()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
        TimeRemainingColumn(), console=console, transient=True,
    )


def _print_epoch(console: Any, progress: Any, record: dict[str, Any], splits: list[str], metric: str, epochs: int) -> None:
    if isinstance(progress, _Quiet):
        return
    parts = [f"epoch {record['epoch']}/{epochs}", f"lr {record['lr']:.2e}", f"train loss {record['train']['loss']:.4f}"]
    for split in splits:
        values = record[split]
        parts.append(f"{split} loss {values['loss']:.4f}")
        if metric in values and metric != "loss":
            parts.append(f"{split} {metric} {values[metric]:.4f}")
    remaining = record["seconds"] * (epochs - record["epoch"])
    parts.append(f"{record['seconds']:.1f}s ({remaining:.0f}s left)")
    console.print(("* " if record["selected"] else "  ") + " · ".join(parts), highlight=False)
