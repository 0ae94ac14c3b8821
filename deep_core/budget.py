"""Budgeting: the one place that turns per-sample scores into selected indices.

Every selection method produces scores (higher = kept first) and calls
:func:`take_top`. Global or per-class budgets, the ranking with its tie-breaking and
the window (keep the slice ``[start, start + fraction]`` of the ranking) all live here,
so no method re-writes this loop (the direction bugs in DeepCore came from that).

Ties in a score are broken by a random permutation drawn from the method's seed (a
stream of its own, independent of the method's other draws), so a score with few
distinct values (PredSum's 0..E, forgetting counts) keeps tied samples in proportion
whatever the order of the data; "lowest index first" kept none of the last class on
class-sorted data. Scores without ties rank exactly as a stable sort does, so the
reference-identical draws of Uniform (a permutation, never tied) are unchanged.
Without a seed (``seed=None``) ties keep the lower index first.

Per-class budgets (``balance=True``) give every class, by noisy label, an equal share
of the total; a class smaller than its share is taken whole and what it leaves is
shared among the others again (water-filling). The last few samples that do not
divide evenly go one each to the lowest class ids, as a round-robin over the classes
starting from class 0 would hand them out. This is the class balance of Prune4ReL's
round-robin; DeepCore's ``balance`` kept each class's proportion instead, which
preserves whatever imbalance the noisy labels have.

The corpus methods keep per group (cluster or class): an exact total split in
proportion to the group sizes (:func:`proportional_budgets`, then
:func:`take_per_group`), ``ceil(fraction * n)`` per group (:func:`ceil_budgets`,
ClusterSubsample's reference rule), or every sample above its group's quantile
(:func:`quantile_mask`, the "Data Pruning" tool's rule).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DeepCoreError


def check_fraction(fraction: float, *, name: str = "fraction") -> float:
    """Validate a fraction in (0, 1] and return it as a float."""
    f = float(fraction)
    if not (0.0 < f <= 1.0):  # also False for NaN
        raise DeepCoreError(f"{name} must be in (0, 1], got {fraction}")
    return f


def budget_size(n: int, fraction: float) -> int:
    """Number of samples kept: ``round(fraction * n)`` (Python rounding, as the reference)."""
    return int(round(check_fraction(fraction) * n))


def class_budgets(labels: np.ndarray, total: int, num_classes: int | None = None) -> np.ndarray:
    """Split ``total`` into equal per-class budgets, capped by each class's size.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Class of each sample (the noisy label).
    total : int
        Number of samples to select over all classes; at most ``n``.
    num_classes : int, optional
        Number of classes; default ``labels.max() + 1``. Empty classes get 0.

    Returns
    -------
    ndarray of int64, shape (num_classes,)
        Budget per class; sums to ``total``.
    """
    labels = np.asarray(labels)
    c = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 0))
    sizes = np.bincount(labels, minlength=c).astype(np.int64)
    if total > sizes.sum():
        raise DeepCoreError(f"budget {total} exceeds the {int(sizes.sum())} samples available")
    budgets = np.zeros(c, dtype=np.int64)
    active = np.flatnonzero(sizes > 0)
    left = int(total)
    while active.size and left:
        share = left // active.size
        small = active[sizes[active] <= share]
        if small.size == 0:
            budgets[active] = share
            left -= share * active.size
            # The remainder: one each to the lowest class ids (as a round-robin from class 0
            # would give it); every active class has room since its size exceeds the share.
            budgets[active[:left]] += 1
            left = 0
            break
        budgets[small] = sizes[small]
        left -= int(sizes[small].sum())
        active = np.setdiff1d(active, small)
    return budgets


#: mixed into the seed of the tie-breaking permutation, so it is a stream of its own
_TIE_STREAM = 0x7E5


def greedy_groups(
    labels: np.ndarray, total: int, num_classes: int, *, balance: bool
) -> tuple[list[np.ndarray], np.ndarray]:
    """Where a greedy selection runs and with what budget.

    With ``balance``, one group per (noisy) class with :func:`class_budgets`; otherwise
    the whole set with ``total``. Returns the groups' sample indices and their budgets.
    """
    if balance:
        groups = [np.flatnonzero(labels == c) for c in range(num_classes)]
        return groups, class_budgets(labels, total, num_classes)
    return [np.arange(labels.size)], np.array([total])


def tie_permutation(n: int, seed: int) -> np.ndarray:
    """The seeded random order that breaks ties among ``n`` scores (deterministic)."""
    return np.random.default_rng([_TIE_STREAM, int(seed)]).permutation(n)


def rank(scores: np.ndarray, *, seed: int | None = None) -> np.ndarray:
    """Positions ordered by descending score.

    Equal scores come in the order of :func:`tie_permutation` for ``seed``, or lower
    index first when ``seed`` is None. Distinct scores are ordered the same either way.
    """
    s = np.asarray(scores, dtype=np.float64)
    if seed is None:
        return np.argsort(-s, kind="stable")
    perm = tie_permutation(s.shape[0], seed)
    return perm[np.argsort(-s[perm], kind="stable")]


def take_top(
    scores: np.ndarray,
    n_select: int,
    *,
    labels: np.ndarray | None = None,
    balance: bool = False,
    num_classes: int | None = None,
    start: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """Select ``n_select`` samples by descending score.

    Parameters
    ----------
    scores : ndarray of float, shape (n,)
        Higher is kept first. NaN is an error.
    n_select : int
        Number of samples to keep (0..n).
    labels : ndarray of int, shape (n,), optional
        Noisy labels; required when ``balance`` is True.
    balance : bool, default=False
        Per-class budgets from :func:`class_budgets`, ranked within each class.
    num_classes : int, optional
        Number of classes for ``balance`` (default ``labels.max() + 1``).
    start : float, default=0.0
        Window start in [0, 1): skip the first ``round(start * n)`` of the ranking
        (per class: of the class's ranking) and keep the next ``n_select``.
    seed : int, optional
        Breaks ties by a seeded random permutation (:func:`rank`); None: lower index
        first.

    Returns
    -------
    ndarray of int64
        Sorted unique indices, exactly ``n_select`` of them.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if np.isnan(scores).any():
        raise DeepCoreError("selection scores contain NaN")
    if not 0 <= n_select <= n:
        raise DeepCoreError(f"cannot select {n_select} of {n} samples")
    if not 0.0 <= start < 1.0:
        raise DeepCoreError(f"window start must be in [0, 1), got {start}")
    if not balance:
        offset = min(int(round(start * n)), n - n_select)
        return np.sort(rank(scores, seed=seed)[offset : offset + n_select]).astype(np.int64)
    if labels is None:
        raise DeepCoreError("balanced selection needs labels")
    labels = np.asarray(labels, dtype=np.int64)
    budgets = class_budgets(labels, n_select, num_classes)
    sizes = np.bincount(labels, minlength=budgets.size)
    offsets = np.minimum(np.round(start * sizes).astype(np.int64), sizes - budgets)
    return take_per_group(scores, labels, budgets, offsets=offsets, seed=seed)


def proportional_budgets(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder).

    Every group gets ``floor`` or ``ceil`` of ``total * size / sum(sizes)``; the extra
    ones go to the largest fractional parts, ties to the lower group id.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if not 0 <= total <= n:
        raise DeepCoreError(f"cannot keep {total} of {n} samples")
    if n == 0:
        return np.zeros_like(sizes)
    exact = sizes * (total / n)
    base = np.minimum(np.floor(exact).astype(np.int64), sizes)
    left = total - int(base.sum())
    frac = np.where(base < sizes, exact - base, -1.0)
    order = np.lexsort((np.arange(sizes.size), -frac))
    base[order[:left]] += 1
    return base


def take_per_group(
    scores: np.ndarray,
    groups: np.ndarray,
    budgets: np.ndarray,
    *,
    offsets: np.ndarray | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """The ``budgets[g]`` highest scores of every group ``g``; sorted indices.

    Parameters
    ----------
    scores : ndarray of float, shape (n,)
        Higher is kept first; ties as :func:`rank` with ``seed``. NaN is an error.
    groups : ndarray of int, shape (n,)
        Group (class or cluster) of each sample.
    budgets : ndarray of int, shape (num_groups,)
        How many to keep per group; at most the group's size.
    offsets : ndarray of int, shape (num_groups,), optional
        Skip this many of each group's ranking first (window selection); default 0.
    seed : int, optional
        Breaks ties by a seeded random permutation; None: lower index first.

    Returns
    -------
    ndarray of int64
        Sorted indices, ``budgets.sum()`` of them.
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    budgets = np.asarray(budgets, dtype=np.int64)
    if np.isnan(scores).any():
        raise DeepCoreError("selection scores contain NaN")
    lo = np.zeros_like(budgets) if offsets is None else np.asarray(offsets, dtype=np.int64)
    order = rank(scores, seed=seed)
    g = groups[order]
    perm = np.argsort(g, kind="stable")
    gs = g[perm]
    starts = np.searchsorted(gs, np.arange(budgets.size))
    pos = np.arange(gs.size) - starts[gs]
    keep = (pos >= lo[gs]) & (pos < lo[gs] + budgets[gs])
    return np.sort(order[perm[keep]]).astype(np.int64)


# -- per-group rules of the corpus methods (groups = clusters or classes) ------------
def group_quantiles(scores: np.ndarray, groups: np.ndarray, quantile: float) -> np.ndarray:
    """Per-group quantile of ``scores`` (linear interpolation, as ``numpy.quantile``).

    Returns an array indexed by group id; empty groups get NaN.
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    g = int(groups.max()) + 1 if groups.size else 0
    order = np.lexsort((scores, groups))
    s = scores[order]
    sizes = np.bincount(groups, minlength=g)
    starts = np.zeros(g, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    out = np.full(g, np.nan)
    ok = sizes > 0
    h = (sizes[ok] - 1) * float(quantile)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, sizes[ok] - 1)
    frac = h - lo
    a = s[starts[ok] + lo]
    b = s[starts[ok] + hi]
    out[ok] = np.where(frac == 0.0, a, a + (b - a) * frac)
    return out


def quantile_mask(scores: np.ndarray, groups: np.ndarray, quantile: float) -> np.ndarray:
    """True where a sample's score is strictly above its group's ``quantile``.

    With distinct scores, a group of ``n`` keeps ``n - 1 - floor(quantile * (n - 1))``
    samples (about ``(1 - quantile) * n``; none from a group of one).
    """
    q = float(quantile)
    if not 0.0 <= q < 1.0:
        raise DeepCoreError(f"quantile must be in [0, 1), got {quantile}")
    thresholds = group_quantiles(scores, groups, q)
    return np.asarray(scores, dtype=np.float64) > thresholds[groups]


def ceil_budgets(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """``ceil(fraction * n)`` per group, capped at ``n`` (1e-9 slack against float noise)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    want = np.array([math.ceil(fraction * int(s) - 1e-9) for s in sizes], dtype=np.int64)
    return np.clip(want, 0, sizes)
