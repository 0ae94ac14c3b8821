"""Selection methods: registry conformance, direction under injected noise, hand-computed scores.

The conformance tests iterate the registry, so every registered method (including ones
added by other modules) must pass them with its default options on synthetic signals
that hold every canonical signal.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deep_core.budget import budget_size, class_budgets, rank
from deep_core.errors import DeepCoreError
from deep_core.io import _json_default
from deep_core.methods import build_method, get_method, list_methods
from deep_core.methods.base import option_names
from deep_core.signals import SIGNAL_NAMES, Signals
from deep_core.testing import synthetic_signals as make_signals

# ---------------------------------------------------------------------------------------
# synthetic signals with known injected noise


def noise_rate(signals: Signals, indices: np.ndarray) -> float:
    return float((signals.labels[indices] != signals.clean_labels[indices]).mean())


def run(name: str, signals: Signals, fraction: float, seed: int = 0, **options):
    method, unused = build_method(name, options)
    assert not unused
    return method.select(signals, fraction, seed=seed)


# the static methods; dynamic ones (a new subset each epoch) are tested in test_dynamic.py
METHODS = sorted(n for n in list_methods() if not get_method(n).dynamic)


@pytest.fixture(scope="module")
def sig() -> Signals:
    return make_signals(203, 5)


# ---------------------------------------------------------------------------------------
# registry


def test_registry_has_the_baselines():
    for name in (
        "Uniform",
        "SmallLoss",
        "Uncertainty",
        "Forgetting",
        "GraNd",
        "EL2N",
        "PredSum",
        "Moderate",
        "CCS",
    ):
        assert name in list_methods()
        assert list_methods()[name]  # a one-line summary


def test_unknown_name_lists_registered_names():
    with pytest.raises(DeepCoreError) as e:
        get_method("NoSuchMethod")
    for name in list_methods():
        assert name in str(e.value)
    with pytest.raises(DeepCoreError):
        get_method("smallloss")  # case-sensitive, like the reference


def test_build_method_returns_unused_options():
    method, unused = build_method("SmallLoss", {"balance": True, "tau": 0.9}, strict=False)
    assert method.balance is True
    assert unused == {"tau": 0.9}
    with pytest.raises(DeepCoreError, match="tau"):  # strict by default
        build_method("SmallLoss", {"balance": True, "tau": 0.9})


@pytest.mark.parametrize(
    "name, options",
    [
        ("Uncertainty", {"uncertainty": "Confidence"}),
        ("GraNd", {"repeat": 0}),
        ("EL2N", {"ensemble": 0}),
        ("PredSum", {"keep": "middle"}),
        ("CCS", {"ccs_beta": 1.0}),
        ("CCS", {"ccs_score": "AUM"}),
        ("CCS", {"num_bins": 0}),
        ("SmallLoss", {"window_start": 1.0}),
    ],
)
def test_bad_options_fail_when_built(name, options):
    with pytest.raises(DeepCoreError):
        build_method(name, options)


# ---------------------------------------------------------------------------------------
# conformance: every registered method


@pytest.mark.parametrize("name", METHODS)
def test_contract(name, sig):
    method = get_method(name)()
    assert method.summary and "\n" not in method.summary
    assert set(method.options()) == set(option_names(type(method)))
    assert isinstance(method.ensemble_size, int) and method.ensemble_size >= 1
    required = set(method.required_signals())
    assert required <= set(SIGNAL_NAMES) - {"clean_labels"}, "unknown or forbidden signal"
    for fraction in (0.1, 0.37, 0.5, 0.999, 1.0):
        sub = method.select(sig, fraction, seed=3)
        k = round(fraction * len(sig))
        assert sub.indices.dtype == np.int64
        assert len(sub) == k
        assert np.all(np.diff(sub.indices) > 0)
        assert sub.indices.min() >= 0 and sub.indices.max() < len(sig)
        assert sub.scores.shape == (len(sig),) and sub.scores.dtype == np.float64
        assert np.isfinite(sub.scores).all()
        json.dumps(sub.info, default=_json_default)
    assert np.array_equal(method.select(sig, 1.0).indices, np.arange(len(sig)))


@pytest.mark.parametrize("name", METHODS)
def test_runs_on_its_required_signals_only(name, sig):
    method = get_method(name)()
    keep = set(method.required_signals()) | {"labels"}
    only = Signals({k: v for k, v in sig.as_dict().items() if k in keep}, num_classes=5)
    full = method.select(sig, 0.4, seed=1)
    part = method.select(only, 0.4, seed=1)
    assert np.array_equal(full.indices, part.indices)


@pytest.mark.parametrize("name", METHODS)
def test_missing_signal_is_a_clear_error(name, sig):
    method = get_method(name)()
    required = sorted(method.required_signals())
    if not required:
        pytest.skip("needs no signal")
    drop = required[0]
    arrays = {k: v for k, v in sig.as_dict().items() if k != drop}
    with pytest.raises(DeepCoreError, match=drop):
        method.select(Signals(arrays, num_classes=5), 0.5)


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_for_a_seed(name, sig):
    a = get_method(name)().select(sig, 0.3, seed=7)
    b = get_method(name)().select(sig, 0.3, seed=7)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.scores, b.scores)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("fraction", [0.2, 0.55])
def test_balanced_budgets(name, fraction):
    if "balance" not in option_names(get_method(name)):
        pytest.skip(f"{name} has no balance option")
    labels = np.repeat(np.arange(5), [60, 40, 10, 30, 3])  # imbalanced, small classes
    s = make_signals(labels.size, 5, labels=labels, noise=0.0, seed=2)
    sub = run(name, s, fraction, balance=True)
    k = budget_size(labels.size, fraction)
    counts = np.bincount(s.labels[sub.indices], minlength=5)
    if get_method(name).balance_rule == "shared":
        assert np.array_equal(counts, class_budgets(s.labels, k, 5))
    else:  # the method's own, documented rule (Prune4Rel: the reference's round-robin)
        assert counts.sum() == k and np.all(counts <= np.bincount(labels, minlength=5))


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("balance", [False, True])
def test_empty_class(name, balance):
    labels = np.array([0, 1, 3, 4] * 30)  # class 2 of 5 has no sample
    s = make_signals(labels.size, 5, labels=labels, noise=0.0, seed=4)
    assert 2 not in s.labels
    opts = {"balance": True} if balance else {}
    if balance and "balance" not in option_names(get_method(name)):
        pytest.skip(f"{name} has no balance option")
    sub = run(name, s, 0.3, **opts)
    assert len(sub) == budget_size(labels.size, 0.3)
    if balance:
        counts = np.bincount(s.labels[sub.indices], minlength=5)
        assert counts[2] == 0 and np.array_equal(counts, class_budgets(s.labels, len(sub), 5))


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("balance", [False, True])
def test_fewer_samples_than_classes(name, balance):
    s = make_signals(4, 10, labels=np.array([7, 2, 2, 9]), noise=0.0, seed=5)
    if balance and "balance" not in option_names(get_method(name)):
        pytest.skip(f"{name} has no balance option")
    opts = {"balance": True} if balance else {}
    for fraction in (0.25, 0.5, 1.0):
        sub = run(name, s, fraction, **opts)
        assert len(sub) == round(fraction * 4)
        assert np.all(np.diff(sub.indices) > 0)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fraction(name, fraction, sig):
    with pytest.raises(DeepCoreError):
        get_method(name)().select(sig, fraction)


# ---------------------------------------------------------------------------------------
# direction on synthetic data with injected noise


@pytest.fixture(scope="module")
def noisy() -> Signals:
    return make_signals(1500, 10, noise=0.4, seed=11)


def _uniform_rate(s: Signals, fraction: float) -> float:
    rates = [noise_rate(s, run("Uniform", s, fraction, seed=k).indices) for k in range(5)]
    return float(np.mean(rates))


def test_direction_small_loss_keeps_clean(noisy):
    base = _uniform_rate(noisy, 0.5)
    assert 0.3 < base < 0.5
    assert noise_rate(noisy, run("SmallLoss", noisy, 0.5).indices) < base / 3


@pytest.mark.parametrize("name", ["GraNd", "EL2N", "PredSum"])
def test_direction_hard_scores_keep_noisy(name, noisy):
    base = _uniform_rate(noisy, 0.3)
    assert noise_rate(noisy, run(name, noisy, 0.3).indices) > base + 0.3


def test_direction_pred_sum_easy_keeps_clean(noisy):
    base = _uniform_rate(noisy, 0.3)
    sub = run("PredSum", noisy, 0.3, keep="easy", ensemble=3)
    assert noise_rate(noisy, sub.indices) < base / 3


@pytest.mark.parametrize("kind", ["LeastConfidence", "Margin", "Entropy"])
def test_direction_uncertainty_keeps_the_flattest(kind, noisy):
    sub = run("Uncertainty", noisy, 0.2, uncertainty=kind)
    top = noisy.probs.max(axis=1)
    kept = sub.mask()
    assert top[kept].max() <= np.quantile(top[~kept], 0.6)
    assert top[kept].mean() < top[~kept].mean() - 0.2


def test_direction_forgetting_keeps_flipping_and_never_learned():
    n, e = 60, 8
    correct = np.ones((n, e), dtype=bool)
    correct[:, 0] = False  # everyone learns at epoch 1, never forgets ...
    flip = np.arange(0, 10)
    correct[flip] = np.arange(e) % 2 == 0  # ... except these, which flip every epoch
    never = np.arange(10, 15)
    correct[never] = False
    s = Signals({"labels": np.zeros(n, dtype=np.int64), "correct": correct}, num_classes=2)
    sub = run("Forgetting", s, 15 / n)
    assert np.array_equal(sub.indices, np.arange(15))
    assert sub.scores[never].min() > sub.scores[flip].max() > 0


def test_direction_moderate_keeps_the_middle_band(noisy):
    from deep_core.methods.moderate import median_distances

    sub = run("Moderate", noisy, 0.4)
    dist = median_distances(noisy.features, noisy.labels, 10)
    order = np.argsort(dist, kind="stable")
    k = len(sub)
    low = (len(dist) - k) // 2
    assert set(sub.indices) == set(order[low : low + k])


def test_uniform_seeds_differ_and_are_nested(sig):
    a = run("Uniform", sig, 0.3, seed=0).indices
    b = run("Uniform", sig, 0.3, seed=1).indices
    assert not np.array_equal(a, b)
    small = run("Uniform", sig, 0.1, seed=0).indices
    assert set(small) <= set(a)


@pytest.mark.parametrize("name", ["SmallLoss", "Uncertainty", "Forgetting", "GraNd", "EL2N"])
def test_window_start_skips_the_top(name, sig):
    sub = run(name, sig, 0.2, window_start=0.5)
    order = rank(sub.scores, seed=0)  # ties (Forgetting's counts) in the seed's order
    n = len(sig)
    start = round(0.5 * n)
    assert np.array_equal(sub.indices, np.sort(order[start : start + len(sub)]))


# ---------------------------------------------------------------------------------------
# scores against hand computations on tiny examples


def _tiny(**arrays) -> Signals:
    return Signals(arrays)


def test_scores_uniform_match_the_reference_draw():
    s = _tiny(labels=np.zeros(50, dtype=np.int64))
    for seed in (0, 1, 123):
        sub = run("Uniform", s, 0.3, seed=seed)
        ref = np.random.RandomState(seed).choice(50, round(50 * 0.3), replace=False)
        assert np.array_equal(sub.indices, np.sort(ref))


def test_scores_small_loss():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5], [1.0, 0.0]])
    s = _tiny(labels=np.array([0, 0, 1, 1]), probs=probs)
    sub = run("SmallLoss", s, 0.5)
    expected = np.log([0.9, 0.4, 0.5, np.finfo(float).tiny])
    assert np.allclose(sub.scores, expected)
    assert list(sub.indices) == [0, 2]  # losses 0.105, 0.916, 0.693, huge


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("LeastConfidence", [0.3, 0.5, 0.0]),
        ("Margin", [-0.5, 0.0, -1.0]),
        (
            "Entropy",
            [
                -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)),
                -2 * 0.5 * math.log(0.5),
                0.0,
            ],
        ),
    ],
)
def test_scores_uncertainty(kind, expected):
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    s = _tiny(labels=np.array([0, 1, 2]), probs=probs)
    sub = run("Uncertainty", s, 1 / 3, uncertainty=kind)
    assert np.allclose(sub.scores, expected)
    assert list(sub.indices) == [int(np.argmax(expected))]


def test_scores_forgetting():
    correct = np.array(
        [
            [1, 0, 1, 0],  # 2 events
            [0, 0, 0, 0],  # never learned -> E = 4
            [0, 1, 1, 1],  # learned, never forgotten -> 0
            [1, 1, 0, 0],  # 1 event
            [0, 1, 0, 1],  # 1 event (the start is not an event)
        ],
        dtype=bool,
    )
    s = _tiny(labels=np.zeros(5, dtype=np.int64), correct=correct)
    sub = run("Forgetting", s, 0.6)
    assert list(sub.scores) == [2, 4, 0, 1, 1]
    assert list(sub.indices) == [0, 1, 3]  # tie 3 vs 4 -> lower index
    assert sub.info["never_learned"] == 1 and sub.info["unforgettable"] == 1


def test_scores_grand():
    g = np.array([[1.0, 2.0, 3.0], [3.0, 3.0, 1.0], [100.0, 0.0, 0.0]])
    s = _tiny(labels=np.zeros(3, dtype=np.int64), grad_norms=g)
    assert list(run("GraNd", s, 1 / 3).scores) == [1.0, 2.0, 3.0]
    sub = run("GraNd", s, 1 / 3, repeat=2)
    assert list(sub.scores) == [2.0, 2.5, 2.0] and list(sub.indices) == [1]
    assert list(run("GraNd", s, 1 / 3, repeat=3).indices) == [0]
    with pytest.raises(DeepCoreError, match="repeat"):
        run("GraNd", s, 0.5, repeat=4)
    assert get_method("GraNd")(repeat=5).ensemble_size == 5


def test_scores_el2n():
    p = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    q = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    labels = np.array([0, 1])
    s = _tiny(labels=labels, probs=p, member_probs=np.stack([p, q]))
    one = run("EL2N", s, 0.5)
    assert np.allclose(one.scores, [math.sqrt(0.14), math.sqrt(1.14)])
    assert list(one.indices) == [1]
    two = run("EL2N", s, 0.5, ensemble=2)
    expected = [(math.sqrt(0.14) + math.sqrt(2)) / 2, (math.sqrt(1.14) + math.sqrt(2)) / 2]
    assert np.allclose(two.scores, expected)
    assert get_method("EL2N")(ensemble=2).required_signals() == {"member_probs"}
    with pytest.raises(DeepCoreError, match="ensemble"):
        run("EL2N", s, 0.5, ensemble=3)


def test_scores_pred_sum():
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.4, 0.6]])
    c = np.array([[0.1, 0.9], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
    s = _tiny(labels=np.array([0, 0, 0, 1]), probs=a, member_probs=np.stack([a, b, c]))
    hard = run("PredSum", s, 0.5, ensemble=3)
    counts = np.array([2, 1, 0, 1])
    assert np.array_equal(hard.scores, -counts)
    # lowest counts: 2, then one of the tie 1 vs 3, chosen by the seed's permutation
    kept = [set(run("PredSum", s, 0.5, seed=k, ensemble=3).indices.tolist()) for k in range(20)]
    tied = set().union(*kept) - {2}
    assert 2 in hard.indices and len(set(hard.indices) & {1, 3}) == 1 and tied == {1, 3}
    easy = run("PredSum", s, 0.25, ensemble=3, keep="easy")
    assert np.array_equal(easy.scores, counts) and list(easy.indices) == [0]
    assert hard.info["count_histogram"] == [1, 2, 1, 0]
    one = run("PredSum", s, 0.5)
    assert np.array_equal(one.scores, -np.array([1, 1, 0, 0]))


def test_scores_moderate():
    # class 0: 1-d features [0, 1, 2, 10, 3] -> median 2 -> distances [2, 1, 0, 8, 1]
    # class 1: [5, 5] -> median 5 -> distances [0, 0]
    f = np.array([[0.0], [1.0], [2.0], [10.0], [3.0], [5.0], [5.0]])
    s = _tiny(labels=np.array([0, 0, 0, 0, 0, 1, 1]), features=f)
    from deep_core.methods.moderate import median_distances

    assert np.allclose(median_distances(f, s.labels, 2), [2, 1, 0, 8, 1, 0, 0])
    # ascending distances 0, 0, 0, 1, 1, 2, 8 (ties in the seed's order); middle 3 of 7:
    # one of the zeros {2, 5, 6} and both ones {1, 4}
    sub = run("Moderate", s, 3 / 7)
    assert {1, 4} <= set(sub.indices) and len(set(sub.indices) & {2, 5, 6}) == 1
    assert sorted(sub.scores[[1, 4]]) == [-5.0, 0.0]  # ranks 3 (the middle) and 4
    # per class: class 0 ranks 2, 1, 4, 0, 3 -> middle 2 of 5 = {1, 4} (tie edge -> nearer)
    bal = run("Moderate", s, 4 / 7, balance=True)
    assert list(bal.indices) == [1, 4, 5, 6]
    even = run("Moderate", _tiny(labels=np.zeros(4, dtype=np.int64), features=f[:4]), 0.25)
    # [0, 1, 2, 10]: median 1.5, distances [1.5, .5, .5, 8.5]; ranks 1 and 2 are equally
    # central -> rank 1, the one nearer the median feature: a distance-0.5 sample (1 or 2)
    assert list(even.indices) in ([1], [2])
