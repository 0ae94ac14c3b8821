"""Batched tensor augmentation against per-image transcriptions of the reference.

The reference (Prune4ReL, from SOP) builds its strong view per PIL image: AutoAugment
(Fast AutoAugment's ``Augmentation(autoaug_paper_cifar10())``), RandomHorizontalFlip,
RandomCrop(32, padding=4), ToTensor, Normalize, CutoutDefault(16). The helpers below
re-state those per-image operations with Pillow, and the batched ops must give the same
pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from deep_core.augment import (
    MIRRORED,
    OPS,
    POLICY,
    AugmentSpec,
    apply_op,
    autoaugment,
    cutout,
    draw_policy,
    magnitude,
    normalize,
    strong_view,
    weak_view,
)
from deep_core.datasets.base import TensorImageSet
from deep_core.errors import DeepCoreError

SPEC = AugmentSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_padding=4)

# The AutoAugment paper's CIFAR-10 policy as the reference lists it (op, probability, level).
REFERENCE_POLICY = [
    [("Invert", 0.1, 7), ("Contrast", 0.2, 6)],
    [("Rotate", 0.7, 2), ("TranslateXAbs", 0.3, 9)],
    [("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)],
    [("ShearY", 0.5, 8), ("TranslateYAbs", 0.7, 9)],
    [("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)],
    [("ShearY", 0.2, 7), ("Posterize2", 0.3, 7)],
    [("Color", 0.4, 3), ("Brightness", 0.6, 7)],
    [("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)],
    [("Equalize", 0.6, 5), ("Equalize", 0.5, 1)],
    [("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)],
    [("Color", 0.7, 7), ("TranslateXAbs", 0.5, 8)],
    [("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)],
    [("TranslateYAbs", 0.4, 3), ("Sharpness", 0.2, 6)],
    [("Brightness", 0.9, 6), ("Color", 0.2, 6)],
    [("Solarize", 0.5, 2), ("Invert", 0.0, 3)],
    [("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)],
    [("Equalize", 0.2, 8), ("Equalize", 0.6, 4)],
    [("Color", 0.9, 9), ("Equalize", 0.6, 6)],
    [("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)],
    [("Brightness", 0.1, 3), ("Color", 0.7, 0)],
    [("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)],
    [("TranslateYAbs", 0.9, 9), ("TranslateYAbs", 0.7, 9)],
    [("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)],
    [("Equalize", 0.8, 8), ("Invert", 0.1, 3)],
    [("TranslateYAbs", 0.7, 9), ("AutoContrast", 0.9, 1)],
]

# The reference's op ranges (low, high) and its level → value mapping, which goes through
# a normalised level and back: value = ((v - low) / (high - low)) * (high - low) + low.
RANGES = {
    "ShearX": (-0.3, 0.3), "ShearY": (-0.3, 0.3), "TranslateXAbs": (0, 10),
    "TranslateYAbs": (0, 10), "Rotate": (-30, 30), "AutoContrast": (0, 1), "Invert": (0, 1),
    "Equalize": (0, 1), "Solarize": (0, 256), "Posterize2": (0, 4), "Contrast": (0.1, 1.9),
    "Color": (0.1, 1.9), "Brightness": (0.1, 1.9), "Sharpness": (0.1, 1.9),
}  # fmt: skip
UNUSED_LEVEL = ("AutoContrast", "Equalize", "Invert")  # the reference passes, then ignores it


def reference_value(op: str, level: int) -> float:
    def fparam(maxval):
        return float(level) * maxval / 10

    mapped = {
        "ShearX": lambda: fparam(0.3),
        "ShearY": lambda: fparam(0.3),
        "Rotate": lambda: int(fparam(30)),
        "Solarize": lambda: 256 - int(fparam(256)),
        "Posterize2": lambda: 4 - int(fparam(4)),
        "Contrast": lambda: fparam(1.8) + 0.1,
        "Color": lambda: fparam(1.8) + 0.1,
        "Brightness": lambda: fparam(1.8) + 0.1,
        "Sharpness": lambda: fparam(1.8) + 0.1,
    }.get(op, lambda: level)()
    low, high = RANGES[op]
    return float(mapped - low) / (high - low) * (high - low) + low


def reference_op(img: Image.Image, op: str, v: float) -> Image.Image:
    """One op of the reference on a PIL image, with the sign already chosen."""
    if op == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0))
    if op == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0))
    if op == "TranslateXAbs":
        return img.transform(img.size, Image.AFFINE, (1, 0, v, 0, 1, 0))
    if op == "TranslateYAbs":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v))
    if op == "Rotate":
        return img.rotate(v)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Invert":
        return ImageOps.invert(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Solarize":
        return ImageOps.solarize(img, v)
    if op == "Posterize2":
        return ImageOps.posterize(img, int(v))
    return getattr(ImageEnhance, op)(img).enhance(v)


def to_pil(img: torch.Tensor) -> Image.Image:
    a = img.permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)


def from_pil(img: Image.Image) -> torch.Tensor:
    a = np.array(img)
    return torch.from_numpy(a[:, :, None] if a.ndim == 2 else a).permute(2, 0, 1)


def varied_images(n: int = 24, channels: int = 3, side: int = 32) -> torch.Tensor:
    """Low- and high-contrast gradients with noise, a flat image and a two-level image."""
    g = torch.Generator().manual_seed(0)
    shape = (n, channels, 1, 1)
    lo = torch.randint(0, 200, shape, generator=g)
    span = torch.randint(2, 160, shape, generator=g)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    slope_x, slope_y = torch.randint(0, 5, (2, *shape), generator=g)
    ramp = xx * slope_x + yy * slope_y
    noise = torch.randint(0, 256, (n, channels, side, side), generator=g)
    x = (lo + (ramp + noise) % span).clamp(0, 255).to(torch.uint8)
    x[0] = 77
    x[1] = torch.where(noise[1] % 2 == 0, 30, 200).to(torch.uint8)
    return x


def policy_ops() -> list[tuple[str, float]]:
    """Every (op, signed magnitude) the policy can apply."""
    out = set()
    for sub in REFERENCE_POLICY:
        for op, _, level in sub:
            v = 0.0 if op in UNUSED_LEVEL else reference_value(op, level)
            out.add((op, v))
            if op in MIRRORED:
                out.add((op, -v))
    return sorted(out)


# -- the policy and its magnitudes ---------------------------------------------------------


def test_policy_is_the_reference_table():
    assert [list(sub) for sub in POLICY] == REFERENCE_POLICY


def test_magnitudes_match_the_reference_mapping():
    for sub in REFERENCE_POLICY:
        for op, _, level in sub:
            if op in UNUSED_LEVEL:
                assert magnitude(op, level) == 0
                continue
            ours, ref = magnitude(op, level), reference_value(op, level)
            assert ours == pytest.approx(ref, abs=1e-12), (op, level)
            # what the Pillow calls consume: float32 factors, 16.16 fixed point, integers
            assert np.float32(ours) == np.float32(ref)
            assert np.floor(ours * 65536 + 0.5) == np.floor(ref * 65536 + 0.5)
    assert magnitude("Posterize2", 7) == 2 and magnitude("Solarize", 2) == 205
    assert magnitude("Color", 7) == pytest.approx(1.36) and magnitude("Rotate", 2) == 6


@pytest.mark.parametrize("op,v", policy_ops())
def test_each_op_equals_pillow_per_image(op, v):
    for x in (varied_images(), varied_images(8, channels=1, side=8)):
        ref = torch.stack([from_pil(reference_op(to_pil(img), op, v)) for img in x])
        assert torch.equal(apply_op(x, op, v), ref), (op, v, x.shape)


def test_op_selection_statistics_match_the_policy():
    n = 200_000
    code, m = draw_policy(n, torch.Generator().manual_seed(3))
    for step in range(2):
        for op in OPS[1:]:
            p = sum(pr for sub in REFERENCE_POLICY for o, pr, _ in [sub[step]] if o == op) / 25
            fired = code[:, step] == OPS.index(op)
            freq = float(fired.double().mean())
            assert abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12, (op, step, freq, p)
            if p == 0:
                continue
            levels = {lv for sub in REFERENCE_POLICY for o, _, lv in [sub[step]] if o == op}
            expected = {round(magnitude(op, lv), 9) for lv in levels}
            got = m[fired, step]
            assert {round(abs(v), 9) for v in got.tolist()} == expected, (op, step)
            if op in MIRRORED:
                neg = float((got < 0).double().mean())
                assert abs(neg - 0.5) < 5 * np.sqrt(0.25 / int(fired.sum())), (op, neg)
            else:
                assert bool((got >= 0).all())


def test_autoaugment_equals_the_per_image_reference_given_its_draws():
    x = varied_images(64)
    g = torch.Generator().manual_seed(11)
    code, m = draw_policy(64, g.clone_state())
    out = autoaugment(x, g)
    for i in range(64):
        img = to_pil(x[i])
        for step in range(2):
            if code[i, step] != 0:
                img = reference_op(img, OPS[int(code[i, step])], float(m[i, step]))
        assert torch.equal(out[i], from_pil(img)), (i, code[i].tolist())


def test_bad_images_and_ops_are_errors():
    with pytest.raises(DeepCoreError, match="1 or 3 channels"):
        autoaugment(torch.zeros((2, 4, 8, 8), dtype=torch.uint8), torch.Generator())
    with pytest.raises(DeepCoreError, match="uint8"):
        apply_op(torch.zeros((2, 3, 8, 8)), "Invert", 0.0)
    with pytest.raises(DeepCoreError, match="unknown AutoAugment op"):
        apply_op(torch.zeros((2, 3, 8, 8), dtype=torch.uint8), "Twirl", 1.0)


# -- crop, flip, Cutout and the composed views -------------------------------------------


def test_weak_view_crops_each_padded_image_then_flips_it():
    x = varied_images(32, side=8)
    spec = AugmentSpec(mean=SPEC.mean, std=SPEC.std, crop_padding=2, flip=True)
    g = torch.Generator().manual_seed(5)
    draws = g.clone_state()
    out = weak_view(x, spec, g)
    oy = torch.randint(0, 5, (32,), generator=draws)
    ox = torch.randint(0, 5, (32,), generator=draws)
    flip = torch.rand(32, generator=draws) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(32):
        ref = padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], ref.flip(2) if flip[i] else ref)
    assert 6 < int(flip.sum()) < 26


def test_flip_alone_mirrors_about_half():
    x = varied_images(200, side=8)
    spec = AugmentSpec(mean=SPEC.mean, std=SPEC.std, crop_padding=0, flip=True)
    out = weak_view(x, spec, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 60 < int(mirrored.sum()) < 140


@pytest.mark.parametrize("size", [16, 3])
def test_cutout_zeroes_the_reference_square(size):
    x = torch.full((64, 2, 32, 32), 7.0)
    g = torch.Generator().manual_seed(2)
    draws = g.clone_state()
    out = cutout(x, size, g)
    cy = torch.randint(0, 32, (64,), generator=draws)
    cx = torch.randint(0, 32, (64,), generator=draws)
    for i in range(64):
        y1, y2 = np.clip([int(cy[i]) - size // 2, int(cy[i]) + size // 2], 0, 32)
        x1, x2 = np.clip([int(cx[i]) - size // 2, int(cx[i]) + size // 2], 0, 32)
        mask = torch.ones(32, 32)
        mask[y1:y2, x1:x2] = 0
        assert torch.equal(out[i], x[i] * mask)


def test_strong_view_is_a_function_of_the_generator_state():
    x = varied_images(16)
    before = x.clone()
    a = strong_view(x, SPEC, torch.Generator().manual_seed(4))
    assert torch.equal(x, before)  # the input batch is left as it is
    torch.manual_seed(123)  # the global RNG plays no part
    b = strong_view(x, SPEC, torch.Generator().manual_seed(4))
    c = strong_view(x, SPEC, torch.Generator().manual_seed(5))
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_strong_view_is_autoaugment_then_weak_view_then_normalise_and_cutout():
    x = varied_images(16)
    g = torch.Generator().manual_seed(6)
    h = g.clone_state()
    expected = cutout(normalize(weak_view(autoaugment(x, h), SPEC, h), SPEC), 16, h)
    assert torch.equal(strong_view(x, SPEC, g), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_strong_view_is_the_same_on_cuda():
    x = varied_images(64)
    cpu = strong_view(x, SPEC, torch.Generator().manual_seed(7))
    gpu = strong_view(x.cuda(), SPEC, torch.Generator().manual_seed(7))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)


def test_batches_are_a_function_of_seed_and_epoch():
    ds = TensorImageSet(varied_images(40, side=8), SPEC)

    def run(seed, epoch):
        return [
            (b.positions.clone(), b.views[0].clone(), b.views[1].clone())
            for b in ds.batches(
                batch_size=16, views=("weak", "strong"), shuffle=True, seed=seed, epoch=epoch
            )
        ]

    a, b, c = run(0, 3), run(0, 3), run(0, 4)
    assert all(
        torch.equal(p, q) and torch.equal(u, v) and torch.equal(s, t)
        for (p, u, s), (q, v, t) in zip(a, b)
    )
    assert not torch.equal(a[0][0], c[0][0])
    seen = np.sort(torch.cat([p for p, _, _ in a]).numpy())
    assert np.array_equal(seen, np.arange(40))


def test_clean_view_is_normalised_unaugmented():
    x = varied_images(4, side=8)
    ds = TensorImageSet(x, SPEC)
    b = next(ds.batches(batch_size=4, views=("clean",)))
    ref = (x.float() / 255 - 0.5) / 0.25
    assert torch.allclose(b.views[0], ref)
