"""The options of `emo extract` and `emo predict` that choose where extractors run: worker processes on
this machine, or a Ray cluster (docs/SCALE_OUT.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from emocli.commands.options import between, describe

if TYPE_CHECKING:
    from emocli.features.ray_runner import RayExecutor

EXECUTOR = typer.Option(
    "local", "--executor", help="Where extractors run: local (worker processes here) or ray (a Ray cluster; "
    "pip install 'emocli[ray]')."
)
ADDRESS = typer.Option(
    None, "--address", help="With --executor ray: the cluster (host:port, ray://host:10001, auto, or local for a new "
    "one here); default: $RAY_ADDRESS, else the cluster started on this machine, else a new local one."
)
# Finite and within these ranges (commands/options.py: click's own ranges let NaN and infinity through).
TASK_CPUS = typer.Option(1.0, "--task-cpus", callback=between(0.001, 1024),
                         help=f"With --executor ray: CPUs per task (its threads; {describe(0.001, 1024)}).")
TASK_GPUS = typer.Option(
    0.0, "--task-gpus", callback=between(0, 64),
    help=f"With --executor ray: GPUs per worker of a batched encoder (batch_size > 1; {describe(0, 64)}).",
)
TASK_MEMORY = typer.Option(None, "--task-memory", callback=between(0.001, 2**20),
                           help=f"With --executor ray: GiB of memory per task ({describe(0.001, 2**20)}).")


def executor_choice(
    executor: str, address: str | None, cpus: float, gpus: float, memory_gib: float | None
) -> str | RayExecutor:
    """What the API takes: "local", or the RayExecutor the options describe."""
    if executor not in ("local", "ray"):
        raise typer.BadParameter(f"{executor!r}: choose local or ray", param_hint="--executor")
    if executor == "local":
        given = [name for name, value, default in (("--address", address, None), ("--task-cpus", cpus, 1.0),
                                                   ("--task-gpus", gpus, 0.0), ("--task-memory", memory_gib, None))
                 if value != default]
        if given:
            raise typer.BadParameter(f"{', '.join(given)} only go with --executor ray", param_hint="--executor")
        return "local"
    from emocli.features.ray_runner import RayExecutor

    return RayExecutor(address=address, cpus=cpus, gpus=gpus, memory_gib=memory_gib)
