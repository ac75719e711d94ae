"""``load_model``: one entry point for timm, torchvision, netsurgeon's tiny models, and artifacts.

Model specs:

* ``timm:NAME`` and ``torchvision:NAME`` (or ``tv:NAME``) pick the library;
* a bare ``NAME`` resolves to **torchvision** when torchvision has it (its architectures are the
  reference implementations the papers used), otherwise to timm;
* ``netsurgeon:NAME`` builds a tiny test model from :mod:`netsurgeon.testing`;
* a path to a netsurgeon ``.safetensors`` artifact (or a directory holding ``model.safetensors``) is
  loaded by :mod:`netsurgeon.loading`, above the orchestrator its replay calls.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from netsurgeon.errors import (
    ArtifactError,
    ConfigError,
    ModelLoadError,
    PretrainedUnavailableError,
    UnknownNameError,
    suggest,
)
from netsurgeon.models.checkpoint import (
    Checkpoint,
    check_weights_choice,
    load_state_strict,
    read_trainer_checkpoint,
    sha256_file,
)
from netsurgeon.models.head import load_state_new_head
from netsurgeon.models.info import DEFAULT_INPUT_SIZE, ModelInfo, set_info
from netsurgeon.validate import check_input_channels, check_input_size, check_model_kwargs

__all__ = ["build_model", "check_spec", "describe_weights", "is_artifact_path", "load_from_spec", "resolve_spec",
           "weights_source"]

_PREFIXES = {"timm": "timm", "torchvision": "torchvision", "tv": "torchvision", "netsurgeon": "netsurgeon"}


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _timm_names() -> list[str]:
    import timm

    return list(timm.list_models())


def _netsurgeon_names() -> list[str]:
    from netsurgeon.testing import MODELS

    return list(MODELS)


def resolve_spec(spec: str) -> tuple[str, str]:
    """``(library, name)`` for a model spec; unknown names raise with close matches."""
    library, sep, name = spec.partition(":")
    if sep and library in _PREFIXES:
        library = _PREFIXES[library]
        names = {"timm": _timm_names, "torchvision": _torchvision_names, "netsurgeon": _netsurgeon_names}[library]()
        if name not in names:
            raise UnknownNameError(f"unknown {library} model {name!r}.{suggest(name, names)}")
        return library, name
    if sep:
        raise UnknownNameError(
            f"unknown model prefix {library!r} in {spec!r}; use timm:, torchvision:, netsurgeon:, or a bare name."
        )
    tv, tm = _torchvision_names(), _timm_names()
    if spec in tv:
        return "torchvision", spec
    if spec in tm:
        return "timm", spec
    raise UnknownNameError(f"unknown model {spec!r}.{suggest(spec, tv + tm + _netsurgeon_names())} "
                           "Names come from torchvision and timm (prefix with timm: or torchvision:).")


def build_model(library: str, name: str, *, num_classes: int | None, pretrained: bool,
                kwargs: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """Construct the architecture (random weights unless ``pretrained``) and its input size."""
    kw = dict(kwargs)
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if library == "netsurgeon":
        from netsurgeon.testing import MODELS

        if pretrained:
            raise ModelLoadError(f"netsurgeon:{name} is a test model and has no pretrained weights.")
        try:
            model = MODELS[name](**kw)
        except TypeError as err:
            raise ModelLoadError(f"netsurgeon:{name} could not be built: {err}") from None
        return model, tuple(getattr(model, "input_size", (3, 32, 32)))
    if library == "timm":
        import timm

        try:
            with _hub_offline_when_unreachable() if pretrained else contextlib.nullcontext():
                model = timm.create_model(name, pretrained=pretrained, **kw)
        except Exception as err:
            if pretrained:
                raise _offline(f"timm:{name}", err) from None
            raise ModelLoadError(f"timm could not build {name!r}: {err}") from None
        size = tuple(model.pretrained_cfg.get("input_size", DEFAULT_INPUT_SIZE))
        return model, size
    import torchvision

    if pretrained and num_classes is not None:
        raise ModelLoadError(
            "torchvision pretrained weights come with their own class count; load without --num-classes "
            "(or use timm:NAME, which resizes the head of pretrained models)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # googlenet/inception init-weights notices
            model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kw)
    except Exception as err:
        if pretrained:
            raise _offline(f"torchvision:{name}", err) from None
        raise ModelLoadError(f"torchvision could not build {name!r}: {err}") from None
    size = (3, 299, 299) if name == "inception_v3" else DEFAULT_INPUT_SIZE
    return model, size


#: seconds to reach the Hugging Face Hub before pretrained weights are looked up in the local cache only
HUB_CONNECT_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = HUB_CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face Hub (``HF_ENDPOINT``) opens within ``timeout`` seconds."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hub_offline_when_unreachable() -> Iterator[None]:
    """huggingface_hub's offline mode (``HF_HUB_OFFLINE``: cached files only, no request) while the hub cannot be
    reached: a cached download still loads, a missing one fails at once instead of after ~50 s of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def _offline(spec: str, err: BaseException) -> PretrainedUnavailableError:
    return PretrainedUnavailableError(
        f"could not fetch pretrained weights for {spec} ({type(err).__name__}; offline?). "
        f"Download them elsewhere and pass the file instead: --checkpoint weights.safetensors "
        f"(Python: load_model({spec!r}, checkpoint='weights.pth'))."
    )


def is_artifact_path(spec: str) -> bool:
    p = Path(spec)
    return spec.endswith(".safetensors") or (p.is_dir() and (p / "model.safetensors").exists())


def check_spec(spec: object) -> str:
    """``spec`` as text, or a one-line ConfigError for anything that cannot be a model spec or path."""
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise ConfigError(f"load_model() needs a model spec such as 'timm:resnet50' or an artifact path, got "
                          f"{type(spec).__name__}.")
    text = os.fspath(spec)
    if not isinstance(text, str):
        raise ConfigError("load_model() needs the spec as text, not bytes.")
    return text


def load_from_spec(
    spec: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    num_classes: int | None = None,
    pretrained: bool = False,
    input_size: Sequence[int] | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a library model and load its weights; returns an ``nn.Module`` in eval mode.

    Artifacts are loaded one layer up, by :func:`netsurgeon.loading.load_model` (the public
    ``netsurgeon.load_model``), since rebuilding one replays its passes.

    Args:
        spec: ``timm:NAME``, ``torchvision:NAME``, a bare ``NAME`` or ``netsurgeon:NAME``.
        checkpoint: weights to load strictly: ``.safetensors``, ``.pth/.pt/.bin/.ckpt/.pth.tar`` read with
            ``torch.load(weights_only=True)`` (and an allow-list of trainers' metadata: ``argparse.Namespace``,
            paths), or a hub directory (``config.json`` + ``model.safetensors``/``pytorch_model.bin``). The
            trainers' layouts are read: timm ``train.py`` (``state_dict``/``state_dict_ema``), torchvision
            references (``model``/``model_ema``), Lightning (``state_dict`` under the prefix where the model's
            keys are found), DDP ``module.`` and torch.compile ``_orig_mod.`` prefixes.
        weights: ``"raw"`` or ``"ema"``: which of a trainer's weight entries to load (default: the raw
            weights, the trainers' own default; the report then says when EMA weights were there too).
        num_classes: the class count of the model to build (its head is sized accordingly). When it
            differs from the checkpoint's, the checkpoint's classifier is left out and the new one keeps
            its fresh initialisation (transfer learning); every other weight still loads strictly, and
            the re-initialised keys are recorded (``ModelInfo.reinitialized``, the report, provenance).
        pretrained: fetch the library's pretrained weights (needs the network).
        input_size: the (C, H, W) the model will be fed (default: the library's), recorded in the
            provenance and used for probes, data resizing and export. Not for artifacts (recorded there).
        **kwargs: further constructor arguments for the library.

    Raises:
        UnknownNameError, CheckpointError, PretrainedUnavailableError, ArtifactError.
    """
    spec = check_spec(spec)
    if is_artifact_path(spec):
        raise ArtifactError(f"{spec} is a netsurgeon artifact: load it with netsurgeon.load_model (which replays "
                            "its passes), not netsurgeon.models.load.load_from_spec.")
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                    or num_classes < 1):
        raise ModelLoadError(f"num_classes must be a positive integer, got {num_classes!r}.")
    problems = check_model_kwargs(kwargs)
    if problems:
        raise ConfigError(f"{problems[0]}; an artifact can record only these, so other arguments are refused.")
    if input_size is not None:
        input_size = check_input_size(tuple(input_size) if isinstance(input_size, list) else input_size)
    library, name = resolve_spec(spec)
    model, default_size = build_model(library, name, num_classes=num_classes, pretrained=pretrained, kwargs=kwargs)
    kw = dict(kwargs, **({"num_classes": num_classes} if num_classes is not None else {}))
    if input_size is not None:
        check_input_channels(model, input_size)
    info = ModelInfo(spec=f"{library}:{name}", kwargs=kw, input_size=input_size or default_size)
    if pretrained:
        info.checkpoint = f"pretrained:{_pretrained_tag(library, name, model)}"
    if checkpoint is not None:
        path = Path(checkpoint)
        read = read_trainer_checkpoint(path, weights=weights, model_keys=model.state_dict().keys())
        source = f"checkpoint {path.name}" + (f" ({read.entry})" if read.entry else "")
        if num_classes is None:
            load_state_strict(model, read.state, source)
        else:  # a new class count: the checkpoint's classifier may be sized for another one
            info.reinitialized = load_state_new_head(model, read.state, source)
        info.checkpoint = str(path)
        info.checkpoint_sha256 = _digest(path)
        info.checkpoint_entry, info.checkpoint_alternatives = read.entry, list(read.alternatives)
        info.sources.append(str(path.resolve()))
    elif weights is not None:
        check_weights_choice(weights)
        raise ConfigError(f"weights={weights!r} picks an entry of a checkpoint; give checkpoint= as well.")
    model.eval()
    set_info(model, info)
    return model


def _digest(path: Path) -> str:
    """The sha256 of a checkpoint file, or of a hub directory's weights file."""
    if path.is_dir():
        from netsurgeon.models.checkpoint import HUB_WEIGHT_FILES

        path = next(path / n for n in HUB_WEIGHT_FILES if (path / n).is_file())
    return sha256_file(path)


def _pretrained_tag(library: str, name: str, model: nn.Module) -> str:
    """The library's name for the pretrained weights that were loaded (timm's tag, torchvision's enum)."""
    if library == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or {}
        return f"timm:{name}.{cfg['tag']}" if cfg.get("tag") else f"timm:{name}"
    try:
        from torchvision.models import get_model_weights

        return f"torchvision:{get_model_weights(name).DEFAULT}"
    except (ValueError, AttributeError, KeyError):
        return f"{library}:{name}"


def weights_source(info: ModelInfo | None) -> dict[str, Any]:
    """Where a model's weights came from, for the provenance: a checkpoint (path and sha256), the
    library's pretrained tag, or random initialisation."""
    checkpoint = info.checkpoint if info else None
    if checkpoint and checkpoint.startswith("pretrained"):
        return {"source": "pretrained", "tag": checkpoint.partition(":")[2] or None}
    if checkpoint:
        out = {"source": "checkpoint", "path": checkpoint, "sha256": info.checkpoint_sha256}
        if info.checkpoint_entry:
            out["entry"] = info.checkpoint_entry
        return out
    return {"source": "random-init"}


def describe_weights(info: ModelInfo | None, artifact: str | None = None) -> str:
    """One line for reports: ``weights: checkpoint w.pth (sha256 ab12...)``."""
    if artifact is not None:
        from netsurgeon.models.checkpoint import sha256_file

        p = Path(artifact)
        p = p / "model.safetensors" if p.is_dir() else p
        return f"artifact {p} (sha256 {sha256_file(p)[:16]})"
    w = weights_source(info)
    if w["source"] == "pretrained":
        return f"pretrained ({w['tag']})"
    if w["source"] == "checkpoint":
        entry = Checkpoint({}, info.checkpoint_entry, info.checkpoint_alternatives).describe()
        return f"checkpoint {w['path']}{entry} (sha256 {str(w['sha256'])[:16]})"
    return "RANDOM INITIALISATION (no checkpoint, not pretrained)"
