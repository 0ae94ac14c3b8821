"""Any image folder with class sub-folders, with synthetic label noise.

Layout: ``DATA/train/<class>/<image>`` and ``DATA/test/<class>/<image>`` (``val/`` is
accepted in place of ``test/``). Classes are the sorted sub-folder names of ``train``
and must be the same in the evaluation split. Small images (``image_size`` ≤ 64) are
decoded once into memory and augmented in batches; larger ones are decoded in
DataLoader workers each epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..augment import AugmentSpec
from ..errors import DeepCoreError, unknown_name
from .base import (
    FileImageSet,
    ImageSet,
    NoisyDataset,
    TensorImageSet,
    decode_image_file,
    train_positions,
)
from .noise import make_noisy_labels

NOISE_TYPES = ("clean", "sym", "sym-all", "idn")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IN_MEMORY_MAX_SIDE = 64


def list_class_folder(
    root: Path, classes: list[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Files and labels of ``root/<class>/*``; ``classes`` fixes the class list and order."""
    if not root.is_dir():
        raise DeepCoreError(f"image folder not found: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    if classes is None:
        classes = found
        if not classes:
            raise DeepCoreError(f"no class sub-folders in {root}")
        if len(classes) == 1:
            raise DeepCoreError(
                f"{root} has only one class folder ({classes[0]}); a classifier needs two or more"
            )
    elif found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise DeepCoreError(
            f"classes of {root} differ from the training classes: extra {extra}, missing {missing}"
        )
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DeepCoreError(f"class folder {root / name} has no images")
        paths += [str(p) for p in files]
        labels += [c] * len(files)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def decode_all(paths: list[str], size: int) -> torch.Tensor:
    """Decode and resize every image to ``size``×``size`` (uint8, N×3×S×S), with progress."""
    from torchvision.transforms.v2 import functional as F
    from tqdm import tqdm

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, p in enumerate(
        tqdm(paths, desc="decoding images", unit="img", leave=False, disable=len(paths) < 2000)
    ):
        img = decode_image_file(p)
        out[i] = F.resize(img, [size, size], antialias=True)
    return out


def file_transforms(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """transforms v2 per view for large images: resize to 8/7·S, random/centre crop S."""
    from torchvision.transforms import v2

    resize = int(round(size * 8 / 7))
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return {
        "clean": v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size), *tail]),
        "weak": v2.Compose(
            [
                v2.Resize(resize, antialias=True),
                v2.RandomCrop(size),
                v2.RandomHorizontalFlip(),
                *tail,
            ]
        ),
        "strong": v2.Compose(
            [
                v2.Resize(resize, antialias=True),
                v2.RandomCrop(size),
                v2.RandomHorizontalFlip(),
                v2.AutoAugment(),
                *tail,
                v2.RandomErasing(value=0),
            ]
        ),
    }


def make_image_set(paths: list[str], size: int) -> ImageSet:
    if size <= IN_MEMORY_MAX_SIDE:
        images = decode_all(paths, size)
        spec = AugmentSpec(
            IMAGENET_MEAN,
            IMAGENET_STD,
            crop_padding=max(1, size // 8),
            flip=True,
            cutout=max(1, size // 2),
        )
        return TensorImageSet(images, spec)
    return FileImageSet(paths, file_transforms(size), (3, size, size))


def load_image_folder(
    *,
    data_path: str | Path,
    noise_type: str,
    noise_rate: float,
    seed: int,
    image_size: int = 32,
    n_train: int | None = None,
) -> NoisyDataset:
    """An image folder as a noisy data set (the folder labels are the clean labels)."""
    if noise_type not in NOISE_TYPES:
        raise unknown_name("noise type for ImageFolder", noise_type, NOISE_TYPES)
    root = Path(data_path)
    if not (root / "train").is_dir():
        raise DeepCoreError(f"image folder {root} needs a train/ sub-folder with class folders")
    test_root = root / "test" if (root / "test").is_dir() else root / "val"
    if not test_root.is_dir():
        raise DeepCoreError(f"image folder {root} needs a test/ (or val/) sub-folder")
    if image_size < 8:
        raise DeepCoreError(f"--image-size must be at least 8, got {image_size}")
    classes, train_paths, clean = list_class_folder(root / "train")
    keep = train_positions(clean.size, n_train, spread=True)
    train_paths, clean = [train_paths[i] for i in keep], clean[keep]
    _, test_paths, test_labels = list_class_folder(test_root, classes)
    train = make_image_set(train_paths, image_size)
    images = None
    if noise_type == "idn":
        if not isinstance(train, TensorImageSet):
            raise DeepCoreError(
                f"idn noise needs in-memory images (--image-size <= {IN_MEMORY_MAX_SIDE})"
            )
        images = train.images.float().div(255).numpy()
    noisy = make_noisy_labels(
        clean,
        noise_type=noise_type,
        rate=noise_rate,
        num_classes=len(classes),
        seed=seed,
        images=images,
    )
    return NoisyDataset(
        name="ImageFolder",
        train=train,
        labels=noisy,
        clean_labels=clean,
        test=make_image_set(test_paths, image_size),
        test_labels=test_labels,
        classes=classes,
        ids=keep,
        default_model="ResNet18" if image_size > IN_MEMORY_MAX_SIDE else "PreActResNet18",
        noise={"type": noise_type, "rate": noise_rate, "seed": seed, "root": str(root)},
    )
