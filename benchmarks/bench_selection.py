"""Selection benchmarks.

``sweep``: every label-noise method at three fractions on real CIFAR-10N (worst
labels), side by side in one run: this project's way (one warm-up whose signals every
selection reuses) against the DeepCore way (a fresh warm-up for every method, as
DeepCore's ``select()`` trains its own model each time; per method rather than per
call is the generous version of it). Prints total seconds and the ratio, plus the
subset noise rate of each selection.

``ccs``: one warm-up as ``sweep``, then the subset noise rate of CCS as its authors
compute it (default), with ``ccs_beta=0``, and as before (logit-mean AUM, beta 0),
against Uniform.

``scale``: select time and peak memory of every registered method at N = 1,000,000
synthetic signals (d = 512, C = 100, 10 epochs), each method in its own process with
the signals memory-mapped from disk; "allocated by select" is the peak anonymous memory
above the process's before ``select()`` (mapped signal pages it reads are page cache,
counted only in the peak RSS).

Usage::

    python ../shared/tools/make_cifar10.py /tmp/cifar
    python benchmarks/bench_selection.py sweep --data /tmp/cifar --n-train 10000 --epochs 2
    python benchmarks/bench_selection.py ccs --data /tmp/cifar --n-train 10000 --epochs 2
    python benchmarks/bench_selection.py scale --n 1000000 --dim 512 --classes 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

NOISY_LABEL_METHODS = [
    "Uniform",
    "SmallLoss",
    "Uncertainty",
    "Forgetting",
    "GraNd",
    "EL2N",
    "PredSum",
    "Moderate",
    "CCS",
    "Prune4Rel",
]
FRACTIONS = (0.2, 0.5, 0.8)


def _cifar_warmup_setup(args: argparse.Namespace):
    """CIFAR-10N worst labels, the first ``--n-train`` images: data, configs, noise mask."""
    import torch

    from deep_core.config import RunConfig
    from deep_core.runner import build_learner, load_data
    from deep_core.signals.recorder import WarmupConfig

    torch.set_num_threads(args.threads)
    cfg = RunConfig(
        dataset="CIFAR10",
        data_path=args.data,
        noise_type="realW",
        n_train=args.n_train,
        model=args.model,
        selection_epochs=args.epochs,
        batch_size=128,
        lr=0.05,
        device="cpu",
        progress=False,
    )
    ds = load_data(cfg, 0)
    wcfg = WarmupConfig(
        data_key=cfg.data.__dict__,
        learner="CE",
        model=args.model,
        epochs=args.epochs,
        train=replace(cfg.train, epochs=args.epochs),
        optim=cfg.optim,
    )
    noisy = ds.labels != ds.clean_labels
    print(
        f"# CIFAR-10N worst, first {len(ds.labels)} training images ({noisy.mean():.1%} noisy), "
        f"{args.model}, {args.epochs} warm-up epochs, {args.threads} threads"
    )
    return ds, wcfg, noisy, lambda: build_learner(cfg).warmup()


def sweep(args: argparse.Namespace) -> None:
    from deep_core.methods import build_method
    from deep_core.signals.recorder import warm_up_signals

    ds, wcfg, noisy, learner = _cifar_warmup_setup(args)

    def select_all(signals, method_name):
        rows = []
        for f in FRACTIONS:
            method, _ = build_method(method_name, {})
            sub = method.select(signals, f, seed=0)
            rows.append((method_name, f, float(noisy[sub.indices].mean())))
        return rows

    def needed(method_name):
        method, _ = build_method(method_name, {})
        return method.required_signals()

    # this project: one warm-up, every selection reuses it
    t0 = time.perf_counter()
    union = set().union(*(needed(m) for m in NOISY_LABEL_METHODS))
    signals, _ = warm_up_signals(ds, learner, wcfg, members=1, cache_dir=None, needed=union)
    rows = []
    for m in NOISY_LABEL_METHODS:
        rows += select_all(signals, m)
    ours = time.perf_counter() - t0

    # the DeepCore way: a warm-up inside every method
    t0 = time.perf_counter()
    for m in NOISY_LABEL_METHODS:
        sig, _ = warm_up_signals(
            ds,
            learner,
            wcfg,
            members=1,
            cache_dir=None,
            needed=needed(m),
        )
        select_all(sig, m)
    theirs = time.perf_counter() - t0
    print(f"one warm-up + {len(rows)} selections: {ours:8.1f} s")
    print(f"a warm-up per method (DeepCore):      {theirs:8.1f} s")
    print(f"ratio: {theirs / ours:.1f}x")
    print("\n| method | " + " | ".join(f"noise @ {f}" for f in FRACTIONS) + " |")
    print("|---|" + "---|" * len(FRACTIONS))
    for m in NOISY_LABEL_METHODS:
        cells = [f"{r[2]:.1%}" for r in rows if r[0] == m]
        print(f"| {m} | " + " | ".join(cells) + " |")


CCS_VARIANTS = {
    "CCS (authors: prob_sum AUM, their beta)": {},
    "CCS prob_sum AUM, beta 0": {"ccs_beta": 0.0},
    "CCS logit_mean AUM, beta 0 (before)": {"ccs_aum": "logit_mean", "ccs_beta": 0.0},
}


def ccs(args: argparse.Namespace) -> None:
    """Subset noise rate of the CCS variants and Uniform after one warm-up."""
    from deep_core.methods import build_method
    from deep_core.methods.ccs import authors_beta
    from deep_core.signals.recorder import warm_up_signals

    ds, wcfg, noisy, learner = _cifar_warmup_setup(args)
    signals, _ = warm_up_signals(
        ds, learner, wcfg, members=1, cache_dir=None, needed={"margins", "prob_margins"}
    )
    rows = {"Uniform (mean of 5 seeds)": []}
    for f in FRACTIONS:
        subs = [build_method("Uniform", {})[0].select(signals, f, seed=k) for k in range(5)]
        rows["Uniform (mean of 5 seeds)"].append(np.mean([noisy[s.indices].mean() for s in subs]))
    for name, options in CCS_VARIANTS.items():
        method, _ = build_method("CCS", options)
        rows[name] = [noisy[method.select(signals, f, seed=0).indices].mean() for f in FRACTIONS]
    print("\n| selection | " + " | ".join(f"noise @ {f}" for f in FRACTIONS) + " |")
    print("|---|" + "---|" * len(FRACTIONS))
    for name, rates in rows.items():
        print(f"| {name} | " + " | ".join(f"{r:.1%}" for r in rates) + " |")
    print("authors' beta at these fractions: " + ", ".join(
        f"{f}: {authors_beta(1 - f):.3f}" for f in FRACTIONS))  # fmt: skip


def make_synthetic(folder: Path, n: int, d: int, c: int, epochs: int, seed: int = 0) -> None:
    """Class-clustered features, probs that favour the true class, 30% symmetric noise
    (:func:`deep_core.testing.write_synthetic_signals`, the tests' generator, chunked)."""
    from deep_core.testing import write_synthetic_signals

    write_synthetic_signals(folder, n, c, dim=d, epochs=epochs, noise=0.3, seed=seed)


def _one(folder: str, method_name: str, fraction: float) -> None:
    """Child process: open the signals (memory-mapped), select, print JSON."""
    from deep_core.methods import build_method
    from deep_core.signals import Signals

    names = [
        "labels",
        "clean_labels",
        "probs",
        "features",
        "losses",
        "correct",
        "margins",
        "prob_margins",
        "grad_norms",
        "member_probs",
    ]
    arrays = {k: np.load(Path(folder) / f"{k}.npy", mmap_mode="r") for k in names}
    signals = Signals(arrays, check_finite=False)
    method, _ = build_method(method_name, {})
    # Memory the method allocates: the peak of anonymous RSS (sampled every 20 ms)
    # above what the process held before select(). Pages of the memory-mapped signals
    # that select() reads are file-backed page cache, counted in the total peak only.
    _reset_peak()
    base_anon = _status_kib("RssAnon")
    sampler = _AnonPeak()
    sampler.start()
    t = time.perf_counter()
    sub = method.select(signals, fraction, seed=0)
    dt = time.perf_counter() - t
    sampler.stop()
    peak = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                "method": method_name,
                "seconds": dt,
                "peak_mib": peak / 1024,
                "extra_mib": max(sampler.peak - base_anon, 0) / 1024,
                "kept": len(sub),
                "info": sub.info,
            },
            default=str,
        )
    )


def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` field in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


class _AnonPeak:
    """Samples ``RssAnon`` in a thread and keeps its maximum."""

    def __init__(self, every: float = 0.02) -> None:
        import threading

        self.every, self.peak = every, _status_kib("RssAnon")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, _status_kib("RssAnon"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))


def scale(args: argparse.Namespace) -> None:
    from deep_core.methods import list_methods

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t = time.perf_counter()
        make_synthetic(Path(tmp), args.n, args.dim, args.classes, args.epochs)
        print(
            f"# N={args.n:,} d={args.dim} C={args.classes} E={args.epochs}; synthetic signals "
            f"written in {time.perf_counter() - t:.0f} s; fraction {args.fraction}"
        )
        print("| method | select s | peak RSS MiB | allocated by select MiB |")
        print("|---|---|---|---|")
        for name in args.methods or list_methods():
            cmd = [sys.executable, __file__, "_one", tmp, name, str(args.fraction)]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"| {name} | > {args.timeout} (timeout) | | |", flush=True)
                continue
            if out.returncode != 0:
                msg = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "?"
                print(f"| {name} | failed: {msg} | | |", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {r['extra_mib']:.0f} |",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        _one(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--data", required=True)
    s.add_argument("--n-train", type=int, default=10000)
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--model", default="ResNet8")
    s.add_argument("--threads", type=int, default=2)
    w = sub.add_parser("ccs")
    w.add_argument("--data", required=True)
    w.add_argument("--n-train", type=int, default=10000)
    w.add_argument("--epochs", type=int, default=2)
    w.add_argument("--model", default="ResNet8")
    w.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("scale")
    c.add_argument("--n", type=int, default=1_000_000)
    c.add_argument("--dim", type=int, default=512)
    c.add_argument("--classes", type=int, default=100)
    c.add_argument("--epochs", type=int, default=10)
    c.add_argument("--fraction", type=float, default=0.2)
    c.add_argument("--timeout", type=int, default=1800)
    c.add_argument("--methods", nargs="*")
    c.add_argument("--tmp", default=None, help="folder for the memory-mapped signals")
    args = ap.parse_args()
    {"sweep": sweep, "ccs": ccs, "scale": scale}[args.cmd](args)


if __name__ == "__main__":
    main()
