"""gru-fc: gradient-rectified parameter unit of the FC layer (Zheng, Wang, Shen, Lin, Knowledge-Based
Systems 248, 108797, 2022): zero the FC parameters that generate negative gradients, then retrain.

Three modules, one way: :mod:`~netsurgeon.passes.gru_fc_rule` (the config and the rule, with the paper's
reconstruction), :mod:`~netsurgeon.passes.gru_fc_hooks` (what the pass does during fine-tuning), and this
one (which layers and mode, and the registered pass). Their public names are re-exported here.
"""

from __future__ import annotations

from torch import nn

from netsurgeon.graph.heads import logit_path_layers
from netsurgeon.passes.gru_fc_hooks import GruFcHooks, attach_to_optimizer, reset_optimizer_state
from netsurgeon.passes.gru_fc_rule import MASK_BUFFER, GradientRectifiedFC, accumulate_delta, rectify
from netsurgeon.surgery import Contract, GraphIndex, PassOutcome, SurgeryError, Workspace, missing_head, register_pass

__all__ = [
    "MASK_BUFFER",
    "GradientRectifiedFC",
    "GruFcHooks",
    "accumulate_delta",
    "attach_to_optimizer",
    "rectify",
    "reset_optimizer_state",
    "resolve_layers",
]


def resolve_layers(index: GraphIndex, cfg: GradientRectifiedFC) -> tuple[list[str], str]:
    """The Linear layers to rectify and the mode to use."""
    path = logit_path_layers(index)
    if not path and cfg.layers == "auto":
        raise missing_head("gru-fc rectifies the FC classifier. If the logits combine several heads (a "
                           "distillation head), name them with layers=[...] and mode=grad_contrib.")
    if cfg.layers == "auto":
        layers = path[-1:] if (cfg.mode == "weight_sign" or len(path) == 1) else path[-2:]
    else:
        layers = list(cfg.layers)
        for name in layers:
            if name not in path and not isinstance(index.modules.get(name), nn.Linear):
                raise SurgeryError(f"layers: {name!r} is not an nn.Linear of this model; Linear layers on the "
                                   f"logit path: {', '.join(path)}.")
    mode = cfg.mode
    if mode == "auto":
        mode = "weight_sign" if layers == path[-1:] else "grad_contrib"
    if mode == "weight_sign" and layers != path[-1:]:
        logits = f"the logits layer ({path[-1]})" if path else "a single layer making the logits"
        raise SurgeryError(f"mode=weight_sign only holds for {logits}; use mode=grad_contrib for "
                           f"{', '.join(layers)}.")
    for name in layers:
        calls = index.call_count(name)
        if calls != 1:
            raise SurgeryError(f"{name} is called {calls} times; gru-fc needs each layer called exactly once.")
    weights = [id(index.modules[n].weight) for n in layers]
    shared = [n for n, m in index.modules.items() if isinstance(m, nn.Linear) and n not in layers
              and id(m.weight) in weights]
    if shared:
        raise SurgeryError(f"the weight of a selected layer is shared with {', '.join(shared)}; "
                           "gru-fc refuses tied weights.")
    return layers, mode


@register_pass("gru-fc", GradientRectifiedFC, contract=Contract.CHANGES_FUNCTION, structural=False, hooks=GruFcHooks,
               edits_weights=True)
def gru_fc(ws: Workspace, cfg: GradientRectifiedFC) -> PassOutcome:
    layers, mode = resolve_layers(ws.index(), cfg)
    changes = rectify(ws.model, layers, mode, cfg, ws.data)
    out = PassOutcome(changes, resolved={"mode": mode, "layers": layers},
                      changed_keys={f"{name}.weight" for name in layers})
    if mode == "loss_grad":
        out.note("mode=loss_grad is experimental (near convergence the loss gradient is mostly noise)")
    out.note(f"mode {mode} on {', '.join(layers)}; accuracy usually drops until the model is fine-tuned")
    return out
