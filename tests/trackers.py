"""Reading back what the trackers wrote, for the tests: W&B offline runs and MLflow stores.

wandb 0.31 ships no Python reader for an offline run (its ``.wandb`` file is read by wandb-core; the
public ``wandb.Api`` needs a server), so :func:`wandb_records` undoes the file's framing (LevelDB's log
format: 32 KiB blocks of records with a 7-byte header, after W&B's own 7-byte file header) and parses
each record with wandb's own protobuf message, ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK, HEADER, FILE_HEADER = 32768, 7, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list[Any]:
    """Every record of one ``run-ID.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pos, pending = [], FILE_HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pos += HEADER
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        pending += data[pos:pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@dataclass
class WandbRun:
    """An offline W&B run as its file holds it."""

    name: str
    group: str
    job_type: str
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def read_wandb_run(path: Path) -> WandbRun:
    """The run's name, group, config, logged rows (one per ``log`` call) and final summary."""
    run = None
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            config = {u.key: json.loads(u.value_json) for u in r.config.update if u.key != "_wandb"}
            run = WandbRun(r.display_name, r.run_group, r.job_type, config)
        elif kind == "config" and run is not None:
            run.config.update({u.key: json.loads(u.value_json) for u in record.config.update if u.key != "_wandb"})
        elif kind == "history" and run is not None:
            run.history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                for i in record.history.item})
        elif kind == "summary" and run is not None:
            for u in record.summary.update:
                key = "/".join(u.nested_key) or u.key
                if not key.startswith("_"):
                    run.summary[key] = json.loads(u.value_json)
    assert run is not None, f"{path} holds no run record"
    return run


def wandb_runs(directory: Path) -> list[WandbRun]:
    """Every offline run under ``directory`` (any depth)."""
    return [read_wandb_run(p) for p in sorted(Path(directory).rglob("offline-run-*/run-*.wandb"))]


def offline_wandb(monkeypatch, tmp_path: Path) -> None:
    """W&B offline, silent, its settings and cache inside ``tmp_path``: no network, no login."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wandb-dir"),
                       "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
                       "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
                       "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def use_mlflow_store(monkeypatch, uri: str, experiment: str, artifacts: Path) -> None:
    """Point MLFLOW_TRACKING_URI at ``uri`` and create ``experiment`` there with its artifacts in ``artifacts``
    (a store given by URI decides where artifacts go; SQLite's default would be ./mlruns in the working
    directory)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    MlflowClient(uri).create_experiment(experiment, artifacts.resolve().as_uri())
