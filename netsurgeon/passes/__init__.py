"""The surgeries. Each module holds one pass: its config, its function, and one registration line.

Importing this package registers every pass (the registry imports it on first lookup).
"""

from netsurgeon.passes.erase_relu import EraseReLU
from netsurgeon.passes.gru_fc import GradientRectifiedFC
from netsurgeon.passes.pd_relu import PseudoDerivativeReLU
from netsurgeon.passes.proportional_relu import ProportionalReLU
from netsurgeon.passes.spinal_head import SpinalHeadConfig

__all__ = ["EraseReLU", "GradientRectifiedFC", "ProportionalReLU", "PseudoDerivativeReLU", "SpinalHeadConfig"]
