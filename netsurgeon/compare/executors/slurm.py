"""``--executor slurm``: one submitit job array on a SLURM cluster.

``slurm_array_parallelism`` caps how many run at once; the partition, time limit, GPUs and CPUs per job and
extra ``#SBATCH`` parameters are :class:`SlurmOptions`. A job that SLURM preempts or times out is requeued by
submitit (:class:`SubmititJob` is ``Checkpointable``) and resumes from its last epoch checkpoint; so does one
requeued by hand (``scontrol requeue``). Asked for SLURM on a machine without it (no ``sbatch``), the run is
refused in one line before anything runs: submitit would quietly run the jobs here instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netsurgeon.compare.executors.base import Grid, JobFailed, JobResult, register_executor
from netsurgeon.compare.job import run_job
from netsurgeon.config import Config
from netsurgeon.errors import ConfigError, TrainingInterrupted

__all__ = ["SIGTERM_GRACE_S", "SlurmExecutor", "SlurmOptions", "SubmititJob"]

#: how long a SLURM job waits for SLURM's SIGKILL after a SIGTERM stopped its fine-tune (KillWait is 30 s by
#: default); past it, the interruption is reported as the job's error
SIGTERM_GRACE_S = 600


@dataclass(frozen=True)
class SlurmOptions(Config):
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
        if self.cluster not in (None, "slurm", "local", "debug"):
            raise ConfigError(f"cluster must be slurm, local or debug (submitit's), got {self.cluster!r}.")


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


def _no_slurm(why: str) -> ConfigError:
    return ConfigError(f"--executor slurm: there is no SLURM on this machine ({why}); run compare on a SLURM login "
                       "node, or use --executor local (--jobs N runs N at once here). Nothing was run.")


def _submitit_cluster() -> str:
    """The cluster submitit's AutoExecutor would pick here (it picks SLURM when ``srun`` is on PATH)."""
    import submitit

    try:
        return submitit.AutoExecutor.which()
    except RuntimeError:
        return "none"


@register_executor("slurm", SlurmOptions)
class SlurmExecutor:
    def __init__(self, options: SlurmOptions) -> None:
        self.options = options

    def check(self) -> None:
        """Before anything is written or run: submitit is installed, and SLURM is here when it is asked for."""
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError("--executor slurm needs submitit: pip install 'netsurgeon[slurm]'.") from None
        if self.options.cluster in (None, "slurm"):
            missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
            if missing:
                raise _no_slurm(f"no {' or '.join(missing)} on PATH")
            if _submitit_cluster() != "slurm":
                raise _no_slurm(f"submitit would run the jobs with its {_submitit_cluster()} executor")

    def run(self, grid: Grid) -> Iterator[JobResult]:
        """One submitit job array; yields the jobs as they finish."""
        if not grid.jobs:
            return
        self.check()
        import submitit

        options = self.options
        executor = submitit.AutoExecutor(folder=grid.out / "slurm" / "%j", cluster=options.cluster)
        if options.cluster in (None, "slurm") and executor.cluster != "slurm":  # submitit fell back to local
            raise _no_slurm(f"submitit picked its {executor.cluster} executor")
        params: dict[str, Any] = {"timeout_min": options.time_min, "name": "netsurgeon-compare",
                                  "cpus_per_task": options.cpus_per_job,
                                  "slurm_array_parallelism": options.max_concurrent}
        if options.gpus_per_job:
            params["gpus_per_node"] = options.gpus_per_job
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.sbatch:
            params["slurm_additional_parameters"] = dict(options.sbatch)
        executor.update_parameters(**params)
        with executor.batch():
            submitted = [executor.submit(SubmititJob(), str(grid.out), arm.slug, seed) for arm, seed in grid.jobs]
        by_id = {id(j): job for j, job in zip(submitted, grid.jobs, strict=True)}
        ids = [j.job_id for j in submitted]
        where = "SLURM" if executor.cluster == "slurm" else f"submitit's {executor.cluster} executor"
        grid.say(f"submitted {len(ids)} jobs to {where} ({ids[0].split('_')[0] if ids else '-'}); their logs are in "
                 f"{grid.out / 'slurm'}")
        if grid.on_submit is not None:
            grid.on_submit(ids)
        for finished in submitit.helpers.as_completed(submitted, poll_frequency=options.poll_s):
            try:
                yield by_id[id(finished)], finished.result()
            except Exception as err:  # noqa: BLE001 - submitit wraps the job's error
                text = str(err).strip().splitlines()
                yield by_id[id(finished)], JobFailed(text[-1] if text else type(err).__name__)
