"""ReLU *sites*: each place in the executed graph where an activation is applied.

A site is an ``nn.ReLU`` call (every call of a shared module is its own site), ``F.relu``/``torch.relu``,
``.relu()``, or an activation module hidden inside a leaf the tracer did not enter (timm
``BatchNormAct2d.act`` on the ``fx+timm-leaves`` rung). Activations inside gating sub-modules (SE/ECA: a
scope whose output multiplies the scope's own input) are marked, since they are never a block's
activation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import fx, nn

from netsurgeon.graph.nodes import ACT_TYPES, NodeIndex, has_children, match_patterns

__all__ = ["ACT_TYPES", "Site", "SiteFinder", "match_patterns"]

_INPLACE_FUNCTIONS = (torch.relu_,)
SiteKind = Literal["module", "function", "method", "nested"]


@dataclass(frozen=True)
class Site:
    """One activation call in the graph."""

    node: str  # fx node name (for nested sites: the leaf module's node)
    kind: SiteKind
    target: str  # module path (module/nested) or function/method name
    act: str  # key of ACT_TYPES
    inplace: bool
    call_index: int  # which call of a shared module (0 for the first, and for non-module sites)
    scope: str  # innermost enclosing module path ('' = the model itself)
    order: int  # position in graph order

    @property
    def label(self) -> str:
        """A stable, readable name: ``layer1.0.relu@1``, ``features.norm5.act``, ``inception3a.branch1[relu]``."""
        if self.kind in ("module", "nested"):
            return self.target + (f"@{self.call_index}" if self.call_index else "")
        where = self.scope or "<model>"
        suffix = f"#{self.call_index}" if self.call_index else ""
        return f"{where}[{self.target}{suffix}]"

    @property
    def description(self) -> str:
        how = {"module": "nn.", "function": "F.", "method": "Tensor.", "nested": "nn."}[self.kind]
        name = self.act if self.kind in ("module", "nested") else self.target
        extra = " in place" if self.inplace else ""
        if self.kind == "nested":
            extra += " (inside a leaf module)"
        return f"{how}{name}{extra}"


class SiteFinder:
    """Sites and gating scopes of the graph ``index`` holds (see the module docstring); gating scopes are found once."""

    def __init__(self, index: NodeIndex) -> None:
        self.index = index

    def sites(self, act_types: Iterable[str] = ("ReLU",)) -> list[Site]:
        """Every activation site of the given types, in graph order."""
        acts = {name: ACT_TYPES[name] for name in act_types}
        found: list[Site] = []
        module_calls: dict[str, int] = {}
        function_calls: dict[tuple[str, str], int] = {}
        for node in self.index.nodes:
            scope = self.index.innermost_scope(node)
            if node.op == "call_module":
                module = self.index.module_of(node)
                act = _act_of_module(module, acts)
                index = module_calls.get(node.target, 0)
                module_calls[node.target] = index + 1
                if act is not None:
                    found.append(
                        Site(node.name, "module", node.target, act, bool(getattr(module, "inplace", False)),
                             index, scope, self.index.order[node])
                    )
                elif module is not None and has_children(module):
                    for sub_path, sub in module.named_modules():
                        sub_act = _act_of_module(sub, acts) if sub_path else None
                        if sub_act is not None:
                            found.append(
                                Site(node.name, "nested", f"{node.target}.{sub_path}", sub_act,
                                     bool(getattr(sub, "inplace", False)), index, scope, self.index.order[node])
                            )
            elif node.op in ("call_function", "call_method"):
                for act, (_, functions, methods) in acts.items():
                    hit = (node.op == "call_function" and node.target in functions) or (
                        node.op == "call_method" and node.target in methods
                    )
                    if not hit:
                        continue
                    name = node.target if isinstance(node.target, str) else node.target.__name__
                    key = (scope, name)
                    index = function_calls.get(key, 0)
                    function_calls[key] = index + 1
                    found.append(
                        Site(node.name, "method" if node.op == "call_method" else "function", name, act,
                             _call_is_inplace(node), index, scope, self.index.order[node])
                    )
        return found

    def site_node(self, site: Site) -> fx.Node:
        return self.index.by_name[site.node]

    # ---------------------------------------------------------------- gating (SE/ECA) scopes
    @cached_property
    def gating_scopes(self) -> set[str]:
        """Scopes whose output multiplies their own input by something computed inside (SE, ECA...)."""
        scopes = set()
        for node in self.index.nodes:
            if not self.index.is_mul(node):
                continue
            scope = self.index.innermost_scope(node)
            if not scope:
                continue
            operands = self.index.tensor_args(node)
            inside = [a for a in operands if self.index.in_scope(a, scope)]
            if len(operands) == 2 and len(inside) == 1:
                scopes.add(scope)
        return scopes

    def in_gating_scope(self, site: Site, below: str = "") -> bool:
        node = self.index.by_name[site.node]
        path = self.index.stacks[node] if site.kind != "nested" else self.index.stacks[node] + [site.target]
        return any(s in self.gating_scopes and s != below for s in path)

    def in_gating(self, node: fx.Node) -> bool:
        """Is ``node`` inside a gating (SE/ECA) sub-module?"""
        return any(s in self.gating_scopes for s in self.index.stacks[node])


def _act_of_module(module: nn.Module | None, acts: dict) -> str | None:
    for name, (cls, _, _) in acts.items():
        if isinstance(module, cls):
            return name
    return None


def _call_is_inplace(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target.endswith("_")
    if node.target in _INPLACE_FUNCTIONS:
        return True
    if "inplace" in node.kwargs:
        return bool(node.kwargs["inplace"])
    return len(node.args) > 1 and bool(node.args[1])
