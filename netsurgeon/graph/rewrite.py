"""Editing a traced graph: erase or replace one site, insert a module, and the one epilogue.

Every graph edit ends with :func:`finalize`: dead-code elimination (keeping in-place calls), ``lint``,
``recompile``, and pruning of submodules that no node calls any more *and* that hold no state (so an
erased ReLU module disappears, while the state_dict never loses a key).
"""

from __future__ import annotations

from torch import fx, nn

from netsurgeon.errors import SurgeryError
from netsurgeon.graph.sites import GraphIndex, Site
from netsurgeon.report import SiteChange

__all__ = ["check_inplace_safe", "erase_site", "erase_sites", "finalize", "insert_after", "replace_site",
           "set_submodule"]


def check_inplace_safe(index: GraphIndex, site: Site) -> None:
    """Refuse to edit an in-place activation whose input is read again later (seeds-spec A.4).

    An in-place ReLU mutates its input; a consumer of that input running after the ReLU saw rectified
    values, and would see different values once the site is erased or made out of place.
    """
    if not site.inplace or site.kind == "nested":
        return
    node = index.site_node(site)
    source = node.args[0] if node.args else None
    if not isinstance(source, fx.Node):
        return
    if source.op == "placeholder":
        raise SurgeryError(
            f"site {site.label} rectifies the model input in place; netsurgeon will not edit it "
            "(the caller's tensor would change meaning)."
        )
    later = [u.name for u in source.users if u is not node and index.order[u] > index.order[node]]
    if later:
        raise SurgeryError(
            f"site {site.label} is in place and its input is read again afterwards by {', '.join(later)}; "
            "editing it would change those readers too, so netsurgeon refuses."
        )


def erase_site(index: GraphIndex, site: Site) -> None:
    """Remove one activation call: its users read its input instead (shared modules stay for other calls)."""
    node = index.site_node(site)
    if site.kind == "nested":
        set_submodule(index.gm, site.target, nn.Identity())
        return
    node.replace_all_uses_with(node.args[0])
    index.gm.graph.erase_node(node)


def erase_sites(index: GraphIndex, planned: list[tuple[str, Site]]) -> list[SiteChange]:
    """Erase ``(block name, site)`` pairs after checking every one first, so a refusal edits nothing."""
    for _, site in planned:
        check_inplace_safe(index, site)
    changes = []
    for block, site in planned:
        erase_site(index, site)
        after = "nn.Identity" if site.kind == "nested" else "erased"
        changes.append(SiteChange(site.label, site.description, after, block))
    return changes


def replace_site(index: GraphIndex, site: Site, module: nn.Module, name: str) -> None:
    """Replace one activation call by a call of a new submodule registered at ``name``."""
    node = index.site_node(site)
    if site.kind == "nested":
        set_submodule(index.gm, site.target, module)
        return
    index.gm.add_submodule(name, module)
    with index.gm.graph.inserting_after(node):
        new = index.gm.graph.call_module(name, (node.args[0],))
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    index.gm.graph.erase_node(node)


def insert_after(gm: fx.GraphModule, node: fx.Node, module: nn.Module, name: str) -> fx.Node:
    """Insert a call of a new submodule on ``node``'s output; every former user reads the new node."""
    gm.add_submodule(name, module)
    users = list(node.users)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    for user in users:
        user.replace_input_with(node, new)
    return new


def set_submodule(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` (its parent must exist), replacing what was there."""
    parent_path, _, attr = path.rpartition(".")
    parent = gm.get_submodule(parent_path) if parent_path else gm
    setattr(parent, attr, module)


def _is_impure(node: fx.Node) -> bool:
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
    gm.graph.eliminate_dead_code(is_impure_node=_is_impure)
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
