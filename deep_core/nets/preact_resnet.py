"""Pre-activation ResNets (He et al., ECCV 2016) for 32×32 inputs.

Real pre-activation blocks (BN → ReLU → conv, identity shortcuts taken after the
first activation when the shape changes). The Prune4ReL reference's PreActResNet34/50
reuse post-activation blocks; these do not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureNet


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(FeatureNet):
    def __init__(self, blocks: list[int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.layer1 = self._layer(64, blocks[0], 1)
        self.layer2 = self._layer(128, blocks[1], 2)
        self.layer3 = self._layer(256, blocks[2], 2)
        self.layer4 = self._layer(512, blocks[3], 2)
        self.bn = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512, num_classes)

    def _layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def preact_resnet18(num_classes: int, in_channels: int = 3) -> PreActResNet:
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels)


def preact_resnet34(num_classes: int, in_channels: int = 3) -> PreActResNet:
    return PreActResNet([3, 4, 6, 3], num_classes, in_channels)
