"""SemDeDup's per-cluster statistic, exact for clusters of any size.

Within a cluster whose members are put in a processing order (farthest from the
centroid first for "hard", nearest first for "easy", shuffled for "random"), SemDeDup
needs for every member ``j``

    M[j] = max over earlier members i < j of cos(x_i, x_j)

and removes ``j`` when ``M[j] >= 1 - eps``. The reference builds the n x n similarity
matrix of the cluster, so memory grows as n^2; its "advanced" variant splits large
clusters into parts and misses duplicates across parts. :func:`block_max_similarity`
computes the same maxima block by block: column block ``b`` is compared with every
earlier row (all earlier blocks, in row chunks, plus the strict upper triangle of its
own diagonal block), so no pair ``i < j`` is skipped and the largest temporary is
``chunk x block`` floats whatever n is.

Two conventions make ``eps = 0`` mean "identical embeddings only":

- members identical (bit for bit, after L2 normalisation) to an earlier member get
  ``M = 1.0`` exactly, whatever float rounding gives for their dot product;
- every other similarity is clamped to ``[-1, 1)`` (the largest float32 below 1), and a
  cluster's first member, which has no earlier member, gets ``-1``.

Near-duplicates on two sides of a k-means boundary are never in one cluster. With a
band (:func:`boundary_band`), a row whose second-nearest centroid is within the band of
its own is also listed in that neighbouring cluster (:func:`boundary_visitors`), every
cluster list follows one global order, and a row's ``M`` is the larger of its two
maxima. Any pair with ``cos >= 1 - eps`` whose clusters are each other's nearest other
centroid is then compared; a row is listed in at most two clusters, but a cluster
hosts the visitors of all its neighbours, so the work grows quickly with the band
(measured in :mod:`deep_core.methods.semdedup`).

Clusters are independent: :func:`earlier_max_similarity` processes any subset of them,
in worker processes that read the unit embeddings from shared memory or a
memory-mapped file (or as Ray tasks, :mod:`deep_core.corpus.ray_engine`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import Literal, get_args

import numpy as np

from ..errors import DeepCoreError
from .kmeans import Clustering, assign

#: largest float32 below 1: the ceiling for similarities of non-identical members
BELOW_ONE = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
#: M of a member that has no earlier member in its cluster
NO_EARLIER = -1.0
#: columns per block; the largest temporary is ``CHUNK_VALUES`` floats
BLOCK_ROWS = 2048
CHUNK_VALUES = 1 << 24

WhichToKeep = Literal["hard", "easy", "random"]
WHICH_TO_KEEP: tuple[str, ...] = get_args(WhichToKeep)


def boundary_band(eps: float) -> float:
    """Cosine-distance band that catches every cross-boundary pair at ``eps``: ``2 sqrt(2 eps)``.

    Two unit rows with ``cos >= 1 - eps`` are at Euclidean distance ``r <= sqrt(2 eps)``,
    so their cosines to any centroid differ by at most ``r``. If ``p`` is nearest to
    centroid ``a`` and ``q`` to ``b``, then ``cos(q, a) >= cos(p, a) - r >=
    cos(p, b) - r >= cos(q, b) - 2r``: ``q``'s cosine distance to ``a`` is within
    ``2r`` of its distance to its own centroid (and the same for ``p`` and ``b``).
    """
    return 2.0 * math.sqrt(2.0 * float(eps))


def boundary_visitors(
    x: np.ndarray | None,
    clustering: Clustering,
    band: float,
    *,
    nearest: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose second-nearest centroid is within ``band`` of their own, and that centroid.

    Parameters
    ----------
    x : array-like of shape (N, d)
        The embeddings of ``clustering`` (spherical), read in chunks.
    clustering : Clustering
    band : float
        Cosine-distance band (:func:`boundary_band`).
    nearest : (ids, distances), optional
        ``assign(x, clustering.centroids, k=2)`` computed elsewhere (then ``x`` is unused).

    Returns
    -------
    rows, hosts : ndarray of int64
        Each such row and the cluster it is also compared in.
    """
    if clustering.num_clusters < 2:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if nearest is None:
        nearest = assign(x, clustering.centroids, k=2, spherical=True)
    ids, dist = nearest
    own = clustering.labels
    # The nearest centroid that is not the row's own (float ties can swap the first two).
    first_is_own = ids[:, 0] == own
    host = np.where(first_is_own, ids[:, 1], ids[:, 0])
    d_host = np.where(first_is_own, dist[:, 1], dist[:, 0]).astype(np.float64)
    rows = np.flatnonzero(d_host - clustering.distances.astype(np.float64) <= band)
    return rows.astype(np.int64), host[rows].astype(np.int64)


def cluster_order(
    clustering: Clustering,
    *,
    which_to_keep: str = "hard",
    seed: int = 0,
    visitors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Members of every cluster in SemDeDup's processing order (kept first).

    Parameters
    ----------
    clustering : Clustering
    which_to_keep : {"hard", "easy", "random"}, default="hard"
        ``hard``: farthest from the centroid first (the reference default); ``easy``:
        nearest first; ``random``: a shuffle drawn from ``seed``. Ties keep the lower
        index first.
    seed : int, default=0
        Used by ``random`` only; one global draw, so every task sees the same order.
    visitors : (rows, hosts), optional
        Rows also listed in another cluster (:func:`boundary_visitors`). Every list
        is ordered by one global order (the key above over all rows, ties by index), so
        a pair is ordered the same in whichever cluster it is compared.

    Returns
    -------
    order, offsets : ndarray of int64
        Cluster ``c`` is ``order[offsets[c]:offsets[c + 1]]``, first-kept first; a
        visitor appears in its own cluster and in its host.
    """
    n = clustering.labels.shape[0]
    index = np.arange(n)
    if which_to_keep == "hard":
        key = -clustering.distances.astype(np.float64)
    elif which_to_keep == "easy":
        key = clustering.distances.astype(np.float64)
    elif which_to_keep == "random":
        key = np.random.default_rng(seed).random(n)
    else:
        raise DeepCoreError(
            f"unknown which_to_keep {which_to_keep!r}; choose from: {', '.join(WHICH_TO_KEEP)}"
        )
    position = np.empty(n, dtype=np.int64)
    position[np.lexsort((index, key))] = index
    rows, hosts = index, clustering.labels
    if visitors is not None:
        rows = np.concatenate([rows, visitors[0]])
        hosts = np.concatenate([hosts, visitors[1]])
    order = rows[np.lexsort((position[rows], hosts))].astype(np.int64)
    offsets = np.zeros(clustering.num_clusters + 1, dtype=np.int64)
    np.cumsum(np.bincount(hosts, minlength=clustering.num_clusters), out=offsets[1:])
    return order, offsets


def _finalise(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Clamp to [-1, 1) and mark exact repeats of an earlier member with 1.0."""
    np.clip(m, NO_EARLIER, BELOW_ONE, out=m)
    candidates = m >= BELOW_ONE * (1.0 - 1e-6)
    if candidates.any():
        rows = np.ascontiguousarray(v).view(np.dtype((np.void, v.shape[1] * v.itemsize)))
        _, first, inverse = np.unique(rows.ravel(), return_index=True, return_inverse=True)
        repeat = first[inverse.ravel()] < np.arange(v.shape[0])
        m[repeat] = 1.0
    return m


_BIAS: dict[str, np.ndarray] = {}


def _lower_bias(width: int) -> np.ndarray:
    """``-inf`` on and below the diagonal, 0 above (cached; top-left slices reused)."""
    bias = _BIAS.get("tri")
    if bias is None or bias.shape[0] < width:
        size = max(width, BLOCK_ROWS)
        bias = np.where(np.tri(size, dtype=bool), np.float32(-np.inf), np.float32(0.0))
        _BIAS["tri"] = bias
    return bias[:width, :width]


def block_max_similarity(v: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """``M[j] = max_{i<j} v_i . v_j`` for unit rows ``v`` (one cluster, in order).

    Exact over all pairs, in blocks: memory ``O(block_rows * chunk)``, never n x n.

    Parameters
    ----------
    v : ndarray of float32, shape (n, d)
        Unit rows in processing order.
    block_rows : int, default=2048
        Columns compared at a time.

    Returns
    -------
    ndarray of float32, shape (n,)
        See the module docstring for the conventions (1.0 for exact repeats, -1 for
        the first member, everything else clamped below 1).
    """
    v = np.ascontiguousarray(v, dtype=np.float32)
    n = v.shape[0]
    m = np.full(n, -np.inf, dtype=np.float32)
    for b0 in range(0, n, block_rows):
        b1 = min(n, b0 + block_rows)
        vb = v[b0:b1]
        width = b1 - b0
        rows = max(block_rows, CHUNK_VALUES // width)
        mb = m[b0:b1]
        for r0 in range(0, b0, rows):
            r1 = min(b0, r0 + rows)
            np.maximum(mb, (v[r0:r1] @ vb.T).max(axis=0), out=mb)
        s = vb @ vb.T  # one operand transposed: BLAS syrk, half the work
        s += _lower_bias(width)  # keep i < j only
        np.maximum(mb, s.max(axis=0), out=mb)
    return _finalise(v, m)


def naive_max_similarity(v: np.ndarray) -> np.ndarray:
    """The straightforward version: the full n x n matrix, masked to i < j.

    Same conventions and results as :func:`block_max_similarity`; memory ``n^2``.
    Kept for tests and the benchmark.
    """
    v = np.ascontiguousarray(v, dtype=np.float32)
    s = v @ v.T
    s[np.tri(v.shape[0], dtype=bool)] = -np.inf  # keep i < j only
    m = s.max(axis=0) if v.shape[0] else np.empty(0, dtype=np.float32)
    return _finalise(v, m.astype(np.float32))


class SharedRows:
    """A float32 (N, d) array in shared memory, readable by worker processes.

    Use as a context manager (the segment is unlinked on exit); fill ``.array``.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        nbytes = max(1, self.shape[0] * self.shape[1] * 4)
        self._shm = SharedMemory(create=True, size=nbytes)
        self.array = np.ndarray(self.shape, dtype=np.float32, buffer=self._shm.buf)

    @property
    def name(self) -> str:
        return self._shm.name

    def close(self) -> None:
        if self._shm is not None:
            del self.array
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def __enter__(self) -> SharedRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- worker side ----------------------------------------------------------------------
_WORKER: dict[str, object] = {}


def _init_worker(source: tuple, threads: int) -> None:
    from threadpoolctl import threadpool_limits

    _WORKER["limits"] = threadpool_limits(limits=threads)
    kind = source[0]
    if kind == "shm":
        _, name, shape = source
        shm = SharedMemory(name=name)
        _WORKER["shm"] = shm
        _WORKER["x"] = np.ndarray(shape, dtype=np.float32, buffer=shm.buf)
    else:
        _, path = source
        _WORKER["x"] = np.load(path, mmap_mode="r")


def _run_task(task: Sequence[np.ndarray], block_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    x = _WORKER["x"]
    out = []
    for idx in task:
        out.append((idx, block_max_similarity(x[idx], block_rows=block_rows)))
    return out


def _tasks(
    order: np.ndarray, offsets: np.ndarray, clusters: np.ndarray, rows_per_task: int
) -> Iterator[list[np.ndarray]]:
    sizes = offsets[clusters + 1] - offsets[clusters]
    by_cost = clusters[np.lexsort((clusters, -sizes))]
    task: list[np.ndarray] = []
    rows = 0
    for c in by_cost:
        idx = order[offsets[c] : offsets[c + 1]]
        if idx.size == 0:
            continue
        task.append(idx)
        rows += idx.size
        if rows >= rows_per_task:
            yield task
            task, rows = [], 0
    if task:
        yield task


def earlier_max_similarity(
    x_unit: np.ndarray | SharedRows,
    order: np.ndarray,
    offsets: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    workers: int = 1,
    block_rows: int = BLOCK_ROWS,
    progress: bool = False,
) -> np.ndarray:
    """SemDeDup's ``M`` for every member of the given clusters.

    Parameters
    ----------
    x_unit : ndarray of float32 (N, d) or SharedRows
        Unit embeddings. With ``workers > 1`` they are read by worker processes from a
        :class:`SharedRows` segment (passed as is, or one created and filled here) or
        straight from the file behind a C-ordered ``numpy.memmap`` of a ``.npy``.
    order, offsets : ndarray of int64
        Processing order from :func:`cluster_order`.
    clusters : ndarray of int, optional
        Cluster ids to process (a subset); default all.
    workers : int, default=1
        Worker processes (spawned; BLAS threads split between them). 1 = in process.
    block_rows : int, default=2048
        See :func:`block_max_similarity`.
    progress : bool, default=False
        Show a tqdm bar over rows.

    Returns
    -------
    ndarray of float32, shape (N,)
        ``M`` for members of ``clusters`` (a row listed in two clusters gets the larger
        of its two maxima); NaN for every other row.
    """
    shared = x_unit if isinstance(x_unit, SharedRows) else None
    x = shared.array if shared is not None else x_unit
    n = x.shape[0]
    k = offsets.shape[0] - 1
    clusters = np.arange(k) if clusters is None else np.asarray(clusters, dtype=np.int64)
    m = np.full(n, np.nan, dtype=np.float32)
    total = int((offsets[clusters + 1] - offsets[clusters]).sum())
    from tqdm import tqdm

    bar = tqdm(total=total, unit="row", desc="semdedup", disable=not progress, leave=False)
    try:
        if workers <= 1:
            for task in _tasks(order, offsets, clusters, 1):
                for idx in task:
                    values = block_max_similarity(x[idx], block_rows=block_rows)
                    m[idx] = np.fmax(m[idx], values)
                    bar.update(idx.size)
            return m
        rows_per_task = max(1, math.ceil(total / (workers * 8)))
        threads = max(1, (os.cpu_count() or 1) // workers)
        own = None
        if shared is not None:
            source: tuple = ("shm", shared.name, shared.shape)
        elif isinstance(x, np.memmap) and x.filename and _is_npy_rows(x):
            source = ("npy", x.filename)
        else:
            own = SharedRows(x.shape)
            own.array[:] = x
            source = ("shm", own.name, own.shape)
        try:
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(source, threads),
            ) as pool:
                futures = [
                    pool.submit(_run_task, task, block_rows)
                    for task in _tasks(order, offsets, clusters, rows_per_task)
                ]
                for fut in futures:
                    for idx, values in fut.result():
                        m[idx] = np.fmax(m[idx], values)
                        bar.update(idx.size)
        finally:
            if own is not None:
                own.close()
        return m
    finally:
        bar.close()


def _is_npy_rows(x: np.memmap) -> bool:
    """True when ``x`` is a whole, C-ordered float32 2-D ``.npy`` memory map."""
    if x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim != 2:
        return False
    try:
        y = np.load(x.filename, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return y.shape == x.shape and y.dtype == x.dtype and y.offset == x.offset
