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
fine-tuning through :class:`GruFcHooks`, the pass's training hooks (``netsurgeon.hooks``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from netsurgeon.config import PassConfig
from netsurgeon.errors import ConfigError, SurgeryError
from netsurgeon.graph.heads import logit_path_layers
from netsurgeon.graph.index import GraphIndex
from netsurgeon.history import HistoryEntry
from netsurgeon.hooks import EpochStart, TrainingHooks
from netsurgeon.outcome import PassOutcome
from netsurgeon.registry import Contract, register_pass
from netsurgeon.report import SiteChange
from netsurgeon.workspace import Workspace

__all__ = [
    "MASK_BUFFER",
    "GradientRectifiedFC",
    "GruFcHooks",
    "accumulate_delta",
    "attach_to_optimizer",
    "rectify",
    "reset_optimizer_state",
    "resolve_layers",
]

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


def resolve_layers(index: GraphIndex, cfg: GradientRectifiedFC) -> tuple[list[str], str]:
    """The Linear layers to rectify and the mode to use."""
    path = logit_path_layers(index)
    if not path and cfg.layers == "auto":
        raise SurgeryError("no nn.Linear or 1x1 convolution after global pooling makes the logits (walking back "
                           "from the output through flatten, dropout and identity); gru-fc rectifies the FC "
                           "classifier. If the logits combine several heads (a distillation head), name them with "
                           "layers=[...] and mode=grad_contrib.")
    if cfg.layers == "auto":
        layers = path[-1:] if (cfg.mode == "weight_sign" or len(path) == 1) else path[-2:]
    else:
        layers = list(cfg.layers)
        for name in layers:
            if name not in path and not isinstance(index.modules.get(name), nn.Linear):
                raise SurgeryError(f"layers: {name!r} is not an nn.Linear of this model; Linear layers on the "
                                   f"logit path: {', '.join(path)}.")
    mode = cfg.mode
    if mode == "auto":
        mode = "weight_sign" if layers == path[-1:] else "grad_contrib"
    if mode == "weight_sign" and layers != path[-1:]:
        logits = f"the logits layer ({path[-1]})" if path else "a single layer making the logits"
        raise SurgeryError(f"mode=weight_sign only holds for {logits}; use mode=grad_contrib for "
                           f"{', '.join(layers)}.")
    for name in layers:
        calls = index.call_count(name)
        if calls != 1:
            raise SurgeryError(f"{name} is called {calls} times; gru-fc needs each layer called exactly once.")
    weights = [id(index.modules[n].weight) for n in layers]
    shared = [n for n, m in index.modules.items() if isinstance(m, nn.Linear) and n not in layers
              and id(m.weight) in weights]
    if shared:
        raise SurgeryError(f"the weight of a selected layer is shared with {', '.join(shared)}; "
                           "gru-fc refuses tied weights.")
    return layers, mode


def _channels_last(module: nn.Module, grad: torch.Tensor) -> torch.Tensor:
    """Output gradients as (samples, features): a convolution's channels are dim 1, a Linear's the last."""
    if isinstance(module, nn.modules.conv._ConvNd):
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
        mask = (linear.weight == 0).detach().clone()
        if hasattr(linear, MASK_BUFFER):
            delattr(linear, MASK_BUFFER)
        linear.register_buffer(MASK_BUFFER, mask, persistent=False)
        total = w.numel()
        kind = "Linear" if w.dim() == linear.weight.dim() else type(linear).__name__
        changes.append(SiteChange(name, f"{kind}({w.shape[1]}, {w.shape[0]})",
                                  f"{int(zero.sum()):,} of {total:,} weights zeroed ({mode}); "
                                  f"{int(mask.sum()):,} zero in all", "fc", "weights"))
    return changes


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
        config = GradientRectifiedFC.from_dict(entry.plain_config())
        resolved = entry.resolved
        layers = list(resolved.get("layers") or entry.sites)
        mode = resolved.get("mode") or ("weight_sign" if len(layers) == 1 else "grad_contrib")
        for name in layers:  # a reloaded artifact has the zeros but not the (non-persistent) mask
            linear = model.get_submodule(name)
            if not hasattr(linear, MASK_BUFFER):
                linear.register_buffer(MASK_BUFFER, linear.weight.detach() == 0, persistent=False)
        return cls(model, config, layers, mode)

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

    def state_dict(self) -> dict[str, Any]:
        masks = {name: getattr(self.model.get_submodule(name), MASK_BUFFER) for name in self.layers}
        return {"rectified": self.rectified, "masks": masks}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.rectified = int(state["rectified"])
        for name, mask in state["masks"].items():
            linear = self.model.get_submodule(name)
            if hasattr(linear, MASK_BUFFER):
                delattr(linear, MASK_BUFFER)
            linear.register_buffer(MASK_BUFFER, mask.to(device), persistent=False)


@register_pass("gru-fc", GradientRectifiedFC, contract=Contract.CHANGES_FUNCTION, structural=False, hooks=GruFcHooks,
               edits_weights=True)
def gru_fc(ws: Workspace, cfg: GradientRectifiedFC) -> PassOutcome:
    index = ws.index("gru-fc")
    layers, mode = resolve_layers(index, cfg)
    changes = rectify(ws.model, layers, mode, cfg, ws.data)
    out = PassOutcome(changes, resolved={"mode": mode, "layers": layers},
                      changed_keys={f"{name}.weight" for name in layers})
    if mode == "loss_grad":
        out.note("mode=loss_grad is experimental (near convergence the loss gradient is mostly noise)")
    out.note(f"mode {mode} on {', '.join(layers)}; accuracy usually drops until the model is fine-tuned")
    return out
