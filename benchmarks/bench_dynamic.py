"""Static vs dynamic pruning on real CIFAR-10N (worst) at equal optimisation steps.

Every method trains the same network with cross-entropy (or SOP+) for the same number of
optimisation steps: ``epochs × ⌈fraction · N / batch⌉``, the steps a static subset of
``fraction · N`` samples makes in ``epochs`` epochs (``--budget steps`` of
``deepcore-run``). Reported per method, as mean ± std over ``--seeds``: final test
accuracy, the mean over epochs of the noise rate of the samples each epoch trained on
(against the clean CIFAR-10 labels), the same over the last half of the epochs, the share
of the training set an epoch saw on average, and steps / samples used::

    python /work/shared/tools/make_cifar10.py /tmp/cifar_dyn
    python benchmarks/bench_dynamic.py --data_path /tmp/cifar_dyn --seeds 0 1 2

Uniform, SmallLoss and Prune4Rel are static and select through the runner's own path
(:func:`deep_core.runner.select_subset`, ``--protocol reference``): SmallLoss reads the
clean-view probabilities of the warm-up, Prune4Rel the probabilities and features of its
seeded strong view, both from one warm-up of ``--warmup`` epochs on all ``N`` samples per
seed and learner (the learner's own warm-up recipe, learning-rate schedule sized on the
main run's ``--epochs``; its compute is extra and printed). Prune4Rel takes the options of
the reference's CIFAR-10N scripts (``--uncertainty LeastConfidence --tau 0.975 --eta 1``,
class-balanced). RS2, InfoBatch and EMASmallLoss are dynamic (:mod:`deep_core.methods`).
The test set is the ``--test`` CIFAR-10 test images evenly spaced over the (class-sorted)
test set, evaluated once at the end (CPU time). After every seed the table of the seeds
done so far is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time

import numpy as np
import torch

from deep_core.config import RunConfig
from deep_core.datasets import DataConfig, load_dataset
from deep_core.datasets.base import TensorImageSet
from deep_core.engine import Budget, OptimConfig, TrainConfig, TrainContext, Trainer
from deep_core.methods import build_method
from deep_core.runner import select_subset
from robust_learners.ce import CE
from robust_learners.sop import SOP

#: robust learner name and options of each learner column
LEARNERS = {
    "CE": ("CE", {}),
    "SOP+": ("SOP", {"ratio_consistency": 0.9, "ratio_balance": 0.1}),
}
#: method options of the static methods (Prune4Rel: the reference's CIFAR-10N scripts)
STATIC_OPTIONS = {
    "Uniform": {},
    "SmallLoss": {},
    "Prune4Rel": {"uncertainty": "LeastConfidence", "tau": 0.975, "eta": 1.0, "balance": True},
}


def make_learner(name: str):
    if name == "CE":
        return CE()
    return SOP(**LEARNERS[name][1])


def fit(ds, indices, *, seed, args, learner, dynamic, budget):
    ctx = TrainContext(
        ds,
        indices,
        TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed, progress=False),
        OptimConfig(lr=args.lr),
        model=args.model,
        dynamic=dynamic,
        budget=budget,
    )
    t0 = time.time()
    result = Trainer(make_learner(learner), ctx, evaluate_each_epoch=False).fit()
    return result, time.time() - t0


def static_config(args, *, learner: str, method: str, seed: int, cache: str) -> RunConfig:
    """The ``deepcore-run`` settings of a static selection (warm-up and method options)."""
    robust, options = LEARNERS[learner]
    return RunConfig(
        dataset="CIFAR10",
        data_path=args.data_path,
        noise_type="realW",
        n_train=args.n_train,
        model=args.model,
        selection=method,
        fraction=args.fraction,
        selection_epochs=args.warmup,
        protocol="reference",
        method_options=dict(STATIC_OPTIONS[method]),
        signals_cache=cache,
        robust_learner=robust,
        learner_options=dict(options),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        device="cpu",
        progress=False,
        out_dir=cache,
    )


def table(rows: list[dict]) -> str:
    """Markdown table: mean ± std (sample std over seeds) per learner and method."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["learner"], r["method"]), []).append(r)

    def stat(vals, fmt):
        if len({fmt(v) for v in vals}) == 1:  # the same for every seed, as printed
            return fmt(vals[0])
        return f"{fmt(np.mean(vals))} ± {fmt(np.std(vals, ddof=1))}"

    pct = "{:.1f}".format
    lines = [
        "| learner | method | seeds | test acc % | mean epoch noise % | noise, last half % |"
        " share seen / epoch | epochs | steps | samples | warm-up s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (learner, method), rs in groups.items():
        kind = " (static)" if method in STATIC_OPTIONS else ""
        lines.append(
            f"| {learner} | {method}{kind} | {len(rs)} |"
            f" {stat([r['test_acc'] for r in rs], '{:.2f}'.format)} |"
            f" {stat([100 * r['epoch_noise'] for r in rs], pct)} |"
            f" {stat([100 * r['late_noise'] for r in rs], pct)} |"
            f" {np.mean([r['seen_fraction'] for r in rs]):.2f} |"
            f" {stat([r['epochs'] for r in rs], '{:.0f}'.format)} |"
            f" {stat([r['steps'] for r in rs], '{:.0f}'.format)} |"
            f" {stat([r['samples'] for r in rs], '{:,.0f}'.format)} |"
            f" {np.mean([r['warmup_s'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", default="/tmp/cifar_dyn")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=20, help="epochs of a static subset")
    p.add_argument("--warmup", type=int, default=3, help="SmallLoss/Prune4Rel warm-up epochs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--model", default="ResNet8")
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["Uniform", "SmallLoss", "Prune4Rel", "RS2", "InfoBatch", "EMASmallLoss"],
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(
        DataConfig(
            dataset="CIFAR10", data_path=args.data_path, noise_type="realW", n_train=args.n_train
        )
    )
    keep = np.linspace(0, len(ds.test_labels) - 1, args.test).astype(np.int64)  # every class
    test = TensorImageSet(ds.test.images[keep], ds.test.spec)
    ds = dataclasses.replace(ds, test=test, test_labels=ds.test_labels[keep])
    n = len(ds.labels)
    size = round(args.fraction * n)
    steps = args.epochs * math.ceil(size / args.batch_size)
    noise = float(np.mean(ds.labels != ds.clean_labels))
    print(
        f"# CIFAR-10N worst, first {n} train images (noise {noise:.1%}), {args.model},"
        f" {'/'.join(args.learners)}, fraction {args.fraction}, {steps} steps of batch"
        f" {args.batch_size} (= {args.epochs} epochs of {size}), warm-up {args.warmup} epochs,"
        f" seeds {args.seeds}, test on {args.test} images, {torch.get_num_threads()} threads",
        flush=True,
    )
    budget = Budget("steps", steps)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for seed in args.seeds:
            for learner in args.learners:
                for name in args.methods:
                    t0 = time.time()
                    if name in STATIC_OPTIONS:
                        cfg = static_config(
                            args, learner=learner, method=name, seed=seed, cache=cache
                        )
                        subset, report = select_subset(cfg, ds, seed)
                        dynamic, indices = None, subset.indices
                        warmup_s = report["warmup_seconds"]
                        view = report["signal_view"]
                    else:
                        dynamic, _ = build_method(name, {})
                        dynamic.start(
                            labels=ds.labels,
                            num_classes=ds.num_classes,
                            fraction=args.fraction,
                            epochs=args.epochs,
                            seed=seed,
                        )
                        indices, warmup_s, view = np.arange(n), 0.0, None
                    select_s = time.time() - t0 - warmup_s
                    result, seconds = fit(
                        ds,
                        indices,
                        seed=seed,
                        args=args,
                        learner=learner,
                        dynamic=dynamic,
                        budget=budget,
                    )
                    h = result.history
                    rates = [r["subset_noise_rate"] for r in h]
                    row = {
                        "seed": seed,
                        "learner": learner,
                        "method": name,
                        "test_acc": result.last_acc,
                        "epoch_noise": float(np.mean(rates)),
                        "late_noise": float(np.mean(rates[len(rates) // 2 :])),
                        "seen_fraction": float(np.mean([r["subset_size"] for r in h]) / n),
                        "epochs": len(h),
                        "steps": sum(r["steps"] for r in h),
                        "samples": sum(r["samples_seen"] for r in h),
                        "train_s": round(seconds, 1),
                        "warmup_s": round(warmup_s, 1),
                        "select_s": round(select_s, 1),
                        "signal_view": view,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            done = sorted({r["seed"] for r in rows})
            print(f"\n## seeds done: {done}\n{table(rows)}\n", flush=True)


if __name__ == "__main__":
    main()
