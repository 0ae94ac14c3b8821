"""PreActResNet18/34 as the Prune4ReL reference defines them, and He et al.'s variant.

The reference (Prune4ReL's ``deepcore/nets/preactresent.py``, used for every CIFAR run):

* stem: 3×3 convolution, BatchNorm, ReLU;
* PreActResNet18: pre-activation blocks (BN → ReLU → conv, twice) whose shortcut — the
  identity or a 1×1 convolution without BatchNorm — is taken from the *activated* input
  ``relu(bn1(x))``, also when it is the identity;
* PreActResNet34: the reference builds it from post-activation basic blocks (conv → BN →
  ReLU, BatchNorm'ed 1×1 projection shortcut, ReLU after the sum), i.e. a CIFAR ResNet-34
  with a BN-ReLU stem; kept as it is, because the reference's results come from it;
* head: no final BN-ReLU; 4×4 average pooling of the last stage, then the linear layer.
  The pooled 512-d vector is what the reference's embedding recorder captures, and what
  :meth:`~deep_core.nets.base.FeatureNet.embed` returns here. For PreActResNet18 it is a
  sum of un-activated residual branches, so features can be negative.

The reference pools with a fixed 4×4 window, which only fits 32×32 inputs; here the
pooling is global, the same on 32×32 and usable on other sizes. The reference ignores
its ``channel`` argument (always 3 input channels); here ``in_channels`` is honoured.

``PreActResNet18He`` / ``PreActResNet34He`` are the textbook pre-activation networks of
He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016): a bare
convolution as stem, identity shortcuts carrying the un-activated input, and a final
BN-ReLU before pooling (non-negative features). They are not the reference's networks
and are kept under these names for comparison with the literature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureNet
from .cifar_resnet import BasicBlock


class ReferencePreActBlock(nn.Module):
    """The reference's pre-activation block: the shortcut reads ``relu(bn1(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        # Sequential containers give the reference's parameter names (shortcut.0.weight).
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet(FeatureNet):
    """The reference's PreActResNet: BN-ReLU stem, four stages, no final BN-ReLU."""

    def __init__(
        self, block: type[nn.Module], blocks: list[int], num_classes: int, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._layer(block, 64, blocks[0], 1)
        self.layer2 = self._layer(block, 128, blocks[1], 2)
        self.layer3 = self._layer(block, 256, blocks[2], 2)
        self.layer4 = self._layer(block, 512, blocks[3], 2)
        self.fc = nn.Linear(512, num_classes)

    def _layer(self, block: type[nn.Module], planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def preact_resnet18(num_classes: int, in_channels: int = 3) -> PreActResNet:
    """The reference's PreActResNet18 (pre-activation blocks, [2, 2, 2, 2])."""
    return PreActResNet(ReferencePreActBlock, [2, 2, 2, 2], num_classes, in_channels)


def preact_resnet34(num_classes: int, in_channels: int = 3) -> PreActResNet:
    """The reference's PreActResNet34 (post-activation basic blocks, [3, 4, 6, 3])."""
    return PreActResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels)


class HePreActBlock(nn.Module):
    """He et al.'s pre-activation block: the identity shortcut carries the input itself."""

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
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class HePreActResNet(FeatureNet):
    """He et al.'s pre-activation ResNet: bare stem, final BN-ReLU before pooling."""

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
            layers.append(HePreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def he_preact_resnet18(num_classes: int, in_channels: int = 3) -> HePreActResNet:
    return HePreActResNet([2, 2, 2, 2], num_classes, in_channels)


def he_preact_resnet34(num_classes: int, in_channels: int = 3) -> HePreActResNet:
    return HePreActResNet([3, 4, 6, 3], num_classes, in_channels)
