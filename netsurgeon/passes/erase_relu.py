"""erase-relu: EraseReLU (Dong et al., "EraseReLU: A Simple Way to Ease the Training of Deep
Convolution Neural Networks", arXiv 1709.07634).

The paper's headline rule: *erasing the last ReLU layer of all basic modules usually improves
performance*; the two factors it studies are where in the module the ReLU is erased and in what
proportion of modules (arXiv 1709.07634, abstract). This pass implements that rule as follows:

* basic modules are found structurally (``graph.blocks``): residual blocks (post-activation ResNet,
  ResNeXt, Wide-ResNet, RegNet, timm ResNet-D/SE variants), pre-activation blocks (timm ResNetV2),
  dense layers (DenseNet), conv stages between pooling layers (VGG, AlexNet), parallel-branch modules
  (Inception, SqueezeNet Fire);
* a module's *last* ReLU sites are those from which no other ReLU of the module is reachable: the
  post-add ReLU of a residual block, the pre-pool ReLU of a VGG stage, ``relu2`` of a dense layer, the
  last ReLU of each Inception branch. ReLUs inside gating sub-modules (squeeze-excitation) and off the
  module's input-to-output data path (Swin-V2's position-bias MLP) never count, and a ReLU followed on
  that path by an activation of another type (GELU, SiLU, Hardswish...) is not the module's last;
* modules that already end linearly (MobileNetV2/MNASNet inverted residuals: a convolution follows
  their last activation) are skipped and reported (``skip_linear_blocks``);
* the stem and the classifier are not basic modules unless ``include_stem``/``include_head``.

Erasing rewires a site's users to its input; a shared ``nn.ReLU`` module (torchvision ResNets call one
module two or three times) keeps its other calls. Parameters and the state_dict are unchanged, so
the weights still load into the original constructor, but the function is different: artifacts
record the pass so that reloading replays it.

Open questions (the full paper was not available): how modules are chosen when ``proportion < 1``
(default: evenly spread), and whether a ReLU is re-added before the head (default: no, offered as
``readd_relu_before_head`` as one public implementation does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import fx

from netsurgeon.graph.blocks import Block
from netsurgeon.graph.heads import global_pool_input
from netsurgeon.graph.sites import ACT_TYPES
from netsurgeon.surgery import (
    Contract,
    GraphIndex,
    NoMatchError,
    PassConfig,
    PassOutcome,
    Site,
    SiteChange,
    SurgeryError,
    Workspace,
    erase_sites,
    match_patterns,
    register_pass,
)

__all__ = ["EraseReLU", "plan_erasure", "select_blocks"]

ActName = Literal["ReLU", "ReLU6"]


@dataclass(frozen=True)
class EraseReLU(PassConfig):
    """Erase the last ReLU of every basic module, or of a proportion of them (EraseReLU)."""

    position: Literal["last"] | int = "last"
    """'last': every site of the module from which no other site of it is reachable; an int k: the
    k-th site in execution order (0 = first, -1 = last), for single-path modules only."""
    proportion: float = 1.0
    """Fraction of basic modules to treat (0 = identity)."""
    select: Literal["even", "first", "last"] = "even"
    """Which modules when proportion < 1: evenly spread, the first ones, or the last ones."""
    act_types: tuple[ActName, ...] = ("ReLU",)
    """Activation types that count as ReLU sites; add 'ReLU6' for MobileNet-style networks."""
    skip_linear_blocks: bool = True
    """Leave modules that already end without an activation after their last convolution."""
    readd_relu_before_head: bool = False
    """Insert one ReLU before the global pooling that feeds the classifier."""
    include_stem: bool = False
    """Treat the layers before the first basic module as one more module."""
    include_head: bool = False
    """Treat the classifier's activations (after the last convolution) as one more module."""
    include: tuple[str, ...] = ()
    """Only modules whose name matches one of these globs (or 're:' regexes); see 'netsurgeon inspect'."""

    def validate(self) -> None:
        if not 0.0 <= self.proportion <= 1.0:
            self.fail(f"proportion must be between 0 and 1, got {self.proportion}.")
        if not self.act_types:
            self.fail("act_types must name at least one activation (ReLU, ReLU6).")
        if len(set(self.act_types)) != len(self.act_types):
            self.fail(f"act_types has duplicates: {list(self.act_types)}.")


def select_blocks(count: int, proportion: float, select: str) -> list[int]:
    """Indices of the modules to treat: exactly floor(count * proportion) of them."""
    k = int(count * proportion + 1e-9)
    if select == "first":
        return list(range(k))
    if select == "last":
        return list(range(count - k, count))
    return [j for j in range(count) if int((j + 1) * proportion + 1e-9) - int(j * proportion + 1e-9) == 1]


def _extra_blocks(index: GraphIndex, blocks: list[Block], sites: list[Site], cfg: EraseReLU) -> list[Block]:
    """The stem and head as synthetic modules, when asked for."""
    in_block = set().union(*(b.node_set for b in blocks)) if blocks else set()
    loose = [s for s in sites if index.site_node(s) not in in_block]
    first = index.order[blocks[0].nodes[0]] if blocks else len(index.nodes)
    extra = []
    head = [s for s in loose if not index.conv_downstream[index.site_node(s)]]
    stem = [s for s in loose if s not in head and s.order < first]
    if cfg.include_stem and stem:
        extra.append(Block("stem", "stem", "", [n for n in index.nodes if index.order[n] < first]))
    if cfg.include_head and head:
        start = min(s.order for s in head)
        extra.append(Block("head", "head", "", [n for n in index.nodes if index.order[n] >= start]))
    return extra


def plan_erasure(index: GraphIndex, cfg: EraseReLU) -> tuple[list[tuple[Block, list[Site]]], list[str]]:
    """Which sites to erase, grouped by module, and notes on what was skipped."""
    sites = index.sites(cfg.act_types)
    blocks = index.blocks()
    extra = _extra_blocks(index, blocks, sites, cfg)
    stem = [b for b in extra if b.kind == "stem"]
    blocks = stem + blocks + [b for b in extra if b.kind == "head"]
    notes: list[str] = []
    if cfg.include:
        blocks = [b for b in blocks if match_patterns(b.name, cfg.include)]
        if not blocks:
            raise NoMatchError(
                f"include={list(cfg.include)} matched no basic module; run 'netsurgeon inspect' to list them."
            )
    eligible: list[tuple[Block, list[Site]]] = []
    linear, other = [], []
    at_node: dict[fx.Node, list[Site]] = {}
    for s in sites:
        at_node.setdefault(index.site_node(s), []).append(s)
    for block in blocks:
        inside = [s for n in block.nodes for s in at_node.get(n, ())]  # graph order, one sweep of the block
        candidates = [s for s in inside if not index.in_gating_scope(s, block.name) and index.on_data_path(block, s)]
        if not candidates:
            continue
        last = [s for s in index.last_sites(block, candidates)
                if not index.followed_by_other_activation(block, s, cfg.act_types)]
        if not last:
            other.append(block.name)
            continue
        if block.kind not in ("stem", "head") and not index.is_preactivation(block, candidates) \
                and index.ends_linearly(block, last) and cfg.skip_linear_blocks:
            linear.append(block.name)
            continue
        if cfg.position == "last":
            chosen = last
        else:
            if len(last) != 1:
                raise SurgeryError(
                    f"position={cfg.position} needs single-path modules, but {block.name} has "
                    f"{len(last)} parallel branches; use position='last'."
                )
            if not -len(candidates) <= cfg.position < len(candidates):
                raise SurgeryError(
                    f"position={cfg.position} is out of range for {block.name}, which has "
                    f"{len(candidates)} ReLU site(s)."
                )
            chosen = [candidates[cfg.position]]
        eligible.append((block, chosen))
    if linear:
        notes.append(f"{len(linear)} module(s) already end linearly and were left alone "
                     f"(skip_linear_blocks): {', '.join(linear[:5])}{' ...' if len(linear) > 5 else ''}")
    if other:
        notes.append(f"{len(other)} module(s) end with another activation type after their last ReLU and were "
                     f"left alone: {', '.join(other[:5])}{' ...' if len(other) > 5 else ''}")
    if not blocks and not eligible:
        notes.append("no basic modules found (no residual adds, branch merges or multi-conv modules)")
    selected = select_blocks(len(eligible), cfg.proportion, cfg.select)
    if cfg.proportion < 1.0:
        notes.append(f"proportion {cfg.proportion}: {len(selected)} of {len(eligible)} modules ({cfg.select})")
    return [eligible[i] for i in selected], notes


@register_pass("erase-relu", EraseReLU, contract=Contract.CHANGES_FUNCTION, structural=True, edits_weights=False)
def erase_relu(ws: Workspace, cfg: EraseReLU) -> PassOutcome:
    index, editor = ws.index(), ws.editor()
    plan, notes = plan_erasure(index, cfg)
    changes = erase_sites(editor, [(block.name, site) for block, sites in plan for site in sites])
    if cfg.readd_relu_before_head:
        source = global_pool_input(index)
        erased = {index.site_node(site) for _, sites in plan for site in sites}
        while source in erased:  # the plan is not applied to the analysis graph: read past erased sites
            source = source.args[0]
        if source is None:
            raise SurgeryError("readd_relu_before_head: no global pooling in front of the head was found.")
        edit = editor.insert_after(source, ACT_TYPES["ReLU"][0](), "netsurgeon_head_relu")
        changes.append(SiteChange(site=edit.path, before="(none)", after="nn.ReLU before global pooling",
                                  block="head", scope=edit.scope))
    outcome = PassOutcome(changes, notes)
    if not changes and "ReLU6" not in cfg.act_types and index.sites(("ReLU6",)):
        outcome.hint = f"{len(index.sites(('ReLU6',)))} ReLU6 sites: add act_types=[ReLU,ReLU6]"
    return outcome
