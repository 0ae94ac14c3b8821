"""GraNd: keep the samples with the largest expected gradient norm early in training.

Paper: Paul et al. 2021, "Deep Learning on a Data Diet: Finding Important Examples Early
in Training" (GraNd score).

Score
    The mean over ``repeat`` independently initialised warm-up models of the per-sample
    norm of the loss gradient with respect to the last layer (weights and bias), as the
    recorder stores it in ``grad_norms`` (M, N); the first ``repeat`` members are used.
    With ``signal_epoch=K`` each member's model after K warm-up epochs is read instead
    (``snapshot_grad_norms[:, :, K]``; K = 0 is the initialisation, where the paper
    defines GraNd). Higher = kept first.

Reference (Prune4ReL / DeepCore ``GraNd``)
    Kept: the last-layer gradient (bias gradient ``p - onehot`` concatenated with its
    outer product with the penultimate embedding), averaged over ``--repeat`` runs,
    highest first; the reference CLI default ``--repeat 1``. Fixed: the reference took
    the gradient of the batch-*mean* loss, scaling every norm by 1/batch size (and the
    last, smaller batch differently); the recorder stores the unscaled per-sample norm.
    Its re-seeding from the wall clock between repeats made runs irreproducible; here
    member ``m`` has its own derived seed. Per-class selection uses the shared budgets.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import WindowStart, members
from .base import SelectionMethod, register
from .el2n import snapshot_scores


def grand_scores(grad_norms: np.ndarray, repeat: int) -> np.ndarray:
    """Mean of the first ``repeat`` rows of ``grad_norms`` (M, N), in float64."""
    return np.asarray(grad_norms[:repeat], dtype=np.float64).mean(axis=0)


@register
class GraNd(SelectionMethod):
    """Highest expected last-layer gradient norm over ``repeat`` warm-up models.

    Parameters
    ----------
    repeat : int, default=1
        Independently initialised warm-up models to average over (the ensemble size).
    balance : bool, default=False
        Equal budgets per (noisy) class.
    window_start : float, default=0.0
        Skip this fraction of the ranking first (window sweeps).
    signal_epoch : int, optional
        Read the models after this many warm-up epochs (0: at initialisation, as Paul et
        al.; at most ``-se``); None: the final warm-up models (the reference).

    Protocol: both protocols read last-layer gradients on the clean view (the reference's
    ``eval_train``).
    """

    summary = "highest last-layer gradient norm, mean over --repeat warm-up models"

    def __init__(
        self,
        *,
        repeat: Annotated[int, Interval(1)] = 1,
        balance: bool = False,
        window_start: WindowStart = 0.0,
        signal_epoch: Annotated[int, Interval(0)] | None = None,
    ) -> None:
        self.repeat = repeat
        self.balance = balance
        self.window_start = float(window_start)
        self.signal_epoch = signal_epoch

    @property
    def ensemble_size(self) -> int:
        return self.repeat

    def required_signals(self) -> frozenset[str]:
        return frozenset({"grad_norms" if self.signal_epoch is None else "snapshot_grad_norms"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        if self.signal_epoch is None:
            g = signals.grad_norms
            members("grad_norms", g.shape[0], self.repeat, option="repeat")
            scores = grand_scores(g, self.repeat)
        else:
            g = signals.snapshot_grad_norms
            members("snapshot_grad_norms", g.shape[0], self.repeat, option="repeat")
            scores = snapshot_scores(g, self.repeat, self.signal_epoch)
        return self.take(
            signals,
            scores,
            fraction,
            seed=seed,
            start=self.window_start,
            info={"repeat": self.repeat, "signal_epoch": self.signal_epoch},
        )
