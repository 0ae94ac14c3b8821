"""What every network exposes: logits, penultimate features, and its last layer."""

from __future__ import annotations

import torch
from torch import nn


class FeatureNet(nn.Module):
    """A classifier split into ``embed`` (input → penultimate features) and ``fc``.

    Subclasses set ``self.fc`` (an ``nn.Linear``) and implement :meth:`embed`.
    """

    fc: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return int(self.fc.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features in one pass."""
        h = self.embed(x)
        return self.fc(h), h
