"""``netsurgeon finetune --model MODEL_OR_ARTIFACT --data D --epochs N --out DIR``: train, checkpoint, export."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netsurgeon.cli._common import (
    CheckpointOpt,
    InputSizeOpt,
    JsonOpt,
    ModelArg,
    NumClassesOpt,
    OptionalModelOpt,
    PretrainedOpt,
    SkipUnreadableOpt,
    WeightsOpt,
    one_model,
    reports_errors,
    warn_random,
)
from netsurgeon.data import data_grammar
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.distributed import is_main_process
from netsurgeon.train.schema import Key
from netsurgeon.workflows.finetune import FinetuneSettings, finetune_from_settings

_FIELDS = ", ".join(FinetuneConfig.field_names())


@reports_errors
def finetune(
    data: Annotated[str, typer.Option("--data", "-d", help=f"{data_grammar()}.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for checkpoints, metrics, plot and model.")],
    model_arg: ModelArg = None,
    model: OptionalModelOpt = None,
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
    outcome = finetune_from_settings(FinetuneSettings(
        one_model(model_arg, model), data, out, epochs=epochs, resume=resume, config=list(set_ or []),
        checkpoint=checkpoint, num_classes=num_classes, input_size=input_size, formats=formats, overwrite=overwrite,
        pretrained=pretrained, skip_unreadable=skip_unreadable, weights=weights_choice))
    if not is_main_process():
        return
    result = outcome.result
    if as_json:
        typer.echo(json.dumps({"metrics": result.metrics, "files": result.files, "weights": outcome.weights},
                              indent=2))
        warn_random(outcome.random)
        return
    typer.echo(f"weights: {outcome.weights}")
    typer.echo(format_metrics(result.metrics))
    for f in result.files:
        typer.echo(f"wrote {f}")
    warn_random(outcome.random)


def format_metrics(rows: list[dict]) -> str:
    """The per-epoch metrics as an aligned text table."""
    columns = [(Key.EPOCH, "epoch", "{}"), (Key.LR, "lr", "{:.3g}"), (Key.TRAIN_LOSS, "train loss", "{:.4f}"),
               (Key.TRAIN_TOP1, "train top-1", "{:.2f}"), (Key.TEST_LOSS, "test loss", "{:.4f}"),
               (Key.TEST_TOP1, "test top-1", "{:.2f}"), (Key.TEST_TOP5, "test top-5", "{:.2f}"),
               (Key.IMAGES_PER_S, "images/s", "{:.0f}")]
    if any(Key.EMA_TEST_TOP1 in row for row in rows):  # weight EMA on
        columns.insert(7, (Key.EMA_TEST_TOP1, "EMA top-1", "{:.2f}"))
    table = [[title for _, title, _ in columns]]
    for row in rows:
        table.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in table)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
