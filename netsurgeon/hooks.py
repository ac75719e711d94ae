"""Training hooks: how a pass acts during fine-tuning without the loop, the checkpoint or recipes naming it.

A pass that must act while the model trains (gru-fc keeps its zeros, rectifies again on a schedule and
clears optimizer state) gives ``register_pass(..., hooks=MyHooks)`` a :class:`TrainingHooks` subclass.
When fine-tuning starts, the loop asks that class for one instance per entry of the model's history
(:meth:`TrainingHooks.from_history`: a reloaded artifact brings its hooks back from the history alone)
and calls the events below, in the spirit of Composer's algorithm events:

====================  ====================================================================
``on_optimizer``      the optimizer was built (or restored from a checkpoint)
``on_epoch_start``    before the first batch of an epoch (not when resuming inside one)
``after_step``        after each optimizer step
``state_dict``        what to save in a training checkpoint (tensors and plain values)
``load_state_dict``   restore it on ``--resume``
====================  ====================================================================

Every event defaults to doing nothing. The loop calls hooks in history order, on every rank; data a hook
draws (``EpochStart.make_data``) comes in the same order on every rank, so hooks that reduce across
ranks stay in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netsurgeon.history import HistoryEntry
from netsurgeon.registry import get_pass

__all__ = ["EpochStart", "TrainingHooks", "hooks_for"]


@dataclass
class EpochStart:
    """What ``on_epoch_start`` gets."""

    epoch: int  # 0-based
    optimizer: torch.optim.Optimizer
    make_data: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # a fresh pass over training batches


class TrainingHooks:
    """Base class of a pass's training-time behaviour; override the events you need."""

    @classmethod
    def from_history(cls, model: nn.Module, entry: HistoryEntry) -> TrainingHooks | None:
        """The hooks for one history entry of this pass (``None``: nothing to do for this config)."""
        return cls()

    def on_optimizer(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer was built, or restored from a checkpoint."""

    def on_epoch_start(self, model: nn.Module, event: EpochStart) -> str | None:
        """Before an epoch's first batch; a returned line is printed and logged."""
        return None

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """After each optimizer step."""

    def after_ema_update(self, model: nn.Module, ema_model: nn.Module) -> None:
        """After each update of the weight EMA (``ema_decay``): ``ema_model`` is the averaged copy of ``model``
        (a constraint that holds on ``model``'s weights may need applying to it too)."""

    def state_dict(self) -> dict[str, Any]:
        """What a training checkpoint keeps of this hook (read back with ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore :meth:`state_dict` on ``--resume``."""


def hooks_for(model: nn.Module, history: Sequence[HistoryEntry]) -> list[TrainingHooks]:
    """One hook object per history entry whose pass registered training hooks, in history order."""
    hooks = []
    for entry in history:
        cls = get_pass(entry.pass_name).hooks
        hook = cls.from_history(model, entry) if cls is not None else None
        if hook is not None:
            hooks.append(hook)
    return hooks
