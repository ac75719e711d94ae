"""``compare`` with ``log=wandb`` (offline) and ``log=mlflow``: one run per job, grouped, plus the comparison's
summary (per-arm means, paired differences, verdicts) as its own run, read back from what the tracker wrote."""

from __future__ import annotations

import pytest

from netsurgeon.compare import compare
from tests.trackers import offline_wandb, use_mlflow_store, wandb_runs

TUNE = {"epochs": 1, "batch_size": 32, "limit_train_batches": 2, "limit_eval_batches": 2, "lr": 0.05,
        "progress": False, "wandb_project": "ns-compare"}


#: one seed by default (2 jobs and the summary); two seeds (4 jobs, a paired interval) in the slow set
SEEDS = [1, pytest.param(2, marks=pytest.mark.slow)]


def run(out, log, seeds, project="ns-compare"):
    return compare("netsurgeon:tiny_resnet", "digits", ["erase-relu"], seeds,
                   {**TUNE, "log": log, "wandb_project": project}, out=out, input_size=(3, 8, 8), progress=False)


def job_names(seeds: int) -> list[str]:
    return sorted(f"{arm}/seed-{s}" for arm in ("control", "erase-relu") for s in range(seeds))


@pytest.mark.parametrize("seeds", SEEDS)
def test_compare_logs_each_job_and_the_summary_to_one_wandb_group(tmp_path, monkeypatch, seeds):
    pytest.importorskip("wandb")
    offline_wandb(monkeypatch, tmp_path)
    result = run(tmp_path / "out", "wandb", seeds)
    runs = wandb_runs(tmp_path / "out")
    jobs = sorted(r.name for r in runs if r.job_type == "finetune")
    assert jobs == job_names(seeds)
    (summary,) = [r for r in runs if r.job_type == "compare"]
    assert len({r.group for r in runs}) == 1 and runs[0].group.startswith("out-")
    arm = result.summary["arms"][1]
    assert summary.summary["erase-relu/verdict"] == arm["verdict"]
    assert summary.summary["erase-relu/diff_top1_mean"] == pytest.approx(arm["paired"]["mean"])
    assert summary.summary["control/test_top1_mean"] == pytest.approx(result.summary["arms"][0]["mean"]["test_top1"])
    assert summary.config["arms"][1]["name"] == "erase-relu"


@pytest.mark.parametrize("seeds", SEEDS)
def test_compare_logs_each_job_under_the_summary_parent_run_in_mlflow(tmp_path, monkeypatch, seeds, mlflow_store):
    from mlflow.tracking import MlflowClient

    project = f"ns-compare-{seeds}"
    use_mlflow_store(monkeypatch, mlflow_store, project, tmp_path / "artifacts")
    out = tmp_path / "out"
    result = run(out, "mlflow", seeds, project)
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name(project)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["netsurgeon.role"] == "comparison"]
    jobs = [r for r in runs if r.data.tags["netsurgeon.role"] == "finetune"]
    assert sorted(r.info.run_name for r in jobs) == job_names(seeds)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    arm = result.summary["arms"][1]
    assert parent.data.tags["verdict/erase-relu"] == arm["verdict"]
    assert parent.data.metrics["erase-relu/diff_top1_mean"] == pytest.approx(arm["paired"]["mean"])
    assert parent.data.metrics["erase-relu/test_top1_mean"] == pytest.approx(arm["mean"]["test_top1"])
    reported = sorted(f.path for f in client.list_artifacts(parent.info.run_id, "report"))
    assert reported == ["report/compare.csv", "report/compare.json", "report/compare.md", "report/compare.png"]
    job = next(r for r in jobs if r.info.run_name == f"erase-relu/seed-{seeds - 1}")
    assert [f.path for f in client.list_artifacts(job.info.run_id, "model")] == ["model/model.safetensors"]
    assert job.data.tags["netsurgeon.seed"] == job.data.params["seed"] == str(seeds - 1)
    again = run(out, "mlflow", seeds, project)  # a rerun (every job finished) logs the summary into the same parent run
    assert again.skipped == 2 * seeds
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)


def test_compare_with_a_tracker_that_is_not_installed_is_one_line_before_any_job(tmp_path, monkeypatch):
    import importlib.util

    from netsurgeon.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'netsurgeon\[mlflow\]'"):
        run(tmp_path / "out", "mlflow", 1)
    assert not (tmp_path / "out").exists()
