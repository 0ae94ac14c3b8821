"""Ray as the distributed engine of ``deepcore-prune`` (``--engine ray``).

The heavy stages run as Ray tasks; the methods' keep rules then run unchanged on the
driver with the results (:class:`~deep_core.methods._corpus.Precomputed`), so both
engines share one implementation of every rule:

- k-means: faiss trains on the seeded sample of
  :func:`~deep_core.neighbors.kmeans.train_centroids` in one task holding a whole
  node's CPUs; the assignment is a map over row chunks (the same ``CHUNK_ROWS``
  chunks the local engine searches); the pipeline reports empty clusters (a
  degenerate k-means) on either engine.
- SemDeDup's per-cluster maxima (SemDeDup, DBP's de-duplication): tasks grouped by
  cluster, largest clusters first, each reading its rows from the embeddings file;
  the driver merges the per-cluster results (a row listed in two clusters keeps the
  larger maximum). The cross-boundary pass's second-nearest centroids are a map over
  chunks too.
- The per-cluster step of DBP, KMeansQuantile, SSP and ClusterSubsample
  (:meth:`~deep_core.methods._corpus.CorpusMethod.cluster_stats`, see
  :mod:`deep_core.methods._corpus`): tasks grouped by cluster, each holding its
  clusters' row ids and per-row columns (distances, tie keys, draws), returning every
  cluster's ranking and statistics; the method's global step (DBP's quotas, a global
  ranking) runs on the driver from those. KMeansQuantile's scores, which need the
  embeddings, are a map over row chunks (:meth:`RayEngine.map_rows`).

A per-cluster task takes clusters, largest first, until it holds :func:`task_rows` rows
(at most :data:`TASK_ROWS`), so it holds fewer than ``TASK_ROWS`` rows plus one
cluster's (SemDeDup's with that cluster's boundary visitors): a worker's memory is
bounded by that cap and the largest cluster, not by N.

Every task is a pure function of its inputs, so a task that Ray retries after losing
its worker (``max_retries``) returns the same values, and the same input gives the
same kept set on either engine and any number of workers: the clustering is
bit-identical (distances are recomputed row by row, see
:mod:`deep_core.neighbors.kmeans`), and SemDeDup's maxima agree to the last float32
bit, which a BLAS product rounds according to its thread count (only a maximum within
one rounding step of ``1 - eps``, or of a fraction's boundary, could be decided
differently). Workers read the embeddings
from the ``.npy`` file behind the memory map (a shared file system on a cluster), or
from the object store when the rows are an in-memory array.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import DeepCoreError
from ..methods._corpus import ClusterPart, ClusterParts, group_members, slice_columns
from ..neighbors.dedup import BLOCK_ROWS, _tasks, boundary_visitors, cluster_order
from ..neighbors.kmeans import CHUNK_ROWS, MAX_MEMORY_GB, Clustering

#: task retries after a lost worker (tasks are pure, so a retry gives the same values)
MAX_RETRIES = 3
#: test hook (see the module docstring): a marker file; its absence kills one worker
KILL_ONCE_ENV = "DEEPCORE_RAY_KILL_ONCE"
#: most rows a per-cluster task holds (a larger cluster is a task of its own)
TASK_ROWS = 1 << 18


def task_rows(total: int, workers: int) -> int:
    """Rows per per-cluster task: about 8 tasks per worker, at most :data:`TASK_ROWS`."""
    return max(1, min(TASK_ROWS, math.ceil(total / (workers * 8))))


def _rows(source: tuple) -> np.ndarray:
    kind, value = source
    return np.load(value, mmap_mode="r") if kind == "npy" else value


def _train(
    source: tuple, k: int, spherical: bool, niter: int, seed: int, max_memory_gb: float | None
) -> np.ndarray:
    from ..neighbors.kmeans import train_centroids

    return train_centroids(
        _rows(source), k, spherical=spherical, niter=niter, seed=seed, max_memory_gb=max_memory_gb
    )


def _assign(
    source: tuple, centroids: np.ndarray, lo: int, hi: int, k: int, spherical: bool
) -> tuple[np.ndarray, np.ndarray]:
    from ..neighbors.kmeans import assign

    return assign(_rows(source)[lo:hi], centroids, k=k, spherical=spherical)


def _dedup(source: tuple, task: list[np.ndarray], block_rows: int) -> list[np.ndarray]:
    from ..neighbors.dedup import block_max_similarity
    from ..neighbors.kmeans import _normalise_chunk

    x = _rows(source)
    out = []
    for idx in task:
        v = np.array(x[idx], dtype=np.float32, order="C")
        out.append(block_max_similarity(_normalise_chunk(v, 0, idx), block_rows=block_rows))
        _kill_once()
    return out


def _map_rows(fn: Any, source: tuple, lo: int, hi: int, columns: dict, args: tuple) -> Any:
    return fn(_rows(source)[lo:hi], columns, *args)


def _clusters(method: Any, blocks: list[tuple[int, np.ndarray, dict]]) -> list[ClusterPart]:
    out = []
    for group, rows, columns in blocks:
        out.append(method.cluster_stats(group, rows, columns))
        _kill_once()
    return out


def _kill_once() -> None:
    """The test hook: end this worker if ``DEEPCORE_RAY_KILL_ONCE`` names a new file."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:  # exclusive creation: exactly one attempt, among all workers, gets here first
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(1)


class RayEngine:
    """A Ray connection that runs the heavy corpus stages as tasks (context manager).

    Parameters
    ----------
    address : str, optional
        Ray cluster address (``"auto"``: the running cluster); None starts a local Ray.
    num_cpus : int, optional
        CPUs of a local Ray (default: all); each task uses one.
    """

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._ray: Any = None
        self._started = False
        self._sources: dict[int, tuple] = {}

    def __enter__(self) -> RayEngine:
        try:
            import ray
        except ImportError:
            raise DeepCoreError(
                "--engine ray needs Ray: pip install 'deepcore[ray]' (or ray>=2.9)"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is not None:
                kwargs["address"] = self.address
            elif self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as e:
                raise DeepCoreError(f"cannot start or reach Ray: {e}") from None
            self._started = True
        self._retries = MAX_RETRIES
        self._train = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_train)
        self._assign = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_assign)
        self._dedup = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_dedup)
        self._map_rows = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_map_rows)
        self._clusters = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_clusters)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._ray.shutdown()
        self._sources.clear()

    def _get(self, futures: Any) -> Any:
        """``ray.get``; a worker or node lost beyond the retries is a one-line error."""
        ex = self._ray.exceptions
        lost = (ex.WorkerCrashedError, ex.NodeDiedError, ex.OutOfMemoryError, ex.ObjectLostError)
        try:
            return self._ray.get(futures)
        except lost as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise DeepCoreError(
                f"a Ray task failed after {self._retries} retries: {type(e).__name__}: {first}"
            ) from None

    @property
    def workers(self) -> int:
        """CPUs the cluster offers (tasks in flight at once)."""
        return int(self._ray.cluster_resources().get("CPU", 1))

    def source(self, x: np.ndarray) -> tuple:
        """How workers read ``x``: its ``.npy`` file, or an object-store copy."""
        key = id(x)
        if key not in self._sources:
            path = getattr(x, "filename", None)
            whole = False
            if isinstance(x, np.memmap) and path:
                try:
                    y = np.load(path, mmap_mode="r")
                    whole = y.shape == x.shape and y.dtype == x.dtype and y.offset == x.offset
                except (OSError, ValueError):
                    whole = False
            if whole:
                self._sources[key] = ("npy", str(path))
            else:
                self._sources[key] = ("ref", self._ray.put(np.ascontiguousarray(x)))
        return self._sources[key]

    def _map_assign(
        self, x: np.ndarray, centroids: np.ndarray, k: int, spherical: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        src = self.source(x)
        ref = self._ray.put(centroids)
        n = x.shape[0]
        futures = [
            self._assign.remote(src, ref, lo, min(n, lo + CHUNK_ROWS), k, spherical)
            for lo in range(0, n, CHUNK_ROWS)
        ]
        parts = self._get(futures)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def kmeans(
        self,
        x: np.ndarray,
        num_clusters: int,
        *,
        spherical: bool,
        niter: int,
        seed: int,
        max_memory_gb: float | None = MAX_MEMORY_GB,
    ) -> Clustering:
        """:func:`~deep_core.neighbors.kmeans.kmeans`, trained in a task, assigned as a map."""
        # Training is one task: give it a whole node's CPUs (faiss threads over them).
        cpus = max(
            (n["Resources"].get("CPU", 1) for n in self._ray.nodes() if n["Alive"]), default=1
        )
        train = self._train.options(num_cpus=cpus)
        centroids = self._get(
            train.remote(self.source(x), num_clusters, spherical, niter, seed, max_memory_gb)
        )
        ids, dist = self._map_assign(x, centroids, 1, spherical)
        return Clustering(centroids, ids[:, 0].copy(), dist[:, 0].copy(), spherical)

    def max_similarities(
        self,
        x: np.ndarray,
        clustering: Clustering,
        *,
        which_to_keep: str,
        seed: int,
        band: float | None = None,
        workers: int = 1,
        progress: bool = False,
        clusters: np.ndarray | None = None,
    ) -> np.ndarray:
        """:func:`~deep_core.methods.semdedup.max_similarities` as tasks grouped by cluster.

        ``workers`` and ``progress`` are accepted for the same signature; the cluster's
        CPUs set the parallelism.
        """
        visitors = None
        if band is not None:
            nearest = self._map_assign(x, clustering.centroids, 2, True)
            visitors = boundary_visitors(None, clustering, band, nearest=nearest)
        order, offsets = cluster_order(
            clustering, which_to_keep=which_to_keep, seed=seed, visitors=visitors
        )
        k = clustering.num_clusters
        chosen = np.arange(k) if clusters is None else np.asarray(clusters, dtype=np.int64)
        total = int((offsets[chosen + 1] - offsets[chosen]).sum())
        src = self.source(x)
        tasks = list(_tasks(order, offsets, chosen, task_rows(total, self.workers)))
        futures = [self._dedup.remote(src, task, BLOCK_ROWS) for task in tasks]
        m = np.full(x.shape[0], np.nan, dtype=np.float32)
        for task, values in zip(tasks, self._get(futures)):
            for idx, v in zip(task, values):
                m[idx] = np.fmax(m[idx], v)
        return m

    def map_rows(self, fn: Any, x: np.ndarray, columns: Any, *args: Any) -> tuple[np.ndarray, ...]:
        """:meth:`~deep_core.methods._corpus.Tasks.map_rows`: one task per row chunk.

        ``fn`` must be importable by the workers (a module-level function).
        """
        src = self.source(x)
        n = x.shape[0]
        futures = [
            self._map_rows.remote(
                fn, src, lo, min(n, lo + CHUNK_ROWS),
                slice_columns(columns, slice(lo, lo + CHUNK_ROWS)), args,
            )
            for lo in range(0, n, CHUNK_ROWS)
        ]  # fmt: skip
        parts = self._get(futures)
        return tuple(np.concatenate(p) for p in zip(*parts))

    def map_clusters(
        self, method: Any, groups: np.ndarray, num_groups: int, columns: Any
    ) -> ClusterParts:
        """:meth:`~deep_core.methods._corpus.Tasks.map_clusters` as tasks grouped by cluster.

        Largest clusters first; a task takes clusters until it holds :func:`task_rows`
        rows (see the module docstring). Empty clusters ride along with the last task.
        """
        order, offsets = group_members(groups, num_groups)
        sizes = np.diff(offsets)
        limit = task_rows(groups.shape[0], self.workers)
        ref = self._ray.put(method)
        futures = []
        block: list[tuple[int, np.ndarray, dict]] = []
        held = 0
        for g in np.lexsort((np.arange(num_groups), -sizes)):
            rows = order[offsets[g] : offsets[g + 1]]
            block.append((int(g), rows, slice_columns(columns, rows)))
            held += rows.size
            if held >= limit:
                futures.append(self._clusters.remote(ref, block))
                block, held = [], 0
        if block:
            futures.append(self._clusters.remote(ref, block))
        parts = [p for task in self._get(futures) for p in task]
        return ClusterParts(parts, groups.shape[0], num_groups)
