"""Apply edits planned on the whole-model graph to the user's model, at the smallest scope that holds each.

Passes *analyse* one whole-model graph (sites, blocks, heads, shapes), but the result of surgery is the
user's own model: the same class, methods and metadata, and the same train-mode behaviour (dropout,
drop-path, ``if self.training`` branches). So an edit planned on a node of the whole-model graph is
*applied* to a working copy of the user's model at the smallest scope that can hold it:

* **module swap**: an activation module called once (or one nested inside a leaf), or a head, is
  replaced in place at its own path; nothing else changes.
* **block rewrite**: a call that a module makes in its own ``forward`` (a shared ``nn.ReLU`` called
  twice, ``F.relu``, ``.relu()``) is edited in a graph of *that module alone*, traced with every child
  as a leaf (so the children's own train/eval behaviour stays dynamic). The module keeps its class: it
  becomes an instance of a subclass whose ``forward`` is the edited graph's code; every other method,
  attribute and state_dict key is kept.
* **root rewrite**: the same for the model itself, where nothing smaller holds the edit (torchvision
  DenseNet's final ``F.relu``). Methods other than ``forward`` (``forward_features``...) are not edited.

A module whose own ``forward`` depends on ``self.training`` (its eval- and train-mode graphs differ) is
never re-traced, since that would freeze the branch: the edit is refused with an error naming it.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import re
import types
import typing
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from netsurgeon.errors import SurgeryError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.sites import Site
from netsurgeon.graph.trace import TRACE_LOCK, concrete_args, forward_params
from netsurgeon.modes import in_mode

__all__ = ["SWAP", "Edit", "ScopedEditor", "base_class", "finalize", "is_impure", "rewritten_class"]

SWAP = "swap"
_CALL_OPS = ("call_module", "call_function", "call_method")
_BASE_ATTR = "_netsurgeon_base"


def _scope_label(path: str) -> str:
    return f"block:{path}" if path else "root"


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


_SRC_ATTR = "_netsurgeon_sources"
_REBUILT: dict[tuple[type, tuple], type] = {}


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
    from torch.fx.graph_module import _method_from_src

    return _method_from_src(name, src, {})


def _generated_source(local: fx.GraphModule, name: str = "forward") -> str | None:
    """The generated forward of ``local`` as method ``name``, with the imports it needs; None when a global it
    reads cannot be imported by name (then instances do not pickle, like such a GraphModule)."""
    from torch.fx.graph_module import _format_import_block
    from torch.package import sys_importer

    try:
        code = local.graph.python_code(root_module="self")
        src = code.src.replace("def forward(", f"def {name}(", 1)
        return _format_import_block(code.globals, sys_importer) + "\n" + src
    except Exception:  # an unimportable global (a local function, a lambda)  # noqa: BLE001
        return None


#: a module's hook registries that a module swap carries over (forward, pre-forward, backward)
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def _hooked(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in _HOOK_DICTS if name != "_forward_hooks_always_called")


def carry_hooks(old: nn.Module, new: nn.Module, path: str) -> None:
    """Move the hooks registered on ``old`` to ``new`` (which takes its place, called where it was called),
    and warn, naming them: a hook now sees the replacement's output (pd-relu's PDReLU, spinal-head's
    SpinalHead, erase-relu's Identity). Hooks on modules inside ``old`` cannot follow (those modules are
    gone): the warning names them as dropped."""
    dropped = [f"{path}.{name}" for name, sub in old.named_modules() if name and _hooked(sub)]
    moved = _hooked(old)
    if moved:
        for name in _HOOK_DICTS:
            source, target = getattr(old, name, None), getattr(new, name, None)
            if source and target is not None:
                target.update(source)
        if getattr(old, "_backward_hooks", None):
            new._is_full_backward_hook = getattr(old, "_is_full_backward_hook", None)
    if moved or dropped:
        parts = [f"the hooks on {path} now run on its replacement {type(new).__name__}"] if moved else []
        if dropped:
            parts.append(f"the hooks on {', '.join(dropped[:5])} were dropped (those modules are gone)")
        warnings.warn(f"module swap at {path}: {'; '.join(parts)}.", UserWarning, stacklevel=4)


@dataclass(frozen=True)
class Edit:
    """What one editor verb did: where the edit lands, and what a report row needs to say about it.

    ``scope``: ``'swap'`` (a module replaced at its own path), ``'block:PATH'`` (a call edited in that
    module's ``forward``) or ``'root'`` (in the model's own ``forward``): a :class:`~netsurgeon.report.SiteChange`'s
    scope. ``path``: the module path of the module now doing the work ('' when nothing new is called,
    an erased call). ``became``: what an erased activation became (``'nn.Identity'``, ``'erased'``).
    """

    scope: str
    path: str = ""
    became: str = ""


@dataclass
class _Pending:
    kind: str  # erase | replace | insert_after | replace_nodes
    nodes: list[fx.Node]  # the whole-model graph nodes it acts on
    attr: str = ""  # name of the new submodule in the scope
    module: nn.Module | None = None


class _ChildrenAsLeaves(fx.Tracer):
    """Trace one module's own ``forward``: every submodule it calls is a leaf."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


@contextmanager
def _watch_training(module: nn.Module) -> Iterator[list[bool]]:
    """Record every read of ``module.training`` (not its children's) while the block runs.

    The instance's class is swapped for a subclass whose ``training`` is a property over the same
    instance value, so behaviour is unchanged; the reads tell whether the module's own code (its forward,
    or any method the forward calls) looks at its mode, which a trace would freeze.
    """
    cls, reads = type(module), []

    def get(self: nn.Module) -> bool:
        reads.append(True)
        return self.__dict__["training"]

    def put(self: nn.Module, value: bool) -> None:
        self.__dict__["training"] = value

    module.__class__ = type(cls.__name__, (cls,), {"training": property(get, put)})
    try:
        yield reads
    finally:
        module.__class__ = cls


def _local_key(node: fx.Node, scope: str) -> tuple:
    target = node.target
    if node.op == "call_module" and scope:
        target = str(target)[len(scope) + 1:]
    return node.op, target


@dataclass
class ScopedEditor:
    """Collects a pass's edits against ``index`` (a graph of ``model``) and applies them to ``model``.

    ``model`` is the working copy that becomes the result. Swaps happen at once; call edits are grouped
    by the module whose ``forward`` makes the call and applied by :meth:`apply`, one local trace each.
    """

    model: nn.Module
    index: GraphIndex
    autowrap: tuple[Callable, ...] = ()
    probe: Any = None  # a batch for the model: shows how modules with optional arguments are called
    changed: bool = False  # any swap or pending call edit so far
    _pending: dict[str, list[_Pending]] = field(default_factory=dict)
    _taken: dict[str, set[str]] = field(default_factory=dict)
    _keys: dict[fx.Node, tuple[str, tuple]] | None = None
    _counts: Counter | None = None

    # ---------------------------------------------------------------- where a node lives
    def _key_table(self) -> dict[fx.Node, tuple[str, tuple]]:
        if self._keys is None:
            keys, counts = {}, Counter()
            for node in self.index.nodes:
                if node.op not in _CALL_OPS:
                    continue
                scope = self.index.innermost_scope(node)
                key = _local_key(node, scope)
                keys[node] = (scope, (*key, counts[(scope, key)]))
                counts[(scope, key)] += 1
            self._keys, self._counts = keys, counts
        return self._keys

    def scope_of(self, node: fx.Node) -> str:
        """The path of the module whose own ``forward`` makes this call ('' = the model)."""
        return "" if self.flat else self._key_table()[node][0]

    # ---------------------------------------------------------------- edits
    def swap(self, path: str, module: nn.Module) -> Edit:
        """Put ``module`` at ``path`` in the working model (module swap); the user's hooks on the module it
        replaces move to ``module`` (see :func:`carry_hooks`)."""
        parent_path, _, attr = path.rpartition(".")
        parent = self.model.get_submodule(parent_path) if parent_path else self.model
        old = getattr(parent, attr, None)
        if isinstance(old, nn.Module):
            carry_hooks(old, module, path)
        setattr(parent, attr, module)
        self.changed = True
        return Edit(SWAP, path)

    def _swappable(self, site: Site) -> bool:
        return site.kind == "nested" or (site.kind == "module" and self.index.call_count(site.target) == 1)

    def erase(self, site: Site) -> Edit:
        """Remove one activation call; ``became`` says what it became (``nn.Identity`` swapped in, or erased)."""
        if self._swappable(site):
            return Edit(self.swap(site.target, nn.Identity()).scope, "", "nn.Identity")
        return Edit(self._add(_Pending("erase", [self.index.site_node(site)])), "", "erased")

    def replace(self, site: Site, module: nn.Module, attr: str) -> Edit:
        """Replace one activation call by a call of ``module`` (at ``path``: its own, or a new ``attr``)."""
        if self._swappable(site):
            return self.swap(site.target, module)
        node = self.index.site_node(site)
        return self._add_named(node, "replace", [node], module, attr)

    def insert_after(self, node: fx.Node, module: nn.Module, attr: str) -> Edit:
        """Insert a call of ``module`` on ``node``'s output, read by all of its former users."""
        return self._add_named(node, "insert_after", [node], module, attr)

    def replace_nodes(self, nodes: list[fx.Node], module: nn.Module, attr: str) -> Edit:
        """Replace a chain of calls (first reads the source, last is read by the rest) by one ``module``."""
        scopes = {self.scope_of(n) for n in nodes}
        if len(scopes) != 1:
            raise SurgeryError(f"the calls {', '.join(n.name for n in nodes)} live in different modules "
                               f"({', '.join(sorted(s or '<model>' for s in scopes))}); netsurgeon cannot "
                               "replace them as one.")
        return self._add_named(nodes[0], "replace_nodes", nodes, module, attr)

    def _add_named(self, node: fx.Node, kind: str, nodes: list[fx.Node], module: nn.Module, attr: str) -> Edit:
        scope = self.scope_of(node)
        owner = self.model.get_submodule(scope) if scope else self.model
        taken = self._taken.setdefault(scope, set())
        name, k = attr, 0
        while name in taken or hasattr(owner, name):
            k += 1
            name = f"{attr}_{k}"
        taken.add(name)
        label = self._add(_Pending(kind, nodes, name, module))
        return Edit(label, f"{scope}.{name}" if scope else name)

    def _add(self, edit: _Pending) -> str:
        scope = self.scope_of(edit.nodes[0])
        self._pending.setdefault(scope, []).append(edit)
        self.changed = True
        return _scope_label(scope)

    @property
    def flat(self) -> bool:
        """The working model is itself the analysed GraphModule (a user's own fx model): edit it directly."""
        return self.model is self.index.gm

    # ---------------------------------------------------------------- applying
    def apply(self) -> list[str]:
        """Apply the pending call edits, one local rewrite per scope; returns the scope labels."""
        done = []
        for scope, edits in self._pending.items():
            if self.flat:
                for edit in edits:
                    _edit_graph(self.model.graph, edit, edit.nodes, self.model.add_submodule)
                finalize(self.model)
            else:
                self._rewrite(scope, edits)
            done.append(_scope_label(scope))
        self._pending.clear()
        return done

    def _recorded_calls(self, scopes: list[str]) -> dict[str, dict[str, Any] | None]:
        """How each module among ``scopes`` whose ``forward`` takes more than its input is called on the
        probe: the arguments to keep concrete in its own trace (None, flags, lists of tensors), as the
        whole-model trace saw them (timm DLA's ``shortcut=None``, HRNet's list of branch inputs). ``None``
        marks a module called in more than one way."""
        owners = {s: (self.model.get_submodule(s) if s else self.model) for s in scopes}
        if self.probe is None:
            return {}
        seen: dict[str, dict[str, Any] | None] = {}

        def record(scope: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
            concrete = concrete_args(module, args, kwargs)
            seen[scope] = concrete if seen.get(scope, concrete) == concrete else None

        handles = [m.register_forward_pre_hook(functools.partial(record, s), with_kwargs=True)
                   for s, m in owners.items()]
        try:
            with torch.no_grad(), in_mode(self.model, False):
                self.model(self.probe)
        finally:
            for handle in handles:
                handle.remove()
        return seen

    def _trace_alone(self, module: nn.Module, concrete: dict[str, Any] | None = None) -> tuple[fx.Graph, bool]:
        """The module's own forward as a graph (children as leaves, eval mode), and whether that forward
        read ``self.training`` while it was traced (then the graph froze a train-mode branch). The graph's
        ``get_attr``/``call_module`` targets resolve on ``module``."""
        tracer = _ChildrenAsLeaves(autowrap_functions=self.autowrap)
        with in_mode(module, False), _watch_training(module) as reads, TRACE_LOCK:
            graph = tracer.trace(module, concrete_args=concrete or None)
        return graph, bool(reads)

    def _trace_as_called(self, scope: str, owner: nn.Module,
                         where: str) -> tuple[fx.Graph, bool, dict[str, Any] | None]:
        """Trace ``owner`` alone: plainly when its forward takes only its input, else (or when the plain
        trace fails) with the arguments it was called with on the probe kept concrete (returned; None for
        the plain trace)."""
        concrete: dict[str, Any] | None = {}
        error: Exception | None = None
        if len(forward_params(owner)) <= 1:
            try:
                return (*self._trace_alone(owner), None)
            except Exception as err:  # fx raises many types  # noqa: BLE001
                error = err
        if self.probe is not None:
            concrete = self._recorded_calls([scope]).get(scope, {})
            if concrete is None:
                raise SurgeryError(f"{where} is called in more than one way (its arguments differ between "
                                   "calls); netsurgeon cannot give it one edited forward.")
        try:
            return (*self._trace_alone(owner, concrete), concrete)
        except Exception as err:  # fx raises many types
            error = err
        raise SurgeryError(f"cannot trace {where} on its own to edit it ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}).")

    def _rewrite(self, scope: str, edits: list[_Pending]) -> None:
        owner = self.model.get_submodule(scope) if scope else self.model
        where = f"{scope or 'the model'} ({base_class(owner).__name__})"
        graph, reads_training, concrete = self._trace_as_called(scope, owner, where)
        if reads_training:
            raise SurgeryError(
                f"{where} behaves differently in train mode (its forward reads self.training), so netsurgeon "
                "will not re-trace it: that would freeze its train-mode branch. Leave this site out "
                "(include/exclude), or make the module's forward mode-independent.")
        added: dict[str, nn.Module] = {}
        local, dropped = self._edited(graph, scope, where, owner, edits, added)
        params = _dispatchable(owner, concrete)
        if params is None:
            _install(owner, local, dropped=dropped)
            return
        # optional arguments were kept concrete: keep the class's calling convention (names, defaults) with
        # a forward that dispatches on them, over the variant traced as called and the all-defaults one
        variants = [(concrete, local)]
        for other in _other_calls(base_class(owner), params):
            if any(other == c for c, _ in variants):
                continue
            try:
                g2, reads2 = self._trace_alone(owner, other)
                if not reads2:
                    local2, dropped2 = self._edited(g2, scope, where, owner, edits, added)
                    variants.append((other, local2))
                    dropped &= dropped2
            except Exception:  # noqa: BLE001  # that call cannot be edited alike: refused when made
                pass
        if not _install_dispatch(owner, params, variants, where, dropped):
            _install(owner, local, dropped=dropped)

    def _edited(self, graph: fx.Graph, scope: str, where: str, owner: nn.Module, edits: list[_Pending],
                added: dict[str, nn.Module]) -> tuple[fx.GraphModule, set[str]]:
        """Apply ``edits`` to ``graph`` (a trace of ``owner`` alone); the GraphModule and the children the
        edits left uncalled."""
        by_key = self._local_nodes(graph, scope, where)
        table = self._key_table()
        called_before = _called_children(graph)
        for edit in edits:
            _edit_graph(graph, edit, [by_key[table[n][1]] for n in edit.nodes], added.__setitem__)
        # one GraphModule (one code generation) per block, built after the edits from what the graph names
        named = {t: added[t] if t in added else functools.reduce(getattr, t.split("."), owner)
                 for t in _targets(graph)}
        graph.eliminate_dead_code(is_impure_node=functools.partial(is_impure, modules=named))
        graph.lint()
        local = fx.GraphModule({t: named[t] for t in _targets(graph)}, graph, type(owner).__name__)
        return local, called_before - _called_children(graph)

    def _local_nodes(self, graph: fx.Graph, scope: str, where: str) -> dict[tuple, fx.Node]:
        found: dict[tuple, fx.Node] = {}
        counts: Counter = Counter()
        for node in graph.nodes:
            if node.op not in _CALL_OPS:
                continue
            key = _local_key(node, "")
            found[(*key, counts[key])] = node
            counts[key] += 1
        whole = {key: n for (s, key), n in (self._counts or {}).items() if s == scope}
        if whole != {key: counts[key] for key in whole}:
            raise SurgeryError(f"{where} runs more than once in the model, or its own graph differs from the "
                               "whole model's; netsurgeon cannot edit it in place.")
        return found


def _edit_graph(graph: fx.Graph, edit: _Pending, nodes: list[fx.Node],
                add_module: Callable[[str, nn.Module], Any]) -> None:
    if edit.kind == "erase":
        node = nodes[0]
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
        return
    add_module(edit.attr, edit.module)
    if edit.kind == "insert_after":
        node = nodes[0]
        users = list(node.users)
        with graph.inserting_after(node):
            new = graph.call_module(edit.attr, (node,))
        for user in users:
            user.replace_input_with(node, new)
        return
    first, last = nodes[0], nodes[-1]
    with graph.inserting_after(last):
        new = graph.call_module(edit.attr, (first.args[0],))
    last.replace_all_uses_with(new)
    for node in reversed(nodes):
        graph.erase_node(node)


def _targets(graph: fx.Graph) -> set[str]:
    return {str(n.target) for n in graph.nodes if n.op in ("call_module", "get_attr")}


def _called_children(graph: fx.Graph) -> set[str]:
    return {t.partition(".")[0] for t in _targets(graph)}


def _install(owner: nn.Module, local: fx.GraphModule, dropped: set[str]) -> None:
    """Give ``owner`` the edited forward: new submodules and constants copied in, class subclassed, and
    children the edit left uncalled dropped when they hold no state (a shared ReLU split per call)."""
    for name in dropped:
        child = getattr(owner, name, None)
        if isinstance(child, nn.Module) and not any(True for _ in child.parameters()) \
                and not any(True for _ in child.buffers()):
            delattr(owner, name)
    _copy_in(owner, local)
    for name in ("_in_spec", "_out_spec"):  # pytree specs the generated code reads (list arguments)
        if name in local.__dict__:
            object.__setattr__(owner, name, local.__dict__[name])
    src = _generated_source(local)
    owner.__class__ = rewritten_class(base_class(owner), {"forward": type(local).forward},
                                      {"forward": src} if src is not None else None)


_PLAIN = (type(None), bool, int, float, str)


def _dispatchable(owner: nn.Module, concrete: dict[str, Any] | None) -> list[inspect.Parameter] | None:
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


def _other_calls(base: type, params: list[inspect.Parameter]) -> list[dict[str, Any]]:
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
    from torch.fx._symbolic_trace import _assert_is_none

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


def _install_dispatch(owner: nn.Module, params: list[inspect.Parameter],
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
    for name in dropped:
        child = getattr(owner, name, None)
        if isinstance(child, nn.Module) and not any(True for _ in child.parameters()) \
                and not any(True for _ in child.buffers()):
            delattr(owner, name)
    for _, local in variants:
        _copy_in(owner, local)
    owner.__class__ = rewritten_class(base, methods, sources)
    return True


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


def is_impure(node: fx.Node, modules: dict[str, Any] | None = None) -> bool:
    """Dead-code elimination must keep in-place calls (``relu_``, ``x += y``, ``inplace=True``).

    ``modules`` resolves ``call_module`` targets for a graph that has no owning module yet.
    """
    if node.op == "call_module" and modules is not None:
        return bool(getattr(modules.get(str(node.target)), "_is_impure", False))
    if node.is_impure():
        return True
    if node.op == "call_method" and isinstance(node.target, str) and node.target.endswith("_"):
        return True
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        in_place_name = (name.endswith("_") and not name.startswith("_")) or name in _OPERATOR_INPLACE
        return in_place_name or bool(node.kwargs.get("inplace"))
    return False


_OPERATOR_INPLACE = {"iadd", "isub", "imul", "itruediv", "iand", "ior"}


def finalize(gm: fx.GraphModule) -> fx.GraphModule:
    """The epilogue every edit ends with."""
    gm.graph.eliminate_dead_code(is_impure_node=is_impure)
    gm.graph.lint()
    gm.recompile()
    _prune_stateless_unused(gm)
    return gm


def _prune_stateless_unused(gm: fx.GraphModule) -> None:
    used: set[str] = set()  # called or read modules, and their ancestors
    called: set[str] = set()  # modules whose whole subtree runs (leaves called by the graph)
    for node in gm.graph.nodes:
        if node.op in ("call_module", "get_attr"):
            parts = str(node.target).split(".")
            used.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            if node.op == "call_module":
                called.add(str(node.target))
    for path, module in sorted(gm.named_modules(), key=lambda kv: -len(kv[0])):
        parts = path.split(".")
        inside_called = any(".".join(parts[:i]) in called for i in range(1, len(parts)))
        if not path or path in used or inside_called:
            continue
        has_state = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        if not has_state:
            parent_path, _, attr = path.rpartition(".")
            parent = gm.get_submodule(parent_path) if parent_path else gm
            if hasattr(parent, attr):
                delattr(parent, attr)
