"""The loop's DataLoaders: training samples read by (epoch, index) keys, worker counts, persistent workers.

Training reads every sample through :class:`netsurgeon.data.SeededSamples`, so a sample's random
augmentation is a pure function of (seed, epoch, index, rank) whichever process reads it: one
DataLoader serves the whole run (its workers persist across epochs) and :class:`KeySampler` hands it
the keys of the batches to read next.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from netsurgeon.data import SeededSamples

__all__ = ["KeySampler", "eval_loader", "in_memory", "resolve_workers", "train_loader"]

#: the most DataLoader workers workers=auto starts
MAX_AUTO_WORKERS = 8


def in_memory(dataset: Dataset) -> bool:
    """Whether the samples are tensors held in memory (digits, Fashion-MNIST, a TensorDataset): nothing to decode."""
    seen = 0
    while dataset is not None and seen < 10:
        if isinstance(dataset, TensorDataset):
            return True
        dataset, seen = getattr(dataset, "base", None) or getattr(dataset, "dataset", None), seen + 1
    return False


def resolve_workers(workers: int | str, dataset: Dataset) -> int:
    """workers=auto: up to ``MAX_AUTO_WORKERS``, one core left to the training process; none for data held in
    memory (worker start-up would cost more than the transforms)."""
    if workers != "auto":
        return int(workers)
    if in_memory(dataset):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


class KeySampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)`` keys; the loop sets the next keys with :meth:`set` before iterating."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def set(self, epoch: int, indices: Sequence[int]) -> KeySampler:
        self.keys = [(epoch, int(i)) for i in indices]
        return self

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self.keys))

    def __len__(self) -> int:
        return len(self.keys)


def _ignore_sigint(worker_id: int) -> None:
    """A terminal's Ctrl-C reaches every process of the group; a worker that died of it would fail the loader
    before the training process could stop cleanly and save its checkpoint, so workers leave SIGINT to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _options(workers: int, device: torch.device) -> dict:
    return {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0,
            "worker_init_fn": _ignore_sigint if workers > 0 else None,
            "generator": torch.Generator().manual_seed(0)}  # no draw from the global RNG when iterating


def train_loader(dataset: Dataset, batch_size: int, *, seed: int, rank: int, workers: int,
                 device: torch.device) -> tuple[DataLoader, KeySampler]:
    """One DataLoader for the run's training reads and the sampler that chooses them."""
    sampler = KeySampler()
    loader = DataLoader(SeededSamples(dataset, seed, rank), batch_size=batch_size, sampler=sampler,
                        **_options(workers, device))
    return loader, sampler


def eval_loader(dataset: Dataset, indices: Sequence[int], batch_size: int, *, workers: int,
                device: torch.device) -> DataLoader:
    from netsurgeon.train.distributed import IndexSampler

    return DataLoader(dataset, batch_size=batch_size, sampler=IndexSampler(indices), **_options(workers, device))
