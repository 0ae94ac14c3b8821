"""Peak memory of reading a corpus's labels: streamed ids vs one string per row.

``deepcore-prune --labels FILE`` (and ``--target-labels``) reads an ``.npy`` of ints or a
text file of class names. The former reader held every row's class name as a Python
string (≈ 60 bytes a row, 25 GB at 440M rows); :func:`deep_core.corpus.embed.load_labels`
now memory-maps the ``.npy`` and streams the text file into integer ids. Each reader runs
in its own process, so the peak RSS is its own::

    python benchmarks/bench_labels.py --n 10000000 --classes 1000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def read_as_strings(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The former reader (one string per row), for comparison."""
    from deep_core.corpus.embed import _natural

    if path.suffix == ".npy":
        names = [str(int(v)) for v in np.load(path)]
    else:
        lines = path.read_bytes().decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        names = [line.rstrip("\r") for line in lines]
    classes = tuple(sorted(set(names), key=_natural))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in names], dtype=np.int64), classes


def measure(which: str, path: Path, n: int) -> None:
    from deep_core.corpus.embed import load_labels

    t = time.process_time()
    ids, classes = read_as_strings(path) if which == "strings" else load_labels(path, n)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over the exec)
    status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
    peak = int(status.split()[0]) / 1024
    print(
        f"{path.suffix:5s} {which:8s} {time.process_time() - t:6.1f} CPU-s  peak RSS "
        f"{peak:6.0f} MiB  classes {len(classes)}  checksum {int(ids.sum())}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--measure", nargs=3, metavar=("WHICH", "PATH", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure[0], Path(args.measure[1]), int(args.measure[2]))
        return
    labels = np.random.default_rng(0).integers(0, args.classes, size=args.n)
    with tempfile.TemporaryDirectory() as tmp:
        npy, txt = Path(tmp) / "labels.npy", Path(tmp) / "labels.txt"
        np.save(npy, labels)
        txt.write_text("\n".join(f"class_{v:05d}" for v in labels) + "\n")
        del labels
        for path in (npy, txt):
            for which in ("strings", "streamed"):
                cmd = [sys.executable, __file__, "--measure", which, str(path), str(args.n)]
                subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
