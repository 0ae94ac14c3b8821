"""Synthetic warm-up signals with known injected label noise, for tests and benchmarks.

:func:`synthetic_signals` builds a small, coherent :class:`~deep_core.signals.Signals`
in memory (the registry tests use it); :func:`write_synthetic_signals` writes the same
kind of signals for up to millions of samples as ``.npy`` files, chunk by chunk, so the
scale benchmarks can memory-map them. Both draw everything from ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .signals import Signals


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def synthetic_signals(
    n: int = 400,
    num_classes: int = 5,
    *,
    dim: int = 8,
    epochs: int = 6,
    members: int = 3,
    noise: float = 0.3,
    seed: int | np.random.SeedSequence = 0,
    labels: np.ndarray | None = None,
    centers: np.ndarray | None = None,
    center_scale: float = 3.0,
    spread: float = 1.0,
) -> Signals:
    """Coherent synthetic warm-up signals for ``n`` samples of ``num_classes`` classes.

    A fraction ``noise`` of the labels is flipped to another class. Every signal comes
    from per-epoch logits that learn the *clean* class, with a per-sample difficulty and
    late memorisation of the noisy label, so mislabeled samples have high loss, low
    margin, are rarely correct, and get large gradients. Features are the clean class's
    centre plus Gaussian noise.

    Parameters
    ----------
    n, num_classes : int
    dim : int, default=8
        Feature dimension.
    epochs : int, default=6
        Columns of ``losses``, ``correct``, ``margins`` and ``label_probs``.
    members : int, default=3
        Ensemble members (rows of ``member_probs`` and ``grad_norms``).
    noise : float, default=0.3
        Probability that a label is flipped.
    seed : int or numpy SeedSequence, default=0
    labels : ndarray of int, optional
        Clean labels to use (default: balanced, shuffled).
    centers : ndarray of shape (num_classes, dim), optional
        Class centres of the features (default: ``center_scale`` times standard normal).
    center_scale, spread : float, default=3.0, 1.0
        Scale of the drawn centres and standard deviation of the features around them.

    Returns
    -------
    Signals
        ``labels`` (noisy), ``clean_labels``, ``probs``, ``features``, ``losses``,
        ``correct``, ``margins``, ``prob_margins``, ``label_probs``, ``grad_norms``,
        ``member_probs``.
    """
    c = num_classes
    rng = np.random.default_rng(seed)
    clean = np.arange(n) % c if labels is None else np.asarray(labels, dtype=np.int64)
    clean = rng.permutation(clean) if labels is None else clean
    noisy = clean.copy()
    flip = rng.random(n) < noise
    if c > 1:
        noisy[flip] = (clean[flip] + rng.integers(1, c, flip.sum())) % c
    else:
        flip[:] = False
    strength = rng.uniform(0.5, 5.0, n)  # per-sample easiness
    onehot_clean = np.eye(c)[clean]
    onehot_noisy = np.eye(c)[noisy]

    def logits(t: float, scale: float = 1.0) -> np.ndarray:
        return (
            t * strength[:, None] * onehot_clean
            + 2.0 * t**3 * onehot_noisy
            + scale * rng.normal(size=(n, c))
        )

    per_epoch = [logits((k + 1) / epochs) for k in range(epochs)]
    logit_e = np.stack(per_epoch, axis=1)  # (n, E, c)
    probs_e = _softmax(logit_e)
    idx = np.arange(n)
    losses = -np.log(probs_e[idx, :, noisy])
    correct = logit_e.argmax(axis=2) == noisy[:, None]
    lab = logit_e[idx, :, noisy]
    other = np.where(np.eye(c, dtype=bool)[noisy][:, None, :], -np.inf, logit_e).max(axis=2)
    margins = lab - other
    p_lab = probs_e[idx, :, noisy]
    p_other = np.where(np.eye(c, dtype=bool)[noisy][:, None, :], -np.inf, probs_e).max(axis=2)
    prob_margins = p_lab - p_other
    probs = _softmax(logits(1.0, 0.5))
    member_probs = np.stack([probs] + [_softmax(logits(1.0)) for _ in range(members - 1)])
    if centers is None:
        centers = center_scale * rng.normal(size=(c, dim))
    features = centers[clean] + spread * rng.normal(size=(n, dim))
    feat_norm = np.sqrt(1.0 + (features**2).sum(axis=1))
    grad_norms = np.linalg.norm(member_probs - onehot_noisy[None], axis=2) * feat_norm[None]
    return Signals(
        {
            "labels": noisy,
            "clean_labels": clean,
            "probs": probs.astype(np.float32),
            "features": features.astype(np.float32),
            "losses": losses.astype(np.float32),
            "correct": correct,
            "margins": margins.astype(np.float32),
            "prob_margins": prob_margins.astype(np.float32),
            "label_probs": p_lab.astype(np.float32),
            "grad_norms": grad_norms.astype(np.float32),
            "member_probs": member_probs.astype(np.float32),
        },
        num_classes=c,
    )


def write_synthetic_signals(
    folder: str | Path,
    n: int,
    num_classes: int,
    *,
    dim: int,
    epochs: int,
    noise: float = 0.3,
    seed: int = 0,
    center_scale: float = 1.0,
    spread: float = 0.8,
    chunk: int = 10_000,
) -> list[str]:
    """Write :func:`synthetic_signals` of one member for ``n`` samples as ``<name>.npy``.

    Chunks of ``chunk`` samples are drawn from independent child seeds of ``seed`` and
    share the class centres, so memory stays O(chunk · (dim + epochs · num_classes))
    whatever ``n`` is. Returns the names written; open them with
    ``np.load(folder / f"{name}.npy", mmap_mode="r")``.
    """
    folder = Path(folder)
    root = np.random.SeedSequence(seed)
    centers = center_scale * np.random.default_rng(root.spawn(1)[0]).normal(
        size=(num_classes, dim)
    )
    out: dict[str, np.ndarray] = {}
    starts = range(0, n, chunk)
    for s, child in zip(starts, root.spawn(len(starts)), strict=True):
        e = min(n, s + chunk)
        part = synthetic_signals(e - s, num_classes, dim=dim, epochs=epochs, members=1,
                                 noise=noise, seed=child, centers=centers,
                                 spread=spread)  # fmt: skip
        for name in part.names:
            arr = part.get(name)
            axis = 1 if name in ("grad_norms", "member_probs") else 0
            if name not in out:
                shape = list(arr.shape)
                shape[axis] = n
                out[name] = np.lib.format.open_memmap(
                    folder / f"{name}.npy", "w+", arr.dtype, tuple(shape)
                )
            if axis == 0:
                out[name][s:e] = arr
            else:
                out[name][:, s:e] = arr
    for arr in out.values():
        arr.flush()
    return sorted(out)
