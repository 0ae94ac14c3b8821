"""The data-set contract shared by every data source.

A :class:`NoisyDataset` holds a training split with noisy labels (and the clean ones
where known), a test split, an optional validation split, class names and the
original sample ids. Images live behind an :class:`ImageSet`, which yields augmented
batches of any positions in any order:

* :class:`TensorImageSet` keeps uint8 images in one tensor and augments whole batches
  with tensor ops (CIFAR, the embedded default, small image folders);
* :class:`FileImageSet` decodes image files in DataLoader workers with torchvision's
  decoders and transforms v2 (WebVision, Clothing-1M, large image folders).

Batches are a function of ``(seed, epoch)``: shuffling and augmentation draw from
generators seeded by both, so a resumed run sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..augment import AugmentSpec, normalize, strong_view, weak_view
from ..errors import DeepCoreError
from ..fingerprint import hash_arrays, hash_files

VIEWS = ("clean", "weak", "strong")


def train_positions(n_total: int, n_train: int | None, *, spread: bool = False) -> np.ndarray:
    """Positions kept by ``--n-train``: the first ``n_train`` (or, with ``spread``, evenly
    spaced ones, for listings sorted by class). Label noise is drawn after this cut, so
    synthetic rates stay exact on the kept samples."""
    if n_train is None:
        return np.arange(n_total, dtype=np.int64)
    if not 0 < n_train <= n_total:
        raise DeepCoreError(f"--n-train must be in [1, {n_total}], got {n_train}")
    if spread:
        return np.floor(np.arange(n_train) * (n_total / n_train)).astype(np.int64)
    return np.arange(n_train, dtype=np.int64)


def stream_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (seed, epoch, stream id, ...)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
        >> 1
    )


@dataclass
class Batch:
    """One batch: a float tensor per requested view and the positions it holds."""

    views: list[torch.Tensor]
    positions: torch.Tensor


class ImageSet(abc.ABC):
    """Images of one split, addressed by position ``0..len-1``."""

    #: (channels, height, width) of what the network sees
    image_shape: tuple[int, int, int]

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def batches(
        self,
        positions: np.ndarray | None = None,
        *,
        batch_size: int,
        views: Sequence[str] = ("clean",),
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        workers: int = 0,
    ) -> Iterator[Batch]:
        """Yield batches of ``positions`` (default: all), shuffled by (seed, epoch) if asked."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A cheap hash of the content (part of cache keys: changed data, new key)."""

    @staticmethod
    def _order(
        positions: np.ndarray | None, n: int, shuffle: bool, seed: int, epoch: int
    ) -> np.ndarray:
        pos = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        if shuffle:
            g = torch.Generator().manual_seed(stream_seed(seed, epoch, 1))
            pos = pos[torch.randperm(pos.size, generator=g).numpy()]
        return pos

    @staticmethod
    def _check_views(views: Sequence[str]) -> None:
        for v in views:
            if v not in VIEWS:
                raise DeepCoreError(f"unknown view {v!r}; choose from: {', '.join(VIEWS)}")


class TensorImageSet(ImageSet):
    """In-memory uint8 images (N, C, H, W) with batched tensor augmentation."""

    def __init__(self, images: torch.Tensor, spec: AugmentSpec) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorImageSet needs a uint8 tensor of shape (N, C, H, W)")
        self.images = images.contiguous()
        self.spec = spec
        self.image_shape = tuple(images.shape[1:])  # type: ignore[assignment]
        self._device_copy: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def fingerprint(self) -> str:
        """Hash of every pixel."""
        return hash_arrays(self.images.numpy())

    def _on(self, device: torch.device) -> torch.Tensor:
        if device.type == "cpu":
            return self.images
        key = str(device)
        if key not in self._device_copy:
            self._device_copy[key] = self.images.to(device)
        return self._device_copy[key]

    def view(
        self,
        x: torch.Tensor,
        view: str,
        generator: torch.Generator,
        host_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Apply ``view`` to a uint8 batch; returns normalised float32.

        ``generator`` draws the weak view on its device; the strong view's AutoAugment
        policy draws on ``host_generator`` (a CPU generator; default ``generator``).
        """
        if view == "clean":
            return normalize(x, self.spec)
        if view == "weak":
            return normalize(weak_view(x, self.spec, generator), self.spec)
        return strong_view(x, self.spec, host_generator or generator)

    def batches(
        self,
        positions=None,
        *,
        batch_size,
        views=("clean",),
        shuffle=False,
        seed=0,
        epoch=0,
        device="cpu",
        drop_last=False,
        workers=0,
    ):
        self._check_views(views)
        device = torch.device(device)
        order = self._order(positions, len(self), shuffle, seed, epoch)
        # images, the epoch's order and the augmentation draws all live on the training
        # device: a batch costs no host-to-device copy (one per epoch for the order)
        images = self._on(device)
        order_dev = torch.from_numpy(order).to(device)
        g = torch.Generator(device=device).manual_seed(stream_seed(seed, epoch, 2))
        g_host = g if device.type == "cpu" else torch.Generator().manual_seed(
            stream_seed(seed, epoch, 3)
        )
        stop = order.size - (order.size % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            pos = order_dev[start : start + batch_size]
            x = images.index_select(0, pos)  # much cheaper than images[pos] on the CPU
            yield Batch([self.view(x, v, g, g_host) for v in views], pos)


class _FileDataset(torch.utils.data.Dataset):
    """Items are ``(position, seed, views)``: each sample's augmentation draws from torch's
    RNG seeded with ``seed``, so a batch is the same whichever worker (or the main
    process) decodes it, and persistent workers need no re-seeding between epochs."""

    def __init__(self, paths: Sequence[str], transforms: dict[str, Callable]):
        self.paths = paths
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int, tuple[str, ...]]):
        i, seed, views = item
        img = decode_image_file(self.paths[i])
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left alone
            torch.manual_seed(seed)
            return tuple(self.transforms[v](img) for v in views), i


class _Plan(torch.utils.data.Sampler):
    """The batches of one pass of a reusable loader (set before each ``iter(loader)``):
    lists of ``(position, seed, views)`` made lazily from the pass's arrays."""

    def __init__(self) -> None:
        self.set(np.empty(0, np.int64), np.empty(0, np.int64), (), 1)

    def set(self, order: np.ndarray, seeds: np.ndarray, views: tuple[str, ...], size: int):
        self.order, self.seeds, self.views, self.size = order, seeds, views, size

    def __iter__(self):
        for s in range(0, self.order.size, self.size):
            pos, seeds = self.order[s : s + self.size].tolist(), self.seeds[s : s + self.size]
            yield [(p, q, self.views) for p, q in zip(pos, seeds.tolist())]

    def __len__(self) -> int:
        return -(-self.order.size // self.size)


def decode_image_file(path: str | Path) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor (C, H, W); a bad file is a clear error.

    16-bit images (PNG) are scaled to 8 bits, not truncated.
    """
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except FileNotFoundError:
        raise DeepCoreError(f"image not found: {path}") from None
    except (RuntimeError, ValueError) as e:
        raise DeepCoreError(
            f"corrupt or unreadable image {path}: {str(e).splitlines()[0]}"
        ) from None
    if img.dtype == torch.uint16:  # 16-bit PNG: 0..65535 onto 0..255 (65535 / 257 = 255)
        img = img.to(torch.int32).add_(128).div_(257, rounding_mode="floor").to(torch.uint8)
    elif img.dtype != torch.uint8:
        raise DeepCoreError(f"unsupported pixel type {img.dtype} in image {path}")
    return img


class FileImageSet(ImageSet):
    """Image files decoded in DataLoader workers, with one transform per view.

    Parameters
    ----------
    paths : sequence of str
        One file per position.
    transforms : dict
        ``{"clean": f, "weak": g, ...}``: callables from a uint8 (C, H, W) tensor to a
        float tensor (torchvision transforms v2). Random transforms draw from torch's
        RNG, seeded per sample from (seed, epoch, position).
    image_shape : tuple
        (C, H, W) of the transformed images.
    """

    def __init__(self, paths: Sequence[str], transforms: dict[str, Callable], image_shape) -> None:
        # keep compact sequences (e.g. packed path tables) as they are: a list of 1M
        # str objects is copied page by page into every DataLoader worker
        is_seq = hasattr(paths, "__getitem__") and hasattr(paths, "__len__")
        self.paths = paths if is_seq and not isinstance(paths, str) else list(paths)
        self.transforms = transforms
        self.image_shape = tuple(image_shape)
        self._idle: dict[tuple[int, bool], list[torch.utils.data.DataLoader]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """Hash of the paths, sizes and mtimes, and of sampled bytes of the files."""
        return hash_files(self.paths)

    def batches(
        self,
        positions=None,
        *,
        batch_size,
        views=("clean",),
        shuffle=False,
        seed=0,
        epoch=0,
        device="cpu",
        drop_last=False,
        workers=0,
    ):
        self._check_views(views)
        missing = [v for v in views if v not in self.transforms]
        if missing:
            raise DeepCoreError(f"this data set has no {missing[0]!r} view")
        device = torch.device(device)
        order = self._order(positions, len(self), shuffle, seed, epoch)
        order = order[: order.size - (order.size % batch_size if drop_last else 0)]
        # one seed per (seed, epoch, position): a multiplicative hash of the position
        base = np.uint64(stream_seed(seed, epoch, 4))
        with np.errstate(over="ignore"):
            seeds = (base + order.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> 1
        pin = device.type == "cuda"
        loader = self._take_loader(workers, pin)
        loader.batch_sampler.set(order, seeds.astype(np.int64), tuple(views), batch_size)
        try:
            for xs, pos in loader:
                yield Batch(
                    [x.to(device, non_blocking=True) for x in xs],
                    pos.to(device, non_blocking=True),
                )
        finally:
            self._idle.setdefault((workers, pin), []).append(loader)

    def _take_loader(self, workers: int, pin: bool) -> torch.utils.data.DataLoader:
        """An idle loader, or a new one: with workers, they persist across epochs and
        calls (DivideMix makes several passes per epoch, two of them interleaved)."""
        idle = self._idle.setdefault((workers, pin), [])
        if idle:
            return idle.pop()
        import torchvision.io  # noqa: F401  (once here, not in every forked worker)

        return torch.utils.data.DataLoader(
            _FileDataset(self.paths, self.transforms),
            batch_sampler=_Plan(),
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
        )


@dataclass
class NoisyDataset:
    """A training split with noisy labels, plus evaluation splits.

    Attributes
    ----------
    name : str
    train : ImageSet
    labels : ndarray of int64, shape (n,)
        Noisy training labels (what every learner and selection method sees).
    clean_labels : ndarray of int64, shape (n,), or None
        True labels where known (CIFAR, synthetic noise); evaluation only.
    test : ImageSet
    test_labels : ndarray of int64
    classes : list of str
    ids : ndarray of int64, shape (n,)
        Original sample ids (row in the source data set) of the training samples.
    val, val_labels : optional validation split (chooses the best epoch when present)
    noise : dict
        How the noisy labels came about (type, requested and realised rate, source).
    default_model : str
        Network used when ``--model`` is not given.
    extra_tests : dict
        Further test sets ``{name: (images, labels)}`` evaluated each epoch as
        ``<name>_acc`` (WebVision's ImageNet validation).
    """

    name: str
    train: ImageSet
    labels: np.ndarray
    clean_labels: np.ndarray | None
    test: ImageSet
    test_labels: np.ndarray
    classes: list[str]
    ids: np.ndarray
    default_model: str
    val: ImageSet | None = None
    val_labels: np.ndarray | None = None
    noise: dict[str, Any] = field(default_factory=dict)
    extra_tests: dict[str, tuple[ImageSet, np.ndarray]] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def noise_mask(self) -> np.ndarray | None:
        """True where the noisy label differs from the clean one (None if unknown)."""
        return None if self.clean_labels is None else self.labels != self.clean_labels

    def fingerprint(self) -> str:
        """Hash of the training data the warm-up sees: images, noisy labels, ids.

        Computed once per data set object; it enters the warm-up cache key, so signals
        recorded on other files or labels under the same path are never reused.
        """
        if self._fingerprint is None:
            labels = hash_arrays(self.labels, self.ids)
            self._fingerprint = f"{len(self.labels)}-{labels}-{self.train.fingerprint()}"
        return self._fingerprint

    def realised_noise_rate(self) -> float | None:
        m = self.noise_mask
        return None if m is None else float(m.mean())
