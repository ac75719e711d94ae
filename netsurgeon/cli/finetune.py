"""``netsurgeon finetune MODEL_OR_ARTIFACT --data D --epochs N --out DIR``: train, checkpoint, export."""

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
    NumClassesOpt,
    PretrainedOpt,
    SkipUnreadableOpt,
    WeightsOpt,
    check_inputs_kept,
    check_num_classes,
    check_out_outside_data,
    is_main_process,
    load_from_options,
    out_path,
    parse_input_size,
    reports_errors,
    status,
    warn_random,
    weights_line,
)
from netsurgeon.train.config import FinetuneConfig

_FIELDS = ", ".join(FinetuneConfig.field_names())


@reports_errors
def finetune(
    model: Annotated[str, typer.Argument(metavar="MODEL_OR_ARTIFACT",
                                         help="timm:NAME, torchvision:NAME, NAME, or an artifact (out/ of apply).")],
    data: Annotated[str, typer.Option("--data", "-d", help="digits, fashion-mnist[:DIR], folder:DIR, or "
                                                           "torchvision:NAME:ROOT.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for checkpoints, metrics, plot and model.")],
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 3; same as --set epochs=N).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help=f"A training setting, key=value (repeat). Keys: {_FIELDS}.")] = None,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    input_size: InputSizeOpt = None,
    formats: Annotated[str, typer.Option("--format", help="Final export: safetensors,onnx (or 'none').")]
    = "safetensors,onnx",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in an --out that holds a run.")] = False,
    pretrained: PretrainedOpt = False,
    skip_unreadable: SkipUnreadableOpt = False,
    as_json: JsonOpt = False,
    weights_choice: WeightsOpt = None,
) -> None:
    """Fine-tune a model (typically an artifact written by 'apply') and export the result.

    Trains with augment=basic (padded crop + flip up to 64 px, random-resized-crop + flip above) and
    evaluates with the model's own preprocessing; --set augment=timm, mixup=0.2, cutmix=1.0,
    ema_decay=0.999, accumulate_steps=4, log=none (TensorBoard events go to --out/tensorboard).
    Runs on a GPU when there is one (AMP, channels_last). Under torchrun
    (torchrun --nproc_per_node=N -m netsurgeon finetune ...) every process trains one shard with
    DistributedDataParallel and only rank 0 writes. Ctrl-C saves a checkpoint; --resume continues it.
    """
    import torch

    from netsurgeon.config import parse_set_options
    from netsurgeon.data import DataSpec, count_classes
    from netsurgeon.export import parse_formats
    from netsurgeon.export.atomic import claim_output_dir
    from netsurgeon.models.load import is_artifact_path
    from netsurgeon.train import finetune as run_finetune
    from netsurgeon.train.loop import run_output_files

    values: dict = dict(parse_set_options(set_))
    if epochs is not None:
        values["epochs"] = epochs
    config = FinetuneConfig.from_dict(values)  # validate before loading anything
    spec = dataclasses.replace(DataSpec.parse(data), skip_unreadable=skip_unreadable)
    fmt_list = [] if formats.strip().lower() == "none" else parse_formats(formats)
    size = parse_input_size(input_size)
    out = out_path(out)
    check_num_classes(num_classes, model)
    check_out_outside_data(out, spec)
    check_inputs_kept(run_output_files(out, config), model, checkpoint)
    owned = claim_output_dir(out) if is_main_process() else contextlib.nullcontext()
    with owned:  # --out is checked writable and held by this run before any work
        if not is_artifact_path(model) and num_classes is None and checkpoint is None and not pretrained:
            num_classes = count_classes(spec)
            status(f"building {model} with {num_classes} classes (the data's)")
        torch.manual_seed(config.seed)  # the same command and seed build the same initial weights
        loaded = load_from_options(model, checkpoint, num_classes, input_size=size, pretrained=pretrained,
                                   weights=weights_choice)
        weights, random = weights_line(model, loaded)
        status(f"weights: {weights}")
        status(f"fine-tuning on {data} for {config.epochs} epochs" + (" (resuming)" if resume else ""))
        result = run_finetune(loaded, spec, config, out_dir=out, resume=resume, overwrite=overwrite,
                              formats=fmt_list)
    if not is_main_process():
        return
    if as_json:
        typer.echo(json.dumps({"metrics": result.metrics, "files": result.files, "weights": weights}, indent=2))
        warn_random(random)
        return
    typer.echo(f"weights: {weights}")
    typer.echo(format_metrics(result.metrics))
    for f in result.files:
        typer.echo(f"wrote {f}")
    warn_random(random)


def format_metrics(rows: list[dict]) -> str:
    """The per-epoch metrics as an aligned text table."""
    columns = [("epoch", "epoch", "{}"), ("lr", "lr", "{:.3g}"), ("train_loss", "train loss", "{:.4f}"),
               ("train_top1", "train top-1", "{:.2f}"), ("test_loss", "test loss", "{:.4f}"),
               ("test_top1", "test top-1", "{:.2f}"), ("test_top5", "test top-5", "{:.2f}"),
               ("images_per_s", "images/s", "{:.0f}")]
    if any("ema_test_top1" in row for row in rows):  # weight EMA on
        columns.insert(7, ("ema_test_top1", "EMA top-1", "{:.2f}"))
    table = [[title for _, title, _ in columns]]
    for row in rows:
        table.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in table)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
