"""Forgetting: keep the samples whose predictions flip most during warm-up.

Paper: Toneva et al. 2019, "An Empirical Study of Example Forgetting during Deep Neural
Network Learning".

Score
    The number of forgetting events: epochs ``t`` at which the prediction was correct
    (equal to the noisy label) at ``t - 1`` and wrong at ``t``, counted from the
    per-epoch ``correct`` record of the warm-up. A sample never predicted correctly in
    any recorded epoch gets ``E`` (the number of epochs), more than any sample can reach
    (at most ``E // 2`` events). With ``signal_epoch=K`` only the first K warm-up epochs
    count (the record up to the model of epoch K; E becomes K). Higher = kept first.

Reference (Prune4ReL / DeepCore ``Forgetting``)
    Kept: events counted per training step on the augmented view; a sample starts as
    "not learned" so the first observation is never an event; most forgotten first.
    Fixed: DeepCore gives never-learned samples 0 events, ranking them with the
    unforgettable ones; Toneva et al. treat them as forgotten infinitely often, as here.
    The reference forced per-class proportional selection whatever ``--balance`` said
    (its class default was ``balance=True``); here ``balance`` is honoured with the
    shared equal-share budgets. Ties (counts take few values) are broken by a permutation
    drawn from the seed (:func:`deep_core.budget.rank`); the reference's reversed argsort
    sent them to the higher index, which favours whatever comes last in the data.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..errors import DeepCoreError
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import WindowStart, row_blocks
from .base import SelectionMethod, register


def forgetting_counts(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per sample from a (N, E) boolean record; never learned -> E.

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    n, e = correct.shape
    events = np.empty(n, dtype=np.float64)
    for rows in row_blocks(n, e, values=1 << 24):
        c = np.asarray(correct[rows], dtype=bool)
        counts = (c[:, :-1] & ~c[:, 1:]).sum(axis=1)
        events[rows] = np.where(c.any(axis=1), counts, e)
    return events


@register
class Forgetting(SelectionMethod):
    """Most forgotten samples (never-learned first, then by forgetting events).

    Parameters
    ----------
    balance : bool, default=False
        Equal budgets per (noisy) class.
    window_start : float, default=0.0
        Skip this fraction of the ranking first (window sweeps).
    signal_epoch : int, optional
        Count the events of the first this many warm-up epochs (at least 1, at most
        ``-se``); None: every warm-up epoch.

    Protocol: both protocols read the warm-up's own training passes (augmented), as the
    reference.
    """

    summary = "most forgetting events during warm-up; never-learned count as most forgotten"

    def __init__(
        self,
        *,
        balance: bool = False,
        window_start: WindowStart = 0.0,
        signal_epoch: Annotated[int, Interval(1)] | None = None,
    ) -> None:
        self.balance = balance
        self.window_start = float(window_start)
        self.signal_epoch = signal_epoch

    def required_signals(self) -> frozenset[str]:
        return frozenset({"correct"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        correct = signals.correct
        if self.signal_epoch is not None:
            if self.signal_epoch > correct.shape[1]:
                raise DeepCoreError(
                    f"signal_epoch={self.signal_epoch} but the warm-up recorded "
                    f"{correct.shape[1]} epochs"
                )
            correct = correct[:, : self.signal_epoch]
        scores = forgetting_counts(correct)
        never = int((scores == correct.shape[1]).sum()) if correct.shape[1] else len(signals)
        info = {
            "epochs": int(correct.shape[1]),
            "never_learned": never,
            "unforgettable": int((scores == 0).sum()),
        }
        return self.take(
            signals, scores, fraction, seed=seed, start=self.window_start, info=info
        )
