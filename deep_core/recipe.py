"""What a run is made of: its settings checked, its learner and selection method built once.

Nothing here touches the data or writes a file. :func:`validate` checks every setting
that can be checked without loading data and returns the run's :class:`Recipe`: the
config with the robust learner and the selection method it names, which every step of
:mod:`deep_core.steps` then uses (the warm-up learner comes from ``learner.warmup()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .budget import check_fraction
from .checks import check_output_folder, check_run_config
from .config import RunConfig, takes_noise_rate
from .datasets import dataset_names
from .engine import Budget, Learner, resolve_device
from .errors import DeepCoreError, unknown_name
from .methods import build_method
from .methods.base import SelectionMethod
from .nets import check_model_name, check_pretrained


@dataclass(frozen=True)
class Recipe:
    """A run's settings with the robust learner and the selection method they name.

    Attributes
    ----------
    cfg : RunConfig
    learner : Learner
        The robust learner, not yet set up; its selection warm-up is ``learner.warmup()``.
    method : SelectionMethod
        The selection method with its options (run-level ``device``/``workers`` given
        to a method that takes them).
    unused_options : tuple of str
        Method options given that the method does not take (warned about, ignored).
    """

    cfg: RunConfig
    learner: Learner
    method: SelectionMethod
    unused_options: tuple[str, ...] = ()


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


def build_recipe(cfg: RunConfig) -> Recipe:
    """The learner and the selection method of ``cfg``, each built once."""
    method, unused = build_selection(cfg)
    return Recipe(cfg, build_learner(cfg), method, tuple(sorted(unused)))


def validate(cfg: RunConfig) -> Recipe:
    """Check every setting that can be checked without loading data; the run's recipe."""
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
    cfg.optim.validate()
    cfg.train.validate()
    method, unused = build_selection(cfg)
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
    recipe = Recipe(cfg, build_learner(cfg), method, tuple(sorted(unused)))
    check_learner_warmup(recipe)
    return recipe


#: classes of the named data sets (to check DivideMix's default warm-up before loading data)
_NUM_CLASSES = {"Digits": 10, "CIFAR10": 10, "CIFAR100": 100, "WebVision": 50, "Clothing1M": 14}


def check_learner_warmup(recipe: Recipe, *, num_classes: int | None = None) -> None:
    """A run whose learner's own warm-up covers every training epoch is an error (DivideMix).

    ``num_classes``: of the loaded data; before loading, the named data sets' are known.
    """
    cfg = recipe.cfg
    resolve = getattr(recipe.learner, "training_warmup_epochs", None)
    classes = num_classes or cfg.n_class or _NUM_CLASSES.get(cfg.dataset)
    if resolve is None or classes is None:
        return  # checked again on the loaded data (deep_core.steps.record_signals)
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
