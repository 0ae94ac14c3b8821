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

    ``rank="stratified"``: a cluster's members in descending cosine similarity are cut
    into ``b`` consecutive strata of (nearly) equal size, ``b`` its budget, and one
    member is drawn from each; ``rank="systematic"``: along the same ordering, every
    ``n / b``-th member from a random start in ``[0, n / b)``. Both spread the kept
    members evenly from typical to atypical; the kept members score 1, the others 0.
    (The seed code's names; its source was not available to check against, so these
    are the textbook definitions of stratified and systematic sampling applied to the
    cosine ranking.)

    ``skip_singletons=True`` drops clusters of fewer than 2 members before budgeting
    (the seed code skips them): they keep nothing, and with ``select`` the exact
    total is shared among the other clusters.

Budget
    ``prune(signals, fraction)`` is the reference rule: ``ceil(fraction * n)`` per
    cluster, so the total exceeds ``fraction * N`` by less than the number of clusters.
    ``select`` (the registry contract) keeps exactly ``round(fraction * N)``: each
    cluster keeps the floor or the ceiling of ``fraction * n``, the ceilings going to
    the largest remainders (ties to the lower cluster id).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..budget import (
    budget_size,
    ceil_budgets,
    check_fraction,
    proportional_budgets,
    take_per_group,
)
from ..errors import DeepCoreError
from ..neighbors.kmeans import Clustering
from ..signals import Signals
from ..subset import Subset
from ._common import check_choice, check_int
from ._corpus import ClusterPart, CorpusMethod, CorpusResult, Precomputed, Target, ranked, tie_keys
from .base import register

RANKS = ("cossim", "random", "stratified", "systematic")


@register
class ClusterSubsample(CorpusMethod):
    """Keep a fraction of every spherical k-means cluster.

    Parameters
    ----------
    num_clusters : int, default=100
        k-means clusters.
    rank : {"cossim", "random", "stratified", "systematic"}, default="cossim"
        Rank members by cosine similarity to their centroid, at random, or sample
        them stratified or systematically along the cosine ranking.
    prune_type : {"diverse", "common"}, default="diverse"
        With ``cossim``: keep the least (``diverse``) or most (``common``) typical.
    skip_singletons : bool, default=False
        Keep nothing from clusters of fewer than 2 members.
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
        skip_singletons: bool = False,
        niter: int = 20,
    ) -> None:
        self.num_clusters = check_int("num_clusters", num_clusters, low=1)
        self.rank = check_choice("rank", rank, RANKS)
        self.prune_type = check_choice("prune_type", prune_type, ("diverse", "common"))
        self.skip_singletons = bool(skip_singletons)
        self.niter = check_int("niter", niter, low=1)

    @property
    def kind(self) -> str:
        if self.rank != "cossim":
            return "kept"
        return "hard" if self.prune_type == "diverse" else "easy"

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        check_fraction(fraction)
        x, clustering, seed = self._prepare(signals, fraction, seed, None, None)
        assert clustering is not None
        return self._keep(x, clustering, fraction, seed, None, exact=True).subset

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
        return self._keep(x, clustering, fraction, seed, precomputed, exact=False)

    def _keep(
        self,
        x: np.ndarray,
        clustering: Clustering,
        fraction: float,
        seed: int,
        precomputed: Precomputed | None,
        *,
        exact: bool,
    ) -> CorpusResult:
        sizes = clustering.sizes()
        if self.skip_singletons:
            sizes = np.where(sizes < 2, 0, sizes)
        if exact:
            total = budget_size(x.shape[0], fraction)
            if total > int(sizes.sum()):
                raise DeepCoreError(
                    f"ClusterSubsample cannot keep {total:,}: clusters of 2 or more hold "
                    f"{int(sizes.sum()):,} samples"
                )
            budgets = proportional_budgets(sizes, total)
        else:
            budgets = ceil_budgets(sizes, fraction)
        n = x.shape[0]
        columns = {"distance": clustering.distances, "tie": tie_keys(n, seed)}
        if self.rank == "random":
            columns["draw"] = np.random.default_rng(seed).random(n)
        parts = self.per_cluster(clustering.labels, clustering.num_clusters, columns, precomputed)
        if self.rank in ("cossim", "random"):
            scores = parts.scores
            idx = parts.take(budgets)
        else:  # the draws along every cluster's cosine ranking, on the driver
            scores = spread_sample(parts.order, parts.offsets, budgets, self.rank, seed=seed)
            idx = take_per_group(scores, clustering.labels, budgets, seed=seed)
        info = {
            "num_clusters": clustering.num_clusters,
            "rounding": "exact" if exact else "ceil per cluster",
            "skipped_clusters": int((clustering.sizes() > sizes).sum()),
            "clustering": clustering.fingerprint(),
        }
        return CorpusResult(
            subset=Subset(indices=idx, scores=scores, info=info),
            groups=clustering.labels,
            kind=self.kind,
        )

    def cluster_stats(
        self, group: int, rows: np.ndarray, columns: Mapping[str, np.ndarray]
    ) -> ClusterPart:
        """One cluster ranked by its score (``cossim``, ``random``: ties by ``tie``), or
        by descending cosine similarity, ties by index (``stratified``, ``systematic``:
        the ordering the driver's draws pick positions along). No statistics.
        """
        cos = 1.0 - columns["distance"].astype(np.float64)
        if self.rank in ("stratified", "systematic"):
            pos = np.lexsort((rows, -cos))
            return ClusterPart(group, rows[pos], cos[pos], np.zeros(0))
        if self.rank == "random":
            scores = columns["draw"].astype(np.float64)
        else:
            scores = -cos if self.prune_type == "diverse" else cos
        pos = ranked(scores, columns["tie"])
        return ClusterPart(group, rows[pos], scores[pos], np.zeros(0))


def spread_sample(
    order: np.ndarray, offsets: np.ndarray, budgets: np.ndarray, how: str, *, seed: int
) -> np.ndarray:
    """1.0 for the members a stratified or systematic sample keeps, 0.0 for the others.

    Group ``g``'s members are ``order[offsets[g]:offsets[g + 1]]``, in descending cosine
    similarity (ties by index); a group of ``n`` with budget ``b`` keeps one member per
    stratum ``[floor(i n / b), floor((i + 1) n / b))`` drawn uniformly
    (``"stratified"``), or the positions ``floor(u + i n / b)`` for one uniform ``u`` in
    ``[0, n / b)`` (``"systematic"``).
    """
    n = order.shape[0]
    k = budgets.shape[0]
    sizes = np.diff(offsets)
    starts = offsets[:-1]
    owner = np.repeat(np.arange(k), budgets)  # one entry per kept member
    i = np.arange(owner.size) - np.repeat(np.cumsum(budgets) - budgets, budgets)
    step = sizes[owner] / budgets[owner]
    rng = np.random.default_rng(seed)
    if how == "stratified":
        lo = np.floor(i * step).astype(np.int64)
        hi = np.floor((i + 1) * step).astype(np.int64)
        pos = lo + np.floor(rng.random(owner.size) * (hi - lo)).astype(np.int64)
    else:
        u = rng.random(k) * np.divide(sizes, budgets, out=np.ones(k), where=budgets > 0)
        pos = np.floor(u[owner] + i * step).astype(np.int64)
    scores = np.zeros(n)
    scores[order[starts[owner] + np.minimum(pos, sizes[owner] - 1)]] = 1.0
    return scores
