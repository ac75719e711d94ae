"""The ``torchvision`` kind: a torchvision dataset NAME (CIFAR10, CIFAR100, SVHN, STL10, MNIST, FashionMNIST, KMNIST,
EMNIST, ...) already downloaded under ROOT (``download=True`` in Python): those whose constructor takes
``train=`` or ``split=``; anything else is refused, naming what to use instead."""

from __future__ import annotations

import inspect
from pathlib import Path

from torch.utils.data import Dataset

from netsurgeon.data.kinds.base import DataKind, DataSpec, register_data_kind
from netsurgeon.data.kinds.folder import KIND as FOLDER
from netsurgeon.errors import ConfigError

__all__ = ["KIND", "TORCHVISION_SPLITS", "load_torchvision"]

#: split= values tried, in order, for a torchvision dataset without ``train=`` (Flowers102: train/val/test,
#: OxfordIIITPet: trainval/test, SVHN and STL10: train/test)
TORCHVISION_SPLITS = {"train": ("train", "trainval"), "test": ("test", "val", "valid")}


def _parse(rest: str) -> DataSpec | None:
    name, _, root = rest.partition(":")
    return DataSpec("torchvision", root, name) if name and root else None


def load_torchvision(spec: DataSpec, split: str, download: bool = False) -> tuple[Dataset, int]:
    """A torchvision dataset whose constructor takes ``train=`` (CIFAR10, MNIST, ...) or ``split=``
    (SVHN, STL10, Flowers102, ...); anything else is refused, naming what to use instead."""
    import torchvision.datasets as tvd

    name, root, folder = spec.name, spec.path, f"--data {FOLDER.grammar}"
    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise ConfigError(f"torchvision has no dataset {name!r} (e.g. CIFAR10, SVHN, STL10, FashionMNIST, "
                          "Flowers102).")
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if issubclass(cls, tvd.DatasetFolder) and "split" not in params:
        raise ConfigError(f"torchvision:{name} is a generic image folder; use {folder} instead "
                          "(DIR/train/CLASS/*.png and DIR/val/CLASS/*.png).")
    if "train" in params:
        choices: list[dict[str, object]] = [{"train": split == "train"}]
        if name == "EMNIST":
            choices[0]["split"] = "balanced"
    elif "split" in params:
        choices = [{"split": value} for value in TORCHVISION_SPLITS[split]]
    else:
        raise ConfigError(f"torchvision:{name} has no train/test split (its constructor takes neither train= nor "
                          f"split=); arrange its images as {folder} with DIR/train/CLASS/ and DIR/val/CLASS/.")
    common = {"download": download} if "download" in params else {}
    refused: list[str] = []
    for kwargs in choices:
        try:
            dataset = cls(str(Path(root).expanduser()), **common, **kwargs)
            break
        except ValueError as err:  # verify_str_arg: an unknown split value
            refused.append(f"{kwargs}: {str(err).splitlines()[0][:120]}")
        except (RuntimeError, FileNotFoundError, OSError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise KIND.missing(f"{name} not found under {root} ({first})") from None
        except TypeError as err:  # a required argument netsurgeon does not know how to fill
            raise ConfigError(f"torchvision:{name} cannot be built with (root, {', '.join(kwargs)}) "
                              f"({str(err).splitlines()[0][:120]}); use {folder} instead.") from None
    else:
        raise ConfigError(f"torchvision:{name} has no {split} split netsurgeon knows ({'; '.join(refused)}); use "
                          f"{folder} instead.")
    return dataset, _class_count(dataset)


def _class_count(dataset: object) -> int:
    classes = getattr(dataset, "classes", None)
    if classes:
        return len(classes)
    for attr in ("labels", "targets", "_labels"):
        labels = getattr(dataset, attr, None)
        if labels is not None and len(labels):
            return int(max(int(v) for v in labels)) + 1
    return 10


KIND = register_data_kind(DataKind(
    "torchvision", "torchvision:NAME:ROOT", "CIFAR10, SVHN, STL10, ... already downloaded under ROOT", _parse,
    load_torchvision, example="torchvision:CIFAR10:~/data",
    offline="download it there first (torchvision's download=True on a machine online) and copy the files over.",
    dataset_name=lambda spec: spec.name.lower()))
