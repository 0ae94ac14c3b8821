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
- Similarity, ``metric="cossim"`` (every reference script passes ``--metric cossim``):
  ``s(x, y) = 0.5 + 0.5 cos(x, y)``; the neighbours of ``p`` are the ``x`` with
  ``s(x, p) > tau`` -- a threshold on ``0.5 + 0.5 cos``, i.e. ``cos > 2 tau - 1``
  (tau = 0.975 means cos > 0.95). ``p`` is its own neighbour.
- ``metric="euclidean"`` (the reference CLI's default, used by none of its scripts):
  ``s(x, p) = clamp(1 / (|x - p| + 0.1) - 0.1, 0, 10)`` on the raw features, with no
  threshold: every ``x`` closer than 9.9 to ``p`` is a neighbour and ``tau`` is not
  used (as in the reference). The upper clamp never binds (``s <= 9.9``).
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
``s`` is ``0.5 + 0.5 * dot / (|x| |p|)`` (cossim) or ``1 / (sqrt(max(|x|^2 + |p|^2 -
2 dot, 1e-12)) + 0.1) - 0.1`` (euclidean) evaluated in float64 and rounded once to
float32; ``R += float32(s * conf(p))``; the gain uses float32 ``(R + c) / eta`` and
``tanh`` rounded to float32 from float64. These are fixed, position-independent
definitions, so the exact mode and a literal transcription of the reference loop pick
identical samples (a BLAS summation order or a vectorised ``tanh`` cannot flip a tie).

Two modes
---------
- **exact** (``neighbors=None``, whenever the neighbourhood graph fits the memory budget
  ``exact_memory_gb``, default a quarter of the machine's RAM; int32 ids + float32
  similarities, about 32 bytes per pair at the peak of the construction): identical
  picks to the reference loop. Neighbourhood candidates come from one blocked self-join
  (:func:`~deep_core.neighbors.search.range_search`, in bfloat16 where that is faster,
  above ``2 tau - 1`` minus a bound on the product's rounding error; euclidean:
  :func:`~deep_core.neighbors.search.radius_search`) and are re-scored exactly when a
  sample is picked. The gain of a sample only changes when a neighbour is picked, so
  the gains live in blocks of 128 with each block's maximum (one run of blocks per class
  when balanced): the argmax, ties to the lowest index, costs O(N / 128 + 128) instead
  of a scan of N, and an update touches only the pick's neighbours (vectorised numpy).
  Each neighbour pair's exact ``s`` is computed once (the self-join's CSR table carries
  pair ids; ``s`` is symmetric: the same float64 dot product, rounded to float32, up to
  the last float64 bit of a BLAS summation order, as everywhere in the comparison with
  the reference loop). What is left of the greedy's time is that
  re-scoring, bound by gathering the candidate rows -- bytes a compiled loop would read
  as well.
- **scalable** (``neighbors=K``, or when the exact graph does not fit the budget: the
  search stops as soon as it knows, and above 100,000 samples a count on 500 rows first
  skips a graph estimated at over twice the budget): each neighbourhood is capped at its
  K most similar samples above the threshold. It never happens silently: one line on the
  ``deep_core`` logger at WARNING (so on the console and in the run log), also in
  ``info["approximation"]``, says why, which K and index, and the **recall against the
  exact threshold neighbourhoods** on a seeded sample of queries (``recall_sample``;
  the fraction of the true neighbour pairs, self excluded, that the capped search
  kept after re-scoring). The automatic K is the largest exact neighbourhood in that
  sample, capped by the memory budget. ``index="auto"`` caps the exact threshold graph
  when it fits (up to 200,000 samples), else runs the IVF cluster join
  (:func:`~deep_core.neighbors.search.knn_search`; bfloat16 where faster, with a
  float32 re-check of the borderline rows). Similarities are re-scored as in the exact
  mode, so with K at least the largest neighbourhood the picks are the exact ones; the
  greedy is sensitive to every capped neighbourhood, though (K = 64 against mean
  neighbourhoods of ~120 gave a Jaccard of ~0.65 with the exact subset in the tests).
  Cosine only: the euclidean metric runs exact or fails with a clear message.

Scores
------
``Subset.scores`` is the greedy order: the ``t``-th pick (t = 0, 1, ...) scores
``n_select - t``; unselected samples score 0. Higher = picked earlier.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

import numpy as np

from ..budget import budget_size
from ..errors import DeepCoreError, unknown_name
from ..lazy import LazyModule
from ..neighbors.search import (
    PRECISIONS,
    RANGE_BYTES_PER_PAIR,
    Neighborhoods,
    NeighborhoodTooLarge,
    compute_threads,
    fastest_precision,
    knn_search,
    normalize_rows,
    radius_search,
    range_search,
    similarity_error,
)
from ..options import Interval
from ..signals import Signals
from ..subset import Subset
from .base import SelectionMethod, register

log = logging.getLogger("deep_core")
# torch (and faiss, through the search module) load on first use: listing the methods
# needs neither
torch = LazyModule("torch")

Uncertainty = Literal["LeastConfidence", "Margin", "Entropy"]
UNCERTAINTIES: tuple[str, ...] = get_args(Uncertainty)
Metric = Literal["cossim", "euclidean"]
METRICS: tuple[str, ...] = get_args(Metric)
Index = Literal["auto", "range", "flat", "ivf"]
INDEXES: tuple[str, ...] = get_args(Index)
#: share of the machine's RAM that the exact neighbourhood graph may take by default
EXACT_MEMORY_SHARE = 0.25
#: ``index="auto"`` caps the exact threshold graph up to this many samples, IVF above
RANGE_MAX_SAMPLES = 200_000
#: above this many samples a sampled pair count first skips a clearly too large exact graph
ESTIMATE_MIN_SAMPLES = 100_000
#: euclidean metric: ``1 / (dist + 0.1) - 0.1 > 0`` exactly when ``dist < 9.9``
EUCLIDEAN_RADIUS = 9.9


def default_exact_memory_gb() -> float:
    """Default memory budget (GiB) of the exact neighbourhood graph: a quarter of the RAM.

    Derived from the machine's total physical memory (not what is free at the moment), so
    the choice between exact and scalable mode is the same on every run.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume 16 GiB
        total = 16 * 2**30
    return EXACT_MEMORY_SHARE * total / 2**30


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
    arr = np.ascontiguousarray(p, dtype=np.float32)
    if not arr.flags.writeable:  # a read-only (cached, memory-mapped) array is not shared
        arr = arr.copy()
    t = torch.from_numpy(arr)
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
    metric: str = "cossim",
    neighbors: int | None = None,
    index: str = "auto",
    exact_memory_gb: float | None = None,
    nprobe: int = 8,
    recall_sample: int = 1000,
    search_precision: str = "auto",
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_threads: int | None = None,
) -> GreedyResult:
    """Run the Prune4ReL greedy (see the module docstring for the exact semantics).

    Parameters
    ----------
    features : ndarray of shape (N, d)
        Warm-up embeddings; finite, and (cossim) no zero row.
    confidence : ndarray of shape (N,)
        Per-sample confidence, e.g. from :func:`prune4rel_confidence` (cast to float32).
    labels : ndarray of int, shape (N,), optional
        Noisy labels; required when ``balance``.
    n_select : int
        Number of samples to pick, 0..N.
    tau : float, default=0.95
        Neighbourhood threshold on ``0.5 + 0.5 cos``, in [0, 1] (not used by euclidean).
    eta : float, default=100.0
        Temperature of the ``tanh`` utility, > 0.
    balance : bool, default=False
        Round-robin over classes with the reference's 1.5x break rule.
    num_classes : int, optional
        Classes in the rotation (default ``labels.max() + 1``); empty classes count, as
        in the reference.
    metric : {"cossim", "euclidean"}, default="cossim"
        Similarity of the reference (see the module docstring).
    neighbors : int, optional
        None: exact mode whenever the neighbourhood graph fits ``exact_memory_gb``, else
        scalable with K from the measured neighbourhood sizes. An int K: scalable mode
        with at most K neighbours per sample. Either way the scalable mode logs one
        WARNING line with its measured recall.
    index : {"auto", "range", "flat", "ivf"}, default="auto"
        Search of the scalable mode: ``range`` caps the exact threshold graph (it must
        fit the memory budget), ``flat`` exact k-NN (faiss), ``ivf`` the cluster join;
        ``auto`` is ``range`` up to 200,000 samples when it fits, else ``ivf``.
    exact_memory_gb : float, optional
        Memory budget (GiB) of the neighbourhood graph; default
        :func:`default_exact_memory_gb` (a quarter of the RAM).
    nprobe : int, default=8
        IVF partitions probed.
    recall_sample : int, default=1000
        Scalable mode: queries (seeded sample) whose exact threshold neighbourhoods
        measure the recall and size the automatic K.
    search_precision : {"auto", "float32", "bfloat16"}, default="auto"
        Precision of the neighbourhood searches (the picks do not depend on it in exact
        mode: the search margin covers its error and candidates are re-scored in
        float64); ``auto`` takes bfloat16 where it is faster (:func:`fastest_precision`).
    seed : int, default=0
        Seeds the scalable mode's query sample and IVF k-means (exact mode uses no
        randomness).
    device : str or torch.device, default="cpu"
        Where the similarity matrix products run.
    n_threads : int, optional
        torch / faiss threads during the neighbourhood search.

    Returns
    -------
    GreedyResult
        Picks in greedy order, and an ``info`` dict.
    """

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
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS)
    if neighbors is not None and int(neighbors) < 1:
        raise DeepCoreError(f"neighbors must be a positive integer or None, got {neighbors}")
    if neighbors is not None and metric != "cossim":
        raise DeepCoreError("neighbors (the scalable mode) needs metric='cossim'")
    if index not in INDEXES:
        raise unknown_name("neighbour index", index, INDEXES)
    if search_precision != "auto" and search_precision not in PRECISIONS:
        raise unknown_name("search precision", search_precision, ("auto", *PRECISIONS))
    budget_gb = default_exact_memory_gb() if exact_memory_gb is None else float(exact_memory_gb)
    if not (budget_gb > 0 and math.isfinite(budget_gb)):
        raise DeepCoreError(f"exact_memory_gb must be a positive number, got {exact_memory_gb}")
    if int(recall_sample) < 0:
        raise DeepCoreError(f"recall_sample must be >= 0, got {recall_sample}")
    lab, n_classes = _check_labels(labels, n, balance, num_classes)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cossim":
        xn = normalize_rows(x32)  # also rejects NaN / infinite / zero rows
    elif not np.isfinite(x32).all():
        raise DeepCoreError("features contain NaN or infinite values")
    max_pairs = int(budget_gb * 2**30 / RANGE_BYTES_PER_PAIR)

    tau32, eta32 = np.float32(tau_f), np.float32(eta_f)
    searching = n_select > 1 and (metric == "euclidean" or tau32 < np.float32(1.0))
    info: dict[str, Any] = {
        "tau": tau_f,
        "eta": eta_f,
        "metric": metric,
        "balance": bool(balance),
        "num_samples": n,
        "n_select": n_select,
        "exact_memory_gb": round(budget_gb, 3),
    }
    score = _Scorer(x32, metric, tau32)
    graph: Neighborhoods | None = None
    reason = None
    if searching:
        prec = search_precision
        if prec == "auto":
            prec = fastest_precision(device, x.shape[1])
        with compute_threads(n_threads):
            if neighbors is None:
                cut = 2.0 * tau_f - 1.0 - similarity_error(x.shape[1], prec)
                if metric == "cossim" and n > ESTIMATE_MIN_SAMPLES and n * n > max_pairs:
                    # a join that overflows late wastes minutes here: skip a clear case
                    pairs = _estimate_pairs(xn, cut, prec, device)
                    info["estimated_pairs"] = int(pairs)
                    if pairs > 2 * max_pairs:
                        reason = (
                            f"about {pairs:,.0f} neighbour pairs (estimated from 500 rows), "
                            f"over twice the {max_pairs:,} that exact_memory_gb="
                            f"{budget_gb:.2f} holds"
                        )
                try:
                    if reason is None and metric == "cossim":
                        graph = range_search(
                            xn, cut, normalized=True, precision=prec, max_pairs=max_pairs,
                            device=device,
                        )  # fmt: skip
                    elif reason is None:
                        graph = radius_search(
                            x32, EUCLIDEAN_RADIUS * (1.0 + 1e-6), precision=prec,
                            max_pairs=max_pairs, device=device,
                        )  # fmt: skip
                except NeighborhoodTooLarge:
                    over = (
                        f"the exact neighbourhood graph holds more than {max_pairs:,} pairs, "
                        f"over exact_memory_gb={budget_gb:.2f}"
                    )
                    if metric != "cossim":
                        raise DeepCoreError(
                            f"metric='euclidean': {over} (all pairs closer than "
                            f"{EUCLIDEAN_RADIUS}); raise exact_memory_gb (the scalable mode "
                            "is cosine only)"
                        ) from None
                    reason = over
            else:
                reason = f"neighbors={int(neighbors)} was given"
            if reason is not None:
                graph, scalable = _scalable_graph(
                    xn, score, tau_f, None if neighbors is None else int(neighbors), index,
                    prec, max_pairs, nprobe, int(recall_sample), seed, device,
                    range_fits=neighbors is not None,
                )  # fmt: skip
                info.update(scalable)
        sizes = graph.sizes()
        info["search"] = {key: v for key, v in graph.info.items() if v is not None}
        info["candidates_mean"] = round(float(sizes.mean()), 3) if n else 0.0
        info["candidates_max"] = int(sizes.max()) if n else 0
    info["mode"] = "exact" if reason is None else "scalable"
    if reason is not None:
        recall = (
            "not measured (recall_sample=0)"
            if info["recall"] is None
            else f"{info['recall']:.4f} (1 = exact)"
        )
        line = (
            f"Prune4Rel is approximate (scalable mode): {reason}; neighbourhoods capped at "
            f"K={info['neighbors']} ({info['k_rule']}), search index={info['index']}; recall "
            f"against the exact threshold neighbourhoods on {info['recall_sample']:,} "
            f"sampled queries: {recall}"
        )
        info["approximation"] = line
        log.warning(line)
    del x
    t_search = time.perf_counter()

    neighbours = _graph_neighbours(graph, score)
    order, greedy_info = _greedy(conf, lab, n_classes, n_select, eta32, bool(balance), neighbours)
    info.update(greedy_info)
    info["seconds_search"] = round(t_search - start, 3)
    info["seconds_greedy"] = round(time.perf_counter() - t_search, 3)
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
    metric : {"cossim", "euclidean"}, default="cossim"
        Similarity: ``0.5 + 0.5 cos`` above ``tau`` (every reference script), or the
        reference's ``1 / (dist + 0.1) - 0.1`` clamped to [0, 10] (its CLI default;
        ``tau`` unused).
    neighbors : int, optional
        None: exact whenever the neighbourhood graph fits ``exact_memory_gb``, else
        scalable (said on one WARNING line); K: scalable with at most K neighbours.
    index : {"auto", "range", "flat", "ivf"}, default="auto"
        Search of the scalable mode.
    exact_memory_gb : float, optional
        Memory budget (GiB) of the exact neighbourhood graph; default a quarter of RAM.
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
        tau: Annotated[float, Interval(0, 1)] = 0.95,
        eta: Annotated[float, Interval(0, lo_open=True)] = 100.0,
        metric: Metric = "cossim",
        neighbors: Annotated[int, Interval(1)] | None = None,
        index: Index = "auto",
        exact_memory_gb: Annotated[float, Interval(0, lo_open=True)] | None = None,
        n_threads: Annotated[int, Interval(1)] | None = None,
        device: str = "cpu",
    ) -> None:
        # the declaration checks each option on its own; this pair, before any warm-up
        if neighbors is not None and metric != "cossim":
            raise DeepCoreError("--neighbors (the scalable mode) needs --metric cossim")
        self.balance = balance
        self.uncertainty = uncertainty
        self.tau = tau
        self.eta = eta
        self.metric = metric
        self.neighbors = neighbors
        self.index = index
        self.exact_memory_gb = exact_memory_gb
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
            metric=self.metric,
            neighbors=self.neighbors,
            index=self.index,
            exact_memory_gb=self.exact_memory_gb,
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


class _Scorer:
    """The neighbours of ``p`` among candidates ``cand`` and their exact ``s`` (float64,
    rounded once to float32): cossim ``s > tau``, euclidean ``s > 0``."""

    def __init__(self, x32: np.ndarray, metric: str, tau32: np.float32) -> None:
        self.x32, self.metric, self.tau32 = x32, metric, tau32
        sq = np.empty(x32.shape[0], dtype=np.float64)
        for s in range(0, x32.shape[0], 1 << 10):  # float64 temporaries in cache
            xc = x32[s : s + (1 << 10)].astype(np.float64)
            sq[s : s + (1 << 10)] = np.einsum("ij,ij->i", xc, xc)
        self.sq = sq
        self.norms = np.sqrt(sq)

    def similarity(self, p: int, cand: np.ndarray) -> np.ndarray:
        """Exact ``s(cand, p)``; symmetric, so a caller may reuse ``s(j, p)`` for ``s(p, j)``."""
        xp = self.x32[p].astype(np.float64)
        if cand.size <= 256:
            dots = np.dot(self.x32[cand], xp)
        else:  # float64 temporaries that stay in cache
            dots = np.concatenate(
                [np.dot(self.x32[cand[s : s + 256]], xp) for s in range(0, cand.size, 256)]
            )
        if self.metric == "cossim":
            return (0.5 + 0.5 * (dots / (self.norms[cand] * self.norms[p]))).astype(np.float32)
        dist = np.sqrt(np.maximum((self.sq[cand] + self.sq[p]) - 2.0 * dots, 1e-12))
        return np.clip((1.0 / (dist + 0.1) - 0.1).astype(np.float32), 0.0, 10.0)

    def member(self, s: np.ndarray) -> np.ndarray:
        return s > self.tau32 if self.metric == "cossim" else s > 0

    def __call__(self, p: int, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.similarity(p, cand)
        keep = self.member(s)
        return cand[keep], s[keep]


def _scalable_graph(
    xn: np.ndarray,
    score: _Scorer,
    tau: float,
    k: int | None,
    index: str,
    precision: str,
    max_pairs: int,
    nprobe: int,
    recall_sample: int,
    seed: int,
    device: str | torch.device,
    *,
    range_fits: bool,
) -> tuple[Neighborhoods, dict[str, Any]]:
    """K-capped neighbourhoods and the truth about them.

    The exact threshold neighbourhoods of a seeded sample of queries (one exact range
    search of those rows against all, re-scored exactly) size the automatic K and give
    the recall of the capped search: the share of their true neighbour pairs (self
    excluded) that the capped, re-scored neighbourhoods hold. ``range_fits``: False when
    the threshold graph is known not to fit the memory budget.
    """
    n, d = xn.shape
    cos_t = 2.0 * tau - 1.0
    rng = np.random.default_rng([int(seed), 2])
    sample = np.sort(rng.choice(n, size=min(recall_sample, n), replace=False))
    err = similarity_error(d, precision)
    # a candidate whose searched cosine is this far above the threshold is a neighbour
    # whatever its exact value (s = f32(0.5 + 0.5 cos) > f32(tau) with two ulps to spare)
    sure = 2.0 * float(score.tau32) - 1.0 + 2.0**-22 + err
    truth = []
    for c0 in range(0, sample.size, 100):  # memory: 100 full neighbourhoods at a time
        part = range_search(
            xn, cos_t - err, queries=xn[sample[c0 : c0 + 100]], normalized=True,
            precision=precision, device=device,
        )  # fmt: skip
        for r, q in enumerate(sample[c0 : c0 + 100].tolist()):
            cand, cos = part.row(r)
            near = cos < sure
            rescored = score(q, cand[near])[0]
            truth.append(np.union1d(cand[~near].astype(np.int64), rescored))
    true_sizes = np.array([t.size for t in truth], dtype=np.int64)
    k_memory = max(1, max_pairs // max(n, 1))
    if k is None and sample.size == 0:
        k, rule = k_memory, "memory budget; no sampled sizes"
    elif k is None:
        k_sample = int(true_sizes.max())
        k = min(k_sample, k_memory)
        rule = "largest sampled neighbourhood" if k == k_sample else "memory budget"
        rule += f"; sampled sizes: median {np.median(true_sizes):.0f}, max {k_sample:,}"
    else:
        rule = "given"
    kind = index
    if index == "auto":
        kind = "range" if range_fits and n <= RANGE_MAX_SAMPLES else "ivf"
    graph = None
    if kind == "range":
        try:
            full = range_search(
                xn, cos_t - similarity_error(d, precision), normalized=True,
                precision=precision, max_pairs=max_pairs, device=device,
            )  # fmt: skip
            graph = _cap_rows(full, k)
        except NeighborhoodTooLarge:
            if index == "range":
                raise DeepCoreError(
                    f"index='range': the threshold graph holds more than {max_pairs:,} pairs, "
                    "over exact_memory_gb; use index='ivf' or raise exact_memory_gb"
                ) from None
            kind = "ivf"
    if graph is None:
        graph = knn_search(
            xn, k, threshold=cos_t - err, index=kind, nprobe=nprobe,
            recall_sample=0, seed=seed, normalized=True, precision=precision, device=device,
        )  # fmt: skip
    found = total = 0
    for q, true in zip(sample.tolist(), truth, strict=True):
        true = true[true != q]
        kept = score(q, graph.row(q)[0])[0]
        total += true.size
        found += int(np.isin(true, kept).sum())
    info = {
        "neighbors": int(k),
        "k_rule": rule,
        "index": kind,
        "recall": None if sample.size == 0 else (1.0 if total == 0 else round(found / total, 4)),
        "recall_sample": int(sample.size),
        "capped_share_sampled": round(float((true_sizes > k).mean()), 4) if sample.size else 0.0,
    }
    return graph, info


def _cap_rows(graph: Neighborhoods, k: int) -> Neighborhoods:
    """Each row's ``k`` most similar entries (by the search's similarity; ties by index),
    in decreasing similarity."""
    sizes = graph.sizes()
    n = sizes.size
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.minimum(sizes, k), out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=graph.indices.dtype)
    sims = np.empty(int(indptr[-1]), dtype=np.float32)
    step = max(1, (1 << 22) // max(int(sizes.mean()) if n else 1, 1))  # ~4M pairs a chunk
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        a, b = graph.indptr[r0], graph.indptr[r1]
        row = np.repeat(np.arange(r0, r1), sizes[r0:r1])
        order = np.lexsort((graph.indices[a:b], -graph.sims[a:b], row))
        rank = np.arange(b - a) - (graph.indptr[row[order]] - a)
        keep = a + order[rank < k]
        indices[indptr[r0] : indptr[r1]] = graph.indices[keep]
        sims[indptr[r0] : indptr[r1]] = graph.sims[keep]
    info = dict(graph.info, capped_at=int(k), rows_capped=int((sizes > k).sum()))
    return Neighborhoods(indptr=indptr, indices=indices, sims=sims, info=info)


def _estimate_pairs(xn: np.ndarray, t: float, precision: str, device: str | torch.device) -> float:
    """N x mean number of rows with computed cos > t, from 500 evenly spaced rows."""
    n = xn.shape[0]
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 500)).round().astype(np.int64))
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    with torch.no_grad():
        q = torch.from_numpy(xn[rows]).to(device, dtype)
        count = 0
        for s in range(0, n, 1 << 15):
            block = torch.from_numpy(xn[s : s + (1 << 15)]).to(device, dtype)
            count += int((q @ block.T > t).sum())
    return n * count / rows.size


def _gain(r: np.ndarray, c: np.ndarray, eta: np.float32) -> np.ndarray:
    """``tanh((r + c) / eta) - tanh(r / eta)`` in float32 (tanh rounded from float64)."""
    hi = np.tanh(((r + c) / eta).astype(np.float64)).astype(np.float32)
    lo = np.tanh((r / eta).astype(np.float64)).astype(np.float32)
    return hi - lo


Neighbours = Callable[[int], tuple[np.ndarray, np.ndarray]]


def _graph_neighbours(graph: Neighborhoods | None, score: _Scorer) -> Neighbours:
    """The neighbours of ``p`` and their exact ``s``: its graph row, re-scored.

    On a symmetric graph with pair ids (the exact mode) each pair is scored once: when
    ``j`` was picked before ``p``, ``s(j, p)`` is reused (39% of the re-scoring at
    fraction 0.8 in the benchmark, where the re-scoring is most of the greedy's time).
    """
    if graph is None:
        return lambda p: (np.empty(0, np.int64), np.empty(0, np.float32))
    indptr, indices, pairs = graph.indptr, graph.indices, graph.pairs
    if pairs is None:
        return lambda p: score(p, indices[indptr[p] : indptr[p + 1]])
    known = np.full(int(pairs.max()) + 1 if pairs.size else 0, np.nan, dtype=np.float32)

    def neighbours(p: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = indptr[p], indptr[p + 1]
        cand, ids = indices[a:b], pairs[a:b]
        s = known[ids]
        new = np.isnan(s)
        if new.any():
            s[new] = known[ids[new]] = score.similarity(p, cand[new])
        keep = score.member(s)
        return cand[keep], s[keep]

    return neighbours


class _BlockMax:
    """Argmax with ties to the lowest position, over segments of an array, under updates.

    Values are kept in blocks of ``BLOCK`` positions with each block's maximum; a segment
    (a class, or everything) is a run of whole blocks (padded with -inf). The argmax of
    a segment is the first block holding the segment's maximum, then the first position
    in it holding that value: O(blocks + BLOCK) per query instead of O(segment), and an
    update only rescans the blocks whose maximum it may have lowered.
    """

    BLOCK = 128

    def __init__(self, groups: list[np.ndarray], values: np.ndarray) -> None:
        """``groups``: index arrays (each sorted) of the segments; ``values``: by index."""
        b = self.BLOCK
        nblocks = [-(-g.size // b) for g in groups]
        self.block_off = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum(nblocks, out=self.block_off[1:])
        size = int(self.block_off[-1]) * b
        self.index = np.full(size, -1, dtype=np.int64)  # position -> sample (-1: padding)
        self.pos = np.empty(values.size, dtype=np.int64)  # sample -> position
        for g, b0 in zip(groups, self.block_off[:-1].tolist(), strict=True):
            self.index[b0 * b : b0 * b + g.size] = g
            self.pos[g] = np.arange(b0 * b, b0 * b + g.size)
        self.values = np.full(size, -np.inf, dtype=np.float32)
        self.values[self.pos] = values
        self.blocks = self.values.reshape(-1, b)
        self.bmax = self.blocks.max(axis=1) if size else np.empty(0, np.float32)

    def argmax(self, segment: int) -> int:
        """The sample with the largest value in ``segment`` (ties: lowest position)."""
        b0 = int(self.block_off[segment])
        blk = b0 + int(np.argmax(self.bmax[b0 : int(self.block_off[segment + 1])]))
        return int(self.index[blk * self.BLOCK + int(np.argmax(self.blocks[blk]))])

    def remove(self, sample: int) -> None:
        """Set one sample's value to -inf."""
        pos = int(self.pos[sample])
        blk = pos // self.BLOCK
        old = self.values[pos]
        self.values[pos] = -np.inf
        if old == self.bmax[blk]:
            self.bmax[blk] = self.blocks[blk].max()

    def update(self, samples: np.ndarray, new: np.ndarray) -> None:
        pos = self.pos[samples]
        old = self.values[pos]
        self.values[pos] = new
        blk = pos // self.BLOCK
        top = self.bmax[blk]
        lowered = blk[(old == top) & (new < old)]  # repeats are harmless
        if lowered.size:
            self.bmax[lowered] = self.blocks[lowered].max(axis=1)
        raised = new > top
        if raised.any():
            np.maximum.at(self.bmax, blk[raised], new[raised])

    def by_sample(self) -> np.ndarray:
        return self.values[self.pos]


def _greedy(
    conf: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    n_select: int,
    eta: np.float32,
    balance: bool,
    neighbours: Neighbours,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The argmax of the gain (ties lowest index) at every step, as the reference scans.

    The gains live in a :class:`_BlockMax` (one segment per class while balanced, one
    for all samples otherwise); a picked sample's value becomes -inf, and only the
    neighbours of the pick change value at each step.
    """
    n = conf.size
    r = np.zeros(n, dtype=np.float32)
    selected = np.zeros(n, dtype=bool)
    order = np.empty(n_select, dtype=np.int64)
    gain = _gain(r, conf, eta)
    if balance:
        members = [np.flatnonzero(labels == c) for c in range(num_classes)]
        table = _BlockMax(members, gain)
        left = [int(m.size) for m in members]
        init = list(left)
        available = list(range(num_classes))
    else:
        table = _BlockMax([np.arange(n)], gain)
    broken = not balance
    break_step = None
    min_balance = 0

    for step in range(n_select):
        if broken:
            p = table.argmax(0)
        else:
            target = available[step % len(available)]
            while left[target] == 0:
                if len(available) == num_classes:
                    min_balance = init[target]
                available.remove(target)
                target = available[step % len(available)]
                if init[target] - left[target] > 1.5 * min_balance:
                    break_step = step
            p = table.argmax(target)
            left[target] -= 1
        selected[p] = True
        order[step] = p
        table.remove(p)
        if break_step is not None and not broken:
            broken = True  # from the next step on: global argmax over all that is left
            table = _BlockMax([np.arange(n)], table.by_sample())
        if step == n_select - 1:
            break
        idx, s = neighbours(p)
        if idx.size == 0:
            continue
        r_idx = r[idx] + s * conf[p]
        r[idx] = r_idx
        g = _gain(r_idx, conf[idx], eta)
        g[selected[idx]] = -np.inf
        table.update(idx, g)
    return order, {"balance_break_step": break_step}
