"""pd-relu: PD-ReLU (Hu, Li, Yang, "Improving Convolutional Neural Network Using Pseudo Derivative
ReLU", ICSAI 2018, doi 10.1109/ICSAI.2018.8599372).

Every ReLU site in scope becomes a fresh :class:`~netsurgeon.layers.PDReLU`: forward bit-identical to
ReLU, backward ``grad * g(x)`` with ``g = 1`` on ``x > 0`` and a pseudo derivative ``0 <= h(x) <= 1`` on
``x <= 0`` (x = 0 takes the negative branch, as PyTorch's ReLU does; the families of ``h`` are ours, the
paper's exact one is not known). An activation
module called once (timm's ``act1``, or ``BatchNormAct2d.act`` inside a leaf) is swapped in place; a
shared ``nn.ReLU`` (torchvision ``BasicBlock.relu``, called twice) and functional or method sites get
one new ``pd_*`` module per call in the module that makes the call (block rewrite, see
``graph.scoped``). The default scope is every ReLU
site, classifier included (the paper used AlexNet); ``include``/``exclude`` select sites by label
(see ``netsurgeon inspect``). ReLU6 sites are opt-in (``relu6``), with ``g = 0`` kept for ``x >= 6``.

Outputs are unchanged (the pass's contract is exact), the state_dict is unchanged, and an exported
artifact replays the pass on reload so the pseudo derivative comes back. ONNX export writes plain
``Relu``. The ``callable`` family cannot be stored in an artifact: reload it with
``load_artifact(path, overrides={"pd-relu": {"fn": h}})``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from netsurgeon.layers.pd_relu import PDReLU, check_callable
from netsurgeon.surgery import (
    Contract,
    GraphIndex,
    NoMatchError,
    PassConfig,
    PassOutcome,
    Site,
    Workspace,
    check_inplace_safe,
    match_patterns,
    register_pass,
    site_change,
)

__all__ = ["PseudoDerivativeReLU"]


@dataclass(frozen=True)
class PseudoDerivativeReLU(PassConfig):
    """ReLU forward, pseudo-derivative backward at every ReLU site (PD-ReLU)."""

    family: Literal["leaky", "exp", "sigmoid", "ramp", "callable"] = "leaky"
    """h(x) for x <= 0: leaky (alpha), exp (alpha*exp(x/tau)), sigmoid (2*alpha*sigmoid(x/tau)),
    ramp (alpha*max(0, 1+x/width)), or callable (fn)."""
    alpha: float | None = None
    """Scale of h, in [0, 1] (default per family: leaky 0.1, exp 1.0, sigmoid 0.5, ramp 1.0)."""
    tau: float = 1.0
    """Temperature of the exp and sigmoid families (> 0)."""
    width: float = 1.0
    """Width of the ramp family (> 0)."""
    fn: Callable[[torch.Tensor], torch.Tensor] | str | None = None
    """family=callable: a function h(x) returning values in [0, 1] (Python API only)."""
    relu6: bool = False
    """Also replace ReLU6 sites (gradient 0 kept for x >= 6)."""
    include: tuple[str, ...] = ()
    """Only sites whose label matches one of these globs (or 're:' regexes); default all."""
    exclude: tuple[str, ...] = ()
    """Leave sites whose label matches one of these patterns."""

    def validate(self) -> None:
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            self.fail(f"alpha must be between 0 and 1 (a pseudo derivative stays in [0, 1]), got {self.alpha}.")
        if self.tau <= 0 or self.width <= 0:
            self.fail(f"tau and width must be positive, got tau={self.tau}, width={self.width}.")
        if self.family == "callable":
            if isinstance(self.fn, str):
                self.fail(f"fn={self.fn!r} names a user function, which netsurgeon never imports from a name; "
                          "pass the function itself (load_artifact(path, overrides={'pd-relu': {'fn': h}})).")
            if self.fn is None:
                self.fail("family='callable' needs fn, a function h(x) for x <= 0 (Python API).")
            check_callable(self.fn)
        elif self.fn is not None:
            self.fail(f"fn is only used with family='callable' (family is {self.family!r}).")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if callable(self.fn):
            out["fn"] = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', repr(self.fn))}"
        return out

    def make_module(self, relu6: bool = False) -> PDReLU:
        fn = self.fn if callable(self.fn) else None
        return PDReLU(self.family, self.alpha, self.tau, self.width, fn, relu6=relu6)


def select_sites(index: GraphIndex, cfg: PseudoDerivativeReLU) -> list[Site]:
    """The sites in scope: every ReLU (and ReLU6 if asked) site, filtered by include/exclude."""
    sites = index.sites(("ReLU", "ReLU6") if cfg.relu6 else ("ReLU",))
    if cfg.include:
        sites = [s for s in sites if match_patterns(s.label, cfg.include)]
        if not sites:
            raise NoMatchError(f"include={list(cfg.include)} matched no ReLU site; "
                               "run 'netsurgeon inspect' to list site labels.")
    return [s for s in sites if not match_patterns(s.label, cfg.exclude)]


def _attr_name(site: Site) -> str:
    """Name of the new module in the module that makes the call (shared-module and functional sites)."""
    base = site.target.rpartition(".")[2] if site.kind == "module" else site.target.rstrip("_")
    return f"pd_{base}"


@register_pass("pd-relu", PseudoDerivativeReLU, contract=Contract.EXACT, structural=True, edits_weights=False)
def pd_relu(ws: Workspace, cfg: PseudoDerivativeReLU) -> PassOutcome:
    index, editor = ws.index(), ws.editor()
    sites = select_sites(index, cfg)
    for site in sites:  # PD-ReLU is out of place: check every in-place site before editing any
        check_inplace_safe(index, site)
    changes = []
    for site in sites:
        module = cfg.make_module(relu6=site.act == "ReLU6")
        edit = editor.replace(site, module, _attr_name(site))
        changes.append(site_change(site, edit, after=f"PDReLU({module.extra_repr()}) at {edit.path}",
                                   block=site.scope or "<model>"))
    outcome = PassOutcome(changes)
    if not sites and not cfg.relu6:  # a MobileNet/EfficientNet-style model: its activations are ReLU6
        relu6 = len(select_sites(index, dataclasses.replace(cfg, relu6=True)))
        if relu6:
            outcome.hint = f"{relu6} ReLU6 site{'s' if relu6 != 1 else ''}: add relu6=true"
    return outcome
