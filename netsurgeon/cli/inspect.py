"""``netsurgeon inspect``: show what the passes would act on."""

from __future__ import annotations

import json

import typer

from netsurgeon.cli._common import (
    CheckpointOpt,
    JsonOpt,
    ModelOpt,
    NumClassesOpt,
    PretrainedOpt,
    WeightsOpt,
    reports_errors,
)
from netsurgeon.graph.inspect import inspect_model
from netsurgeon.workflows.options import load_from_options, weights_line


@reports_errors
def inspect(model: ModelOpt, checkpoint: CheckpointOpt = None, num_classes: NumClassesOpt = None,
            pretrained: PretrainedOpt = False, as_json: JsonOpt = False, weights_choice: WeightsOpt = None) -> None:
    """List a model's ReLU sites, basic modules and head, and which tracing rung worked."""
    loaded = load_from_options(model, checkpoint, num_classes, pretrained=pretrained, weights=weights_choice)
    weights, _ = weights_line(model, loaded)
    summary = inspect_model(loaded)
    if as_json:
        typer.echo(json.dumps({**summary.to_dict(), "weights": weights}, indent=2))
        return
    typer.echo(f"weights: {weights}")
    typer.echo(summary.format())


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
