"""A small, fast convolutional network for tiny images (the embedded default data)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FeatureNet


class SmallCNN(FeatureNet):
    """conv(32)-conv(64)-pool-conv(128)-global pool → 128-d features → linear.

    Works for any input size ≥ 4 pixels; about 0.1 M parameters.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(4 * w, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
