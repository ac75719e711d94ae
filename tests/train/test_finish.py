"""The loop trains and exports nothing; ``export_finetuned`` (what ``finetune`` runs after it) exports, with the
training in the provenance (issue 22, item 3: export leaves the training loop)."""

import dataclasses
import itertools
import json
import struct
import time

import pytest
import torch
from safetensors import safe_open

import netsurgeon as ns
from netsurgeon.errors import ConfigError
from netsurgeon.train import (
    FinetuneConfig,
    export_finetuned,
    finetune,
    resolve_data,
    run_training,
    training_provenance,
)

SIZE = (3, 16, 16)
CFG = FinetuneConfig(epochs=1, limit_train_batches=2, limit_eval_batches=1, batch_size=32, lr=0.05, progress=False,
                     workers=0, log="none")


@pytest.fixture(scope="module")
def digits():
    model = ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)
    train, test, _ = resolve_data("digits", model, FinetuneConfig(augment="none"))
    return train, test


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)


@pytest.fixture
def clock(monkeypatch):
    """A perf_counter that ticks one second per call, restarted by ``clock()``: two runs time alike."""
    ticks = {"now": itertools.count()}
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks["now"])))
    return lambda: ticks.update(now=itertools.count())


def _parts(path):
    """A safetensors file as (header, tensor bytes): safetensors writes the header's metadata keys in a
    per-process hash order, so equal files may differ in those bytes alone."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size]), data[8 + size:]


def _record(out):
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        return json.loads(fh.metadata()["netsurgeon"])


def test_the_loop_writes_no_model_and_says_what_the_run_was(model, digits, tmp_path):
    result = run_training(model, digits, CFG, out_dir=tmp_path)
    assert not any(p.name.startswith("model.") for p in tmp_path.iterdir())
    assert result.export is None and (tmp_path / "checkpoint.pt").exists()
    label = type(digits[0]).__name__  # Datasets: their class's name
    assert (result.config, result.data, result.amp, result.world_size, result.rank) == (CFG, label, "off", 1, 0)
    assert training_provenance(result) == {"config": CFG.to_dict(), "data": label, "metrics": result.metrics,
                                           "amp": "off", "world_size": 1, "weights": "raw"}


def test_training_then_export_writes_what_finetune_writes(model, digits, tmp_path, clock):
    clock()
    composed = finetune(model, digits, CFG, out_dir=tmp_path / "a", extra={"note": "x"})
    clock()
    trained = run_training(model, digits, CFG, out_dir=tmp_path / "b")
    exported = export_finetuned(trained, tmp_path / "b", extra={"note": "x"})
    assert exported is trained.export and exported.onnx_max_abs_diff is not None
    assert _parts(tmp_path / "a" / "model.safetensors") == _parts(tmp_path / "b" / "model.safetensors")
    assert (tmp_path / "b" / "model.onnx").exists()
    assert [p.rsplit("/", 1)[1] for p in composed.files] == [p.rsplit("/", 1)[1] for p in trained.files]
    record = _record(tmp_path / "b")
    assert record["finetune"] == json.loads(json.dumps(training_provenance(trained)))
    assert record["note"] == "x"


def test_export_is_rank_0s_and_needs_a_directory_and_formats(model, digits, tmp_path):
    trained = run_training(model, digits, CFG)
    assert export_finetuned(trained, None) is None
    assert export_finetuned(trained, tmp_path, ()) is None
    assert export_finetuned(dataclasses.replace(trained, rank=1), tmp_path) is None
    assert list(tmp_path.iterdir()) == [] and trained.export is None


def test_a_model_without_provenance_is_not_exported_and_a_warning_says_so(digits, tmp_path):
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    with pytest.warns(UserWarning, match="carries no netsurgeon provenance"):
        result = finetune(plain, digits, CFG, out_dir=tmp_path)
    assert result.export is None and not (tmp_path / "model.safetensors").exists()


def test_the_outputs_are_checked_before_training_even_when_the_caller_exports(model, digits, tmp_path):
    (tmp_path / "model.onnx").write_text("an earlier run's")
    with pytest.raises(ConfigError, match=r"already holds a run's files \(model.onnx\)"):
        run_training(model, digits, CFG, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
