"""Seconds per epoch of CE, SOP, SOP+ and DivideMix side by side (CIFAR-10, one machine).

Each learner trains a fixed number of batches through the real engine (augmentation
included) after one untimed batch; the time per batch is extrapolated to a full
CIFAR-10 epoch (50,000 images, batch 128 → 391 batches). DivideMix's epoch after the
warm-up is assembled from its measured parts: the co-divide pass (clean-view loss of
every sample for both networks, timed on a slice, plus a real 2-GMM fit on 50,000
losses) and MixMatch for both networks, whose number of batches is the labeled-set
size / 128 (assumed here to be the clean fraction, ``1 − noise rate``). Its warm-up
epochs cost two CE epochs.

    python benchmarks/bench_learners.py --data_path /tmp/cifar [--model PreActResNet18]

``--table RUN_DIR...`` instead prints the accuracy table (last/best test accuracy,
train time) of finished ``deepcore-run`` runs.

``--throughput`` measures training samples per second (wall clock, the device
synchronised) and per CPU-second (``time.process_time``, all threads) of CE, SOP+ and
DivideMix's MixMatch epoch through the real engine, and of the input pipeline alone;
``--json FILE`` writes the figures (``benchmarks/gpu_check.sh`` uses it)::

    python benchmarks/bench_learners.py --throughput --device cuda --amp True --json t.json

``--compare-with REV`` runs the same ``--throughput`` measurement on the code of git
revision ``REV`` and on the working tree, alternately in fresh processes (twice each,
the better of two kept), and prints the ratios: a before/after comparison without
keeping the old code around::

    python benchmarks/bench_learners.py --throughput --compare-with HEAD~1 --dataset Digits
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _context(ds, indices, *, model: str, batch_size: int):
    from deep_core.engine import OptimConfig, TrainConfig, TrainContext

    cfg = TrainConfig(epochs=1, batch_size=batch_size, progress=False, device="cpu")
    return TrainContext(ds, np.asarray(indices, np.int64), cfg, OptimConfig(), model=model)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_learner(ds, learner, *, model: str, steps: int, batch_size: int) -> float:
    """Seconds per training batch of ``learner`` (one untimed batch first)."""
    ctx = _context(ds, np.arange(batch_size), model=model, batch_size=batch_size)
    learner.setup(ctx)
    for net in learner.networks():
        net.train()
    learner.train_epoch(ctx, 0)
    ctx.indices = np.arange(batch_size, batch_size * (steps + 1), dtype=np.int64)
    return _timed(lambda: learner.train_epoch(ctx, 1)) / steps


def time_dividemix(
    ds, *, model: str, steps: int, batch_size: int, labeled_fraction: float
) -> dict[str, float]:
    """Parts of a DivideMix epoch after the warm-up, extrapolated to the full training set."""
    from robust_learners.dividemix import DivideMix, clean_probability

    n_full = len(ds.labels)
    learner = DivideMix(warmup_epochs=0)
    # MixMatch: `steps` labeled batches with as many unlabeled samples available
    idx = np.arange(2 * batch_size * (steps + 1))
    ctx = _context(ds, idx, model=model, batch_size=batch_size)
    learner.setup(ctx)
    warm = np.r_[np.ones(batch_size), np.zeros(batch_size)]
    ctx.indices = idx[: 2 * batch_size]
    learner._mixmatch(ctx, 0, 0, warm, ctx.indices)  # untimed first batch
    ctx.indices = idx[2 * batch_size :]
    prob = np.r_[np.ones(steps * batch_size), np.zeros(steps * batch_size)]
    mixmatch_step = _timed(lambda: learner._mixmatch(ctx, 1, 0, prob, ctx.indices)) / steps
    # co-divide: clean-view losses of a slice, then the real GMM on n_full losses
    ctx.indices = np.arange(steps * ctx.config.test_batch_size)
    learner.per_sample_losses(ctx, 0, ctx.indices)
    loss_pass = _timed(lambda: learner.per_sample_losses(ctx, 0, ctx.indices)) / ctx.indices.size
    losses = np.random.default_rng(0).gamma(2.0, 0.3, n_full)
    gmm = _timed(lambda: clean_probability(losses, seed=0))
    batches = math.ceil(labeled_fraction * n_full / batch_size)
    epoch = 2 * (batches * mixmatch_step + n_full * loss_pass + gmm)
    return {
        "mixmatch_step": mixmatch_step,
        "eval_per_image": loss_pass,
        "gmm": gmm,
        "mixmatch_batches": batches,
        "epoch": epoch,
    }


def time_views(ds, views, *, steps: int, batch_size: int) -> float:
    """Seconds per batch spent making the augmented views alone."""

    def go():
        for _ in ds.train.batches(
            np.arange(steps * batch_size), batch_size=batch_size, views=views, shuffle=True, seed=0
        ):
            pass

    return _timed(go) / steps


def bench(args) -> None:
    from deep_core.datasets import DataConfig, load_dataset
    from robust_learners.ce import CE
    from robust_learners.sop import SOP

    torch.set_num_threads(args.threads)
    ds = load_dataset(
        DataConfig(dataset="CIFAR10", data_path=args.data_path, noise_type=args.noise)
    )
    n, bs = len(ds.labels), args.batch_size
    per_epoch = math.ceil(n / bs)
    noise = ds.realised_noise_rate() or 0.0
    print(
        f"# CIFAR-10 ({args.noise}, noise {noise:.2%}), {args.model}, batch {bs}, "
        f"{args.threads} threads, {args.steps} timed batches per learner; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    )
    rows = []
    for name, learner in [
        ("CE", CE()),
        ("SOP", SOP()),
        ("SOP+", SOP(ratio_consistency=0.9, ratio_balance=0.1)),
    ]:
        step = time_learner(ds, learner, model=args.model, steps=args.steps, batch_size=bs)
        rows.append((name, step, per_epoch, step * per_epoch))
        print(f"  {name}: {step:.3f} s/batch", flush=True)
    from robust_learners.dividemix import DivideMix

    warm = time_learner(
        ds, DivideMix(warmup_epochs=10**6), model=args.model, steps=args.steps, batch_size=bs
    )
    rows.append(("DivideMix warm-up (2 nets)", warm, per_epoch, warm * per_epoch))
    dm = time_dividemix(
        ds, model=args.model, steps=args.steps, batch_size=bs, labeled_fraction=1.0 - noise
    )
    print(f"  DivideMix parts: {json.dumps({k: round(v, 4) for k, v in dm.items()})}", flush=True)
    rows.append(
        ("DivideMix (after warm-up)", dm["mixmatch_step"], 2 * dm["mixmatch_batches"], dm["epoch"])
    )
    ce_epoch = rows[0][3]
    print("\n| learner | s / batch | batches / epoch | s / epoch (extrapolated) | × CE |")
    print("|---|---:|---:|---:|---:|")
    for name, step, batches, epoch in rows:
        print(f"| {name} | {step:.3f} | {batches} | {epoch:.0f} | {epoch / ce_epoch:.2f} |")
    weak = time_views(ds, ("weak",), steps=args.steps, batch_size=bs)
    strong = time_views(ds, ("weak", "strong"), steps=args.steps, batch_size=bs)
    print(
        f"\naugmentation alone: weak {weak:.3f} s/batch, weak+strong {strong:.3f} s/batch "
        f"(SOP+'s AutoAugment is {strong - weak:.3f} s of its {rows[2][1]:.3f} s/batch)"
    )
    print(
        f"DivideMix co-divide: {dm['eval_per_image'] * n:.0f} s per network for the loss pass "
        f"over {n} images, GMM fit {dm['gmm']:.2f} s; "
        f"{dm['mixmatch_batches']} MixMatch batches per network"
    )


# ----------------------------------------------------------------------------------
# --throughput (only API that older revisions share, for --compare-with)
# ----------------------------------------------------------------------------------
THROUGHPUT_LEARNERS = ("CE", "SOP+", "DivideMix")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock(fn, device: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``, the device synchronised."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


class _CountReads:
    """Counts reads of tensor values by the host (each a GPU sync on CUDA) while active."""

    def __enter__(self):
        self.count = 0
        self.saved = {name: getattr(torch.Tensor, name) for name in READS}

        def counting(fn):
            def read(t, *a, **k):
                self.count += 1
                return fn(t, *a, **k)

            return read

        for name, fn in self.saved.items():
            setattr(torch.Tensor, name, counting(fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(torch.Tensor, name, fn)


def _learner(name: str):
    from robust_learners.ce import CE
    from robust_learners.dividemix import DivideMix
    from robust_learners.sop import SOP

    return {
        "CE": lambda: CE(),
        "SOP": lambda: SOP(),
        "SOP+": lambda: SOP(ratio_consistency=0.9, ratio_balance=0.1),
        "DivideMix": lambda: DivideMix(warmup_epochs=0),
    }[name]()


def learner_throughput(ds, name: str, args) -> dict[str, float]:
    """Samples per second (wall) and per CPU-second of ``args.steps`` training steps.

    CE and SOP+ take one batch of samples per step; DivideMix's MixMatch step takes a
    labeled and an unlabeled batch (2 × batch samples, both networks' forward passes).
    """
    from deep_core.engine import OptimConfig, TrainConfig, TrainContext

    bs, steps = args.batch_size, args.steps
    cfg = TrainConfig(
        epochs=1,
        batch_size=bs,
        progress=False,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    n = 2 * bs * (steps + 1)
    ctx = TrainContext(ds, np.arange(n) % len(ds.labels), cfg, OptimConfig(), model=args.model)
    learner = _learner(name)
    learner.setup(ctx)
    for net in learner.networks():
        net.train()
    if name == "DivideMix":
        first = np.arange(2 * bs) % len(ds.labels)
        learner._mixmatch(ctx, 0, 0, np.r_[np.ones(bs), np.zeros(bs)], first)  # untimed
        pool = np.arange(2 * bs, 2 * bs * (steps + 1)) % len(ds.labels)
        prob = np.r_[np.ones(steps * bs), np.zeros(steps * bs)]
        wall, cpu = _clock(lambda: learner._mixmatch(ctx, 1, 0, prob, pool), args.device)
        with _CountReads() as reads:
            learner._mixmatch(ctx, 2, 0, prob, pool)
        samples = 2 * bs * steps
    else:
        ctx.indices = np.arange(bs) % len(ds.labels)
        learner.train_epoch(ctx, 0)  # untimed: allocations, cudnn autotuning
        ctx.indices = np.arange(bs, bs * (steps + 1)) % len(ds.labels)
        wall, cpu = _clock(lambda: learner.train_epoch(ctx, 1), args.device)
        with _CountReads() as reads:
            learner.train_epoch(ctx, 2)
        samples = bs * steps
    return {
        "samples_per_s": samples / wall,
        "samples_per_cpu_s": samples / max(cpu, 1e-9),
        # a pass's reads (batch order, metrics once per pass included) per step
        "host_reads_per_step": reads.count / steps,
    }


def pipeline_throughput(ds, views, args) -> dict[str, float]:
    """Images per second of the input pipeline alone (batches made on the device)."""
    bs, steps = args.batch_size, args.steps
    idx = np.arange(bs * steps) % len(ds.labels)

    def go():
        for _ in ds.train.batches(
            idx, batch_size=bs, views=views, shuffle=True, seed=0, device=args.device
        ):
            pass

    go()  # untimed: the copy of the images to the device
    wall, cpu = _clock(go, args.device)
    return {"images_per_s": idx.size / wall, "images_per_cpu_s": idx.size / max(cpu, 1e-9)}


def _dataset(args):
    from deep_core.datasets import DataConfig, load_dataset

    if args.dataset == "Digits":
        return load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))
    return load_dataset(
        DataConfig(
            dataset=args.dataset,
            data_path=args.data_path,
            noise_type=args.noise,
            n_train=args.n_train,
        )
    )


def throughput(args) -> dict:
    torch.set_num_threads(args.threads)
    ds = _dataset(args)
    out = {
        "dataset": args.dataset,
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "device": args.device,
        "amp": args.amp,
        "channels_last": args.channels_last,
        "threads": args.threads,
        "torch": torch.__version__,
        "learners": {},
        "pipeline": {},
    }
    for name in args.learners:
        out["learners"][name] = learner_throughput(ds, name, args)
        print(f"  {name}: {json.dumps(out['learners'][name])}", flush=True)
    if not args.no_pipeline:
        for label, views in (("weak", ("weak",)), ("weak+strong", ("weak", "strong"))):
            out["pipeline"][label] = pipeline_throughput(ds, views, args)
            print(f"  pipeline {label}: {json.dumps(out['pipeline'][label])}", flush=True)
    return out


def amp_compare(args) -> None:
    """``--amp-compare MODEL...``: float32 vs bfloat16 autocast, CE steps, side by side."""
    import copy

    torch.set_num_threads(args.threads)
    ds = _dataset(args)
    print(f"| model (batch {args.batch_size}, {args.steps} steps, {args.threads} threads) "
          "| float32 samples / CPU-s | bf16 | bf16 / float32 |")
    print("|---|---:|---:|---:|")
    for model in args.amp_compare:
        best = {False: 0.0, "bf16": 0.0}
        for _ in range(2):  # alternated, the better of two kept
            for amp in best:
                a = copy.copy(args)
                a.model, a.amp = model, amp
                r = learner_throughput(ds, "CE", a)["samples_per_cpu_s"]
                best[amp] = max(best[amp], r)
        print(f"| {model} | {best[False]:.0f} | {best['bf16']:.0f} "
              f"| {best['bf16'] / best[False]:.2f} |", flush=True)


def compare(args, argv: list[str]) -> None:
    """``--compare-with REV``: the same measurement on REV's code and on the working tree."""
    import os
    import subprocess
    import sys
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    cut = argv.index("--compare-with")
    rest = argv[:cut] + argv[cut + 2 :]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", args.compare_with], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        results: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(2):
            for label, tree in (("before", old), ("after", repo)):
                out = Path(tmp) / f"{label}.json"
                env = {**os.environ, "PYTHONPATH": str(tree)}
                cmd = [sys.executable, __file__, *rest, "--json", str(out), "--no-pipeline"]
                subprocess.run(cmd, env=env, check=True, cwd=str(tree), capture_output=True)
                results[label].append(json.loads(out.read_text()))
    print(f"\n| learner ({args.model}, batch {args.batch_size}, {args.device}) "
          "| before samples / CPU-s | after | after / before "
          "| host reads per step before | after |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.learners:
        best = {
            k: max(r["learners"][name]["samples_per_cpu_s"] for r in v)
            for k, v in results.items()
        }
        reads = {k: v[0]["learners"][name]["host_reads_per_step"] for k, v in results.items()}
        print(f"| {name} | {best['before']:.0f} | {best['after']:.0f} "
              f"| {best['after'] / best['before']:.2f} "
              f"| {reads['before']:.2f} | {reads['after']:.2f} |")


def table(run_dirs: list[str]) -> None:
    """Markdown table of finished runs (summary.json + metrics.jsonl)."""
    print(
        "| learner | options | model | n train | epochs | last acc | best acc (by test) "
        "| train s | s / epoch |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for d in run_dirs:
        s = json.loads((Path(d) / "summary.json").read_text())
        print(
            f"| {s['robust_learner']} | {s['learner_options'] or ''} | {s['model']} | "
            f"{s['subset_size']} | {s['epochs']} | {s['last_acc']:.2f} | {s['best_acc']:.2f} | "
            f"{s['train_seconds']:.0f} | {s['train_seconds'] / s['epochs']:.0f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", "--data-path", dest="data_path", default="/tmp/cifar")
    p.add_argument("--model", default="PreActResNet18")
    p.add_argument("--noise", default="realW")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="timed batches per learner")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", nargs="+", metavar="RUN_DIR", help="print the accuracy table of runs")
    p.add_argument("--throughput", action="store_true", help="samples/s per learner (see above)")
    p.add_argument("--dataset", default="CIFAR10", help="CIFAR10 (default) or Digits")
    p.add_argument("--n-train", dest="n_train", type=int, help="first N CIFAR training images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="False", help="True, False, bf16, fp16 (as deepcore-run)")
    p.add_argument("--channels-last", dest="channels_last", default="True")
    p.add_argument("--learners", nargs="+", default=list(THROUGHPUT_LEARNERS))
    p.add_argument("--no-pipeline", dest="no_pipeline", action="store_true")
    p.add_argument("--json", help="write the --throughput figures to this file")
    p.add_argument("--compare-with", dest="compare_with", metavar="REV")
    p.add_argument("--amp-compare", dest="amp_compare", nargs="+", metavar="MODEL",
                   help="float32 vs bf16 autocast samples per CPU-second of CE on each model")
    argv = sys.argv[1:]
    args = p.parse_args(argv)
    from deep_core.cli.common import str_to_bool

    args.amp = args.amp.lower() if args.amp.lower() in ("bf16", "fp16") else str_to_bool(args.amp)
    args.channels_last = str_to_bool(args.channels_last)
    if args.table:
        table(args.table)
    elif args.amp_compare:
        amp_compare(args)
    elif args.compare_with:
        compare(args, argv)
    elif args.throughput:
        out = throughput(args)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
    else:
        bench(args)


if __name__ == "__main__":
    main()
