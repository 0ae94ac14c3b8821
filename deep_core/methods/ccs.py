"""CCS: coverage-centric coreset selection (prune the hardest, then sample every stratum).

Paper: Zheng et al. 2023, "Coverage-centric Coreset Selection for High Pruning Rates"
(ICLR), Algorithm 1; authors' code: github.com/haizhongzheng/Coverage-centric-coreset-selection
(``generate_importance_score.py``, ``train.py``, ``CoresetSelection`` in
``core/data/Coreset.py``). AUM after Pleiss et al. 2020, "Identifying Mislabeled Data
using the Area Under the Margin Ranking".

Algorithm
    1. A difficulty per sample from a base score (``ccs_score``, higher = harder):

       - ``aum`` (default): minus the area under the margin. ``ccs_aum`` picks which:

         * ``"prob_sum"`` (default, the authors' code): the softmax probability of the
           noisy label minus the largest other probability, summed over every recorded
           epoch (``prob_margins``; the code's ``accumulated_margin``).
         * ``"logit_mean"``: Pleiss et al.'s AUM, the logit margin averaged over the
           epochs (``margins``; this package's CCS before it followed the code).

       - ``forgetting``: forgetting events, never-learned = E (:mod:`.forgetting`).
       - ``el2n``: ``||softmax - onehot(label)||`` of the final warm-up model.
       - ``loss``: clean-view loss ``-log p_label`` of the final warm-up model.
       - ``grand``: mean last-layer gradient norm over the recorded members.
       - ``uncertainty``: least confidence ``1 - max softmax`` of the final warm-up model.
       - ``moderate``: distance of the feature to its class's median (Moderate's score).
       - ``pred_sum``: models whose prediction disagrees with the noisy label (PredSum's
         count turned into a difficulty; all of ``member_probs`` when the signals hold
         an ensemble, else the final warm-up model alone).

    2. Prune the hardest ``floor(beta * N)`` samples (fewer when the budget would not fit
       in what is left). ``beta`` is ``ccs_beta``; by default (None) the authors' hard
       cutoff rate for the pruning rate ``1 - fraction`` (:func:`authors_beta`).
    3. Split what is left into ``num_bins`` strata of equal width in the score, share
       the budget over the strata as the authors' ``bin_allocate`` does
       (:func:`strata_budgets`), and sample uniformly at random within each stratum.

    With ``balance=True`` steps 2-3 run within each class on its equal-share budget.

Default hard cutoff rate (``ccs_beta=None``)
    The authors publish beta per dataset and pruning rate; the values in their
    repository's README commands are 0.3 at a 90% pruning rate (CIFAR-10 and
    ImageNet-1K) and 0.2 at 80% (ImageNet-1K). :data:`AUTHORS_BETA` holds those two
    points; the two datasets agree where both are given, so the table does not depend
    on the dataset. Other rates are interpolated linearly between the points and
    ``beta = 0`` at a pruning rate of 0 (where nothing can be cut anyway); above 90% the
    90% value is used. So 50% pruning cuts 12.5%, 70% cuts 17.5%. The paper's appendix
    grid-searched beta for more rates and datasets; pass ``ccs_beta`` to use a value of
    your own (``ccs_beta=0`` is the plain stratified sampling).

Scores
    CCS samples rather than ranks: ``scores`` are minus the difficulty (the AUM for
    ``aum``), higher = easier, for logging and AUROC; the subset is not the top of them.
    The pruned hardest samples are never kept.

Reference, choice by choice (authors' code vs here)
    - AUM: the code sums softmax-probability margins of the training forward passes
      (augmented view) over the full-data run (200 epochs); here the same margins of
      the warm-up's training passes, summed over its epochs (``prob_margins``, one value
      per sample and epoch).
    - Cut: ``int(beta * N)`` lowest AUM (``mislabel_mask``), same count here. The code
      always cuts by AUM whatever it stratifies on; here the cut uses the chosen base
      score, as Algorithm 1 (identical for the default ``aum``). Ties in the cut are
      broken by a permutation drawn from the seed (the code's ``argsort`` leaves them
      to the sort).
    - Strata: 50 equal-width strata over the score left after the cut, as the code
      stores it (the AUM itself for ``aum``, the difficulty for the other scores), with
      the code's upper edge ``max * 1.0001`` for a positive maximum. That edge dropped
      the maximum when it was negative or zero; here it joins the last stratum.
    - Budget per stratum: the code's ``bin_allocate``, kept exactly: strata in
      ascending order of size (ties: lower stratum first), each takes
      ``min(size, rest // strata_left)``, so small strata are taken whole and the
      remainder lands on the largest strata.
    - Sampling: uniform without replacement within each stratum (the code's
      ``randperm``; here the highest of seeded random keys).
    - Budget: ``round(fraction * N)`` as every method of this package (the code:
      ``int(ratio * N)``).
    - ``balance`` (per-class cut and strata) is this package's option; the code has none.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from ..budget import budget_size, class_budgets, rank, take_per_group
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import check_seed, row_blocks
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
CcsAum = Literal["prob_sum", "logit_mean"]
_SIGNAL = {
    "forgetting": "correct",
    "el2n": "probs",
    "loss": "probs",
    "grand": "grad_norms",
    "uncertainty": "probs",
    "moderate": "features",
    "pred_sum": "probs",
}
_AUM_SIGNAL = {"prob_sum": "prob_margins", "logit_mean": "margins"}

#: (pruning rate, hard cutoff rate beta) from the authors' published commands:
#: 90% -> 0.3 (CIFAR-10, ImageNet-1K), 80% -> 0.2 (ImageNet-1K).
AUTHORS_BETA: tuple[tuple[float, float], ...] = ((0.8, 0.2), (0.9, 0.3))


def authors_beta(pruning_rate: float) -> float:
    """The default hard cutoff rate for ``pruning_rate = 1 - fraction``.

    Linear between the points of :data:`AUTHORS_BETA` and ``(0, 0)``; the last
    point's beta above it.
    """
    rates = [0.0] + [r for r, _ in AUTHORS_BETA]
    betas = [0.0] + [b for _, b in AUTHORS_BETA]
    return float(np.interp(pruning_rate, rates, betas))


def difficulty(signals: Signals, score: str, aum: str = "prob_sum") -> np.ndarray:
    """Per-sample difficulty (higher = harder) from the base score ``score``."""
    labels = signals.labels
    if score == "aum":
        if aum == "prob_sum":
            return -accumulated_margin(signals.prob_margins)
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


def _reduce_epochs(margins: np.ndarray, *, mean: bool) -> np.ndarray:
    n, e = margins.shape
    out = np.zeros(n, dtype=np.float64)
    if e:
        for rows in row_blocks(n, e):
            block = np.asarray(margins[rows], dtype=np.float64)
            out[rows] = block.mean(axis=1) if mean else block.sum(axis=1)
    return out


def area_under_margin(margins: np.ndarray) -> np.ndarray:
    """Pleiss et al.'s AUM: the mean of the per-epoch logit margins (N, E); float64."""
    return _reduce_epochs(margins, mean=True)


def accumulated_margin(prob_margins: np.ndarray) -> np.ndarray:
    """The CCS code's AUM: per-epoch probability margins (N, E) summed; float64."""
    return _reduce_epochs(prob_margins, mean=False)


def strata(values: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width strata ids in ``[0, num_bins)``: the authors' strata, last one closed.

    The width is ``(max + 1e-4 |max| - min) / num_bins``, the code's upper edge
    ``max * 1.0001`` for a positive maximum; a maximum the code would drop (a negative
    or zero one) joins the last stratum.
    """
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.size, dtype=np.int64)
    step = (hi + 1e-4 * abs(hi) - lo) / num_bins
    ids = np.floor((values - lo) / step).astype(np.int64)
    return np.clip(ids, 0, num_bins - 1)


def strata_budgets(sizes: np.ndarray, total: int) -> np.ndarray:
    """The authors' ``bin_allocate``: share ``total`` over strata of ``sizes``.

    Strata in ascending order of size (ties: lower id first) each take
    ``min(size, rest // strata_left)`` of what is left, so a stratum smaller than its
    share is taken whole and the remainder of the division goes to the largest strata.
    Sums to ``total`` when ``total <= sizes.sum()``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros_like(sizes)
    rest = int(total)
    order = np.argsort(sizes, kind="stable")
    for i, s in enumerate(order):
        take = min(int(sizes[s]), rest // (sizes.size - i))
        out[s] = take
        rest -= take
    return out


def ccs_sample(
    hardness: np.ndarray,
    n_select: int,
    *,
    beta: float,
    num_bins: int,
    keys: np.ndarray,
    seed: int,
    stratify_on_score: bool,
) -> tuple[np.ndarray, int]:
    """CCS on one pool: positions (into ``hardness``) kept, and how many were cut as hard.

    ``keys`` are per-sample random priorities; within a stratum the highest keys win,
    which is a uniform random sample without replacement. ``seed`` breaks ties in the
    cut. Strata are drawn over ``-hardness`` when ``stratify_on_score`` (the AUM as the
    authors store it), else over ``hardness``.
    """
    n = hardness.size
    n_cut = min(int(np.floor(beta * n)), n - n_select)
    left = np.sort(rank(hardness, seed=seed)[n_cut:])  # drop the n_cut hardest
    values = -hardness[left] if stratify_on_score else hardness[left]
    bins = strata(values, num_bins)
    budgets = strata_budgets(np.bincount(bins, minlength=num_bins), n_select)
    chosen = take_per_group(keys[left], bins, budgets)
    return left[chosen], n_cut


@register
class CCS(SelectionMethod):
    """Coverage-centric selection: prune the hardest ``beta``, stratified sampling after.

    Parameters
    ----------
    ccs_beta : float, optional
        Fraction of the hardest samples pruned first (the paper's hard cutoff rate), in
        ``[0, 1)``. Default None: the authors' beta for the pruning rate
        ``1 - fraction`` (:func:`authors_beta`).
    ccs_score : {"aum", "forgetting", "el2n", "loss", "grand", "uncertainty", "moderate", \
"pred_sum"}, default="aum"
        Base difficulty score for the cutoff and the strata.
    ccs_aum : {"prob_sum", "logit_mean"}, default="prob_sum"
        Which AUM ``ccs_score="aum"`` uses: the authors' code's probability margins
        summed over the epochs (signal ``prob_margins``) or Pleiss et al.'s logit
        margins averaged (signal ``margins``).
    num_bins : int, default=50
        Number of equal-width strata (the authors' value).
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
        ccs_beta: Annotated[float, Interval(0, 1, hi_open=True)] | None = None,
        ccs_score: CcsScore = "aum",
        ccs_aum: CcsAum = "prob_sum",
        num_bins: Annotated[int, Interval(1)] = 50,
        balance: bool = False,
    ) -> None:
        self.ccs_beta = None if ccs_beta is None else float(ccs_beta)
        self.ccs_score = ccs_score
        self.ccs_aum = ccs_aum
        self.num_bins = num_bins
        self.balance = balance

    def required_signals(self) -> frozenset[str]:
        if self.ccs_score == "aum":
            return frozenset({_AUM_SIGNAL[self.ccs_aum]})
        return frozenset({_SIGNAL[self.ccs_score]})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        seed = check_seed(seed)
        hard = difficulty(signals, self.ccs_score, self.ccs_aum)
        n = hard.size
        n_select = budget_size(n, fraction)
        beta = authors_beta(1.0 - fraction) if self.ccs_beta is None else self.ccs_beta
        keys = np.random.default_rng(seed).random(n)
        opts = {
            "beta": beta,
            "num_bins": self.num_bins,
            "seed": seed,
            "stratify_on_score": self.ccs_score == "aum",
        }
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
        info = {
            "ccs_score": self.ccs_score,
            "ccs_beta": beta,
            "beta_from": "authors" if self.ccs_beta is None else "ccs_beta",
            "pruned_hard": int(n_cut),
            "num_bins": self.num_bins,
        }
        if self.ccs_score == "aum":
            info["ccs_aum"] = self.ccs_aum
        return Subset(indices=np.sort(idx), scores=-hard, info=info)
