"""Batched augmentation on uint8 image tensors (no per-image PIL pipeline).

In-memory data sets (CIFAR, the embedded default) keep their images as one uint8
tensor and augment a whole batch with a few tensor ops on the device the batch lives
on. Randomness comes from an explicit ``torch.Generator``: crop, flip and Cutout draw on
the generator's device (the training device for in-memory data sets, so a weak batch
costs no host round trip); the AutoAugment policy draws on a CPU generator, because
images are grouped by op on the host (the strong view therefore takes a CPU generator).
A view is a function of the generator's state alone, with no host synchronisation inside
the ops.

Views (as in the Prune4ReL reference, which takes them from SOP):

* ``weak_view``: random crop with 4-pixel zero padding and a horizontal flip.
* ``strong_view``: the reference's AutoAugment (the AutoAugment paper's 25 CIFAR-10
  sub-policies with Fast AutoAugment's level→magnitude mapping), applied to the raw
  image *first*, then flip, crop, normalisation and Cutout 16 on the normalised tensor.
  SOP+ trains its consistency term on this view and Prune4ReL computes its selection
  signals on it (``eval_train_strong``).

Each AutoAugment op reproduces the Pillow function the reference calls, pixel for pixel
(nearest-neighbour affine maps in Pillow's 16.16 fixed point with black fill; ``ImageOps``
lookup tables; ``ImageEnhance`` blends in float32 with truncation), checked against
Pillow in ``tests/test_augment.py``; Pillow itself is not used. One-channel images (the
embedded Digits) work as Pillow's mode "L": Color leaves them as they are. Magnitudes are
the reference's, in pixels, whatever the image size (a 9-pixel translation empties an
8×8 image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from .errors import DeepCoreError, unknown_name


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


# -- the reference's AutoAugment policy ------------------------------------------------------

#: The AutoAugment paper's CIFAR-10 policy (Cubuk et al., CVPR 2019), as the reference lists
#: it: 25 sub-policies of two ``(op, probability, level)`` steps. One sub-policy is drawn
#: uniformly per image; each step then fires with its probability, first step first.
POLICY: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateXAbs", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateYAbs", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize2", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateXAbs", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateYAbs", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 6)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateYAbs", 0.9, 9), ("TranslateYAbs", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateYAbs", 0.7, 9), ("AutoContrast", 0.9, 1)),
)

#: op codes; 0 leaves the image as it is
OPS: tuple[str, ...] = (
    "Identity",
    "ShearX", "ShearY", "TranslateXAbs", "TranslateYAbs", "Rotate",  # affine maps
    "Invert", "Solarize", "Posterize2", "AutoContrast", "Equalize",  # lookup tables
    "Contrast", "Color", "Brightness", "Sharpness",  # blends with a degenerate image
)  # fmt: skip
_CODE = {name: i for i, name in enumerate(OPS)}
#: ops whose magnitude the reference negates with probability 1/2
MIRRORED = ("ShearX", "ShearY", "TranslateXAbs", "TranslateYAbs", "Rotate")


def magnitude(op: str, level: int) -> float:
    """The reference's magnitude of ``op`` at policy ``level`` (0–10), before mirroring.

    Shear ``0.3·level/10``; translation ``level`` pixels; rotation ``int(3·level)``
    degrees; Solarize threshold ``256 − int(25.6·level)``; Posterize keeps
    ``4 − int(0.4·level)`` bits; Contrast, Color, Brightness and Sharpness blend with
    factor ``0.1 + 0.18·level``; AutoContrast, Equalize and Invert take none (0).
    """
    if op not in _CODE:
        raise unknown_name("AutoAugment op", op, OPS)
    if op in ("ShearX", "ShearY"):
        return level * 0.3 / 10
    if op in ("TranslateXAbs", "TranslateYAbs"):
        return float(level)
    if op == "Rotate":
        return float(int(level * 30 / 10))
    if op == "Solarize":
        return float(256 - int(level * 256 / 10))
    if op == "Posterize2":
        return float(4 - int(level * 4 / 10))
    if op in ("Contrast", "Color", "Brightness", "Sharpness"):
        return level * 1.8 / 10 + 0.1
    return 0.0


#: (25, 2, 4) float64: op code, probability, magnitude and mirror flag of each step
_POLICY_TABLE = torch.tensor(
    [
        [[_CODE[op], p, magnitude(op, level), op in MIRRORED] for op, p, level in sub]
        for sub in POLICY
    ],
    dtype=torch.float64,
)


# -- the ops ----------------------------------------------------------------------------------
# A step sorts the batch by op and runs three groups, each on its own contiguous slice:
# the affine ops (one gather, with a cached source map per op and magnitude), the ImageOps
# ops (a 256-entry table per image and channel, one lookup) and the ImageEnhance ops (a
# "degenerate" image per op, one blend). A group function takes the uint8 images (a
# contiguous slice, which it overwrites), their op codes and magnitudes (CPU tensors,
# sorted by op) and the count of each of its ops.


@lru_cache(maxsize=256)
def _fixed_affine(op: str, m: float, h: int, w: int) -> tuple[int, int, int, int, int, int]:
    """Pillow's 16.16 fixed-point coefficients of the inverse map (output → input pixel).

    ``Image.transform(AFFINE, (a0..a5))`` samples input ``(a0·x + a1·y + a2, a3·x + a4·y
    + a5)`` at pixel centres; ``Image.rotate`` builds its matrix about ``(w/2, h/2)``
    with coefficients rounded to 15 decimals.
    """
    a = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if op == "ShearX":
        a[1] = m
    elif op == "ShearY":
        a[3] = m
    elif op == "TranslateXAbs":
        a[2] = m
    elif op == "TranslateYAbs":
        a[5] = m
    else:  # Rotate
        t = -math.radians(m)
        c, s = round(math.cos(t), 15), round(math.sin(t), 15)
        cx, cy = w / 2, h / 2
        a = [c, s, c * -cx + s * -cy + cx, -s, c, -s * -cx + c * -cy + cy]

    def fix(v: float) -> int:
        return math.floor(v * 65536.0 + 0.5)

    return (
        fix(a[0]), fix(a[1]), fix(a[2] + a[0] * 0.5 + a[1] * 0.5),
        fix(a[3]), fix(a[4]), fix(a[5] + a[3] * 0.5 + a[4] * 0.5),
    )  # fmt: skip


@lru_cache(maxsize=512)
def _affine_map(op: str, m: float, h: int, w: int, device: torch.device) -> torch.Tensor:
    """Flat source pixel of every output pixel (``h·w`` where it falls outside)."""
    a0, a1, a2, a3, a4, a5 = _fixed_affine(op, m, h, w)
    ys = torch.arange(h, dtype=torch.int64).view(h, 1)
    xs = torch.arange(w, dtype=torch.int64).view(1, w)
    src_x = (a2 + xs * a0 + ys * a1) >> 16  # arithmetic shift: floor, as Pillow's
    src_y = (a5 + xs * a3 + ys * a4) >> 16
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    return torch.where(inside, src_y * w + src_x, h * w).view(-1).to(device)


def _geometric(x: torch.Tensor, code: torch.Tensor, m: torch.Tensor, counts: list[int]) -> None:
    """Nearest-neighbour affine maps, black outside the source (Pillow's fixed-point path)."""
    b, c, h, w = x.shape
    maps = [_affine_map(OPS[o], v, h, w, x.device) for o, v in zip(code.tolist(), m.tolist())]
    index = torch.stack(maps).view(b, 1, h * w).expand(b, c, h * w)
    padded = torch.nn.functional.pad(x.reshape(b, c, h * w), (0, 1))  # a black pixel at h·w
    torch.gather(padded, 2, index, out=x.view(b, c, h * w))


@lru_cache(maxsize=256)
def _level_table(op: str, m: float, device: torch.device) -> torch.Tensor:
    """Invert ``255 − v``; Solarize inverts the levels at or above ``m``; Posterize keeps
    the ``m`` high bits (``ImageOps``)."""
    i = torch.arange(256)
    if op == "Invert":
        lut = 255 - i
    elif op == "Solarize":
        lut = torch.where(i < m, i, 255 - i)
    else:  # Posterize2
        shift = min(max(8 - int(m), 0), 8)
        lut = (i >> shift) << shift
    return lut.to(torch.uint8).to(device)


@lru_cache(maxsize=8)
def _levels(device: torch.device) -> torch.Tensor:
    return torch.arange(256, device=device, dtype=torch.float64)


def _autocontrast_table(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel's [lo, hi] to [0, 255]: ``int(v·scale − lo·scale)``, ``scale =
    255 / (hi − lo)`` in double precision (``ImageOps.autocontrast``)."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    lo = flat.amin(2, keepdim=True).double()
    hi = flat.amax(2, keepdim=True).double()
    i = _levels(x.device)
    # a true division, as Python's (``255.0 / tensor`` multiplies by a reciprocal)
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp_(min=1)
    lut = (i * scale).add_(-lo * scale).clamp_(0, 255)  # the uint8 cast truncates, as int()
    return torch.where(hi > lo, lut, i).to(torch.uint8)


def _equalize_table(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageOps.equalize``: level ``v`` → ``(step//2 + #pixels below v) // step``
    with ``step = (pixels − count of the highest level) // 255``, clipped to 255; a channel
    with ``step`` 0 (a flat one, for instance) is left as it is."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w)
    offsets = torch.arange(0, b * c * 256, 256, device=x.device, dtype=torch.int32)
    binned = (flat + offsets.view(b * c, 1)).view(-1)  # int32: cheaper than int64
    hist = torch.bincount(binned, minlength=b * c * 256).view(b, c, 256)
    hi = flat.amax(1).view(b, c, 1).long()
    step = (h * w - hist.gather(2, hi)) // 255
    lut = (hist.cumsum(2) - hist + step // 2) // step.clamp(min=1)
    return torch.where(step > 0, lut.clamp_(max=255), _levels(x.device)).to(torch.uint8)


def _tables(x: torch.Tensor, code: torch.Tensor, m: torch.Tensor, counts: list[int]) -> None:
    """The ``ImageOps`` ops as a 256-entry table per image and channel, one lookup."""
    b, c, h, w = x.shape
    n_fixed = sum(counts[:3])  # Invert, Solarize, Posterize2: tables fixed by (op, m)
    tables = []
    if n_fixed:
        ops, ms = code[:n_fixed].tolist(), m[:n_fixed].tolist()
        fixed = torch.stack([_level_table(OPS[o], v, x.device) for o, v in zip(ops, ms)])
        tables.append(fixed.view(n_fixed, 1, 256).expand(n_fixed, c, 256))
    n_auto = counts[3]
    if n_auto:
        tables.append(_autocontrast_table(x[n_fixed : n_fixed + n_auto]))
    if counts[4]:
        tables.append(_equalize_table(x[n_fixed + n_auto :]))
    lut = torch.cat(tables)
    index = x.reshape(b, c, h * w).long()
    torch.gather(lut, 2, index, out=x.view(b, c, h * w))


@lru_cache(maxsize=8)
def _gray_weights(device: torch.device) -> torch.Tensor:
    return torch.tensor([19595.0, 38470.0, 7471.0], device=device).view(1, 3, 1, 1)


def _gray(xf: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert("L")`` (ITU-R 601-2 in 16-bit fixed point) of float32 levels.

    The fixed-point sums stay below 2**24, so float32 holds them exactly.
    """
    if xf.shape[1] == 1:
        return xf
    return (xf * _gray_weights(xf.device)).sum(1, keepdim=True).add_(0x8000).div_(65536).floor_()


@lru_cache(maxsize=8)
def _smooth_kernel(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 division, as Pillow normalises its kernel
    k = torch.tensor([1.0, 5.0], device=device) / torch.tensor(13.0, device=device)
    return k[0], k[1]


def _smooth_interior(xf: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageFilter.SMOOTH`` (kernel 1 1 1 / 1 5 1 / 1 1 1, divisor 13) of the
    interior pixels (Pillow keeps the one-pixel border as it is).

    Summed in Pillow's order (row below, centre row, row above, +0.5 to round) in float32
    and truncated.
    """
    k1, k5 = _smooth_kernel(xf.device)
    left, right = xf[..., :-2] * k1, xf[..., 2:] * k1
    outer = (left + xf[..., 1:-1] * k1).add_(right)  # (v[x-1]·k + v[x]·k) + v[x+1]·k
    centre = (left + xf[..., 1:-1] * k5).add_(right)
    ss = (outer[:, :, 2:] + 0.5).add_(centre[:, :, 1:-1]).add_(outer[:, :, :-2])
    return ss.clamp_(0, 255).floor_()  # floor is the truncation here: ss >= 0


def _blends(x: torch.Tensor, code: torch.Tensor, m: torch.Tensor, counts: list[int]) -> None:
    """``ImageEnhance``: ``degenerate + factor·(image − degenerate)`` in float32, clipped
    and truncated (Pillow's ``Image.blend``). The degenerate image: the mean grey level,
    rounded (Contrast), the grey image (Color), black (Brightness), the SMOOTH-filtered
    image (Sharpness; its border pixels are the image's, so they stay as they are)."""
    _, _, h, w = x.shape
    xf = x.float()
    f = m.to(device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    start = 0
    for op, n in zip(("Contrast", "Color", "Brightness", "Sharpness"), counts):
        if n == 0:
            continue
        part, fp = xf[start : start + n], f[start : start + n]
        start += n
        if op == "Brightness":
            part.mul_(fp)  # (v − 0)·f + 0
            continue
        if op == "Contrast":
            total = _gray(part).sum((1, 2, 3), keepdim=True, dtype=torch.float64)  # exact
            d = torch.floor((total * 2 + h * w) / (2 * h * w)).float()
        elif op == "Color":
            if x.shape[1] == 1:  # the grey version of a grey image is itself
                continue
            d = _gray(part)
        elif h < 3 or w < 3:  # Sharpness of an image without interior pixels
            continue
        else:
            d = _smooth_interior(part)
            part = part[:, :, 1:-1, 1:-1]
        part.sub_(d).mul_(fp).add_(d)
    x.copy_(xf.clamp_(0, 255))  # the uint8 cast truncates


#: the op codes of each group, a contiguous range of :data:`OPS`, and its function
_GROUPS = ((1, 6, _geometric), (6, 11, _tables), (11, 15, _blends))


def _apply_steps(x: torch.Tensor, code: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Apply op ``OPS[code[i, k]]`` with signed magnitude ``m[i, k]`` to image ``i``, for
    the steps ``k`` in order.

    ``code`` and ``m`` (B, steps) live on the CPU, so grouping the images needs no device
    synchronisation. For each step the batch is sorted by op (one ``index_select`` from
    the previous step's order), each group of ops runs on its contiguous slice (itself
    sorted by op) and overwrites it; one last ``index_select`` restores the original
    order (row permutations are much cheaper than ``index_copy``).
    """
    out, inverse = x, None  # row j of ``out`` holds image ``order[j]``; inverse[order] = j
    for k in range(code.shape[1]):
        counts = torch.bincount(code[:, k], minlength=len(OPS)).tolist()
        if counts[0] == code.shape[0]:
            continue
        order = torch.argsort(code[:, k], stable=True)
        rows = order if inverse is None else inverse[order]
        out = out.index_select(0, rows.to(x.device))  # a copy: each group overwrites its slice
        inverse = torch.argsort(order)
        cs, ms = code[order, k], m[order, k]
        start = counts[0]
        for first, stop, group in _GROUPS:
            n = sum(counts[first:stop])
            if n:
                end = start + n
                group(out[start:end], cs[start:end], ms[start:end], counts[first:stop])
                start = end
    return x if inverse is None else out.index_select(0, inverse.to(x.device))


def apply_op(x: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """Apply one AutoAugment ``op`` with (signed) ``magnitude`` to every image of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        uint8 images (B, C, H, W), C in {1, 3}, on any device.
    op : str
        One of :data:`OPS`.
    magnitude : float
        As :func:`magnitude` returns it, negated for a mirrored draw.
    """
    _check_images(x)
    if op not in _CODE:
        raise unknown_name("AutoAugment op", op, OPS)
    b = x.shape[0]
    code = torch.full((b, 1), _CODE[op], dtype=torch.long)
    return _apply_steps(x, code, torch.full((b, 1), float(magnitude), dtype=torch.float64))


def _check_images(x: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DeepCoreError(
            f"AutoAugment needs uint8 images (B, C, H, W) with 1 or 3 channels, got "
            f"{x.dtype} of shape {tuple(x.shape)}"
        )


def draw_policy(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the reference AutoAugment's choices for ``batch_size`` images.

    Per image: a sub-policy of :data:`POLICY` uniformly, then for each of its two steps
    a uniform draw against the step's probability and a fair coin for the sign of a
    mirrored op's magnitude. The draws come from ``generator`` in that order, one tensor
    each.

    Returns
    -------
    code : torch.Tensor
        (B, 2) int64 indices into :data:`OPS`; 0 where the step does not fire.
    magnitude : torch.Tensor
        (B, 2) float64 signed magnitudes.
    """
    b = batch_size
    sub = torch.randint(0, len(POLICY), (b,), generator=generator)
    code, prob, mag, mirror = _POLICY_TABLE[sub].unbind(2)
    fire = torch.rand((b, 2), generator=generator, dtype=torch.float64) < prob
    negate = (torch.rand((b, 2), generator=generator) < 0.5) & (mirror > 0)
    return torch.where(fire, code.long(), 0), torch.where(negate, -mag, mag)


def autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The reference's AutoAugment, drawn independently for each image of a uint8 batch.

    Parameters
    ----------
    x : torch.Tensor
        uint8 images (B, C, H, W), C in {1, 3}, on any device.
    generator : torch.Generator
        A CPU generator (:func:`draw_policy`); the result is a function of its state.
    """
    _check_images(x)
    code, m = draw_policy(x.shape[0], generator)
    return _apply_steps(x, code, m)


# -- Cutout, normalisation, views -----------------------------------------------------------


@lru_cache(maxsize=32)
def _cutout_rows(n: int, size: int, device: torch.device) -> torch.Tensor:
    """(n, n) float: row ``c`` marks the positions ``[c − size//2, c + size//2)``."""
    i = torch.arange(n)
    c = i.view(n, 1)
    return ((i >= c - size // 2) & (i < c + size // 2)).float().to(device)


def _cutout_keep(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) mask of x's dtype: 0 in each image's Cutout square, 1 elsewhere."""
    b, _, h, w = x.shape
    dev = generator.device
    cy = torch.randint(0, h, (b,), generator=generator, device=dev).to(x.device, non_blocking=True)
    cx = torch.randint(0, w, (b,), generator=generator, device=dev).to(x.device, non_blocking=True)
    hole_y = _cutout_rows(h, size, x.device).index_select(0, cy).view(b, 1, h, 1)
    hole_x = _cutout_rows(w, size, x.device).index_select(0, cx).view(b, 1, 1, w)
    return (1 - hole_y * hole_x).to(x.dtype)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero rows and columns ``[c − size//2, c + size//2)`` about a uniform pixel ``c``.

    The reference's ``CutoutDefault`` (multiplies by a 0/1 mask): the square is clipped at
    the borders, and is ``size − 1`` wide for odd ``size``.
    """
    if size <= 0:
        return x
    return x * _cutout_keep(x, size, generator)


@lru_cache(maxsize=16)
def _mean_std(spec: AugmentSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(spec.mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


def normalize(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 normalised with ``spec.mean`` / ``spec.std``."""
    mean, std = _mean_std(spec, x.device)
    # ToTensor then Normalize, as the reference; in place after one allocation
    return x.float().div_(255.0).sub_(mean).div_(std)


@lru_cache(maxsize=32)
def _crop_tables(h: int, w: int, p: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat offsets into the padded image (side ``w + 2p``) of a crop's rows, for each row
    offset, and of its columns, for each (flip, column offset); int32."""
    wp = w + 2 * p
    offsets = torch.arange(2 * p + 1).view(-1, 1)
    rows = (offsets + torch.arange(h)) * wp
    cols = offsets + torch.arange(w)
    cols = torch.cat([cols, offsets + torch.arange(w - 1, -1, -1)])  # then the flipped ones
    return rows.to(torch.int32).to(device), cols.to(torch.int32).to(device)


def weak_view(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the zero-padded image and horizontal flip of a uint8 batch (uint8).

    Draws the crop offsets (rows, then columns) and then the flips, one tensor each; the
    crop and the flip are one gather from the padded batch. The reference flips before
    cropping, which gives the same distribution.
    """
    b, c, h, w = x.shape
    p = max(spec.crop_padding, 0)
    if p == 0 and not spec.flip:
        return x
    # drawn on the generator's device (the training device for in-memory sets: no host
    # round trip), then moved to the batch's (a no-op when they are the same)
    dev = generator.device
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=dev)
    if spec.flip:
        ox = ox + (torch.rand(b, generator=generator, device=dev) < 0.5) * (2 * p + 1)
    rows, cols = _crop_tables(h, w, p, x.device)
    rows = rows.index_select(0, oy.to(x.device, non_blocking=True)).view(b, h, 1)
    cols = cols.index_select(0, ox.to(x.device, non_blocking=True)).view(b, 1, w)
    index = (rows + cols).view(b, 1, h * w).long()  # int32 sums: int64 ones cost more
    padded = torch.nn.functional.pad(x, (p, p, p, p)).view(b, c, -1)
    return padded.gather(2, index.expand(b, c, h * w)).view(b, c, h, w)


def strong_view(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """The reference's strong view: AutoAugment, crop, flip, normalise, Cutout (float32).

    ``transforms.Compose([AutoAugment, RandomHorizontalFlip, RandomCrop(pad), ToTensor,
    Normalize, CutoutDefault(spec.cutout)])`` of the reference, for a whole batch; the
    crop comes before the flip here, which gives the same distribution. Used for SOP+'s
    consistency view and for Prune4ReL's strong-view signals alike.
    """
    out = normalize(weak_view(autoaugment(x, generator), spec, generator), spec)
    if spec.cutout > 0:
        out.mul_(_cutout_keep(out, spec.cutout, generator))
    return out
