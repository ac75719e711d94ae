"""Transfer learning: load a checkpoint whose classifier was trained for another class count.

The most common use of a pretrained model is a new dataset with its own classes. With ``num_classes``
given and different from the checkpoint's, every weight except the classifier's loads strictly, and
the classifier keeps its fresh initialisation for the new class count. The classifier is the module
timm's ``get_classifier()`` returns where the model has one, otherwise the Linear the head finder
reaches walking back from the output. Any other mismatch is still an error.
"""

from __future__ import annotations

import torch
from torch import nn

from netsurgeon.models.checkpoint import load_state_strict

__all__ = ["classifier_path", "load_state_new_head"]


def classifier_path(model: nn.Module) -> str | None:
    """The module path of the model's classifier (timm's ``get_classifier``, else the head finder)."""
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        try:
            head = getter()
        except Exception:  # noqa: BLE001 - a model's own method may fail in many ways; fall back
            head = None
        if isinstance(head, nn.Module):
            found = next((path for path, m in model.named_modules() if m is head and path), None)
            if found is not None:
                return found
    from netsurgeon.graph.index import GraphIndex
    from netsurgeon.graph.trace import trace

    traced = trace(model)
    if not traced.has_graph:
        return None
    head = GraphIndex(traced.gm).head()
    return head.target if head is not None and head.target else None


def load_state_new_head(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load ``state`` strictly, except a classifier sized for another class count; returns the keys kept
    at their fresh initialisation (empty when everything matched)."""
    own = model.state_dict()
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    same_keys = set(own) == set(state)
    head = classifier_path(model) if mismatched and same_keys else None
    if head is None or not all(k.startswith(head + ".") for k in mismatched):
        load_state_strict(model, state, source)  # raises, naming every mismatch
        return []
    fresh = sorted(k for k in own if k.startswith(head + ".") and k in mismatched)
    load_state_strict(model, {k: (own[k] if k in fresh else v) for k, v in state.items()}, source)
    return fresh
