"""CIFAR ResNets of depth 6n+2 (He et al., CVPR 2016, section 4.2): ResNet-8/20/32.

Three stages of n basic blocks with 16, 32 and 64 channels. ResNet-8 trains a CIFAR-10
epoch in well under a minute on a laptop CPU, which makes real-data runs and
benchmarks feasible without a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureNet


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(FeatureNet):
    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("depth must be 6n+2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, planes = [], width
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(planes, width * mult, stride))
                planes = width * mult
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(planes, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
