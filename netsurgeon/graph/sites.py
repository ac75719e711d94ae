"""Find what passes act on, structurally: ReLU *sites*, basic modules (*blocks*), and the head.

A *site* is one place in the executed graph where an activation is applied: an ``nn.ReLU`` call (every
call of a shared module is its own site), ``F.relu``/``torch.relu``, ``.relu()``, or an activation
module hidden inside a leaf the tracer did not enter (timm ``BatchNormAct2d.act`` on the
``fx+timm-leaves`` rung).

Blocks are found from the graph, never from model names:

* a *residual* block is the innermost module scope of a residual add (two tensor operands, at least one
  computed inside the scope) that holds an activation (not attention arithmetic such as halonet's
  attention plus relative-position logits); a *branch* block is the innermost scope of a concat of at least two
  parallel tensors computed inside it (Inception, Fire). Every other instance of a class found this way
  is a block too (MobileNetV2's stride-2 ``InvertedResidual`` has no add).
* if the graph has no merge blocks, the minimal module scopes holding at least two convolutions are
  *units* (DenseNet's dense layer), each cut at pooling nodes into stages (VGG's ``features``).

Module membership comes from ``node.meta["nn_module_stack"]``. Activations inside gating sub-modules
(SE/ECA: a scope whose output multiplies the scope's own input) never count as a block's activation.
Nor do activations off a block's *data path* (the nodes reachable from the block's input that also
reach its output): torchvision Swin-V2's position-bias MLP computes a table from constant coordinates
inside the attention, and its ReLU is no activation of the block's features.

The head is the layer that makes the logits, found by walking back from the output through flatten,
dropout and identity: an ``nn.Linear`` (any subclass, also when fx traced through it into a functional
``linear`` on the module's own weights, as with timm's ``Linear``), or a 1x1 ``Conv2d`` applied after
global pooling (timm DLA, DPN, ResNetV2: an FC layer in all but name). A convolution *before* the
pooling (SqueezeNet) is not a head layer.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = [
    "ACT_TYPES",
    "Block",
    "GraphIndex",
    "Head",
    "Site",
    "match_patterns",
]

#: activation names a pass may opt into, and the module classes / functions that implement them
ACT_TYPES: dict[str, tuple[type[nn.Module], tuple, tuple[str, ...]]] = {
    "ReLU": (nn.ReLU, (F.relu, torch.relu, torch.relu_), ("relu", "relu_")),
    "ReLU6": (nn.ReLU6, (F.relu6,), ()),
}
_INPLACE_FUNCTIONS = (torch.relu_,)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_MUL_FUNCTIONS = (operator.mul, operator.imul, torch.mul)
_CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_POOL_FUNCTIONS = (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)
_CONV_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d)
_PASSTHROUGH_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
_PASSTHROUGH_FUNCTIONS = (torch.flatten, F.dropout)
_PASSTHROUGH_METHODS = ("flatten", "view", "reshape", "contiguous", "squeeze")
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


@dataclass
class Block:
    """A basic module: a module scope (or a synthetic stage of one) and the graph nodes inside it."""

    name: str  # module path, or 'features[0:5]' for a synthetic stage, 'stem' / 'head'
    kind: Literal["residual", "branch", "unit", "stem", "head"]
    cls: str  # class name of the module ('' for synthetic groups)
    nodes: list[fx.Node] = field(repr=False)

    @cached_property
    def node_set(self) -> set[fx.Node]:
        return set(self.nodes)


@dataclass(frozen=True)
class Head:
    """The layer that produces the logits, found by walking back from the output."""

    node: str
    target: str  # module path ('' when the head is a functional F.linear on weights of no Linear module)
    in_features: int | None
    out_features: int | None
    passthrough: tuple[str, ...]  # what lies between the layer and the output (dropout, flatten, ...)
    kind: Literal["linear", "conv1x1"] = "linear"  # conv1x1: a 1x1 Conv2d after global pooling


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


def _type_name(tp: object) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).rsplit(".", 1)[-1].strip("'>")


class GraphIndex:
    """Everything the passes need to know about one graph, computed once.

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
        self._data_paths: dict[str, tuple[Block, set[fx.Node]]] = {}

    # ---------------------------------------------------------------- node predicates
    def module_of(self, node: fx.Node) -> nn.Module | None:
        return self.modules.get(node.target) if node.op == "call_module" else None

    def is_conv(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module_of(node), nn.modules.conv._ConvNd)
        return node.op == "call_function" and node.target in _CONV_FUNCTIONS

    def is_linear(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module_of(node), nn.Linear)
        return node.op == "call_function" and node.target is F.linear

    def _linear_weight(self, node: fx.Node) -> fx.Node | None:
        weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        return weight if isinstance(weight, fx.Node) and weight.op == "get_attr" else None

    def linear_path(self, node: fx.Node) -> str | None:
        """The module path of a Linear call: the called module, or for a functional ``linear`` that fx
        traced out of an ``nn.Linear`` subclass (timm's ``Linear``) the module owning its weight."""
        if node.op == "call_module":
            return str(node.target) if isinstance(self.module_of(node), nn.Linear) else None
        if not (node.op == "call_function" and node.target is F.linear):
            return None
        weight = self._linear_weight(node)
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
            inner = [module, *module.modules()] if _has_children(module) else [module]
            return any(isinstance(m, _OTHER_ACT_MODULES) and not isinstance(m, counted) for m in inner)
        if node.op == "call_function":
            name = getattr(node.target, "__name__", "")
            return name in _OTHER_ACT_FUNCTIONS and node.target not in functions
        if node.op == "call_method":
            return node.target in _OTHER_ACT_METHODS and node.target not in methods
        return False

    def in_gating(self, node: fx.Node) -> bool:
        """Is ``node`` inside a gating (SE/ECA) sub-module?"""
        return any(s in self.gating_scopes for s in self.stacks[node])

    def is_pool(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module_of(node), _POOL_MODULES)
        return node.op == "call_function" and node.target in _POOL_FUNCTIONS

    def _tensor_args(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.args[:2] if isinstance(a, fx.Node) and a.op != "get_attr"]

    def is_residual_add(self, node: fx.Node) -> bool:
        is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
            node.op == "call_method" and node.target in ("add", "add_")
        )
        return is_add and len(self._tensor_args(node)) == 2

    def _is_mul(self, node: fx.Node) -> bool:
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
    def reachable(self, start: fx.Node, within: set[fx.Node] | None = None) -> set[fx.Node]:
        """Nodes reachable from ``start`` through users (not including ``start``), optionally restricted."""
        seen: set[fx.Node] = set()
        queue = deque([start])
        while queue:
            for user in queue.popleft().users:
                if user in seen or (within is not None and user not in within):
                    continue
                seen.add(user)
                queue.append(user)
        return seen

    @cached_property
    def conv_downstream(self) -> dict[fx.Node, bool]:
        """For every node: does any convolution consume its output, directly or later?"""
        result: dict[fx.Node, bool] = {}
        for node in reversed(self.nodes):
            result[node] = any(self.is_conv(u) or result.get(u, False) for u in node.users)
        return result

    # ---------------------------------------------------------------- sites
    def sites(self, act_types: Iterable[str] = ("ReLU",)) -> list[Site]:
        """Every activation site of the given types, in graph order."""
        acts = {name: ACT_TYPES[name] for name in act_types}
        found: list[Site] = []
        module_calls: dict[str, int] = {}
        function_calls: dict[tuple[str, str], int] = {}
        for node in self.nodes:
            scope = self.innermost_scope(node)
            if node.op == "call_module":
                module = self.module_of(node)
                act = _act_of_module(module, acts)
                index = module_calls.get(node.target, 0)
                module_calls[node.target] = index + 1
                if act is not None:
                    found.append(
                        Site(node.name, "module", node.target, act, bool(getattr(module, "inplace", False)),
                             index, scope, self.order[node])
                    )
                elif module is not None and _has_children(module):
                    for sub_path, sub in module.named_modules():
                        sub_act = _act_of_module(sub, acts) if sub_path else None
                        if sub_act is not None:
                            found.append(
                                Site(node.name, "nested", f"{node.target}.{sub_path}", sub_act,
                                     bool(getattr(sub, "inplace", False)), index, scope, self.order[node])
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
                             _call_is_inplace(node), index, scope, self.order[node])
                    )
        return found

    def site_node(self, site: Site) -> fx.Node:
        return self.by_name[site.node]

    # ---------------------------------------------------------------- gating (SE/ECA) scopes
    @cached_property
    def gating_scopes(self) -> set[str]:
        """Scopes whose output multiplies their own input by something computed inside (SE, ECA...)."""
        scopes = set()
        for node in self.nodes:
            if not self._is_mul(node):
                continue
            scope = self.innermost_scope(node)
            if not scope:
                continue
            operands = self._tensor_args(node)
            inside = [a for a in operands if self.in_scope(a, scope)]
            if len(operands) == 2 and len(inside) == 1:
                scopes.add(scope)
        return scopes

    def in_gating_scope(self, site: Site, below: str = "") -> bool:
        node = self.by_name[site.node]
        path = self.stacks[node] if site.kind != "nested" else self.stacks[node] + [site.target]
        return any(s in self.gating_scopes and s != below for s in path)

    # ---------------------------------------------------------------- blocks
    def _module_type(self, scope: str) -> type | None:
        return self.scope_types.get(scope)

    def blocks(self) -> list[Block]:
        """Basic modules in execution order (see the module docstring for the rules)."""
        merge: dict[str, str] = {}  # scope -> kind
        for node in self.nodes:
            scope = self.innermost_scope(node)
            if not scope:
                continue
            if self.is_residual_add(node):
                if any(self.in_scope(a, scope) for a in self._tensor_args(node)):
                    merge.setdefault(scope, "residual")
            elif node.op == "call_function" and node.target in _CAT_FUNCTIONS and node.args:
                parts = node.args[0]
                if isinstance(parts, (list, tuple)):
                    inner = [p for p in parts if isinstance(p, fx.Node) and self.in_scope(p, scope)]
                    if len(inner) >= 2 and self._mutually_unreachable(inner):
                        merge[scope] = "branch"
        if merge:
            classes = {self._module_type(s): k for s, k in merge.items()}
            for path, tp in self.scope_types.items():
                if path and tp in classes and path not in merge:
                    merge[path] = classes[tp]
            # a merge inside attention arithmetic (halonet's attention logits plus relative-position
            # logits) is no basic module: keep the scopes that hold an activation
            computing = self._scopes_computing(merge)
            merge = {p: k for p, k in merge.items() if p in computing}
            # keep the innermost blocks only
            paths = sorted(merge, key=len)
            keep = [p for p in paths if not any(q != p and q.startswith(p + ".") for q in paths)]
            members = self._members(keep)
            blocks = [Block(p, merge[p], _type_name(self._module_type(p)), members[p]) for p in keep]
        else:
            blocks = self._unit_blocks()
        blocks = [b for b in blocks if b.nodes]
        blocks.sort(key=lambda b: self.order[b.nodes[0]])
        return blocks

    def _scopes_computing(self, scopes: Iterable[str]) -> set[str]:
        """The scopes among ``scopes`` that contain an activation call (ReLU-type, GELU, SiLU...)."""
        wanted, found = set(scopes), set()
        for node in self.nodes:
            if node.op not in ("call_module", "call_function", "call_method"):
                continue
            if self.is_other_activation(node, ()):
                found.update(s for s in self.stacks[node] if s in wanted)
        return found

    def _members(self, scopes: Iterable[str]) -> dict[str, list[fx.Node]]:
        """The nodes inside each scope, in graph order, in one sweep over the graph."""
        members: dict[str, list[fx.Node]] = {s: [] for s in scopes}
        for node in self.nodes:
            for scope in self.stacks[node]:
                if scope in members and (not members[scope] or members[scope][-1] is not node):
                    members[scope].append(node)
        return members

    def _mutually_unreachable(self, nodes: list[fx.Node]) -> bool:
        for a in nodes:
            reach = self.reachable(a)
            if any(b in reach for b in nodes if b is not a):
                return False
        return True

    def _unit_blocks(self) -> list[Block]:
        conv_count: dict[str, int] = {}
        for node in self.nodes:
            if self.is_conv(node):
                for scope in self.stacks[node][:-1] if node.op == "call_module" else self.stacks[node]:
                    conv_count[scope] = conv_count.get(scope, 0) + 1
        candidates = [s for s, c in conv_count.items() if c >= 2]
        minimal = [s for s in candidates if not any(o != s and o.startswith(s + ".") for o in candidates)]
        blocks: list[Block] = []
        inside = self._members(minimal)
        for scope in minimal:
            members = inside[scope]
            segments: list[list[fx.Node]] = [[]]
            for node in members:
                segments[-1].append(node)
                if self.is_pool(node):
                    segments.append([])
            segments = [s for s in segments if any(self.is_conv(n) for n in s)]
            cls = _type_name(self._module_type(scope))
            if len(segments) == 1:
                blocks.append(Block(scope, "unit", cls, segments[0]))
            else:
                for i, seg in enumerate(segments):
                    blocks.append(Block(f"{scope}[stage{i}]", "unit", cls, seg))
        return blocks

    # ---------------------------------------------------------------- within a block
    def last_sites(self, block: Block, candidates: list[Site]) -> list[Site]:
        """Candidates from which no other candidate is reachable inside the block."""
        within = block.node_set
        nodes = {s: self.by_name[s.node] for s in candidates}
        last = []
        for site in candidates:
            reach = self.reachable(nodes[site], within)
            if not any(nodes[o] in reach for o in candidates if o is not site and nodes[o] is not nodes[site]):
                last.append(site)
        return last

    def is_preactivation(self, block: Block, candidates: list[Site]) -> bool:
        """True when some activation runs before any convolution of the block (BN-ReLU-conv layout)."""
        within = block.node_set
        convs = [n for n in block.nodes if self.is_conv(n)]
        reached: set[fx.Node] = set()
        for conv in convs:
            reached |= self.reachable(conv, within)
        return any(self.by_name[s.node] not in reached for s in candidates)

    def ends_linearly(self, block: Block, last: list[Site]) -> bool:
        """True when a convolution follows the block's last activations (MobileNetV2's linear bottleneck)."""
        within = block.node_set
        return any(
            any(self.is_conv(n) for n in self.reachable(self.by_name[s.node], within)) for s in last
        )

    def data_path(self, block: Block) -> set[fx.Node]:
        """Nodes of ``block`` reachable from its input that also reach its output.

        The input nodes are those reading a tensor computed outside the block (not a parameter or
        buffer); the output nodes are those read outside it. A side computation from constants (a
        position-bias table) is off the path even when its result is added to the features.
        """
        cached = self._data_paths.get(block.name)
        if cached is not None and cached[0] is block:
            return cached[1]
        within = block.node_set
        entries = [n for n in block.nodes if n.op == "placeholder"
                   or any(a not in within and a.op != "get_attr" for a in n.all_input_nodes)]
        exits = [n for n in block.nodes if n.op == "output" or any(u not in within for u in n.users)]
        forward = set(entries)
        queue = deque(entries)
        while queue:
            for user in queue.popleft().users:
                if user in within and user not in forward:
                    forward.add(user)
                    queue.append(user)
        backward = set(exits)
        queue = deque(exits)
        while queue:
            for source in queue.popleft().all_input_nodes:
                if source in forward and source not in backward:
                    backward.add(source)
                    queue.append(source)
        path = forward & backward
        self._data_paths[block.name] = (block, path)
        return path

    def on_data_path(self, block: Block, site: Site) -> bool:
        return self.by_name[site.node] in self.data_path(block)

    def followed_by_other_activation(self, block: Block, site: Site, act_types: Iterable[str]) -> bool:
        """Does an activation of another type (GELU, SiLU...) come after ``site`` on the block's data path?"""
        path = self.data_path(block)
        for node in self.reachable(self.by_name[site.node], path):
            if self.is_other_activation(node, act_types) and not self.in_gating(node):
                return True
        return False

    # ---------------------------------------------------------------- head
    def head(self) -> Head | None:
        """Walk back from the output through dropout/flatten/identity to the layer making the logits."""
        output = next((n for n in reversed(self.nodes) if n.op == "output"), None)
        if output is None or not isinstance(output.args[0], fx.Node):
            return None
        node = output.args[0]
        passed: list[str] = []
        while True:
            found = self._head_layer(node, tuple(passed))
            if found is not None:
                return found
            if not self._passthrough(node) or not node.args or not isinstance(node.args[0], fx.Node):
                return None
            passed.append(node.name)
            node = node.args[0]

    def _passthrough(self, node: fx.Node) -> bool:
        return (
            isinstance(self.module_of(node), _PASSTHROUGH_MODULES)
            or (node.op == "call_function" and node.target in _PASSTHROUGH_FUNCTIONS)
            or (node.op == "call_method" and node.target in _PASSTHROUGH_METHODS)
        )

    def _head_layer(self, node: fx.Node, passed: tuple[str, ...]) -> Head | None:
        module = self.module_of(node)
        if isinstance(module, nn.Linear):
            return Head(node.name, str(node.target), module.in_features, module.out_features, passed)
        if node.op == "call_function" and node.target is F.linear:
            weight = self._linear_weight(node)
            shape = tuple(_get_attr(self.gm, str(weight.target)).shape) if weight is not None else ()
            out_f, in_f = shape if len(shape) == 2 else (None, None)
            return Head(node.name, self.linear_path(node) or "", in_f, out_f, passed)
        if isinstance(module, nn.Conv2d) and set(module.kernel_size) == {1} and module.groups == 1 \
                and node.args and isinstance(node.args[0], fx.Node) and self._after_global_pool(node.args[0]):
            return Head(node.name, str(node.target), module.in_channels, module.out_channels, passed, "conv1x1")
        return None

    def _after_global_pool(self, node: fx.Node) -> bool:
        """Is ``node`` a global pooling (to 1x1), reached back through dropout/identity only?"""
        while isinstance(self.module_of(node), (nn.Dropout, nn.Identity)) or (
                node.op == "call_function" and node.target is F.dropout):
            if not node.args or not isinstance(node.args[0], fx.Node):
                return False
            node = node.args[0]
        return self.is_global_pool(node)

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
            node.op == "call_function" and node.target in _CAT_FUNCTIONS)
        if combine:
            parts = node.args[0] if node.target in _CAT_FUNCTIONS else node.args[:2]
            tensors = [p for p in parts if isinstance(p, fx.Node)] if isinstance(parts, (list, tuple)) else []
            return bool(tensors) and all(self.is_global_pool(p) for p in tensors)
        return False


def _get_attr(gm: fx.GraphModule, target: str) -> torch.Tensor:
    value: object = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def _act_of_module(module: nn.Module | None, acts: dict) -> str | None:
    for name, (cls, _, _) in acts.items():
        if isinstance(module, cls):
            return name
    return None


def _has_children(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def _call_is_inplace(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target.endswith("_")
    if node.target in _INPLACE_FUNCTIONS:
        return True
    if "inplace" in node.kwargs:
        return bool(node.kwargs["inplace"])
    return len(node.args) > 1 and bool(node.args[1])
