"""``netsurgeon apply PASS``: one surgery, its report, and optionally the exported artifacts."""

from __future__ import annotations

import contextlib
import dataclasses
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
    check_inputs_kept,
    check_num_classes,
    check_out_outside_data,
    check_seed,
    load_from_options,
    out_path,
    parse_input_size,
    reports_errors,
    status,
    warn_random,
    weights_line,
)


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
        "--data", help="Data for data-driven passes (gru-fc): digits, fashion-mnist[:DIR], folder:DIR, "
                       "torchvision:NAME:ROOT (train split).")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of --data.")] = 64,
    pretrained: PretrainedOpt = False,
    allow_violation: Annotated[bool, typer.Option(
        "--allow-violation", help="Keep (and export) the result even when its contract check fails.")] = False,
    skip_unreadable: SkipUnreadableOpt = False,
    as_json: JsonOpt = False,
    weights_choice: WeightsOpt = None,
) -> None:
    """Apply one pass to a model, print what changed, and export it with --out."""
    from netsurgeon.config import parse_set_options
    from netsurgeon.errors import ConfigError
    from netsurgeon.export import parse_formats
    from netsurgeon.export.atomic import claim_output_dir
    from netsurgeon.registry import get_pass

    spec = get_pass(pass_name)
    config = spec.make_config(parse_set_options(set_))  # validate before loading anything
    out_dir = out_path(out)
    check_seed(seed)
    check_num_classes(num_classes, model)
    size = parse_input_size(input_size)
    fmt_list = parse_formats(formats)  # before loading anything
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}.")
    data_spec = None
    if data is not None:
        from netsurgeon.data import DataSpec

        data_spec = dataclasses.replace(DataSpec.parse(data), skip_unreadable=skip_unreadable)
        if out_dir is not None:
            check_out_outside_data(out_dir, data_spec)
    if out_dir is not None and not dry_run:
        from netsurgeon.export import artifact_files

        check_inputs_kept(list(artifact_files(out_dir).values()), model, checkpoint)
    owned = claim_output_dir(out_dir) if out_dir is not None and not dry_run else contextlib.nullcontext()
    with owned:  # --out is checked writable and held by this run before any work
        _run(spec, config, model, checkpoint, num_classes, size, pretrained, seed, data_spec, batch_size, dry_run,
             allow_reapply, allow_violation, out_dir, fmt_list, overwrite, as_json, weights_choice)


def _run(spec, config, model, checkpoint, num_classes, size, pretrained, seed, data_spec, batch_size,  # noqa: ANN001
         dry_run, allow_reapply, allow_violation, out, fmt_list, overwrite, as_json, weights_choice=None) -> None:
    import torch

    from netsurgeon.api import apply as apply_passes
    from netsurgeon.api import plan as plan_passes
    from netsurgeon.export import export

    torch.manual_seed(seed)
    loaded = load_from_options(model, checkpoint, num_classes, input_size=size, pretrained=pretrained,
                               weights=weights_choice)
    weights, random = weights_line(model, loaded)
    status(f"applying {spec.name}" + (" (dry run)" if dry_run else ""))
    loader = None
    if data_spec is not None:
        from netsurgeon.data import check_label_range, load_dataset, make_loader
        from netsurgeon.models.info import model_input_size

        data_size = size or model_input_size(loaded)
        dataset = load_dataset(data_spec, "train", data_size)
        check_label_range(loaded, dataset, data_size)
        loader = make_loader(dataset, batch_size, shuffle=False, seed=seed)
    if dry_run:  # the loaded model is thrown away: plan may share its tensors
        report = plan_passes(loaded, config, input_size=size, allow_reapply=allow_reapply, data=loader)
    else:
        result = apply_passes(loaded, config, input_size=size, allow_reapply=allow_reapply, data=loader,
                              allow_violation=allow_violation)
        report = result.report
    report.weights = weights
    payload: dict = {"report": report.to_dict()}
    if out is not None and not dry_run:
        status(f"exporting {', '.join(fmt_list)} to {out}")
        exported = export(result.model, out, formats=fmt_list, report=report, seed=seed,
                          input_size=size, overwrite=overwrite)
        payload["export"] = exported.__dict__
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        warn_random(random)
        return
    typer.echo(report.format())
    warn_random(random)
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
