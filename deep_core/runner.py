"""One run end to end: data and noise → warm-up signals → selection → robust training.

This is the Python API behind ``deepcore-run`` / ``main_label_noise.py``::

    from deep_core.config import RunConfig
    from deep_core.runner import run_experiment
    summary = run_experiment(RunConfig(selection="SmallLoss", fraction=0.5, epochs=20))

Each run writes a directory (format: :mod:`deep_core.rundir`): ``config.yaml``, ``labels.npz``
(noisy and clean labels, so synthetic noise is saved with the run), ``subset.npz``,
``metrics.jsonl``, TensorBoard events under ``tb/``, ``checkpoint.pt`` and, at the
end, ``summary.json``. Every file is written atomically. Bad input is detected before
the directory is created; a failure on bad input found later (a corrupt image), or any
failure before the first checkpoint, removes the directory again, while an interrupted
run keeps its checkpoint for ``--resume``. ``manifest.json`` records the settings the
run started with (``--resume`` refuses an edited ``config.yaml``), and ``.lock`` keeps a
second process from training the same directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, distributed
from .budget import budget_size, check_fraction
from .checks import check_budget, check_output_folder, check_run_config
from .config import (
    SHARED_METHOD_OPTIONS,  # noqa: F401 (re-exported)
    RunConfig,
    read_yaml,
    takes_noise_rate,
)
from .datasets import DataConfig, NoisyDataset, dataset_names, load_dataset
from .engine import (
    Budget,
    Learner,
    OptimConfig,
    TrainConfig,
    TrainContext,
    Trainer,
    resolve_device,
)
from .errors import DeepCoreError, unknown_name
from .io import read_npz, write_text
from .locks import FolderLock, remove_stale_temp
from .logs import configure_logging  # noqa: F401 (re-exported)
from .methods import build_method
from .methods.base import SelectionMethod
from .nets import check_model_name, check_pretrained
from .run_manifest import RESUMABLE, check_run_manifest, write_run_manifest
from .rundir import NON_SETTINGS, RunDir, run_name, settings_hash  # noqa: F401 (re-exported)
from .signals import SNAPSHOT_SIGNALS, Signals
from .signals.recorder import WarmupConfig, warm_up_signals
from .subset import Subset, auroc, describe_quality, subset_quality  # noqa: F401 (auroc)

log = logging.getLogger("deep_core")


# ----------------------------------------------------------------------------------
# Validation and construction (nothing touches the disk here)
# ----------------------------------------------------------------------------------
def build_learner(cfg: RunConfig):
    """The robust learner of ``cfg`` with its options; unknown or bad options are errors."""
    from robust_learners import build_learner as build

    return build(cfg.robust_learner, cfg.learner_options)


def build_selection(cfg: RunConfig) -> tuple[SelectionMethod, dict[str, Any]]:
    """The selection method with its options; run-level ``device``/``workers`` passed on."""
    from .methods import get_method
    from .methods.base import option_names

    accepted = set(option_names(get_method(cfg.selection)))
    shared = {"device": str(resolve_device(cfg.device)), "workers": max(1, cfg.workers)}
    options = {k: v for k, v in shared.items() if k in accepted}
    options.update(cfg.method_options)
    return build_method(cfg.selection, options, strict=False)


def validate(cfg: RunConfig) -> None:
    """Check every setting that can be checked without loading data."""
    check_run_config(cfg)
    check_output_folder(cfg.out_dir, flag="--out-dir")
    if cfg.signals_cache:
        check_output_folder(cfg.signals_cache, flag="--signals-cache")
    if cfg.dataset not in dataset_names():
        raise unknown_name("dataset", cfg.dataset, dataset_names())
    check_fraction(cfg.fraction)
    if not 0.0 <= cfg.noise_rate < 1.0:
        raise DeepCoreError(f"noise rate must be in [0, 1), got {cfg.noise_rate}")
    if cfg.model is not None:
        check_model_name(cfg.model)
        check_pretrained(cfg.model, cfg.pre_trained, cfg.model_path)
    if cfg.num_exp < 1:
        raise DeepCoreError(f"--num_exp must be at least 1, got {cfg.num_exp}")
    if cfg.selection_epochs < 0:
        raise DeepCoreError(f"--selection_epochs must be >= 0, got {cfg.selection_epochs}")
    if cfg.model_path is not None and not Path(cfg.model_path).is_file():
        raise DeepCoreError(f"model weights not found: {cfg.model_path}")
    if cfg.warmup_model is not None and not Path(cfg.warmup_model).is_file():
        raise DeepCoreError(f"warm-up model not found: {cfg.warmup_model}")
    optim_config(cfg).validate()
    train_config(cfg, cfg.epochs, cfg.seed).validate()
    method, _ = build_selection(cfg)
    if cfg.selection_epochs < method.min_warmup_epochs():
        raise DeepCoreError(
            f"{cfg.selection} needs at least {method.min_warmup_epochs()} warm-up epochs "
            f"(-se), got {cfg.selection_epochs}"
        )
    epoch = getattr(method, "signal_epoch", None)
    if epoch is not None and epoch > cfg.selection_epochs:
        raise DeepCoreError(
            f"--signal-epoch {epoch} is past the warm-up's {cfg.selection_epochs} epochs (-se)"
        )
    learner = build_learner(cfg)
    _check_learner_warmup(cfg, learner)


#: classes of the named data sets (to check DivideMix's default warm-up before loading data)
_NUM_CLASSES = {"Digits": 10, "CIFAR10": 10, "CIFAR100": 100, "WebVision": 50, "Clothing1M": 14}


def _check_learner_warmup(
    cfg: RunConfig, learner: Learner, *, num_classes: int | None = None
) -> None:
    """A run whose learner's own warm-up covers every training epoch is an error (DivideMix).

    ``num_classes``: of the loaded data; before loading, the named data sets' are known.
    """
    resolve = getattr(learner, "training_warmup_epochs", None)
    classes = num_classes or cfg.n_class or _NUM_CLASSES.get(cfg.dataset)
    if resolve is None or classes is None:
        return  # checked again on the loaded data (select_subset)
    warmup = resolve(dataset=cfg.dataset, num_classes=classes)
    if cfg.epochs and warmup >= cfg.epochs:
        raise DeepCoreError(
            f"{cfg.robust_learner}'s warm-up ({warmup} epochs) covers all --epochs {cfg.epochs}:"
            " no epoch would train the learner itself; lower --warmup-epochs or raise --epochs"
        )


def settings_without_effect(cfg: RunConfig) -> list[str]:
    """Flags given (differing from their default) that this combination does not use.

    The reference sweeps pass the same optimiser and scheduler flags to every run, so
    these are warnings (logged and listed in ``summary.json`` as ``ignored_options``),
    like method options the chosen method does not take.
    """
    d = RunConfig()
    out = []
    if cfg.scheduler != "MultiStepLR" and cfg.milestone:
        out.append(f"--milestone (only MultiStepLR uses it; scheduler is {cfg.scheduler})")
    if cfg.scheduler != "StepLR" and cfg.step_size != d.step_size:
        out.append(f"--step_size (only StepLR uses it; scheduler is {cfg.scheduler})")
    if cfg.scheduler == "CosineAnnealingLR" and cfg.gamma != d.gamma:
        out.append("--gamma (CosineAnnealingLR does not use it)")
    if cfg.scheduler != "CosineAnnealingLR" and cfg.min_lr != d.min_lr:
        out.append(f"--min_lr (only CosineAnnealingLR uses it; scheduler is {cfg.scheduler})")
    if cfg.optimizer != "SGD":
        if cfg.momentum != d.momentum:
            out.append(f"--momentum ({cfg.optimizer} does not use it)")
        if cfg.nesterov != d.nesterov:
            out.append(f"--nesterov ({cfg.optimizer} does not use it)")
    if not takes_noise_rate(cfg.noise_type) and cfg.noise_rate:
        out.append(f"--noise-rate (noise type {cfg.noise_type} has no synthetic rate)")
    if cfg.image_size is not None and cfg.dataset in ("Digits", "CIFAR10", "CIFAR100"):
        out.append(f"--image-size (--resolution; {cfg.dataset} images keep their own size)")
    for name in sorted(cfg.reference_flags):
        out.append(f"--{name} (a reference flag that changes nothing here)")
    return out


def optim_config(cfg: RunConfig) -> OptimConfig:
    return OptimConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
        scheduler=cfg.scheduler,
        min_lr=cfg.min_lr,
        milestones=tuple(cfg.milestone) if cfg.milestone else None,
        gamma=cfg.gamma,
        step_size=int(cfg.step_size),
    )


def train_config(cfg: RunConfig, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=cfg.batch_size,
        test_batch_size=cfg.test_batch_size,
        seed=seed,
        device=cfg.device,
        workers=cfg.workers,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
        deterministic=cfg.deterministic,
        progress=cfg.progress,
    )


def data_config(cfg: RunConfig, seed: int) -> DataConfig:
    return DataConfig(
        dataset=cfg.dataset,
        data_path=cfg.data_path,
        noise_type=cfg.noise_type,
        noise_rate=cfg.noise_rate,
        seed=seed,
        n_train=cfg.n_train,
        download=cfg.download,
        image_size=cfg.image_size,
    )


def load_data(cfg: RunConfig, seed: int) -> NoisyDataset:
    ds = load_dataset(data_config(cfg, seed))
    if cfg.n_class is not None and cfg.n_class != ds.num_classes:
        raise DeepCoreError(f"--n-class {cfg.n_class} but {ds.name} has {ds.num_classes} classes")
    return ds


# ----------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------
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


def _attach_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    return handler


# ----------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------
def _learner_key(learner: Learner) -> str:
    """Warm-up learner name and options, e.g. ``SOP{"lr_u": 10, ...}`` (the cache key part).

    SOP and SOP+ train different warm-ups and must not share cached signals.
    """
    options = learner.options()
    return type(learner).__name__ + (json.dumps(options, sort_keys=True) if options else "")


#: per-epoch signals: only a trained warm-up has them (a loaded warm-up model does not)
_PER_EPOCH = frozenset(
    {"losses", "correct", "margins", "prob_margins", "label_probs", *SNAPSHOT_SIGNALS}
)


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
) -> WarmupConfig:
    """The warm-up (and cache key) of ``cfg``: only what changes the recorded signals.

    Under a protocol where some method reads the strong view (``reference``, or
    ``--signal-view strong``) every warm-up records it, so one warm-up serves every
    method of a sweep. ``snapshots``: the method reads the model of a given epoch
    (``--signal-epoch``); the warm-up then records every epoch's.
    """
    learner = build_learner(cfg).warmup()
    epochs = 0 if use_warm_model else cfg.selection_epochs
    return WarmupConfig(
        data_key={**data_config(cfg, seed).__dict__, "fingerprint": ds.fingerprint()},
        learner=_learner_key(learner),
        model=cfg.model or ds.default_model,
        epochs=epochs,
        train=train_config(cfg, epochs, seed),
        optim=optim_config(cfg),
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


def select_subset(cfg: RunConfig, ds: NoisyDataset, seed: int) -> tuple[Subset, dict[str, Any]]:
    """Warm-up (or the cache) and selection; returns the subset and a report for the log.

    The report's ``warmup_history`` holds the warm-up's per-epoch rows (``phase:
    "warmup"``), which the run writes at the head of ``metrics.jsonl``.
    """
    _check_learner_warmup(cfg, build_learner(cfg), num_classes=ds.num_classes)
    method, unused = build_selection(cfg)
    for name in sorted(unused):
        log.warning(
            "warning: --%s is not used by %s (ignored)", name.replace("_", "-"), cfg.selection
        )
    ignored = sorted(unused)
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
    t0 = time.time()
    if needed - {"labels", "clean_labels"}:
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
            cfg, ds, seed, use_warm_model=use_warm, snapshots=bool(needed & set(SNAPSHOT_SIGNALS))
        )
        report["warmup_schedule_epochs"] = wcfg.horizon if wcfg.epochs else 0
        cache = signals_cache_dir(cfg)
        signals, sig_report = warm_up_signals(
            ds,
            lambda: build_learner(cfg).warmup(),
            wcfg,
            members=members,
            cache_dir=cache,
            needed=needed,
        )
        for member in sig_report["members"]:
            report["warmup_history"].extend(member.pop("history", []))
        report["signals"] = sig_report
        report["warmup_seconds"] = round(time.time() - t0, 3)
        if view == "strong":
            signals = _read_strong_view(signals)
    else:
        arrays = {"labels": ds.labels}
        if ds.clean_labels is not None:
            arrays["clean_labels"] = ds.clean_labels
        signals = Signals(arrays, num_classes=ds.num_classes)
    t1 = time.time()
    # selected once, on rank 0, so every rank trains on the same subset
    subset = method.select(signals, cfg.fraction, seed=seed) if distributed.is_main() else None
    subset = distributed.broadcast_object(subset)
    report["selection_seconds"] = round(time.time() - t1, 3)
    report["selection_info"] = subset.info
    return subset, report


def _read_strong_view(signals: Signals) -> Signals:
    """``signals`` with ``probs``/``features`` taken from the strong-view pass."""
    signals.require(("strong_probs", "strong_features"), who="the strong signal view")
    arrays = signals.as_dict()
    arrays["probs"], arrays["features"] = arrays["strong_probs"], arrays["strong_features"]
    return Signals(arrays, num_classes=signals.num_classes, check_finite=False)


def run_experiment(cfg: RunConfig, *, exp: int = 0) -> dict[str, Any]:
    """Run experiment ``exp`` of ``cfg`` (seed ``cfg.seed + exp``); returns its summary."""
    validate(cfg)
    seed = cfg.seed + exp
    ds = load_data(cfg, seed)
    check_budget(len(ds.labels), cfg.fraction)
    distributed.init(resolve_device(cfg.device))  # the rank is known before any write
    run = RunDir(Path(cfg.out_dir) / run_name(cfg, seed))
    rank = distributed.rank()
    lock = None
    # folders this run creates, removed again if it fails while they are still empty
    made = [p for p in (Path(cfg.out_dir), signals_cache_dir(cfg)) if not p.exists()]
    problem = None
    if rank == 0:
        if run.path.exists() and _abandoned(run):
            log.info("replacing %s: an earlier attempt ended before its first checkpoint", run.path)
            shutil.rmtree(run.path)
        if run.path.exists():
            done = run.summary.is_file()
            hint = "it is complete" if done else f"resume it with --resume {run.path}"
            problem = f"run directory {run.path} already exists ({hint})"
        else:
            try:
                run.path.mkdir(parents=True)
                lock = FolderLock(run.path, what="run folder").acquire()
            except FileExistsError:
                problem = f"run directory {run.path} was just created by another process"
            except OSError as e:
                problem = f"cannot create run directory {run.path}: {e.strerror}"
            except DeepCoreError as e:  # locked by another process
                problem = str(e)
    problem = distributed.broadcast_object(problem)
    if problem is not None:
        raise DeepCoreError(problem)
    handler = _attach_log(run.log) if rank == 0 else None
    try:
        if rank == 0:
            settings = replace(cfg, seed=seed, num_exp=1)
            run.write_config(settings)
            write_run_manifest(run.path, settings.to_dict())
            run.write_labels(ds.labels, ids=ds.ids, clean_labels=ds.clean_labels)
        return _train_and_summarise(cfg, ds, run, seed, resume=False)
    except BaseException as e:
        # bad input found late, or any failure before the first checkpoint: nothing to resume
        if rank == 0 and (isinstance(e, DeepCoreError) or not run.checkpoint.is_file()):
            shutil.rmtree(run.path, ignore_errors=True)
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty
        raise
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if lock is not None:
            lock.release()


def _abandoned(run: RunDir) -> bool:
    """True for a run folder left without summary or checkpoint by a process now gone."""
    if run.summary.is_file() or run.checkpoint.is_file() or not run.path.is_dir():
        return False
    try:
        with FolderLock(run.path, what="run folder"):
            return True
    except DeepCoreError:
        return False


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
    validate(cfg)
    ds = load_data(cfg, cfg.seed)
    labels = read_npz(run.labels, "labels")
    if not np.array_equal(labels, ds.labels):
        raise DeepCoreError(f"the noisy labels of {run.path} differ from the data set's now")
    distributed.init(resolve_device(cfg.device))  # the rank is known before any write
    lock = FolderLock(run.path, what="run folder").acquire() if distributed.is_main() else None
    try:
        handler = None
        if lock is not None:
            remove_stale_temp(run.path)
            handler = _attach_log(run.log)
        try:
            return _train_and_summarise(cfg, ds, run, cfg.seed, resume=True)
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()
    finally:
        if lock is not None:
            lock.release()


def training_budget(
    cfg: RunConfig, *, subset_size: int, learner: Learner
) -> tuple[int, Budget | None]:
    """Epochs (the learning-rate schedule's horizon) and the step/sample budget of a run.

    ``--budget epochs``: ``--budget-value`` (default ``--epochs``) epochs, no budget.
    ``--budget steps``: ``V`` optimisation steps; the horizon is the epochs the subset
    (``subset_size`` samples per epoch: the subset, or a dynamic method's
    ``round(fraction · N)``) needs for them, ``⌈V / (⌈size / batch⌉ · u)⌉`` with ``u``
    the learner's network updates per batch (:attr:`Learner.updates_per_batch`).
    ``--budget samples``: ``V`` training samples, ``⌈V / (size · u)⌉`` epochs. Training
    stops when the budget is spent, in the middle of an epoch if need be; an epoch with
    fewer samples than ``size`` (InfoBatch's pruned epochs, DivideMix's labeled part)
    leaves part of the budget unused at the horizon (``steps``/``samples_seen`` in the
    summary say what was used).
    """
    if cfg.budget == "epochs":
        return (cfg.budget_value if cfg.budget_value is not None else cfg.epochs), None
    value = int(cfg.budget_value)
    u = int(learner.updates_per_batch)
    per_epoch = -(-subset_size // cfg.batch_size) * u if cfg.budget == "steps" else subset_size * u
    budget = Budget(cfg.budget, value)
    budget.validate()
    return -(-value // max(per_epoch, 1)), budget


def _train_and_summarise(
    cfg: RunConfig, ds: NoisyDataset, run: RunDir, seed: int, *, resume: bool
) -> dict[str, Any]:
    rank = distributed.rank()
    if resume and run.subset.is_file() and (run.path / "selection.json").is_file():
        subset = run.read_subset()
        report = run.read_selection()
        log.info("subset of %d samples read from %s", len(subset), run.subset)
    else:
        subset, report = select_subset(cfg, ds, seed)
        if rank == 0:
            run.write_subset(subset)
            run.write_selection(report)
            run.write_metrics([])  # the warm-up's rows, also for a dry run
    quality = subset_quality(subset, ds.labels, ds.clean_labels, ds.num_classes)
    log.info(
        "selected %d of %d samples with %s: %s",
        quality["subset_size"],
        ds.labels.size,
        cfg.selection,
        describe_quality(quality, ds.labels, ds.clean_labels),
    )
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
    if cfg.dry_run:
        if rank == 0:
            run.write_summary({**summary, "dry_run": True})
        return summary
    learner = build_learner(cfg)
    model = cfg.model or ds.default_model
    method = build_selection(cfg)[0]
    dynamic = method if method.dynamic else None
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
        train_config(cfg, epochs, seed),
        optim_config(cfg),
        model=model,
        pretrained=cfg.pre_trained,
        model_path=cfg.model_path,
        dynamic=dynamic,
        budget=budget,
    )
    epoch_subsets = run.read_epoch_subsets() if (resume and rank == 0) else {}
    writer = None
    history: list[dict[str, Any]] = []
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        start = 0
        if resume and run.checkpoint.is_file():
            from .engine import load_checkpoint

            state = load_checkpoint(run.checkpoint)
            start = int(state["epoch"]) + 1
            history = list(state.get("history", []))
        writer = SummaryWriter(str(run.tb), purge_step=start)

    def on_epoch(row: dict[str, Any]) -> None:
        if dynamic is not None:
            epoch_subsets[int(row["epoch"])] = ctx.epoch_pool(int(row["epoch"]))
            run.write_epoch_subsets(epoch_subsets, ds.labels.size)
        history.append(row)
        run.write_metrics(history)  # atomically, every epoch: a running run can be followed
        for k, v in row.items():
            if k != "epoch" and isinstance(v, int | float):
                writer.add_scalar(k, v, row["epoch"])
        writer.flush()

    trainer = Trainer(learner, ctx, checkpoint=run.checkpoint, on_epoch=on_epoch)
    try:
        result = trainer.fit(resume=resume)
    finally:
        if writer is not None:
            writer.close()
    if rank == 0:
        run.write_metrics(result.history)
    summary.update(
        last_acc=result.last_acc,
        best_acc=result.best_acc,
        best_epoch=result.best_epoch,
        best_by=result.best_by,
        train_seconds=round(result.seconds, 3),
        **compute_summary(result.history, n=ds.labels.size, epochs=epochs),
    )
    summary["wall_seconds"] = round(
        sum(float(summary.get(k) or 0.0) for k in ("warmup_seconds", "selection_seconds"))
        + result.seconds,
        3,
    )
    if rank == 0:
        run.write_summary(summary)
        if cfg.save_log:
            _reference_log(cfg, summary)
    log.info(
        "done: last acc %s, best acc %s (best chosen on %s) -> %s",
        _fmt(result.last_acc),
        _fmt(result.best_acc),
        result.best_by,
        run.path,
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


def _reference_log(cfg: RunConfig, summary: dict[str, Any]) -> None:
    """``--save-log True``: the reference's one-row text log, named as the reference names it.

    Row: last and best accuracy, noise % of the subset, the subset's count per (present)
    class. Folder ``OUT/logs/<dataset>/<learner>/<selection>/``, for Prune4Rel one more
    level ``tau<tau>_eta<eta>_balance`` (or ``_unbalance``); file
    ``<noise>_r<rate>_<model>_fr<fraction>_trial<exp>_date<time>.txt``, so neither a tau/eta
    sweep nor a second trial overwrites a file.
    """
    from datetime import datetime

    folder = Path(cfg.out_dir) / "logs" / cfg.dataset / cfg.robust_learner / cfg.selection
    if cfg.selection == "Prune4Rel":
        opts = build_selection(cfg)[0].options()
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


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"
