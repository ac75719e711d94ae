"""``PassOutcome``: what one pass did, returned by the pass (as torch.fx's passes return a ``PassResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netsurgeon.contract import Contract
from netsurgeon.report import SiteChange

__all__ = ["PassOutcome"]


@dataclass
class PassOutcome:
    """A pass function's return value: its changes and everything the report and the history record."""

    changes: list[SiteChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the report should say (skipped blocks, hints)
    contract: Contract | None = None  # overrides the registered contract (a warm-started head is exact)
    changed_keys: set[str] = field(default_factory=set)  # state_dict tensors changed on purpose
    resolved: dict[str, Any] = field(default_factory=dict)  # what 'auto' values became (kept in the history)
    #: when nothing changed: what the model has instead and what to set ("33 ReLU6 sites: add relu6=true"),
    #: shown in apply's no-effect warning and compare's refusal of the arm
    hint: str = ""

    def note(self, message: str) -> None:
        self.notes.append(message)
