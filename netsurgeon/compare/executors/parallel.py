"""``--executor parallel`` (``--jobs N`` with the local executor): N child processes at a time
(``python -m netsurgeon.compare.job OUT ARM SEED``), each given one GPU (``CUDA_VISIBLE_DEVICES``) when
there are GPUs; a child's output goes to its job's ``job.log``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from queue import Queue

from netsurgeon.compare.executors.base import Grid, Job, JobFailed, JobResult, register_executor
from netsurgeon.compare.job import read_job
from netsurgeon.config import Config
from netsurgeon.errors import ConfigError

__all__ = ["ParallelExecutor", "ParallelOptions"]


@dataclass(frozen=True)
class ParallelOptions(Config):
    """How many jobs run at once (``--jobs N``)."""

    workers: int = 2

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--jobs must be at least 1, got {self.workers}.")


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA is no GPU
        return 0


@register_executor("parallel", ParallelOptions)
class ParallelExecutor:
    def __init__(self, options: ParallelOptions) -> None:
        self.options = options

    def run(self, grid: Grid) -> Iterator[JobResult]:
        workers = self.options.workers
        grid.say(f"running {len(grid.jobs)} jobs, {workers} at a time (each job's output in its job.log)")
        gpus = _gpu_count()
        slots: Queue[int] = Queue()
        for i in range(workers):
            slots.put(i)
        done: Queue[JobResult] = Queue()

        def one(job: Job) -> None:
            arm, seed = job
            slot = slots.get()
            try:
                env = dict(os.environ)
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
                log_dir = grid.job_dir(arm, seed)
                log_dir.mkdir(parents=True, exist_ok=True)
                with open(log_dir / "job.log", "a") as log:
                    proc = subprocess.run([sys.executable, "-m", "netsurgeon.compare.job", str(grid.out), arm.slug,
                                           str(seed)], env=env, stdout=log, stderr=subprocess.STDOUT)
                if proc.returncode == 0:
                    done.put((job, read_job(log_dir) or JobFailed("finished without job.json")))
                else:
                    lines = (log_dir / "job.log").read_text(errors="replace").strip().splitlines()
                    done.put((job, JobFailed(lines[-1] if lines else f"exit code {proc.returncode}")))
            finally:
                slots.put(slot)

        threads = [threading.Thread(target=one, args=(job,), daemon=True) for job in grid.jobs]
        for t in threads:
            t.start()
        for _ in grid.jobs:
            yield done.get()
