"""Corpus pruning at scale: k-means, SemDeDup and DBP on synthetic embeddings.

Builds N x d synthetic embeddings (unit "concept" centres with members of varying
spread, plus ``dup_frac * N`` injected near-duplicates of random rows, cosine about
0.9995), stores them as a ``.npy`` and memory-maps them as ``deepcore-prune
--features`` does, then times, each stage in its own process so peak RSS is per stage:

- ``kmeans``: spherical faiss k-means (K clusters, 20 iterations, trained on a
  256 * K sample) and the assignment of all N rows;
- ``semdedup``: SemDeDup's exact blockwise per-cluster similarities and the eps rule,
  with the duplicates recovered (injected pairs with one member removed) and the
  false removals (removed rows that are in no injected pair);
- ``dbp``: DBP at fraction 0.5 with de-duplication first (``dedup_eps``) and without;
- ``compare``: at ``compare_n`` rows, the blockwise similarities against the
  straightforward per-cluster n x n matrix, same clusters and order, side by side.

``--mode kmeans-quantile`` instead times KMeansQuantile (K = ``--k`` clusters, its
default per-cluster quantile rule 0.9) side by side with the faiss + numpy one-liner
(``faiss.Kmeans`` trained on the memory map, one ``index.search(x, 3)``, the scores and
per-cluster ``np.quantile`` in numpy) and with the previous implementation (k-means
with the assignment of every row, a second search for the three nearest, distances
recomputed in float64 over a (rows, 3, d) array), each in its own process, and
reports the ratios and how many kept samples differ from the float64 computation.

``--mode ray`` writes N x d synthetic embeddings as ``--shards`` ``.npy`` files (one
shard in memory at a time) and runs ``deepcore-prune --engine ray`` end to end on them,
SemDeDup (``--eps``) and then DBP (fraction 0.5, ``dedup_eps = eps``, reusing the cached
clustering) with ``--ray-cpus`` workers (``--method`` picks other selections,
``--engine local ray`` runs each on both engines, ``--no-dedup`` drops DBP's
de-duplication; a row's ``kmeans_cached`` says whether it read the clustering that an
earlier run of the same N, d and shards left in the cache), each in its own process:
wall time, the driver's peak RSS, and the largest peak RSS (VmHWM) of any Ray worker,
sampled from ``/proc`` while the run lasts (file-backed pages of the memory-mapped embeddings that a
worker touched count in its peak RSS, VmHWM; the largest anonymous RSS sampled every
0.25 s, RssAnon, leaves them out).

``--mode keys`` writes N x d float32 embeddings with long string keys (about 60
characters) as ``--shards`` Parquet files and runs ``deepcore-prune --features SHARDS/
--selection KMeansQuantile --num-clusters K`` with Parquet, then text, output, with this
tree's code and, side by side, with ``--baseline-src`` (an older checkout): wall time,
the driver's peak RSS (VmHWM) and largest anonymous RSS sampled every 0.1 s, and a
hash of the kept keys (the same in both trees).

Usage (2-core machine; serialise heavy runs with other users of the machine)::

    python benchmarks/bench_corpus.py
    python benchmarks/bench_corpus.py --n 200000 --k 200 --compare-n 50000   # quicker
    python benchmarks/bench_corpus.py --mode kmeans-quantile --n 1000000 --d 512 --k 10
    python benchmarks/bench_corpus.py --mode ray --n 1000000 --d 256 --k 1000 --shards 8
    python benchmarks/bench_corpus.py --mode ray --n 1000000 --d 64 --k 500 --shards 8 \
        --method DBP --no-dedup --engine local ray --workers 2
    python benchmarks/bench_corpus.py --mode keys --n 2000000 --d 64 --k 100 --shards 16 \\
        --baseline-src OLD_CHECKOUT
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_BASE = [0.0]


def _imported() -> None:
    """Mark the end of imports (torch comes in with the registry: hundreds of MiB)."""
    _BASE[0] = _peak_mib()


def _emit(**row: object) -> None:
    row["peak_rss_mib"] = round(_peak_mib(), 1)
    row["peak_above_imports_mib"] = round(_peak_mib() - _BASE[0], 1)
    print("RESULT " + json.dumps(row), flush=True)


# -- stages (each runs in a fresh process) --------------------------------------------
def stage_gen(a: argparse.Namespace) -> None:
    rng = np.random.default_rng(a.seed)
    n, d = a.n, a.d
    n_dup = int(round(a.dup_frac * n))
    n_base = n - n_dup
    concepts = max(2, a.k * 2)
    centres = rng.standard_normal((concepts, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.4, 1.2, concepts).astype(np.float32)
    weights = rng.dirichlet(np.full(concepts, 2.0))
    which = rng.choice(concepts, size=n_base, p=weights)
    t = time.perf_counter()
    x = np.lib.format.open_memmap(a.workdir / "emb.npy", mode="w+", dtype=np.float32, shape=(n, d))
    step = 1 << 16
    for lo in range(0, n_base, step):
        hi = min(n_base, lo + step)
        g = rng.standard_normal((hi - lo, d)).astype(np.float32) / np.sqrt(d)
        x[lo:hi] = centres[which[lo:hi]] + spread[which[lo:hi], None] * g
    src = rng.choice(n_base, size=n_dup, replace=False)
    for lo in range(0, n_dup, step):
        hi = min(n_dup, lo + step)
        rows = x[src[lo:hi]]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        noise = rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(d)
        x[n_base + lo : n_base + hi] = rows + 0.03 * norms * noise
    x.flush()
    # Shuffle rows so duplicates are not all at the end (written as a new file).
    perm = rng.permutation(n)
    y = np.lib.format.open_memmap(a.workdir / "emb2.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for lo in range(0, n, step):
        y[lo : lo + step] = x[perm[lo : lo + step]]
    y.flush()
    del x, y
    os.replace(a.workdir / "emb2.npy", a.workdir / "emb.npy")
    where = np.empty(n, dtype=np.int64)
    where[perm] = np.arange(n)
    pairs = np.stack([where[src], where[n_base + np.arange(n_dup)]], axis=1)
    np.save(a.workdir / "pairs.npy", pairs)
    _emit(stage="gen", seconds=round(time.perf_counter() - t, 1), n=n, d=d, duplicates=n_dup)


def _load(a: argparse.Namespace, n: int | None = None) -> np.ndarray:
    x = np.load(a.workdir / "emb.npy", mmap_mode="r")
    return x if n is None else x[:n]


def stage_kmeans(a: argparse.Namespace) -> None:
    from deep_core.neighbors.kmeans import kmeans

    _imported()
    x = _load(a, a.rows)
    t = time.perf_counter()
    c = kmeans(x, a.clusters, seed=a.seed, niter=20)
    sec = time.perf_counter() - t
    c.save(a.workdir / f"clustering-{a.rows or a.n}-{a.clusters}.npz")
    sizes = c.sizes()
    _emit(
        stage=f"kmeans n={x.shape[0]} K={a.clusters}",
        seconds=round(sec, 1),
        largest_cluster=int(sizes.max()),
        median_cluster=int(np.median(sizes)),
    )


def _recovery(removed: np.ndarray, pairs: np.ndarray) -> tuple[float, int]:
    hit = removed[pairs[:, 0]] | removed[pairs[:, 1]]
    in_pair = np.zeros(removed.size, dtype=bool)
    in_pair[pairs.ravel()] = True
    return float(hit.mean()), int((removed & ~in_pair).sum())


def stage_semdedup(a: argparse.Namespace) -> None:
    from deep_core.methods._corpus import Precomputed
    from deep_core.methods.semdedup import SemDeDup
    from deep_core.neighbors.kmeans import Clustering
    from deep_core.signals import Signals

    _imported()
    x = _load(a)
    c = Clustering.load(a.workdir / f"clustering-{a.n}-{a.k}.npz")
    signals = Signals(
        {"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x}, check_finite=False
    )
    method = SemDeDup(num_clusters=a.k, eps=a.eps, workers=a.workers)
    t = time.perf_counter()
    r = method.prune(signals, precomputed=Precomputed(clustering=c))
    sec = time.perf_counter() - t
    removed = ~r.subset.mask()
    recall, false = _recovery(removed, np.load(a.workdir / "pairs.npy"))
    _emit(
        stage=f"semdedup eps={a.eps} workers={a.workers}",
        seconds=round(sec, 1),
        removed=int(removed.sum()),
        duplicates_recovered=round(recall, 4),
        false_removals=false,
    )


def stage_dbp(a: argparse.Namespace) -> None:
    from deep_core.methods._corpus import Precomputed
    from deep_core.methods.dbp import DBP
    from deep_core.neighbors.kmeans import Clustering
    from deep_core.signals import Signals

    _imported()
    x = _load(a)
    c = Clustering.load(a.workdir / f"clustering-{a.n}-{a.k}.npz")
    signals = Signals(
        {"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x}, check_finite=False
    )
    dedup = a.eps if a.dedup else None
    method = DBP(num_clusters=a.k, dedup_eps=dedup, workers=a.workers)
    t = time.perf_counter()
    r = method.prune(signals, 0.5, precomputed=Precomputed(clustering=c))
    sec = time.perf_counter() - t
    row = {"stage": f"dbp fraction=0.5 dedup_eps={dedup}", "seconds": round(sec, 1)}
    row["kept"] = len(r.subset)
    if dedup is not None:
        row["removed_duplicates"] = r.subset.info["removed_duplicates"]
    _emit(**row)


def stage_compare(a: argparse.Namespace) -> None:
    from deep_core.neighbors.dedup import (
        block_max_similarity,
        cluster_order,
        naive_max_similarity,
    )
    from deep_core.neighbors.kmeans import Clustering, unit_rows

    _imported()
    x = unit_rows(_load(a, a.rows))
    c = Clustering.load(a.workdir / f"clustering-{a.rows}-{a.clusters}.npz")
    order, offsets = cluster_order(c, which_to_keep="hard")
    kernel = block_max_similarity if a.impl == "blockwise" else naive_max_similarity
    m = np.full(x.shape[0], np.nan, dtype=np.float32)
    base = _peak_mib()
    t = time.perf_counter()
    for k in range(c.num_clusters):
        idx = order[offsets[k] : offsets[k + 1]]
        if idx.size:
            m[idx] = kernel(x[idx])
    sec = time.perf_counter() - t
    np.save(a.workdir / f"m-{a.impl}-{a.rows}-{a.clusters}.npy", m)
    _emit(
        stage=f"compare {a.impl} n={a.rows} K={a.clusters}",
        seconds=round(sec, 2),
        largest_cluster=int(c.sizes().max()),
        rss_above_data_mib=round(_peak_mib() - base, 1),
    )


def stage_kmq(a: argparse.Namespace) -> None:
    """KMeansQuantile's quantile rule by one of three implementations (``--impl``)."""
    import faiss

    from deep_core.budget import quantile_mask
    from deep_core.methods.kmeans_quantile import KMeansQuantile
    from deep_core.neighbors.kmeans import CHUNK_ROWS, assign, kmeans
    from deep_core.signals import Signals

    _imported()
    x = _load(a)
    q = 0.9
    t, cpu = time.perf_counter(), time.process_time()
    if a.impl == "method":
        signals = Signals(
            {"labels": np.zeros(x.shape[0], dtype=np.int64), "features": x}, check_finite=False
        )
        kept = KMeansQuantile(num_clusters=a.k, quantile=q).prune(signals, seed=a.seed)
        kept = kept.subset.indices
    elif a.impl == "oneliner":
        km = faiss.Kmeans(x.shape[1], a.k, niter=20, seed=a.seed)
        km.train(x)
        dist, ids = km.index.search(x, 3)
        d = np.sqrt(np.maximum(dist, 0))
        s, g = d[:, 0] - d[:, 1] - d[:, 2], ids[:, 0]
        thr = np.array([np.quantile(s[g == c], q) for c in range(a.k)])
        kept = np.flatnonzero(s > thr[g])
    else:  # "float64": the previous implementation, transcribed
        c = kmeans(x, a.k, spherical=False, seed=a.seed)  # assigns every row once
        ids, _ = assign(x, c.centroids, k=3, spherical=False)  # ... and a second time
        d = np.empty(ids.shape, dtype=np.float64)
        cen = c.centroids.astype(np.float64)
        step = CHUNK_ROWS // 3
        for lo in range(0, x.shape[0], step):
            hi = min(x.shape[0], lo + step)
            xi = np.asarray(x[lo:hi], dtype=np.float64)[:, None, :]
            d[lo:hi] = np.sqrt(((xi - cen[ids[lo:hi]]) ** 2).sum(axis=2))
        swap = np.argsort(d, axis=1, kind="stable")
        d = np.take_along_axis(d, swap, axis=1)
        g = np.take_along_axis(ids, swap, axis=1)[:, 0]
        kept = np.flatnonzero(quantile_mask(d[:, 0] - d[:, 1] - d[:, 2], g, q))
    sec, cpu = time.perf_counter() - t, time.process_time() - cpu
    np.save(a.workdir / f"kmq-{a.impl}.npy", kept)
    _emit(
        stage=f"kmeans-quantile {a.impl}",
        seconds=round(sec, 2),
        cpu_seconds=round(cpu, 2),
        kept=int(kept.size),
    )


def kmeans_quantile_mode(a: argparse.Namespace) -> None:
    path = a.workdir / "emb.npy"
    if not (path.is_file() and np.load(path, mmap_mode="r").shape == (a.n, a.d)):
        _child(a, "gen")  # embeddings of this shape from an earlier run are reused
    rows = {impl: _child(a, "kmq", impl=impl) for impl in ("method", "oneliner", "float64")}
    kept = {impl: np.load(a.workdir / f"kmq-{impl}.npy") for impl in rows}
    sec = {impl: r["seconds"] for impl, r in rows.items()}
    cpu = {impl: r["cpu_seconds"] for impl, r in rows.items()}
    rss = {impl: r["peak_rss_mib"] for impl, r in rows.items()}
    print(
        json.dumps(
            {
                "kmeans_quantile": f"n={a.n} d={a.d} K={a.k}",
                "method_over_oneliner_seconds": round(sec["method"] / sec["oneliner"], 2),
                "float64_over_method_seconds": round(sec["float64"] / sec["method"], 2),
                "method_over_oneliner_cpu_seconds": round(cpu["method"] / cpu["oneliner"], 2),
                "float64_over_method_cpu_seconds": round(cpu["float64"] / cpu["method"], 2),
                "method_over_oneliner_peak_rss": round(rss["method"] / rss["oneliner"], 2),
                "float64_over_method_peak_rss": round(rss["float64"] / rss["method"], 2),
                "peak_above_imports_mib": {i: r["peak_above_imports_mib"] for i, r in rows.items()},
                "kept_differing_from_float64": int(
                    np.setxor1d(kept["method"], kept["float64"]).size
                ),
                "kept": int(kept["method"].size),
            }
        ),
        flush=True,
    )


STAGES = {
    "gen": stage_gen,
    "kmeans": stage_kmeans,
    "semdedup": stage_semdedup,
    "dbp": stage_dbp,
    "compare": stage_compare,
    "kmq": stage_kmq,
}


# -- ray mode -------------------------------------------------------------------------
def _write_shards(a: argparse.Namespace) -> Path:
    """``a.shards`` files of concept members plus ``dup_frac`` near-copies, one at a time."""
    folder = a.workdir / f"shards-{a.n}-{a.d}-{a.shards}-{a.seed}"
    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    centres = np.random.default_rng(a.seed).standard_normal((max(a.k, 2), a.d))
    for i, rows in enumerate(np.array_split(np.arange(a.n), a.shards)):
        rng = np.random.default_rng([a.seed, i])
        x = centres[rng.integers(0, len(centres), rows.size)]
        x = x + rng.uniform(0.3, 1.0, (rows.size, 1)) * rng.standard_normal((rows.size, a.d))
        dup = rng.choice(rows.size, int(a.dup_frac * rows.size), replace=False)
        x[dup[1::2]] = x[dup[::2][: dup[1::2].size]] + 1e-3 * rng.standard_normal(
            (dup[1::2].size, a.d)
        )
        np.save(folder / f"part-{i:04d}.npy", x.astype(np.float32))
    (folder / "done").write_text("")
    return folder


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _descends(pid: int, driver: int) -> bool:
    """Whether ``pid`` was started by ``driver`` (other users' Ray workers are left out)."""
    while pid > 1:
        if pid == driver:
            return True
        pid = _parent(pid)
    return False


def _peaks(seen: dict[int, dict[str, float]], driver: int) -> None:
    """Record VmHWM and the largest RssAnon seen (MiB) of the driver and its Ray workers."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            worker = b"default_worker.py" in cmd or cmd.startswith(b"ray::")
            if int(pid) != driver and not (worker and _descends(int(pid), driver)):
                continue
            row = seen.setdefault(int(pid), {"hwm": 0.0, "anon": 0.0, "worker": worker})
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    row["hwm"] = max(row["hwm"], int(line.split()[1]) / 1024)
                elif line.startswith("RssAnon:"):
                    row["anon"] = max(row["anon"], int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            continue


def ray_mode(a: argparse.Namespace) -> None:
    t = time.perf_counter()
    folder = _write_shards(a)
    print(json.dumps({"shards": str(folder), "write_seconds": round(time.perf_counter() - t, 1)}))
    out = a.workdir / f"ray-out-{a.n}-{a.d}-{a.shards}"
    dbp = ["--fraction", 0.5] + ([] if a.no_dedup else ["--dedup-eps", a.eps])
    options_of = {"SemDeDup": ["--eps", a.eps], "DBP": dbp, "SSP": ["--fraction", 0.5],
                  "ClusterSubsample": ["--fraction", 0.5],
                  "KMeansQuantile": ["--quantile", 0.9]}  # fmt: skip
    runs = [(engine, sel, options_of[sel]) for engine in a.engine for sel in a.method]
    for engine, selection, options in runs:
        on = ["--engine", "ray", "--ray-cpus", str(a.workers)] if engine == "ray" else []
        cmd = [sys.executable, "-m", "deep_core.cli.prune", "--features", str(folder),
               "--selection", selection, "--num-clusters", str(a.k), *map(str, options),
               *on, "--keys-only", "--quiet",
               "--output-format", "parquet", "--out-dir", str(out)]  # fmt: skip
        seen: dict[int, dict[str, float]] = {}
        t = time.perf_counter()
        log_path = a.workdir / f"ray-stderr-{engine}-{selection}.txt"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stderr=log)
            while proc.poll() is None:
                _peaks(seen, proc.pid)
                time.sleep(0.25)
        err = log_path.read_text()
        if proc.returncode:
            raise SystemExit(f"{selection} failed:\n{err}")
        workers = [r for r in seen.values() if r["worker"]]
        driver = seen.get(proc.pid, {"hwm": 0.0, "anon": 0.0})
        print(json.dumps({
            "selection": selection, "options": options, "engine": engine, "n": a.n, "d": a.d,
            "shards": a.shards, "k": a.k, "ray_cpus": a.workers if engine == "ray" else None,
            "kmeans_cached": "clustering from cache" in err,
            "seconds": round(time.perf_counter() - t, 1),
            "driver_peak_rss_mib": round(driver["hwm"], 1),
            "driver_peak_anon_mib": round(driver["anon"], 1),
            "max_worker_peak_rss_mib": round(max((r["hwm"] for r in workers), default=0), 1),
            "max_worker_peak_anon_mib": round(max((r["anon"] for r in workers), default=0), 1),
            "workers_seen": len(workers),
            "kept": json.loads((out / "summary.json").read_text())["num_kept"],
            "log": [line for line in err.splitlines() if "Ray" not in line][-6:],
        }), flush=True)  # fmt: skip


# -- keys mode ------------------------------------------------------------------------
def _write_tables(a: argparse.Namespace) -> Path:
    """``a.shards`` Parquet files: an ``embedding`` column and a long string ``key``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = a.workdir / f"tables-{a.n}-{a.d}-{a.shards}-{a.seed}"
    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(a.n), a.shards)):
        rng = np.random.default_rng([a.seed, i])
        x = rng.standard_normal((rows.size, a.d)).astype(np.float32)
        tags = rng.integers(0, 2**63, rows.size)
        keys = [f"s3://corpus-bucket/images/part-{i:05d}/{t:016x}/{r:010d}.jpg"
                for t, r in zip(tags.tolist(), rows.tolist())]  # fmt: skip
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), a.d)
        pq.write_table(pa.table({"key": keys, "embedding": emb}), folder / f"part-{i:03d}.parquet")
    (folder / "done").write_text("")
    return folder


def _kept_sha1(path: Path) -> str:
    """SHA-1 of the kept keys as text lines, whichever format holds them."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        text = "".join(k + "\n" for k in pq.read_table(path).column("key").to_pylist()).encode()
    else:
        text = path.read_bytes()
    return hashlib.sha1(text).hexdigest()[:12]


def keys_mode(a: argparse.Namespace) -> None:
    """The driver's peak memory on Parquet shards, this tree and ``--baseline-src``."""
    t = time.perf_counter()
    folder = _write_tables(a)
    print(json.dumps({"tables": str(folder), "write_seconds": round(time.perf_counter() - t, 1)}))
    trees = [("this", str(HERE.parent.parent))]
    if a.baseline_src is not None:
        trees.insert(0, ("baseline", str(a.baseline_src.resolve())))
    for output_format in ("parquet", "text"):
        for name, src in trees:
            out = a.workdir / f"keys-out-{name}-{output_format}"
            if out.exists():
                shutil.rmtree(out)
            cmd = [sys.executable, "-m", "deep_core.cli.prune", "--features", str(folder),
                   "--selection", "KMeansQuantile", "--num-clusters", str(a.k),
                   "--output-format", output_format, "--out-dir", str(out)]  # fmt: skip
            env = dict(os.environ, PYTHONPATH=src)
            seen: dict[int, dict[str, float]] = {}
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=src)
            while proc.poll() is None:
                _peaks(seen, proc.pid)
                time.sleep(0.1)
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"{name} failed:\n{err}")
            driver = seen.get(proc.pid, {"hwm": 0.0, "anon": 0.0})
            kept = out / ("kept_keys.parquet" if output_format == "parquet" else "kept_keys.txt")
            print(json.dumps({
                "tree": name, "output_format": output_format, "n": a.n, "d": a.d,
                "shards": a.shards, "seconds": round(time.perf_counter() - t, 1),
                "driver_peak_rss_mib": round(driver["hwm"], 1),
                "driver_peak_anon_mib": round(driver["anon"], 1),
                "kept_keys_sha1": _kept_sha1(kept),
                "log": err.strip().splitlines()[-4:],
            }), flush=True)  # fmt: skip
            shutil.rmtree(out)


# -- driver ---------------------------------------------------------------------------
def _child(a: argparse.Namespace, stage: str, **extra: object) -> dict:
    cmd = [sys.executable, str(HERE), "--stage", stage, "--workdir", str(a.workdir)]
    for key in ("n", "d", "k", "dup_frac", "eps", "seed", "workers"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(a, key))]
    for key, value in extra.items():
        if value is True:
            cmd.append(f"--{key.replace('_', '-')}")
        else:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(row for row in out.splitlines() if row.startswith("RESULT "))
    row = json.loads(line[len("RESULT ") :])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--dup-frac", type=float, default=0.05)
    p.add_argument("--eps", type=float, default=0.005)
    p.add_argument("--compare-n", type=int, default=100_000)
    p.add_argument("--compare-k", type=int, nargs="+", default=[100, 10])
    p.add_argument(
        "--workers", type=int, default=1, help="DBP de-duplication workers; ray: Ray CPUs"
    )
    p.add_argument("--shards", type=int, default=8, help="ray mode: .npy shards written")
    p.add_argument(
        "--baseline-src",
        type=Path,
        help="keys mode: also run the deepcore-prune of this source tree (an older checkout)",
    )
    p.add_argument(
        "--method",
        nargs="+",
        choices=["SemDeDup", "DBP", "SSP", "ClusterSubsample", "KMeansQuantile"],
        default=["SemDeDup", "DBP"],
        help="ray mode: the selections run, in order (the first computes the k-means)",
    )
    p.add_argument(
        "--engine", nargs="+", choices=["local", "ray"], default=["ray"],
        help="ray mode: run every --method on each engine, in order",
    )  # fmt: skip
    p.add_argument("--no-dedup", action="store_true", help="ray mode: DBP without dedup_eps")
    p.add_argument("--semdedup-workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_corpus"))
    p.add_argument(
        "--mode",
        choices=["all", "kmeans-quantile", "ray", "keys"],
        default="all",
        help="all: the stages above; kmeans-quantile: KMeansQuantile vs the one-liner",
    )
    p.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    p.add_argument("--clusters", type=int, help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--dedup", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    if a.stage:
        STAGES[a.stage](a)
        return
    print(
        f"# n={a.n} d={a.d} K={a.k} dup_frac={a.dup_frac} eps={a.eps} "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} cpus={os.cpu_count()}",
        flush=True,
    )
    if a.mode == "kmeans-quantile":
        kmeans_quantile_mode(a)
        return
    if a.mode == "ray":
        ray_mode(a)
        return
    if a.mode == "keys":
        keys_mode(a)
        return
    _child(a, "gen")
    _child(a, "kmeans", rows=a.n, clusters=a.k)
    for w in a.semdedup_workers:
        _child(a, "semdedup", workers=w)
    _child(a, "dbp", dedup=True)
    _child(a, "dbp")
    for k in a.compare_k:
        _child(a, "kmeans", rows=a.compare_n, clusters=k)
        fast = _child(a, "compare", rows=a.compare_n, clusters=k, impl="blockwise")
        slow = _child(a, "compare", rows=a.compare_n, clusters=k, impl="naive")
        mb = np.load(a.workdir / f"m-blockwise-{a.compare_n}-{k}.npy")
        mn = np.load(a.workdir / f"m-naive-{a.compare_n}-{k}.npy")
        same = bool(np.array_equal(mb >= 1 - a.eps, mn >= 1 - a.eps))
        print(
            json.dumps(
                {
                    "compare": f"n={a.compare_n} K={k}",
                    "naive_over_blockwise_seconds": round(slow["seconds"] / fast["seconds"], 2),
                    "naive_over_blockwise_rss_above_data": round(
                        slow["rss_above_data_mib"] / max(fast["rss_above_data_mib"], 1.0), 2
                    ),
                    "max_abs_diff": float(np.nanmax(np.abs(mb - mn))),
                    "same_removals": same,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
