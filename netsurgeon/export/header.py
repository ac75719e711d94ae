"""The strict schema of an artifact's provenance header, checked once wherever an artifact is read.

``verify``, ``inspect``, ``finetune`` and ``load_model`` all go through :func:`validate_record`, which
reports every problem of a crafted or damaged header at once (one line, ``; ``-separated) as an
:class:`~netsurgeon.errors.ArtifactError`. Types are strict (``true`` is not a number, ``"3"`` is not an
integer), unknown keys in ``model`` and in each pass step are errors, and constructor arguments are
limited to :data:`netsurgeon.validate.MODEL_KWARGS` (a header can never point the model library at a
file or a callable). A pass step's rules are :func:`netsurgeon.history.step_problems`, those of the one
parser that turns steps into history entries.
"""

from __future__ import annotations

import re
from typing import Any

from netsurgeon.errors import ArtifactError, ConfigError
from netsurgeon.history import STEP_KEYS, step_problems
from netsurgeon.registry import registered_contract
from netsurgeon.validate import check_input_size, check_model_kwargs

__all__ = ["MODEL_KEYS", "STEP_KEYS", "TENSOR_DTYPES", "header_problems", "validate_record"]

FORMAT = "netsurgeon.artifact.v1"
MAX_PASSES = 64
_SPEC = re.compile(r"^(timm|torchvision|tv|netsurgeon):[A-Za-z0-9_.\-]{1,120}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: key -> (required, check); ``model`` is ModelInfo.to_dict()
MODEL_KEYS = ("spec", "kwargs", "checkpoint", "checkpoint_sha256", "input_size", "history", "reinitialized")
#: floating-point dtypes an artifact's tensors may be stored in (``tensors.dtype``)
TENSOR_DTYPES = ("float16", "bfloat16", "float32", "float64")
TENSOR_KEYS = ("dtype", "count", "sha256")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_model(model: Any, problems: list[str]) -> None:
    if not isinstance(model, dict):
        problems.append(f"model must be a mapping, got {_kind(model)}")
        return
    for key in model:
        if key not in MODEL_KEYS:
            problems.append(f"model: unknown key {str(key)[:40]!r}")
    spec = model.get("spec")
    if not isinstance(spec, str) or not _SPEC.match(spec):
        problems.append(f"model.spec must be LIBRARY:NAME (timm, torchvision or netsurgeon), got {str(spec)[:60]!r}")
    problems.extend(check_model_kwargs(model.get("kwargs", {}), "model.kwargs"))
    for key in ("checkpoint", "checkpoint_sha256"):
        if model.get(key) is not None and not isinstance(model.get(key), str):
            problems.append(f"model.{key} must be a string or null, got {_kind(model.get(key))}")
    sha = model.get("checkpoint_sha256")
    if isinstance(sha, str) and not _SHA256.match(sha):
        problems.append("model.checkpoint_sha256 must be 64 lowercase hex digits")
    if "input_size" not in model:
        problems.append("model.input_size is missing")
    else:
        try:
            check_input_size(model["input_size"], "model.input_size")
        except ConfigError as err:
            problems.append(str(err).rstrip("."))
    if "history" in model and not isinstance(model["history"], list):
        problems.append(f"model.history must be a list, got {_kind(model['history'])}")
    fresh = model.get("reinitialized", [])
    if not isinstance(fresh, list) or not all(isinstance(k, str) and len(k) <= 200 for k in fresh) \
            or len(fresh) > 64:
        problems.append("model.reinitialized must be a list of state_dict keys")


def _check_tensors(tensors: Any, problems: list[str]) -> None:
    """``tensors``: the stored dtype (one name, or one per floating-point tensor), the count and the digest."""
    if not isinstance(tensors, dict):
        problems.append(f"tensors must be a mapping, got {_kind(tensors)}")
        return
    for key in tensors:
        if key not in TENSOR_KEYS:
            problems.append(f"tensors: unknown key {str(key)[:40]!r}")
    dtype = tensors.get("dtype")
    per_tensor = isinstance(dtype, dict) and all(isinstance(k, str) and v in TENSOR_DTYPES for k, v in dtype.items())
    if dtype not in TENSOR_DTYPES and not per_tensor:
        problems.append(f"tensors.dtype must be one of {', '.join(TENSOR_DTYPES)} (or a mapping of tensor names "
                        "to them)")
    if not _int(tensors.get("count")) or tensors.get("count", -1) < 0:
        problems.append(f"tensors.count must be a non-negative integer, got {_kind(tensors.get('count'))}")
    if not isinstance(tensors.get("sha256"), str) or not _SHA256.match(tensors["sha256"]):
        problems.append("tensors.sha256 must be 64 lowercase hex digits")


def header_problems(record: dict) -> list[str]:
    """Every problem of a provenance record (a dict with the right ``format``); empty when it is valid."""
    problems: list[str] = []
    _check_model(record.get("model"), problems)
    passes = record.get("passes")
    if not isinstance(passes, list):
        problems.append(f"passes must be a list, got {_kind(passes)}")
    elif len(passes) > MAX_PASSES:
        problems.append(f"passes holds {len(passes)} steps (at most {MAX_PASSES})")
    else:
        for i, step in enumerate(passes):
            problems.extend(step_problems(step, f"passes[{i}]", registered=registered_contract))
        model = record.get("model")
        if isinstance(model, dict) and isinstance(model.get("history"), list) and model["history"] != passes:
            problems.append("model.history differs from passes")
    versions = record.get("versions", {})
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        problems.append("versions must map package names to version strings")
    if record.get("seed") is not None and not _int(record.get("seed")):
        problems.append(f"seed must be an integer or null, got {_kind(record.get('seed'))}")
    for key in ("verification", "finetune", "recipe", "weights"):
        if key in record and not isinstance(record[key], dict):
            problems.append(f"{key} must be a mapping, got {_kind(record[key])}")
    if "tensors" in record:
        _check_tensors(record["tensors"], problems)
    return problems


def validate_record(record: Any, name: str) -> dict:
    """``record`` when it is a well-formed provenance header; otherwise an ArtifactError naming every problem."""
    if not isinstance(record, dict):
        raise ArtifactError(f"{name}: the netsurgeon header must be a JSON object, got {_kind(record)}; the file is "
                            "damaged or was not written by netsurgeon.")
    if record.get("format") != FORMAT:
        raise ArtifactError(f"{name}: unsupported artifact format {str(record.get('format'))[:60]!r} "
                            f"(expected {FORMAT}).")
    problems = header_problems(record)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems) - 6} more)" if len(problems) > 6 else "")
        raise ArtifactError(f"{name}: damaged or crafted netsurgeon header: {shown}. Re-export the model with "
                            "netsurgeon.")
    return record
