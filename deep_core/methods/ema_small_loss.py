"""EMASmallLoss: each epoch, the samples whose loss *history* is smallest (noise-robust).

Mislabeled samples are learned late: while the loss of the clean samples falls, theirs
stays high (the small-loss criterion of Co-teaching, Han et al., NeurIPS 2018). A single
epoch's loss is noisy (augmentation, the learning rate), so the score here is the
*dynamic instance hardness* of Zhou, Wang & Bilmes, "Curriculum Learning by Dynamic
Instance Hardness" (NeurIPS 2020): an exponential moving average of each sample's
training loss, updated only when the sample is trained::

    r_i ← gamma · loss_i + (1 − gamma) · r_i      (i trained this epoch)

Their DIHCL keeps the *hardest* samples; for noisy labels the same score is used in the
small-loss direction, as the clean-sample detection phase of "Robust Curriculum
Learning: from clean label detection to noisy label self-correction" (Zhou, Wang &
Bilmes, ICLR 2021), without that paper's later self-correction phase. Each epoch:

* the first ``⌈1/fraction⌉`` epochs train RS2's rounds (:mod:`.rs2`), so every sample
  has a loss before any is ranked (DIHCL's warm start, at the subset's compute);
* afterwards the budget ``round(fraction · N)`` is ``(1 − explore)`` samples of the
  smallest ``r`` plus ``explore`` drawn at random from the rest, so the score of a
  sample left out can recover (DIHCL's exploration), per class under the shared
  class budgets when ``balance``.

Samples never trained keep ``r = inf`` until they are. Draws of epoch ``e`` use
``numpy.random.default_rng([seed, 7, e])``; ``r`` and the warm-start rounds are the
method's state (kept in the training checkpoint).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np

from ..budget import class_budgets
from ..options import Interval
from .base import DynamicMethod, register
from .rs2 import RS2


@register
class EMASmallLoss(DynamicMethod):
    """Train each epoch on the smallest moving-average losses, with random exploration.

    Parameters
    ----------
    ema_gamma : float, default=0.5
        Weight of the newest loss in the moving average (DIH's gamma; chosen here).
    explore : float, default=0.1
        Share of each epoch's budget drawn at random from the samples not ranked in.
    balance : bool, default=False
        Equal per-class budgets (noisy labels), smallest ``r`` within each class.
    """

    summary = "smallest moving-average training loss each epoch + exploration (noise-robust)"

    def __init__(
        self,
        *,
        ema_gamma: Annotated[float, Interval(0, 1, lo_open=True)] = 0.5,
        explore: Annotated[float, Interval(0, 1)] = 0.1,
        balance: bool = False,
    ) -> None:
        self.ema_gamma = float(ema_gamma)
        self.explore = float(explore)
        self.balance = balance

    def start(self, **kwargs: Any) -> None:
        super().start(**kwargs)
        self.warm = RS2(balance=self.balance)
        self.warm.start(**kwargs)
        self.warm_epochs = math.ceil(1.0 / self.fraction)
        self.ema = np.full(self.n, np.inf, dtype=np.float64)
        self._last: tuple[int, np.ndarray] | None = None

    def _ranked(self, pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        n_explore = int(round(self.explore * size))
        order = pool[np.lexsort((rng.random(pool.size), self.ema[pool]))]  # random ties
        best = order[: size - n_explore]
        rest = order[size - n_explore :]
        return np.concatenate([best, rng.choice(rest, n_explore, replace=False)])

    def epoch_subset(self, epoch: int) -> np.ndarray:
        if self._last is not None and self._last[0] == epoch:
            return self._last[1]
        if epoch < self.warm_epochs:
            subset = self.warm.epoch_subset(epoch)
        else:
            rng = np.random.default_rng([self.seed, 7, epoch])
            if self.balance:
                budgets = class_budgets(self.labels, self.budget, self.num_classes)
                parts = [
                    self._ranked(np.flatnonzero(self.labels == c), int(b), rng)
                    for c, b in enumerate(budgets)
                ]
                subset = np.sort(np.concatenate(parts))
            else:
                subset = np.sort(self._ranked(np.arange(self.n), self.budget, rng))
        self._last = (epoch, subset)
        return subset

    def observe(self, epoch: int, positions: np.ndarray, losses: np.ndarray) -> None:
        ok = np.isfinite(losses)
        pos, loss = positions[ok], losses[ok].astype(np.float64)
        old = self.ema[pos]
        g = self.ema_gamma
        self.ema[pos] = np.where(np.isinf(old), loss, g * loss + (1 - g) * old)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.copy(), "warm": self.warm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = np.asarray(state["ema"], dtype=np.float64).copy()
        self.warm.load_state_dict(state["warm"])
        self._last = None
