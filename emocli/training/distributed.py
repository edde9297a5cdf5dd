"""This process's place in a training job: one process, or a rank of a `torchrun` job (DDP).

Under torchrun (WORLD_SIZE > 1) every rank trains a DDP replica on its DistributedSampler share;
per-epoch evaluation shards the split across ranks and gathers the predictions, so each sample is scored
exactly once and every rank takes the same selection decision; rank 0 writes.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emocli.runs.inference import resolve_device


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
    chosen = resolve_device(device)
    use_cuda = chosen.type == "cuda"
    if use_cuda and world_size > 1:
        chosen = torch.device("cuda", local_rank)  # one GPU per process
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
