"""Per-group keep rules shared by the corpus methods (groups = clusters or classes).

The global and per-class budgets of the label-noise methods live in
:mod:`deep_core.budget`; the corpus methods need two more rules, all per group:

- :func:`quantile_mask`: keep a sample whose score is above its group's quantile
  (the "Data Pruning" tool's rule; the CLI's ``--quantile``).
- :func:`ceil_budgets`: ``ceil(fraction * n)`` per group.

Splitting an exact total over groups (:func:`deep_core.budget.proportional_budgets`) and
keeping the top of each group (:func:`deep_core.budget.take_per_group`) live with the
other budgeting rules in :mod:`deep_core.budget`.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DeepCoreError


def group_offsets(groups: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable grouping: ``order[offsets[g]:offsets[g + 1]]`` are group ``g``'s positions."""
    order = np.argsort(groups, kind="stable").astype(np.int64)
    offsets = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=num_groups), out=offsets[1:])
    return order, offsets


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
