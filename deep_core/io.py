"""Atomic file writes, and reads of array files that fail with one clear line.

Each writer fills a temporary file in the target's folder, flushes it to disk and
renames it over the target (``os.replace`` is atomic on POSIX and Windows); a reader
sees the old file or the whole new one, never half. Temporary names carry the writer's
host and pid, so the next start removes those of a killed process
(:func:`deep_core.locks.remove_stale_temp`). ``.npz`` files are read without pickles;
a missing, truncated or corrupt file is a :class:`~deep_core.errors.DeepCoreError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import DeepCoreError
from .locks import temp_prefix

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit it replaces ``path``."""
    path = Path(path)
    if path.is_dir():
        raise DeepCoreError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise DeepCoreError(f"cannot write {path}: {e.strerror}") from None
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path: str | Path, *, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles), read fully.

    Raises
    ------
    DeepCoreError
        The file is missing, a folder, truncated, corrupt, or holds object arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepCoreError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DeepCoreError(f"cannot read {what} {path} (truncated or corrupt?): {text}") from None


def read_npz(path: str | Path, name: str, *, what: str = "file") -> np.ndarray:
    """The array ``name`` of an ``.npz`` (see :func:`load_npz`); a missing name is an error."""
    arrays = load_npz(path, what=what)
    if name not in arrays:
        raise DeepCoreError(f"{what} {path} has no {name!r} array")
    return arrays[name]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
