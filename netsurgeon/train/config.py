"""``FinetuneConfig``: every knob of the fine-tuning loop, validated like a pass config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from netsurgeon.config import Config

__all__ = ["FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """How to fine-tune a model after surgery. Defaults suit a short fine-tune of a pretrained CNN."""

    epochs: int = 3
    """Passes over the training data."""
    batch_size: int = 64
    """Per-process batch size (under torchrun the global batch is batch_size x world size)."""
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    """Peak learning rate of the pretrained parameters."""
    new_param_lr_scale: float = 10.0
    """Learning-rate multiplier for parameters a pass created (a new spinal head); 1 disables it."""
    momentum: float = 0.9
    """SGD momentum (AdamW uses beta1 = 0.9)."""
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
    workers: int = 0
    """DataLoader worker processes."""
    eval_every: int = 1
    """Evaluate on the test split every n epochs (and always after the last)."""
    bn_recalibrate: Literal["auto", "on", "off"] = "auto"
    """Re-estimate BatchNorm statistics before training: auto does it after a function-changing pass."""
    bn_batches: int = 50
    """Training batches used to re-estimate BatchNorm statistics."""
    limit_train_batches: int | None = None
    """Train on at most this many batches per epoch, and recalibrate BN on at most as many (quick runs, tests)."""
    limit_eval_batches: int | None = None
    progress: bool = True
    """Progress bars on stderr (only on a terminal, only on rank 0)."""

    def validate(self) -> None:
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
        if self.workers < 0:
            self.fail(f"workers must be 0 or more, got {self.workers}.")

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """The learning-rate multiplier at optimizer step ``step`` (0-based) of the whole run."""
        import math

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
