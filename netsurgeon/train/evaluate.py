"""Evaluation (loss, top-1, top-5) and BatchNorm recalibration."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from netsurgeon.errors import ConfigError
from netsurgeon.train.distributed import Context, all_reduce_sum

__all__ = ["EvalResult", "check_classes", "check_labels", "evaluate", "recalibrate_bn"]

#: every BatchNorm module (the public subclasses of torch's private ``_BatchNorm``)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d,
                nn.LazyBatchNorm3d, nn.SyncBatchNorm)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EvalResult:
    loss: float
    top1: float  # percent
    top5: float  # percent (equal to 100 when there are 5 classes or fewer)
    samples: int


def check_classes(logits: torch.Tensor, num_classes: int | None) -> None:
    """A clear error when the model's output does not match the data's class count."""
    if logits.ndim != 2:
        raise ConfigError(f"the model returns shape {tuple(logits.shape)}; fine-tuning needs (batch, classes) logits.")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ConfigError(
            f"the model outputs {logits.shape[1]} classes but the data has {num_classes}; build the model with "
            f"--num-classes {num_classes} (num_classes={num_classes}), or apply spinal-head with "
            f"num_classes={num_classes}."
        )


def check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Labels the logits can score: 0 to classes - 1 (a Dataset without ``num_classes`` is checked batch by
    batch; cross-entropy would fail with a traceback, or on a GPU with a device-side assert)."""
    if labels.ndim != 1 or not labels.numel():
        return
    low, high, classes = int(labels.min()), int(labels.max()), logits.shape[1]
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ConfigError(f"the data holds label {bad} but the model outputs {classes} classes (labels 0 to "
                          f"{classes - 1}); build the model with num_classes= the data's class count, or relabel "
                          "the Dataset.")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, *, ctx: Context | None = None, num_classes: int | None = None,
             autocast: contextlib.AbstractContextManager | None = None, limit: int | None = None,
             channels_last: bool = False, should_stop: Callable[[], bool] | None = None) -> EvalResult:
    """Loss and top-1/top-5 accuracy of ``model`` in eval mode (summed over ranks under torchrun);
    ``should_stop()`` true ends it early (the caller stops: a signal arrived)."""
    ctx = ctx or Context()
    was_training = model.training
    model.eval()
    loss_sum = correct1 = correct5 = count = 0.0
    try:
        for i, (x, y) in enumerate(batches):
            if (limit is not None and i >= limit) or (should_stop is not None and should_stop()):
                break
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast or contextlib.nullcontext():
                logits = model(x)
            if i == 0:
                check_classes(logits, num_classes)
            if num_classes is None:
                check_labels(logits, y)
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top.eq(y[:, None])
            correct1 += float(hits[:, 0].sum())
            correct5 += float(hits.any(dim=1).sum())
            count += len(y)
    finally:
        model.train(was_training)
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], ctx)
    if count == 0:
        if should_stop is not None and should_stop():
            return EvalResult(float("nan"), 0.0, 0.0, 0)
        raise ConfigError("the evaluation data is empty.")
    return EvalResult(loss_sum / count, 100 * correct1 / count, 100 * correct5 / count, int(count))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Batches, n_batches: int = 50, *,
                   device: torch.device | None = None, should_stop: Callable[[], bool] | None = None) -> int:
    """Re-estimate every BatchNorm's running mean/var on ``n_batches`` of training data.

    Train mode, ``momentum=None`` (a cumulative average, so the result does not depend on the old
    statistics), no gradients; the model's mode and momenta are restored. Returns the number of BN
    layers updated (0: nothing to do, the data is not touched).
    """
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i, (x, _) in enumerate(batches):
            if i >= n_batches or (should_stop is not None and should_stop()):
                break
            model(x.to(device) if device is not None else x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)
