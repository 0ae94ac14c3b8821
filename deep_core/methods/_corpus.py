"""The contract of the corpus (embedding-geometry) selection methods.

KMeansQuantile, SSP, SemDeDup, ClusterSubsample and DBP are ordinary registered
selection methods: ``select(signals, fraction, seed=...)`` reads ``signals.features``
and keeps exactly ``round(fraction * N)`` samples, so they run from
``main_label_noise.py`` like any other method.

A corpus tool also wants each method's own keep rule and the grouping behind it, so
every corpus method has :meth:`CorpusMethod.prune`, which returns a
:class:`CorpusResult` (the subset, the group of every sample, and whether the kept
samples are the "hard" or the "easy" ones):

- ``prune(signals, fraction)``: as ``select`` (ClusterSubsample: the reference's
  ``ceil(fraction * n)`` per cluster instead of an exact total);
- ``prune(signals)`` without a fraction: the method's threshold rule, e.g. the
  per-group ``quantile`` of KMeansQuantile and SSP, or SemDeDup's ``eps``.

Inputs beyond the signals are explicit keyword arguments:

- ``target`` (:class:`Target`): the reference set of KMeansQuantile; by default the
  signals themselves (the training set in ``main_label_noise.py``).
- ``precomputed`` (:class:`Precomputed`): a clustering and SemDeDup similarities that
  were computed before (cached, or on a Ray cluster), or the function that computes the
  similarities elsewhere, instead of recomputing them here, and the engine that runs
  the per-cluster step (:attr:`Precomputed.tasks`).

The per-cluster split
    DBP, KMeansQuantile, SSP and ClusterSubsample keep per group (cluster or class), so
    their rule is cut in two. :meth:`CorpusMethod.cluster_stats` sees one group at a
    time: its row ids and the per-row columns it needs (distances to the own centroid,
    tie-breaking keys, seeded draws, sliced by the driver), and returns a
    :class:`ClusterPart`: the group's members in keep order (best first), their scores
    and a few per-group statistics. The method's own global step then runs on the
    driver from the small per-group results (DBP's quotas from every cluster's
    complexity, a global ranking, the stratified draws) and takes a prefix, or chosen
    positions, of every group's order (:class:`ClusterParts`). A row map
    (:meth:`Tasks.map_rows`) computes the per-row scores that need the embeddings
    (KMeansQuantile's distances to the target centroids) chunk by chunk.

    :class:`LocalTasks` runs both in this process (the local engine, the default);
    :class:`~deep_core.corpus.ray_engine.RayEngine` runs them as Ray tasks grouped by
    cluster. Every call is a pure function of one group's (or chunk's) inputs and the
    results are merged by group id, so the kept set and the scores do not depend on
    the engine or on how groups are packed into tasks. Ties between equal scores are
    broken by the global seeded permutation of :func:`~deep_core.budget.rank`, handed
    to each group as the rows' positions in it (:func:`tie_keys`), so a group's order
    is exactly its part of :func:`~deep_core.budget.take_per_group`'s ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..budget import check_fraction, tie_permutation
from ..errors import DeepCoreError
from ..neighbors.kmeans import CHUNK_ROWS, MAX_MEMORY_GB, Clustering, kmeans
from ..signals import Signals
from ..subset import Subset
from ._common import check_seed
from .base import SelectionMethod


@dataclass(frozen=True)
class Target:
    """A reference set whose geometry scores the corpus (KMeansQuantile).

    Attributes
    ----------
    features : ndarray, shape (M, d)
        Embeddings in the same space as the corpus's ``signals.features``.
    labels : ndarray of int, shape (M,), optional
        Class ids in the same id space as ``signals.labels`` (supervised mode).
    """

    features: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = self.features
        if f.ndim != 2 or f.shape[0] == 0:
            raise DeepCoreError(f"target features must be a non-empty M x d array, got {f.shape}")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != (f.shape[0],):
                raise DeepCoreError(
                    f"target labels have shape {labels.shape} but target features have "
                    f"{f.shape[0]:,} rows"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise DeepCoreError(f"target labels must be integers, got dtype {labels.dtype}")
            object.__setattr__(self, "labels", labels.astype(np.int64))


@dataclass(frozen=True)
class Precomputed:
    """Stages computed earlier, reused instead of recomputed.

    Attributes
    ----------
    clustering : Clustering, optional
        The method's k-means of :meth:`CorpusMethod.clustering_data` (same options
        and seed).
    max_similarity : ndarray of float32, shape (N,), optional
        SemDeDup's per-sample ``M`` (see :mod:`deep_core.neighbors.dedup`) for that
        clustering and the method's processing order (SemDeDup, DBP's de-duplication).
    similarities : callable, optional
        Computes ``M`` instead of :func:`deep_core.methods.semdedup.max_similarities`
        (same signature and results), e.g. as tasks on a Ray cluster.
    tasks : Tasks, optional
        Runs the per-cluster step and the row maps (e.g. a
        :class:`~deep_core.corpus.ray_engine.RayEngine`); default :class:`LocalTasks`.
    """

    clustering: Clustering | None = None
    max_similarity: np.ndarray | None = None
    similarities: Callable[..., np.ndarray] | None = None
    tasks: Tasks | None = None


@dataclass(frozen=True)
class ClusterPart:
    """What :meth:`CorpusMethod.cluster_stats` returns for one group.

    Attributes
    ----------
    group : int
        The group (cluster or class) id.
    order : ndarray of int64, shape (n,)
        The group's row ids in keep order (kept first).
    scores : ndarray of float64, shape (n,)
        The per-sample scores of ``order``'s rows, in that order.
    stats : ndarray of float64, shape (s,)
        The method's per-group statistics (the same ``s`` for every group).
    """

    group: int
    order: np.ndarray
    scores: np.ndarray
    stats: np.ndarray


class ClusterParts:
    """The per-group results merged on the driver (see the module docstring).

    Attributes
    ----------
    scores : ndarray of float64, shape (N,)
        Every row's score.
    order : ndarray of int64, shape (N,)
        Group ``g``'s rows in keep order are ``order[offsets[g]:offsets[g + 1]]``.
    offsets : ndarray of int64, shape (G + 1,)
    stats : ndarray of float64, shape (G, s)
        Row ``g``: group ``g``'s statistics.
    """

    def __init__(self, parts: Sequence[ClusterPart], n: int, num_groups: int) -> None:
        by_group = sorted(parts, key=lambda p: p.group)
        if [p.group for p in by_group] != list(range(num_groups)):
            raise DeepCoreError("per-cluster results are missing or repeat a group")
        sizes = np.array([p.order.size for p in by_group], dtype=np.int64)
        self.offsets = np.zeros(num_groups + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.offsets[1:])
        if self.offsets[-1] != n:
            raise DeepCoreError(f"per-cluster results cover {self.offsets[-1]:,} of {n:,} rows")
        self.order = np.concatenate([p.order for p in by_group]).astype(np.int64, copy=False)
        self.scores = np.empty(n, dtype=np.float64)
        self.scores[self.order] = np.concatenate([p.scores for p in by_group])
        width = max((p.stats.size for p in by_group), default=0)
        self.stats = np.zeros((num_groups, width), dtype=np.float64)
        for p in by_group:
            self.stats[p.group, : p.stats.size] = p.stats

    @property
    def sizes(self) -> np.ndarray:
        """Rows per group."""
        return np.diff(self.offsets)

    def take(self, budgets: np.ndarray) -> np.ndarray:
        """The first ``budgets[g]`` rows of every group's order; sorted indices."""
        budgets = np.asarray(budgets, dtype=np.int64)
        if (budgets < 0).any() or (budgets > self.sizes).any():
            raise DeepCoreError("a per-group budget exceeds its group")
        starts = self.offsets[:-1]
        owner = np.repeat(np.arange(budgets.size), budgets)
        pos = np.arange(owner.size) - np.repeat(np.cumsum(budgets) - budgets, budgets)
        return np.sort(self.order[starts[owner] + pos]).astype(np.int64)


class Tasks(Protocol):
    """Runs the two kinds of work of the per-cluster split (the engine's side)."""

    def map_rows(
        self,
        fn: Callable[..., tuple[np.ndarray, ...]],
        x: np.ndarray,
        columns: Mapping[str, np.ndarray],
        *args: Any,
    ) -> tuple[np.ndarray, ...]:
        """``fn(rows, columns, *args)`` on every chunk of ``x``; outputs concatenated."""
        ...

    def map_clusters(
        self,
        method: CorpusMethod,
        groups: np.ndarray,
        num_groups: int,
        columns: Mapping[str, np.ndarray],
    ) -> ClusterParts:
        """``method.cluster_stats`` on every group ``0..num_groups-1``, merged."""
        ...


def group_members(groups: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ids by group (ascending within a group) and the offsets of each group."""
    order = np.argsort(groups, kind="stable").astype(np.int64)
    offsets = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=num_groups), out=offsets[1:])
    return order, offsets


def slice_columns(columns: Mapping[str, np.ndarray], rows: np.ndarray | slice) -> dict:
    """Every per-row column restricted to ``rows`` (what one group or chunk receives)."""
    return {name: np.asarray(col[rows]) for name, col in columns.items()}


class LocalTasks:
    """The local engine: the per-cluster step and the row maps in this process."""

    def __init__(self, *, chunk_rows: int = CHUNK_ROWS) -> None:
        self.chunk_rows = chunk_rows

    def map_rows(
        self,
        fn: Callable[..., tuple[np.ndarray, ...]],
        x: np.ndarray,
        columns: Mapping[str, np.ndarray],
        *args: Any,
    ) -> tuple[np.ndarray, ...]:
        n = x.shape[0]
        parts = [
            fn(x[lo : min(n, lo + self.chunk_rows)],
               slice_columns(columns, slice(lo, lo + self.chunk_rows)), *args)
            for lo in range(0, n, self.chunk_rows)
        ]  # fmt: skip
        return tuple(np.concatenate(p) for p in zip(*parts))

    def map_clusters(
        self,
        method: CorpusMethod,
        groups: np.ndarray,
        num_groups: int,
        columns: Mapping[str, np.ndarray],
    ) -> ClusterParts:
        order, offsets = group_members(groups, num_groups)
        parts = []
        for g in range(num_groups):
            rows = order[offsets[g] : offsets[g + 1]]
            parts.append(method.cluster_stats(g, rows, slice_columns(columns, rows)))
        return ClusterParts(parts, groups.shape[0], num_groups)


def tie_keys(n: int, seed: int) -> np.ndarray:
    """Every row's position in :func:`~deep_core.budget.tie_permutation` (int64).

    Sorting a group by descending score, then by this key, gives the group's rows in
    the order of the global :func:`~deep_core.budget.rank` with ``seed``.
    """
    keys = np.empty(n, dtype=np.int64)
    keys[tie_permutation(n, seed)] = np.arange(n)
    return keys


def ranked(scores: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Positions by descending ``scores``, equal scores by ascending ``ties`` (:func:`tie_keys`)."""
    return np.lexsort((ties, -np.asarray(scores, dtype=np.float64)))


@dataclass
class CorpusResult:
    """What a corpus method kept and how it grouped the samples.

    Attributes
    ----------
    subset : Subset
        Kept indices and per-sample scores (higher = kept first).
    groups : ndarray of int64, shape (N,)
        Cluster (or class) of every sample, the unit of the keep rule.
    kind : {"hard", "easy", "kept"}
        What the kept samples are: the hard ones, the easy ones, or neither (random).
    group_kind : {"cluster", "class"}, default="cluster"
        Whether groups are k-means clusters or the samples' own classes (labels).
    group_names : tuple of str, optional
        Display name of each group id (class names); default the id itself.
    """

    subset: Subset
    groups: np.ndarray
    kind: str
    group_kind: str = "cluster"
    group_names: tuple[str, ...] | None = None


class CorpusMethod(SelectionMethod):
    """Base of the embedding-geometry methods (see the module docstring)."""

    #: whether :meth:`prune` takes a ``target`` (KMeansQuantile)
    uses_target: bool = False
    #: cosine (spherical) or Euclidean k-means in :meth:`cluster`
    spherical: bool = True
    #: whether :meth:`prune` clusters the corpus itself before :meth:`_rule`
    clusters_corpus: bool = True
    #: the option that replaces a fraction in :meth:`prune` (None: a fraction is required)
    rule_option: str | None = None

    def required_signals(self) -> frozenset[str]:
        return frozenset({"features"})

    @property
    def kind(self) -> str:
        """What the kept samples are: "hard", "easy" or "kept" (neither, e.g. random)."""
        return "kept"

    def check_rule(self, fraction: float | None) -> None:
        """Error unless ``fraction`` or the method's own rule option is set."""
        if fraction is not None:
            check_fraction(fraction)
            return
        name = type(self).__name__
        if self.rule_option is None:
            raise DeepCoreError(f"{name} needs a fraction")
        if getattr(self, self.rule_option) is None:
            raise DeepCoreError(f"{name} needs a fraction or {self.rule_option}")

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        check_fraction(fraction)
        return self.prune(signals, fraction, seed=seed).subset

    def prune(
        self,
        signals: Signals,
        fraction: float | None = None,
        *,
        seed: int = 0,
        target: Target | None = None,
        precomputed: Precomputed | None = None,
        progress: bool = False,
    ) -> CorpusResult:
        """Select by ``fraction``, or by the method's own rule when it is None.

        The template of every corpus method: the checks (target, seed, rule, features),
        the clustering of the corpus (when :attr:`clusters_corpus`), then the method's
        :meth:`_rule`. ``progress`` shows tqdm bars for the long per-cluster passes.
        """
        x, clustering, seed = self._prepare(signals, fraction, seed, target, precomputed)
        result = self._rule(
            signals,
            x,
            clustering,
            fraction,
            seed=seed,
            target=target,
            precomputed=precomputed,
            progress=progress,
        )
        if clustering is not None:
            result.subset.info["num_clusters"] = clustering.num_clusters
            result.subset.info["clustering"] = clustering.fingerprint()
        return result

    def _prepare(
        self,
        signals: Signals,
        fraction: float | None,
        seed: int,
        target: Target | None,
        precomputed: Precomputed | None,
    ) -> tuple[np.ndarray, Clustering | None, int]:
        """The checks shared by every method; returns features, clustering and seed."""
        if target is not None and not self.uses_target:
            raise DeepCoreError(f"{type(self).__name__} does not use a target (reference) set")
        seed = check_seed(seed)
        self.check_rule(fraction)
        x = features_of(signals, type(self).__name__)
        clustering = self._clustering(x, seed, precomputed) if self.clusters_corpus else None
        return x, clustering, seed

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
        """The method's own keep rule on checked inputs (``clustering`` of ``x``).

        For the per-cluster methods: the columns the groups need, :meth:`per_cluster`,
        then the global step on the merged :class:`ClusterParts`.
        """
        raise NotImplementedError

    def cluster_stats(
        self, group: int, rows: np.ndarray, columns: Mapping[str, np.ndarray]
    ) -> ClusterPart:
        """The per-cluster step on one group (see the module docstring).

        Parameters
        ----------
        group : int
            The group id.
        rows : ndarray of int64
            Its row ids, ascending (empty for an empty group).
        columns : mapping of str to ndarray
            The per-row columns the method asked for, restricted to ``rows``.

        Must be a pure function of its arguments and the method's options: an engine
        may run it in another process, and again after losing a worker.
        """
        raise NotImplementedError

    def per_cluster(
        self,
        groups: np.ndarray,
        num_groups: int,
        columns: Mapping[str, np.ndarray],
        precomputed: Precomputed | None,
    ) -> ClusterParts:
        """:meth:`cluster_stats` on every group, by the engine of ``precomputed``."""
        return tasks_of(precomputed).map_clusters(self, groups, num_groups, columns)

    # -- clustering ---------------------------------------------------------------------
    def clustering_data(self, signals: Signals, target: Target | None = None) -> np.ndarray | None:
        """The rows this method runs k-means on (None when it runs none)."""
        return signals.features

    def clusters_for(self, target: Target | None = None) -> int:
        """The K of :meth:`cluster` (``num_clusters``; a method may derive it from ``target``)."""
        return int(self.num_clusters)  # type: ignore[attr-defined]

    def cluster(
        self,
        x: np.ndarray,
        *,
        seed: int = 0,
        target: Target | None = None,
        max_memory_gb: float | None = MAX_MEMORY_GB,
    ) -> Clustering:
        """k-means with this method's options (K from :meth:`clusters_for`, ``niter``).

        With fewer rows than K, every row gets its own cluster (K = N);
        ``info["num_clusters"]`` reports the K used. ``max_memory_gb`` caps the training
        sample (:func:`~deep_core.neighbors.kmeans.training_rows`).
        """
        return kmeans(
            x,
            min(self.clusters_for(target), x.shape[0]),
            spherical=self.spherical,
            niter=self.niter,  # type: ignore[attr-defined]
            seed=seed,
            max_memory_gb=max_memory_gb,
        )

    def _clustering(self, x: np.ndarray, seed: int, precomputed: Precomputed | None) -> Clustering:
        c = precomputed.clustering if precomputed is not None else None
        if c is None:
            return self.cluster(x, seed=seed)
        if c.labels.shape[0] != x.shape[0] or c.centroids.shape[1] != x.shape[1]:
            raise DeepCoreError(
                f"precomputed clustering is for {c.labels.shape[0]:,} x "
                f"{c.centroids.shape[1]} embeddings, not {x.shape[0]:,} x {x.shape[1]}"
            )
        return c


def above_quantile(scores: np.ndarray, quantile: float) -> int:
    """How many of one group's ``scores`` are strictly above the group's ``quantile``.

    :func:`~deep_core.budget.quantile_mask` on a single group, with the same float64
    arithmetic (linear interpolation as ``numpy.quantile``); ``quantile`` in ``[0, 1)``.
    """
    n = scores.size
    if n == 0:
        return 0
    s = np.sort(np.asarray(scores, dtype=np.float64))
    h = (n - 1) * float(quantile)
    lo = math.floor(h)
    frac = h - lo
    a, b = s[lo], s[min(lo + 1, n - 1)]
    threshold = a if frac == 0.0 else a + (b - a) * frac
    return int(n - np.searchsorted(s, threshold, side="right"))


def tasks_of(precomputed: Precomputed | None) -> Tasks:
    """The engine of ``precomputed`` (:attr:`Precomputed.tasks`), or :class:`LocalTasks`."""
    if precomputed is not None and precomputed.tasks is not None:
        return precomputed.tasks
    return LocalTasks()


def features_of(signals: Signals, who: str) -> np.ndarray:
    """``signals.features`` as a 2-D array, with a clear error when missing."""
    signals.require(("features",), who=who)
    x = signals.features
    if x.shape[0] == 0:
        raise DeepCoreError(f"{who}: no samples to select from")
    return x
