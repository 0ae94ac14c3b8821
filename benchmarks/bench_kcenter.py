"""kCenterGreedy and Glister: the library greedy against a plain one, side by side.

kCenterGreedy: the plain greedy is the reference's loop with O(N) state (one distance
from each new centre to every sample per pick, a float32 matrix-vector product); the
library's exact greedy batches centres into matrix products, visits the farthest
candidates lazily and skips samples by the triangle inequality. Both run in this process
on the same data; the picks are compared (identical = the same subset and order) and the
covering radius reported. ``--n-large`` runs the library greedy alone at a size where the
plain one would take too long (its time is extrapolated from the measured per-pick cost).

Glister: the Taylor-updated greedy at N = 50,000 against the static gains (the
reference's effective behaviour), with the validation loss before and after the step.

Features are synthetic "embedding-like" vectors (``--data classes``): C classes, each a
ReLU of a class mean plus a rank-16 within-class Gaussian and small isotropic noise; or
``--data iso``: isotropic Gaussian (the worst case for any pruning).

Usage::

    nice python benchmarks/bench_kcenter.py --n 100000 --d 512 --fraction 0.01
    nice python benchmarks/bench_kcenter.py --n 100000 --n-large 1000000 --large-fraction 0.002
    nice python benchmarks/bench_kcenter.py --glister-n 50000 --skip-kcenter
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from deep_core.methods.glister import glister_select
from deep_core.methods.kcenter_greedy import kcenter_greedy, sq_dists, squared_norms


def embedding_like(n: int, d: int, *, classes: int = 100, rank: int = 16, seed: int = 0):
    """ReLU(class mean + rank-``rank`` class Gaussian + noise), float32, with labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    means = rng.standard_normal((classes, d)).astype(np.float32)
    basis = (rng.standard_normal((classes, rank, d)) / np.sqrt(rank)).astype(np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for c in range(classes):
        idx = np.flatnonzero(labels == c)
        z = rng.standard_normal((idx.size, rank)).astype(np.float32)
        block = means[c] + z @ basis[c]
        block += 0.1 * rng.standard_normal(block.shape).astype(np.float32)
        x[idx] = np.maximum(block, 0.0)
    return x, labels


def isotropic(n: int, d: int, *, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 65536):
        x[lo : lo + 65536] = rng.standard_normal((min(65536, n - lo), d))
    return x, np.zeros(n, dtype=np.int64)


def plain_greedy(x: np.ndarray, budget: int, first: int) -> tuple[np.ndarray, float]:
    """The reference loop with O(N) state: one distance to every sample per pick."""
    sqn = squared_norms(x)
    everything = slice(None)
    mins = sq_dists(x, sqn, everything, np.array([first]))[:, 0]
    mins[first] = -1.0
    order = [first]
    for _ in range(1, budget):
        p = int(np.argmax(mins))
        order.append(p)
        np.minimum(mins, sq_dists(x, sqn, everything, np.array([p]))[:, 0], out=mins)
        mins[np.array(order)] = -1.0
    return np.array(order), float(np.sqrt(mins.max()))


def make(kind: str, n: int, d: int, seed: int):
    return embedding_like(n, d, seed=seed) if kind == "classes" else isotropic(n, d, seed=seed)


def bench_kcenter(args) -> None:
    x, _ = make(args.data, args.n, args.d, args.seed)
    k = int(round(args.fraction * args.n))
    first = int(np.random.RandomState(0).randint(0, args.n))
    t0 = time.perf_counter()
    res = kcenter_greedy(x, k, first=first)
    t_fast = time.perf_counter() - t0
    plain_k = min(k, args.plain_picks) if args.plain_picks else k
    t0 = time.perf_counter()
    order, radius = plain_greedy(x, plain_k, first)
    t_plain = time.perf_counter() - t0
    per_pick = t_plain / plain_k
    same = np.array_equal(order, res.order[:plain_k])
    print(
        f"kcenter data={args.data} N={args.n:,} d={args.d} k={k:,}: library {t_fast:.1f} s "
        f"(distances {res.distances / (args.n * k):.3f} of plain, radius {res.radius:.4f}); "
        f"plain {plain_k:,} picks {t_plain:.1f} s = {per_pick * 1e3:.1f} ms/pick "
        f"-> {per_pick * k:.1f} s for k (ratio {per_pick * k / t_fast:.1f}x); "
        f"identical picks: {same}"
        + (f"; plain radius {radius:.4f}" if plain_k == k else "")
    )
    if args.n_large:
        del x
        x, _ = make(args.data, args.n_large, args.d, args.seed)
        k = int(round(args.large_fraction * args.n_large))
        first = int(np.random.RandomState(0).randint(0, args.n_large))
        t0 = time.perf_counter()
        res = kcenter_greedy(x, k, first=first)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain_greedy(x, args.large_plain_picks, first)
        per_pick = (time.perf_counter() - t0) / args.large_plain_picks
        print(
            f"kcenter data={args.data} N={args.n_large:,} d={args.d} k={k:,}: library "
            f"{t_fast:.1f} s (distances {res.distances / (args.n_large * k):.3f} of plain, "
            f"radius {res.radius:.4f}); plain {per_pick * 1e3:.0f} ms/pick measured over "
            f"{args.large_plain_picks} picks -> {per_pick * k:.0f} s for k "
            f"(ratio {per_pick * k / t_fast:.1f}x); library per pick {t_fast / k * 1e3:.0f} ms"
        )


def bench_glister(args) -> None:
    x, labels = embedding_like(args.glister_n, args.d, classes=10, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    # a linear softmax head on the features, with 30% of the labels flipped
    w = rng.standard_normal((10, args.d)).astype(np.float32) / np.sqrt(args.d)
    logits = (x - x.mean(0)) @ w.T * 3.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    noisy = np.where(rng.random(labels.size) < 0.3, rng.integers(0, 10, labels.size), labels)
    k = int(round(args.glister_fraction * args.glister_n))
    for taylor in (True, False):
        t0 = time.perf_counter()
        idx, _, info = glister_select(
            probs.astype(np.float32),
            x,
            noisy,
            k,
            eta=args.glister_eta,
            taylor_update=taylor,
            balance=False,
            num_classes=10,
        )
        dt = time.perf_counter() - t0
        print(
            f"glister N={args.glister_n:,} d={args.d} C=10 k={k:,} taylor_update={taylor}: "
            f"{dt:.1f} s ({dt / k * 1e3:.2f} ms/pick); val loss {info['val_loss_before']:.4f}"
            f" -> {info['val_loss_after']:.4f} after one step on the subset"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["classes", "iso"], default="classes")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain-picks", type=int, default=0, help="time only this many plain picks")
    p.add_argument("--n-large", type=int, default=0, help="also run the library greedy here")
    p.add_argument("--large-fraction", type=float, default=0.01)
    p.add_argument("--large-plain-picks", type=int, default=20)
    p.add_argument("--skip-kcenter", action="store_true")
    p.add_argument("--glister-n", type=int, default=0)
    p.add_argument("--glister-fraction", type=float, default=0.01)
    p.add_argument("--glister-eta", type=float, default=0.02)
    args = p.parse_args()
    if not args.skip_kcenter:
        bench_kcenter(args)
    if args.glister_n:
        bench_glister(args)


if __name__ == "__main__":
    main()
