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
    cluster_order,
    earlier_max_similarity,
    naive_max_similarity,
    shard_clusters,
)
from deep_core.neighbors.kmeans import Clustering, kmeans, unit_rows
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
        earlier_max_similarity(x, order, offsets, clusters=shard_clusters(c.sizes(), i, 3))
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


def test_shards_partition_clusters() -> None:
    sizes = np.array([100, 3, 0, 50, 50, 7, 1, 400])
    got = np.sort(np.concatenate([shard_clusters(sizes, i, 3) for i in range(3)]))
    np.testing.assert_array_equal(got, np.arange(sizes.size))
    with pytest.raises(DeepCoreError):
        shard_clusters(sizes, 3, 3)


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
