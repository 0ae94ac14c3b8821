"""Small helpers shared by the method modules: row blocks and option checks.

Scores are computed block by block so a method's extra memory stays bounded whatever
N is (1M samples x 100 classes in float64 would otherwise be 800 MB per temporary).
Options are checked by their declarations (:mod:`deep_core.options`) when a method is
created, so a bad option fails before a warm-up is paid for, not after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from ..errors import DeepCoreError
from ..options import Interval

#: about this many float64 values per temporary (32 MiB)
BLOCK_VALUES = 1 << 22

#: the ``window_start`` option: share of the ranking skipped before the budget is taken
WindowStart = Annotated[float, Interval(0, 1, hi_open=True)]


def row_blocks(n: int, width: int, *, values: int = BLOCK_VALUES) -> Iterator[slice]:
    """Slices covering ``range(n)`` with about ``values`` elements of ``width`` per block."""
    rows = max(1, values // max(1, int(width)))
    for lo in range(0, n, rows):
        yield slice(lo, min(n, lo + rows))


def check_seed(seed: int) -> int:
    """A seed usable by numpy's generators: an integer in ``[0, 2**32)``."""
    if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed < 2**32:
        raise DeepCoreError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def members(name: str, available: int, wanted: int, *, option: str) -> int:
    """Check that an ensemble signal has at least ``wanted`` members (the first are used)."""
    if available < wanted:
        raise DeepCoreError(
            f"{name} has {available} ensemble member(s) but {option}={wanted} needs {wanted}"
        )
    return wanted
