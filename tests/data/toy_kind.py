"""A toy data kind for the plug-in tests, defined outside the package: ``NAME:N`` gives N seeded random 3x8x8 images
of four classes (and N // 4 test images). ``tests/data/test_data_kind_plugin.py`` registers it from a test file,
``tests/test_installed_plugins.py`` from an installed plug-in module."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from netsurgeon.data import DataKind, DataSpec

CLASSES = 4


def toy_kind(name: str = "toy") -> DataKind:
    """The toy kind called ``name`` (grammar ``NAME:N``), not registered."""

    def parse(rest: str) -> DataSpec | None:
        return DataSpec(name, rest) if rest.isdigit() and int(rest) > 0 else None

    def load(spec: DataSpec, split: str, download: bool) -> tuple[Dataset, int]:
        count = int(spec.path) if split == "train" else max(int(spec.path) // 4, 1)
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = torch.rand(count, 3, 8, 8, generator=generator)
        return TensorDataset(images, torch.arange(count) % CLASSES), CLASSES

    return DataKind(name, f"{name}:N", "N seeded random 3x8x8 images of four classes (a test's own kind)", parse,
                    load)
