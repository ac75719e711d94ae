"""What a surgery changed, as data: printable as a table and serialisable as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PassReport", "SiteChange", "SurgeryReport", "Verification"]


@dataclass(frozen=True)
class SiteChange:
    site: str  # the site's label
    before: str
    after: str
    block: str = ""  # the basic module it belongs to, when there is one


@dataclass
class PassReport:
    name: str
    config: dict[str, Any]
    contract: str
    changes: list[SiteChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped blocks, reasons, hints
    keys_changed: list[str] = field(default_factory=list)  # state_dict tensors the pass changed on purpose


@dataclass
class Verification:
    """The numerical check on a probe batch (seeded random input)."""

    probe_shape: list[int]
    max_abs_diff: float
    mean_abs_diff: float
    outputs_equal: bool  # torch.equal on the probe
    state_unchanged: bool  # every kept state_dict tensor no pass declared changed is bit-identical
    contract: str  # 'exact' when every pass promised equal outputs, else 'changes-function'
    ok: bool  # the contract holds (exact: max diff <= 1e-5; changes-function: untouched tensors identical)


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
    weights: str = ""  # where the input model's weights came from (checkpoint, pretrained tag, random init)

    @property
    def changed(self) -> int:
        return sum(len(p.changes) for p in self.passes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self, max_rows: int = 40) -> str:
        """A plain-text table for terminals and logs."""
        lines = [f"model: {self.model}    tracing: {self.rung}" + ("    (dry run)" if self.dry_run else "")]
        if self.weights:
            lines.append(f"weights: {self.weights}")
        for p in self.passes:
            args = ", ".join(f"{k}={v!r}" for k, v in p.config.items())
            lines.append(f"\npass {p.name}({args})  [{p.contract}]  {len(p.changes)} site(s) changed")
            if p.changes:
                width = max(len(c.site) for c in p.changes[:max_rows])
                for c in p.changes[:max_rows]:
                    block = f"   [{c.block}]" if c.block else ""
                    lines.append(f"  {c.site:<{width}}  {c.before} -> {c.after}{block}")
                if len(p.changes) > max_rows:
                    lines.append(f"  ... {len(p.changes) - max_rows} more (use --json for all)")
            if p.keys_changed:
                shown = ", ".join(p.keys_changed[:6]) + (" ..." if len(p.keys_changed) > 6 else "")
                lines.append(f"  weights changed on purpose: {len(p.keys_changed)} tensor(s): {shown}")
            lines.extend(f"  note: {n}" for n in p.notes)
        lines.append("")
        lines.append(f"ReLU sites        {self.relu_sites_before} -> {self.relu_sites_after}")
        lines.append(f"parameters        {self.params_before:,} -> {self.params_after:,}")
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
