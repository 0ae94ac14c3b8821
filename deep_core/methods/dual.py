"""DUAL: keep uncertain samples the model does not yet fit, from early training only.

Paper: Cho, Kim, Kim, Kang, Lee, "Lightweight Dataset Pruning without Full Training via
Example Difficulty and Prediction Uncertainty", ICML 2025 (arXiv 2502.06905); code
behaapyy/dual-pruning.

Score
    With ``P[i, k]`` the softmax probability of sample i's (noisy) label in epoch k of the
    warm-up's training pass (``label_probs``) over the first T epochs and a window of
    ``J`` epochs, window k gives the prediction uncertainty ``std(P[i, k : k + J])``
    (``ddof=1``) times the difficulty ``1 - mean(P[i, k : k + J])``; the DUAL score is the
    mean of that product over the ``T - J + 1`` windows. Higher = kept first.

Sampling (``sampling="beta"``, the paper's pruning-ratio-adaptive sampling)
    Instead of the top scores, ``round(fraction * N)`` samples are drawn without
    replacement with probability proportional to ``score(i) * Beta.pdf(mu_i; a, b)``,
    where ``mu_i`` is the mean of ``P[i, :T]``, ``b = C (1 - mu_A)(1 - r ** c_d)``,
    ``a = C + 1 - b``, ``C = 15``, ``r = 1 - fraction`` the pruning ratio, and ``mu_A`` the
    mean ``mu`` of the 10 highest-scoring samples. At high pruning ratios the Beta mass
    moves towards easier samples (larger ``mu``), which the paper finds avoids the
    accuracy collapse of keeping only the hardest ones. The draw is the Efraimidis-Spirakis
    key ``log(u) / weight`` ranked per class when ``balance`` is set (same distribution
    as the authors' ``np.random.choice(..., replace=False, p=...)``); samples of weight 0
    come last, in seeded random order, so the budget is always met.

Reference
    Kept: T as the warm-up's epochs (the authors use the first 30 of 200; ``signal_epoch``
    sets T), ``J = 10``, the sample std, ``C = 15`` and ``c_d = 4`` of the authors' latest
    code (an earlier version had ``r ** (2 + c_d)``). Fixed or left out: their constant
    factor 10 on the std (no effect on the ranking); ``mu`` is clipped to
    ``[1e-6, 1 - 1e-6]`` so the Beta density stays finite when ``b < 1``; the draw is
    seeded (theirs used the global numpy generator).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from ..budget import budget_size, take_top
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import check_seed
from .base import register
from .dyn_unc import TrajectoryEpochs, TrajectoryMethod, Window, window_stats

#: the Beta distribution's concentration and the number of top samples that anchor it
BETA_C = 15.0
ANCHORS = 10
_MU_CLIP = 1e-6


def dual_scores(label_probs: np.ndarray, window: int) -> np.ndarray:
    """Mean over sliding windows of ``std * (1 - mean)`` of the label's probability."""
    out = np.empty(label_probs.shape[0], dtype=np.float64)
    for rows, std, mean in window_stats(label_probs, window):
        out[rows] = (std * (1.0 - mean)).mean(axis=1)
    return out


def beta_weights(
    scores: np.ndarray, mean_probs: np.ndarray, *, fraction: float, c_d: float
) -> tuple[np.ndarray, float, float]:
    """Sampling weights ``score * Beta.pdf(mean prob; a, b)`` and the Beta's ``(a, b)``."""
    from scipy.stats import beta as beta_dist  # scipy loads only when sampling

    r = 1.0 - fraction
    top = np.argsort(-scores, kind="stable")[:ANCHORS]
    anchor = float(np.mean(mean_probs[top])) if top.size else 0.0
    b = BETA_C * (1.0 - anchor) * (1.0 - r**c_d)
    a = BETA_C + 1.0 - b
    mu = np.clip(mean_probs, _MU_CLIP, 1.0 - _MU_CLIP)
    return scores * beta_dist.pdf(mu, a, b), a, b


@register
class DUAL(TrajectoryMethod):
    """Highest DUAL score (uncertainty x difficulty over early windows), or its Beta sampling.

    Parameters
    ----------
    window : int, optional
        Window length J in epochs; None: the paper's 10, or every recorded epoch (one
        window) when fewer were recorded. An explicit J needs at least J epochs.
    signal_epoch : int, optional
        T: read the first this many warm-up epochs; None: all of them.
    sampling : {"top", "beta"}, default="top"
        Keep the highest scores, or draw with the paper's pruning-ratio-adaptive Beta
        weights (meant for high pruning ratios).
    c_d : float, default=4.0
        Exponent of the pruning ratio in the Beta's shape (``sampling="beta"``).
    balance : bool, default=False
        Equal budgets per (noisy) class.

    Protocol: both protocols read the warm-up's training passes (augmented), as the paper.
    """

    summary = (
        "highest std x (1 - mean) of the label's probability over early windows "
        "(--sampling beta: the paper's Beta sampling)"
    )

    def __init__(
        self,
        *,
        window: Window | None = None,
        signal_epoch: TrajectoryEpochs | None = None,
        sampling: Literal["top", "beta"] = "top",
        c_d: Annotated[float, Interval(0, lo_open=True)] = 4.0,
        balance: bool = False,
    ) -> None:
        self.window = window
        self.signal_epoch = signal_epoch
        self.sampling = sampling
        self.c_d = float(c_d)
        self.balance = balance

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        p, window = self._trajectory(signals)
        scores = dual_scores(p, window)
        info = {"epochs": int(p.shape[1]), "window": window, "sampling": self.sampling}
        if self.sampling == "top":
            return self.take(signals, scores, fraction, seed=seed, info=info)
        mean_probs = p.mean(axis=1, dtype=np.float64)
        weights, a, b = beta_weights(scores, mean_probs, fraction=fraction, c_d=self.c_d)
        u = np.random.default_rng([check_seed(seed), 2025]).random(len(signals))
        keys = np.full(len(signals), -np.inf)
        pos = weights > 0
        keys[pos] = np.log(u[pos]) / weights[pos]
        idx = take_top(
            keys,
            budget_size(len(signals), fraction),
            labels=signals.labels,
            balance=self.balance,
            num_classes=signals.num_classes,
            seed=check_seed(seed),
        )
        info.update(beta_a=a, beta_b=b)
        return Subset(indices=idx, scores=scores, info=info)
