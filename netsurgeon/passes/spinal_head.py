"""spinal-head: replace the classifier's logits layer with a ProgressiveSpinalNet head (Chopra, arXiv
2103.11373) or the original SpinalNet head (Kabir et al., arXiv 2007.03347); see ``layers.spinal``.

The head is found in the graph, never by attribute name: walk back from the output through flatten,
dropout and identity to the Linear (or the 1x1 convolution after global pooling, timm DLA/DPN/ResNetV2:
replaced by a :class:`SpinalConvHead` that keeps the (B, C, 1, 1) shape) that makes the logits, and
replace *that* call (so the SpinalNet repository's bug, assigning a head to ``model.fc`` on a VGG that
never calls it, cannot happen). The
feature size D is measured on a probe forward, never read from attributes (timm ``vgg16`` reports
``num_features=512`` but its classifier reads 4096 features).

``replace="logits_layer"`` (default) swaps the last Linear at its own path, so only its two keys leave
the state_dict and the head's keys arrive under the same prefix. ``replace="classifier"`` swaps the
whole Linear/activation/dropout chain in front of the output (SpinalNet on VGG; large for D = 25088).

With ``warm_start`` (the default when the class count is unchanged, progressive variant, logits layer)
the output layer starts as ``Wo = [W_old, 0]``, ``bo = b_old``: eval-mode logits equal the original's,
and fine-tuning starts from the trained classifier. Give the new head a higher learning rate when
fine-tuning; its hidden layers start from the default initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import fx, nn

from netsurgeon.graph.heads import classifier_chain
from netsurgeon.layers.spinal import SpinalConvHead, SpinalHead
from netsurgeon.surgery import (
    Contract,
    Edit,
    GraphIndex,
    PassConfig,
    PassOutcome,
    SiteChange,
    SurgeryError,
    Workspace,
    register_pass,
    require_head,
)

__all__ = ["SpinalHeadConfig"]


#: bounds checked when the config is parsed (a dry run too), before anything is allocated
MAX_CLASSES, MAX_WIDTH, MAX_LAYERS = 1_000_000, 65_536, 64


@dataclass(frozen=True)
class SpinalHeadConfig(PassConfig):
    """Replace the FC head with a (progressive) spinal head (ProgressiveSpinalNet, SpinalNet)."""

    variant: Literal["progressive", "spinal"] = "progressive"
    """progressive: every layer and the output see the input (gradient highway); spinal: split input."""
    width: int | None = None
    """Hidden width w (default 64 when D <= 1024, else 256)."""
    num_layers: int = 4
    """Hidden layers L."""
    num_splits: int = 2
    """spinal only: the input is cut into this many parts, read in turn."""
    input_dropout: float | None = None
    """Dropout on the input copy the layers see (default 0.2 progressive, 0 spinal)."""
    first_layer_input: Literal["raw", "dropped"] = "raw"
    """progressive: layer 1 reads the undropped input (as the authors' code does) or the dropped copy."""
    batchnorm: bool = False
    """BatchNorm1d after each hidden Linear (training then needs batches of 2 or more)."""
    layer_dropout: float = 0.0
    """Dropout before each hidden Linear."""
    activation: Literal["relu", "gelu", "silu", "elu"] = "relu"
    """Hidden activation."""
    replace: Literal["logits_layer", "classifier"] = "logits_layer"
    """Replace only the Linear making the logits, or the whole MLP classifier in front of the output."""
    num_classes: int | None = None
    """New class count (default: unchanged)."""
    warm_start: bool | None = None
    """Start with eval logits equal to the original's (default: on when possible)."""

    def validate(self) -> None:
        if self.num_layers < 1 or (self.width is not None and self.width < 1) or self.num_splits < 1:
            self.fail("num_layers, width and num_splits must be at least 1.")
        for name in ("input_dropout", "layer_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                self.fail(f"{name} must be in [0, 1), got {value}.")
        if self.num_classes is not None and not 1 <= self.num_classes <= MAX_CLASSES:
            self.fail(f"num_classes must be from 1 to {MAX_CLASSES:,}, got {self.num_classes}.")
        if self.width is not None and self.width > MAX_WIDTH or self.num_layers > MAX_LAYERS:
            self.fail(f"width (at most {MAX_WIDTH:,}) or num_layers (at most {MAX_LAYERS}) is out of range: "
                      f"{self.width}, {self.num_layers}.")
        if self.warm_start and self.variant == "spinal":
            self.fail("warm_start needs variant='progressive': the spinal output layer never sees the input.")
        if self.warm_start and self.replace == "classifier":
            self.fail("warm_start needs replace='logits_layer': a replaced MLP cannot reproduce the old logits.")


def _container(index: GraphIndex, chain: list[fx.Node]) -> str:
    """The module holding exactly the chain (VGG's ``classifier``), or '' when there is none."""
    targets = [str(n.target) for n in chain if n.op == "call_module"]
    parents = {t.rpartition(".")[0] for t in targets}
    if len(parents) != 1 or "" in parents:
        return ""
    parent = parents.pop()
    others = [n for n in index.nodes if n.op in ("call_module", "get_attr") and n not in chain
              and str(n.target).startswith(parent + ".")]
    return "" if others else parent


def _fc_view(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The head layer as an FC layer: weight (out, in), bias, out features (a 1x1 conv's weight viewed)."""
    weight = layer.weight
    return weight.reshape(weight.shape[0], -1), getattr(layer, "bias", None), weight.shape[0]


@register_pass("spinal-head", SpinalHeadConfig, contract=Contract.CHANGES_FUNCTION,
               structural=True, edits_weights=False)
def spinal_head(ws: Workspace, cfg: SpinalHeadConfig) -> PassOutcome:
    index = ws.index()
    out = PassOutcome()
    head = index.head()
    spinal = (SpinalHead, SpinalConvHead)
    if (head is None or not head.target) and any(isinstance(m, spinal) for m in ws.model.modules()):
        raise SurgeryError("the model's head already is a spinal head (spinal-head was applied before); "
                           "spinal-head replaces an nn.Linear or 1x1-convolution head, so it cannot be applied twice.")
    head = require_head(index, "spinal-head needs an FC classifier (SqueezeNet's is convolutional, before the "
                               "pooling).")
    logits = index.by_name[head.node]
    if index.call_count(head.target) != 1:
        raise SurgeryError(f"the logits layer {head.target} is called more than once; netsurgeon will not replace it.")
    linear = index.modules[head.target]
    weight, bias, out_features = _fc_view(linear)
    conv = head.kind == "conv1x1"
    if conv and cfg.replace == "classifier":
        out.note("the head is a 1x1 convolution after pooling, with no MLP in front: replacing that layer only")
    chain = classifier_chain(index, logits) if cfg.replace == "classifier" and not conv else [logits]
    source = chain[0].args[0]
    shape = tuple(ws.shapes()[source.name])
    if not (len(shape) == 2 or (conv and len(shape) == 4 and shape[2:] == (1, 1))):
        raise SurgeryError(f"the classifier reads a {len(shape)}-D tensor of shape {shape}; spinal-head needs "
                           "(batch, features) (a timm model made with global_pool='' keeps its feature map).")
    features = shape[1]
    classes = cfg.num_classes or out_features
    summed = [n for n in head.passthrough if index.is_residual_add(index.by_name[n])]
    if summed:  # timm VOLO: head(cls) + 0.5 * aux_head(tokens).max(1)[0]
        if classes != out_features:
            raise SurgeryError(f"the logits add {head.target}'s output to other terms of {out_features} classes "
                               f"(at {', '.join(summed)}), so spinal-head cannot change the class count to "
                               f"{classes}; load the model with num_classes={classes} instead.")
        out.note(f"the logits also add other terms to {head.target}'s output (at {', '.join(summed)}); "
                 "they are kept")
    can_warm = cfg.variant == "progressive" and cfg.replace == "logits_layer" and classes == out_features
    warm = can_warm if cfg.warm_start is None else cfg.warm_start
    if warm and not can_warm:
        raise SurgeryError(f"warm_start needs the class count unchanged ({out_features}), "
                           f"but num_classes={classes}.")
    width = cfg.width or (64 if features <= 1024 else 256)
    dropout = cfg.input_dropout if cfg.input_dropout is not None else (0.2 if cfg.variant == "progressive" else 0.0)
    module = (SpinalConvHead if conv else SpinalHead)(
        features, classes, variant=cfg.variant, width=width, num_layers=cfg.num_layers,
        num_splits=cfg.num_splits, input_dropout=dropout, first_layer_input=cfg.first_layer_input,
        batchnorm=cfg.batchnorm, layer_dropout=cfg.layer_dropout, activation=cfg.activation)
    module.to(device=weight.device, dtype=weight.dtype)
    if warm:
        module.warm_start(weight, bias)
        out.contract = Contract.EXACT
    paths = [index.linear_path(n) or (head.target if n is logits else None) for n in chain]
    replaced = sum(p.numel() for path in paths if path for p in index.modules[path].parameters())
    added = sum(p.numel() for p in module.parameters())
    edit = _put_head(ws, index, chain, head.target, module)
    _follow_class_count(ws.model, edit.path, out_features, classes)
    _follow_classifier_name(ws.model, {p for p in paths if p} | {head.target}, f"{edit.path}.out")
    out.note(f"D={features} (measured), C={classes}, w={width}, L={cfg.num_layers}: {added:,} parameters "
             f"replacing {replaced:,}" + ("; warm start: eval logits equal the original's" if warm else ""))
    if added > 20 * max(replaced, 1) and added > 5_000_000:
        out.note(f"the head is large ({added:,} parameters); consider a smaller width")
    kind = getattr(index.scope_types.get(head.target), "__name__", type(linear).__name__)
    before = f"{kind}({head.in_features}, {head.out_features})" if len(chain) == 1 \
        else f"{sum(index.is_linear(n) for n in chain)}-layer MLP classifier"
    out.changes.append(SiteChange(site=edit.path, before=before, after=f"SpinalHead({module.extra_repr()})",
                                  block="head", scope=edit.scope))
    return out


def _put_head(ws: Workspace, index: GraphIndex, chain: list[fx.Node], logits_path: str, module: nn.Module) -> Edit:
    """Install the head at the smallest scope: swap the Linear (or the container holding exactly the
    chain) at its own path; otherwise replace the chain's calls in the module that makes them, and empty
    the replaced layers (so their weights leave the state_dict)."""
    editor = ws.editor()
    if len(chain) == 1:
        return editor.swap(logits_path, module)
    container = _container(index, chain)
    if container:
        return editor.swap(container, module)
    edit = editor.replace_nodes(chain, module, "spinal_head")
    for node in chain:
        if node.op == "call_module":
            editor.swap(str(node.target), nn.Identity())
    return edit


def _follow_classifier_name(model: nn.Module, replaced: set[str], logits: str) -> None:
    """timm's ``pretrained_cfg["classifier"]`` (one name or several) names the layer making the logits, whose
    ``.weight`` timm adapts when it loads pretrained weights: point the replaced entry at the new head's
    output layer (``fc`` becomes ``fc.out``)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or not cfg.get("classifier"):
        return
    names = cfg["classifier"]
    update = [logits if n in replaced else n for n in ([names] if isinstance(names, str) else list(names))]
    _set_cfg(model, cfg, {**cfg, "classifier": update[0] if isinstance(names, str) else type(names)(update)})


def _set_cfg(model: nn.Module, old: dict, new: dict) -> None:
    """Replace timm's ``pretrained_cfg`` (and ``default_cfg``, its alias, when it is the same dict)."""
    if getattr(model, "default_cfg", None) is old:
        model.default_cfg = new
    model.pretrained_cfg = new


def _follow_class_count(model: nn.Module, head_path: str, old: int, new: int) -> None:
    """Keep the model's own head metadata true: ``num_classes`` (the model's and the head's parent's)
    and timm's ``pretrained_cfg['num_classes']``."""
    if old == new:
        return
    parent_path = head_path.rpartition(".")[0]
    owners = [model] + ([model.get_submodule(parent_path)] if parent_path else [])
    for owner in owners:
        if isinstance(getattr(owner, "num_classes", None), int) and not isinstance(owner.num_classes, bool):
            owner.num_classes = new
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "num_classes" in cfg:
        _set_cfg(model, cfg, {**cfg, "num_classes": new})
