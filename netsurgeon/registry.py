"""The pass registry: every surgery registers itself here with one line.

Lookups are strict: a duplicate registration raises, and an unknown name raises
:class:`~netsurgeon.errors.UnknownNameError` listing the close matches. Recipes and artifacts resolve
pass names only through this registry, so a stored name can never import arbitrary code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netsurgeon.contract import Contract
from netsurgeon.errors import UnknownNameError, suggest

if TYPE_CHECKING:
    from netsurgeon.config import PassConfig
    from netsurgeon.outcome import PassOutcome
    from netsurgeon.workspace import Workspace

__all__ = ["PassFn", "PassSpec", "get_pass", "list_passes", "register_pass", "registered_contract", "suggest",
           "unregister_pass"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


PassFn = Callable[["Workspace", "PassConfig"], "PassOutcome"]  # run_pass refuses any other return value


@dataclass(frozen=True)
class PassSpec:
    """One registered pass: its name, config class, implementation and promises."""

    name: str
    config_cls: type[PassConfig]
    fn: PassFn
    contract: Contract
    structural: bool  # True: the edit changes the graph, so reloading an artifact replays it
    summary: str
    hooks: type | None = None  # a netsurgeon.hooks.TrainingHooks subclass: what the pass does during fine-tuning
    edits_weights: bool = True  # may change existing tensors in place (False: a dry run shares the caller's)

    def make_config(self, values: dict[str, Any] | None = None) -> PassConfig:
        """Build this pass's config from plain values (strings from ``--set`` are parsed)."""
        return self.config_cls.from_dict(values or {})


_REGISTRY: dict[str, PassSpec] = {}


def register_pass(
    name: str,
    config_cls: type[PassConfig],
    *,
    contract: Contract,
    structural: bool,
    hooks: type | None = None,
    edits_weights: bool = True,
) -> Callable[[PassFn], PassFn]:
    """Decorator registering ``fn`` as the implementation of pass ``name``.

    ``fn(ws, config)`` plans on ``ws.index()``, edits through ``ws.editor()`` and returns a
    :class:`~netsurgeon.outcome.PassOutcome` (nothing else: ``run_pass`` refuses it, naming the pass).
    ``hooks`` is a :class:`~netsurgeon.hooks.TrainingHooks` subclass for a pass that acts during fine-tuning.
    ``edits_weights=False`` promises that the pass never changes an existing parameter or buffer in place (it
    swaps modules, rewrites calls, adds new modules): ``plan`` then shares the caller's tensors instead of
    cloning them, and checks the promise (every shared tensor's version counter) after the pass. The summary
    shown by ``netsurgeon passes`` is the first line of the config class's docstring.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"pass name {name!r} must be lowercase words joined by '-'")

    def decorator(fn: PassFn) -> PassFn:
        if name in _REGISTRY:
            raise ValueError(f"pass {name!r} is already registered (by {_REGISTRY[name].fn.__module__})")
        summary = (config_cls.__doc__ or "").strip().splitlines()[0] if config_cls.__doc__ else ""
        config_cls.pass_name = name
        _REGISTRY[name] = PassSpec(name, config_cls, fn, Contract(contract), structural, summary, hooks,
                                   edits_weights)
        return fn

    return decorator


def unregister_pass(name: str) -> PassSpec:
    """Remove pass ``name`` from the registry (a test's or a notebook's own pass, to register it anew)."""
    return _REGISTRY.pop(get_pass(name).name)


def get_pass(name: str) -> PassSpec:
    """The registered pass called ``name`` (``erase_relu`` is accepted for ``erase-relu``)."""
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise UnknownNameError(
            f"unknown pass {name!r}.{suggest(key, list(_REGISTRY))} "
            f"Run 'netsurgeon passes' to list them: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[key]


def registered_contract(name: str) -> Contract:
    """The contract pass ``name`` registered; :class:`~netsurgeon.errors.UnknownNameError` for a pass this
    netsurgeon lacks. The history's parser takes it (``registered=``) to check a step's pass name."""
    return get_pass(name).contract


def list_passes() -> list[PassSpec]:
    """Every registered pass, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
