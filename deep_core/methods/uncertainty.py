"""Uncertainty: keep the samples the warm-up model is least sure about.

Scores (higher = more uncertain = kept first), from the final warm-up model's softmax
``p`` on the clean view:

- ``LeastConfidence``: ``1 - max_c p_c``
- ``Margin``: ``-(p_(1) - p_(2))``, minus the gap between the two largest probabilities
- ``Entropy``: ``-sum_c p_c log p_c`` (with ``0 log 0 = 0``)

Paper: Coleman et al. 2020, "Selection via Proxy" (the uncertainty baselines in DeepCore,
Guo et al. 2022).

Reference (Prune4ReL / DeepCore ``Uncertainty``)
    Kept: the most uncertain are kept (ascending sort of a confidence). Fixed:
    ``LeastConfidence`` ranked by the largest raw *logit*, which is not a confidence
    (logits shift freely per sample); here it is the largest softmax probability.
    ``Entropy`` used ``log(p + 1e-6)``; here the exact entropy. Balanced mode kept each
    class's proportion; here the shared equal-share class budgets apply.
    The reference CLI default ``--uncertainty Margin`` is kept.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..signals import Signals
from ..subset import Subset
from ._common import WindowStart, row_blocks
from .base import SelectionMethod, register

UncertaintyScore = Literal["LeastConfidence", "Margin", "Entropy"]


def uncertainty_scores(probs: np.ndarray, kind: str) -> np.ndarray:
    """Per-sample uncertainty of softmax rows ``probs`` (N, C); higher = more uncertain.

    Parameters
    ----------
    probs : ndarray of float, shape (N, C)
    kind : {"LeastConfidence", "Margin", "Entropy"}

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    from scipy.special import entr  # ~0.5 s to import: only where it is used

    n, c = probs.shape
    out = np.empty(n, dtype=np.float64)
    for rows in row_blocks(n, c):
        p = np.asarray(probs[rows], dtype=np.float64)
        if kind == "LeastConfidence":
            out[rows] = 1.0 - p.max(axis=1)
        elif kind == "Margin":
            if c < 2:
                out[rows] = -p[:, 0]
            else:
                top2 = np.partition(p, c - 2, axis=1)[:, c - 2 :]
                out[rows] = -(top2[:, 1] - top2[:, 0])
        else:
            out[rows] = entr(p).sum(axis=1)
    return out


@register
class Uncertainty(SelectionMethod):
    """Most uncertain samples under the final warm-up model.

    Parameters
    ----------
    uncertainty : {"LeastConfidence", "Margin", "Entropy"}, default="Margin"
        The uncertainty score.
    balance : bool, default=False
        Equal budgets per (noisy) class.
    window_start : float, default=0.0
        Skip this fraction of the ranking first (window sweeps).

    Protocol: both protocols read the clean view (the reference's ``eval_train``).
    """

    summary = (
        "most uncertain under the warm-up model (--uncertainty LeastConfidence|Margin|Entropy)"
    )

    def __init__(
        self,
        *,
        uncertainty: UncertaintyScore = "Margin",
        balance: bool = False,
        window_start: WindowStart = 0.0,
    ) -> None:
        self.uncertainty = uncertainty
        self.balance = balance
        self.window_start = float(window_start)

    def required_signals(self) -> frozenset[str]:
        return frozenset({"probs"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        scores = uncertainty_scores(signals.probs, self.uncertainty)
        return self.take(
            signals,
            scores,
            fraction,
            seed=seed,
            start=self.window_start,
            info={"uncertainty": self.uncertainty},
        )
