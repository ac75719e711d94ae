"""torchrun support: the process group from torchrun's environment, rank-aware sampling, reductions.

netsurgeon never launches processes itself: ``torchrun --nproc_per_node=N -m netsurgeon finetune ...``
(or torchrun's rendezvous across nodes) starts them and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from netsurgeon.progress import is_main_process

__all__ = ["Context", "IndexSampler", "all_reduce_sum", "broadcast_buffers", "epoch_indices", "is_main_process",
           "setup"]


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this run created the process group and destroys it at the end

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str = "auto") -> Context:
    """Join torchrun's process group when its environment says so (nccl on GPUs, gloo on CPUs)."""
    from netsurgeon.errors import ConfigError

    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=cpu or device=auto.")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world <= 1:
        return Context(device=dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)


def epoch_indices(dataset: Dataset, ctx: Context, *, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """This rank's sample order for ``epoch``: a pure function of (seed, epoch, rank), so a resumed run
    replays it exactly. Training uses DistributedSampler's shuffle-and-pad; evaluation takes every
    world-size-th sample without padding, so every test image counts once."""
    if not shuffle:
        return list(range(ctx.rank, len(dataset), ctx.world_size))
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


class IndexSampler(Sampler[int]):
    """Yields a fixed list of indices (the rest of an epoch after a resume)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def all_reduce_sum(values: Sequence[float], ctx: Context) -> list[float]:
    """Sum scalars over ranks (a no-op in one process)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_buffers(model: torch.nn.Module, ctx: Context) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics).

    DDP broadcasts them at the start of each training forward, so after the last batch every rank holds
    statistics updated by its own shard; this makes evaluation and the saved model the same everywhere.
    """
    if ctx.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
