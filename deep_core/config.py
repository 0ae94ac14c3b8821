"""The typed configuration of a run, built at the command-line edge.

``RunConfig`` is what ``config.yaml`` in a run directory holds and what
``--config FILE.yaml`` provides (flags override the file). Field names are the
``dest`` names of the reference's flags (``selection_epochs``, ``lr_u``,
``ratio_consistency``...), so a reference sweep's flags map one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DeepCoreError

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
#: ``--budget``: what ``--budget-value`` counts (see :func:`deep_core.runner.training_budget`)
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


@dataclass
class RunConfig:
    """Everything a run needs; see ``deepcore-run --help`` for each flag."""

    # data
    dataset: str = "Digits"
    data_path: str | None = None
    noise_type: str = "sym"
    #: None: 0.4 on the embedded default data set (Digits) with synthetic noise, else 0
    noise_rate: float | None = None
    n_train: int | None = None
    n_class: int | None = None
    download: bool = False
    image_size: int | None = None
    # model
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
    # robust learner
    robust_learner: str = "CE"
    learner_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 200
    batch_size: int = 128
    test_batch_size: int = 256
    optimizer: str = "SGD"
    lr: float = 0.02
    min_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    scheduler: str = "CosineAnnealingLR"
    milestone: list[int] | None = None
    gamma: float = 0.1
    step_size: int = 100
    #: "epochs": train ``epochs`` (or ``budget_value``) epochs; "steps" / "samples": train
    #: for ``budget_value`` optimisation steps / training samples (compute-matched runs)
    budget: str = "epochs"
    budget_value: int | None = None
    # run
    seed: int = 0
    num_exp: int = 1
    device: str = "auto"
    workers: int = 0
    out_dir: str = "runs"
    save_log: bool = False
    dry_run: bool = False
    deterministic: bool = False
    #: True (CUDA: bf16 or fp16; CPU: float32), False, "bf16" (also CPU) or "fp16"
    amp: bool | str = True
    channels_last: bool = True
    progress: bool = True
    #: reference flags accepted for compatibility that change nothing here (reported in
    #: ``ignored_options``), e.g. ``{"print_freq": 300}``
    reference_flags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        if self.noise_rate is None:
            synthetic = takes_noise_rate(self.noise_type)
            self.noise_rate = DEFAULT_NOISE_RATE if self.dataset == "Digits" and synthetic else 0.0

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

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
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
