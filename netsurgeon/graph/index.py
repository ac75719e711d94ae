"""``GraphIndex``: everything the passes need to know about one graph, computed once.

It gathers the analyses by concern: node predicates (``graph.nodes``), sites (``graph.sites``), blocks
(``graph.blocks``) and the head (``graph.heads``). Build a new index after editing the graph; an index
never follows edits.
"""

from __future__ import annotations

from netsurgeon.graph.blocks import BlockIndex
from netsurgeon.graph.heads import HeadIndex

__all__ = ["GraphIndex"]


class GraphIndex(BlockIndex, HeadIndex):
    """Node predicates, sites, gating scopes, blocks and the head of one graph."""
