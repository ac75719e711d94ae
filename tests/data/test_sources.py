"""Data sources: the embedded digits, Fashion-MNIST IDX files, image folders, and clear errors."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from netsurgeon.data import load_dataset, make_loader
from netsurgeon.data.kinds.fashion_mnist import FASHION_DIRS, FASHION_FILES, read_idx
from netsurgeon.errors import ConfigError


def test_digits_is_embedded_split_and_adapted_to_the_model():
    train, test = load_dataset("digits", "train", (3, 32, 32)), load_dataset("digits", "test", (3, 32, 32))
    assert len(train) + len(test) == 1797 and len(test) == 360 and train.num_classes == 10
    x, y = next(iter(make_loader(train, 16, shuffle=True)))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    again = next(iter(make_loader(train, 16, shuffle=True)))
    assert torch.equal(again[1], y)  # seeded order


def _write_idx(path: Path, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(array.astype(np.uint8).tobytes())


def test_idx_files_are_read_directly(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (5, 28, 28)), np.array([0, 1, 2, 3, 9])
    for img_name, lab_name in FASHION_FILES.values():
        _write_idx(tmp_path / img_name, images)
        _write_idx(tmp_path / lab_name, labels)
    assert np.array_equal(read_idx(tmp_path / FASHION_FILES["train"][0]), images)
    data = load_dataset(f"fashion-mnist:{tmp_path}", "test", (1, 28, 28), mean=(0.0,), std=(1.0,))
    x, y = data[4]
    assert y == 9 and torch.allclose(x[0], torch.from_numpy(images[4] / 255.0).float())


def test_real_fashion_mnist_when_the_package_is_installed():
    if not any(Path(d).is_dir() for d in FASHION_DIRS):
        pytest.skip("dataset-fashion-mnist is not installed on this machine (dpkg -L dataset-fashion-mnist)")
    train = load_dataset("fashion-mnist", "train", (1, 28, 28))
    test = load_dataset("fashion-mnist", "test", (1, 28, 28))
    assert (len(train), len(test)) == (60000, 10000)


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "train" / cls / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}", "train", (3, 16, 16))
    assert len(data) == 4 and data.num_classes == 2 and data[3][0].shape == (3, 16, 16) and data[3][1] == 1
    with pytest.raises(ConfigError, match="3-channel images but the model takes 1"):
        load_dataset(f"folder:{tmp_path}", "train", (1, 16, 16))[0]


@pytest.mark.parametrize(("spec", "message"), [
    ("imagenet", "unknown data spec"),
    ("fashion-mnist:/nonexistent", "not found in /nonexistent"),
    ("folder:/nonexistent", "does not exist"),
    ("torchvision:CIFAR10:/nonexistent", "download it there first"),
    ("torchvision:NoSuchSet:/tmp", "torchvision has no dataset"),
])
def test_bad_data_specs_give_clear_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(spec, "train", (3, 32, 32))
