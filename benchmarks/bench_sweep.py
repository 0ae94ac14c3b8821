"""deepcore-sweep's overhead per run: Ray (local instance) and local engine vs direct launches.

The same N short Digits runs, one at a time (``--jobs 1``) so that only the overhead
differs: launched one by one with ``python -m deep_core.cli.run``, with
``deepcore-sweep --engine local`` and with ``deepcore-sweep --engine ray`` (which starts a
local Ray instance). Also times a bare Ray start and stop. Each mode writes its own
folder, so each pays one warm-up.

    nice python benchmarks/bench_sweep.py [--runs 4] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _grid(runs: int, epochs: int) -> str:
    fractions = ", ".join(f"{0.2 + 0.1 * k:.1f}" for k in range(runs))
    return (
        f"flags:\n  epochs: {epochs}\n  se: 1\n  n-train: 300\n  progress: false\n"
        f"  selection: SmallLoss\ngrid:\n  fraction: [{fractions}]\n"
    )


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "RAY_AUTH_MODE": "disabled"}  # fmt: skip
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(_grid(a.runs, a.epochs))
        sys.path.insert(0, str(REPO))
        from deep_core.sweep import expand_grid, read_grid

        flags, axes = read_grid(grid)
        cells = expand_grid(flags=flags, grid=axes)
        t = time.perf_counter()
        for cell in cells:
            subprocess.run([py, "-m", "deep_core.cli.run", *cell.argv, "--out-dir",
                            f"{tmp}/direct", "--device", "cpu"],
                           env=env, check=True, capture_output=True)  # fmt: skip
        direct = time.perf_counter() - t
        sweep = [py, "-m", "deep_core.cli.sweep", str(grid), "--jobs", "1", "--gpus-per-run", "0"]
        local = _timed([*sweep, "--out-dir", f"{tmp}/local", "--engine", "local"], env)
        ray = _timed([*sweep, "--out-dir", f"{tmp}/ray", "--engine", "ray"], env)
        ray_start = _timed([py, "-c", "import ray; ray.init(include_dashboard=False,"
                            " object_store_memory=100 * 2**20); ray.shutdown()"], env)  # fmt: skip
    n = a.runs
    print(f"{n} Digits runs (--epochs {a.epochs} -se 1 --n-train 300), one at a time")
    print(f"direct, one by one       : {direct:7.1f} s  ({direct / n:.1f} s per run)")
    for name, total in (("deepcore-sweep local", local), ("deepcore-sweep ray", ray)):
        print(f"{name:<25}: {total:7.1f} s  (overhead {(total - direct) / n:+.1f} s per run,"
              f" x{total / direct:.2f} of direct)")  # fmt: skip
    print(f"bare Ray start + stop    : {ray_start:7.1f} s")
    print(f"ray overhead without start-up: {(ray - direct - ray_start) / n:+.1f} s per run")


if __name__ == "__main__":
    main()
