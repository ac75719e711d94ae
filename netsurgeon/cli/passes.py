"""``netsurgeon passes``: list the registered surgeries and their parameters."""

from __future__ import annotations

import dataclasses
import json

import typer

from netsurgeon.cli._common import JsonOpt, reports_errors


@reports_errors
def passes(as_json: JsonOpt = False) -> None:
    """List the available passes, their contract, and their parameters with defaults."""
    from netsurgeon.registry import list_passes

    rows = []
    for spec in list_passes():
        params = {f.name: f.default for f in dataclasses.fields(spec.config_cls)}
        rows.append({"name": spec.name, "summary": spec.summary, "contract": spec.contract.value,
                     "structural": spec.structural, "parameters": params})
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=list))
        return
    for row in rows:
        typer.echo(f"{row['name']:<20} {row['summary']}  [{row['contract']}]")
        for key, default in row["parameters"].items():
            typer.echo(f"    {key} = {default!r}")


def register(app: typer.Typer) -> None:
    app.command("passes")(passes)
