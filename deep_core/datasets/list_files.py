"""Data sets described by list files (WebVision, Clothing-1M): reading, checking, decoding.

Large web data sets come as text lists of ``relative/path.jpg label`` (or bare keys)
next to an image tree. This module holds what their loaders share:

* :func:`read_list` parses a one- or two-column list with line-numbered errors;
* :func:`check_files_exist` confirms that every listed image exists, listing each
  folder once (a million ``stat`` calls would be slower on network disks);
* :class:`PackedPaths` stores a million paths in two numpy arrays, so DataLoader
  workers share them without the copy-on-write growth that a list of Python strings
  causes (every access to a Python object touches its reference count);
* :class:`ListImageSet` decodes the files in DataLoader workers (transforms v2) and
  turns a bad image found inside a worker into the usual one-line error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DeepCoreError, one_line
from .base import Batch, FileImageSet


def read_list(path: Path, *, columns: int, what: str = "list file") -> list[list[str]]:
    """The rows of a whitespace-separated list file with exactly ``columns`` fields.

    Blank lines are skipped. A missing file or a malformed line is a
    :class:`DeepCoreError` naming the file (and the line).
    """
    if not path.is_file():
        raise DeepCoreError(f"{what} not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != columns:
                raise DeepCoreError(
                    f"{path}:{no}: expected {columns} column(s), got {len(parts)}: {line.strip()!r}"
                )
            rows.append(parts)
    if not rows:
        raise DeepCoreError(f"{what} {path} is empty")
    return rows


def parse_labels(rows: Sequence[Sequence[str]], path: Path, num_classes: int | None) -> np.ndarray:
    """Second column as int64 labels; non-integers or labels outside range are errors."""
    try:
        labels = np.fromiter((int(r[1]) for r in rows), dtype=np.int64, count=len(rows))
    except ValueError:
        bad = next(r for r in rows if not r[1].lstrip("-").isdigit())
        raise DeepCoreError(f"{path}: label {bad[1]!r} of {bad[0]} is not an integer") from None
    if num_classes is not None and labels.size:
        wrong = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if wrong.size:
            i = int(wrong[0])
            raise DeepCoreError(
                f"{path}: label {labels[i]} of {rows[i][0]} is outside [0, {num_classes})"
            )
    return labels


def check_files_exist(paths: Sequence[str], what: str) -> None:
    """Raise if any of ``paths`` does not exist (each parent folder is listed once)."""
    listed: dict[str, frozenset[str]] = {}
    for p in paths:
        folder, name = os.path.split(p)
        entries = listed.get(folder)
        if entries is None:
            try:
                entries = listed[folder] = frozenset(os.listdir(folder or "."))
            except (FileNotFoundError, NotADirectoryError):
                raise DeepCoreError(f"{what}: image not found: {p} (no folder {folder})") from None
        if name not in entries:
            raise DeepCoreError(f"{what}: image not found: {p}")


class PackedPaths(Sequence[str]):
    """Immutable sequence of paths kept as one UTF-8 byte array plus offsets."""

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [p.encode() for p in paths]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return self._offsets.size - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._blob[self._offsets[i] : self._offsets[i + 1]].tobytes().decode()

    def take(self, positions: np.ndarray) -> PackedPaths:
        """The paths at ``positions`` as a new packed sequence."""
        return PackedPaths([self[int(i)] for i in positions])

    @property
    def nbytes(self) -> int:
        return int(self._blob.nbytes + self._offsets.nbytes)


class ViewTransform:
    """One view of a uint8 image, kept uint8 (normalisation happens per batch).

    Resize the short side to ``8/7·size``, then crop ``size`` (random for training
    views, centre for ``clean``) and flip at random (training views); the ``strong``
    view adds AutoAugment (ImageNet policy) and random erasing. Randomness comes from
X
    one callable with tensor slicing because per-transform dispatch costs more than
    the work itself on small images.
    """

    def __init__(self, size: int, *, train: bool, strong: bool = False,
                 fill: tuple[int, ...] = (0, 0, 0)) -> None:  # fmt: skip
        self.size = size
        self.resize = int(round(size * 8 / 7))
        self.train = train
        self.strong = strong
        self.fill = list(fill)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        s = self.size
        x = F.resize(img, [self.resize], antialias=True)
        h, w = x.shape[-2:]
        if self.train:
            i = int(torch.randint(0, h - s + 1, ()))
            j = int(torch.randint(0, w - s + 1, ()))
        else:
            i, j = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        x = x[..., i : i + s, j : j + s]
        if self.train and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        if self.strong:
            from torchvision.transforms import v2

            x = v2.AutoAugment(fill=self.fill)(x)
            # Erase to the mean colour: zero after normalisation, as erasing a
            # normalised image with value 0 would give.
            x = v2.RandomErasing(value=self.fill)(x)
        return x.contiguous()


def view_transforms(size: int, mean: Sequence[float]) -> dict[str, Callable]:
    """``clean`` / ``weak`` / ``strong`` :class:`ViewTransform` for crops of ``size``."""
    fill = tuple(int(round(255 * m)) for m in mean)
    return {
        "clean": ViewTransform(size, train=False),
        "weak": ViewTransform(size, train=True),
        "strong": ViewTransform(size, train=True, strong=True, fill=fill),
    }


class ListImageSet(FileImageSet):
    """Image files decoded in DataLoader workers, sent as uint8, normalised per batch.

    Workers decode and crop each image (:class:`ViewTransform`) and hand over uint8
    tensors, a quarter of the bytes of float32; the batch is converted and normalised
    in one tensor operation on the target device. Paths are :class:`PackedPaths`.
    A :class:`DeepCoreError` raised while decoding in a worker (a corrupt image)
    reaches the main process wrapped in the worker's traceback; it is re-raised here as
    the original one-line message.
    """

    def __init__(self, paths: PackedPaths, size: int, mean: Sequence[float],
                 std: Sequence[float]) -> None:  # fmt: skip
        # Import the decoders here, so that forked DataLoader workers inherit them instead
        # of importing torchvision anew (seconds) in every worker of every epoch.
        import torchvision.io  # noqa: F401
        import torchvision.transforms.v2  # noqa: F401

        # FileImageSet would copy the paths into a list of str; keep them packed.
        super().__init__([], view_transforms(size, mean), (3, size, size))
        self.paths = paths  # type: ignore[assignment]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def batches(self, positions=None, **kwargs) -> Iterator[Batch]:  # type: ignore[override]
        stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        try:
            for batch in super().batches(positions, **kwargs):
                yield Batch([self._normalize(v, stats) for v in batch.views], batch.positions)
        except DeepCoreError as e:
            raise DeepCoreError(one_line(str(e))) from None

    def _normalize(self, x: torch.Tensor, stats: dict) -> torch.Tensor:
        if x.device not in stats:
            shape = (1, len(self.mean), 1, 1)
            stats[x.device] = (
                torch.tensor(self.mean, device=x.device).view(shape) * 255.0,
                torch.tensor(self.std, device=x.device).view(shape) * 255.0,
            )
        mean, std = stats[x.device]
        return x.float().sub_(mean).div_(std)  # in place: 3x faster than (x - m) / s on CPU


def resolve_under(root: Path, rel: str) -> str:
    """``root/rel`` as a string (no filesystem access)."""
    return os.path.join(str(root), rel)
