"""``netsurgeon export-hub ARTIFACT --out DIR [--push REPO_ID]``: an artifact as a Hugging Face hub folder
(config.json, model.safetensors, a README.md model card), pushed when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import JsonOpt, reports_errors
from netsurgeon.progress import status
from netsurgeon.workflows.hub import HubSettings, export_hub


@reports_errors
def export_hub_command(
    artifact: Annotated[Path, typer.Argument(help="An export directory (apply, finetune, a compare job), or its "
                                                  "model.safetensors.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The hub folder to write.")],
    push: Annotated[str | None, typer.Option(help="Upload the folder to this hub repository (user/name); "
                                                  "needs a token (hf auth login).")] = None,
    private: Annotated[bool, typer.Option(help="--push: create the repository private.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the hub files already in --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify the artifact, then write what timm's push_to_hf_hub writes (config.json, model.safetensors with
    netsurgeon's header, model.onnx when there is one) and a README.md model card saying what was done.
    load_model(DIR) and netsurgeon verify DIR read the folder."""
    status(f"exporting {artifact} as a hub folder")
    result = export_hub(HubSettings(artifact, out, push=push, private=private, overwrite=overwrite))
    if as_json:
        typer.echo(json.dumps({"folder": result.folder, "files": result.files, "url": result.url,
                               "onnx_max_abs_diff": result.verify.onnx_max_abs_diff}, indent=2))
        return
    for f in result.files:
        typer.echo(f"wrote {f}")
    if result.url:
        typer.echo(f"pushed to {result.url}")


def register(app: typer.Typer) -> None:
    app.command("export-hub")(export_hub_command)
