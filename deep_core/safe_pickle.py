"""A restricted unpickler for data files that are pickles of plain arrays (CIFAR batches).

``pickle.load`` runs whatever callable a file names, so a downloaded data folder could
run code on load. :func:`load_data_pickle` resolves only the few globals a numpy array
needs (its reconstructor, ``ndarray`` and ``dtype``, and ``_codecs.encode`` for bytes
written by Python 3 at protocol 2); everything else in the file must be a built-in
container or scalar (dict, list, tuple, str, bytes, int, float, bool, None), which
pickle builds without calling anything. Any other global is refused, as are object
arrays (they would hold arbitrary Python objects).
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DeepCoreError


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dt


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    dt = _dtype(dtype)
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"bad array order {order!r}")
    arr = np.frombuffer(memoryview(buf).cast("B"), dtype=dt)
    return arr.reshape(shape, order=order)


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes at protocol 2 as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError("only latin-1 text may be encoded")
    return text.encode("latin-1")


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_data_pickle(path: str | Path, *, what: str = "data file") -> Any:
    """Read a pickle of plain data from ``path``; refused or corrupt files are errors.

    Parameters
    ----------
    path : path
    what : str
        Name of the file kind in error messages (``"CIFAR batch"``).

    Raises
    ------
    DeepCoreError
        Missing, truncated or corrupt file, or one that names anything but plain data.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DeepCoreError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise DeepCoreError(f"{what} {path} is a folder, not a file") from None
    except pickle.UnpicklingError as e:
        raise DeepCoreError(f"refused or corrupt {what} {path}: {e}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise DeepCoreError(f"corrupt {what} {path}: {type(e).__name__}: {e}") from None
