"""What a pass author needs, from one place: the pieces of a pass, its workspace, and the edit helpers.

A pass is a frozen :class:`PassConfig`, a function ``fn(ws: Workspace, config) -> PassOutcome`` and one
``@register_pass(name, Config, contract=..., structural=...)`` line (CONTRIBUTING.md, "add a surgery")::

    from netsurgeon.surgery import Contract, PassConfig, PassOutcome, Workspace, register_pass, site_change

    @register_pass("fresh-relu", FreshReLU, contract=Contract.EXACT, structural=True)
    def fresh_relu(ws: Workspace, cfg: FreshReLU) -> PassOutcome:
        site = next(s for s in ws.index().sites() if s.kind == "module")
        edit = ws.editor().swap(site.target, nn.ReLU())
        return PassOutcome([site_change(site, edit, after="a fresh nn.ReLU")])

The pass plans on ``ws.index()`` (:class:`GraphIndex`: sites, blocks, heads), edits through
``ws.editor()`` (every verb returns an :class:`Edit`), and reports each change as a :class:`SiteChange`
(:func:`site_change` builds one from a site and its edit). A pass that acts during fine-tuning gives
``register_pass(..., hooks=...)`` a :class:`TrainingHooks` subclass, built from the pass's
:class:`HistoryEntry` (its config, sites and ``PassOutcome.resolved``).
"""

from netsurgeon.config import PassConfig
from netsurgeon.contract import Contract
from netsurgeon.errors import ConfigError, NoMatchError, SurgeryError
from netsurgeon.graph.heads import Head, missing_head, require_head
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.rewrite import check_inplace_safe, erase_sites, site_change
from netsurgeon.graph.scoped import Edit
from netsurgeon.graph.sites import Site, match_patterns
from netsurgeon.history import HistoryEntry
from netsurgeon.hooks import EpochStart, TrainingHooks
from netsurgeon.outcome import PassOutcome
from netsurgeon.registry import register_pass, unregister_pass
from netsurgeon.report import SiteChange
from netsurgeon.workspace import Workspace

__all__ = [
    "ConfigError",
    "Contract",
    "Edit",
    "EpochStart",
    "GraphIndex",
    "Head",
    "HistoryEntry",
    "NoMatchError",
    "PassConfig",
    "PassOutcome",
    "Site",
    "SiteChange",
    "SurgeryError",
    "TrainingHooks",
    "Workspace",
    "check_inplace_safe",
    "erase_sites",
    "match_patterns",
    "missing_head",
    "register_pass",
    "require_head",
    "site_change",
    "unregister_pass",
]
