"""Basic modules (*blocks*), found from the graph, never from model names.

* a *residual* block is the innermost module scope of a residual add (two tensor operands, at least one
  computed inside the scope) that holds an activation (not attention arithmetic such as halonet's
  attention plus relative-position logits); a *branch* block is the innermost scope of a concat of at
  least two parallel tensors computed inside it (Inception, Fire). Every other instance of a class found
  this way is a block too (MobileNetV2's stride-2 ``InvertedResidual`` has no add).
* if the graph has no merge blocks, the minimal module scopes holding at least two convolutions are
  *units* (DenseNet's dense layer), each cut at pooling nodes into stages (VGG's ``features``).

Within a block: its *last* sites (no other site of it reachable from them), whether it rectifies before
its convolutions (pre-activation), whether it ends linearly, and its *data path* (the nodes reachable
from the block's input that also reach its output): torchvision Swin-V2's position-bias MLP computes a
table from constant coordinates inside the attention, and its ReLU is no activation of the block's
features.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from torch import fx

from netsurgeon.graph.nodes import CAT_FUNCTIONS, NodeIndex, type_name
from netsurgeon.graph.sites import Site, SiteFinder

__all__ = ["Block", "BlockFinder"]


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


class BlockFinder:
    """Blocks of the graph ``index`` holds, and what lies within them (see the module docstring); ``sites``
    tells which activations are gates. A block's data path is found once."""

    def __init__(self, index: NodeIndex, sites: SiteFinder) -> None:
        self.index = index
        self.sites = sites
        self._data_path_cache: dict[str, tuple[Block, set[fx.Node]]] = {}

    def _module_type(self, scope: str) -> type | None:
        return self.index.scope_types.get(scope)

    def blocks(self) -> list[Block]:
        """Basic modules in execution order (see the module docstring for the rules)."""
        merge: dict[str, str] = {}  # scope -> kind
        for node in self.index.nodes:
            scope = self.index.innermost_scope(node)
            if not scope:
                continue
            if self.index.is_residual_add(node):
                if any(self.index.in_scope(a, scope) for a in self.index.tensor_args(node)):
                    merge.setdefault(scope, "residual")
            elif node.op == "call_function" and node.target in CAT_FUNCTIONS and node.args:
                parts = node.args[0]
                if isinstance(parts, (list, tuple)):
                    inner = [p for p in parts if isinstance(p, fx.Node) and self.index.in_scope(p, scope)]
                    if len(inner) >= 2 and self._mutually_unreachable(inner):
                        merge[scope] = "branch"
        if merge:
            classes = {self._module_type(s): k for s, k in merge.items()}
            for path, tp in self.index.scope_types.items():
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
            blocks = [Block(p, merge[p], type_name(self._module_type(p)), members[p]) for p in keep]
        else:
            blocks = self._unit_blocks()
        blocks = [b for b in blocks if b.nodes]
        blocks.sort(key=lambda b: self.index.order[b.nodes[0]])
        return blocks

    def _scopes_computing(self, scopes: Iterable[str]) -> set[str]:
        """The scopes among ``scopes`` that contain an activation call (ReLU-type, GELU, SiLU...)."""
        wanted, found = set(scopes), set()
        for node in self.index.nodes:
            if node.op not in ("call_module", "call_function", "call_method"):
                continue
            if self.index.is_other_activation(node, ()):
                found.update(s for s in self.index.stacks[node] if s in wanted)
        return found

    def _members(self, scopes: Iterable[str]) -> dict[str, list[fx.Node]]:
        """The nodes inside each scope, in graph order, in one sweep over the graph."""
        members: dict[str, list[fx.Node]] = {s: [] for s in scopes}
        for node in self.index.nodes:
            for scope in self.index.stacks[node]:
                if scope in members and (not members[scope] or members[scope][-1] is not node):
                    members[scope].append(node)
        return members

    def _mutually_unreachable(self, nodes: list[fx.Node]) -> bool:
        for a in nodes:
            reach = self.index.reachable(a)
            if any(b in reach for b in nodes if b is not a):
                return False
        return True

    def _unit_blocks(self) -> list[Block]:
        conv_count: dict[str, int] = {}
        for node in self.index.nodes:
            if self.index.is_conv(node):
                for scope in self.index.stacks[node][:-1] if node.op == "call_module" else self.index.stacks[node]:
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
                if self.index.is_pool(node):
                    segments.append([])
            segments = [s for s in segments if any(self.index.is_conv(n) for n in s)]
            cls = type_name(self._module_type(scope))
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
        nodes = {s: self.index.by_name[s.node] for s in candidates}
        last = []
        for site in candidates:
            reach = self.index.reachable(nodes[site], within)
            if not any(nodes[o] in reach for o in candidates if o is not site and nodes[o] is not nodes[site]):
                last.append(site)
        return last

    def is_preactivation(self, block: Block, candidates: list[Site]) -> bool:
        """True when some activation runs before any convolution of the block (BN-ReLU-conv layout)."""
        within = block.node_set
        convs = [n for n in block.nodes if self.index.is_conv(n)]
        reached: set[fx.Node] = set()
        for conv in convs:
            reached |= self.index.reachable(conv, within)
        return any(self.index.by_name[s.node] not in reached for s in candidates)

    def ends_linearly(self, block: Block, last: list[Site]) -> bool:
        """True when a convolution follows the block's last activations (MobileNetV2's linear bottleneck)."""
        within = block.node_set
        return any(
            any(self.index.is_conv(n) for n in self.index.reachable(self.index.by_name[s.node], within)) for s in last
        )

    def data_path(self, block: Block) -> set[fx.Node]:
        """Nodes of ``block`` reachable from its input that also reach its output.

        The input nodes are those reading a tensor computed outside the block (not a parameter or
        buffer); the output nodes are those read outside it. A side computation from constants (a
        position-bias table) is off the path even when its result is added to the features.
        """
        cached = self._data_path_cache.get(block.name)
        if cached is not None and cached[0] is block:
            return cached[1]
        within = block.node_set
        entries = [n for n in block.nodes if n.op == "placeholder"
                   or any(a not in within and a.op != "get_attr" for a in n.all_input_nodes)]
        exits = [n for n in block.nodes if n.op == "output" or any(u not in within for u in n.users)]
        forward = set(entries) | self.index.reachable(entries, within)
        path = forward & (set(exits) | self.index.reachable(exits, forward, upstream=True))
        self._data_path_cache[block.name] = (block, path)
        return path

    def on_data_path(self, block: Block, site: Site) -> bool:
        return self.index.by_name[site.node] in self.data_path(block)

    def followed_by_other_activation(self, block: Block, site: Site, act_types: Iterable[str]) -> bool:
        """Does an activation of another type (GELU, SiLU...) come after ``site`` on the block's data path?"""
        path = self.data_path(block)
        for node in self.index.reachable(self.index.by_name[site.node], path):
            if self.index.is_other_activation(node, act_types) and not self.sites.in_gating(node):
                return True
        return False
