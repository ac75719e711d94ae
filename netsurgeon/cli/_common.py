"""Shared CLI plumbing: error reporting, option types, model loading from options."""

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

from netsurgeon.errors import NetsurgeonError, NoEffectWarning
from netsurgeon.progress import status

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="timm:NAME, torchvision:NAME, NAME, or an artifact.")]
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


def parse_input_size(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    from netsurgeon.errors import ConfigError
    from netsurgeon.validate import check_input_size

    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--input-size expects C,H,W such as 3,224,224, got {text[:40]!r}.") from None
    return check_input_size(size, "--input-size")


def out_path(value: str | Path | None, flag: str = "--out") -> Path | None:
    """``--out`` as a path: ``~`` expanded, an empty value refused (it would silently mean the current
    directory)."""
    if value is None:
        return None
    from netsurgeon.export.atomic import expand_out

    return expand_out(value, flag)


def check_seed(seed: int, flag: str = "--seed") -> int:
    """A seed torch can hold: 0 to 2**64 - 1."""
    from netsurgeon.config import UINT64_MAX
    from netsurgeon.errors import ConfigError

    if not 0 <= seed <= UINT64_MAX:
        raise ConfigError(f"{flag} {str(seed)[:30]} is out of range; give an integer from 0 to 2**64 - 1.")
    return seed


def check_num_classes(num_classes: int | None, model: str, flag: str = "--num-classes") -> None:
    """A class count within what a model may be built with, and only for models built from a name (an
    artifact's head is part of its recorded surgery)."""
    from netsurgeon.errors import ConfigError
    from netsurgeon.models.load import is_artifact_path
    from netsurgeon.validate import MODEL_KWARGS

    if num_classes is None:
        return
    _, low, high = MODEL_KWARGS["num_classes"]
    if not low <= num_classes <= high:
        raise ConfigError(f"{flag} {str(num_classes)[:30]} is out of range: num_classes must be a positive integer "
                          f"of at most {int(high):,}.")
    if is_artifact_path(model):
        raise ConfigError(f"{flag} does not apply to an artifact ({model}), which carries its own head; drop it, "
                          "or change the class count with a pass: --set num_classes=N of spinal-head.")


def check_out_outside_data(out: Path, data: object) -> None:
    """Refuse an output directory inside a ``folder:`` data set: its subdirectories are read as splits and
    classes, so the run's own folder would become one."""
    from netsurgeon.errors import ConfigError

    if getattr(data, "kind", None) != "folder":
        return
    root = Path(os.path.expanduser(data.path)).resolve()  # type: ignore[attr-defined]
    target = out.resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"--out {out} is inside the data folder {data.path} (whose folders are read as classes); "  # type: ignore[attr-defined]
                          "choose an output directory outside it.")


def check_inputs_kept(outputs: list[Path], model: str, checkpoint: Path | None) -> None:
    """Refuse, before any work, outputs that are the run's own inputs (the artifact's files, the checkpoint),
    whatever --overwrite says."""
    from netsurgeon.export.atomic import check_not_inputs
    from netsurgeon.models.load import is_artifact_path

    inputs: list[str | Path] = []
    if is_artifact_path(model):
        p = Path(os.path.expanduser(model))
        inputs.append(p / "model.safetensors" if p.is_dir() else p)
    if checkpoint is not None:
        inputs.append(Path(os.path.expanduser(os.fspath(checkpoint))))
    check_not_inputs(outputs, inputs, overwrite=True)


def load_from_options(model: str, checkpoint: Path | None, num_classes: int | None, *,
                      input_size: tuple[int, ...] | None = None, pretrained: bool = False,
                      weights: str | None = None):
    """Build the model the options describe (the input size recorded is the one given)."""
    from netsurgeon.errors import ConfigError
    from netsurgeon.loading import load_model

    if pretrained and checkpoint is not None:
        raise ConfigError("give --checkpoint or --pretrained, not both.")
    check_num_classes(num_classes, model)
    if checkpoint is not None:
        checkpoint = Path(os.path.expanduser(os.fspath(checkpoint)))
    status(f"loading {model}" + (f" with {checkpoint}" if checkpoint else " (pretrained)" if pretrained else ""))
    if weights is not None and checkpoint is None:
        raise ConfigError("--weights picks an entry of a checkpoint; give --checkpoint as well.")
    return load_model(model, checkpoint=checkpoint, num_classes=num_classes, input_size=input_size,
                      pretrained=pretrained, weights=weights)


def weights_line(spec: str, loaded: object) -> tuple[str, bool]:
    """Where the weights of a model built from options came from, and whether they are random."""
    from netsurgeon.models.info import get_info
    from netsurgeon.models.load import describe_weights, is_artifact_path, weights_source

    if is_artifact_path(spec):
        return describe_weights(None, artifact=spec), False
    info = get_info(loaded)  # type: ignore[arg-type]
    return describe_weights(info), weights_source(info)["source"] == "random-init"


def warn_random(random: bool) -> None:
    if random:
        typer.echo("warning: the model's weights are randomly initialised (no --checkpoint or --pretrained); "
                   "results say nothing about a trained model.", err=True)


def is_main_process() -> bool:
    """False on the non-zero ranks of a torchrun job, which train but print and write nothing."""
    from netsurgeon.train.distributed import is_main_process as main

    return main()
