"""Reading checkpoints safely: safetensors, or torch pickles with ``weights_only=True`` only."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn

from netsurgeon.errors import CheckpointError

__all__ = ["CHECKPOINT_SUFFIXES", "check_finite", "describe_load_error", "load_state_strict", "read_checkpoint",
           "sha256_file"]

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from ``path``.

    Nested ``state_dict``/``model``/... entries are unwrapped, and a prefix shared by every key
    (``module.`` from DistributedDataParallel, ``_orig_mod.`` from torch.compile) is stripped.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} not found; check the path.")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a file.")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        raw = _read_safetensors(p)
    elif suffix in CHECKPOINT_SUFFIXES:
        raw = _read_pickle(p)
    else:
        raise CheckpointError(
            f"checkpoint {p.name}: unsupported file type {suffix or '(none)'}; "
            f"use one of {', '.join(CHECKPOINT_SUFFIXES)}."
        )
    return _unwrap(raw, p)


def _read_safetensors(p: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as err:  # safetensors raises SafetensorError, OSError, ValueError...
        raise CheckpointError(
            f"checkpoint {p.name} could not be read as safetensors (truncated or corrupt?): {_short(err)}"
        ) from None


def _is_unsafe(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, pickle.UnpicklingError) and (
        "weights only" in text.lower() or "weights_only" in text or "Unsupported global" in text)


def describe_load_error(err: BaseException, name: str) -> str:
    """One line about a failed ``torch.load(weights_only=True)`` of ``name``. torch's own message advises
    retrying with ``weights_only=False`` or allow-listing globals, which would run the file's code: that
    advice is never passed on."""
    if _is_unsafe(err):
        return (f"refused to load {name}: it pickles objects or code beyond plain tensors, and netsurgeon only "
                "loads checkpoints with weights_only=True. Re-save the weights alone "
                "(torch.save(model.state_dict(), path)) or as .safetensors.")
    lines = [line for line in str(err).strip().splitlines()
             if "weights_only" not in line and "safe_globals" not in line and line.strip()]
    detail = (lines[0] if lines else type(err).__name__)[:160]
    return f"{name} could not be read (truncated or not a torch checkpoint?): {detail}"


def _read_pickle(p: Path) -> object:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe content, zip errors, EOFError, RuntimeError on truncated archives
        raise CheckpointError(describe_load_error(err, f"checkpoint {p.name}")) from None


def _unwrap(obj: object, p: Path) -> dict[str, torch.Tensor]:
    for _ in range(4):
        if isinstance(obj, dict) and not _mostly_tensors(obj):
            inner = next((obj[k] for k in _NESTING_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if isinstance(obj, nn.Module):  # not reachable with weights_only, kept for clarity
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {p.name} holds a {type(obj).__name__}, not a state dict.")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        keys = ", ".join(map(str, list(obj)[:6]))
        raise CheckpointError(f"checkpoint {p.name} holds no tensors (top-level keys: {keys}).")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _mostly_tensors(d: dict) -> bool:
    return bool(d) and sum(isinstance(v, torch.Tensor) for v in d.values()) * 2 > len(d)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    not_float = [f"{k} ({state[k].dtype})" for k, v in own.items()
                 if k in state and v.is_floating_point() and not state[k].is_floating_point()]
    if not_float:
        raise CheckpointError(f"{source} holds non-float weights for float parameters: {_few(not_float)}; "
                              "re-save the checkpoint with float weights (they would be cast silently).")
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {_few(shapes)}")
        hint = " (is --num-classes right?)" if shapes else " (is it the right architecture?)"
        raise CheckpointError(f"{source} does not match the model: {'; '.join(parts)}{hint}")
    check_finite(state, source)
    model.load_state_dict(state, strict=True)


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged or damaged checkpoint would export "fine")."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source} holds NaN or infinite values in {len(bad)} tensor(s): {_few(bad)}; "
                              "the weights are damaged (a diverged run?): use an earlier checkpoint.")


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:160]
