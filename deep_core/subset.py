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
