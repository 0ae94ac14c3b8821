"""The embedded default: scikit-learn's 8×8 handwritten digits with synthetic noise.

1,797 real images ship inside scikit-learn, so a fresh install runs end to end offline
in seconds on a CPU. The train/test split is fixed (stratified, 25% test, drawn once
with seed 0) and does not depend on the run's seed; only the label noise does.
"""

from __future__ import annotations

import numpy as np
import torch

from ..augment import AugmentSpec
from ..errors import unknown_name
from .base import NoisyDataset, TensorImageSet, train_positions
from .noise import DIGITS_ASYM, make_noisy_labels

NOISE_TYPES = ("clean", "sym", "sym-all", "asym", "idn")


def _split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = int(round(0.25 * members.size))
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits_dataset(
    *, noise_type: str, noise_rate: float, seed: int, n_train: int | None = None
) -> NoisyDataset:
    """The digits data set (1,348 train / 449 test) with the requested noise."""
    from sklearn.datasets import load_digits

    if noise_type not in NOISE_TYPES:
        raise unknown_name("noise type for Digits", noise_type, NOISE_TYPES)
    d = load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]  # (N,1,8,8)
    y = d.target.astype(np.int64)
    tr, te = _split(y)
    tr = tr[train_positions(tr.size, n_train)]
    x_train, clean = x[tr], y[tr]
    mean = float(x_train.mean() / 255.0)
    std = float(x_train.std() / 255.0)
    images = ((x_train.astype(np.float32) / 255.0) - mean) / std
    noisy = make_noisy_labels(
        clean,
        noise_type=noise_type,
        rate=noise_rate,
        num_classes=10,
        seed=seed,
        class_map=DIGITS_ASYM,
        images=images,
    )
    spec = AugmentSpec(mean=(mean,), std=(std,), crop_padding=1, flip=False, cutout=3)
    return NoisyDataset(
        name="Digits",
        train=TensorImageSet(torch.from_numpy(np.ascontiguousarray(x_train)), spec),
        labels=noisy,
        clean_labels=clean,
        test=TensorImageSet(torch.from_numpy(np.ascontiguousarray(x[te])), spec),
        test_labels=y[te],
        classes=[str(i) for i in range(10)],
        ids=tr.astype(np.int64),
        default_model="SmallCNN",
        noise={"type": noise_type, "rate": noise_rate, "seed": seed},
    )
