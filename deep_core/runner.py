"""One run end to end: data and noise → warm-up signals → selection → robust training.

This is the Python API behind ``deepcore-run`` / ``main_label_noise.py``::

    from deep_core.config import RunConfig
    from deep_core.runner import run_experiment
    summary = run_experiment(RunConfig(selection="SmallLoss", fraction=0.5, epochs=20))

Each run writes a directory (see :class:`RunDir`): ``config.yaml``, ``labels.npz``
(noisy and clean labels, so synthetic noise is saved with the run), ``subset.npz``,
``metrics.jsonl``, TensorBoard events under ``tb/``, ``checkpoint.pt`` and, at the
end, ``summary.json``. Every file is written atomically. Bad input is detected before
the directory is created; a failure on bad input found later (a corrupt image) removes
the directory again, while an interrupted run keeps its checkpoint for ``--resume``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, distributed
from .budget import check_fraction
from .config import RunConfig, dump_yaml, read_yaml, takes_noise_rate
from .datasets import DataConfig, NoisyDataset, dataset_names, load_dataset
from .engine import Learner, OptimConfig, TrainConfig, TrainContext, Trainer, resolve_device
from .errors import DeepCoreError, unknown_name
from .io import save_npz, write_json, write_text
from .methods import build_method
from .methods.base import SelectionMethod
from .nets import check_model_name, check_pretrained
from .signals import Signals
from .signals.recorder import WarmupConfig, warm_up_signals
from .subset import Subset, auroc, describe_quality, subset_quality  # noqa: F401 (auroc)

log = logging.getLogger("deep_core")

#: settings that may differ between runs of one group (they do not change the method)
NON_SETTINGS = (
    "seed",
    "num_exp",
    "device",
    "workers",
    "out_dir",
    "progress",
    "signals_cache",
    "save_log",
    "data_path",
    "dry_run",
)


# ----------------------------------------------------------------------------------
# Validation and construction (nothing touches the disk here)
# ----------------------------------------------------------------------------------
def build_learner(cfg: RunConfig):
    """The robust learner of ``cfg`` with its options; unknown options are errors."""
    import inspect

    from robust_learners import get_learner

    cls = get_learner(cfg.robust_learner)
    params = inspect.signature(cls.__init__).parameters
    accepted = {p for p in params if p != "self"}
    wrong = sorted(set(cfg.learner_options) - accepted)
    if wrong:
        flags = ", ".join("--" + w.replace("_", "-") for w in wrong)
        raise DeepCoreError(f"{flags} not used by robust learner {cfg.robust_learner}")
    try:
        return cls(**cfg.learner_options)
    except (TypeError, ValueError) as e:
        raise DeepCoreError(f"{cfg.robust_learner}: {e}") from None


#: run-level settings handed to the methods that take an option of the same name
SHARED_METHOD_OPTIONS = ("device", "workers")


def build_selection(cfg: RunConfig) -> tuple[SelectionMethod, dict[str, Any]]:
    """The selection method with its options; run-level ``device``/``workers`` passed on."""
    from .methods import get_method
    from .methods.base import option_names

    accepted = set(option_names(get_method(cfg.selection)))
    shared = {"device": str(resolve_device(cfg.device)), "workers": max(1, cfg.workers)}
    options = {k: v for k, v in shared.items() if k in accepted}
    options.update(cfg.method_options)
    return build_method(cfg.selection, options)


def validate(cfg: RunConfig) -> None:
    """Check every setting that can be checked without loading data."""
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
    optim_config(cfg).validate()
    train_config(cfg, cfg.epochs, cfg.seed).validate()
    build_selection(cfg)
    build_learner(cfg)


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


def settings_hash(cfg: RunConfig) -> str:
    """Hash of every setting except those allowed to differ within a group (seed...)."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in NON_SETTINGS}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_name(cfg: RunConfig, seed: int) -> str:
    """``<dataset>_<learner>_<selection>_<noise>_fr<f>_s<seed>_<settings hash>[_dry]``."""
    noise = cfg.noise_type
    if takes_noise_rate(noise):
        noise += f"{cfg.noise_rate:g}"
    # a dry run (selection only) never takes the place of the real run
    return (
        f"{cfg.dataset}_{cfg.robust_learner}_{cfg.selection}_{noise}_fr{cfg.fraction:g}"
        f"_s{seed}_{settings_hash(cfg)}" + ("_dry" if cfg.dry_run else "")
    )


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


# ----------------------------------------------------------------------------------
# The run directory
# ----------------------------------------------------------------------------------
class RunDir:
    """The files of one run (all written atomically)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    labels = property(lambda self: self.path / "labels.npz")
    subset = property(lambda self: self.path / "subset.npz")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    tb = property(lambda self: self.path / "tb")

    def is_run(self) -> bool:
        return self.config.is_file() and self.labels.is_file()

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in history))

    def read_subset(self) -> Subset:
        with np.load(self.subset, allow_pickle=False) as z:
            return Subset(z["indices"], z["scores"], z["weights"] if "weights" in z.files else None)

    def write_subset(self, subset: Subset) -> None:
        arrays = {"indices": subset.indices, "scores": subset.scores}
        if subset.weights is not None:
            arrays["weights"] = subset.weights
        save_npz(self.subset, **arrays)


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


def select_subset(cfg: RunConfig, ds: NoisyDataset, seed: int) -> tuple[Subset, dict[str, Any]]:
    """Warm-up (or the cache) and selection; returns the subset and a report for the log."""
    method, unused = build_selection(cfg)
    for name in sorted(unused):
        log.warning(
            "warning: --%s is not used by %s (ignored)", name.replace("_", "-"), cfg.selection
        )
    ignored = sorted(unused)
    for text in settings_without_effect(cfg):
        log.warning("warning: %s (ignored)", text)
        ignored.append(text.split(" ", 1)[0].lstrip("-"))
    needed = set(method.required_signals())
    report: dict[str, Any] = {"ignored_options": ignored, "warmup_seconds": 0.0}
    t0 = time.time()
    if needed - {"labels", "clean_labels"}:
        learner = build_learner(cfg)
        members = int(method.ensemble_size)
        model = cfg.model or ds.default_model
        wcfg = WarmupConfig(
            data_key=data_config(cfg, seed).__dict__,
            learner=_learner_key(learner.warmup()),
            model=model,
            epochs=cfg.selection_epochs,
            train=train_config(cfg, cfg.selection_epochs, seed),
            optim=optim_config(cfg),
            pretrained=cfg.pre_trained,
            model_path=cfg.model_path,
        )
        cache = (
            Path(cfg.signals_cache) if cfg.signals_cache else Path(cfg.out_dir) / "signals-cache"
        )
        signals, sig_report = warm_up_signals(
            ds,
            lambda: build_learner(cfg).warmup(),
            wcfg,
            members=members,
            cache_dir=cache,
            needed=needed,
        )
        report["signals"] = sig_report
        report["warmup_seconds"] = round(time.time() - t0, 3)
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


def run_experiment(cfg: RunConfig, *, exp: int = 0) -> dict[str, Any]:
    """Run experiment ``exp`` of ``cfg`` (seed ``cfg.seed + exp``); returns its summary."""
    validate(cfg)
    seed = cfg.seed + exp
    ds = load_data(cfg, seed)
    distributed.init(resolve_device(cfg.device))  # the rank is known before any write
    run = RunDir(Path(cfg.out_dir) / run_name(cfg, seed))
    problem = None
    if distributed.is_main():
        if run.path.exists():
            hint = (
                "it is complete" if run.summary.is_file() else f"resume it with --resume {run.path}"
            )
            problem = f"run directory {run.path} already exists ({hint})"
        else:
            run.path.mkdir(parents=True)
    problem = distributed.broadcast_object(problem)
    if problem is not None:
        raise DeepCoreError(problem)
    rank = distributed.rank()
    handler = _attach_log(run.path / "log.txt") if rank == 0 else None
    try:
        if rank == 0:
            write_text(run.config, dump_yaml(replace(cfg, seed=seed, num_exp=1)))
            arrays = {"labels": ds.labels, "ids": ds.ids}
            if ds.clean_labels is not None:
                arrays["clean_labels"] = ds.clean_labels
            save_npz(run.labels, **arrays)
        return _train_and_summarise(cfg, ds, run, seed, resume=False)
    except DeepCoreError:
        if rank == 0:
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def resume_experiment(
    path: str | Path, *, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Continue the run in ``path`` from its checkpoint to the same final result."""
    run = RunDir(path)
    if not run.is_run():
        raise DeepCoreError(f"{run.path} is not a run directory (no config.yaml and labels.npz)")
    if run.summary.is_file():
        raise DeepCoreError(f"run {run.path} is already complete (summary.json exists)")
    cfg = RunConfig.from_dict(read_yaml(run.config), source=str(run.config))
    allowed = {"device", "workers", "progress"}
    bad = sorted(set(overrides or {}) - allowed)
    if bad:
        raise DeepCoreError(
            f"--resume takes the run's own settings; cannot change: {', '.join(bad)}"
        )
    cfg = replace(cfg, **(overrides or {}))
    validate(cfg)
    ds = load_data(cfg, cfg.seed)
    with np.load(run.labels, allow_pickle=False) as z:
        if not np.array_equal(z["labels"], ds.labels):
            raise DeepCoreError(f"the noisy labels of {run.path} differ from the data set's now")
    distributed.init(resolve_device(cfg.device))
    handler = _attach_log(run.path / "log.txt") if distributed.is_main() else None
    try:
        return _train_and_summarise(cfg, ds, run, cfg.seed, resume=True)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def _train_and_summarise(
    cfg: RunConfig, ds: NoisyDataset, run: RunDir, seed: int, *, resume: bool
) -> dict[str, Any]:
    rank = distributed.rank()
    if resume and run.subset.is_file():
        subset = run.read_subset()
        report = json.loads((run.path / "selection.json").read_text())
        log.info("subset of %d samples read from %s", len(subset), run.subset)
    else:
        subset, report = select_subset(cfg, ds, seed)
        if rank == 0:
            run.write_subset(subset)
            write_json(run.path / "selection.json", report)
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
        "ignored_options": report.get("ignored_options", []),
        "versions": versions(),
    }
    if cfg.dry_run:
        if rank == 0:
            write_json(run.summary, {**summary, "dry_run": True})
        return summary
    learner = build_learner(cfg)
    model = cfg.model or ds.default_model
    ctx = TrainContext(
        ds,
        subset.indices,
        train_config(cfg, cfg.epochs, seed),
        optim_config(cfg),
        model=model,
        pretrained=cfg.pre_trained,
        model_path=cfg.model_path,
    )
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
    )
    if rank == 0:
        write_json(run.summary, summary)
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


def _reference_log(cfg: RunConfig, summary: dict[str, Any]) -> None:
    """``--save-log True``: the reference's one-row text log (last, best, noise %, counts)."""
    folder = Path(cfg.out_dir) / "logs" / cfg.dataset / cfg.robust_learner / cfg.selection
    row = [summary["last_acc"], summary["best_acc"], 100.0 * (summary["subset_noise_rate"] or 0.0)]
    row += summary["class_counts"]
    name = (
        f"{cfg.noise_type}_r{cfg.noise_rate}_{summary['model']}_fr{cfg.fraction}"
        f"_trial{summary['seed']}.txt"
    )
    write_text(folder / name, " ".join(f"{float(v):f}" for v in row) + "\n")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def configure_logging(verbose: bool = True) -> None:
    if not any(
        isinstance(h, logging.StreamHandler) and getattr(h, "_deep_core", False)
        for h in log.handlers
    ):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._deep_core = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False
