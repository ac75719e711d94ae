"""Reading checkpoints safely: safetensors, or torch pickles with ``weights_only=True`` and an explicit
allow-list of the metadata classes trainers write; the weight entry (raw or EMA) is chosen and named."""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import pickle
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netsurgeon.errors import CheckpointError

__all__ = ["CHECKPOINT_SUFFIXES", "EMA_ENTRIES", "RAW_ENTRIES", "WEIGHTS_CHOICES", "Checkpoint", "check_finite",
           "check_weights_choice", "describe_load_error", "load_state_strict", "read_checkpoint",
           "read_trainer_checkpoint", "sha256_file"]

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".pth.tar", ".tar")
#: where trainers put the weights they train (timm train.py, torchvision references, Lightning, others)
RAW_ENTRIES = ("state_dict", "model", "model_state_dict", "module", "net", "weights")
#: where they put an exponential moving average of them (timm ``state_dict_ema``, torchvision ``model_ema``)
EMA_ENTRIES = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
WEIGHTS_CHOICES = ("raw", "ema")
_PREFIXES = ("module.", "_orig_mod.")
#: the files of a timm / Hugging Face hub directory (``config.json`` beside one of them), in timm's order
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _safe_globals() -> list:
    """What trainers pickle besides tensors and plain containers: loaded by ``torch.load(weights_only=True)``
    with only these extra classes allowed (as timm does for its own checkpoints); no code ever runs."""
    return [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath,
            pathlib.PureWindowsPath]


@dataclass
class Checkpoint:
    """A flat state dict read from a trainer's file, and which entry of it was used."""

    state: dict[str, torch.Tensor]
    entry: str | None = None  # "state_dict", "state_dict_ema", "model_ema", ...; None for a bare state dict
    alternatives: list[str] = field(default_factory=list)  # other weight entries the file holds (unused)
    prefix: str = ""  # the key prefix stripped (Lightning's attribute, DDP's ``module.``)
    dropped: int = 0  # keys outside the prefix that matched the model (a Lightning loss's buffers...)

    def describe(self) -> str:
        """`` [entry state_dict_ema]``, with the EMA hint when EMA weights were there but not used."""
        if self.entry is None:
            return ""
        text = f" [entry {self.entry}"
        ema = [a for a in self.alternatives if a in EMA_ENTRIES or _is_ema_name(a.rpartition("/")[2])]
        if ema and self.entry not in EMA_ENTRIES and not _is_ema_name(self.entry.rpartition("/")[2]):
            text += f"; EMA weights also present ({ema[0]}): --weights ema (Python: weights='ema') uses them"
        return text + "]"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_weights_choice(weights: object) -> str | None:
    if weights is None or weights in WEIGHTS_CHOICES:
        return weights  # type: ignore[return-value]
    raise CheckpointError(f"weights must be one of {', '.join(WEIGHTS_CHOICES)} (or None: the trainer's default), "
                          f"got {str(weights)[:40]!r}.")


def read_checkpoint(path: str | Path, *, weights: str | None = None,
                    model_keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from ``path`` (see :func:`read_trainer_checkpoint`)."""
    return read_trainer_checkpoint(path, weights=weights, model_keys=model_keys).state


def read_trainer_checkpoint(path: str | Path, *, weights: str | None = None,
                            model_keys: Iterable[str] | None = None) -> Checkpoint:
    """The weights of a checkpoint as users' trainers write it.

    * a bare state dict (``.safetensors``, ``.pth``, ``.pt``, ``.bin``);
    * timm ``train.py`` (``model_best.pth.tar``: ``state_dict``, ``state_dict_ema``, an ``args`` Namespace);
    * torchvision's reference scripts (``model``, ``model_ema``, ``optimizer``, ``args``...);
    * Lightning ``.ckpt`` (``state_dict`` whose keys carry the LightningModule's attribute prefix: the
      prefix is the one under which ``model_keys`` are found, not a guessed name);
    * a timm / Hugging Face hub directory (``config.json`` with ``model.safetensors`` or ``pytorch_model.bin``).

    ``weights`` picks ``"raw"`` or ``"ema"``; None uses the trainer's own default (the raw weights) and the
    result names the EMA entry it left. Pickles are read with ``weights_only=True`` and an explicit
    allow-list (:func:`_safe_globals`). A prefix shared by every key (``module.``, ``_orig_mod.``) is stripped.
    """
    weights = check_weights_choice(weights)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} not found; check the path.")
    if p.is_dir():
        p = _hub_weights(p)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a file.")
    name = p.name.lower()
    suffix = next((s for s in CHECKPOINT_SUFFIXES if name.endswith(s)), p.suffix.lower())
    if suffix == ".safetensors":
        raw = _read_safetensors(p)
    elif suffix in CHECKPOINT_SUFFIXES:
        raw = _read_pickle(p)
    else:
        raise CheckpointError(
            f"checkpoint {p.name}: unsupported file type {suffix or '(none)'}; "
            f"use one of {', '.join(CHECKPOINT_SUFFIXES)}, or a hub directory (config.json + model.safetensors)."
        )
    return _unwrap(raw, p, weights, model_keys)


def _hub_weights(folder: Path) -> Path:
    for name in HUB_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"checkpoint {folder} is not a file, nor a hub directory (one holding "
                          f"{' or '.join(HUB_WEIGHT_FILES)}); give the weights file itself.")


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


def _unsafe_global(err: BaseException) -> str:
    found = re.search(r"(?:Unsupported global|GLOBAL) ?:? ?(?:GLOBAL )?([A-Za-z_][\w.]*)", str(err))
    return f" (it names {found.group(1)})" if found else ""


def describe_load_error(err: BaseException, name: str) -> str:
    """One line about a failed ``torch.load(weights_only=True)`` of ``name``. torch's own message advises
    retrying with ``weights_only=False`` or allow-listing globals, which would run the file's code: that
    advice is never passed on."""
    if _is_unsafe(err):
        return (f"refused to load {name}: it pickles objects or code beyond plain tensors and the metadata "
                f"trainers write{_unsafe_global(err)}, and netsurgeon only loads checkpoints with weights_only=True. "
                "Re-save the weights alone (torch.save(model.state_dict(), path)) or as .safetensors.")
    lines = [line for line in str(err).strip().splitlines()
             if "weights_only" not in line and "safe_globals" not in line and line.strip()]
    detail = (lines[0] if lines else type(err).__name__)[:160]
    return f"{name} could not be read (truncated or not a torch checkpoint?): {detail}"


def _read_pickle(p: Path) -> object:
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe content, zip errors, EOFError, RuntimeError on truncated archives
        raise CheckpointError(describe_load_error(err, f"checkpoint {p.name}")) from None


def _weight_entries(obj: dict) -> dict[str, dict]:
    return {k: v for k, v in obj.items() if k in RAW_ENTRIES + EMA_ENTRIES and isinstance(v, dict) and v}


def _pick(obj: dict, p: Path, weights: str | None) -> tuple[object, str | None, list[str]]:
    """The weight entry of a trainer's dict: ``(value, its name, the other weight entries)``."""
    if _mostly_tensors(obj):
        if weights == "ema":
            raise CheckpointError(f"checkpoint {p.name} is a bare state dict with no EMA entry; drop --weights ema.")
        return obj, None, []
    entries = _weight_entries(obj)
    raw = [k for k in RAW_ENTRIES if k in entries]
    ema = [k for k in EMA_ENTRIES if k in entries]
    wanted = ema if weights == "ema" else raw if weights == "raw" else raw or ema
    if not wanted and weights == "ema" and raw:  # Lightning: an EMA copy is a prefix of state_dict (see _choose)
        wanted = raw
    if not wanted:
        keys = ", ".join(map(str, list(obj)[:8]))
        if weights is None:
            raise CheckpointError(f"checkpoint {p.name} holds no tensors (top-level keys: {keys}); expected a state "
                                  f"dict or one under {', '.join(RAW_ENTRIES + EMA_ENTRIES[:2])}.")
        raise CheckpointError(f"checkpoint {p.name} holds no {'EMA' if weights == 'ema' else 'raw'} entry "
                              f"(top-level keys: {keys}); expected one of "
                              f"{', '.join(EMA_ENTRIES if weights == 'ema' else RAW_ENTRIES)}.")
    entry = wanted[0]
    return entries[entry], entry, [k for k in entries if k != entry]


def _unwrap(obj: object, p: Path, weights: str | None = None,
            model_keys: Iterable[str] | None = None) -> Checkpoint:
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {p.name} holds a {type(obj).__name__}, not a state dict.")
    inner, entry, alternatives = _pick(obj, p, weights)
    for _ in range(3):  # {"model": {"state_dict": {...}}}: nested once more
        if isinstance(inner, dict) and not _mostly_tensors(inner):
            nested = next((inner[k] for k in RAW_ENTRIES if isinstance(inner.get(k), dict)), None)
            if nested is None:
                break
            inner = nested
    if not isinstance(inner, dict):
        raise CheckpointError(f"checkpoint {p.name} holds a {type(inner).__name__}, not a state dict.")
    state = {k: v for k, v in inner.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        keys = ", ".join(map(str, list(inner)[:6]))
        raise CheckpointError(f"checkpoint {p.name} holds no tensors (top-level keys: {keys}).")
    if entry in EMA_ENTRIES:  # torchvision's AveragedModel: module.* and a counter
        state.pop("n_averaged", None)
    before = len(state)
    keys = set(model_keys) if model_keys is not None else None
    copies = _copies(state, keys) if keys else []
    if len(copies) > 1 or (weights == "ema" and entry not in EMA_ENTRIES):
        prefix = _choose(copies, p, weights)
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        others = [c for c in copies if c != prefix]
        def name(copy: str) -> str:  # state_dict/ema.: the entry, then the prefix of the copy
            return f"{entry}/{copy}" if entry else copy

        return Checkpoint(state, name(prefix), alternatives + [name(c) for c in others], prefix, before - len(state))
    state, prefix = _strip_prefix(state, keys)
    return Checkpoint(state, entry, alternatives, prefix, before - len(state))


def _is_ema_name(prefix: str) -> bool:
    """Whether a key prefix names an EMA copy (``ema.``, ``model_ema.``, ``ema_model.``, ``net.ema.``)."""
    return any("ema" in part.split("_") for part in prefix.rstrip(".").split("."))


def _copies(state: dict[str, torch.Tensor], model_keys: set[str]) -> list[str]:
    """The non-empty key prefixes under which every one of the model's keys is found: each a full copy of the
    model (a Lightning module holding ``student`` and ``ema``, ``model`` and ``model_ema``...)."""
    found: dict[str, set[str]] = {}
    for key in state:
        parts = key.split(".")
        for i in range(1, len(parts)):
            rest = ".".join(parts[i:])
            if rest in model_keys:
                found.setdefault("".join(f"{part}." for part in parts[:i]), set()).add(rest)
    return sorted(p for p, keys in found.items() if keys == model_keys)


def _choose(copies: list[str], p: Path, weights: str | None) -> str:
    """The copy ``weights`` picks: ``ema`` the one EMA-named prefix, ``raw`` the one other; anything else (no
    choice, or one that does not single a copy out) is an error naming them all."""
    ema = [c for c in copies if _is_ema_name(c)]
    raw = [c for c in copies if not _is_ema_name(c)]
    wanted = ema if weights == "ema" else raw if weights == "raw" else []
    if len(wanted) == 1:
        return wanted[0]
    if weights == "ema" and not ema:
        raise CheckpointError(f"checkpoint {p.name} holds no EMA entry nor an EMA copy of the model's weights "
                              f"(copies under: {', '.join(copies) or 'none'}); drop --weights ema.")
    names = ", ".join(copies)
    hint = (f"choose with --weights raw ({raw[0]}) or --weights ema ({ema[0]}) (Python: weights=)"
            if len(raw) == 1 and len(ema) == 1 else
            "re-save the copy you want as a bare state dict (its keys without the prefix)")
    raise CheckpointError(f"checkpoint {p.name} holds {len(copies)} full copies of the model's weights, under "
                          f"{names}; {hint}.")


def _strip_prefix(state: dict[str, torch.Tensor], model_keys: set[str] | None) -> tuple[dict[str, torch.Tensor], str]:
    """Strip the prefix under which the model's keys are found (most matches wins; '' when they match as
    they are); without the model's keys, strip ``module.``/``_orig_mod.`` shared by every key."""
    if model_keys:
        votes: Counter = Counter()
        for key in state:
            parts = key.split(".")
            for i in range(len(parts)):
                if ".".join(parts[i:]) in model_keys:
                    votes["".join(f"{part}." for part in parts[:i])] += 1
        if votes and votes.get("", 0) < max(votes.values()):
            prefix = max(votes, key=lambda k: (votes[k], -len(k)))
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, prefix
        if votes:
            return state, ""
    stripped = ""
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            stripped += prefix
    return state, stripped


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
