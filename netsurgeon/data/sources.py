"""Dataset construction from a data spec: each spec's kind loads it (``netsurgeon.data.kinds``), and every
source is adapted to the model here (see the package docstring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from netsurgeon.data.kinds.base import DataSpec, cannot_read, unreadable_errors
from netsurgeon.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, model_data_config
from netsurgeon.errors import ConfigError

__all__ = ["DataSpec", "ImageTransform", "check_label_range", "check_samples", "count_classes", "load_dataset",
           "make_loader", "model_normalization"]


def model_normalization(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the model was trained with: timm's pretrained config, or the torchvision weights'
    transforms (both read locally, no download); ImageNet's for anything else."""
    config = model_data_config(model)
    return config.mean, config.std


class _Mapped(Dataset):
    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor], classes: int) -> None:
        self.base, self.transform, self.num_classes = base, transform, classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        try:
            image, label = self.base[i]
        except unreadable_errors() as err:  # one line, also out of a DataLoader worker (NetsurgeonError)
            samples = getattr(self.base, "samples", None)
            where = samples[i][0] if samples is not None and 0 <= i < len(samples) else f"item {i}"
            raise cannot_read(where, err) from None
        return self.transform(image), int(label)  # a PIL image or a float C,H,W tensor in [0, 1]


def load_dataset(spec: str | DataSpec, split: str, input_size: Sequence[int], *,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 download: bool = False, transform: Callable[[Any], torch.Tensor] | None = None) -> Dataset:
    """The ``split`` ('train' or 'test') of a data spec, transformed for a model taking ``input_size``.

    ``transform`` (PIL image or float C,H,W tensor in [0, 1] -> model input) replaces the default
    resize-and-normalise :class:`ImageTransform` (``netsurgeon.data.transforms`` builds the model's own
    evaluation transform and the training presets)."""
    spec = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}.")
    base, classes = spec.data_kind.load(spec, split, download)
    return _Mapped(base, transform or ImageTransform(input_size, mean, std), classes)


def check_label_range(model: torch.nn.Module, dataset: Dataset, input_size: Sequence[int]) -> None:
    """Refuse data with more classes than the model outputs (label indices would fall outside the logits)."""
    classes = getattr(dataset, "num_classes", None)
    if classes is None:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    if logits.ndim == 2 and classes > logits.shape[1]:
        raise ConfigError(f"the data has {classes} classes but the model outputs {logits.shape[1]}; use data with at "
                          f"most {logits.shape[1]} classes, or build the model with --num-classes {classes}.")


def check_samples(dataset: Dataset, what: str = "the Dataset") -> None:
    """A user's Dataset yields what training reads: ``(image tensor, integer label)`` pairs (checked on its
    first item; a dict, a bare tensor or a string label would fail deep inside the loop)."""
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{what} ({type(dataset).__name__}) has no len(); give a map-style Dataset.") from None
    if size == 0:
        raise ConfigError(f"{what} ({type(dataset).__name__}) is empty; give it at least one (image, label) pair.")
    item = dataset[0]
    fix = "; make __getitem__ return (image, label): a float C,H,W tensor and an int"
    if isinstance(item, dict):
        keys = ", ".join(map(str, list(item)[:5]))
        raise ConfigError(f"{what} ({type(dataset).__name__}) returns a dict (keys: {keys}), not an (image, label) "
                          f"pair{fix}.")
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        kind = f"a {len(item)}-item {type(item).__name__}" if isinstance(item, (tuple, list)) else \
            f"a {type(item).__name__}"
        raise ConfigError(f"{what} ({type(dataset).__name__}) returns {kind}, not an (image, label) pair{fix}.")
    image, label = item
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        kind = f"a {image.dtype} tensor" if isinstance(image, torch.Tensor) else f"a {type(image).__name__}"
        raise ConfigError(f"{what} ({type(dataset).__name__}) returns {kind} as its image{fix} (apply the model's "
                          "transform in the Dataset, e.g. netsurgeon.data.eval_transform).")
    integral = isinstance(label, (int, np.integer)) and not isinstance(label, bool) or (
        isinstance(label, torch.Tensor) and label.ndim == 0 and not label.is_floating_point()
        and label.dtype != torch.bool)
    if not integral:
        raise ConfigError(f"{what} ({type(dataset).__name__}) returns a {type(label).__name__} label "
                          f"({str(label)[:30]!r}){fix} class index.")


def count_classes(spec: str | DataSpec) -> int:
    """The class count of a data spec's training split (to size a new model's head)."""
    spec = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    return load_dataset(dataclasses.replace(spec, skip_unreadable=False), "train", (3, 8, 8)).num_classes


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, workers: int = 0,
                sampler=None, drop_last: bool = False, pin_memory: bool = False) -> DataLoader:  # noqa: ANN001
    """A seeded DataLoader (the same order for the same seed).

    It has its own generator, so creating an iterator never draws from the global RNG (a resumed
    training run replays that RNG)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, generator=generator, drop_last=drop_last, pin_memory=pin_memory)
