"""k-means and nearest-centroid assignment through faiss, in O(N·d) memory.

:func:`kmeans` trains faiss k-means on a seeded sample of at most
``num_clusters * max_points_per_centroid`` rows (faiss's own default cap, but drawn
here from a numpy generator so the sample is reproducible and independent of faiss's
internal sampling), and of at most ``max_memory_gb`` GiB (:func:`training_rows`: the
sample's float32 rows plus faiss's label and distance per row, so the training's memory
stays bounded whatever K and N; 50,000 clusters of 512-d rows would otherwise sample
12.8M rows, 26 GB), then assigns every row to its nearest centroid in chunks, so the
only N-sized outputs are one label and one distance per row. :func:`train_centroids`
stops after the training, for callers that assign the rows themselves.

``spherical=True`` is the cosine geometry of SemDeDup, SSP and DBP: rows are
L2-normalised chunk by chunk, centroids are re-normalised after every faiss iteration,
and the distance reported is the cosine distance ``1 - cos``. ``spherical=False`` is
plain Euclidean k-means (KMeansQuantile) and reports Euclidean distances. faiss picks
the nearest centroids; their distances are then recomputed row by row in float32
(``1 - q.c``, or ``|q - c|``), which rounds the same whatever the thread count and the
chunking, so the local and Ray engines report the same bits (faiss's blocked products
do not: their last bit follows the number of OpenMP threads). Float rounding only: the
order of two centroids can differ from exact arithmetic at near-ties.

Results are deterministic for a seed on one machine (faiss k-means and flat search
are deterministic for fixed inputs and thread count); :meth:`Clustering.fingerprint`
names a clustering in caches and summaries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError
from ..io import save_npz

#: rows per chunk for normalisation and assignment (64k x 1024 float32 = 256 MiB max)
CHUNK_ROWS = 1 << 16
#: default cap on the k-means training sample, GiB (see :func:`training_rows`)
MAX_MEMORY_GB = 2.0
#: bytes faiss holds per training row besides the row itself (int64 label, float32 distance)
_ROW_OVERHEAD = 12


@dataclass(frozen=True)
class Clustering:
    """A k-means result: centroids and each row's nearest centroid.

    Attributes
    ----------
    centroids : ndarray of float32, shape (K, d)
        Unit-norm rows when ``spherical``.
    labels : ndarray of int64, shape (N,)
        Nearest centroid of each row.
    distances : ndarray of float32, shape (N,)
        Distance to that centroid: cosine distance ``1 - cos`` when ``spherical``,
        Euclidean otherwise.
    spherical : bool
        Which geometry produced it.
    """

    centroids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    spherical: bool

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def sizes(self) -> np.ndarray:
        """Members per cluster, shape (K,), int64."""
        return np.bincount(self.labels, minlength=self.num_clusters).astype(np.int64)

    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows grouped by cluster: cluster ``c`` is ``order[offsets[c]:offsets[c + 1]]``.

        Within a cluster rows keep ascending index order.
        """
        order = np.argsort(self.labels, kind="stable").astype(np.int64)
        offsets = np.zeros(self.num_clusters + 1, dtype=np.int64)
        np.cumsum(self.sizes(), out=offsets[1:])
        return order, offsets

    def fingerprint(self) -> str:
        """Short hash of centroids and labels (equal clusterings, equal fingerprints)."""
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(self.centroids, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update(b"spherical" if self.spherical else b"euclidean")
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write to an ``.npz`` atomically."""
        save_npz(
            path,
            centroids=self.centroids,
            labels=self.labels,
            distances=self.distances,
            spherical=np.array(self.spherical),
        )

    @classmethod
    def load(cls, path: str | Path) -> Clustering:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                centroids=z["centroids"],
                labels=z["labels"],
                distances=z["distances"],
                spherical=bool(z["spherical"]),
            )


def _check_matrix(x: np.ndarray, name: str) -> None:
    if x.ndim != 2:
        raise DeepCoreError(f"{name} must be a 2-D array (N x d), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DeepCoreError(f"{name} is empty (shape {x.shape})")


def _normalise_chunk(
    chunk: np.ndarray, first_row: int, row_ids: np.ndarray | None = None
) -> np.ndarray:
    """L2-normalise float32 rows in place; a zero or non-finite norm is an error."""
    norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64))
    bad = ~np.isfinite(norms) | (norms == 0.0)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        row = int(row_ids[at]) if row_ids is not None else first_row + at
        raise DeepCoreError(
            f"embedding row {row} has zero or non-finite norm; cosine similarity is undefined"
        )
    chunk /= norms.astype(np.float32)[:, None]
    return chunk


def unit_rows(
    x: np.ndarray, *, out: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """L2-normalised float32 copy of ``x``, built chunk by chunk.

    Parameters
    ----------
    x : array-like of shape (N, d)
        Any float dtype; may be a memory map (read once, sequentially).
    out : ndarray of float32, shape (N, d), optional
        Where to write (e.g. a shared-memory buffer); default a new array.
    chunk_rows : int, default=65536
        Rows converted at a time.

    Returns
    -------
    ndarray of float32, shape (N, d)
    """
    _check_matrix(x, "embeddings")
    n, d = x.shape
    if out is None:
        out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        out[lo:hi] = x[lo:hi]
        _normalise_chunk(out[lo:hi], lo)
    return out


def assign(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    k: int = 1,
    spherical: bool = True,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest centroids of every row, exact (flat) search in chunks.

    Parameters
    ----------
    x : array-like of shape (N, d)
        Rows to assign (normalised per chunk when ``spherical``).
    centroids : ndarray of shape (K, d)
        Unit rows when ``spherical``.
    k : int, default=1
        Neighbours per row, at most K.
    spherical : bool, default=True
        Cosine geometry (inner product on unit rows) or Euclidean.

    Returns
    -------
    ids : ndarray of int64, shape (N, k)
        Centroid ids, nearest first (faiss order; ties keep the lower id first).
    distances : ndarray of float32, shape (N, k)
        Cosine distances ``1 - cos`` (spherical) or Euclidean distances.
    """
    _check_matrix(x, "embeddings")
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if centroids.ndim != 2 or centroids.shape[1] != x.shape[1]:
        raise DeepCoreError(
            f"centroids have shape {centroids.shape} but embeddings have {x.shape[1]} dims"
        )
    if not 1 <= k <= centroids.shape[0]:
        raise DeepCoreError(f"cannot find {k} nearest of {centroids.shape[0]} centroids")
    d = x.shape[1]
    import faiss  # loaded on first use (here and in kmeans): listing methods needs none

    index = faiss.IndexFlatIP(d) if spherical else faiss.IndexFlatL2(d)
    index.add(centroids)
    n = x.shape[0]
    ids = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        if spherical:
            q = _normalise_chunk(np.array(x[lo:hi], dtype=np.float32, order="C", copy=True), lo)
        else:  # searched in place when the rows are float32 already (no copy of a memmap)
            q = np.ascontiguousarray(x[lo:hi], dtype=np.float32)
        _, found = index.search(q, k)
        ids[lo:hi] = found
        # Distances recomputed row by row: faiss's blocked products round differently
        # with the thread count, a per-row product does not (same bits on any engine).
        for j in range(k):
            near = centroids[found[:, j]]  # one (rows, d) copy at a time
            if spherical:
                dist[lo:hi, j] = np.clip(1.0 - np.einsum("ij,ij->i", q, near), 0.0, 2.0)
            else:
                near -= q
                dist[lo:hi, j] = np.sqrt(np.einsum("ij,ij->i", near, near))
            del near
    return ids, dist


def kmeans(
    x: np.ndarray,
    num_clusters: int,
    *,
    spherical: bool = True,
    niter: int = 20,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    max_memory_gb: float | None = MAX_MEMORY_GB,
    chunk_rows: int = CHUNK_ROWS,
) -> Clustering:
    """Cluster the rows of ``x`` with faiss k-means and assign every row.

    Parameters
    ----------
    x : array-like of shape (N, d)
        Embeddings (any float dtype; a memory map is read in chunks).
    num_clusters : int
        K, in ``[1, N]``.
    spherical : bool, default=True
        Cosine k-means on unit rows (centroids re-normalised each iteration) or
        Euclidean k-means on the raw rows.
    niter : int, default=20
        Lloyd iterations.
    seed : int, default=0
        Seeds the training sample and faiss's initialisation.
    max_points_per_centroid : int, default=256
        Training uses at most ``K * max_points_per_centroid`` rows, drawn without
        replacement by ``numpy.random.default_rng(seed)``; every row is assigned.
    max_memory_gb : float or None, default=2.0
        Caps the training sample further to this many GiB (see :func:`training_rows`);
        None: no cap.

    Returns
    -------
    Clustering
    """
    centroids = train_centroids(
        x,
        num_clusters,
        spherical=spherical,
        niter=niter,
        seed=seed,
        max_points_per_centroid=max_points_per_centroid,
        max_memory_gb=max_memory_gb,
    )
    ids, dist = assign(x, centroids, k=1, spherical=spherical, chunk_rows=chunk_rows)
    return Clustering(
        centroids=centroids,
        labels=ids[:, 0].copy(),
        distances=dist[:, 0].copy(),
        spherical=spherical,
    )


def train_centroids(
    x: np.ndarray,
    num_clusters: int,
    *,
    spherical: bool = True,
    niter: int = 20,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    max_memory_gb: float | None = MAX_MEMORY_GB,
) -> np.ndarray:
    """The centroids of :func:`kmeans` without the assignment of every row.

    For a caller that assigns the rows itself (KMeansQuantile's three nearest
    centroids), so no row is assigned twice. Same parameters as :func:`kmeans`.

    Returns
    -------
    ndarray of float32, shape (K, d)
        Unit rows when ``spherical``.
    """
    _check_matrix(x, "embeddings")
    n, d = x.shape
    if isinstance(num_clusters, bool) or int(num_clusters) != num_clusters or num_clusters < 1:
        raise DeepCoreError(f"num_clusters must be a positive integer, got {num_clusters!r}")
    k = int(num_clusters)
    if k > n:
        raise DeepCoreError(f"num_clusters={k} exceeds the {n:,} embeddings")
    if niter < 1:
        raise DeepCoreError(f"niter must be >= 1, got {niter}")
    n_train = training_rows(
        n,
        d,
        k,
        max_points_per_centroid=max_points_per_centroid,
        max_memory_gb=max_memory_gb,
    )
    if n_train < n:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=n_train, replace=False))
        train = np.array(x[rows], dtype=np.float32, order="C")
    else:
        rows = None
        train = np.array(x, dtype=np.float32, order="C", copy=True)
    if spherical:
        _normalise_chunk(train, 0, rows)
    import faiss

    km = faiss.Kmeans(
        d,
        k,
        niter=int(niter),
        seed=int(seed) % (2**31),
        spherical=spherical,
        # The sample is already drawn; stop faiss from re-sampling or warning.
        max_points_per_centroid=n_train // k + 1,
        min_points_per_centroid=1,
        verbose=False,
    )
    km.train(train)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def training_rows(
    n: int,
    d: int,
    num_clusters: int,
    *,
    max_points_per_centroid: int = 256,
    max_memory_gb: float | None = MAX_MEMORY_GB,
) -> int:
    """Rows of the k-means training sample of :func:`train_centroids`.

    ``min(N, K * max_points_per_centroid)``, then at most as many rows as fit in
    ``max_memory_gb`` GiB at ``4 d + 12`` bytes a row (the float32 row, faiss's int64
    label and float32 distance); the same number on either engine.

    Parameters
    ----------
    n, d : int
        Rows and dimensions of the embeddings.
    num_clusters : int
        K.
    max_points_per_centroid : int, default=256
        faiss's cap per centroid.
    max_memory_gb : float or None, default=2.0
        Memory cap in GiB; None: no cap.

    Returns
    -------
    int
    """
    rows = min(int(n), int(num_clusters) * int(max_points_per_centroid))
    if max_memory_gb is None:
        return rows
    if isinstance(max_memory_gb, bool) or not (
        isinstance(max_memory_gb, (int, float)) and 0 < max_memory_gb < float("inf")
    ):
        raise DeepCoreError(f"max_memory_gb must be a positive number, got {max_memory_gb!r}")
    fit = int(max_memory_gb * 2**30 // (4 * int(d) + _ROW_OVERHEAD))
    if fit < num_clusters:
        raise DeepCoreError(
            f"a k-means memory cap of {max_memory_gb:g} GiB holds {fit:,} training rows of "
            f"{d} dims, fewer than the {num_clusters:,} clusters"
        )
    return min(rows, fit)
