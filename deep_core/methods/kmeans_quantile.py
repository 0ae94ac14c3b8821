"""KMeansQuantile: hard or easy samples by distances to the centroids of a target set.

Reference
    The "Data Pruning" tool (hard/easy samples of an image corpus, after Sorscher et
    al. 2022, "Beyond neural scaling laws"). Two folders: the *corpus* to select from
    and a *target* set whose geometry defines what is hard. In this package the
    target is a :class:`~deep_core.methods._corpus.Target` passed to ``prune``/``select``
    (the CLI's ``--data-path``); by default it is the corpus itself (in
    ``main_label_noise.py``: the training set, with its noisy labels).

Score (Euclidean distances throughout)
    Unsupervised: Euclidean k-means on the target embeddings (``num_clusters``); each
    corpus sample joins its nearest centroid. With ``d(1) <= d(2) <= d(3)`` its
    distances to the three nearest centroids, hard = ``d(1) - d(2) - d(3)`` (needs
    K >= 3: near a boundary ``d(1)`` approaches ``d(2)``), easy = ``-d(1)``.
    Supervised: the centroids are the target's class means and each corpus sample is
    grouped by its own class. With ``d_own`` its distance to its class mean and
    ``d'(1) <= d'(2)`` the distances to the two nearest *other* class means,
    hard = ``d_own - d'(1) - d'(2)`` (needs 3 classes), easy = ``-d_own``. Corpus and
    target must have the same classes. Higher = kept first.

Seed options
    ``num_clusters=0`` is one k-means cluster per target class (the tool's advice:
    "the number of classes in the target dataset is a good choice"); it needs target
    labels. ``centroids="class_means"`` scores unsupervised mode against the target's
    class means instead of k-means centroids: each corpus sample is grouped by its
    *nearest* class mean (not its own label, which unsupervised mode ignores) and
    scored ``d(1) - d(2) - d(3)`` or ``-d(1)`` over the class means. The tool's source
    was not available to check these two against; they are inferred from its README
    and this module's supervised mode, which uses the same class means.

Budget
    The tool's rule (no fraction): keep the samples whose score is above their group's
    ``quantile`` (default 0.9, about 10% of every group); groups are clusters or
    classes. With a fraction: exactly ``round(fraction * N)``, shared over the groups
    in proportion to their sizes (the exact-count version of the same rule).

Speed and precision
    One pass over the corpus, read once in chunks: the k-means is trained on its
    sample of the target (no assignment of the target's rows when the target is the
    corpus itself), then one faiss search gives every corpus row its nearest
    centroids with float32 distances, as the tool's faiss + numpy pipeline. Extra
    memory is O(N) for the scores and ids beyond the chunk in flight. Supervised mode
    adds the distance to the own class mean, as a float32 difference in the same pass.
    The pass is a row map (:meth:`~deep_core.methods._corpus.Tasks.map_rows`, chunk by
    chunk, on either engine); the per-group ranking and quantile then run one group at
    a time (:meth:`KMeansQuantile.cluster_stats`) and the exact-count budgets on the
    driver.
    Float32 distances are the tool's; against float64 they differ by rounding only, so
    the kept set can differ only where two scores tie to within ~1e-6 relative.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from ..budget import budget_size, proportional_budgets
from ..errors import DeepCoreError
from ..neighbors.kmeans import CHUNK_ROWS, Clustering, assign, train_centroids
from ..signals import Signals
from ..subset import Subset
from ._common import check_choice, check_int, check_unit
from ._corpus import (
    ClusterPart,
    CorpusMethod,
    CorpusResult,
    Precomputed,
    Target,
    Tasks,
    above_quantile,
    features_of,
    ranked,
    tasks_of,
    tie_keys,
)
from .base import register


def class_means(features: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Mean embedding of each class in ``classes`` (float32, one row per class)."""
    pos = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    pos[classes] = np.arange(classes.size)
    sums = np.zeros((classes.size, features.shape[1]), dtype=np.float64)
    for lo in range(0, features.shape[0], CHUNK_ROWS):
        hi = min(features.shape[0], lo + CHUNK_ROWS)
        rows = pos[labels[lo:hi]]
        onehot = sp.csr_matrix(
            (np.ones(hi - lo), (rows, np.arange(hi - lo))), shape=(classes.size, hi - lo)
        )
        sums += onehot @ np.asarray(features[lo:hi], dtype=np.float64)
    counts = np.bincount(pos[labels], minlength=classes.size).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32)


@register
class KMeansQuantile(CorpusMethod):
    """Hard/easy samples by distances to target centroids, kept per-group by quantile.

    Parameters
    ----------
    num_clusters : int, default=10
        k-means clusters on the target (unsupervised mode); 0 = one per target class.
    centroids : {"kmeans", "class_means"}, default="kmeans"
        Unsupervised mode: k-means centroids of the target, or its class means.
    supervised : bool, default=False
        Use the target's class means and the corpus's own classes instead of k-means.
    difficulty : {"hard", "easy"}, default="hard"
        Which samples to keep.
    quantile : float, default=0.9
        Per-group quantile in ``[0, 1)`` used when no fraction is given.
    niter : int, default=20
        k-means iterations.

    Protocol: both protocols read the clean-view features.
    """

    summary = "hard/easy by distances to target k-means or class centroids, per-group quantile"
    uses_target = True
    rule_option = "quantile"
    spherical = False
    clusters_corpus = False  # k-means runs on the target (or none: supervised)

    def __init__(
        self,
        *,
        num_clusters: int = 10,
        centroids: str = "kmeans",
        supervised: bool = False,
        difficulty: str = "hard",
        quantile: float = 0.9,
        niter: int = 20,
    ) -> None:
        self.num_clusters = check_int("num_clusters", num_clusters, low=0)
        self.centroids = check_choice("centroids", centroids, ("kmeans", "class_means"))
        self.supervised = bool(supervised)
        self.difficulty = check_choice("difficulty", difficulty, ("hard", "easy"))
        self.quantile = check_unit("quantile", quantile)
        self.niter = check_int("niter", niter, low=1)
        if not self.supervised and self.difficulty == "hard" and 0 < self.num_clusters < 3:
            raise DeepCoreError("KMeansQuantile hard scores need num_clusters >= 3")
        if self.supervised and self.centroids != "kmeans":
            raise DeepCoreError("supervised KMeansQuantile always uses the class means")

    @property
    def kind(self) -> str:
        return self.difficulty

    def clusters_for(self, target: Target | None = None) -> int:
        """``num_clusters``, or the number of target classes when it is 0."""
        if self.num_clusters:
            return self.num_clusters
        return int(np.unique(self._target_labels(target, "num_clusters=0")).size)

    def _target_labels(self, target: Target | None, what: str) -> np.ndarray:
        if target is None or target.labels is None:
            raise DeepCoreError(f"KMeansQuantile {what} needs target labels (classes)")
        return target.labels

    def clustering_data(self, signals: Signals, target: Target | None = None) -> np.ndarray | None:
        if self.supervised or self.centroids == "class_means":
            return None
        return target.features if target is not None else features_of(signals, "KMeansQuantile")

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
        if target is None:
            target = Target(x, signals.labels)
        if target.features.shape[1] != x.shape[1]:
            raise DeepCoreError(
                f"target embeddings have {target.features.shape[1]} dims but the corpus has "
                f"{x.shape[1]}"
            )
        tasks = tasks_of(precomputed)
        if self.supervised:
            scores, groups, info = self._supervised(x, signals.labels, target, tasks)
        else:
            scores, groups, info = self._unsupervised(x, target, seed, precomputed, tasks)
        num_groups = int(groups.max()) + 1
        columns = {"score": scores, "tie": tie_keys(scores.size, seed)}
        parts = self.per_cluster(groups, num_groups, columns, precomputed)
        if fraction is None:
            idx = parts.take(parts.stats[:, 0].astype(np.int64))
            info["quantile"] = self.quantile
        else:
            idx = parts.take(proportional_budgets(parts.sizes, budget_size(scores.size, fraction)))
        return CorpusResult(
            subset=Subset(indices=idx, scores=parts.scores, info=info),
            groups=groups,
            kind=self.kind,
            group_kind="class" if self.supervised or self.centroids == "class_means" else "cluster",
        )

    def cluster_stats(
        self, group: int, rows: np.ndarray, columns: Mapping[str, np.ndarray]
    ) -> ClusterPart:
        """One group ranked by score (ties by ``tie``); stats: ``[members above the quantile]``.

        Columns: ``score`` (from the row map) and ``tie``.
        """
        scores = columns["score"]
        pos = ranked(scores, columns["tie"])
        above = np.array([above_quantile(scores, self.quantile)], dtype=np.float64)
        return ClusterPart(group, rows[pos], scores[pos], above)

    def _unsupervised(
        self,
        x: np.ndarray,
        target: Target,
        seed: int,
        precomputed: Precomputed | None,
        tasks: Tasks,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        k = 3 if self.difficulty == "hard" else 1
        if self.centroids == "class_means":
            return self._class_mean_centroids(x, target, k, tasks)
        if precomputed is not None and precomputed.clustering is not None:
            clustering = self._clustering(target.features, seed, precomputed)
            centroids = clustering.centroids
        else:
            clustering = None
            centroids = train_centroids(
                target.features,
                min(self.clusters_for(target), target.features.shape[0]),
                spherical=False,
                niter=self.niter,
                seed=seed,
            )
        if centroids.shape[0] < k:
            raise DeepCoreError("KMeansQuantile hard scores need num_clusters >= 3")
        ids, dist, scores = tasks.map_rows(nearest_scores, x, {}, centroids, k)
        if clustering is None:
            if target.features is x:  # the corpus is the target: its assignment is this one
                t_ids, t_dist = ids, dist
            else:
                t_ids, t_dist, _ = tasks.map_rows(nearest_scores, target.features, {}, centroids, 1)
            clustering = Clustering(centroids, t_ids, t_dist, False)
        info = {"num_clusters": clustering.num_clusters, "clustering": clustering.fingerprint()}
        return scores, ids, info

    def _class_mean_centroids(
        self, x: np.ndarray, target: Target, k: int, tasks: Tasks
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        labels = self._target_labels(target, 'centroids="class_means"')
        classes = np.unique(labels)
        if classes.size < k:
            raise DeepCoreError(
                f"KMeansQuantile hard scores need 3 target classes, got {classes.size}"
            )
        means = class_means(target.features, labels, classes)
        ids, _, scores = tasks.map_rows(nearest_scores, x, {}, means, k)
        return scores, classes[ids], {"num_classes": int(classes.size)}

    def _supervised(
        self, x: np.ndarray, labels: np.ndarray, target: Target, tasks: Tasks
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        if target.labels is None:
            raise DeepCoreError("supervised KMeansQuantile needs target labels (class folders)")
        corpus_classes = np.unique(labels)
        target_classes = np.unique(target.labels)
        if not np.array_equal(corpus_classes, target_classes):
            only_c = np.setdiff1d(corpus_classes, target_classes).tolist()
            only_t = np.setdiff1d(target_classes, corpus_classes).tolist()
            raise DeepCoreError(
                "supervised KMeansQuantile needs the same classes in corpus and target; "
                f"only in the corpus: {only_c}, only in the target: {only_t}"
            )
        classes = target_classes
        need = 3 if self.difficulty == "hard" else 1
        if classes.size < need:
            raise DeepCoreError(
                f"supervised KMeansQuantile hard scores need 3 classes, got {classes.size}"
            )
        means = class_means(target.features, target.labels, classes)
        pos = np.full(int(classes.max()) + 1, -1, dtype=np.int64)
        pos[classes] = np.arange(classes.size)
        others = 2 if self.difficulty == "hard" else 0
        (scores,) = tasks.map_rows(own_class_scores, x, {"own": pos[labels]}, means, others)
        return scores, labels.copy(), {"num_classes": int(classes.size)}


def nearest_scores(
    rows: np.ndarray, columns: Mapping[str, np.ndarray], centroids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsupervised scores of a chunk of rows (a row map): nearest id, its distance, score.

    The score is ``d(1) - d(2) - d(3)`` with ``k = 3`` (hard), ``-d(1)`` with ``k = 1``.
    """
    ids, dist = assign(rows, centroids, k=k, spherical=False)  # nearest first
    d = dist.astype(np.float64)
    scores = d[:, 0] - d[:, 1] - d[:, 2] if k == 3 else -d[:, 0]
    return ids[:, 0].copy(), dist[:, 0].copy(), scores


def own_class_scores(
    rows: np.ndarray, columns: Mapping[str, np.ndarray], means: np.ndarray, others: int
) -> tuple[np.ndarray]:
    """Supervised scores of a chunk of rows (a row map), with their class ids in ``own``.

    ``d_own - d'(1) - d'(2)`` with ``others = 2`` (hard), ``-d_own`` with ``others = 0``.
    """
    d_own, d_other = own_and_other_distances(rows, means, columns["own"], others=others)
    if others == 0:
        return (-d_own,)
    return (d_own - d_other[:, 0] - d_other[:, 1],)


def own_and_other_distances(
    x: np.ndarray,
    means: np.ndarray,
    own: np.ndarray,
    *,
    others: int,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the own class mean and to the ``others`` nearest other means.

    One pass over ``x`` in chunks: the own distance is a float32 difference, the
    others come from one faiss search for ``others + 1`` neighbours (one of which may be
    the own mean), nearest first.

    Returns
    -------
    d_own : ndarray of float64, shape (N,)
    d_other : ndarray of float64, shape (N, others)
    """
    n = x.shape[0]
    d_own = np.empty(n, dtype=np.float64)
    d_other = np.empty((n, others), dtype=np.float64)
    index = None
    if others:
        import faiss

        index = faiss.IndexFlatL2(means.shape[1])
        index.add(means)
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        q = np.ascontiguousarray(x[lo:hi], dtype=np.float32)
        diff = q - means[own[lo:hi]]
        d_own[lo:hi] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        del diff
        if index is None:
            continue
        sq, ids = index.search(q, others + 1)
        not_own = ids != own[lo:hi, None]
        # the first ``others`` columns that are not the own mean, in faiss's order
        cols = np.argsort(~not_own, axis=1, kind="stable")[:, :others]
        d_other[lo:hi] = np.sqrt(np.maximum(np.take_along_axis(sq, cols, axis=1), 0.0))
    return d_own, d_other
