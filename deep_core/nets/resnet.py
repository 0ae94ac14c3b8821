"""torchvision ResNet-18/34/50 as feature networks.

For small inputs (side ≤ 64) the stem becomes a 3×3 stride-1 convolution without max
pooling, as DeepCore does for CIFAR. ImageNet weights come from a local state dict
(``model_path``) or, when none is given, torchvision's download (for online users).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import FeatureNet


class TorchvisionResNet(FeatureNet):
    def __init__(
        self,
        arch: str,
        num_classes: int,
        in_channels: int,
        image_side: int,
        imagenet_weights: bool = False,
    ) -> None:
        super().__init__()
        import torchvision

        weights = "DEFAULT" if imagenet_weights else None
        body = getattr(torchvision.models, arch.lower())(weights=weights)
        if image_side <= 64:
            body.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            body.maxpool = nn.Identity()
        elif in_channels != 3:
            body.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.fc = nn.Linear(body.fc.in_features, num_classes)
        body.fc = nn.Identity()
        self.body = body

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
