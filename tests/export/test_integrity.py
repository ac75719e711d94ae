"""Issue 23: the artifact records its dtype and a digest of its tensor data, and reloads in that dtype."""

from __future__ import annotations

import pytest
import torch

import netsurgeon as ns
from netsurgeon.export import export, verify_artifact
from tests.badinput.helpers import read_record

TINY = "netsurgeon:tiny_resnet"


def test_14_a_half_model_exports_and_reloads_as_half(tmp_path):
    torch.manual_seed(0)
    model = ns.apply(ns.load_model(TINY, input_size=(3, 8, 8)), "erase-relu").model.half()
    export(model, tmp_path / "o", formats=["safetensors"])
    record = read_record(tmp_path / "o" / "model.safetensors")
    assert record["tensors"]["dtype"] == "float16"
    again = ns.load_model(tmp_path / "o")
    floats = [t for t in again.state_dict().values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert verify_artifact(tmp_path / "o").ok


def test_25_the_digest_is_recorded_and_checked(tmp_path):
    from safetensors.torch import load_file

    from netsurgeon.export.artifact import tensor_digest

    model = ns.load_model(TINY, input_size=(3, 8, 8))
    export(model, tmp_path / "o", formats=["safetensors"])
    record = read_record(tmp_path / "o" / "model.safetensors")
    tensors = load_file(str(tmp_path / "o" / "model.safetensors"))
    assert record["tensors"]["sha256"] == tensor_digest(tensors) and record["tensors"]["count"] == len(tensors)
    result = verify_artifact(tmp_path / "o")
    assert any("sha256" in m for m in result.messages)
    tensors["fc.bias"] = tensors["fc.bias"] + 1e-3
    assert tensor_digest(tensors) != record["tensors"]["sha256"]


def test_23_half_model_with_onnx_is_refused_before_writing(tmp_path):
    from netsurgeon.errors import ExportError

    model = ns.load_model(TINY, input_size=(3, 8, 8)).half()
    with pytest.raises(ExportError, match="needs a float32 model"):
        export(model, tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_an_artifact_from_before_the_digest_still_loads_and_verify_says_it_is_unchecked(tmp_path):
    from safetensors.torch import load_file

    from tests.badinput.helpers import write_artifact

    model = ns.load_model(TINY, input_size=(3, 8, 8))
    export(model, tmp_path / "o", formats=["safetensors"])
    record = read_record(tmp_path / "o" / "model.safetensors")
    del record["tensors"]
    old = write_artifact(tmp_path / "old" / "model.safetensors", record, load_file(str(tmp_path / "o" /
                                                                                      "model.safetensors")))
    assert all(torch.equal(a, b) for a, b in zip(ns.load_model(old).state_dict().values(),
                                                   model.state_dict().values(), strict=True))
    assert any("no tensor digest" in m for m in verify_artifact(old).messages)
