"""The scoped editor: each edit planned on the whole-model graph lands on the user's model at the smallest scope.

Passes *analyse* one whole-model graph (sites, blocks, heads, shapes), but the result of surgery is the
user's own model: the same class, methods and metadata, and the same train-mode behaviour (dropout,
drop-path, ``if self.training`` branches). So an edit planned on a node of the whole-model graph is
*applied* to a working copy of the user's model at the smallest scope that can hold it:

* **module swap**: an activation module called once (or one nested inside a leaf), or a head, is
  replaced in place at its own path; nothing else changes (the user's hooks follow it:
  :mod:`netsurgeon.graph.hook_migration`).
* **block rewrite**: a call that a module makes in its own ``forward`` (a shared ``nn.ReLU`` called
  twice, ``F.relu``, ``.relu()``) is edited in a graph of *that module alone*, traced with every child
  as a leaf (so the children's own train/eval behaviour stays dynamic). The module keeps its class: it
  becomes an instance of a subclass whose ``forward`` is the edited graph's code
  (:mod:`netsurgeon.graph.codegen`); every other method, attribute and state_dict key is kept.
* **root rewrite**: the same for the model itself, where nothing smaller holds the edit (torchvision
  DenseNet's final ``F.relu``). Methods other than ``forward`` (``forward_features``...) are not edited.

A module whose own ``forward`` depends on ``self.training`` (its eval- and train-mode graphs differ) is
never re-traced, since that would freeze the branch: the edit is refused with an error naming it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from netsurgeon.errors import SurgeryError
from netsurgeon.graph.cleanup import finalize, is_impure
from netsurgeon.graph.codegen import base_class, dispatchable, install_dispatch, install_forward, other_calls
from netsurgeon.graph.hook_migration import carry_hooks
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.sites import Site
from netsurgeon.graph.trace import TRACE_LOCK, concrete_args, forward_params
from netsurgeon.modes import in_mode

__all__ = ["SWAP", "ChildrenAsLeaves", "Edit", "ScopedEditor"]

SWAP = "swap"
_CALL_OPS = ("call_module", "call_function", "call_method")


def _scope_label(path: str) -> str:
    return f"block:{path}" if path else "root"


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


class ChildrenAsLeaves(fx.Tracer):
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
        tracer = ChildrenAsLeaves(autowrap_functions=self.autowrap)
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
        params = dispatchable(owner, concrete)
        if params is None:
            install_forward(owner, local, dropped=dropped)
            return
        # optional arguments were kept concrete: keep the class's calling convention (names, defaults) with
        # a forward that dispatches on them, over the variant traced as called and the all-defaults one
        variants = [(concrete, local)]
        for other in other_calls(base_class(owner), params):
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
        if not install_dispatch(owner, params, variants, where, dropped):
            install_forward(owner, local, dropped=dropped)

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
