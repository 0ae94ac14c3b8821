"""SSP: self-supervised prototypes, the cluster-distance metric of Sorscher et al.

Paper
    Sorscher, Geirhos, Shekhar, Ganguli, Morcos, "Beyond neural scaling laws: beating
    power law scaling via data pruning", NeurIPS 2022 (Section 5, "self-supervised
    prototype metric").

Score
    Spherical k-means (faiss) on the embeddings (self-supervised ones in the paper);
    a sample's score is its cosine distance to the nearest centroid. ``keep="hard"``
    keeps the farthest (the least prototypical; the paper's choice when data is
    plentiful), ``keep="easy"`` the nearest (better when data is scarce). The
    returned scores are signed so that higher = kept first (``-distance`` for easy).

Budget
    With a fraction: the globally hardest (easiest) ``round(fraction * N)``, as in the
    paper. Without one, the ``quantile`` rule per cluster: keep a sample whose score
    is above its cluster's quantile (so about ``1 - quantile`` of every cluster).

Reference quirks
    The paper's k-means ran on normalised SWaV embeddings with Euclidean distance; on
    unit vectors that ranks exactly as the cosine distance used here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..budget import budget_size, take_top
from ..neighbors.kmeans import Clustering
from ..signals import Signals
from ..subset import Subset
from ._common import check_choice, check_int, check_unit
from ._corpus import (
    ClusterPart,
    CorpusMethod,
    CorpusResult,
    Precomputed,
    Target,
    above_quantile,
    ranked,
    tie_keys,
)
from .base import register


@register
class SSP(CorpusMethod):
    """Distance to the nearest self-supervised prototype (k-means centroid).

    Parameters
    ----------
    num_clusters : int, default=100
        k-means clusters (prototypes).
    keep : {"hard", "easy"}, default="hard"
        Keep the farthest from their prototype, or the nearest.
    quantile : float, optional
        Per-cluster quantile in ``[0, 1)`` used when no fraction is given.
    niter : int, default=20
        k-means iterations.

    Protocol: both protocols read the clean-view features.
    """

    summary = "distance to the nearest self-supervised prototype (Sorscher et al. 2022)"
    rule_option = "quantile"

    def __init__(
        self,
        *,
        num_clusters: int = 100,
        keep: str = "hard",
        quantile: float | None = None,
        niter: int = 20,
    ) -> None:
        self.num_clusters = check_int("num_clusters", num_clusters, low=1)
        self.keep = check_choice("keep", keep, ("hard", "easy"))
        self.quantile = None if quantile is None else check_unit("quantile", quantile)
        self.niter = check_int("niter", niter, low=1)

    @property
    def kind(self) -> str:
        return self.keep

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
        columns = {"distance": clustering.distances, "tie": tie_keys(n, seed)}
        parts = self.per_cluster(clustering.labels, clustering.num_clusters, columns, precomputed)
        scores = parts.scores
        if fraction is None:
            idx = parts.take(parts.stats[:, 0].astype(np.int64))
        else:  # the paper's global ranking, on the driver
            idx = take_top(scores, budget_size(n, fraction), seed=seed)
        dist = clustering.distances.astype(np.float64)
        info = {
            "mean_distance": float(dist.mean()),
            "mean_distance_kept": float(dist[idx].mean()) if idx.size else 0.0,
        }
        return CorpusResult(
            subset=Subset(indices=idx, scores=scores, info=info),
            groups=clustering.labels,
            kind=self.kind,
        )

    def cluster_stats(
        self, group: int, rows: np.ndarray, columns: Mapping[str, np.ndarray]
    ) -> ClusterPart:
        """One cluster: its signed distances, ranked, and how many clear its ``quantile``.

        Columns: ``distance`` and ``tie``. Stats: ``[members above the quantile]`` (0
        without a quantile), a prefix of the order as scores strictly above the
        threshold rank first.
        """
        dist = columns["distance"].astype(np.float64)
        scores = dist if self.keep == "hard" else -dist
        above = 0 if self.quantile is None else above_quantile(scores, self.quantile)
        pos = ranked(scores, columns["tie"])
        return ClusterPart(group, rows[pos], scores[pos], np.array([above], dtype=np.float64))
