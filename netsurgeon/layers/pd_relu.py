"""PD-ReLU: ReLU forward, pseudo-derivative backward (Hu, Li, Yang, ICSAI 2018).

Forward is computed with the very function ``nn.ReLU`` (or ``nn.ReLU6``) uses, so it is bit-identical,
signed zeros, infinities and NaN included. Backward is ``grad * g(x)`` with ``g = 1`` for ``x > 0`` and
``g = h(x)`` for ``x <= 0`` (ReLU6: and ``g = 0`` for ``x >= 6``), ``g`` computed in the dtype of ``x``.
The leaky family runs as one fused kernel (aten's ``leaky_relu_backward`` on the saved output): in
float32/float64 that is exactly ``grad * g``; in float16/bfloat16 ``grad * alpha`` is rounded once
instead of going through an ``alpha`` rounded to the input dtype first.

Families of ``h`` (all keep ``0 <= h <= 1``):

* ``leaky`` (default): ``alpha`` (0.1), the backward of LeakyReLU. Saves only the *output* for
  backward (the mask ``x > 0`` equals ``y > 0``), so it stores no more than ``nn.ReLU``.
* ``exp``: ``alpha * exp(x / tau)`` (1.0, 1.0; ELU' for alpha = 1). Saves the input ``x``.
* ``sigmoid``: ``2 * alpha * sigmoid(x / tau)`` (0.5, 1.0). Saves ``x``.
* ``ramp``: ``alpha * max(0, 1 + x / width)`` (1.0, 1.0): only near-zero negatives get gradient. Saves ``x``.
* ``callable``: a user function of ``x``, checked to return values in [0, 1] on a grid. Saves ``x``.

The gradient is deliberately not the derivative of the forward: ``torch.autograd.gradcheck`` fails.

Other tools: :func:`pd_relu` is ``torch.fx.wrap``-ped, so any fx tracer (``symbolic_trace``, timm's fx
feature extraction, torchvision's ``create_feature_extractor``) records a call of it instead of tracing
into it, and the traced model keeps the pseudo derivative. ``torch.jit.trace``, ``torch.export`` and
``torch.compile`` run the same autograd function. TorchScript cannot carry a custom backward: a
*scripted* PDReLU computes the bit-identical forward (``torch.relu``/``hardtanh``) and refuses to run in
train mode on an input that requires grad, so scripted training is never mistaken for pd-relu training;
an fx graph of a pd-relu result (its ``pd_relu`` calls) scripts alike (timm's fx-then-TorchScript test).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from netsurgeon.errors import ConfigError
from netsurgeon.graph.trace import register_leaf

__all__ = ["FAMILIES", "PDReLU", "check_callable", "pd_relu", "pseudo_derivative"]

#: family -> default alpha
FAMILIES: dict[str, float | None] = {"leaky": 0.1, "exp": 1.0, "sigmoid": 0.5, "ramp": 1.0, "callable": None}
RELU6_MAX = 6.0


def pseudo_derivative(x: torch.Tensor, family: str, alpha: float, tau: float = 1.0, width: float = 1.0,
                      fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``h(x)`` of a family, in the dtype of ``x`` (meaningful where ``x <= 0``)."""
    if family == "leaky":
        return torch.full_like(x, alpha)
    if family == "exp":
        return alpha * torch.exp(x / tau)
    if family == "sigmoid":
        return 2 * alpha * torch.sigmoid(x / tau)
    if family == "ramp":
        return alpha * torch.clamp(1 + x / width, min=0)
    if family == "callable" and fn is not None:
        return fn(x).to(x.dtype)
    raise ValueError(f"unknown pseudo-derivative family {family!r}")


def check_callable(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """A user ``h`` must map a tensor to a same-shaped tensor with values in [0, 1]."""
    grid = torch.linspace(-20.0, 0.0, 2001)
    try:
        out = fn(grid)
    except Exception as err:  # user code can raise anything
        raise ConfigError(f"pd-relu: fn raised {type(err).__name__}: {err} on a test tensor.") from None
    if not isinstance(out, torch.Tensor) or out.shape != grid.shape:
        raise ConfigError("pd-relu: fn must return a tensor shaped like its input (h(x) for each x <= 0).")
    if not bool(torch.isfinite(out).all()) or float(out.min()) < 0 or float(out.max()) > 1:
        raise ConfigError("pd-relu: fn must return finite values in [0, 1] on x in [-20, 0] "
                          f"(got min {float(out.min()):.3g}, max {float(out.max()):.3g}).")


def _forward(x: torch.Tensor, relu6: bool) -> torch.Tensor:
    # the exact calls nn.ReLU / nn.ReLU6 make (out of place)
    return F.hardtanh(x, 0.0, RELU6_MAX) if relu6 else torch.relu(x)


def _times(grad: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``grad * g``, written into ``g`` (a fresh temporary) when the dtypes allow: one allocation less."""
    if g.dtype == grad.dtype and g.shape == grad.shape:
        return g.mul_(grad)
    return grad * g


class _LeakyPD(torch.autograd.Function):
    """Saves the output only: ``x > 0`` iff ``y > 0`` (and for ReLU6, ``x >= 6`` iff ``y == 6``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, relu6: bool) -> torch.Tensor:
        y = _forward(x, relu6)
        ctx.save_for_backward(y)
        ctx.alpha, ctx.relu6 = alpha, relu6
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (y,) = ctx.saved_tensors
        # one fused kernel: y > 0 ? grad : grad * alpha (y is the output, which has the sign of x)
        out = torch.ops.aten.leaky_relu_backward(grad, y, ctx.alpha, True)
        if ctx.relu6:
            out = out.masked_fill_(y >= RELU6_MAX, 0)
        return out, None, None


class _GenericPD(torch.autograd.Function):
    """Saves the input: ``h`` depends on the value of negative ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, family: str, alpha: float, tau: float, width: float, fn, relu6: bool):
        ctx.save_for_backward(x)
        ctx.params = (family, alpha, tau, width, fn, relu6)
        return _forward(x, relu6)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        family, alpha, tau, width, fn, relu6 = ctx.params
        one = torch.ones((), dtype=x.dtype, device=x.device)
        g = torch.where(x > 0, one, pseudo_derivative(x, family, alpha, tau, width, fn))
        if relu6:
            g = torch.where(x >= RELU6_MAX, torch.zeros_like(one), g)
        return _times(grad, g), None, None, None, None, None, None


@torch.fx.wrap
def pd_relu(x: torch.Tensor, family: str = "leaky", alpha: float = 0.1, tau: float = 1.0, width: float = 1.0,
            relu6: bool = False) -> torch.Tensor:
    """PD-ReLU as a function (the built-in families). fx tracers record a call of it and never trace into
    it, so a model traced by any of them keeps the pseudo derivative. Scripted (an fx graph of a pd-relu
    result given to ``torch.jit.script``, as timm's tests do), it is the bit-identical forward only, and
    refuses an input that requires grad (TorchScript cannot carry the pseudo-derivative backward)."""
    if torch.jit.is_scripting():
        if x.requires_grad:
            raise RuntimeError("pd_relu under TorchScript: TorchScript cannot carry the pseudo-derivative backward, "
                               "so a scripted pd-relu graph is for inference only (no grad); train the eager model")
        return F.hardtanh(x, 0.0, 6.0) if relu6 else torch.relu(x)
    return _pd_apply(x, family, alpha, tau, width, relu6)


@torch.jit.unused
def _pd_apply(x: torch.Tensor, family: str, alpha: float, tau: float, width: float, relu6: bool) -> torch.Tensor:
    if family == "leaky":
        return _LeakyPD.apply(x, alpha, relu6)
    return _GenericPD.apply(x, family, alpha, tau, width, None, relu6)


@register_leaf
class PDReLU(nn.Module):
    """ReLU (or ReLU6) whose backward uses a pseudo derivative for non-positive inputs. No state, never in place."""

    def __init__(self, family: str = "leaky", alpha: float | None = None, tau: float = 1.0, width: float = 1.0,
                 fn: Callable[[torch.Tensor], torch.Tensor] | None = None, relu6: bool = False) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ConfigError(f"pd-relu: unknown family {family!r}; choose one of {', '.join(FAMILIES)}.")
        if family == "callable":
            if fn is None:
                raise ConfigError("pd-relu: family='callable' needs fn, a function h(x) for x <= 0.")
            check_callable(fn)
        self.family = family
        self.alpha = float(alpha if alpha is not None else (FAMILIES[family] or 1.0))
        self.tau, self.width, self.fn, self.relu6 = float(tau), float(width), fn, relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the forward only: refuse what would be plain-ReLU training
            if self.training and x.requires_grad:
                raise RuntimeError("PDReLU under TorchScript: TorchScript cannot carry the pseudo-derivative "
                                   "backward, so a scripted pd-relu model is for inference only (eval mode or no "
                                   "grad); train the eager model")
            return F.hardtanh(x, 0.0, 6.0) if self.relu6 else torch.relu(x)
        return self._pseudo(x)

    @torch.jit.unused
    def _pseudo(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "callable":
            if isinstance(x, torch.fx.Proxy):
                raise ConfigError("pd-relu with family='callable' cannot be traced by torch.fx (the tracer would "
                                  "drop its backward); use a built-in family to trace the model.")
            return _GenericPD.apply(x, self.family, self.alpha, self.tau, self.width, self.fn, self.relu6)
        return pd_relu(x, self.family, self.alpha, self.tau, self.width, self.relu6)

    def netsurgeon_export_module(self) -> nn.Module:
        """Inference is plain ReLU: export that (ONNX ``Relu``/``Clip``)."""
        return nn.ReLU6() if self.relu6 else nn.ReLU()

    def extra_repr(self) -> str:
        extra = {"exp": f", tau={self.tau}", "sigmoid": f", tau={self.tau}", "ramp": f", width={self.width}"}
        name = getattr(self.fn, "__qualname__", "fn") if self.family == "callable" else self.family
        return f"{name}, alpha={self.alpha}{extra.get(self.family, '')}{', relu6' if self.relu6 else ''}"
