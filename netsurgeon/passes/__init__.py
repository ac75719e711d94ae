"""The surgeries. Each module holds one pass: its config, its function, and one registration line (gru-fc's
rule and training hooks sit beside it, in ``gru_fc_rule`` and ``gru_fc_hooks``).
A pass imports what it needs from :mod:`netsurgeon.surgery`.

Importing this package registers every built-in pass: each module's ``@register_pass`` runs at import.
The registry never imports the passes (it sits below them in the layer table); ``netsurgeon/__init__.py``
imports this package, so importing anything from ``netsurgeon`` fills the registry.
"""

from netsurgeon.passes.erase_relu import EraseReLU
from netsurgeon.passes.gru_fc import GradientRectifiedFC
from netsurgeon.passes.pd_relu import PseudoDerivativeReLU
from netsurgeon.passes.proportional_relu import ProportionalReLU
from netsurgeon.passes.spinal_head import SpinalHeadConfig

__all__ = ["EraseReLU", "GradientRectifiedFC", "ProportionalReLU", "PseudoDerivativeReLU", "SpinalHeadConfig"]
