"""gru-fc during fine-tuning: :class:`GruFcHooks` keeps the masks, freezes the zeros if asked, and
rectifies again on the config's schedule (see :mod:`netsurgeon.passes.gru_fc_rule` for the rule)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from netsurgeon.passes.gru_fc_rule import MASK_BUFFER, GradientRectifiedFC, Resolved, rectify, set_mask
from netsurgeon.surgery import EpochStart, HistoryEntry, TrainingHooks

__all__ = ["GruFcHooks", "attach_to_optimizer", "reset_optimizer_state"]


def reset_optimizer_state(optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor]) -> int:
    """Forget momentum / Adam moments of ``params``; returns how many tensors had state."""
    cleared = 0
    for p in params:
        if p in optimizer.state and optimizer.state[p]:
            optimizer.state[p] = {}
            cleared += 1
    return cleared


def attach_to_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.utils.hooks.RemovableHandle]:
    """freeze_zeros: mask gradients before each step and re-zero the rectified weights after it.

    Weight decay, momentum and Adam moments then cannot move a rectified weight away from zero.
    """
    masked = [(m.weight, getattr(m, MASK_BUFFER)) for m in model.modules()
              if hasattr(m, MASK_BUFFER)]

    def before(opt, args, kwargs) -> None:
        for w, mask in masked:
            if w.grad is not None:
                w.grad.masked_fill_(mask, 0.0)

    @torch.no_grad()
    def after(opt, args, kwargs) -> None:
        for w, mask in masked:
            w.masked_fill_(mask, 0.0)

    return [optimizer.register_step_pre_hook(before), optimizer.register_step_post_hook(after)]


class GruFcHooks(TrainingHooks):
    """gru-fc during fine-tuning: keep its masks, freeze zeros if asked, re-rectify on its schedule.

    The surgery rectifies once (round 1). At the start of every ``every_n_epochs``-th epoch the layers are
    rectified again, with the mode and layers the surgery resolved, until ``rounds`` is reached; then the
    optimizer state of those weights is cleared when ``reset_optimizer_state`` is set. With
    ``freeze_zeros`` the rectified weights stay exactly zero. The masks (non-persistent buffers, so not
    in the state_dict) and the round count are saved in training checkpoints.
    """

    def __init__(self, model: nn.Module, config: GradientRectifiedFC, layers: list[str], mode: str) -> None:
        self.model, self.config, self.layers, self.mode = model, config, layers, mode
        self.rectified = 1  # the surgery itself was the first round
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    @classmethod
    def from_history(cls, model: nn.Module, entry: HistoryEntry) -> GruFcHooks:
        resolved = Resolved.of(entry)
        for name in resolved.layers:  # a reloaded artifact has the zeros but not the (non-persistent) mask
            linear = model.get_submodule(name)
            if not hasattr(linear, MASK_BUFFER):
                set_mask(linear, linear.weight.detach() == 0)
        return cls(model, GradientRectifiedFC.from_dict(entry.plain_config()), list(resolved.layers), resolved.mode)

    def on_optimizer(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """(Re-)register the freeze_zeros hooks with the current masks."""
        for handle in self.handles:
            handle.remove()
        self.handles = attach_to_optimizer(model, optimizer) if self.config.freeze_zeros else []

    def on_epoch_start(self, model: nn.Module, event: EpochStart) -> str | None:
        every = self.config.every_n_epochs
        if not (every and event.epoch > 0 and event.epoch % every == 0 and self.rectified < self.config.rounds):
            return None
        data = event.make_data() if self.mode != "weight_sign" else None
        changes = rectify(model, self.layers, self.mode, self.config, data)
        self.rectified += 1
        if self.config.reset_optimizer_state:
            reset_optimizer_state(event.optimizer, [model.get_submodule(n).weight for n in self.layers])
        self.on_optimizer(model, event.optimizer)
        return "gru-fc rectified again: " + "; ".join(c.after for c in changes)

    @torch.no_grad()
    def after_ema_update(self, model: nn.Module, ema_model: nn.Module) -> None:
        """freeze_zeros: the EMA copy's rectified weights are exactly zero too (an average of a weight that was
        non-zero before a later round rectified it only tends to zero)."""
        if not self.config.freeze_zeros:
            return
        for name in self.layers:
            mask = getattr(model.get_submodule(name), MASK_BUFFER)
            linear = ema_model.get_submodule(name)
            linear.weight.masked_fill_(mask, 0.0)
            kept = getattr(linear, MASK_BUFFER, None)
            if kept is None or not torch.equal(kept, mask):  # a later round's mask (kept with the copy)
                set_mask(linear, mask.clone())

    def state_dict(self) -> dict[str, Any]:
        masks = {name: getattr(self.model.get_submodule(name), MASK_BUFFER) for name in self.layers}
        return {"rectified": self.rectified, "masks": masks}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.rectified = int(state["rectified"])
        for name, mask in state["masks"].items():
            set_mask(self.model.get_submodule(name), mask.to(device))
