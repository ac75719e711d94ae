"""Model lists shared by the tests and the benchmarks (tests import nothing from ``benchmarks/``)."""

from __future__ import annotations

from typing import Any

__all__ = ["KEPT_CLASS_MODELS"]

#: (model spec, constructor kwargs, input side) of the kept-class test: the torchvision and timm
#: families of issue 12 at small inputs on the CPU; benchmarks/scope_share.py measures the same list
KEPT_CLASS_MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("torchvision:resnet18", {}, 32),
    ("torchvision:densenet121", {}, 32),
    ("torchvision:vgg16_bn", {}, 32),
    ("torchvision:googlenet", {}, 64),
    ("torchvision:mobilenet_v3_small", {}, 32),
    ("torchvision:efficientnet_b0", {}, 32),
    ("timm:resnet18", {"drop_rate": 0.5, "drop_path_rate": 0.2}, 32),
    ("timm:seresnext26d_32x4d", {}, 32),
    ("timm:densenet121", {}, 32),
    ("timm:vgg11", {}, 32),
]
