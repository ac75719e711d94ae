"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), always available
offline: the embedded default. Split 80/20 with a fixed permutation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from netsurgeon.data.kinds.base import DataKind, DataSpec, register_data_kind


def _parse(rest: str) -> DataSpec | None:
    return None if rest else DataSpec("digits")


def load_digits(spec: DataSpec, split: str, download: bool = False) -> tuple[Dataset, int]:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(order))
    chosen = order[:cut] if split == "train" else order[cut:]
    return TensorDataset(images[chosen], labels[chosen]), 10


KIND = register_data_kind(DataKind(
    "digits", "digits", "scikit-learn's bundled 8x8 digits: always available offline", _parse, load_digits))
