"""Prune4ReL: the library's exact and scalable modes against their yardsticks.

Run each part in its own process (peak RSS belongs to one part)::

    python benchmarks/bench_prune4rel.py exact      # N=50,000 d=512 C=10, fractions 0.2 0.8
    python benchmarks/bench_prune4rel.py exact --reference   # + the reference loop
    python benchmarks/bench_prune4rel.py scalable   # N=1,000,000 (--n 200000) d=512 C=14

``exact``: in one process, (1) the bfloat16 matrix product of the full N x N x d
similarity, blocked 2048 x 16384 (the work of one plain self-join, both halves: the
yardstick of the issue's "at most 0.4x that GEMM"), then (2) :func:`prune4rel_greedy`
in exact mode, end to end (neighbourhood search included), once per fraction; tau=0.975,
eta=1, LeastConfidence, balanced (the CIFAR-10 script settings). ``--reference`` also
runs the reference loop (every step scans all N samples: O(f N^2 d)) once to the
largest budget, reading its clock at each smaller one, and checks the subsets are
identical.

``scalable``: :func:`prune4rel_greedy` with ``neighbors=None`` at tau=0.8 (the
Clothing-1M script settings; every neighbourhood is most of a class), which cannot be
exact within the memory budget and says so: wall seconds, peak RSS, the automatic K,
and the recall against the exact threshold neighbourhoods of 1,000 sampled queries.

Synthetic features (:func:`make_features`) imitate trained penultimate ResNet features:
non-negative (ReLU), one prototype per class with 20 sub-modes (fine-grained variation
inside a class), an 8-dimensional within-mode manifold and isotropic noise. On the
exact-part settings the mean cosine within a class is about 0.79, between classes
about 0.48, a quarter of the coordinates are 0, and a sample has on average ~150
neighbours with cos > 0.95 (tau = 0.975) among 50,000. Probabilities are a softmax of
12 x the cosine to each class prototype plus Gaussian noise (most max-probabilities
0.8-1.0); labels carry 20% symmetric noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import torch

from deep_core.budget import budget_size
from deep_core.methods.prune4rel import prune4rel_confidence, prune4rel_greedy
from deep_core.neighbors.search import similarity_error


def make_features(
    n: int,
    d: int,
    n_classes: int,
    *,
    seed: int = 0,
    modes: int = 20,
    rank: int = 8,
    base: float = 0.2,
    mode_spread: float = 0.5,
    spread: float = 0.2,
    noise: float = 0.15,
    label_noise: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-clustered non-negative features, softmax probabilities and noisy labels."""
    rng = np.random.default_rng(seed)
    shared = np.abs(rng.standard_normal(d)) * base
    proto = np.maximum(rng.standard_normal((n_classes, d)), 0)
    centers = proto[:, None, :] + mode_spread * rng.standard_normal((n_classes, modes, d))
    basis = rng.standard_normal((n_classes, modes, rank, d)) * spread / np.sqrt(rank)
    y = rng.integers(0, n_classes, n)
    m = rng.integers(0, modes, n)
    x = np.empty((n, d), dtype=np.float32)
    proto_n = proto / np.linalg.norm(proto, axis=1, keepdims=True)
    probs = np.empty((n, n_classes), dtype=np.float32)
    chunk = 1 << 15
    for s in range(0, n, chunk):
        yc, mc = y[s : s + chunk], m[s : s + chunk]
        z = rng.standard_normal((yc.size, rank))
        xc = shared + centers[yc, mc] + noise * rng.standard_normal((yc.size, d))
        xc += np.einsum("nr,nrd->nd", z, basis[yc, mc])
        xc = np.maximum(xc, 0)
        x[s : s + chunk] = xc
        cos = (xc / np.linalg.norm(xc, axis=1, keepdims=True)) @ proto_n.T
        logits = 12.0 * cos + rng.standard_normal(cos.shape)
        probs[s : s + chunk] = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    flip = rng.random(n) < label_noise
    labels = np.where(flip, rng.integers(0, n_classes, n), y).astype(np.int64)
    return x, probs, labels


def _tanh32(v: np.ndarray) -> np.ndarray:
    return np.tanh(v.astype(np.float64)).astype(np.float32)


def reference_loop(
    x32: np.ndarray,
    conf: np.ndarray,
    labels: np.ndarray,
    budgets: list[int],
    *,
    tau: float,
    eta: float,
    n_class: int,
) -> tuple[np.ndarray, dict[int, float]]:
    """The reference ``k_neighbor_confidence_greedy`` loop (balanced), step by step.

    Every step does what the reference does over all N samples: the gain of every
    sample, the round-robin argmax, the similarity of every sample to the pick (one
    float32 matrix-vector product), and the update of every R. Norms are computed once
    (the reference recomputes all N norms each step, which is slower still). To pick the
    same samples as the library's fixed arithmetic, the similarities that pass the
    threshold (with the library's margin) are re-scored in float64 and rounded to
    float32; that touches only the neighbours of the pick.

    Returns the picks in order and the seconds elapsed when each budget was reached.
    """
    n = x32.shape[0]
    xt = torch.from_numpy(x32)
    norms32 = torch.linalg.vector_norm(xt, dim=1)
    norms64 = np.sqrt(np.einsum("ij,ij->i", x32.astype(np.float64), x32.astype(np.float64)))
    tau32, eta32 = np.float32(tau), np.float32(eta)
    cos_t = 2.0 * tau - 1.0 - 2 * similarity_error(x32.shape[1])  # raw rows: twice the margin
    available = list(range(n_class))
    left = [int((labels == c).sum()) for c in available]
    init = list(left)
    class_idx = [np.flatnonzero(labels == c) for c in available]
    selected = np.zeros(n, dtype=bool)
    r = np.zeros(n, dtype=np.float32)
    order = np.empty(max(budgets), dtype=np.int64)
    balance_break, min_balance = False, 0
    times: dict[int, float] = {}
    start = time.perf_counter()
    for i in range(max(budgets)):
        scores = _tanh32((r + conf) / eta32) - _tanh32(r / eta32)
        scores[selected] = -1
        if balance_break:
            p = int(np.argmax(scores))
        else:
            target = available[i % len(available)]
            while left[target] == 0:
                if len(available) == n_class:
                    min_balance = init[target]
                available = [c for c in available if c != target]
                target = available[i % len(available)]
                if init[target] - left[target] > 1.5 * min_balance:
                    balance_break = True
            idx = class_idx[target]
            p = int(idx[np.argmax(scores[idx])])
            left[target] -= 1
        selected[p] = True
        order[i] = p
        if i + 1 in budgets:
            times[i + 1] = time.perf_counter() - start
        cos = ((xt @ xt[p]) / (norms32 * norms32[p])).numpy()
        cand = np.flatnonzero(cos > cos_t)
        dots = x32[cand].astype(np.float64) @ x32[p].astype(np.float64)
        s = (0.5 + 0.5 * dots / (norms64[cand] * norms64[p])).astype(np.float32)
        sim_to_selected = np.zeros(n, dtype=np.float32)
        sim_to_selected[cand] = s * (s > tau32)
        r += sim_to_selected * conf[p]
    return order, times


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{mem:.0f} GiB, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


#: generator settings; "dense" has ~6x larger neighbourhoods (5 sub-modes per class, tighter)
PRESETS = {"default": {}, "dense": {"modes": 5, "spread": 0.15, "noise": 0.12}}


def full_gemm_seconds(x32: np.ndarray, block_rows: int = 2048, block_cols: int = 16384) -> float:
    """Seconds of the blocked bfloat16 product of all N x N similarities (discarded)."""
    xb = torch.from_numpy(x32).to(torch.bfloat16)
    n = xb.shape[0]
    start = time.perf_counter()
    with torch.no_grad():
        for r0 in range(0, n, block_rows):
            rows = xb[r0 : r0 + block_rows]
            for c0 in range(0, n, block_cols):
                rows @ xb[c0 : c0 + block_cols].T
    return time.perf_counter() - start


def run_exact(args: argparse.Namespace) -> dict:
    x, probs, labels = make_features(
        args.n, args.d, args.classes, seed=args.seed, **PRESETS[args.preset]
    )
    conf = prune4rel_confidence(probs, "LeastConfidence")
    budgets = [budget_size(args.n, f) for f in args.fractions]
    print(f"machine: {machine()}")
    print(f"data: N={args.n:,} d={args.d} C={args.classes} preset={args.preset} "
          f"tau={args.tau} eta={args.eta}")  # fmt: skip
    gemm = full_gemm_seconds(x)
    print(f"bfloat16 GEMM of the full {args.n:,} x {args.n:,} x {args.d} similarity: {gemm:.2f} s")
    ref_order = ref_times = None
    if args.reference:
        ref_order, ref_times = reference_loop(
            x, conf, labels, budgets, tau=args.tau, eta=args.eta, n_class=args.classes
        )
    rows = []
    for f, b in zip(args.fractions, budgets, strict=True):
        start = time.perf_counter()
        res = prune4rel_greedy(
            x, conf, labels, b, tau=args.tau, eta=args.eta, balance=True, num_classes=args.classes
        )
        sec = time.perf_counter() - start
        search = res.info["search"]
        row = {
            "fraction": f,
            "n_select": b,
            "mode": res.info["mode"],
            "exact_s": round(sec, 2),
            "vs_full_gemm": round(sec / gemm, 3),
            "search_s": res.info["seconds_search"],
            "greedy_s": res.info["seconds_greedy"],
            "kmeans_s": search.get("seconds_kmeans"),
            "assign_s": search.get("seconds_assign"),
            "join_s": search.get("seconds_join"),
            "table_s": search.get("seconds_table"),
            "range_search_s": search.get("seconds"),
            "search_precision": search["precision"],
            "search_work_fraction": search.get("work_fraction"),
            "mean_candidates": res.info["candidates_mean"],
            "balance_break_step": res.info["balance_break_step"],
        }
        if ref_times is not None:
            row["reference_s"] = round(ref_times[b], 1)
            row["identical"] = bool(np.array_equal(res.order, ref_order[:b]))
        rows.append(row)
        print(json.dumps(row))
    return {"gemm_s": gemm, "rows": rows}


def run_scalable(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    x, probs, labels = make_features(
        args.n, args.d, args.classes, seed=args.seed, **PRESETS[args.preset]
    )
    conf = prune4rel_confidence(probs, "LeastConfidence")
    del probs
    t_data = time.perf_counter() - start
    n_select = budget_size(args.n, args.fractions[0])
    print(f"machine: {machine()}")
    print(f"data: N={args.n:,} d={args.d} C={args.classes} tau={args.tau} eta={args.eta} "
          f"fraction={args.fractions[0]} ({t_data:.0f} s to generate)")  # fmt: skip
    start = time.perf_counter()
    res = prune4rel_greedy(
        x, conf, labels, n_select, tau=args.tau, eta=args.eta, balance=True,
        num_classes=args.classes, seed=args.seed, neighbors=args.neighbors,
    )  # fmt: skip
    sec = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {
        "n_select": n_select,
        "wall_s": round(sec, 1),
        "peak_rss_gib": round(peak, 2),
        "info": res.info,
    }
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("part", choices=["exact", "scalable"])
    ap.add_argument("--n", type=int, default=None, help="samples (50,000 / 1,000,000)")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", type=int, default=None, help="classes (10 / 14)")
    ap.add_argument("--fractions", type=float, nargs="+", default=None)
    ap.add_argument("--tau", type=float, default=None, help="0.975 / 0.8")
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", action="store_true", help="exact: run the reference loop")
    ap.add_argument("--neighbors", type=int, default=None, help="scalable: K (default: auto)")
    args = ap.parse_args()
    exact = args.part == "exact"
    args.n = args.n or (50_000 if exact else 1_000_000)
    args.classes = args.classes or (10 if exact else 14)
    args.fractions = sorted(args.fractions or ([0.2, 0.8] if exact else [0.2]))
    args.tau = args.tau if args.tau is not None else (0.975 if exact else 0.8)
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    (run_exact if exact else run_scalable)(args)


if __name__ == "__main__":
    main()
