"""RS2: a fresh random subset every epoch (Okanovic et al., ICLR 2024).

"Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning": instead of
pruning once, each epoch trains on ``round(fraction · N)`` samples drawn at random. RS2
*without replacement* (the paper's main variant) draws the epochs' subsets without
replacement *across* epochs: a random permutation of the data is cut into consecutive
epoch subsets, so every sample is trained once per round of ``⌈1 / fraction⌉`` epochs
before any sample is trained twice; then a new permutation starts the next round.
``replacement=True`` is the paper's other variant: an independent draw each epoch.

Round boundaries: when fewer than ``fraction · N`` samples of a round are left, the epoch
takes them all and fills up with the first samples of the next round's permutation that
are not among them; the leftover samples close the next round, so every round is a
permutation of all samples and no epoch trains a sample twice.

``balance=True`` cuts each class (noisy label) by its own permutation under the shared
equal-share class budgets (:func:`deep_core.budget.class_budgets`), so each epoch has the
same class counts; without it one permutation covers all samples.

Determinism: the permutation of round ``r`` of class ``c`` (``c = -1`` unbalanced) is
``numpy.random.default_rng([seed, c + 1, r])``; the open rounds are the method's state
(kept in the training checkpoint).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..budget import class_budgets
from .base import DynamicMethod, register


def next_round_take(
    queue: np.ndarray, pool: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Take ``size`` samples of a round's ``queue``; start a new round if it runs short.

    Returns ``(taken, queue left, new round started)``.
    """
    take = queue[:size]
    if take.size == size:
        return take, queue[size:], False
    perm = pool[rng.permutation(pool.size)]
    fresh = perm[~np.isin(perm, take)]
    need = size - take.size
    return np.concatenate([take, fresh[:need]]), np.concatenate([fresh[need:], take]), True


@register
class RS2(DynamicMethod):
    """Repeated random sampling: a new random subset of ``fraction · N`` every epoch.

    Parameters
    ----------
    replacement : bool, default=False
        False: without replacement across epochs (every sample once per round of
        ``⌈1/fraction⌉`` epochs, the paper's main variant); True: an independent draw
        each epoch.
    balance : bool, default=False
        Equal per-class budgets each epoch (a permutation per class).
    """

    summary = "a fresh random subset each epoch, without replacement across epochs (ICLR'24)"
    needs_losses = False

    def __init__(self, *, replacement: bool = False, balance: bool = False) -> None:
        self.replacement = replacement
        self.balance = balance

    def start(self, **kwargs: Any) -> None:
        super().start(**kwargs)
        if self.balance:
            sizes = class_budgets(self.labels, self.budget, self.num_classes)
            self.pools = [np.flatnonzero(self.labels == c) for c in range(self.num_classes)]
        else:
            sizes = np.array([self.budget])
            self.pools = [np.arange(self.n, dtype=np.int64)]
        self.sizes = [int(s) for s in sizes]
        self.queues = [np.empty(0, dtype=np.int64) for _ in self.pools]
        self.rounds = [-1 for _ in self.pools]
        self.next_epoch = 0
        self._last: tuple[int, np.ndarray] | None = None

    def _rng(self, stream: int, r: int) -> np.random.Generator:
        c = stream if self.balance else -1
        return np.random.default_rng([self.seed, c + 1, r])

    def epoch_subset(self, epoch: int) -> np.ndarray:
        if self._last is not None and self._last[0] == epoch:
            return self._last[1]
        if epoch != self.next_epoch:
            raise RuntimeError(f"RS2 asked for epoch {epoch}, expected {self.next_epoch}")
        parts = []
        for k, (pool, size) in enumerate(zip(self.pools, self.sizes, strict=True)):
            if self.replacement:
                rng = self._rng(k, epoch)
                parts.append(pool[rng.choice(pool.size, size, replace=False)])
                continue
            rng = self._rng(k, self.rounds[k] + 1)
            take, self.queues[k], new = next_round_take(self.queues[k], pool, size, rng)
            self.rounds[k] += int(new)
            parts.append(take)
        subset = np.sort(np.concatenate(parts))
        self.next_epoch = epoch + 1
        self._last = (epoch, subset)
        return subset

    def state_dict(self) -> dict[str, Any]:
        return {
            "queues": [q.copy() for q in self.queues],
            "rounds": list(self.rounds),
            "next_epoch": self.next_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queues = [np.asarray(q, dtype=np.int64) for q in state["queues"]]
        self.rounds = [int(r) for r in state["rounds"]]
        self.next_epoch = int(state["next_epoch"])
        self._last = None
