"""ClusterSubsample: the same fraction of every k-means cluster.

Reference
    The per-cluster sampling of the SemDeDup code's extensions (cluster-balanced
    pruning): spherical k-means, then ``ceil(fraction * n)`` members of every cluster
    of ``n``, chosen by their cosine similarity to the centroid or at random.

Score
    ``rank="cossim"``: cosine similarity to the own centroid, signed by ``prune_type``:
    ``"common"`` keeps the most typical members (highest similarity first),
    ``"diverse"`` the least typical (lowest similarity first). ``rank="random"``: a
    uniform draw from the seed (``prune_type`` is then irrelevant). Higher = kept
    first; ties are broken by a permutation drawn from the seed.

Budget
    ``prune(signals, fraction)`` is the reference rule: ``ceil(fraction * n)`` per
    cluster, so the total exceeds ``fraction * N`` by less than the number of clusters.
    ``select`` (the registry contract) keeps exactly ``round(fraction * N)``: each
    cluster keeps the floor or the ceiling of ``fraction * n``, the ceilings going to
    the largest remainders (ties to the lower cluster id).
"""

from __future__ import annotations

import numpy as np

from ..budget import (
    budget_size,
    ceil_budgets,
    check_fraction,
    proportional_budgets,
    take_per_group,
)
from ..neighbors.kmeans import Clustering
from ..signals import Signals
from ..subset import Subset
from ._common import check_choice, check_int
from ._corpus import CorpusMethod, CorpusResult, Precomputed, Target
from .base import register


@register
class ClusterSubsample(CorpusMethod):
    """Keep a fraction of every spherical k-means cluster.

    Parameters
    ----------
    num_clusters : int, default=100
        k-means clusters.
    rank : {"cossim", "random"}, default="cossim"
        Rank members by cosine similarity to their centroid, or at random.
    prune_type : {"diverse", "common"}, default="diverse"
        With ``cossim``: keep the least (``diverse``) or most (``common``) typical.
    niter : int, default=20
        k-means iterations.

    Protocol: both protocols read the clean-view features.
    """

    summary = "the same fraction of every k-means cluster, by cosine to the centroid or random"

    def __init__(
        self,
        *,
        num_clusters: int = 100,
        rank: str = "cossim",
        prune_type: str = "diverse",
        niter: int = 20,
    ) -> None:
        self.num_clusters = check_int("num_clusters", num_clusters, low=1)
        self.rank = check_choice("rank", rank, ("cossim", "random"))
        self.prune_type = check_choice("prune_type", prune_type, ("diverse", "common"))
        self.niter = check_int("niter", niter, low=1)

    @property
    def kind(self) -> str:
        if self.rank == "random":
            return "kept"
        return "hard" if self.prune_type == "diverse" else "easy"

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        check_fraction(fraction)
        x, clustering, seed = self._prepare(signals, fraction, seed, None, None)
        assert clustering is not None
        return self._keep(x, clustering, fraction, seed, exact=True).subset

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
        assert clustering is not None and fraction is not None
        return self._keep(x, clustering, fraction, seed, exact=False)

    def _keep(
        self, x: np.ndarray, clustering: Clustering, fraction: float, seed: int, *, exact: bool
    ) -> CorpusResult:
        if self.rank == "random":
            scores = np.random.default_rng(seed).random(x.shape[0])
        else:
            cos = 1.0 - clustering.distances.astype(np.float64)
            scores = -cos if self.prune_type == "diverse" else cos
        sizes = clustering.sizes()
        if exact:
            budgets = proportional_budgets(sizes, budget_size(x.shape[0], fraction))
        else:
            budgets = ceil_budgets(sizes, fraction)
        idx = take_per_group(scores, clustering.labels, budgets, seed=seed)
        info = {
            "num_clusters": clustering.num_clusters,
            "rounding": "exact" if exact else "ceil per cluster",
            "clustering": clustering.fingerprint(),
        }
        return CorpusResult(
            subset=Subset(indices=idx, scores=scores, info=info),
            groups=clustering.labels,
            kind=self.kind,
        )
