"""The seed-level statistics of ``compare`` against known answers, and adaptive seeds, --margin and the seed warning
through ``compare`` with a fake job runner (no training: each job's top-1 is set by the test)."""

from __future__ import annotations

import csv
import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from netsurgeon.compare import CompareSpec, JobFailed, compare
from netsurgeon.compare import stats as cs
from netsurgeon.compare.executors import local as executors  # the in-process executor calls its run_job
from netsurgeon.compare.job import job_config
from netsurgeon.config import plain_values
from netsurgeon.errors import ConfigError, StatisticsWarning
from netsurgeon.train.schema import Key
from tests.badinput.helpers import cli

IMAGES = 200


# ------------------------------------------------------------------------------------------ known answers
def hand_sign_flip_p(d: list[float]) -> float:
    """Every sign pattern written out: the share whose |mean| is at least the observed |mean|."""
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-9
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def test_sign_flip_p_for_4_and_6_seeds_equals_the_hand_count():
    # 4 seeds, d = 1, 2, -3, 4: sums of +-1 +-2 +-3 +-4 at least |4| in 10 of 16 patterns
    assert cs.sign_flip_p([1, 2, -3, 4]) == pytest.approx(10 / 16) == hand_sign_flip_p([1, 2, -3, 4])
    assert cs.sign_flip_p([1, 2, 3, 4]) == pytest.approx(2 / 16)  # all one sign: the smallest p, 2 / 2^4
    # 6 seeds, d = 0.5, 1, 1.5, 2, -0.25, 3: |sum| 7.75 is reached by 4 of 64 patterns (+-all, +-only the -0.25)
    d6 = [0.5, 1.0, 1.5, 2.0, -0.25, 3.0]
    assert cs.sign_flip_p(d6) == pytest.approx(4 / 64) == hand_sign_flip_p(d6)
    assert cs.sign_flip_p([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64) == cs.smallest_p(6)
    assert cs.sign_flip_p([0, 0, 0]) == 1.0
    assert cs.sign_flip_p([3.0]) == 1.0 == cs.smallest_p(1)  # one seed (the demo): no test, no error
    one = cs.seed_test([3.0], [1.0], confidence=0.95, level=0.05)
    assert one.interval is None and cs.verdict(one, one.p_value, 0.05)[0] == "undecided"


def test_smallest_p_and_the_seeds_an_alpha_needs():
    assert [cs.smallest_p(n) for n in (3, 5, 6)] == [0.25, 0.0625, 0.03125]
    assert cs.seeds_to_reach(0.05) == 6 and cs.seeds_to_reach(0.025) == 7 and cs.seeds_to_reach(0.0625) == 5


def test_bootstrap_interval_is_scipys_bca_and_falls_back_to_percentile():
    d = [0.4, 1.1, -0.2, 0.9, 0.6]
    got = cs.bootstrap_interval(d, 0.95)
    want = stats.bootstrap((np.array(d),), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                           rng=np.random.default_rng(0)).confidence_interval
    assert got.method == "BCa" and (got.low, got.high) == pytest.approx((want.low, want.high))
    flat = cs.bootstrap_interval([0.5, 0.5, 0.5], 0.95)  # BCa undefined (no spread): percentile, say which
    assert flat.method == "percentile" and (flat.low, flat.high) == pytest.approx((0.5, 0.5))
    assert cs.bootstrap_interval([1.0], 0.95) is None


def test_win_probability_is_wins_over_non_tied_seeds_with_clopper_pearson():
    got = cs.win_probability([1.0, -1.0, 0.0, 2.0, 3.0])
    ci = stats.binomtest(3, 4).proportion_ci(method="exact")
    assert (got["estimate"], got["ties"]) == (0.75, 1)
    assert (got["low"], got["high"]) == pytest.approx((ci.low, ci.high))


def test_equivalence_needs_the_interval_inside_the_margin():
    d = [0.1, -0.1, 0.2, 0.0, -0.05, 0.15]
    test = cs.seed_test(d, [0.0] * 6, confidence=0.95, level=0.05)
    assert test.interval.high < 0.5 and test.interval.low > -0.5
    assert cs.verdict(test, test.p_value, 0.05, margin=0.5) == ("equivalent within ±0.5", "")
    word, decide = cs.verdict(test, test.p_value, 0.05, margin=0.1)  # the interval crosses ±0.1
    assert word == "undecided" and "seeds" in decide
    assert cs.verdict(test, test.p_value, 0.05)[0] == "undecided"
    better = cs.seed_test([1, 2, 3, 4, 5, 6], [0] * 6, confidence=0.95, level=0.05)
    assert cs.verdict(better, better.p_value, 0.05, margin=100) == ("better", "")  # a decision beats equivalence


def test_three_seeds_can_never_reach_alpha_warning():
    text = cs.seed_warning(3, 1, 0.05)
    assert "3 seeds can never reach alpha 0.05" in text and "0.25" in text and "--seeds 6" in text
    assert cs.seed_warning(6, 1, 0.05) is None
    assert "--seeds 7" in cs.seed_warning(6, 2, 0.05)  # Holm over two arms doubles the smallest p
    assert "0.0625" in cs.seed_warning(5, 1, 0.05)


def test_power_line_min_detectable_and_seeds_needed_against_the_noncentral_t():
    d = [0.3, 0.5, -0.1, 0.4, 0.6, 0.2, 0.3]
    pw = cs.power(d, 0.05)
    sd = float(np.std(d, ddof=1))

    def t_power(n: int, delta: float) -> float:
        crit = stats.t.ppf(0.975, n - 1)
        nc = delta * np.sqrt(n) / sd
        return stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)

    assert pw.spread == pytest.approx(sd)
    assert t_power(7, pw.min_detectable) == pytest.approx(0.8, abs=1e-4)
    n, mean = pw.seeds_needed, float(np.mean(d))
    assert t_power(n, mean) >= 0.8 > t_power(n - 1, mean)
    assert cs.power([1.0, 2.0, 3.0], 0.05).min_detectable == float("inf")  # 3 seeds: below the exact test's floor
    assert cs.power([1.0, 2.0, 3.0], 0.05).seeds_needed >= 6
    # a large effect: scipy's noncentral t gives nan in the far tail; the floor (8 seeds at 0.05/6) decides
    assert cs.power([5, 4, 6, 4.5, 5, 4, 6, 4.5], 0.05 / 6).seeds_needed == 8


def test_plan_looks_splits_alpha_and_starts_where_the_exact_test_can_decide():
    looks, level = cs.plan_looks(10, 1, 0.05)
    assert level == pytest.approx(0.05 / 3) and looks[0] == 7 and looks[-1] == 10
    assert cs.smallest_p(looks[0]) <= level < cs.smallest_p(looks[0] - 1)
    assert cs.plan_looks(6, 1, 0.05) == ((6,), 0.05)  # room for one look only
    assert cs.plan_looks(8, 1, 0.05) == ((7, 8), 0.025)
    assert cs.plan_looks(5, 1, 0.05) == ((), 0.05)


# ------------------------------------------------------------------------------------------ a fake job runner
def effect_of(slug: str, seed: int, effects: dict[str, list[float]]) -> int:
    """Correct test images of a job: 100 for the control, shifted per arm and seed."""
    return 100 + int(effects.get(slug, [0])[seed % len(effects.get(slug, [0]))])


@pytest.fixture
def fake_jobs(monkeypatch):
    """Replace training: each job writes job.json and predictions.csv with the top-1 the test sets."""
    calls: list[tuple[str, int]] = []
    state = {"effects": {}, "fail": set()}

    def run_job(out, slug, seed):
        out = Path(out)
        spec = CompareSpec.read(out)
        arm = next(a for a in spec.arms if a.slug == slug)
        calls.append((slug, seed))
        if (slug, seed) in state["fail"]:
            state["fail"].discard((slug, seed))
            return JobFailed("killed")
        d = spec.job_dir(out, arm, seed)
        d.mkdir(parents=True, exist_ok=True)
        right = effect_of(slug, seed, state["effects"])
        labels = [i % 10 for i in range(IMAGES)]
        preds = [lab if i < right else (lab + 1) % 10 for i, lab in enumerate(labels)]
        top1 = 100 * right / IMAGES
        final = {Key.EPOCH: 1, Key.TEST_TOP1: top1, Key.TEST_TOP5: 100.0}
        record = {"arm": arm.name, "slug": slug, "seed": seed, "sites_changed": 1, "params": 10, "params_delta": 0,
                  "top1_after_surgery": top1, "metrics": [{Key.EPOCH: 0, Key.TEST_TOP1: top1}, final],
                  "final": final, "weights": "raw", "seconds": 0.0, "resumed": False,
                  "config": plain_values(job_config(spec, seed).to_dict())}  # what a rerun checks the job against
        with open(d / "predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["index", "label", "prediction", "top5"])
            w.writerows((i, lab, p, 1) for i, (lab, p) in enumerate(zip(labels, preds, strict=True)))
        (d / "job.json").write_text(json.dumps(record))
        return record

    monkeypatch.setattr(executors, "run_job", run_job)
    return calls, state


def run(out: Path, arms=("erase-relu",), seeds=3, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticsWarning)
        return compare("netsurgeon:tiny_resnet", "digits", list(arms), seeds, {"progress": False}, out=out,
                       input_size=(3, 8, 8), progress=False, **kwargs)


def test_adaptive_seeds_stop_at_the_first_look_that_decides(fake_jobs, tmp_path):
    calls, state = fake_jobs
    state["effects"] = {"erase-relu": [10, 8, 12, 9]}  # better on every seed
    result = run(tmp_path / "o", seeds="auto", max_seeds=10)
    arm = result.summary["arms"][1]
    assert arm["verdict"] == "better" and arm["decided_at"] == 7
    assert sorted({s for _, s in calls}) == list(range(7)) and result.ran == 14  # seeds 7..9 never trained
    assert result.summary["design"]["stopped"] == "every arm decided"
    assert arm["paired"]["p_value"] == pytest.approx(2 / 2 ** 7)
    assert "better at 7 seeds" in (tmp_path / "o" / "compare.md").read_text()


def test_adaptive_seeds_stop_at_max_seeds_when_undecided(fake_jobs, tmp_path):
    calls, state = fake_jobs
    state["effects"] = {"erase-relu": [4, -4, 2, -3, 1]}  # no consistent sign
    result = run(tmp_path / "o", seeds="auto", max_seeds=10)
    arm = result.summary["arms"][1]
    assert arm["verdict"] == "undecided" and "decided_at" not in arm
    assert result.ran == 20 and result.summary["design"]["looks_done"] == [7, 8, 10]
    assert result.summary["design"]["stopped"] == "max seeds reached"


def test_adaptive_seeds_resume_keeping_finished_jobs(fake_jobs, tmp_path):
    calls, state = fake_jobs
    state["effects"] = {"erase-relu": [4, -4, 2, -3, 1]}
    state["fail"] = {("erase-relu", 7)}  # the second look's job fails: the run stops after it
    with pytest.raises(JobFailed):
        run(tmp_path / "o", seeds="auto", max_seeds=10)
    first = list(calls)
    assert ("erase-relu", 7) in first and ("control", 8) not in first
    calls.clear()
    result = run(tmp_path / "o", seeds="auto", max_seeds=10)  # the same call continues
    assert sorted(calls) == [("control", 8), ("control", 9), ("erase-relu", 7), ("erase-relu", 8),
                             ("erase-relu", 9)]
    assert result.skipped == 15 and result.summary["design"]["looks_done"] == [7, 8, 10]


def test_max_seeds_that_cannot_decide_and_stray_max_seeds_are_refused(fake_jobs, tmp_path):
    with pytest.raises(ConfigError, match="--max-seeds 5 can never reach alpha"):
        run(tmp_path / "a", seeds="auto", max_seeds=5)
    with pytest.raises(ConfigError, match="--max-seeds goes with --seeds auto"):
        run(tmp_path / "b", seeds=3, max_seeds=8)
    with pytest.raises(ConfigError, match="--seeds auto needs --max-seeds"):
        run(tmp_path / "c", seeds="auto")
    assert fake_jobs[0] == []


def test_too_few_seeds_are_warned_about_before_any_training(fake_jobs, tmp_path):
    calls, _ = fake_jobs
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StatisticsWarning)
        original = executors.run_job

        def noting(*args):
            seen.append(len(caught))
            return original(*args)

        executors.run_job = noting
        try:
            compare("netsurgeon:tiny_resnet", "digits", ["erase-relu"], 3, {"progress": False}, out=tmp_path / "o",
                    input_size=(3, 8, 8), progress=False)
        finally:
            executors.run_job = original
    assert [str(w.message) for w in caught if w.category is StatisticsWarning][0].startswith(
        "3 seeds can never reach alpha 0.05")
    assert seen and min(seen) >= 1  # the warning came before the first job


def test_margin_reaches_the_report_from_python_cli_and_recipe(fake_jobs, tmp_path):
    _, state = fake_jobs
    state["effects"] = {"erase-relu": [1, -1, 2, 0, 1, -1]}  # interval well inside ±7.5 points
    py = run(tmp_path / "py", seeds=6, margin=7.5)
    args = ("compare", "netsurgeon:tiny_resnet", "--data", "digits", "--arm", "erase-relu", "--seeds", "6",
            "--input-size", "3,8,8", "--set", "progress=false")
    assert cli(*args, "--margin", "7.5", "--out", tmp_path / "cli").exit_code == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
model: {{name: "netsurgeon:tiny_resnet", input_size: [3, 8, 8]}}
finetune: {{data: digits, progress: false}}
export: {{dir: {tmp_path / "rec"}}}
compare: {{arms: [erase-relu], seeds: 6, margin: 7.5}}
""")
    assert cli("compare", "--recipe", recipe).exit_code == 0
    for out in ("py", "cli", "rec"):
        summary = json.loads((tmp_path / out / "compare.json").read_text())
        assert summary["margin"] == 7.5 and summary["arms"][1]["verdict"] == "equivalent within ±7.5", out
        assert "equivalent within ±7.5" in (tmp_path / out / "compare.md").read_text()
    assert py.summary["arms"][1]["verdict"] == "equivalent within ±7.5"
    # a recipe's seeds: auto with max_seeds
    recipe.write_text(recipe.read_text().replace("seeds: 6, margin: 7.5", "seeds: auto, max_seeds: 7"))
    assert cli("compare", "--recipe", recipe, "--out", tmp_path / "auto").exit_code == 0
    summary = json.loads((tmp_path / "auto" / "compare.json").read_text())
    assert summary["design"]["kind"] == "adaptive" and summary["design"]["looks"] == [7]


def test_a_rerun_with_another_margin_rebuilds_the_report_without_training(fake_jobs, tmp_path):
    calls, state = fake_jobs
    state["effects"] = {"erase-relu": [1, -1, 2, 0, 1, -1]}
    run(tmp_path / "o", seeds=6)
    calls.clear()
    again = run(tmp_path / "o", seeds=6, margin=7.5)
    assert calls == [] and again.summary["arms"][1]["verdict"] == "equivalent within ±7.5"


def test_the_verdict_line_says_the_power(fake_jobs, tmp_path):
    _, state = fake_jobs
    state["effects"] = {"erase-relu": [1, -1, 2, 0, 1, -1]}
    result = run(tmp_path / "o", seeds=6)
    arm = result.summary["arms"][1]
    pw = arm["paired"]["power"]
    line = result.verdicts[0]
    assert f"the smallest difference 6 seeds detect with 80% power at the observed spread (sd {pw['spread']:.2f}) " \
           f"is {pw['min_detectable']:.2f} points" in line
    assert f"a decision on {arm['paired']['mean']:+.2f} would need about {pw['seeds_needed']} seeds" in line
