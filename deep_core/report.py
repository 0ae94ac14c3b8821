"""Comparison tables and plots from a tree of run directories.

A sweep (``scripts/*.sh``) leaves one run directory per (method, fraction, seed) under
one folder. :func:`build_report` reads every run below it, groups the runs by the
chosen keys (default ``selection, fraction``) and aggregates over seeds::

    from deep_core.report import build_report, render_markdown
    report = build_report("runs/", group_by=["robust_learner", "selection", "fraction"])
    print(render_markdown(report))

Rules that keep a table honest:

* Runs of one group must differ only by seed (and the other ``NON_SETTINGS`` of
  :mod:`deep_core.rundir`: device, workers, output folder...). Otherwise the report is
  an error naming the differing settings, so that e.g. 10- and 300-epoch runs are never
  averaged together; add the key to ``group_by`` to compare them instead.
* A run directory without ``summary.json`` (crashed, or still running) is listed as
  incomplete, with its group and last logged epoch, never silently dropped.
* Dry runs (``--dry-run``: selection only) are not runs of a group: they have no
  accuracy and never count as an extra seed.
* Means come with the sample standard deviation over seeds (``ddof=1``; none for a
  single run) and the number of runs; the best value of each column is marked.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DeepCoreError, unknown_name
from .io import atomic_open, write_text
from .rundir import NON_SETTINGS, RESULT_KEYS, RUN_MARKERS, RunDir, find_run_dirs

#: ``--metric`` name → summary key
METRICS = {"last": "last_acc", "best": "best_acc"}
#: compute a run used (``--compute`` columns, ``--plot-x`` axes): summary key → title
COMPUTE = {
    "steps": "Optimisation steps",
    "samples_seen": "Training samples seen",
    "wall_seconds": "Wall time (s: warm-up, selection, training)",
    "seen_fraction": "Share of the training set per epoch",
    "mean_epoch_noise_rate": "Mean noise rate of the epochs' training samples (%)",
}
#: ``--plot-x``: the x axis of :func:`plot`
PLOT_X = ("fraction", "steps", "samples_seen", "wall_seconds")
@dataclass(frozen=True)
class Quantity:
    """One aggregated number per group: where it comes from and which way is better."""

    name: str
    title: str
    key: str
    higher_is_better: bool
    scale: float = 1.0
    digits: int = 2


def compute_quantity(key: str) -> Quantity:
    """The :data:`COMPUTE` quantity ``key`` (lower is better; a noise rate in %)."""
    if key not in COMPUTE:
        raise unknown_name("compute quantity", key, COMPUTE)
    scale = 100.0 if key == "mean_epoch_noise_rate" else 1.0
    digits = 0 if key in ("steps", "samples_seen") else 2
    return Quantity(key, COMPUTE[key], key, False, scale, digits)


def quantities(metric: str, *, compute: bool = False) -> list[Quantity]:
    """Accuracy (``metric``), subset noise rate (%) and selection time (s); with
    ``compute`` also the :data:`COMPUTE` quantities (steps, samples, wall time...)."""
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS)
    acc = "last-epoch" if metric == "last" else "best-epoch"
    extra = [compute_quantity(k) for k in COMPUTE] if compute else []
    return [
        Quantity("acc", f"Test accuracy (%), {acc}", METRICS[metric], True),
        Quantity("subset_noise_rate", "Subset noise rate (%)", "subset_noise_rate", False, 100.0),
        Quantity(
            "selection_seconds",
            "Selection time (s, warm-up excluded)",
            "selection_seconds",
            False,
        ),
        *extra,
    ]


# ----------------------------------------------------------------------------------
# Reading runs
# ----------------------------------------------------------------------------------
@dataclass
class Run:
    """One run directory: its summary (None while incomplete) and its config."""

    path: Path
    summary: dict[str, Any] | None
    config: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return self.summary is not None

    def get(self, key: str) -> Any:
        """A value from the summary, else from the config (``model`` resolved first).

        ``robust_learner`` is the learner's label (:func:`learner_label`: SOP or SOP+).
        """
        for source in (self.summary, self.config):
            if source is not None and key in source:
                if key == "robust_learner":
                    return learner_label(source[key], source.get("learner_options") or {})
                return source[key]
        return _MISSING

    def settings(self) -> dict[str, Any]:
        """Every setting except those that may differ between seeds of one group."""
        if self.config is not None:
            base = {k: v for k, v in self.config.items() if k not in NON_SETTINGS}
        else:
            base = {
                k: v
                for k, v in (self.summary or {}).items()
                if k not in RESULT_KEYS and k not in NON_SETTINGS
            }
        return _flatten(base)

    def progress(self) -> str:
        """Last logged epoch and age of the newest file, for an incomplete run."""
        parts = []
        epoch = RunDir(self.path).last_logged_epoch()
        if epoch is not None:
            total = (self.config or {}).get("epochs")
            parts.append(f"last logged epoch {epoch}" + (f" of {total}" if total else ""))
        else:
            parts.append("no epoch logged")
        newest = max((p.stat().st_mtime for p in self.path.iterdir() if p.is_file()), default=None)
        if newest is not None:
            parts.append(f"last written {_age(time.time() - newest)} ago")
        return ", ".join(parts)


def learner_label(name: str, options: dict[str, Any]) -> str:
    """The learner as the papers name it: SOP with a positive consistency (``-rc``) or
    class-balance (``-rb``) weight is SOP+ (Liu et al. 2022); others keep their name."""
    plus = ("ratio_consistency", "ratio_balance")
    if name == "SOP" and any(_finite(options.get(k)) and options[k] > 0 for k in plus):
        return "SOP+"
    return name


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


_MISSING = _Missing()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def find_runs(root: str | Path) -> list[Run]:
    """Every run directory below ``root`` (:func:`deep_core.rundir.find_run_dirs`).

    Dry runs (selection only) are left out: they have no accuracy to aggregate.
    """
    runs = (Run(d.path, d.read_summary(), d.read_config()) for d in find_run_dirs(root))
    return [r for r in runs if r.get("dry_run") is not True]


# ----------------------------------------------------------------------------------
# Grouping and statistics
# ----------------------------------------------------------------------------------
@dataclass
class Stat:
    """Mean, sample standard deviation and count of the non-missing values."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None], scale: float = 1.0) -> Stat:
        v = np.asarray([float(x) * scale for x in values if x is not None and _finite(x)])
        if v.size == 0:
            return cls(None, None, 0)
        return cls(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None, int(v.size))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(float(x))


@dataclass
class Group:
    """The runs sharing one value of every group key."""

    key: tuple[Any, ...]
    runs: list[Run] = field(default_factory=list)

    @property
    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.complete]

    @property
    def incomplete(self) -> list[Run]:
        return [r for r in self.runs if not r.complete]

    def stat(self, q: Quantity) -> Stat:
        return Stat.of((r.summary.get(q.key) for r in self.complete), q.scale)

    def value(self, key: str) -> Any:
        """A value shared by all runs of the group (e.g. ``robust_learner``), else absent."""
        values = {_hashable(r.get(key)) for r in self.runs}
        return values.pop() if len(values) == 1 else _MISSING

    def seeds(self) -> list[int]:
        return sorted(int(s) for r in self.complete if isinstance(s := r.get("seed"), int))


@dataclass
class Report:
    """Grouped runs, ready to be rendered as a table or a plot."""

    root: Path
    group_by: list[str]
    metric: str
    groups: list[Group]
    unplaced: list[Run]  # incomplete runs without a config (group unknown)
    compute: bool = False  # the compute columns too (see :data:`COMPUTE`)

    @property
    def quantities(self) -> list[Quantity]:
        return quantities(self.metric, compute=self.compute)

    @property
    def n_complete(self) -> int:
        return sum(len(g.complete) for g in self.groups)

    @property
    def n_incomplete(self) -> int:
        return sum(len(g.incomplete) for g in self.groups) + len(self.unplaced)

    def best_by(self) -> list[str]:
        """Which split chose the "best" epoch in these runs (``val`` / ``test``)."""
        return sorted(
            {
                str(r.summary.get("best_by"))
                for g in self.groups
                for r in g.complete
                if r.summary.get("best_by")
            }
        )


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _sort_key(v: Any) -> tuple:
    if isinstance(v, bool) or v is None or v is _MISSING:
        return (2, str(v))
    if isinstance(v, int | float):
        return (0, float(v), "")
    return (1, str(v))


def parse_group_by(text: str | Sequence[str]) -> list[str]:
    """``"selection,fraction"`` → ``["selection", "fraction"]`` (no empties, no repeats)."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    keys = [k.strip().replace("-", "_") for k in parts]
    keys = [k for k in keys if k]
    if not keys:
        raise DeepCoreError("--group-by needs at least one key, e.g. selection,fraction")
    if len(set(keys)) != len(keys):
        raise DeepCoreError(f"--group-by repeats a key: {','.join(keys)}")
    if "seed" in keys:
        raise DeepCoreError("--group-by seed makes no sense: the report aggregates over seeds")
    return keys


def build_report(
    root: str | Path,
    *,
    group_by: Sequence[str] = ("selection", "fraction"),
    metric: str = "last",
    compute: bool = False,
) -> Report:
    """Read the runs below ``root`` and group them by ``group_by``.

    Parameters
    ----------
    root : path
        Folder holding run directories (at any depth).
    group_by : sequence of str, default=("selection", "fraction")
        Summary or config keys; runs sharing their values are aggregated over seeds.
        The last key becomes the table's columns.
    metric : {"last", "best"}, default="last"
        Test accuracy of the last epoch, or of the epoch chosen by ``best_by``.
    compute : bool, default=False
        Add the compute each group used (:data:`COMPUTE`: steps, samples seen, wall
        time, share seen per epoch, the epochs' noise rate) as further quantities.

    Raises
    ------
    DeepCoreError
        No runs, an unknown group key, unreadable files, or runs of one group whose
        settings differ beyond the seed (the message names the differing keys).
    """
    group_by = parse_group_by(group_by)
    quantities(metric)  # validates the name
    runs = find_runs(root)
    if not runs:
        markers = ", ".join(RUN_MARKERS)
        raise DeepCoreError(f"no run directories below {root} (looked for {markers})")
    placed = [r for r in runs if r.complete or r.config is not None]
    unplaced = [r for r in runs if r not in placed]
    known = sorted(
        {k for r in placed for src in (r.summary, r.config) if src for k in src} - RESULT_KEYS
    )
    for k in group_by:
        if k not in known:
            raise unknown_name("--group-by key", k, known)
    groups: dict[tuple, Group] = {}
    for r in placed:
        key = tuple(_hashable(r.get(k)) for k in group_by)
        groups.setdefault(key, Group(key)).runs.append(r)
    ordered = sorted(groups.values(), key=lambda g: tuple(_sort_key(v) for v in g.key))
    for g in ordered:
        check_same_settings(g, group_by)
    return Report(Path(root), list(group_by), metric, ordered, unplaced, compute)


def check_same_settings(group: Group, group_by: Sequence[str]) -> None:
    """Raise if runs of ``group`` differ in any setting other than the seed."""
    if len(group.runs) < 2:
        return
    settings = [r.settings() for r in group.runs]
    keys = sorted(set().union(*settings) - set(group_by))
    differing = []
    for k in keys:
        values = [s.get(k, _MISSING) for s in settings]
        if len({repr(v) for v in values}) > 1:
            seen: dict[str, str] = {}
            for v, r in zip(values, group.runs, strict=True):
                seen.setdefault(repr(v), r.path.name)
            examples = ", ".join(f"{v} in {name}" for v, name in list(seen.items())[:2])
            differing.append(f"{k} ({examples})")
    if differing:
        label = ", ".join(f"{k}={_fmt_value(v)}" for k, v in zip(group_by, group.key, strict=True))
        raise DeepCoreError(
            f"runs of group {label} differ in settings other than the seed: "
            f"{'; '.join(differing)}; add the key to --group-by or report the runs separately"
        )


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------
def _fmt_value(v: Any) -> str:
    if v is _MISSING or v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "[" + ",".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _fmt_stat(s: Stat, digits: int) -> str:
    if s.mean is None:
        return "-"
    text = f"{s.mean:.{digits}f}"
    if s.std is not None:
        text += f" ± {s.std:.{digits}f}"
    return text


def _layout(report: Report) -> tuple[list[tuple], list[Any], dict[tuple, dict[Any, Group]]]:
    """Rows (all group keys but the last), columns (values of the last), cells."""
    rows: list[tuple] = []
    cols: list[Any] = []
    cells: dict[tuple, dict[Any, Group]] = {}
    for g in report.groups:
        row, col = g.key[:-1], g.key[-1]
        if row not in cells:
            rows.append(row)
            cells[row] = {}
        if col not in cols:
            cols.append(col)
        cells[row][col] = g
    rows.sort(key=lambda r: tuple(_sort_key(v) for v in r))
    cols.sort(key=_sort_key)
    return rows, cols, cells


def best_groups(report: Report, q: Quantity) -> set[tuple]:
    """Keys of the groups holding the best mean of ``q`` in their column (ties included).

    Nothing is marked in a column with fewer than two groups that have a value.
    """
    rows, cols, cells = _layout(report)
    best: set[tuple] = set()
    for c in cols:
        scored = [(g.stat(q).mean, g.key) for r in rows if (g := cells[r].get(c)) is not None]
        scored = [(m, k) for m, k in scored if m is not None]
        if len(scored) < 2:
            continue
        target = max(m for m, _ in scored) if q.higher_is_better else min(m for m, _ in scored)
        # Compare at display precision so that equal-looking values tie.
        best.update(k for m, k in scored if round(m, q.digits) == round(target, q.digits))
    return best


def render_markdown(report: Report) -> str:
    """One Markdown table per quantity: rows = leading group keys, columns = the last key."""
    rows, cols, cells = _layout(report)
    row_keys, col_key = report.group_by[:-1], report.group_by[-1]
    out = [f"# Runs in `{report.root}`", ""]
    line = f"{report.n_complete} complete runs in {len(report.groups)} groups"
    if report.n_incomplete:
        line += f", {report.n_incomplete} incomplete (listed below)"
    out += [
        line + ".",
        "Cells: mean ± sample std over seeds (runs); best of each column in bold.",
        "",
    ]
    if report.metric == "best":
        chosen = ", ".join(report.best_by()) or "-"
        out += [f"Best epoch chosen on: {chosen}.", ""]
    header = [*row_keys, *(f"{col_key}={_fmt_value(c)}" for c in cols)]
    for q in report.quantities:
        best = best_groups(report, q)
        out += [
            f"## {q.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] * len(row_keys) + ["---:"] * len(cols)) + "|",
        ]
        for r in rows:
            line_cells = [_fmt_value(v) for v in r]
            for c in cols:
                g = cells[r].get(c)
                if g is None:
                    line_cells.append("")
                    continue
                s = g.stat(q)
                text = _fmt_stat(s, q.digits)
                if g.key in best:
                    text = f"**{text}**"
                extra = f", +{len(g.incomplete)} incomplete" if g.incomplete else ""
                line_cells.append(f"{text} ({len(g.complete)}{extra})")
            out.append("| " + " | ".join(line_cells) + " |")
        out.append("")
    incomplete = [(g, r) for g in report.groups for r in g.incomplete]
    incomplete += [(None, r) for r in report.unplaced]
    if incomplete:
        out += ["## Incomplete runs (no summary.json: crashed or still running)", ""]
        for g, r in incomplete:
            where = (
                "group "
                + ", ".join(
                    f"{k}={_fmt_value(v)}" for k, v in zip(report.group_by, g.key, strict=True)
                )
                if g is not None
                else "no config.yaml"
            )
            out.append(
                f"- `{r.path.relative_to(report.root) if r.path != report.root else r.path}`"
                f": {where}; {r.progress()}"
            )
        out.append("")
    return "\n".join(out)


def render_csv(report: Report) -> str:
    """One row per group: keys, run counts, seeds, and mean/std/best flag per quantity."""
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    qs = report.quantities
    header = [*report.group_by, "runs", "incomplete", "seeds"]
    for q in qs:
        header += [f"{q.name}_mean", f"{q.name}_std", f"{q.name}_best"]
    w.writerow(header)
    best = {q.name: best_groups(report, q) for q in qs}
    for g in report.groups:
        row: list[Any] = [_fmt_value(v) for v in g.key]
        row += [len(g.complete), len(g.incomplete), " ".join(map(str, g.seeds()))]
        for q in qs:
            s = g.stat(q)
            row += [
                "" if s.mean is None else f"{s.mean:.6g}",
                "" if s.std is None else f"{s.std:.6g}",
                int(g.key in best[q.name]),
            ]
        w.writerow(row)
    return buf.getvalue()


def render(report: Report, fmt: str) -> str:
    """``md`` or ``csv``."""
    if fmt == "md":
        return render_markdown(report)
    if fmt == "csv":
        return render_csv(report)
    raise unknown_name("format", fmt, ("md", "csv"))


def plot(report: Report, path: str | Path, *, x: str = "fraction") -> None:
    """Accuracy and subset noise rate against ``x``: one row of two panels per
    learner (and per value of any group key other than the series key), one line per
    value of the series key (``selection`` when grouped by it, else the last non-fraction
    key), with error bars of one standard deviation. Written atomically as PNG (Agg).

    ``x`` is ``fraction`` (a group key) or a compute quantity of :data:`PLOT_X`
    (``steps``, ``samples_seen``, ``wall_seconds``: each group's mean), so methods can
    be compared at equal compute.
    """
    if x not in PLOT_X:
        raise unknown_name("plot x axis", x, PLOT_X)
    if x == "fraction" and "fraction" not in report.group_by:
        raise DeepCoreError("--plot draws against fraction: put fraction in --group-by")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = report.group_by
    if x == "fraction":
        fi = keys.index("fraction")

        def xval(g: Group) -> float | None:
            return float(g.key[fi])
    else:
        xq = compute_quantity(x)

        def xval(g: Group) -> float | None:
            return g.stat(xq).mean
    others = [k for k in keys if k not in ("fraction", "robust_learner")]
    series_key = "selection" if "selection" in others else (others[-1] if others else None)
    panel_keys = [k for k in others if k != series_key]
    panels: dict[tuple, list[Group]] = {}
    for g in report.groups:
        panel = (_fmt_value(g.value("robust_learner")),
                 *(_fmt_value(g.key[keys.index(k)]) for k in panel_keys))  # fmt: skip
        panels.setdefault(panel, []).append(g)
    qs = report.quantities[:2]
    fig = Figure(figsize=(11, 3.8 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for row, (panel, groups) in enumerate(sorted(panels.items())):
        series: dict[Any, list[Group]] = {}
        for g in groups:
            label = g.key[keys.index(series_key)] if series_key else "runs"
            series.setdefault(label, []).append(g)
        title = ", ".join([panel[0], *(f"{k}={v}" for k, v in zip(panel_keys, panel[1:],
                                                                   strict=True))])  # fmt: skip
        for qi, q in enumerate(qs):
            ax = axes[row][qi]
            for si, label in enumerate(sorted(series, key=_sort_key)):
                pts = [(xval(g), g.stat(q)) for g in series[label]]
                pts = sorted((p for p in pts if p[0] is not None and p[1].mean is not None),
                             key=lambda p: p[0])  # fmt: skip
                if not pts:
                    continue
                ax.errorbar(
                    [px for px, _ in pts],
                    [st.mean for _, st in pts],
                    yerr=[st.std or 0.0 for _, st in pts],
                    label=_fmt_value(label),
                    capsize=3,
                    marker="os^vD<>ph*"[si % 10],
                    color=_color(si),
                    linewidth=1.2,
                    markersize=4,
                )
            # ticks at the fractions run (matplotlib's automatic ones around a single
            # fraction are offsets like "+4.999e-1"), with room on both sides
            if x == "fraction":
                xs = sorted({float(g.key[fi]) for g in groups})
                pad = 0.1 * (xs[-1] - xs[0]) if len(xs) > 1 else 0.1 * max(xs[0], 0.1)
                ax.set_xlim(xs[0] - pad, xs[-1] + pad)
                ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.set_xlabel("fraction kept" if x == "fraction" else COMPUTE[x])
            ax.set_ylabel(q.title)
            ax.set_title(f"{title}: {q.title.split(' (')[0].lower()}")
            ax.grid(alpha=0.3)
        handles, labels = axes[row][0].get_legend_handles_labels()
        if handles:
            axes[row][1].legend(handles, labels, fontsize=7, loc="center left",
                                bbox_to_anchor=(1.02, 0.5), frameon=False)  # fmt: skip
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def _color(i: int) -> Any:
    """Ten distinct colours, then the lighter tab20 shades."""
    from matplotlib import colormaps

    if i < 10:
        return colormaps["tab10"](i)
    return colormaps["tab20"]((2 * (i - 10) + 1) % 20)


def write_report(report: Report, *, fmt: str = "md", output: str | Path | None = None) -> str:
    """Render ``report``; write it atomically to ``output`` if given. Returns the text."""
    text = render(report, fmt)
    if output is not None:
        write_text(output, text)
    return text
