"""CCS: coverage-centric coreset selection (prune the hardest, then sample every stratum).

Paper: Zheng et al. 2023, "Coverage-centric Coreset Selection for High Pruning Rates"
(ICLR), Algorithm 1; AUM from Pleiss et al. 2020, "Identifying Mislabeled Data using the
Area Under the Margin Ranking".

Algorithm
    1. A difficulty per sample from a base score (``ccs_score``, higher = harder):

       - ``aum`` (default): minus the area under the margin, ``-mean_t margins[:, t]``
         (margin = logit of the noisy label minus the largest other logit, per warm-up
         epoch); low AUM flags mislabeled samples.
       - ``forgetting``: forgetting events, never-learned = E (:mod:`.forgetting`).
       - ``el2n``: ``||softmax - onehot(label)||`` of the final warm-up model.
       - ``loss``: clean-view loss ``-log p_label`` of the final warm-up model.
       - ``grand``: mean last-layer gradient norm over the recorded members.
       - ``uncertainty``: least confidence ``1 - max softmax`` of the final warm-up model.
       - ``moderate``: distance of the feature to its class's median (Moderate's score).
       - ``pred_sum``: models whose prediction disagrees with the noisy label (PredSum's
         count turned into a difficulty; all of ``member_probs`` when the signals hold
         an ensemble, else the final warm-up model alone).

    2. Prune the hardest ``floor(ccs_beta * N)`` samples (fewer when the budget would not
       fit in what is left).
    3. Split what is left into ``num_bins`` strata of equal width in difficulty, give
       every stratum an equal share of the budget (a stratum smaller than its share is
       taken whole and the rest re-shared, as :func:`deep_core.budget.class_budgets`),
       and sample uniformly at random within each stratum (seeded).

    With ``balance=True`` steps 2-3 run within each class on its equal-share budget.

Scores
    CCS samples rather than ranks: ``scores`` are minus the difficulty (e.g. the AUM),
    higher = easier, for logging and AUROC; the subset is not the top of them. The
    pruned hardest samples are never kept.

Reference (authors' code, ``CoresetSelection.stratified_sampling``)
    Kept: ``int(beta * N)`` hardest pruned, 50 equal-width strata by default, budget
    water-filling from the smallest stratum up, uniform sampling within strata. Changed:
    the code always prunes by AUM whatever score it stratifies on; here the hard cutoff
    uses the chosen base score, as Algorithm 1 (identical for the default ``aum``). The
    code's strata upper edge ``max * 1.0001`` dropped the maximum when it was negative
    (AUM often is); here the last stratum is closed. The remainder of the budget goes to
    the strata with the most samples left rather than to the largest strata in order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..budget import budget_size, class_budgets, rank, take_top
from ..signals import Signals
from ..subset import Subset
from ._common import check_choice, check_int, check_seed, check_unit, row_blocks
from .base import SelectionMethod, register
from .el2n import el2n_of
from .forgetting import forgetting_counts
from .moderate import median_distances
from .pred_sum import pred_sum
from .small_loss import label_log_prob
from .uncertainty import uncertainty_scores

CcsScore = Literal[
    "aum", "forgetting", "el2n", "loss", "grand", "uncertainty", "moderate", "pred_sum"
]
CCS_SCORES: tuple[str, ...] = (
    "aum", "forgetting", "el2n", "loss", "grand", "uncertainty", "moderate", "pred_sum"
)  # fmt: skip
_SIGNAL = {
    "aum": "margins",
    "forgetting": "correct",
    "el2n": "probs",
    "loss": "probs",
    "grand": "grad_norms",
    "uncertainty": "probs",
    "moderate": "features",
    "pred_sum": "probs",
}


def difficulty(signals: Signals, score: str) -> np.ndarray:
    """Per-sample difficulty (higher = harder) from the base score ``score``."""
    labels = signals.labels
    if score == "aum":
        return -area_under_margin(signals.margins)
    if score == "forgetting":
        return forgetting_counts(signals.correct)
    if score == "el2n":
        return el2n_of(signals.probs, labels)
    if score == "loss":
        return -label_log_prob(signals.probs, labels)
    if score == "uncertainty":
        return uncertainty_scores(signals.probs, "LeastConfidence")
    if score == "moderate":
        return median_distances(signals.features, labels, signals.num_classes)
    if score == "pred_sum":
        stack = signals.get("member_probs")  # an ensemble when one was recorded
        stack = signals.probs[None] if stack is None else stack
        return stack.shape[0] - pred_sum(stack, labels)
    return np.asarray(signals.grad_norms, dtype=np.float64).mean(axis=0)


def area_under_margin(margins: np.ndarray) -> np.ndarray:
    """AUM: the mean of the per-epoch margins (N, E) of each sample, float64 (0 if E = 0)."""
    n, e = margins.shape
    out = np.zeros(n, dtype=np.float64)
    if e:
        for rows in row_blocks(n, e):
            out[rows] = np.asarray(margins[rows], dtype=np.float64).mean(axis=1)
    return out


def strata(values: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width strata ids in ``[0, num_bins)`` over ``[min, max]``, last one closed."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.size, dtype=np.int64)
    ids = np.floor((values - lo) / ((hi - lo) / num_bins)).astype(np.int64)
    return np.clip(ids, 0, num_bins - 1)


def ccs_sample(
    hardness: np.ndarray,
    n_select: int,
    *,
    beta: float,
    num_bins: int,
    keys: np.ndarray,
) -> tuple[np.ndarray, int]:
    """CCS on one pool: positions (into ``hardness``) kept, and how many were cut as hard.

    ``keys`` are per-sample random priorities; within a stratum the highest keys win,
    which is a uniform random sample without replacement.
    """
    n = hardness.size
    n_cut = min(int(np.floor(beta * n)), n - n_select)
    left = np.sort(rank(hardness)[n_cut:])  # drop the n_cut hardest (ties: lower index)
    bins = strata(hardness[left], num_bins)
    chosen = take_top(keys[left], n_select, labels=bins, balance=True, num_classes=num_bins)
    return left[chosen], n_cut


@register
class CCS(SelectionMethod):
    """Coverage-centric selection: prune the hardest ``ccs_beta``, stratified sampling after.

    Parameters
    ----------
    ccs_beta : float, default=0.0
        Fraction of the hardest samples pruned first (the paper's hard cutoff; tune it,
        e.g. towards the noise rate under label noise).
    ccs_score : {"aum", "forgetting", "el2n", "loss", "grand", "uncertainty", "moderate", \
"pred_sum"}, default="aum"
        Base difficulty score for the cutoff and the strata.
    num_bins : int, default=50
        Number of equal-width strata (the authors' default).
    balance : bool, default=False
        Run the cutoff and the stratified sampling within each (noisy) class on equal
        per-class budgets.

    Protocol: both protocols read the clean view and the training-time margins (the CCS code
    scores the training run itself).
    """

    summary = "coverage-centric: prune hardest --ccs-beta, stratified sampling over score bins"

    def __init__(
        self,
        *,
        ccs_beta: float = 0.0,
        ccs_score: CcsScore = "aum",
        num_bins: int = 50,
        balance: bool = False,
    ) -> None:
        self.ccs_beta = check_unit("ccs_beta", ccs_beta)
        self.ccs_score = check_choice("CCS base score", ccs_score, CCS_SCORES)
        self.num_bins = check_int("num_bins", num_bins, low=1)
        self.balance = balance

    def required_signals(self) -> frozenset[str]:
        return frozenset({_SIGNAL[self.ccs_score]})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        hard = difficulty(signals, self.ccs_score)
        n = hard.size
        n_select = budget_size(n, fraction)
        keys = np.random.default_rng(check_seed(seed)).random(n)
        opts = {"beta": self.ccs_beta, "num_bins": self.num_bins}
        if not self.balance:
            idx, n_cut = ccs_sample(hard, n_select, keys=keys, **opts)
        else:
            labels = signals.labels
            budgets = class_budgets(labels, n_select, signals.num_classes)
            parts, n_cut = [], 0
            for c in np.flatnonzero(budgets):
                members = np.flatnonzero(labels == c)
                pos, cut = ccs_sample(hard[members], int(budgets[c]), keys=keys[members], **opts)
                parts.append(members[pos])
                n_cut += cut
            idx = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        info = {"ccs_score": self.ccs_score, "pruned_hard": int(n_cut), "num_bins": self.num_bins}
        return Subset(indices=np.sort(idx), scores=-hard, info=info)
