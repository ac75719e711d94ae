"""Shared CLI plumbing: error reporting, option types, the random-weights warning.

The checks of option values and the model loading from options are the library's
(:mod:`netsurgeon.workflows.options`): Python callers get them too."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from netsurgeon.errors import ConfigError, NetsurgeonError, NoEffectWarning, StatisticsWarning

__all__ = ["CheckpointOpt", "InputSizeOpt", "JsonOpt", "ModelArg", "ModelOpt", "NumClassesOpt", "OptionalModelOpt",
           "PretrainedOpt", "SkipUnreadableOpt", "SuggestingCommand", "WeightsOpt", "one_model", "reports_errors",
           "warn_random"]

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="timm:NAME, torchvision:NAME, NAME, or an artifact.")]
#: the model of a command that also takes it positionally (as it did before --model): give either, once
OptionalModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="timm:NAME, torchvision:NAME, NAME, or an artifact (or give it as MODEL).")]
ModelArg = Annotated[str | None, typer.Argument(
    metavar="MODEL", help="The model, as --model takes it (the positional form is kept).", show_default=False)]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", "-c", help="Weights: .safetensors, .pth/.pt/.bin/.ckpt/.pth.tar "
                                                          "(timm train.py, torchvision, Lightning; weights only), "
                                                          "or a hub directory.")
]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", help="Which weights of a trainer's checkpoint: raw or ema (default: raw, the trainers' own; "
                      "the weights line says when EMA weights are there too).")]
NumClassesOpt = Annotated[int | None, typer.Option("--num-classes", help="Class count of the model to build.")]
InputSizeOpt = Annotated[
    str | None, typer.Option("--input-size", help="Probe input C,H,W (default: the model's own, e.g. 3,224,224).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
PretrainedOpt = Annotated[bool, typer.Option(
    "--pretrained", help="Start from the library's pretrained weights (needs the network; else --checkpoint).")]
SkipUnreadableOpt = Annotated[bool, typer.Option(
    "--skip-unreadable-images", help="folder: data: open every image up front and leave out unreadable ones "
                                     "(default: stop at the first, naming it).")]


def one_model(positional: str | None, option: str | None, *, required: bool = True) -> str | None:
    """The model given as MODEL or as --model (either, or both when they agree)."""
    if positional is not None and option is not None and positional != option:
        raise ConfigError(f"the model is given twice and differs (MODEL {positional!r}, --model {option!r}); "
                          "give it once, as --model.")
    model = option if option is not None else positional
    if model is None and required:
        raise ConfigError("give the model: --model NAME (timm:NAME, torchvision:NAME, NAME, or an artifact).")
    return model


class SuggestingCommand(TyperCommand):
    """A command whose unknown-option error never suggests ``--help``: difflib finds ``--help`` close to
    ``--model`` (0.62 > its 0.6 cutoff), and the usage line above the error already says "Try '... --help'"."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as err:  # typer's NoSuchOption (its vendored click is private): found by its field
            possible = getattr(err, "possibilities", None)
            if possible and "--help" in possible:
                err.possibilities = [p for p in possible if p != "--help"]
            raise


def reports_errors(fn: F) -> F:
    """Turn NetsurgeonError into one line on stderr and exit code 1 (traceback with NETSURGEON_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library noise (fx, exporters); our own warnings are re-shown
            warnings.simplefilter("always", NoEffectWarning)
            warnings.simplefilter("always", StatisticsWarning)
            warnings.showwarning = _show_warning
            try:
                return fn(*args, **kwargs)
            except NetsurgeonError as err:
                if os.environ.get("NETSURGEON_DEBUG"):
                    raise
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(getattr(err, "exit_code", 1)) from None
            except OSError as err:  # the machine, not netsurgeon: a full disk, a file vanishing mid-run, ...
                if os.environ.get("NETSURGEON_DEBUG") or err.errno is None:
                    raise
                typer.echo(f"error: {_os_error(err)}", err=True)
                raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        try:
            folder = os.path.dirname(os.path.abspath(err.filename or "."))
            free = f"; {shutil.disk_usage(folder).free / 1e6:.0f} MB free"
        except OSError:
            free = ""
        return f"disk full while writing{where}{free}: free some space or choose another --out."
    return f"{err.strerror or type(err).__name__}{where}: check the path and its permissions."


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    typer.echo(f"warning: {message}", err=True)


def warn_random(random: bool) -> None:
    if random:
        typer.echo("warning: the model's weights are randomly initialised (no --checkpoint or --pretrained); "
                   "results say nothing about a trained model.", err=True)
