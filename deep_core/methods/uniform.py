"""Uniform: a random subset, the baseline every pruning method must beat.

Score
    A random priority: the position of each sample in a permutation drawn from
    ``numpy.random.RandomState(seed)``, reversed so that the first drawn sample has the
    highest score. Higher = kept first; the subsets of one seed are nested across
    fractions.

Reference (Prune4ReL / DeepCore ``Uniform``)
    Kept: without balance the indices equal the reference's
    ``np.random.seed(seed); np.random.choice(N, round(f * N), replace=False)``
    (``choice`` without replacement is the first ``k`` entries of ``permutation(N)``),
    drawn from a local ``RandomState`` instead of the global one.
    Fixed: the reference's balanced mode crashed (it indexed with a tensor mask) and kept
    each class's proportion; here ``balance=True`` takes the same random priority within
    each class under the shared equal-share class budgets (:mod:`deep_core.budget`).
    The reference's ``replace=True`` option (sampling with replacement) is left out: a
    subset has unique indices.
"""

from __future__ import annotations

import numpy as np

from ..signals import Signals
from ..subset import Subset
from ._common import check_seed
from .base import SelectionMethod, register


def uniform_scores(n: int, seed: int) -> np.ndarray:
    """Random priorities: ``n - position`` in ``RandomState(seed).permutation(n)``."""
    perm = np.random.RandomState(seed).permutation(n)
    scores = np.empty(n, dtype=np.float64)
    scores[perm] = np.arange(n, 0, -1, dtype=np.float64)
    return scores


@register
class Uniform(SelectionMethod):
    """Uniformly random subset, optionally with equal per-class budgets.

    Parameters
    ----------
    balance : bool, default=False
        Equal budgets per (noisy) class, random within each class.

    Protocol: reads no warm-up signal (labels only).
    """

    summary = "random subset (reference-identical draws for a seed); optional class balance"

    def __init__(self, *, balance: bool = False) -> None:
        self.balance = balance

    def required_signals(self) -> frozenset[str]:
        return frozenset()

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        scores = uniform_scores(len(signals), check_seed(seed))
        return self.take(signals, scores, fraction, seed=seed, info={"seed": int(seed)})
