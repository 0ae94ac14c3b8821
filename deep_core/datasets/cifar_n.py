"""CIFAR-N human label sets (Wei et al., ICLR 2022).

The package ships them as compressed ``.npz`` (no pickles) in ``data/``:
``cifar10n.npz`` (clean_label, aggre_label, random_label1..3, worse_label) and
``cifar100n.npz`` (clean_label, noisy_label, clean_coarse_label, noisy_coarse_label).
The official ``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt`` files are accepted too;
they are torch pickles of numpy arrays and are read with ``weights_only=True`` and an
allowlist of exactly the numpy types they contain, so no code in them can run.

Convert an official file once with::

    python -m deep_core.datasets.cifar_n CIFAR-10_human.pt data/cifar10n.npz
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError
from ..io import load_npz

_FILES = {
    "CIFAR10": ("CIFAR-10_human.pt", "cifar10n.npz"),
    "CIFAR100": ("CIFAR-100_human.pt", "cifar100n.npz"),
}
_N = 50000


def shipped_data_dirs() -> list[Path]:
    """Where the package's data files may live: the source tree, then an installed copy."""
    here = Path(__file__).resolve()
    return [here.parents[2] / "data", Path(sys.prefix) / "share" / "deep-core-noisy" / "data"]


def read_official_pt(path: str | Path) -> dict[str, np.ndarray]:
    """Read an official CIFAR-N ``.pt`` safely (``weights_only=True`` with a numpy allowlist)."""
    import torch

    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    allow = [(_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype]
    allow += [type(np.dtype(t)) for t in (np.int64, np.int32, np.uint8, np.float32, np.float64)]
    try:
        with torch.serialization.safe_globals(allow):
            raw = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DeepCoreError(
            f"cannot read CIFAR-N labels {path}: {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(raw, dict):
        raise DeepCoreError(f"CIFAR-N file {path} does not hold a dict of label arrays")
    return {str(k): np.asarray(v) for k, v in raw.items()}


def load_human_labels(name: str, *, search: Iterable[Path] = ()) -> dict:
    """The CIFAR-N label arrays for ``name`` ("CIFAR10" or "CIFAR100").

    Looks for the official ``.pt`` in ``search`` folders first, then the shipped ``.npz``.
    Returns int64 arrays keyed as in the official file, plus ``_source`` (the path).
    """
    pt_name, npz_name = _FILES[name]
    arrays = None
    for folder in search:
        if (Path(folder) / pt_name).is_file():
            source = Path(folder) / pt_name
            arrays = read_official_pt(source)
            break
    if arrays is None:
        for folder in shipped_data_dirs():
            if (folder / npz_name).is_file():
                source = folder / npz_name
                arrays = load_npz(source, what="CIFAR-N labels")
                break
    if arrays is None:
        raise DeepCoreError(
            f"CIFAR-N labels for {name} not found: put {pt_name} beside the batches "
            f"or reinstall the package (it ships data/{npz_name})"
        )
    out: dict = {}
    for key, arr in arrays.items():
        arr = np.asarray(arr).astype(np.int64)
        if arr.shape != (_N,):
            raise DeepCoreError(
                f"CIFAR-N array {key!r} in {source} has shape {arr.shape}, expected ({_N},)"
            )
        out[key] = arr
    if "clean_label" not in out:
        raise DeepCoreError(f"CIFAR-N file {source} has no 'clean_label' array")
    out["_source"] = str(source)
    return out


def convert(pt_path: str | Path, npz_path: str | Path) -> None:
    """Convert an official CIFAR-N ``.pt`` to the shipped pickle-free ``.npz`` (uint8)."""
    from ..io import save_npz

    arrays = read_official_pt(pt_path)
    save_npz(npz_path, **{k: np.asarray(v).astype(np.uint8) for k, v in sorted(arrays.items())})


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3:
        sys.exit("usage: python -m deep_core.datasets.cifar_n OFFICIAL.pt OUT.npz")
    convert(sys.argv[1], sys.argv[2])
