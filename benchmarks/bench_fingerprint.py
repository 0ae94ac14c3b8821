"""Cost of the data fingerprint (warm-up cache key) and of the cache-entry checksums.

    python benchmarks/bench_fingerprint.py --cifar DIR   # DIR from make_cifar10.py --folders

Measured side by side in one process, as ratios to what a run pays anyway:

* file-backed folder (CIFAR-10 as 50,000 + 10,000 JPEG files): :func:`hash_files` over
  the training paths against listing the class folders and decoding the images once
  (what ``ImageFolder`` with ``--image-size`` <= 64 does);
* in-memory set (the CIFAR-10 python batches): :func:`hash_arrays` over the 50,000
  images against reading the batches;
* one warm-up cache entry at CIFAR size (probs 50,000 x 10, features 50,000 x 512,
  four 50,000 x 10 per-epoch arrays): verifying its sha256 manifest against reading the
  same files fully.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cifar", type=Path, required=True, help="make_cifar10.py output folder")
    ap.add_argument("--decode", type=int, default=5000, help="images decoded for the ratio")
    a = ap.parse_args()

    from deep_core.datasets.cifar import find_batches_dir, read_split
    from deep_core.datasets.image_folder import decode_all, list_class_folder
    from deep_core.fingerprint import hash_arrays, hash_file, hash_files

    train = a.cifar / "cifar10-folders" / "train"
    if not train.is_dir():
        train = next(a.cifar.glob("**/train"))
    t_list = _time(lambda: list_class_folder(train), 1)
    _, paths, _ = list_class_folder(train)
    t_hash = _time(lambda: hash_files(paths))
    decode_all(paths[:10], 32)  # imports outside the timing
    t_dec = _time(lambda: decode_all(paths[: a.decode], 32), 1) * len(paths) / a.decode
    print(f"folder: {len(paths):,} files; list {t_list:.2f} s, fingerprint {t_hash:.3f} s, "
          f"decode (extrapolated from {a.decode:,}) {t_dec:.1f} s")  # fmt: skip
    print(f"  fingerprint / (list + decode) = {t_hash / (t_list + t_dec):.4f}")

    folder = find_batches_dir("CIFAR10", a.cifar)
    t_read = _time(lambda: read_split("CIFAR10", folder, "train"), 1)
    x = read_split("CIFAR10", folder, "train")[0]
    t_arr = _time(lambda: hash_arrays(x))
    print(f"in memory: {x.nbytes / 2**20:.0f} MiB images; read batches {t_read:.2f} s, "
          f"fingerprint {t_arr:.3f} s, ratio {t_arr / t_read:.3f}")  # fmt: skip

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        entry = Path(d)
        arrays = {"probs": rng.random((50000, 10), np.float32),
                  "features": rng.random((50000, 512), np.float32)}  # fmt: skip
        for name in ("losses", "correct", "margins", "prob_margins"):
            arrays[name] = rng.random((50000, 10), np.float32)
        for name, arr in arrays.items():
            np.save(entry / f"{name}.npy", arr)
        files = sorted(entry.iterdir())
        size = sum(p.stat().st_size for p in files)
        t_ver = _time(lambda: [hash_file(p) for p in files])
        t_load = _time(lambda: [np.load(p) for p in files])
        print(f"cache entry: {size / 2**20:.0f} MiB; verify {t_ver:.3f} s "
              f"({size / t_ver / 2**20:.0f} MiB/s), full read from the page cache "
              f"{t_load:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
