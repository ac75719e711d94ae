"""``Contract``: what a pass promises about the model's function (outputs exact, or changed on purpose)."""

from __future__ import annotations

from enum import Enum

__all__ = ["Contract"]


class Contract(str, Enum):
    """What a pass promises about the model's function."""

    EXACT = "exact"  # outputs equal the original's (PD-ReLU forward, warm-started heads)
    CHANGES_FUNCTION = "changes-function"  # outputs differ; untouched tensors stay bit-identical
