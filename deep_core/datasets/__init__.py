"""Data sets with noisy labels, looked up by name.

``load_dataset(DataConfig(...))`` returns a :class:`~deep_core.datasets.base.NoisyDataset`.
The registry maps a ``--dataset`` name to its loader; an unknown name lists the valid
ones. ``Digits`` (inside scikit-learn) is the embedded default.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import DEFAULT_DATASET, DataConfig  # noqa: F401 (defined with the run's config)
from ..errors import DeepCoreError
from ..registry import Registry
from .base import Batch, FileImageSet, ImageSet, NoisyDataset, TensorImageSet
from .noise import check_rate


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
