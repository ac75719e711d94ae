"""``netsurgeon inspect``: show what the passes would act on."""

from __future__ import annotations

import json

import typer

from netsurgeon.cli._common import CheckpointOpt, JsonOpt, ModelOpt, NumClassesOpt, load_from_options, reports_errors


@reports_errors
def inspect(model: ModelOpt, checkpoint: CheckpointOpt = None, num_classes: NumClassesOpt = None,
            as_json: JsonOpt = False) -> None:
    """List a model's ReLU sites, basic modules and head, and which tracing rung worked."""
    from netsurgeon.graph.inspect import inspect_model

    summary = inspect_model(load_from_options(model, checkpoint, num_classes))
    typer.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.format())


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
