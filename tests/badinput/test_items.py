"""Issue 15's findings that are not plain refusals: each test failed before the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import netsurgeon as ns
from netsurgeon.errors import ContractViolationError, ExportError
from tests.badinput.helpers import assert_refused, cli, error_lines, read_record, tiny_state

TINY = "netsurgeon:tiny_resnet"
FAST = ("--set", "limit_train_batches=2", "--set", "batch_size=16", "--set", "limit_eval_batches=1",
        "--input-size", "3,8,8", "--format", "safetensors")


def test_1_recorded_input_size_is_the_one_used(tmp_path):
    result = cli("apply", "erase-relu", "-m", TINY, "--input-size", "3,16,16", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert read_record(tmp_path / "o" / "model.safetensors")["model"]["input_size"] == [3, 16, 16]
    import onnx

    dims = onnx.load(str(tmp_path / "o" / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [3, 16, 16]
    verified = cli("verify", tmp_path / "o")
    assert verified.exit_code == 0 and verified.stdout.strip().endswith("ok"), verified.output


def test_2_nan_outputs_fail_export(tmp_path):
    from netsurgeon.export import export

    model = ns.load_model(TINY)
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    with pytest.raises(ExportError, match="NaN or infinity"):
        export(model, tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_2_onnx_parity_never_passes_with_nan(tmp_path):
    from netsurgeon.export.onnx import Parity

    assert not Parity(float("nan"), 1.0, finite=False).ok


def test_3_allow_violation_keeps_the_result(tmp_path, monkeypatch):
    from netsurgeon.testing import MODELS
    from tests.badinput.test_corpus import _Noisy

    with pytest.raises(ContractViolationError) as info:
        ns.apply(_Noisy(), "pd-relu")
    assert info.value.result is not None and not info.value.result.report.verification.ok
    kept = ns.apply(_Noisy(), "pd-relu", allow_violation=True)
    assert not kept.report.verification.ok
    monkeypatch.setitem(MODELS, "noisy", _Noisy)
    # safetensors only: the kept class draws its noise at run time, so no ONNX export can match it
    result = cli("apply", "pd-relu", "-m", "netsurgeon:noisy", "--allow-violation", "--out", tmp_path / "o",
                 "--format", "safetensors")
    assert result.exit_code == 0 and "VIOLATED" in result.stdout
    assert (tmp_path / "o" / "model.safetensors").exists()


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_4_same_finetune_command_same_weights_from_a_name_and_from_an_artifact(tmp_path):
    runs = []
    for i in range(2):
        torch.manual_seed(100 + i)  # whatever the global RNG state before the command
        result = cli("finetune", TINY, "--data", "digits", "--out", tmp_path / f"n{i}", "--epochs", "1", *FAST)
        assert result.exit_code == 0, result.output
        runs.append(_weights(tmp_path / f"n{i}"))
    assert runs[0].keys() == runs[1].keys() and all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    art = []
    for i in range(2):
        torch.manual_seed(200 + i)
        result = cli("finetune", tmp_path / "n0", "--data", "digits", "--out", tmp_path / f"a{i}", "--epochs", "1",
                     *FAST[:-4], "--format", "safetensors")
        assert result.exit_code == 0, result.output
        art.append(_weights(tmp_path / f"a{i}"))
    assert all(torch.equal(art[0][k], art[1][k]) for k in art[0])


def test_6_a_final_file_appearing_during_the_run_is_not_replaced(tmp_path):
    from netsurgeon.atomic import staged_files

    finals = [tmp_path / "model.safetensors", tmp_path / "model.onnx"]
    with pytest.raises(ExportError, match="appeared while this run was writing"):
        with staged_files(finals, replace=False) as temps:
            for t in temps:
                t.write_text("mine")
            finals[1].write_text("theirs")  # another run finished first
    assert not finals[0].exists() and finals[1].read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_6_second_run_on_the_same_out_fails_while_the_first_holds_it(tmp_path):
    from netsurgeon.atomic import claim_output_dir

    with claim_output_dir(tmp_path / "o"):
        line = assert_refused(cli("apply", "erase-relu", "-m", TINY, "--out", tmp_path / "o"))
        assert "another netsurgeon run" in line
    assert not (tmp_path / "o").exists()  # created for the claim, empty, removed


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_7_stale_temporaries_are_removed_and_files_get_the_normal_mode(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    pid = _dead_pid()
    stale = [out / f".model.safetensors.netsurgeon-{pid}-0a1b2c3d.tmp",
             out / f".model.onnx.netsurgeon-{pid}-0a1b2c3d.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    (out / ".model.onnx.k3j4h5g6.tmp").write_bytes(b"a user's file, not provably netsurgeon's")  # kept (issue 23)
    old = os.umask(0o022)
    try:
        result = cli("apply", "erase-relu", "-m", TINY, "--out", out)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".model.onnx.k3j4h5g6.tmp", "model.onnx", "model.safetensors"]
    assert all((out / n).stat().st_mode & 0o777 == 0o644 for n in ("model.onnx", "model.safetensors"))


def test_8_unwritable_out_is_found_before_any_work(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("netsurgeon.loading.load_model", never)
    monkeypatch.setattr("netsurgeon.workflows.options.load_from_options", never)
    (tmp_path / "file").write_text("x")
    for command in (["apply", "erase-relu", "-m", TINY], ["finetune", TINY, "--data", "digits"]):
        for out in ("/proc/netsurgeon-test/out", tmp_path / "file" / "o"):
            assert_refused(cli(*command, "--out", out))


def test_9_disk_full_names_where_and_how_much(tmp_path, monkeypatch):
    import errno

    from netsurgeon.atomic import staged_files
    from netsurgeon.export import export

    with pytest.raises(OSError) as info, staged_files([tmp_path / "a.bin"], size_hint=5_000_000) as (temp,):
        raise OSError(errno.ENOSPC, "No space left on device", str(temp))
    message = str(info.value)
    assert "disk full while writing" in message and "a.bin" in message and "5.0 MB needed" in message
    assert list(tmp_path.iterdir()) == []

    def full(model, path, record):
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    import sys

    monkeypatch.setattr(sys.modules["netsurgeon.export"], "write_safetensors", full)
    with pytest.raises(ExportError, match="disk full while writing .*model.safetensors"):
        export(ns.load_model(TINY), tmp_path / "o", formats=["safetensors"])
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_14_skip_unreadable_images_leaves_them_out(tmp_path):
    from tests.badinput.test_corpus import _folder

    root = _folder(tmp_path)
    result = cli("finetune", TINY, "--data", f"folder:{root}", "--out", tmp_path / "o", "--epochs", "1",
                 "--skip-unreadable-images", *FAST)
    assert result.exit_code == 0, result.output
    assert "left out 1 unreadable image(s)" in result.stderr and "broken.png" in result.stderr


def test_20_report_and_provenance_say_where_the_weights_came_from(tmp_path):
    result = cli("apply", "erase-relu", "-m", TINY, "--out", tmp_path / "r")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].startswith("weights: RANDOM INITIALISATION")
    assert any("randomly initialised" in line for line in error_lines(result))
    assert read_record(tmp_path / "r" / "model.safetensors")["weights"] == {"source": "random-init"}
    torch.save(tiny_state(), tmp_path / "w.pt")
    result = cli("apply", "erase-relu", "-m", TINY, "-c", tmp_path / "w.pt", "--out", tmp_path / "c")
    assert result.exit_code == 0 and not error_lines(result)
    from netsurgeon.models.checkpoint import sha256_file

    digest = sha256_file(tmp_path / "w.pt")
    assert f"weights: checkpoint {tmp_path / 'w.pt'} (sha256 {digest[:16]})" in result.stdout
    weights = read_record(tmp_path / "c" / "model.safetensors")["weights"]
    assert weights == {"source": "checkpoint", "path": str(tmp_path / "w.pt"), "sha256": digest}


def test_20_pretrained_tag_is_recorded():
    from netsurgeon.models.info import ModelInfo
    from netsurgeon.models.load import _pretrained_tag, describe_weights, weights_source

    assert _pretrained_tag("torchvision", "resnet18", None) == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    info = ModelInfo(spec="torchvision:resnet18", checkpoint="pretrained:torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert weights_source(info) == {"source": "pretrained", "tag": "torchvision:ResNet18_Weights.IMAGENET1K_V1"}
    assert describe_weights(info).startswith("pretrained (torchvision:ResNet18")
