"""Errors a user can act on.

Every problem caused by input (a missing file, a wrong shape, an unknown name, an
out-of-range value) is raised as :class:`DeepCoreError` with one line that names the
problem. The command-line entry points turn it into that line on stderr and exit
status 2; the Python API lets it propagate (it is a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterable


class DeepCoreError(ValueError):
    """Bad input: the message is one line a user can act on."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> DeepCoreError:
    """The error for a name that is not one of ``valid`` (listed in the message)."""
    return DeepCoreError(f"unknown {kind} {name!r}; choose from: {', '.join(sorted(valid))}")


#: how a DataLoader worker's re-raised exception names the original one
_WORKER_PREFIX = "deep_core.errors.DeepCoreError: "


def one_line(message: str) -> str:
    """The one-line form of an error message.

    A :class:`DeepCoreError` raised inside a DataLoader worker reaches the main process
    with the worker's traceback in its message; its original line is the last one.
    """
    lines = [ln for ln in message.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return message.strip()
    last = lines[-1].strip()
    return last[len(_WORKER_PREFIX) :] if last.startswith(_WORKER_PREFIX) else last
