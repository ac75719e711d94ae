"""The statistics of a comparison (scipy): does an arm differ from the control? The seed is the unit.

Per arm against the control, paired by seed (``docs/statistics.md`` explains each number, with references):

* the per-seed differences ``d`` of the exported weights' top-1 (points), their mean and standard deviation;
* a bootstrap interval of the mean (``scipy.stats.bootstrap``, BCa; percentile where BCa is undefined, e.g. all
  differences equal), at ``1 - alpha`` (``1 - alpha / looks`` with adaptive seeds);
* the exact sign-flip permutation p-value of the mean (``scipy.stats.permutation_test``,
  ``permutation_type="samples"``: all ``2^n`` sign patterns; two-sided, smallest possible p ``2 / 2^n``),
  Holm-corrected across arms (:func:`holm`);
* the probability that the arm beats the control on a seed (seeds with a tie left out) with its exact
  Clopper-Pearson interval (``scipy.stats.binomtest``);
* power: the smallest difference this many seeds detect with 80% power at the observed spread, and the seeds a
  decision on the observed difference needs (a paired t approximation, ``scipy.stats.nct``, never fewer than the
  exact test's floor :func:`seeds_to_reach`).

The verdict: **better** / **worse** when the Holm-adjusted p is at most alpha (the sign of the mean says which);
else **equivalent within ±M** when ``margin`` M is given and the interval lies inside ``(-M, M)``; else
**undecided**, with what would decide it. McNemar's exact test (:func:`mcnemar`) stays as a per-seed, per-image
diagnostic: pooling it over seeds would count the same test images once per seed as independent samples.

Adaptive seeds (:func:`plan_looks`): up to ``K`` planned looks at growing seed counts, each at level
``alpha / K`` (Bonferroni's split of alpha over the looks), so the chance of any false better/worse over all looks
stays at most alpha whatever the data do between looks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["BETTER", "UNDECIDED", "WORSE", "Interval", "McNemar", "Power", "SeedTest", "bootstrap_interval",
           "equivalent", "from_counts", "holm", "mcnemar", "mean_std", "plan_looks", "power", "seed_test",
           "seed_warning", "seeds_to_reach", "sign_flip_p", "smallest_p", "verdict", "win_probability"]

BETTER, WORSE, UNDECIDED = "better", "worse", "undecided"
#: the power the "smallest detectable difference" and "seeds needed" are computed for
POWER = 0.8
#: bootstrap resamples (fixed generator: the same jobs give the same report)
RESAMPLES = 9999
#: above this many sign patterns the permutation test samples them (Monte Carlo) instead of enumerating
EXACT_LIMIT = 2 ** 16


def equivalent(margin: float) -> str:
    """The verdict of an arm whose interval lies inside ±margin."""
    return f"equivalent within ±{margin:g}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


# ---------------------------------------------------------------------------------------------- the exact test
def smallest_p(n: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``n`` seeds: ``2 / 2^n`` (all
    differences of one sign; 1 without seeds)."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def seeds_to_reach(level: float) -> int:
    """The fewest seeds whose exact sign-flip test can reach ``p <= level`` at all."""
    return max(1, math.ceil(math.log2(2.0 / level) - 1e-12))


def sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of the mean difference under "the arm and the control are exchangeable on every seed":
    ``scipy.stats.permutation_test`` flipping the sign of each seed's difference, every pattern enumerated (up to
    ``2^16``; beyond, 99,999 drawn with a fixed generator)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or not np.any(d):  # one seed: both signs equally extreme, p = 2/2 = 1 (scipy needs two)
        return 1.0
    exact = 2 ** len(d) <= EXACT_LIMIT
    result = stats.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                                    n_resamples=np.inf if exact else 99_999, alternative="two-sided",
                                    rng=np.random.default_rng(0))
    return float(min(1.0, result.pvalue))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values (same order as given): the i-th smallest times (m - i), made
    monotone and capped at 1 (scipy has Benjamini-Hochberg, not Holm)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# ---------------------------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    confidence: float
    method: str  # "BCa" or "percentile"


def bootstrap_interval(differences: Sequence[float], confidence: float = 0.95) -> Interval | None:
    """The bootstrap interval of the mean difference (``scipy.stats.bootstrap``, 9,999 resamples, generator
    seeded 0): BCa, or the percentile interval where BCa is undefined (e.g. every difference equal). None with
    fewer than two seeds."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning: BCa undefined, the fallback follows
            ci = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method=method,
                                 vectorized=True, rng=np.random.default_rng(0)).confidence_interval
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return Interval(float(ci.low), float(ci.high), confidence, method)
    return None


def win_probability(differences: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """How often the arm beats the control on a seed: wins over the seeds without a tie, with the exact
    Clopper-Pearson interval (``scipy.stats.binomtest(...).proportion_ci``); None when every seed is a tie."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    wins, ties = int((d > 0).sum()), int((d == 0).sum())
    trials = len(d) - ties
    if trials == 0:
        return {"estimate": None, "low": None, "high": None, "wins": wins, "ties": ties, "seeds": len(d)}
    ci = stats.binomtest(wins, trials).proportion_ci(confidence_level=confidence, method="exact")
    return {"estimate": wins / trials, "low": float(ci.low), "high": float(ci.high), "wins": wins, "ties": ties,
            "seeds": len(d)}


# ---------------------------------------------------------------------------------------------- McNemar
@dataclass(frozen=True)
class McNemar:
    control_only: int  # b: the control right, the arm wrong
    arm_only: int  # c: the arm right, the control wrong
    p_value: float


def mcnemar(control_correct: Sequence[bool], arm_correct: Sequence[bool]) -> McNemar:
    """The exact (binomial) McNemar test on one seed's paired per-image outcomes: under "no difference" the ``c``
    images only the arm gets right are ``Binomial(b + c, 1/2)`` (``scipy.stats.binomtest``; p = 1 with none)."""
    if len(control_correct) != len(arm_correct):
        raise ValueError("McNemar needs the same test images for both")
    b = sum(bool(c) and not bool(a) for c, a in zip(control_correct, arm_correct, strict=True))
    c = sum(bool(a) and not bool(k) for k, a in zip(control_correct, arm_correct, strict=True))
    return from_counts(b, c)


def from_counts(b: int, c: int) -> McNemar:
    from scipy import stats

    p = 1.0 if b + c == 0 else float(stats.binomtest(c, b + c, 0.5).pvalue)
    return McNemar(b, c, p)


# ---------------------------------------------------------------------------------------------- power
@dataclass(frozen=True)
class Power:
    level: float  # the per-arm test level the figures are for (alpha / arms: Holm's first step)
    spread: float | None  # the standard deviation of the differences
    min_detectable: float | None  # points; inf when the exact test cannot reach level with these seeds
    seeds_needed: int | None  # for the observed mean difference; None when it is 0 (or one seed)


def _t_power(n: int, delta: float, sd: float, level: float) -> float:
    from scipy import stats

    crit = stats.t.ppf(1 - level / 2, n - 1)
    nc = delta * math.sqrt(n) / sd
    upper, lower = float(stats.nct.sf(crit, n - 1, nc)), float(stats.nct.cdf(-crit, n - 1, nc))
    # scipy's nct gives nan far in a tail (a large nc): the wrong-sign tail is then ~0, the other ~ the normal's
    lower = 0.0 if math.isnan(lower) else lower
    upper = float(stats.norm.sf(crit - nc)) if math.isnan(upper) else upper
    return upper + lower


def power(differences: Sequence[float], level: float, target: float = POWER, max_seeds: int = 10_000) -> Power:
    """The smallest difference ``len(differences)`` seeds detect with ``target`` power at the observed spread, and
    the seeds a decision on the observed mean needs (paired t approximation, at least :func:`seeds_to_reach`)."""
    from scipy import optimize

    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2:
        return Power(level, None, None, None)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    floor = seeds_to_reach(level)
    if sd == 0:
        return Power(level, 0.0, math.inf if n < floor else 0.0, None if mean == 0 else max(2, floor))
    if n < floor:
        detectable = math.inf
    else:
        high = sd
        while _t_power(n, high, sd, level) < target:
            high *= 2
        detectable = float(optimize.brentq(lambda x: _t_power(n, x, sd, level) - target, 0.0, high, xtol=1e-6))
    needed = None
    if mean != 0:
        needed = next((k for k in range(max(2, floor), max_seeds + 1) if _t_power(k, abs(mean), sd, level) >= target),
                      None)
    return Power(level, sd, detectable, needed)


def seed_warning(seeds: int, arms: int, alpha: float, looks: int = 1) -> str | None:
    """A warning when ``seeds`` seeds can never give a better/worse verdict at ``alpha`` (the exact test's
    smallest p, times the arms for Holm's first step and the looks for adaptive seeds, exceeds alpha)."""
    level = alpha / max(1, arms) / max(1, looks)
    if smallest_p(seeds) <= level:
        return None
    holm_note = f" (Holm over {arms} arms: p x {arms})" if arms > 1 else ""
    return (f"{seeds} seed{'s' if seeds != 1 else ''} can never reach alpha {alpha:g}: the exact sign-flip test's "
            f"smallest p is {smallest_p(seeds):.3g}{holm_note}, so no arm can be called better or worse; "
            f"use --seeds {seeds_to_reach(level)} or more, or --seeds auto.")


# ---------------------------------------------------------------------------------------------- per arm
@dataclass(frozen=True)
class SeedTest:
    """One arm against the control over the paired seeds."""

    differences: tuple[float, ...]  # arm minus control, per seed (points of top-1)
    mean: float
    std: float
    interval: Interval | None
    p_value: float  # exact sign-flip, two-sided
    win: dict[str, Any]
    power: Power

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = list(self.differences)
        return out


def seed_test(arm: Sequence[float], control: Sequence[float], *, confidence: float, level: float) -> SeedTest:
    """The seed-level statistics of one arm against the control (``level``: the per-arm level for power)."""
    d = tuple(float(a) - float(c) for a, c in zip(arm, control, strict=True))
    mean, std = mean_std(d) if d else (0.0, 0.0)
    return SeedTest(d, mean, std, bootstrap_interval(d, confidence), sign_flip_p(d), win_probability(d, confidence),
                    power(d, level))


def verdict(test: SeedTest, p_holm: float, alpha: float, margin: float | None = None) -> tuple[str, str]:
    """(the verdict, what would decide it: empty once decided)."""
    if p_holm <= alpha and test.mean != 0:
        return (BETTER if test.mean > 0 else WORSE), ""
    ci = test.interval
    if margin is not None and ci is not None and -margin < ci.low and ci.high < margin:
        return equivalent(margin), ""
    n, pw = len(test.differences), test.power
    if n < 2:
        return UNDECIDED, "more seeds (one seed gives no spread)"
    if smallest_p(n) > pw.level:
        need = f"at least {seeds_to_reach(pw.level)} seeds (the exact test's floor)"
    elif pw.seeds_needed is not None:
        need = f"about {pw.seeds_needed} seeds at this spread"
    else:
        need = "more seeds"
    if margin is None:
        return UNDECIDED, f"{need}; or --margin M to test equivalence"
    return UNDECIDED, need


# ---------------------------------------------------------------------------------------------- adaptive seeds
def plan_looks(max_seeds: int, arms: int, alpha: float, max_looks: int = 3) -> tuple[tuple[int, ...], float]:
    """Adaptive seeds: the seed counts at which to look and the level of each look.

    Bonferroni over the looks: with ``K`` looks each is tested at ``alpha / K`` (Holm across arms inside a look), so
    the family-wise error over all looks is at most alpha. ``K`` is the largest up to ``max_looks`` whose first look
    (the fewest seeds whose exact test can reach ``alpha / K / arms``) is within ``max_seeds``; the looks are spread
    evenly from that first one to ``max_seeds``. Empty when even one look at ``max_seeds`` cannot decide."""
    for k in range(max_looks, 1, -1):
        first = seeds_to_reach(alpha / k / max(1, arms))
        if first + k - 1 <= max_seeds:  # k distinct looks fit
            looks = tuple(sorted({int(round(x)) for x in np.linspace(first, max_seeds, k)}))
            return looks, alpha / k
    return ((max_seeds,), alpha) if seeds_to_reach(alpha / max(1, arms)) <= max_seeds else ((), alpha)
