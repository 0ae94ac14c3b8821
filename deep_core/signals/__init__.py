"""Per-sample training signals that selection methods score.

One warm-up run records them (:mod:`deep_core.signals.recorder`), they are cached on
disk, and every method reads what it needs from a :class:`Signals`. Users may also
bring their own as an ``.npz`` (:meth:`Signals.from_npz`), or take those of a finished
run (:meth:`Signals.from_run`).

Canonical names and shapes (N samples, C classes, d feature dims, E warm-up epochs,
M ensemble members):

============== ============ ===========================================================
name           shape        meaning
============== ============ ===========================================================
labels         (N,)         noisy training label (always present)
clean_labels   (N,)         true label where known; for evaluation only, never selection
probs          (N, C)       softmax of the final warm-up model on the clean view
features       (N, d)       penultimate embedding of the same model on the clean view
losses         (N, E)       per-epoch training loss (augmented view, during training)
correct        (N, E)       per-epoch "prediction == noisy label" during training
margins        (N, E)       per-epoch AUM margin: logit of the label minus largest other
prob_margins   (N, E)       per-epoch margin on softmax probabilities (CCS's AUM summands)
label_probs    (N, E)       per-epoch softmax probability of the noisy label (same pass)
strong_probs   (N, C)       softmax on one seeded strong-augmented view (reference Prune4ReL)
strong_features (N, d)      penultimate embedding on that strong view
grad_norms     (M, N)       last-layer gradient norm per sample, per ensemble member
member_probs   (M, N, C)    softmax on the clean view of each ensemble member
snapshot_el2n  (M, N, E+1)  EL2N of member m's model after k epochs on the clean view
snapshot_grad_norms (M, N, E+1) its last-layer gradient norm (column 0: initialisation)
============== ============ ===========================================================

The per-epoch arrays (``losses`` ... ``label_probs``) come from the training forward pass
of each epoch (augmented view, the network changing within the epoch), as Toneva et al.,
Pleiss et al. and the trajectory scores (Dyn-Unc, DUAL) record them. The snapshot arrays
come from a clean-view pass over the network as it stands after epoch k (k = 0: before
training), so EL2N and GraNd can read the model of the epoch their paper names; column E
is the final model (the one ``probs`` and ``grad_norms`` come from). A 2-D snapshot array
or a 1-D ``grad_norms`` is taken as one member.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError
from ..io import load_npz

SIGNAL_NAMES = (
    "labels",
    "clean_labels",
    "probs",
    "features",
    "losses",
    "correct",
    "margins",
    "prob_margins",
    "label_probs",
    "strong_probs",
    "strong_features",
    "grad_norms",
    "member_probs",
    "snapshot_el2n",
    "snapshot_grad_norms",
)
_NDIM = {
    "labels": 1,
    "clean_labels": 1,
    "probs": 2,
    "features": 2,
    "losses": 2,
    "correct": 2,
    "margins": 2,
    "prob_margins": 2,
    "label_probs": 2,
    "strong_probs": 2,
    "strong_features": 2,
    "grad_norms": 2,
    "member_probs": 3,
    "snapshot_el2n": 3,
    "snapshot_grad_norms": 3,
}
# Axis that holds the sample dimension (ensemble arrays put members first).
_SAMPLE_AXIS = {"grad_norms": 1, "member_probs": 1, "snapshot_el2n": 1, "snapshot_grad_norms": 1}
#: per-member arrays of the warm-up cache, stacked over members (one member: a leading axis)
MEMBER_STACKED = ("grad_norms", "snapshot_el2n", "snapshot_grad_norms")
#: the clean-view snapshots of the model after each warm-up epoch (recorded on demand)
SNAPSHOT_SIGNALS = ("snapshot_el2n", "snapshot_grad_norms")
_FLOAT_CHECKED = (
    "probs",
    "features",
    "losses",
    "margins",
    "prob_margins",
    "label_probs",
    "strong_probs",
    "strong_features",
    "grad_norms",
    "member_probs",
    "snapshot_el2n",
    "snapshot_grad_norms",
)


_PROBABILITIES = ("probs", "strong_probs", "member_probs")
_SUM_TOLERANCE = 1e-3


def _rows_are_distributions(arr: np.ndarray, rows: int = 1 << 16) -> bool:
    """Every row (last axis) non-negative and summing to 1, checked in row blocks."""
    flat = arr.reshape(-1, arr.shape[-1])
    for s in range(0, flat.shape[0], rows):
        block = np.asarray(flat[s : s + rows], dtype=np.float64)
        if (block < 0).any() or (np.abs(block.sum(1) - 1.0) > _SUM_TOLERANCE).any():
            return False
    return True


def _all_finite(arr: np.ndarray, rows: int = 1 << 16) -> bool:
    """``np.isfinite(arr).all()`` in row blocks (no N x d boolean array at 1M rows)."""
    return all(bool(np.isfinite(arr[s : s + rows]).all()) for s in range(0, arr.shape[0], rows))


class Signals:
    """A validated bundle of per-sample arrays, accessed as attributes.

    Parameters
    ----------
    arrays : mapping of str to array-like
        Must contain ``labels``. Known names (see the module docstring) are checked for
        shape and length; other names are kept as extra signals (available by name).
    num_classes : int, optional
        Default: the width of ``probs`` or ``member_probs``, else ``labels.max() + 1``.
    check_finite : bool, default=True
        Reject NaN or infinite values in float signals, and probability rows that are
        negative or do not sum to 1 (costs one pass over them).
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        num_classes: int | None = None,
        check_finite: bool = True,
    ) -> None:
        if "labels" not in arrays:
            raise DeepCoreError("signals need 'labels' (the noisy label of each sample)")
        data: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if name in MEMBER_STACKED and arr.ndim == _NDIM[name] - 1:
                arr = arr[None]
            data[name] = arr
        labels = data["labels"]
        if labels.ndim != 1:
            raise DeepCoreError(f"labels must be one-dimensional, got shape {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise DeepCoreError(f"labels must be integers, got dtype {labels.dtype}")
        data["labels"] = labels.astype(np.int64, copy=False)
        n = labels.shape[0]
        for name, arr in data.items():
            if name in _NDIM:
                if arr.ndim != _NDIM[name]:
                    raise DeepCoreError(
                        f"signal {name!r} must have {_NDIM[name]} dimensions, got shape {arr.shape}"
                    )
                axis = _SAMPLE_AXIS.get(name, 0)
                if arr.shape[axis] != n:
                    raise DeepCoreError(
                        f"signal {name!r} has {arr.shape[axis]:,} samples but labels has {n:,}"
                    )
            elif arr.ndim >= 1 and arr.shape[0] != n:
                raise DeepCoreError(
                    f"signal {name!r} has {arr.shape[0]:,} rows but labels has {n:,}"
                )
            if check_finite and name in _FLOAT_CHECKED and arr.size:
                if not _all_finite(arr):
                    raise DeepCoreError(f"signal {name!r} contains NaN or infinite values")
        if "clean_labels" in data:
            clean = data["clean_labels"]
            if clean.size and not np.issubdtype(clean.dtype, np.integer):
                raise DeepCoreError(f"clean_labels must be integers, got dtype {clean.dtype}")
            data["clean_labels"] = clean.astype(np.int64, copy=False)
        if num_classes is None:
            if "probs" in data:
                num_classes = int(data["probs"].shape[1])
            elif "member_probs" in data:
                num_classes = int(data["member_probs"].shape[2])
            else:
                num_classes = int(labels.max()) + 1 if n else 0
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            raise DeepCoreError(
                f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
            )
        clean = data.get("clean_labels")
        if clean is not None and clean.size and (clean.min() < 0 or clean.max() >= num_classes):
            raise DeepCoreError(
                f"clean_labels must lie in [0, {num_classes}), got range [{clean.min()}, "
                f"{clean.max()}]"
            )
        if check_finite:
            for name in _PROBABILITIES:
                if name in data and data[name].size and not _rows_are_distributions(data[name]):
                    raise DeepCoreError(
                        f"signal {name!r} must hold probabilities: every row non-negative and "
                        f"summing to 1 (within {_SUM_TOLERANCE:g})"
                    )
        self._data = data
        self.num_classes = int(num_classes)

    # -- access ---------------------------------------------------------------------
    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("_data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"no signal {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __len__(self) -> int:
        return int(self._data["labels"].shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._data)

    def get(self, name: str) -> np.ndarray | None:
        return self._data.get(name)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(self._data)

    def require(self, names: Iterable[str], *, who: str) -> None:
        """Raise a clear error if any of ``names`` is missing."""
        missing = [n for n in names if n not in self._data]
        if missing:
            raise DeepCoreError(
                f"{who} needs signals {missing} which are missing; available: {sorted(self._data)}"
            )

    def subset(self, indices: np.ndarray) -> Signals:
        """The signals of the samples at ``indices`` (ensemble arrays sliced on axis 1)."""
        out = {}
        for name, arr in self._data.items():
            axis = _SAMPLE_AXIS.get(name, 0)
            out[name] = np.take(arr, indices, axis=axis) if arr.ndim else arr
        return Signals(out, num_classes=self.num_classes, check_finite=False)

    # -- files ----------------------------------------------------------------------
    @classmethod
    def from_npz(cls, path: str | Path, *, num_classes: int | None = None) -> Signals:
        """Load signals from an ``.npz`` (no pickles: object arrays are refused)."""
        arrays = load_npz(path, what="signals file")
        if "labels" in arrays and arrays["labels"].size == 0:
            raise DeepCoreError(f"signals file {path} holds no samples (labels is empty)")
        return cls(arrays, num_classes=num_classes)

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        *,
        cache_dir: str | Path | None = None,
        num_classes: int | None = None,
    ) -> Signals:
        """The signals a run selected from: its labels and its cached warm-up signals.

        Parameters
        ----------
        run_dir : path
            A run directory of ``deepcore-run`` (with ``labels.npz`` and ``selection.json``).
        cache_dir : path, optional
            The signal cache holding the run's warm-up; default: the run's
            ``signals_cache`` setting, else ``signals-cache`` beside the run.
        num_classes : int, optional
            As in :class:`Signals` (default: the width of ``probs``, else ``max label + 1``).

        Returns
        -------
        Signals
            ``labels`` (and ``clean_labels`` where known) from ``labels.npz``; the warm-up
            arrays of ensemble member 0, memory-mapped; ``grad_norms`` (and the snapshots,
            where recorded) of every member and, for an ensemble, ``member_probs``, as the
            run assembled them. A run whose method
            needed labels only has no warm-up and gets only the labels.
        """
        from ..rundir import SIGNALS_CACHE, RunDir

        run = RunDir(run_dir)
        if not run.path.is_dir():
            raise DeepCoreError(f"run directory not found: {run.path}")
        arrays = run.read_labels()
        arrays.pop("ids", None)
        members = (run.read_selection().get("signals") or {}).get("members") or []
        if cache_dir is None:
            setting = (run.read_config() or {}).get("signals_cache")
            cache_dir = setting if setting else run.path.parent / SIGNALS_CACHE
        loaded = []
        for m, member in enumerate(members):
            folder = Path(cache_dir) / str(member.get("key"))
            if not folder.is_dir():
                raise DeepCoreError(
                    f"warm-up signals of {run.path.name} (member {m}) not found in {cache_dir}; "
                    "pass the signal cache the run used"
                )
            loaded.append(
                {
                    f.stem: np.load(f, mmap_mode="r", allow_pickle=False)
                    for f in sorted(folder.glob("*.npy"))
                    if f.stem in _NDIM
                }
            )
        if loaded:
            arrays.update({k: v for k, v in loaded[0].items() if k not in MEMBER_STACKED})
            for name in MEMBER_STACKED:
                if all(name in a for a in loaded):
                    arrays[name] = np.stack([a[name] for a in loaded])
            if len(loaded) > 1:
                arrays["member_probs"] = np.stack([a["probs"] for a in loaded])
        return cls(arrays, num_classes=num_classes)
