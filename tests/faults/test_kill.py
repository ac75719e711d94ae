"""kill -9 at several points of ``apply --out`` and ``finetune``: the output directory is left untouched,
complete and verifiable, or resumable to bit-identical weights, and the next run leaves no temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.badinput.helpers import cli

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).parents[2]
TINY = "netsurgeon:tiny_resnet"
TRAIN = ("finetune", TINY, "--data", "digits", "--epochs", "2", "--input-size", "3,8,8", "--format", "safetensors",
         "--set", "limit_train_batches=2", "--set", "batch_size=16", "--set", "limit_eval_batches=1",
         "--set", "progress=false")


def killed(point: str, *args: object) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(CHILD), point, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_apply_killed_while_writing_leaves_no_output_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "o"
    fast = ("--format", "safetensors")
    killed("safetensors", "apply", "erase-relu", "-m", TINY, "--out", out, *fast)
    assert not (out / "model.safetensors").exists()  # untouched
    assert temporaries(out)  # what kill -9 leaves ...
    result = cli("apply", "erase-relu", "-m", TINY, "--out", out, *fast)
    assert result.exit_code == 0, result.output
    assert temporaries(tmp_path) == []  # ... the next run removes
    assert cli("verify", out).exit_code == 0


@pytest.mark.slow
def test_apply_killed_during_onnx_parity_leaves_no_output(tmp_path):
    out = tmp_path / "o"
    killed("onnx", "apply", "erase-relu", "-m", TINY, "--out", out)
    assert not (out / "model.safetensors").exists() and not (out / "model.onnx").exists()
    assert cli("apply", "erase-relu", "-m", TINY, "--out", out).exit_code == 0
    assert temporaries(tmp_path) == [] and cli("verify", out).exit_code == 0


@pytest.mark.slow
def test_apply_killed_between_renames_leaves_a_verifiable_model(tmp_path):
    out = tmp_path / "o"
    killed("between-renames", "apply", "erase-relu", "-m", TINY, "--out", out)
    assert (out / "model.safetensors").exists() and not (out / "model.onnx").exists()
    assert cli("verify", out).exit_code == 0  # complete and verifiable on its own
    assert cli("apply", "erase-relu", "-m", TINY, "--out", out, "--overwrite").exit_code == 0
    assert temporaries(tmp_path) == [] and cli("verify", out).exit_code == 0


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("baseline")
    result = cli(*TRAIN, "--out", out)
    assert result.exit_code == 0, result.output
    return weights(out)


def _resumed_equals(out: Path, baseline: dict[str, torch.Tensor]) -> None:
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    got = weights(out)
    assert got.keys() == baseline.keys() and all(torch.equal(got[k], baseline[k]) for k in got)
    assert temporaries(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint:2", "after-checkpoint:1", "safetensors"])
def test_finetune_killed_resumes_to_identical_weights(tmp_path, baseline, point):
    """checkpoint:2 is epoch 2's checkpoint write, after-checkpoint:1 the start of epoch 2, safetensors the
    final export."""
    out = tmp_path / "o"
    killed(point, *TRAIN, "--out", out)
    assert (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()
    _resumed_equals(out, baseline)
