"""Where a model came from: carried on the module so that export can write its provenance."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from netsurgeon.history import HistoryEntry, Registered, parse_history

__all__ = ["DEFAULT_INPUT_SIZE", "ModelInfo", "copy_model", "get_info", "model_input_size", "probe_input", "set_info"]

_ATTR = "_netsurgeon_info"
DEFAULT_INPUT_SIZE = (3, 224, 224)


@dataclass
class ModelInfo:
    spec: str  # resolved model spec, e.g. 'torchvision:resnet50'
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments (num_classes, ...)
    checkpoint: str | None = None  # the source checkpoint's file name
    checkpoint_sha256: str | None = None
    input_size: tuple[int, ...] = DEFAULT_INPUT_SIZE  # (C, H, W) the model expects
    history: tuple[HistoryEntry, ...] = ()  # passes applied so far, oldest first
    sources: list[str] = field(default_factory=list)  # absolute paths of input files (never exported)
    reinitialized: list[str] = field(default_factory=list)  # checkpoint keys left fresh (a new class count)
    checkpoint_entry: str | None = None  # the trainer's entry the weights came from (state_dict_ema, ...)
    checkpoint_alternatives: list[str] = field(default_factory=list)  # its other weight entries (not used)

    def to_dict(self) -> dict[str, Any]:
        """The header's ``model`` entry (plain values; the history as JSON steps)."""
        # sources are never exported; the checkpoint entry and its alternatives are recorded under the
        # provenance's "weights" (netsurgeon.models.load.weights_source), not here
        skipped = ("sources", "checkpoint_entry", "checkpoint_alternatives")
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in skipped}
        d["input_size"] = list(self.input_size)
        d["history"] = [entry.to_json() for entry in self.history]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, registered: Registered) -> ModelInfo:
        """Read :meth:`to_dict`'s output back (a validated header's ``model``; ``registered``: the registry's
        :func:`~netsurgeon.registry.registered_contract`)."""
        d = dict(d)
        d["input_size"] = tuple(d.get("input_size") or DEFAULT_INPUT_SIZE)
        d["history"] = parse_history(d.get("history", []), "model.history", registered=registered)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def get_info(model: nn.Module) -> ModelInfo | None:
    return getattr(model, _ATTR, None)


def set_info(model: nn.Module, info: ModelInfo) -> None:
    # a plain attribute: not a parameter, survives deepcopy, never enters the state_dict
    object.__setattr__(model, _ATTR, copy.deepcopy(info))


def model_input_size(model: nn.Module) -> tuple[int, ...]:
    """The (C, H, W) the model was recorded with (``DEFAULT_INPUT_SIZE`` when it carries no provenance)."""
    info = get_info(model)
    return tuple(info.input_size) if info else DEFAULT_INPUT_SIZE


def probe_input(model: nn.Module, input_size: Sequence[int] | None = None, batch: int = 2) -> torch.Tensor:
    """A seeded random batch shaped for ``model`` (its recorded input size unless given)."""
    size = tuple(input_size or model_input_size(model))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, *size, generator=generator)


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that keeps the provenance.

    Results of ``apply`` keep the user's class, whose deepcopy keeps the provenance by itself; this is
    still needed for a user's own ``torch.fx.GraphModule``, whose deepcopy drops extra attributes.
    """
    copied = copy.deepcopy(model)
    info = get_info(model)
    if info is not None:
        set_info(copied, info)
    return copied
