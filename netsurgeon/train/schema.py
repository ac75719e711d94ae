"""One metrics row (one per epoch; epoch 0 is the evaluation before fine-tuning): its field names, named once.

The loop writes rows with these names (``metrics.csv``/``.jsonl``, ``FinetuneResult.metrics``, a compare job's
``job.json``); TensorBoard/W&B tracking, the CLI's table, the curves plot, the demo and the compare report read
them through :class:`Key`, never through a string spelled elsewhere (``tests/train/test_metrics_schema.py``
checks every module of the package). :class:`MetricsRow` is the same row as a type.
"""

from __future__ import annotations

from typing import Final, Literal, TypedDict

__all__ = ["KEYS", "Key", "MetricsRow", "top1_key", "top5_key"]


class Key:
    """The field names of a metrics row."""

    EPOCH: Final = "epoch"
    LR: Final = "lr"  # the pretrained parameters' learning rate at the end of the epoch
    LR_NEW: Final = "lr_new"  # the rate of parameters a pass created (only when there are both kinds)
    TRAIN_LOSS: Final = "train_loss"
    TRAIN_TOP1: Final = "train_top1"
    SECONDS: Final = "seconds"  # the epoch's wall time
    IMAGES_PER_S: Final = "images_per_s"
    BN_RECALIBRATED: Final = "bn_recalibrated"  # epoch 0 only
    TEST_LOSS: Final = "test_loss"  # the raw weights on the test images (when evaluated)
    TEST_TOP1: Final = "test_top1"
    TEST_TOP5: Final = "test_top5"
    EMA_TEST_LOSS: Final = "ema_test_loss"  # the weight EMA's (when ema_decay is set)
    EMA_TEST_TOP1: Final = "ema_test_top1"
    EMA_TEST_TOP5: Final = "ema_test_top5"


#: every field name, in the order of :class:`Key`
KEYS: tuple[str, ...] = tuple(v for k, v in vars(Key).items() if k.isupper())


class MetricsRow(TypedDict, total=False):
    """A metrics row as a type (the same fields as :class:`Key`)."""

    epoch: int
    lr: float
    lr_new: float
    train_loss: float
    train_top1: float
    seconds: float
    images_per_s: float
    bn_recalibrated: bool
    test_loss: float
    test_top1: float
    test_top5: float
    ema_test_loss: float
    ema_test_top1: float
    ema_test_top5: float


def top1_key(weights: Literal["raw", "ema"] | str) -> str:
    """The top-1 field of the raw or the EMA weights (``FinetuneResult.weights``: what the run exported)."""
    return Key.EMA_TEST_TOP1 if weights == "ema" else Key.TEST_TOP1


def top5_key(weights: Literal["raw", "ema"] | str) -> str:
    """The top-5 field of the raw or the EMA weights."""
    return Key.EMA_TEST_TOP5 if weights == "ema" else Key.TEST_TOP5
