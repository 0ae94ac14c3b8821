"""DBP: density-based pruning, per-cluster budgets from concept complexity.

Paper
    Abbas, Rusak, Tirumala, Brendel, Chaudhuri, Morcos, "Effective pruning of
    web-scale datasets based on complexity of concept clusters", ICLR 2024.

Score
    Spherical k-means (faiss) on the embeddings (after SemDeDup with ``dedup_eps``, as
    the paper prescribes; the de-duplication uses the same clustering, processing
    members farthest-first, and by default also compares across cluster boundaries as
    :mod:`deep_core.methods.semdedup` does; ``within_cluster_only`` is the reference's).
    For cluster ``j`` with ``n_j`` (surviving) members:

    - ``d_intra(j)``: mean cosine distance of its members to its centroid;
    - ``d_inter(j)``: mean cosine distance from its centroid to its ``num_nns``
      nearest other centroids;
    - complexity ``C_j = d_inter(j) * d_intra(j)``, ``p = softmax(C / temperature)``.

    ``density`` picks the ``C_j`` fed to the softmax, as the reference's
    ``--density``: ``"complexity"`` (``dinter*dintra``, the paper's method and the
    default here), ``"clustersize"`` (``C_j = n_j``, the number of members: with the
    default temperature nearly all of the budget goes to the largest clusters, as in
    the reference) or ``"uniform"`` (``C_j = 1``: ``p_j = 1 / K``, the reference's
    default, i.e. cluster-balanced pruning). Empty clusters get no share in any mode.

    With ``N`` samples to keep and ``K`` clusters (``num_clusters``), the quotas solve
    ``x_j = clip(N * p_j + lambda, lb_j, n_j)`` with ``sum(x) = N`` (the reference's
    quadratic program, whose solution has exactly this form; ``lambda`` is found by
    bisection), where ``lb_j = min(m, n_j - 1)`` and
    ``m = int(N / K * cls_bal_ratio)``. Real quotas become integers by largest
    remainder (floor, then one more to the largest fractional parts, ties to the lower
    cluster id), which keeps the bounds and the exact total.

    The per-cluster statistics and every cluster's ranking come from
    :meth:`DBP.cluster_stats` (one cluster at a time, on either engine); the quotas are
    the global step on the driver.

    Each cluster keeps its ``x_j`` hardest members (farthest from the centroid;
    ``which_to_keep="easy"``: nearest; ``"random"``: a seeded draw). The per-sample
    score is that within-cluster key (cosine distance, its negative, or the draw);
    samples removed as duplicates score below every other.

Budget
    Always a fraction (``round(fraction * N_total)``); it must not exceed what the
    de-duplication leaves.

Reference quirks
    Fixed: ``np.rint`` of the QP solution could miss the total by a few samples (here
    exact), and a cluster that the de-duplication emptied gets quota 0 instead of a
    NaN complexity replaced by the mean. Deliberately different: the reference sets
    the lower bound to 1 when ``cls_bal_ratio`` is 0; here the formula is followed
    (``m = 0``). One k-means serves both the de-duplication and DBP.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..budget import budget_size
from ..errors import DeepCoreError
from ..neighbors.dedup import WHICH_TO_KEEP, boundary_band
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
    ranked,
    tie_keys,
)
from .base import register
from .semdedup import check_eps, max_similarities


def cluster_complexity(
    clustering: Clustering, keep: np.ndarray, num_nns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sizes, d_intra, d_inter)`` per cluster over the rows where ``keep`` is True.

    The whole-array form of what :meth:`DBP.cluster_stats` computes cluster by
    cluster. ``d_intra`` is NaN for an empty cluster.
    """
    k = clustering.num_clusters
    labels = clustering.labels[keep]
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    total = np.bincount(labels, weights=clustering.distances[keep], minlength=k)
    return sizes, intra_distances(sizes, total), inter_distances(clustering.centroids, num_nns)


def intra_distances(sizes: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``d_intra``: a cluster's summed member distances over its size (NaN when empty)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, totals / np.maximum(sizes, 1), np.nan)


def inter_distances(centroids: np.ndarray, num_nns: int) -> np.ndarray:
    """``d_inter``: mean cosine distance of each centroid to its ``num_nns`` nearest others."""
    k = centroids.shape[0]
    nns = min(num_nns, k - 1)
    import faiss  # loaded on first use: listing the methods does not need it

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sim, ids = index.search(np.ascontiguousarray(centroids, dtype=np.float32), nns + 1)
    others = ids != np.arange(k)[:, None]
    # Drop the centroid itself (or, with duplicate centroids, the farthest extra one).
    cols = np.argsort(~others, axis=1, kind="stable")[:, :nns]
    dist = 1.0 - np.take_along_axis(sim, cols, axis=1).astype(np.float64)
    return dist.mean(axis=1)


def complexity_probs(d_intra: np.ndarray, d_inter: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(d_inter * d_intra / temperature)`` over the non-empty (finite) clusters."""
    z = d_inter * d_intra / temperature
    ok = np.isfinite(z)
    p = np.zeros_like(z)
    if ok.any():
        e = np.exp(z[ok] - z[ok].max())
        p[ok] = e / e.sum()
    return p


DENSITIES = ("complexity", "clustersize", "uniform")


def density_probs(
    density: str,
    sizes: np.ndarray,
    d_intra: np.ndarray,
    d_inter: np.ndarray,
    temperature: float,
) -> np.ndarray:
    """``softmax(C / temperature)`` over the non-empty clusters for a ``density`` mode."""
    if density == "complexity":
        return complexity_probs(d_intra, d_inter, temperature)
    c = sizes.astype(np.float64) if density == "clustersize" else np.ones(sizes.size)
    z = np.where(sizes > 0, c / temperature, -np.inf)
    p = np.zeros(sizes.size)
    ok = sizes > 0
    if ok.any():
        e = np.exp(z[ok] - z[ok].max())
        p[ok] = e / e.sum()
    return p


def lower_bounds(
    sizes: np.ndarray, total: int, num_clusters: int, cls_bal_ratio: float
) -> np.ndarray:
    """``lb_j = min(m, n_j - 1)`` with ``m = int(total / K * cls_bal_ratio)``, at least 0."""
    m = int(total / num_clusters * cls_bal_ratio)
    return np.maximum(np.minimum(m, sizes - 1), 0).astype(np.int64)


def quotas(
    probs: np.ndarray, sizes: np.ndarray, total: int, lower: np.ndarray
) -> tuple[np.ndarray, float]:
    """Integer quotas ``x_j = clip(total * p_j + lambda, lower_j, n_j)`` summing to ``total``.

    Returns the quotas and ``lambda`` (found by bisection).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    lower = np.asarray(lower, dtype=np.int64)
    if int(lower.sum()) > total:
        raise DeepCoreError(
            f"DBP lower bounds need {int(lower.sum()):,} samples but only {total:,} are kept; "
            "lower cls_bal_ratio"
        )
    if total > int(sizes.sum()):
        raise DeepCoreError(f"DBP cannot keep {total:,} of {int(sizes.sum()):,} samples")
    target = total * np.asarray(probs, dtype=np.float64)
    lo = float(np.min(lower - target))
    hi = float(np.max(sizes - target))

    def kept(lam: float) -> float:
        return float(np.clip(target + lam, lower, sizes).sum())

    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if kept(mid) < total:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            break
    x = np.clip(target + hi, lower, sizes)
    base = np.clip(np.floor(x + 1e-9).astype(np.int64), lower, sizes)
    left = total - int(base.sum())
    ids = np.arange(x.size)
    if left > 0:
        frac = np.where(base < sizes, x - base, -np.inf)
        base[np.lexsort((ids, -frac))[:left]] += 1
    elif left < 0:
        frac = np.where(base > lower, x - base, np.inf)
        base[np.lexsort((ids, frac))[:-left]] -= 1
    return base, hi


@register
class DBP(CorpusMethod):
    """Density-based pruning: complexity-weighted per-cluster quotas.

    Parameters
    ----------
    num_clusters : int, default=100
        k-means clusters (at least 2).
    num_nns : int, default=20
        Nearest other centroids averaged in ``d_inter``.
    temperature : float, default=0.5
        Softmax temperature on the complexities.
    cls_bal_ratio : float, default=0.5
        Lower-bound ratio in ``[0, 1]`` (``m = int(N / K * cls_bal_ratio)``).
    which_to_keep : {"hard", "easy", "random"}, default="hard"
        Which members of a cluster fill its quota.
    density : {"complexity", "clustersize", "uniform"}, default="complexity"
        What the softmax weighs (see the module docstring).
    dedup_eps : float, optional
        Run SemDeDup with this ``eps`` first (the paper does).
    within_cluster_only : bool, default=False
        The de-duplication compares members of one cluster only, as the reference; by
        default also across boundaries (see :mod:`deep_core.methods.semdedup`).
    niter : int, default=20
        k-means iterations.
    workers : int, default=1
        Worker processes for the de-duplication.

    Protocol: both protocols read the clean-view features.
    """

    summary = "density-based pruning: per-cluster quotas from complexity (Abbas, Rusak et al. 2024)"

    def __init__(
        self,
        *,
        num_clusters: int = 100,
        num_nns: int = 20,
        temperature: float = 0.5,
        cls_bal_ratio: float = 0.5,
        which_to_keep: str = "hard",
        density: str = "complexity",
        dedup_eps: float | None = None,
        within_cluster_only: bool = False,
        niter: int = 20,
        workers: int = 1,
    ) -> None:
        self.num_clusters = check_int("num_clusters", num_clusters, low=2)
        self.num_nns = check_int("num_nns", num_nns, low=1)
        t = float(temperature)
        if not t > 0.0:
            raise DeepCoreError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = t
        self.cls_bal_ratio = check_unit("cls_bal_ratio", cls_bal_ratio, closed_high=True)
        self.which_to_keep = check_choice("which_to_keep", which_to_keep, WHICH_TO_KEEP)
        self.density = check_choice("density", density, DENSITIES)
        self.dedup_eps = check_eps(dedup_eps, "dedup_eps")
        self.within_cluster_only = bool(within_cluster_only)
        self.niter = check_int("niter", niter, low=1)
        self.workers = check_int("workers", workers, low=1)

    @property
    def kind(self) -> str:
        return {"hard": "hard", "easy": "easy"}.get(self.which_to_keep, "kept")

    def _dedup_band(self) -> float | None:
        """The de-duplication's cross-boundary band (None: within clusters only)."""
        if self.within_cluster_only or self.dedup_eps is None:
            return None
        return boundary_band(self.dedup_eps)

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
        n = x.shape[0]
        n_keep = budget_size(n, fraction)
        k = clustering.num_clusters
        if k < 2:
            raise DeepCoreError("DBP needs at least 2 clusters (and 2 samples)")
        survive = np.ones(n, dtype=bool)
        if self.dedup_eps is not None:
            m = precomputed.max_similarity if precomputed is not None else None
            if m is None:
                compute = precomputed.similarities if precomputed is not None else None
                m = (compute or max_similarities)(
                    x,
                    clustering,
                    which_to_keep="hard",
                    seed=seed,
                    band=self._dedup_band(),
                    workers=self.workers,
                    progress=progress,
                )
            survive = m < 1.0 - self.dedup_eps
        if n_keep > int(survive.sum()):
            raise DeepCoreError(
                f"DBP: de-duplication left {int(survive.sum()):,} samples, fewer than the "
                f"{n_keep:,} to keep; lower dedup_eps or the fraction"
            )
        columns = {"distance": clustering.distances, "tie": tie_keys(n, seed)}
        if not survive.all():
            columns["survive"] = survive
        if self.which_to_keep == "random":
            columns["draw"] = np.random.default_rng(seed).random(n)
        parts = self.per_cluster(clustering.labels, k, columns, precomputed)
        sizes = parts.stats[:, 0].astype(np.int64)
        d_intra = intra_distances(sizes, parts.stats[:, 1])
        d_inter = inter_distances(clustering.centroids, self.num_nns)
        probs = density_probs(self.density, sizes, d_intra, d_inter, self.temperature)
        lower = lower_bounds(sizes, n_keep, k, self.cls_bal_ratio)
        budget, lam = quotas(probs, sizes, n_keep, lower)
        idx = parts.take(budget)  # survivors come first in every cluster's order
        scores = parts.scores
        if not survive.all():
            scores[~survive] = parts.stats[:, 2].min() - 1.0 if survive.any() else -1.0
        info = {
            "removed_duplicates": int(n - survive.sum()),
            "density": self.density,
            "lambda": lam,
            "min_quota": int(budget.min()),
            "max_quota": int(budget.max()),
            "lower_bound_m": int(n_keep / k * self.cls_bal_ratio),
        }
        return CorpusResult(
            subset=Subset(indices=idx, scores=scores, info=info),
            groups=clustering.labels,
            kind=self.kind,
        )

    def cluster_stats(
        self, group: int, rows: np.ndarray, columns: Mapping[str, np.ndarray]
    ) -> ClusterPart:
        """One cluster: its survivors' count and summed distance, and its keep order.

        Columns: ``distance`` (to the centroid), ``tie`` (:func:`tie_keys`), ``survive``
        (absent: no duplicates) and ``draw`` (``which_to_keep="random"``). Stats:
        ``[survivors, sum of their distances, their lowest score]``; the order puts
        the survivors by descending score first, then the duplicates (whose scores the
        driver sets below every survivor's), ties by the tie keys.
        """
        dist = columns["distance"]
        alive = columns["survive"] if "survive" in columns else np.ones(rows.size, dtype=bool)
        if self.which_to_keep == "random":
            scores = columns["draw"].astype(np.float64)
        else:
            scores = dist.astype(np.float64)
            if self.which_to_keep == "easy":
                scores = -scores
        # one sequential sum in row order, as a bincount over the whole array adds
        ones = np.zeros(int(alive.sum()), dtype=np.intp)
        total = np.bincount(ones, weights=dist[alive], minlength=1)[0]
        stats = np.array([ones.size, total, scores[alive].min(initial=np.inf)])
        pos = ranked(np.where(alive, scores, -np.inf), columns["tie"])
        return ClusterPart(group, rows[pos], scores[pos], stats)
