"""Where the jobs run: here one after another, here N at once, or on a SLURM cluster through submitit.

Every executor calls the same :func:`netsurgeon.compare.job.run_job` (``out``, arm, seed) and nothing
else, so a job gives the same result wherever it ran. Each yields the jobs as they finish so the caller
can report progress.

* ``local`` with ``jobs=1``: in this process, in order.
* ``local`` with ``jobs=N``: N child processes at a time (``python -m netsurgeon.compare.job``), each
  given one GPU (``CUDA_VISIBLE_DEVICES``) when there are GPUs; a child's output goes to its job's
  ``job.log``.
* ``slurm``: one submitit job array (``slurm_array_parallelism`` caps how many run at once), with the
  partition, time limit, GPUs and CPUs per job and extra ``#SBATCH`` parameters given. A job that SLURM
  preempts or times out is requeued by submitit (:class:`SubmititJob` is ``Checkpointable``) and resumes
  from its last epoch checkpoint; so does one requeued by hand (``scontrol requeue``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any

from netsurgeon.compare.job import run_job
from netsurgeon.compare.spec import Arm
from netsurgeon.errors import ConfigError, NetsurgeonError, TrainingInterrupted

#: how long a SLURM job waits for SLURM's SIGKILL after a SIGTERM stopped its fine-tune (KillWait is 30 s by
#: default); past it, the interruption is reported as the job's error
SIGTERM_GRACE_S = 600

__all__ = ["JobFailed", "SlurmOptions", "SubmititJob", "run_local", "run_parallel", "run_slurm"]

Job = tuple[Arm, int]


class JobFailed(NetsurgeonError, RuntimeError):
    """A job of the comparison failed (the others went on)."""


@dataclass(frozen=True)
class SlurmOptions:
    """The SLURM side of ``--executor slurm`` (submitit's parameter names in brackets)."""

    partition: str | None = None  # [slurm_partition]
    time_min: int = 60  # [timeout_min] the time limit of one job, minutes
    gpus_per_job: int = 0  # [gpus_per_node]
    cpus_per_job: int = 2  # [cpus_per_task]
    max_concurrent: int = 8  # [slurm_array_parallelism]
    sbatch: dict[str, str] = field(default_factory=dict)  # [slurm_additional_parameters] e.g. {"qos": "low"}
    cluster: str | None = None  # None: SLURM; "local" or "debug": submitit's local executors (tests)
    poll_s: float = 5.0

    def validate(self) -> None:
        for name in ("time_min", "max_concurrent", "cpus_per_job"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.gpus_per_job < 0:
            raise ConfigError(f"--gpus-per-job must be 0 or more, got {self.gpus_per_job}.")


def run_local(out: Path, jobs: Sequence[Job]) -> Iterator[tuple[Job, dict[str, Any] | Exception]]:
    for arm, seed in jobs:
        yield (arm, seed), run_job(out, arm.slug, seed)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA is no GPU
        return 0


def run_parallel(out: Path, jobs: Sequence[Job], workers: int,
                 job_dir: Any) -> Iterator[tuple[Job, dict[str, Any] | Exception]]:
    """``workers`` child processes at a time, one GPU each when there are GPUs."""
    gpus = _gpu_count()
    slots: Queue[int] = Queue()
    for i in range(workers):
        slots.put(i)
    done: Queue[tuple[Job, dict[str, Any] | Exception]] = Queue()

    def one(job: Job) -> None:
        arm, seed = job
        slot = slots.get()
        try:
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            log_dir = job_dir(arm, seed)
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / "job.log", "a") as log:
                proc = subprocess.run([sys.executable, "-m", "netsurgeon.compare.job", str(out), arm.slug, str(seed)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode == 0:
                from netsurgeon.compare.job import read_job

                done.put((job, read_job(log_dir) or JobFailed("finished without job.json")))
            else:
                lines = (log_dir / "job.log").read_text(errors="replace").strip().splitlines()
                done.put((job, JobFailed(lines[-1] if lines else f"exit code {proc.returncode}")))
        finally:
            slots.put(slot)

    threads = [threading.Thread(target=one, args=(job,), daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for _ in jobs:
        yield done.get()


class SubmititJob:
    """What submitit runs on a node: :func:`run_job`, requeued on preemption or timeout (``checkpoint``)."""

    def __call__(self, out: str, slug: str, seed: int) -> dict[str, Any]:
        try:
            return run_job(out, slug, seed)
        except TrainingInterrupted:
            if "SLURM_JOB_ID" not in os.environ:
                raise
            # SLURM sends SIGTERM before it ends a job (``scontrol requeue``, ``scancel``, the time limit) and
            # SIGKILL after KillWait; finetune has saved a checkpoint at the running batch. Returning or raising
            # now would record the job as finished or failed although SLURM requeues it, so wait for the
            # kill, as submitit itself does with SIGTERM (bounded: a stray SIGTERM alone re-raises)
            print("netsurgeon: checkpoint saved after SIGTERM; waiting for SLURM to end or requeue this job",
                  file=sys.stderr, flush=True)
            time.sleep(SIGTERM_GRACE_S)
            raise

    def checkpoint(self, out: str, slug: str, seed: int) -> Any:
        """Called by submitit on SIGUSR1 (preemption, time limit): requeue the same call; the job then
        resumes from its last epoch checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititJob(), out, slug, seed)


def run_slurm(out: Path, jobs: Sequence[Job], options: SlurmOptions,
              on_submit: Any = None) -> Iterator[tuple[Job, dict[str, Any] | Exception]]:
    """One submitit job array; yields the jobs as they finish."""
    if not jobs:
        return
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install 'netsurgeon[slurm]'.") from None
    options.validate()
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=options.cluster)
    params: dict[str, Any] = {"timeout_min": options.time_min, "name": "netsurgeon-compare",
                              "cpus_per_task": options.cpus_per_job, "slurm_array_parallelism": options.max_concurrent}
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.sbatch:
        params["slurm_additional_parameters"] = dict(options.sbatch)
    executor.update_parameters(**params)
    with executor.batch():
        submitted = [executor.submit(SubmititJob(), str(out), arm.slug, seed) for arm, seed in jobs]
    by_id = {id(j): job for j, job in zip(submitted, jobs, strict=True)}
    if on_submit is not None:
        on_submit([j.job_id for j in submitted])
    for finished in submitit.helpers.as_completed(submitted, poll_frequency=options.poll_s):
        try:
            yield by_id[id(finished)], finished.result()
        except Exception as err:  # noqa: BLE001 - submitit wraps the job's error
            text = str(err).strip().splitlines()
            yield by_id[id(finished)], JobFailed(text[-1] if text else type(err).__name__)
