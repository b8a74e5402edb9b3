"""Data parallelism under torchrun: the process group, which rank does what, and the few collectives training needs.

`torchrun --nproc-per-node N -m nmt train ...` sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous for
several nodes); a plain `nmt train` has none of them and runs as the single rank 0. Gloo serves CPUs, NCCL GPUs.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nmt.device import pick_device
from nmt.errors import NmtError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and progress."""
        return self.rank == 0


def setup(device: str | None) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun describes (if any) and choose this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks(), pick_device(device)
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    chosen = pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as error:
            raise NmtError(f"could not join the torchrun process group ({error})") from None
    return ranks, chosen


def teardown() -> None:
    """Destroy the process group while the interpreter is fully alive (call after the DDP wrapper is released)."""
    if dist.is_initialized():
        gc.collect()  # wrappers in reference cycles would keep the group, and its threads, alive
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device, ranks: Ranks) -> list[float]:
    """Sums over ranks of a few numbers, in one collective (float64: token counts stay exact)."""
    if not ranks.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_objects(value, ranks: Ranks) -> list:
    if not ranks.distributed:
        return [value]
    gathered = [None] * ranks.world_size
    dist.all_gather_object(gathered, value)
    return gathered
