"""The learner registry: ``--robust-learner NAME`` → a class on the shared engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from deep_core.errors import DeepCoreError
from deep_core.learner import Learner
from deep_core.options import option_flag, option_specs
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


def build_learner(name: str, options: Mapping[str, Any]) -> Learner:
    """Learner ``name`` with ``options``, every option checked before anything is built.

    Raises
    ------
    DeepCoreError
        An unknown learner, an option it does not take (named by its flag: the command
        line accepts every learner's flags), or a value outside its declaration.
    """
    cls = get_learner(name)
    wrong = sorted(set(options) - set(option_specs(cls)))
    if wrong:
        flags = ", ".join(option_flag(w) for w in wrong)
        raise DeepCoreError(f"{flags} not used by robust learner {name}")
    return cls(**options)  # creating it checks every value (deep_core.options.Configurable)
