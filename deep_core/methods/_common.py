"""Small helpers shared by the method modules: row blocks and option checks.

Scores are computed block by block so a method's extra memory stays bounded whatever
N is (1M samples x 100 classes in float64 would otherwise be 800 MB per temporary).
Option checks raise :class:`~deep_core.errors.DeepCoreError` from ``__init__`` so a bad
option fails before a warm-up is paid for, not after.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..errors import DeepCoreError, unknown_name

#: about this many float64 values per temporary (32 MiB)
BLOCK_VALUES = 1 << 22


def row_blocks(n: int, width: int, *, values: int = BLOCK_VALUES) -> Iterator[slice]:
    """Slices covering ``range(n)`` with about ``values`` elements of ``width`` per block."""
    rows = max(1, values // max(1, int(width)))
    for lo in range(0, n, rows):
        yield slice(lo, min(n, lo + rows))


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """``value`` if it is one of ``valid`` (case-sensitive), else the unknown-name error."""
    valid = tuple(valid)
    if value not in valid:
        raise unknown_name(kind, value, valid)
    return value


def check_int(name: str, value: int, *, low: int) -> int:
    """``value`` as an int if it is an integer ``>= low``."""
    if isinstance(value, bool) or int(value) != value or value < low:
        raise DeepCoreError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_unit(name: str, value: float, *, closed_high: bool = False) -> float:
    """``value`` as a float in ``[0, 1)`` (``[0, 1]`` with ``closed_high``)."""
    v = float(value)
    ok = 0.0 <= v <= 1.0 if closed_high else 0.0 <= v < 1.0
    if not ok:
        high = "1]" if closed_high else "1)"
        raise DeepCoreError(f"{name} must be in [0, {high}, got {value!r}")
    return v


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
