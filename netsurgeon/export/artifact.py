"""The safetensors artifact: weights plus the full provenance in the ``__metadata__`` header.

The header's ``netsurgeon`` entry is JSON: the base model spec and constructor arguments, the source
checkpoint's sha256, the ordered passes with their full configs (and the sites they changed), the
library versions, the seed, and the verification result. ``load_artifact`` rebuilds the base
architecture from it, replays the structural passes, checks they selected the same sites, and loads
the weights strictly: no side file, no pickle.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsurgeon.errors import ArtifactError, CheckpointError, NetsurgeonError, NoEffectWarning
from netsurgeon.export.header import validate_record
from netsurgeon.history import parse_history
from netsurgeon.models.info import ModelInfo, get_info, set_info
from netsurgeon.registry import get_pass, registered_contract

__all__ = ["FORMAT", "file_tensors", "load_artifact", "provenance", "read_provenance", "tensor_digest", "tensor_record",
           "versions", "write_safetensors"]

FORMAT = "netsurgeon.artifact.v1"
_KEY = "netsurgeon"


def versions() -> dict[str, str]:
    out = {}
    for dist in ("netsurgeon", "torch", "torchvision", "timm", "safetensors", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance(model: nn.Module, *, seed: int | None = None, extra: dict[str, Any] | None = None) -> dict:
    info = get_info(model)
    if info is None:
        raise ArtifactError(
            "this model carries no netsurgeon provenance; build it with netsurgeon.load_model and "
            "netsurgeon.apply so that the artifact can be rebuilt from its header."
        )
    from netsurgeon.models.load import weights_source

    record = {"format": FORMAT, "model": info.to_dict(), "passes": [entry.to_json() for entry in info.history],
              "versions": versions(), "seed": seed, "weights": weights_source(info)}
    record.update(extra or {})
    return record


def file_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors ``model.safetensors`` holds: the state dict on the CPU, contiguous, tied ones copied."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in seen:  # tied tensors: safetensors refuses shared storage
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    return tensors


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order (independent of the file
    layout, so it can be checked on the tensors a reader got back)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(json.dumps([name, _dtype_name(t), list(t.shape)]).encode() + b"\0")
        digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def tensor_record(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The header's ``tensors`` entry: the floating-point dtype (one name, or a name per tensor when they
    differ), the tensor count and the sha256 digest of the tensor data."""
    floats = {k: _dtype_name(v) for k, v in tensors.items() if v.is_floating_point()}
    kinds = set(floats.values())
    dtype: str | dict[str, str] = kinds.pop() if len(kinds) == 1 else floats
    return {"dtype": dtype, "count": len(tensors), "sha256": tensor_digest(tensors)}


def write_safetensors(model: nn.Module, path: Path, record: dict) -> None:
    from safetensors.torch import save_file

    save_file(file_tensors(model), str(path), metadata={"format": "pt", _KEY: json.dumps(record, sort_keys=True)})


def read_provenance(path: str | Path) -> dict:
    """The provenance record of an artifact; a clear error for anything else."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.exists():
        raise ArtifactError(f"{p} not found.")
    if not p.is_file():  # a FIFO would block the reader forever, a device could be endless
        raise ArtifactError(f"{p} is not a regular file; give an export directory or its model.safetensors.")
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:
        raise ArtifactError(f"{p.name} could not be read as safetensors (truncated or corrupt?): {err}") from None
    if _KEY not in meta:
        raise ArtifactError(
            f"{p.name} is a plain safetensors file, not a netsurgeon artifact; load it as weights instead: "
            f"--model NAME --checkpoint {p.name}"
        )
    try:
        record = json.loads(meta[_KEY])
    except (json.JSONDecodeError, RecursionError, ValueError) as err:
        raise ArtifactError(f"{p.name}: the netsurgeon header is not valid JSON ({str(err)[:120]}).") from None
    return validate_record(record, p.name)


def load_artifact(path: str | Path, record: dict | None = None,
                  overrides: dict[str, dict[str, Any]] | None = None) -> nn.Module:
    """Rebuild a modified model from its artifact alone (see module docstring).

    ``record`` is the artifact's provenance when the caller has already read it. ``overrides`` maps a
    pass name to config values replacing the stored ones on replay (for values an artifact cannot
    hold, such as pd-relu's user function: ``{"pd-relu": {"fn": h}}``).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    record = validate_record(record, p.name) if record is not None else read_provenance(p)
    try:
        return _rebuild(p, record, overrides)
    except ArtifactError:
        raise
    except NetsurgeonError as err:  # keep the type (a ConfigError stays one), name the file
        message = f"{p.name}: cannot be rebuilt from its header: {err}"
        try:
            again = type(err)(message)
        except TypeError:
            again = ArtifactError(message)
        raise again from None
    except Exception as err:  # a header that validates but that a pass or the model library still rejects
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise ArtifactError(f"{p.name}: cannot be rebuilt from its header ({type(err).__name__}: {first}); "
                            "re-export the model with netsurgeon.") from None


def _rebuild(p: Path, record: dict, overrides: dict[str, dict[str, Any]] | None) -> nn.Module:
    from netsurgeon.api import apply
    from netsurgeon.models.checkpoint import load_state_strict, read_checkpoint
    from netsurgeon.models.load import build_model, resolve_spec

    info = ModelInfo.from_dict(record["model"], registered=registered_contract)
    library, name = resolve_spec(info.spec)
    kwargs = dict(info.kwargs)
    num_classes = kwargs.pop("num_classes", None)
    model, _ = build_model(library, name, num_classes=num_classes, pretrained=False, kwargs=kwargs)
    model.eval()
    set_info(model, ModelInfo(spec=info.spec, kwargs=info.kwargs, input_size=info.input_size))
    structural = []
    for step in parse_history(record["passes"], registered=registered_contract):
        spec = get_pass(step.pass_name)
        if spec.structural:
            values = {**step.plain_config(), **(overrides or {}).get(spec.name, {})}
            structural.append((step, spec.make_config(values)))
    if structural:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoEffectWarning)
            result = apply(model, [c for _, c in structural], verify=False, allow_reapply=True)
        for (step, _), pass_report in zip(structural, result.report.passes, strict=True):
            replayed = [c.site for c in pass_report.changes]
            if step.sites is not None and replayed != list(step.sites):
                raise ArtifactError(
                    f"{p.name}: replaying {step.pass_name} selected different sites than when the artifact was "
                    f"made ({len(replayed)} vs {len(step.sites)}); the installed torchvision/timm "
                    f"({record['versions']}) may build {info.spec} differently."
                )
        model = result.model
    try:
        state = read_checkpoint(p)
        expected = record.get("tensors")
        if expected is not None:
            _match_dtypes(model, state, expected["dtype"], p)
        load_state_strict(model, state, f"artifact {p.name}")
    except CheckpointError as err:
        raise ArtifactError(str(err)) from None
    if expected is not None and tensor_digest(state) != expected["sha256"]:
        raise ArtifactError(f"{p.name}: the tensor data does not match the sha256 digest in its header (the weights "
                            "were changed after export, or the file is damaged); re-export the model.")
    info.sources = [str(p.resolve())]
    set_info(model, info)
    return model.eval()


def _match_dtypes(model: nn.Module, state: dict[str, torch.Tensor], recorded: str | dict[str, str], p: Path) -> None:
    """Check the file's floating tensors have the recorded dtypes, and give the rebuilt model those dtypes
    (a float16 model reloads as float16)."""
    floats = [k for k, v in state.items() if v.is_floating_point()]
    wanted = {k: recorded for k in floats} if isinstance(recorded, str) else dict(recorded)
    wrong = [f"{k} is {_dtype_name(state[k])}, the header says {wanted.get(k, 'not floating-point')}"
             for k in floats if _dtype_name(state[k]) != wanted.get(k)]
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise ArtifactError(f"{p.name}: {wrong[0]}{more}; the tensors were re-saved in another dtype after export: "
                            "re-export the model.")
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    for key, name in wanted.items():
        tensor = own.get(key)
        dtype = getattr(torch, name)
        if tensor is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            tensor.data = tensor.data.to(dtype)
