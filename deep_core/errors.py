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
