"""Modules that passes insert into models. Every one is a registered tracer leaf (re-tracing never
traces through it) and offers ``netsurgeon_export_module()``, the plain module to export in its place."""

from netsurgeon.layers.pd_relu import FAMILIES, PDReLU, pseudo_derivative
from netsurgeon.layers.spinal import SpinalHead, spinal_param_count

__all__ = ["FAMILIES", "PDReLU", "SpinalHead", "pseudo_derivative", "spinal_param_count"]
