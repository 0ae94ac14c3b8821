"""``deepcore-select``: select a subset from signals you bring yourself.

::

    deepcore-select --signals SIGNALS.npz --selection SmallLoss --fraction 0.3 \\
        [--balance True] [--uncertainty Margin] [--tau 0.95] ... --out SUBSET.npy
    deepcore-select --run RUN_DIR --selection Prune4Rel --fraction 0.2 --out SUBSET.npy
    deepcore-select --list

``--run`` takes the signals of a finished ``deepcore-run`` (its labels and its cached
warm-up, :meth:`~deep_core.signals.Signals.from_run`), so one warm-up serves any method
afterwards. The ``.npz`` holds ``labels`` (noisy, int) and whatever the method needs: ``probs``
(N, C), ``features`` (N, d), ``losses`` / ``correct`` / ``margins`` (N, E),
``grad_norms`` (M, N), ``member_probs`` (M, N, C); see :mod:`deep_core.signals`. The
output is the selected indices as a sorted int64 ``.npy``, written atomically. Method
options use the same flags as ``main_label_noise.py`` (:mod:`deep_core.cli.method_args`);
a flag the chosen method does not take is reported on stderr, never silently dropped.

Where the signals hold clean labels, the report gives the label-issue precision and recall
of the pruned-away set (the samples not kept) next to those of cleanlab's
``find_label_issues`` on the same ``probs``, when cleanlab is installed (it is a test
dependency only; a line says when it is missing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from ..checks import check_budget
from ..errors import DeepCoreError
from ..io import save_npy
from ..logs import configure_logging
from ..methods import build_method, list_methods
from ..signals import Signals
from ..subset import Subset, describe_quality, subset_quality
from .common import ArgParser, run_cli
from .method_args import add_method_arguments, method_options_from_args, unused_option_warnings


def build_parser() -> argparse.ArgumentParser:
    """The ``deepcore-select`` argument parser."""
    p = ArgParser(
        prog="deepcore-select",
        description="Select a training subset from per-sample signals in an .npz file.",
    )
    p.add_argument("--list", action="store_true", help="print the registered methods and exit")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--signals", metavar="FILE.npz", help="signals file (labels, probs, ...)")
    src.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="take the signals of a deepcore-run run directory (its cached warm-up)",
    )
    p.add_argument(
        "--signals-cache",
        dest="signals_cache",
        metavar="DIR",
        help="with --run: the signal cache the run used (default: as the run recorded it)",
    )
    p.add_argument("--selection", metavar="NAME", help="method name (case-sensitive; see --list)")
    p.add_argument("--fraction", type=float, metavar="F", help="fraction of samples kept, (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--n-class",
        dest="num_classes",
        type=int,
        default=None,
        help="number of classes (default: width of probs, else max label + 1)",
    )
    p.add_argument("--out", metavar="SUBSET.npy", help="where to write the sorted int64 indices")
    add_method_arguments(p)
    return p


def _precision_recall(flagged: np.ndarray, noisy: np.ndarray) -> str:
    """``precision P, recall R (K samples)`` of a flagged set against the true label issues."""
    k, hits = int(flagged.sum()), int((flagged & noisy).sum())
    precision = f"{hits / k:.4g}" if k else "n/a"
    recall = f"{hits / int(noisy.sum()):.4g}" if noisy.any() else "n/a"
    return f"precision {precision}, recall {recall} ({k:,} samples)"


def label_issue_lines(subset: Subset, signals: Signals) -> list[str]:
    """Label-issue precision/recall of the pruned-away set and of cleanlab on the same probs.

    Parameters
    ----------
    subset : Subset
        The selection; every sample it does not keep counts as flagged.
    signals : Signals
        With ``clean_labels`` (the true issues are ``labels != clean_labels``) and, for the
        cleanlab line, ``probs`` (``cleanlab.filter.find_label_issues``, default
        ``filter_by="prune_by_noise_rate"``, one process).

    Returns
    -------
    list of str
        One or two report lines; each says why when a figure cannot be given.
    """
    clean = signals.get("clean_labels")
    if clean is None:
        return ["label issues: n/a (the signals hold no clean labels)"]
    noisy = signals.labels != clean
    pruned = ~subset.mask()
    lines = [
        f"label issues ({int(noisy.sum()):,} of {len(signals):,}): pruned-away set "
        + _precision_recall(pruned, noisy)
    ]
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        lines.append("cleanlab is not installed: no cross-check (pip install cleanlab)")
        return lines
    if "probs" not in signals:
        lines.append("cleanlab cross-check: n/a (the signals hold no probs)")
        return lines
    probs = np.asarray(signals.probs, dtype=np.float64)
    try:
        flagged = find_label_issues(signals.labels, probs, n_jobs=1)
    except ValueError as e:  # e.g. a class without samples
        lines.append(f"cleanlab find_label_issues failed: {str(e).splitlines()[0]}")
        return lines
    found = _precision_recall(np.asarray(flagged, dtype=bool), noisy)
    lines.append(f"cleanlab find_label_issues on the same probs: {found}")
    return lines


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        methods = list_methods()
        width = max((len(n) for n in methods), default=0)
        for name, summary in methods.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    missing = [f for f in ("selection", "fraction", "out") if getattr(args, f) is None]
    if args.signals is None and args.run is None:
        missing.insert(0, "signals (or --run)")
    if missing:
        raise DeepCoreError("missing " + ", ".join("--" + m for m in missing) + " (or use --list)")
    if args.signals_cache is not None and args.run is None:
        raise DeepCoreError("--signals-cache goes with --run")
    method, unused = build_method(
        args.selection, method_options_from_args(args), strict=False
    )
    for line in unused_option_warnings(args.selection, unused):
        print(line, file=sys.stderr)
    if args.run is not None:
        signals = Signals.from_run(
            args.run, cache_dir=args.signals_cache, num_classes=args.num_classes
        )
    else:
        signals = Signals.from_npz(args.signals, num_classes=args.num_classes)
    check_budget(len(signals), args.fraction)
    configure_logging(verbose=False)  # library warnings (an approximate selection) on stderr
    subset = method.select(signals, args.fraction, seed=args.seed)
    save_npy(args.out, np.asarray(subset.indices, dtype=np.int64))
    print(
        f"{method!r}: kept {len(subset):,} of {len(signals):,} samples "
        f"(fraction {args.fraction}) -> {args.out}"
    )
    quality = subset_quality(
        subset, signals.labels, signals.get("clean_labels"), signals.num_classes
    )
    print(describe_quality(quality, signals.labels, signals.get("clean_labels")))
    for line in label_issue_lines(subset, signals):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; bad input prints one ``error:`` line and returns 2."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
