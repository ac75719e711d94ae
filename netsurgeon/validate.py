"""Checks of user input shared by the CLI, the Python API, recipes and artifact headers.

Each check raises a :class:`~netsurgeon.errors.NetsurgeonError` subclass with a one-line message that
says what to do; none allocates or builds anything large before it has decided.
"""

from __future__ import annotations

import math
import os
import stat
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from netsurgeon.errors import ConfigError, ContractViolationError, SurgeryError

__all__ = [
    "MODEL_KWARGS",
    "NotRegularFileError",
    "check_apply_args",
    "check_contract",
    "check_input_channels",
    "check_input_size",
    "check_model_kwargs",
    "check_model_tensors",
    "check_probe_runs",
    "flatten_output",
    "open_regular",
]

#: the largest height or width accepted for a probe / export input
MAX_SIDE = 8192
#: the largest channel count accepted for an input
MAX_CHANNELS = 64
#: activations of a CNN's first stages are about this many times the input, per sample (a generous bound)
_ACTIVATION_FACTOR = 24
#: samples a run pushes through the model at once for its checks (probe batch 2, ONNX parity batch 3)
_PROBE_SAMPLES = 3

#: constructor keywords that ``load_model`` records in the provenance and an artifact may replay, with
#: their types and bounds. Anything else (paths such as timm's ``checkpoint_path``, callables such as
#: ``norm_layer``) could make a crafted artifact open files or run code, so it is refused everywhere.
MODEL_KWARGS: dict[str, tuple[type, float, float]] = {
    "num_classes": (int, 1, 1_000_000),
    "in_chans": (int, 1, MAX_CHANNELS),
    "width": (int, 1, 4096),
    "drop_rate": (float, 0.0, 1.0),
    "drop_path_rate": (float, 0.0, 1.0),
    "dropout": (float, 0.0, 1.0),
    "aux_logits": (bool, 0, 1),
    "init_weights": (bool, 0, 1),
    "zero_init_residual": (bool, 0, 1),
}
_GLOBAL_POOLS = ("", "avg", "max", "avgmax", "catavgmax", "token", "map")


class NotRegularFileError(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a file's bytes were expected."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not a regular file"


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` for a regular file only: a FIFO would block the reader forever and a device such
    as ``/dev/zero`` never ends. The open does not wait (``O_NONBLOCK``: a FIFO without a writer opens at once)
    and the check is made on the opened descriptor, so the path cannot change between check and read.
    Raises :class:`NotRegularFileError` (an ``OSError``) naming what the path is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{os.fspath(path)} is not a regular file ({_file_kind(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_model_kwargs(kwargs: dict[str, Any], where: str = "load_model") -> list[str]:
    """Problems with constructor keywords (empty when fine): only :data:`MODEL_KWARGS` and ``global_pool``,
    each of its type and within bounds."""
    problems = []
    if not isinstance(kwargs, dict):
        return [f"{where}: constructor arguments must be a mapping, got {type(kwargs).__name__}"]
    allowed = ", ".join([*MODEL_KWARGS, "global_pool"])
    for key, value in kwargs.items():
        if key == "global_pool":
            if value not in _GLOBAL_POOLS:
                problems.append(f"{where}: global_pool={value!r} is not one of {', '.join(map(repr, _GLOBAL_POOLS))}")
            continue
        if key not in MODEL_KWARGS:
            problems.append(f"{where}: constructor argument {str(key)[:60]!r} is not allowed (allowed: {allowed})")
            continue
        kind, low, high = MODEL_KWARGS[key]
        ok_type = (isinstance(value, bool) if kind is bool else
                   isinstance(value, int) and not isinstance(value, bool) if kind is int else
                   isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok_type:
            problems.append(f"{where}: {key} must be of type {kind.__name__}, got {str(value)[:40]!r}")
        elif kind is not bool and not (math.isfinite(value) and low <= value <= high):
            problems.append(f"{where}: {key}={value!r} is out of range [{low}, {high}]")
    return problems


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_input_size(size: Any, flag: str = "input_size") -> tuple[int, int, int]:
    """``(C, H, W)`` as ints, refused before anything is allocated when malformed, absurd, or too large to
    run through a model in this machine's memory."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in size):
        raise ConfigError(f"{flag} must be three positive integers C,H,W such as 3,224,224, got {size!r:.60}.")
    c, h, w = (int(v) for v in size)
    if min(c, h, w) < 1:
        raise ConfigError(f"{flag} must be three positive integers C,H,W such as 3,224,224, got {c},{h},{w}.")
    if c > MAX_CHANNELS or max(h, w) > MAX_SIDE:
        raise ConfigError(f"{flag} {c},{h},{w} is out of range: at most {MAX_CHANNELS} channels and "
                          f"{MAX_SIDE} pixels a side.")
    need = _PROBE_SAMPLES * c * h * w * 4 * _ACTIVATION_FACTOR
    have = _memory_bytes()
    if have is not None and need > have:
        raise ConfigError(f"{flag} {c},{h},{w} needs about {need / 1e9:.0f} GB to run through a model, more than "
                          f"this machine's {have / 1e9:.0f} GB; choose a smaller input size.")
    return c, h, w


def _first_conv_channels(model: Any) -> int | None:
    from torch import nn

    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(module.in_channels)
    return None


def check_input_channels(model: Any, size: Sequence[int], flag: str = "input_size") -> None:
    """The channel count of ``size`` must be the one the model's first convolution takes."""
    expected = _first_conv_channels(model)
    if expected is not None and int(size[0]) != expected:
        raise ConfigError(f"{flag} has {size[0]} channel(s) but the model takes {expected}; use "
                          f"{expected},{size[1]},{size[2]} (or build the model with in_chans={size[0]}).")


def check_apply_args(model: Any, passes: Any, input_size: Sequence[int] | None = None) -> None:
    """``apply``'s arguments are a module, something that names passes (not None, not a number), and an
    input size (when given) that the model takes and that fits in memory."""
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ConfigError(f"apply() needs a torch.nn.Module as its model, got {type(model).__name__}; build one "
                          "with netsurgeon.load_model('timm:resnet50').")
    if passes is None or isinstance(passes, (bytes, int, float, dict)):
        raise ConfigError(f"apply() needs passes: a pass name ('erase-relu'), a config, or a list of them; got "
                          f"{type(passes).__name__}. Run 'netsurgeon passes' to list them.")
    check_model_tensors(model, meta=True)  # plan() reads a meta-device model's structure; apply() checks it runs
    if input_size is not None:
        size = check_input_size(tuple(input_size) if isinstance(input_size, list) else input_size)
        check_input_channels(model, size)


def check_model_tensors(model: Any, action: str = "surgery", *, meta: bool = False) -> None:
    """A model whose weights netsurgeon can read and run: not quantized (its packed weights are not tensors a
    pass, the fine-tuning loop or an export can use) and, unless ``meta`` (a dry run plans on the structure
    alone), not on the meta device (it has no weights yet, so no input size would help)."""
    import torch

    state = model.state_dict()
    on_meta = [] if meta else [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_meta]
    if on_meta:
        raise ConfigError(f"the model's weights are on the meta device ({len(on_meta)} tensor(s), e.g. "
                          f"{on_meta[0]}): it has no values for {action}; build it on a real device "
                          "(model.to_empty(device='cpu') then load_state_dict(...), or netsurgeon.load_model).")
    quantized = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.is_quantized]
    if quantized or any(type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
                        for m in model.modules()):
        where = f" (e.g. {quantized[0]})" if quantized else ""
        raise ConfigError(f"the model is quantized{where}: {action} needs a float model; apply netsurgeon to the float "
                          "model, then quantize the result (torch.ao.quantization.quantize_dynamic).")


def check_probe_runs(model: Any, x: Any) -> Any:
    """Run ``model`` once on the probe batch (eval mode, no grad) and return its output; a model that cannot
    take the batch is refused with what to do."""
    import torch

    from netsurgeon.modes import in_mode

    check_model_tensors(model)  # weights on the meta device: that, not the input, is why it cannot run
    try:
        with torch.no_grad(), in_mode(model, False):
            out = model(x)
    except Exception as err:  # any failure of the user's forward on our probe
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise SurgeryError(
            f"the model cannot run on the probe batch of shape {tuple(x.shape)} ({type(err).__name__}: {first}); "
            "pass input_size=(C, H, W) or example_input= with an input it accepts."
        ) from None
    leaves, _ = flatten_output(out)
    if not leaves or not all(isinstance(v, torch.Tensor) for v in leaves):
        kinds = sorted({type(v).__name__ for v in leaves if not isinstance(v, torch.Tensor)}) or ["nothing"]
        raise SurgeryError(f"the model returns a {type(out).__name__} holding {', '.join(kinds)}; netsurgeon checks "
                           "outputs that are a tensor or a list, tuple or dict of tensors: wrap the model so that "
                           "it returns one.")
    return out


def flatten_output(out: Any) -> tuple[list[Any], Any]:
    """The leaves of a model's output, in order, and its structure (what holds them: types, lengths, keys), as
    torch's pytree flattens one: lists, tuples (named ones too), deques and mappings are walked, anything else
    (None included) is a leaf. Two outputs whose structures are equal pair their leaves in order."""
    if isinstance(out, Mapping):
        keys, values = tuple(out), list(out.values())
    elif isinstance(out, (list, tuple, deque)):
        keys, values = None, list(out)
    else:
        return [out], "leaf"
    leaves: list[Any] = []
    shapes = []
    for value in values:
        inner, shape = flatten_output(value)
        leaves += inner
        shapes.append(shape)
    return leaves, (type(out), keys, tuple(shapes))


def check_contract(result: Any, allow_violation: bool) -> None:
    """Refuse a surgery whose verification found its contract violated, unless the caller allows it."""
    v = getattr(result.report, "verification", None)
    if v is None or v.ok or allow_violation:
        return
    if v.contract == "exact":
        what = (f"outputs differ by up to {v.max_abs_diff:.3g} on the probe "
                "(exact passes promise <= 1e-5 x max(1, |output|))")
    else:
        what = "weights that no pass declared changed are not bit-identical"
    raise ContractViolationError(
        f"contract {v.contract} VIOLATED: {what}; nothing was kept. Pass allow_violation=True "
        "(CLI: --allow-violation) to keep the result anyway.", result)
