"""``inspect_model``: what the passes would see (sites, blocks, head, tracing rung)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace
from netsurgeon.models.info import get_info

__all__ = ["ModelSummary", "inspect_model"]


@dataclass
class ModelSummary:
    model: str
    rung: str
    trace_failures: list[str]
    parameters: int
    sites: list[dict[str, Any]] = field(default_factory=list)  # label, kind, act, in place, block
    blocks: list[dict[str, Any]] = field(default_factory=list)  # name, kind, class, sites
    head: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [f"model: {self.model}    tracing: {self.rung}    parameters: {self.parameters:,}"]
        lines += [f"  (rung failed) {f}" for f in self.trace_failures]
        lines.append(f"\nReLU sites: {len(self.sites)}")
        for s in self.sites:
            lines.append(f"  {s['label']:<40} {s['description']:<28} {s['block'] or '-'}")
        lines.append(f"\nbasic modules: {len(self.blocks)}")
        for b in self.blocks:
            lines.append(f"  {b['name']:<40} {b['kind']:<9} {b['class']:<22} {b['sites']} ReLU site(s)")
        if self.head:
            h = self.head
            lines.append(f"\nhead: {h['target'] or h['node']} (Linear {h['in_features']} -> {h['out_features']})")
        else:
            lines.append("\nhead: not found (no Linear produces the output)")
        return "\n".join(lines)


def inspect_model(model: nn.Module, act_types: tuple[str, ...] = ("ReLU", "ReLU6")) -> ModelSummary:
    """Trace ``model`` (a copy) and list its activation sites, basic modules and head."""
    info = get_info(model)
    traced = trace(model)
    summary = ModelSummary(
        model=info.spec if info else type(model).__name__,
        rung=traced.rung.value,
        trace_failures=traced.failures,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    if not traced.has_graph:
        return summary
    index = GraphIndex(traced.gm)
    sites = index.sites(act_types)
    blocks = index.blocks()
    owner = {}
    for b in blocks:
        for n in b.nodes:
            owner[n] = b.name
    for s in sites:
        summary.sites.append({"label": s.label, "description": s.description, "kind": s.kind, "act": s.act,
                              "inplace": s.inplace, "block": owner.get(index.site_node(s), "")})
    for b in blocks:
        count = sum(1 for s in sites if owner.get(index.site_node(s)) == b.name)
        summary.blocks.append({"name": b.name, "kind": b.kind, "class": b.cls, "sites": count})
    head = index.head()
    summary.head = asdict(head) if head else None
    return summary
