"""Node predicates over one traced graph: what a node computes (convolution, Linear, pooling, merge,
activation), where it lives (its module scopes, from ``node.meta["nn_module_stack"]``) and what it reaches.

:class:`NodeIndex` holds these facts; :class:`~netsurgeon.graph.index.GraphIndex` is built on it, and the site,
block and head finders (``graph.sites``, ``graph.blocks``, ``graph.heads``) read them.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections import deque
from collections.abc import Iterable
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = [
    "ACT_TYPES", "CAT_FUNCTIONS", "CONV_MODULES", "PASSTHROUGH_FUNCTIONS", "PASSTHROUGH_METHODS", "PASSTHROUGH_MODULES",
    "NodeIndex", "get_attr", "has_children", "match_patterns", "type_name",
]

#: activation names a pass may opt into, and the module classes / functions that implement them
ACT_TYPES: dict[str, tuple[type[nn.Module], tuple, tuple[str, ...]]] = {
    "ReLU": (nn.ReLU, (F.relu, torch.relu, torch.relu_), ("relu", "relu_")),
    "ReLU6": (nn.ReLU6, (F.relu6,), ()),
}
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_MUL_FUNCTIONS = (operator.mul, operator.imul, torch.mul)
CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_POOL_FUNCTIONS = (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)
_CONV_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d)
#: every convolution module (the public subclasses of torch's private ``_ConvNd``, lazy and QAT ones included)
CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
PASSTHROUGH_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
PASSTHROUGH_FUNCTIONS = (torch.flatten, F.dropout)
PASSTHROUGH_METHODS = ("flatten", "view", "reshape", "contiguous", "squeeze")
_GLOBAL_POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_GLOBAL_POOL_FUNCTIONS = (F.adaptive_avg_pool2d, F.adaptive_max_pool2d)
_REDUCE_NAMES = ("mean", "amax")
#: activation module types that, met later on a block's data path, mean a ReLU is not the block's last
#: activation (gates such as Sigmoid/Hardsigmoid and softmaxes are not feature activations)
_OTHER_ACT_MODULES: tuple[type[nn.Module], ...] = (
    nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.ELU, nn.CELU, nn.SELU, nn.LeakyReLU, nn.PReLU, nn.RReLU,
    nn.Hardtanh, nn.Tanh, nn.Softplus, nn.ReLU, nn.ReLU6,
)
_OTHER_ACT_FUNCTIONS = frozenset({"gelu", "silu", "hardswish", "mish", "elu", "celu", "selu", "leaky_relu",
                                  "prelu", "rrelu", "hardtanh", "tanh", "softplus", "relu", "relu_", "relu6"})
_OTHER_ACT_METHODS = frozenset({"tanh", "tanh_", "relu", "relu_"})


def match_patterns(name: str, patterns: Iterable[str]) -> bool:
    """fnmatch globs, or ``re:``-prefixed regular expressions (full match)."""
    for p in patterns:
        if p.startswith("re:"):
            if re.fullmatch(p[3:], name):
                return True
        elif fnmatch.fnmatchcase(name, p):
            return True
    return False


def _stack(node: fx.Node) -> list[str]:
    """Enclosing module paths, outermost first (for a call_module node, ending with the module itself)."""
    meta = node.meta.get("nn_module_stack") or {}
    return [value[0] for value in meta.values()]


def _stack_types(node: fx.Node) -> dict[str, type]:
    meta = node.meta.get("nn_module_stack") or {}
    return {value[0]: value[1] for value in meta.values()}


def type_name(tp: object) -> str:
    """The bare class name of a module type as fx records it (a class or its dotted string)."""
    return tp.__name__ if isinstance(tp, type) else str(tp).rsplit(".", 1)[-1].strip("'>")


class NodeIndex:
    """Everything about single nodes of one graph, computed once.

    Build a new index after editing the graph; an index never follows edits.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes: list[fx.Node] = list(gm.graph.nodes)
        self.order: dict[fx.Node, int] = {n: i for i, n in enumerate(self.nodes)}
        self.by_name: dict[str, fx.Node] = {n.name: n for n in self.nodes}
        self.modules: dict[str, nn.Module] = dict(gm.named_modules())
        self.stacks: dict[fx.Node, list[str]] = {n: _stack(n) for n in self.nodes}
        # the original classes of module scopes (the GraphModule's own containers are plain nn.Module)
        self.scope_types: dict[str, type] = {}
        for n in self.nodes:
            self.scope_types.update(_stack_types(n))

    # ---------------------------------------------------------------- node predicates
    def module_of(self, node: fx.Node) -> nn.Module | None:
        return self.modules.get(node.target) if node.op == "call_module" else None

    def is_conv(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module_of(node), CONV_MODULES)
        return node.op == "call_function" and node.target in _CONV_FUNCTIONS

    def is_linear(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module_of(node), nn.Linear)
        return node.op == "call_function" and node.target is F.linear

    def linear_weight(self, node: fx.Node) -> fx.Node | None:
        weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        return weight if isinstance(weight, fx.Node) and weight.op == "get_attr" else None

    def linear_path(self, node: fx.Node) -> str | None:
        """The module path of a Linear call: the called module, or for a functional ``linear`` that fx
        traced out of an ``nn.Linear`` subclass (timm's ``Linear``) the module owning its weight."""
        if node.op == "call_module":
            return str(node.target) if isinstance(self.module_of(node), nn.Linear) else None
        if not (node.op == "call_function" and node.target is F.linear):
            return None
        weight = self.linear_weight(node)
        if weight is None:
            return None
        owner = str(weight.target).rpartition(".")[0]
        tp = self.scope_types.get(owner)
        return owner if owner and isinstance(tp, type) and issubclass(tp, nn.Linear) else None

    def call_count(self, path: str) -> int:
        """How many graph nodes run the module at ``path``: its own calls, or (traced through) the
        distinct nodes that read its parameters."""
        calls = {n for n in self.nodes if n.op == "call_module" and n.target == path}
        for n in self.nodes:
            if n.op == "get_attr" and str(n.target).rpartition(".")[0] == path:
                calls.update(n.users)
        return len(calls)

    def is_other_activation(self, node: fx.Node, act_types: Iterable[str]) -> bool:
        """An activation of a type the pass does not count (GELU, SiLU, Hardswish...; gates excluded)."""
        counted = tuple(ACT_TYPES[a][0] for a in act_types)
        functions = {f for a in act_types for f in ACT_TYPES[a][1]}
        methods = {m for a in act_types for m in ACT_TYPES[a][2]}
        if node.op == "call_module":
            module = self.module_of(node)
            if module is None:
                return False
            inner = [module, *module.modules()] if has_children(module) else [module]
            return any(isinstance(m, _OTHER_ACT_MODULES) and not isinstance(m, counted) for m in inner)
        if node.op == "call_function":
            name = getattr(node.target, "__name__", "")
            return name in _OTHER_ACT_FUNCTIONS and node.target not in functions
        if node.op == "call_method":
            return node.target in _OTHER_ACT_METHODS and node.target not in methods
        return False

    def is_pool(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module_of(node), _POOL_MODULES)
        return node.op == "call_function" and node.target in _POOL_FUNCTIONS

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.args[:2] if isinstance(a, fx.Node) and a.op != "get_attr"]

    def is_residual_add(self, node: fx.Node) -> bool:
        is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
            node.op == "call_method" and node.target in ("add", "add_")
        )
        return is_add and len(self.tensor_args(node)) == 2

    def is_mul(self, node: fx.Node) -> bool:
        return (node.op == "call_function" and node.target in _MUL_FUNCTIONS) or (
            node.op == "call_method" and node.target in ("mul", "mul_")
        )

    def in_scope(self, node: fx.Node, scope: str) -> bool:
        return scope in self.stacks[node]

    def innermost_scope(self, node: fx.Node) -> str:
        stack = self.stacks[node]
        if node.op == "call_module":
            stack = stack[:-1]
        return stack[-1] if stack else ""

    # ---------------------------------------------------------------- reachability
    def reachable(self, start: fx.Node | Iterable[fx.Node], within: set[fx.Node] | None = None, *,
                  upstream: bool = False) -> set[fx.Node]:
        """Nodes reachable from ``start`` (a node or several) through users, or through inputs when
        ``upstream``; the starts themselves only if reached again. Optionally restricted to ``within``."""
        seen: set[fx.Node] = set()
        queue = deque([start] if isinstance(start, fx.Node) else start)
        while queue:
            node = queue.popleft()
            for nxt in node.all_input_nodes if upstream else node.users:
                if nxt in seen or (within is not None and nxt not in within):
                    continue
                seen.add(nxt)
                queue.append(nxt)
        return seen

    @cached_property
    def conv_downstream(self) -> dict[fx.Node, bool]:
        """For every node: does any convolution consume its output, directly or later?"""
        result: dict[fx.Node, bool] = {}
        for node in reversed(self.nodes):
            result[node] = any(self.is_conv(u) or result.get(u, False) for u in node.users)
        return result

    def is_global_pool(self, node: fx.Node) -> bool:
        """Pooling to 1x1 that keeps the spatial dims: adaptive pools to 1, mean/amax over (H, W) with
        keepdim, and averages, sums or concatenations of those (timm's avg+max pools)."""
        module = self.module_of(node)
        if isinstance(module, _GLOBAL_POOL_MODULES):
            return module.output_size in (1, (1, 1))
        if node.op == "call_function" and node.target in _GLOBAL_POOL_FUNCTIONS:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            return size in (1, (1, 1), [1, 1])
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if node.op in ("call_method", "call_function") and name in _REDUCE_NAMES:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
            return bool(keep) and isinstance(dims, (tuple, list)) and {d % 4 for d in dims} == {2, 3}
        combine = (node.op == "call_function" and node.target in (*_ADD_FUNCTIONS, *_MUL_FUNCTIONS)) or (
            node.op == "call_function" and node.target in CAT_FUNCTIONS)
        if combine:
            parts = node.args[0] if node.target in CAT_FUNCTIONS else node.args[:2]
            tensors = [p for p in parts if isinstance(p, fx.Node)] if isinstance(parts, (list, tuple)) else []
            return bool(tensors) and all(self.is_global_pool(p) for p in tensors)
        return False


def get_attr(gm: fx.GraphModule, target: str) -> torch.Tensor:
    """The tensor a ``get_attr`` node's dotted target names on ``gm``."""
    value: object = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def has_children(module: nn.Module) -> bool:
    """Whether the module is a container (has submodules), not a leaf."""
    return next(module.children(), None) is not None
