"""The loop's data: the datasets of a data spec, and DataLoaders that read samples by (epoch, index) keys.

:func:`resolve_data` turns a spec (or Datasets) into the training and test sets, with the model's preprocessing.
Training reads every sample through :class:`netsurgeon.data.SeededSamples`, so a sample's random
augmentation is a pure function of (seed, epoch, index, rank) whichever process reads it: one
DataLoader serves the whole run (its workers persist across epochs) and :class:`KeySampler` hands it
the keys of the batches to read next.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from netsurgeon.data import (
    DataSpec,
    SeededSamples,
    check_samples,
    eval_transform,
    load_dataset,
    model_data_config,
    train_transform,
)
from netsurgeon.errors import ConfigError
from netsurgeon.models.info import model_input_size
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.distributed import Context, epoch_indices

__all__ = ["DataArg", "KeySampler", "RunData", "eval_loader", "in_memory", "resolve_data", "resolve_workers",
           "run_data", "train_loader", "without_stray"]

#: what ``data=`` takes: a spec, a training Dataset, or (train, test) Datasets
DataArg = str | DataSpec | Dataset | tuple[Dataset, Dataset | None]

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


def resolve_data(data: DataArg, model: nn.Module, config: FinetuneConfig | None = None,
                 ) -> tuple[Dataset, Dataset | None, str]:
    """(train, test, description) from a data spec or datasets.

    A spec's test split gets the model's own evaluation preprocessing, its training split the
    augmentation ``config`` names (``FinetuneConfig()``'s by default); Datasets are used as given."""
    if isinstance(data, (str, DataSpec)):
        cfg = config or FinetuneConfig()
        size = model_input_size(model)
        data_config = model_data_config(model)
        train = load_dataset(data, "train", size, transform=train_transform(data_config, size, cfg.augmentation()))
        test = load_dataset(data, "test", size, transform=eval_transform(data_config, size))
        label = data if isinstance(data, str) else data.label()
        if train.num_classes < 2:
            raise ConfigError(f"the data {label} has {train.num_classes} class; fine-tuning needs at least two (one "
                              "class trains to loss 0 and 100% accuracy and learns nothing): add the other classes.")
        return train, test, label
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ConfigError("data must be a spec string, a Dataset, or a (train, test) pair of Datasets.")
        check_samples(data[0], "the training Dataset")
        if data[1] is not None:
            check_samples(data[1], "the test Dataset")
        return data[0], data[1], type(data[0]).__name__
    check_samples(data, "the Dataset")
    return data, None, type(data).__name__


def without_stray(indices: list[int], batch_size: int) -> list[int]:
    """The indices without a last batch of one image (BatchNorm cannot train on it): that image is left out of
    the epoch, as timm's loader drops a last partial batch (``drop_last``); the next epoch's order differs."""
    if batch_size > 1 and len(indices) > 1 and len(indices) % batch_size == 1:
        return indices[:-1]
    return indices


@dataclass
class RunData:
    """A run's datasets and their loaders: the training reads by (epoch, index) keys, the test set in one order."""

    train: Dataset
    test: Dataset | None
    label: str  # the data's spec, or the Dataset's class name
    batches: DataLoader | None
    keys: KeySampler
    test_batches: DataLoader | None

    @property
    def num_classes(self) -> int | None:
        return getattr(self.train, "num_classes", None)

    def close(self) -> None:
        """Drop the loaders: their persistent workers end."""
        self.batches = self.test_batches = None


def run_data(data: DataArg, model: nn.Module, cfg: FinetuneConfig, ctx: Context) -> RunData:
    """The datasets of ``data`` (:func:`resolve_data`) and the run's loaders (each rank's test shard)."""
    train, test, label = resolve_data(data, model, cfg)
    workers = resolve_workers(cfg.workers, train)
    batches, keys = train_loader(train, cfg.batch_size, seed=cfg.seed, rank=ctx.rank, workers=workers,
                                 device=ctx.device)
    test_batches = None if test is None else eval_loader(
        test, epoch_indices(test, ctx, seed=cfg.seed, epoch=0, shuffle=False), cfg.batch_size, workers=workers,
        device=ctx.device)
    return RunData(train, test, label, batches, keys, test_batches)
