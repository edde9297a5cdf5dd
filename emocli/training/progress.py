"""What training tells the user: the run's setup, a progress bar while an epoch runs (in a terminal), and
one line per epoch, printed and appended to the unit's train.log whether or not a terminal is attached
(Slurm, nohup and pipes get them too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emocli.core.io import append_text
from emocli.data.tables import EmotionData
from emocli.runs.evaluation import PAPER_WARNING
from emocli.training.prepare import Plan

TRAIN_LOG = "train.log"


class _Quiet:
    """Stands in for rich's Progress when no bar is shown (not a terminal, or not rank 0)."""

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


def progress_bar(console: Any, enabled: bool) -> Any:
    if not (enabled and console.is_terminal):
        return _Quiet()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
        TimeRemainingColumn(), console=console, transient=True,
    )


def print_setup(console: Any, plan: Plan, data: EmotionData, root: Path) -> None:
    cfg = plan.config
    inputs = ", ".join(f"{m}={s.feature_set} ({s.kind}, {s.dim})" for m, s in plan.inputs.items())
    console.print(f"[bold]{plan.entry.name}[/] on {plan.dataset}: {len(data)} samples; {inputs}")
    if data.dropped:
        console.print("left out: " + ", ".join(f"{n} ({why})" for why, n in data.dropped.items()))
    if cfg.protocol == "paper":
        selection = cfg.effective_selection()
        console.print(f"[bold red]{PAPER_WARNING.format(split=selection.split, metric=selection.metric)}[/]")
    console.print(f"run directory: {root}", markup=False)


@dataclass
class RunClock:
    """The whole run's remaining time, from the epochs this process has timed so far: the current unit's
    epochs left and `epochs` for each unit still to come (early stopping can only shorten it)."""

    epochs: int  # per unit
    units_after: int = 0  # units still to train after the current one
    timed: list[float] = field(default_factory=list)  # seconds of each epoch trained so far

    def remaining(self, epoch_seconds: float, epoch: int) -> float:
        self.timed.append(epoch_seconds)
        mean = sum(self.timed) / len(self.timed)
        return mean * (self.epochs - epoch + self.units_after * self.epochs)


def duration(seconds: float) -> str:
    """"42s", "7m05s", "1h12m": a remaining time, to the precision it deserves."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def epoch_line(record: dict[str, Any], splits: list[str], metric: str, epochs: int, unit: str = "",
               run_left_s: float | None = None) -> str:
    """One epoch as a log line: which unit (seed and fold) it belongs to, losses, the selection metric, the
    epoch's time and the whole run's remaining time."""
    parts = [f"{unit} epoch {record['epoch']}/{epochs}".strip(), f"lr {record['lr']:.2e}",
             f"train loss {record['train']['loss']:.4f}"]
    for split in splits:
        values = record[split]
        parts.append(f"{split} loss {values['loss']:.4f}")
        if metric in values and metric != "loss":
            parts.append(f"{split} {metric} {values[metric]:.4f}")
    if run_left_s is None:
        run_left_s = record["seconds"] * (epochs - record["epoch"])
    parts.append(f"{record['seconds']:.1f}s (run: ~{duration(run_left_s)} left)")
    return ("* " if record["selected"] else "  ") + " · ".join(parts)


def report_epoch(console: Any, unit: Path, line: str) -> None:
    console.print(line, highlight=False)
    append_text(unit / TRAIN_LOG, line + "\n")
