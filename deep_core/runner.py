"""One run end to end: data and noise → warm-up signals → selection → robust training.

This is the Python API behind ``deepcore-run`` / ``main_label_noise.py``::

    from deep_core.config import RunConfig
    from deep_core.runner import run_experiment
    summary = run_experiment(RunConfig(selection="SmallLoss", fraction=0.5, epochs=20))

A run reads top to bottom in :func:`_run`: the steps of :mod:`deep_core.steps` (prepare
data → signals → select → train → summarise) on the :class:`~deep_core.recipe.Recipe`
built once by :func:`~deep_core.recipe.validate`. This module owns the run directory
around them.

Each run writes a directory (format: :mod:`deep_core.rundir`): ``config.yaml``, ``labels.npz``
(noisy and clean labels, so synthetic noise is saved with the run), ``subset.npz``,
``metrics.jsonl``, TensorBoard events under ``tb/``, ``checkpoint.pt`` and, at the
end, ``summary.json``. Every file is written atomically, by rank 0 under ``torchrun``
(:mod:`deep_core.distributed`). Bad input is detected before the directory is created; a
failure on bad input found later (a corrupt image), or any failure before the first
checkpoint, removes the directory again, while an interrupted run keeps its checkpoint
for ``--resume``. ``manifest.json`` records the settings the run started with
(``--resume`` refuses an edited ``config.yaml``), and ``.lock`` keeps a second process
from training the same directory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .checks import check_budget
from .config import (
    SHARED_METHOD_OPTIONS,  # noqa: F401 (re-exported)
    RunConfig,
    read_yaml,
)
from .datasets import NoisyDataset
from .engine import resolve_device
from .errors import DeepCoreError
from .io import read_npz
from .locks import FolderLock, remove_stale_temp
from .logs import configure_logging  # noqa: F401 (re-exported)
from .recipe import (  # noqa: F401 (re-exported)
    Recipe,
    build_learner,
    build_selection,
    settings_without_effect,
    training_budget,
    validate,
)
from .run_manifest import RESUMABLE, check_run_manifest, write_run_manifest
from .rundir import NON_SETTINGS, RunDir, run_name, settings_hash  # noqa: F401 (re-exported)
from .steps import (  # noqa: F401 (some re-exported)
    compute_summary,
    load_data,
    record_signals,
    reference_log,
    select,
    select_subset,
    signal_view,
    signals_cache_dir,
    subset_report,
    summarise,
    train,
    versions,
    warmup_config,
)
from .subset import Subset, auroc  # noqa: F401 (auroc re-exported)

log = logging.getLogger("deep_core")


# ----------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------
def run_experiment(cfg: RunConfig, *, exp: int = 0) -> dict[str, Any]:
    """Run experiment ``exp`` of ``cfg`` (seed ``cfg.seed + exp``); returns its summary."""
    recipe = validate(cfg)
    seed = cfg.seed + exp
    ds = load_data(cfg, seed)
    check_budget(len(ds.labels), cfg.fraction)
    distributed.init(resolve_device(cfg.device))  # the rank is known before any write
    with _new_run_folder(cfg, seed, ds) as run:
        return _run(recipe, ds, run, seed, resume=False)


def resume_experiment(
    path: str | Path, *, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Continue the run in ``path`` from its checkpoint to the same final result."""
    run = RunDir(path)
    if not run.is_run():
        raise DeepCoreError(f"{run.path} is not a run directory (no config.yaml and labels.npz)")
    if run.summary.is_file():
        raise DeepCoreError(f"run {run.path} is already complete (summary.json exists)")
    bad = sorted(set(overrides or {}) - set(RESUMABLE))
    if bad:
        raise DeepCoreError(
            f"--resume takes the run's own settings; cannot change: {', '.join(bad)}"
        )
    values = read_yaml(run.config)
    if not values:
        raise DeepCoreError(f"{run.config} is empty; restore it or start the run again")
    cfg = RunConfig.from_dict(values, source=str(run.config))
    check_run_manifest(run.path, cfg.to_dict())
    cfg = replace(cfg, **(overrides or {}))
    recipe = validate(cfg)
    ds = load_data(cfg, cfg.seed)
    labels = read_npz(run.labels, "labels")
    if not np.array_equal(labels, ds.labels):
        raise DeepCoreError(f"the noisy labels of {run.path} differ from the data set's now")
    distributed.init(resolve_device(cfg.device))  # the rank is known before any write
    with _resumed_run_folder(run):
        return _run(recipe, ds, run, cfg.seed, resume=True)


def _run(
    recipe: Recipe, ds: NoisyDataset, run: RunDir, seed: int, *, resume: bool
) -> dict[str, Any]:
    """Signals → select → train → summarise on the prepared data ``ds``, in ``run``.

    A resumed run reads its subset back instead of selecting again.
    """
    cfg = recipe.cfg
    if resume and run.subset.is_file() and run.selection.is_file():
        subset, report = run.read_subset(), run.read_selection()
        log.info("subset of %d samples read from %s", len(subset), run.subset)
    else:
        recorded = record_signals(recipe, ds, seed=seed)
        subset = select(recipe, recorded, seed=seed)
        report = recorded.report
        distributed.on_main(_write_selection, run, subset, report)
    quality = subset_report(cfg, ds, subset)
    if cfg.dry_run:
        summary = summarise(
            recipe, ds, run=run, seed=seed, quality=quality, report=report, training=None
        )
        distributed.on_main(run.write_summary, {**summary, "dry_run": True})
        return summary
    training = train(recipe, ds, subset, run=run, seed=seed, resume=resume)
    summary = summarise(
        recipe, ds, run=run, seed=seed, quality=quality, report=report, training=training
    )
    distributed.on_main(_write_summary, recipe, run, summary)
    fit = training.fit
    log.info(
        "done: last acc %s, best acc %s (best chosen on %s) -> %s",
        _fmt(fit.last_acc),
        _fmt(fit.best_acc),
        fit.best_by,
        run.path,
    )
    return summary


def _write_selection(run: RunDir, subset: Subset, report: dict[str, Any]) -> None:
    run.write_subset(subset)
    run.write_selection(report)
    run.write_metrics([])  # the warm-up's rows, also for a dry run


def _write_summary(recipe: Recipe, run: RunDir, summary: dict[str, Any]) -> None:
    run.write_summary(summary)
    if recipe.cfg.save_log:
        reference_log(recipe, summary)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


# ----------------------------------------------------------------------------------
# The run directory
# ----------------------------------------------------------------------------------
class _Hold:
    """Rank 0's hold on a run directory: its ``.lock`` and its log file (``log.txt``)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._lock: FolderLock | None = None
        self._handler: logging.Handler | None = None

    def lock(self) -> None:
        self._lock = FolderLock(self.run.path, what="run folder").acquire()

    def attach_log(self) -> None:
        handler = logging.FileHandler(self.run.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        self._handler = handler

    def release(self) -> None:
        """Detach the log and drop the lock (nothing to do where none is held)."""
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


@contextlib.contextmanager
def _new_run_folder(cfg: RunConfig, seed: int, ds: NoisyDataset) -> Iterator[RunDir]:
    """The directory of a new run: created and locked by rank 0, with its settings and labels.

    An existing directory is an error on every rank (unless abandoned before its first
    checkpoint: then it is replaced). A run that fails on bad input, or before its first
    checkpoint, removes the directory again, and the output folders it created if empty.
    """
    run = RunDir(Path(cfg.out_dir) / run_name(cfg, seed))
    # folders this run creates, removed again if it fails while they are still empty
    made = [p for p in (Path(cfg.out_dir), signals_cache_dir(cfg)) if not p.exists()]
    hold = _Hold(run)
    distributed.from_main(_create, hold)
    distributed.on_main(hold.attach_log)
    try:
        distributed.on_main(_write_start, run, replace(cfg, seed=seed, num_exp=1), ds)
        yield run
    except BaseException as e:
        distributed.on_main(_remove_failed, run, made, e)
        raise
    finally:
        hold.release()


@contextlib.contextmanager
def _resumed_run_folder(run: RunDir) -> Iterator[RunDir]:
    """The directory of an interrupted run, locked by rank 0 and cleared of stale temp files."""
    hold = _Hold(run)
    distributed.from_main(hold.lock)
    try:
        distributed.on_main(remove_stale_temp, run.path)
        distributed.on_main(hold.attach_log)
        yield run
    finally:
        hold.release()


def _create(hold: _Hold) -> None:
    run = hold.run
    if run.path.exists() and _abandoned(run):
        log.info("replacing %s: an earlier attempt ended before its first checkpoint", run.path)
        shutil.rmtree(run.path)
    if run.path.exists():
        done = run.summary.is_file()
        hint = "it is complete" if done else f"resume it with --resume {run.path}"
        raise DeepCoreError(f"run directory {run.path} already exists ({hint})")
    try:
        run.path.mkdir(parents=True)
    except FileExistsError:
        raise DeepCoreError(
            f"run directory {run.path} was just created by another process"
        ) from None
    except OSError as e:
        raise DeepCoreError(f"cannot create run directory {run.path}: {e.strerror}") from None
    hold.lock()  # a DeepCoreError while another process holds it


def _write_start(run: RunDir, settings: RunConfig, ds: NoisyDataset) -> None:
    run.write_config(settings)
    write_run_manifest(run.path, settings.to_dict())
    run.write_labels(ds.labels, ids=ds.ids, clean_labels=ds.clean_labels)


def _remove_failed(run: RunDir, made: list[Path], error: BaseException) -> None:
    # bad input found late, or any failure before the first checkpoint: nothing to resume
    if isinstance(error, DeepCoreError) or not run.checkpoint.is_file():
        shutil.rmtree(run.path, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def _abandoned(run: RunDir) -> bool:
    """True for a run folder left without summary or checkpoint by a process now gone."""
    if run.summary.is_file() or run.checkpoint.is_file() or not run.path.is_dir():
        return False
    try:
        with FolderLock(run.path, what="run folder"):
            return True
    except DeepCoreError:
        return False
