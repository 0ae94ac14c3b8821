"""Neighbourhoods of embedding rows (cosine, and a euclidean radius), in CSR form.

The cosine searches work on L2-normalised rows, so the similarity is an inner product.
Nothing of size N x N is ever held: similarities are computed block by block and only
the pairs that are kept survive, so memory is O(N·k + block) (or O(N·d) for the rows).

- :func:`range_search` -- threshold neighbourhoods ``{j : cos(i, j) > threshold}`` by
  blocked matrix products (torch, on ``device``). The self-join (``queries=None``)
  computes only the upper triangle of the similarity and mirrors it, half the work of a
  plain range search (faiss ``IndexFlatIP.range_search`` computes both halves). The
  products run in float32 or bfloat16 (2-3x faster where the hardware has bf16 dot
  products); :func:`similarity_error` bounds how far a computed cosine can be from the
  true one, so a caller that needs every pair above ``t`` searches above
  ``t - similarity_error(d, precision)`` and re-scores the candidates. For large
  self-joins the rows are first grouped by spherical k-means (faiss); two groups whose
  centroid angle exceeds the sum of their radii plus the threshold angle cannot hold a
  pair above the threshold (triangle inequality on the sphere), so their product is
  skipped -- still exact, and several times less work on clustered embeddings.
  ``max_pairs`` stops it (:class:`NeighborhoodTooLarge`) as soon as the result is known
  to exceed a memory budget.
- :func:`radius_search` -- euclidean self-join candidates ``|a - b| < radius`` on raw
  rows (plain blocks, rounding margin included, for a caller that re-scores).
- :func:`knn_search` -- the ``k`` most similar rows, optionally capped by a threshold.
  ``index="flat"`` is exact (faiss brute-force k-NN on BLAS). ``index="ivf"`` partitions
  the rows with spherical k-means (faiss) and compares all queries of a partition with
  the members of that partition's ``nprobe`` nearest partitions in one matrix product (a
  cluster join: the probing of an IVF index, done per partition instead of per query so
  it runs at matrix-product speed), in float32 or bfloat16. Its recall against ``flat``
  is measured on a seeded sample of queries and returned in ``info["knn_recall"]``.

Results are deterministic for fixed inputs, seed and thread count.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import DeepCoreError, unknown_name
from ..lazy import LazyModule

# loaded on first use: the commands' --help and --list import this module through the
# methods and need neither
faiss = LazyModule("faiss")
torch = LazyModule("torch")

#: rows per chunk when normalising: float64 temporaries that stay in cache (1,024 rows
#: ran 5-10x faster than 65,536 at d = 512)
NORMALIZE_CHUNK = 1 << 10
#: index types of :func:`knn_search`
KNN_INDEXES = ("flat", "ivf")
#: matrix-product precisions of :func:`range_search`
PRECISIONS = ("float32", "bfloat16")
#: self-joins from this many rows are grouped by k-means to skip far-apart groups
PRUNE_MIN_ROWS = 20_000
#: rows per k-means group of the pruned self-join
PRUNE_GROUP_ROWS = 64
#: most rows in one block of the pruned self-join (consecutive similar groups)
PRUNE_BLOCK_ROWS = 512
#: the pruned self-join falls back to plain blocks above this share of the full work
PRUNE_MAX_WORK = 0.6
#: k-means iterations of the pruned self-join's grouping (any grouping is exact). At
#: N = 50,000, d = 512: 10 iterations -> 14.6% of the half matrix computed, 4 -> 14.6%,
#: 2 -> 14.9% for a fifth of the k-means time
PRUNE_KMEANS_ITERS = 2
#: peak bytes per stored (directed) pair of :func:`range_search`: int32 row and column
#: and float32 similarity of the upper triangle and its mirror, then the CSR table
RANGE_BYTES_PER_PAIR = 32
_U32 = 2.0**-24  # float32 unit roundoff
_U16 = 2.0**-9  # bfloat16 unit roundoff


@dataclass(frozen=True)
class Neighborhoods:
    """Sparse neighbourhoods of ``num_rows`` query rows in CSR form.

    Row ``i`` holds ``indices[indptr[i]:indptr[i + 1]]`` with cosine similarities
    ``sims[indptr[i]:indptr[i + 1]]``. A row of a self-join contains the row itself
    whenever its self-similarity passes the threshold.

    Attributes
    ----------
    indptr : ndarray of int64, shape (num_rows + 1,)
        Row offsets; ``indptr[0] == 0`` and ``indptr[-1] == nnz``.
    indices : ndarray of int32 (int64 beyond 2**31 - 1 rows), shape (nnz,)
        Database row of each neighbour. Range rows are in no particular (but a
        deterministic) order; k-NN rows by decreasing similarity.
    sims : ndarray of float32, shape (nnz,)
        Cosine similarity of each neighbour, as computed in float32.
    info : dict
        How it was computed (search, index, parameters, seconds, recall for IVF).
    pairs : ndarray of int, shape (nnz,), optional
        Self-joins of :func:`range_search` and :func:`radius_search`: the id of each
        entry's unordered pair, shared by ``(i, j)`` and ``(j, i)`` (so a caller can
        compute a symmetric quantity once per pair).
    """

    indptr: np.ndarray
    indices: np.ndarray
    sims: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    pairs: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def sizes(self) -> np.ndarray:
        """Neighbours per row, shape (num_rows,), int64."""
        return np.diff(self.indptr)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and similarities of row ``i`` (views, not copies)."""
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.sims[a:b]


class NeighborhoodTooLarge(DeepCoreError):
    """A :func:`range_search` stopped because its result exceeds ``max_pairs`` pairs.

    Attributes
    ----------
    max_pairs : int
        The limit that was passed.
    """

    def __init__(self, max_pairs: int) -> None:
        super().__init__(f"the neighbourhood graph holds more than {max_pairs:,} pairs")
        self.max_pairs = int(max_pairs)


def normalize_rows(x: np.ndarray, *, name: str = "features") -> np.ndarray:
    """L2-normalised float32 copy of ``x``, computed chunk by chunk in float64.

    Parameters
    ----------
    x : array-like of shape (n, d)
        Rows to normalise.
    name : str, default="features"
        Name used in error messages.

    Returns
    -------
    ndarray of float32, shape (n, d)

    Raises
    ------
    DeepCoreError
        If ``x`` is not two-dimensional, holds NaN or infinite values, or has a zero row
        (its cosine similarity is undefined).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise DeepCoreError(f"{name} must be two-dimensional, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DeepCoreError(f"{name} must be numeric, got dtype {x.dtype}")
    out = np.empty(x.shape, dtype=np.float32)
    for s in range(0, x.shape[0], NORMALIZE_CHUNK):
        xc = np.asarray(x[s : s + NORMALIZE_CHUNK], dtype=np.float64)
        if not np.isfinite(xc).all():
            raise DeepCoreError(f"{name} contain NaN or infinite values")
        norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))
        zero = np.flatnonzero(norm == 0)
        if zero.size:
            raise DeepCoreError(
                f"{name} row {s + int(zero[0])} has zero norm; cosine similarity is undefined"
            )
        out[s : s + NORMALIZE_CHUNK] = xc / norm[:, None]
    return out


def similarity_error(d: int, precision: str = "float32") -> float:
    """Bound on ``|computed - exact|`` cosine of two rows normalised by :func:`normalize_rows`.

    float32: rounding of the normalised rows (2u) and a d-term float32 dot product (d u),
    u = 2**-24. bfloat16: the rows rounded to bfloat16 (2 x 2**-9), float32 accumulation,
    and the product rounded to bfloat16 (2**-9 for values up to 1).
    """
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    err = (int(d) + 4) * _U32
    if precision == "bfloat16":
        err += 2 * _U16 + _U16**2 + _U16
    return 1.25 * err  # slack over the first-order bound for the second-order terms


_FASTEST: dict[str, str] = {}


def fastest_precision(device: str | torch.device = "cpu", d: int = 512) -> str:
    """``"bfloat16"`` where a bfloat16 matrix product is clearly (>1.4x) faster than a
    float32 one on ``device``, else ``"float32"``; measured once per device and cached.

    CPUs with bf16 dot-product instructions (AVX512-BF16, AMX) and GPUs qualify; on other
    CPUs torch emulates bfloat16 and float32 is faster.
    """
    dev = torch.device(device)
    key = str(dev)
    if key not in _FASTEST:
        best = {}
        for dtype in (torch.float32, torch.bfloat16):
            a = torch.full((512, d), 0.5, dtype=dtype, device=dev)
            b = torch.full((2048, d), 0.25, dtype=dtype, device=dev)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                (a @ b.T).sum().item()
                times.append(time.perf_counter() - start)
            best[dtype] = min(times)
        faster = best[torch.bfloat16] * 1.4 < best[torch.float32]
        _FASTEST[key] = "bfloat16" if faster else "float32"
    return _FASTEST[key]


@contextlib.contextmanager
def compute_threads(n_threads: int | None) -> Iterator[None]:
    """Run a block with ``n_threads`` torch and faiss (OpenMP) threads, then restore.

    ``None`` leaves the current settings alone.
    """
    if n_threads is None:
        yield
        return
    if int(n_threads) < 1:
        raise DeepCoreError(f"n_threads must be at least 1, got {n_threads}")
    old_torch, old_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(int(n_threads))
    faiss.omp_set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        faiss.omp_set_num_threads(old_faiss)


def range_search(
    x: np.ndarray,
    threshold: float,
    *,
    queries: np.ndarray | None = None,
    normalized: bool = False,
    block_rows: int = 2048,
    block_cols: int = 16384,
    precision: str = "float32",
    prune: bool | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_threads: int | None = None,
) -> Neighborhoods:
    """Threshold neighbourhoods: all database rows with cosine similarity > ``threshold``.

    Parameters
    ----------
    x : array-like of shape (n, d)
        Database rows.
    threshold : float
        Keep pairs whose computed ``cos > threshold`` (exact up to
        :func:`similarity_error`).
    queries : array-like of shape (m, d), optional
        Query rows; default: the database itself (self-join, symmetric, half the work).
    normalized : bool, default=False
        The rows are already L2-normalised float32 (skips the copy).
    block_rows, block_cols : int
        Block shape of each matrix product (memory ``4 * block_rows * block_cols`` bytes).
    precision : {"float32", "bfloat16"}, default="float32"
        Precision of the matrix products; ``sims`` are returned as float32 either way.
    prune : bool, optional
        Self-join only: skip pairs of k-means groups that cannot hold a pair above the
        threshold (exact). Default: when there are at least 20,000 rows. It falls back
        to plain blocks when it would save less than 40% of the work.
    max_pairs : int, optional
        Stop with :class:`NeighborhoodTooLarge` as soon as the result is known to hold
        more than this many (row, neighbour) pairs (memory: about
        ``RANGE_BYTES_PER_PAIR`` bytes each at the peak of the construction).
    seed : int, default=0
        Seeds the k-means of ``prune`` (the result does not depend on it).
    device : str or torch.device, default="cpu"
        Where the matrix products run.
    n_threads : int, optional
        torch and faiss threads (default: leave as is).

    Returns
    -------
    Neighborhoods
        One row per query; ``info`` says whether the pruned self-join ran, which share
        of the full work it did, and where the seconds went.
    """
    t = _check_threshold(threshold)
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    if block_rows < 1 or block_cols < 1:
        raise DeepCoreError("block_rows and block_cols must be positive")
    start = time.perf_counter()
    xb = _prepare(x, normalized, "database rows")
    xq = None if queries is None else _prepare(queries, normalized, "query rows")
    if xq is not None and xq.shape[1] != xb.shape[1]:
        raise DeepCoreError(f"queries have {xq.shape[1]} dims but the database has {xb.shape[1]}")
    n_rows = xb.shape[0] if xq is None else xq.shape[0]
    if prune is None:
        prune = xq is None and xb.shape[0] >= PRUNE_MIN_ROWS
    info: dict[str, Any] = {"search": "range", "threshold": t, "precision": precision}
    count = _PairCount(max_pairs, self_join=xq is None)
    with compute_threads(n_threads), torch.no_grad():
        dev = torch.device(device)
        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        db = torch.from_numpy(xb).to(dev, dtype)
        parts = None
        if xq is None and prune:
            parts = _range_self_pruned(xb, db, t, precision, seed, block_cols, info, count)
        if xq is None and parts is None:
            parts = _range_self(db, t, block_rows, max(block_cols, block_rows), count)
        elif xq is not None:
            q = torch.from_numpy(xq).to(dev, dtype)
            parts = _range_cross(q, db, t, block_rows, block_cols, count)
    clock = time.perf_counter()
    indptr, indices, sims, pairs = _csr_table(parts, n_rows, xb.shape[0], symmetric=xq is None)
    info["seconds_table"] = round(time.perf_counter() - clock, 3)
    info.update(self_join=xq is None, seconds=round(time.perf_counter() - start, 3))
    return Neighborhoods(indptr=indptr, indices=indices, sims=sims, info=info, pairs=pairs)


def radius_search(
    x: np.ndarray,
    radius: float,
    *,
    precision: str = "float32",
    block_rows: int = 2048,
    block_cols: int = 16384,
    max_pairs: int | None = None,
    device: str | torch.device = "cpu",
    n_threads: int | None = None,
) -> Neighborhoods:
    """Euclidean self-join candidates: all pairs of rows closer than ``radius`` (plus slack).

    Blocked ``|a|^2 + |b|^2 - 2 a.b`` on the raw (not normalised) rows, upper triangle
    mirrored. The computed squared distance is compared with ``radius**2`` plus a bound
    on its rounding error (4 x :func:`similarity_error` x the largest squared norm), so
    every pair truly within ``radius`` is returned, with a few beyond it: a caller that
    needs an exact ball re-scores the candidates.

    Parameters
    ----------
    x : array-like of shape (n, d)
        Rows; must be finite.
    radius : float
        Distance bound, > 0.
    precision : {"float32", "bfloat16"}, default="float32"
        Precision of the matrix products.
    block_rows, block_cols : int
        Block shape of each matrix product.
    max_pairs : int, optional
        Stop with :class:`NeighborhoodTooLarge` past this many (directed) pairs.
    device : str or torch.device, default="cpu"
        Where the matrix products run.
    n_threads : int, optional
        torch and faiss threads (default: leave as is).

    Returns
    -------
    Neighborhoods
        One row per row of ``x`` (itself included); ``sims`` holds the computed
        (float32) distances, not similarities.
    """
    r = float(radius)
    if not (r > 0 and math.isfinite(r)):
        raise DeepCoreError(f"radius must be a positive finite number, got {radius}")
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    if block_rows < 1 or block_cols < 1:
        raise DeepCoreError("block_rows and block_cols must be positive")
    start = time.perf_counter()
    xa = np.asarray(x)
    if xa.ndim != 2:
        raise DeepCoreError(f"rows must be two-dimensional, got shape {xa.shape}")
    xb = np.ascontiguousarray(xa, dtype=np.float32)
    if not np.isfinite(xb).all():
        raise DeepCoreError("rows contain NaN or infinite values")
    n, d = xb.shape
    sq = np.einsum("ij,ij->i", xb.astype(np.float64), xb.astype(np.float64))
    cut = r * r + 4.0 * similarity_error(d, precision) * float(sq.max(initial=0.0))
    count = _PairCount(max_pairs, self_join=True)
    neg_cut = torch.tensor(-cut, dtype=torch.float32)
    dt = _index_dtype(n)
    parts: list[Part] = []
    block_cols = max(block_cols, block_rows)
    with compute_threads(n_threads), torch.no_grad():
        dev = torch.device(device)
        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        db = torch.from_numpy(xb).to(dev, dtype)
        sq_t = torch.from_numpy(sq.astype(np.float32)).to(dev)
        for r0 in range(0, n, block_rows):
            r1 = min(n, r0 + block_rows)
            for c0 in range(r0, n, block_cols):
                c1 = min(n, c0 + block_cols)
                d2 = (db[r0:r1] @ db[c0:c1].T).float().mul_(-2.0)
                d2 += sq_t[r0:r1, None]
                d2 += sq_t[None, c0:c1]
                # -d2 > -cut: the pairs closer than the cut; col >= row on the diagonal
                rr, cc, vals = _pairs(d2.neg_(), neg_cut, r0 - c0 if c0 < r1 else None)
                vals = vals.neg_()
                if rr.size:
                    count.add(rr.size)
                    dist = vals.clamp_(min=0.0).sqrt_().cpu().numpy()
                    parts.append(((rr + r0).astype(dt), (cc + c0).astype(dt), dist))
    indptr, indices, dist, pairs = _csr_table(parts, n, n, symmetric=True)
    info = {
        "search": "radius",
        "radius": r,
        "precision": precision,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return Neighborhoods(indptr=indptr, indices=indices, sims=dist, info=info, pairs=pairs)


def knn_search(
    x: np.ndarray,
    k: int,
    *,
    queries: np.ndarray | None = None,
    threshold: float | None = None,
    index: str = "flat",
    nlist: int | None = None,
    nprobe: int = 8,
    train_per_centroid: int = 64,
    niter: int = 10,
    recall_sample: int = 1000,
    seed: int = 0,
    normalized: bool = False,
    block_rows: int = 4096,
    precision: str = "float32",
    device: str | torch.device = "cpu",
    n_threads: int | None = None,
) -> Neighborhoods:
    """The ``k`` most similar database rows of each query, optionally above a threshold.

    Parameters
    ----------
    x : array-like of shape (n, d)
        Database rows.
    k : int
        Neighbours per query (at most; fewer where the threshold or the probed
        partitions leave fewer). A self-join query usually finds itself first.
    queries : array-like of shape (m, d), optional
        Query rows; default: the database itself.
    threshold : float, optional
        Keep only neighbours with ``cos > threshold``.
    index : {"flat", "ivf"}, default="flat"
        ``"flat"``: exact (faiss brute force). ``"ivf"``: cluster join over ``nlist``
        spherical k-means partitions, each compared with its ``nprobe`` nearest
        partitions; approximate, recall against exact k-NN measured and returned in
        ``info["knn_recall"]``.
    nlist : int, optional
        IVF partitions; default ``round(sqrt(n))`` (capped so each has >= 32 rows).
    nprobe : int, default=8
        IVF partitions searched per query partition (including its own).
    train_per_centroid : int, default=64
        k-means training rows per partition (a seeded sample of the database).
    niter : int, default=10
        k-means iterations.
    recall_sample : int, default=1000
        IVF only: queries (seeded sample) checked against the exact search; 0 skips it.
    seed : int, default=0
        Seeds the k-means training sample, the k-means and the recall sample.
    normalized : bool, default=False
        The rows are already L2-normalised float32.
    block_rows : int, default=4096
        Queries per matrix product.
    precision : {"float32", "bfloat16"}, default="float32"
        IVF only: precision of the cluster join; ``sims`` are the join's values. In
        bfloat16 (a caller widens ``threshold`` by ``similarity_error(d, "bfloat16")``
        to catch every pair above its own), a query is recomputed in float32 against all
        its candidates when one left out of its ``k + max(16, k // 4)`` best could be
        above the threshold (by the bfloat16 error bound) while its k-th is not surely
        above it: so a query with fewer than k results loses no pair above the threshold
        to the rounding. Where k results are above it, the last places are ranked in
        bfloat16 (the cap is approximate anyway; a caller measures its recall).
    device : str or torch.device, default="cpu"
        Where the IVF matrix products run (the flat search is faiss on CPU).
    n_threads : int, optional
        torch and faiss threads (default: leave as is).

    Returns
    -------
    Neighborhoods
        One row per query, neighbours by decreasing similarity; ``info`` holds the
        index parameters, seconds, and ``knn_recall`` (against exact k-NN, 1.0 for flat;
        not the recall of threshold neighbourhoods that a cap of k cuts).
    """
    if index not in KNN_INDEXES:
        raise unknown_name("neighbour index", index, KNN_INDEXES)
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    if int(k) < 1:
        raise DeepCoreError(f"k must be at least 1, got {k}")
    t = None if threshold is None else _check_threshold(threshold)
    start = time.perf_counter()
    xb = _prepare(x, normalized, "database rows")
    xq = xb if queries is None else _prepare(queries, normalized, "query rows")
    if xq.shape[1] != xb.shape[1]:
        raise DeepCoreError(f"queries have {xq.shape[1]} dims but the database has {xb.shape[1]}")
    n, m = xb.shape[0], xq.shape[0]
    k = min(int(k), max(n, 1))
    info: dict[str, Any] = {"search": "knn", "index": index, "k": k, "threshold": t}
    with compute_threads(n_threads), torch.no_grad():
        if n == 0 or m == 0:
            sims = np.full((m, k), -np.inf, dtype=np.float32)
            ids = np.full((m, k), -1, dtype=np.int64)
        elif index == "flat":
            sims, ids = _knn_flat(xq, xb, k, block_rows)
            info["knn_recall"] = 1.0
        else:
            if nlist is None:
                nlist = max(1, min(int(round(math.sqrt(n))), n // 32))
            nlist = int(min(max(1, nlist), n))
            nprobe = int(min(max(1, nprobe), nlist))
            sims, ids, rechecked = _knn_ivf(
                xq, xb, k, t, nlist, nprobe, train_per_centroid, niter, seed, block_rows,
                precision, device,
            )  # fmt: skip
            info.update(nlist=nlist, nprobe=nprobe, precision=precision)
            if precision != "float32":
                info["rows_rechecked_float32"] = rechecked
            if recall_sample > 0:
                info.update(_recall(xq, xb, k, t, sims, ids, recall_sample, seed, block_rows))
    keep = ids >= 0
    if t is not None:
        keep &= sims > t
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    info["seconds"] = round(time.perf_counter() - start, 3)
    return Neighborhoods(
        indptr=indptr,
        indices=ids[keep].astype(_index_dtype(n), copy=False),
        sims=sims[keep].astype(np.float32, copy=False),
        info=info,
    )


# -- internals --------------------------------------------------------------------------


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not math.isfinite(t):
        raise DeepCoreError(f"similarity threshold must be finite, got {threshold}")
    return t


def _prepare(x: np.ndarray, normalized: bool, name: str) -> np.ndarray:
    if not normalized:
        return normalize_rows(x, name=name)
    x = np.asarray(x)
    if x.ndim != 2:
        raise DeepCoreError(f"{name} must be two-dimensional, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _index_dtype(n: int) -> type:
    return np.int32 if n < 2**31 - 1 else np.int64


Part = tuple[np.ndarray, np.ndarray, np.ndarray]


def _below(t: float, like: torch.Tensor) -> torch.Tensor:
    """Largest value of ``like``'s dtype <= t: then ``v > result`` iff ``v > t`` exactly."""
    tt = torch.tensor(t, dtype=like.dtype, device=like.device)
    if float(tt) > t:
        tt = torch.nextafter(tt, torch.full_like(tt, -math.inf))
    return tt


class _PairCount:
    """Running count of the pairs a range search keeps; raises past ``max_pairs``.

    A self-join stores each off-diagonal pair of its upper triangle twice.
    """

    def __init__(self, max_pairs: int | None, *, self_join: bool) -> None:
        self.max_pairs = None if max_pairs is None else int(max_pairs)
        self.factor = 2 if self_join else 1
        self.pairs = 0

    def add(self, found: int) -> None:
        self.pairs += self.factor * found
        if self.max_pairs is not None and self.pairs > self.max_pairs + self.factor:
            raise NeighborhoodTooLarge(self.max_pairs)


def _pairs(
    sim: torch.Tensor, cut: torch.Tensor, diag: int | None = None
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Block rows, block columns (row-major) and values of the entries ``> cut``.

    ``diag``: keep only entries with ``col - row >= diag`` (an upper triangle). On the
    CPU the comparison runs in numpy -- on the bit patterns for bfloat16 (as int16 they
    order like the values when the cut is >= 0) -- and ``np.flatnonzero`` extracts the
    pairs: about 3x faster than torch's comparison and ``nonzero()``.
    """
    w = sim.shape[1]
    if sim.device.type == "cpu":
        if sim.dtype == torch.bfloat16 and float(cut) >= 0:
            bits = int(np.array(float(cut), dtype=np.float32).view(np.int32)) >> 16
            flat = np.flatnonzero(sim.view(torch.int16).numpy() > bits)
        else:
            flat = np.flatnonzero((sim > cut).numpy())
        rows, cols = np.divmod(flat, w)
        if diag is not None:
            keep = cols - rows >= diag
            flat, rows, cols = flat[keep], rows[keep], cols[keep]
        return rows, cols, sim.reshape(-1)[torch.from_numpy(flat)]
    mask = sim > cut
    if diag is not None:
        mask = torch.triu(mask, diagonal=diag)
    nz = mask.nonzero()
    return nz[:, 0].cpu().numpy(), nz[:, 1].cpu().numpy(), sim[nz[:, 0], nz[:, 1]]


def _range_self(
    db: torch.Tensor, t: float, block_rows: int, block_cols: int, count: _PairCount
) -> list[Part]:
    """Upper triangle (col >= row) of the self-similarity, block by block."""
    n = db.shape[0]
    cut = _below(t, db)
    dt = _index_dtype(n)
    parts = []
    for r0 in range(0, n, block_rows):
        r1 = min(n, r0 + block_rows)
        rows_block = db[r0:r1]
        for c0 in range(r0, n, block_cols):
            c1 = min(n, c0 + block_cols)
            sim = rows_block @ db[c0:c1].T
            # a block holding part of the diagonal keeps col >= row
            r, c, vals = _pairs(sim, cut, r0 - c0 if c0 < r1 else None)
            if r.size:
                count.add(r.size)
                parts.append(((r + r0).astype(dt), (c + c0).astype(dt), vals.float().cpu().numpy()))
    return parts


def _spherical_kmeans(
    x: np.ndarray, k: int, seed: int, sample_per_centroid: int, niter: int = PRUNE_KMEANS_ITERS
) -> np.ndarray:
    """Unit-norm float64 centroids of a seeded sample (faiss spherical k-means).

    Only used to group rows for the pruned self-join, whose result does not depend on
    the grouping.
    """
    rng = np.random.default_rng(seed)
    n, d = x.shape
    sample = np.sort(rng.choice(n, size=min(n, k * sample_per_centroid), replace=False))
    km = faiss.Kmeans(
        d, k, niter=int(niter), spherical=True, seed=int(seed) % (2**31),
        max_points_per_centroid=sample.size, min_points_per_centroid=1,
    )  # fmt: skip
    km.train(np.ascontiguousarray(x[sample], dtype=np.float32))
    cen = km.centroids.astype(np.float64)
    return cen / np.maximum(np.linalg.norm(cen, axis=1, keepdims=True), 1e-30)


def _range_self_pruned(
    xb: np.ndarray,
    db: torch.Tensor,
    t: float,
    precision: str,
    seed: int,
    block_cols: int,
    info: dict[str, Any],
    count: _PairCount,
) -> list[Part] | None:
    """Self-join over k-means groups, skipping group pairs too far apart to hold a pair.

    For rows x in group a and y in group b: angle(x, y) >= angle(c_a, c_b) - r_a - r_b,
    with r the largest angle of a member to its centroid. Groups (~64 rows) are ordered
    by a second k-means over their centroids, and runs of similar groups (up to 512
    rows) form one block of rows, compared with every later group that any of them
    needs (large matrix products, little lost pruning). Returns None (plain blocks
    instead) when that is more than PRUNE_MAX_WORK of the full self-join.
    """
    n, d = xb.shape
    if t - similarity_error(d, precision) <= -1.0:
        return None
    # a computed similarity > t means a true one > t - err: an angle below theta
    theta = math.acos(t - similarity_error(d, precision))
    groups = max(1, n // PRUNE_GROUP_ROWS)
    clock = time.perf_counter()
    cen64 = _spherical_kmeans(xb, groups, seed, 16)
    info["seconds_kmeans"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    # nearest centroid by the join's precision, then the cosine to it in float32: a
    # bfloat16 cosine's error would widen every group's radius (2.4x the work)
    cen = torch.from_numpy(cen64.astype(np.float32)).to(db.device)
    cen_lo = cen.to(db.dtype)
    xs = torch.from_numpy(xb).to(db.device)
    label = np.empty(n, dtype=np.int64)
    near = np.empty(n, dtype=np.float64)
    for s in range(0, n, 1 << 14):
        lab = torch.max(db[s : s + (1 << 14)] @ cen_lo.T, dim=1).indices  # 4x argmax's speed
        label[s : s + (1 << 14)] = lab.cpu().numpy()
        cos = (xs[s : s + (1 << 14)] * cen[lab]).sum(dim=1)
        near[s : s + (1 << 14)] = cos.double().cpu().numpy()
    # the true cosine to the centroid is at least the computed one minus the float32 error
    angle = np.arccos(np.clip(near - similarity_error(d), -1.0, 1.0))
    info["seconds_assign"] = round(time.perf_counter() - clock, 3)
    radius = np.full(groups, -np.inf)
    np.maximum.at(radius, label, angle)
    sizes = np.bincount(label, minlength=groups)
    # order the groups so that similar ones are adjacent: by a k-means of the centroids
    nsuper = max(1, groups // 8)
    sup = np.argmax(cen64 @ _spherical_kmeans(cen64, nsuper, seed + 1, 16).T, axis=1)
    rank = np.lexsort((np.arange(groups), sup))  # rank -> group
    cen64, radius, sizes, sup = cen64[rank], radius[rank], sizes[rank], sup[rank]
    cen_angle = np.arccos(np.clip(cen64 @ cen64.T, -1.0, 1.0)) - 1e-6
    need = cen_angle - radius[:, None] - radius[None, :] < theta
    need &= (sizes[:, None] > 0) & (sizes[None, :] > 0)
    group_of_rank = np.empty(groups, dtype=np.int64)
    group_of_rank[rank] = np.arange(groups)
    order = np.argsort(group_of_rank[label], kind="stable")  # rows by group rank
    offsets = np.zeros(groups + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    # blocks: runs of groups with the same super-cluster, at most PRUNE_BLOCK_ROWS rows
    blocks, i0 = [], 0
    for i in range(1, groups + 1):
        if i == groups or sup[i] != sup[i0] or offsets[i + 1] - offsets[i0] > PRUNE_BLOCK_ROWS:
            blocks.append((i0, i))
            i0 = i
    plans, work = [], 0.0
    for i0, i1 in blocks:
        if offsets[i1] == offsets[i0]:
            continue
        later = i1 + np.flatnonzero(need[i0:i1, i1:].any(axis=0))
        cols = np.concatenate([np.arange(offsets[i0], offsets[i1])] + [
            np.arange(offsets[b], offsets[b + 1]) for b in later
        ])  # fmt: skip
        plans.append((int(offsets[i0]), int(offsets[i1]), cols))
        work += (offsets[i1] - offsets[i0]) * cols.size
    work = float(work / (0.5 * n * n))
    info.update(pruned=bool(work <= PRUNE_MAX_WORK), groups=groups, work_fraction=round(work, 4))
    if work > PRUNE_MAX_WORK:
        return None
    clock = time.perf_counter()
    order_t = torch.from_numpy(order).to(db.device)
    sorted_db = db.index_select(0, order_t)
    order = order.astype(_index_dtype(n))
    cut = _below(t, db)
    parts = []
    for r0, r1, cols in plans:
        width = max(block_cols, r1 - r0)  # the block's own rows fit in the first chunk
        for c0 in range(0, cols.size, width):
            chunk = cols[c0 : c0 + width]
            block = sorted_db.index_select(0, torch.from_numpy(chunk).to(db.device))
            sim = sorted_db[r0:r1] @ block.T
            r, c, vals = _pairs(sim, cut)
            if c0 == 0:  # the block against itself: keep its upper triangle
                keep = (c >= r1 - r0) | (c >= r)
                r, c, vals = r[keep], c[keep], vals[torch.from_numpy(keep)]
            if r.size:
                count.add(r.size)
                parts.append((order[r + r0], order[chunk[c]], vals.float().cpu().numpy()))
    info["seconds_join"] = round(time.perf_counter() - clock, 3)
    return parts


def _range_cross(
    q: torch.Tensor,
    db: torch.Tensor,
    t: float,
    block_rows: int,
    block_cols: int,
    count: _PairCount,
) -> list[Part]:
    n = db.shape[0]
    cut = _below(t, db)
    dt = _index_dtype(max(n, q.shape[0]))
    parts = []
    for r0 in range(0, q.shape[0], block_rows):
        rows_block = q[r0 : r0 + block_rows]
        for c0 in range(0, n, block_cols):
            sim = rows_block @ db[c0 : c0 + block_cols].T
            r, c, vals = _pairs(sim, cut)
            if r.size:
                count.add(r.size)
                parts.append(((r + r0).astype(dt), (c + c0).astype(dt), vals.float().cpu().numpy()))
    return parts


def _csr_table(
    parts: list[Part], n_rows: int, n_cols: int, *, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(indptr int64, indices, sims, pairs) of the pairs as a CSR table (scipy's
    counting sort).

    ``symmetric``: the parts are an upper triangle; its off-diagonal pairs are mirrored,
    and ``pairs`` gives each entry the id of its unordered pair (None otherwise).
    """
    dt = _index_dtype(max(n_rows, n_cols))
    if parts:
        rows, cols, sims = (np.concatenate([p[i] for p in parts]) for i in range(3))
    else:
        rows, cols, sims = np.empty(0, dt), np.empty(0, dt), np.empty(0, np.float32)
    del parts
    if symmetric:
        off = np.flatnonzero(rows != cols)
        rows, cols = np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]])
        ids = np.arange(sims.size, dtype=_index_dtype(sims.size))
        payload = np.concatenate([ids, ids[off]])
        del off, ids
    else:
        payload = sims
    coo = sp.coo_matrix((payload, (rows, cols)), shape=(n_rows, n_cols))
    del rows, cols, payload
    # no pair is repeated: skip scipy's duplicate summing and the row sort it implies
    # (the rows keep the search's order; gathering them sorted was no faster)
    coo.has_canonical_format = True
    table = coo.tocsr()
    del coo
    pairs = table.data if symmetric else None
    return (
        table.indptr.astype(np.int64),
        table.indices.astype(dt, copy=False),
        sims[pairs] if symmetric else table.data.astype(np.float32, copy=False),
        pairs,
    )


def _knn_flat(
    xq: np.ndarray, xb: np.ndarray, k: int, block_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    sims = np.empty((xq.shape[0], k), dtype=np.float32)
    ids = np.empty((xq.shape[0], k), dtype=np.int64)
    for s in range(0, xq.shape[0], block_rows):
        d, i = faiss.knn(xq[s : s + block_rows], xb, k, metric=faiss.METRIC_INNER_PRODUCT)
        sims[s : s + block_rows], ids[s : s + block_rows] = d, i
    return sims, ids


def _assign(x: torch.Tensor, centroids: torch.Tensor, block_rows: int) -> torch.Tensor:
    """Nearest centroid (largest inner product; ties to the lower id) of every row."""
    out = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    for s in range(0, x.shape[0], block_rows * 4):
        out[s : s + block_rows * 4] = torch.argmax(x[s : s + block_rows * 4] @ centroids.T, dim=1)
    return out


def _knn_ivf(
    xq: np.ndarray,
    xb: np.ndarray,
    k: int,
    t: float | None,
    nlist: int,
    nprobe: int,
    train_per_centroid: int,
    niter: int,
    seed: int,
    block_rows: int,
    precision: str,
    device: str | torch.device,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cluster join: queries of each partition against its nprobe nearest partitions.

    Returns the k best (similarity, id) per query and how many queries were recomputed
    in float32 (bfloat16 only, see :func:`knn_search`).
    """
    n, d = xb.shape
    rng = np.random.default_rng(seed)
    n_train = min(n, max(nlist * int(train_per_centroid), nlist))
    sample = np.sort(rng.choice(n, size=n_train, replace=False))
    km = faiss.Kmeans(
        d,
        nlist,
        niter=int(niter),
        spherical=True,
        seed=int(seed) % (2**31),
        max_points_per_centroid=n_train,  # our sample is the training set; no re-sampling
        min_points_per_centroid=1,
    )
    km.train(np.ascontiguousarray(xb[sample]))
    dev = torch.device(device)
    cen = torch.from_numpy(np.ascontiguousarray(km.centroids, dtype=np.float32)).to(dev)
    db = torch.from_numpy(xb).to(dev)
    q = db if xq is xb else torch.from_numpy(xq).to(dev)
    low = precision == "bfloat16"
    db_lo = db.to(torch.bfloat16) if low else db
    q_lo = (db_lo if xq is xb else q.to(torch.bfloat16)) if low else q
    err_lo = similarity_error(d, "bfloat16")
    db_list = _assign(db, cen, block_rows).cpu().numpy()
    q_list = db_list if xq is xb else _assign(q, cen, block_rows).cpu().numpy()
    csim = cen @ cen.T
    csim.fill_diagonal_(float("inf"))  # a partition always probes itself first
    probes = torch.topk(csim, nprobe, dim=1).indices.cpu().numpy()
    db_order = np.argsort(db_list, kind="stable")
    db_off = np.zeros(nlist + 1, dtype=np.int64)
    np.cumsum(np.bincount(db_list, minlength=nlist), out=db_off[1:])
    q_order = np.argsort(q_list, kind="stable")
    q_off = np.zeros(nlist + 1, dtype=np.int64)
    np.cumsum(np.bincount(q_list, minlength=nlist), out=q_off[1:])

    m = xq.shape[0]
    sims = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=_index_dtype(n))
    rechecked = 0
    for a in range(nlist):
        members = q_order[q_off[a] : q_off[a + 1]]
        if members.size == 0:
            continue
        cand = np.concatenate([db_order[db_off[b] : db_off[b + 1]] for b in probes[a]])
        if cand.size == 0:
            continue
        cand_t = torch.from_numpy(cand).to(dev)
        xc = db.index_select(0, cand_t)
        kk = min(k, cand.size)
        wide = min(cand.size, kk + max(16, kk // 4)) if low else kk
        xc_lo = db_lo.index_select(0, cand_t) if low else xc
        for s in range(0, members.size, block_rows):
            rows = members[s : s + block_rows]
            rows_t = torch.from_numpy(rows).to(dev)
            top = torch.topk(q_lo.index_select(0, rows_t) @ xc_lo.T, wide, dim=1)
            vals, pos = top.values[:, :kk].float(), top.indices[:, :kk]
            if low and t is not None and wide < cand.size:
                # left out: bf16 <= the wide-th value, so true <= that + err_lo
                maybe = top.values[:, -1].float() + err_lo > t
                loose = maybe & (vals[:, -1] - err_lo <= t)
                redo = loose.nonzero()[:, 0]
                if redo.numel():
                    rechecked += int(redo.numel())
                    qr = q.index_select(0, rows_t.index_select(0, redo))
                    full = torch.topk(qr @ xc.T, kk, dim=1)
                    vals[redo], pos[redo] = full.values, full.indices
            sims[rows, :kk] = vals.cpu().numpy()
            ids[rows, :kk] = cand_t[pos].cpu().numpy()
    return sims, ids, rechecked


def _recall(
    xq: np.ndarray,
    xb: np.ndarray,
    k: int,
    t: float | None,
    sims: np.ndarray,
    ids: np.ndarray,
    recall_sample: int,
    seed: int,
    block_rows: int,
) -> dict[str, Any]:
    """Share of the exact (thresholded) k-NN pairs that the approximate search found."""
    rng = np.random.default_rng([int(seed), 1])
    m = xq.shape[0]
    pick = np.sort(rng.choice(m, size=min(int(recall_sample), m), replace=False))
    ex_sims, ex_ids = _knn_flat(np.ascontiguousarray(xq[pick]), xb, k, block_rows)
    found = total = 0
    for row, q in enumerate(pick):
        exact = ex_ids[row][ex_ids[row] >= 0] if t is None else ex_ids[row][ex_sims[row] > t]
        approx = ids[q][ids[q] >= 0] if t is None else ids[q][(ids[q] >= 0) & (sims[q] > t)]
        total += exact.size
        found += np.intersect1d(exact, approx, assume_unique=True).size
    return {
        "knn_recall": 1.0 if total == 0 else round(found / total, 4),
        "knn_recall_sample": int(pick.size),
    }
