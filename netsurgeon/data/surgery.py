"""The batches a data-driven pass (gru-fc) measures on, built one way for the CLI, recipes and Python."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.utils.data import DataLoader

from netsurgeon.data.sources import DataSpec, check_label_range, load_dataset, make_loader
from netsurgeon.data.transforms import model_data_config
from netsurgeon.models.info import model_input_size

__all__ = ["surgery_loader"]


def surgery_loader(data: str | DataSpec, model: nn.Module, *, batch_size: int, seed: int = 0,
                   input_size: Sequence[int] | None = None) -> DataLoader:
    """The training split of ``data``, unaugmented (a pass measures), resized to ``input_size`` (default: the
    model's) and normalised with the model's own statistics, in batches of ``batch_size`` in a fixed order;
    refused up front when the data has more classes than the model outputs."""
    size = tuple(input_size or model_input_size(model))
    config = model_data_config(model)
    dataset = load_dataset(data, "train", size, mean=config.mean, std=config.std)
    check_label_range(model, dataset, size)
    return make_loader(dataset, batch_size, shuffle=False, seed=seed)
