"""DistributedDataParallel over gloo on CPUs, for ``torchrun --nproc_per_node=N -m pyops train ... --ddp``.

torchrun starts N processes and gives each RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; each
process builds the same model (DDP broadcasts rank 0's weights at wrap time anyway), reads its own
shard of every epoch through a DistributedSampler, and DDP all-reduces (averages) the gradients
during backward, so every rank's optimizer -- stock or pyops -- applies the same update.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init() -> tuple[int, int]:
    """Join the process group (gloo); (rank, world_size)."""
    if not launched_by_torchrun():
        raise SystemExit("--ddp: RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are not set; start the command with torchrun, "
                         "e.g. `torchrun --nproc_per_node=2 -m pyops train fashion-mnist --ddp`")
    dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    # CPU module: no device_ids.  Gradients are averaged over ranks during backward.
    return torch.nn.parallel.DistributedDataParallel(model)


def sampler(n: int, seed: int) -> torch.utils.data.DistributedSampler:
    """This rank's shard of range(n), reshuffled each epoch by set_epoch (same permutation on every rank)."""
    return torch.utils.data.DistributedSampler(range(n), shuffle=True, seed=seed)


def mean(value: float) -> float:
    """The average of ``value`` over all ranks."""
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def same_on_all_ranks(value: float) -> bool:
    t = torch.tensor([value, -value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t[0].item() == value and -t[1].item() == value


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
