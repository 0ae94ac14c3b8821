"""The steps of a run, in order: prepare data → signals → select → train → summarise.

Each step is a function of typed inputs with a typed result; :mod:`deep_core.runner`
calls them in this order inside a run directory. The run's learner and selection method
are built once (:class:`deep_core.recipe.Recipe`) and handed to every step. What only
rank 0 does under ``torchrun`` (write a file, select the subset) goes through
:mod:`deep_core.distributed`.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, distributed
from .budget import budget_size
from .config import RunConfig
from .datasets import NoisyDataset, load_dataset
from .engine import FitResult, Learner, TrainContext, Trainer, load_checkpoint
from .errors import DeepCoreError
from .io import write_text
from .methods.base import SelectionMethod
from .recipe import (
    Recipe,
    build_learner,
    build_recipe,
    check_learner_warmup,
    settings_without_effect,
    training_budget,
)
from .rundir import RunDir, settings_hash
from .signals import SNAPSHOT_SIGNALS, Signals
from .signals.recorder import WarmupConfig, warm_up_signals
from .subset import Subset, describe_quality, subset_quality

log = logging.getLogger("deep_core")


# ----------------------------------------------------------------------------------
# 1. Prepare data
# ----------------------------------------------------------------------------------
def load_data(cfg: RunConfig, seed: int) -> NoisyDataset:
    """The data set of ``cfg`` with the noise of ``seed``; a wrong ``--n-class`` is an error."""
    ds = load_dataset(replace(cfg.data, seed=seed))
    if cfg.n_class is not None and cfg.n_class != ds.num_classes:
        raise DeepCoreError(f"--n-class {cfg.n_class} but {ds.name} has {ds.num_classes} classes")
    return ds


# ----------------------------------------------------------------------------------
# 2. Signals: the selection warm-up (or the cache)
# ----------------------------------------------------------------------------------
@dataclass
class RecordedSignals:
    """What the selection method reads, with the report ``selection.json`` starts from.

    ``report`` holds ``ignored_options``, ``warmup_seconds``, ``protocol``,
    ``signal_view``, ``warmup_history`` (the warm-up's per-epoch rows, ``phase:
    "warmup"``, which the run writes at the head of ``metrics.jsonl``) and, after a
    warm-up, ``warmup_schedule_epochs`` and ``signals`` (cache keys and per-member
    reports).
    """

    signals: Signals
    report: dict[str, Any] = field(default_factory=dict)


#: per-epoch signals: only a trained warm-up has them (a loaded warm-up model does not)
_PER_EPOCH = frozenset(
    {"losses", "correct", "margins", "prob_margins", "label_probs", *SNAPSHOT_SIGNALS}
)


def _learner_key(learner: Learner) -> str:
    """Warm-up learner name and options, e.g. ``SOP{"lr_u": 10, ...}`` (the cache key part).

    SOP and SOP+ train different warm-ups and must not share cached signals.
    """
    options = learner.options()
    return type(learner).__name__ + (json.dumps(options, sort_keys=True) if options else "")


def signal_view(cfg: RunConfig, method: SelectionMethod) -> str:
    """The view ("clean" or "strong") ``method`` reads ``probs`` and ``features`` from.

    A method declares the view its reference reads (``reference_view``, default
    ``"clean"``; Prune4Rel: ``"strong"``); ``--protocol reference`` follows it,
    ``--protocol clean`` reads the clean view, ``--signal-view`` overrides both.
    """
    return cfg.view_for(getattr(type(method), "reference_view", "clean"))


def warmup_config(
    cfg: RunConfig,
    ds: NoisyDataset,
    seed: int,
    *,
    use_warm_model: bool = False,
    snapshots: bool = False,
    learner: Learner | None = None,
) -> WarmupConfig:
    """The warm-up (and cache key) of ``cfg``: only what changes the recorded signals.

    Under a protocol where some method reads the strong view (``reference``, or
    ``--signal-view strong``) every warm-up records it, so one warm-up serves every
    method of a sweep. ``snapshots``: the method reads the model of a given epoch
    (``--signal-epoch``); the warm-up then records every epoch's. ``learner``: the run's
    robust learner (built from ``cfg`` when not given), whose warm-up is recorded.
    """
    learner = learner if learner is not None else build_learner(cfg)
    epochs = 0 if use_warm_model else cfg.selection_epochs
    data = replace(cfg.data, seed=seed)
    return WarmupConfig(
        data_key={**data.__dict__, "fingerprint": ds.fingerprint()},
        learner=_learner_key(learner.warmup()),
        model=cfg.model or ds.default_model,
        epochs=epochs,
        train=replace(cfg.train, epochs=epochs, seed=seed),
        optim=cfg.optim,
        pretrained=cfg.pre_trained,
        model_path=cfg.model_path,
        schedule_epochs=cfg.schedule_horizon(),
        views=("clean", "strong") if cfg.view_for("strong") == "strong" else ("clean",),
        warm_model=cfg.warmup_model if use_warm_model else None,
        snapshots=snapshots,
    )


def signals_cache_dir(cfg: RunConfig) -> Path:
    """``--signals-cache``, by default ``OUT/signals-cache``."""
    return Path(cfg.signals_cache) if cfg.signals_cache else Path(cfg.out_dir) / "signals-cache"


def record_signals(recipe: Recipe, ds: NoisyDataset, *, seed: int) -> RecordedSignals:
    """The signals ``recipe.method`` reads: a warm-up of ``recipe.learner.warmup()`` (or the
    cache), or the labels alone for a method that needs no training."""
    cfg, method = recipe.cfg, recipe.method
    check_learner_warmup(recipe, num_classes=ds.num_classes)
    for name in recipe.unused_options:
        log.warning(
            "warning: --%s is not used by %s (ignored)", name.replace("_", "-"), cfg.selection
        )
    ignored = list(recipe.unused_options)
    for text in settings_without_effect(cfg):
        log.warning("warning: %s (ignored)", text)
        ignored.append(text.split(" ", 1)[0].lstrip("-"))
    view = signal_view(cfg, method)
    needed = set(method.required_signals())
    if view == "strong":
        needed |= {f"strong_{n}" for n in needed & {"probs", "features"}}
    report: dict[str, Any] = {
        "ignored_options": ignored,
        "warmup_seconds": 0.0,
        "protocol": cfg.protocol,
        "signal_view": view,
        "warmup_history": [],
    }
    if not needed - {"labels", "clean_labels"}:
        arrays = {"labels": ds.labels}
        if ds.clean_labels is not None:
            arrays["clean_labels"] = ds.clean_labels
        return RecordedSignals(Signals(arrays, num_classes=ds.num_classes), report)
    t0 = time.time()
    members = int(method.ensemble_size)
    use_warm = cfg.warmup_model is not None and members == 1 and not (needed & _PER_EPOCH)
    if cfg.warmup_model is not None and not use_warm:
        # as the reference, which trains Forgetting's warm-up even when pre-warmed
        log.warning(
            "warning: %s needs per-epoch signals or an ensemble: its warm-up is trained,"
            " --pre-warmed-filename is not used",
            cfg.selection,
        )
        report["ignored_options"].append("pre_warmed_filename")
    wcfg = warmup_config(
        cfg,
        ds,
        seed,
        use_warm_model=use_warm,
        snapshots=bool(needed & set(SNAPSHOT_SIGNALS)),
        learner=recipe.learner,
    )
    report["warmup_schedule_epochs"] = wcfg.horizon if wcfg.epochs else 0
    signals, sig_report = warm_up_signals(
        ds,
        recipe.learner.warmup,
        wcfg,
        members=members,
        cache_dir=signals_cache_dir(cfg),
        needed=needed,
    )
    for member in sig_report["members"]:
        report["warmup_history"].extend(member.pop("history", []))
    report["signals"] = sig_report
    report["warmup_seconds"] = round(time.time() - t0, 3)
    if view == "strong":
        signals = _read_strong_view(signals)
    return RecordedSignals(signals, report)


def _read_strong_view(signals: Signals) -> Signals:
    """``signals`` with ``probs``/``features`` taken from the strong-view pass."""
    signals.require(("strong_probs", "strong_features"), who="the strong signal view")
    arrays = signals.as_dict()
    arrays["probs"], arrays["features"] = arrays["strong_probs"], arrays["strong_features"]
    return Signals(arrays, num_classes=signals.num_classes, check_finite=False)


# ----------------------------------------------------------------------------------
# 3. Select
# ----------------------------------------------------------------------------------
def select(recipe: Recipe, recorded: RecordedSignals, *, seed: int) -> Subset:
    """The subset of ``recipe.method`` on the recorded signals.

    Selected once, on rank 0, so every rank trains on the same subset; ``recorded.report``
    gains ``selection_seconds`` and ``selection_info``.
    """
    t1 = time.time()
    method, fraction = recipe.method, recipe.cfg.fraction
    subset = distributed.from_main(method.select, recorded.signals, fraction, seed=seed)
    recorded.report["selection_seconds"] = round(time.time() - t1, 3)
    recorded.report["selection_info"] = subset.info
    return subset


def select_subset(cfg: RunConfig, ds: NoisyDataset, seed: int) -> tuple[Subset, dict[str, Any]]:
    """Signals and selection for ``cfg`` (steps 2 and 3); the subset and its report."""
    recipe = build_recipe(cfg)
    recorded = record_signals(recipe, ds, seed=seed)
    return select(recipe, recorded, seed=seed), recorded.report


# ----------------------------------------------------------------------------------
# 4. Train
# ----------------------------------------------------------------------------------
@dataclass
class Training:
    """The robust learner's training: its result and the epochs it was scheduled for."""

    fit: FitResult
    epochs: int


class _EpochLog:
    """``metrics.jsonl`` (rewritten every epoch), TensorBoard and a dynamic method's
    per-epoch subsets of a run directory: rank 0's record of the training epochs."""

    def __init__(self, run: RunDir, ctx: TrainContext, *, resume: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run, self.ctx = run, ctx
        self.epoch_subsets = run.read_epoch_subsets() if resume else {}
        self.history: list[dict[str, Any]] = []
        start = 0
        if resume and run.checkpoint.is_file():
            state = load_checkpoint(run.checkpoint)
            start = int(state["epoch"]) + 1
            self.history = list(state.get("history", []))
        self.writer = SummaryWriter(str(run.tb), purge_step=start)

    def __call__(self, row: dict[str, Any]) -> None:
        if self.ctx.dynamic is not None:
            self.epoch_subsets[int(row["epoch"])] = self.ctx.epoch_pool(int(row["epoch"]))
            self.run.write_epoch_subsets(self.epoch_subsets, self.ctx.dataset.labels.size)
        self.history.append(row)
        self.run.write_metrics(self.history)  # atomically, every epoch: a run can be followed
        for k, v in row.items():
            if k != "epoch" and isinstance(v, int | float):
                self.writer.add_scalar(k, v, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def train(
    recipe: Recipe,
    ds: NoisyDataset,
    subset: Subset,
    *,
    run: RunDir,
    seed: int,
    resume: bool,
) -> Training:
    """Train ``recipe.learner`` on ``subset`` (or a dynamic method's epochs) in ``run``.

    Checkpoints every epoch to ``run.checkpoint``; ``resume`` continues from it.
    """
    cfg, learner = recipe.cfg, recipe.learner
    dynamic = recipe.method if recipe.method.dynamic else None
    size = budget_size(ds.labels.size, cfg.fraction) if dynamic else len(subset)
    epochs, budget = training_budget(cfg, subset_size=size, learner=learner)
    if dynamic is not None:
        dynamic.start(
            labels=ds.labels,
            num_classes=ds.num_classes,
            fraction=cfg.fraction,
            epochs=epochs,
            seed=seed,
        )
    ctx = TrainContext(
        ds,
        subset.indices,
        replace(cfg.train, epochs=epochs, seed=seed),
        cfg.optim,
        model=cfg.model or ds.default_model,
        pretrained=cfg.pre_trained,
        model_path=cfg.model_path,
        dynamic=dynamic,
        budget=budget,
    )
    epoch_log = distributed.on_main(_EpochLog, run, ctx, resume=resume)
    trainer = Trainer(learner, ctx, checkpoint=run.checkpoint, on_epoch=epoch_log)
    try:
        fit = trainer.fit(resume=resume)
    finally:
        if epoch_log is not None:
            epoch_log.close()
    distributed.on_main(run.write_metrics, fit.history)
    return Training(fit, epochs)


# ----------------------------------------------------------------------------------
# 5. Summarise
# ----------------------------------------------------------------------------------
def subset_report(cfg: RunConfig, ds: NoisyDataset, subset: Subset) -> dict[str, Any]:
    """The subset's quality (:func:`deep_core.subset.subset_quality`), logged in one line."""
    quality = subset_quality(subset, ds.labels, ds.clean_labels, ds.num_classes)
    log.info(
        "selected %d of %d samples with %s: %s",
        quality["subset_size"],
        ds.labels.size,
        cfg.selection,
        describe_quality(quality, ds.labels, ds.clean_labels),
    )
    return quality


def summarise(
    recipe: Recipe,
    ds: NoisyDataset,
    *,
    run: RunDir,
    seed: int,
    quality: dict[str, Any],
    report: dict[str, Any],
    training: Training | None,
) -> dict[str, Any]:
    """``summary.json``: the run's settings, its subset's ``quality`` (:func:`subset_report`),
    the warm-up and selection ``report`` and, after training (``training``; None for a dry
    run), its accuracy and compute."""
    cfg = recipe.cfg
    summary: dict[str, Any] = {
        "run": run.path.name,
        "dataset": cfg.dataset,
        "noise_type": cfg.noise_type,
        "noise_rate": cfg.noise_rate,
        "full_noise_rate": ds.realised_noise_rate(),
        "selection": cfg.selection,
        "method_options": cfg.method_options,
        "robust_learner": cfg.robust_learner,
        "learner_options": cfg.learner_options,
        "model": cfg.model or ds.default_model,
        "fraction": cfg.fraction,
        "seed": seed,
        "epochs": cfg.epochs,
        "settings_hash": settings_hash(cfg),
        "last_acc": None,
        "best_acc": None,
        "best_epoch": None,
        "best_by": "val" if ds.val is not None else "test",
        **quality,
        "warmup_seconds": report.get("warmup_seconds", 0.0),
        "selection_seconds": report.get("selection_seconds"),
        "train_seconds": None,
        "budget": cfg.budget,
        "budget_value": cfg.budget_value,
        "ignored_options": report.get("ignored_options", []),
        "versions": versions(),
    }
    if training is None:
        return summary
    fit = training.fit
    summary.update(
        last_acc=fit.last_acc,
        best_acc=fit.best_acc,
        best_epoch=fit.best_epoch,
        best_by=fit.best_by,
        train_seconds=round(fit.seconds, 3),
        **compute_summary(fit.history, n=ds.labels.size, epochs=training.epochs),
    )
    summary["wall_seconds"] = round(
        sum(float(summary.get(k) or 0.0) for k in ("warmup_seconds", "selection_seconds"))
        + fit.seconds,
        3,
    )
    return summary


def compute_summary(history: list[dict[str, Any]], *, n: int, epochs: int) -> dict[str, Any]:
    """Compute used by a run, from its epoch rows.

    ``steps`` and ``samples_seen`` (totals), ``epochs_trained`` (a step or sample budget
    may end a run before its horizon ``epoch_horizon``), ``seen_fraction`` (mean share of the
    ``n`` training samples in an epoch's pool: InfoBatch's real kept ratio) and, where
    clean labels are known, ``mean_epoch_noise_rate`` (mean noise rate of the epochs' pools).
    """
    rows = [r for r in history if "steps" in r]
    noise = [r["subset_noise_rate"] for r in rows if "subset_noise_rate" in r]
    return {
        "steps": sum(int(r["steps"]) for r in rows),
        "samples_seen": sum(int(r["samples_seen"]) for r in rows),
        "epochs_trained": len(rows),
        "epoch_horizon": epochs,
        "seen_fraction": (
            sum(r["subset_size"] for r in rows) / (len(rows) * n) if rows and n else None
        ),
        "mean_epoch_noise_rate": float(np.mean(noise)) if noise else None,
    }


def versions() -> dict[str, str]:
    import faiss
    import torch

    return {
        "deep_core": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", "?"),
    }


def reference_log(recipe: Recipe, summary: dict[str, Any]) -> None:
    """``--save-log True``: the reference's one-row text log, named as the reference names it.

    Row: last and best accuracy, noise % of the subset, the subset's count per (present)
    class. Folder ``OUT/logs/<dataset>/<learner>/<selection>/``, for Prune4Rel one more
    level ``tau<tau>_eta<eta>_balance`` (or ``_unbalance``); file
    ``<noise>_r<rate>_<model>_fr<fraction>_trial<exp>_date<time>.txt``, so neither a tau/eta
    sweep nor a second trial overwrites a file.
    """
    from datetime import datetime

    cfg = recipe.cfg
    folder = Path(cfg.out_dir) / "logs" / cfg.dataset / cfg.robust_learner / cfg.selection
    if cfg.selection == "Prune4Rel":
        opts = recipe.method.options()
        balance = "balance" if opts.get("balance") else "unbalance"
        folder = folder / f"tau{opts.get('tau')}_eta{opts.get('eta')}_{balance}"
    row = [summary["last_acc"], summary["best_acc"], 100.0 * (summary["subset_noise_rate"] or 0.0)]
    row += [c for c in summary["class_counts"] if c]
    exp = int(summary["seed"]) - int(cfg.seed)
    name = (
        f"{cfg.noise_type}_r{cfg.noise_rate}_{summary['model']}_fr{cfg.fraction}"
        f"_trial{exp}_date{datetime.now()}.txt"
    )
    write_text(folder / name, " ".join(f"{float(v):f}" for v in row) + "\n")
