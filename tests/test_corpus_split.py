"""The per-cluster split of the corpus methods (``cluster_stats`` + a global step).

A group's keep order with the tie keys is exactly its part of the global ranking, and a
method's result does not depend on the order in which an engine runs the groups or on
how it cuts the rows into chunks (what the Ray engine does differently; with Ray
installed, ``tests/test_corpus_ray.py`` runs the real thing).
"""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.budget import quantile_mask, take_per_group
from deep_core.methods import build_method
from deep_core.methods._corpus import (
    ClusterPart,
    ClusterParts,
    LocalTasks,
    Precomputed,
    Target,
    above_quantile,
    ranked,
    slice_columns,
    tie_keys,
)
from deep_core.neighbors.kmeans import kmeans
from deep_core.signals import Signals


def test_group_rankings_are_the_global_ranking_with_ties() -> None:
    rng = np.random.default_rng(0)
    n, g = 3_000, 17
    scores = rng.integers(0, 4, n).astype(np.float64)  # ties everywhere
    groups = rng.integers(0, g, n)
    groups[groups == 5] = 6  # an empty group
    sizes = np.bincount(groups, minlength=g)
    budgets = rng.integers(0, sizes + 1)
    for seed in (0, 7):
        ties = tie_keys(n, seed)
        order, parts = np.argsort(groups, kind="stable"), []
        for j in range(g):
            rows = order[groups[order] == j]
            pos = ranked(scores[rows], ties[rows])
            parts.append(ClusterPart(j, rows[pos], scores[rows][pos], np.zeros(0)))
        merged = ClusterParts(parts[::-1], n, g)
        np.testing.assert_array_equal(
            merged.take(budgets), take_per_group(scores, groups, budgets, seed=seed)
        )
        np.testing.assert_array_equal(merged.scores, scores)


class ShuffledTasks(LocalTasks):
    """Groups in reverse order and rows in uneven chunks: an engine's freedom."""

    def __init__(self) -> None:
        super().__init__(chunk_rows=997)

    def map_clusters(self, method, groups, num_groups, columns):  # type: ignore[override]
        order = np.argsort(groups, kind="stable")
        parts = []
        for g in reversed(range(num_groups)):
            rows = order[groups[order] == g]
            parts.append(method.cluster_stats(g, rows, slice_columns(columns, rows)))
        return ClusterParts(parts, groups.shape[0], num_groups)


CASES = [
    ("DBP", {"num_clusters": 12, "num_nns": 3}, 0.4),
    ("DBP", {"num_clusters": 12, "which_to_keep": "random", "dedup_eps": 0.01}, 0.3),
    ("DBP", {"num_clusters": 12, "which_to_keep": "easy", "density": "uniform"}, 0.3),
    ("SSP", {"num_clusters": 12}, 0.25),
    ("SSP", {"num_clusters": 12, "quantile": 0.6, "keep": "easy"}, None),
    ("ClusterSubsample", {"num_clusters": 12, "rank": "stratified"}, 0.3),
    ("ClusterSubsample", {"num_clusters": 12, "rank": "random"}, 0.3),
    ("ClusterSubsample", {"num_clusters": 12, "prune_type": "common"}, 0.3),
    ("KMeansQuantile", {"num_clusters": 6}, None),
    ("KMeansQuantile", {"num_clusters": 6, "difficulty": "easy"}, 0.3),
    ("KMeansQuantile", {"supervised": True}, None),
    ("KMeansQuantile", {"centroids": "class_means"}, 0.3),
]


@pytest.mark.parametrize(("name", "options", "fraction"), CASES)
def test_results_do_not_depend_on_the_engine_order(name, options, fraction) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2_400, 8)).astype(np.float32)
    x[1::40] = x[::40] + 1e-4  # near-duplicates for the de-duplication
    labels = rng.integers(0, 5, x.shape[0])
    signals = Signals({"features": x, "labels": labels}, num_classes=5)
    method = build_method(name, options)[0]
    target = Target(x, labels) if name == "KMeansQuantile" else None
    data = method.clustering_data(signals, target)
    runs = []
    for tasks in (None, ShuffledTasks()):
        clustering = None
        if data is not None:
            clustering = kmeans(data, method.clusters_for(target), spherical=method.spherical,
                                niter=5, seed=3)  # fmt: skip
        pre = Precomputed(clustering=clustering, tasks=tasks)
        runs.append(method.prune(signals, fraction, seed=3, target=target, precomputed=pre))
    a, b = runs
    assert 0 < len(a.subset) < x.shape[0]
    np.testing.assert_array_equal(a.subset.indices, b.subset.indices)
    np.testing.assert_array_equal(a.subset.scores, b.subset.scores)
    np.testing.assert_array_equal(a.groups, b.groups)


def test_above_quantile_is_quantile_mask_on_one_group() -> None:
    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 10, 101):
        for scores in (rng.random(n), rng.integers(0, 3, n).astype(np.float64)):
            for q in (0.0, 0.1, 0.5, 0.9, 0.999):
                want = quantile_mask(scores, np.zeros(n, dtype=np.int64), q).sum()
                assert above_quantile(scores, q) == want, (n, q)
    assert above_quantile(np.zeros(0), 0.5) == 0
