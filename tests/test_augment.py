"""Batched tensor augmentation matches per-image semantics and is seeded by (seed, epoch)."""

from __future__ import annotations

import numpy as np
import torch

from deep_core.augment import AugmentSpec, cutout, random_crop, random_flip
from deep_core.datasets.base import TensorImageSet

SPEC = AugmentSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_padding=4)


def _images(n=16, side=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)


def test_random_crop_equals_cropping_each_padded_image():
    x = _images()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = random_crop(x, 2, g1)
    oy = torch.randint(0, 5, (16,), generator=g2)
    ox = torch.randint(0, 5, (16,), generator=g2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        ref = padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], ref)


def test_flip_flips_about_half_and_exactly_mirrors():
    x = _images(200)
    out = random_flip(x, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 60 < int(mirrored.sum()) < 140


def test_cutout_zeroes_one_square_per_image():
    x = torch.full((50, 1, 32, 32), 7.0)
    out = cutout(x, 16, torch.Generator().manual_seed(2))
    zeros = (out == 0).flatten(1).sum(1)
    assert torch.all(zeros > 0) and torch.all(zeros <= 256)


def test_batches_are_a_function_of_seed_and_epoch():
    ds = TensorImageSet(_images(40), SPEC)

    def run(seed, epoch):
        return [
            (b.positions.clone(), b.views[0].clone())
            for b in ds.batches(
                batch_size=16, views=("weak",), shuffle=True, seed=seed, epoch=epoch
            )
        ]

    a, b, c = run(0, 3), run(0, 3), run(0, 4)
    assert all(torch.equal(p, q) and torch.equal(u, v) for (p, u), (q, v) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    seen = np.sort(torch.cat([p for p, _ in a]).numpy())
    assert np.array_equal(seen, np.arange(40))


def test_clean_view_is_normalised_unaugmented():
    x = _images(4)
    ds = TensorImageSet(x, SPEC)
    b = next(ds.batches(batch_size=4, views=("clean",)))
    ref = (x.float() / 255 - 0.5) / 0.25
    assert torch.allclose(b.views[0], ref)
