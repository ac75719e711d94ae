"""Shared by the fault tests: the fault-injecting child (``child.py``), the tiny fine-tuning run it interrupts,
and what a test reads back from an output directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).parents[2]
TINY = "netsurgeon:tiny_resnet"
TRAIN = ("finetune", TINY, "--data", "digits", "--epochs", "2", "--input-size", "3,8,8", "--format", "safetensors",
         "--set", "limit_train_batches=2", "--set", "batch_size=16", "--set", "limit_eval_batches=1",
         "--set", "progress=false")


def child_env(**extra: str) -> dict[str, str]:
    """A child process's environment: this one's, with this checkout's netsurgeon first, and ``extra``."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def run_child(point: str, *args: object, new_session: bool = False, **env: str) -> subprocess.CompletedProcess:
    """``child.py POINT ARGS...``: the CLI with ``args``, killed or sent a signal at ``point`` (``new_session``:
    in a process group of its own, for a signal to the whole group)."""
    return subprocess.run([sys.executable, str(CHILD), point, *map(str, args)], env=child_env(**env),
                          capture_output=True, text=True, timeout=300, start_new_session=new_session)


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
