"""The tracing ladder: one way for every pass to get a graph of a model.

Rungs, tried in order, each on a fresh deep copy of the caller's model (so the caller's instance is
never traced, and no instance is traced twice):

1. ``fx``: plain ``torch.fx`` symbolic tracing (every torchvision classifier, most timm models).
2. ``fx+timm-leaves``: fx with timm's registered no-trace modules kept as leaves and its no-trace
   functions autowrapped (timm ``vgg16``, whose ``ConvMlp`` branches on ``x.shape``). Activations
   hidden inside those leaves are reached by module-level edits (see ``graph.sites``).
3. ``module-tree``: no graph at all; only passes that can work on the module tree accept it.

netsurgeon's own inserted modules are always leaves, so re-tracing a model never traces through a
custom ``autograd.Function`` (which would silently drop its backward).

fx patches ``nn.Module.__call__`` and ``__getattr__`` process-wide while it traces, so a second thread
tracing (or running a forward) at the same moment sees the first one's patch. Every fx trace netsurgeon
does holds :data:`TRACE_LOCK`, and ``apply``/``plan`` hold it for their whole run (their probe forwards
too): calls from several threads are safe, one surgery at a time.

Tracing happens in eval mode: graphs are specialised to inference control flow (for example
GoogLeNet's auxiliary heads are not part of the graph). That is why a graph is only where passes
*analyse*: edits are applied to the user's own model (``graph.scoped``), which keeps its train mode.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import fx, nn

from netsurgeon.modes import in_mode

__all__ = ["Rung", "Traced", "called_with_input_only", "concrete_args", "forward_params", "is_netsurgeon_leaf",
           "register_leaf", "trace"]

_LEAF_TYPES: set[type[nn.Module]] = set()
_RUNG_ATTR = "_netsurgeon_rung"


def register_leaf(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: instances of ``cls`` are never traced through."""
    _LEAF_TYPES.add(cls)
    return cls


def is_netsurgeon_leaf(module: nn.Module) -> bool:
    return isinstance(module, tuple(_LEAF_TYPES)) if _LEAF_TYPES else False


class Rung(str, Enum):
    FX = "fx"
    FX_TIMM_LEAVES = "fx+timm-leaves"
    MODULE_TREE = "module-tree"


@dataclass
class Traced:
    """A working copy of a model and how it was obtained."""

    module: nn.Module  # a GraphModule on the fx rungs; the copied model itself on the module-tree rung
    rung: Rung
    failures: list[str] = field(default_factory=list)  # why earlier rungs failed, in order
    autowrap: tuple[Callable, ...] = ()  # functions the rung's tracer kept as calls (timm's no-trace ones)

    @property
    def gm(self) -> fx.GraphModule:
        if not isinstance(self.module, fx.GraphModule):
            raise TypeError("this model has no graph (module-tree rung)")
        return self.module

    @property
    def has_graph(self) -> bool:
        return isinstance(self.module, fx.GraphModule)


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...] = (), autowrap: tuple[Callable, ...] = ()) -> None:
        super().__init__(autowrap_functions=autowrap)
        self._extra_leaves = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if is_netsurgeon_leaf(m) or (self._extra_leaves and isinstance(m, self._extra_leaves)):
            return True
        return super().is_leaf_module(m, qualname)


def _timm_notrace() -> tuple[tuple[type, ...], tuple[Callable, ...]]:
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # timm missing or too old: this rung is unavailable
        return (), ()
    return tuple(get_notrace_modules()), tuple(get_notrace_functions())


def forward_params(module: nn.Module) -> list[inspect.Parameter]:
    """The parameters of the module's ``forward`` after ``self``."""
    try:
        return list(inspect.signature(type(module).forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return []


def concrete_args(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments after the first that a trace of ``module`` alone must keep as they were called:
    None and plain values as they are, lists/tuples of tensors as placeholders (``fx.PH``) for each."""
    params = forward_params(module)
    try:
        bound = inspect.signature(type(module).forward).bind(module, *args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    concrete: dict[str, Any] = {}
    for param in params[1:]:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        value = bound.arguments.get(param.name, param.default)
        if isinstance(value, torch.Tensor):
            continue
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            concrete[param.name] = type(value)(fx.PH for _ in value)
        elif value is None or isinstance(value, (bool, int, float, str)):
            concrete[param.name] = value
    first = params[0] if params else None
    if first is not None and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and args:
        value = args[0]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            concrete[first.name] = type(value)(fx.PH for _ in value)
    return concrete


def called_with_input_only(model: nn.Module) -> dict[str, Any]:
    """The arguments after the input that ``model(x)`` leaves at their defaults, as fx ``concrete_args``.

    A graph must be of the forward that runs: timm Hiera's ``forward(x, mask=None)`` applies its head
    only ``if mask is None``, which a placeholder ``mask`` (a Proxy, never None) would silently skip.
    """
    return concrete_args(model, (fx.PH,), {})


#: held by every fx trace (and by ``api.apply``/``plan`` throughout): fx's patching is process-wide
TRACE_LOCK = threading.RLock()


def _fx_trace(model: nn.Module, tracer: _Tracer) -> fx.GraphModule:
    with in_mode(model, False), TRACE_LOCK:
        graph = tracer.trace(model, concrete_args=called_with_input_only(model) or None)
    gm = fx.GraphModule(tracer.root, graph, model.__class__.__name__)
    _restore_untraced_state(model, gm)
    gm.training = model.training  # the containers only: shared submodules keep their own flags
    for path, container in gm.named_modules():
        if path and not any(True for _ in container.parameters(recurse=False)) and type(container) is nn.Module:
            container.training = model.training
    return gm


def _restore_untraced_state(model: nn.Module, gm: fx.GraphModule) -> None:
    """Re-attach stateful submodules the graph never calls (e.g. inception's AuxLogits).

    GraphModule copies only what the graph uses; without this, the state_dict would silently lose keys
    and an exported artifact would no longer load into the original constructor.
    """
    present = set(_tensor_names(gm))
    for path, module in model.named_modules():
        if not path:
            continue
        own = [f"{path}.{k}" for k, _ in module.named_parameters(recurse=False)]
        own += [f"{path}.{k}" for k, _ in module.named_buffers(recurse=False)]
        if own and not all(k in present for k in own):
            gm.add_submodule(path, module)
            present.update(_tensor_names(module, path))


def _tensor_names(module: nn.Module, prefix: str = "") -> list[str]:
    """Every parameter and buffer name (tied ones under each of their names, as in a state_dict)."""
    return [k for k, _ in module.named_parameters(prefix, remove_duplicate=False)] + [
        k for k, _ in module.named_buffers(prefix, remove_duplicate=False)]


def trace(model: nn.Module, *, allow_module_tree: bool = True, copy_model: bool = True) -> Traced:
    """Walk the ladder and return the first rung that works (see module docstring).

    The caller's ``model`` is deep-copied per attempt and never traced itself, unless ``copy_model`` is
    False: then the graph is built on ``model`` itself and shares its submodules (the workspace traces its
    own working copy this way, so an analysis graph and the model it describes hold the same weights).
    A GraphModule (a user's own fx model) already is a graph: it is used with its node meta rather than
    traced again, since re-tracing its flat generated code would lose the module scopes.
    """
    if isinstance(model, fx.GraphModule):
        copied = copy.deepcopy(model) if copy_model else model
        return Traced(copied, Rung(getattr(model, _RUNG_ATTR, Rung.FX.value)))
    failures: list[str] = []
    leaves, autowrap = _timm_notrace()
    rungs: list[tuple[Rung, _Tracer]] = [(Rung.FX, _Tracer())]
    if leaves or autowrap:
        rungs.append((Rung.FX_TIMM_LEAVES, _Tracer(leaves, autowrap)))
    for rung, tracer in rungs:
        candidate = copy.deepcopy(model) if copy_model else model
        try:
            gm = _fx_trace(candidate, tracer)
        except Exception as err:  # fx raises many types (TraceError, TypeError, AttributeError...)
            failures.append(f"{rung.value}: {type(err).__name__}: {_first_line(err)}")
            continue
        object.__setattr__(gm, _RUNG_ATTR, rung.value)
        return Traced(gm, rung, failures, autowrap if rung is Rung.FX_TIMM_LEAVES else ())
    if allow_module_tree:
        return Traced(copy.deepcopy(model) if copy_model else model, Rung.MODULE_TREE, failures)
    from netsurgeon.errors import TraceError

    raise TraceError("torch.fx cannot trace this model (" + "; ".join(failures) + ").")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""
