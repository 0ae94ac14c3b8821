"""Clothing-1M (Xiao et al. 2015): one million web images of 14 clothing classes.

Official layout under ``--data_path ROOT``::

    ROOT/noisy_label_kv.txt         images/0/38/2359113848,3234614050.jpg 5
    ROOT/clean_label_kv.txt         images/... 3      (labels of the clean val/test keys)
    ROOT/noisy_train_key_list.txt   images/...        (the noisy training set)
    ROOT/clean_val_key_list.txt     images/...        (14,313 clean validation images)
    ROOT/clean_test_key_list.txt    images/...        (10,526 clean test images)
    ROOT/category_names_eng.txt     optional class names
    ROOT/images/0/38/...

Keys are paths relative to ROOT; DivideMix's copy, which keeps the image folders
directly in ROOT (``ROOT/0/38/...``), is recognised as well. The Prune4ReL
reference's two-column lists are accepted when the official files are absent:
``ROOT/noisy_train.txt`` and ``ROOT/clean_val.txt`` (``path label``), plus
``ROOT/clean_test.txt`` if you have it.

Protocol: the clean validation set chooses the best epoch (``best_by: val``) and the
clean test set gives the reported accuracy. Without a clean test list (reference
lists), the validation list is the test set, as the reference does, and "best" is
then chosen on it. The clean labels of the training images are unknown except for
the images that also appear in ``clean_label_kv.txt``; their agreement is recorded in
``noise["overlap_noise_rate"]``, while ``clean_labels`` stays None.

DivideMix trains each Clothing-1M epoch on a fresh class-balanced draw of 1,000
batches (``num_samples = 1000 × batch size``, at most ``num_samples / 14`` per class)
rather than on the whole set. :meth:`Clothing1MDataset.epoch_indices` gives that draw
for any subset, seeded by (seed, epoch); a learner that wants it calls it at the start
of each epoch (``batches_per_epoch`` is 1,000).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError, unknown_name
from .base import NoisyDataset, stream_seed, train_positions
from .list_files import (
    ListImageSet,
    PackedPaths,
    check_files_exist,
    parse_labels,
    read_list,
    resolve_under,
)

log = logging.getLogger("deep_core")

NUM_CLASSES = 14
CLASSES = [
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket",
    "Down Coat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
]  # fmt: skip
#: Clothing-1M mean and std (DivideMix)
MEAN = (0.6959, 0.6537, 0.6371)
STD = (0.3113, 0.3192, 0.3214)
OFFICIAL = ("noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt",
            "clean_val_key_list.txt", "clean_test_key_list.txt")  # fmt: skip
REFERENCE = ("noisy_train.txt", "clean_val.txt")
NOISE_TYPES = ("real", "clean")
BATCHES_PER_EPOCH = 1000


@dataclass
class Clothing1MDataset(NoisyDataset):
    """A :class:`NoisyDataset` with DivideMix's class-balanced epoch draw."""

    batches_per_epoch: int = BATCHES_PER_EPOCH

    def epoch_indices(
        self, indices: np.ndarray, *, num_samples: int, epoch: int, seed: int
    ) -> np.ndarray:
        """The class-balanced draw of one epoch from ``indices`` (sorted positions).

        At most ``ceil(num_samples / num_classes)`` samples per noisy class and
        ``num_samples`` in total, in a random order drawn from ``(seed, epoch)`` —
        DivideMix's sampling for Clothing-1M (``num_samples = 1000 × batch size``; twice
        that in its warm-up). A subset smaller than the quota is returned whole.
        """
        return balanced_draw(
            self.labels, indices, num_samples=num_samples, num_classes=self.num_classes,
            rng=np.random.default_rng(stream_seed(seed, epoch, 71)),
        )  # fmt: skip


def balanced_draw(
    labels: np.ndarray,
    indices: np.ndarray,
    *,
    num_samples: int,
    num_classes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sorted positions of a random draw from ``indices`` capped per class and in total.

    Walks ``indices`` in a random order and keeps a sample while its class has fewer
    than ``num_samples / num_classes`` kept, until ``num_samples`` are kept (the rule
    of DivideMix's Clothing-1M loader), in O(n log n) without a Python loop.
    """
    if num_samples < 1:
        raise DeepCoreError(f"num_samples must be at least 1, got {num_samples}")
    idx = np.asarray(indices, dtype=np.int64)
    order = idx[rng.permutation(idx.size)]
    y = labels[order]
    # Rank of each sample among those of its class, in the random order.
    by_class = np.argsort(y, kind="stable")
    starts = np.searchsorted(y[by_class], np.arange(num_classes))
    rank = np.empty(idx.size, dtype=np.int64)
    rank[by_class] = np.arange(idx.size) - starts[y[by_class]]
    cap = int(np.ceil(num_samples / num_classes))
    kept = order[rank < cap][:num_samples]
    return np.sort(kept)


def load_clothing1m(
    *,
    data_path: str | Path,
    noise_type: str = "real",
    noise_rate: float = 0.0,
    image_size: int = 224,
    n_train: int | None = None,
) -> Clothing1MDataset:
    """Clothing-1M from the official list files (or the reference's two-column lists).

    Parameters
    ----------
    data_path : path
        The Clothing-1M root (see the module docstring for the layouts).
    noise_type : {"real", "clean"}, default="real"
        Both mean the noisy web labels as given (``sym`` at rate 0 is accepted too).
    noise_rate : float, default=0.0
    image_size : int, default=224
    n_train : int, optional
        Keep the first ``n_train`` training images of the list.

    Raises
    ------
    DeepCoreError
        Missing list files or images, malformed lines, labels outside 0..13, a
        training key without a noisy label, or a val/test key without a clean label.
    """
    if not (noise_type in NOISE_TYPES or (noise_type in ("sym", "sym-all") and noise_rate == 0)):
        raise unknown_name("noise type for Clothing1M (its labels are already noisy)",
                           noise_type, NOISE_TYPES)  # fmt: skip
    if image_size < 8:
        raise DeepCoreError(f"--image-size must be at least 8, got {image_size}")
    root = Path(data_path)
    if not root.is_dir():
        raise DeepCoreError(f"Clothing-1M folder not found: {root}")
    if (root / OFFICIAL[0]).is_file() or not (root / REFERENCE[0]).is_file():
        lists = _official_lists(root)
    else:
        lists = _reference_lists(root)
    train_paths, labels, ids, val, test, noise = lists
    keep = train_positions(labels.size, n_train)
    if keep.size != labels.size:
        train_paths = [train_paths[i] for i in keep]
        labels, ids = labels[keep], ids[keep]
    check_files_exist(train_paths, "Clothing-1M training list")
    for paths, _, what in (val, test):
        check_files_exist(paths, what)

    def images(paths: list[str]) -> ListImageSet:
        return ListImageSet(PackedPaths(paths), image_size, MEAN, STD)

    return Clothing1MDataset(
        name="Clothing1M",
        train=images(train_paths),
        labels=labels,
        clean_labels=None,
        test=images(test[0]),
        test_labels=test[1],
        classes=_class_names(root),
        ids=ids,
        default_model="ResNet50",
        val=images(val[0]) if val[0] else None,
        val_labels=val[1] if val[0] else None,
        noise=noise,
    )


def _official_lists(root: Path):
    missing = [name for name in OFFICIAL if not (root / name).is_file()]
    if missing:
        raise DeepCoreError(
            f"Clothing-1M list file not found: {root / missing[0]} (expected the official "
            f"{', '.join(OFFICIAL)}, or the reference's {', '.join(REFERENCE)})"
        )
    noisy_kv = _kv(root / "noisy_label_kv.txt")
    clean_kv = _kv(root / "clean_label_kv.txt")
    keys = [r[0] for r in read_list(root / "noisy_train_key_list.txt", columns=1,
                                     what="Clothing-1M list file")]  # fmt: skip
    labels = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        y = noisy_kv.get(k)
        if y is None:
            raise DeepCoreError(f"training key {k} has no label in {root / 'noisy_label_kv.txt'}")
        labels[i] = y
    overlap = [(labels[i], clean_kv[k]) for i, k in enumerate(keys) if k in clean_kv]
    resolve = _key_resolver(root, keys[0])
    splits = []
    for name, what in (("clean_val_key_list.txt", "Clothing-1M clean validation list"),
                       ("clean_test_key_list.txt", "Clothing-1M clean test list")):  # fmt: skip
        skeys = [r[0] for r in read_list(root / name, columns=1, what="Clothing-1M list file")]
        slabels = np.empty(len(skeys), dtype=np.int64)
        for i, k in enumerate(skeys):
            y = clean_kv.get(k)
            if y is None:
                raise DeepCoreError(
                    f"{name}: key {k} has no label in {root / 'clean_label_kv.txt'}"
                )
            slabels[i] = y
        splits.append(([resolve(k) for k in skeys], slabels, what))
    noise = {"type": "real", "source": str(root / "noisy_label_kv.txt"), "layout": "official",
             "overlap_with_clean": len(overlap),
             "overlap_noise_rate": (float(np.mean([a != b for a, b in overlap]))
                                    if overlap else None)}  # fmt: skip
    paths = [resolve(k) for k in keys]
    return paths, labels, np.arange(len(keys), dtype=np.int64), splits[0], splits[1], noise


def _reference_lists(root: Path):
    train_rows = read_list(root / "noisy_train.txt", columns=2, what="Clothing-1M list file")
    labels = parse_labels(train_rows, root / "noisy_train.txt", NUM_CLASSES)
    paths = [resolve_under(root, r[0]) for r in train_rows]
    val_rows = read_list(root / "clean_val.txt", columns=2, what="Clothing-1M list file")
    val = ([resolve_under(root, r[0]) for r in val_rows],
           parse_labels(val_rows, root / "clean_val.txt", NUM_CLASSES),
           "Clothing-1M clean validation list")  # fmt: skip
    if (root / "clean_test.txt").is_file():
        test_rows = read_list(root / "clean_test.txt", columns=2, what="Clothing-1M list file")
        test = ([resolve_under(root, r[0]) for r in test_rows],
                parse_labels(test_rows, root / "clean_test.txt", NUM_CLASSES),
                "Clothing-1M clean test list")  # fmt: skip
    else:
        log.warning(
            "warning: %s has no clean_test.txt: the clean validation list is the test "
            "set and also chooses the best epoch (as the Prune4ReL reference does)",
            root,
        )
        test, val = val, ([], np.zeros(0, np.int64), "")
    noise = {"type": "real", "source": str(root / "noisy_train.txt"), "layout": "reference"}
    return paths, labels, np.arange(labels.size, dtype=np.int64), val, test, noise


def _kv(path: Path) -> dict[str, int]:
    rows = read_list(path, columns=2, what="Clothing-1M list file")
    labels = parse_labels(rows, path, NUM_CLASSES)
    return dict(zip((r[0] for r in rows), labels.tolist(), strict=True))


def _key_resolver(root: Path, first_key: str) -> Callable[[str], str]:
    """Keys resolve under ROOT; DivideMix's copy keeps ``images/*`` directly in ROOT."""
    prefix = "images/"
    strip = (
        first_key.startswith(prefix)
        and not (root / first_key).is_file()
        and (root / first_key[len(prefix) :]).is_file()
    )
    if strip:
        return lambda k: resolve_under(root, k.removeprefix(prefix))
    return lambda k: resolve_under(root, k)


def _class_names(root: Path) -> list[str]:
    path = root / "category_names_eng.txt"
    if path.is_file():
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if len(names) == NUM_CLASSES:
            return names
    return list(CLASSES)
