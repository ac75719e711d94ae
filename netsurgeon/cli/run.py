"""``netsurgeon run RECIPE [--recipe MORE ...] [--set dotted.key=value ...] [--dry-run]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import JsonOpt, reports_errors
from netsurgeon.cli.finetune import format_metrics
from netsurgeon.train.distributed import is_main_process
from netsurgeon.workflows.run import RunSettings, run_from_settings


@reports_errors
def run(
    recipe: Annotated[Path | None, typer.Argument(metavar="RECIPE", help="A recipe YAML file.")] = None,
    more: Annotated[list[Path] | None, typer.Option(
        "--recipe", "-r", help="Another recipe composed after RECIPE (repeat): its surgery steps are appended, "
                               "its other values win.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Override a value: dotted.key=value, e.g. finetune.epochs=1 or surgery.0.proportion=0.5 "
                            "(repeat).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan (sites per pass); "
                                                            "train and write nothing.")] = False,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output directory (default: export.dir).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a recipe: model, surgery, fine-tuning and export, as written in YAML.

    Every problem in the recipe is reported at once, with its file, line and column, before anything
    runs. The resolved recipe and its sha256 are written next to the outputs and into the artifact.
    """
    recipes = ([recipe] if recipe is not None else []) + list(more or [])
    outcome = run_from_settings(RunSettings(recipes, overrides=list(set_ or []), dry_run=dry_run, out=out))
    resolved = outcome.recipe
    if dry_run:
        report = outcome.plan
        if as_json:
            typer.echo(json.dumps({"recipe": resolved.to_dict(), "sha256": resolved.sha256,
                                   "plan": report.to_dict() if report else None}, indent=2))
            return
        typer.echo(resolved.to_yaml().rstrip())
        typer.echo(report.format() if report else "(no surgery)")
        if resolved.finetune is not None:
            typer.echo(f"then: fine-tune {resolved.finetune.epochs} epochs on {resolved.data}")
        typer.echo(f"(dry run: nothing trained or written; outputs would go to {outcome.target})")
        return
    if not is_main_process():
        return
    result = outcome.result
    if as_json:
        typer.echo(json.dumps({"sha256": result.sha256, "files": result.files, "metrics": result.metrics,
                               "report": result.report.to_dict() if result.report else None}, indent=2))
        return
    if result.report is not None:
        typer.echo(result.report.format())
    if result.metrics:
        typer.echo(format_metrics(result.metrics))
    for f in result.files:
        typer.echo(f"wrote {f}")
    typer.echo(f"recipe sha256 {result.sha256}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
