"""``compare --executor slurm`` against a real one-node SLURM (Debian's slurm-wlm and munge, started by
scripts/slurm-single-node.sh), with one job preempted the way SLURM preempts (USR2: submitit checkpoints
and requeues it) and one requeued by hand (scontrol requeue): both resume from their epoch checkpoint,
and the table equals the local executor's."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from netsurgeon.compare import SlurmOptions, compare

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "slurm-single-node.sh"
TUNE = {"epochs": 5, "batch_size": 32, "limit_eval_batches": 4, "lr": 0.05, "progress": False}


def grid(out: Path, **kwargs):
    return compare("netsurgeon:tiny_resnet", "digits", ["erase-relu"], 2, TUNE, out=out, input_size=(3, 32, 32),
                   **kwargs)


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the single-node SLURM needs root and apt-get (Debian/Ubuntu)")
    started = subprocess.run(["sh", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.skip(f"could not start SLURM: {(started.stderr or started.stdout).strip().splitlines()[-1:]}")
    yield
    subprocess.run(["sh", str(SCRIPT), "stop"], capture_output=True, timeout=60)


def _wait_for(path: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.1)


@pytest.mark.slow
def test_real_slurm_with_a_preempted_and_a_requeued_job_gives_the_local_table(slurm, tmp_path):
    local = grid(tmp_path / "local")
    out = tmp_path / "slurm"
    actions: list[str] = []

    def interfere(job_ids: list[str]) -> None:  # job ids in grid order: control seed 0, erase-relu seed 0, ...
        def preempt() -> None:
            _wait_for(out / "jobs" / "control" / "seed-0" / "checkpoint.pt")
            # preemption as SLURM does it (what submitit's own Job._interrupt sends): submitit checkpoints and
            # requeues. scancel keeps retrying once the job is requeued ("can not be altered now"): don't wait
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(["scancel", "--signal=USR2", job_ids[0]], capture_output=True, timeout=5)
            actions.append(f"USR2 {job_ids[0]}")

        def requeue() -> None:  # requeued by hand: SIGTERM (finetune saves at the batch), then SIGKILL
            _wait_for(out / "jobs" / "erase-relu" / "seed-0" / "checkpoint.pt")
            subprocess.run(["scontrol", "requeue", job_ids[1]], check=True)
            actions.append(f"requeue {job_ids[1]}")

        for target in (preempt, requeue):
            threading.Thread(target=target, daemon=True).start()

    from netsurgeon.compare.run import run_spec
    from netsurgeon.compare.spec import CompareSpec

    spec = CompareSpec.build("netsurgeon:tiny_resnet", "digits", ["erase-relu"], 2, TUNE, input_size=(3, 32, 32))
    result = run_spec(spec, out, executor="slurm", on_submit=interfere, progress=False,
                      slurm=SlurmOptions(time_min=30, cpus_per_job=1, max_concurrent=2, poll_s=1))
    assert len(actions) == 2, actions
    jobs = {f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text()) for p in out.glob("jobs/*/*/job.json")}
    assert jobs["control/seed-0"]["resumed"] and jobs["erase-relu/seed-0"]["resumed"]
    assert result.table == local.table
    assert (out / "compare.md").read_text() == (tmp_path / "local" / "compare.md").read_text()
