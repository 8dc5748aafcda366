"""Multi-process training under ``torchrun``: one process per GPU (NCCL) or per CPU share (Gloo).

``vfrisk train`` runs unchanged on one process. Launched by ``torchrun --nproc_per_node N -m vfrisk.cli train
...``, each process trains the image network on its own shard of every epoch's permutation, DistributedDataParallel
averages the gradients, and the first process alone writes the run folder, fits the risk heads and evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True for the process that writes the run folder."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when more than one process trains."""
        return self.world > 1


def init_distributed(device: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (a no-op for one process).

    Args:
        device: the config's device choice (``auto``, ``cpu`` or ``cuda``): NCCL on CUDA, Gloo otherwise.

    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return info


def shard(perm: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Return this process's share of an epoch's permutation: equal sizes on every process (the tail that does not
    divide evenly is dropped), disjoint, in the permutation's order."""
    if not info.active:
        return perm
    n = len(perm) // info.world * info.world
    return perm[:n][info.rank::info.world]


def barrier(info: DistInfo) -> None:
    """Wait for every process (a no-op for one process)."""
    if info.active:
        dist.barrier()


def finish(info: DistInfo) -> None:
    """Leave the process group."""
    if info.active and dist.is_initialized():
        dist.destroy_process_group()
