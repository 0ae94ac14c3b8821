"""The learner registry: ``--robust-learner NAME`` → a class on the shared engine."""

from __future__ import annotations

from typing import TypeVar

from deep_core.engine import Learner
from deep_core.errors import unknown_name

L = TypeVar("L", bound=type[Learner])
_LEARNERS: dict[str, type[Learner]] = {}


def register_learner(cls: L) -> L:
    _LEARNERS[cls.name] = cls
    return cls


def learner_names() -> list[str]:
    return sorted(_LEARNERS)


def get_learner(name: str) -> type[Learner]:
    try:
        return _LEARNERS[name]
    except KeyError:
        raise unknown_name("robust learner", name, _LEARNERS) from None
