"""Modules imported on first use, so that commands start without torch or faiss.

``torch = LazyModule("torch")`` at the top of a module keeps ``torch.x`` readable in its
functions while the import itself happens only when a function first touches it
(``--help`` and ``--list`` never do). Type annotations stay strings
(``from __future__ import annotations``).

``torch = LazyModule("torch", globals())`` also puts the module itself in place of the
stand-in in those globals on first use, so code that runs many times (a learner's
training step) reads ``torch.x`` directly from then on, not through :meth:`__getattr__`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it on first attribute access.

    Parameters
    ----------
    name : str
        The module's import name.
    namespace : dict, optional
        The importing module's ``globals()``: every name bound to this stand-in there is
        re-bound to the module when it is imported.
    """

    def __init__(self, name: str, namespace: dict[str, Any] | None = None) -> None:
        self.__dict__["_name"] = name
        self.__dict__["_namespace"] = namespace

    def _module(self) -> ModuleType:
        module = importlib.import_module(self.__dict__["_name"])
        namespace = self.__dict__["_namespace"]
        if namespace is not None:
            for key, value in list(namespace.items()):
                if value is self:
                    namespace[key] = module
        return module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"
