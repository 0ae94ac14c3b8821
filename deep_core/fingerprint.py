"""Cheap content fingerprints of data, so cached results follow the data, not its path.

A warm-up cache keyed by settings and a data *path* would serve stale signals after
the files under that path change. These hashes go into the key instead:

* :func:`hash_arrays`: every byte of in-memory arrays (labels, decoded images);
* :func:`hash_files`: every path with its size and modification time, plus the first
  and last bytes of a sample of the files (rewritten, added, removed or moved files
  change it without reading a whole corpus);
* :func:`hash_file`: every byte of one file (checksums of cache entries).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DeepCoreError

#: files whose head and tail bytes enter :func:`hash_files`
SAMPLED_FILES = 64
#: bytes read at each end of a sampled file
SAMPLED_BYTES = 4096
_CHUNK = 1 << 22


def hash_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 (hex, 20 digits) of the dtypes, shapes and bytes of ``arrays``."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        flat = a.reshape(-1).view(np.uint8)
        for s in range(0, flat.size, _CHUNK):
            h.update(flat[s : s + _CHUNK])
    return h.hexdigest()[:20]


def hash_files(
    paths: Sequence[str],
    *,
    sampled_files: int = SAMPLED_FILES,
    sampled_bytes: int = SAMPLED_BYTES,
) -> str:
    """Fingerprint of a list of files: paths, sizes, mtimes and sampled bytes.

    Parameters
    ----------
    paths : sequence of str
        The files, in data-set order (the order is part of the fingerprint).
    sampled_files : int, default=64
        Evenly spaced files whose first and last ``sampled_bytes`` are hashed.
    sampled_bytes : int, default=4096

    Returns
    -------
    str
        20 hex digits.

    Raises
    ------
    DeepCoreError
        A file cannot be read.
    """
    h = hashlib.sha256()
    n = len(paths)
    try:
        for i in range(n):
            p = paths[i]
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        for i in np.unique(np.linspace(0, n - 1, min(n, sampled_files)).astype(np.int64)):
            with open(paths[int(i)], "rb") as f:
                h.update(f.read(sampled_bytes))
                size = os.fstat(f.fileno()).st_size
                if size > sampled_bytes:
                    f.seek(max(sampled_bytes, size - sampled_bytes))
                    h.update(f.read(sampled_bytes))
    except OSError as e:
        raise DeepCoreError(f"cannot read {e.filename}: {e.strerror}") from None
    return h.hexdigest()[:20]


def hash_file(path: str | Path) -> str:
    """SHA-256 (hex) of every byte of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
