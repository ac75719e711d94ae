"""The head: the layer that makes the logits, and the other walks back from the output.

The head is found by walking back from the output through flatten, dropout and identity (and into the
one term of a sum that is an FC output, as in timm VOLO's head plus auxiliary token head): an
``nn.Linear`` (any subclass, also when fx traced through it into a functional ``linear`` on the module's
own weights, as with timm's ``Linear``), or a 1x1 ``Conv2d`` applied after global pooling (timm DLA, DPN,
ResNetV2: an FC layer in all but name). A convolution *before* the pooling (SqueezeNet) is not a head
layer. Every pass that needs the head, the FC layers on the path to the logits, the classifier chain or
the pooled features uses these functions; none matches a class by its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import fx, nn

from netsurgeon.errors import SurgeryError
from netsurgeon.graph.nodes import (
    PASSTHROUGH_FUNCTIONS,
    PASSTHROUGH_METHODS,
    PASSTHROUGH_MODULES,
    NodeIndex,
    get_attr,
)

__all__ = ["Head", "classifier_chain", "find_head", "global_pool_input", "logit_path_layers", "missing_head",
           "require_head"]


@dataclass(frozen=True)
class Head:
    """The layer that produces the logits, found by walking back from the output."""

    node: str
    target: str  # module path ('' when the head is a functional F.linear on weights of no Linear module)
    in_features: int | None
    out_features: int | None
    passthrough: tuple[str, ...]  # what lies between the layer and the output (dropout, flatten, ...)
    kind: Literal["linear", "conv1x1"] = "linear"  # conv1x1: a 1x1 Conv2d after global pooling


def find_head(index: NodeIndex) -> Head | None:
    """Walk back from the output through dropout/flatten/identity to the layer making the logits.

    Logits that are a sum of terms (timm VOLO: ``head(cls) + 0.5 * aux_head(tokens).max(1)[0]``) have
    a head when exactly one term is an FC layer's output reached through those passthroughs only:
    that layer is the classifier (the one timm's ``get_classifier()`` names); the other terms stay.
    """
    output = next((n for n in reversed(index.nodes) if n.op == "output"), None)
    if output is None or not isinstance(output.args[0], fx.Node):
        return None
    return _walk_to_head(index, output.args[0], ())


def _walk_to_head(index: NodeIndex, node: fx.Node, passed: tuple[str, ...]) -> Head | None:
    while True:
        found = _head_layer(index, node, passed)
        if found is not None:
            return found
        if index.is_residual_add(node):
            terms = [_walk_to_head(index, arg, (*passed, node.name)) for arg in index.tensor_args(node)]
            found_terms = [t for t in terms if t is not None]
            return found_terms[0] if len(found_terms) == 1 else None
        if not _passthrough(index, node) or not node.args or not isinstance(node.args[0], fx.Node):
            return None
        passed = (*passed, node.name)
        node = node.args[0]


def _passthrough(index: NodeIndex, node: fx.Node) -> bool:
    return (
        isinstance(index.module_of(node), PASSTHROUGH_MODULES)
        or (node.op == "call_function" and node.target in PASSTHROUGH_FUNCTIONS)
        or (node.op == "call_method" and node.target in PASSTHROUGH_METHODS)
    )


def _head_layer(index: NodeIndex, node: fx.Node, passed: tuple[str, ...]) -> Head | None:
    module = index.module_of(node)
    if isinstance(module, nn.Linear):
        return Head(node.name, str(node.target), module.in_features, module.out_features, passed)
    if node.op == "call_function" and node.target is F.linear:
        weight = index.linear_weight(node)
        shape = tuple(get_attr(index.gm, str(weight.target)).shape) if weight is not None else ()
        out_f, in_f = shape if len(shape) == 2 else (None, None)
        return Head(node.name, index.linear_path(node) or "", in_f, out_f, passed)
    if isinstance(module, nn.Conv2d) and set(module.kernel_size) == {1} and module.groups == 1 \
            and node.args and isinstance(node.args[0], fx.Node) and _after_global_pool(index, node.args[0]):
        return Head(node.name, str(node.target), module.in_channels, module.out_channels, passed, "conv1x1")
    return None


def _after_global_pool(index: NodeIndex, node: fx.Node) -> bool:
    """Is ``node`` a global pooling (to 1x1), reached back through dropout/identity only?"""
    while isinstance(index.module_of(node), (nn.Dropout, nn.Identity)) or (
            node.op == "call_function" and node.target is F.dropout):
        if not node.args or not isinstance(node.args[0], fx.Node):
            return False
        node = node.args[0]
    return index.is_global_pool(node)


#: what may stand between the first Linear of an MLP classifier and the logits (replace=classifier)
_CHAIN_MODULES = (nn.Linear, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Dropout, nn.BatchNorm1d, nn.Identity)
_CHAIN_FUNCTIONS = (F.relu, F.dropout, F.gelu)


def logit_path_layers(index: NodeIndex) -> list[str]:
    """The FC layers of the classifier: walking back from the head layer along first inputs, the Linear
    layers met before a convolution, a global pooling or a residual add; none when there is no head
    (logits that combine several FC heads, as distillation models do, or no FC layer at all).

    FC layers are ``nn.Linear`` modules (also when fx traced through a subclass, timm's ``Linear``) and a
    1x1 convolution after global pooling that makes the logits (timm DLA, DPN, ResNetV2), whose
    (out, in, 1, 1) weight is an FC weight viewed. The walk ends where the classifier does: a Linear
    behind a global pooling or a residual add acts per position or per token, as a 1x1 convolution would
    (a block's MLP, Swin's patch merging, Hiera's stage projection), and is no FC layer of the head.
    """
    head = find_head(index)
    node = index.by_name[head.node] if head is not None else None
    found: list[str] = []
    while isinstance(node, fx.Node) and node.op != "placeholder":
        if head is not None and head.kind == "conv1x1" and node.name == head.node:
            found.insert(0, head.target)
            break
        if index.is_conv(node) or index.is_global_pool(node) or index.is_residual_add(node):
            break
        if (path := index.linear_path(node)) is not None:
            found.insert(0, path)
        node = next(iter(node.all_input_nodes), None)
    return found


def classifier_chain(index: NodeIndex, logits: fx.Node) -> list[fx.Node]:
    """The Linear/activation/dropout nodes ending at ``logits``, starting at the first Linear."""
    def member(node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(index.module_of(node), _CHAIN_MODULES)
        return node.op == "call_function" and node.target in _CHAIN_FUNCTIONS

    chain = [logits]
    node = logits.args[0]
    while isinstance(node, fx.Node) and member(node) and len(node.users) == 1:
        chain.insert(0, node)
        node = node.args[0]
    while not index.is_linear(chain[0]):
        chain.pop(0)
    return chain


def global_pool_input(index: NodeIndex) -> fx.Node | None:
    """The tensor entering the global pooling in front of the head (no convolution after it)."""
    for node in index.nodes:
        if not index.conv_downstream[node] and index.is_global_pool(node):
            source = node.args[0] if node.args else None
            return source if isinstance(source, fx.Node) else None
    return None


def missing_head(needs: str) -> SurgeryError:
    """The error every pass that needs the head raises when the model has none; ``needs`` says what the
    pass needs instead (its own remedy)."""
    return SurgeryError("no nn.Linear or 1x1 convolution after global pooling makes the logits (walking back "
                        f"from the output through flatten, dropout and identity); {needs}")


def require_head(index: NodeIndex, needs: str) -> Head:
    """The head, a layer with a module path, or :func:`missing_head`'s error."""
    head = find_head(index)
    if head is None or not head.target:
        raise missing_head(needs)
    return head
