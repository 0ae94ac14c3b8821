"""Reference protocol vs clean protocol: what the choice changes in the selected subsets.

On real CIFAR-10 images with the CIFAR-10N worst labels (``realW``), one warm-up per
protocol is recorded through the runner (``select_subset``, the code path of
``deepcore-run``):

* ``reference``: the learning-rate schedule sized on the main run's ``--epochs`` (the
  warm-up stops after ``-se`` epochs, still near ``--lr``), Prune4Rel reading probs and
  embeddings on one seeded strong-augmented view;
* ``clean``: the schedule sized on ``-se`` (annealed within the warm-up), every method on
  the clean view.

Then every method selects the same fraction from each, and the table gives the subset's
noise rate under each protocol and the Jaccard similarity of the two subsets.

    python /work/shared/tools/make_cifar10.py /tmp/cifar
    python benchmarks/bench_protocol.py --data_path /tmp/cifar [--n-train 10000 --model ResNet8
        --selection-epochs 5 --epochs 200 --fraction 0.3]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

METHODS = ("Uniform", "SmallLoss", "Uncertainty", "Forgetting", "GraNd", "EL2N", "Moderate",
           "CCS", "Prune4Rel")  # fmt: skip


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / max(len(a | b), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", required=True)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--model", default="ResNet8")
    p.add_argument("--selection-epochs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200, help="the main run's length (reference)")
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    args = p.parse_args()
    torch.set_num_threads(1)

    from deep_core.config import RunConfig
    from deep_core.runner import configure_logging, load_data, select_subset

    configure_logging(verbose=False)
    with tempfile.TemporaryDirectory() as cache:
        base = RunConfig(
            dataset="CIFAR10",
            data_path=args.data_path,
            noise_type="realW",
            n_train=args.n_train,
            model=args.model,
            selection_epochs=args.selection_epochs,
            epochs=args.epochs,
            lr=args.lr,
            fraction=args.fraction,
            seed=args.seed,
            signals_cache=cache,
            progress=False,
            out_dir=cache,
        )
        ds = load_data(base, args.seed)
        noisy = ds.labels != ds.clean_labels
        print(
            f"CIFAR-10 realW, first {len(ds.labels):,} training images (noise rate"
            f" {noisy.mean():.4f}), {args.model}, -se {args.selection_epochs},"
            f" --epochs {args.epochs}, --lr {args.lr}, fraction {args.fraction},"
            f" seed {args.seed}; {platform.processor() or platform.machine()}, 1 thread"
        )
        rows = []
        seconds = {}
        for name in args.methods:
            subsets = {}
            for protocol in ("reference", "clean"):
                cfg = replace(base, protocol=protocol, selection=name)
                t0 = time.perf_counter()
                subset, report = select_subset(cfg, ds, args.seed)
                seconds[protocol] = seconds.get(protocol, 0.0) + time.perf_counter() - t0
                subsets[protocol] = (subset.indices, report["signal_view"])
            ref, clean = subsets["reference"], subsets["clean"]
            rows.append(
                (
                    name,
                    noisy[ref[0]].mean(),
                    noisy[clean[0]].mean(),
                    jaccard(ref[0], clean[0]),
                    ref[1],
                )
            )
    print()
    print("| method | view (reference) | subset noise, reference | subset noise, clean |"
          " Jaccard reference vs clean |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, nr, nc, jac, view in rows:
        print(f"| {name} | {view} | {nr:.4f} | {nc:.4f} | {jac:.3f} |")
    print()
    print(
        "seconds (both warm-ups included, one each): "
        + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
    )


if __name__ == "__main__":
    main()
