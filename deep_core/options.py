"""Options of selection methods and robust learners: each one declared once, in ``__init__``.

A class that takes options (:class:`~deep_core.methods.base.SelectionMethod`,
:class:`~deep_core.learner.Learner`) declares every option as a keyword-only parameter
of its ``__init__``, and nowhere else::

    def __init__(
        self,
        *,
        lr_u: Annotated[float, Interval(0, lo_open=True)] = 10.0,
        ratio_consistency: Annotated[float, Interval(0), Aliases("-rc")] = 0.0,
        uncertainty: Literal["LeastConfidence", "Margin", "Entropy"] = "Margin",
        window: Annotated[int, Interval(2)] | None = None,
    ) -> None:

- the type is the annotation (``bool``, ``int``, ``float``, ``str``; ``| None`` allows None);
- the allowed values are a ``Literal[...]``, the allowed range an
  :class:`~deep_core.checks.Interval` in ``Annotated``;
- the default is the parameter's default;
- the help is the first sentence of the option in the class's numpydoc ``Parameters``;
- command-line spellings besides ``--lr-u`` (from the name) are :class:`Aliases`.

:func:`option_specs` reads that declaration. Every instance of a :class:`Configurable`
class is checked against it when it is created (:func:`check_options`: type, range,
choices; a one-line :class:`~deep_core.errors.DeepCoreError` naming the option, what
it must be, the value and the flag), so a bad option fails before any training; the
command lines build their flags from it (:mod:`deep_core.cli.method_args`).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .checks import Interval, describe_type, matches_type
from .errors import DeepCoreError

__all__ = [
    "Aliases",
    "Configurable",
    "Interval",
    "OptionSpec",
    "check_options",
    "option_flag",
    "option_specs",
]


@dataclass(frozen=True)
class Aliases:
    """Command-line spellings of an option besides ``--name-with-hyphens`` (``"-rc"``)."""

    flags: tuple[str, ...]

    def __init__(self, *flags: str) -> None:
        if not flags or not all(isinstance(f, str) and f.startswith("-") for f in flags):
            raise TypeError(f"Aliases takes flags such as '-rc', got {flags!r}")
        object.__setattr__(self, "flags", tuple(flags))


def option_flag(name: str) -> str:
    """The command-line flag of option ``name`` (``ccs_beta`` -> ``--ccs-beta``)."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class OptionSpec:
    """One option of one class, as its ``__init__`` declares it.

    ``hint`` is the annotation without ``Annotated`` (``float``, ``Literal[...]``,
    ``int | None``); ``interval`` and ``aliases`` come from ``Annotated``; ``doc`` is the
    first sentence of the option in the class's docstring.
    """

    name: str
    hint: Any
    default: Any
    interval: Interval | None = None
    aliases: tuple[str, ...] = ()
    doc: str | None = None

    @property
    def flag(self) -> str:
        return option_flag(self.name)

    @property
    def flags(self) -> tuple[str, ...]:
        """Every command-line spelling, aliases first (``-rc``, ``--ratio-consistency``)."""
        return (*self.aliases, self.flag)

    @property
    def spelled(self) -> str:
        """``(-rc/--ratio-consistency)``: the flags, for messages after the option's name."""
        return f"({'/'.join(self.flags)})"

    def check(self, value: Any, *, owner: str) -> None:
        """Raise a one-line :class:`DeepCoreError` unless ``value`` fits the declaration."""
        if not matches_type(value, self.hint):
            raise DeepCoreError(
                f"{owner}: {self.name} must be {self.describe()}, got {value!r} {self.spelled}"
            )
        if self.interval is None or value is None or isinstance(value, str | bool):
            return
        x = float(value)
        if not (math.isfinite(x) and x in self.interval):
            raise DeepCoreError(
                f"{owner}: {self.name} must be in {self.interval}, got {value!r} {self.spelled}"
            )

    def describe(self) -> str:
        """What a value must be: ``a number``, ``one of 'a', 'b'``, ``an integer or None``."""
        args = typing.get_args(self.hint)
        if typing.get_origin(self.hint) in (typing.Union, types.UnionType) and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            inner = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
            return f"{describe_type(inner)} or None"
        return describe_type(self.hint)

    def kind(self) -> tuple[str, tuple[str, ...] | None, bool]:
        """``(kind, choices, optional)`` for a command-line flag.

        ``kind`` is ``"bool"``, ``"int"``, ``"float"`` or ``"str"``; raises ``TypeError``
        for an annotation that has no command-line form.
        """
        annotation = self.hint
        optional = False
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                raise TypeError(f"unsupported union annotation {annotation!r}")
            annotation = args[0]
        if typing.get_origin(annotation) is typing.Literal:
            values = typing.get_args(annotation)
            if not all(isinstance(v, str) for v in values):
                raise TypeError(f"only string Literal choices are supported, got {annotation!r}")
            return "str", tuple(values), optional
        if isinstance(annotation, type):
            for kind, tp in (("bool", bool), ("int", int), ("float", float), ("str", str)):
                if issubclass(annotation, tp):
                    return kind, None, optional
        raise TypeError(f"unsupported annotation {annotation!r}")


@functools.cache
def option_specs(cls: type) -> dict[str, OptionSpec]:
    """The options ``cls.__init__`` declares, by name, in signature order."""
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to the defaults
        hints = {}
    specs = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        hint = hints.get(name, Any if default is None else type(default))
        hint, extras = _strip_annotated(hint)
        intervals = [e for e in extras if isinstance(e, Interval)]
        aliases = [f for e in extras if isinstance(e, Aliases) for f in e.flags]
        if len(intervals) > 1:
            raise TypeError(f"{cls.__name__}.{name} declares more than one Interval")
        specs[name] = OptionSpec(
            name=name,
            hint=hint,
            default=default,
            interval=intervals[0] if intervals else None,
            aliases=tuple(aliases),
            doc=_doc_line(cls, name),
        )
    return specs


def check_options(cls: type, options: Mapping[str, Any]) -> None:
    """Check ``options`` against the declaration of ``cls`` (unknown names are errors).

    Raises
    ------
    DeepCoreError
        The first option ``cls`` does not take or whose value does not fit.
    """
    specs = option_specs(cls)
    owner = cls.__name__
    unknown = sorted(set(options) - set(specs))
    if unknown:
        raise DeepCoreError(
            f"{owner} does not take option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(specs)) or 'none'}"
        )
    for name, value in options.items():
        specs[name].check(value, owner=owner)


class Configurable:
    """Base of classes whose options are declared by ``__init__`` (see the module doc).

    Creating an instance checks every option given against the declaration before
    ``__init__`` runs, so ``__init__`` only stores them; :meth:`options` reads them back
    from the attributes of the same names.
    """

    def __new__(cls, *args: Any, **options: Any) -> Any:
        check_options(cls, options)
        return super().__new__(cls)

    def options(self) -> dict[str, Any]:
        """The options this instance was built with, keyed like its keyword arguments."""
        return {name: getattr(self, name) for name in option_specs(type(self))}


# -- helpers ----------------------------------------------------------------------------
def _strip_annotated(hint: Any) -> tuple[Any, list[Any]]:
    """``hint`` without ``Annotated`` (also inside ``X | None``) and the metadata found."""
    if typing.get_origin(hint) is typing.Annotated:
        inner, *extras = typing.get_args(hint)
        inner, more = _strip_annotated(inner)
        return inner, [*extras, *more]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        parts = [_strip_annotated(a) for a in typing.get_args(hint)]
        extras = [e for _, es in parts for e in es]
        return typing.Union[tuple(p for p, _ in parts)], extras  # noqa: UP007
    return hint, []


def _doc_line(cls: type, name: str) -> str | None:
    """First sentence of option ``name`` in the numpydoc Parameters of ``cls`` (or a base).

    The class's docstring is where each option is described; a flag's help reads it
    from there instead of repeating it.
    """
    for klass in cls.__mro__:
        lines = (klass.__doc__ or "").splitlines()
        for i, line in enumerate(lines):
            if not re.match(rf"\s*{re.escape(name)}\s*:", line):
                continue
            indent = len(line) - len(line.lstrip())
            body = []
            for nxt in lines[i + 1 :]:
                if not nxt.strip() or len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt.strip())
            text = re.sub(r"``?([^`]+)``?", r"\1", " ".join(body))
            text = re.sub(r":\w+:", "", text)
            return _first_sentence(text) or None
    return None


#: words whose final "." does not end a sentence ("Paul et al. (2021)", "e.g. EL2N")
_ABBREVIATIONS = ("al", "e.g", "i.e", "cf", "vs", "approx")


def _first_sentence(text: str) -> str:
    """``text`` up to its first "." or ";" outside parentheses that is followed by a space
    and does not end an abbreviation."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch in ".;" and depth == 0 and text[i + 1 : i + 2] in (" ", ""):
            word = re.split(r"[\s(]", text[:i])[-1].lower()
            if ch == ";" or word not in _ABBREVIATIONS:
                return text[:i].strip()
    return text.strip().rstrip(".;")
