"""InfoBatch: per-epoch soft pruning with loss rescaling (Qin et al., ICLR 2024).

"InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning". Each sample's
score is its latest training loss (every sample starts at 3, so nothing is pruned in the
first epoch). At the start of each epoch the *well-learned* samples, those whose score
is below the mean score, are pruned at random with probability ``ratio``: a random
``⌊keep · |well-learned|⌋`` of them are kept (``keep = clip(1 − ratio, 0.1, 1)``) and
their losses are multiplied by ``1 / keep``, which keeps the expected gradient; every
other sample is trained with weight 1. The last ``(1 − delta)`` share of the epochs
(*annealing*) trains on every sample with weight 1.

Faithful to NUS-HPC-AI-Lab/InfoBatch (``infobatch/infobatch.py``): the score update with
the unweighted per-sample loss of the training forward pass, the mean threshold, the
``int(keep · n)`` draw without replacement, the clip of ``keep`` to [0.1, 1], and the
epoch test: the reference's sampler counts ``iterations`` from 1 for the first epoch
(its constructor already calls ``reset`` once) and prunes while
``iterations <= epochs · delta``, so epoch ``e`` (from 0) is pruned when
``e + 1 <= epochs · delta``. Deviations:

* the draw of epoch ``e`` is ``numpy.random.default_rng([seed, e])`` instead of the
  global ``np.random.seed(iterations)``;
* the reference resets the weights to 1 for annealing only when ``epochs · delta`` is an
  integer (``iterations == stop_prune + 1``); otherwise the last pruned epoch's
  ``1 / keep`` weights stay on in annealing. Here annealing always has weight 1.
* ``ratio`` defaults to ``1 − fraction`` (the run's ``--fraction``; the reference's
  default is 0.5): InfoBatch's real share of samples seen is below ``1`` only by
  ``ratio · |well-learned| / N``, and the run reports it (``seen_fraction``).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from ..options import Interval
from .base import DynamicMethod, register

#: the reference's initial score of every sample
INITIAL_SCORE = 3.0


def infobatch_prune(
    scores: np.ndarray, keep: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's pruning: ``(sorted kept positions, kept well-learned positions)``.

    The kept well-learned ones are trained with loss weight ``1 / keep``.
    """
    well = scores < scores.mean()
    well_idx = np.flatnonzero(well)
    chosen = rng.choice(well_idx, int(keep * well_idx.size), replace=False)
    kept = np.sort(np.concatenate([np.flatnonzero(~well), chosen]))
    return kept, np.sort(chosen)


@register
class InfoBatch(DynamicMethod):
    """Soft pruning of below-mean-loss samples with ``1/keep`` loss rescaling, then annealing.

    Parameters
    ----------
    ratio : float, optional
        Probability of pruning a well-learned sample (the reference's ``prune_ratio``,
        default there 0.5); default ``1 − fraction``.
    delta : float, default=0.875
        Share of the epochs with pruning; the rest anneal on the full data.
    """

    summary = "prune below-mean-loss samples at random, rescale the rest, anneal (ICLR'24)"

    def __init__(
        self,
        *,
        ratio: Annotated[float, Interval(0, 1, hi_open=True)] | None = None,
        delta: Annotated[float, Interval(0, 1)] = 0.875,
    ) -> None:
        self.ratio = ratio
        self.delta = delta

    def start(self, **kwargs: Any) -> None:
        super().start(**kwargs)
        ratio = 1.0 - self.fraction if self.ratio is None else self.ratio
        self.keep = min(1.0, max(0.1, 1.0 - ratio))
        self.scores = np.full(self.n, INITIAL_SCORE, dtype=np.float32)
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None

    def pruning(self, epoch: int) -> bool:
        """True for an epoch with pruning (the reference's ``iterations <= stop_prune``)."""
        return epoch + 1 <= self.epochs * self.delta

    def _draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._last is None or self._last[0] != epoch:
            if self.pruning(epoch):
                rng = np.random.default_rng([self.seed, epoch])
                kept, up = infobatch_prune(self.scores, self.keep, rng)
            else:
                kept, up = np.arange(self.n, dtype=np.int64), np.empty(0, dtype=np.int64)
            self._last = (epoch, kept, up)
        return self._last[1], self._last[2]

    def epoch_subset(self, epoch: int) -> np.ndarray:
        return self._draw(epoch)[0]

    def loss_weights(self, epoch: int) -> tuple[np.ndarray, np.ndarray] | None:
        up = self._draw(epoch)[1]
        if up.size == 0:
            return None
        return up, np.full(up.size, 1.0 / self.keep)

    def observe(self, epoch: int, positions: np.ndarray, losses: np.ndarray) -> None:
        ok = np.isfinite(losses)
        self.scores[positions[ok]] = losses[ok]

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = np.asarray(state["scores"], dtype=np.float32).copy()
        self._last = None
