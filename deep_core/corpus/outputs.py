"""The output folder of ``deepcore-prune``: written whole or not at all.

:class:`OutputDir` stages every output in a hidden folder and moves it into place on
:meth:`OutputDir.commit`. When the output folder did not exist before, the whole
folder is built under a temporary name and renamed at the end, so a failed run
leaves nothing behind; when it existed (a cache from an earlier run), the previous
outputs are replaced only once the new ones are complete.

Files:

- ``kept_keys.txt``: the kept keys, sorted, one per line;
- ``scores.csv``: ``key,group,score,kept`` for every sample, in input order;
- with ``--output-format parquet``, ``kept_keys.parquet`` (column ``key``) and
  ``scores.parquet`` (``key``, ``group``, ``score`` float64, ``kept`` bool) instead,
  written in row groups so that no text copy of a large corpus is built;
  both kinds are written one part of the keys at a time (:func:`write_key_outputs`),
  the kept keys sorted by merging each part's sorted run;
- ``<kind> samples/<key>``: copies of the kept images (``kind`` = hard, easy or kept);
- ``histograms/``: score histograms, all samples and per group (``--draw-histogram``);
- ``summary.json``: the method, its options and what it kept.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

import numpy as np

from ..errors import DeepCoreError
from ..io import atomic_open
from ..locks import remove_stale_temp, temp_prefix
from .keys import KeySource

if TYPE_CHECKING:
    from .ray_engine import RayEngine

#: outputs of an earlier run that a new run replaces (the cache and shards stay)
OUTPUT_NAMES = (
    "kept_keys.txt",
    "scores.csv",
    "kept_keys.parquet",
    "scores.parquet",
    "summary.json",
    "histograms",
    "hard samples",
    "easy samples",
    "kept samples",
)
#: ``--output-format`` choices
OUTPUT_FORMATS = ("text", "parquet")
#: rows per Parquet row group
PARQUET_ROWS = 1 << 20
#: kept keys joined per write of ``kept_keys.txt``
KEY_BATCH = 1 << 16
#: per-group histograms drawn at most (the largest groups)
MAX_GROUP_HISTOGRAMS = 50


class OutputDir:
    """Staging area for one run's outputs (context manager; call :meth:`commit`)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.existed = False
        self.root: Path | None = None
        self.stage: Path | None = None

    def __enter__(self) -> OutputDir:
        out = self.out
        if out.exists() and not out.is_dir():
            raise DeepCoreError(f"--out-dir {out} exists and is not a folder")
        self.existed = out.is_dir()
        if self.existed:
            self.root = out
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
        remove_stale_temp(self.root.parent)  # staging folders of killed runs
        remove_stale_temp(self.root)
        self.stage = Path(tempfile.mkdtemp(prefix=temp_prefix("stage"), dir=self.root))
        return self

    @property
    def cache_dir(self) -> Path:
        assert self.root is not None
        return self.root / "cache"

    @property
    def stage_dir(self) -> Path:
        """The staging folder the outputs are written to."""
        assert self.stage is not None
        return self.stage

    def path(self, name: str) -> Path:
        """Where to write output ``name`` (inside the stage)."""
        assert self.stage is not None
        return self.stage / name

    def commit(self) -> None:
        """Move the staged outputs into the output folder (replacing earlier ones)."""
        assert self.root is not None and self.stage is not None
        for name in OUTPUT_NAMES:
            old = self.root / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
        for item in sorted(self.stage.iterdir()):
            os.replace(item, self.root / item.name)
        self.stage.rmdir()
        self.stage = None
        if not self.existed:
            if self.out.exists():
                raise DeepCoreError(f"--out-dir {self.out} appeared while this run was writing")
            os.rename(self.root, self.out)
            self.root = self.out

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            return
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
        if not self.existed and self.root is not None and self.root != self.out:
            shutil.rmtree(self.root, ignore_errors=True)


def write_key_outputs(
    stage: Path,
    keys: KeySource,
    *,
    output_format: str,
    group_names: Sequence[str],
    groups: np.ndarray,
    scores: np.ndarray,
    kept: np.ndarray,
    engine: RayEngine | None = None,
) -> None:
    """The kept keys and the per-sample scores, written one part of ``keys`` at a time.

    Each part's keys are read once, by :func:`write_key_part`: its rows of the scores
    file go to a part file and its kept keys, sorted, to a run file. The driver then
    joins the part files in order and merges the runs into the sorted kept-keys file
    (:func:`join_key_parts`). Memory: one part's keys, then one read buffer per part.

    Parameters
    ----------
    stage : Path
        Folder the files are written to (:attr:`OutputDir.stage_dir`); the part files
        live in a temporary folder inside it.
    keys : KeySource
        Each row's key (N rows in ``keys.num_parts`` parts).
    output_format : {"text", "parquet"}
        ``kept_keys.txt`` and ``scores.csv``, or ``kept_keys.parquet`` and ``scores.parquet``.
    group_names : sequence of str
        Name of every group id.
    groups, scores, kept : ndarray, shape (N,)
        Each row's group id, score and whether it is kept.
    engine : RayEngine, optional
        Write the parts as Ray tasks (:func:`deep_core.corpus.ray_outputs.write_parts`);
        the stage must then be on a file system the workers share. None: in this process.
    """
    folder = Path(tempfile.mkdtemp(prefix=temp_prefix("key-parts"), dir=stage))
    try:
        names = np.asarray(group_names, dtype=object)
        if engine is None:
            for part in range(keys.num_parts):
                lo, hi = int(keys.offsets[part]), int(keys.offsets[part + 1])
                write_key_part(
                    keys, part, folder, output_format, names, groups[lo:hi], scores[lo:hi],
                    kept[lo:hi],
                )  # fmt: skip
        else:
            from .ray_outputs import write_parts

            write_parts(engine, keys, folder, output_format, names, groups, scores, kept)
        join_key_parts(stage, folder, keys.num_parts, output_format)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _part_names(folder: Path, part: int, output_format: str) -> tuple[Path, Path]:
    ext = "parquet" if output_format == "parquet" else "csv"
    return folder / f"scores-{part}.{ext}", folder / f"kept-{part}.txt"


def write_key_part(
    keys: KeySource,
    part: int,
    folder: Path,
    output_format: str,
    group_names: np.ndarray,
    groups: np.ndarray,
    scores: np.ndarray,
    kept: np.ndarray,
) -> None:
    """Part ``part``'s rows of the scores file and its kept keys, sorted, in ``folder``.

    ``group_names`` is every group id's name (an object array); ``groups`` (ids),
    ``scores`` and ``kept`` are the part's rows. Both files are written atomically, so
    a retried part replaces a lost attempt's files.
    """
    groups = group_names[groups]
    part_keys = keys.read(part)
    scores_path, run_path = _part_names(folder, part, output_format)
    if output_format == "parquet":
        _parquet_scores(scores_path, part_keys, groups, scores, kept)
    else:
        with atomic_open(scores_path, "w") as f:
            w = csv.writer(f, lineterminator="\n")
            for k, g, s, m in zip(part_keys, groups.tolist(), scores.tolist(), kept.tolist()):
                w.writerow([k, g, f"{s:.9g}", int(m)])
    run = sorted(part_keys[i] for i in np.flatnonzero(kept).tolist())
    del part_keys
    bad = next((k for k in run if "\n" in k), None)
    if bad is not None:
        raise DeepCoreError(f"the key {bad!r} has a line break")
    with atomic_open(run_path, "wb") as f:
        f.writelines((k + "\n").encode() for k in run)


_SCORES_HEADER = "key,group,score,kept\n"


def join_key_parts(stage: Path, folder: Path, num_parts: int, output_format: str) -> None:
    """``scores.*`` from the parts in order, ``kept_keys.*`` by merging the sorted runs."""
    paths = [_part_names(folder, part, output_format) for part in range(num_parts)]
    if output_format == "parquet":
        import pyarrow.parquet as pq

        with atomic_open(stage / "scores.parquet", "wb") as f:
            with pq.ParquetWriter(f, _scores_schema()) as w:
                for scores_path, _ in paths:
                    part = pq.ParquetFile(scores_path)
                    for i in range(part.num_row_groups):
                        w.write_table(part.read_row_group(i), row_group_size=PARQUET_ROWS)
    else:
        with atomic_open(stage / "scores.csv", "wb") as f:
            f.write(_SCORES_HEADER.encode())
            for scores_path, _ in paths:
                with open(scores_path, "rb") as part_file:
                    shutil.copyfileobj(part_file, f, 1 << 20)
    with contextlib.ExitStack() as stack:
        runs = [_read_run(stack.enter_context(open(run, encoding="utf-8", newline="\n")))
                for _, run in paths]  # fmt: skip
        merged = heapq.merge(*runs)
        if output_format == "parquet":
            _write_kept_parquet(stage / "kept_keys.parquet", merged)
        else:
            with atomic_open(stage / "kept_keys.txt", "w") as f:
                while chunk := list(itertools.islice(merged, KEY_BATCH)):
                    f.write("\n".join(chunk) + "\n")


def _read_run(f: IO[str]) -> Iterator[str]:
    for line in f:
        yield line[:-1]


def _scores_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("key", pa.string()),
            ("group", pa.string()),
            ("score", pa.float64()),
            ("kept", pa.bool_()),
        ]
    )


def _parquet_scores(
    path: Path, keys: list[str], groups: np.ndarray, scores: np.ndarray, kept: np.ndarray
) -> None:
    """``key, group, score`` (float64), ``kept`` (bool) rows as one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _scores_schema()
    columns = {
        "key": pa.array(keys, pa.string()),
        "group": pa.array(groups, pa.string()),
        "score": pa.array(np.asarray(scores, dtype=np.float64)),
        "kept": pa.array(np.asarray(kept, dtype=bool)),
    }
    with atomic_open(path, "wb") as f:
        pq.write_table(pa.table(columns, schema=schema), f, row_group_size=PARQUET_ROWS)


def _write_kept_parquet(path: Path, keys: Iterator[str]) -> None:
    """The kept keys, sorted, as a one-column (``key``) Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("key", pa.string())])
    with atomic_open(path, "wb") as f, pq.ParquetWriter(f, schema) as w:
        while chunk := list(itertools.islice(keys, PARQUET_ROWS)):
            w.write_table(pa.table({"key": pa.array(chunk, pa.string())}, schema=schema))


def copy_kept(
    dest: Path, root: Path, keys: Sequence[str], indices: np.ndarray, *, progress: bool
) -> None:
    """Copy the kept files, keeping their paths relative to ``root`` under ``dest``."""
    from tqdm import tqdm

    made: set[Path] = set()
    for i in tqdm(indices.tolist(), desc="copy", unit="file", disable=not progress, leave=False):
        target = dest / keys[i]
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        shutil.copy2(root / keys[i], target)


def draw_histograms(
    folder: Path,
    scores: np.ndarray,
    groups: np.ndarray,
    group_names: Sequence[str],
    kept: np.ndarray,
    *,
    title: str,
) -> int:
    """``all.png`` plus one PNG per group (the largest ``MAX_GROUP_HISTOGRAMS``).

    Kept and removed samples are stacked in two colours. Returns the number of files.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    finite = np.isfinite(scores)

    def draw(name: str, mask: np.ndarray, label: str) -> None:
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        s = scores[mask & finite]
        k = kept[mask & finite]
        bins = np.histogram_bin_edges(s, bins=40) if s.size else 10
        ax.hist([s[k], s[~k]], bins=bins, stacked=True, label=["kept", "removed"])
        ax.set_xlabel("score (higher = kept first)")
        ax.set_ylabel("samples")
        ax.set_title(f"{title}: {label} ({int(k.sum())} of {int(mask.sum())} kept)")
        ax.legend()
        with atomic_open(folder / name, "wb") as f:
            fig.savefig(f, format="png", dpi=80)

    draw("all.png", np.ones(scores.shape[0], dtype=bool), "all samples")
    sizes = np.bincount(groups)
    largest = np.lexsort((np.arange(sizes.size), -sizes))[:MAX_GROUP_HISTOGRAMS]
    count = 1
    for g in sorted(int(g) for g in largest if sizes[g] > 0):
        name = _safe_name(group_names[g]) or "_"
        draw(f"group-{name}.png", groups == g, f"group {group_names[g]}")
        count += 1
    return count


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
