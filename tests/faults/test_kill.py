"""kill -9 at several points of ``apply --out`` and ``finetune``: the output directory is left untouched,
complete and verifiable, or resumable to bit-identical weights, and the next run leaves no temporaries."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from tests.badinput.helpers import cli
from tests.faults.helpers import TINY, TRAIN, run_child, same_weights, temporaries, weights


def killed(point: str, *args: object) -> None:
    proc = run_child(point, *args)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


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


def _resumed_equals(out: Path, baseline: dict[str, torch.Tensor]) -> None:
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(out), baseline)
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
