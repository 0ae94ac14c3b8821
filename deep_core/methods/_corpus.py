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
  similarities elsewhere, instead of recomputing them here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..budget import check_fraction
from ..errors import DeepCoreError
from ..neighbors.kmeans import MAX_MEMORY_GB, Clustering, kmeans
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
    """

    clustering: Clustering | None = None
    max_similarity: np.ndarray | None = None
    similarities: Callable[..., np.ndarray] | None = None


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

    def group_name(self, g: int) -> str:
        if self.group_names is not None and 0 <= g < len(self.group_names):
            return self.group_names[g]
        return str(int(g))


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
        """The method's own keep rule on checked inputs (``clustering`` of ``x``)."""
        raise NotImplementedError

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


def features_of(signals: Signals, who: str) -> np.ndarray:
    """``signals.features`` as a 2-D array, with a clear error when missing."""
    signals.require(("features",), who=who)
    x = signals.features
    if x.shape[0] == 0:
        raise DeepCoreError(f"{who}: no samples to select from")
    return x
