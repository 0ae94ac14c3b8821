"""PredSum: how many ensemble members predict the given (noisy) label.

Score
    ``s_i = #{m : argmax_c p_m(x_i) = label_i}`` over ``ensemble`` independently seeded
    warm-up models (0..E), on the clean view; with ``ensemble=1`` it reads ``probs``,
    otherwise the first members of ``member_probs``. The seed experiments pair it with
    EL2N to find mislabeled samples: a low count means the models disagree with the
    label. ``keep="hard"`` (default) keeps the lowest counts (scores ``-s``);
    ``keep="easy"`` keeps the highest (scores ``s``). Ties (there are only E + 1 values)
    are broken by a permutation drawn from the seed (:func:`deep_core.budget.rank`), so
    tied samples are kept in proportion whatever the order of the data.

Reference
    Not in DeepCore or Prune4ReL; the ensemble-agreement count used alongside EL2N to
    flag label errors in the seed experiments of this project.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import WindowStart
from .base import SelectionMethod, register
from .el2n import ensemble_probs, ensemble_signal

Keep = Literal["hard", "easy"]


def pred_sum(stack: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Members of ``stack`` (M, N, C) whose argmax equals ``labels``; float64 (N,)."""
    counts = np.zeros(labels.shape[0], dtype=np.float64)
    for m in range(stack.shape[0]):
        counts += np.argmax(stack[m], axis=1) == labels
    return counts


@register
class PredSum(SelectionMethod):
    """Ensemble agreement with the noisy label; keeps the least agreed-with by default.

    Parameters
    ----------
    ensemble : int, default=1
        Independently seeded warm-up models (1 = the main one).
    keep : {"hard", "easy"}, default="hard"
        ``hard`` keeps the lowest counts (likely mislabeled), ``easy`` the highest.
    balance : bool, default=False
        Equal budgets per (noisy) class.
    window_start : float, default=0.0
        Skip this fraction of the ranking first (window sweeps).

    Protocol: both protocols read the clean view of every member.
    """

    summary = "members predicting the given label (0..E); keeps the lowest (--keep hard|easy)"

    def __init__(
        self,
        *,
        ensemble: Annotated[int, Interval(1)] = 1,
        keep: Keep = "hard",
        balance: bool = False,
        window_start: WindowStart = 0.0,
    ) -> None:
        self.ensemble = ensemble
        self.keep = keep
        self.balance = balance
        self.window_start = float(window_start)

    @property
    def ensemble_size(self) -> int:
        return self.ensemble

    def required_signals(self) -> frozenset[str]:
        return frozenset({ensemble_signal(self.ensemble)})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        counts = pred_sum(ensemble_probs(signals, self.ensemble), signals.labels)
        scores = -counts if self.keep == "hard" else counts
        info = {
            "ensemble": self.ensemble,
            "keep": self.keep,
            "count_histogram": np.bincount(
                counts.astype(np.int64), minlength=self.ensemble + 1
            ).tolist(),
        }
        return self.take(
            signals, scores, fraction, seed=seed, start=self.window_start, info=info
        )
