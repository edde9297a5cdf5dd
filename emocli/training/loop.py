"""Training one (seed, fold) unit, as a loop with hooks (in the manner of SpeechBrain's Brain):

    fit()
      setup()                 splits, standardisation, unit files, model, step, optimiser, resume
      for each epoch:
        train_epoch()         fit_batch() over the shuffled training batches
        evaluate_epoch()      the selection split(s), scored by runs.inference.score_rows
        on_epoch_end()        selection, best weights, checkpoint, epoch line, callbacks
      on_fit_end()            the best weights scored on test (runs.evaluation), plots, model card

Interrupted units resume from their checkpoint (epochs after it run again, so a resumed unit equals an
uninterrupted one bit for bit on the CPU). Under torchrun every rank trains a DDP replica; rank 0 writes.
Callbacks (`TrainingCallback`) see every epoch's record and the finished unit: experiment trackers and
tests hook in there.
"""

from __future__ import annotations

import inspect
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import make_folder, write_text
from emocli.data.batches import Batch, train_loader
from emocli.data.normalize import Standardizer, group_keys, standardize_groups
from emocli.data.splits import make_splits
from emocli.data.tables import EmotionData
from emocli.models.blocks.spiking import SpikingModel
from emocli.runs import layout
from emocli.runs.card import plot_confusion_matrix, plot_learning_curves, render_model_card
from emocli.runs.config import TrainConfig
from emocli.runs.evaluation import confusion, evaluate_unit, metrics_of, scalars
from emocli.runs.inference import score_rows
from emocli.runs.results import fold_label
from emocli.training.distributed import Distributed, seed_everything
from emocli.training.prepare import Plan, card_info
from emocli.training.progress import RunClock, epoch_line, progress_bar, report_epoch
from emocli.training.schedule import EpochSchedule, build_optimizer
from emocli.training.steps import STEPS, StepOutput, unwrap


class TrainingCallback(Protocol):
    def on_unit_start(self, unit: Path, description: dict[str, Any]) -> None: ...  # config and environment

    def on_epoch_end(self, unit: Path, record: dict[str, Any]) -> None: ...

    def on_unit_end(self, unit: Path, result: dict[str, Any]) -> None: ...


def balanced_class_weights(config: TrainConfig, data: EmotionData, rows: np.ndarray) -> TrainConfig:
    """`loss.class_weights = "balanced"` resolved for one unit: n / (classes present x count) for each class of its
    training rows (scikit-learn's "balanced"), 0 for classes it has none of; the unit's config records the list."""
    if data.label_map.task != "single_label":
        raise ConfigError("loss.class_weights applies to single-label data")
    counts = np.bincount(np.asarray(data.targets)[rows], minlength=len(data.label_map.names)).astype(float)
    present = counts > 0
    weights = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    return config.model_copy(update={"loss": {**config.loss, "class_weights": [round(float(w), 6) for w in weights]}})


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if mode == "min" else value > best


class UnitTrainer:
    def __init__(
        self,
        plan: Plan,
        data: EmotionData,
        ctx: Distributed,
        unit: Path,
        seed: int,
        fold: int | None,
        console: Any,
        callbacks: list[TrainingCallback] | tuple = (),
        splits: dict[str, np.ndarray] | None = None,
        protocol: dict[str, Any] | None = None,
        clock: RunClock | None = None,
    ):
        """`splits`: train/valid/test row positions given by a protocol of the caller's (emo cross-corpus), instead
        of the dataset's split or `fold`; `protocol` describes them in the unit's config.json."""
        self.given_splits, self.protocol = splits, protocol
        self.plan, self.config, self.ctx = plan, plan.config, ctx
        self.clock = clock or RunClock(plan.config.epochs)  # the whole run's remaining time
        self.unit, self.seed, self.fold = unit, seed, fold
        self.console, self.callbacks = console, list(callbacks)
        self.raw_data = data  # the store's values: the test scoring standardises them itself
        self.data = data
        self.conversation = plan.entry.conversation
        self.parties = plan.model_config.speaker_parties
        self.selection = self.config.effective_selection()
        self.label = f"seed={seed} fold={fold_label(fold)}"

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg, ctx = self.config, self.ctx
        self.splits = self.given_splits if self.given_splits is not None else make_splits(
            self.data.samples, fold=self.fold, seed=self.seed, valid_fraction=cfg.effective_valid_fraction(),
            group_by=cfg.split.group_by, conversation=self.conversation,
        )
        if not len(self.splits["test"]):
            raise ConfigError(f"{self.label}: the test split is empty")
        if self.config.loss.get("class_weights") == "balanced":
            self.config = balanced_class_weights(self.config, self.data, self.splits["train"])
        # No validation split (e.g. --set split.valid_fraction=0) leaves nothing to select on: keep the last epoch.
        self.select_last = not len(self.splits[self.selection.split])
        if cfg.normalize == "speaker":
            self.data, adapted = standardize_groups(self.data, group_keys(self.data.samples), cfg.speaker_min_samples)
            self.splits = {part: rows[adapted[rows]] for part, rows in self.splits.items()}
            if not len(self.splits["test"]):
                raise ConfigError(f"{self.label}: no test speaker has {cfg.speaker_min_samples} samples to standardise")
        standardizer = Standardizer.fit(self.data, self.splits["train"]) if cfg.normalize != "none" else None
        if ctx.main:
            self.write_unit_files(standardizer)
        if standardizer is not None:
            self.data = standardizer.apply(self.data)

        seed_everything(self.seed, cfg.deterministic)
        self.model_config = self.plan.model_config.for_fold(self.fold)
        self.model = self.plan.entry.build(self.model_config).to(ctx.device)
        self.objective = self.plan.entry.objective(self.config.loss, self.model_config)
        self.step = STEPS[self.plan.entry.train_step](cfg.step, self.objective)
        self.optimizer = build_optimizer(cfg, self.model)
        self.schedule = EpochSchedule(cfg.scheduler, self.optimizer, cfg.epochs)
        self.start, self.best, self.best_epoch, self.stale = 0, None, None, 0
        self.resume()
        self.trained = self.wrap(self.model)
        self.loader = train_loader(
            self.data, self.splits["train"], conversation=self.conversation, batch_size=cfg.batch_size,
            seed=self.seed, rank=ctx.rank, world_size=ctx.world_size, drop_last=cfg.drop_last, parties=self.parties,
        )
        if not len(self.loader):
            raise ConfigError(
                f"{self.label}: {len(self.splits['train'])} training samples make no batch of {cfg.batch_size}"
                f"{' with drop_last' if cfg.drop_last else ''}; lower batch_size (--set batch_size=N)"
            )
        self.eval_splits = ["valid"] if len(self.splits["valid"]) else []
        if self.selection.split == "test":
            self.eval_splits.append("test")

    def write_unit_files(self, standardizer: Standardizer | None) -> None:
        """What `emo evaluate` and `emo predict` need to rebuild the model and its inputs."""
        p, unit = self.plan, self.unit
        make_folder(unit)
        if standardizer is not None:
            standardizer.save(unit / layout.NORMALIZATION)
        layout.write_json(unit / layout.CONFIG, {
            "model_name": p.entry.name,
            "model": p.model_config.for_fold(self.fold).model_dump(mode="json"),
            "train": self.config.model_dump(mode="json"),
            "dataset": p.dataset,
            "store": str(p.store_path),
            "seed": self.seed,
            "fold": self.fold,
            **({"protocol": self.protocol} if self.protocol is not None else {}),
        })
        layout.write_json(unit / layout.LABEL_MAP, p.label_map.to_json())
        layout.write_json(unit / layout.FEATURE_SPEC, {
            "input_unit": p.entry.input_unit,
            "inputs": {m: spec.to_json() for m, spec in p.inputs.items()},
        })
        ids = self.data.samples["sample_id"]
        layout.write_json(unit / layout.SPLITS, {name: ids.iloc[rows].tolist() for name, rows in self.splits.items()})

    def resume(self) -> None:
        ctx, unit = self.ctx, self.unit
        state = layout.load_checkpoint(unit / layout.CHECKPOINT)
        if state is not None:
            try:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.schedule.load_state_dict(state["schedule"])
                self.start, self.best, self.best_epoch, self.stale = (
                    int(state["epoch"]), state["best"], state["best_epoch"], int(state["stale"])
                )
                rng = state["rng"]
                layout.set_rng_state(rng[ctx.rank] if len(rng) == ctx.world_size else rng[0])
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
                raise EmoError(
                    f"cannot resume from this checkpoint: it does not fit this unit's model and settings "
                    f"({type(error).__name__}: {error}); delete it to train the unit from its start",
                    path=unit / layout.CHECKPOINT,
                ) from None
            if ctx.main:
                layout.truncate_jsonl(unit / layout.METRICS, self.start)
                self.console.print(f"{self.label}: resuming after epoch {self.start}")
        elif ctx.main:
            (unit / layout.METRICS).unlink(missing_ok=True)
            (unit / "train.log").unlink(missing_ok=True)
        ctx.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around the model when this process is one rank of several."""
        ctx = self.ctx
        if ctx.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # torch >= 2.14 renamed broadcast_buffers (rank 0's buffers copied before each forward).
        renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": self.config.distributed.broadcast_buffers}
        return DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=self.config.distributed.find_unused_parameters,
            **sync,
        )

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self) -> None:
        self.setup()
        cfg = self.config
        if self.ctx.main and self.callbacks:
            from emocli.training.tracking import environment

            description = {"config": layout.read_json(self.unit / layout.CONFIG), "environment": environment()}
            for callback in self.callbacks:
                callback.on_unit_start(self.unit, description)
        with progress_bar(self.console, enabled=self.ctx.main) as self.progress:
            for epoch in range(self.start, cfg.epochs):
                started = time.perf_counter()
                lr = self.schedule.before_epoch(epoch)
                record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train": self.train_epoch(epoch)}
                record.update(self.evaluate_epoch())
                self.schedule.after_epoch(record["valid"]["loss"] if "valid" in record else record["train"]["loss"])
                if self.on_epoch_end(record, started):
                    break
        self.on_fit_end()

    def fit_batch(self, batch: Batch) -> StepOutput:
        return self.step.train_step(self.trained, batch.to(self.ctx.device), self.optimizer, self.config.clip_grad_norm or None)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training batches: the mean losses and the metrics of the predictions made while
        training (dropout on, weights moving), as the papers log them."""
        cfg, ctx = self.config, self.ctx
        self.loader.sampler.set_epoch(epoch)
        self.trained.train()
        task = self.progress.add_task(f"{self.label} epoch {epoch + 1}/{cfg.epochs}", total=len(self.loader), loss="")
        sums, count, seen, probs = {}, 0, [], []
        for batch in self.loader:
            out = self.fit_batch(batch)
            n = len(batch.rows)
            for name, value in out.losses.items():
                sums[name] = sums.get(name, 0.0) + value * n
            count += n
            seen.append(batch.rows)
            probs.append(self.objective.probabilities(out.logits).float().cpu().numpy())
            self.progress.update(task, advance=1, loss=f"loss {out.losses['loss']:.4f}")
        self.progress.remove_task(task)

        shares = ctx.gather((sums, count, seen, probs))
        total = sum(s[1] for s in shares)
        record = {name: sum(s[0][name] for s in shares) / total for name in shares[0][0]}
        # Rows a DistributedSampler repeated to even out the shares count once.
        rows = np.concatenate([r for s in shares for r in s[2]])
        train_probs = np.concatenate([q for s in shares for q in s[3]])
        rows, first = np.unique(rows, return_index=True)
        record.update(scalars(metrics_of(self.data, rows, train_probs[first], cfg.threshold, cfg.empty_rule)))
        return record

    def evaluate_epoch(self) -> dict[str, Any]:
        """Each evaluated split's losses and metrics; for spiking models also the firing rate of every spiking
        layer on the first split (validation), recorded as "firing_rates"."""
        cfg, ctx = self.config, self.ctx
        records: dict[str, Any] = {}
        model = unwrap(self.trained)
        for split in self.eval_splits:
            monitor = model.monitor_spikes() if isinstance(model, SpikingModel) and not records else nullcontext()
            with monitor as spikes:
                pred = score_rows(
                    model, self.objective, self.data, self.splits[split], conversation=self.conversation,
                    batch_size=cfg.eval_batch_size, device=ctx.device, parties=self.parties, rank=ctx.rank,
                    world_size=ctx.world_size, gather=ctx.gather,
                )
            records[split] = {**pred.losses, **scalars(metrics_of(self.data, pred.rows, pred.probs, cfg.threshold,
                                                                  cfg.empty_rule))}
            if spikes is not None:
                records["firing_rates"] = spikes.firing_rates()
        return records

    def on_epoch_end(self, record: dict[str, Any], started: float) -> bool:
        """Select, save and log; True when early stopping ends the unit."""
        cfg, ctx, selection = self.config, self.ctx, self.selection
        if self.select_last:
            improved = True
        else:
            if selection.metric not in record[selection.split]:
                known = ", ".join(record[selection.split])
                raise ConfigError(f"selection metric {selection.metric!r} is not recorded; choose one of {known}")
            value = record[selection.split][selection.metric]
            improved = _better(value, self.best, selection.mode)
        epoch = record["epoch"]
        if improved:
            self.best = None if self.select_last else value
            self.best_epoch, self.stale = epoch, 0
            if ctx.main:
                layout.save_weights(unwrap(self.trained), self.unit / layout.WEIGHTS, {"epoch": str(epoch)})
        else:
            self.stale += 1
        record.update(seconds=round(time.perf_counter() - started, 3), selected=improved)
        rng = ctx.gather(layout.rng_state())
        if ctx.main:
            layout.append_jsonl(self.unit / layout.METRICS, record)
            layout.save_checkpoint(
                self.unit / layout.CHECKPOINT,
                {
                    "model": unwrap(self.trained).state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "schedule": self.schedule.state_dict(),
                    "epoch": epoch,
                    "best": self.best,
                    "best_epoch": self.best_epoch,
                    "stale": self.stale,
                    "rng": rng,
                },
            )
            run_left = self.clock.remaining(record["seconds"], epoch)
            line = epoch_line(record, self.eval_splits, selection.metric, cfg.epochs, self.label, run_left)
            report_epoch(self.console, self.unit, line)
        ctx.barrier()
        if ctx.main:
            for callback in self.callbacks:
                callback.on_epoch_end(self.unit, record)
        return cfg.early_stopping is not None and self.stale >= cfg.early_stopping

    def on_fit_end(self) -> None:
        """Score the best weights on the test split, then plots and model card; test_metrics.json, which
        marks the unit finished, is written last and the checkpoint goes after it, so a unit killed at
        any point is either resumed or complete.

        The selection split's score of those weights is kept beside the test metrics: it is what
        hyperparameters may be compared on without looking at test."""
        if self.ctx.main:
            p, unit, selection = self.plan, self.unit, self.selection
            result = evaluate_unit(unit, "test", data=self.raw_data, device=str(self.ctx.device),
                                   spiking_report=p.entry.spiking)
            result["best_epoch"] = self.best_epoch
            result["selection_score"] = {"split": selection.split, "metric": selection.metric, "value": self.best}
            label = f"{p.entry.name} on {p.dataset}, seed {self.seed}, fold {fold_label(self.fold)}"
            plot_learning_curves(unit / layout.METRICS, unit / "learning_curves.png", selection.metric, title=label)
            plot_confusion_matrix(confusion(result), p.label_map.names, unit / "confusion_matrix.png",
                                  title=f"{label}: test split ({result['n_samples']} samples)")
            card = card_info(p, unit.parent.parent.name + f" (seed {self.seed}, fold {fold_label(self.fold)})",
                             [result["metrics"]])
            card["seeds"], card["folds"] = [self.seed], None if self.fold is None else [self.fold]
            if result.get("spiking"):
                card["spiking"] = result["spiking"]
            card["parameters"] = result["parameters"]
            write_text(unit / "README.md", render_model_card(card))
            layout.write_json(unit / layout.TEST_METRICS, result)
            (unit / layout.CHECKPOINT).unlink(missing_ok=True)
            for callback in self.callbacks:
                callback.on_unit_end(unit, result)
        self.ctx.barrier()
