"""EL2N: keep the samples with the largest expected error L2 norm.

Paper: Paul et al. 2021, "Deep Learning on a Data Diet: Finding Important Examples Early
in Training" (EL2N score).

Score
    ``mean_m || softmax_m(x_i) - onehot(label_i) ||_2`` over ``ensemble`` independently
    seeded warm-up models, against the noisy label, on the clean view. With
    ``ensemble=1`` it reads ``probs`` (the main warm-up model), otherwise the first
    ``ensemble`` members of ``member_probs`` (M, N, C). With ``signal_epoch=K`` it reads
    each member's model after K warm-up epochs instead (``snapshot_el2n[:, :, K]``,
    recorded in the same warm-up). Higher = kept first (hard and, under label noise,
    often mislabeled samples).

Reference
    Neither DeepCore nor Prune4ReL ship EL2N; this follows the paper (mean of norms over
    models). The paper scores early in training (e.g. epoch 20 of 200, over 10 models):
    ``--signal-epoch K`` reads that epoch of the warm-up; without it the final warm-up
    model (``-se`` epochs) is read. The default is one model, so no extra warm-up is
    trained unless asked.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..errors import DeepCoreError
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import WindowStart, members, row_blocks
from .base import SelectionMethod, register


def el2n_of(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``|| probs[i] - onehot(labels[i]) ||_2`` per row, in float64, block by block."""
    n, c = probs.shape
    out = np.empty(n, dtype=np.float64)
    for rows in row_blocks(n, c):
        p = np.asarray(probs[rows], dtype=np.float64)
        py = p[np.arange(p.shape[0]), labels[rows]]
        sq = np.einsum("ij,ij->i", p, p) - 2.0 * py + 1.0
        out[rows] = np.sqrt(np.maximum(sq, 0.0))
    return out


def el2n_scores(stack: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean EL2N over the members of ``stack`` (M, N, C)."""
    total = np.zeros(labels.shape[0], dtype=np.float64)
    for m in range(stack.shape[0]):
        total += el2n_of(stack[m], labels)
    return total / max(1, stack.shape[0])


def snapshot_scores(snapshots: np.ndarray, members: int, epoch: int) -> np.ndarray:
    """Mean over the first ``members`` rows of ``snapshots[:, :, epoch]`` (M, N, E + 1)."""
    if epoch >= snapshots.shape[2]:
        raise DeepCoreError(
            f"signal_epoch={epoch} but the warm-up snapshots cover epochs "
            f"0..{snapshots.shape[2] - 1}"
        )
    return np.asarray(snapshots[:members, :, epoch], dtype=np.float64).mean(axis=0)


def ensemble_probs(signals: Signals, ensemble: int, *, option: str = "ensemble") -> np.ndarray:
    """Softmax outputs of the first ``ensemble`` models as (M, N, C)."""
    if ensemble == 1:
        return signals.probs[None]
    mp = signals.member_probs
    members("member_probs", mp.shape[0], ensemble, option=option)
    return mp[:ensemble]


def ensemble_signal(ensemble: int) -> str:
    """The signal holding ``ensemble`` models' outputs."""
    return "probs" if ensemble == 1 else "member_probs"


@register
class EL2N(SelectionMethod):
    """Highest mean L2 norm of (softmax - one-hot noisy label) over an ensemble.

    Parameters
    ----------
    ensemble : int, default=1
        Independently seeded warm-up models to average over (1 = the main one).
    balance : bool, default=False
        Equal budgets per (noisy) class.
    window_start : float, default=0.0
        Skip this fraction of the ranking first (window sweeps).
    signal_epoch : int, optional
        Read the models after this many warm-up epochs (0: as initialised; at most
        ``-se``); None: the final warm-up models.

    Protocol: both protocols read the clean view of every member (DeepCore scores
    unaugmented inputs).
    """

    summary = "highest error L2 norm ||softmax - onehot(label)||, mean over --ensemble models"

    def __init__(
        self,
        *,
        ensemble: Annotated[int, Interval(1)] = 1,
        balance: bool = False,
        window_start: WindowStart = 0.0,
        signal_epoch: Annotated[int, Interval(0)] | None = None,
    ) -> None:
        self.ensemble = ensemble
        self.balance = balance
        self.window_start = float(window_start)
        self.signal_epoch = signal_epoch

    @property
    def ensemble_size(self) -> int:
        return self.ensemble

    def required_signals(self) -> frozenset[str]:
        if self.signal_epoch is not None:
            return frozenset({"snapshot_el2n"})
        return frozenset({ensemble_signal(self.ensemble)})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        if self.signal_epoch is None:
            scores = el2n_scores(ensemble_probs(signals, self.ensemble), signals.labels)
        else:
            snap = signals.snapshot_el2n
            members("snapshot_el2n", snap.shape[0], self.ensemble, option="ensemble")
            scores = snapshot_scores(snap, self.ensemble, self.signal_epoch)
        return self.take(
            signals,
            scores,
            fraction,
            seed=seed,
            start=self.window_start,
            info={"ensemble": self.ensemble, "signal_epoch": self.signal_epoch},
        )
