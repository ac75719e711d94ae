"""``netsurgeon apply PASS``: one surgery, its report, and optionally the exported artifacts."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netsurgeon.cli._common import (
    CheckpointOpt,
    InputSizeOpt,
    JsonOpt,
    ModelOpt,
    NumClassesOpt,
    PretrainedOpt,
    SkipUnreadableOpt,
    WeightsOpt,
    reports_errors,
    warn_random,
)
from netsurgeon.data import data_grammar
from netsurgeon.workflows.apply import ApplyOutcome, ApplySettings, apply_from_settings


@reports_errors
def apply(
    pass_name: Annotated[str, typer.Argument(metavar="PASS", help="A pass name; see 'netsurgeon passes'.")],
    model: ModelOpt,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="A pass parameter, key=value (repeat).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; build and write nothing.")] = False,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Directory for the exported model.")] = None,
    formats: Annotated[str, typer.Option("--format", help="Any of safetensors,onnx,pt2.")] = "safetensors,onnx",
    input_size: InputSizeOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    allow_reapply: Annotated[bool, typer.Option(help="Apply a pass the model's history already has.")] = False,
    seed: Annotated[int, typer.Option(help="Seed recorded in the provenance and used for the probe.")] = 0,
    data: Annotated[str | None, typer.Option(
        "--data", help=f"Data for data-driven passes (gru-fc): {data_grammar()} (train split).")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of --data.")] = 64,
    pretrained: PretrainedOpt = False,
    allow_violation: Annotated[bool, typer.Option(
        "--allow-violation", help="Keep (and export) the result even when its contract check fails.")] = False,
    skip_unreadable: SkipUnreadableOpt = False,
    as_json: JsonOpt = False,
    weights_choice: WeightsOpt = None,
) -> None:
    """Apply one pass to a model, print what changed, and export it with --out."""
    outcome = apply_from_settings(ApplySettings(
        pass_name, model, checkpoint=checkpoint, num_classes=num_classes, parameters=list(set_ or []),
        dry_run=dry_run, out=out, formats=formats, input_size=input_size, overwrite=overwrite,
        allow_reapply=allow_reapply, seed=seed, data=data, batch_size=batch_size, pretrained=pretrained,
        allow_violation=allow_violation, skip_unreadable=skip_unreadable, weights=weights_choice))
    show(outcome, as_json=as_json, nothing_written=out is None and not dry_run)


def show(outcome: ApplyOutcome, *, as_json: bool, nothing_written: bool) -> None:
    """Print the report (or JSON), the random-weights warning, and what was written."""
    payload: dict = {"report": outcome.report.to_dict()}
    if outcome.export is not None:
        payload["export"] = outcome.export.__dict__
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        warn_random(outcome.random)
        return
    typer.echo(outcome.report.format())
    warn_random(outcome.random)
    if "export" in payload:
        e = payload["export"]
        for f in e["files"]:
            typer.echo(f"wrote {f}")
        if e["onnx_max_abs_diff"] is not None:
            typer.echo(f"ONNX parity ({e['onnx_exporter']} exporter): max |diff| {e['onnx_max_abs_diff']:.3g} "
                       f"(tolerance {e['onnx_tolerance']:.3g})")
    elif nothing_written:
        typer.echo("(nothing written; pass --out DIR to export)")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
