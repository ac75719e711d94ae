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
from netsurgeon.graph.trace import concrete_args, forward_params
from netsurgeon.modes import in_mode

__all__ = ["SWAP", "ScopedEditor", "base_class", "finalize", "is_impure", "rewritten_class"]

SWAP = "swap"
_CALL_OPS = ("call_module", "call_function", "call_method")
_BASE_ATTR = "_netsurgeon_base"


def _scope_label(path: str) -> str:
    return f"block:{path}" if path else "root"


def base_class(module: nn.Module) -> type:
    """The user's class of ``module`` (the class a block/root rewrite subclassed)."""
    return getattr(type(module), _BASE_ATTR, type(module))


def rewritten_class(base: type, forward: Callable[..., Any], src: str | None = None) -> type:
    """A subclass of ``base`` whose ``forward`` is ``forward`` (generated code); same name and module.

    ``src`` is the forward's source with its imports (as ``GraphModule`` keeps it): instances then pickle
    (``torch.save(model)``, ``copy.deepcopy``) by rebuilding the class from it, as ``GraphModule`` does,
    since a class made at run time cannot be found by its name.
    """
    attrs = {"forward": forward, _BASE_ATTR: base, "__module__": base.__module__, "__qualname__": base.__qualname__,
             "__doc__": base.__doc__}
    if src is not None:
        attrs[_SRC_ATTR] = src
        attrs["__reduce_ex__"] = _reduce_rewritten
    cls = type(base.__name__, (base,), attrs)
    if src is not None:
        _REBUILT[(base, src)] = cls
    return cls


_SRC_ATTR = "_netsurgeon_forward_src"
_REBUILT: dict[tuple[type, str], type] = {}


def _reduce_rewritten(self: nn.Module, protocol: int) -> tuple:
    cls = type(self)
    return _rebuild_rewritten, (getattr(cls, _BASE_ATTR), getattr(cls, _SRC_ATTR)), self.__dict__


def _rebuild_rewritten(base: type, src: str) -> nn.Module:
    """An empty instance of the rewritten subclass of ``base`` whose forward is ``src`` (its state follows)."""
    cls = _REBUILT.get((base, src))
    if cls is None:
        from torch.fx.graph_module import _forward_from_src

        cls = rewritten_class(base, _forward_from_src(src, {}), src)
    return cls.__new__(cls)


def _forward_source(local: fx.GraphModule) -> str | None:
    """The generated forward of ``local`` with the imports it needs, or None when a global it reads
    cannot be imported by name (then instances do not pickle, like such a GraphModule)."""
    from torch.fx.graph_module import _format_import_block
    from torch.package import sys_importer

    try:
        code = local.graph.python_code(root_module="self")
        return _format_import_block(code.globals, sys_importer) + "\n" + code.src
    except Exception:  # an unimportable global (a local function, a lambda)  # noqa: BLE001
        return None


@dataclass
class _Edit:
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
    _pending: dict[str, list[_Edit]] = field(default_factory=dict)
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
    def swap(self, path: str, module: nn.Module) -> str:
        """Put ``module`` at ``path`` in the working model (module swap)."""
        parent_path, _, attr = path.rpartition(".")
        parent = self.model.get_submodule(parent_path) if parent_path else self.model
        setattr(parent, attr, module)
        self.changed = True
        return SWAP

    def _swappable(self, site: Site) -> bool:
        return site.kind == "nested" or (site.kind == "module" and self.index.call_count(site.target) == 1)

    def erase(self, site: Site) -> tuple[str, str]:
        """Remove one activation call; returns (what it became, scope)."""
        if self._swappable(site):
            return "nn.Identity", self.swap(site.target, nn.Identity())
        return "erased", self._add(_Edit("erase", [self.index.site_node(site)]))

    def replace(self, site: Site, module: nn.Module, attr: str) -> tuple[str, str]:
        """Replace one activation call by a call of ``module``; returns (its path, scope)."""
        if self._swappable(site):
            return site.target, self.swap(site.target, module)
        node = self.index.site_node(site)
        return self._add_named(node, "replace", [node], module, attr)

    def insert_after(self, node: fx.Node, module: nn.Module, attr: str) -> tuple[str, str]:
        """Insert a call of ``module`` on ``node``'s output, read by all of its former users."""
        return self._add_named(node, "insert_after", [node], module, attr)

    def replace_nodes(self, nodes: list[fx.Node], module: nn.Module, attr: str) -> tuple[str, str]:
        """Replace a chain of calls (first reads the source, last is read by the rest) by one ``module``."""
        scopes = {self.scope_of(n) for n in nodes}
        if len(scopes) != 1:
            raise SurgeryError(f"the calls {', '.join(n.name for n in nodes)} live in different modules "
                               f"({', '.join(sorted(s or '<model>' for s in scopes))}); netsurgeon cannot "
                               "replace them as one.")
        return self._add_named(nodes[0], "replace_nodes", nodes, module, attr)

    def _add_named(self, node: fx.Node, kind: str, nodes: list[fx.Node], module: nn.Module,
                   attr: str) -> tuple[str, str]:
        scope = self.scope_of(node)
        owner = self.model.get_submodule(scope) if scope else self.model
        taken = self._taken.setdefault(scope, set())
        name, k = attr, 0
        while name in taken or hasattr(owner, name):
            k += 1
            name = f"{attr}_{k}"
        taken.add(name)
        label = self._add(_Edit(kind, nodes, name, module))
        return (f"{scope}.{name}" if scope else name), label

    def _add(self, edit: _Edit) -> str:
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
        with in_mode(module, False), _watch_training(module) as reads:
            graph = tracer.trace(module, concrete_args=concrete or None)
        return graph, bool(reads)

    def _trace_as_called(self, scope: str, owner: nn.Module, where: str) -> tuple[fx.Graph, bool]:
        """Trace ``owner`` alone: plainly when its forward takes only its input, else (or when the plain
        trace fails) with the arguments it was called with on the probe kept concrete."""
        concrete: dict[str, Any] | None = {}
        error: Exception | None = None
        if len(forward_params(owner)) <= 1:
            try:
                return self._trace_alone(owner)
            except Exception as err:  # fx raises many types  # noqa: BLE001
                error = err
        if self.probe is not None:
            concrete = self._recorded_calls([scope]).get(scope, {})
            if concrete is None:
                raise SurgeryError(f"{where} is called in more than one way (its arguments differ between "
                                   "calls); netsurgeon cannot give it one edited forward.")
        try:
            return self._trace_alone(owner, concrete)
        except Exception as err:  # fx raises many types
            error = err
        raise SurgeryError(f"cannot trace {where} on its own to edit it ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}).")

    def _rewrite(self, scope: str, edits: list[_Edit]) -> None:
        owner = self.model.get_submodule(scope) if scope else self.model
        where = f"{scope or 'the model'} ({base_class(owner).__name__})"
        graph, reads_training = self._trace_as_called(scope, owner, where)
        if reads_training:
            raise SurgeryError(
                f"{where} behaves differently in train mode (its forward reads self.training), so netsurgeon "
                "will not re-trace it: that would freeze its train-mode branch. Leave this site out "
                "(include/exclude), or make the module's forward mode-independent.")
        by_key = self._local_nodes(graph, scope, where)
        table = self._key_table()
        called_before = _called_children(graph)
        added: dict[str, nn.Module] = {}
        for edit in edits:
            _edit_graph(graph, edit, [by_key[table[n][1]] for n in edit.nodes], added.__setitem__)
        # one GraphModule (one code generation) per block, built after the edits from what the graph names
        named = {t: added[t] if t in added else functools.reduce(getattr, t.split("."), owner)
                 for t in _targets(graph)}
        graph.eliminate_dead_code(is_impure_node=functools.partial(is_impure, modules=named))
        graph.lint()
        local = fx.GraphModule({t: named[t] for t in _targets(graph)}, graph, type(owner).__name__)
        _install(owner, local, dropped=called_before - _called_children(graph))

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


def _edit_graph(graph: fx.Graph, edit: _Edit, nodes: list[fx.Node],
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
    for name in ("_in_spec", "_out_spec"):  # pytree specs the generated code reads (list arguments)
        if name in local.__dict__:
            object.__setattr__(owner, name, local.__dict__[name])
    owner.__class__ = rewritten_class(base_class(owner), type(local).forward, _forward_source(local))


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
