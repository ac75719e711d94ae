"""Dataset construction from a data spec (see the package docstring)."""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from netsurgeon.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, model_data_config
from netsurgeon.errors import ConfigError
from netsurgeon.validate import NotRegularFileError, open_regular

__all__ = ["DataSpec", "ImageTransform", "check_label_range", "check_samples", "count_classes", "load_dataset",
           "make_loader", "model_normalization"]

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


#: what PIL raises for an unreadable image: UnidentifiedImageError (an OSError), truncated files, bad
#: chunks, and DecompressionBombError (a plain Exception) for absurd sizes declared in a tiny file
def _unreadable_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return OSError, ValueError, SyntaxError, Image.DecompressionBombError


def _cannot_read(where: object, err: BaseException) -> ConfigError:
    if isinstance(err, NotRegularFileError):  # a FIFO named .png: never opened for reading
        return ConfigError(f"{err}; remove it, or pass --skip-unreadable-images (Python: DataSpec(..., "
                           "skip_unreadable=True)) to leave it out.")
    return ConfigError(f"image {where} cannot be read ({type(err).__name__}: {' '.join(str(err).split())[:100]}); "
                     "remove or replace it, or pass --skip-unreadable-images (Python: DataSpec(..., "
                     "skip_unreadable=True)) to leave unreadable images out.")


class _Mapped(Dataset):
    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor], classes: int) -> None:
        self.base, self.transform, self.num_classes = base, transform, classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        try:
            image, label = self.base[i]
        except _unreadable_errors() as err:  # one line, also out of a DataLoader worker (NetsurgeonError)
            samples = getattr(self.base, "samples", None)
            where = samples[i][0] if samples is not None and 0 <= i < len(samples) else f"item {i}"
            raise _cannot_read(where, err) from None
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


#: the largest IDX file read (Fashion-MNIST's training images are 47 MB unpacked)
MAX_IDX_BYTES = 1 << 30


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; a damaged file is one ConfigError naming it."""
    gz = path.suffix == ".gz"
    redo = "; download it again (or reinstall dataset-fashion-mnist)."
    try:
        raw = open_regular(path)
    except NotRegularFileError as err:
        raise ConfigError(f"{err}; put the IDX file itself there.") from None
    except OSError as err:
        raise ConfigError(f"{path} cannot be read ({err.strerror or type(err).__name__}){redo}") from None
    try:
        with raw, (gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw) as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise ConfigError(f"{path} is truncated (no IDX header){redo}")
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
                raise ConfigError(f"{path} is not an unsigned-byte IDX file{redo}")
            dims = fh.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ConfigError(f"{path} is truncated (its IDX header is incomplete){redo}")
            shape = struct.unpack(f">{ndim}I", dims)
            size = int(np.prod(shape, dtype=np.int64))
            if size > MAX_IDX_BYTES:
                raise ConfigError(f"{path} declares {size} bytes of data (shape {shape}), more than an IDX "
                                  f"dataset holds{redo}")
            data = fh.read(size + 1)
    except (OSError, EOFError, zlib.error) as err:  # not gzip, a truncated gzip stream, unreadable
        raise ConfigError(f"{path} cannot be read as {'gzipped ' if gz else ''}IDX "
                          f"({type(err).__name__}: {' '.join(str(err).split())[:80]}){redo}") from None
    if len(data) != size:
        what = "is truncated" if len(data) < size else "has data past its declared end"
        raise ConfigError(f"{path} {what} ({min(len(data), size)} of {size} bytes for shape {shape}){redo}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _fashion(root: str, split: str) -> tuple[Dataset, int]:
    candidates = [Path(root).expanduser()] if root else [Path(p) for p in FASHION_DIRS]
    names = FASHION_FILES["train" if split == "train" else "test"]
    for directory in candidates:
        found = [next(iter(sorted(directory.rglob(n))), None) if directory.is_dir() else None for n in names]
        if all(found):
            pixels, targets = read_idx(found[0]), read_idx(found[1])
            if pixels.ndim != 3 or targets.ndim != 1:
                raise ConfigError(f"{found[0].parent}: expected images of shape (N, H, W) and labels of shape (N,), "
                                  f"got {pixels.shape} and {targets.shape}; check the files are the right ones.")
            if len(pixels) != len(targets):
                raise ConfigError(f"{found[0].parent}: {found[0].name} holds {len(pixels)} images but "
                                  f"{found[1].name} {len(targets)} labels; the files do not belong together.")
            if targets.size and int(targets.max()) > 9:
                raise ConfigError(f"{found[1]} holds label {int(targets.max())}, but Fashion-MNIST has 10 classes "
                                  "(0-9); the file is damaged or from another dataset.")
            images = torch.from_numpy(pixels.astype(np.float32) / 255.0)[:, None]
            labels = torch.from_numpy(targets.astype(np.int64))
            return TensorDataset(images, labels), 10
    where = root or ", ".join(FASHION_DIRS)
    raise ConfigError(f"Fashion-MNIST IDX files ({', '.join(names)}) not found in {where}; install Debian's "
                      "dataset-fashion-mnist package or pass fashion-mnist:DIR with the four .gz files.")


def _drop_unreadable(dataset, training: bool) -> None:  # noqa: ANN001
    """Open every image of an ImageFolder up front; leave out those that cannot be decoded. A training class
    left without images (a zip's ``__MACOSX/`` of AppleDouble files) is an error naming it: it would stay a
    class, with an output the model never learns."""
    from netsurgeon.progress import status

    good, bad = [], []
    unreadable = _unreadable_errors()
    for path, target in dataset.samples:
        try:
            dataset.loader(path)
        except unreadable:
            bad.append(path)
            continue
        good.append((path, target))
    if not good:
        raise ConfigError(f"no image under {dataset.root} can be read ({len(bad)} unreadable).")
    emptied = sorted(set(range(len(dataset.classes))) - {t for _, t in good})
    if training and emptied:
        names = ", ".join(dataset.classes[t] for t in emptied[:5])
        raise ConfigError(f"class folder(s) {names} under {dataset.root} hold no readable image (all left out as "
                          "unreadable), so the class(es) could never be learnt; remove the folder(s) (a zip's "
                          "__MACOSX/ holds no images) or add readable images.")
    dataset.samples = dataset.imgs = good
    dataset.targets = [t for _, t in good]
    if bad:
        status(f"left out {len(bad)} unreadable image(s) under {dataset.root} (first: {bad[0]})")


#: PIL modes of 16- and 32-bit integer greyscale images (16-bit PNGs open as one of these)
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}
#: evaluation split folder names, in the order they are looked for
EVAL_SPLITS = ("val", "test")


def _float_pixels(pixels: np.ndarray) -> np.ndarray:
    """A 32-bit float image (PIL mode ``F``: float TIFFs) in [0, 1]: as it is when its values lie in [0, 1],
    else read as 0-255 or 0-65535 data by its largest value (PIL's ``convert("RGB")`` would clip [0, 1] floats
    to 0 or 1 of 255: all black)."""
    if not np.isfinite(pixels).all():
        raise ValueError("a float image holding NaN or infinite pixels")
    top = float(pixels.max()) if pixels.size else 0.0
    scale = next((s for s in (1.0, 255.0, 65535.0) if top <= s), top)
    return np.clip(pixels / scale, 0.0, 1.0)


def load_image(path: str) -> object:
    """An image file as a PIL RGB image, or, for 16-bit greyscale (``I;16``), a float (1, H, W) tensor scaled
    by 1/65535 (PIL's ``convert("RGB")`` clips such pixels to 255: nearly white), or for 32-bit float
    greyscale (``F``) one in [0, 1] (see :func:`_float_pixels`). Only a regular file is read."""
    from PIL import Image

    with open_regular(path) as fh:  # a FIFO named .png would block the loader forever
        image = Image.open(fh)
        if image.mode in _WIDE_MODES:
            pixels = np.asarray(image, dtype=np.float32) / _WIDE_MODES[image.mode]
            return torch.from_numpy(np.clip(pixels, 0.0, 1.0))[None]
        if image.mode == "F":
            return torch.from_numpy(_float_pixels(np.asarray(image, dtype=np.float32)))[None]
        return image.convert("RGB")


def _eval_dir(base: Path) -> Path:
    for name in EVAL_SPLITS:
        if (base / name).is_dir():
            return base / name
    raise ConfigError(f"image folder {base} has train/ but no val/ or test/; add one (CLASS/*.png inside, the class "
                      "names of train/), or point folder: at a directory holding the class folders themselves.")


def _folder(root: str, split: str, skip_unreadable: bool = False) -> tuple[Dataset, int]:
    """``DIR/train`` + ``DIR/val`` (or ``DIR/test``), labels by class name from the training split; or
    ``DIR/CLASS/`` for both splits. A class found only in the evaluation split is an error."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import find_classes

    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"image folder {base} does not exist; expected {base}/train/CLASS/*.png (or {base}/CLASS/).")
    split_layout = (base / "train").is_dir()
    train_dir = base / "train" if split_layout else base
    directory = train_dir if split == "train" or not split_layout else _eval_dir(base)
    _check_link_loops(directory)
    try:
        classes, class_to_idx = find_classes(str(train_dir))
        if directory != train_dir:
            extra = sorted(set(find_classes(str(directory))[0]) - set(classes))
            if extra:
                raise ConfigError(f"image folder {directory} has class(es) {', '.join(extra[:5])} that "
                                  f"{train_dir} lacks; every evaluation class must be a training class (labels are "
                                  "matched by class name).")
        dataset = ImageFolder(str(directory), loader=load_image, allow_empty=directory != train_dir)
    except (FileNotFoundError, RuntimeError) as err:
        raise ConfigError(f"image folder {directory}: {err}") from None
    if dataset.classes != classes:  # an evaluation split with fewer classes: its labels are the training split's
        own = dataset.classes
        dataset.samples = dataset.imgs = [(path, class_to_idx[own[t]]) for path, t in dataset.samples]
        dataset.targets = [t for _, t in dataset.samples]
        dataset.classes, dataset.class_to_idx = classes, class_to_idx
    if skip_unreadable:
        _drop_unreadable(dataset, training=directory == train_dir)
    return dataset, len(classes)


def _check_link_loops(root: Path) -> None:
    """Refuse a folder tree that reaches a directory twice (a symbolic link to an ancestor loops; torchvision's
    walk follows it until the path is too long, repeating the class's images dozens of times)."""
    seen: dict[str, str] = {}
    for top, _, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            raise ConfigError(f"image folder {root}: {top} leads back to {seen[real]} (a symbolic link loop, or a "
                              "second link to one folder), so its images would be read again and again; remove the "
                              "link.")
        seen[real] = top


#: split= values tried, in order, for a torchvision dataset without ``train=`` (Flowers102: train/val/test,
#: OxfordIIITPet: trainval/test, SVHN and STL10: train/test)
TORCHVISION_SPLITS = {"train": ("train", "trainval"), "test": ("test", "val", "valid")}


def _torchvision(name: str, root: str, split: str, download: bool) -> tuple[Dataset, int]:
    """A torchvision dataset whose constructor takes ``train=`` (CIFAR10, MNIST, ...) or ``split=``
    (SVHN, STL10, Flowers102, ...); anything else is refused, naming what to use instead."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise ConfigError(f"torchvision has no dataset {name!r} (e.g. CIFAR10, SVHN, STL10, FashionMNIST, "
                          "Flowers102).")
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if issubclass(cls, tvd.DatasetFolder) and "split" not in params:
        raise ConfigError(f"torchvision:{name} is a generic image folder; use --data folder:DIR instead "
                          "(DIR/train/CLASS/*.png and DIR/val/CLASS/*.png).")
    if "train" in params:
        choices: list[dict[str, object]] = [{"train": split == "train"}]
        if name == "EMNIST":
            choices[0]["split"] = "balanced"
    elif "split" in params:
        choices = [{"split": value} for value in TORCHVISION_SPLITS[split]]
    else:
        raise ConfigError(f"torchvision:{name} has no train/test split (its constructor takes neither train= nor "
                          "split=); arrange its images as --data folder:DIR with DIR/train/CLASS/ and DIR/val/CLASS/.")
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
            raise ConfigError(f"{name} not found under {root} ({first}); download it there first (torchvision's "
                              "download=True on a machine online) and copy the files over.") from None
        except TypeError as err:  # a required argument netsurgeon does not know how to fill
            raise ConfigError(f"torchvision:{name} cannot be built with (root, {', '.join(kwargs)}) "
                              f"({str(err).splitlines()[0][:120]}); use --data folder:DIR instead.") from None
    else:
        raise ConfigError(f"torchvision:{name} has no {split} split netsurgeon knows ({'; '.join(refused)}); use "
                          "--data folder:DIR instead.")
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
