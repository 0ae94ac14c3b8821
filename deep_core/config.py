"""The typed configuration of a run and of the parts it hands to each step.

A run's :class:`RunConfig` is composed of the smaller configs it hands on: ``data``
(:class:`DataConfig`, to :func:`deep_core.datasets.load_dataset`), ``optim``
(:class:`OptimConfig`) and ``train`` (:class:`TrainConfig`, both to the training
engine), plus the settings only a run has (selection, learner, budget, output). Every
field is declared once, in the part that uses it; ``tests/test_config.py`` checks it.

Why composition and a flat view. ``config.yaml`` in a run directory and ``--config
FILE.yaml`` are flat mappings keyed by the ``dest`` names of the reference's flags
(``lr``, ``epochs``, ``selection_epochs``, ``lr_u``...), so a reference sweep's flags map
one to one and run directories written before stay readable. ``RunConfig`` therefore
reads and writes that flat form (:meth:`RunConfig.to_dict`, :meth:`RunConfig.from_dict`,
``RunConfig(lr=0.1, epochs=20)``, ``dataclasses.replace(cfg, epochs=12)``, ``cfg.lr``),
and keeps the parts nested (``cfg.optim.lr``). Inheriting the parts' fields instead
would have tied the run's defaults to the parts': a run trains 200 epochs on the best
available device and picks its noise rate from the data set (:data:`RUN_TRAIN_DEFAULTS`,
:func:`default_noise_rate`), while the engine's ``TrainConfig`` has no default epoch
count and trains on the CPU, and ``DataConfig`` loads clean labels unless told
otherwise. Composed, each part keeps its own defaults and the run's are the values of
its default parts. Two flat names are not a part field's own name: ``milestone`` (the
reference's ``--milestone``) is ``optim.milestones``, and ``seed`` is the seed of both
``data`` (the synthetic noise) and ``train`` (every training draw).

Per-phase values are filled in by the runner: the warm-up trains ``selection_epochs``
epochs and the learner a schedule sized on ``epochs`` (or a budget), each with the
experiment's seed (``seed + exp``), as ``dataclasses.replace(cfg.train, epochs=...,
seed=...)``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import DeepCoreError, unknown_name

#: the embedded data set (inside scikit-learn), the default of every run
DEFAULT_DATASET = "Digits"
#: values of ``--optimizer``
OPTIMIZERS = ("SGD", "Adam", "AdamW")
#: values of ``--scheduler``
SCHEDULERS = ("CosineAnnealingLR", "StepLR", "MultiStepLR", "none")
#: values of ``--amp``
AMP_MODES = (True, False, "bf16", "fp16")
#: synthetic noise rate of the embedded default data set when none is given
DEFAULT_NOISE_RATE = 0.4
#: run-level settings handed to the selection methods that take an option of the same name
SHARED_METHOD_OPTIONS = ("device", "workers")

#: ``--protocol``: how the selection signals are made (see :class:`RunConfig`)
PROTOCOLS = ("reference", "clean")
#: ``--warmup-schedule``: the horizon of the warm-up's learning-rate schedule
WARMUP_SCHEDULES = ("run", "warmup")
#: ``--signal-view``: the view probabilities and embeddings are read from
SIGNAL_VIEWS = ("auto", "clean", "strong")
#: ``--budget``: what ``--budget-value`` counts (see :func:`deep_core.recipe.training_budget`)
BUDGETS = ("epochs", "steps", "samples")

#: The Prune4ReL reference's defaults (its ``arguments.py``) for the settings a command line
#: leaves out, applied under an explicit ``--protocol reference``. Settings whose reference
#: default changes nothing here (``--workers 5``, ``--test-batch-size 32``, ``--n-train
#: 50000``, ``--n-class 10``: checks or speed only) are not listed.
REFERENCE_DEFAULTS: dict[str, Any] = {
    "dataset": "CIFAR10",
    "robust_learner": "DivideMix",
    "model": "ResNet18",
    "selection": "Uniform",  # its "uniform" names no method (KeyError); the class is Uniform
}
#: learner options of the reference's defaults (given to the learners that take them)
REFERENCE_LEARNER_DEFAULTS: dict[str, Any] = {"lambda_u": 1.0}
#: method options of the reference's defaults (given to the methods that take them).
#: ``metric``: arguments.py says ``euclidean`` but main_label_noise.py never passes
#: ``--metric`` to the method, so Prune4Rel's own default, cosine similarity, is what ran.
REFERENCE_METHOD_DEFAULTS: dict[str, Any] = {
    "uncertainty": "Margin",
    "tau": 0.95,
    "eta": 100.0,
    "metric": "cossim",
}


def takes_noise_rate(noise_type: str) -> bool:
    """False for ``clean`` and the human-label types (``real*``), which have no rate."""
    return noise_type != "clean" and not noise_type.startswith("real")


def default_noise_rate(dataset: str, noise_type: str) -> float:
    """A run's noise rate when none is given: 0.4 of synthetic noise on the embedded
    default data set (Digits), else 0."""
    synthetic = takes_noise_rate(noise_type)
    return DEFAULT_NOISE_RATE if dataset == DEFAULT_DATASET and synthetic else 0.0


# ----------------------------------------------------------------------------------
# The parts
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """What data to load and how to corrupt its labels.

    Attributes
    ----------
    dataset : str
        A registered name (see :func:`deep_core.datasets.dataset_names`).
    data_path : str, optional
        Root folder of the data (not needed for ``Digits``).
    noise_type : str
        ``clean``, ``sym``, ``sym-all``, ``asym``, ``idn``, or a real-noise name
        (CIFAR-10N ``real1 real2 real3 realA realW``, CIFAR-100N ``real``).
    noise_rate : float
        In [0, 1); synthetic noise only.
    seed : int
        Seed of the synthetic noise.
    n_train : int, optional
        Keep only the first ``n_train`` training samples.
    download : bool
        Let torchvision download CIFAR when it is missing.
    image_size : int, optional
        Side of the images for file-based data sets; default 32 for ``ImageFolder`` and
        224 for ``WebVision`` and ``Clothing1M``. CIFAR and Digits ignore it.
    """

    dataset: str = DEFAULT_DATASET
    data_path: str | None = None
    noise_type: str = "sym"
    noise_rate: float = 0.0
    seed: int = 0
    n_train: int | None = None
    download: bool = False
    image_size: int | None = None


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule (flags of the reference, same defaults).

    The schedule steps once per epoch, as in the reference. ``milestones`` default to
    half the epochs for MultiStepLR (what the reference effectively used).
    """

    optimizer: str = "SGD"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    scheduler: str = "CosineAnnealingLR"
    min_lr: float = 1e-4
    milestones: list[int] | None = None
    gamma: float = 0.1
    step_size: int = 100

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        if self.scheduler not in SCHEDULERS:
            raise unknown_name("scheduler", self.scheduler, SCHEDULERS)
        if not self.lr > 0:
            raise DeepCoreError(f"--lr must be positive, got {self.lr}")
        if self.step_size < 1:
            raise DeepCoreError(f"--step_size must be at least 1, got {self.step_size}")


@dataclass(frozen=True)
class TrainConfig:
    """How a learner is trained.

    Attributes
    ----------
    epochs : int
    batch_size : int
    test_batch_size : int
    seed : int
        Root of every random stream of the run.
    device : str
        ``cpu``, ``cuda``, ``cuda:1``...
    workers : int
        DataLoader workers for file-backed data sets.
    amp : {True, False, "bf16", "fp16"}
        Mixed precision (autocast). ``True``: on CUDA, bfloat16 where the GPU supports
        it, else float16 with loss scaling; off on CPU. ``"bf16"``: bfloat16 autocast on
        CUDA *and on CPU* (see :func:`deep_core.engine.amp_dtype`). ``"fp16"``: float16 +
        loss scaling, CUDA only. ``False``: float32.
    channels_last : bool
        Channels-last memory format for convolutional networks (faster on CPU and GPU).
    deterministic : bool
        ``torch.use_deterministic_algorithms`` (slower on GPU).
    progress : bool
        Progress bars over batches.
    """

    epochs: int
    batch_size: int = 128
    test_batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    amp: bool | str = True
    channels_last: bool = True
    deterministic: bool = False
    progress: bool = True

    def validate(self) -> None:
        from .engine import amp_dtype, resolve_device  # torch: only when training

        if self.amp not in AMP_MODES:
            raise DeepCoreError(f"--amp must be True, False, bf16 or fp16, got {self.amp!r}")
        if self.epochs < 0:
            raise DeepCoreError(f"--epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1 or self.test_batch_size < 1:
            raise DeepCoreError("batch sizes must be at least 1")
        if self.workers < 0:
            raise DeepCoreError(f"--workers must be >= 0, got {self.workers}")
        amp_dtype(self.amp, resolve_device(self.device))


#: the run's training defaults where they differ from :class:`TrainConfig`'s own
RUN_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 200, "device": "auto"}
#: a run's parts, by the name of the field that holds each
PARTS: dict[str, type] = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
#: flat names that are not the part field's own name (the reference's ``--milestone``)
FLAT_ALIASES: dict[str, str] = {"milestone": "milestones"}


def _part_fields() -> dict[str, list[tuple[str, str]]]:
    """Flat name -> the ``(part, field)`` pairs it stands for (``seed``: two)."""
    out: dict[str, list[tuple[str, str]]] = {}
    flat_name = {field: name for name, field in FLAT_ALIASES.items()}
    for part, cls in PARTS.items():
        for f in dataclasses.fields(cls):
            out.setdefault(flat_name.get(f.name, f.name), []).append((part, f.name))
    return out


# ----------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, init=False)
class RunConfig:
    """Everything a run needs; see ``deepcore-run --help`` for each flag.

    Built from flat settings, ``RunConfig(lr=0.1, epochs=20)`` (the parts' defaults
    for the rest, the run's where they differ), or from parts, ``RunConfig(optim=...,
    selection="SmallLoss")``; flat settings override a given part's field. Read flat
    (``cfg.lr``) or by part (``cfg.optim.lr``). Frozen: ``dataclasses.replace(cfg,
    epochs=12)`` makes a changed copy.
    """

    # data, noise and model
    data: DataConfig
    n_class: int | None = None
    model: str | None = None
    pre_trained: bool = False
    model_path: str | None = None
    # selection
    selection: str = "Uniform"
    fraction: float = 0.2
    selection_epochs: int = 10
    #: "reference": warm-up schedule sized on ``epochs`` and each method's reference view
    #: (Prune4Rel: one seeded strong-augmented view); "clean": schedule sized on the warm-up
    #: and the clean view for every method
    protocol: str = "reference"
    #: None: the protocol's ("run" under reference, "warmup" under clean)
    warmup_schedule: str | None = None
    #: "auto": the protocol's (each method's reference view, or clean)
    signal_view: str = "auto"
    #: a warm-up network's state dict to record the signals from instead of training one
    #: (``--pre-warmuped True --pre-warmed-filename FILE``)
    warmup_model: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    signals_cache: str | None = None
    # robust learner and its training
    robust_learner: str = "CE"
    learner_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig
    optim: OptimConfig
    #: "epochs": train ``epochs`` (or ``budget_value``) epochs; "steps" / "samples": train
    #: for ``budget_value`` optimisation steps / training samples (compute-matched runs)
    budget: str = "epochs"
    budget_value: int | None = None
    # run
    num_exp: int = 1
    out_dir: str = "runs"
    save_log: bool = False
    dry_run: bool = False
    #: reference flags accepted for compatibility that change nothing here (reported in
    #: ``ignored_options``), e.g. ``{"print_freq": 300}``
    reference_flags: dict[str, Any] = field(default_factory=dict)

    #: flat name -> the (part, field) pairs it stands for
    _PART_FIELDS: ClassVar[dict[str, list[tuple[str, str]]]] = _part_fields()

    def __init__(
        self,
        *,
        data: DataConfig | None = None,
        optim: OptimConfig | None = None,
        train: TrainConfig | None = None,
        **settings: Any,
    ) -> None:
        # ``settings``: flat names only, checked here (an unknown one is a TypeError, as a
        # dataclass's own __init__ raises), so a misspelled setting is never swallowed
        own = {f.name: f for f in dataclasses.fields(self) if f.name not in PARTS}
        unknown = sorted(k for k in settings if k not in own and k not in self._PART_FIELDS)
        if unknown:
            raise TypeError(f"RunConfig got unknown settings: {', '.join(unknown)}")
        parts: dict[str, Any] = {
            "data": data or DataConfig(),
            "optim": optim or OptimConfig(),
            "train": train or TrainConfig(**RUN_TRAIN_DEFAULTS),
        }
        changes: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        for name, value in settings.items():
            for part, name_in_part in self._PART_FIELDS.get(name, ()):
                changes[part][name_in_part] = value
        for part in PARTS:
            parts[part] = dataclasses.replace(parts[part], **changes[part])
        # no rate given (or None): the data set's default
        if settings.get("noise_rate", None if data is None else data.noise_rate) is None:
            d = parts["data"]
            parts["data"] = dataclasses.replace(
                d, noise_rate=default_noise_rate(d.dataset, d.noise_type)
            )
        for part, value in parts.items():
            object.__setattr__(self, part, value)
        for name, f in own.items():
            if name in settings:
                value = settings[name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            object.__setattr__(self, name, value)
        if self.data.seed != self.train.seed:
            raise DeepCoreError(
                f"the data part's seed {self.data.seed} differs from the training part's "
                f"{self.train.seed}: a run has one seed"
            )
        self._check()

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: a part's field read by its flat name
        pairs = type(self)._PART_FIELDS.get(name)
        if pairs is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        part, name_in_part = pairs[0]
        return getattr(object.__getattribute__(self, part), name_in_part)

    def _check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise DeepCoreError(
                f"unknown protocol {self.protocol!r}; choose from: {', '.join(PROTOCOLS)}"
            )
        if self.warmup_schedule is not None and self.warmup_schedule not in WARMUP_SCHEDULES:
            raise DeepCoreError(
                f"unknown warm-up schedule {self.warmup_schedule!r}; choose from: "
                + ", ".join(WARMUP_SCHEDULES)
            )
        if self.signal_view not in SIGNAL_VIEWS:
            raise DeepCoreError(
                f"unknown signal view {self.signal_view!r}; choose from: {', '.join(SIGNAL_VIEWS)}"
            )
        if self.budget not in BUDGETS:
            raise DeepCoreError(
                f"unknown budget {self.budget!r}; choose from: {', '.join(BUDGETS)}"
            )
        if self.budget != "epochs" and self.budget_value is None:
            raise DeepCoreError(f"--budget {self.budget} needs --budget-value")
        if self.budget_value is not None and (
            isinstance(self.budget_value, bool)
            or not isinstance(self.budget_value, int)
            or self.budget_value < 1
        ):
            raise DeepCoreError(
                f"--budget-value must be a positive integer, got {self.budget_value!r}"
            )

    def schedule_horizon(self) -> int:
        """Epochs the warm-up's learning-rate schedule is sized on.

        The reference builds the warm-up's optimizer and scheduler exactly as the main
        run's (``T_max = --epochs``) and stops after ``-se`` epochs, so a 10-of-300 epoch
        warm-up ends at a rate still near ``--lr``; ``warmup`` anneals within the warm-up.
        """
        schedule = self.warmup_schedule or ("run" if self.protocol == "reference" else "warmup")
        return self.epochs if schedule == "run" else self.selection_epochs

    def view_for(self, reference_view: str) -> str:
        """The view ("clean" or "strong") a method whose reference reads ``reference_view``
        gets its ``probs`` and ``features`` from under this run's settings."""
        if self.signal_view != "auto":
            return self.signal_view
        return reference_view if self.protocol == "reference" else "clean"

    # -- the flat form (config.yaml, --config, flags) -------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        """The flat settings, each part's fields where the part is declared."""
        return list(cls.field_types())

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Flat setting -> its type annotation (from the part that declares it)."""
        hints = typing.get_type_hints(cls)
        flat = {v: k for k, v in FLAT_ALIASES.items()}
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in PARTS:
                out[f.name] = hints[f.name]
                continue
            part_hints = typing.get_type_hints(PARTS[f.name])
            for pf in dataclasses.fields(PARTS[f.name]):
                out.setdefault(flat.get(pf.name, pf.name), part_hints[pf.name])
        return out

    def to_dict(self) -> dict[str, Any]:
        """The flat settings (what ``config.yaml`` holds); values are copies."""
        import copy

        return {name: copy.deepcopy(getattr(self, name)) for name in self.field_names()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        """A config from flat settings; unknown keys are an error naming ``source``."""
        known = set(cls.field_names())
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise DeepCoreError(f"unknown keys in {source}: {', '.join(unknown)}")
        return cls(**data)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping (``yaml.safe_load``); keys may use ``-`` or ``_``."""
    path = Path(path)
    if not path.is_file():
        raise DeepCoreError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DeepCoreError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise DeepCoreError(f"cannot read {path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeepCoreError(f"{path} must hold a mapping of option: value")
    return {str(k).lstrip("-").replace("-", "_"): v for k, v in data.items()}


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
