"""``fashion-mnist`` or ``fashion-mnist:DIR``: Fashion-MNIST read directly from its four IDX ``.gz`` files
(``train-images-idx3-ubyte.gz`` ...). Without DIR, the places Debian's ``dataset-fashion-mnist`` package
installs to are searched. A damaged file is one error naming it."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from netsurgeon.data.kinds.base import DataKind, DataSpec, register_data_kind
from netsurgeon.errors import ConfigError
from netsurgeon.validate import NotRegularFileError, open_regular

__all__ = ["FASHION_DIRS", "FASHION_FILES", "KIND", "MAX_IDX_BYTES", "load_fashion", "read_idx"]

FASHION_DIRS = ("/usr/share/fashion-mnist", "/usr/share/dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist",
                "/usr/share/doc/dataset-fashion-mnist")
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
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


def load_fashion(spec: DataSpec, split: str, download: bool = False) -> tuple[Dataset, int]:
    root = spec.path
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
    raise KIND.missing(f"Fashion-MNIST IDX files ({', '.join(names)}) not found in {where}")


KIND = register_data_kind(DataKind(
    "fashion-mnist", "fashion-mnist[:DIR]",
    "the four IDX .gz files, read directly; Debian's dataset-fashion-mnist package is found without DIR",
    lambda rest: DataSpec("fashion-mnist", rest), load_fashion,
    offline="install Debian's dataset-fashion-mnist package or pass fashion-mnist:DIR with the four .gz files."))
