"""SIGTERM (what SLURM, Kubernetes and torchrun send before killing) during ``finetune``: the run finishes its
batch, saves a checkpoint and exits with the resume hint; resuming gives the same weights as an
uninterrupted run. Plain runs and a 2-process torchrun (gloo, CPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.badinput.helpers import cli
from tests.faults.helpers import CHILD, ROOT, TRAIN, child_env, run_child, same_weights, temporaries, weights

INTERRUPTED = 130  # TrainingInterrupted's exit code


def terminated(point: str, *args: object) -> subprocess.CompletedProcess:
    # the child computes with as many threads as this process, whose in-process runs (the baseline, the resume)
    # it is compared with bit for bit: another thread count sums in another order
    proc = run_child(point, *args, OMP_NUM_THREADS=str(torch.get_num_threads()))
    assert proc.returncode == INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    assert "terminated (SIGTERM)" in proc.stderr and "continue with --resume" in proc.stderr, proc.stderr[-2000:]
    return proc


@pytest.mark.parametrize("point", ["sigterm-train:1", "sigterm-checkpoint:1"])
def test_sigterm_saves_a_checkpoint_that_resumes_to_identical_weights(tmp_path, baseline, point):
    """sigterm-train:1 arrives in epoch 1's first batch, sigterm-checkpoint:1 while epoch 1's checkpoint is
    written (the run stops after epoch 2's first batch)."""
    out = tmp_path / "o"
    proc = terminated(point, *TRAIN, "--out", out)
    expected = "epoch 1, after batch 1" if point == "sigterm-train:1" else "epoch 2, after batch 1"
    assert expected in proc.stderr, proc.stderr[-1000:]
    assert (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(out), baseline) and temporaries(out) == []


def _torchrun(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = child_env(**{"OMP_NUM_THREADS": "1", **(env or {})})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


DDP_TRAIN = TRAIN


@pytest.fixture(scope="module")
def ddp_baseline(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("ddp-baseline")
    proc = _torchrun("-m", "netsurgeon", *DDP_TRAIN, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return weights(out)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["sigterm-parent-train:2", "sigterm-train:2", "sigterm-checkpoint:1"])
def test_sigterm_under_torchrun_stops_every_rank_and_resumes(tmp_path, ddp_baseline, point):
    """sigterm-parent-train: rank 1 sends it to the torchrun agent, which forwards it to both ranks;
    sigterm-train and sigterm-checkpoint: only one rank gets it (rank 1 in training, rank 0 while it writes the
    checkpoint), and the other stops at the same batch."""
    out = tmp_path / "o"
    env = {"FAULT_RANK": "0" if point.startswith("sigterm-checkpoint") else "1"}
    proc = _torchrun(CHILD, point, *DDP_TRAIN, "--out", out, env=env)
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert proc.stderr.count("continue with --resume") == 2, proc.stderr[-3000:]  # both ranks stopped, saying so
    assert (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()
    resumed = _torchrun("-m", "netsurgeon", *DDP_TRAIN, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert same_weights(weights(out), ddp_baseline) and temporaries(out) == []
