"""The checks and model loading the command workflows share: what a user gives as options (the model,
its checkpoint, the output directory, the input size, a seed) checked before any work, the same for the
CLI and Python."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

import netsurgeon.loading as loading
from netsurgeon.atomic import check_not_inputs, expand_out
from netsurgeon.config import UINT64_MAX, parse_set_options
from netsurgeon.data import DataSpec
from netsurgeon.errors import ConfigError
from netsurgeon.models.info import get_info
from netsurgeon.models.load import describe_weights, is_artifact_path, weights_source
from netsurgeon.progress import status
from netsurgeon.validate import MODEL_KWARGS, check_input_size

__all__ = ["SetValues", "check_inputs_kept", "check_num_classes", "check_out_outside_data", "check_seed",
           "load_from_options", "out_path", "parse_input_size", "set_values", "weights_line"]

#: ``--set`` items as given (``["key=value", ...]``) or already as a mapping
SetValues = Sequence[str] | Mapping[str, Any]


def set_values(values: SetValues | None) -> dict[str, Any]:
    """``--set`` items (``key=value`` strings, checked) or a mapping, as a dict."""
    if isinstance(values, Mapping):
        return dict(values)
    return dict(parse_set_options(list(values or [])))


def parse_input_size(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``--input-size`` C,H,W (or CxHxW, or a sequence of ints) as a checked tuple."""
    if text is None:
        return None
    if not isinstance(text, str):
        return check_input_size(tuple(text), "--input-size")
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
    return expand_out(value, flag)


def check_seed(seed: int, flag: str = "--seed") -> int:
    """A seed torch can hold: 0 to 2**64 - 1."""
    if not 0 <= seed <= UINT64_MAX:
        raise ConfigError(f"{flag} {str(seed)[:30]} is out of range; give an integer from 0 to 2**64 - 1.")
    return seed


def check_num_classes(num_classes: int | None, model: str, flag: str = "--num-classes") -> None:
    """A class count within what a model may be built with, and only for models built from a name (an
    artifact's head is part of its recorded surgery)."""
    if num_classes is None:
        return
    _, low, high = MODEL_KWARGS["num_classes"]
    if not low <= num_classes <= high:
        raise ConfigError(f"{flag} {str(num_classes)[:30]} is out of range: num_classes must be a positive integer "
                          f"of at most {int(high):,}.")
    if is_artifact_path(model):
        raise ConfigError(f"{flag} does not apply to an artifact ({model}), which carries its own head; drop it, "
                          "or change the class count with a pass: --set num_classes=N of spinal-head.")


def check_out_outside_data(out: Path, data: DataSpec | object) -> None:
    """Refuse an output directory inside a ``folder:`` data set: its subdirectories are read as splits and
    classes, so the run's own folder would become one."""
    if not isinstance(data, DataSpec) or not data.data_kind.image_tree:
        return
    root = Path(os.path.expanduser(data.path)).resolve()
    target = out.resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"--out {out} is inside the data folder {data.path} (whose folders are read as classes); "
                          "choose an output directory outside it.")


def check_inputs_kept(outputs: list[Path], model: str, checkpoint: str | Path | None) -> None:
    """Refuse, before any work, outputs that are the run's own inputs (the artifact's files, the checkpoint),
    whatever --overwrite says."""
    inputs: list[str | Path] = []
    if is_artifact_path(model):
        p = Path(os.path.expanduser(model))
        inputs.append(p / "model.safetensors" if p.is_dir() else p)
    if checkpoint is not None:
        inputs.append(Path(os.path.expanduser(os.fspath(checkpoint))))
    check_not_inputs(outputs, inputs, overwrite=True)


def load_from_options(model: str, checkpoint: str | Path | None, num_classes: int | None, *,
                      input_size: tuple[int, ...] | None = None, pretrained: bool = False,
                      weights: str | None = None) -> nn.Module:
    """Build the model the options describe (the input size recorded is the one given)."""
    if pretrained and checkpoint is not None:
        raise ConfigError("give --checkpoint or --pretrained, not both.")
    check_num_classes(num_classes, model)
    if checkpoint is not None:
        checkpoint = Path(os.path.expanduser(os.fspath(checkpoint)))
    status(f"loading {model}" + (f" with {checkpoint}" if checkpoint else " (pretrained)" if pretrained else ""))
    if weights is not None and checkpoint is None:
        raise ConfigError("--weights picks an entry of a checkpoint; give --checkpoint as well.")
    return loading.load_model(model, checkpoint=checkpoint, num_classes=num_classes, input_size=input_size,
                              pretrained=pretrained, weights=weights)


def weights_line(spec: str, loaded: nn.Module) -> tuple[str, bool]:
    """Where the weights of a model built from options came from, and whether they are random."""
    if is_artifact_path(spec):
        return describe_weights(None, artifact=spec), False
    info = get_info(loaded)
    return describe_weights(info), weights_source(info)["source"] == "random-init"
