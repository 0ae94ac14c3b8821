"""The one registry type behind methods, learners, networks and data sets."""

from __future__ import annotations

import importlib

import pytest

from deep_core.errors import DeepCoreError
from deep_core.registry import Registry


def first() -> str:
    return "first"


def second() -> str:
    return "second"


def test_register_get_names_items_contains():
    reg: Registry[object] = Registry("widget", {"b": second})
    assert reg.register("a", first) is first
    assert reg.get("a") is first and reg.get("b") is second
    assert reg.names() == ["a", "b"]
    assert reg.items() == [("a", first), ("b", second)]
    assert "a" in reg and "c" not in reg and 3 not in reg


def test_decorator_form_returns_the_object():
    reg: Registry[type] = Registry("widget")

    @reg.register("Thing")
    class Thing:
        pass

    assert reg.get("Thing") is Thing


def test_unknown_name_is_a_one_line_user_error_listing_the_names():
    reg = Registry("widget", {"beta": second, "alpha": first})
    with pytest.raises(DeepCoreError) as err:
        reg.get("gamma")
    assert str(err.value) == "unknown widget 'gamma'; choose from: alpha, beta"


def test_same_object_twice_is_allowed_another_object_is_a_programming_error():
    reg = Registry("widget", {"a": first})
    reg.register("a", first)
    with pytest.raises(ValueError, match="widget 'a' is already registered") as err:
        reg.register("a", second)
    assert not isinstance(err.value, DeepCoreError)
    message = str(err.value)
    assert f"{__name__}.first" in message and f"{__name__}.second" in message
    assert reg.get("a") is first  # the first registration stands


@pytest.mark.parametrize("name", ["", None])
def test_name_must_be_a_non_empty_string(name):
    with pytest.raises(ValueError, match="non-empty string"):
        Registry("widget").register(name, first)


# module, registry attribute, public list function, kind in the message
PROJECT_REGISTRIES = [
    ("deep_core.methods", "deep_core.methods.base", "METHODS", "list_methods", "selection method"),
    ("robust_learners", "robust_learners.base", "LEARNERS", "learner_names", "robust learner"),
    ("deep_core.nets", "deep_core.nets", "MODELS", "model_names", "model"),
    ("deep_core.datasets", "deep_core.datasets", "DATASETS", "dataset_names", "dataset"),
]


@pytest.mark.parametrize(
    ("package", "module", "attr", "lister", "kind"),
    PROJECT_REGISTRIES,
    ids=[r[2] for r in PROJECT_REGISTRIES],
)
def test_project_registries_share_the_type_and_its_unknown_name_error(
    package, module, attr, lister, kind
):
    importlib.import_module(package)  # registers everything the package ships
    reg = getattr(importlib.import_module(module), attr)
    assert isinstance(reg, Registry)
    assert reg.kind == kind
    names = reg.names()
    assert names and list(getattr(importlib.import_module(package), lister)()) == names
    with pytest.raises(DeepCoreError) as err:
        reg.get("NoSuchName")
    assert str(err.value) == f"unknown {kind} 'NoSuchName'; choose from: {', '.join(names)}"


def test_public_lookups_raise_the_registry_error():
    from deep_core.datasets import DataConfig, load_dataset
    from deep_core.methods import get_method
    from deep_core.nets import check_model_name
    from robust_learners import get_learner

    for call, kind in [
        (lambda: get_method("Nope"), "selection method"),
        (lambda: get_learner("Nope"), "robust learner"),
        (lambda: check_model_name("Nope"), "model"),
        (lambda: load_dataset(DataConfig(dataset="Nope")), "dataset"),
    ]:
        with pytest.raises(DeepCoreError, match=f"^unknown {kind} 'Nope'; choose from: "):
            call()


def test_registering_another_method_under_a_taken_name_fails():
    from deep_core.methods import SelectionMethod, get_method, register

    existing = get_method("SmallLoss")

    class SmallLoss(SelectionMethod):
        pass

    with pytest.raises(ValueError, match="selection method 'SmallLoss' is already registered"):
        register(SmallLoss)
    assert get_method("SmallLoss") is existing
