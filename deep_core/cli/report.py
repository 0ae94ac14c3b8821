"""``deepcore-report``: the comparison table (and plots) of a folder of runs.

::

    deepcore-report runs/ --group-by robust_learner,selection,fraction --metric last \\
        [--format md|csv] [--output TABLE.md] [--plot PLOT.png] [--compute] \\
        [--plot-x fraction|steps|samples_seen|wall_seconds]

Prints mean ± std over seeds per group (with the run count), marks the best value of
each column, and lists incomplete runs. ``--compute`` adds the compute each group used
(steps, samples seen, wall time, share of the data per epoch, the epochs' noise rate);
``--plot-x`` puts a compute quantity on the plot's x axis instead of the fraction. Runs
of one group whose settings differ in anything but the seed are an error naming the
differing settings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import DeepCoreError
from ..report import METRICS, PLOT_X, build_report, parse_group_by, plot, write_report
from .common import ArgParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="deepcore-report",
        description="Aggregate run directories into a comparison table and plots.",
    )
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="folder holding run directories")
    p.add_argument(
        "--group-by",
        default="selection,fraction",
        help="comma-separated keys; the last one becomes the columns (default selection,fraction)",
    )
    p.add_argument(
        "--metric",
        default="last",
        choices=sorted(METRICS),
        help="test accuracy of the last epoch or of the best epoch (default last)",
    )
    p.add_argument("--format", default="md", choices=("md", "csv"), help="table format")
    p.add_argument("-o", "--output", metavar="FILE", help="write the table here (default stdout)")
    p.add_argument(
        "--plot",
        metavar="OUT.png",
        help="accuracy and subset noise rate against fraction (or --plot-x), per learner",
    )
    p.add_argument(
        "--compute",
        action="store_true",
        help="add compute columns: steps, samples seen, wall time, share seen per epoch,"
        " the epochs' noise rate",
    )
    p.add_argument(
        "--plot-x",
        dest="plot_x",
        default="fraction",
        choices=PLOT_X,
        help="x axis of --plot: the fraction (default) or the compute a group used",
    )
    return p


def _main(argv: Sequence[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    group_by = parse_group_by(ns.group_by)
    if ns.plot and ns.plot_x == "fraction" and "fraction" not in group_by:
        raise DeepCoreError("--plot draws against fraction: put fraction in --group-by")
    report = build_report(ns.runs_dir, group_by=group_by, metric=ns.metric, compute=ns.compute)
    text = write_report(report, fmt=ns.format, output=ns.output)
    if ns.plot:
        plot(report, ns.plot, x=ns.plot_x)
    if ns.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if report.n_incomplete:
        print(f"note: {report.n_incomplete} incomplete run(s) (no summary.json)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
