"""The code generator: it gives a module an edited ``forward`` as a subclass of its own class, which pickles.

A block or root rewrite (:mod:`netsurgeon.graph.scoped`) ends here: the edited graph's generated code becomes
the ``forward`` of a subclass of the module's own class (same name, module and docstring; every other method,
attribute and state_dict key kept). A module called with optional plain arguments (timm DLA's
``block(x, shortcut=None)``) gets a ``forward`` with its class's own signature that dispatches to the variant
traced for each call. Instances pickle (``torch.save(model)``, ``copy.deepcopy``) by rebuilding the class from
the methods' sources, as ``GraphModule`` does.

This module and the ONNX exporter's registry cache (:mod:`netsurgeon.export.onnx`) are the only code that uses
torch's private APIs (``tests/test_private_torch.py`` checks it), so a torch upgrade touches known files.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.fx._symbolic_trace import _assert_is_none
from torch.fx.graph_module import _format_import_block, _method_from_src
from torch.package import sys_importer

from netsurgeon.graph.trace import forward_params

__all__ = ["base_class", "dispatchable", "install_dispatch", "install_forward", "other_calls", "rewritten_class"]

_BASE_ATTR = "_netsurgeon_base"
_SRC_ATTR = "_netsurgeon_sources"
_REBUILT: dict[tuple[type, tuple], type] = {}
_PLAIN = (type(None), bool, int, float, str)


def base_class(module: nn.Module) -> type:
    """The user's class of ``module`` (the class a block/root rewrite subclassed)."""
    return getattr(type(module), _BASE_ATTR, type(module))


def rewritten_class(base: type, methods: dict[str, Callable[..., Any]],
                    sources: dict[str, str] | None = None) -> type:
    """A subclass of ``base`` with ``methods`` (generated code: ``forward``, and the call variants a
    dispatching ``forward`` picks from); same name and module.

    ``sources`` are the methods' sources with their imports (as ``GraphModule`` keeps its code): instances
    then pickle (``torch.save(model)``, ``copy.deepcopy``) by rebuilding the class from them, as
    ``GraphModule`` does, since a class made at run time cannot be found by its name.
    """
    attrs = {**methods, _BASE_ATTR: base, "__module__": base.__module__, "__qualname__": base.__qualname__,
             "__doc__": base.__doc__}
    key = tuple(sorted(sources.items())) if sources is not None else None
    if key is not None:
        attrs[_SRC_ATTR] = key
        attrs["__reduce_ex__"] = _reduce_rewritten
    cls = type(base.__name__, (base,), attrs)
    if key is not None:
        _REBUILT[(base, key)] = cls
    return cls


def _reduce_rewritten(self: nn.Module, protocol: int) -> tuple:
    cls = type(self)
    return _rebuild_rewritten, (getattr(cls, _BASE_ATTR), getattr(cls, _SRC_ATTR)), self.__dict__


def _rebuild_rewritten(base: type, sources: tuple[tuple[str, str], ...]) -> nn.Module:
    """An empty instance of the rewritten subclass of ``base`` with these methods (its state follows)."""
    cls = _REBUILT.get((base, sources))
    if cls is None:
        cls = rewritten_class(base, {name: _method(name, src) for name, src in sources}, dict(sources))
    return cls.__new__(cls)


def _method(name: str, src: str) -> Callable[..., Any]:
    return _method_from_src(name, src, {})


def _generated_source(local: fx.GraphModule, name: str = "forward") -> str | None:
    """The generated forward of ``local`` as method ``name``, with the imports it needs; None when a global it
    reads cannot be imported by name (then instances do not pickle, like such a GraphModule)."""
    try:
        code = local.graph.python_code(root_module="self")
        src = code.src.replace("def forward(", f"def {name}(", 1)
        return _format_import_block(code.globals, sys_importer) + "\n" + src
    except Exception:  # an unimportable global (a local function, a lambda)  # noqa: BLE001
        return None


def _drop_stateless(owner: nn.Module, dropped: set[str]) -> None:
    """Remove the children the edit left uncalled when they hold no state (a shared ReLU split per call)."""
    for name in dropped:
        child = getattr(owner, name, None)
        if isinstance(child, nn.Module) and not any(True for _ in child.parameters()) \
                and not any(True for _ in child.buffers()):
            delattr(owner, name)


def _copy_in(owner: nn.Module, local: fx.GraphModule) -> None:
    """The submodules and constants ``local``'s code reads that ``owner`` lacks."""
    for node in local.graph.nodes:
        if node.op not in ("call_module", "get_attr"):
            continue
        target = str(node.target)
        if "." in target:
            continue  # a descendant of an existing child: already there
        value = getattr(local, target)
        if getattr(owner, target, None) is not value:
            if isinstance(value, nn.Module):
                owner.add_module(target, value)
            else:
                setattr(owner, target, copy.copy(value))


def install_forward(owner: nn.Module, local: fx.GraphModule, dropped: set[str]) -> None:
    """Give ``owner`` the edited forward: new submodules and constants copied in, class subclassed, and
    children the edit left uncalled dropped when they hold no state (a shared ReLU split per call)."""
    _drop_stateless(owner, dropped)
    _copy_in(owner, local)
    for name in ("_in_spec", "_out_spec"):  # pytree specs the generated code reads (list arguments)
        if name in local.__dict__:
            object.__setattr__(owner, name, local.__dict__[name])
    src = _generated_source(local)
    owner.__class__ = rewritten_class(base_class(owner), {"forward": type(local).forward},
                                      {"forward": src} if src is not None else None)


def dispatchable(owner: nn.Module, concrete: dict[str, Any] | None) -> list[inspect.Parameter] | None:
    """The forward's parameters when the trace kept some of them concrete as plain values (None, flags):
    then the edited forward keeps the class's calling convention by dispatching on them."""
    if not concrete:
        return None
    params = forward_params(owner)
    if not params or params[0].name in concrete or any(
            p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) for p in params):
        return None
    if not all(isinstance(v, _PLAIN) for v in concrete.values()):
        return None
    return params


def other_calls(base: type, params: list[inspect.Parameter]) -> list[dict[str, Any]]:
    """The concrete arguments of the calls the class documents besides the one traced: ``module(x)`` (every
    later parameter at its plain default) and, when some default to None but are typed ``Optional[Tensor]``,
    the call passing tensors for those (timm DLA's ``block(x, shortcut)``)."""
    default = {}
    for p in params[1:]:
        if p.default is inspect.Parameter.empty or not isinstance(p.default, _PLAIN):
            return []
        default[p.name] = p.default
    try:
        hints = typing.get_type_hints(base.forward)
    except Exception:  # noqa: BLE001
        hints = {}
    optional_tensor = torch.Tensor | None  # equal to typing.Optional[torch.Tensor]
    with_tensors = {k: v for k, v in default.items() if not (v is None and hints.get(k) == optional_tensor)}
    return [default] + ([with_tensors] if with_tensors != default else [])


def _strip_concrete(local: fx.GraphModule, params: list[inspect.Parameter],
                    concrete: dict[str, Any]) -> list[str] | None:
    """Remove the placeholders of the concrete arguments (and fx's asserts on them) from ``local``'s graph;
    the names of the tensor arguments left, in order, or None when the graph still reads a concrete one."""
    graph = local.graph
    holders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(holders) != len(params):
        return None
    asserts = [n for n in graph.nodes if n.op == "call_function" and n.target in (torch._assert, _assert_is_none)]
    for node in asserts:
        source = node.args[0] if node.args else None
        graph.erase_node(node)
        if isinstance(source, fx.Node) and source.op == "call_function" and not source.users:
            graph.erase_node(source)  # the ``out == value`` the assert read
    tensors = []
    for node, param in zip(holders, params, strict=True):
        if param.name in concrete:
            if node.users:
                return None
            graph.erase_node(node)
        else:
            tensors.append(param.name)
            if getattr(node.type, "__origin__", None) is typing.Union or isinstance(node.type, types.UnionType):
                node.type = None  # Optional[Tensor] here is a tensor: the dispatching forward checked it
            node.args = ()  # no default (None) for a tensor: TorchScript would save it as an undefined tensor
    graph.lint()
    local.recompile()
    return tensors


def _annotation(hint: Any) -> str | None:
    if hint is inspect.Parameter.empty:
        return None
    if isinstance(hint, type):
        return f"{hint.__module__}.{hint.__qualname__}" if hint.__module__ != "builtins" else hint.__qualname__
    text = repr(hint)
    return text if text.startswith(("typing.", "list[", "tuple[", "dict[")) else None


def _signature_source(base: type, params: list[inspect.Parameter]) -> tuple[str, set[str]]:
    """``self, x, shortcut: typing.Optional[torch.Tensor] = None, ...``: the class's own parameters (names,
    kinds, defaults, annotations where they can be written), and the modules the annotations name."""
    try:
        hints = typing.get_type_hints(base.forward)
    except Exception:  # noqa: BLE001  # unresolvable annotations: written without them
        hints = {}
    parts, modules = ["self"], set()
    kinds = [p.kind for p in params]
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.KEYWORD_ONLY and (i == 0 or kinds[i - 1] is not p.kind):
            parts.append("*")
        ann = _annotation(hints.get(p.name, inspect.Parameter.empty))
        text = p.name + (f": {ann}" if ann else "")
        if ann:
            modules.update(re.findall(r"\b([A-Za-z_]\w*)\.", ann))
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        parts.append(text)
        if p.kind is inspect.Parameter.POSITIONAL_ONLY and (i + 1 == len(params) or kinds[i + 1] is not p.kind):
            parts.append("/")
    return ", ".join(parts), modules


def install_dispatch(owner: nn.Module, params: list[inspect.Parameter],
                     variants: list[tuple[dict[str, Any], fx.GraphModule]], where: str, dropped: set[str]) -> bool:
    """Give ``owner`` a ``forward`` with its class's own signature that runs the edited variant traced for
    the call it receives (``block(x)`` and ``block(x, shortcut)`` of timm DLA), and refuses, naming the
    block, a call no variant was traced for. False when that cannot be written (the caller falls back)."""
    base = base_class(owner)
    methods: dict[str, Callable[..., Any]] = {}
    sources: dict[str, str] = {}
    branches, patterns = [], []
    for i, (concrete, local) in enumerate(variants):
        tensors = _strip_concrete(local, params, concrete)
        name = f"_netsurgeon_call_{i}"
        src = _generated_source(local, name) if tensors is not None else None
        if src is None:
            if i == 0:
                return False
            continue
        sources[name], methods[name] = src, _method(name, src)
        conds = [f"{p.name} is not None" if p.name not in concrete else
                 f"{p.name} is None" if concrete[p.name] is None else f"{p.name} == {concrete[p.name]!r}"
                 for p in params[1:]]
        call_args = ", ".join(tensors)  # the input first
        branches.append((" and ".join(conds) or "True", f"{name}({call_args})"))
        patterns.append(", ".join(f"{p.name}={'tensor' if p.name not in concrete else repr(concrete[p.name])}"
                                  for p in params[1:]))
    signature, modules = _signature_source(base, params)
    message = (f"{where} was rewritten by netsurgeon for the calls traced ({'; '.join(patterns)}); this call passes "
               "other arguments: call it as the model does, or leave its sites out of the pass.")
    imports = "".join(f"import {m}\n" for m in sorted(modules) if importlib.util.find_spec(m) is not None)
    # the last variant after the refusal, not an ``if`` ending in ``raise``: TorchScript cannot save that form
    last_cond, last_call = branches[-1]
    body = "".join(f"    if {cond}:\n        return self.{call}\n" for cond, call in branches[:-1])
    body += f"    if not ({last_cond}):\n        raise RuntimeError({message!r})\n    return self.{last_call}\n"
    src = f"{imports}\n\ndef forward({signature}):\n{body}"
    try:
        methods["forward"], sources["forward"] = _method("forward", src), src
    except Exception:  # noqa: BLE001  # an annotation that does not compile: fall back
        return False
    _drop_stateless(owner, dropped)
    for _, local in variants:
        _copy_in(owner, local)
    owner.__class__ = rewritten_class(base, methods, sources)
    return True
