"""Experiment logging, rank 0 only: TensorBoard event files in ``--out``, and Weights & Biases or MLflow when asked.

Each metrics row (one per epoch, epoch 0 being the evaluation before fine-tuning) becomes scalars at
step = epoch: ``train/loss``, ``train/top1``, ``lr/base`` (the pretrained parameters' rate),
``lr/new_params`` (the rate of parameters a pass created, when there are any), ``test/{loss,top1,top5}``,
``ema/{loss,top1,top5}`` (the EMA weights), ``speed/images_per_s``.

``log=wandb``: one W&B run (project ``wandb_project``, files in ``--out/wandb``; offline with
``WANDB_MODE=offline``). ``log=mlflow``: one MLflow run in the experiment ``wandb_project`` of the
tracking store ``MLFLOW_TRACKING_URI``, by default ``sqlite:///OUT/mlflow.db`` with artifacts in
``OUT/mlartifacts`` (MLflow 3 refuses its old ``./mlruns`` file store); the config goes in as params, the
scalars as metrics, the exported model files as artifacts (:func:`log_artifacts`). A ``compare`` job's run
carries :class:`RunLabels`: its arm and seed, the comparison's W&B group or MLflow parent run, and the
comparison's store; the comparison's summary is its own run (:func:`log_comparison`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsurgeon.errors import ConfigError
from netsurgeon.train.schema import Key

__all__ = ["EXTRAS", "MLFLOW_ARTIFACTS", "MLFLOW_DB", "SCALARS", "TENSORBOARD_DIR", "RunLabels", "Trackers",
           "check_loggers", "check_tracker", "log_artifacts", "log_comparison", "mlflow_store", "open_comparison",
           "tensorboard_on"]

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
#: metrics-row key -> scalar tag
SCALARS = {Key.TRAIN_LOSS: "train/loss", Key.TRAIN_TOP1: "train/top1", Key.LR: "lr/base", Key.LR_NEW: "lr/new_params",
           Key.TEST_LOSS: "test/loss", Key.TEST_TOP1: "test/top1", Key.TEST_TOP5: "test/top5",
           Key.EMA_TEST_LOSS: "ema/loss", Key.EMA_TEST_TOP1: "ema/top1", Key.EMA_TEST_TOP5: "ema/top5",
           Key.IMAGES_PER_S: "speed/images_per_s"}
#: log value -> (the module it needs, the pip extra that installs it, what to do after installing)
EXTRAS = {"wandb": ("wandb", "wandb", " (then wandb login, or WANDB_MODE=offline)"),
          "mlflow": ("mlflow", "mlflow", "")}
#: MLflow tags that find a comparison's parent run and say what a run is
GROUP_TAG, ROLE_TAG = "netsurgeon.group", "netsurgeon.role"


def tensorboard_on(log: str) -> bool:
    """Whether a run with ``log`` writes TensorBoard events (auto: when tensorboard is installed)."""
    if log == "none":
        return False
    installed = importlib.util.find_spec("tensorboard") is not None
    if log == "tensorboard" and not installed:
        raise ConfigError("log=tensorboard needs the tensorboard package: pip install 'netsurgeon[tensorboard]' "
                          "(or --set log=none).")
    return installed


def check_loggers(log: str) -> None:
    """Refuse a ``log`` whose package is missing, before any work (not after the first evaluation)."""
    tensorboard_on(log)
    check_tracker(log)


def check_tracker(log: str) -> None:
    """A one-line ConfigError naming the extra when ``log`` asks for a tracker that is not installed."""
    if log in EXTRAS:
        module, extra, then = EXTRAS[log]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"log={log} needs the {module} package: pip install 'netsurgeon[{extra}]'{then}, "
                              "or use log=tensorboard.")


@dataclass(frozen=True)
class RunLabels:
    """How a run is named and grouped in the tracker (a ``compare`` job: its arm and seed in the comparison)."""

    name: str | None = None  # the run's name (default: the --out directory's name)
    group: str | None = None  # W&B group; MLflow: the parent run tagged netsurgeon.group=group
    store: Path | None = None  # the directory of the default MLflow store (default: --out)
    tags: Mapping[str, str] = field(default_factory=dict)  # W&B config extras, MLflow tags (arm, seed)


def mlflow_store(directory: Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment): ``MLFLOW_TRACKING_URI`` (the server's own
    artifact location), else a SQLite store and an artifact folder in ``directory``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    directory = Path(directory).resolve()
    return f"sqlite:///{directory / MLFLOW_DB}", (directory / MLFLOW_ARTIFACTS).as_uri()


def _mlflow_client(directory: Path, experiment: str):  # noqa: ANN202 (mlflow.tracking.MlflowClient, optional)
    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the store's table creation logs at INFO
    uri, location = mlflow_store(directory)
    Path(directory).mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment, location)
    return client, experiment_id


def _mlflow_key(key: str) -> str:
    """MLflow keys allow letters, digits, ``_-. /:``; anything else (``=``, ``+`` in arm names) becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-. /:" else "_" for c in key)


def _find_run(client: Any, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


class Trackers:
    """The run's loggers; ``log(row)`` after each epoch, ``close()`` at the end; ``runs`` says where they went."""

    def __init__(self, out: Path | None, log: str, *, config: dict[str, Any], project: str, name: str,
                 fresh: bool, labels: RunLabels | None = None) -> None:
        self.writer = self.wandb = self.mlflow = None
        self.runs: dict[str, str] = {}  # mlflow_uri, mlflow_run_id, wandb_run_id
        if out is None or log == "none":
            return
        check_tracker(log)
        labels = labels or RunLabels()
        if tensorboard_on(log):
            from torch.utils.tensorboard import SummaryWriter

            directory = out / TENSORBOARD_DIR
            if fresh and directory.is_dir():  # --overwrite: the old run's curves go
                for old in directory.glob("events.out.tfevents.*"):
                    old.unlink()
            self.writer = SummaryWriter(log_dir=str(directory))
        if log == "wandb":
            import wandb

            self.wandb = wandb.init(project=project, name=labels.name or name, group=labels.group,
                                    config={**config, **labels.tags}, dir=str(out), resume="allow",
                                    job_type="finetune")
            self.runs["wandb_run_id"] = self.wandb.id
        if log == "mlflow":
            self._open_mlflow(out, project, labels.name or name, config, labels, fresh)

    def _open_mlflow(self, out: Path, project: str, name: str, config: dict[str, Any], labels: RunLabels,
                     fresh: bool) -> None:
        from mlflow.entities import Param

        store = labels.store or out
        client, experiment_id = _mlflow_client(store, project)
        tags = {"netsurgeon.out": str(out.resolve()), ROLE_TAG: "finetune", **labels.tags}
        run_id = None if fresh else _find_run(client, experiment_id, {"netsurgeon.out": tags["netsurgeon.out"]})
        if run_id is None:  # a resumed run continues its MLflow run (its params stay those of the start)
            if labels.group is not None:
                parent = _find_run(client, experiment_id, {GROUP_TAG: labels.group, ROLE_TAG: "comparison"})
                if parent is not None:
                    tags["mlflow.parentRunId"] = parent
            run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
            params = [Param(_mlflow_key(k), str(v)[:6000]) for k, v in sorted(config.items())]
            client.log_batch(run_id, params=params)
        else:
            client.update_run(run_id, status="RUNNING")
        self.mlflow = (client, run_id)
        self.runs.update(mlflow_uri=mlflow_store(store)[0], mlflow_run_id=run_id)

    def log(self, row: dict[str, Any]) -> None:
        step = int(row[Key.EPOCH])
        values = {tag: float(row[key]) for key, tag in SCALARS.items() if row.get(key) is not None}
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()
        if self.wandb is not None:
            self.wandb.log({**values, Key.EPOCH: step}, step=step)
        if self.mlflow is not None:
            from mlflow.entities import Metric

            client, run_id = self.mlflow
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(tag, value, now, step) for tag, value in values.items()])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.mlflow is not None:
            client, run_id = self.mlflow
            client.set_terminated(run_id)


def log_artifacts(runs: Mapping[str, str], files: Iterable[str | Path]) -> None:
    """Attach the exported model files to the run's MLflow run (under ``model/``), when it had one."""
    if "mlflow_run_id" not in runs:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(runs["mlflow_uri"])
    for path in files:
        if Path(path).is_file():
            client.log_artifact(runs["mlflow_run_id"], str(path), artifact_path="model")


def comparison_values(summary: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A comparison's summary as tracker values: per arm the mean of each metric over seeds and the paired
    top-1 difference (its mean, interval and Holm-adjusted p), and each arm's verdict."""
    metrics: dict[str, float] = {}
    verdicts: dict[str, str] = {}
    for arm in summary["arms"]:
        slug = arm["slug"]
        for key, value in arm["mean"].items():
            metrics[f"{slug}/{key}_mean"] = float(value)
        paired = arm.get("paired")
        if paired:
            metrics[f"{slug}/diff_top1_mean"] = float(paired["mean"])
            for bound in ("low", "high"):
                if paired["interval"]:
                    metrics[f"{slug}/diff_top1_ci_{bound}"] = float(paired["interval"][bound])
            if paired.get("p_holm") is not None:
                metrics[f"{slug}/p_holm"] = float(paired["p_holm"])
        if "verdict" in arm:
            verdicts[slug] = arm["verdict"]
    return metrics, verdicts


def open_comparison(log: str, out: Path, project: str, group: str) -> None:
    """MLflow: create the comparison's parent run (before its jobs start, so each job nests under it); a
    resumed comparison keeps its parent. W&B groups by name and needs nothing here."""
    check_tracker(log)
    if log != "mlflow":
        return
    client, experiment_id = _mlflow_client(out, project)
    if _find_run(client, experiment_id, {GROUP_TAG: group, ROLE_TAG: "comparison"}) is None:
        run = client.create_run(experiment_id, run_name=f"{out.name} (comparison)",
                                tags={GROUP_TAG: group, ROLE_TAG: "comparison", "netsurgeon.out": str(out.resolve())})
        client.set_terminated(run.info.run_id)


def log_comparison(log: str, out: Path, project: str, group: str, summary: Mapping[str, Any],
                   files: Iterable[str | Path]) -> dict[str, str]:
    """Log a comparison's summary (per-arm means, paired differences, verdicts) and its report files as its
    own run: W&B, a run of job type ``compare`` in the group; MLflow, the parent run of the jobs' runs."""
    metrics, verdicts = comparison_values(summary)
    if log == "wandb":
        import wandb

        run = wandb.init(project=project, name=f"{out.name} (comparison)", group=group, job_type="compare",
                         config=dict(summary["spec"]), dir=str(out))
        run.summary.update({**metrics, **{f"{slug}/verdict": v for slug, v in verdicts.items()}})
        run.finish()
        return {"wandb_run_id": run.id}
    if log != "mlflow":
        return {}
    from mlflow.entities import Metric

    client, experiment_id = _mlflow_client(out, project)
    run_id = _find_run(client, experiment_id, {GROUP_TAG: group, ROLE_TAG: "comparison"})
    if run_id is None:
        open_comparison(log, out, project, group)
        run_id = _find_run(client, experiment_id, {GROUP_TAG: group, ROLE_TAG: "comparison"})
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(_mlflow_key(k), v, now, 0) for k, v in metrics.items()])
    for slug, verdict in verdicts.items():
        client.set_tag(run_id, _mlflow_key(f"verdict/{slug}"), verdict)
    for path in files:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path="report")
    return {"mlflow_uri": mlflow_store(out)[0], "mlflow_run_id": run_id}
