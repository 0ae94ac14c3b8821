"""Options declared once (deep_core.options): validation, flags and options() all follow it.

Every registered method and learner is checked the same way: each option is fed a value
of the wrong type, one outside its declared range and one outside its choices, and the
build must fail before anything runs, with one line naming the option and its flag.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

import pytest

import robust_learners.base as learner_base
from deep_core.checks import Interval
from deep_core.cli import run as run_cli
from deep_core.errors import DeepCoreError
from deep_core.lazy import LazyModule
from deep_core.learner import Learner
from deep_core.methods import build_method, get_method, list_methods
from deep_core.options import Aliases, OptionSpec, check_options, option_specs
from deep_core.registry import Registry
from robust_learners import build_learner, get_learner, learner_names


def _cases() -> list[tuple[str, str, str, OptionSpec]]:
    owners = [("method", m, get_method(m)) for m in list_methods()]
    owners += [("learner", name, get_learner(name)) for name in learner_names()]
    return [(what, o, n, s) for what, o, cls in owners for n, s in option_specs(cls).items()]


CASES = _cases()


def _build(what: str, name: str, options: dict[str, Any]) -> object:
    if what == "method":
        return build_method(name, options)[0]
    return build_learner(name, options)


def _wrong_type(spec: OptionSpec) -> Any:
    kind = spec.kind()[0]
    return {"bool": "maybe", "int": 1.5, "float": "fast", "str": 3}[kind]


def _out_of_range(spec: OptionSpec) -> list[Any]:
    """Values just outside the declared interval (and non-finite ones for floats)."""
    iv, kind = spec.interval, spec.kind()[0]
    if iv is None:
        return []
    step = 1 if kind == "int" else 1e-3
    bad = []
    if iv.lo is not None:
        bad.append(iv.lo if iv.lo_open else iv.lo - step)
    if iv.hi is not None:
        bad.append(iv.hi if iv.hi_open else iv.hi + step)
    if kind == "float":
        bad += [math.nan, math.inf if iv.hi is None else -math.inf]
    return [int(b) if kind == "int" else float(b) for b in bad]


def _ids(case: tuple[str, str, str, OptionSpec]) -> str:
    return f"{case[1]}.{case[2]}"


def test_every_method_and_learner_is_covered():
    owners = {name for _, name, _, _ in CASES}
    assert set(list_methods()) <= owners
    assert {"SOP", "DivideMix"} <= owners
    assert len(CASES) > 80


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_every_option_rejects_a_value_of_the_wrong_type(case):
    what, owner, option, spec = case
    value = _wrong_type(spec)
    with pytest.raises(DeepCoreError) as e:
        _build(what, owner, {option: value})
    msg = str(e.value)
    assert msg.startswith(f"{owner}: {option} must be ") and spec.flag in msg, msg
    assert repr(value) in msg and "\n" not in msg


@pytest.mark.parametrize("case", [c for c in CASES if c[3].interval is not None], ids=_ids)
def test_every_option_rejects_a_value_outside_its_range(case):
    what, owner, option, spec = case
    for value in _out_of_range(spec):
        with pytest.raises(DeepCoreError) as e:
            _build(what, owner, {option: value})
        msg = str(e.value)
        assert msg.startswith(f"{owner}: {option} must be in {spec.interval}, got "), msg
        assert spec.flag in msg


@pytest.mark.parametrize("case", [c for c in CASES if c[3].kind()[1]], ids=_ids)
def test_every_option_rejects_a_value_outside_its_choices(case):
    what, owner, option, spec = case
    with pytest.raises(DeepCoreError, match=rf"^{owner}: {option} must be one of ") as e:
        _build(what, owner, {option: "no-such-choice"})
    assert all(repr(c) in str(e.value) for c in spec.kind()[1])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_every_option_has_help_and_its_default_fits_the_declaration(case):
    _, owner, _, spec = case
    assert spec.doc, f"{owner}.{spec.name}: describe it in the class's numpydoc Parameters"
    spec.check(spec.default, owner=owner)
    spec.kind()  # has a command-line form


@pytest.mark.parametrize("name", learner_names())
def test_options_read_back_what_the_learner_was_built_with(name):
    learner = build_learner(name, {})
    assert list(learner.options()) == list(option_specs(type(learner)))
    again = type(learner)(**learner.options())
    assert again.options() == learner.options()
    warm = learner.warmup()
    assert list(warm.options()) == list(option_specs(type(warm)))


def test_dividemix_warmup_options_leave_out_the_training_options():
    # runs that differ only in DivideMix's training options share one selection warm-up
    a = build_learner("DivideMix", {"lambda_u": 1.0, "T": 0.3}).warmup()
    b = build_learner("DivideMix", {}).warmup()
    assert a.options() == b.options() == {"confidence_penalty": False}


def test_aliases_and_unknown_options():
    sop = option_specs(get_learner("SOP"))
    assert sop["ratio_consistency"].flags == ("-rc", "--ratio-consistency")
    assert sop["ratio_balance"].flags == ("-rb", "--ratio-balance")
    rc = r"^SOP: ratio_consistency .*\(-rc/--ratio-consistency\)$"
    with pytest.raises(DeepCoreError, match=rc):
        get_learner("SOP")(ratio_consistency=-1.0)
    with pytest.raises(DeepCoreError, match="^--lambda-u not used by robust learner SOP$"):
        build_learner("SOP", {"lambda_u": 1.0})
    with pytest.raises(DeepCoreError, match="^EL2N does not take option.s. tua; its options: "):
        check_options(get_method("EL2N"), {"tua": 1})
    with pytest.raises(TypeError, match="Aliases"):
        Aliases("rc")


def test_direct_construction_is_checked_too():
    with pytest.raises(DeepCoreError, match=r"^DUAL: window must be in \[2, inf\), got 1"):
        get_method("DUAL")(window=1)
    assert get_method("DUAL")(window=None).window is None  # None where the type allows it


def test_a_lazy_module_puts_the_module_in_its_place_on_first_use():
    # the learners' modules import torch this way: --help reads their declarations
    # without torch, and a training step reads torch.x directly once it is loaded
    namespace: dict[str, Any] = {}
    namespace["json"] = LazyModule("json", namespace)
    assert namespace["json"].dumps([1]) == "[1]"
    assert namespace["json"] is json


# ---------------------------------------------------------------------------------------
# deepcore-run: learner flags come from the declarations


class Toy(Learner):
    """A learner registered only by this test.

    Parameters
    ----------
    toy_rate : float, default=0.5
        How fast the toy learns.
    toy_mode : {"a", "b"}, default="a"
        Which toy.
    """

    name = "Toy"

    def __init__(
        self,
        *,
        toy_rate: Annotated[float, Interval(0, 1), Aliases("-tr")] = 0.5,
        toy_mode: Literal["a", "b"] = "a",
    ) -> None:
        self.toy_rate = float(toy_rate)
        self.toy_mode = toy_mode

    def setup(self, ctx): ...

    def train_epoch(self, ctx, epoch):
        return {}

    def networks(self):
        return []


@pytest.fixture()
def toy_registered(monkeypatch):
    fresh = Registry("robust learner", {**dict(learner_base.LEARNERS.items()), "Toy": Toy})
    monkeypatch.setattr(learner_base, "LEARNERS", fresh)


def test_a_registered_learner_gets_its_flags_without_editing_the_cli(toy_registered):
    parser = run_cli.build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"-tr", "--toy-rate", "--toy-mode"} <= flags
    ns = parser.parse_args(["--robust-learner", "Toy", "-tr", "0.25", "--toy-mode", "b"])
    cfg = run_cli.config_from_args(ns)
    assert cfg.learner_options == {"toy_rate": 0.25, "toy_mode": "b"}
    learner = build_learner(cfg.robust_learner, cfg.learner_options)
    assert learner.options() == {"toy_rate": 0.25, "toy_mode": "b"}
    with pytest.raises(DeepCoreError, match="--toy-mode: invalid choice 'c' .choose from a, b"):
        parser.parse_args(["--toy-mode", "c"])
    with pytest.raises(DeepCoreError, match=r"^Toy: toy_rate must be in \[0, 1\], got 2.0 \("):
        build_learner("Toy", {"toy_rate": 2.0})
    # a learner flag the chosen learner does not take is an error
    ns = parser.parse_args(["--robust-learner", "SOP", "--toy-rate", "0.1"])
    with pytest.raises(DeepCoreError, match="^--toy-rate not used by robust learner SOP$"):
        cfg = run_cli.config_from_args(ns)
        build_learner(cfg.robust_learner, cfg.learner_options)
    help_text = parser.format_help()
    assert "Toy: How fast the toy learns" in help_text


def test_every_reference_learner_flag_keeps_its_spelling():
    parser = run_cli.build_parser()
    by_flag = {s: a.dest for a in parser._actions for s in a.option_strings}
    expected = {
        "-rc": "ratio_consistency", "--ratio-consistency": "ratio_consistency",
        "-rb": "ratio_balance", "--ratio-balance": "ratio_balance",
        "--lr-u": "lr_u", "--lr-v": "lr_v", "--lambda-u": "lambda_u",
        "--p-threshold": "p_threshold", "--T": "T", "--alpha": "alpha",
        "--warmup-epochs": "warmup_epochs", "--reference-rampup": "reference_rampup",
        "--confidence-penalty": "confidence_penalty",
    }  # fmt: skip
    assert {f: by_flag.get(f) for f in expected} == expected
    ns = parser.parse_args(["-rc", "0.9", "-rb", "0.1", "--reference-rampup", "True"])
    assert (ns.ratio_consistency, ns.ratio_balance, ns.reference_rampup) == (0.9, 0.1, True)


def test_flag_help_is_read_from_every_declaring_class():
    """A shared flag's help carries each class's own sentence (nothing hand-written)."""
    from deep_core.cli.method_args import flag_specs
    from deep_core.methods.base import METHODS

    specs = flag_specs(METHODS.items())
    for spec in specs.values():
        text = spec.help()
        for owner, doc in spec.docs.items():
            assert doc in text, f"--{spec.name}: {owner}'s sentence missing from its help"
    balance = specs["balance"]
    groups = {}
    for owner, doc in balance.docs.items():
        groups.setdefault(doc, []).append(owner)
    shared = max(groups, key=lambda d: len(groups[d]))
    assert balance.help().startswith(shared + "; ")  # the sentence most methods share first
    assert "Prune4Rel: " + balance.docs["Prune4Rel"] in balance.help()


@pytest.mark.parametrize(
    "text, sentence",
    [
        ("After K epochs (0: as Paul et al. do). More.", "After K epochs (0: as Paul et al. do)"),
        ("Weight (DIH's gamma; chosen here). More", "Weight (DIH's gamma; chosen here)"),
        ("Uses e.g. EL2N; then more", "Uses e.g. EL2N"),
        ("Version 1.5 of it. More", "Version 1.5 of it"),
        ("No full stop", "No full stop"),
    ],
)
def test_an_options_help_is_its_first_whole_sentence(text, sentence):
    from deep_core.options import _first_sentence

    assert _first_sentence(text) == sentence
