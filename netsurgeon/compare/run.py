"""``compare(...)``: run the (arm, seed) grid into ``out`` and write the comparison's report.

The run owns ``out`` for its whole duration (``claim_output_dir``: a second compare into the same
directory fails at once; an unwritable one fails before any training). The first run writes
``compare-config.json``; a later run with the same configuration skips the finished jobs, resumes the
interrupted ones from their checkpoints and rebuilds the report; a later run with another configuration
is refused in one line that names what differs, and nothing in ``out`` is touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from netsurgeon.compare.executors import JobFailed, SlurmOptions, run_local, run_parallel, run_slurm
from netsurgeon.compare.job import read_job
from netsurgeon.compare.report import format_table, verdict_lines, write_report
from netsurgeon.compare.spec import CONFIG_FILE, Arm, CompareSpec, describe_differences
from netsurgeon.config import PassConfig
from netsurgeon.errors import ConfigError
from netsurgeon.progress import status
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.tracking import check_tracker, log_comparison, open_comparison

__all__ = ["CompareResult", "compare", "run_spec"]

ArmLike = str | Sequence[PassConfig] | Arm


@dataclass
class CompareResult:
    """The summary (what ``compare.json`` holds), the table, the verdict lines and the files written."""

    summary: dict[str, Any]
    table: str
    verdicts: list[str]
    files: list[str] = field(default_factory=list)
    ran: int = 0  # jobs run (or resumed) by this call
    skipped: int = 0  # jobs already finished
    seconds: float = 0.0


def compare(
    model: str,
    data: str,
    arms: Sequence[ArmLike],
    seeds: int | Sequence[int] = 3,
    finetune: FinetuneConfig | dict[str, Any] | None = None,
    *,
    out: str | Path,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
    formats: Sequence[str] = ("safetensors",),
    alpha: float = 0.05,
    executor: Literal["local", "slurm"] = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    progress: bool = True,
) -> CompareResult:
    """Fine-tune the control ("fine-tune only") and every arm from ``model`` once per seed, paired, and say
    whether each arm differs from the control (see :mod:`netsurgeon.compare`).

    Args:
        model: a model name (``torchvision:resnet18``, ``timm:NAME``, ``netsurgeon:tiny_resnet``) or an artifact.
        data: a data spec (``digits``, ``fashion-mnist[:DIR]``, ``folder:DIR``, ``torchvision:NAME:ROOT``).
        arms: each an ordered list of passes: ``"erase-relu"``, ``"pd-relu:alpha=0.2"``, ``"erase-relu,gru-fc"``,
            or a list of pass configs. The control is always added first.
        seeds: K (seeds 0..K-1) or an explicit list.
        finetune: the one fine-tune config every job uses (its ``seed`` is replaced by the job's).
        out: the comparison's directory; running the same call again resumes it.
        formats: each job's export formats (empty: checkpoint and metrics only).
        executor: ``local`` (``jobs`` at a time; 1: in this process) or ``slurm`` (submitit, ``slurm`` options).
        progress: one status line per job on stderr (which job, how many done, time left).
    """
    spec = CompareSpec.build(model, data, arms, seeds, finetune, checkpoint=checkpoint, pretrained=pretrained,
                             num_classes=num_classes, input_size=input_size, formats=formats, alpha=alpha)
    if progress is False:
        spec = spec.with_runtime(progress=False)
    return run_spec(spec, out, executor=executor, jobs=jobs, slurm=slurm, progress=progress)


def _check_existing(spec: CompareSpec, out: Path) -> None:
    path = out / CONFIG_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())["spec"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} is damaged; choose another --out.") from None
        differ = describe_differences(stored, spec.to_dict())
        if differ:
            raise ConfigError(f"{out} holds a comparison with another configuration ({'; '.join(differ)}); run the "
                              "same settings to resume it, or choose another --out.")
        return
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if foreign:
        raise ConfigError(f"{out} is not empty and holds no comparison ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out.")


def _write_config(spec: CompareSpec, out: Path) -> None:
    from netsurgeon.export.atomic import staged_files

    with staged_files([out / CONFIG_FILE]) as (temp,):
        temp.write_text(json.dumps({"spec": spec.to_dict(), "runtime": spec.runtime()}, indent=1) + "\n")


def _eta(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def run_spec(spec: CompareSpec, out: str | Path, *, executor: str = "local", jobs: int = 1,
             slurm: SlurmOptions | None = None, progress: bool = True, on_submit: Any = None) -> CompareResult:
    """Run a resolved :class:`CompareSpec` into ``out`` (what :func:`compare` and the CLI call)."""
    from netsurgeon.export.atomic import claim_output_dir

    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor must be local or slurm, got {executor!r}.")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    check_tracker(spec.finetune.log)  # log=wandb/mlflow without its extra: one line, before --out is touched
    out = Path(out).expanduser()
    started = time.perf_counter()
    with claim_output_dir(out):  # held until the report is written
        _check_existing(spec, out)
        _write_config(spec, out)
        group = spec.tracking_group(out)
        open_comparison(spec.finetune.log, out, spec.finetune.wandb_project, group)  # MLflow: the jobs' parent
        grid = spec.jobs()
        pending = [(arm, seed) for arm, seed in grid if read_job(spec.job_dir(out, arm, seed)) is None]
        skipped = len(grid) - len(pending)
        status(f"compare: {len(spec.arms)} arms x {len(spec.seeds)} seeds = {len(grid)} jobs into {out}"
               + (f"; {skipped} already finished" if skipped else ""), progress)
        if executor == "slurm":
            def submitted(ids: list[str]) -> None:
                status(f"submitted {len(ids)} jobs to SLURM ({ids[0].split('_')[0] if ids else '-'}); their logs are "
                       f"in {out / 'slurm'}", progress)
                if on_submit is not None:
                    on_submit(ids)

            results = run_slurm(out, pending, slurm or SlurmOptions(), on_submit=submitted)
        elif jobs > 1:
            status(f"running {len(pending)} jobs, {jobs} at a time (each job's output in its job.log)", progress)
            results = run_parallel(out, pending, jobs, lambda arm, seed: spec.job_dir(out, arm, seed))
        else:
            results = _announced(run_local(out, pending), pending, skipped, len(grid), progress, started)
        failures = []
        for count, ((arm, seed), record) in enumerate(results, start=1):
            done = skipped + count
            left = len(grid) - done
            per_job = (time.perf_counter() - started) / count
            eta = f", about {_eta(per_job * left)} left" if left else ""
            if isinstance(record, Exception):
                failures.append(f"{arm.name} seed {seed}: {record}")
                status(f"[{done}/{len(grid)}] {arm.name}, seed {seed} FAILED: {record}", progress)
            else:
                top1 = record["final"].get("test_top1")
                status(f"[{done}/{len(grid)}] {arm.name}, seed {seed} done"
                       + (f": test top-1 {top1:.2f}%" if top1 is not None else "") + eta, progress)
        summary, files = write_report(spec, out)
        log_comparison(spec.finetune.log, out, spec.finetune.wandb_project, group, summary, files)
    table = format_table(summary)
    if failures:
        raise JobFailed(f"{len(failures)} job(s) failed ({failures[0]}); the report holds the finished ones, and "
                        "running the same command again retries the rest.")
    return CompareResult(summary, table, verdict_lines(summary), [str(f) for f in files], len(pending), skipped,
                         round(time.perf_counter() - started, 1))


def _announced(results, pending: list, skipped: int, total: int, progress: bool, started: float):
    """Sequential jobs: say which one starts before it runs."""
    iterator = iter(results)
    for i, (arm, seed) in enumerate(pending):
        status(f"[{skipped + i + 1}/{total}] {arm.name}, seed {seed}: running", progress)
        yield next(iterator)
