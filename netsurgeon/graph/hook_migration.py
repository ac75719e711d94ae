"""Hook migration: the user's hooks on a module that a module swap replaces move to its replacement, with a
warning naming them."""

from __future__ import annotations

import warnings

from torch import nn

__all__ = ["carry_hooks"]

#: a module's hook registries that a module swap carries over (forward, pre-forward, backward)
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def _hooked(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in _HOOK_DICTS if name != "_forward_hooks_always_called")


def carry_hooks(old: nn.Module, new: nn.Module, path: str) -> None:
    """Move the hooks registered on ``old`` to ``new`` (which takes its place, called where it was called),
    and warn, naming them: a hook now sees the replacement's output (pd-relu's PDReLU, spinal-head's
    SpinalHead, erase-relu's Identity). Hooks on modules inside ``old`` cannot follow (those modules are
    gone): the warning names them as dropped."""
    dropped = [f"{path}.{name}" for name, sub in old.named_modules() if name and _hooked(sub)]
    moved = _hooked(old)
    if moved:
        for name in _HOOK_DICTS:
            source, target = getattr(old, name, None), getattr(new, name, None)
            if source and target is not None:
                target.update(source)
        if getattr(old, "_backward_hooks", None):
            new._is_full_backward_hook = getattr(old, "_is_full_backward_hook", None)
    if moved or dropped:
        parts = [f"the hooks on {path} now run on its replacement {type(new).__name__}"] if moved else []
        if dropped:
            parts.append(f"the hooks on {', '.join(dropped[:5])} were dropped (those modules are gone)")
        warnings.warn(f"module swap at {path}: {'; '.join(parts)}.", UserWarning, stacklevel=4)
