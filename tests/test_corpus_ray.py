"""The Ray engine gives the local engine's kept sets, with 1 and 2 workers.

Every corpus method runs (every mode in the slow 200k test): SemDeDup's per-cluster
maxima and the other methods' per-cluster step (``cluster_stats``) are Ray tasks grouped
by cluster, KMeansQuantile's scores a map over row chunks. With 1 worker the tasks are
capped at 1,000 rows (a cluster or two each). In the 2-worker session a worker is
killed mid-run (after the first cluster of the first per-cluster task, through
``ray_engine``'s ``DEEPCORE_RAY_KILL_ONCE`` hook) in every run: Ray retries the task
and the result is still complete and identical; without retries, the run fails with
one ``error:`` line and writes no output.

Kept keys, groups and kept flags must be identical; scores agree to float32 rounding
(a BLAS product's last bit depends on its thread count, which differs between this
process and a Ray worker).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from deep_core.cli.prune import main
from deep_core.corpus import ray_engine
from deep_core.corpus.ray_engine import KILL_ONCE_ENV

ray = pytest.importorskip("ray")

# (selection, options): every corpus method, in each mode with its own per-cluster code
RUNS = [
    ("SemDeDup", ["--eps", 0.002]),
    ("SemDeDup", ["--fraction", 0.9]),
    # k-means trained on a capped sample of 2,000 rows (of 40 x 256 = 10,240; 32 dims)
    ("SemDeDup", ["--eps", 0.002, "--kmeans-max-memory-gb", 2_000 * (4 * 32 + 12) / 2**30]),
    ("DBP", ["--fraction", 0.5, "--dedup-eps", 0.002, "--num-nns", 5]),
    ("DBP", ["--fraction", 0.4, "--which-to-keep", "random", "--density", "clustersize"]),
    ("DBP", ["--fraction", 0.3, "--which-to-keep", "easy", "--cls-bal-ratio", 0.2]),
    ("SSP", ["--fraction", 0.3]),
    ("SSP", ["--quantile", 0.7, "--keep", "easy"]),
    ("ClusterSubsample", ["--fraction", 0.3, "--rank", "systematic"]),
    ("ClusterSubsample", ["--fraction", 0.2, "--rank", "stratified", "--skip-singletons"]),
    ("ClusterSubsample", ["--fraction", 0.3, "--rank", "random"]),
    ("ClusterSubsample", ["--fraction", 0.3, "--prune-type", "common"]),
    ("KMeansQuantile", ["--quantile", 0.8]),
    ("KMeansQuantile", ["--fraction", 0.25, "--difficulty", "easy"]),
    ("KMeansQuantile", ["--quantile", 0.9, "--supervised", "--labels", "LABELS"]),
    ("KMeansQuantile", ["--fraction", 0.3, "--centroids", "class_means", "--labels", "LABELS"]),
]
# every method, and the modes whose per-row columns differ (draws, duplicates, classes)
QUICK = [RUNS[i] for i in (0, 1, 2, 3, 4, 7, 9, 13, 14)]


def _corpus(folder: Path, n: int, d: int, shards: int) -> None:
    """Random unit vectors plus 2% near-copies (noise 1e-3), in ``shards`` .npy files."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    copies = rng.choice(n, n // 50, replace=False)
    x[copies[: len(copies) // 2]] = (
        x[copies[len(copies) // 2 :]] + 1e-3 * rng.standard_normal((len(copies) // 2, d))
    ).astype(np.float32)
    folder.mkdir()
    for i, part in enumerate(np.array_split(x, shards)):
        np.save(folder / f"part-{i:03d}.npy", part)
    np.save(folder.parent / "labels.npy", rng.integers(0, 7, n))  # 7 classes


def _run(folder: Path, out: Path, selection: str, options: list, *engine: object):
    labels = folder.parent / "labels.npy"
    options = [labels if o == "LABELS" else o for o in options]
    args = ["--features", folder, "--selection", selection, "--num-clusters", 40,
            *options, "--out-dir", out, "--quiet", *engine]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scores = np.array([float(r["score"]) for r in rows])
    rest = [(r["key"], r["group"], r["kept"]) for r in rows]
    return (out / "kept_keys.txt").read_text(), rest, scores


def _compare(
    tmp_path: Path, n: int, d: int, shards: int, runs: list, monkeypatch, capsys
) -> None:
    folder = tmp_path / "shards"
    _corpus(folder, n, d, shards)
    local = [
        _run(folder, tmp_path / f"local-{i}", sel, opts) for i, (sel, opts) in enumerate(runs)
    ]
    marker = tmp_path / "killed-worker.pid"
    for cpus in (1, 2):
        kill = cpus == 2  # 2 workers: one is killed mid-run in every run
        if cpus == 1:  # tasks of at most 1,000 rows: a cluster or two each
            monkeypatch.setattr(ray_engine, "TASK_ROWS", 1_000)
        else:
            monkeypatch.undo()
        env = {"env_vars": {KILL_ONCE_ENV: str(marker)}} if kill else None
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
        try:
            for i, (sel, opts) in enumerate(runs):
                marker.unlink(missing_ok=True)
                kept, rest, scores = _run(
                    folder, tmp_path / f"ray{cpus}-{i}", sel, opts, "--engine", "ray"
                )
                assert marker.is_file() == kill, (sel, opts, cpus)
                assert kept == local[i][0] and rest == local[i][1], (sel, opts, cpus)
                # BLAS rounds the last bit of a product by its thread count
                np.testing.assert_allclose(scores, local[i][2], rtol=1e-6, atol=1e-7)
            if kill:  # without retries the lost worker fails the run with one error line
                marker.unlink(missing_ok=True)
                monkeypatch.setattr(ray_engine, "MAX_RETRIES", 0)
                args = ["--features", folder, "--selection", "SemDeDup", "--eps", 0.002,
                        "--num-clusters", 40, "--out-dir", tmp_path / "lost", "--quiet",
                        "--engine", "ray"]  # fmt: skip
                assert main([str(a) for a in args]) == 2
                err = capsys.readouterr().err
                assert "error: a Ray task failed after 0 retries: WorkerCrashedError" in err
                assert not (tmp_path / "lost" / "kept_keys.txt").exists()
        finally:
            ray.shutdown()


def test_ray_and_local_keep_the_same_sets(tmp_path, monkeypatch, capsys) -> None:
    _compare(tmp_path, 20_000, 32, 8, QUICK, monkeypatch, capsys)


@pytest.mark.slow
def test_ray_and_local_keep_the_same_sets_200k(tmp_path, monkeypatch, capsys) -> None:
    _compare(tmp_path, 200_000, 64, 8, RUNS, monkeypatch, capsys)
