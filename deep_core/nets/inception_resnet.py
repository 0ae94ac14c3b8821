"""Inception-ResNet-v2 (Szegedy et al., AAAI 2017), the reference's WebVision network.

Prune4ReL trains WebVision with its own ``Inception_ResNetv2``, randomly initialised: the
Inception-ResNet-v2 stem, 10 × block A (scale 0.17), reduction A, 20 × block B (0.10),
reduction B, 9 × block C (0.20) and one without the final ReLU, a 1×1 convolution to
1536 channels with BatchNorm (eps 0.001) and ReLU, global average pooling and a linear
layer. timm's ``inception_resnet_v2`` is the same network layer for layer (54,306,464
parameters without the classifier in both); it is built here with ``pretrained=False``,
so nothing is downloaded. Features: the 1536-d pooled vector, which the reference's
embedding recorder captures. Inputs must be at least 75×75 pixels.

timm is an optional extra: ``pip install deep-core-noisy[timm]``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DeepCoreError
from .base import FeatureNet

MIN_SIDE = 75


class InceptionResNetV2(FeatureNet):
    def __init__(self, num_classes: int, in_channels: int = 3, image_side: int = 299) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise DeepCoreError(
                "InceptionResNetV2 needs timm: pip install deep-core-noisy[timm]"
            ) from None
        if image_side < MIN_SIDE:
            raise DeepCoreError(
                f"InceptionResNetV2 needs images of at least {MIN_SIDE}×{MIN_SIDE} pixels, "
                f"got {image_side}"
            )
        # num_classes=0: timm returns the pooled features; the classifier is ours.
        self.body = timm.create_model(
            "inception_resnet_v2", pretrained=False, num_classes=0, in_chans=in_channels
        )
        self.fc = nn.Linear(self.body.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
