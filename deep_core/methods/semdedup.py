"""SemDeDup: remove semantic near-duplicates within k-means clusters.

Paper
    Abbas, Tirumala, Simig, Ganguli, Morcos, "SemDeDup: Data-efficient learning at
    web-scale through semantic deduplication", 2023 (facebookresearch/SemDeDup).

Score
    Spherical k-means (faiss) on the embeddings; within each cluster the members are
    put in order (``which_to_keep``: ``hard`` = farthest from the centroid first,
    ``easy`` = nearest first, ``random`` = shuffled) and ``M[j]`` is member ``j``'s
    largest cosine similarity to an *earlier* member. ``j`` is removed when
    ``M[j] >= 1 - eps``. The score is ``-M`` (higher = kept first; a cluster's first
    member scores 1).

Direction
    Keeps one representative of every group of near-duplicates: the hardest (or
    easiest, or a random) one.

Budget
    ``prune(signals)`` applies ``eps``. With a fraction, the ``eps`` that keeps
    ``round(fraction * N)`` is found by bisection over the sorted ``M`` (the kept count
    is a step function of ``eps`` whose steps are the values of ``M``, so the search is
    exact); ties at the boundary are broken by a permutation drawn from the seed. The
    ``eps`` found is logged in ``info["eps"]``.

Boundaries
    Near-duplicates on two sides of a k-means boundary sit in different clusters and
    the reference never compares them. By default a row whose second-nearest centroid
    is within ``2 sqrt(2 eps)`` (cosine distance) of its own is also compared in that
    cluster, with one global processing order, so every pair with ``cos >= 1 - eps``
    whose clusters are each other's nearest other centroid is found (the bound is
    proved in :func:`~deep_core.neighbors.dedup.boundary_band`). With a fraction, the
    band is that of the eps found on the within-cluster maxima (cross-boundary pairs
    only lower the final eps, so that band suffices). ``within_cluster_only=True`` is
    the reference's per-cluster comparison, for exact reproduction. The extra work
    grows with the band: 1.3x the per-cluster time at eps 0.001, 1.7x at 0.005, 7.4x
    at 0.02 (200,000 x 64, K = 200; a cluster hosts the visitors of all its
    neighbours), so for large eps ``within_cluster_only`` may be the better trade.

Reference quirks
    Kept: removal is against any earlier member, removed or not, and ``random`` /
    ``easy`` only change the order. Fixed: the reference builds the n x n matrix of a
    cluster (its "advanced" variant splits big clusters into parts and misses
    duplicates across parts); here the maxima are exact in blocks of any size. The
    test is ``>=`` instead of ``>`` and exact repeats count as similarity 1, so
    ``eps = 0`` removes exactly the identical embeddings (the reference's ``> 1``
    removes nothing, and float rounding makes identical pairs land on either side of 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import numpy as np

from ..budget import budget_size, take_top
from ..errors import DeepCoreError
from ..neighbors.dedup import (
    SharedRows,
    WhichToKeep,
    boundary_band,
    boundary_visitors,
    cluster_order,
    earlier_max_similarity,
)
from ..neighbors.kmeans import Clustering, unit_rows
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from ._corpus import CorpusMethod, CorpusResult, Precomputed, Target
from .base import register

#: a de-duplication threshold: a cosine distance in ``[0, 2)``
CosineEps = Annotated[float, Interval(0, 2, hi_open=True)]


def max_similarities(
    x: np.ndarray,
    clustering: Clustering,
    *,
    which_to_keep: str,
    seed: int,
    band: float | None = None,
    workers: int = 1,
    progress: bool = False,
    clusters: np.ndarray | None = None,
) -> np.ndarray:
    """SemDeDup's ``M`` for every row (NaN outside ``clusters`` when given).

    ``band`` (cosine distance, :func:`~deep_core.neighbors.dedup.boundary_band`) also
    compares rows near a boundary in their neighbouring cluster; None: within clusters.
    """
    visitors = boundary_visitors(x, clustering, band) if band is not None else None
    order, offsets = cluster_order(
        clustering, which_to_keep=which_to_keep, seed=seed, visitors=visitors
    )
    if workers > 1:
        with SharedRows(x.shape) as shared:
            unit_rows(x, out=shared.array)
            return earlier_max_similarity(
                shared, order, offsets, clusters=clusters, workers=workers, progress=progress
            )
    return earlier_max_similarity(
        unit_rows(x), order, offsets, clusters=clusters, progress=progress
    )


def eps_for_count(m: np.ndarray, n_keep: int) -> float | None:
    """The ``eps`` whose rule ``M >= 1 - eps`` removes all but the ``n_keep`` lowest ``M``.

    None when nothing is removed (any ``eps`` below ``1 - max(M)`` keeps everything).
    """
    if n_keep >= m.size:
        return None
    s = np.sort(m.astype(np.float64))
    return float(max(0.0, 1.0 - s[n_keep]))


@register
class SemDeDup(CorpusMethod):
    """Semantic de-duplication within spherical k-means clusters.

    Parameters
    ----------
    num_clusters : int, default=100
        k-means clusters (the paper uses 50,000 for LAION-440M).
    eps : float, optional
        Cosine-distance threshold in ``[0, 2)``: a member is removed when its
        similarity to an earlier member is at least ``1 - eps``. Used when no fraction
        is given.
    which_to_keep : {"hard", "easy", "random"}, default="hard"
        Processing order within a cluster (see the module docstring).
    within_cluster_only : bool, default=False
        Compare members of one cluster only, as the reference (exact reproduction);
        by default rows near a boundary are also compared in the neighbouring cluster.
    niter : int, default=20
        k-means iterations.
    workers : int, default=1
        Worker processes for the per-cluster similarities.

    Protocol: both protocols read the clean-view features.
    """

    summary = "semantic de-duplication within k-means clusters (Abbas et al. 2023)"
    rule_option = "eps"

    def __init__(
        self,
        *,
        num_clusters: Annotated[int, Interval(1)] = 100,
        eps: CosineEps | None = None,
        which_to_keep: WhichToKeep = "hard",
        within_cluster_only: bool = False,
        niter: Annotated[int, Interval(1)] = 20,
        workers: Annotated[int, Interval(1)] = 1,
    ) -> None:
        self.num_clusters = num_clusters
        self.eps = None if eps is None else float(eps)
        self.which_to_keep = which_to_keep
        self.within_cluster_only = bool(within_cluster_only)
        self.niter = niter
        self.workers = workers

    @property
    def kind(self) -> str:
        return {"hard": "hard", "easy": "easy"}.get(self.which_to_keep, "kept")

    def _rule(
        self,
        signals: Signals,
        x: np.ndarray,
        clustering: Clustering | None,
        fraction: float | None,
        *,
        seed: int,
        target: Target | None,
        precomputed: Precomputed | None,
        progress: bool,
    ) -> CorpusResult:
        assert clustering is not None
        n = x.shape[0]
        m = precomputed.max_similarity if precomputed is not None else None
        if m is None:
            fn = precomputed.similarities if precomputed is not None else None
            m = self._max_similarities(x, clustering, fraction, seed, progress, fn)
        elif m.shape != (n,) or np.isnan(m).any():
            raise DeepCoreError("precomputed max_similarity must cover every sample")
        scores = -m.astype(np.float64)
        if fraction is None:
            eps = float(self.eps)  # type: ignore[arg-type]
            idx = np.flatnonzero(m < 1.0 - eps).astype(np.int64)
        else:
            n_keep = budget_size(n, fraction)
            idx = take_top(scores, n_keep, seed=seed)
            eps = eps_for_count(m, n_keep)
        info = {
            "eps": eps,
            "within_cluster_only": self.within_cluster_only,
            "removed": int(n - idx.size),
            "exact_duplicates": int((m >= 1.0).sum()),
        }
        return CorpusResult(
            subset=Subset(indices=idx, scores=scores, info=info),
            groups=clustering.labels,
            kind=self.kind,
        )

    def _max_similarities(
        self,
        x: np.ndarray,
        clustering: Clustering,
        fraction: float | None,
        seed: int,
        progress: bool,
        fn: Callable[..., np.ndarray] | None,
    ) -> np.ndarray:
        """``M`` within clusters, then across boundaries at the band of the final eps."""
        compute = fn or max_similarities

        def run(band: float | None) -> np.ndarray:
            return compute(
                x,
                clustering,
                which_to_keep=self.which_to_keep,
                seed=seed,
                band=band,
                workers=self.workers,
                progress=progress,
            )

        if self.within_cluster_only:
            return run(None)
        if fraction is None:
            return run(boundary_band(self.eps))  # type: ignore[arg-type]
        # Cross-boundary pairs only raise M, so the eps that keeps the count afterwards
        # is at most the within-cluster one: its band catches every pair that counts.
        m = run(None)
        eps = eps_for_count(m, budget_size(x.shape[0], fraction))
        return m if eps is None else run(boundary_band(eps))
