"""``compare(...)``: run the (arm, seed) grid into ``out`` and write the comparison's report.

The run owns ``out`` for its whole duration (``claim_output_dir``: a second compare into the same
directory fails at once; an unwritable one fails before any training). The first run writes
``compare-config.json`` with the data's identity (as ``finetune --resume`` checks it: the data spec, image and
class counts, the base model); a later run with the same configuration on the same data skips the finished jobs,
resumes the interrupted ones from their checkpoints and rebuilds the report; a later run with another
configuration or on other data, or over a finished job that was edited or damaged (``finished_job``), is refused
in one line that names what differs, and nothing in ``out`` is touched.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from netsurgeon.compare.executors import Executor, Grid, JobFailed, SlurmOptions, make_executor, parse_executor_options
from netsurgeon.compare.job import build_base, comparison_identity, finished_job
from netsurgeon.compare.plan import ArmPlan, check_plans, format_plans, plan_arms
from netsurgeon.compare.report import all_decided, format_table, summarize, verdict_lines, write_report
from netsurgeon.compare.spec import CONFIG_FILE, REPORT_ONLY, Arm, CompareSpec, describe_differences, with_defaults
from netsurgeon.compare.stats import seed_warning
from netsurgeon.config import PassConfig
from netsurgeon.errors import ConfigError, StatisticsWarning
from netsurgeon.progress import status
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.outputs import identity_differences
from netsurgeon.train.schema import Key
from netsurgeon.train.tracking import check_tracker, log_comparison, open_comparison

__all__ = ["CompareResult", "compare", "resolve_executor", "run_spec"]

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
    plans: list[ArmPlan] = field(default_factory=list)  # every arm's dry run (all a dry run returns)


def compare(
    model: str,
    data: str,
    arms: Sequence[ArmLike],
    seeds: int | Sequence[int] | Literal["auto"] = 3,
    finetune: FinetuneConfig | dict[str, Any] | None = None,
    *,
    out: str | Path,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
    formats: Sequence[str] = ("safetensors",),
    alpha: float = 0.05,
    margin: float | None = None,
    max_seeds: int | None = None,
    executor: str | Executor = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    executor_options: Mapping[str, Any] | Sequence[str] | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> CompareResult:
    """Fine-tune the control ("fine-tune only") and every arm from ``model`` once per seed, paired, and say
    whether each arm differs from the control (see :mod:`netsurgeon.compare`).

    Args:
        model: a model name (``torchvision:resnet18``, ``timm:NAME``, ``netsurgeon:tiny_resnet``) or an artifact.
        data: a data spec (see :mod:`netsurgeon.data`: ``digits``, ``folder:...``).
        arms: each an ordered list of passes: ``"erase-relu"``, ``"pd-relu:alpha=0.2"``, ``"erase-relu,gru-fc"``,
            or a list of pass configs. The control is always added first.
        seeds: K (seeds 0..K-1), an explicit list, or ``"auto"``: seeds 0, 1, ... in looks until every arm is
            decided or ``max_seeds`` ran (``docs/statistics.md``: alpha is split over the looks).
        alpha: the family-wise error rate of the verdicts (Holm across arms).
        margin: top-1 points: an arm whose interval lies inside ±margin is "equivalent within ±margin".
        finetune: the one fine-tune config every job uses (its ``seed`` is replaced by the job's).
        out: the comparison's directory; running the same call again resumes it.
        formats: each job's export formats (empty: checkpoint and metrics only).
        executor: a registered executor's name (``local``: ``jobs`` at a time, 1: in this process; ``parallel``;
            ``slurm``: submitit, ``slurm`` options) or an executor instance (``netsurgeon.compare.executors``).
        executor_options: the executor's options as ``key=value`` items or a mapping (``--executor-opt``).
        progress: one status line per job on stderr (which job, how many done, time left).
        dry_run: plan every arm on the base model and return the plans (``result.plans``); train and write
            nothing.
    """
    spec = CompareSpec.build(model, data, arms, seeds, finetune, checkpoint=checkpoint, pretrained=pretrained,
                             num_classes=num_classes, input_size=input_size, formats=formats, alpha=alpha,
                             margin=margin, max_seeds=max_seeds)
    if progress is False:
        spec = spec.with_runtime(progress=False)
    return run_spec(spec, out, executor=executor, jobs=jobs, slurm=slurm, executor_options=executor_options,
                    progress=progress, dry_run=dry_run)


def resolve_executor(executor: str | Executor = "local", jobs: int = 1, slurm: SlurmOptions | None = None,
                     options: Mapping[str, Any] | Sequence[str] | None = None) -> Executor:
    """The executor the options name: ``local`` with ``jobs`` > 1 is ``parallel`` (``workers=jobs``), ``slurm``
    starts from ``slurm``'s options; ``options`` (``--executor-opt key=value``) win over both."""
    if not isinstance(executor, str):
        return executor
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    values = parse_executor_options(options)
    name = "parallel" if executor == "local" and jobs > 1 else executor
    if name == "parallel" and jobs > 1:
        values.setdefault("workers", jobs)
    if name == "slurm" and slurm is not None:
        values = {**{f.name: getattr(slurm, f.name) for f in dataclasses.fields(slurm)}, **values}
    return make_executor(name, values)


def _check_existing(spec: CompareSpec, out: Path, identity: dict[str, Any]) -> None:
    path = out / CONFIG_FILE
    if path.exists():
        try:
            config = json.loads(path.read_text())
            stored = {**config["spec"], "finetune": with_defaults(config["spec"]["finetune"])}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"{path} is damaged; choose another --out.") from None
        current = {k: v for k, v in spec.to_dict().items() if k not in REPORT_ONLY}
        differ = describe_differences({k: v for k, v in stored.items() if k not in REPORT_ONLY}, current)
        if differ:
            raise ConfigError(f"{out} holds a comparison with another configuration ({'; '.join(differ)}); run the "
                              "same settings to resume it, or choose another --out.")
        recorded = config.get("identity")
        differ = identity_differences(recorded, identity) if isinstance(recorded, dict) else []  # older: unrecorded
        if differ:
            raise ConfigError(f"{out} holds a comparison on other data ({'; '.join(differ)}); its finished jobs "
                              "cannot be pooled with new ones: restore the data to resume it, or choose another --out.")
        for arm, seed in spec.jobs():  # an edited or damaged finished job: refused by name before anything runs
            finished_job(spec, out, arm, seed)
        return
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if foreign:
        raise ConfigError(f"{out} is not empty and holds no comparison ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out.")


def _write_config(spec: CompareSpec, out: Path, identity: dict[str, Any]) -> None:
    from netsurgeon.atomic import staged_files

    with staged_files([out / CONFIG_FILE]) as (temp,):
        temp.write_text(json.dumps({"spec": spec.to_dict(), "runtime": spec.runtime(), "identity": identity},
                                   indent=1) + "\n")


def _eta(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def run_spec(spec: CompareSpec, out: str | Path, *, executor: str | Executor = "local", jobs: int = 1,
             slurm: SlurmOptions | None = None, executor_options: Mapping[str, Any] | Sequence[str] | None = None,
             progress: bool = True, on_submit: Any = None, dry_run: bool = False) -> CompareResult:
    """Run a resolved :class:`CompareSpec` into ``out`` (what :func:`compare` and the CLI call): the executor is
    checked, then every arm is planned on the base model (an arm that changes nothing is refused), all before
    anything is written or trained.

    Fixed seeds: the whole grid, then the report. Adaptive seeds (``spec.max_seeds``): the grid up to each planned
    look in turn, stopping after the look at which every arm is decided (or the last look); a rerun walks the same
    looks over the finished jobs and goes on where the last run stopped."""
    from netsurgeon.atomic import claim_output_dir

    runner = resolve_executor(executor, jobs, slurm, executor_options)
    check = getattr(runner, "check", None)
    if check is not None:
        check()  # e.g. no SLURM here: one line, nothing run
    check_tracker(spec.finetune.log)  # log=wandb/mlflow without its extra: one line, before --out is touched
    out = Path(out).expanduser()
    started = time.perf_counter()
    base = build_base(spec, spec.seeds[0])  # built once: the arms' plans and the data's identity both read it
    plans = plan_arms(spec, base)
    if dry_run:
        return CompareResult({}, format_plans(plans), [], plans=plans, seconds=round(time.perf_counter() - started, 1))
    check_plans(plans)
    identity = comparison_identity(spec, base)
    with claim_output_dir(out):  # held until the report is written
        _check_existing(spec, out, identity)
        warning = None if spec.adaptive else seed_warning(len(spec.seeds), len(spec.arms) - 1, spec.alpha)
        if warning:  # before any training
            warnings.warn(warning, StatisticsWarning, stacklevel=2)
        _write_config(spec, out, identity)
        group = spec.tracking_group(out)
        open_comparison(spec.finetune.log, out, spec.finetune.wandb_project, group)  # MLflow: the jobs' parent
        looks = spec.looks()[0] if spec.adaptive else (len(spec.seeds),)
        ran: set[tuple[str, int]] = set()
        skipped: set[tuple[str, int]] = set()
        failures: list[str] = []
        for i, count in enumerate(looks):
            grid = [(arm, seed) for arm, seed in spec.jobs() if seed in spec.seeds[:count]]
            pending = [(arm, seed) for arm, seed in grid if finished_job(spec, out, arm, seed) is None]
            done_before = len(grid) - len(pending)
            if spec.adaptive:
                status(f"compare: look {i + 1} of {len(looks)}: {len(spec.arms)} arms x {count} seeds "
                       f"(at most {spec.max_seeds}) into {out}" + (f"; {done_before} jobs already finished"
                                                                  if done_before else ""), progress)
            else:
                status(f"compare: {len(spec.arms)} arms x {len(spec.seeds)} seeds = {len(grid)} jobs into {out}"
                       + (f"; {done_before} already finished" if done_before else ""), progress)
            failures += _run_jobs(spec, out, runner, pending, done_before, len(grid), progress=progress,
                                  on_submit=on_submit)
            skipped |= {(a.slug, s) for a, s in grid if (a, s) not in pending and (a.slug, s) not in ran}
            ran |= {(a.slug, s) for a, s in pending}
            if failures or (spec.adaptive and all_decided(summarize(spec, out))):
                break
        summary, files = write_report(spec, out)
        log_comparison(spec.finetune.log, out, spec.finetune.wandb_project, group, summary, files)
    table = format_table(summary)
    if failures:
        raise JobFailed(f"{len(failures)} job(s) failed ({failures[0]}); the report holds the finished ones, and "
                        "running the same command again retries the rest.")
    return CompareResult(summary, table, verdict_lines(summary), [str(f) for f in files], len(ran), len(skipped),
                         round(time.perf_counter() - started, 1), plans)


def _run_jobs(spec: CompareSpec, out: Path, runner: Executor, pending: list[tuple[Arm, int]], skipped: int,
              total: int, *, progress: bool, on_submit: Any) -> list[str]:
    """Run ``pending`` through the executor, one status line per job; returns the failures."""
    started = time.perf_counter()
    if not pending:
        return []
    order = itertools.count(skipped + 1)

    def starting(job: tuple[Arm, int]) -> None:
        status(f"[{next(order)}/{total}] {job[0].name}, seed {job[1]}: running", progress)

    results = runner.run(Grid(out, spec, pending, say=lambda line: status(line, progress), starting=starting,
                              on_submit=on_submit))
    failures = []
    for count, ((arm, seed), record) in enumerate(results, start=1):
        done = skipped + count
        left = total - done
        per_job = (time.perf_counter() - started) / count
        eta = f", about {_eta(per_job * left)} left" if left else ""
        if isinstance(record, Exception):
            failures.append(f"{arm.name} seed {seed}: {record}")
            status(f"[{done}/{total}] {arm.name}, seed {seed} FAILED: {record}", progress)
        else:
            top1 = record["final"].get(Key.TEST_TOP1)
            status(f"[{done}/{total}] {arm.name}, seed {seed} done"
                   + (f": test top-1 {top1:.2f}%" if top1 is not None else "") + eta, progress)
    return failures
