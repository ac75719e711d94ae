"""What a surgery changed, as data: printable as a table and serialisable as JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PassReport", "SiteChange", "SurgeryReport", "Verification"]


@dataclass(frozen=True, kw_only=True)
class SiteChange:
    """One row of a pass's report: a site (or layer) and what it became. Built by keyword
    (``netsurgeon.graph.rewrite.site_change`` builds one from a site and an editor's ``Edit``)."""

    site: str  # the site's label
    before: str
    after: str
    block: str = ""  # the basic module it belongs to, when there is one
    scope: str = ""  # where it was applied: 'swap', 'block:PATH', 'root' (see graph.scoped), or 'weights'


@dataclass
class PassReport:
    name: str
    config: dict[str, Any]
    contract: str
    changes: list[SiteChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped blocks, reasons, hints
    keys_changed: list[str] = field(default_factory=list)  # state_dict tensors the pass changed on purpose
    hint: str = ""  # nothing changed: what the model has instead and what to set (PassOutcome.hint)


@dataclass
class Verification:
    """The numerical check on a probe batch (seeded random input)."""

    probe_shape: list[int]
    max_abs_diff: float
    mean_abs_diff: float
    outputs_equal: bool  # torch.equal on the probe
    state_unchanged: bool  # every kept state_dict tensor no pass declared changed is bit-identical
    contract: str  # 'exact' when every pass promised equal outputs, else 'changes-function'
    ok: bool  # the contract holds (exact: max diff <= 1e-5 x max(1, max|output|); changes-function: untouched
    #           tensors bit-identical)


@dataclass
class SurgeryReport:
    model: str
    rung: str
    trace_failures: list[str]
    passes: list[PassReport]
    relu_sites_before: int
    relu_sites_after: int
    params_before: int
    params_after: int
    keys_kept: int
    keys_added: list[str]
    keys_removed: list[str]
    verification: Verification | None = None
    dry_run: bool = False
    reinitialized: list[str] = field(default_factory=list)  # checkpoint keys left fresh for a new class count
    weights: str = ""  # where the input model's weights came from (checkpoint, pretrained tag, random init)

    @property
    def changed(self) -> int:
        return sum(len(p.changes) for p in self.passes)

    def scope_counts(self) -> dict[str, int]:
        """Changes per scope kind: module swaps, block rewrites, root rewrites."""
        kinds = Counter(c.scope.partition(":")[0] for p in self.passes for c in p.changes if c.scope)
        return {"swap": kinds["swap"], "block": kinds["block"], "root": kinds["root"]}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scopes"] = self.scope_counts()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self, max_rows: int = 40) -> str:
        """A plain-text table for terminals and logs."""
        lines = [f"model: {self.model}    tracing: {self.rung}" + ("    (dry run)" if self.dry_run else "")]
        if self.weights:
            lines.append(f"weights: {self.weights}")
        if self.reinitialized:
            lines.append(f"classifier re-initialised for the new class count (not from the checkpoint): "
                         f"{', '.join(self.reinitialized)}")
        for p in self.passes:
            args = ", ".join(f"{k}={v!r}" for k, v in p.config.items())
            lines.append(f"\npass {p.name}({args})  [{p.contract}]  {len(p.changes)} site(s) changed")
            if p.changes:
                width = max(len(c.site) for c in p.changes[:max_rows])
                for c in p.changes[:max_rows]:
                    block = f"   [{c.block}]" if c.block else ""
                    scope = f"   ({_describe_scope(c.scope)})" if c.scope else ""
                    lines.append(f"  {c.site:<{width}}  {c.before} -> {c.after}{block}{scope}")
                if len(p.changes) > max_rows:
                    lines.append(f"  ... {len(p.changes) - max_rows} more (use --json for all)")
            if p.keys_changed:
                shown = ", ".join(p.keys_changed[:6]) + (" ..." if len(p.keys_changed) > 6 else "")
                lines.append(f"  weights changed on purpose: {len(p.keys_changed)} tensor(s): {shown}")
            lines.extend(f"  note: {n}" for n in p.notes)
        lines.append("")
        lines.append(f"ReLU sites        {self.relu_sites_before} -> {self.relu_sites_after}")
        lines.append(f"parameters        {self.params_before:,} -> {self.params_after:,}")
        scopes = self.scope_counts()
        if any(scopes.values()):
            lines.append(f"edits applied as  {scopes['swap']} module swap(s), {scopes['block']} block rewrite(s), "
                         f"{scopes['root']} root rewrite(s); the result keeps the model's class")
        lines.append(
            f"state_dict keys   {self.keys_kept} kept, {len(self.keys_added)} added, {len(self.keys_removed)} removed"
        )
        v = self.verification
        if v is not None:
            diff = (f"max |diff| {v.max_abs_diff:.3g}  mean |diff| {v.mean_abs_diff:.3g}"
                    if v.max_abs_diff != float("inf") else "output shape changed")
            lines.append(
                f"probe {tuple(v.probe_shape)}  {diff}  "
                f"outputs equal: {v.outputs_equal}  other weights untouched: {v.state_unchanged}  "
                f"contract {v.contract}: {'ok' if v.ok else 'VIOLATED'}"
            )
        return "\n".join(lines)


def _describe_scope(scope: str) -> str:
    if scope == "swap":
        return "module swap"
    if scope == "weights":
        return "weights edited in place"
    if scope.startswith("block:"):
        return f"block rewrite at {scope[6:]}"
    return "root rewrite"
