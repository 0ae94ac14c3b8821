"""kCenterGreedy: a k-center cover of the penultimate embedding (farthest-first traversal).

Paper: Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks: A
Core-Set Approach" (ICLR); a baseline of DeepCore (Guo et al. 2022) and of Prune4ReL
(Park et al., NeurIPS 2023). Reference code: PatrickZH/DeepCore and kaist-dmlab/Prune4Rel,
``deepcore/methods/kcentergreedy.py`` (``k_center_greedy``).

The greedy, as the reference runs it
------------------------------------
- Embedding: the warm-up model's penultimate features on the un-augmented training set
  (the reference's ``embedding_recorder`` over the ``eval_train`` loader) = ``features``.
- Distance: Euclidean, ``sqrt(max(|x|^2 + |c|^2 - 2 x.c, 1e-12))``. The reference's
  ``--metric`` flag never reaches the method (``main_label_noise.py`` does not pass it),
  so its sweeps (``--metric cossim``) ran Euclidean distances; the method's unreachable
  non-"euclidean" branch (raw pixels, no warm-up) is left out.
- The first centre is ``np.random.seed(seed); np.random.randint(0, N)``, drawn here from a
  local ``RandomState(seed)`` (identical draw, no global seeding).
- Each further step picks the unselected sample farthest from its nearest centre (ties:
  lowest index, as ``torch.argmax``), until ``round(f * N)`` samples including the first.
- ``balance``: Prune4ReL's class stores the flag and ignores it (its sweeps' ``--balance
  True`` ran the unbalanced greedy); DeepCore runs the greedy per (noisy) class, each
  class with its own first centre ``randint(0, n_c)`` re-seeded with ``seed``. Kept:
  DeepCore's per-class greedy; fixed: the per-class budgets are the shared equal shares
  (:func:`deep_core.budget.class_budgets`) instead of ``round(f * n_c)`` per class, whose
  sum could miss ``round(f * N)``.

Fixed: the reference kept a ``budget x N`` distance matrix (10,000 x 1M floats is 40 GB);
here memory is O(N·d) (the features once in float32 and once in bfloat16) plus O(N)
per-sample state. A budget of one (e.g. a small class) crashed the reference (a 0-row
matrix); here it is the first centre.

Exact acceleration
------------------
The picks are those of the plain greedy (one distance from the new centre to every
sample per pick: O(N·d) memory-bound work each, 10,000 x 1M x 512 in all at f = 0.01),
found with far fewer, batched distance computations:

- Every sample keeps ``u``, the squared distance to the centres it has been compared
  with so far (an upper bound of its current distance), and how many centres that is.
- The farthest sample is found lazily: samples are visited in decreasing ``u``; a
  visited one is compared with the centres it has not seen; one whose exact distance is
  not below any other's bound is the pick (ties: lowest index, as ``torch.argmax``).
- Every ``batch`` picks, the samples whose ``u`` is within a band below the last pick's
  are brought up to date in bulk; the band is how far the squared radius fell over the
  last ``batch`` picks (samples far below it cannot be picked soon and are caught up
  when they get there). A bulk update screens every sample-centre pair with a
  bfloat16 matrix product and a rigorous bound on its rounding error; only pairs that
  may come nearer than ``u`` get the float32 distance.

Distances of a pair are the same float32 dot product as in the plain loop, so both pick
the same samples (up to a tie that float rounding order could create; none was seen in
the tests or benchmarks). ``batch`` and the band change the speed, never the picks.

Scores
------
``Subset.scores`` is the greedy order: the ``t``-th pick of a greedy (per class when
balanced) scores ``k - t`` for ``k`` picks; unselected samples score 0. A group kept
whole (budget = its size) is taken without running the greedy; its samples score 1.
``info`` has the covering radius (largest distance of an unselected sample to its
nearest centre; the largest over the classes when balanced), the number of
sample-centre distances computed in float32 and of pairs screened in bfloat16.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..budget import budget_size, greedy_groups
from ..lazy import LazyModule
from ..signals import Signals
from ..subset import Subset
from ._common import check_seed, row_blocks
from .base import SelectionMethod, register

torch = LazyModule("torch")  # loaded on first use: listing the methods does not need it

#: float64 values per block of a distance matrix (8 MiB)
_ROWS = 1 << 20
#: picks between two bulk updates of the per-sample distances
_BATCH = 256
#: a bulk update covers the samples whose squared distance is at least ``band`` times
#: the last pick's: the fall of the squared radius over the last batch, times a safety
#: factor, within [min, max] (speed only: the rest are caught up when they get there)
_BAND_SAFETY, _BAND_MIN, _BAND_MAX = 0.95, 0.5, 0.95
#: bound on |bf16 dot - dot| / (|x| |c|), times 2 (squared distance): rounding both
#: inputs (2 * 2^-8), the bf16 product (2^-8) and float32 accumulation, with a margin
_BF16_ERR = 2.0 * 0.016
#: relative margin on the screening test (float32 dot products in the squared distances)
_REL_SLACK = 1e-3
#: the reference's clamp of squared distances before the square root
_MIN_SQ = 1e-12


@dataclass
class KCenterResult:
    """Picks of one greedy run: ``order`` (positions, in pick order), the final covering
    radius, how many sample-centre distances were computed in float32 (the plain greedy
    computes ``n`` per pick) and how many pairs were screened in bfloat16."""

    order: np.ndarray
    radius: float
    distances: int
    screened: int


def as_float32_rows(features: np.ndarray) -> np.ndarray:
    """``features`` as C-contiguous float32 (no copy when it already is)."""
    return np.ascontiguousarray(features, dtype=np.float32)


def squared_norms(x: np.ndarray) -> np.ndarray:
    """Squared row norms of float32 ``x``, accumulated in float64, block by block."""
    out = np.empty(x.shape[0], dtype=np.float64)
    for rows in row_blocks(x.shape[0], x.shape[1]):
        block = x[rows].astype(np.float64)
        out[rows] = np.einsum("ij,ij->i", block, block)
    return out


def sq_dists(x: np.ndarray, sqn: np.ndarray, rows, centres: np.ndarray) -> np.ndarray:
    """Clamped squared distances (float64) of samples ``rows`` to samples ``centres``.

    ``|x|^2 + |c|^2 - 2 x.c`` with the dot product in float32, clamped at 1e-12 (the
    reference's ``euclidean_dist`` before its square root). Shape (len(rows), len(centres)).
    """
    dots = x[rows] @ x[centres].T
    out = sqn[rows][:, None] + sqn[centres][None, :] - 2.0 * dots
    return np.maximum(out, _MIN_SQ, out=out)


def kcenter_greedy(
    x: np.ndarray, budget: int, *, first: int, batch: int = _BATCH
) -> KCenterResult:
    """Farthest-first traversal of the rows of ``x`` from row ``first`` (exact).

    Parameters
    ----------
    x : ndarray of float32, shape (n, d)
        C-contiguous embedding (see :func:`as_float32_rows`).
    budget : int
        Number of picks including ``first``, ``1 <= budget <= n``.
    first : int
        The first centre.
    batch : int, default=256
        Picks between two bulk updates of the per-sample distances (speed only, never
        the picks).

    Returns
    -------
    KCenterResult
        ``order`` holds the ``budget`` picks in order; the plain greedy (distance of every
        sample to every new centre) picks the same.
    """
    n = x.shape[0]
    g = _Geometry(x)
    order = np.empty(budget, dtype=np.int64)
    order[0] = first
    u = np.empty(n, dtype=np.float64)
    for rows in row_blocks(n, 1, values=_ROWS):
        u[rows] = sq_dists(x, g.sqn, rows, order[:1])[:, 0]
    u[first] = -1.0  # selected: never the farthest, never updated (the reference's -1)
    seen = np.ones(n, dtype=np.int64)  # u[i] is the distance to the centres order[:seen[i]]
    frontier = _Frontier(g, u, seen, order)
    last = previous = float(u.max())
    since = 0
    for t in range(1, budget):
        if since == batch:
            # cover the samples the next `batch` picks may reach, predicted from how far
            # the squared radius fell over the last `batch` picks
            band = min(_BAND_MAX, max(_BAND_MIN, _BAND_SAFETY * last / previous))
            rows = np.flatnonzero((u >= band * last) & (seen < t))
            _catch_up(g, u, seen, order, rows, t)
            frontier = _Frontier(g, u, seen, order)
            since, previous = 0, last
        p, last = frontier.pop(t)
        order[t] = p
        u[p] = -1.0
        since += 1
    radius = float(np.sqrt(frontier.pop(budget)[1])) if budget < n else 0.0
    return KCenterResult(order=order, radius=radius, distances=g.exact, screened=g.screened)


class _Geometry:
    """The embedding in float32 and bfloat16, squared norms, and distance counters."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.sqn = squared_norms(x)
        self.norms = np.sqrt(self.sqn)
        self.tol = 1e-4 * float(self.sqn.max())  # twice a bound on the float32 dot error
        self.xb = torch.empty(x.shape, dtype=torch.bfloat16)
        for rows in row_blocks(x.shape[0], x.shape[1]):
            self.xb[rows] = torch.from_numpy(x[rows])
        self.exact = x.shape[0]
        self.screened = 0

    def dists(self, i: int, centres: np.ndarray) -> np.ndarray:
        self.exact += centres.size
        return sq_dists(self.x, self.sqn, [i], centres)[0]


class _Frontier:
    """Samples in decreasing ``u`` (upper bounds), plus a heap of visited ones.

    Heap entries are ``(-value, index, checked)``: ``value`` is the squared distance to
    the centres ``order[:checked]``; an entry with ``checked`` = all picks so far is exact.
    """

    def __init__(self, g: _Geometry, u: np.ndarray, seen: np.ndarray, order: np.ndarray):
        live = np.flatnonzero(u >= 0.0)
        self.queue = live[np.argsort(-u[live], kind="stable")]  # ties: lower index first
        self.bound = u[self.queue]
        self.pos = 0
        self.heap: list[tuple[float, int, int]] = []
        self.g, self.u, self.seen, self.order = g, u, seen, order

    def pop(self, t: int) -> tuple[int, float]:
        """The farthest unselected sample from the centres ``order[:t]``, and its value.

        Ties go to the lowest index (``torch.argmax`` on the reference's distances).
        """
        heap = self.heap
        while True:
            nxt = None
            if self.pos < self.queue.size:
                nxt = (-float(self.bound[self.pos]), int(self.queue[self.pos]))
            if heap and (nxt is None or heap[0][:2] <= nxt):
                neg, i, checked = heap[0]
                if checked == t:
                    heapq.heappop(heap)
                    return i, -neg
                value = min(-neg, float(self.g.dists(i, self.order[checked:t]).min()))
                self.u[i], self.seen[i] = value, t
                heapq.heapreplace(heap, (-value, i, t))
            elif nxt is not None:
                heapq.heappush(heap, (nxt[0], nxt[1], int(self.seen[nxt[1]])))
                self.pos += 1
            else:
                raise RuntimeError("no sample left to pick")  # budget <= n rules this out


def _catch_up(
    g: _Geometry, u: np.ndarray, seen: np.ndarray, order: np.ndarray, rows: np.ndarray, t: int
) -> None:
    """Bring ``u[rows]`` up to date with the centres ``order[:t]``.

    Rows are grouped by how many centres they have seen; a pair is screened in bfloat16
    (``|bf16 dot - dot| <= margin / 2``) and computed in float32 only if it may be nearer
    than ``u``: ``dot - (|c|^2 - margin) / 2 > (|x|^2 - u) / 2``.
    """
    rows = rows[np.argsort(seen[rows], kind="stable")]
    start = 0
    while start < rows.size:
        first_seen = int(seen[rows[start]])
        centres = order[first_seen:t]
        block = rows[start : start + max(1, _ROWS // centres.size)]
        start += block.size
        dots = _as_float32(g.xb[torch.from_numpy(block)] @ g.xb[torch.from_numpy(centres)].T)
        g.screened += dots.size
        # the margin with the block's largest row norm: one value per centre
        margin = _BF16_ERR * float(g.norms[block].max()) * g.norms[centres]
        dots -= (0.5 * (g.sqn[centres] - margin)).astype(np.float32)
        limit = 0.5 * (g.sqn[block] - (1.0 + _REL_SLACK) * u[block] - g.tol)
        r, c = np.nonzero(dots > limit.astype(np.float32)[:, None])
        if r.size:
            d = _pair_sq_dists(g.x, g.sqn, block[r], centres, c)
            g.exact += d.size
            starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
            best = np.minimum.reduceat(d, starts)
            hit = block[r[starts]]
            u[hit] = np.minimum(u[hit], best)
    seen[rows] = t


def _as_float32(t: torch.Tensor) -> np.ndarray:
    """A bfloat16 tensor as a float32 array (exact: bfloat16 is float32's upper half)."""
    bits = t.contiguous().view(torch.int16).numpy().astype(np.int32) << 16
    return bits.view(np.float32)


def _pair_sq_dists(
    x: np.ndarray, sqn: np.ndarray, rows: np.ndarray, centres: np.ndarray, col: np.ndarray
) -> np.ndarray:
    """Clamped squared distances of the pairs ``(rows[i], centres[col[i]])`` (float32 dot
    products, as :func:`sq_dists`), in blocks."""
    out = np.empty(rows.size, dtype=np.float64)
    cx = x[centres]
    step = max(1, _ROWS // x.shape[1])
    for lo in range(0, rows.size, step):
        r, c = rows[lo : lo + step], col[lo : lo + step]
        dots = np.einsum("ij,ij->i", x[r], cx[c])
        out[lo : lo + r.size] = sqn[r] + sqn[centres[c]] - 2.0 * dots
    return np.maximum(out, _MIN_SQ, out=out)


def kcenter_select(
    features: np.ndarray,
    labels: np.ndarray,
    n_select: int,
    *,
    seed: int,
    balance: bool,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run the greedy (per class when ``balance``); sorted indices, scores and info."""
    n = features.shape[0]
    scores = np.zeros(n, dtype=np.float64)
    groups, budgets = greedy_groups(labels, n_select, num_classes, balance=balance)
    radius, computed, screened = 0.0, 0, 0
    x_all = as_float32_rows(features) if not balance else None
    for idx, k in zip(groups, budgets):
        k = int(k)
        if k == 0:
            continue
        if k == idx.size:
            scores[idx] = 1.0
            continue
        x = x_all if x_all is not None else as_float32_rows(features[idx])
        first = int(np.random.RandomState(seed).randint(0, idx.size))
        res = kcenter_greedy(x, k, first=first)
        scores[idx[res.order]] = k - np.arange(k, dtype=np.float64)
        radius = max(radius, res.radius)
        computed += res.distances
        screened += res.screened
    info = {
        "covering_radius": radius,
        "distances_computed": computed,
        "pairs_screened_bf16": screened,
    }
    return np.flatnonzero(scores > 0).astype(np.int64), scores, info


@register
class kCenterGreedy(SelectionMethod):
    """k-center cover of the warm-up embedding by farthest-first traversal.

    Parameters
    ----------
    balance : bool, default=False
        Run the greedy within each (noisy) class with equal per-class budgets
        (DeepCore's per-class greedy; Prune4ReL ignored the flag).
    """

    summary = "k-center cover of the features: farthest-first traversal from a seeded start"

    def __init__(self, *, balance: bool = False) -> None:
        self.balance = balance

    def required_signals(self) -> frozenset[str]:
        return frozenset({"features"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        n_select = budget_size(len(signals), fraction)
        idx, scores, info = kcenter_select(
            signals.features,
            signals.labels,
            n_select,
            seed=check_seed(seed),
            balance=self.balance,
            num_classes=signals.num_classes,
        )
        return Subset(indices=idx, scores=scores, info=info)
