"""Prune4ReL: the reference greedy loop vs the library's exact and scalable modes.

Two parts (run each in its own process so peak RSS belongs to one part)::

    python benchmarks/bench_prune4rel.py exact     # N=50,000 d=512 C=10, fractions 0.2 0.8
    python benchmarks/bench_prune4rel.py scalable  # N=1,000,000 d=512 C=14, fraction 0.2

``exact``: side by side in one process, the reference loop (every step scans all N
samples: the gain of every sample, the argmax, and the similarity of every sample to
the pick -- O(f N^2 d)) and :func:`prune4rel_greedy` in exact mode, tau=0.975, eta=1,
LeastConfidence, balanced (the CIFAR-10 script settings). The reference loop runs once
to the largest budget and its clock is read when it reaches each smaller budget (the
loop does not depend on the budget before that point, so this is the time of a run
with that budget); each exact-mode run is separate and timed end to end (neighbourhood
search included). The subsets must be identical.

``scalable``: :func:`prune4rel_greedy` with ``neighbors=None`` on 1M samples, which
switches to the scalable mode by itself (K=100, IVF); tau=0.8, eta=1, LeastConfidence,
balanced (the Clothing-1M script settings). Reports wall seconds, peak RSS and the IVF
recall.

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
from deep_core.neighbors.search import range_search, similarity_error


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


def literal_step_ms(x32: np.ndarray, conf: np.ndarray, steps: int, tau: float, eta: float) -> float:
    """Milliseconds per step of the reference written literally in float32 torch
    (cossim recomputing every norm, torch tanh, unbalanced argmax); picks not checked."""
    embs = torch.from_numpy(x32)
    confs = torch.from_numpy(conf)
    nn = torch.zeros(embs.shape[0])
    select = torch.zeros(embs.shape[0], dtype=torch.bool)
    for step in range(steps + 5):  # the first 5 steps warm up and are not timed
        if step == 5:
            start = time.perf_counter()
        scores = torch.tanh((nn + confs) / eta) - torch.tanh(nn / eta)
        scores[select] = -1
        p = int(torch.argmax(scores))
        select[p] = True
        num = embs @ embs[[p]].T
        denom = torch.norm(embs, dim=1).view(-1, 1) * torch.norm(embs[[p]], dim=1)
        sim = 0.5 + 0.5 * (num / denom)
        nn += (sim * (sim > tau)).reshape(-1) * confs[p]
    return 1000 * (time.perf_counter() - start) / steps


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{mem:.0f} GiB, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


#: generator settings; "dense" has ~6x larger neighbourhoods (5 sub-modes per class, tighter)
PRESETS = {"default": {}, "dense": {"modes": 5, "spread": 0.15, "noise": 0.12}}


def run_exact(args: argparse.Namespace) -> dict:
    x, probs, labels = make_features(
        args.n, args.d, args.classes, seed=args.seed, **PRESETS[args.preset]
    )
    conf = prune4rel_confidence(probs, "LeastConfidence")
    budgets = [budget_size(args.n, f) for f in args.fractions]
    print(f"machine: {machine()}")
    print(f"data: N={args.n:,} d={args.d} C={args.classes} preset={args.preset} "
          f"tau={args.tau} eta={args.eta}")  # fmt: skip
    sizes = range_search(x, 2 * args.tau - 1, precision="float32").sizes()
    print(f"neighbourhood sizes at tau={args.tau} (cos > {2 * args.tau - 1:.3f}, self included): "
          f"mean {sizes.mean():.1f}, median {np.median(sizes):.0f}, "
          f"max {sizes.max()}")  # fmt: skip
    print(f"literal reference step (float32 torch, norms every step): "
          f"{literal_step_ms(x, conf, 100, args.tau, args.eta):.2f} ms")  # fmt: skip
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
        same = bool(np.array_equal(res.order, ref_order[:b]))
        row = {
            "fraction": f,
            "n_select": b,
            "reference_s": round(ref_times[b], 1),
            "exact_s": round(sec, 1),
            "ratio": round(ref_times[b] / sec, 1),
            "identical": same,
            "search_s": res.info["seconds_search"],
            "greedy_s": res.info["seconds_greedy"],
            "search_precision": res.info["search"]["precision"],
            "search_work_fraction": res.info["search"].get("work_fraction"),
            "mean_candidates": res.info["candidates_mean"],
            "max_candidates": res.info["candidates_max"],
            "balance_break_step": res.info["balance_break_step"],
        }
        rows.append(row)
        print(json.dumps(row))
    return {"rows": rows}


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
        num_classes=args.classes, seed=args.seed,
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
    ap.add_argument("--threads", type=int, default=2)
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
