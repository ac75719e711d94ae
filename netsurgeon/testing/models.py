"""Tiny models; see the package docstring."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "TinyConvNet", "TinyMobileNet", "TinyResNet", "Untraceable"]


class TinyConvNet(nn.Module):
    """conv-relu-conv-relu-pool x2, then Linear-ReLU-Dropout-Linear: 6 ReLU sites, 2 stages."""

    input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(2 * w, 4 * w), nn.ReLU(inplace=True), nn.Dropout(0.1),
            nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True), nn.Dropout(0.1),
            nn.Linear(4 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class _Block(nn.Module):
    """Post-activation residual block with one shared nn.ReLU called twice."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """Stem with a functional ReLU, three residual blocks, global pooling and one Linear: 7 ReLU sites."""

    input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_chans, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = _Block(w, w, 1)
        self.layer2 = _Block(w, 2 * w, 2)
        self.layer3 = _Block(2 * w, 2 * w, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyMobileNet(nn.Module):
    """MobileNetV2-style: conv-BN-ReLU6 stem, two inverted residual blocks (expand 1x1, depthwise 3x3, both
    ReLU6, linear 1x1 projection), global pooling and one Linear: 5 ReLU6 sites and no ReLU (pd-relu and
    erase-relu find nothing here unless told to take ReLU6)."""

    input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_chans, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU6())
        self.blocks = nn.ModuleList([_Inverted(w, 2 * w), _Inverted(w, 2 * w)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class _Inverted(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
                                       nn.BatchNorm2d(hidden), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.depthwise(self.expand(x)))


class Untraceable(TinyConvNet):
    """TinyConvNet whose forward branches on a tensor value: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "tiny_convnet": TinyConvNet,
    "tiny_resnet": TinyResNet,
    "tiny_mobilenet": TinyMobileNet,
    "untraceable": Untraceable,
}
