"""Name → object maps for the extension points: methods, learners, networks, data sets.

Each extension point is one :class:`Registry`::

    MODELS: Registry[Builder] = Registry("model")

    @MODELS.register("SmallCNN")
    def small_cnn(...): ...

    MODELS.register("ResNet8", build_resnet8)
    MODELS.get("ResNet9")   # DeepCoreError: unknown model 'ResNet9'; choose from: ...

Looking up an unknown name is a user's mistake (:class:`~deep_core.errors.DeepCoreError`,
one line listing the valid names); registering a taken name for another object is a
programmer's mistake (``ValueError`` naming both objects). This module imports nothing
heavy, so listing names stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar, overload

from .errors import unknown_name

T = TypeVar("T")


def _describe(obj: object) -> str:
    """``module.qualname`` of a class or function, else its ``repr``."""
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        return f"{module}.{qualname}"
    return repr(obj)


class Registry(Generic[T]):
    """Objects of one kind, looked up by a case-sensitive name.

    Parameters
    ----------
    kind : str
        What the objects are, for messages (``"selection method"``, ``"model"``).
    initial : mapping of str to object, optional
        Entries to register at once, as :meth:`register` would one by one.
    """

    def __init__(self, kind: str, initial: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        for name, obj in (initial or {}).items():
            self._add(name, obj)

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """Add ``obj`` under ``name``; without ``obj``, a decorator that adds what it wraps.

        Registering the same object twice under a name is allowed (a module imported
        again); another object under a taken name raises ``ValueError``.
        """
        if obj is None:
            return lambda o: self._add(name, o)
        return self._add(name, obj)

    def _add(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        old = self._items.get(name)
        if old is not None and old is not obj:
            raise ValueError(
                f"{self.kind} {name!r} is already registered as {_describe(old)}; "
                f"cannot register {_describe(obj)} under the same name"
            )
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name lists the valid ones."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, str(name), self._items) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs sorted by name."""
        return sorted(self._items.items(), key=lambda kv: kv[0])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
