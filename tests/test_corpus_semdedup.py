"""SemDeDup: exact blockwise maxima, duplicates injected into real CIFAR-10 images."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deep_core.errors import DeepCoreError
from deep_core.methods._corpus import Precomputed
from deep_core.methods.semdedup import SemDeDup, eps_for_count
from deep_core.neighbors.dedup import (
    BELOW_ONE,
    block_max_similarity,
    boundary_band,
    boundary_visitors,
    cluster_order,
    earlier_max_similarity,
    naive_max_similarity,
)
from deep_core.neighbors.kmeans import Clustering, assign, kmeans, unit_rows
from deep_core.signals import Signals

CIFAR_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.zip"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))


@pytest.mark.parametrize("n, block", [(1, 4), (2, 4), (37, 8), (64, 16), (300, 64), (300, 1000)])
def test_blockwise_matches_full_matrix(n: int, block: int) -> None:
    v = _unit(n, 12, seed=n)
    # Plant duplicates across block boundaries: the "advanced" reference missed these.
    if n > 40:
        b = min(block, n - 10)
        v[n - 1] = v[0]
        v[b + 1] = v[b - 1]
        v[n - 3] = unit_rows(v[3:4] + 1e-4)[0]
    fast = block_max_similarity(v, block_rows=block)
    slow = naive_max_similarity(v)
    np.testing.assert_allclose(fast, slow, atol=2e-6)
    assert fast[0] == -1.0  # the first member has no earlier member
    if n > 40:
        assert fast[n - 1] == 1.0 and fast[b + 1] == 1.0
        assert 0.999 < fast[n - 3] <= BELOW_ONE


def test_block_max_is_max_over_earlier_members() -> None:
    v = _unit(50, 6, seed=3)
    m = block_max_similarity(v, block_rows=7)
    s = v.astype(np.float64) @ v.T.astype(np.float64)
    for j in range(1, 50):
        assert m[j] == pytest.approx(s[:j, j].max(), abs=1e-6)


def test_workers_and_shards_agree_with_in_process() -> None:
    x = _unit(600, 16, seed=1)
    x[500] = x[10]
    c = kmeans(x, 6, seed=0)
    order, offsets = cluster_order(c, which_to_keep="hard")
    full = earlier_max_similarity(x, order, offsets)
    assert not np.isnan(full).any()
    parts = [
        earlier_max_similarity(x, order, offsets, clusters=np.arange(6)[i::3])
        for i in range(3)
    ]
    merged = np.full_like(full, np.nan)
    for p in parts:
        ok = ~np.isnan(p)
        assert np.isnan(merged[ok]).all()  # every sample in exactly one shard
        merged[ok] = p[ok]
    np.testing.assert_array_equal(merged, full)
    par = earlier_max_similarity(x, order, offsets, workers=2)
    np.testing.assert_allclose(par, full, atol=1e-6)


def test_processing_order() -> None:
    c = Clustering(
        centroids=np.eye(2, dtype=np.float32),
        labels=np.array([0, 0, 1, 0, 1]),
        distances=np.array([0.2, 0.5, 0.1, 0.2, 0.3], dtype=np.float32),
        spherical=True,
    )
    order, offsets = cluster_order(c, which_to_keep="hard")
    np.testing.assert_array_equal(order, [1, 0, 3, 4, 2])  # ties keep the lower index
    np.testing.assert_array_equal(offsets, [0, 3, 5])
    order, _ = cluster_order(c, which_to_keep="easy")
    np.testing.assert_array_equal(order, [0, 3, 1, 2, 4])


def test_eps_for_count() -> None:
    m = np.array([-1.0, 0.5, 0.99, 1.0, 0.2], dtype=np.float32)
    eps = eps_for_count(m, 3)
    assert ((m >= 1 - eps).sum(), eps) == (2, pytest.approx(0.01, abs=1e-6))
    assert eps_for_count(m, 5) is None


# -- real images ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_with_duplicates() -> dict[str, np.ndarray]:
    if not CIFAR_ZIP.is_file():
        pytest.skip(f"{CIFAR_ZIP} not available")
    from PIL import Image

    with zipfile.ZipFile(CIFAR_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        names = names[:300]
        images = [Image.open(io.BytesIO(z.read(n))).convert("RGB") for n in names]
    base = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
    rng = np.random.default_rng(0)
    exact_src = rng.choice(300, 10, replace=False)
    near_src = rng.choice(np.setdiff1d(np.arange(300), exact_src), 10, replace=False)
    near = []
    for i in near_src:  # a JPEG re-encode at quality 90: a near-duplicate file
        buf = io.BytesIO()
        images[i].save(buf, "JPEG", quality=90)
        near.append(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)
    all_images = np.concatenate([base, base[exact_src], np.stack(near)])
    perm = rng.permutation(len(all_images))  # duplicates anywhere, not at the end
    feats = ((all_images - MEAN) / STD).reshape(len(all_images), -1)[perm]
    where = np.argsort(perm)  # original position -> shuffled position
    pairs_exact = [(where[i], where[300 + k]) for k, i in enumerate(exact_src)]
    pairs_near = [(where[i], where[310 + k]) for k, i in enumerate(near_src)]
    return {
        "features": feats.astype(np.float32),
        "exact": np.array(pairs_exact),
        "near": np.array(pairs_near),
    }


def _removed(features: np.ndarray, eps: float, which: str = "hard") -> np.ndarray:
    signals = Signals({"labels": np.zeros(len(features), dtype=np.int64), "features": features})
    r = SemDeDup(num_clusters=8, eps=eps, which_to_keep=which).prune(signals, seed=0)
    return np.setdiff1d(np.arange(len(features)), r.subset.indices)


def _one_of_each_pair(removed: np.ndarray, pairs: np.ndarray) -> bool:
    return all(int(np.isin(p, removed).sum()) == 1 for p in pairs)


@pytest.mark.shared
@pytest.mark.parametrize("which", ["hard", "easy", "random"])
def test_removes_injected_duplicates_and_nothing_else(cifar_with_duplicates, which) -> None:
    d = cifar_with_duplicates
    removed = _removed(d["features"], 0.02, which)
    pairs = np.concatenate([d["exact"], d["near"]])
    assert removed.size == len(pairs)
    assert np.isin(removed, pairs).all()
    assert _one_of_each_pair(removed, pairs)


@pytest.mark.shared
def test_eps_zero_removes_only_identical_embeddings(cifar_with_duplicates) -> None:
    d = cifar_with_duplicates
    removed = _removed(d["features"], 0.0)
    assert removed.size == len(d["exact"])
    assert _one_of_each_pair(removed, d["exact"])


@pytest.mark.shared
def test_fraction_finds_the_eps(cifar_with_duplicates) -> None:
    d = cifar_with_duplicates
    x = d["features"]
    signals = Signals({"labels": np.zeros(len(x), dtype=np.int64), "features": x})
    method = SemDeDup(num_clusters=8)
    sub = method.select(signals, 300 / 320, seed=0)
    assert len(sub) == 300
    removed = np.setdiff1d(np.arange(len(x)), sub.indices)
    pairs = np.concatenate([d["exact"], d["near"]])
    assert _one_of_each_pair(removed, pairs)
    eps = sub.info["eps"]
    assert 0.0 < eps < 0.07
    again = SemDeDup(num_clusters=8, eps=eps).prune(signals, seed=0).subset
    np.testing.assert_array_equal(again.indices, sub.indices)


def test_precomputed_similarities_are_used() -> None:
    x = _unit(40, 5)
    signals = Signals({"labels": np.zeros(40, dtype=np.int64), "features": x})
    c = kmeans(x, 2, seed=0)
    m = np.linspace(-1, 0.99, 40).astype(np.float32)
    r = SemDeDup(num_clusters=2, eps=0.5).prune(
        signals, precomputed=Precomputed(clustering=c, max_similarity=m)
    )
    np.testing.assert_array_equal(r.subset.indices, np.flatnonzero(m < 0.5))
    np.testing.assert_array_equal(r.groups, c.labels)


def test_bad_options() -> None:
    with pytest.raises(DeepCoreError, match="eps"):
        SemDeDup(eps=2.5)
    with pytest.raises(DeepCoreError, match="which_to_keep"):
        SemDeDup(which_to_keep="hardest")
    signals = Signals({"labels": np.zeros(5, dtype=np.int64), "features": _unit(5, 3)})
    with pytest.raises(DeepCoreError, match="fraction or eps"):
        SemDeDup(num_clusters=2).prune(signals)
    zero = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(DeepCoreError, match="zero or non-finite norm"):
        SemDeDup(num_clusters=2).select(
            Signals({"labels": np.zeros(5, dtype=np.int64), "features": zero}), 0.5
        )


def _near_copies_across_boundaries() -> tuple[np.ndarray, np.ndarray]:
    """The measured case: 20,000 random unit vectors + 500 near-copies (noise 1e-3)."""
    rng = np.random.default_rng(0)
    x = _unit(20_000, 32, seed=0)
    src = rng.choice(20_000, 500, replace=False)
    dup = unit_rows(x[src] + 1e-3 * rng.standard_normal((500, 32)).astype(np.float32))
    return np.concatenate([x, dup]), src


def _reference_m(x: np.ndarray, c: Clustering) -> np.ndarray:
    """Transcription of the reference: per cluster, farthest first, full matrix, triu."""
    v = unit_rows(x).astype(np.float64)
    m = np.full(x.shape[0], -1.0)
    for k in range(c.num_clusters):
        idx = np.flatnonzero(c.labels == k)
        idx = idx[np.argsort(-c.distances[idx], kind="stable")]
        s = v[idx] @ v[idx].T
        s[np.tril_indices(idx.size)] = -1.0
        if idx.size:
            m[idx] = s.max(axis=0)
    return m


def test_boundary_duplicates_are_all_reduced() -> None:
    x, src = _near_copies_across_boundaries()
    signals = Signals({"labels": np.zeros(len(x), dtype=np.int64), "features": x})
    c = kmeans(x, 50, seed=0)
    pre = Precomputed(clustering=c)
    n = 20_000
    results = {}
    for within in (False, True):
        kept = (
            SemDeDup(num_clusters=50, eps=0.001, within_cluster_only=within)
            .prune(signals, seed=0, precomputed=pre)
            .subset.mask()
        )
        others = np.setdiff1d(np.arange(n), src)
        assert kept[others].all()  # no false removal
        assert not (~kept[src] & ~kept[n:]).any()  # never both copies
        results[within] = int((kept[src] != kept[n:]).sum())
    assert results[False] == 500
    assert results[True] < 500  # the reference misses pairs split by a boundary
    # within_cluster_only is the reference's per-cluster rule
    ref = _reference_m(x, c) < 1.0 - 0.001
    kept = SemDeDup(num_clusters=50, eps=0.001, within_cluster_only=True).prune(
        signals, seed=0, precomputed=pre
    )
    np.testing.assert_array_equal(kept.subset.mask(), ref)


def test_boundary_band_catches_a_pair_straddling_the_bisector() -> None:
    # Centroids at 0 and 90 degrees; a pair at 45 -/+ half its angle, cos just above 1 - eps.
    eps = 0.02
    centroids = np.eye(2, dtype=np.float32)
    half = 0.999 * np.arccos(1.0 - eps) / 2
    angles = np.pi / 4 + np.array([-half, half])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    ids, dist = assign(x, centroids)
    c = Clustering(centroids, ids[:, 0], dist[:, 0], True)
    np.testing.assert_array_equal(c.labels, [0, 1])
    within = earlier_max_similarity(x, *cluster_order(c))
    assert (within >= 1.0 - eps).sum() == 0
    visitors = boundary_visitors(x, c, boundary_band(eps))
    m = earlier_max_similarity(x, *cluster_order(c, visitors=visitors))
    assert (m >= 1.0 - eps).sum() == 1


def test_visitors_sharded_and_in_workers_agree() -> None:
    x = _unit(600, 8, seed=4)
    c = kmeans(x, 6, seed=0)
    visitors = boundary_visitors(x, c, 0.05)
    assert 0 < visitors[0].size < 600
    order, offsets = cluster_order(c, which_to_keep="hard", visitors=visitors)
    full = earlier_max_similarity(x, order, offsets)
    within = earlier_max_similarity(x, *cluster_order(c, which_to_keep="hard"))
    assert (full >= within).all() and (full > within).any()
    merged = np.full_like(full, np.nan)
    for i in range(3):
        p = earlier_max_similarity(
            x, order, offsets, clusters=np.arange(6)[i::3]
        )
        merged = np.fmax(merged, p)
    np.testing.assert_array_equal(merged, full)
    par = earlier_max_similarity(x, order, offsets, workers=2)
    np.testing.assert_allclose(par, full, atol=1e-6)
