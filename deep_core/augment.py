"""Batched augmentation on uint8 image tensors (no per-image PIL pipeline).

In-memory data sets (CIFAR, the embedded default) keep their images as one uint8
tensor and augment a whole batch with a few tensor ops: random crop with zero padding,
horizontal flip, Cutout, then normalisation. Randomness comes from an explicit
``torch.Generator`` so an epoch's augmentation is a function of (seed, epoch); draws are
made on the generator's device (the training device for in-memory data sets, so a batch
is augmented without a host round trip).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSpec:
    """How a data set's training view is augmented and normalised.

    Attributes
    ----------
    mean, std : tuple of float
        Per-channel normalisation on the [0, 1] scale.
    crop_padding : int
        Zero padding for the random crop (0 disables the crop).
    flip : bool
        Random horizontal flip with probability 0.5.
    cutout : int
        Side of the Cutout square in the *strong* view (0 disables it).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 16


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Crop each image of ``x`` (B, C, H, W) at a random offset of its zero-padded copy."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device)
    oy, ox = oy.to(x.device, non_blocking=True), ox.to(x.device, non_blocking=True)
    rows = oy[:, None] + torch.arange(h, device=x.device)[None, :]  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)[None, :]  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    # (B, H, W, C) gathered through advanced indexing, then back to (B, C, H, W)
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 0.5."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(x.device, non_blocking=True)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size``×``size`` square per image, centred uniformly (may clip at edges)."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator, device=generator.device)
    cx = torch.randint(0, w, (b,), generator=generator, device=generator.device)
    cy, cx = cy.to(x.device, non_blocking=True), cx.to(x.device, non_blocking=True)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy[:, None] - size // 2)) & (ys < (cy[:, None] + size - size // 2))
    in_x = (xs >= (cx[:, None] - size // 2)) & (xs < (cx[:, None] + size - size // 2))
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None, :, :], 0)


@functools.lru_cache(maxsize=32)
def _stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: a fresh host-to-device copy per batch would stall the GPU
    shape = (1, -1, 1, 1)
    return (
        torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
        torch.tensor(std, dtype=torch.float32, device=device).view(shape),
    )


def normalize(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 normalised with ``spec.mean`` / ``spec.std``."""
    mean, std = _stats(tuple(spec.mean), tuple(spec.std), x.device)
    return (x.float().div_(255.0) - mean) / std


def weak_view(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Random crop and flip of a uint8 batch (still uint8)."""
    x = random_crop(x, spec.crop_padding, generator)
    if spec.flip:
        x = random_flip(x, generator)
    return x


def autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """AutoAugment (CIFAR-10 policy) sampled independently for each image of a uint8 batch.

    torchvision's AutoAugment draws from the global RNG, so it runs inside a forked RNG
    seeded from ``generator``: the result is a function of the generator's state and the
    caller's global RNG is left untouched.
    """
    from torchvision.transforms import v2

    policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cpu = x.cpu()
        out = torch.stack([policy(img) for img in cpu])
    return out.to(x.device)


def strong_view(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """SOP+'s strong view: crop, flip, AutoAugment, normalise, then Cutout (float output)."""
    x = autoaugment(weak_view(x, spec, generator), generator)
    return cutout(normalize(x, spec), spec.cutout, generator)
