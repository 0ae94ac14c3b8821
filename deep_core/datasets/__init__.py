"""Data sets with noisy labels, looked up by name.

``load_dataset(DataConfig(...))`` returns a :class:`~deep_core.datasets.base.NoisyDataset`.
The registry maps a ``--dataset`` name to its loader; an unknown name lists the valid
ones. ``Digits`` (inside scikit-learn) is the embedded default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DeepCoreError
from ..registry import Registry
from .base import Batch, FileImageSet, ImageSet, NoisyDataset, TensorImageSet
from .noise import check_rate

DEFAULT_DATASET = "Digits"


@dataclass(frozen=True)
class DataConfig:
    """What data to load and how to corrupt its labels.

    Attributes
    ----------
    dataset : str
        A registered name (see :func:`dataset_names`).
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


def _digits(cfg: DataConfig) -> NoisyDataset:
    from .digits import load_digits_dataset

    return load_digits_dataset(
        noise_type=cfg.noise_type, noise_rate=cfg.noise_rate, seed=cfg.seed, n_train=cfg.n_train
    )


def _cifar(name: str) -> Callable[[DataConfig], NoisyDataset]:
    def load(cfg: DataConfig) -> NoisyDataset:
        from .cifar import load_cifar

        return load_cifar(
            name,
            data_path=_need_path(cfg),
            noise_type=cfg.noise_type,
            noise_rate=cfg.noise_rate,
            seed=cfg.seed,
            download=cfg.download,
            n_train=cfg.n_train,
        )

    return load


def _image_folder(cfg: DataConfig) -> NoisyDataset:
    from .image_folder import load_image_folder

    return load_image_folder(
        data_path=_need_path(cfg),
        noise_type=cfg.noise_type,
        noise_rate=cfg.noise_rate,
        seed=cfg.seed,
        image_size=cfg.image_size or 32,
        n_train=cfg.n_train,
    )


def _list_files(name: str) -> Callable[[DataConfig], NoisyDataset]:
    """Loader of a listed-files data set (WebVision, Clothing1M): 224-pixel default."""

    def load(cfg: DataConfig) -> NoisyDataset:
        if name == "WebVision":
            from .webvision import load_webvision as loader
        else:
            from .clothing1m import load_clothing1m as loader
        return loader(
            data_path=_need_path(cfg),
            noise_type=cfg.noise_type,
            noise_rate=cfg.noise_rate,
            image_size=cfg.image_size or 224,
            n_train=cfg.n_train,
        )

    return load


def _need_path(cfg: DataConfig) -> str:
    if not cfg.data_path:
        raise DeepCoreError(f"--data_path is required for {cfg.dataset}")
    return cfg.data_path


#: every data set loader, by ``--dataset`` name
DATASETS: Registry[Callable[[DataConfig], NoisyDataset]] = Registry(
    "dataset",
    {
        "Digits": _digits,
        "CIFAR10": _cifar("CIFAR10"),
        "CIFAR100": _cifar("CIFAR100"),
        "ImageFolder": _image_folder,
        "WebVision": _list_files("WebVision"),
        "Clothing1M": _list_files("Clothing1M"),
    },
)


def register_dataset(name: str, loader: Callable[[DataConfig], NoisyDataset]) -> None:
    """Add a data set loader under ``name`` (a taken name raises ``ValueError``)."""
    DATASETS.register(name, loader)


def dataset_names() -> list[str]:
    """Registered data set names, sorted."""
    return DATASETS.names()


def load_dataset(cfg: DataConfig) -> NoisyDataset:
    """Load ``cfg.dataset`` with its label noise; bad input raises ``DeepCoreError``."""
    load = DATASETS.get(cfg.dataset)
    check_rate(cfg.noise_rate)
    return load(cfg)


__all__ = [
    "Batch",
    "DataConfig",
    "FileImageSet",
    "ImageSet",
    "NoisyDataset",
    "TensorImageSet",
    "dataset_names",
    "load_dataset",
    "register_dataset",
]
