"""gru-fc during fine-tuning: keep its masks, freeze zeros if asked, re-rectify on its schedule.

The surgery rectifies once (round 1). The loop reads each gru-fc step of the model's history and
rectifies again at the start of every ``every_n_epochs``-th epoch until ``rounds`` is reached, with the
mode and layers the surgery resolved, then clears the optimizer state of those weights when
``reset_optimizer_state`` is set. With ``freeze_zeros`` the rectified weights stay exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from netsurgeon.passes.gru_fc import (
    MASK_BUFFER,
    GradientRectifiedFC,
    attach_to_optimizer,
    rectify,
    reset_optimizer_state,
)

__all__ = ["GruSchedule"]


@dataclass
class _Step:
    config: GradientRectifiedFC
    layers: list[str]
    mode: str


@dataclass
class GruSchedule:
    model: nn.Module
    steps: list[_Step] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)

    @classmethod
    def from_history(cls, model: nn.Module, history: Sequence[dict[str, Any]]) -> GruSchedule:
        steps = []
        for entry in history:
            if entry["pass"] != "gru-fc":
                continue
            config = GradientRectifiedFC.from_dict(entry["config"])
            resolved = entry.get("resolved") or {}
            layers = list(resolved.get("layers") or entry["sites"])
            mode = resolved.get("mode") or ("weight_sign" if len(layers) == 1 else "grad_contrib")
            steps.append(_Step(config, layers, mode))
            for name in layers:  # a reloaded artifact has the zeros but not the (non-persistent) mask
                linear = model.get_submodule(name)
                if not hasattr(linear, MASK_BUFFER):
                    linear.register_buffer(MASK_BUFFER, linear.weight.detach() == 0, persistent=False)
        return cls(model, steps)

    def masks(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self.model.get_submodule(name), MASK_BUFFER)
                for step in self.steps for name in step.layers}

    def load_masks(self, masks: dict[str, torch.Tensor], device: torch.device) -> None:
        for name, mask in masks.items():
            linear = self.model.get_submodule(name)
            if hasattr(linear, MASK_BUFFER):
                delattr(linear, MASK_BUFFER)
            linear.register_buffer(MASK_BUFFER, mask.to(device), persistent=False)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """(Re-)register the freeze_zeros hooks with the current masks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        if any(step.config.freeze_zeros for step in self.steps):
            self.handles = attach_to_optimizer(self.model, optimizer)

    def due(self, epoch: int, done: int) -> bool:
        """Whether any step rectifies again at the start of ``epoch`` (0-based), ``done`` rounds so far."""
        return any(s.config.every_n_epochs and epoch > 0 and epoch % s.config.every_n_epochs == 0
                   and done < s.config.rounds for s in self.steps)

    def rectify(self, model: nn.Module, make_data: Callable[[], Iterable], optimizer: torch.optim.Optimizer) -> str:
        """Rectify every step again; ``make_data()`` gives a fresh pass over the training batches."""
        zeroed = []
        for step in self.steps:
            data = make_data() if step.mode != "weight_sign" else None
            changes = rectify(model, step.layers, step.mode, step.config, data)
            zeroed += [c.after for c in changes]
            if step.config.reset_optimizer_state:
                reset_optimizer_state(optimizer, [model.get_submodule(n).weight for n in step.layers])
        self.attach(optimizer)
        return "gru-fc rectified again: " + "; ".join(zeroed)
