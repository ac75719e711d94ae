"""Tiny, deterministic CNNs for tests, examples and benchmarks (seconds on a CPU).

They cover the structures the passes must handle: a VGG-like stack with pooling stages and an MLP
head (``tiny_convnet``), and a ResNet-like model whose blocks call one shared ``nn.ReLU`` twice and
also use a functional ``F.relu`` (``tiny_resnet``). Load them as ``netsurgeon:tiny_resnet``.

What the tests and the benchmarks share lives here too (``model_lists``; ``coverage``, the coverage page's row
cache): tests import nothing from ``benchmarks/``.
"""

from netsurgeon.testing.models import MODELS, TinyConvNet, TinyMobileNet, TinyResNet, Untraceable

__all__ = ["MODELS", "TinyConvNet", "TinyMobileNet", "TinyResNet", "Untraceable"]
