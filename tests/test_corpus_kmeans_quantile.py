"""KMeansQuantile on hand-placed centroids; per-group quantile and budget rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deep_core.budget import (
    ceil_budgets,
    group_quantiles,
    proportional_budgets,
    quantile_mask,
    take_per_group,
)
from deep_core.errors import DeepCoreError
from deep_core.methods._corpus import Precomputed, Target
from deep_core.methods.kmeans_quantile import KMeansQuantile, class_means
from deep_core.neighbors.kmeans import Clustering
from deep_core.signals import Signals

# Four centroids at the corners of a 10 x 10 square.
CORNERS = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
POINTS = np.array([[1, 0], [5, 1], [9, 9], [3, 6], [0, 0]], dtype=np.float32)


def _dist(p: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.norm(CORNERS.astype(np.float64) - p, axis=1))


def _fixed_clustering() -> Clustering:
    # The target clustering is handed in: its labels/distances describe the target rows.
    return Clustering(
        centroids=CORNERS,
        labels=np.arange(4),
        distances=np.zeros(4, dtype=np.float32),
        spherical=False,
    )


def _signals(x: np.ndarray, labels: np.ndarray | None = None) -> Signals:
    labels = np.zeros(len(x), dtype=np.int64) if labels is None else labels
    return Signals({"labels": labels, "features": x})


@pytest.mark.parametrize("difficulty", ["hard", "easy"])
def test_unsupervised_scores_on_hand_placed_centroids(difficulty: str) -> None:
    method = KMeansQuantile(num_clusters=4, difficulty=difficulty)
    r = method.prune(
        _signals(POINTS),
        target=Target(CORNERS),
        precomputed=Precomputed(clustering=_fixed_clustering()),
    )
    for i, p in enumerate(POINTS):
        d = _dist(p)
        want = d[0] - d[1] - d[2] if difficulty == "hard" else -d[0]
        assert r.subset.scores[i] == pytest.approx(want, abs=1e-5)
    assert r.groups.tolist() == [0, 0, 3, 2, 0]  # nearest corner; (5, 1) ties -> lower id
    assert r.kind == difficulty and r.group_kind == "cluster"


def test_supervised_scores_on_hand_placed_class_means() -> None:
    # Target: two samples per class, symmetric around the corners -> means = corners.
    offsets = np.array([[0.5, 0.0], [-0.5, 0.0]], dtype=np.float32)
    t_x = np.concatenate([c + offsets for c in CORNERS])
    t_y = np.repeat(np.arange(4), 2)
    np.testing.assert_allclose(class_means(t_x, t_y, np.arange(4)), CORNERS, atol=1e-6)
    labels = np.array([1, 1, 3, 0, 2])  # point 0 sits near corner 0 but belongs to class 1
    x = np.concatenate([POINTS, [[10, 0], [0, 0], [10, 10], [0, 10]]]).astype(np.float32)
    labels = np.concatenate([labels, [1, 0, 3, 2]])
    r = KMeansQuantile(supervised=True).prune(_signals(x, labels), target=Target(t_x, t_y))
    for i, p in enumerate(x):
        d = np.linalg.norm(CORNERS.astype(np.float64) - p, axis=1)
        own = d[labels[i]]
        others = np.sort(np.delete(d, labels[i]))
        assert r.subset.scores[i] == pytest.approx(own - others[0] - others[1], abs=1e-5)
    assert r.groups.tolist() == labels.tolist() and r.group_kind == "class"
    easy = KMeansQuantile(supervised=True, difficulty="easy").prune(
        _signals(x, labels), target=Target(t_x, t_y)
    )
    want = -np.linalg.norm(CORNERS[labels].astype(np.float64) - x, axis=1)
    np.testing.assert_allclose(easy.subset.scores, want, atol=1e-5)


def test_supervised_mismatched_classes_is_an_error() -> None:
    x = np.random.default_rng(0).standard_normal((12, 2)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3)
    with pytest.raises(DeepCoreError, match=r"same classes.*only in the corpus: \[3\]"):
        KMeansQuantile(supervised=True).prune(_signals(x, labels), target=Target(x[:9], labels[:9]))
    with pytest.raises(DeepCoreError, match="needs target labels"):
        KMeansQuantile(supervised=True).prune(_signals(x, labels), target=Target(x))
    with pytest.raises(DeepCoreError, match="3 classes"):
        KMeansQuantile(supervised=True).prune(_signals(x[:6], labels[:6] % 2))


def test_training_set_is_the_default_target() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 400)
    s = _signals(x, labels)
    for supervised in (False, True):
        method = KMeansQuantile(num_clusters=5, supervised=supervised)
        a = method.select(s, 0.25, seed=2)
        b = method.prune(s, 0.25, seed=2, target=Target(x, labels)).subset
        np.testing.assert_array_equal(a.indices, b.indices)
        assert len(a) == 100


@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.95])
def test_per_group_quantile_keeps_the_right_count(q: float) -> None:
    rng = np.random.default_rng(0)
    sizes = [1, 2, 7, 10, 33, 100]
    groups = np.repeat(np.arange(len(sizes)), sizes)
    scores = rng.standard_normal(groups.size)
    keep = quantile_mask(scores, groups, q)
    thresholds = group_quantiles(scores, groups, q)
    for g, n in enumerate(sizes):
        s = scores[groups == g]
        assert thresholds[g] == pytest.approx(np.quantile(s, q))
        assert keep[groups == g].sum() == n - 1 - math.floor(q * (n - 1))
        assert (keep[groups == g] == (s > np.quantile(s, q))).all()


def test_quantile_rule_through_the_method() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 4)).astype(np.float32)
    r = KMeansQuantile(num_clusters=5, quantile=0.9).prune(_signals(x), seed=0)
    for g in range(5):
        n = int((r.groups == g).sum())
        kept = int(np.isin(np.flatnonzero(r.groups == g), r.subset.indices).sum())
        assert kept == n - 1 - math.floor(0.9 * (n - 1))


def test_budget_rules() -> None:
    sizes = np.array([10, 0, 5, 7])
    b = proportional_budgets(sizes, 11)
    assert b.sum() == 11 and (b <= sizes).all()
    assert (np.abs(b - sizes * 11 / 22) < 1).all()
    assert proportional_budgets(sizes, 22).tolist() == sizes.tolist()
    assert ceil_budgets(np.array([10, 3, 30, 0]), 0.1).tolist() == [1, 1, 3, 0]
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.2, 0.7])
    groups = np.array([0, 0, 1, 1, 1, 0])
    assert take_per_group(scores, groups, np.array([2, 1])).tolist() == [1, 2, 5]


def test_bad_options() -> None:
    with pytest.raises(DeepCoreError, match="num_clusters >= 3"):
        KMeansQuantile(num_clusters=2)
    KMeansQuantile(num_clusters=2, difficulty="easy")
    with pytest.raises(DeepCoreError, match="quantile"):
        KMeansQuantile(quantile=1.0)
    with pytest.raises(DeepCoreError, match="dims"):
        KMeansQuantile().prune(_signals(POINTS), target=Target(np.ones((4, 3), np.float32)))


# -- float32 single pass vs a float64 transcription of the previous computation ----------
def _blobs(n: int = 900, d: int = 16, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs (centres ~40 apart, unit spread) and their classes."""
    rng = np.random.default_rng(seed)
    centres = 40.0 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


def _exact(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """All distances in float64, |x - c| by differences (no |x|^2 + |c|^2 - 2 x.c)."""
    diff = x.astype(np.float64)[:, None, :] - centroids.astype(np.float64)[None]
    return np.sqrt((diff**2).sum(axis=2))


@pytest.mark.parametrize("difficulty", ["hard", "easy"])
@pytest.mark.parametrize("fraction", [0.2, None])
def test_unsupervised_matches_float64_on_separated_data(difficulty, fraction) -> None:
    from deep_core.neighbors.kmeans import train_centroids

    x, _ = _blobs()
    method = KMeansQuantile(num_clusters=6, difficulty=difficulty, quantile=0.8)
    r = method.prune(_signals(x), fraction, seed=4)
    centroids = train_centroids(x, 6, spherical=False, seed=4)
    d = np.sort(_exact(x, centroids), axis=1)
    groups = np.argmin(_exact(x, centroids), axis=1)
    scores = d[:, 0] - d[:, 1] - d[:, 2] if difficulty == "hard" else -d[:, 0]
    np.testing.assert_allclose(r.subset.scores, scores, rtol=1e-5, atol=1e-4)
    assert np.array_equal(r.groups, groups)
    if fraction is None:
        want = np.flatnonzero(quantile_mask(scores, groups, 0.8))
    else:
        budgets = proportional_budgets(np.bincount(groups), round(fraction * len(x)))
        want = take_per_group(scores, groups, budgets, seed=4)
    np.testing.assert_array_equal(r.subset.indices, want)


@pytest.mark.parametrize("difficulty", ["hard", "easy"])
def test_supervised_matches_float64_on_separated_data(difficulty) -> None:
    x, y = _blobs(seed=1)
    r = KMeansQuantile(supervised=True, difficulty=difficulty).prune(_signals(x, y), 0.3, seed=0)
    d = _exact(x, class_means(x, y, np.arange(6)))
    own = d[np.arange(len(x)), y]
    others = np.sort(np.where(np.eye(6, dtype=bool)[y], np.inf, d), axis=1)
    scores = own - others[:, 0] - others[:, 1] if difficulty == "hard" else -own
    np.testing.assert_allclose(r.subset.scores, scores, rtol=1e-5, atol=1e-4)
    budgets = proportional_budgets(np.bincount(y), round(0.3 * len(x)))
    np.testing.assert_array_equal(r.subset.indices, take_per_group(scores, y, budgets, seed=0))


def test_corpus_rows_are_assigned_once(monkeypatch) -> None:
    import deep_core.methods.kmeans_quantile as kq
    from deep_core.neighbors.kmeans import kmeans

    rows = []
    real = kq.assign

    def counting(x, *args, **kwargs):
        rows.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(kq, "assign", counting)
    x, _ = _blobs()
    r = KMeansQuantile(num_clusters=6).prune(_signals(x), 0.2, seed=3)
    assert rows == [len(x)]  # one search of the corpus, none of the target (the corpus)
    # the clustering it reports is the one the CLI's cached k-means would give
    assert r.subset.info["clustering"] == kmeans(x, 6, spherical=False, seed=3).fingerprint()
    rows.clear()
    KMeansQuantile(num_clusters=6).prune(_signals(x[:100]), 0.2, seed=3, target=Target(x))
    assert rows == [100, len(x)]  # a separate target is assigned for its fingerprint


def test_zero_clusters_is_one_per_target_class() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    labels = rng.integers(0, 6, 300)
    target = Target(x[:120], labels[:120])
    auto = KMeansQuantile(num_clusters=0).prune(_signals(x), 0.3, seed=1, target=target)
    six = KMeansQuantile(num_clusters=6).prune(_signals(x), 0.3, seed=1, target=target)
    assert auto.subset.info["num_clusters"] == 6
    np.testing.assert_array_equal(auto.subset.indices, six.subset.indices)
    assert KMeansQuantile(num_clusters=0).clusters_for(target) == 6
    with pytest.raises(DeepCoreError, match="num_clusters=0 needs target labels"):
        KMeansQuantile(num_clusters=0).prune(_signals(x), 0.3, target=Target(x))


@pytest.mark.parametrize("difficulty", ["hard", "easy"])
def test_class_means_as_unsupervised_centroids(difficulty: str) -> None:
    # Target classes placed so that their means are the four corners.
    offsets = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)
    target_x = np.concatenate([c + offsets for c in CORNERS])
    target_labels = np.repeat(np.arange(4), 4)
    method = KMeansQuantile(centroids="class_means", difficulty=difficulty)
    assert method.clustering_data(_signals(POINTS), Target(target_x, target_labels)) is None
    r = method.prune(_signals(POINTS), target=Target(target_x, target_labels))
    for i, p in enumerate(POINTS):
        d = _dist(p)
        want = d[0] - d[1] - d[2] if difficulty == "hard" else -d[0]
        assert r.subset.scores[i] == pytest.approx(want, abs=1e-5)
    assert r.groups.tolist() == [0, 0, 3, 2, 0] and r.group_kind == "class"
    with pytest.raises(DeepCoreError, match="class_means"):
        method.prune(_signals(POINTS), target=Target(target_x))
    with pytest.raises(DeepCoreError, match="class means"):
        KMeansQuantile(centroids="class_means", supervised=True)
