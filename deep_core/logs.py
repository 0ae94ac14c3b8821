"""The ``deep_core`` logger's console output, shared by every command.

One handler writes to whatever ``sys.stderr`` is at the time of each record (so an
in-process CLI call under a replaced stderr never writes to a stale, closed stream), and
prefixes warnings with ``warning:`` unless the message already says so.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("deep_core")


class _Stderr(logging.StreamHandler):
    """A stream handler bound to the current ``sys.stderr``, not the one at creation."""

    _deep_core = True

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; always stderr
        pass


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING and not msg.startswith(("warning:", "error:")):
            msg = "warning: " + msg
        return msg


def configure_logging(verbose: bool = True) -> None:
    """Console output of the ``deep_core`` logger: INFO and up, or warnings only."""
    if not any(getattr(h, "_deep_core", False) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(_Format())
        log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False
