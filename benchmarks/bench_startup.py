"""Start-up cost of each command: wall time and peak RSS of ``--help`` (and ``--list``).

Each command runs in a fresh interpreter exactly as its console script does
(``from deep_core.cli.X import main; sys.exit(main())``); the child's peak RSS comes
from ``os.wait4``. With ``--baseline DIR`` (another checkout of the project, e.g.
``git archive <rev> | tar -x -C DIR``) the two trees alternate run by run, so that
both see the same machine load and the ratio is fair on a shared machine.

Usage::

    python benchmarks/bench_startup.py [--repeat 5] [--baseline /tmp/base]

Prints the median wall time, CPU time (user + system, less sensitive to a busy
machine than wall time) and peak RSS, and whether torch / faiss were imported, per
command and tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS = [
    ("deepcore-run --help", "run", ["--help"]),
    ("deepcore-select --help", "select", ["--help"]),
    ("deepcore-select --list", "select", ["--list"]),
    ("deepcore-prune --help", "prune", ["--help"]),
    ("deepcore-report --help", "report", ["--help"]),
]

_CHILD = """\
import sys
from deep_core.cli.{module} import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = [m for m in ("torch", "faiss") if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def measure(tree: Path, module: str, args: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and the heavy modules imported."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(module=module), *args],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed in {tree}:\n{err}")
    heavy = next((ln[6:] for ln in err.splitlines() if ln.startswith("HEAVY=")), "?")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0, heavy or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per command and tree")
    ap.add_argument("--baseline", type=Path, help="another checkout to compare against")
    args = ap.parse_args()
    trees = [("this tree", REPO)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", args.baseline.resolve()))
    rows = []
    for label, module, cli_args in COMMANDS:
        results: dict[str, list[tuple[float, float, float, str]]] = {n: [] for n, _ in trees}
        measure(trees[-1][1], module, cli_args)  # warm the page cache once
        for _ in range(args.repeat):
            for name, tree in trees:
                results[name].append(measure(tree, module, cli_args))
        for name, _ in trees:
            runs = results[name]
            rows.append(
                (
                    label,
                    name,
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                    statistics.median(r[2] for r in runs),
                    runs[-1][3],
                )
            )
    print(
        f"| command | tree | wall s (median of {args.repeat}) | CPU s | peak RSS (MiB) | imports |"
    )
    print("|---|---|---:|---:|---:|---|")
    for label, name, wall, cpu, rss, heavy in rows:
        print(f"| `{label}` | {name} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {heavy} |")


if __name__ == "__main__":
    main()
