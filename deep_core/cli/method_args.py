"""Method (and learner) options on the command line and in config files: the one mapping.

Every option a registered method declares in its ``__init__`` (:mod:`deep_core.options`)
becomes a flag: option ``ccs_beta`` is ``--ccs-beta`` (underscores become hyphens, plus
any declared :class:`~deep_core.options.Aliases`), its type and allowed values come from
the annotation (``bool`` takes ``True/False`` like the reference scripts, a bare
``--balance`` means True; ``Literal[...]`` gives choices), its help from the method's
docstring. So ``--uncertainty --balance --tau --eta --repeat`` keep their reference
names, and a method registered later gets its flags without editing this file. Ranges
are checked when the method is built, against its own declaration. ``deepcore-run``
builds the robust learners' flags the same way (:func:`flag_specs`).

Flags have no argparse default (``argparse.SUPPRESS``): :func:`method_options_from_args`
returns only the options the user typed, so a caller can layer them over a config file
and the method's own defaults fill the rest. Typical use::

    parser = argparse.ArgumentParser()
    add_method_arguments(parser)
    ns = parser.parse_args(argv)
    options = {**method_options_from_mapping(config), **method_options_from_args(ns)}
    method, unused = build_method(ns.selection, options, strict=False)
    for line in unused_option_warnings(ns.selection, unused):
        print(line, file=sys.stderr)
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeepCoreError
from ..methods import get_method
from ..methods.base import METHODS
from ..options import option_flag, option_specs
from .common import str_to_bool


@dataclass
class FlagSpec:
    """One command-line flag: an option of every class that declares one of that name.

    The classes' declarations (:func:`deep_core.options.option_specs`) give its type,
    choices (their union; each class checks its own when it is built), aliases and help.
    """

    name: str
    flag: str
    kind: str  # "bool", "int", "float" or "str"
    choices: tuple[str, ...] | None = None
    optional: bool = False  # the annotation allows None (spelled "none")
    aliases: tuple[str, ...] = ()
    used_by: dict[str, Any] = field(default_factory=dict)  # class name -> its default
    #: class name -> the first sentence of the option in that class's docstring
    docs: dict[str, str] = field(default_factory=dict)

    @property
    def flags(self) -> tuple[str, ...]:
        return (*self.aliases, self.flag)

    def parse(self, text: str) -> Any:
        """Turn command-line text into a value of this option's type."""
        if self.optional and text.strip().lower() == "none":
            return None
        if self.kind == "bool":
            return str_to_bool(text)
        if self.kind == "int":
            return int(text)
        if self.kind == "float":
            return float(text)
        if self.choices is not None and text not in self.choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice {text!r} (choose from {', '.join(self.choices)})"
            )
        return text

    def coerce(self, value: Any) -> Any:
        """Check or convert a value from a config file (strings are parsed like flags)."""
        if value is None and self.optional:
            return None
        if isinstance(value, str):
            try:
                return self.parse(value)
            except (argparse.ArgumentTypeError, ValueError) as e:
                raise DeepCoreError(f"option {self.name}: {e}") from None
        ok = {
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "str": False,
        }[self.kind]
        if not ok:
            raise DeepCoreError(f"option {self.name} expects {self.kind}, got {value!r}")
        return float(value) if self.kind == "float" else value

    def describe(self) -> str:
        """The option's help from its declarations: the sentence most classes share first,
        then each other class's own ("SmallLoss: ..."); one class: "Owner: sentence"."""
        groups: dict[str, list[str]] = {}
        for owner, doc in self.docs.items():
            groups.setdefault(doc, []).append(owner)
        if not groups:
            return f"option of {', '.join(self.used_by)}"
        ranked = sorted(groups.items(), key=lambda g: -len(g[1]))  # stable: first seen wins ties
        first_doc, first_owners = ranked[0]
        parts = [first_doc if len(first_owners) > 1 else f"{first_owners[0]}: {first_doc}"]
        parts += [f"{', '.join(owners)}: {doc}" for doc, owners in ranked[1:]]
        return "; ".join(parts)

    def help(self) -> str:
        text = self.describe()
        defaults = {repr(v) for v in self.used_by.values()}
        if defaults == {"None"} and "default" in text:  # the doc says what None means
            return f"{text} (used by {', '.join(self.used_by)})"
        if len(defaults) == 1:
            shown = f"default {defaults.pop()}"
        else:
            shown = "defaults " + ", ".join(f"{m} {v!r}" for m, v in self.used_by.items())
        return f"{text} ({shown}; used by {', '.join(self.used_by)})"


def flag_specs(
    classes: Iterable[tuple[str, type]], *, strict: bool = False
) -> dict[str, FlagSpec]:
    """Flags of every option of ``classes`` (``(name, class)`` pairs), by option name (sorted).

    Parameters
    ----------
    classes : iterable of (str, type)
        Registered classes (methods, learners) and their names.
    strict : bool, default=False
        Raise ``TypeError`` for an option whose annotation has no command-line form or
        whose type differs between classes; otherwise such an option is skipped with a
        warning (it can still be set from the Python API).
    """
    specs: dict[str, FlagSpec] = {}
    for owner, cls in classes:
        for name, option in option_specs(cls).items():
            try:
                kind, choices, optional = option.kind()
                spec = specs.get(name)
                if spec is None:
                    spec = specs[name] = FlagSpec(name, option.flag, kind, choices, optional)
                elif spec.kind != kind:
                    raise TypeError(
                        f"option {name!r} is {kind} in {owner} but {spec.kind} elsewhere"
                    )
                elif spec.choices is None or choices is None:
                    spec.choices = None  # free text for one class: it validates its own
                else:
                    spec.choices = tuple(dict.fromkeys((*spec.choices, *choices)))
                spec.optional = spec.optional or optional
                spec.aliases = tuple(dict.fromkeys((*spec.aliases, *option.aliases)))
                if option.doc:
                    spec.docs[owner] = option.doc
                spec.used_by[owner] = option.default
            except TypeError as e:
                if strict:
                    raise TypeError(f"{owner}.{name}: {e}") from None
                warnings.warn(f"{owner}.{name} has no command-line flag: {e}", stacklevel=2)
    return dict(sorted(specs.items()))


def add_flag_arguments(
    group: argparse._ArgumentGroup, specs: Iterable[FlagSpec]
) -> argparse._ArgumentGroup:
    """Add one flag per spec to ``group`` (``dest`` = the option name, no default)."""
    for spec in specs:
        kwargs: dict[str, Any] = {
            "dest": spec.name,
            "default": argparse.SUPPRESS,
            "type": _named(spec.parse, spec.kind),
            "help": spec.help(),
        }
        if spec.kind == "bool":
            kwargs.update(nargs="?", const=True, metavar="True|False")
        elif spec.choices is not None:
            kwargs["metavar"] = "{" + ",".join(spec.choices) + "}"
        group.add_argument(*spec.flags, **kwargs)
    return group


def options_from_mapping(
    specs: Mapping[str, FlagSpec], mapping: Mapping[str, Any]
) -> dict[str, Any]:
    """The options of ``specs`` in a config mapping (keys may use ``-`` or ``_``), checked.

    Keys that are not among ``specs`` are ignored (a config holds other settings too).
    """
    out = {}
    for key, value in mapping.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name in specs:
            out[name] = specs[name].coerce(value)
    return out


def method_option_specs(*, strict: bool = False) -> dict[str, FlagSpec]:
    """Flags of every option of every registered method, by option name (sorted).

    ``strict``: see :func:`flag_specs`.
    """
    return flag_specs(METHODS.items(), strict=strict)


def add_method_arguments(
    parser: argparse.ArgumentParser, *, exclude: Iterable[str] = ()
) -> argparse._ArgumentGroup:
    """Add a flag for every method option to ``parser`` (no defaults: see module doc).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    exclude : iterable of str
        Option names the caller defines itself (their flags are not added).

    Returns
    -------
    The argument group holding the flags; ``dest`` of each flag is the option name.
    """
    skip = set(exclude)
    group = parser.add_argument_group(
        "selection method options",
        "Passed to the --selection method; a flag the method does not take is reported.",
    )
    specs = [spec for spec in method_option_specs().values() if spec.name not in skip]
    return add_flag_arguments(group, specs)


def method_options_from_args(
    namespace: argparse.Namespace, *, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """The method options the user gave on the command line, by option name."""
    skip = set(exclude)
    given = vars(namespace)
    return {n: given[n] for n in method_option_specs() if n in given and n not in skip}


def method_options_from_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The method options in a config mapping (keys may use ``-`` or ``_``), checked.

    Keys that are not method options are ignored (a config holds other settings too).
    """
    return options_from_mapping(method_option_specs(), mapping)


def unused_option_warnings(selection: str, unused: Mapping[str, Any]) -> list[str]:
    """One ``warning: ...`` line per option the chosen method does not take."""
    return [
        f"warning: {option_flag(name)} is not used by {selection} (ignored)"
        for name in sorted(unused)
    ]


def method_defaults(selection: str) -> dict[str, Any]:
    """The default of every option of method ``selection`` (for logs and configs)."""
    return {n: o.default for n, o in option_specs(get_method(selection)).items()}


# -- helpers ----------------------------------------------------------------------------
def _named(parse: Callable[[str], Any], kind: str) -> Callable[[str], Any]:
    """Wrap ``parse`` so argparse's messages name the type ("invalid float value")."""

    def convert(text: str) -> Any:
        return parse(text)

    convert.__name__ = kind
    return convert
