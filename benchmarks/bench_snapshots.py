"""Cost of recording per-epoch snapshots in the warm-up, and what each snapshot selects.

Records the same warm-up with and without ``snapshots`` (alternating, in one process)
and prints the CPU seconds of each, then the subset noise rate of EL2N and GraNd at
every ``--signal-epoch`` of the snapshot warm-up (and of Dyn-Unc and DUAL)::

    OMP_NUM_THREADS=1 nice python benchmarks/bench_snapshots.py            # Digits
    OMP_NUM_THREADS=1 nice python benchmarks/bench_snapshots.py --dataset CIFAR10 \\
        --data-path DATA --noise-type realW --n-train 5000 --model ResNet8
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Digits")
    p.add_argument("--data-path", default="data")
    p.add_argument("--noise-type", default="sym")
    p.add_argument("--noise-rate", type=float, default=0.4)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--epochs", type=int, default=10, help="warm-up epochs (-se)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--fraction", type=float, default=0.5)
    args = p.parse_args()

    from deep_core.config import RunConfig
    from deep_core.methods import build_method
    from deep_core.runner import build_learner, load_data, warmup_config
    from deep_core.signals.recorder import warm_up_signals

    cfg = RunConfig(
        dataset=args.dataset,
        data_path=args.data_path,
        noise_type=args.noise_type,
        noise_rate=args.noise_rate if args.noise_type in ("sym", "asym") else 0.0,
        n_train=args.n_train,
        model=args.model,
        selection_epochs=args.epochs,
        protocol="clean",
        progress=False,
    )
    ds = load_data(cfg, 0)
    base = warmup_config(cfg, ds, 0)
    cpu: dict[bool, list[float]] = {False: [], True: []}
    signals = None
    for _ in range(args.repeats):
        for snapshots in (False, True):
            t = time.process_time()
            sig, _ = warm_up_signals(
                ds, lambda: build_learner(cfg).warmup(), replace(base, snapshots=snapshots)
            )
            cpu[snapshots].append(time.process_time() - t)
            signals = sig if snapshots else signals
    plain, snap = np.median(cpu[False]), np.median(cpu[True])
    print(f"{ds.name}: {len(ds.labels):,} samples, {args.epochs} warm-up epochs, "
          f"model {cfg.model or ds.default_model}")  # fmt: skip
    print(f"warm-up CPU seconds (median of {args.repeats}): without snapshots {plain:.1f}, "
          f"with {snap:.1f} ({snap / plain:.2f}x)")  # fmt: skip
    noisy = signals.labels != signals.clean_labels
    print(f"\nsubset noise at fraction {args.fraction} (full set {noisy.mean():.1%}):")
    print("| --signal-epoch | " + " | ".join(str(k) for k in range(args.epochs + 1)) + " |")
    print("|---|" + "---:|" * (args.epochs + 1))
    for name in ("EL2N", "GraNd"):
        cells = []
        for k in range(args.epochs + 1):
            sub = build_method(name, {"signal_epoch": k})[0].select(signals, args.fraction)
            cells.append(f"{noisy[sub.indices].mean():.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in ("SmallLoss", "DynUnc", "DUAL"):
        sub = build_method(name, {})[0].select(signals, args.fraction)
        print(f"{name}: {noisy[sub.indices].mean():.1%}")


if __name__ == "__main__":
    main()
