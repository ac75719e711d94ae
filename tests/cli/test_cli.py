"""The CLI through typer's CliRunner: output, exit codes, and one-line errors that leave nothing behind."""

import json

import pytest
import torch
from typer.testing import CliRunner

from netsurgeon.cli import app

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("passes", "inspect", "apply", "verify"):
        assert command in result.output


def test_passes_lists_erase_relu_with_parameters():
    result = run("passes", "--json")
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert result.exit_code == 0 and rows["erase-relu"]["parameters"]["proportion"] == 1.0


def test_passes_describes_one_pass_in_full():
    result = run("passes", "spinal-head")
    assert result.exit_code == 0, result.output
    assert "variant: choice = 'progressive'  one of: 'progressive', 'spinal'" in result.stdout
    assert "Hidden width w (default 64 when D <= 1024, else 256)." in result.stdout
    rows = json.loads(run("passes", "spinal-head", "--json").stdout)
    field = next(f for f in rows[0]["fields"] if f["name"] == "width")
    assert field == {"name": "width", "type": "int | None", "default": None, "allowed": None,
                     "help": "Hidden width w (default 64 when D <= 1024, else 256)."}
    assert "unknown pass 'spinal'" in _error(run("passes", "spinal"))


def test_inspect_shows_sites_blocks_head_and_rung():
    result = run("inspect", "--model", "netsurgeon:tiny_resnet", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["rung"] == "fx" and len(data["sites"]) == 7
    assert [b["name"] for b in data["blocks"]] == ["layer1", "layer2", "layer3"] and data["head"]["target"] == "fc"


def test_dry_run_prints_plan_and_writes_nothing(tmp_path):
    result = run("apply", "erase-relu", "--model", "netsurgeon:tiny_resnet", "--dry-run", "--out", tmp_path / "o")
    assert result.exit_code == 0 and "layer1.relu@1" in result.output and "dry run" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("pass_name", ["pd-relu", "gru-fc"])  # shares the loaded weights / clones them
def test_dry_run_is_a_plan_of_every_kind_of_pass(pass_name):
    result = run("apply", pass_name, "--model", "netsurgeon:tiny_resnet", "--dry-run", "--json")
    report = json.loads(result.stdout)["report"]
    assert result.exit_code == 0 and report["dry_run"] and report["verification"] is None
    assert report["passes"][0]["changes"]


def test_apply_set_options_reach_the_pass():
    result = run("apply", "erase-relu", "-m", "netsurgeon:tiny_convnet", "--set", "proportion=0.5", "--json")
    report = json.loads(result.stdout)["report"]
    assert result.exit_code == 0 and report["passes"][0]["config"]["proportion"] == 0.5
    assert (report["relu_sites_before"], report["relu_sites_after"]) == (6, 5)


@pytest.mark.parametrize(("spec", "sites"), [
    pytest.param("torchvision:resnet50", "49 -> 33", marks=pytest.mark.slow),
    pytest.param("timm:resnet50", "49 -> 33", marks=pytest.mark.slow),
    ("torchvision:resnet18", "17 -> 9"),  # the default run's stand-ins: same families, same path
    ("timm:resnet18", "17 -> 9"),
])
def test_acceptance_resnet50_apply_export_verify(tmp_path, spec, sites):
    out = tmp_path / "out"
    result = run("apply", "erase-relu", "--model", spec, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"ReLU sites        {sites}" in result.output
    assert (out / "model.safetensors").exists() and (out / "model.onnx").exists()
    verified = run("verify", out)
    assert verified.exit_code == 0 and "ok" in verified.output


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    return lines[0]


def test_unknown_model():
    assert "Did you mean 'resnet50'" in _error(run("apply", "erase-relu", "--model", "resnt50"))


def test_unknown_pass():
    assert "netsurgeon passes" in _error(run("apply", "erase-rleu", "--model", "netsurgeon:tiny_resnet"))


def test_unknown_set_key_and_bad_value():
    assert "Did you mean 'proportion'" in _error(
        run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--set", "proportoin=1"))
    assert "proportion" in _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--set", "proportion=2"))
    assert "key=value" in _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--set", "proportion"))


def test_checkpoint_errors(tmp_path):
    missing = _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "-c", tmp_path / "x.pth"))
    assert "not found" in missing
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage")
    assert "bad.pth" in _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "-c", bad))
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(1)}, wrong)
    assert "missing" in _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "-c", wrong))


def test_untraceable_model(tmp_path):
    msg = _error(run("apply", "erase-relu", "-m", "netsurgeon:untraceable", "--out", tmp_path / "o"))
    assert "cannot be traced" in msg and not (tmp_path / "o").exists()


def test_output_that_would_overwrite_the_input(tmp_path):
    out = tmp_path / "o"
    first = run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--out", out, "--format", "safetensors")
    assert first.exit_code == 0
    before = (out / "model.safetensors").read_bytes()
    msg = _error(run("apply", "erase-relu", "-m", out, "--allow-reapply", "--out", out, "--overwrite",
                     "--format", "safetensors"))
    assert "is an input" in msg and (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]


def test_bad_format_and_input_size():
    assert "--format" in _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--format", "tflite"))
    assert "C,H,W" in _error(run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--input-size", "32"))


def test_verify_of_a_non_artifact(tmp_path):
    assert "not found" in _error(run("verify", tmp_path))


def test_debug_env_shows_the_traceback():
    result = run("apply", "erase-relu", "--model", "resnt50", env={"NETSURGEON_DEBUG": "1"})
    assert result.exit_code == 1 and result.exception is not None and "error:" not in result.output


def test_no_effect_is_a_warning_not_an_error():
    result = run("apply", "erase-relu", "-m", "netsurgeon:tiny_resnet", "--set", "proportion=0", "--dry-run")
    assert result.exit_code == 0 and "warning:" in result.output and "changed nothing" in result.output


def test_finetune_trains_exports_and_resumes(tmp_path):
    args = ("finetune", "netsurgeon:tiny_resnet", "--data", "digits", "--epochs", "1", "--input-size", "3,16,16",
            "--out", tmp_path, "--set", "limit_train_batches=3", "--set", "batch_size=32", "--format", "safetensors")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["epoch"] for r in payload["metrics"]] == [0, 1]
    assert str(tmp_path / "model.safetensors") in payload["files"]
    assert "already holds a run" in _error(run(*args))  # nothing overwritten without --resume/--overwrite
    resumed = run(*args, "--resume")  # already complete: resumes at the end, re-exports, same table
    assert resumed.exit_code == 0 and "test top-1" in resumed.stdout


def test_finetune_errors_are_one_line(tmp_path):
    assert "image folder /nope does not exist" in _error(
        run("finetune", "netsurgeon:tiny_resnet", "--data", "folder:/nope", "--out", tmp_path))
    assert "outputs 5 classes but the data has 10" in _error(
        run("finetune", "netsurgeon:tiny_resnet", "--data", "digits", "--num-classes", "5", "--input-size", "3,8,8",
            "--out", tmp_path))
    assert "Did you mean 'epochs'" in _error(
        run("finetune", "netsurgeon:tiny_resnet", "--data", "digits", "--set", "epoch=2", "--out", tmp_path))
    assert not any(tmp_path.iterdir())


def test_demo_shortened_prints_the_table(tmp_path):
    result = run("demo", "--model", "netsurgeon:tiny_resnet", "--input-size", "3,16,16", "--baseline-epochs", "1",
                 "--epochs", "1", "--train-batches", "2", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    rows = {r["variant"]: r for r in payload["rows"]}
    assert list(rows) == ["fine-tune only", "erase-relu", "proportional-relu", "pd-relu", "spinal-head", "gru-fc"]
    assert rows["pd-relu"]["top1_after_surgery"] == rows["fine-tune only"]["top1_after_surgery"]  # exact pass
    assert rows["spinal-head"]["params_delta"] > 0 and rows["erase-relu"]["sites_changed"] > 0
    assert all(r["reload_max_abs_diff"] == 0 and r["onnx_max_abs_diff"] < 1e-4 for r in rows.values())
    written = {p.name for p in tmp_path.iterdir()}
    assert {"results.md", "results.json", "curves.png", "baseline", "compare"} <= written
    assert (tmp_path / "compare" / "jobs" / "erase-relu" / "seed-0" / "model.onnx").exists()  # one compare job each
    assert "| erase-relu |" in (tmp_path / "compare" / "compare.md").read_text()
    assert "| gru-fc |" in (tmp_path / "results.md").read_text()
