"""Clothing-1M scale without the images: parse official-format lists of 1M keys.

Writes synthetic ``noisy_label_kv.txt`` / ``noisy_train_key_list.txt`` (1,000,000 keys)
and clean val/test lists to a temporary folder, then times
:func:`deep_core.datasets.clothing1m.load_clothing1m` with the image existence check
switched off (there are no images), the class-balanced epoch draw, and, if ``--folder``
is given, the existence check on a real tree of files.

Usage::

    python benchmarks/bench_clothing_lists.py [--folder /tmp/cifar/cifar10-folders]
"""

from __future__ import annotations

import argparse
import glob
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="training keys")
    ap.add_argument("--folder", help="a folder tree of images for the existence check")
    args = ap.parse_args()

    import deep_core.datasets.clothing1m as c1m
    from deep_core.datasets.list_files import check_files_exist

    root = Path(tempfile.mkdtemp(prefix="c1m_lists_"))
    try:
        rng = np.random.default_rng(0)
        n, nv = args.n, 14_313
        keys = [f"images/{i % 10}/{(i // 10) % 100:02d}/{rng.integers(1e9, 4e9)},{i}.jpg"
                for i in range(n)]  # fmt: skip
        labels = rng.integers(0, 14, n)
        with open(root / "noisy_label_kv.txt", "w") as f:
            f.writelines(f"{k} {y}\n" for k, y in zip(keys, labels, strict=True))
        with open(root / "noisy_train_key_list.txt", "w") as f:
            f.writelines(k + "\n" for k in keys)
        clean = [f"images/c/{i}.jpg" for i in range(2 * nv)]
        with open(root / "clean_label_kv.txt", "w") as f:
            f.writelines(f"{k} {i % 14}\n" for i, k in enumerate(clean))
        for name, part in (("clean_val_key_list.txt", clean[:nv]),
                           ("clean_test_key_list.txt", clean[nv:])):  # fmt: skip
            with open(root / name, "w") as f:
                f.writelines(k + "\n" for k in part)
        del keys, clean

        c1m.check_files_exist = lambda paths, what: None  # no images here
        import torchvision.io  # noqa: F401  (imported by the loader; not what is timed)
        import torchvision.transforms.v2  # noqa: F401

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        ds = c1m.load_clothing1m(data_path=root, image_size=224)
        dt = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"parsed {len(ds.train):,} training keys + 2 x {nv:,} clean keys in {dt:.1f} s; "
              f"peak RSS +{(rss1 - rss0) / 1024:.0f} MiB; "
              f"packed paths {ds.train.paths.nbytes / 2**20:.0f} MiB")  # fmt: skip
        subset = np.sort(rng.choice(n, n // 5, replace=False))
        t = time.perf_counter()
        draw = ds.epoch_indices(subset, num_samples=32_000, epoch=0, seed=0)
        print(f"class-balanced epoch draw of {draw.size:,} from {subset.size:,}: "
              f"{1e3 * (time.perf_counter() - t):.0f} ms")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.folder:
        files = glob.glob(f"{args.folder}/**/*.jpg", recursive=True)
        t = time.perf_counter()
        check_files_exist(files, "bench")
        print(f"existence check of {len(files):,} listed files: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
