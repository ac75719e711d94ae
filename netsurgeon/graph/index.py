"""``GraphIndex``: everything the passes need to know about one graph, computed once, in one class.

Build a new index after editing the graph; an index never follows edits.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import fx

from netsurgeon.graph.blocks import Block, BlockFinder
from netsurgeon.graph.heads import Head, find_head
from netsurgeon.graph.nodes import NodeIndex
from netsurgeon.graph.sites import Site, SiteFinder

__all__ = ["GraphIndex"]


class GraphIndex(NodeIndex):
    """Node predicates, sites, gating scopes, blocks and the head of one graph (``gm``).

    * **nodes** (its own, from :class:`~netsurgeon.graph.nodes.NodeIndex`): ``nodes``, ``order``, ``by_name``,
      ``modules``, ``stacks``, ``scope_types``; what a node computes (``is_conv``, ``is_linear``, ``linear_path``,
      ``is_pool``, ``is_residual_add``, ``is_mul``, ``is_global_pool``, ``is_other_activation``, ``module_of``,
      ``call_count``), where it lives (``in_scope``, ``innermost_scope``) and what it reaches (``reachable``,
      ``conv_downstream``).
    * **sites** (:class:`~netsurgeon.graph.sites.SiteFinder`): ``sites``, ``site_node``, ``gating_scopes``,
      ``in_gating_scope``, ``in_gating``.
    * **blocks** (:class:`~netsurgeon.graph.blocks.BlockFinder`): ``blocks``, and within a block ``last_sites``,
      ``is_preactivation``, ``ends_linearly``, ``data_path``, ``on_data_path``, ``followed_by_other_activation``.
    * **head** (:func:`~netsurgeon.graph.heads.find_head`): ``head``.

    Each analysis lives in its own module and reads the node facts; this class holds one of each, so a pass
    asks one object.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self._sites = SiteFinder(self)
        self._blocks = BlockFinder(self, self._sites)

    # ---------------------------------------------------------------- sites
    def sites(self, act_types: Iterable[str] = ("ReLU",)) -> list[Site]:
        """Every activation site of the given types, in graph order."""
        return self._sites.sites(act_types)

    def site_node(self, site: Site) -> fx.Node:
        """The graph node of ``site``."""
        return self._sites.site_node(site)

    @property
    def gating_scopes(self) -> set[str]:
        """Scopes whose output multiplies their own input by something computed inside (SE, ECA...)."""
        return self._sites.gating_scopes

    def in_gating_scope(self, site: Site, below: str = "") -> bool:
        """Is ``site`` inside a gating scope (other than ``below``)?"""
        return self._sites.in_gating_scope(site, below)

    def in_gating(self, node: fx.Node) -> bool:
        """Is ``node`` inside a gating (SE/ECA) sub-module?"""
        return self._sites.in_gating(node)

    # ---------------------------------------------------------------- blocks
    def blocks(self) -> list[Block]:
        """Basic modules in execution order (see :mod:`netsurgeon.graph.blocks` for the rules)."""
        return self._blocks.blocks()

    def last_sites(self, block: Block, candidates: list[Site]) -> list[Site]:
        """Candidates from which no other candidate is reachable inside the block."""
        return self._blocks.last_sites(block, candidates)

    def is_preactivation(self, block: Block, candidates: list[Site]) -> bool:
        """True when some activation runs before any convolution of the block (BN-ReLU-conv layout)."""
        return self._blocks.is_preactivation(block, candidates)

    def ends_linearly(self, block: Block, last: list[Site]) -> bool:
        """True when a convolution follows the block's last activations (MobileNetV2's linear bottleneck)."""
        return self._blocks.ends_linearly(block, last)

    def data_path(self, block: Block) -> set[fx.Node]:
        """Nodes of ``block`` reachable from its input that also reach its output."""
        return self._blocks.data_path(block)

    def on_data_path(self, block: Block, site: Site) -> bool:
        """Is ``site`` on the block's data path?"""
        return self._blocks.on_data_path(block, site)

    def followed_by_other_activation(self, block: Block, site: Site, act_types: Iterable[str]) -> bool:
        """Does an activation of another type (GELU, SiLU...) come after ``site`` on the block's data path?"""
        return self._blocks.followed_by_other_activation(block, site, act_types)

    # ---------------------------------------------------------------- head
    def head(self) -> Head | None:
        """The layer that makes the logits, walking back from the output (None when there is none)."""
        return find_head(self)
