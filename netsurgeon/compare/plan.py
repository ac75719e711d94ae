"""Every arm planned before any training: each arm's passes dry-run (``netsurgeon.api.plan``) on the base model.

An arm whose passes change nothing would be fine-tuned as a second control and reported level with it, a
"no difference" that says nothing about the pass; :func:`plan_arms` finds it first, and ``compare`` refuses it
in one line naming what the model has instead (the pass's hint: "33 ReLU6 sites: add relu6=true").
``compare --dry-run`` prints every arm's plan (sites, parameters) and trains nothing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from netsurgeon.compare.job import build_base, surgery_data
from netsurgeon.compare.spec import CompareSpec
from netsurgeon.errors import ConfigError, NoEffectWarning

__all__ = ["ArmPlan", "check_plans", "format_plans", "plan_arms"]

#: sites listed per pass in a printed plan (the count is always given)
SHOWN_SITES = 6


@dataclass
class ArmPlan:
    """One arm's dry run: per pass its parameters, the sites it would change and, when none, its hint."""

    name: str
    slug: str
    passes: list[dict[str, Any]] = field(default_factory=list)  # name, parameters, sites, hint
    sites: int = 0
    params_delta: int = 0
    refusal: str | None = None  # why the arm cannot be compared (a pass changes nothing)

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.name, "slug": self.slug, "sites": self.sites, "params_delta": self.params_delta,
                "passes": self.passes, "refusal": self.refusal}

    def format(self) -> str:
        if not self.passes:
            return f"{self.name}: the control (no surgery)"
        lines = [f"{self.name}: {self.sites} site(s) changed, parameters {self.params_delta:+,}"]
        for p in self.passes:
            params = ", ".join(f"{k}={v!r}" for k, v in p["parameters"].items())
            shown = ", ".join(p["sites"][:SHOWN_SITES]) + (" ..." if len(p["sites"]) > SHOWN_SITES else "")
            lines.append(f"  {p['name']}({params}): {len(p['sites'])} site(s)" + (f": {shown}" if shown else ""))
            if p["hint"]:
                lines.append(f"    nothing to change here: {p['hint']}")
        if self.refusal:
            lines.append(f"  refused: {self.refusal}")
        return "\n".join(lines)


def plan_arms(spec: CompareSpec, base: nn.Module | None = None) -> list[ArmPlan]:
    """Dry-run every arm's passes on the first seed's base model (what its jobs will apply them to; ``base``:
    that model when the caller has built it already, which it is not changed by)."""
    from netsurgeon.api import plan

    seed = spec.seeds[0]
    base = build_base(spec, seed) if base is None else base
    plans = []
    for arm in spec.arms:
        if not arm.passes:
            plans.append(ArmPlan(arm.name, arm.slug))
            continue
        with warnings.catch_warnings():  # the arm's refusal says it, once
            warnings.simplefilter("ignore", NoEffectWarning)
            report = plan(base, list(arm.passes), data=surgery_data(spec, arm, base, seed))
        passes = [{"name": p.name, "parameters": p.config, "sites": [c.site for c in p.changes], "hint": p.hint}
                  for p in report.passes]
        empty = [p for p in passes if not p["sites"]]
        refusal = None
        if empty:
            p = empty[0]
            what = p["hint"] or "it finds no site on this model (see 'netsurgeon inspect')"
            fix = _suggestion(arm.name, p["hint"]) if len(arm.passes) == 1 else ""
            refusal = (f"arm {arm.name!r}: {p['name']} changes nothing on {spec.model}: {what}{fix}; it would be "
                       "trained as a second control, so fix the arm or leave it out")
        plans.append(ArmPlan(arm.name, arm.slug, passes, report.changed, report.params_after - report.params_before,
                             refusal))
    return plans


def _suggestion(arm_name: str, hint: str) -> str:
    """``(--arm 'pd-relu:relu6=true')`` when the hint's setting can be written in an arm (no comma in it)."""
    setting = hint.rpartition("add ")[2] if "add " in hint else ""
    if not setting or "," in setting or "=" not in setting:
        return ""
    return f" (--arm '{arm_name}:{setting}')"


def check_plans(plans: list[ArmPlan]) -> None:
    """Refuse the comparison when an arm changes nothing (the first such arm, in one line)."""
    refused = [p.refusal for p in plans if p.refusal]
    if refused:
        more = f" ({len(refused) - 1} more arm(s) too)" if len(refused) > 1 else ""
        raise ConfigError(f"{refused[0]}{more}; nothing was trained.")


def format_plans(plans: list[ArmPlan]) -> str:
    return "\n".join(p.format() for p in plans)
