"""``netsurgeon compare --model MODEL --data D --arm A [--arm B ...] --seeds K --out DIR``: did the surgery help?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import (
    CheckpointOpt,
    InputSizeOpt,
    JsonOpt,
    ModelArg,
    NumClassesOpt,
    OptionalModelOpt,
    PretrainedOpt,
    one_model,
    reports_errors,
)
from netsurgeon.compare import SlurmOptions
from netsurgeon.compare.plan import check_plans
from netsurgeon.data import data_grammar
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.workflows.compare import DEFAULT_FORMATS, DEFAULT_SEEDS, CompareSettings, compare_from_settings

_FIELDS = ", ".join(FinetuneConfig.field_names())


@reports_errors
def compare(
    model_arg: ModelArg = None,
    model: OptionalModelOpt = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help=f"{data_grammar()}.")] = None,
    arm: Annotated[list[str] | None, typer.Option(
        "--arm", "-a", help="An arm: passes in order, with :key=value parameters, e.g. erase-relu, "
                            "'pd-relu:alpha=0.2', 'erase-relu,gru-fc' (repeat); a sweep gives one parameter several "
                            "values, one arm each: 'erase-relu:proportion=0.25|0.5|1.0'. The control is always "
                            "included.")]
    = None,
    seeds: Annotated[str, typer.Option(help="K (seeds 0..K-1), a comma-separated list (0,1,2), or auto: seeds in "
                                            "looks until every arm is decided, at most --max-seeds.")]
    = DEFAULT_SEEDS,
    max_seeds: Annotated[int | None, typer.Option(help="With --seeds auto: the most seeds to run.")] = None,
    margin: Annotated[float | None, typer.Option(
        help="Equivalence margin, points of top-1: an arm whose interval lies inside ±M is 'equivalent within ±M'.")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The comparison's directory (rerun to resume).")]
    = None,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs of every job (same as --set epochs=N).")]
    = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help=f"A fine-tuning setting of every job, key=value (repeat). Keys: {_FIELDS}.")] = None,
    recipe: Annotated[Path | None, typer.Option(
        "--recipe", "-r", help="Take the model, finetune (data, settings), export (dir, formats) and compare "
                               "(arms, seeds) sections from a recipe.")] = None,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    input_size: InputSizeOpt = None,
    pretrained: PretrainedOpt = False,
    formats: Annotated[str, typer.Option("--format", help="Each job's export: safetensors,onnx (or 'none').")]
    = DEFAULT_FORMATS,
    executor: Annotated[str, typer.Option(
        help="Where the jobs run: local (this machine), parallel (N child processes), slurm (submitit job array), "
             "or a registered executor.")] = "local",
    executor_opt: Annotated[list[str] | None, typer.Option(
        "--executor-opt", help="An option of the executor, key=value (repeat), e.g. workers=4 (parallel), "
                               "partition=gpu or time_min=120 (slurm); wins over the flags below.")] = None,
    jobs: Annotated[int, typer.Option(help="local: jobs at once (one GPU each when there are GPUs).")] = 1,
    partition: Annotated[str | None, typer.Option(help="slurm: the partition.")] = None,
    time_min: Annotated[int, typer.Option(help="slurm: time limit of one job, minutes.")] = 60,
    gpus_per_job: Annotated[int, typer.Option(help="slurm: GPUs per job.")] = 0,
    cpus_per_job: Annotated[int, typer.Option(help="slurm: CPUs per job.")] = 2,
    max_concurrent: Annotated[int, typer.Option(help="slurm: jobs of the array running at once.")] = 8,
    sbatch: Annotated[list[str] | None, typer.Option(
        help="slurm: an extra #SBATCH parameter, key=value (repeat), e.g. --sbatch qos=low.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan every arm on the base model (sites, parameters) "
                                                            "and print the plans; train and write nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the control and each arm from the same start once per seed, paired, and say whether each
    arm is better, worse, equivalent within --margin, or undecided (seed-level: exact sign-flip test over seeds,
    Holm across arms, bootstrap interval; docs/statistics.md).

    Writes compare.md, compare.json, compare.csv, compare.png and every job's directory
    (jobs/ARM/seed-S/: checkpoint, metrics, curves, artifact, predictions.csv) under --out.
    Running the same command again skips finished jobs and resumes interrupted ones.
    """
    slurm = SlurmOptions(partition=partition, time_min=time_min, gpus_per_job=gpus_per_job,
                         cpus_per_job=cpus_per_job, max_concurrent=max_concurrent)
    result = compare_from_settings(CompareSettings(
        one_model(model_arg, model, required=False), data, list(arm or []), seeds, out, epochs=epochs,
        config=list(set_ or []), recipe=recipe,
        checkpoint=checkpoint, num_classes=num_classes, input_size=input_size, pretrained=pretrained,
        formats=formats, executor=executor, jobs=jobs, slurm=slurm, sbatch=list(sbatch or []),
        executor_options=list(executor_opt or []), dry_run=dry_run, max_seeds=max_seeds,
        margin=margin))
    if dry_run:
        if as_json:
            typer.echo(json.dumps({"plans": [p.to_dict() for p in result.plans]}, indent=2))
        else:
            typer.echo(result.table)
            typer.echo("(dry run: nothing trained or written)")
        check_plans(result.plans)  # an arm that changes nothing: the plans above, then the one-line error
        return
    if as_json:
        typer.echo(json.dumps({"summary": result.summary, "files": result.files, "ran": result.ran,
                               "skipped": result.skipped}, indent=2))
        return
    typer.echo(result.table)
    for line in result.verdicts:
        typer.echo(line)
    for f in result.files:
        typer.echo(f"wrote {f}")
    typer.echo(f"{result.ran} job(s) run, {result.skipped} already finished; {result.seconds:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
