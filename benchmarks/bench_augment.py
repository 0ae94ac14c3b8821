"""SOP+'s input pipeline: the batched reference AutoAugment against the previous per-image path.

Side by side in one process, on CIFAR-sized uint8 batches (the real CIFAR-10 training
set with ``--data``, random images otherwise):

1. the strong view alone, in rounds of a few batches per path, alternating the paths:
   milliseconds per batch of 128 (median over rounds of wall-clock and of process CPU
   time, the latter less sensitive to other load on a shared machine) and their ratio;
2. one CIFAR-10 epoch (50,000 images) of SOP+'s input pipeline — shuffled batches with a
   weak and a strong view each — host-side seconds, before and after.

"Before" is the previous code, copied below: crop and flip by advanced indexing, then
torchvision's ``v2.AutoAugment(CIFAR10)`` image by image under a forked global RNG,
normalisation, Cutout. "After" is :func:`deep_core.augment.strong_view` through
``TensorImageSet.batches`` (the reference's policy, batched).

Usage::

    python ../shared/tools/make_cifar10.py /tmp/cifar
    python benchmarks/bench_augment.py --data /tmp/cifar [--threads 1] [--rounds 5] [--batches 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from deep_core.augment import AugmentSpec, strong_view

# -- the previous per-image path, kept for the comparison -----------------------------------


def old_random_crop(x, padding, generator):
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = ox[:, None] + torch.arange(w, device=x.device)[None, :]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def old_random_flip(x, generator):
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def old_cutout(x, size, generator):
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b,), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy[:, None] - size // 2)) & (ys < (cy[:, None] + size - size // 2))
    in_x = (xs >= (cx[:, None] - size // 2)) & (xs < (cx[:, None] + size - size // 2))
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None, :, :], 0)


def old_normalize(x, spec):
    mean = torch.tensor(spec.mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float().div_(255.0) - mean) / std


def old_weak_view(x, spec, generator):
    return old_random_flip(old_random_crop(x, spec.crop_padding, generator), generator)


def old_autoaugment(x, generator):
    from torchvision.transforms import v2

    policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cpu = x.cpu()
        out = torch.stack([policy(img) for img in cpu])
    return out.to(x.device)


def old_strong_view(x, spec, generator):
    x = old_autoaugment(old_weak_view(x, spec, generator), generator)
    return old_cutout(old_normalize(x, spec), spec.cutout, generator)


# -- measurements ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="folder holding cifar-10-batches-py (random images if absent)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=10, help="batches per round in part 1")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per path in part 1")
    ap.add_argument("--skip-epoch", action="store_true", help="only part 1")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from deep_core.datasets.base import TensorImageSet

    if args.data:
        from deep_core.datasets import DataConfig, load_dataset

        ds = load_dataset(DataConfig(dataset="CIFAR10", data_path=args.data, noise_type="clean"))
        images, spec = ds.train.images, ds.train.spec
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50_000, 3, 32, 32), generator=g, dtype=torch.uint8)
        spec = AugmentSpec(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
    n, bs = images.shape[0], args.batch_size
    print(
        f"# torch {torch.__version__}, {args.threads} thread(s), batch {bs}, "
        f"{'CIFAR-10 train' if args.data else 'random uint8 images'} (n={n}), CPU"
    )

    print(
        f"## strong view alone, ms per batch: {args.rounds} rounds of {args.batches} batches "
        "per path, alternating; median over rounds of wall-clock and of process CPU time"
    )
    g_old, g_new = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    paths = (("before", old_strong_view, g_old), ("after", strong_view, g_new))
    for _, fn, g in paths:  # warm-up
        fn(images[perm[:bs]], spec, g)
    wall: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(args.rounds):
        starts = [(r * args.batches + i) * bs % (n - bs) for i in range(args.batches)]
        batches = [images.index_select(0, perm[j : j + bs]) for j in starts]
        for name, fn, g in paths:
            t, c = time.perf_counter(), time.process_time()
            for x in batches:
                fn(x, spec, g)
            wall[name].append((time.perf_counter() - t) / args.batches)
            cpu[name].append((time.process_time() - c) / args.batches)
    for label, times in (("wall", wall), ("CPU", cpu)):
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(
            f"{label:4s}  before {med['before']:7.2f}  after {med['after']:6.2f} ms/batch  "
            f"ratio {med['before'] / med['after']:.1f}x"
        )

    if args.skip_epoch:
        return
    print("## one epoch of SOP+'s input pipeline (weak + strong view per batch), seconds")
    tensor_set = TensorImageSet(images, spec)

    def before_epoch(epoch: int) -> None:
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(n, generator=g)
        for start in range(0, n, bs):
            x = images[order[start : start + bs]]
            old_normalize(old_weak_view(x, spec, g), spec)
            old_strong_view(x, spec, g)

    def after_epoch(epoch: int) -> None:
        for _ in tensor_set.batches(
            batch_size=bs, views=("weak", "strong"), shuffle=True, seed=0, epoch=epoch
        ):
            pass

    secs = {}
    for name, run in (("before", before_epoch), ("after", after_epoch)):
        t, c = time.perf_counter(), time.process_time()
        run(0)
        secs[name] = (time.perf_counter() - t, time.process_time() - c)
        print(f"{name:8s} wall {secs[name][0]:7.2f} s   CPU {secs[name][1]:7.2f} s per epoch")
    print(
        f"ratio before / after: wall {secs['before'][0] / secs['after'][0]:.1f}x, "
        f"CPU {secs['before'][1] / secs['after'][1]:.1f}x"
    )


if __name__ == "__main__":
    main()
