"""proportional-relu: the proportional module of Rethink ReLU (Zhao et al., "Rethink ReLU to Training
Better CNNs", arXiv 1709.06247).

The paper (arXiv 1709.06247, the proportional module) keeps the conv:ReLU count ratio of a module at N:M
with N > M. On a trained network the only
way to reach that ratio without adding compute is to erase ReLU sites, so this pass reuses the
EraseReLU machinery and differs only in *which* sites it selects:

* **Counted convolutions**: main-path convolutions in execution order within a scope; every depthwise
  or pointwise convolution counts as one. Not counted: shortcut projections (a convolution of a
  residual block that neither feeds nor is fed by another convolution of the block), convolutions in
  gating sub-modules (SE), the stem (convolutions before the first basic module) unless
  ``include_stem``, and classifier convolutions (after the last basic module) unless ``include_head``.
  Linear layers never count.
* **Ownership**: each counted convolution owns at most one ReLU site: the first one reached from its
  output before another convolution, Linear or activation of another type (BN, residual adds, dropout
  and SE multiplies are passed through); sites off their block's input-to-output data path (Swin-V2's
  position-bias MLP) are never owned. In pre-activation networks (timm ResNetV2, DenseNet: most basic
  modules apply a ReLU before their first convolution) a ReLU is owned by the convolution it feeds
  instead. A convolution that owns no ReLU still counts towards N (MobileNetV2's projection).
* **Keep rule**: in a scope whose counted convolutions are indexed i = 0..n-1, conv i's ReLU is kept iff
  ``floor((i+1+phase)*M/N) - floor((i+phase)*M/N) == 1``; the others are erased. A scope keeps at least
  ``min_keep`` of its owned ReLUs (the latest ones are restored first).
* **Scopes**: ``block`` (each basic module, as found for EraseReLU; convolutions between modules, such as
  DenseNet transitions, belong to none), ``stage`` (consecutive counted convolutions with the same
  output resolution, measured on a probe forward) or ``network``.

Worked examples: torchvision resnet18 at 2:1 goes from 17 ReLU sites to 9 (phase 1 reproduces
EraseReLU); resnet50 at 3:2 from 49 to 33; vgg16 with ``scope=stage`` keeps one ReLU per conv stage.
Parameters and the state_dict are unchanged; the function is not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from torch import fx

from netsurgeon.graph.blocks import Block
from netsurgeon.surgery import (
    Contract,
    GraphIndex,
    PassConfig,
    PassOutcome,
    Site,
    Workspace,
    erase_sites,
    register_pass,
)

__all__ = ["ProportionalReLU", "ScopePlan", "keeps", "kept_count", "plan_proportional"]

ActName = Literal["ReLU", "ReLU6"]


@dataclass(frozen=True)
class ProportionalReLU(PassConfig):
    """Keep the conv:ReLU ratio at N:M (N > M) by erasing ReLUs (Rethink ReLU)."""

    N: int = 2
    """Counted convolutions per window."""
    M: int = 1
    """ReLUs kept per window of N convolutions (1 <= M < N)."""
    scope: Literal["block", "stage", "network"] = "block"
    """Where windows are counted: each basic module, each resolution stage, or the whole network."""
    phase: int = 0
    """Shift of the window pattern (0..N-1); for M=1, 0 keeps the ReLU at the end of each window."""
    min_keep: int = 1
    """Never leave a scope with fewer kept ReLUs than this (when it owns that many)."""
    include_stem: bool = False
    """Count the convolutions before the first basic module."""
    include_head: bool = False
    """Count the convolutions after the last basic module (classifier convolutions)."""
    act_types: tuple[ActName, ...] = ("ReLU",)
    """Activation types that count as ReLU sites; add 'ReLU6' for MobileNet-style networks."""

    def validate(self) -> None:
        if self.M < 1:
            self.fail(f"M must be at least 1, got {self.M}; to erase every ReLU of a module use erase-relu.")
        if self.N <= self.M:
            self.fail(f"N must be greater than M, got N={self.N}, M={self.M} (N == M keeps every ReLU).")
        if not 0 <= self.phase < self.N:
            self.fail(f"phase must be between 0 and N-1={self.N - 1}, got {self.phase}.")
        if self.min_keep < 0:
            self.fail(f"min_keep must be 0 or more, got {self.min_keep}.")
        if not self.act_types:
            self.fail("act_types must name at least one activation (ReLU, ReLU6).")


def keeps(i: int, n: int, m: int, phase: int) -> bool:
    """Does counted convolution ``i`` keep its ReLU under the N:M rule?"""
    return (i + 1 + phase) * m // n - (i + phase) * m // n == 1


def kept_count(count: int, n: int, m: int, phase: int) -> int:
    """How many positions of a scope with ``count`` counted convolutions keep their ReLU."""
    return (count + phase) * m // n - phase * m // n


@dataclass
class ScopePlan:
    """One scope: its counted convolutions (node names) in order, the site each owns, and the decision."""

    name: str
    convs: list[str]
    owned: list[Site | None]
    keep: list[bool] = field(default_factory=list)
    raised: bool = False  # min_keep restored some ReLUs

    @property
    def erased(self) -> list[Site]:
        return [s for s, k in zip(self.owned, self.keep, strict=True) if s is not None and not k]


def _shortcut_convs(index: GraphIndex, block: Block, convs: list[fx.Node]) -> set[fx.Node]:
    """Convolutions of a residual block that neither feed nor are fed by another of its convolutions."""
    if block.kind != "residual" or len(convs) < 2:
        return set()
    within = block.node_set
    reach = {c: index.reachable(c, within) for c in convs}
    return {
        c for c in convs
        if not any(o in reach[c] for o in convs if o is not c) and not any(c in reach[o] for o in convs if o is not c)
    }


def _owner_search(index: GraphIndex, conv: fx.Node, site_at: dict[fx.Node, Site], forward: bool,
                  act_types: tuple[str, ...] = ("ReLU",)) -> fx.Node | None:
    """The nearest site node from ``conv`` (downstream, or upstream for pre-activation layouts); an
    activation of another type met first (GELU, SiLU...) is the conv's activation, so it owns no site."""
    start = list(conv.users) if forward else list(conv.all_input_nodes)
    queue, seen, found = deque(start), set(), []
    while queue:
        node = queue.popleft()
        if node in seen:
            continue
        seen.add(node)
        if node in site_at:
            found.append(node)
            continue
        if index.is_conv(node) or index.is_linear(node) or node.op in ("output", "placeholder", "get_attr"):
            continue
        if index.is_other_activation(node, act_types) and not index.in_gating(node):
            continue
        queue.extend(node.users if forward else node.all_input_nodes)
    if not found:
        return None
    return (min if forward else max)(found, key=index.order.__getitem__)


def plan_proportional(index: GraphIndex, cfg: ProportionalReLU, shapes: dict | None = None) -> list[ScopePlan]:
    """The scopes, their counted convolutions and owned sites, and which sites to erase, in four steps:
    the sites in play, the counted convolutions, each one's owned ReLU, the scopes and the keep rule."""
    blocks = index.blocks()
    block_of: dict[fx.Node, Block] = {n: b for b in blocks for n in b.nodes}
    sites = _sites_in_play(index, cfg, block_of)
    counted, part = _counted_convs(index, cfg, blocks, block_of)
    owner = _owners(index, cfg, counted, sites, blocks, block_of)
    groups = _scopes(cfg, counted, part, block_of, shapes)
    return [_keep_rule(ScopePlan(name, [c.name for c in members], [owner[c] for c in members]), cfg)
            for name, members in groups]


def _sites_in_play(index: GraphIndex, cfg: ProportionalReLU, block_of: dict[fx.Node, Block]) -> list[Site]:
    """ReLU sites outside gating scopes and, inside a block, on the block's data path."""
    return [s for s in index.sites(cfg.act_types) if not index.in_gating_scope(s)
            and ((b := block_of.get(index.site_node(s))) is None or index.on_data_path(b, s))]


def _counted_convs(index: GraphIndex, cfg: ProportionalReLU, blocks: list[Block],
                   block_of: dict[fx.Node, Block]) -> tuple[list[fx.Node], Callable[[fx.Node], str]]:
    """The main-path convolutions that count (no shortcut projections, SE convs, stem or head unless
    asked), and where each lies: 'body', 'stem', 'head' or 'between' blocks."""
    convs = [n for n in index.nodes if index.is_conv(n) and not index.in_gating(n)]
    shortcut: set[fx.Node] = set()
    for b in blocks:
        shortcut |= _shortcut_convs(index, b, [c for c in convs if block_of.get(c) is b])
    first = index.order[blocks[0].nodes[0]] if blocks else -1
    last = index.order[blocks[-1].nodes[-1]] if blocks else len(index.nodes)

    def part(conv: fx.Node) -> str:
        if conv in block_of:
            return "body"
        pos = index.order[conv]
        return "stem" if pos < first else "head" if pos > last else "between"

    counted = [c for c in convs if c not in shortcut]
    counted = [c for c in counted if not (part(c) == "stem" and not cfg.include_stem)]
    counted = [c for c in counted if not (part(c) == "head" and not cfg.include_head)]
    return counted, part


def _owners(index: GraphIndex, cfg: ProportionalReLU, counted: list[fx.Node], sites: list[Site],
            blocks: list[Block], block_of: dict[fx.Node, Block]) -> dict[fx.Node, Site | None]:
    """Each counted convolution's owned ReLU: the first site downstream before the next conv/Linear, or
    for pre-activation networks (most blocks rectify before their first conv) the site feeding it."""
    site_at: dict[fx.Node, Site] = {}
    for s in sites:
        site_at.setdefault(index.site_node(s), s)
    block_sites: dict[str, list[Site]] = {}
    for s in sites:
        if (b := block_of.get(index.site_node(s))) is not None:
            block_sites.setdefault(b.name, []).append(s)
    pre = [index.is_preactivation(b, block_sites[b.name]) for b in blocks if b.name in block_sites]
    forward = not pre or sum(pre) * 2 <= len(pre)
    owner: dict[fx.Node, Site | None] = {}
    taken: set[fx.Node] = set()
    for conv in counted:
        node = _owner_search(index, conv, site_at, forward, tuple(cfg.act_types))
        owner[conv] = None if node is None or node in taken else site_at[node]
        if owner[conv] is not None:
            taken.add(node)
    return owner


def _scopes(cfg: ProportionalReLU, counted: list[fx.Node], part: Callable[[fx.Node], str],
            block_of: dict[fx.Node, Block], shapes: dict | None) -> list[tuple[str, list[fx.Node]]]:
    """The counted convolutions grouped by ``scope``: the network, each block, or each resolution stage."""
    groups: list[tuple[str, list[fx.Node]]] = []
    if cfg.scope == "network":
        return [("network", counted)]
    if cfg.scope == "block":
        named = {"stem": "stem", "head": "head"}
        for conv in counted:
            p = part(conv)
            if p == "between":
                continue
            name = block_of[conv].name if p == "body" else named[p]
            if not groups or groups[-1][0] != name:
                groups.append((name, []))
            groups[-1][1].append(conv)
        return groups
    if shapes is None:
        raise ValueError("scope='stage' needs the measured shapes")
    previous = None
    for conv in counted:
        resolution = tuple(shapes[conv.name][2:])
        if resolution != previous:
            groups.append((f"stage{len(groups)}@{'x'.join(map(str, resolution))}", []))
            previous = resolution
        groups[-1][1].append(conv)
    return groups


def _keep_rule(plan: ScopePlan, cfg: ProportionalReLU) -> ScopePlan:
    """Keep M of every N counted convolutions' ReLUs; restore the latest owned ones up to ``min_keep``."""
    count = len(plan.convs)
    plan.keep = [keeps(i, cfg.N, cfg.M, cfg.phase) for i in range(count)]
    kept = sum(1 for s, k in zip(plan.owned, plan.keep, strict=True) if s is not None and k)
    for i in reversed(range(count)):
        if kept >= cfg.min_keep:
            break
        if plan.owned[i] is not None and not plan.keep[i]:
            plan.keep[i] = True
            plan.raised = True
            kept += 1
    return plan


@register_pass("proportional-relu", ProportionalReLU, contract=Contract.CHANGES_FUNCTION,
               structural=True, edits_weights=False)
def proportional_relu(ws: Workspace, cfg: ProportionalReLU) -> PassOutcome:
    index = ws.index()
    shapes = ws.shapes() if cfg.scope == "stage" else None
    plans = plan_proportional(index, cfg, shapes)
    counted = sum(len(p.convs) for p in plans)
    owned = sum(s is not None for p in plans for s in p.owned)
    out = PassOutcome()
    out.note(f"{len(plans)} {cfg.scope} scope(s), {counted} counted convolution(s) owning {owned} ReLU site(s)")
    raised = [p.name for p in plans if p.raised]
    if raised:
        out.note(f"min_keep={cfg.min_keep} kept extra ReLUs in {len(raised)} scope(s): {', '.join(raised[:5])}"
                f"{' ...' if len(raised) > 5 else ''}")
    out.changes = erase_sites(ws.editor(), [(p.name, s) for p in plans for s in p.erased])
    if not out.changes and "ReLU6" not in cfg.act_types and index.sites(("ReLU6",)):
        out.hint = f"{len(index.sites(('ReLU6',)))} ReLU6 sites: add act_types=[ReLU,ReLU6]"
    return out
