"""Shared CLI plumbing: error reporting, option types, model loading from options."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from netsurgeon.errors import NetsurgeonError, NoEffectWarning
from netsurgeon.progress import status

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="timm:NAME, torchvision:NAME, NAME, or an artifact.")]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", "-c", help="Weights: .safetensors or .pth/.pt/.bin (weights only).")
]
NumClassesOpt = Annotated[int | None, typer.Option("--num-classes", help="Class count of the model to build.")]
InputSizeOpt = Annotated[
    str | None, typer.Option("--input-size", help="Probe input C,H,W (default: the model's own, e.g. 3,224,224).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def reports_errors(fn: F) -> F:
    """Turn NetsurgeonError into one line on stderr and exit code 1 (traceback with NETSURGEON_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library noise (fx, exporters); our own warnings are re-shown
            warnings.simplefilter("always", NoEffectWarning)
            warnings.showwarning = _show_warning
            try:
                return fn(*args, **kwargs)
            except NetsurgeonError as err:
                if os.environ.get("NETSURGEON_DEBUG"):
                    raise
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(getattr(err, "exit_code", 1)) from None

    return wrapper  # type: ignore[return-value]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    typer.echo(f"warning: {message}", err=True)


def parse_input_size(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    from netsurgeon.errors import ConfigError

    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--input-size expects C,H,W such as 3,224,224, got {text!r}.") from None
    if len(size) != 3 or min(size) < 1:
        raise ConfigError(f"--input-size expects three positive integers C,H,W, got {text!r}.")
    return size


def load_from_options(model: str, checkpoint: Path | None, num_classes: int | None):
    from netsurgeon.models import load_model

    status(f"loading {model}" + (f" with {checkpoint}" if checkpoint else ""))
    return load_model(model, checkpoint=checkpoint, num_classes=num_classes)


def is_main_process() -> bool:
    """False on the non-zero ranks of a torchrun job, which train but print and write nothing."""
    from netsurgeon.train.distributed import is_main_process as main

    return main()
