"""``netsurgeon demo``: train a small baseline, apply every pass, fine-tune, export, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netsurgeon.cli._common import JsonOpt, reports_errors
from netsurgeon.data import data_grammar
from netsurgeon.demo import format_table, run_demo
from netsurgeon.workflows.options import parse_input_size


@reports_errors
def demo(
    data: Annotated[str, typer.Option("--data", "-d", help=f"{data_grammar()} (digits is embedded).")] = "digits",
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for every model, metric and plot.")]
    = Path("demo-out"),
    baseline_epochs: Annotated[int, typer.Option(help="Epochs of baseline training.")] = 4,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs after each surgery.")] = 2,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    train_batches: Annotated[int | None, typer.Option(
        help="Train on at most this many batches per epoch (a quicker run on large data).")] = None,
    eval_batches: Annotated[int | None, typer.Option(
        help="Evaluate on at most this many test batches (a quicker run on large data).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="The baseline architecture (built untrained).")]
    = "torchvision:resnet18",
    input_size: Annotated[str, typer.Option("--input-size", help="C,H,W the images are resized to.")] = "3,32,32",
    seed: Annotated[int, typer.Option(help="Seed of everything.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Reuse a non-empty --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Offline tour: baseline resnet18 on small grey images, the five passes, one comparison table.

    Each pass is applied to a copy of the trained baseline and fine-tuned for the same budget as the
    'fine-tune only' control; a pass helped only if it beats that row.
    """
    result = run_demo(data, out, model=model, input_size=parse_input_size(input_size), baseline_epochs=baseline_epochs,
                      epochs=epochs, batch_size=batch_size, limit_train_batches=train_batches,
                      limit_eval_batches=eval_batches, seed=seed,
                      overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps({"rows": [r.__dict__ for r in result.rows], "files": result.files,
                               "seconds": result.seconds}, indent=2))
        return
    typer.echo(format_table(result.rows))
    for f in result.files:
        typer.echo(f"wrote {f}")
    typer.echo(f"demo finished in {result.seconds:.0f} s; every variant's model, metrics and ONNX are under {out}/")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
