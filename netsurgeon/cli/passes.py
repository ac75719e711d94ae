"""``netsurgeon passes [PASS ...]``: the registered surgeries, and every parameter with its help."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from netsurgeon.cli._common import JsonOpt, reports_errors
from netsurgeon.config import describe_fields
from netsurgeon.registry import get_pass, list_passes


def describe_passes(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Each pass (all, or the named ones): summary, contract, ``parameters`` (name -> default) and
    ``fields`` (each parameter's type, default, allowed values and help)."""
    specs = [get_pass(n) for n in names] if names else list_passes()
    return [{"name": spec.name, "summary": spec.summary, "contract": spec.contract.value,
             "structural": spec.structural, "training_hooks": spec.hooks is not None,
             "parameters": {f.name: f.default for f in describe_fields(spec.config_cls)},
             "fields": [dataclasses.asdict(f) for f in describe_fields(spec.config_cls)]} for spec in specs]


@reports_errors
def passes(
    names: Annotated[list[str] | None, typer.Argument(
        help="Passes to describe in full (default: list every pass with its parameters' defaults).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the available passes; with names, every parameter's type, default, allowed values and help."""
    rows = describe_passes(names)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=list))
        return
    for row in rows:
        typer.echo(f"{row['name']:<20} {row['summary']}  [{row['contract']}]")
        for p in row["fields"]:
            if not names:
                typer.echo(f"    {p['name']} = {p['default']!r}")
                continue
            allowed = f"  one of: {', '.join(map(repr, p['allowed']))}" if p["allowed"] else ""
            typer.echo(f"    {p['name']}: {p['type']} = {p['default']!r}{allowed}")
            if p["help"]:
                typer.echo(f"        {p['help']}")


def register(app: typer.Typer) -> None:
    app.command("passes")(passes)
