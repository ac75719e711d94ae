"""Installed plug-ins: packages that add passes or data kinds to every netsurgeon process.

A package declares one entry point in the ``netsurgeon.plugins`` group; its value is a module (imported: its
``register_pass`` / ``register_data_kind`` lines run) or a callable (called with no arguments). ``import
netsurgeon`` loads them all once, so a plug-in's passes and data kinds are known wherever netsurgeon runs: the
CLI, a recipe, and every compare job process (``--jobs N``, SLURM), which register nothing else themselves::

    # the plug-in's pyproject.toml
    [project.entry-points."netsurgeon.plugins"]
    my_kinds = "my_package.netsurgeon_kinds"

A plug-in that fails to load is one :class:`~netsurgeon.errors.PluginWarning` naming it and its error;
netsurgeon goes on without it.
"""

from __future__ import annotations

import warnings
from importlib.metadata import EntryPoint, entry_points

from netsurgeon.errors import PluginWarning

__all__ = ["GROUP", "load_plugins"]

GROUP = "netsurgeon.plugins"
_loaded: dict[str, str] = {}  # entry point name -> its value, once loaded


def load_plugins() -> list[str]:
    """Load every ``netsurgeon.plugins`` entry point not loaded yet; returns the names loaded now."""
    loaded = []
    for point in entry_points(group=GROUP):
        if point.name in _loaded:
            continue
        _loaded[point.name] = point.value
        try:
            _load(point)
        except Exception as err:  # noqa: BLE001 - a broken plug-in must not stop netsurgeon
            first = str(err).splitlines()[0] if str(err) else ""
            warnings.warn(f"netsurgeon plug-in {point.name!r} ({point.value}) failed to load "
                          f"({type(err).__name__}: {first}); going on without it: fix or uninstall it.",
                          PluginWarning, stacklevel=2)
            continue
        loaded.append(point.name)
    return loaded


def _load(point: EntryPoint) -> None:
    target = point.load()  # a module: imported, its registrations ran
    if callable(target):  # a function: the plug-in registers when called
        target()
