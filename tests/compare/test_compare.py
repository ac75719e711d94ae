"""``netsurgeon compare`` on a tiny model and the embedded digits: control + two arms over three seeds.

The statistics are recomputed here from what the run left on disk (each job's metrics.jsonl and
predictions.csv) with scipy, the pairing is checked, and the run is refused, locked, resumed and
executed through submitit's debug executor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from netsurgeon.compare import SlurmOptions, compare
from netsurgeon.compare.job import read_predictions
from netsurgeon.errors import ConfigError, ExportError
from tests.badinput.helpers import cli, error_lines, snapshot

#: three seeds on purpose (a small grid): compare warns that they can never reach alpha (checked where it matters)
pytestmark = pytest.mark.filterwarnings("ignore::netsurgeon.errors.StatisticsWarning")

ARMS = ["erase-relu", "pd-relu"]
SLUGS = ["control", "erase-relu", "pd-relu"]
SEEDS = [0, 1, 2]
TUNE = {"epochs": 2, "batch_size": 32, "limit_train_batches": 3, "limit_eval_batches": 4, "lr": 0.05,
        "progress": False}
#: the same comparison on the command line
ARGS = ("compare", "netsurgeon:tiny_resnet", "--data", "digits", "--arm", "erase-relu", "--arm", "pd-relu",
        "--seeds", "3", "--input-size", "3,8,8", "--epochs", "2", "--set", "batch_size=32",
        "--set", "limit_train_batches=3", "--set", "limit_eval_batches=4", "--set", "lr=0.05",
        "--set", "progress=false")


def run_api(out: Path, **kwargs):
    return compare("netsurgeon:tiny_resnet", "digits", ARMS, 3, TUNE, out=out, input_size=(3, 8, 8), **kwargs)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One uninterrupted grid through the CLI, with every job's training order recorded (the pairing)."""
    from netsurgeon.train import loop

    out = tmp_path_factory.mktemp("grid") / "out"
    orders: dict[tuple[str, int], list[list[int]]] = {}
    original = loop._Run._train_indices
    original_step = loop._Run._train_step

    def key(run) -> tuple[str, int]:
        job = Path(run.out)
        return job.parent.name, int(job.name.removeprefix("seed-"))

    def recording(self, epoch):
        indices = original(self, epoch)
        orders.setdefault(key(self), []).append(list(indices))
        return indices

    def recording_step(self, x, y, epoch, *args):
        # the augmented training images as the model gets them (default augment=basic: padded crop + flip)
        orders.setdefault((*key(self), "batches"), []).append((epoch, x.clone(), y.clone()))
        return original_step(self, x, y, epoch, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop._Run, "_train_indices", recording)
        mp.setattr(loop._Run, "_train_step", recording_step)
        result = cli(*ARGS, "--out", out)
    assert result.exit_code == 0, result.output
    return out, orders, result


def job_dir(out: Path, slug: str, seed: int) -> Path:
    return out / "jobs" / slug / f"seed-{seed}"


def final_metric(out: Path, slug: str, seed: int, key: str = "test_top1") -> float:
    rows = [json.loads(line) for line in (job_dir(out, slug, seed) / "metrics.jsonl").read_text().splitlines()]
    return rows[-1][key]


def test_writes_table_json_csv_png_and_predictions(grid):
    out, _, result = grid
    for name in ("compare.md", "compare.json", "compare.csv", "compare.png", "compare-config.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    for slug in SLUGS:
        for seed in SEEDS:
            d = job_dir(out, slug, seed)
            assert {"checkpoint.pt", "metrics.jsonl", "curves.png", "model.safetensors", "predictions.csv",
                    "job.json"} <= {p.name for p in d.iterdir()}
    md = (out / "compare.md").read_text()
    assert "| fine-tune only |" in md and "| erase-relu |" in md and "| pd-relu |" in md
    assert md.count("- **") == 2  # one verdict line per arm
    assert "| erase-relu |" in result.stdout
    rows = (out / "compare.csv").read_text().splitlines()
    assert len(rows) == 1 + len(SLUGS) * len(SEEDS)


def test_predictions_agree_with_the_jobs_metrics(grid):
    out, _, _ = grid
    for slug in SLUGS:
        for seed in SEEDS:
            p = read_predictions(job_dir(out, slug, seed))
            assert len(p["label"]) == 4 * 32
            top1 = 100 * np.mean(np.array(p["label"]) == np.array(p["prediction"]))
            assert top1 == pytest.approx(final_metric(out, slug, seed))
            assert 100 * np.mean(p["top5"]) == pytest.approx(final_metric(out, slug, seed, "test_top5"))


def test_paired_differences_intervals_and_p_values_equal_scipy_on_the_jobs(grid):
    """The seed-level statistics recomputed from each job's metrics.jsonl with scipy directly."""
    out, _, _ = grid
    summary = json.loads((out / "compare.json").read_text())
    arms = {a["slug"]: a for a in summary["arms"]}
    control = [final_metric(out, "control", s) for s in SEEDS]
    p_values = {}
    for slug in ("erase-relu", "pd-relu"):
        tuned = [final_metric(out, slug, s) for s in SEEDS]
        diffs = np.array(tuned) - np.array(control)
        got = arms[slug]["paired"]
        assert got["differences"] == pytest.approx(list(diffs))
        assert got["mean"] == pytest.approx(diffs.mean())
        assert arms[slug]["mean"]["test_top1"] == pytest.approx(np.mean(tuned))
        assert arms[slug]["std"]["test_top1"] == pytest.approx(np.std(tuned, ddof=1))
        assert arms[slug]["weights"] == ["raw"] * 3
        expected_p = 1.0 if not diffs.any() else stats.permutation_test(
            (diffs,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
        assert got["p_value"] == pytest.approx(expected_p)
        if len(set(diffs)) > 1:
            ci = stats.bootstrap((diffs,), np.mean, method="BCa", n_resamples=9999,
                                 rng=np.random.default_rng(0)).confidence_interval
            assert (got["interval"]["low"], got["interval"]["high"]) == pytest.approx((ci.low, ci.high))
        p_values[slug] = got["p_value"]
    assert arms["control"]["mean"]["test_top1"] == pytest.approx(np.mean(control))
    small, large = sorted(p_values, key=p_values.get)  # Holm with two arms
    assert arms[small]["paired"]["p_holm"] == pytest.approx(min(1.0, 2 * p_values[small]))
    assert arms[large]["paired"]["p_holm"] == pytest.approx(max(min(1.0, 2 * p_values[small]), p_values[large]))
    for slug in p_values:  # 3 seeds: the exact test's smallest p is 0.25, so nothing is decided (no margin)
        assert arms[slug]["verdict"] == "undecided" and "at least 7 seeds" in arms[slug]["decide"]
    assert "3 seeds can never reach alpha 0.05" in summary["warnings"][0]
    assert "can never reach alpha" in (out / "compare.md").read_text()


def test_mcnemar_per_seed_equals_scipy_on_the_saved_predictions(grid):
    out, _, _ = grid
    summary = json.loads((out / "compare.json").read_text())
    arms = {a["slug"]: a for a in summary["arms"]}
    for slug in ("erase-relu", "pd-relu"):
        assert "pooled" not in arms[slug]["mcnemar"]  # a per-image diagnostic per seed, not pooled into a verdict
        for i, seed in enumerate(SEEDS):
            ctrl, arm = read_predictions(job_dir(out, "control", seed)), read_predictions(job_dir(out, slug, seed))
            assert ctrl["index"] == arm["index"] and ctrl["label"] == arm["label"]  # the same test images
            ok_c = np.array(ctrl["prediction"]) == np.array(ctrl["label"])
            ok_a = np.array(arm["prediction"]) == np.array(arm["label"])
            b, c = int((ok_c & ~ok_a).sum()), int((~ok_c & ok_a).sum())
            expected = stats.binomtest(c, b + c, 0.5).pvalue if b + c else 1.0
            got = arms[slug]["mcnemar"]["per_seed"][i]
            assert (got["control_only"], got["arm_only"]) == (b, c)
            assert got["p_value"] == pytest.approx(expected)


def pairing_evidence(out: Path, orders: dict, slug: str, seed: int) -> dict:
    """What must be identical across the arms of one seed: starting weights, sample order, the augmented
    training batches (every augmentation draw), the test images."""
    job = json.loads((job_dir(out, slug, seed) / "job.json").read_text())
    return {"digests": job["start_digests"], "sample_order": orders[(slug, seed)],
            "batches": orders[(slug, seed, "batches")], "augment": job_config(out, slug, seed)["augment"],
            "test_images": read_predictions(job_dir(out, slug, seed))["index"]}


def job_config(out: Path, slug: str, seed: int) -> dict:
    """The fine-tune config a job trained with (from its checkpoint)."""
    return torch.load(job_dir(out, slug, seed) / "checkpoint.pt", weights_only=True)["config"]


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(ea == eb and torch.equal(xa, xb) and torch.equal(ya, yb)
                                    for (ea, xa, ya), (eb, xb, yb) in zip(a, b, strict=True))


def test_pairing_same_start_same_order_same_test_images(grid):
    out, orders, _ = grid
    seed = 1
    control = pairing_evidence(out, orders, "control", seed)
    assert len(control["sample_order"]) == 2 and len(control["sample_order"][0]) == 3 * 32
    assert control["augment"] == "basic" and len(control["batches"]) == 2 * 3
    for slug in ("erase-relu", "pd-relu"):
        arm = pairing_evidence(out, orders, slug, seed)
        common = set(arm["digests"]) & set(control["digests"])
        assert len(common) >= 0.9 * len(control["digests"])  # the surgery left the weights' names
        assert all(arm["digests"][k] == control["digests"][k] for k in common)  # same starting weights
        assert arm["sample_order"] == control["sample_order"]
        assert same_batches(arm["batches"], control["batches"])  # the same augmentation draws, image by image
        assert arm["test_images"] == control["test_images"]
    other = pairing_evidence(out, orders, "control", 0)
    assert not same_batches(other["batches"], control["batches"])
    assert other["sample_order"] != control["sample_order"]  # seeds do differ
    assert other["digests"] != control["digests"]  # a random start differs per seed, not per arm


def test_changed_configuration_is_refused_in_one_line_and_nothing_is_touched(grid):
    out, _, _ = grid
    before = snapshot(out)
    args = [a if a != "lr=0.05" else "lr=0.1" for a in ARGS]
    result = cli(*args, "--out", out)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "another configuration" in lines[0] and "finetune.lr: 0.05 -> 0.1" in lines[0]
    result = cli(*[a if a != "3" else "0,1" for a in ARGS], "--out", out)
    assert result.exit_code == 1 and "seeds: [0, 1, 2] -> [0, 1]" in error_lines(result)[0]
    assert snapshot(out) == before


def test_rerun_skips_every_finished_job_and_rebuilds_the_same_table(grid):
    out, _, _ = grid
    table = (out / "compare.md").read_text()
    jobs = {p: p.read_bytes() for p in out.glob("jobs/*/*/job.json")}
    result = run_api(out)
    assert (result.ran, result.skipped) == (0, 9)
    assert (out / "compare.md").read_text() == table
    assert all(p.read_bytes() == data for p, data in jobs.items())


def test_two_runs_cannot_write_the_same_out(grid, tmp_path):
    from netsurgeon.atomic import claim_output_dir

    out = tmp_path / "busy"
    with claim_output_dir(out):  # another run holds it
        with pytest.raises(ExportError, match="being written by another netsurgeon run"):
            run_api(out)
    assert not any(out.iterdir()) if out.exists() else True


def test_a_foreign_non_empty_out_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no comparison"):
        run_api(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_submitit_debug_executor_gives_the_same_table(grid, tmp_path):
    out, _, _ = grid
    result = run_api(tmp_path / "s", executor="slurm", slurm=SlurmOptions(cluster="debug", poll_s=0.05))
    assert result.ran == 9
    assert (tmp_path / "s" / "compare.md").read_text() == (out / "compare.md").read_text()
    assert (tmp_path / "s" / "compare.csv").read_text() == (out / "compare.csv").read_text()


def test_bad_arms_and_seeds_are_one_line_errors(tmp_path):
    for args, message in [(("--arm", "no-such-pass"), "no-such-pass"), (("--arm", "erase-relu,"), "empty step"),
                          (("--arm", "erase-relu", "--arm", "erase-relu"), "the same"),
                          (("--arm", "erase-relu", "--seeds", "x"), "--seeds"),
                          (("--arm", "erase-relu", "--seeds", "0,0"), "distinct"),
                          (("--arm", "erase-relu:nope=1"), "nope")]:
        result = cli("compare", "netsurgeon:tiny_resnet", "--data", "digits", "--out", tmp_path / "x", *args)
        assert result.exit_code == 1, (args, result.output)
        assert len(error_lines(result)) == 1 and message in error_lines(result)[0], (args, result.stderr)
    assert not (tmp_path / "x").exists()


def test_killed_mid_grid_the_same_command_skips_finished_jobs_and_resumes_the_interrupted_one(grid, tmp_path):
    """kill -9 right after the second job's first epoch checkpoint (the third checkpoint of the grid)."""
    from tests.faults.test_kill import killed, temporaries, weights

    reference, _, _ = grid
    out = tmp_path / "o"
    killed("after-checkpoint:3", *ARGS, "--out", out)
    first, second = job_dir(out, "control", 0), job_dir(out, "erase-relu", 0)
    assert (first / "job.json").exists() and not (second / "job.json").exists()
    assert (second / "checkpoint.pt").exists()
    finished = (first / "job.json").read_bytes()
    result = cli(*ARGS, "--out", out)
    assert result.exit_code == 0, result.output
    assert "8 job(s) run, 1 already finished" in result.stdout
    assert (first / "job.json").read_bytes() == finished  # not rerun
    assert json.loads((second / "job.json").read_text())["resumed"] is True
    assert not any(json.loads(p.read_text())["resumed"] for p in out.glob("jobs/*/*/job.json")
                   if p.parent != second)
    got, want = weights(second), weights(job_dir(reference, "erase-relu", 0))
    assert all(np.array_equal(got[k].numpy(), want[k].numpy()) for k in want)  # bit-identical on the CPU
    for name in ("compare.md", "compare.csv", "compare.json"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    assert temporaries(out) == []


def test_a_recipe_compare_section_runs_the_same_comparison(grid, tmp_path):
    out, _, _ = grid
    recipe = tmp_path / "cmp.yaml"
    recipe.write_text(f"""
model: {{name: "netsurgeon:tiny_resnet", input_size: [3, 8, 8]}}
finetune: {{data: digits, epochs: 2, batch_size: 32, limit_train_batches: 3, limit_eval_batches: 4, lr: 0.05,
            progress: false}}
export: {{dir: {tmp_path / "r"}, formats: [safetensors]}}
compare: {{arms: [erase-relu, pd-relu], seeds: 3}}
""")
    result = cli("compare", "--recipe", recipe)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "compare.md").read_text() == (out / "compare.md").read_text()
    refused = cli("run", recipe)
    assert refused.exit_code == 1 and "compare --recipe" in error_lines(refused)[0]


@pytest.mark.slow
def test_local_jobs_in_parallel_give_the_same_table(grid, tmp_path):
    out, _, _ = grid
    result = run_api(tmp_path / "p", jobs=2)
    assert result.ran == 9
    assert (tmp_path / "p" / "compare.md").read_text() == (out / "compare.md").read_text()
    assert (tmp_path / "p" / "jobs" / "control" / "seed-0" / "job.log").exists()


def test_with_ema_the_report_and_the_per_image_tests_use_the_exported_weights(tmp_path):
    """EMA on and exported (ema_export=ema): compare.md/.json show EMA top-1 per arm, the paired differences are the
    EMA weights' top-1, and predictions.csv (McNemar) come from the same EMA weights."""
    out = tmp_path / "ema"
    tune = {**TUNE, "epochs": 1, "ema_decay": 0.5, "ema_warmup": False, "ema_export": "ema"}
    with pytest.warns(UserWarning, match="can never reach alpha"):
        result = compare("netsurgeon:tiny_resnet", "digits", ["erase-relu"], 2, tune, out=out, input_size=(3, 8, 8))
    summary = json.loads((out / "compare.json").read_text())
    assert "ema_test_top1" in summary["metrics"]
    control, arm = summary["arms"]
    assert control["weights"] == arm["weights"] == ["ema", "ema"]
    ema = {slug: [final_metric(out, slug, s, "ema_test_top1") for s in (0, 1)] for slug in ("control", "erase-relu")}
    raw = {slug: [final_metric(out, slug, s) for s in (0, 1)] for slug in ("control", "erase-relu")}
    assert ema != raw  # the two weights differ here, so the check below can fail
    assert arm["paired"]["differences"] == pytest.approx(list(np.subtract(ema["erase-relu"], ema["control"])))
    assert arm["mean"]["ema_test_top1"] == pytest.approx(np.mean(ema["erase-relu"]))
    for slug in ("control", "erase-relu"):
        for seed in (0, 1):
            p = read_predictions(job_dir(out, slug, seed))
            top1 = 100 * np.mean(np.array(p["label"]) == np.array(p["prediction"]))
            assert top1 == pytest.approx(ema[slug][seed])  # the per-image tests see the exported (EMA) weights
    md = (out / "compare.md").read_text()
    assert "EMA top-1 (%)" in md and "| EMA |" in md and "exported EMA weights" in md
    assert "| EMA |" in result.table
