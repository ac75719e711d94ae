"""One entry of a model's surgery history: a pass that was applied, typed and frozen.

``api.run_pass`` appends a :class:`HistoryEntry` for every pass it runs; the model's provenance
(:class:`~netsurgeon.models.info.ModelInfo`) carries them, export writes them with :meth:`HistoryEntry.to_json`
as the header's ``passes`` (and ``model.history``), and :meth:`HistoryEntry.from_json` is the one parser that
turns such a JSON step back into an entry. Its rules (:func:`step_problems`) are the ones the artifact header
schema applies to each step, so what a header accepts is exactly what parses. Everything else reads entries by
attribute.

Which passes exist is the registry's to say: the parser takes ``registered``
(:func:`netsurgeon.registry.registered_contract`), which checks a step's pass name and gives the contract of a
step that did not record one.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netsurgeon.contract import Contract
from netsurgeon.errors import ArtifactError, NetsurgeonError

__all__ = ["STEP_KEYS", "HistoryEntry", "Registered", "parse_history", "step_problems"]

#: a pass name's registered contract, raising a NetsurgeonError for a pass this netsurgeon lacks
#: (:func:`netsurgeon.registry.registered_contract`)
Registered = Callable[[str], Contract]

#: the keys of one step as JSON; ``pass``, ``version`` and ``config`` are required, the others were added by
#: later netsurgeon versions (an older artifact may lack them)
STEP_KEYS = ("pass", "version", "config", "sites", "resolved", "contract", "new_params")
_OPTIONAL = ("resolved", "contract", "new_params")  # absent in an older header: to_json leaves them out again
_CONTRACTS = tuple(c.value for c in Contract)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _freeze(value: Any) -> Any:
    """``value`` with its dicts as read-only mappings and its lists as tuples, recursively."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """The plain JSON-shaped value of a frozen one: mappings as dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class HistoryEntry:
    """A pass applied to the model: what ran, what it changed, and what it promised.

    ``config`` and ``resolved`` are read-only mappings (nested lists as tuples); ``to_json`` gives the plain
    values back. Build one with plain values: they are frozen on construction.
    """

    pass_name: str  # the registered pass name
    version: int  # the config class's version when the pass ran
    config: Mapping[str, Any]  # the config's values (PassConfig.to_dict)
    sites: tuple[str, ...] | None  # the sites it changed, in order (None: not recorded, an older header)
    contract: Contract  # what it promised (the pass's own for this config; the registered one if not recorded)
    resolved: Mapping[str, Any] = field(default_factory=dict)  # what its 'auto' values became (PassOutcome.resolved)
    new_params: tuple[str, ...] = ()  # parameters it added (they get new_param_lr_scale)
    #: optional keys the JSON it was parsed from lacked; ``to_json`` leaves them out, so a re-export writes an
    #: older artifact's history as it was read
    unrecorded: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _freeze(self.config))
        object.__setattr__(self, "resolved", _freeze(self.resolved))
        object.__setattr__(self, "sites", None if self.sites is None else tuple(self.sites))
        object.__setattr__(self, "new_params", tuple(self.new_params))
        object.__setattr__(self, "contract", Contract(self.contract))
        object.__setattr__(self, "unrecorded", frozenset(self.unrecorded))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # read-only mappings neither pickle nor deepcopy: rebuild from the plain values (torch.save, deepcopy)
        return (type(self), (self.pass_name, self.version, _thaw(self.config), self.sites, self.contract,
                             _thaw(self.resolved), self.new_params, self.unrecorded))

    def plain_config(self) -> dict[str, Any]:
        """``config`` as plain values (dicts, lists), as the header stores it and ``PassConfig.from_dict`` takes it."""
        return _thaw(self.config)

    def to_json(self) -> dict[str, Any]:
        """The step as the artifact header stores it (the keys of :data:`STEP_KEYS`, plain values)."""
        out: dict[str, Any] = {"pass": self.pass_name, "version": self.version, "config": self.plain_config()}
        if self.sites is not None:
            out["sites"] = list(self.sites)
        optional = {"resolved": _thaw(self.resolved), "contract": self.contract.value,
                    "new_params": list(self.new_params)}
        out.update({key: value for key, value in optional.items() if key not in self.unrecorded})
        return out

    @classmethod
    def from_json(cls, step: Any, where: str = "history entry", *, registered: Registered) -> HistoryEntry:
        """Parse one header step; an ArtifactError naming every problem (:func:`step_problems`) if it is malformed."""
        problems = step_problems(step, where, registered=registered)
        if problems:
            raise ArtifactError(f"damaged or crafted netsurgeon history: {'; '.join(problems)}. Re-export the model "
                                "with netsurgeon.")
        name = step["pass"]
        contract = step["contract"] if "contract" in step else registered(name)  # an older step: the registered one
        return cls(pass_name=name, version=step["version"], config=step["config"], sites=step.get("sites"),
                   contract=contract, resolved=step.get("resolved", {}),
                   new_params=step.get("new_params", ()), unrecorded=frozenset(k for k in _OPTIONAL if k not in step))


def parse_history(steps: Iterable[Any], where: str = "passes", *, registered: Registered) -> tuple[HistoryEntry, ...]:
    """The entries of a header's ``passes`` (or ``model.history``) list, oldest first."""
    return tuple(HistoryEntry.from_json(step, f"{where}[{i}]", registered=registered) for i, step in enumerate(steps))


def step_problems(step: Any, where: str, *, registered: Registered) -> list[str]:
    """Every problem of one JSON step (``where`` names it in the messages, e.g. ``passes[0]``); empty when valid.

    Types are strict, unknown keys are errors, and the pass must be registered in this netsurgeon.
    """
    problems: list[str] = []
    if not isinstance(step, dict):
        problems.append(f"{where} must be a mapping, got {_kind(step)}")
        return problems
    for key in step:
        if key not in STEP_KEYS:
            problems.append(f"{where}: unknown key {str(key)[:40]!r}")
    name = step.get("pass")
    if not isinstance(name, str):
        problems.append(f"{where}.pass must be a pass name, got {_kind(name)}")
    else:
        try:
            registered(name)
        except NetsurgeonError:
            problems.append(f"{where}.pass {name[:40]!r} is not a pass of this netsurgeon")
    if not _int(step.get("version")) or step.get("version", 0) < 1:
        problems.append(f"{where}.version must be a positive integer, got {_kind(step.get('version'))}")
    if not isinstance(step.get("config"), dict):
        problems.append(f"{where}.config must be a mapping, got {_kind(step.get('config'))}")
    for key in ("sites", "new_params"):
        if key in step and not _str_list(step[key]):
            problems.append(f"{where}.{key} must be a list of strings")
    if "resolved" in step and not isinstance(step["resolved"], dict):
        problems.append(f"{where}.resolved must be a mapping, got {_kind(step['resolved'])}")
    if "contract" in step and step["contract"] not in _CONTRACTS:
        problems.append(f"{where}.contract must be one of {', '.join(_CONTRACTS)}")
    return problems
