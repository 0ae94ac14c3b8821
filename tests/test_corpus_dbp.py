"""DBP: complexity, quotas and selection on a hand-built geometry."""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.errors import DeepCoreError
from deep_core.methods._corpus import Precomputed
from deep_core.methods.dbp import (
    DBP,
    cluster_complexity,
    complexity_probs,
    density_probs,
    lower_bounds,
    quotas,
)
from deep_core.neighbors.kmeans import Clustering, assign, unit_rows
from deep_core.signals import Signals


def _geometry(seed: int = 0) -> tuple[np.ndarray, Clustering]:
    """Four concept clusters of 60 on the unit sphere in 8-D with different spreads.

    Centroids 0 and 1 are close to each other (small d_inter), 2 and 3 far from the
    rest; clusters 1 and 3 are spread out (large d_intra), 0 and 2 tight.
    """
    rng = np.random.default_rng(seed)
    d = 8
    e = np.eye(d, dtype=np.float64)
    centres = np.stack([e[0], unit_rows((e[0] + 0.35 * e[1])[None])[0], e[2], e[3]])
    spread = [0.03, 0.25, 0.03, 0.25]
    rows = []
    for c, s in zip(centres, spread):
        noise = rng.standard_normal((60, d)) * s
        noise[:, :4] = 0.0  # orthogonal to every centre: members stay with their own
        rows.append(c + noise)
    x = unit_rows(np.concatenate(rows).astype(np.float32))
    centroids = unit_rows(centres.astype(np.float32))
    ids, dist = assign(x, centroids, k=1)
    return x, Clustering(centroids, ids[:, 0], dist[:, 0], spherical=True)


def test_complexity_on_hand_built_clusters() -> None:
    x, c = _geometry()
    assert np.array_equal(np.bincount(c.labels), [60, 60, 60, 60])
    sizes, d_intra, d_inter = cluster_complexity(c, np.ones(x.shape[0], bool), num_nns=1)
    assert sizes.tolist() == [60, 60, 60, 60]
    # d_intra: mean cosine distance of members to their centroid.
    for j in range(4):
        members = x[c.labels == j]
        assert d_intra[j] == pytest.approx(np.mean(1 - members @ c.centroids[j]), rel=1e-5)
    assert d_intra[1] > 5 * d_intra[0] and d_intra[3] > 5 * d_intra[2]
    # d_inter with one neighbour: 0 and 1 are each other's nearest, close together.
    cos01 = float(c.centroids[0] @ c.centroids[1])
    assert d_inter[0] == pytest.approx(1 - cos01, abs=1e-6)
    assert d_inter[1] == pytest.approx(1 - cos01, abs=1e-6)
    assert d_inter[2] == pytest.approx(1.0, abs=1e-6) and d_inter[3] == pytest.approx(1.0)


@pytest.mark.parametrize("total", [1, 40, 120, 200, 239, 240])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_quotas_sum_respect_bounds_and_favour_complex(total: int, ratio: float) -> None:
    x, c = _geometry()
    sizes, d_intra, d_inter = cluster_complexity(c, np.ones(x.shape[0], bool), num_nns=2)
    p = complexity_probs(d_intra, d_inter, 0.5)
    lower = lower_bounds(sizes, total, 4, ratio)
    q, _ = quotas(p, sizes, total, lower)
    assert q.sum() == total
    assert (q >= lower).all() and (q <= sizes).all()
    assert lower.tolist() == [min(int(total / 4 * ratio), 59)] * 4
    # Cluster 3 (spread, isolated) is the most complex, cluster 0 (tight, crowded) the least.
    assert np.argmax(d_intra * d_inter) == 3 and np.argmin(d_intra * d_inter) == 0
    assert q[3] >= q[1] >= q[0] and q[3] >= q[2] >= q[0]


def test_quotas_follow_the_formula() -> None:
    p = np.array([0.7, 0.2, 0.1])
    sizes = np.array([30, 50, 50])
    q, lam = quotas(p, sizes, 60, np.array([5, 5, 5]))
    # Unconstrained 42/12/6 -> cluster 0 capped at 30; the rest shared by lambda.
    real = np.clip(60 * p + lam, [5, 5, 5], sizes)
    assert real.sum() == pytest.approx(60, abs=1e-6)
    assert q.tolist() == [30, 18, 12]
    assert lam == pytest.approx(6.0, abs=1e-6)


def test_quota_errors() -> None:
    with pytest.raises(DeepCoreError, match="lower bounds"):
        quotas(np.array([0.5, 0.5]), np.array([10, 10]), 5, np.array([3, 3]))
    with pytest.raises(DeepCoreError, match="cannot keep"):
        quotas(np.array([0.5, 0.5]), np.array([10, 10]), 25, np.array([0, 0]))


@pytest.mark.parametrize("which", ["hard", "easy", "random"])
def test_dbp_keeps_quota_per_cluster(which: str) -> None:
    x, c = _geometry()
    signals = Signals({"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x})
    method = DBP(num_clusters=4, num_nns=2, which_to_keep=which)
    r = method.prune(signals, 0.4, seed=3, precomputed=Precomputed(clustering=c))
    kept = r.subset.indices
    assert kept.size == 96
    per = np.bincount(c.labels[kept], minlength=4)
    sizes, d_intra, d_inter = cluster_complexity(c, np.ones(x.shape[0], bool), 2)
    q, _ = quotas(
        complexity_probs(d_intra, d_inter, 0.5), sizes, 96, lower_bounds(sizes, 96, 4, 0.5)
    )
    np.testing.assert_array_equal(per, q)
    if which != "random":
        for j in range(4):
            members = np.flatnonzero(c.labels == j)
            d = c.distances[members]
            chosen = np.isin(members, kept)
            if which == "hard":  # the kept ones are the farthest from the centroid
                assert d[chosen].min() >= d[~chosen].max()
            else:
                assert d[chosen].max() <= d[~chosen].min()


def test_dbp_deduplicates_first() -> None:
    x, c = _geometry()
    x = x.copy()
    x[5] = x[6]  # an exact duplicate inside cluster 0
    ids, dist = assign(x, c.centroids, k=1)
    c = Clustering(c.centroids, ids[:, 0], dist[:, 0], spherical=True)
    signals = Signals({"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x})
    r = DBP(num_clusters=4, dedup_eps=0.0).prune(
        signals, 239 / 240, precomputed=Precomputed(clustering=c)
    )
    assert r.subset.info["removed_duplicates"] == 1
    assert len(r.subset) == 239 and int(np.isin([5, 6], r.subset.indices).sum()) == 1
    with pytest.raises(DeepCoreError, match="de-duplication left"):
        DBP(num_clusters=4, dedup_eps=0.0).prune(
            signals, 1.0, precomputed=Precomputed(clustering=c)
        )



def test_dbp_deduplicates_across_boundaries() -> None:
    rng = np.random.default_rng(0)
    x = unit_rows(rng.standard_normal((4000, 16)).astype(np.float32))
    src = rng.choice(4000, 200, replace=False)
    x = np.concatenate([x, unit_rows(x[src] + 1e-2 * rng.standard_normal((200, 16)))])
    signals = Signals({"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x})
    removed = {}
    for within in (False, True):
        r = DBP(num_clusters=40, dedup_eps=0.002, within_cluster_only=within).prune(
            signals, 0.5, seed=0
        )
        removed[within] = r.subset.info["removed_duplicates"]
    assert removed[False] == 200 and removed[True] < 200


def _reference_softmax(d: np.ndarray, temperature: float) -> np.ndarray:
    """The reference: ``torch.nn.Softmax()(torch.Tensor(d_i) / temperature)``."""
    z = np.asarray(d, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def test_density_modes_follow_the_reference() -> None:
    sizes = np.array([3, 1, 4, 2])
    nan = np.full(4, np.nan)
    np.testing.assert_allclose(density_probs("uniform", sizes, nan, nan, 0.5), 0.25)
    np.testing.assert_allclose(
        density_probs("clustersize", sizes, nan, nan, 0.5), _reference_softmax(sizes, 0.5)
    )
    d_intra, d_inter = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.5, 0.2, 0.9])
    np.testing.assert_allclose(
        density_probs("complexity", sizes, d_intra, d_inter, 0.5),
        _reference_softmax(d_inter * d_intra, 0.5),
    )
    # An empty cluster gets no share.
    p = density_probs("uniform", np.array([3, 0, 4]), nan[:3], nan[:3], 0.5)
    np.testing.assert_allclose(p, [0.5, 0.0, 0.5])


def test_dbp_uniform_density_is_cluster_balanced() -> None:
    x, c = _geometry()
    signals = Signals({"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x})
    r = DBP(num_clusters=4, density="uniform").prune(
        signals, 0.4, precomputed=Precomputed(clustering=c)
    )
    assert np.bincount(c.labels[r.subset.indices], minlength=4).tolist() == [24] * 4
    assert r.subset.info["density"] == "uniform"
    with pytest.raises(DeepCoreError, match="density"):
        DBP(density="dintra")

def test_dbp_options() -> None:
    with pytest.raises(DeepCoreError, match="num_clusters"):
        DBP(num_clusters=1)
    with pytest.raises(DeepCoreError, match="temperature"):
        DBP(temperature=0.0)
    with pytest.raises(DeepCoreError, match="cls_bal_ratio"):
        DBP(cls_bal_ratio=1.5)
    x, _ = _geometry()
    signals = Signals({"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x})
    with pytest.raises(DeepCoreError, match="needs a fraction"):
        DBP(num_clusters=4).prune(signals)
