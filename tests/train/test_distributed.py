"""torchrun with two CPU processes (gloo): identical weights on both ranks, one set of output files."""

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

TENSORBOARD = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []  # events folder (log=auto)

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).parents[2]


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_two_gloo_processes_train_one_model(tmp_path):
    out, digests = tmp_path / "out", tmp_path / "digests"
    digests.mkdir()
    proc = _torchrun(str(WORKER), str(out), str(digests))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = ((digests / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert rank0 == rank1  # same weights and the same (all-reduced) test accuracy on both ranks
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "metrics.csv", "metrics.jsonl",
                                                     "model.onnx", "model.safetensors", *TENSORBOARD]
    saved = load_file(str(out / "model.safetensors"))
    digest = hashlib.sha256()
    for name, tensor in sorted(saved.items()):
        digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == rank0[0]  # rank 0 saved the unwrapped weights (no 'module.' prefix)


@pytest.mark.slow
def test_cli_under_torchrun(tmp_path):
    proc = _torchrun("-m", "netsurgeon", "finetune", "netsurgeon:tiny_resnet", "--data", "digits", "--epochs", "1",
                     "--input-size", "3,16,16", "--out", str(tmp_path), "--set", "limit_train_batches=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test top-1") == 1 and (tmp_path / "model.safetensors").exists()
