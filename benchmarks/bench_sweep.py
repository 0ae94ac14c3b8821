"""deepcore-sweep's overhead per run: Ray (local instance) and local engine vs direct launches.

The same N short Digits runs, one at a time (``--jobs 1``) so that only the overhead
differs: launched one by one with ``python -m deep_core.cli.run``, with
``deepcore-sweep --engine local`` and with ``deepcore-sweep --engine ray`` (which starts a
local Ray instance), in rounds whose order of modes rotates (the machine's load drifts).
Also times a sweep command over complete runs (its fixed cost) and a bare Ray start and
stop. Each mode writes its own folder, so each pays one warm-up.

    nice python benchmarks/bench_sweep.py [--runs 4] [--epochs 2] [--rounds 3]
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
    p.add_argument("--rounds", type=int, default=3, help="rounds, the order of modes rotated")
    a = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    py = sys.executable
    sys.path.insert(0, str(REPO))
    from deep_core.sweep import expand_grid, read_grid

    modes = ["direct", "local", "ray"]
    totals: dict[str, list[float]] = {m: [] for m in modes}
    skip_pass, ray_start = [], []
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(_grid(a.runs, a.epochs))
        flags, axes = read_grid(grid)
        cells = expand_grid(flags=flags, grid=axes)
        sweep = [py, "-m", "deep_core.cli.sweep", str(grid), "--jobs", "1", "--gpus-per-run", "0"]
        for r in range(a.rounds):
            order = modes[r % 3 :] + modes[: r % 3]
            for mode in order:
                out = f"{tmp}/{mode}{r}"
                if mode == "direct":
                    t = time.perf_counter()
                    for cell in cells:
                        subprocess.run([py, "-m", "deep_core.cli.run", *cell.argv, "--out-dir",
                                        out, "--device", "cpu"],
                                       env=env, check=True, capture_output=True)  # fmt: skip
                    totals[mode].append(time.perf_counter() - t)
                else:
                    totals[mode].append(_timed([*sweep, "--out-dir", out, "--engine", mode], env))
                    if mode == "local":  # everything complete: the command's fixed cost
                        skip_pass.append(_timed([*sweep, "--out-dir", out], env))
            ray_start.append(_timed([py, "-c", "import ray; ray.init(include_dashboard=False,"
                                     " object_store_memory=100 * 2**20); ray.shutdown()"],
                                    env))  # fmt: skip
            print(f"round {r} ({', '.join(order)}): "
                  + ", ".join(f"{m} {totals[m][-1]:.1f} s" for m in modes), flush=True)
    n = a.runs
    mean = {m: sum(v) / len(v) for m, v in totals.items()}
    print(f"{n} Digits runs (--epochs {a.epochs} -se 1 --n-train 300), one at a time,"
          f" mean of {a.rounds} rounds")  # fmt: skip
    d = mean["direct"]
    print(f"direct, one by one       : {d:7.1f} s  ({d / n:.1f} s per run)")
    for m in ("local", "ray"):
        over = (mean[m] - mean["direct"]) / n
        print(f"deepcore-sweep {m:<10}: {mean[m]:7.1f} s  (overhead {over:+.1f} s per run,"
              f" x{mean[m] / mean['direct']:.2f} of direct)")  # fmt: skip
    print(f"sweep command, all runs complete (start-up, grid check, skip): "
          f"{sum(skip_pass) / len(skip_pass):.1f} s")
    print(f"bare Ray start + stop: {sum(ray_start) / len(ray_start):.1f} s")


if __name__ == "__main__":
    main()
