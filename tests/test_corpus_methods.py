"""Registry conformance of the corpus methods; SSP, ClusterSubsample; faiss k-means."""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.errors import DeepCoreError
from deep_core.methods import build_method, list_methods
from deep_core.methods.cluster_subsample import ClusterSubsample
from deep_core.methods.ssp import SSP
from deep_core.neighbors.kmeans import Clustering, assign, kmeans, unit_rows
from deep_core.signals import Signals

CORPUS = {
    "KMeansQuantile": {"num_clusters": 4},
    "SSP": {"num_clusters": 4},
    "SemDeDup": {"num_clusters": 4},
    "ClusterSubsample": {"num_clusters": 4},
    "DBP": {"num_clusters": 4, "num_nns": 2},
}


@pytest.fixture(scope="module")
def signals() -> Signals:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)) * 3
    y = rng.integers(0, 4, 301)
    x = (centres[y] + rng.standard_normal((301, 16))).astype(np.float32)
    return Signals({"labels": y, "features": x})


def test_registered() -> None:
    assert set(CORPUS) <= set(list_methods())


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("fraction", [0.05, 0.5, 1.0])
def test_exact_budget_sorted_unique_deterministic(name: str, fraction: float, signals) -> None:
    method, unused = build_method(name, dict(CORPUS[name]))
    assert not unused
    assert method.required_signals() == {"features"}
    a = method.select(signals, fraction, seed=7)
    b = method.select(signals, fraction, seed=7)
    assert len(a) == round(fraction * len(signals))
    assert a.indices.dtype == np.int64 and np.all(np.diff(a.indices) > 0)
    assert a.scores.shape == (len(signals),) and np.isfinite(a.scores).all()
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_fraction_and_missing_features(name: str, signals) -> None:
    method, _ = build_method(name, dict(CORPUS[name]))
    with pytest.raises(DeepCoreError, match="fraction"):
        method.select(signals, 1.5)
    bare = Signals({"labels": signals.labels})
    with pytest.raises(DeepCoreError, match="features"):
        method.select(bare, 0.5)


def test_ssp_keeps_the_farthest_or_nearest(signals) -> None:
    hard = SSP(num_clusters=4).prune(signals, 0.2, seed=1)
    easy = SSP(num_clusters=4, keep="easy").prune(signals, 0.2, seed=1)
    d = hard.subset.scores
    kept, other = d[hard.subset.indices], np.delete(d, hard.subset.indices)
    assert kept.min() >= other.max()
    np.testing.assert_allclose(easy.subset.scores, -d)
    assert easy.kind == "easy" and hard.kind == "hard"
    q = SSP(num_clusters=4, quantile=0.75).prune(signals, seed=1)
    for g in range(4):
        n = int((q.groups == g).sum())
        assert int(np.isin(np.flatnonzero(q.groups == g), q.subset.indices).sum()) == (
            n - 1 - int(0.75 * (n - 1))
        )
    with pytest.raises(DeepCoreError, match="fraction or quantile"):
        SSP(num_clusters=4).prune(signals)


def test_cluster_subsample_ceil_rule_and_exact_select(signals) -> None:
    method = ClusterSubsample(num_clusters=4, prune_type="common")
    r = method.prune(signals, 0.1, seed=0)
    sizes = np.bincount(r.groups, minlength=4)
    per = np.bincount(r.groups[r.subset.indices], minlength=4)
    np.testing.assert_array_equal(per, np.ceil(0.1 * sizes - 1e-9).astype(int))
    exact = method.select(signals, 0.1, seed=0)
    assert len(exact) == 30
    per_exact = np.bincount(r.groups[exact.indices], minlength=4)
    assert (np.abs(per_exact - 0.1 * sizes) < 1).all()
    # "common" keeps the members most similar to their centroid.
    for g in range(4):
        members = np.flatnonzero(r.groups == g)
        chosen = np.isin(members, r.subset.indices)
        s = r.subset.scores[members]
        assert s[chosen].min() >= s[~chosen].max()
    diverse = ClusterSubsample(num_clusters=4).prune(signals, 0.1, seed=0)
    np.testing.assert_allclose(diverse.subset.scores, -r.subset.scores)
    rand = ClusterSubsample(num_clusters=4, rank="random")
    assert rand.kind == "kept"
    a, b = rand.select(signals, 0.3, seed=1), rand.select(signals, 0.3, seed=2)
    assert not np.array_equal(a.indices, b.indices)


def test_kmeans_deterministic_and_consistent() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    a = kmeans(x, 10, seed=3, niter=5, max_points_per_centroid=100)  # trains on 1000 rows
    b = kmeans(x, 10, seed=3, niter=5, max_points_per_centroid=100)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.fingerprint() == b.fingerprint()
    np.testing.assert_allclose(np.linalg.norm(a.centroids, axis=1), 1.0, atol=1e-5)
    u = unit_rows(x)
    cos = u @ a.centroids.T
    np.testing.assert_array_equal(a.labels, np.argmax(cos, axis=1))
    np.testing.assert_allclose(a.distances, 1 - cos.max(axis=1), atol=1e-5)
    order, offsets = a.members()
    assert offsets[-1] == 3000
    for c in range(10):
        assert (a.labels[order[offsets[c] : offsets[c + 1]]] == c).all()
    e = kmeans(x, 10, spherical=False, seed=3, niter=5)
    d = np.linalg.norm(x[:, None, :] - e.centroids[None], axis=2)
    np.testing.assert_allclose(e.distances, d.min(axis=1), atol=1e-3)
    ids, dist = assign(x, e.centroids, k=3, spherical=False)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_kmeans_round_trip_and_errors(tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    c = kmeans(x, 3, seed=0)
    c.save(tmp_path / "c.npz")
    d = Clustering.load(tmp_path / "c.npz")
    assert d.fingerprint() == c.fingerprint() and d.spherical
    with pytest.raises(DeepCoreError, match="exceeds"):
        kmeans(x, 51)
    with pytest.raises(DeepCoreError, match="2-D"):
        kmeans(x[0], 2)


def _two_clusters() -> tuple[Signals, Clustering]:
    # Cluster 0: 10 members with distinct cosines; cluster 1: a singleton.
    cos = np.linspace(0.99, 0.5, 10)
    c = Clustering(
        centroids=np.eye(2, dtype=np.float32),
        labels=np.array([0] * 10 + [1]),
        distances=np.concatenate([1.0 - cos, [0.0]]).astype(np.float32),
        spherical=True,
    )
    # Features that k-means splits the same way (for select, which clusters itself).
    x = np.array([[1.0, 0.01 * i] for i in range(10)] + [[0.0, 1.0]], dtype=np.float32)
    return Signals({"labels": np.zeros(11, dtype=np.int64), "features": x}), c


@pytest.mark.parametrize("seed", range(5))
def test_stratified_and_systematic_spread_along_the_cosine_ranking(seed: int) -> None:
    from deep_core.methods._corpus import Precomputed

    signals, c = _two_clusters()
    pre = Precomputed(clustering=c)
    # Cluster 0 is already in descending cosine: position = index.
    syst = ClusterSubsample(num_clusters=2, rank="systematic", skip_singletons=True)
    kept = syst.prune(signals, 0.2, seed=seed, precomputed=pre).subset.indices
    assert kept.size == 2 and kept[1] - kept[0] == 5  # every n / b = 5th from a random start
    strat = ClusterSubsample(num_clusters=2, rank="stratified", skip_singletons=True)
    r = strat.prune(signals, 0.3, seed=seed, precomputed=pre)
    kept = r.subset.indices
    # strata [0, 3), [3, 6), [6, 10): one member from each
    assert kept.size == 3 and kept[0] < 3 <= kept[1] < 6 <= kept[2] < 10
    assert r.subset.info["skipped_clusters"] == 1 and r.kind == "kept"
    assert set(r.subset.scores.tolist()) == {0.0, 1.0}
    exact = strat.select(signals, 0.5, seed=seed)  # round(5.5) = 6 from cluster 0 alone
    assert exact.indices.size == 6 and 10 not in exact.indices


def test_singletons_kept_unless_skipped() -> None:
    from deep_core.methods._corpus import Precomputed

    signals, c = _two_clusters()
    pre = Precomputed(clustering=c)
    kept = ClusterSubsample(num_clusters=2).prune(signals, 0.2, precomputed=pre).subset.indices
    assert 10 in kept  # ceil(0.2 * 1) = 1
    skip = ClusterSubsample(num_clusters=2, skip_singletons=True)
    assert 10 not in skip.prune(signals, 0.2, precomputed=pre).subset.indices
    with pytest.raises(DeepCoreError, match="clusters of 2 or more"):
        skip.select(signals, 1.0)
