"""The ``folder`` kind: an image folder DIR, ``DIR/train/CLASS/*`` with ``DIR/val/CLASS/*`` or ``DIR/test/CLASS/*`` for
evaluation (``val/`` first), or ``DIR/CLASS/*`` for both splits. Labels come from the training split's class
names; a class found only in the evaluation split is an error. 16-bit greyscale and 32-bit float images are
scaled to [0, 1] (:func:`load_image`); only regular files are read; a folder tree that reaches a directory twice
is refused; ``skip_unreadable`` leaves unreadable images out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from netsurgeon.data.kinds.base import DataKind, DataSpec, register_data_kind, unreadable_errors
from netsurgeon.errors import ConfigError
from netsurgeon.validate import open_regular

__all__ = ["EVAL_SPLITS", "KIND", "load_folder", "load_image"]

#: PIL modes of 16- and 32-bit integer greyscale images (16-bit PNGs open as one of these)
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}
#: evaluation split folder names, in the order they are looked for
EVAL_SPLITS = ("val", "test")


def _drop_unreadable(dataset, training: bool) -> None:  # noqa: ANN001
    """Open every image of an ImageFolder up front; leave out those that cannot be decoded. A training class
    left without images (a zip's ``__MACOSX/`` of AppleDouble files) is an error naming it: it would stay a
    class, with an output the model never learns."""
    from netsurgeon.progress import status

    good, bad = [], []
    unreadable = unreadable_errors()
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


def load_folder(spec: DataSpec, split: str, download: bool = False) -> tuple[Dataset, int]:
    """``DIR/train`` + ``DIR/val`` (or ``DIR/test``), labels by class name from the training split; or
    ``DIR/CLASS/`` for both splits. A class found only in the evaluation split is an error."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import find_classes

    base = Path(spec.path).expanduser()
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
    if spec.skip_unreadable:
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


KIND = register_data_kind(DataKind(
    "folder", "folder:DIR", "an image folder", lambda rest: DataSpec("folder", rest) if rest else None, load_folder,
    image_tree=True, dataset_name=lambda spec: Path(spec.path).name))
