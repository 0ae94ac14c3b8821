"""The k-means training sample is capped in memory: fewer rows, seeded, same on re-run."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from deep_core.cli.prune import main
from deep_core.errors import DeepCoreError
from deep_core.neighbors.kmeans import train_centroids, training_rows

N, D, K = 6_000, 16, 20  # K x 256 = 5,120 training rows uncapped
ROW_BYTES = 4 * D + 12


def _gb(rows: int) -> float:
    """A cap that holds exactly ``rows`` training rows."""
    return rows * ROW_BYTES / 2**30


def test_training_rows_is_the_per_centroid_cap_unless_memory_is_smaller() -> None:
    assert training_rows(N, D, K, max_memory_gb=None) == K * 256
    assert training_rows(N, D, K) == K * 256  # the 2 GiB default fits
    assert training_rows(1_000, D, K) == 1_000  # fewer rows than the cap: all of them
    assert training_rows(N, D, K, max_memory_gb=_gb(1_000)) == 1_000
    # 50,000 clusters of 512 dims: 12.8M rows uncapped, about 1.04M (20.8 each) in 2 GiB
    assert training_rows(10**9, 512, 50_000) == 2**31 // (4 * 512 + 12)
    with pytest.raises(DeepCoreError, match="fewer than the 20 clusters"):
        training_rows(N, D, K, max_memory_gb=_gb(19))
    with pytest.raises(DeepCoreError, match="positive"):
        training_rows(N, D, K, max_memory_gb=0.0)


def _fit(monkeypatch, x: np.ndarray, seed: int, gb: float | None) -> tuple[np.ndarray, int]:
    """Centroids, and the rows faiss was trained on."""
    seen = []
    real = faiss.Kmeans

    class Recording(real):  # type: ignore[misc, valid-type]
        def train(self, x, *args, **kwargs):
            seen.append(x.shape[0])
            return super().train(x, *args, **kwargs)

    monkeypatch.setattr(faiss, "Kmeans", Recording)
    c = train_centroids(x, K, niter=5, seed=seed, max_memory_gb=gb)
    monkeypatch.setattr(faiss, "Kmeans", real)
    return c, seen[0]


def test_the_cap_shrinks_the_sample_and_stays_deterministic(monkeypatch) -> None:
    x = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
    full, rows_full = _fit(monkeypatch, x, 0, None)
    a, rows_a = _fit(monkeypatch, x, 0, _gb(1_000))
    b, rows_b = _fit(monkeypatch, x, 0, _gb(1_000))
    c, _ = _fit(monkeypatch, x, 1, _gb(1_000))
    assert rows_full == K * 256 and rows_a == rows_b == 1_000
    np.testing.assert_array_equal(a, b)  # same seed, same sample, same centroids
    assert not np.array_equal(a, full) and not np.array_equal(a, c)


def test_cli_logs_the_capped_sample_and_records_the_cap(tmp_path, capsys) -> None:
    x = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["--features", tmp_path / "x.npy", "--selection", "SemDeDup", "--eps", 0.01,
            "--num-clusters", K, "--quiet", "--kmeans-max-memory-gb", _gb(1_000)]  # fmt: skip
    for out in ("a", "b"):
        assert main([str(a) for a in [*args, "--out-dir", tmp_path / out]]) == 0
    err = capsys.readouterr().err
    assert err.count("training sample capped at 1,000 rows (50.0 per cluster; 5,120 uncapped)") == 2
    assert (tmp_path / "a/kept_keys.txt").read_text() == (tmp_path / "b/kept_keys.txt").read_text()
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    assert summary["kmeans_max_memory_gb"] == pytest.approx(_gb(1_000))
    bad = [*args[:-1], 0, "--out-dir", tmp_path / "c"]
    assert main([str(a) for a in bad]) == 2
    assert "--kmeans-max-memory-gb must be positive" in capsys.readouterr().err
