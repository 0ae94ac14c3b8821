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

    def __post_init__(self) -> None:
        if self.noise_rate is None:
            synthetic = takes_noise_rate(self.noise_type)
            self.noise_rate = DEFAULT_NOISE_RATE if self.dataset == "Digits" and synthetic else 0.0

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
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeepCoreError(f"{path} must hold a mapping of option: value")
    return {str(k).lstrip("-").replace("-", "_"): v for k, v in data.items()}


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
