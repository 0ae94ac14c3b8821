"""``deepcore-sweep``: a grid of runs on Ray (one GPU, or N CPUs, per run) or in local processes.

::

    deepcore-sweep GRID.yaml --out-dir runs/c10n [--engine ray|local] [--address auto]
        [--gpus-per-run 1] [--cpus-per-run N] [--max-retries 2] [--jobs N]
        [--report [--group-by noise_type,selection,fraction]] [-- DEEPCORE-RUN FLAGS...]

The grid file is described in :mod:`deep_core.sweep`; flags after ``--`` go to every run,
after the grid's. ``--engine ray`` (the default when Ray is installed) starts a local Ray
instance, or joins the cluster at ``--address`` (``auto``: the one ``ray start`` made on
this machine); ``--engine local`` runs the grid in subprocesses of this command. Complete
runs are skipped, interrupted ones resumed, and a failed attempt is started again from its
checkpoint up to ``--max-retries`` times. Exit status 1 when some run still failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .common import ArgParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="deepcore-sweep",
        description="Run a grid of deepcore-run command lines on Ray or in local processes.",
        epilog="Flags after -- are deepcore-run flags given to every run.",
    )
    p.add_argument("grid", metavar="GRID.yaml", nargs="?",
                   help="'flags' for every run and 'grid' axes (flag: [values]); without it,"
                   " one run of the flags after --")  # fmt: skip
    p.add_argument("--out-dir", required=True, help="parent of the run directories")
    p.add_argument("--engine", choices=("ray", "local"),
                   help="ray (default when installed): Ray tasks; local: subprocesses"
                   " of this command")  # fmt: skip
    p.add_argument("--address",
                   help="Ray cluster to join (auto: the one started with `ray start` here);"
                   " default: start a local instance")  # fmt: skip
    p.add_argument("--gpus-per-run", type=int,
                   help="GPUs per run (several: one DDP process per GPU); default 1 where"
                   " GPUs are visible, else 0 (CPU)")  # fmt: skip
    p.add_argument("--cpus-per-run", type=int, default=1,
                   help="CPUs per run, also its OMP_NUM_THREADS (default 1)")  # fmt: skip
    p.add_argument("--max-retries", type=int, default=2,
                   help="new attempts, each resuming from the checkpoint, for a run that"
                   " failed (default 2)")  # fmt: skip
    p.add_argument("--jobs", type=int,
                   help="at most N runs at a time (default: as many as the resources hold)")
    p.add_argument("--report", action="store_true",
                   help="at the end, write OUT/report.md (and OUT/report.png) with deepcore-report")
    p.add_argument("--group-by", default="selection,fraction",
                   help="--report's grouping (default selection,fraction)")  # fmt: skip
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, extra = args[:cut], args[cut + 1 :]
    ns = build_parser().parse_args(args)

    from ..errors import DeepCoreError
    from ..sweep import default_engine, expand_grid, plan, read_grid, run_sweep

    if ns.engine == "ray" and default_engine() != "ray":
        raise DeepCoreError("--engine ray needs Ray: pip install 'deep-core-noisy[ray]'")
    flags, grid = read_grid(ns.grid) if ns.grid else ({}, {})
    cells = expand_grid(flags=flags, grid=grid, extra_argv=extra)
    jobs = plan(cells, out_dir=ns.out_dir)
    result = run_sweep(
        jobs,
        out_dir=ns.out_dir,
        engine=ns.engine or default_engine(),
        address=ns.address,
        gpus_per_run=ns.gpus_per_run,
        cpus_per_run=ns.cpus_per_run,
        max_retries=ns.max_retries,
        jobs_at_once=ns.jobs,
    )
    print(
        f"sweep: {len(result.completed)} run(s) completed, {len(result.skipped)} skipped"
        f" (complete), {len(result.failed)} failed, {result.retries} retried",
        file=sys.stderr,
    )
    if ns.report:
        from .report import main as report_main

        out = ns.out_dir.rstrip("/")
        report = ["--group-by", ns.group_by, "--output", f"{out}/report.md"]
        if "fraction" in ns.group_by.split(","):
            report += ["--plot", f"{out}/report.png"]
        code = report_main([out, *report])
        if code:
            return code
    if result.failed:
        print("failed: " + ", ".join(result.failed), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
