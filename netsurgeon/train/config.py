"""``FinetuneConfig``: every knob of the fine-tuning loop, validated like a pass config."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from netsurgeon.config import Config, parse_scalar, plain_values
from netsurgeon.data.transforms import Augment  # the augmentation knobs' defaults live there once
from netsurgeon.errors import ConfigError
from netsurgeon.safeyaml import core_load
from netsurgeon.train.optimizers import check_optimizer

__all__ = ["FinetuneConfig", "as_config"]

#: ``--set optimizer_args.KEY=VALUE`` sets one key of optimizer_args
ARGS_PREFIX = "optimizer_args."


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """How to fine-tune a model after surgery. Defaults suit a short fine-tune of a pretrained CNN."""

    epochs: int = 3
    """Passes over the training data."""
    batch_size: int = 64
    """Per-process batch size (under torchrun the global batch is batch_size x world size)."""
    optimizer: str = "sgd"
    """Any timm optimizer (``timm.optim.list_optimizers()``: adamw, lamb, lion, adan...; case does not matter). sgd
    is plain momentum SGD (timm's momentum; timm's Nesterov SGD is nesterov)."""
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    """The optimizer's own keyword arguments, e.g. {betas: [0.9, 0.99]} (--set optimizer_args.betas=[0.9,0.99]);
    checked against its constructor. Unset ones keep the optimizer's defaults."""
    lr: float = 0.01
    """Peak learning rate of the pretrained parameters."""
    new_param_lr_scale: float = 10.0
    """Learning-rate multiplier for parameters a pass created (a new spinal head); 1 disables it."""
    momentum: float = 0.9
    """Momentum of the optimizers that have one (sgd, nesterov, lars, rmsprop...); the others ignore it."""
    weight_decay: float = 5e-4
    """Applied to weights only; biases and normalisation parameters get none."""
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    """Linear warm-up from 1% of the learning rate, in epochs (fractions allowed)."""
    step_epochs: tuple[int, ...] = ()
    """schedule=step: epochs at which the learning rate is multiplied by step_gamma."""
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.0
    """schedule=cosine: the final learning rate as a fraction of the peak."""
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None
    """Clip the global gradient norm to this value (None: no clipping)."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision: auto is bf16 on a GPU that supports it (fp16 otherwise) and off on the CPU."""
    channels_last: bool | None = None
    """None: channels_last memory format on a GPU, contiguous on the CPU."""
    compile: bool = False
    """Wrap the model in torch.compile for training."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    workers: int | Literal["auto"] = "auto"
    """DataLoader worker processes; auto: up to 8, one core left free, none for data held in memory (digits,
    Fashion-MNIST). Workers persist across epochs and pin memory on a GPU."""
    accumulate_steps: int = 1
    """Gradient accumulation: one optimizer step every n batches (effective batch batch_size x n)."""
    augment: Literal["none", "basic", "timm"] = "basic"
    """Training augmentation: basic is a crop_padding-padded random crop + flip up to 64 px (the CIFAR papers),
    random-resized-crop + flip above; timm is timm's own training transform with the knobs below; none only
    resizes and normalises. Evaluation always uses the model's own preprocessing (see the README)."""
    scale: tuple[float, float] = Augment.scale
    """Random-resized-crop area range (augment=basic above 64 px, augment=timm)."""
    ratio: tuple[float, float] = Augment.ratio
    """Random-resized-crop aspect-ratio range."""
    hflip: float = Augment.hflip
    """Horizontal-flip probability (0 for data that is not mirror-symmetric, such as digits)."""
    crop_padding: int = Augment.crop_padding
    """augment=basic up to 64 px: pixels of zero padding around the image before the random crop."""
    color_jitter: float | None = Augment.color_jitter
    """augment=timm: colour-jitter strength (None: none)."""
    auto_augment: str | None = Augment.auto_augment
    """augment=timm: a timm policy such as rand-m9-mstd0.5-inc1 (RandAugment), augmix-m5-w4-d2 or original."""
    re_prob: float = Augment.re_prob
    """augment=timm: random-erasing probability."""
    mixup: float = 0.0
    """Mixup alpha (0: off), through timm's Mixup with soft-target cross-entropy."""
    cutmix: float = 0.0
    """CutMix alpha (0: off)."""
    mixup_prob: float = 1.0
    """Probability of mixing a batch when mixup or cutmix is on."""
    mixup_switch_prob: float = 0.5
    """Probability of CutMix instead of mixup when both are on."""
    ema_decay: float | None = None
    """Weight EMA decay (timm ModelEmaV3, e.g. 0.999; None: off). Evaluated beside the raw weights."""
    ema_warmup: bool = True
    """Warm the EMA decay up over the first steps (timm's use_warmup), so a short fine-tune's EMA is not stale."""
    ema_export: Literal["best", "ema", "raw"] = "best"
    """Which weights the run returns and exports when EMA is on: best is the better top-1 on the last evaluation."""
    log: Literal["auto", "tensorboard", "wandb", "mlflow", "none"] = "auto"
    """Experiment logging in --out: auto writes TensorBoard events when tensorboard is installed; wandb logs to
    Weights & Biases (the wandb extra; logged in, or WANDB_MODE=offline), mlflow to MLflow (the mlflow extra;
    MLFLOW_TRACKING_URI, default sqlite:///OUT/mlflow.db), each besides TensorBoard."""
    wandb_project: str = "netsurgeon"
    """log=wandb: the Weights & Biases project; log=mlflow: the MLflow experiment."""
    eval_every: int = 1
    """Evaluate on the test split every n epochs (and always after the last)."""
    bn_recalibrate: Literal["auto", "on", "off"] = "auto"
    """Re-estimate BatchNorm statistics before training: auto does it after a function-changing pass."""
    bn_batches: int = 50
    """Training batches used to re-estimate BatchNorm statistics."""
    limit_train_batches: int | None = None
    """Train on at most this many batches per epoch (batches of batch_size, before accumulation), and recalibrate
    BN on at most as many (quick runs, tests)."""
    limit_eval_batches: int | None = None
    progress: bool = True
    """Progress bars on stderr (only on a terminal, only on rank 0)."""

    def __hash__(self) -> int:  # optimizer_args is a dict
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=repr))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        """As :meth:`Config.from_dict`, and ``optimizer_args`` from ``--set``: a YAML mapping
        (``optimizer_args={betas: [0.9, 0.99]}``) or one key at a time (``optimizer_args.betas=[0.9,0.99]``)."""
        values = dict(values)
        args = values.get("optimizer_args")
        if isinstance(args, str):
            try:
                args = core_load(args) if args.strip() else {}
            except yaml.YAMLError:
                args = None
            if not isinstance(args, dict):
                raise ConfigError(f"{cls._label()}: optimizer_args must be a mapping such as {{betas: [0.9, 0.99]}} "
                                  "(or --set optimizer_args.betas=[0.9,0.99]).")
            values["optimizer_args"] = args
        keys = [k for k in values if isinstance(k, str) and k.startswith(ARGS_PREFIX)]
        if keys:
            merged = dict(values.get("optimizer_args") or {})
            merged.update({k.removeprefix(ARGS_PREFIX): parse_scalar(values.pop(k)) for k in keys})
            values["optimizer_args"] = merged
        return super().from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "optimizer_args": plain_values(self.optimizer_args)}

    def validate(self) -> None:
        object.__setattr__(self, "optimizer", self.optimizer.strip().lower())  # timm's names are lower case
        object.__setattr__(self, "optimizer_args", {str(k): _frozen(v) for k, v in self.optimizer_args.items()})
        problem = check_optimizer(self.optimizer, self.optimizer_args)
        if problem:
            self.fail(problem)
        if self.epochs < 1:
            self.fail(f"epochs must be at least 1, got {self.epochs}.")
        if self.batch_size < 1:
            self.fail(f"batch_size must be at least 1, got {self.batch_size}.")
        for name in ("lr", "new_param_lr_scale"):
            if getattr(self, name) <= 0:
                self.fail(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("momentum", "weight_decay", "label_smoothing", "warmup_epochs", "min_lr_ratio"):
            if getattr(self, name) < 0:
                self.fail(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if self.label_smoothing >= 1 or self.min_lr_ratio > 1:
            self.fail("label_smoothing must be below 1 and min_lr_ratio at most 1.")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            self.fail(f"warmup_epochs ({self.warmup_epochs}) must be shorter than epochs ({self.epochs}).")
        if self.schedule == "step" and not self.step_epochs:
            self.fail("schedule=step needs step_epochs, for example step_epochs=[30,60].")
        if list(self.step_epochs) != sorted(set(self.step_epochs)) or any(e < 1 for e in self.step_epochs):
            self.fail(f"step_epochs must be increasing positive epochs, got {list(self.step_epochs)}.")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            self.fail(f"clip_grad_norm must be positive, got {self.clip_grad_norm}.")
        for name in ("eval_every", "bn_batches"):
            if getattr(self, name) < 1:
                self.fail(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("limit_train_batches", "limit_eval_batches"):
            value = getattr(self, name)
            if value is not None and value < 1:
                self.fail(f"{name} must be at least 1, got {value}.")
        if self.workers != "auto" and self.workers < 0:
            self.fail(f"workers must be 0 or more (or auto), got {self.workers}.")
        if self.accumulate_steps < 1:
            self.fail(f"accumulate_steps must be at least 1, got {self.accumulate_steps}.")
        for name in ("hflip", "re_prob", "mixup_prob", "mixup_switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                self.fail(f"{name} must be between 0 and 1, got {getattr(self, name)}.")
        for name in ("mixup", "cutmix", "crop_padding"):
            if getattr(self, name) < 0:
                self.fail(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if not (0 < self.scale[0] <= self.scale[1] <= 1) or not (0 < self.ratio[0] <= self.ratio[1]):
            self.fail(f"scale must be 0 < min <= max <= 1 and ratio 0 < min <= max, got {list(self.scale)}, "
                      f"{list(self.ratio)}.")
        if self.color_jitter is not None and self.color_jitter < 0:
            self.fail(f"color_jitter must be 0 or more, got {self.color_jitter}.")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            self.fail(f"ema_decay must be between 0 and 1 (e.g. 0.999), got {self.ema_decay}.")
        if self.augment != "timm" and (self.auto_augment or self.re_prob or self.color_jitter):
            self.fail("auto_augment, re_prob and color_jitter belong to augment=timm; add --set augment=timm.")
        if self.auto_augment:
            self._check_auto_augment(self.auto_augment)

    def _check_auto_augment(self, policy: str) -> None:
        """Build the policy as timm's training transform does (its parser asserts on an unknown one)."""
        from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform

        params = {"translate_const": 100, "img_mean": (124, 116, 104)}
        build = (rand_augment_transform if policy.startswith("rand") else
                 augment_and_mix_transform if policy.startswith("augmix") else auto_augment_transform)
        try:
            build(policy, dict(params, translate_pct=0.3) if policy.startswith("augmix") else params)
        except Exception:  # noqa: BLE001 - timm's parser asserts, or fails on a bad number
            self.fail(f"auto_augment {policy!r} is not a timm policy; use e.g. rand-m9-mstd0.5-inc1 (RandAugment), "
                      "augmix-m5-w4-d2 (AugMix), original or v0 (AutoAugment).")

    def augmentation(self):  # noqa: ANN201 (netsurgeon.data.Augment, imported lazily)
        """The training augmentation settings as ``netsurgeon.data.Augment``."""
        from netsurgeon.data import Augment

        return Augment(self.augment, tuple(self.scale), tuple(self.ratio), self.hflip, self.crop_padding,
                       self.color_jitter, self.auto_augment, self.re_prob)

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (mixup or CutMix on)."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """The learning-rate multiplier at optimizer step ``step`` (0-based) of the whole run."""
        total = self.epochs * steps_per_epoch
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            epoch = step // steps_per_epoch
            return self.step_gamma ** sum(epoch >= e for e in self.step_epochs)
        progress = (step - warmup) / max(1, total - warmup)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _frozen(value: Any) -> Any:
    """Lists as tuples, recursively (a config is immutable; ``to_dict`` gives lists back)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def as_config(config: FinetuneConfig | dict[str, Any] | None) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from itself, a dict of its fields, or nothing (the defaults)."""
    return config if isinstance(config, FinetuneConfig) else FinetuneConfig.from_dict(dict(config or {}))
