"""Every arm is planned before any training (issue 27 item 6), executors are a registry (item 5), and
``--executor slurm`` without SLURM is one line with nothing run (issue 29 item 5)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netsurgeon.compare import compare, register_executor
from netsurgeon.compare.executors import EXECUTORS, Grid, JobResult, SlurmOptions
from netsurgeon.compare.job import run_job
from netsurgeon.config import Config
from netsurgeon.errors import ConfigError, NoEffectWarning
from tests.badinput.helpers import cli, error_lines

MODEL, SIZE = "netsurgeon:tiny_resnet", (3, 8, 8)
TUNE = {"epochs": 1, "batch_size": 16, "limit_train_batches": 1, "limit_eval_batches": 1, "progress": False,
        "workers": 0}


class _Trained(Exception):
    pass


@pytest.fixture
def no_training(monkeypatch):
    """Any training (any job) fails the test at once."""
    from netsurgeon.train import loop

    def refuse(self, *args, **kwargs):
        raise _Trained("a job started training")

    monkeypatch.setattr(loop._Run, "__init__", refuse)


# ------------------------------------------------------------------ planning
def test_pd_relu_on_a_relu6_model_is_refused_before_any_training_naming_what_to_set(no_training, tmp_path):
    out = tmp_path / "c"
    with pytest.raises(ConfigError) as err:
        compare("netsurgeon:tiny_mobilenet", "digits", ["pd-relu"], 2, TUNE, out=out, input_size=SIZE)
    message = str(err.value)
    assert "\n" not in message
    assert "pd-relu changes nothing" in message and "5 ReLU6 sites: add relu6=true" in message
    assert "--arm 'pd-relu:relu6=true'" in message and "nothing was trained" in message
    assert not out.exists()  # nothing written either
    result = cli("compare", "--model", "netsurgeon:tiny_mobilenet", "--data", "digits", "--arm", "pd-relu",
                 "--out", out, "--input-size", "3,8,8", "--set", "progress=false")
    assert result.exit_code == 1 and len(error_lines(result)) == 1
    assert "add relu6=true" in error_lines(result)[0]
    assert not out.exists()


def test_apply_says_the_same_hint_in_its_no_effect_warning():
    import netsurgeon as ns
    from netsurgeon.loading import load_model

    model = load_model("netsurgeon:tiny_mobilenet", num_classes=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ns.apply(model, "pd-relu")
    said = [str(w.message) for w in caught if issubclass(w.category, NoEffectWarning)]
    assert len(said) == 1 and said[0].endswith("5 ReLU6 sites: add relu6=true.")
    assert result.report.passes[0].hint == "5 ReLU6 sites: add relu6=true"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ns.apply(model, "erase-relu")
    assert any("add act_types=[ReLU,ReLU6]" in str(w.message) for w in caught)
    changed = ns.apply(model, ns.PseudoDerivativeReLU(relu6=True))
    assert changed.report.changed == 5 and changed.report.passes[0].hint == ""


def test_dry_run_prints_every_arms_plan_and_trains_and_writes_nothing(no_training, tmp_path):
    out = tmp_path / "c"
    result = cli("compare", "--model", MODEL, "--data", "digits", "--arm", "erase-relu", "--arm",
                 "pd-relu:alpha=0.2", "--arm", "erase-relu,pd-relu", "--out", out, "--input-size", "3,8,8",
                 "--dry-run")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "fine-tune only: the control" in text
    for arm in ("erase-relu:", "pd-relu:alpha=0.2:", "erase-relu,pd-relu:"):
        assert any(line.startswith(arm) and "site(s) changed" in line for line in text.splitlines()), arm
    assert "alpha=0.2" in text and "layer1" in text  # parameters and sites
    assert "nothing trained or written" in text
    assert not out.exists()
    as_json = cli("compare", "--model", MODEL, "--data", "digits", "--arm", "erase-relu", "--input-size", "3,8,8",
                  "--dry-run", "--json")
    plans = json.loads(as_json.stdout)["plans"]
    assert [p["slug"] for p in plans] == ["control", "erase-relu"] and plans[1]["sites"] > 0


def test_dry_run_shows_a_refused_arm_with_the_others_then_fails_in_one_line(no_training):
    result = cli("compare", "--model", "netsurgeon:tiny_mobilenet", "--data", "digits", "--arm", "pd-relu",
                 "--arm", "pd-relu:relu6=true", "--input-size", "3,8,8", "--dry-run")
    assert result.exit_code == 1
    assert "pd-relu:relu6=true: 5 site(s) changed" in result.stdout
    assert len(error_lines(result)) == 1 and "add relu6=true" in error_lines(result)[0]


# ------------------------------------------------------------------ the executor registry
@dataclass(frozen=True)
class ToyOptions(Config):
    reverse: bool = False


calls: list[tuple[str, int]] = []


class ToyExecutor:
    """Runs the jobs here, last first when asked: the grid's result must not depend on the order."""

    def __init__(self, options: ToyOptions) -> None:
        self.options = options

    def run(self, grid: Grid) -> Iterator[JobResult]:
        jobs = list(reversed(grid.jobs)) if self.options.reverse else list(grid.jobs)
        for arm, seed in jobs:
            calls.append((arm.slug, seed))
            yield (arm, seed), run_job(grid.out, arm.slug, seed)


@pytest.fixture
def toy():
    register_executor("toy", ToyOptions)(ToyExecutor)
    calls.clear()
    yield
    EXECUTORS.pop("toy")


def test_a_toy_executor_registered_from_a_test_file_runs_a_grid(toy, tmp_path):
    reference = compare(MODEL, "digits", ["erase-relu"], 1, TUNE, out=tmp_path / "local", input_size=SIZE)
    result = cli("compare", "--model", MODEL, "--data", "digits", "--arm", "erase-relu", "--seeds", "1",
                 "--out", tmp_path / "toy", "--input-size", "3,8,8", "--executor", "toy", "--executor-opt",
                 "reverse=true", *[a for k, v in TUNE.items() for a in ("--set", f"{k}={str(v).lower()}")])
    assert result.exit_code == 0, result.output
    assert calls == [("erase-relu", 0), ("control", 0)]
    assert (tmp_path / "toy" / "compare.csv").read_text() == (tmp_path / "local" / "compare.csv").read_text()
    assert reference.ran == 2


def test_unknown_executors_and_options_are_one_line_errors(toy, tmp_path):
    for args, message in [(("--executor", "nope"), "choose one of: local, parallel, slurm, toy"),
                          (("--executor", "toy", "--executor-opt", "colour=red"), "unknown parameter 'colour'"),
                          (("--executor", "parallel", "--executor-opt", "workers=0"), "at least 1"),
                          (("--executor", "slurm", "--executor-opt", "time_min=x"), "time_min")]:
        result = cli("compare", "--model", MODEL, "--data", "digits", "--arm", "erase-relu", "--out",
                     tmp_path / "x", "--input-size", "3,8,8", *args)
        assert result.exit_code == 1, (args, result.output)
        assert len(error_lines(result)) == 1 and message in error_lines(result)[0], (args, result.stderr)
    assert not (tmp_path / "x").exists()


def test_slurm_without_slurm_is_one_line_and_runs_nothing(no_training, monkeypatch, tmp_path):
    """No sbatch on PATH: submitit would fall back to local processes and report their pids as SLURM job ids."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "c"
    with pytest.raises(ConfigError, match="no SLURM on this machine") as err:
        compare(MODEL, "digits", ["erase-relu"], 2, TUNE, out=out, input_size=SIZE, executor="slurm")
    assert "\n" not in str(err.value) and "Nothing was run" in str(err.value)
    assert not out.exists()
    result = cli("compare", "--model", MODEL, "--data", "digits", "--arm", "erase-relu", "--out", out,
                 "--input-size", "3,8,8", "--executor", "slurm", "--partition", "gpu")
    assert result.exit_code == 1 and len(error_lines(result)) == 1
    assert "no SLURM" in error_lines(result)[0] and "submitted" not in result.output
    assert not out.exists()


def test_slurm_when_submitit_would_fall_back_to_local_is_refused(no_training, monkeypatch, tmp_path):
    """sbatch and srun on PATH but submitit does not pick SLURM: the same line, before anything is written."""
    import submitit

    from netsurgeon.compare.executors import slurm as slurm_executor

    monkeypatch.setattr(slurm_executor.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(submitit.AutoExecutor, "which", staticmethod(lambda: "local"))
    out = tmp_path / "c"
    with pytest.raises(ConfigError, match="no SLURM on this machine .submitit would run the jobs with its local"):
        compare(MODEL, "digits", ["erase-relu"], 1, TUNE, out=out, input_size=SIZE, executor="slurm",
                slurm=SlurmOptions(poll_s=0.05))
    assert not out.exists()
