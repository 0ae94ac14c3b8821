"""Glister: greedy selection whose gradient step most lowers a validation loss.

Paper: Killamsetty et al. 2021, "GLISTER: Generalization based Data Subset Selection for
Efficient and Robust Learning" (AAAI); a baseline of DeepCore (Guo et al. 2022) and of
Prune4ReL (Park et al., NeurIPS 2023). Reference code: PatrickZH/DeepCore and
kaist-dmlab/Prune4Rel, ``deepcore/methods/glister.py`` with
``methods_utils/submodular_optimizer.py`` (``LazyGreedy``).

The greedy, as the reference builds it
--------------------------------------
- Gradients are those of the last layer (a linear ``z = W h + b`` on the penultimate
  ``features`` h) of the cross-entropy with the noisy label: ``g_i = [p_i - y_i,
  (p_i - y_i) h_i^T]`` (bias part, then the weight part class by class), ``p_i`` the
  warm-up softmax (``probs``). The reference obtains the same from autograd on the
  logits; here it is computed from the signals, never materialised (N x C(d+1)): every
  product with a gradient is done through ``p - y`` and ``h``.
- The validation set is the training set itself (the reference's fallback when no
  validation set is given; neither CLI passes one), on the clean view, with its noisy
  labels; per class when ``balance`` (DeepCore computes the class's own gradients).
- The gain of a candidate is ``g_i . G_val`` with ``G_val`` the mean validation gradient.
  ``LazyGreedy``: gains start at their value for the warm-up model; a step re-evaluates
  the current argmax (ties: lowest index), keeps the best re-evaluated candidate, and
  picks a candidate when it is the argmax twice in a row. After a pick the last layer
  is moved by one Taylor step, ``theta_S = theta - eta * mean_{s in S} g_s``, the
  validation logits become ``z_j - eta (mean b_s + mean(b_s h_s^T) h_j)`` and ``G_val``
  is recomputed there (``update_val_gradients``); the training gradients stay those of
  the warm-up model. Validation logits come from ``log probs`` (softmax is
  shift-invariant, so this is exact).

Reference quirks
----------------
- Kept as an option: both references pass ``upadate_state=...`` (misspelled) to the
  optimizer, so the Taylor update never ran and the gains stayed those of the warm-up
  model: ``LazyGreedy`` then picks the top ``k`` gains. ``taylor_update=False``
  reproduces this (and is O(N·C·d) in all); the default runs the update the code and the
  paper describe (O(N·C·d) per pick).
- Fixed: Prune4ReL applies ``CrossEntropyLoss`` to ``softmax(outputs)`` (a second
  softmax); the gradient here is that of the cross-entropy of the logits (DeepCore and
  the paper). Both computed gradients of the batch-*mean* loss, so every gradient was
  1/``selection_batch`` of the per-sample one and the last, smaller batch's larger; here
  per sample (``glister_eta`` applies to per-sample gradients).
- Prune4ReL's balanced branch crashes (it reads ``self.dst_train``, ``self.dst_val`` and
  ``self.val_indx``, which its classes no longer define); DeepCore's runs
  per class with ``round(f * n_c)`` picks; here per class with the shared equal budgets
  (:func:`deep_core.budget.class_budgets`).
- ``eta``: the reference method never receives ``--eta`` (``main_label_noise.py`` does
  not pass it) and falls back to ``args.lr`` (0.02 in Prune4ReL): ``glister_eta`` defaults
  to that and is a separate option so that Prune4Rel's ``--eta`` does not change it.
- Prune4ReL's CLI default optimizer is ``StochasticGreedy`` (``--submodular_greedy``),
  drawn from the global numpy RNG after warm-up training; its sample size
  ``max(round(-ln(0.9) / f), 1)`` is 1 for ``f > 0.07`` (all of the paper's fractions), so
  with static gains it drew a uniformly random subset. Not reproduced: ``LazyGreedy`` is
  DeepCore's default and the method's own.

Scores
------
With ``taylor_update``: the greedy order, the ``t``-th pick of a greedy (per class when
balanced) scores ``k - t``, unselected samples 0; a group kept whole (budget = its size)
is taken without running the greedy (scores 1). Without: the gain ``g_i . G_val``
(higher = kept first). ``info`` holds the validation loss of the warm-up model and after
one exact (not Taylor) step ``theta - eta * mean_S g`` of the last layer.
"""

from __future__ import annotations

import heapq
from typing import Annotated

import numpy as np

from ..budget import budget_size, greedy_groups, take_top
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._common import row_blocks
from .base import SelectionMethod, register
from .kcenter_greedy import as_float32_rows

_TINY = np.finfo(np.float64).tiny


class _Group:
    """One greedy's samples (training = validation set) and its gradient algebra."""

    def __init__(self, probs: np.ndarray, features: np.ndarray, labels: np.ndarray) -> None:
        self.n = labels.size
        self.labels = labels
        self.h = as_float32_rows(features)
        p = np.asarray(probs, dtype=np.float64)
        self.logits = np.log(np.maximum(p, _TINY))
        self.bias = p.copy()  # training bias gradients p - y, fixed at the warm-up model
        self.bias[np.arange(self.n), labels] -= 1.0

    def val_gradient(self, step_bias: np.ndarray | None, step_weight: np.ndarray | None):
        """Mean validation gradient (bias part, weight part) and loss after a step.

        ``step_*`` is the last-layer move ``eta * mean_S g`` (None: the warm-up model).
        """
        c = self.logits.shape[1]
        vb = np.zeros(c)
        vw = np.zeros((c, self.h.shape[1]))
        loss = 0.0
        w32 = None if step_weight is None else step_weight.astype(np.float32)
        for rows in row_blocks(self.n, self.h.shape[1]):
            h = self.h[rows]
            z = self.logits[rows].copy()
            if step_bias is not None:
                z -= step_bias
                z -= h @ w32.T
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=1, keepdims=True)
            y = self.labels[rows]
            loss += float((np.log(s[:, 0]) - z[np.arange(y.size), y]).sum())
            grad = e / s
            grad[np.arange(y.size), y] -= 1.0
            vb += grad.sum(axis=0)
            vw += (h.T @ grad.astype(np.float32)).T  # this form: no slow skinny-GEMM path
        return vb / self.n, vw / self.n, loss / self.n

    def gains(self, vb: np.ndarray, vw: np.ndarray, rows=slice(None)) -> np.ndarray:
        """``g_i . G_val`` = ``b_i . (vb + vw h_i)`` for the samples ``rows``."""
        h = np.atleast_2d(self.h[rows]).astype(np.float64)
        b = np.atleast_2d(self.bias[rows])
        return np.einsum("ic,ic->i", b, vb[None, :] + h @ vw.T)


def _group(probs: np.ndarray, features: np.ndarray, labels: np.ndarray, idx: np.ndarray):
    """The samples ``idx`` as a :class:`_Group` (all of them: no copy of the features)."""
    if idx.size == labels.size:
        return _Group(probs, features, labels)
    return _Group(probs[idx], features[idx], labels[idx])


def _all_gains(group: _Group, vb: np.ndarray, vw: np.ndarray) -> np.ndarray:
    out = np.empty(group.n)
    for rows in row_blocks(group.n, group.h.shape[1]):
        out[rows] = group.gains(vb, vw, rows)
    return out


def lazy_greedy(
    group: _Group, budget: int, *, eta: float, vb: np.ndarray, vw: np.ndarray
) -> tuple[np.ndarray, float]:
    """The reference's ``LazyGreedy`` with the Taylor update after every pick.

    ``vb, vw`` is the validation gradient of the warm-up model. Returns the picks in
    order and the validation loss after the final step.
    """
    # (-gain, index): the heap top is np.argmax's pick (largest gain, lowest index)
    heap = list(zip((-_all_gains(group, vb, vw)).tolist(), range(group.n)))
    heapq.heapify(heap)
    sum_b = np.zeros(group.bias.shape[1])
    sum_w = np.zeros((group.bias.shape[1], group.h.shape[1]))
    order = np.empty(budget, dtype=np.int64)
    loss = 0.0
    for t in range(budget):
        best, last = -np.inf, -1
        while True:
            cur = heap[0][1]
            if cur == last:
                break
            new = float(group.gains(vb, vw, cur)[0])
            heapq.heapreplace(heap, (-new, cur))
            if new >= best:
                best, last = new, cur
        heapq.heappop(heap)
        order[t] = cur
        sum_b += group.bias[cur]
        sum_w += np.outer(group.bias[cur], group.h[cur])
        vb, vw, loss = group.val_gradient(eta * sum_b / (t + 1), eta * sum_w / (t + 1))
    return order, loss


def _loss_after(group: _Group, picks: np.ndarray, eta: float) -> float:
    """Validation loss after one step ``theta - eta * mean_{picks} g``."""
    if picks.size == 0:
        return group.val_gradient(None, None)[2]
    b = group.bias[picks]
    w = b.T @ group.h[picks].astype(np.float64)
    return group.val_gradient(eta * b.mean(axis=0), eta * w / picks.size)[2]


def glister_select(
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    n_select: int,
    *,
    eta: float,
    taylor_update: bool,
    balance: bool,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Glister's greedy (per class when ``balance``); sorted indices, scores and info."""
    n = labels.size
    groups, budgets = greedy_groups(labels, n_select, num_classes, balance=balance)
    scores = np.zeros(n, dtype=np.float64)
    before = after = 0.0
    for idx, k in zip(groups, budgets):
        k = int(k)
        if idx.size == 0:
            continue
        group = _group(probs, features, labels, idx)
        vb, vw, loss0 = group.val_gradient(None, None)
        before += loss0 * idx.size
        if not taylor_update:
            scores[idx] = _all_gains(group, vb, vw)
            continue
        if k == idx.size:
            scores[idx] = 1.0
            after += _loss_after(group, np.arange(idx.size), eta) * idx.size
        elif k == 0:
            after += loss0 * idx.size
        else:
            order, loss = lazy_greedy(group, k, eta=eta, vb=vb, vw=vw)
            scores[idx[order]] = k - np.arange(k, dtype=np.float64)
            after += loss * idx.size
    if taylor_update:
        chosen = np.flatnonzero(scores > 0).astype(np.int64)
    else:
        chosen = take_top(scores, n_select, labels=labels, balance=balance, num_classes=num_classes)
        for idx in groups:
            if idx.size:
                group = _group(probs, features, labels, idx)
                picks = np.flatnonzero(np.isin(idx, chosen))
                after += _loss_after(group, picks, eta) * idx.size
    info = {
        "val_loss_before": before / max(1, n),
        "val_loss_after": after / max(1, n),
        "glister_eta": eta,
        "taylor_update": taylor_update,
    }
    return chosen, scores, info


@register
class Glister(SelectionMethod):
    """Greedy subset whose last-layer gradient step most lowers the validation loss.

    Parameters
    ----------
    glister_eta : float, default=0.02
        Step size of the Taylor update (the reference's ``args.lr`` default).
    taylor_update : bool, default=True
        Re-compute the validation gradient after every pick (the paper, and the
        reference's evident intent); False reproduces what the reference ran (static
        gains: the top-k of ``g_i . G_val``).
    balance : bool, default=False
        Run the greedy within each (noisy) class, that class as validation set, with
        equal per-class budgets.
    """

    summary = "greedy last-layer gradient matching to the (training = validation) loss"

    def __init__(
        self,
        *,
        glister_eta: Annotated[float, Interval(0, lo_open=True)] = 0.02,
        taylor_update: bool = True,
        balance: bool = False,
    ) -> None:
        self.glister_eta = float(glister_eta)
        self.taylor_update = taylor_update
        self.balance = balance

    def required_signals(self) -> frozenset[str]:
        return frozenset({"probs", "features"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        n_select = budget_size(len(signals), fraction)
        idx, scores, info = glister_select(
            signals.probs,
            signals.features,
            signals.labels,
            n_select,
            eta=self.glister_eta,
            taylor_update=self.taylor_update,
            balance=self.balance,
            num_classes=signals.num_classes,
        )
        return Subset(indices=idx, scores=scores, info=info)
