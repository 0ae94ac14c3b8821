"""Image-folder loading throughput (images/s): decode in DataLoader workers.

Side by side in one process, on the shared CIFAR-10 JPEG folders (50,000 train images):

1. ``deep_core``'s list-file path (:class:`~deep_core.datasets.list_files.ListImageSet`,
   the one WebVision and Clothing-1M use): ``torchvision.io.decode_image``, one fused
   uint8 resize/crop/flip per image in ``--workers`` DataLoader workers, uint8 batches
   normalised in one tensor operation in the main process;
   and, for reference, ``FileImageSet`` with the per-image transforms v2 chain
   (float32 per image) that ``--dataset ImageFolder`` uses for large images;
2. the straightforward pipeline: ``torchvision.datasets.ImageFolder`` (PIL decode) with
   the classic PIL transforms (``Resize / RandomCrop / RandomHorizontalFlip / ToTensor /
   Normalize``), same workers and batch size;
3. for small images, ``deep_core``'s in-memory path (``--dataset ImageFolder`` with
   ``--image-size`` <= 64): a one-time decode of every image, then batched tensor
   augmentation per epoch.

Both file pipelines produce the same views (resize the short side to 8/7·S, random crop
S, flip, normalise) at S = 32 (CIFAR's size) and S = 224 (the WebVision/Clothing-1M
setting, upsampled here). Only the input pipeline is timed (no network).

Usage::

    python ../shared/tools/make_cifar10.py /tmp/cifar --folders
    python benchmarks/bench_image_folder.py --root /tmp/cifar/cifar10-folders [--images 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch


def _time(batches, n_images: int) -> tuple[float, float]:
    """(images/s after the first batch, seconds to the first batch)."""
    t0 = time.perf_counter()
    it = iter(batches)
    first = next(it)
    t1 = time.perf_counter()
    seen = len(first[1]) if isinstance(first, list | tuple) else first.positions.numel()
    done = 0
    for b in it:
        done += len(b[1]) if isinstance(b, list | tuple) else b.positions.numel()
    t2 = time.perf_counter()
    assert seen + done == n_images, (seen, done, n_images)
    return done / max(t2 - t1, 1e-9), t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="cifar10-folders (train/<class>/*.jpg)")
    ap.add_argument("--images", type=int, default=10000, help="images per timed pass")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--sizes", default="32,224", help="crop sides S to time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchvision.io notice
    torch.set_num_threads(args.threads)

    import torchvision
    import torchvision.transforms as T

    from deep_core.datasets.base import FileImageSet
    from deep_core.datasets.image_folder import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        decode_all,
        file_transforms,
        list_class_folder,
    )
    from deep_core.datasets.list_files import ListImageSet, PackedPaths

    root = os.path.join(args.root, "train")
    _, paths, _ = list_class_folder(__import__("pathlib").Path(root))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(paths), size=min(args.images, len(paths)), replace=False))
    n = pick.size
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"{n} of {len(paths)} images, batch {args.batch_size}, {args.workers} workers, "
          f"main-process threads {args.threads}")  # fmt: skip
    for i in pick:  # read every file once, so no pipeline pays for a cold page cache
        with open(paths[i], "rb") as f:
            f.read()
    print(f"{'pipeline':<48} {'S':>4} {'images/s':>10} {'first batch s':>14}")

    for size in (int(s) for s in args.sizes.split(",")):
        rows = []
        ours = ListImageSet(PackedPaths(paths), size, IMAGENET_MEAN, IMAGENET_STD)
        v2 = FileImageSet(paths, file_transforms(size), (3, size, size))
        for name, images in (("deep_core ListImageSet (uint8 + batch norm.)", ours),
                             ("deep_core FileImageSet (transforms v2 chain)", v2)):  # fmt: skip
            batches = images.batches(pick, batch_size=args.batch_size, views=("weak",),
                                     shuffle=True, workers=args.workers)  # fmt: skip
            rows.append((name, *_time(batches, n)))
        resize = int(round(size * 8 / 7))
        tf = T.Compose([T.Resize(resize), T.RandomCrop(size), T.RandomHorizontalFlip(),
                        T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])  # fmt: skip
        plain = torchvision.datasets.ImageFolder(root, transform=tf)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(plain, pick.tolist()), batch_size=args.batch_size,
            shuffle=True, num_workers=args.workers,
        )  # fmt: skip
        rows.append(("torchvision ImageFolder (PIL + transforms)", *_time(loader, n)))
        for name, rate, first in rows:
            print(f"{name:<48} {size:>4} {rate:>10.0f} {first:>14.2f}")
        print(f"{'ratio ListImageSet / torchvision ImageFolder':<48} {size:>4} "
              f"{rows[0][1] / rows[2][1]:>10.2f}")  # fmt: skip

    # The in-memory path for small images: decode once, then batched tensor augmentation.
    from deep_core.augment import AugmentSpec
    from deep_core.datasets.base import TensorImageSet

    t0 = time.perf_counter()
    images = decode_all([paths[i] for i in pick], 32)
    decode_s = time.perf_counter() - t0
    mem = TensorImageSet(images, AugmentSpec(IMAGENET_MEAN, IMAGENET_STD, crop_padding=4))
    rate_mem, _ = _time(mem.batches(None, batch_size=args.batch_size, views=("weak",),
                                    shuffle=True), n)  # fmt: skip
    print(f"{'deep_core in-memory: one-time decode (1 process)':<48} {32:>4} "
          f"{n / decode_s:>10.0f} {decode_s:>14.2f}")  # fmt: skip
    print(f"{'deep_core in-memory: batched augmentation/epoch':<48} {32:>4} {rate_mem:>10.0f}")


if __name__ == "__main__":
    main()
