"""Moderate: keep the samples at a moderate distance from their class centre.

Paper: Xia et al. 2023, "Moderate Coreset: A Universal Method of Data Selection for
Real-World Data-Efficient Deep Learning" (ICLR).

Score
    Each sample's Euclidean distance ``d_i`` from the median feature of its (noisy)
    class (coordinate-wise median of the penultimate ``features``). Samples are ordered
    by ``d`` (ascending, ties in a seeded random order) and the ones whose rank is closest to
    the middle of that order are kept: a band of ``round(f * N)`` ranks centred on the
    median distance. ``scores`` are that closeness in rank: ``-(2 |2 r_i - (n - 1)| +
    [2 r_i > n - 1])`` for rank ``r_i`` among ``n`` samples, so the top ``k`` scores are
    exactly the centred band, a tie between the two edges going to the side nearer the
    class median feature. With ``balance=True`` ranks are taken within each class, so each
    class keeps a band centred on its own median distance.

Reference (Prune4ReL ``Moderate``, and the authors' code)
    Kept: distance to the per-class median feature by the *noisy* label, one ranking over
    all samples, the kept band ``sorted[round(N (0.5 - f/2)) : round(N (0.5 + f/2))]``.
    Fixed: the two independent ``round`` calls could keep one sample more or fewer than
    ``round(f N)``; here the band has exactly that size, centred (it can sit one rank from
    the reference's). The reference's median loop ran over ``range(#labels present)``,
    wrong when a class is empty; here every present class has its own median.
    ``balance`` was a no-op ("No balance version yet"); here it ranks per class.
"""

from __future__ import annotations

import numpy as np

from ..budget import rank
from ..signals import Signals
from ..subset import Subset
from ._common import row_blocks
from .base import SelectionMethod, register


def class_medians(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Coordinate-wise median feature of each class, float64 (num_classes, d); 0 if empty."""
    d = features.shape[1]
    medians = np.zeros((num_classes, d), dtype=np.float64)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    for c in range(num_classes):
        idx = order[bounds[c] : bounds[c + 1]]
        if idx.size:
            # one contiguous row per feature dimension: the median partitions rows, which
            # is several times faster than partitioning a strided column
            block = np.ascontiguousarray(np.asarray(features[idx]).T)
            medians[c] = np.median(block, axis=1, overwrite_input=True)
    return medians


def median_distances(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Euclidean distance of each sample to its class's median feature, float64 (N,)."""
    medians = class_medians(features, labels, num_classes)
    n, d = features.shape
    out = np.empty(n, dtype=np.float64)
    for rows in row_blocks(n, d):
        diff = np.asarray(features[rows], dtype=np.float64) - medians[labels[rows]]
        out[rows] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def band_scores(
    values: np.ndarray, groups: np.ndarray | None = None, *, seed: int | None = None
) -> np.ndarray:
    """Closeness of each value's rank to the middle rank (within its group).

    The top ``k`` of the result are the ``k`` middle ranks of ``values`` (ascending,
    ties as :func:`deep_core.budget.rank` with ``seed``); of two ranks equally far from
    the middle the lower wins.
    """
    n = values.shape[0]
    scores = np.empty(n, dtype=np.float64)
    order = rank(-values, seed=seed)  # ascending values
    if groups is None:
        _fill_band(scores, order)
        return scores
    g = groups[order]
    by_group = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.diff(g[by_group])) + 1
    for part in np.split(order[by_group], bounds):
        _fill_band(scores, part)
    return scores


def _fill_band(scores: np.ndarray, ordered: np.ndarray) -> None:
    n = ordered.size
    twice = 2 * np.arange(n, dtype=np.int64) - (n - 1)
    scores[ordered] = -(2 * np.abs(twice) + (twice > 0)).astype(np.float64)


@register
class Moderate(SelectionMethod):
    """Band of samples around the median distance to their class's median feature.

    Parameters
    ----------
    balance : bool, default=False
        Equal budgets per (noisy) class, each class's band centred on its own median.

    Protocol: both protocols read the clean view (the reference's ``eval_train``
    embeddings).
    """

    summary = "moderate distance to the class-median feature: band around the median distance"

    def __init__(self, *, balance: bool = False) -> None:
        self.balance = balance

    def required_signals(self) -> frozenset[str]:
        return frozenset({"features"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        labels = signals.labels
        dist = median_distances(signals.features, labels, signals.num_classes)
        scores = band_scores(dist, labels if self.balance else None, seed=seed)
        subset = self.take(signals, scores, fraction, seed=seed)
        kept = dist[subset.indices]
        subset.info["median_distance"] = float(np.median(dist)) if dist.size else 0.0
        subset.info["kept_distance_range"] = (
            [float(kept.min()), float(kept.max())] if kept.size else []
        )
        return subset
