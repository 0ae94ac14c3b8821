"""CIFAR-10 / CIFAR-100 from the standard python layout, with CIFAR-N human labels.

The batches are read directly (they are pickles of plain arrays, the format the data
set is distributed in), so a re-encoded copy whose md5 sums differ from the original
works. They are read with a restricted unpickler (:mod:`deep_core.safe_pickle`) that
builds only containers, scalars and numpy arrays, so a tampered batch cannot run code.
``download=True`` fetches the archive with torchvision's md5-checked downloader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..augment import AugmentSpec
from ..errors import DeepCoreError
from ..safe_pickle import load_data_pickle
from .base import NoisyDataset, TensorImageSet, train_positions
from .cifar_n import load_human_labels
from .noise import CIFAR10_ASYM, make_noisy_labels, superclass_map

_SPEC = {
    "CIFAR10": dict(
        folder="cifar-10-batches-py",
        alias="cifar10",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        real={
            "real1": "random_label1",
            "real2": "random_label2",
            "real3": "random_label3",
            "realA": "aggre_label",
            "realW": "worse_label",
        },
        n=(50000, 10000),
    ),
    "CIFAR100": dict(
        folder="cifar-100-python",
        alias="cifar100",
        train=["train"],
        test=["test"],
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
        real={"real": "noisy_label"},
        n=(50000, 10000),
    ),
}

NOISE_TYPES = {
    "CIFAR10": (
        "clean",
        "sym",
        "sym-all",
        "asym",
        "idn",
        "real1",
        "real2",
        "real3",
        "realA",
        "realW",
    ),
    "CIFAR100": ("clean", "sym", "sym-all", "asym", "idn", "real"),
}


def find_batches_dir(name: str, data_path: str | Path) -> Path:
    """``DATA/cifar10/cifar-10-batches-py`` (reference), ``DATA/cifar-10-batches-py`` or DATA."""
    spec = _SPEC[name]
    root = Path(data_path)
    for cand in (root / spec["alias"] / spec["folder"], root / spec["folder"], root):
        if (cand / spec["train"][0]).is_file():
            return cand
    raise DeepCoreError(
        f"{name} not found under {root}: expected {spec['folder']}/ with {spec['train'][0]} "
        f"(or pass --download True to fetch it)"
    )


def _read_batch(path: Path) -> dict:
    if not path.exists():
        raise DeepCoreError(f"incomplete CIFAR folder: {path} is missing")
    d = load_data_pickle(path, what="CIFAR batch")
    if not isinstance(d, dict):
        raise DeepCoreError(f"corrupt CIFAR batch {path}: holds a {type(d).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _field(d: dict, key: str, path: Path):
    if key not in d:
        raise DeepCoreError(f"corrupt CIFAR batch {path}: no {key!r} entry")
    return d[key]


def _labels(d: dict, key: str, path: Path, n: int) -> np.ndarray:
    """Integer labels of one batch, as many as it has images."""
    y = np.asarray(_field(d, key, path))
    if y.ndim != 1 or y.size != n or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise DeepCoreError(f"corrupt CIFAR batch {path}: {key!r} is not {n:,} integer labels")
    return y.astype(np.int64)


def read_split(
    name: str, folder: Path, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Images (N, 3, 32, 32) uint8, fine labels, coarse labels (CIFAR-100 only)."""
    spec = _SPEC[name]
    images, labels, coarse = [], [], []
    for fname in spec[split]:
        path = folder / fname
        d = _read_batch(path)
        x = _field(d, "data", path)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.size % 3072:
            raise DeepCoreError(f"corrupt CIFAR batch {path}: 'data' is not uint8 rows of 3072")
        images.append(x.reshape(-1, 3, 32, 32))
        labels.append(_labels(d, spec["label_key"], path, len(images[-1])))
        if "coarse_labels" in d:
            coarse.append(_labels(d, "coarse_labels", path, len(images[-1])))
    x, y = np.concatenate(images), np.concatenate(labels)
    expected = spec["n"][0 if split == "train" else 1]
    if x.shape[0] != expected:
        raise DeepCoreError(
            f"{name} {split} split has {x.shape[0]:,} images, expected {expected:,}"
        )
    return x, y, (np.concatenate(coarse) if coarse else None)


def _download(name: str, data_path: str | Path) -> None:
    """Fetch and unpack the archive (md5-checked) without unpickling anything here."""
    import torchvision
    from torchvision.datasets.utils import download_and_extract_archive

    cls = torchvision.datasets.CIFAR10 if name == "CIFAR10" else torchvision.datasets.CIFAR100
    root = Path(data_path) / _SPEC[name]["alias"]
    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; md5 mismatch a RuntimeError
        raise DeepCoreError(
            f"cannot download {name} to {root} (offline?): {str(e).splitlines()[0]}"
        ) from None


def load_cifar(
    name: str,
    *,
    data_path: str | Path,
    noise_type: str,
    noise_rate: float,
    seed: int,
    download: bool = False,
    n_train: int | None = None,
) -> NoisyDataset:
    """Load CIFAR-10/100 and apply the requested label noise.

    ``real*`` noise types use the CIFAR-N human labels (an official
    ``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt`` beside the batches takes precedence
    over the copy shipped with this package).
    """
    spec = _SPEC[name]
    if noise_type not in NOISE_TYPES[name]:
        from ..errors import unknown_name

        raise unknown_name(f"noise type for {name}", noise_type, NOISE_TYPES[name])
    try:
        folder = find_batches_dir(name, data_path)
    except DeepCoreError:
        if not download:
            raise
        _download(name, data_path)
        folder = find_batches_dir(name, data_path)
    x_train, clean, coarse = read_split(name, folder, "train")
    keep = train_positions(clean.size, n_train)
    clean_all = clean
    x_test, y_test, _ = read_split(name, folder, "test")
    meta = _read_batch(folder / spec["meta"])
    meta_path = folder / spec["meta"]
    names = _field(meta, spec["names_key"], meta_path)
    if not isinstance(names, list) or not names:
        raise DeepCoreError(f"corrupt CIFAR meta file {meta_path}: no class names")
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in names]
    num_classes = len(classes)
    for split, y in (("train", clean), ("test", y_test)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DeepCoreError(
                f"{name} {split} labels in {folder} lie outside [0, {num_classes})"
            )

    if noise_type in spec["real"]:
        human = load_human_labels(name, search=[folder, folder.parent])
        if not np.array_equal(human["clean_label"], clean):
            raise DeepCoreError(
                f"CIFAR-N clean labels do not match the {name} training labels in {folder}"
            )
        noisy = human[spec["real"][noise_type]].astype(np.int64)[keep]
        if noisy.size and (noisy.min() < 0 or noisy.max() >= num_classes):
            raise DeepCoreError(
                f"CIFAR-N labels {spec['real'][noise_type]!r} in {human['_source']} lie outside "
                f"[0, {num_classes})"
            )
        x_train, clean = x_train[keep], clean[keep]
        noise = {"type": noise_type, "source": human["_source"]}
    else:
        x_train, clean = x_train[keep], clean[keep]
        class_map = None
        if noise_type == "asym":
            class_map = CIFAR10_ASYM if name == "CIFAR10" else superclass_map(coarse, clean_all)
        images = None
        if noise_type == "idn":
            mean = np.asarray(spec["mean"], np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(spec["std"], np.float32).reshape(1, 3, 1, 1)
            images = ((x_train.astype(np.float32) / 255.0) - mean) / std
        noisy = make_noisy_labels(
            clean,
            noise_type=noise_type,
            rate=noise_rate,
            num_classes=num_classes,
            seed=seed,
            class_map=class_map,
            images=images,
        )
        noise = {"type": noise_type, "rate": noise_rate, "seed": seed}

    aug = AugmentSpec(mean=spec["mean"], std=spec["std"], crop_padding=4, flip=True, cutout=16)
    return NoisyDataset(
        name=name,
        train=TensorImageSet(torch.from_numpy(x_train), aug),
        labels=noisy,
        clean_labels=clean,
        test=TensorImageSet(torch.from_numpy(x_test), aug),
        test_labels=y_test,
        classes=classes,
        ids=keep,
        default_model="PreActResNet18",
        noise=noise,
    )
