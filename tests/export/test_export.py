"""Export: provenance in both files, ONNX parity and dynamic batch, atomic writes, reload from the artifact."""

import importlib
import json

import onnx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import netsurgeon as ns
from netsurgeon.errors import ArtifactError, ExportError


@pytest.fixture
def result(tiny_resnet):
    return ns.apply(tiny_resnet, ns.EraseReLU())


def test_artifacts_carry_the_same_provenance(tmp_path, result):
    ns.export(result.model, tmp_path, report=result.report, seed=7)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as fh:
        record = json.loads(fh.metadata()["netsurgeon"])
    assert record["model"]["spec"] == "netsurgeon:tiny_resnet"
    assert [p["pass"] for p in record["passes"]] == ["erase-relu"]
    assert record["passes"][0]["config"]["proportion"] == 1.0
    assert record["passes"][0]["sites"] == ["layer1.relu@1", "layer2.relu@1", "layer3.relu@1"]
    assert record["seed"] == 7 and "torch" in record["versions"] and record["verification"]["ok"]
    proto = onnx.load(str(tmp_path / "model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["netsurgeon"]) == record
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch axis


def test_reload_from_artifact_alone_equals_in_memory_result(tmp_path, result):
    ns.export(result.model, tmp_path, formats=["safetensors"])
    reloaded = ns.load_model(tmp_path / "model.safetensors")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model.eval()(x))
    assert ns.load_model(tmp_path).state_dict().keys() == reloaded.state_dict().keys()  # a directory works too


def test_checkpoint_provenance_is_recorded(tmp_path, tiny_resnet):
    ckpt = tmp_path / "in.safetensors"
    save_file(tiny_resnet.state_dict(), str(ckpt))
    model = ns.load_model("netsurgeon:tiny_resnet", checkpoint=ckpt)
    out = tmp_path / "out"
    ns.export(ns.apply(model, "erase-relu", verify=False).model, out, formats=["safetensors"])
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        record = json.loads(fh.metadata()["netsurgeon"])
    from netsurgeon.models.checkpoint import sha256_file

    assert record["model"]["checkpoint_sha256"] == sha256_file(ckpt)
    assert "sources" not in record["model"]  # local paths stay private


def test_verify_artifact_passes(tmp_path, result):
    ns.export(result.model, tmp_path)
    verdict = ns.verify_artifact(tmp_path)
    assert verdict.ok and verdict.onnx_max_abs_diff < 1e-4 and verdict.passes == ["erase-relu"]


def test_parity_bound_is_absolute_below_unit_scale_and_relative_above():
    from netsurgeon.export.onnx import Parity

    assert Parity(9e-5, 0.5).ok and not Parity(2e-4, 0.5).ok
    assert Parity(5e-4, 840.0).ok and not Parity(0.1, 840.0).ok


def test_failed_onnx_parity_writes_nothing(tmp_path, result, monkeypatch):
    export_mod = importlib.import_module("netsurgeon.export")  # ns.export is the function
    from netsurgeon.export.onnx import Parity

    monkeypatch.setattr(export_mod, "onnx_parity", lambda *a, **k: Parity(max_abs_diff=1.0, output_scale=2.0))
    with pytest.raises(ExportError, match="parity"):
        ns.export(result.model, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no partial files, no temporaries


def test_existing_outputs_need_overwrite(tmp_path, result):
    ns.export(result.model, tmp_path, formats=["safetensors"])
    with pytest.raises(ExportError, match="--overwrite"):
        ns.export(result.model, tmp_path, formats=["safetensors"])
    ns.export(result.model, tmp_path, formats=["safetensors"], overwrite=True)


def test_output_never_overwrites_the_input(tmp_path, result):
    ns.export(result.model, tmp_path, formats=["safetensors"])
    reloaded = ns.load_model(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    with pytest.raises(ExportError, match="is an input"):
        ns.export(reloaded, tmp_path, formats=["safetensors"], overwrite=True)
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_plain_safetensors_is_not_an_artifact(tmp_path, tiny_resnet):
    path = tmp_path / "weights.safetensors"
    save_file(tiny_resnet.state_dict(), str(path))
    with pytest.raises(ArtifactError, match="--checkpoint"):
        ns.load_model(path)


def test_unknown_format_rejected(tmp_path, result):
    with pytest.raises(ns.NetsurgeonError, match="unknown export format"):
        ns.export(result.model, tmp_path, formats=["tflite"])


def test_model_without_provenance_is_refused(tmp_path):
    from netsurgeon.testing import TinyResNet

    with pytest.raises(ArtifactError, match="provenance"):
        ns.export(TinyResNet(), tmp_path, formats=["safetensors"])
