"""``netsurgeon verify``: rebuild an artifact from its header and check the ONNX file against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import JsonOpt, one_model, reports_errors
from netsurgeon.errors import ExportError
from netsurgeon.export import verify_artifact
from netsurgeon.progress import status


@reports_errors
def verify(
    path_arg: Annotated[str | None, typer.Argument(
        metavar="PATH", help="An export directory, or its model.safetensors (or give it as --model).",
        show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The artifact: an export directory or its "
                                                                    "model.safetensors (or give it as PATH).")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Reload the model from model.safetensors alone and check ONNX parity (exit 1 on failure)."""
    path = Path(one_model(path_arg, model))
    status(f"verifying {path}")
    result = verify_artifact(path)
    if as_json:
        typer.echo(json.dumps(result.__dict__, indent=2))
    else:
        for m in result.messages:
            typer.echo(m)
    if not result.ok:
        raise ExportError(f"verification of {path} failed")
    if not as_json:
        typer.echo("ok")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
