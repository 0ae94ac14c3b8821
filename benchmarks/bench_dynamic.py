"""Static vs dynamic pruning on real CIFAR-10N (worst) at equal optimisation steps.

Every method trains the same network with cross-entropy (or SOP+) for the same number of
optimisation steps: ``epochs × ⌈fraction · N / batch⌉``, the steps a static subset of
``fraction · N`` samples makes in ``epochs`` epochs (``--budget steps`` of
``deepcore-run``). Reported per method: final test accuracy, the mean over epochs of the
noise rate of the samples each epoch trained on (against the clean CIFAR-10 labels), the
same over the last half of the epochs, the share of the training set an epoch saw on
average, and steps / samples used::

    python /work/shared/tools/make_cifar10.py /tmp/cifar_dyn
    python benchmarks/bench_dynamic.py --data_path /tmp/cifar_dyn

Uniform and SmallLoss are static: SmallLoss ranks the clean-view loss of a CE warm-up
of ``--warmup`` epochs on all ``N`` samples (its compute is extra and printed). RS2,
InfoBatch and EMASmallLoss are dynamic (:mod:`deep_core.methods`). The test set is the
``--test`` CIFAR-10 test images evenly spaced over the (class-sorted) test set,
evaluated once at the end (CPU time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import numpy as np
import torch

from deep_core.datasets import DataConfig, load_dataset
from deep_core.datasets.base import TensorImageSet
from deep_core.engine import Budget, OptimConfig, TrainConfig, TrainContext, Trainer
from deep_core.methods import build_method
from deep_core.signals import Signals
from robust_learners.ce import CE
from robust_learners.sop import SOP


def make_learner(name: str):
    if name == "CE":
        return CE()
    return SOP(ratio_consistency=0.9, ratio_balance=0.1)


def fit(ds, indices, *, epochs, args, learner, dynamic=None, budget=None):
    ctx = TrainContext(
        ds,
        indices,
        TrainConfig(epochs=epochs, batch_size=args.batch_size, seed=args.seed, progress=False),
        OptimConfig(lr=args.lr),
        model=args.model,
        dynamic=dynamic,
        budget=budget,
    )
    t0 = time.time()
    net = make_learner(learner)
    result = Trainer(net, ctx, evaluate_each_epoch=False).fit()
    return result, ctx, time.time() - t0, net


@torch.no_grad()
def clean_view_probs(learner, ctx) -> np.ndarray:
    """Softmax probabilities of the trained network on the clean view of every sample."""
    net = learner.networks()[0]
    net.eval()
    probs = np.zeros((len(ctx.dataset.labels), ctx.num_classes), dtype=np.float32)
    for batch in ctx.eval_batches(ctx.dataset.train, np.arange(len(ctx.dataset.labels))):
        probs[batch.positions.numpy()] = torch.softmax(net(ctx.to_input(batch.views[0])), 1)
    return probs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", default="/tmp/cifar_dyn")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=6, help="epochs of a static subset")
    p.add_argument("--warmup", type=int, default=1, help="SmallLoss warm-up epochs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--model", default="ResNet8")
    p.add_argument("--learner", default="CE", choices=("CE", "SOP+"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--methods",
        nargs="+",
        default=["Uniform", "SmallLoss", "RS2", "InfoBatch", "EMASmallLoss"],
    )
    args = p.parse_args()
    torch.manual_seed(0)
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
        f" {args.learner}, fraction {args.fraction}, {steps} steps of batch {args.batch_size}"
        f" (= {args.epochs} epochs of {size}), test on {args.test} images",
        flush=True,
    )
    budget = Budget("steps", steps)
    rows = []
    for name in args.methods:
        method, _ = build_method(name, {})
        extra = 0.0
        dynamic = None
        if method.dynamic:
            method.start(
                labels=ds.labels,
                num_classes=ds.num_classes,
                fraction=args.fraction,
                epochs=args.epochs,
                seed=args.seed,
            )
            dynamic, indices = method, np.arange(n)
        else:
            arrays = {"labels": ds.labels}
            if name == "SmallLoss":
                t0 = time.time()
                _, wctx, _, warm = fit(
                    ds, np.arange(n), epochs=args.warmup, args=args, learner="CE"
                )
                arrays["probs"] = clean_view_probs(warm, wctx)
                extra = time.time() - t0
            signals = Signals(arrays, num_classes=ds.num_classes)
            indices = method.select(signals, args.fraction, seed=args.seed).indices
        result, ctx, seconds, _ = fit(
            ds,
            indices,
            epochs=args.epochs,
            args=args,
            learner=args.learner,
            dynamic=dynamic,
            budget=budget,
        )
        h = result.history
        rates = [r["subset_noise_rate"] for r in h]
        late = rates[len(rates) // 2 :]
        row = {
            "method": name,
            "test_acc": result.last_acc,
            "epoch_noise": float(np.mean(rates)),
            "late_noise": float(np.mean(late)),
            "seen_fraction": float(np.mean([r["subset_size"] for r in h]) / n),
            "epochs": len(h),
            "steps": sum(r["steps"] for r in h),
            "samples": sum(r["samples_seen"] for r in h),
            "train_s": round(seconds, 1),
            "warmup_s": round(extra, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| method | test acc % | mean epoch noise | noise, last half | seen/epoch | epochs |"
          " steps | samples |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['test_acc']:.2f} | {r['epoch_noise']:.1%} |"
            f" {r['late_noise']:.1%} | {r['seen_fraction']:.2f} | {r['epochs']} |"
            f" {r['steps']} | {r['samples']} |"
        )


if __name__ == "__main__":
    main()
