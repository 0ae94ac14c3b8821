"""SmallLoss: keep the samples the warm-up model fits best (the small-loss trick).

Score
    ``log probs[i, label_i]`` of the final warm-up model on the clean (un-augmented)
    view, i.e. minus the cross-entropy loss against the noisy label. Higher (smaller
    loss) = kept first: small-loss samples are likely correctly labeled (Han et al. 2018,
    Co-teaching; the small-loss baseline of Park et al. 2023, Prune4ReL).

Reference (Prune4ReL ``SmallLoss``)
    Kept: the loss of the final warm-up model on the ``eval_train`` (clean) view, lowest
    first. Fixed: ``balance=True`` printed "No balance version yet" and selected
    globally; here it uses the shared per-class budgets. Probabilities of exactly 0 are
    clipped to the smallest positive float so the score stays finite.
"""

from __future__ import annotations

import numpy as np

from ..signals import Signals
from ..subset import Subset
from ._common import WindowStart
from .base import SelectionMethod, register

_TINY = np.finfo(np.float64).tiny


def label_log_prob(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log probs[i, labels[i]]`` in float64 (minus the cross-entropy loss)."""
    p = probs[np.arange(labels.shape[0]), labels].astype(np.float64)
    return np.log(np.maximum(p, _TINY))


@register
class SmallLoss(SelectionMethod):
    """Lowest clean-view loss of the final warm-up model against the noisy label.

    Parameters
    ----------
    balance : bool, default=False
        Equal budgets per (noisy) class.
    window_start : float, default=0.0
        Skip this fraction of the ranking first (easy-to-hard window sweeps).

    Protocol: both protocols read the clean view (the reference's ``eval_train``).
    """

    summary = "lowest warm-up loss on the clean view (likely clean samples)"

    def __init__(self, *, balance: bool = False, window_start: WindowStart = 0.0) -> None:
        self.balance = balance
        self.window_start = float(window_start)

    def required_signals(self) -> frozenset[str]:
        return frozenset({"probs"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        scores = label_log_prob(signals.probs, signals.labels)
        subset = self.take(signals, scores, fraction, seed=seed, start=self.window_start)
        subset.info["mean_loss"] = float(-scores.mean()) if scores.size else 0.0
        subset.info["mean_loss_kept"] = (
            float(-scores[subset.indices].mean()) if len(subset) else 0.0
        )
        return subset
