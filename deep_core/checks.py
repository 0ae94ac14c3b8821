"""Up-front checks of a run's settings: types, numeric ranges, output folders, budget.

Every numeric setting of :class:`~deep_core.config.RunConfig` is declared once in
:data:`RANGES`; :func:`check_run_config` checks the type of every field against its
annotation and each number against its interval, before any data is loaded or any
folder is created, so a bad value is one line naming the setting (``momentum must be in
[0, 1), got 5.0``) instead of a failure after the warm-up.
"""

from __future__ import annotations

import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .budget import check_fraction
from .errors import DeepCoreError

#: largest image side: a 1024² RGB batch of 64 is 0.8 GB of float32; larger is a typo
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class Interval:
    """``lo <= x <= hi`` (open ends with ``lo_open`` / ``hi_open``); None is unbounded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def __str__(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:,}"
        hi = "inf" if self.hi is None else f"{self.hi:,}"
        return f"{'(' if self.lo is None or self.lo_open else '['}{lo}, {hi}" + (
            ")" if self.hi is None or self.hi_open else "]"
        )


#: RunConfig field -> allowed interval (None values of optional fields are not checked)
RANGES: dict[str, Interval] = {
    "noise_rate": Interval(0, 1, hi_open=True),
    "n_train": Interval(1),
    "n_class": Interval(2),
    "image_size": Interval(8, MAX_IMAGE_SIZE),
    "fraction": Interval(0, 1, lo_open=True),
    "selection_epochs": Interval(0),
    "epochs": Interval(0),
    "batch_size": Interval(1),
    "test_batch_size": Interval(1),
    "lr": Interval(0, lo_open=True),
    "min_lr": Interval(0),
    "momentum": Interval(0, 1, hi_open=True),
    "weight_decay": Interval(0),
    "milestone": Interval(1),
    "gamma": Interval(0, lo_open=True),
    "step_size": Interval(1),
    "seed": Interval(0, 2**32 - 1),
    "num_exp": Interval(1),
    "workers": Interval(0),
}


def _name(field: str) -> str:
    return field.replace("_", " ")


def describe_type(hint: Any) -> str:
    """``an integer``, ``True/False``, ``one of 'a', 'b'``... for messages."""
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "empty"
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a list of {describe_type(typing.get_args(hint)[0])}s"
    if origin is dict:
        return "a mapping"
    return {bool: "True/False", int: "an integer", float: "a number", str: "text"}.get(
        hint, str(hint)
    )


def matches_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (bool is not an int here).

    Handles unions, ``Literal``, ``list[...]``, ``dict``, the scalar types (numpy
    scalars included); any other annotation accepts every value.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return isinstance(value, str) and value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if hint is int:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        )
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(matches_type(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return True


def check_run_config(cfg: Any) -> None:
    """Types of every field of a :class:`~deep_core.config.RunConfig`, then ranges.

    Raises
    ------
    DeepCoreError
        The first wrong value, naming its flag, what it must be, and what it is.
    """
    hints = type(cfg).field_types()  # flat: each part's fields by their flat names
    for name, hint in hints.items():
        value = getattr(cfg, name)
        if not matches_type(value, hint):
            raise DeepCoreError(f"{_name(name)} must be {describe_type(hint)}, got {value!r}")
    for name, interval in RANGES.items():
        value = getattr(cfg, name)
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and v not in interval:
                raise DeepCoreError(f"{_name(name)} must be in {interval}, got {v!r}")


def check_output_folder(path: str | Path, *, flag: str) -> None:
    """``path`` is, or can be created as, a writable folder.

    Raises
    ------
    DeepCoreError
        ``path`` (or the first existing folder above it) is a file or not writable.
    """
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "is" if probe == path else f"is below {probe}, which is"
        raise DeepCoreError(f"{flag} {path} {what} a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DeepCoreError(f"{flag} {path}: no permission to write in {probe}")


def check_budget(n: int, fraction: float) -> int:
    """``round(fraction * n)``, which must keep at least one sample.

    Raises
    ------
    DeepCoreError
        The budget is empty (``--fraction 0.0001`` of 1,347 samples).
    """
    k = int(round(check_fraction(fraction) * n))
    if k < 1:
        raise DeepCoreError(
            f"--fraction {fraction:g} of {n:,} samples keeps none (round(fraction * N) = 0); "
            f"use at least {1 / max(n, 1):.2g}"
        )
    return k
