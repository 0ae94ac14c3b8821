"""Folder locks, and the clean-up of temporary files that killed processes left behind.

A run folder (or anything else one process at a time may write) holds a ``.lock`` file
locked with ``flock``: the operating system drops the lock when its process ends, even
on ``kill -9``, so a lock is never stale (POSIX ``flock``). Temporary files and folders carry the
writer's host and process id in their names (:func:`temp_prefix`); on the next start,
:func:`remove_stale_temp` deletes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .errors import DeepCoreError

LOCK_NAME = ".lock"
_TAG = re.compile(r"\.([A-Za-z0-9_-]+)-(\d+)\.")


class FolderLocked(DeepCoreError):
    """Another live process holds the folder's lock."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def temp_prefix(name: str) -> str:
    """``.<name>.<host>-<pid>.``: a temporary-file prefix that names its writer."""
    return f".{name}.{_host()}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temp(folder: str | Path) -> int:
    """Delete the temporary files and folders in ``folder`` whose writer has died.

    Only names made with :func:`temp_prefix` on this host are considered; those of a
    live process are kept. Returns the number of entries removed.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    host, removed = _host(), 0
    for p in entries:
        m = _TAG.search(p.name)
        if not p.name.startswith(".") or m is None or m.group(1) != host:
            continue
        pid = int(m.group(2))
        if pid == os.getpid() or _alive(pid):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed += 1
    return removed


class FolderLock:
    """An exclusive, non-blocking lock on ``folder/.lock`` (a context manager).

    Parameters
    ----------
    folder : path
        Must exist.
    what : str
        How the folder is named in the error (``"run folder"``).

    Raises
    ------
    FolderLocked
        Another process holds the lock (the message names its host and pid).
    """

    def __init__(self, folder: str | Path, *, what: str = "folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        path = self.folder / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise DeepCoreError(f"cannot lock {self.what} {self.folder}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderLocked(
                f"{self.what} {self.folder} is in use by another process ({owner})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextlib.contextmanager
def wait_for_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path``, waiting while another process holds it.

    For work that several processes may need at once and only one should do (a signals
    cache entry: the others wait, then find it done). The lock is dropped when its holder
    ends, even on a crash (``flock``), and the lock file goes with its holder, so a failed
    run leaves no file behind. A process that opened the old file meanwhile still
    re-checks the shared state once it holds the lock; at worst two do the work (its result
    is renamed in atomically).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
            fcntl.flock(f, fcntl.LOCK_UN)
