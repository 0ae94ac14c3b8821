"""WebVision 1.0 "mini": the first 50 classes of the Google images (Li et al. 2017).

The protocol of DivideMix, SOP and Prune4ReL: train on the 65,944 Google images of
classes 0–49 listed in ``info/train_filelist_google.txt``, test on the WebVision
validation images of the same classes (``info/val_filelist.txt``), and optionally on
the ImageNet validation images of those classes. The labels are the web labels as
crawled, so the clean labels are unknown (noise rates are reported as n/a).

Official layout under ``--data_path ROOT``::

    ROOT/info/train_filelist_google.txt   google/q0001/000001.jpg 0   (path relative to ROOT)
    ROOT/info/val_filelist.txt            val000001.jpg 0
    ROOT/google/q0001/...                 training images (the resized release is fine)
    ROOT/val_images_256/val000001.jpg     validation images
    ROOT/imagenet/val/<0..49>/*.JPEG      optional, DivideMix's layout; or
    ROOT/imagenet/val/<wnid>/*.JPEG       with ROOT/info/synsets.txt naming the classes

Images are decoded in DataLoader workers (``--workers``): resize the short side to
8/7·S, random (train) or centre (test) crop S, flip, sent as uint8 and normalised per
batch with the ImageNet mean and std (:class:`~deep_core.datasets.list_files.ListImageSet`).
S is ``--image-size`` (224 in the paper scripts).

The test split is the WebVision validation set and there is no separate validation
split, so "best" accuracies are chosen on it (``best_by: test``) as in the papers;
report ``last_acc`` for an unbiased number. The ImageNet images are exposed as
``extra_tests["imagenet"]`` for the engine to evaluate as a second test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DeepCoreError
from .base import NoisyDataset, train_positions
from .image_folder import IMAGE_SUFFIXES, IMAGENET_MEAN, IMAGENET_STD
from .list_files import (
    ListImageSet,
    PackedPaths,
    check_files_exist,
    parse_labels,
    read_list,
    resolve_under,
)

NUM_CLASSES = 50
TRAIN_LIST = "info/train_filelist_google.txt"
VAL_LIST = "info/val_filelist.txt"
VAL_FOLDER = "val_images_256"
SYNSETS = "info/synsets.txt"
#: labels are the web labels as given; synthetic noise on top is not offered
NOISE_TYPES = ("real", "clean")


def check_noise(noise_type: str, noise_rate: float) -> None:
    """WebVision keeps its web labels: ``real``/``clean``, or the default ``sym`` at rate 0."""
    if noise_type in NOISE_TYPES or (noise_type in ("sym", "sym-all") and noise_rate == 0.0):
        return
    raise DeepCoreError(
        f"WebVision labels are already noisy; use --noise-type real (got {noise_type!r}"
        f"{f' at rate {noise_rate:g}' if noise_rate else ''})"
    )


def load_webvision(
    *,
    data_path: str | Path,
    noise_type: str = "real",
    noise_rate: float = 0.0,
    image_size: int = 224,
    n_train: int | None = None,
    num_classes: int = NUM_CLASSES,
) -> NoisyDataset:
    """WebVision mini (classes ``0..num_classes-1``) from the official list files.

    Parameters
    ----------
    data_path : path
        The WebVision root (see the module docstring for the layout).
    noise_type : {"real", "clean"}, default="real"
        Both mean the web labels as crawled (``sym`` at rate 0 is accepted as well).
    noise_rate : float, default=0.0
    image_size : int, default=224
        Side of the crops the network sees.
    n_train : int, optional
        Keep ``n_train`` training images spread evenly over the class-sorted list.
    num_classes : int, default=50

    Raises
    ------
    DeepCoreError
        A missing list file or folder, a malformed line, a listed image that does not
        exist, or no image of some class.
    """
    check_noise(noise_type, noise_rate)
    if image_size < 8:
        raise DeepCoreError(f"--image-size must be at least 8, got {image_size}")
    root = Path(data_path)
    if not root.is_dir():
        raise DeepCoreError(f"WebVision folder not found: {root}")

    rows = read_list(root / TRAIN_LIST, columns=2, what="WebVision training list")
    labels_all = parse_labels(rows, root / TRAIN_LIST, None)
    lines = np.flatnonzero((labels_all >= 0) & (labels_all < num_classes))
    if lines.size == 0:
        raise DeepCoreError(f"{root / TRAIN_LIST} lists no image of classes 0..{num_classes - 1}")
    lines = lines[train_positions(lines.size, n_train, spread=True)]
    train_paths = [resolve_under(root, rows[i][0]) for i in lines]
    labels = labels_all[lines]
    del rows
    _check_classes(labels, num_classes, root / TRAIN_LIST)
    check_files_exist(train_paths, "WebVision training list")

    vrows = read_list(root / VAL_LIST, columns=2, what="WebVision validation list")
    vlabels_all = parse_labels(vrows, root / VAL_LIST, None)
    vkeep = np.flatnonzero((vlabels_all >= 0) & (vlabels_all < num_classes))
    if vkeep.size == 0:
        raise DeepCoreError(f"{root / VAL_LIST} lists no image of classes 0..{num_classes - 1}")
    val_folder = root / VAL_FOLDER
    if not val_folder.is_dir():
        raise DeepCoreError(f"WebVision validation images not found: {val_folder}")
    test_paths = [resolve_under(val_folder, vrows[i][0]) for i in vkeep]
    check_files_exist(test_paths, "WebVision validation list")

    def images(paths: list[str]) -> ListImageSet:
        return ListImageSet(PackedPaths(paths), image_size, IMAGENET_MEAN, IMAGENET_STD)

    extra = {}
    imagenet = _imagenet_val(root, num_classes)
    if imagenet is not None:
        paths, ylab = imagenet
        extra["imagenet"] = (images(paths), ylab)
    return NoisyDataset(
        name="WebVision",
        train=images(train_paths),
        labels=labels,
        clean_labels=None,
        test=images(test_paths),
        test_labels=vlabels_all[vkeep],
        classes=_class_names(root, num_classes),
        ids=lines.astype(np.int64),
        default_model="ResNet50",
        noise={"type": "real", "source": str(root / TRAIN_LIST), "extra_tests": sorted(extra)},
        extra_tests=extra,
    )


def _check_classes(labels: np.ndarray, num_classes: int, source: Path) -> None:
    counts = np.bincount(labels, minlength=num_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise DeepCoreError(f"{source} lists no training image of class {int(empty[0])}")


def _class_names(root: Path, num_classes: int) -> list[str]:
    """wnids from ``info/synsets.txt`` when present, else the class indices."""
    path = root / SYNSETS
    if path.is_file():
        names = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
        if len(names) >= num_classes:
            return names[:num_classes]
    return [str(c) for c in range(num_classes)]


def _imagenet_val(root: Path, num_classes: int) -> tuple[list[str], np.ndarray] | None:
    """ImageNet validation images of the first classes, if ``ROOT/imagenet/val`` exists."""
    folder = root / "imagenet" / "val"
    if not folder.is_dir():
        return None
    if (folder / "0").is_dir():
        names = [str(c) for c in range(num_classes)]
    else:
        names = _class_names(root, num_classes)
        if names[0] == "0":
            raise DeepCoreError(
                f"{folder} has wnid folders but {root / SYNSETS} is missing to name the classes"
            )
    paths, labels = [], []
    for c, name in enumerate(names):
        sub = folder / name
        if not sub.is_dir():
            raise DeepCoreError(f"ImageNet validation folder of class {c} not found: {sub}")
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [c] * len(files)
    if not paths:
        raise DeepCoreError(f"no images under {folder}")
    return paths, np.asarray(labels, dtype=np.int64)
