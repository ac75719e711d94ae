"""Adaptive seeds (``compare --seeds auto``) simulated: is the false better/worse rate at most alpha, and what do
the looks save against a fixed number of seeds of the same power?

Each simulated comparison draws every run's top-1 (points) as ``N(delta_arm, sd)``: the control and ``--arms`` arms
on each seed, so every arm's per-seed difference shares the control's draw, as in ``compare``. The procedure is
the one ``compare`` runs: the looks and their level from ``netsurgeon.compare.stats.plan_looks`` (Bonferroni over
the looks), at each look the exact two-sided sign-flip p of every arm (the exact distribution, all ``2^n``
sign patterns, vectorised here; checked against the scipy ``permutation_test`` that ``compare`` calls), Holm
across arms, an arm's first decision kept, stop when every arm is decided or at ``--max-seeds``.

    python benchmarks/adaptive_seeds.py                       # 10,000 comparisons per row; about a minute
    python benchmarks/adaptive_seeds.py --arms 3 --sims 20000
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from scipy import stats

from netsurgeon.compare import stats as cs


def sign_flip_p(d: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """Exact two-sided sign-flip p of the mean, per row of ``d`` (sims x n), as scipy's permutation_test counts it
    (null statistics at least as extreme as the observed one, with its relative tolerance)."""
    n = d.shape[1]
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # 2^n x n
    out = np.empty(d.shape[0])
    for start in range(0, d.shape[0], chunk):
        rows = d[start:start + chunk]
        observed = rows.mean(axis=1, keepdims=True)
        null = rows @ signs.T / n
        tol = np.abs(observed) * 1e-14 * 100
        greater = (null >= observed - tol).mean(axis=1)
        less = (null <= observed + tol).mean(axis=1)
        out[start:start + chunk] = np.minimum(1.0, 2 * np.minimum(greater, less))
    out[~d.any(axis=1)] = 1.0
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (sims x arms)."""
    m = p.shape[1]
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * (m - np.arange(m))
    ranked = np.minimum(1.0, np.maximum.accumulate(ranked, axis=1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, ranked, axis=1)
    return out


def draw(rng: np.random.Generator, sims: int, seeds: int, arms: int, sd: float, delta: float) -> np.ndarray:
    """Per-seed differences arm - control (sims x arms x seeds); every arm's true difference is ``delta``."""
    control = rng.normal(0.0, sd, (sims, 1, seeds))
    treated = rng.normal(delta, sd, (sims, arms, seeds))
    return treated - control


def sequential(d: np.ndarray, looks: tuple[int, ...], level: float) -> tuple[np.ndarray, np.ndarray]:
    """(the verdict per sim and arm: +1 better, -1 worse, 0 undecided; the seeds each sim used)."""
    sims, arms, _ = d.shape
    verdict = np.zeros((sims, arms), dtype=int)
    used = np.full(sims, looks[-1])
    running = np.ones(sims, dtype=bool)
    for n in looks:
        part = d[:, :, :n]
        p = sign_flip_p(part.reshape(-1, n)).reshape(sims, arms)
        sign = np.sign(part.mean(axis=2)).astype(int)
        new = (holm(p) <= level) & (sign != 0) & (verdict == 0) & running[:, None]
        verdict[new] = sign[new]
        done = running & (verdict != 0).all(axis=1)
        used[done] = n
        running &= ~done
    return verdict, used


def fixed(d: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """The fixed design's verdicts with ``n`` seeds (one look at alpha, Holm across arms)."""
    sims, arms, _ = d.shape
    part = d[:, :, :n]
    p = sign_flip_p(part.reshape(-1, n)).reshape(sims, arms)
    return np.where(holm(p) <= alpha, np.sign(part.mean(axis=2)).astype(int), 0)


def every_seed(d: np.ndarray, alpha: float) -> np.ndarray:
    """The naive procedure: a look after every seed at the full alpha (what the split prevents)."""
    sims, arms, seeds = d.shape
    first = cs.seeds_to_reach(alpha / arms)
    return sequential(d, tuple(range(first, seeds + 1)), alpha)[0]


def check_against_scipy(rng: np.random.Generator) -> None:
    for n in (4, 6, 9):
        d = rng.normal(0.3, 1.0, (5, n))
        mine = sign_flip_p(d)
        theirs = [cs.sign_flip_p(row) for row in d]
        assert np.allclose(mine, theirs), (n, mine, theirs)


def rate(hits: int, sims: int) -> str:
    ci = stats.binomtest(hits, sims).proportion_ci(method="exact")
    return f"{hits / sims:.4f} [{ci.low:.4f}, {ci.high:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000, help="simulated comparisons per row")
    parser.add_argument("--arms", type=int, default=1)
    parser.add_argument("--max-seeds", type=int, default=12)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--sd", type=float, default=0.5, help="one run's top-1 standard deviation (points)")
    parser.add_argument("--effects", type=float, nargs="+", default=[0.5, 1.0, 1.5],
                        help="true differences of every arm (points) for the power rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    check_against_scipy(rng)
    looks, level = cs.plan_looks(args.max_seeds, args.arms, args.alpha)
    print(f"{args.sims} comparisons per row; {args.arms} arm(s) against the control; one run's sd {args.sd} points; "
          f"alpha {args.alpha}; looks at {list(looks)} seeds, each at level {level:.4f} (Bonferroni over "
          f"{len(looks)} looks); max {args.max_seeds} seeds; the vectorised exact p equals scipy's on 15 draws")
    null = draw(rng, args.sims, args.max_seeds, args.arms, args.sd, 0.0)
    verdict, used = sequential(null, looks, level)
    false = int((verdict != 0).any(axis=1).sum())
    naive = int((every_seed(null, args.alpha) != 0).any(axis=1).sum())
    print("\nNo true difference:")
    print("| procedure | false better/worse rate [95% CI] | mean seeds |")
    print("| --- | ---: | ---: |")
    print(f"| adaptive (compare --seeds auto --max-seeds {args.max_seeds}) | {rate(false, args.sims)} | "
          f"{used.mean():.2f} |")
    print(f"| naive: a look after every seed at the full alpha | {rate(naive, args.sims)} | - |")
    for n in (cs.seeds_to_reach(args.alpha / args.arms), args.max_seeds):
        hits = int((fixed(null, n, args.alpha) != 0).any(axis=1).sum())
        print(f"| fixed {n} seeds | {rate(hits, args.sims)} | {n} |")
    print("\nA true difference (every arm):")
    print("| true Δ (points) | adaptive: power | adaptive: mean seeds | fixed seeds of at least that power "
          "| its power |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for effect in args.effects:
        d = draw(rng, args.sims, args.max_seeds, args.arms, args.sd, effect)
        verdict, used = sequential(d, looks, level)
        power = float((verdict == 1).all(axis=1).mean())
        match, match_power = None, None
        for n in range(1, args.max_seeds + 1):
            fixed_power = float((fixed(d, n, args.alpha) == 1).all(axis=1).mean())
            if fixed_power >= power:
                match, match_power = n, fixed_power
                break
        fixed_text = f"{match} | {match_power:.3f}" if match else f"more than {args.max_seeds} | -"
        print(f"| {effect:g} | {power:.3f} | {used.mean():.2f} | {fixed_text} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
