"""``netsurgeon compare MODEL --data D --arm A [--arm B ...] --seeds K --out DIR``: did the surgery help?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import (
    CheckpointOpt,
    InputSizeOpt,
    JsonOpt,
    NumClassesOpt,
    PretrainedOpt,
    reports_errors,
)
from netsurgeon.compare import SlurmOptions
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.workflows.compare import DEFAULT_FORMATS, DEFAULT_SEEDS, CompareSettings, compare_from_settings

_FIELDS = ", ".join(FinetuneConfig.field_names())


@reports_errors
def compare(
    model: Annotated[str | None, typer.Argument(
        metavar="MODEL", help="timm:NAME, torchvision:NAME, NAME, or an artifact (from the recipe with --recipe).")]
    = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="digits, fashion-mnist[:DIR], folder:DIR, or "
                                                                  "torchvision:NAME:ROOT.")] = None,
    arm: Annotated[list[str] | None, typer.Option(
        "--arm", "-a", help="An arm: passes in order, with :key=value parameters, e.g. erase-relu, "
                            "'pd-relu:alpha=0.2', 'erase-relu,gru-fc' (repeat); a sweep gives one parameter several "
                            "values, one arm each: 'erase-relu:proportion=0.25|0.5|1.0'. The control is always "
                            "included.")]
    = None,
    seeds: Annotated[str, typer.Option(help="K (seeds 0..K-1) or a comma-separated list, e.g. 0,1,2.")]
    = DEFAULT_SEEDS,
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
    executor: Annotated[str, typer.Option(help="local (this machine) or slurm (submitit job array).")] = "local",
    jobs: Annotated[int, typer.Option(help="local: jobs at once (one GPU each when there are GPUs).")] = 1,
    partition: Annotated[str | None, typer.Option(help="slurm: the partition.")] = None,
    time_min: Annotated[int, typer.Option(help="slurm: time limit of one job, minutes.")] = 60,
    gpus_per_job: Annotated[int, typer.Option(help="slurm: GPUs per job.")] = 0,
    cpus_per_job: Annotated[int, typer.Option(help="slurm: CPUs per job.")] = 2,
    max_concurrent: Annotated[int, typer.Option(help="slurm: jobs of the array running at once.")] = 8,
    sbatch: Annotated[list[str] | None, typer.Option(
        help="slurm: an extra #SBATCH parameter, key=value (repeat), e.g. --sbatch qos=low.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the control and each arm from the same start once per seed, paired, and say whether each
    arm is better, worse, or not detectably different (paired t-interval, exact McNemar, Holm).

    Writes compare.md, compare.json, compare.csv, compare.png and every job's directory
    (jobs/ARM/seed-S/: checkpoint, metrics, curves, artifact, predictions.csv) under --out.
    Running the same command again skips finished jobs and resumes interrupted ones.
    """
    slurm = SlurmOptions(partition=partition, time_min=time_min, gpus_per_job=gpus_per_job,
                         cpus_per_job=cpus_per_job, max_concurrent=max_concurrent)
    result = compare_from_settings(CompareSettings(
        model, data, list(arm or []), seeds, out, epochs=epochs, config=list(set_ or []), recipe=recipe,
        checkpoint=checkpoint, num_classes=num_classes, input_size=input_size, pretrained=pretrained,
        formats=formats, executor=executor, jobs=jobs, slurm=slurm, sbatch=list(sbatch or [])))
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
