"""The result of a selection: which samples are kept, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Subset:
    """Selected samples of a training set of ``n`` samples.

    Attributes
    ----------
    indices : ndarray of int64, shape (k,)
        Sorted, unique positions of the kept samples in the signals / data set.
    scores : ndarray of float64, shape (n,)
        Per-sample score; higher means "kept first" (each method documents what it is).
    weights : ndarray of float64, shape (k,), optional
        Per-kept-sample training weights, aligned with ``indices``.
    info : dict
        Anything worth logging (JSON-serialisable values).
    """

    indices: np.ndarray
    scores: np.ndarray
    weights: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.indices.ndim != 1:
            raise ValueError("Subset.indices must be one-dimensional")
        if self.indices.size and np.any(np.diff(self.indices) <= 0):
            raise ValueError("Subset.indices must be sorted and unique")
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float64)
            if self.weights.shape != self.indices.shape:
                raise ValueError("Subset.weights must align with Subset.indices")

    def __len__(self) -> int:
        return int(self.indices.size)

    def mask(self) -> np.ndarray:
        """Boolean mask of length ``n`` that is True at the kept samples."""
        m = np.zeros(self.scores.shape[0], dtype=bool)
        m[self.indices] = True
        return m


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``positive`` (ties count half)."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def subset_quality(
    subset: Subset, labels: np.ndarray, clean_labels: np.ndarray | None, num_classes: int
) -> dict[str, Any]:
    """Size, per-class counts, and against clean labels: noise rate, noisy kept, AUROC."""
    idx = subset.indices
    out: dict[str, Any] = {
        "subset_size": int(idx.size),
        "class_counts": np.bincount(labels[idx], minlength=num_classes).tolist(),
        "subset_noise_rate": None,
        "noisy_kept_fraction": None,
        "score_auroc": None,
    }
    if clean_labels is not None:
        noisy = labels != clean_labels
        out["subset_noise_rate"] = float(noisy[idx].mean()) if idx.size else None
        out["noisy_kept_fraction"] = float(noisy[idx].sum() / noisy.sum()) if noisy.any() else None
        out["score_auroc"] = auroc(subset.scores, ~noisy)
    return out


def describe_quality(
    quality: dict[str, Any], labels: np.ndarray, clean_labels: np.ndarray | None
) -> str:
    """One line from :func:`subset_quality`: noise rate (and the full set's), noisy kept,
    score AUROC, per-class counts; ``n/a`` where clean labels are unknown."""

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    full = None if clean_labels is None else float(np.mean(labels != clean_labels))
    return (
        f"noise rate {fmt(quality['subset_noise_rate'])} (full set {fmt(full)}), "
        f"noisy kept {fmt(quality['noisy_kept_fraction'])}, "
        f"score AUROC {fmt(quality['score_auroc'])}; per class {quality['class_counts']}"
    )
