"""The statistics of a comparison (scipy): does an arm differ from the control?

* Per arm: mean and sample standard deviation over seeds of each final metric.
* Per arm vs control, paired by seed: the per-seed differences, their mean and a 95% Student-t
  interval (``mean ± t(0.975, n-1) · sd / sqrt(n)``; undefined with one seed).
* An exact McNemar test on the per-image correct/incorrect pairs of the test set: ``b`` images the
  control gets right and the arm wrong, ``c`` the reverse; under "no difference" ``c ~ Binomial(b + c,
  1/2)``, so the two-sided p-value is ``scipy.stats.binomtest(c, b + c, 0.5).pvalue`` (1 when there is
  no discordant image). Per seed, and pooled over seeds (the counts summed).
* Holm's step-down correction of the pooled p-values across arms (family-wise error at ``alpha``).

The verdict: **better** / **worse** when the Holm-adjusted pooled McNemar p-value is below ``alpha``
and the paired interval (with two seeds or more) lies on the same side of zero; otherwise **no
difference detected at this budget** (which is not evidence of no difference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["McNemar", "Paired", "holm", "mcnemar", "mean_std", "paired_difference", "verdict"]

BETTER, WORSE, UNDECIDED = "better", "worse", "no difference detected at this budget"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    import numpy as np

    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@dataclass(frozen=True)
class Paired:
    differences: tuple[float, ...]  # arm minus control, per seed
    mean: float
    std: float
    low: float | None  # the 95% interval (None with one seed)
    high: float | None


def paired_difference(arm: Sequence[float], control: Sequence[float], confidence: float = 0.95) -> Paired:
    """Per-seed differences ``arm - control`` with their mean and a Student-t interval."""
    from scipy import stats

    diffs = tuple(float(a) - float(c) for a, c in zip(arm, control, strict=True))
    mean, std = mean_std(diffs)
    if len(diffs) < 2:
        return Paired(diffs, mean, std, None, None)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * std / math.sqrt(len(diffs))
    return Paired(diffs, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class McNemar:
    control_only: int  # b: the control right, the arm wrong
    arm_only: int  # c: the arm right, the control wrong
    p_value: float


def mcnemar(control_correct: Sequence[bool], arm_correct: Sequence[bool]) -> McNemar:
    """The exact (binomial) McNemar test on paired per-image outcomes."""
    if len(control_correct) != len(arm_correct):
        raise ValueError("McNemar needs the same test images for both")
    b = sum(bool(c) and not bool(a) for c, a in zip(control_correct, arm_correct, strict=True))
    c = sum(bool(a) and not bool(k) for k, a in zip(control_correct, arm_correct, strict=True))
    return from_counts(b, c)


def from_counts(b: int, c: int) -> McNemar:
    from scipy import stats

    p = 1.0 if b + c == 0 else float(stats.binomtest(c, b + c, 0.5).pvalue)
    return McNemar(b, c, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the i-th smallest times (m - i), made
    monotone and capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(paired: Paired, adjusted_p: float, alpha: float = 0.05) -> str:
    if adjusted_p >= alpha:
        return UNDECIDED
    if paired.low is None:  # one seed: the test alone decides
        return BETTER if paired.mean > 0 else WORSE if paired.mean < 0 else UNDECIDED
    if paired.low > 0:
        return BETTER
    if paired.high < 0:
        return WORSE
    return UNDECIDED
