"""Spinal classifier heads: ProgressiveSpinalNet (Chopra, arXiv 2103.11373) and SpinalNet (Kabir et al.,
arXiv 2007.03347), as established from the authors' code (github.com/dipuk0506/SpinalNet and
github.com/praveenchopra/ProgressiveSpinalNet), since the papers' text leaves the layer wiring open.

``progressive`` (no split; every layer sees the input and all earlier layers)::

    x~ = Dropout_p(x)
    h1 = act(W1 x + b1)                       (x~ with first_layer_input="dropped")
    hk = act(Wk [x~; h1; ...; h(k-1)] + bk)   k = 2..L
    y  = Wo [x~; h1; ...; hL] + bo            the output sees x~: a gradient highway

``spinal`` (S splits of x, layer k reads split (k-1) mod S and the previous layer; the output sees only
hidden units)::

    h1 = act(W1 x_0)    hk = act(Wk [x_{(k-1) mod S}; h(k-1)])    y = Wo [h1; ...; hL]

Parameter counts (without BatchNorm, which adds 2w per layer)::

    progressive:  L(Dw + w) + w^2 L(L-1)/2 + (D + Lw) C + C
    spinal:       sum_k (in_k w + w) + L w C + C,  in_1 = s_0, in_k = s_{(k-1) mod S} + w

with split sizes s_i as ``torch.tensor_split`` makes them (the first D mod S splits one larger), so an
odd D works. The head flattens its input.
"""

from __future__ import annotations

import torch
from torch import nn

from netsurgeon.errors import NetsurgeonError
from netsurgeon.graph.trace import register_leaf

__all__ = ["ACTIVATIONS", "SpinalConvHead", "SpinalHead", "spinal_param_count", "split_sizes"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU}


def split_sizes(features: int, splits: int) -> list[int]:
    return [features // splits + (1 if i < features % splits else 0) for i in range(splits)]


def spinal_param_count(variant: str, features: int, classes: int, width: int, layers: int, splits: int = 2,
                       batchnorm: bool = False) -> int:
    """The closed-form parameter count of a head (see the module docstring)."""
    d, c, w, n = features, classes, width, layers
    if variant == "progressive":
        count = n * (d * w + w) + w * w * n * (n - 1) // 2 + (d + n * w) * c + c
    else:
        sizes = split_sizes(d, splits)
        ins = [sizes[0]] + [sizes[k % splits] + w for k in range(1, n)]
        count = sum(i * w + w for i in ins) + n * w * c + c
    return count + (2 * w * n if batchnorm else 0)


@register_leaf
class SpinalHead(nn.Module):
    """A (progressive) spinal classifier head over a flattened feature vector of size ``in_features``."""

    def __init__(self, in_features: int, num_classes: int, *, variant: str = "progressive", width: int = 64,
                 num_layers: int = 4, num_splits: int = 2, input_dropout: float = 0.2,
                 first_layer_input: str = "raw", batchnorm: bool = False, layer_dropout: float = 0.0,
                 activation: str = "relu") -> None:
        super().__init__()
        self.variant, self.in_features, self.num_classes = variant, in_features, num_classes
        self.first_layer_input, self.batchnorm = first_layer_input, batchnorm
        self.sizes = split_sizes(in_features, num_splits) if variant == "spinal" else [in_features]
        self.input_dropout = nn.Dropout(input_dropout)
        layers = []
        for k in range(num_layers):
            if variant == "progressive":
                fan_in = in_features + k * width
            else:
                fan_in = self.sizes[k % num_splits] + (width if k else 0)
            parts: list[nn.Module] = [nn.Dropout(layer_dropout)] if layer_dropout else []
            parts.append(nn.Linear(fan_in, width))
            if batchnorm:
                parts.append(nn.BatchNorm1d(width))
            parts.append(ACTIVATIONS[activation]())
            layers.append(nn.Sequential(*parts))
        self.hidden = nn.ModuleList(layers)
        out_in = num_layers * width + (in_features if variant == "progressive" else 0)
        self.out = nn.Linear(out_in, num_classes)

    @torch.no_grad()
    def warm_start(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Make eval-mode logits equal ``x @ weight.T + bias`` (progressive only): Wo[:, :D] = W, the rest 0."""
        if self.variant != "progressive":
            raise NetsurgeonError("warm_start needs the progressive variant: the spinal output never sees x.")
        self.out.weight.zero_()
        self.out.weight[:, : self.in_features].copy_(weight)
        self.out.bias.copy_(bias if bias is not None else torch.zeros_like(self.out.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        # written for TorchScript too: no star-unpacking, no super(), no custom exception class when scripted
        x = x.flatten(1)
        if self.training and self.batchnorm and x.shape[0] == 1:
            if torch.jit.is_scripting():
                raise RuntimeError("the spinal head has BatchNorm1d, which cannot train on a batch of 1")
            raise NetsurgeonError("the spinal head has BatchNorm1d, which cannot train on a batch of 1; "
                                  "use a batch of 2 or more (or drop_last=True), or batchnorm=false.")
        dropped = self.input_dropout(x)
        hidden: list[torch.Tensor] = []
        if self.variant == "progressive":
            first = x if self.first_layer_input == "raw" else dropped
            for k, layer in enumerate(self.hidden):
                hidden.append(layer(first if k == 0 else torch.cat([dropped] + hidden, 1)))
            return self.out(torch.cat([dropped] + hidden, 1))
        parts = torch.split(dropped, self.sizes, dim=1)
        for k, layer in enumerate(self.hidden):
            part = parts[k % len(parts)]
            hidden.append(layer(part if k == 0 else torch.cat([part, hidden[-1]], 1)))
        return self.out(torch.cat(hidden, 1))

    def extra_repr(self) -> str:
        return f"{self.variant}, in_features={self.in_features}, num_classes={self.num_classes}"


@register_leaf
class SpinalConvHead(SpinalHead):
    """A :class:`SpinalHead` standing in for a 1x1 convolution applied after global pooling (timm DLA, DPN,
    ResNetV2): it reads the pooled (B, C, 1, 1) map and returns (B, classes, 1, 1), so the model's own
    flatten after the classifier still works. Same parameters and warm start as the plain head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._logits(x)
        return logits.reshape(logits.shape + x.shape[2:])  # (B, C, 1, 1); traceable by fx and TorchScript
