"""The learner registry: ``--robust-learner NAME`` → a class on the shared engine."""

from __future__ import annotations

from typing import TypeVar

from deep_core.engine import Learner
from deep_core.registry import Registry

L = TypeVar("L", bound=type[Learner])
#: every robust learner, by its ``name``
LEARNERS: Registry[type[Learner]] = Registry("robust learner")


def register_learner(cls: L) -> L:
    """Class decorator: register a learner under ``cls.name`` (another class: ``ValueError``)."""
    LEARNERS.register(cls.name, cls)
    return cls


def learner_names() -> list[str]:
    """Registered learner names, sorted."""
    return LEARNERS.names()


def get_learner(name: str) -> type[Learner]:
    """The learner class registered as ``name``; an unknown name lists the valid ones."""
    return LEARNERS.get(name)
