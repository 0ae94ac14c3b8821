"""Prune4ReL: re-labeling-aware pruning by greedy coverage of confident neighbourhoods.

Park, Choi, Jeong, Shin, Lee: "Robust Data Pruning under Label Noise via Maximizing
Re-labeling Accuracy", NeurIPS 2023; reference code kaist-dmlab/Prune4Rel,
``deepcore/methods/prune4rel.py`` (``k_neighbor_confidence_greedy``).

The greedy, as the reference runs it
------------------------------------
- ``conf(x)`` from the warm-up softmax (:func:`prune4rel_confidence`):
  ``LeastConfidence`` = max probability, ``Margin`` = top-1 minus top-2,
  ``Entropy`` = ``-sum(log(p + 1e-6) * p)`` (the entropy itself, so the "most confident"
  sample is the most uncertain one: kept as the reference has it).
- Similarity ``s(x, y) = 0.5 + 0.5 cos(x, y)`` of the features; the neighbours of ``p``
  are the ``x`` with ``s(x, p) > tau`` -- a threshold on ``0.5 + 0.5 cos``, i.e.
  ``cos > 2 tau - 1`` (tau = 0.975 means cos > 0.95). ``p`` is its own neighbour.
- ``R(x) = 0`` for all x. Each step picks the unselected sample with the largest
  ``tanh((R(p) + conf(p)) / eta) - tanh(R(p) / eta)`` (ties: lowest index), then adds
  ``s(x, p) * conf(p)`` to ``R(x)`` for every neighbour ``x`` of ``p``.
- ``balance``: round-robin over the classes (noisy labels) ``0..C-1``; step ``i`` targets
  ``available[i % len(available)]`` and takes the best sample of that class. A class
  with nothing left leaves ``available`` when the rotation reaches it; the first class
  to leave fixes ``min_balance`` (its size). The break rule is checked only then: if
  the class targeted instead has already had more than ``1.5 * min_balance`` picks,
  every later step is a global argmax (an empty class gives ``min_balance = 0`` and
  breaks the balance at once).

Reference quirks kept
---------------------
- The gain is the candidate's *own* utility change ``tanh((R+c)/eta) - tanh(R/eta)``,
  not the marginal gain of the paper's total objective (which would also count the
  confidence ``p`` adds to its neighbours); the reference code is what is reproduced.
- The neighbourhood threshold applies to ``0.5 + 0.5 cos``, not to ``cos``.
- The sample itself is a neighbour (it has no effect: it is never picked again).
- With ``eta = 1`` (the scripts' value) ``tanh`` saturates: once ``R`` is about 9 the
  gain is exactly 0 in float32 and picks in a saturated region go by lowest index.
- The reference stores probabilities and embeddings in float16 on the GPU before the
  greedy; here they are used as the signals hold them (cast to float32).

Arithmetic (what "exact" means)
-------------------------------
``conf``, ``R``, the gain and ``s`` are float32 values as in the reference's torch code:
``s`` is ``0.5 + 0.5 * dot / (|x| |p|)`` evaluated in float64 and rounded once to float32;
``R += float32(s * conf(p))``; the gain uses float32 ``(R + c) / eta`` and ``tanh``
rounded to float32 from float64. These are fixed, position-independent definitions, so
the exact mode and a literal transcription of the reference loop pick identical
samples (a BLAS summation order or a vectorised ``tanh`` cannot flip a tie).

Two modes
---------
- **exact** (default up to ``exact_max_samples``): identical picks to the reference loop
  in O(N·k) memory. Neighbourhood candidates come from one blocked self-join
  (:func:`~deep_core.neighbors.search.range_search`, in bfloat16 where that is faster,
  above ``2 tau - 1`` minus a bound on the product's rounding error) and are re-scored
  exactly per pick. The gain of a sample only changes when a neighbour is
  picked, so a lazy max-heap (per class when balanced) with keys that are upper bounds
  finds the same argmax as the full scan; a key is refreshed on pop, and pushed anew
  in the rare case a gain grows (float rounding, or a negative Entropy "confidence").
- **scalable** (``neighbors=K``; or automatically, with K = 100, above
  ``exact_max_samples`` samples or when the exact graph is estimated to exceed
  ``exact_max_pairs`` pairs, e.g. tau = 0.8 where a neighbourhood is most of a class):
  each sample's neighbourhood is capped at its K most similar samples above
  the threshold, from a flat (exact) or IVF k-NN search whose recall is measured and
  logged. Memory O(N·K). Similarities are re-scored as in the exact mode, so with K at
  least the largest neighbourhood and the flat index the picks are the exact ones; the
  greedy is sensitive to every capped neighbourhood, though (K = 64 against mean
  neighbourhoods of ~120 gave a Jaccard of ~0.65 with the exact subset in the tests).

Scores
------
``Subset.scores`` is the greedy order: the ``t``-th pick (t = 0, 1, ...) scores
``n_select - t``; unselected samples score 0. Higher = picked earlier.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from ..budget import budget_size
from ..errors import DeepCoreError, unknown_name
from ..signals import Signals
from ..subset import Subset
from .base import SelectionMethod, register

if TYPE_CHECKING:  # torch and faiss load on first use: listing the methods needs neither
    import torch

    from ..neighbors.search import Neighborhoods

Uncertainty = Literal["LeastConfidence", "Margin", "Entropy"]
UNCERTAINTIES: tuple[str, ...] = ("LeastConfidence", "Margin", "Entropy")
INDEXES = ("auto", "flat", "ivf")
#: above this many samples ``neighbors=None`` switches to the scalable mode
EXACT_MAX_SAMPLES = 200_000
#: ``neighbors=None`` also goes scalable when the exact graph would hold more (directed)
#: pairs than this (about 40 bytes each at the peak of its construction)
EXACT_MAX_PAIRS = 100_000_000
#: K of the automatic scalable mode
AUTO_NEIGHBORS = 100
#: ``index="auto"`` uses the exact flat k-NN up to this many samples, IVF above
FLAT_MAX_SAMPLES = 50_000


def prune4rel_confidence(probs: np.ndarray, uncertainty: str = "LeastConfidence") -> np.ndarray:
    """Per-sample "confidence" of the Prune4ReL greedy, as the reference computes it.

    Parameters
    ----------
    probs : ndarray of shape (N, C)
        Warm-up softmax probabilities (cast to float32).
    uncertainty : {"LeastConfidence", "Margin", "Entropy"}, default="LeastConfidence"
        ``LeastConfidence``: max probability. ``Margin``: top-1 minus top-2 probability.
        ``Entropy``: ``-sum(log(p + 1e-6) * p)`` -- the entropy, so higher means *less*
        confident; kept as the reference has it (it can be slightly negative, about
        -1e-6, for a one-hot row).

    Returns
    -------
    ndarray of float32, shape (N,)
        Computed with the reference's float32 torch operations.
    """
    if uncertainty not in UNCERTAINTIES:
        raise unknown_name("uncertainty", uncertainty, UNCERTAINTIES)
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 1:
        raise DeepCoreError(f"probs must have shape (N, C) with C >= 1, got {p.shape}")
    if uncertainty == "Margin" and p.shape[1] < 2:
        raise DeepCoreError("Margin needs at least 2 classes in probs")
    import torch

    t = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
    if not torch.isfinite(t).all():
        raise DeepCoreError("probs contain NaN or infinite values")
    if t.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    with torch.no_grad():
        if uncertainty == "LeastConfidence":
            conf = t.max(dim=1).values
        elif uncertainty == "Margin":
            top = torch.topk(t, k=2, dim=1).values
            conf = top[:, 0] - top[:, 1]
        else:
            conf = -(torch.log(t + 1e-6) * t).sum(dim=1)
    return conf.numpy().astype(np.float32, copy=False)


@dataclass(frozen=True)
class GreedyResult:
    """Outcome of :func:`prune4rel_greedy`.

    Attributes
    ----------
    order : ndarray of int64, shape (n_select,)
        Selected samples in the order the greedy picked them.
    info : dict
        Mode, neighbourhood statistics, balance break step, timings (JSON-serialisable).
    """

    order: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def prune4rel_greedy(
    features: np.ndarray,
    confidence: np.ndarray,
    labels: np.ndarray | None,
    n_select: int,
    *,
    tau: float = 0.95,
    eta: float = 100.0,
    balance: bool = False,
    num_classes: int | None = None,
    neighbors: int | None = None,
    index: str = "auto",
    exact_max_samples: int = EXACT_MAX_SAMPLES,
    exact_max_pairs: int = EXACT_MAX_PAIRS,
    nprobe: int = 8,
    search_precision: str = "auto",
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_threads: int | None = None,
) -> GreedyResult:
    """Run the Prune4ReL greedy (see the module docstring for the exact semantics).

    Parameters
    ----------
    features : ndarray of shape (N, d)
        Warm-up embeddings; every row must be finite and non-zero.
    confidence : ndarray of shape (N,)
        Per-sample confidence, e.g. from :func:`prune4rel_confidence` (cast to float32).
    labels : ndarray of int, shape (N,), optional
        Noisy labels; required when ``balance``.
    n_select : int
        Number of samples to pick, 0..N.
    tau : float, default=0.95
        Neighbourhood threshold on ``0.5 + 0.5 cos``, in [0, 1].
    eta : float, default=100.0
        Temperature of the ``tanh`` utility, > 0.
    balance : bool, default=False
        Round-robin over classes with the reference's 1.5x break rule.
    num_classes : int, optional
        Classes in the rotation (default ``labels.max() + 1``); empty classes count, as
        in the reference.
    neighbors : int, optional
        None: exact mode, unless N > ``exact_max_samples`` or the neighbourhood graph is
        estimated (from 500 evenly spaced rows) to exceed ``exact_max_pairs`` pairs: then
        scalable with K = 100, and ``info["auto_reason"]`` says why. An int K: scalable
        mode with at most K neighbours per sample.
    index : {"auto", "flat", "ivf"}, default="auto"
        k-NN index of the scalable mode; ``auto`` is flat up to 50,000 samples.
    exact_max_samples : int, default=200_000
        Largest N run in exact mode when ``neighbors`` is None.
    exact_max_pairs : int, default=100_000_000
        Largest estimated N x (mean neighbourhood size) run in exact mode when
        ``neighbors`` is None (memory: about 40 bytes per pair at peak).
    nprobe : int, default=8
        IVF partitions probed (scalable mode with ``index="ivf"``).
    search_precision : {"auto", "float32", "bfloat16"}, default="auto"
        Precision of the exact mode's candidate search (the picks do not depend on it:
        the search margin covers its error and candidates are re-scored in float64);
        ``auto`` takes bfloat16 where it is faster (:func:`fastest_precision`).
    seed : int, default=0
        Seeds the IVF k-means and its recall sample (exact mode uses no randomness).
    device : str or torch.device, default="cpu"
        Where the similarity matrix products run.
    n_threads : int, optional
        torch / faiss threads during the neighbourhood search.

    Returns
    -------
    GreedyResult
        Picks in greedy order, and an ``info`` dict.
    """
    from ..neighbors.search import (
        PRECISIONS,
        compute_threads,
        fastest_precision,
        knn_search,
        normalize_rows,
        range_search,
        similarity_error,
    )

    start = time.perf_counter()
    x = np.asarray(features)
    if x.ndim != 2:
        raise DeepCoreError(f"features must have shape (N, d), got {x.shape}")
    n = x.shape[0]
    conf = np.asarray(confidence)
    if conf.shape != (n,):
        raise DeepCoreError(f"confidence has shape {conf.shape} but features has {n:,} rows")
    if not np.isfinite(conf).all():
        raise DeepCoreError("confidence contains NaN or infinite values")
    conf = conf.astype(np.float32)
    if not 0 <= int(n_select) <= n:
        raise DeepCoreError(f"cannot select {n_select} of {n:,} samples")
    n_select = int(n_select)
    tau_f, eta_f = float(tau), float(eta)
    if not 0.0 <= tau_f <= 1.0:  # also False for NaN
        raise DeepCoreError(f"tau must be in [0, 1], got {tau}")
    if not (eta_f > 0.0 and np.isfinite(eta_f)):
        raise DeepCoreError(f"eta must be a positive finite number, got {eta}")
    if neighbors is not None and int(neighbors) < 1:
        raise DeepCoreError(f"neighbors must be a positive integer or None, got {neighbors}")
    if index not in INDEXES:
        raise unknown_name("neighbour index", index, INDEXES)
    if search_precision != "auto" and search_precision not in PRECISIONS:
        raise unknown_name("search precision", search_precision, ("auto", *PRECISIONS))
    lab, n_classes = _check_labels(labels, n, balance, num_classes)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    xn = normalize_rows(x32)  # also rejects NaN / infinite / zero rows

    tau32, eta32 = np.float32(tau_f), np.float32(eta_f)
    cos_t = 2.0 * tau_f - 1.0
    searching = n_select > 1 and tau32 < np.float32(1.0)
    info: dict[str, Any] = {
        "tau": tau_f,
        "eta": eta_f,
        "balance": bool(balance),
        "num_samples": n,
        "n_select": n_select,
    }
    reason = None
    if neighbors is None and n > exact_max_samples:
        reason = f"{n:,} samples > exact_max_samples={exact_max_samples:,}"
    elif neighbors is None and searching and n * n > exact_max_pairs:
        pairs = _estimate_pairs(xn, cos_t - similarity_error(x.shape[1]), device)
        info["estimated_pairs"] = int(pairs)
        if pairs > exact_max_pairs:
            reason = f"about {pairs:,.0f} neighbour pairs > exact_max_pairs={exact_max_pairs:,}"
    k = AUTO_NEIGHBORS if reason else (None if neighbors is None else int(neighbors))
    info.update(mode="exact" if k is None else "scalable", auto_scalable=reason is not None)
    if reason:
        info["auto_reason"] = reason

    graph: Neighborhoods | None = None
    if searching:
        with compute_threads(n_threads):
            if k is None:
                prec = search_precision
                if prec == "auto":
                    prec = fastest_precision(device, x.shape[1])
                margin = similarity_error(x.shape[1], prec)
                graph = range_search(
                    xn, cos_t - margin, normalized=True, precision=prec, device=device
                )
            else:
                kind = index if index != "auto" else ("flat" if n <= FLAT_MAX_SAMPLES else "ivf")
                graph = knn_search(
                    xn,
                    k,
                    threshold=cos_t - similarity_error(x.shape[1]),
                    index=kind,
                    nprobe=nprobe,
                    seed=seed,
                    normalized=True,
                    device=device,
                )
        sizes = graph.sizes()
        info["search"] = {key: v for key, v in graph.info.items() if v is not None}
        info["candidates_mean"] = round(float(sizes.mean()), 3) if n else 0.0
        info["candidates_max"] = int(sizes.max()) if n else 0
    del xn
    t_search = time.perf_counter()

    neighbours = _exact_neighbours(x32, graph, tau32, local=k is None)
    order, greedy_info = _greedy(conf, lab, n_classes, n_select, eta32, bool(balance), neighbours)
    info.update(greedy_info)
    info["seconds_search"] = round(t_search - start, 3)
    info["seconds_greedy"] = round(time.perf_counter() - t_search, 3)
    if k is not None:
        info["neighbors"] = k
    return GreedyResult(order=order, info=info)


@register
class Prune4Rel(SelectionMethod):
    """Prune4ReL (Park et al., NeurIPS 2023): see :mod:`deep_core.methods.prune4rel`.

    Score: greedy order (first pick highest, unselected 0). Direction: higher = kept.

    Parameters
    ----------
    balance : bool, default=False
        Round-robin over noisy-label classes with the reference's 1.5x break rule.
    uncertainty : {"LeastConfidence", "Margin", "Entropy"}, default="LeastConfidence"
        Confidence of :func:`prune4rel_confidence`. The reference class defaults to
        LeastConfidence and every reference script passes it (its CLI default is Margin).
    tau : float, default=0.95
        Neighbourhood threshold on ``0.5 + 0.5 cos`` (scripts: 0.975 CIFAR-10, 0.95
        CIFAR-100, 0.8 Clothing-1M).
    eta : float, default=100.0
        ``tanh`` temperature (scripts: 1).
    neighbors : int, optional
        None: exact (scalable with K = 100 above ``exact_max_samples`` samples or
        ``exact_max_pairs`` estimated neighbour pairs, logged); K: scalable.
    index : {"auto", "flat", "ivf"}, default="auto"
        k-NN index of the scalable mode.
    exact_max_samples : int, default=200_000
        Largest N run in exact mode when ``neighbors`` is None.
    exact_max_pairs : int, default=100_000_000
        Largest estimated neighbourhood graph run in exact mode when ``neighbors`` is None.
    n_threads : int, optional
        torch / faiss threads for the neighbourhood search.
    device : str, default="cpu"
        Where the similarity matrix products run.

    Protocol: ``reference`` reads probs and features on one seeded strong-augmented view
    (the reference's ``eval_train_strong``); ``clean`` on the clean view.
    """

    summary = "greedy coverage of confident feature neighbourhoods (re-labeling aware)"
    #: the view its reference reads probs and features from (see ``--protocol``)
    reference_view = "strong"
    #: ``balance`` is the reference's round-robin with its 1.5x break, not class_budgets
    balance_rule = "round-robin"

    def __init__(
        self,
        *,
        balance: bool = False,
        uncertainty: Uncertainty = "LeastConfidence",
        tau: float = 0.95,
        eta: float = 100.0,
        neighbors: int | None = None,
        index: str = "auto",
        exact_max_samples: int = EXACT_MAX_SAMPLES,
        exact_max_pairs: int = EXACT_MAX_PAIRS,
        n_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        # bad options fail here, before any warm-up is paid for
        if uncertainty not in UNCERTAINTIES:
            raise unknown_name("uncertainty", uncertainty, UNCERTAINTIES)
        if not 0.0 <= tau <= 1.0:
            raise DeepCoreError(f"--tau must be in [0, 1], got {tau}")
        if not (eta > 0 and math.isfinite(eta)):
            raise DeepCoreError(f"--eta must be a positive finite number, got {eta}")
        if neighbors is not None and neighbors < 1:
            raise DeepCoreError(f"--neighbors must be at least 1, got {neighbors}")
        self.balance = balance
        self.uncertainty = uncertainty
        self.tau = tau
        self.eta = eta
        self.neighbors = neighbors
        self.index = index
        self.exact_max_samples = exact_max_samples
        self.exact_max_pairs = exact_max_pairs
        self.n_threads = n_threads
        self.device = device

    def required_signals(self) -> frozenset[str]:
        return frozenset({"probs", "features"})

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        self.check(signals)
        n = len(signals)
        n_select = budget_size(n, fraction)
        conf = prune4rel_confidence(signals.probs, self.uncertainty)
        result = prune4rel_greedy(
            signals.features,
            conf,
            signals.labels,
            n_select,
            tau=self.tau,
            eta=self.eta,
            balance=bool(self.balance),
            num_classes=signals.num_classes,
            neighbors=self.neighbors,
            index=self.index,
            exact_max_samples=self.exact_max_samples,
            exact_max_pairs=self.exact_max_pairs,
            seed=seed,
            device=self.device,
            n_threads=self.n_threads,
        )
        scores = np.zeros(n, dtype=np.float64)
        scores[result.order] = n_select - np.arange(n_select, dtype=np.float64)
        info = dict(result.info, uncertainty=self.uncertainty)
        return Subset(indices=np.sort(result.order), scores=scores, info=info)


# -- internals --------------------------------------------------------------------------


def _check_labels(
    labels: np.ndarray | None, n: int, balance: bool, num_classes: int | None
) -> tuple[np.ndarray, int]:
    if labels is None:
        if balance:
            raise DeepCoreError("balanced Prune4ReL needs labels")
        return np.zeros(n, dtype=np.int64), 1
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise DeepCoreError(f"labels have shape {lab.shape} but features has {n:,} rows")
    if n and not np.issubdtype(lab.dtype, np.integer):
        raise DeepCoreError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    c = int(num_classes) if num_classes is not None else (int(lab.max()) + 1 if n else 1)
    if n and (lab.min() < 0 or lab.max() >= c):
        raise DeepCoreError(f"labels must lie in [0, {c}), got [{lab.min()}, {lab.max()}]")
    return lab, max(c, 1)


def _estimate_pairs(xn: np.ndarray, t: float, device: str | torch.device) -> float:
    """N x mean number of rows with cos > t, from 500 evenly spaced (deterministic) rows."""
    n = xn.shape[0]
    import torch

    rows = np.unique(np.linspace(0, n - 1, num=min(n, 500)).round().astype(np.int64))
    with torch.no_grad():
        q = torch.from_numpy(xn[rows]).to(device)
        count = 0
        for s in range(0, n, 1 << 15):
            count += int((q @ torch.from_numpy(xn[s : s + (1 << 15)]).to(device).T > t).sum())
    return n * count / rows.size


def _gain(r: np.ndarray, c: np.ndarray, eta: np.float32) -> np.ndarray:
    """``tanh((r + c) / eta) - tanh(r / eta)`` in float32 (tanh rounded from float64)."""
    hi = np.tanh(((r + c) / eta).astype(np.float64)).astype(np.float32)
    lo = np.tanh((r / eta).astype(np.float64)).astype(np.float32)
    return hi - lo


Neighbours = Callable[[int], tuple[np.ndarray, np.ndarray]]


def _exact_neighbours(
    x32: np.ndarray, graph: Neighborhoods | None, tau32: np.float32, *, local: bool
) -> Neighbours:
    """Candidates of ``p`` re-scored as ``s = f32(0.5 + 0.5 cos)`` (cos in float64), if > tau.

    ``local``: gather the candidate rows from a copy of the features in reverse
    Cuthill-McKee order of the (symmetric) candidate graph, where a neighbourhood is a
    narrow band of rows instead of N scattered ones (cache-friendly; same values).
    """
    if graph is None:
        return lambda p: (np.empty(0, np.int64), np.empty(0, np.float32))
    norms = np.empty(x32.shape[0], dtype=np.float64)
    for s in range(0, x32.shape[0], 1 << 16):
        xc = x32[s : s + (1 << 16)].astype(np.float64)
        norms[s : s + (1 << 16)] = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    rows, pos = x32, None
    if local and graph.nnz:
        n = x32.shape[0]
        pattern = sp.csr_matrix(
            (np.ones(graph.nnz, dtype=np.int8), graph.indices, graph.indptr), shape=(n, n)
        )
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        perm = reverse_cuthill_mckee(pattern, symmetric_mode=True)
        pos = np.empty(n, dtype=np.int64)
        pos[perm] = np.arange(n)
        rows = x32[perm]

    def neighbours(p: int) -> tuple[np.ndarray, np.ndarray]:
        cand = graph.row(p)[0]
        gathered = rows[cand] if pos is None else rows[pos[cand]]
        dots = gathered.astype(np.float64) @ x32[p].astype(np.float64)
        s = (0.5 + 0.5 * (dots / (norms[cand] * norms[p]))).astype(np.float32)
        keep = s > tau32
        return cand[keep].astype(np.int64), s[keep]

    return neighbours


def _greedy(
    conf: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    n_select: int,
    eta: np.float32,
    balance: bool,
    neighbours: Neighbours,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Lazy-heap greedy: the argmax of the gain (ties lowest index) at every step.

    ``key[i]`` is the key of sample i's live heap entry and always >= its current gain
    ``G[i]``. A popped entry whose key equals the current gain is the argmax: every other
    sample has a live entry ordered after it, with a key at least its own gain.
    """
    n = conf.size
    r = np.zeros(n, dtype=np.float32)
    gain = _gain(r, conf, eta)
    key = gain.astype(np.float64)
    selected = np.zeros(n, dtype=bool)
    order = np.empty(n_select, dtype=np.int64)
    neg = (-gain).tolist()

    if balance:
        members = [np.flatnonzero(labels == c) for c in range(num_classes)]
        heaps = [[(neg[i], i) for i in m.tolist()] for m in members]
        left = [int(m.size) for m in members]
        init = list(left)
        available = list(range(num_classes))
    else:
        heaps = [list(zip(neg, range(n), strict=True))]
    for h in heaps:
        heapq.heapify(h)
    del neg
    broken = not balance
    break_step = None
    min_balance = 0

    def pop(h: list[tuple[float, int]]) -> int:
        while True:
            negk, i = heapq.heappop(h)
            if selected[i] or -negk != key[i]:
                continue  # obsolete entry: a newer one (or the pick) superseded it
            g = float(gain[i])
            if g == key[i]:
                return i
            key[i] = g
            heapq.heappush(h, (-g, i))

    for step in range(n_select):
        if broken:
            p = pop(heaps[0])
        else:
            target = available[step % len(available)]
            while left[target] == 0:
                if len(available) == num_classes:
                    min_balance = init[target]
                available.remove(target)
                target = available[step % len(available)]
                if init[target] - left[target] > 1.5 * min_balance:
                    break_step = step
            p = pop(heaps[target])
            left[target] -= 1
        selected[p] = True
        order[step] = p
        if break_step is not None and not broken:
            broken = True  # from the next step on: global argmax over all that is left
            rest = np.flatnonzero(~selected)
            key[rest] = gain[rest]
            heaps = [list(zip((-gain[rest]).tolist(), rest.tolist(), strict=True))]
            heapq.heapify(heaps[0])
        if step == n_select - 1:
            break
        idx, s = neighbours(p)
        if idx.size == 0:
            continue
        r[idx] += s * conf[p]
        g_new = _gain(r[idx], conf[idx], eta)
        gain[idx] = g_new
        grown = np.flatnonzero(g_new > key[idx])
        for j, g in zip(idx[grown].tolist(), g_new[grown].tolist(), strict=True):
            if not selected[j]:
                key[j] = g
                heapq.heappush(heaps[0] if broken else heaps[labels[j]], (-g, j))
    return order, {"balance_break_step": break_step}
