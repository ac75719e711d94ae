"""gru-fc: gradient-rectified parameter unit of the FC layer (Zheng, Wang, Shen, Lin, Knowledge-Based
Systems 248, 108797, 2022): zero the FC parameters that generate negative gradients, then retrain.

The paper's full text was not available; this is a reconstruction from its abstract and Grad-CAM (for
GAP followed by one FC layer, the negative gradients for class c come exactly from the negative weights
``W[c, k]``), generalised to any Linear layer on the logit path. For a selected
Linear layer with output ``z = W a + b`` and target-class logit ``s_n`` (the label, or the prediction):

    delta[i] = sum_n ds_n/dz_n[i]      (eval mode, summed over samples and extra dims)
    G[i, j]  = W[i, j] * delta[i]      (the Grad-CAM contribution of W[i, j])
    W[i, j] <- 0 where G[i, j] < -threshold          (biases untouched)

Modes:

* ``weight_sign`` (the paper's simplified single-FC version, no data): on the logits layer with the
  label as target, ``delta[i]`` is the count of class ``i``, so the rule zeroes every negative weight.
  Applied to all rows (every class assumed present).
* ``grad_contrib`` (needs data): the general rule; the default for GRU-FC-2L, the last two Linear layers
  on the logit path of networks with two or more (VGG ``classifier.3``/``.6``, AlexNet ``.4``/``.6``).
* ``loss_grad`` (experimental): ``G = -W * dL/dW`` accumulated over the data (zero the weights that
  gradient descent pushes towards zero); near convergence the accumulated loss gradient is dominated by
  noise and zeroes weights that gradient descent wants to increase, hence experimental.

``delta`` is accumulated in float64 (more than the float32 asked for), so the mask does not depend on
the batch order; under ``torch.distributed`` it is summed across ranks first, so every rank gets the
same mask. ``freeze_zeros``, ``reset_optimizer_state`` and ``rounds``/``every_n_epochs`` act during
fine-tuning through :class:`~netsurgeon.passes.gru_fc_hooks.GruFcHooks`, the pass's training hooks
(``netsurgeon.hooks``). This module holds the rule (its config, ``delta``, :func:`rectify`);
``gru_fc_hooks`` the training hooks; ``gru_fc`` the layer selection and the registered pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from netsurgeon.graph.nodes import CONV_MODULES
from netsurgeon.surgery import ConfigError, HistoryEntry, PassConfig, SiteChange

__all__ = ["MASK_BUFFER", "Batches", "GradientRectifiedFC", "accumulate_delta", "rectify", "set_mask"]

#: non-persistent buffer on each rectified Linear: True where the weight was zeroed (state_dict unchanged)
MASK_BUFFER = "netsurgeon_gru_fc_zeros"
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GradientRectifiedFC(PassConfig):
    """Zero the FC parameters that generate negative gradients, then retrain (GRU-FC, GRU-FC-2L)."""

    mode: Literal["auto", "weight_sign", "grad_contrib", "loss_grad"] = "auto"
    """auto: weight_sign on a single FC layer (no data), grad_contrib for GRU-FC-2L; loss_grad is experimental."""
    layers: Literal["auto"] | tuple[str, ...] = "auto"
    """auto: the logits Linear, or the last two Linear layers on the logit path when there are two or more."""
    target: Literal["label", "pred"] = "label"
    """Whose logit defines the gradient: the true label, or the predicted class."""
    threshold: float = 0.0
    """Zero W[i, j] where its contribution G[i, j] < -threshold."""
    max_batches: int | None = None
    """Use at most this many batches of data for delta (default: all)."""
    rounds: int = 1
    """How many times fine-tuning rectifies in all (1: once, before training)."""
    every_n_epochs: int | None = None
    """Fine-tuning rectifies again every n epochs (until rounds is reached)."""
    freeze_zeros: bool = False
    """During fine-tuning keep rectified weights at exactly zero (gradient masked, re-zeroed after each step)."""
    reset_optimizer_state: bool = True
    """Clear momentum / Adam moments of rectified tensors when rectifying during fine-tuning."""

    def uses_data(self) -> bool:
        return True  # mode=auto on a 2-layer head picks grad_contrib

    def requires_data(self) -> str | None:
        return "mode" if self.mode in ("grad_contrib", "loss_grad") else None

    def validate(self) -> None:
        if self.threshold < 0:
            self.fail(f"threshold must be 0 or more, got {self.threshold}.")
        if self.rounds < 1 or (self.every_n_epochs is not None and self.every_n_epochs < 1):
            self.fail("rounds and every_n_epochs must be at least 1.")
        if self.rounds > 1 and self.every_n_epochs is None:
            self.fail(f"rounds={self.rounds} needs every_n_epochs (how often to rectify again).")
        if self.max_batches is not None and self.max_batches < 1:
            self.fail(f"max_batches must be at least 1, got {self.max_batches}.")
        if self.layers != "auto" and not self.layers:
            self.fail("layers must be 'auto' or a non-empty list of Linear module paths.")


@dataclass(frozen=True)
class Resolved:
    """What the surgery resolved from 'auto' (the mode and the layers), kept in the pass's history entry so
    that fine-tuning re-rectifies the same way."""

    mode: str
    layers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "layers": list(self.layers)}

    @classmethod
    def of(cls, entry: HistoryEntry) -> Resolved:
        """From a gru-fc history entry; an older artifact without them falls back to the entry's sites and
        the mode 'auto' gives for that many layers."""
        recorded = {"mode": None, "layers": None, **entry.resolved}
        layers = tuple(recorded["layers"] or entry.sites)
        return cls(recorded["mode"] or ("weight_sign" if len(layers) == 1 else "grad_contrib"), layers)


def set_mask(layer: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """(Re-)register ``mask`` as ``layer``'s :data:`MASK_BUFFER` and return it. The buffer is non-persistent
    (the state_dict is unchanged): rectifying sets it, and the training hooks set it again from a reloaded
    artifact's zeros or a training checkpoint."""
    if hasattr(layer, MASK_BUFFER):
        delattr(layer, MASK_BUFFER)
    layer.register_buffer(MASK_BUFFER, mask, persistent=False)
    return mask


def _channels_last(module: nn.Module, grad: torch.Tensor) -> torch.Tensor:
    """Output gradients as (samples, features): a convolution's channels are dim 1, a Linear's the last."""
    if isinstance(module, CONV_MODULES):
        grad = grad.movedim(1, -1)
    return grad.reshape(-1, grad.shape[-1])


def _targets(logits: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    if target == "pred":
        return logits.argmax(1)
    labels = labels.to(logits.device).long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ConfigError(f"gru-fc: a label {int(labels.max())} falls outside the model's {logits.shape[1]} "
                          f"classes; use data with at most {logits.shape[1]} classes, or build the model with "
                          "that many classes (num_classes).")
    return labels


def accumulate_delta(model: nn.Module, layers: Sequence[str], data: Batches, *, target: str = "label",
                     max_batches: int | None = None, loss: bool = False) -> dict[str, torch.Tensor]:
    """``delta`` per layer (float64, eval mode), or for ``loss=True`` the accumulated ``dL/dW``.

    Summed across ranks when ``torch.distributed`` is initialised, so every rank gets the same result.
    """
    modules = {name: model.get_submodule(name) for name in layers}
    captured: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: captured.__setitem__(name, out))
             for name, m in modules.items()]
    sums: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for k, (x, y) in enumerate(data):
            if max_batches is not None and k >= max_batches:
                break
            logits = model(x.to(device))
            wanted = _targets(logits, y, target)
            if loss:
                value = nn.functional.cross_entropy(logits, wanted, reduction="sum")
                grads = torch.autograd.grad(value, [modules[n].weight for n in layers])
                parts = {n: g.double() for n, g in zip(layers, grads, strict=True)}
            else:
                score = logits.gather(1, wanted[:, None]).sum()
                grads = torch.autograd.grad(score, [captured[n] for n in layers])
                parts = {n: _channels_last(modules[n], g.double()).sum(0) for n, g in zip(layers, grads, strict=True)}
            for n, part in parts.items():
                sums[n] = sums[n] + part if n in sums else part
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if not sums:
        raise ConfigError("gru-fc: the data gave no batches.")
    if dist.is_available() and dist.is_initialized():
        for value in sums.values():
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return sums


@torch.no_grad()
def rectify(model: nn.Module, layers: Sequence[str], mode: str, cfg: GradientRectifiedFC,
            data: Batches | None = None) -> list[SiteChange]:
    """Zero the selected weights in place (the model's own tensors); returns one change per layer."""
    if mode in ("grad_contrib", "loss_grad") and data is None:
        raise ConfigError(f"gru-fc mode={mode} needs data: give --data (CLI), data= (Python), or a recipe's "
                          "finetune.data; mode=weight_sign needs none but only rectifies the logits layer.")
    if mode == "grad_contrib":
        with torch.enable_grad():
            delta = accumulate_delta(model, layers, data, target=cfg.target, max_batches=cfg.max_batches)
    elif mode == "loss_grad":
        with torch.enable_grad():
            delta = accumulate_delta(model, layers, data, target=cfg.target, max_batches=cfg.max_batches, loss=True)
    changes = []
    for name in layers:
        linear: nn.Module = model.get_submodule(name)
        w = linear.weight.view(linear.weight.shape[0], -1)  # a 1x1 conv head's weight as (out, in)
        if mode == "weight_sign":
            contribution = w.double()
        elif mode == "grad_contrib":
            contribution = w.double() * delta[name][:, None]
        else:
            contribution = -w.double() * delta[name].reshape(w.shape)
        zero = (contribution < -cfg.threshold) & (w != 0)
        w.masked_fill_(zero, 0.0)
        mask = set_mask(linear, (linear.weight == 0).detach().clone())
        total = w.numel()
        kind = "Linear" if w.dim() == linear.weight.dim() else type(linear).__name__
        changes.append(SiteChange(site=name, before=f"{kind}({w.shape[1]}, {w.shape[0]})",
                                  after=f"{int(zero.sum()):,} of {total:,} weights zeroed ({mode}); "
                                        f"{int(mask.sum()):,} zero in all", block="fc", scope="weights"))
    return changes
