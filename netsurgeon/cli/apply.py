"""``netsurgeon apply PASS``: one surgery, its report, and optionally the exported artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import (
    CheckpointOpt,
    InputSizeOpt,
    JsonOpt,
    ModelOpt,
    NumClassesOpt,
    load_from_options,
    parse_input_size,
    reports_errors,
    status,
)


@reports_errors
def apply(
    pass_name: Annotated[str, typer.Argument(metavar="PASS", help="A pass name; see 'netsurgeon passes'.")],
    model: ModelOpt,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="A pass parameter, key=value (repeat).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; build and write nothing.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory for the exported model.")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: safetensors,onnx.")] = "safetensors,onnx",
    input_size: InputSizeOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    allow_reapply: Annotated[bool, typer.Option(help="Apply a pass the model's history already has.")] = False,
    seed: Annotated[int, typer.Option(help="Seed recorded in the provenance and used for the probe.")] = 0,
    data: Annotated[str | None, typer.Option(
        "--data", help="Data for data-driven passes (gru-fc): digits, fashion-mnist[:DIR], folder:DIR, "
                       "torchvision:NAME:ROOT (train split).")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of --data.")] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Apply one pass to a model, print what changed, and export it with --out."""
    import torch

    from netsurgeon.api import apply as apply_passes
    from netsurgeon.config import parse_set_options
    from netsurgeon.export import export, parse_formats
    from netsurgeon.registry import get_pass

    spec = get_pass(pass_name)
    config = spec.make_config(parse_set_options(set_))  # validate before loading anything
    size = parse_input_size(input_size)
    fmt_list = parse_formats(formats)  # before loading anything
    torch.manual_seed(seed)
    loaded = load_from_options(model, checkpoint, num_classes)
    status(f"applying {spec.name}" + (" (dry run)" if dry_run else ""))
    loader = None
    if data is not None:
        from netsurgeon.data import load_dataset, make_loader
        from netsurgeon.models.info import get_info

        info = get_info(loaded)
        dataset = load_dataset(data, "train", size or (info.input_size if info else (3, 224, 224)))
        loader = make_loader(dataset, batch_size, shuffle=False, seed=seed)
    result = apply_passes(loaded, config, input_size=size, verify=not dry_run, allow_reapply=allow_reapply,
                          data=loader)
    payload: dict = {"report": result.report.to_dict()}
    if out is not None and not dry_run:
        status(f"exporting {', '.join(fmt_list)} to {out}")
        exported = export(result.model, out, formats=fmt_list, report=result.report, seed=seed,
                          input_size=size, overwrite=overwrite)
        payload["export"] = exported.__dict__
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(result.report.format())
    if "export" in payload:
        e = payload["export"]
        for f in e["files"]:
            typer.echo(f"wrote {f}")
        if e["onnx_max_abs_diff"] is not None:
            typer.echo(f"ONNX parity ({e['onnx_exporter']} exporter): max |diff| {e['onnx_max_abs_diff']:.3g} "
                       f"(tolerance {e['onnx_tolerance']:.3g})")
    elif out is None and not dry_run:
        typer.echo("(nothing written; pass --out DIR to export)")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
