"""The parts a fine-tuning run is built from, each made from its config: the optimizer over its parameter groups,
mixed precision, the BatchNorm-recalibration policy, mixup/CutMix, the weight EMA (and which weights a run returns),
and the loss (auxiliary heads included)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsurgeon.errors import ConfigError
from netsurgeon.models.info import get_info
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.optimizers import create_optimizer
from netsurgeon.train.schema import Key

__all__ = ["AUX_LOSS_WEIGHT", "Parts", "autocast_for", "build_parts", "chosen_weights", "learning_rates", "make_ema",
           "make_mixup", "make_optimizer", "needs_bn_recalibration", "param_groups", "split_auxiliary",
           "training_loss"]

#: weight of each auxiliary classifier's loss (torchvision GoogLeNet and Inception-v3 in train mode), as in
#: the GoogLeNet paper (Szegedy et al. 2015, section 5: "weighted by 0.3").
AUX_LOSS_WEIGHT = 0.3


def param_groups(model: nn.Module, cfg: FinetuneConfig, new_params: set[str]) -> list[dict[str, Any]]:
    """Four groups at most: (pretrained | created by a pass) x (decayed weights | biases and norms)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name in new_params, p.ndim > 1), []).append(p)
    out = []
    for (new, decay), params in sorted(groups.items()):
        lr = cfg.lr * (cfg.new_param_lr_scale if new else 1.0)
        out.append({"params": params, "lr": lr, "initial_lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0,
                    "netsurgeon_new": new})
    return out


def make_optimizer(model: nn.Module, cfg: FinetuneConfig, new_params: set[str]) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (any timm optimizer, :mod:`netsurgeon.train.optimizers`) over :func:`param_groups`."""
    groups = param_groups(model, cfg, new_params)
    if not groups:
        raise ConfigError("the model has no trainable parameters.")
    return create_optimizer(groups, cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, args=cfg.optimizer_args)


def autocast_for(cfg: FinetuneConfig, device: torch.device) -> tuple[contextlib.AbstractContextManager, str]:
    amp = cfg.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    if amp == "off":
        return contextlib.nullcontext(), "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp=fp16 needs a GPU; use amp=bf16 or amp=off on the CPU.")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), amp


def needs_bn_recalibration(model: nn.Module, cfg: FinetuneConfig) -> bool:
    from netsurgeon.registry import Contract, get_pass

    if cfg.bn_recalibrate != "auto":
        return cfg.bn_recalibrate == "on"
    info = get_info(model)
    for step in info.history if info else []:
        # the contract the pass reported (a warm-started head is exact)
        if get_pass(step.pass_name).structural and step.contract == Contract.CHANGES_FUNCTION:
            return True
    return False


def make_mixup(cfg: FinetuneConfig, num_classes: int | None):  # noqa: ANN202 (timm.data.Mixup)
    if num_classes is None:
        raise ConfigError("mixup/cutmix need the data's class count; give the Dataset a num_classes attribute.")
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.label_smoothing, num_classes=num_classes)


def make_ema(model: nn.Module, cfg: FinetuneConfig):  # noqa: ANN202 (timm.utils.ModelEmaV3)
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup)


def split_auxiliary(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The logits and any auxiliary logits of a train-mode forward.

    Surgery keeps the model's class, so torchvision GoogLeNet and Inception-v3 return their auxiliary
    heads in train mode (``GoogLeNetOutputs``/``InceptionOutputs``: the logits first). Fine-tuning trains
    them too: each adds ``AUX_LOSS_WEIGHT`` times its cross-entropy; accuracy counts the logits only.
    """
    if isinstance(output, torch.Tensor):
        return output, []
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0], [t for t in output[1:] if isinstance(t, torch.Tensor)]
    raise ConfigError(f"the model returns a {type(output).__name__} in train mode; fine-tuning needs logits "
                      "(or a tuple whose first item is the logits).")


def training_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Soft-target cross-entropy for mixed targets (label smoothing is in them), else hard-label CE."""
    if targets.ndim == 2:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()(logits.float(), targets)
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """lr: the pretrained parameters' rate; lr_new: the rate of parameters a pass created (when any)."""
    base = [g["lr"] for g in optimizer.param_groups if not g.get("netsurgeon_new")]
    new = [g["lr"] for g in optimizer.param_groups if g.get("netsurgeon_new")]
    rates = {Key.LR: base[0] if base else new[0]}
    if base and new:
        rates[Key.LR_NEW] = new[0]
    return rates


def chosen_weights(model: nn.Module, ema: Any, choice: str, metrics: list[dict[str, Any]]) -> tuple[nn.Module, str]:
    """The weights a run returns (and its export holds): raw, or the EMA's (``ema_export``; best: the better top-1
    on the last evaluation, raw on a tie; EMA when nothing was evaluated)."""
    if ema is None:
        return model, "raw"
    if choice == "best":
        last = next((r for r in reversed(metrics) if Key.EMA_TEST_TOP1 in r), None)
        choice = "ema" if last is None or last[Key.EMA_TEST_TOP1] > last[Key.TEST_TOP1] else "raw"
    return (ema.module if choice == "ema" else model), choice


@dataclass
class Parts:
    """What the loop trains with besides the model, made from the config by :func:`build_parts`."""

    optimizer: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    amp: str  # the mixed precision in use (amp=auto resolved)
    scaler: torch.amp.GradScaler | None  # fp16 only
    ema: Any = None  # timm's ModelEmaV3 (ema_decay), around the unwrapped model
    mixup: Any = None  # timm's Mixup (mixup, cutmix)


def build_parts(model: nn.Module, cfg: FinetuneConfig, device: torch.device, new_params: set[str],
                num_classes: int | None) -> Parts:
    """The optimizer (after surgery: ``new_params`` get their own rate), AMP, EMA and mixup of a run."""
    autocast, amp = autocast_for(cfg, device)
    optimizer = make_optimizer(model, cfg, new_params)
    ema = make_ema(model, cfg) if cfg.ema_decay is not None else None
    mixup = make_mixup(cfg, num_classes) if cfg.mixes else None
    return Parts(optimizer, autocast, amp, torch.amp.GradScaler("cuda") if amp == "fp16" else None, ema, mixup)
