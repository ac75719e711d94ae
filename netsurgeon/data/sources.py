"""Dataset construction from a data spec (see the package docstring)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from netsurgeon.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, model_data_config
from netsurgeon.errors import ConfigError

__all__ = ["DataSpec", "ImageTransform", "check_label_range", "count_classes", "load_dataset", "make_loader",
           "model_normalization"]

FASHION_DIRS = ("/usr/share/fashion-mnist", "/usr/share/dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist",
                "/usr/share/doc/dataset-fashion-mnist")
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclass(frozen=True)
class DataSpec:
    kind: str  # digits | fashion-mnist | folder | torchvision
    path: str = ""
    name: str = ""
    skip_unreadable: bool = False  # folder: check every image up front and leave out those that cannot be read

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        kind, _, rest = text.strip().partition(":")
        kind = kind.lower()
        if kind == "digits" and not rest:
            return cls("digits")
        if kind == "fashion-mnist":
            return cls("fashion-mnist", rest)
        if kind == "folder" and rest:
            return cls("folder", rest)
        if kind == "torchvision":
            name, _, root = rest.partition(":")
            if name and root:
                return cls("torchvision", root, name)
        raise ConfigError(f"unknown data spec {text!r}; use digits, fashion-mnist[:DIR], folder:DIR or "
                          "torchvision:NAME:ROOT (for example torchvision:CIFAR10:~/data).")


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
        except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated files, ...
            samples = getattr(self.base, "samples", None)
            where = samples[i][0] if samples is not None and 0 <= i < len(samples) else f"item {i}"
            raise ConfigError(f"image {where} cannot be read ({type(err).__name__}: {str(err)[:100]}); remove or "
                              "replace it, or pass --skip-unreadable-images (Python: DataSpec(..., "
                              "skip_unreadable=True)) to leave unreadable images out.") from None
        return self.transform(image), int(label)  # a PIL image or a float C,H,W tensor in [0, 1]


def _digits(split: str) -> tuple[Dataset, int]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(order))
    chosen = order[:cut] if split == "train" else order[cut:]
    return TensorDataset(images[chosen], labels[chosen]), 10


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        zero, dtype_code, ndim = struct.unpack(">HBB", fh.read(4))
        if zero != 0 or dtype_code != 0x08:
            raise ConfigError(f"{path} is not an unsigned-byte IDX file.")
        shape = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        return np.frombuffer(fh.read(), dtype=np.uint8).reshape(shape)


def _fashion(root: str, split: str) -> tuple[Dataset, int]:
    candidates = [Path(root).expanduser()] if root else [Path(p) for p in FASHION_DIRS]
    names = FASHION_FILES["train" if split == "train" else "test"]
    for directory in candidates:
        found = [next(iter(sorted(directory.rglob(n))), None) if directory.is_dir() else None for n in names]
        if all(found):
            images = torch.from_numpy(read_idx(found[0]).astype(np.float32) / 255.0)[:, None]
            labels = torch.from_numpy(read_idx(found[1]).astype(np.int64))
            return TensorDataset(images, labels), 10
    where = root or ", ".join(FASHION_DIRS)
    raise ConfigError(f"Fashion-MNIST IDX files ({', '.join(names)}) not found in {where}; install Debian's "
                      "dataset-fashion-mnist package or pass fashion-mnist:DIR with the four .gz files.")


def _drop_unreadable(dataset) -> None:  # noqa: ANN001
    """Open every image of an ImageFolder up front; leave out those that cannot be decoded."""
    from netsurgeon.progress import status

    good, bad = [], []
    for path, target in dataset.samples:
        try:
            dataset.loader(path)
        except (OSError, ValueError, SyntaxError):
            bad.append(path)
            continue
        good.append((path, target))
    if not good:
        raise ConfigError(f"no image under {dataset.root} can be read ({len(bad)} unreadable).")
    dataset.samples = dataset.imgs = good
    dataset.targets = [t for _, t in good]
    if bad:
        status(f"left out {len(bad)} unreadable image(s) under {dataset.root} (first: {bad[0]})")


def _folder(root: str, split: str, skip_unreadable: bool = False) -> tuple[Dataset, int]:
    from torchvision.datasets import ImageFolder

    base = Path(root).expanduser()
    directory = base / ("train" if split == "train" else "val")
    if not directory.is_dir():
        directory = base
    if not directory.is_dir():
        raise ConfigError(f"image folder {base} does not exist; expected {base}/train/CLASS/*.png (or {base}/CLASS/).")
    try:
        dataset = ImageFolder(str(directory))
    except (FileNotFoundError, RuntimeError) as err:
        raise ConfigError(f"image folder {directory}: {err}") from None
    if skip_unreadable:
        _drop_unreadable(dataset)
    return dataset, len(dataset.classes)


def _torchvision(name: str, root: str, split: str, download: bool) -> tuple[Dataset, int]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, name, None)
    if cls is None:
        raise ConfigError(f"torchvision has no dataset {name!r} (e.g. CIFAR10, SVHN, STL10, FashionMNIST).")
    train = split == "train"
    kwargs = {"split": "train" if train else "test"} if name in ("SVHN", "STL10") else {"train": train}
    if name == "EMNIST":
        kwargs["split"] = "balanced"
    try:
        dataset = cls(str(Path(root).expanduser()), download=download, **kwargs)
    except (RuntimeError, FileNotFoundError) as err:
        raise ConfigError(f"{name} not found under {root} ({str(err).splitlines()[0]}); download it there first "
                          "(torchvision's download=True on a machine online) and copy the files over.") from None
    classes = getattr(dataset, "classes", None)
    return dataset, len(classes) if classes else int(max(getattr(dataset, "labels", [9]))) + 1


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
    if spec.kind == "digits":
        base, classes = _digits(split)
    elif spec.kind == "fashion-mnist":
        base, classes = _fashion(spec.path, split)
    elif spec.kind == "folder":
        base, classes = _folder(spec.path, split, spec.skip_unreadable)
    else:
        base, classes = _torchvision(spec.name, spec.path, split, download)
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


def count_classes(spec: str | DataSpec) -> int:
    """The class count of a data spec's training split (to size a new model's head)."""
    import dataclasses

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
