"""Shared command-line plumbing: one-line errors with exit status 2, boolean flags."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import DeepCoreError, one_line

EXIT_BAD_INPUT = 2


class ArgParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and exit status 2 (via :func:`run_cli`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise DeepCoreError(message)


def str_to_bool(value: str | bool) -> bool:
    """Parse ``True/False`` (and yes/no, 1/0) as the reference scripts pass them."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("true", "t", "yes", "y", "1"):
        return True
    if v in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def run_cli(body: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None) -> int:
    """Run ``body``: the one error boundary of every command.

    Bad input (:class:`DeepCoreError`, also when re-raised from a DataLoader worker) and
    failures of the file system or the network on a path the user gave (``OSError``)
    become one line ``error: ...`` and exit status 2.
    """
    try:
        return int(body(argv) or 0)
    except DeepCoreError as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def describe_os_error(e: OSError) -> str:
    """One line for a file-system or network error: what failed, on which path."""
    import urllib.error

    if isinstance(e, urllib.error.URLError):
        return f"cannot reach the network (offline?): {e.reason}"
    text = e.strerror or one_line(str(e)) or type(e).__name__
    if e.filename is not None:
        text += f": {e.filename}"
        if e.filename2 is not None:
            text += f" -> {e.filename2}"
    return text
