"""``log=wandb`` (offline) and ``log=mlflow`` (a local store) on a tiny fine-tune, each read back from what the
tracker wrote: the config, the per-epoch scalars and the summary; MLflow's params and artifact files."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import netsurgeon as ns
from netsurgeon.errors import ConfigError
from netsurgeon.train import FinetuneConfig, finetune, run_training
from tests.trackers import offline_wandb, use_mlflow_store, wandb_runs

SIZE = (3, 8, 8)
QUICK = {"epochs": 1, "batch_size": 32, "lr": 0.05, "progress": False, "workers": 0, "limit_train_batches": 2,
         "limit_eval_batches": 2}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)


def test_wandb_offline_run_holds_the_config_the_epoch_scalars_and_the_summary(model, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    offline_wandb(monkeypatch, tmp_path)
    out = tmp_path / "out"
    result = finetune(model, "digits", FinetuneConfig(log="wandb", wandb_project="ns-test", **QUICK), out_dir=out,
                      formats=("safetensors",))
    (run,) = wandb_runs(out / "wandb")
    assert run.name == "out" and run.job_type == "finetune"
    assert run.config["lr"] == 0.05 and run.config["epochs"] == 1 and run.config["log"] == "wandb"
    assert [row["epoch"] for row in run.history] == [0, 1]
    assert [row["test/top1"] for row in run.history] == pytest.approx([r["test_top1"] for r in result.metrics])
    assert run.history[1]["train/loss"] == pytest.approx(result.metrics[1]["train_loss"])
    assert run.summary["test/top1"] == pytest.approx(result.final["test_top1"])
    assert result.tracked["wandb_run_id"]


def test_mlflow_run_holds_params_epoch_metrics_and_the_model_files(model, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "out"
    result = finetune(model, "digits", FinetuneConfig(log="mlflow", wandb_project="ns-test", **QUICK), out_dir=out,
                      formats=("safetensors",))
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ns-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == result.tracked["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name == "out"
    assert run.data.params["lr"] == "0.05" and run.data.params["log"] == "mlflow"
    history = client.get_metric_history(run.info.run_id, "test/top1")
    assert [m.step for m in history] == [0, 1]
    assert [m.value for m in history] == pytest.approx([r["test_top1"] for r in result.metrics])
    assert run.data.metrics["train/loss"] == pytest.approx(result.final["train_loss"])
    files = [f.path for f in client.list_artifacts(run.info.run_id, "model")]
    assert files == ["model/model.safetensors"]
    assert (out / "mlartifacts").is_dir()  # the artifacts stay under --out, not in the working directory


@pytest.mark.parametrize("log", ["wandb", "mlflow"])
def test_a_tracker_that_is_not_installed_is_a_one_line_error_before_any_work(model, tmp_path, monkeypatch, log):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == log else real(name, *a))
    with pytest.raises(ConfigError) as err:
        run_training(model, "digits", FinetuneConfig(log=log, **QUICK), out_dir=tmp_path / "out")
    assert f"pip install 'netsurgeon[{log}]'" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_resumed_run_continues_its_mlflow_run_and_a_fresh_one_starts_another(tmp_path, monkeypatch, mlflow_store):
    from mlflow.tracking import MlflowClient

    from netsurgeon.train.tracking import Trackers

    use_mlflow_store(monkeypatch, mlflow_store, "ns-resume", tmp_path / "artifacts")
    out = tmp_path / "out"

    def one(fresh: bool, epoch: int) -> str:
        trackers = Trackers(out, "mlflow", config={"lr": 0.1}, project="ns-resume", name="out", fresh=fresh)
        trackers.log({"epoch": epoch, "test_top1": 10.0 * epoch})
        trackers.close()
        return trackers.runs["mlflow_run_id"]

    first = one(True, 0)
    assert one(False, 1) == first  # --resume
    client = MlflowClient(mlflow_store)
    assert [m.step for m in client.get_metric_history(first, "test/top1")] == [0, 1]
    assert not (out / "mlflow.db").exists()  # MLFLOW_TRACKING_URI wins over the default store
    assert one(True, 0) != first  # --overwrite: a new run
