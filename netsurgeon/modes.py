"""Switching a model's train/eval mode for a moment without losing a user's mixed modes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["in_mode"]


@contextmanager
def in_mode(module: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``module.train(training)`` for the block, then every submodule's own flag back as it was.

    ``module.train(was_training)`` would reset a part the user froze on purpose (``bn.eval()`` inside a
    model in train mode); this restores each flag.
    """
    flags = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag
