"""fx clean-up after an edit: dead code removed (in-place calls kept), graph checked and recompiled, stateless
submodules nothing calls any more pruned."""

from __future__ import annotations

from typing import Any

from torch import fx

__all__ = ["finalize", "is_impure"]

_OPERATOR_INPLACE = {"iadd", "isub", "imul", "itruediv", "iand", "ior"}


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
