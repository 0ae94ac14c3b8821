"""Dyn-Unc: keep the samples whose prediction of their label fluctuates most in training.

Paper: He, Yang, Yu, Zhao, "Large-scale Dataset Pruning with Dynamic Uncertainty",
CVPR 2024 Workshops (arXiv 2306.05175); code BAAI-DCAI/Dataset-Pruning.

Score
    With ``P[i, k]`` the softmax probability of sample i's (noisy) label in epoch k of the
    warm-up's training pass (``label_probs``, (N, E)) and a window of ``J`` epochs, the
    uncertainty of window k is the standard deviation ``U_k(i) = std(P[i, k : k + J])``
    (sample std, ``ddof=1``, as ``torch.std`` in the authors' code), and the score is
    its mean over the ``E - J + 1`` windows. Higher = kept first (the paper keeps the
    most uncertain samples).

Reference
    Kept: the per-epoch label probability from training, the window length (``J = 10``;
    a warm-up of fewer epochs gives one window over all of them unless ``window`` is
    set), the sample std. Not kept: the authors' ImageNet script stops one window early (its
    loop skips the window that ends at the last epoch) and shifts a sample's history only
    in epochs where its recorded probability is non-zero; here every one of the
    ``E - J + 1`` windows of the paper's formula counts. Its constant factor 10 does not
    change the ranking and is left out. The paper reads the whole training run; here the
    trajectory is the warm-up's (``-se`` epochs; ``signal_epoch`` reads its first epochs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import numpy as np

from ..errors import DeepCoreError
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import row_blocks
from .base import SelectionMethod, register

#: the papers' window length J (Dyn-Unc and DUAL)
DEFAULT_WINDOW = 10
#: the ``window`` option of DynUnc and DUAL: at least 2 epochs (a standard deviation)
Window = Annotated[int, Interval(2)]
#: the ``signal_epoch`` option of DynUnc and DUAL: read the first K >= 1 warm-up epochs
TrajectoryEpochs = Annotated[int, Interval(1)]


def trajectory(
    signals: Signals, window: int | None, signal_epoch: int | None, *, who: str
) -> tuple[np.ndarray, int]:
    """``label_probs`` up to ``signal_epoch`` (all epochs if None) and the window length.

    ``window=None`` is :data:`DEFAULT_WINDOW`, or every epoch read when there are fewer.
    """
    p = signals.label_probs
    epochs = p.shape[1] if signal_epoch is None else signal_epoch
    if signal_epoch is not None and signal_epoch > p.shape[1]:
        raise DeepCoreError(
            f"{who}: signal_epoch={signal_epoch} but the warm-up recorded {p.shape[1]} epochs"
        )
    if window is None:
        window = min(DEFAULT_WINDOW, epochs)
    if epochs < max(window, 2):
        raise DeepCoreError(
            f"{who}: a window of {window} epochs needs at least {max(window, 2)} recorded "
            f"epochs, got {epochs}; lower --window or raise -se"
        )
    return p[:, :epochs], window


def window_stats(
    label_probs: np.ndarray, window: int
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Row blocks of the per-window std (ddof=1) and mean, each (rows, E - J + 1), float64."""
    n, e = label_probs.shape
    for rows in row_blocks(n, e * window):
        p = np.asarray(label_probs[rows], dtype=np.float64)
        views = np.lib.stride_tricks.sliding_window_view(p, window, axis=1)
        yield rows, views.std(axis=2, ddof=1), views.mean(axis=2)


def dyn_unc_scores(label_probs: np.ndarray, window: int) -> np.ndarray:
    """Mean over sliding windows of the std of the label's probability, per row."""
    out = np.empty(label_probs.shape[0], dtype=np.float64)
    for rows, std, _ in window_stats(label_probs, window):
        out[rows] = std.mean(axis=1)
    return out


class TrajectoryMethod(SelectionMethod):
    """What the scores of the warm-up's label-probability trajectory share (DynUnc, DUAL):
    the ``window`` and ``signal_epoch`` options, the ``label_probs`` signal, the warm-up
    they need, and reading the trajectory."""

    window: int | None
    signal_epoch: int | None

    def min_warmup_epochs(self) -> int:
        # a window of J epochs (at least 2 for a standard deviation); J = 10 by default,
        # or every recorded epoch when fewer: so at least 2
        return max(self.window or 2, 2)

    def required_signals(self) -> frozenset[str]:
        return frozenset({"label_probs"})

    def _trajectory(self, signals: Signals) -> tuple[np.ndarray, int]:
        return trajectory(signals, self.window, self.signal_epoch, who=type(self).__name__)


@register
class DynUnc(TrajectoryMethod):
    """Highest dynamic uncertainty: std of the label's probability over sliding windows.

    Parameters
    ----------
    window : int, optional
        Window length J in epochs; None: the paper's 10, or every recorded epoch (one
        window) when fewer were recorded. An explicit J needs at least J epochs.
    signal_epoch : int, optional
        Read only the first this many warm-up epochs; None: all of them.
    balance : bool, default=False
        Equal budgets per (noisy) class.

    Protocol: both protocols read the warm-up's training passes (augmented), as the paper.
    """

    summary = "most uncertain: mean over sliding windows of the std of the label's probability"

    def __init__(
        self,
        *,
        window: Window | None = None,
        signal_epoch: TrajectoryEpochs | None = None,
        balance: bool = False,
    ) -> None:
        self.window = window
        self.signal_epoch = signal_epoch
        self.balance = balance

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        p, window = self._trajectory(signals)
        scores = dyn_unc_scores(p, window)
        info = {"epochs": int(p.shape[1]), "window": window}
        return self.take(signals, scores, fraction, seed=seed, info=info)

