"""Modules imported on first use, so that commands start without torch or faiss.

``torch = LazyModule("torch")`` at the top of a module keeps ``torch.x`` readable in its
functions while the import itself happens only when a function first touches it
(``--help`` and ``--list`` never do). Type annotations stay strings
(``from __future__ import annotations``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it on first attribute access."""

    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self.__dict__["_name"])

    def __getattr__(self, attr: str) -> Any:
        # kept: later reads are plain attribute reads (hot loops touch torch.* per step)
        value = self.__dict__[attr] = getattr(self._module(), attr)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"
