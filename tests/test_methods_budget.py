"""deep_core.budget: budget size, class budgets (water-filling), ranking, window selection."""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.budget import budget_size, check_fraction, class_budgets, rank, take_top
from deep_core.errors import DeepCoreError


@pytest.mark.parametrize(
    "n, fraction, k",
    [(10, 0.25, 2), (10, 0.35, 4), (5, 0.5, 2), (7, 0.5, 4), (3, 1.0, 3), (1000, 0.001, 1)],
)
def test_budget_size_is_python_round(n, fraction, k):
    assert budget_size(n, fraction) == k == round(fraction * n)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.0001, float("nan"), float("inf")])
def test_check_fraction_rejects(fraction):
    with pytest.raises(DeepCoreError, match="fraction"):
        check_fraction(fraction)


@pytest.mark.parametrize(
    "sizes, total, expected",
    [
        ([2, 10, 10], 12, [2, 5, 5]),  # a small class is taken whole, the rest re-shared
        ([1, 1, 10], 9, [1, 1, 7]),
        ([10, 10, 10], 10, [4, 3, 3]),  # remainder: one each to the lowest class ids
        ([5, 10, 10], 10, [4, 3, 3]),  # as a round-robin from class 0 hands it out
        ([3, 0, 3], 4, [2, 0, 2]),  # an empty class gets nothing
        ([4, 4], 0, [0, 0]),
        ([4, 4], 8, [4, 4]),
        ([1, 1, 1, 1], 2, [1, 1, 0, 0]),  # fewer samples than classes
    ],
)
def test_class_budgets(sizes, total, expected):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    budgets = class_budgets(np.random.default_rng(0).permutation(labels), total, len(sizes))
    assert budgets.dtype == np.int64
    assert budgets.tolist() == expected


def test_class_budgets_properties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        c = int(rng.integers(1, 12))
        labels = rng.integers(0, c, int(rng.integers(0, 80)))
        sizes = np.bincount(labels, minlength=c)
        total = int(rng.integers(0, labels.size + 1))
        b = class_budgets(labels, total, c)
        assert b.sum() == total
        assert np.all(b <= sizes) and np.all(b >= 0)
        # water-filling: classes below their size share one level (+1 for the remainder),
        # and a class taken whole is at most one above that level
        uncapped = b < sizes
        if uncapped.any():
            assert b[uncapped].max() - b[uncapped].min() <= 1
            assert b[~uncapped].max(initial=0) <= b[uncapped].min() + 1
        assert np.array_equal(b, class_budgets(labels, total, c))  # deterministic


def test_class_budgets_too_many():
    with pytest.raises(DeepCoreError, match="exceeds"):
        class_budgets(np.array([0, 1, 1]), 4, 2)


def test_rank_ties_go_to_the_lower_index():
    assert rank(np.array([1.0, 3.0, 3.0, 2.0, 3.0])).tolist() == [1, 2, 4, 3, 0]


def test_take_top_global_and_ties():
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9])
    assert take_top(scores, 2).tolist() == [1, 2]
    assert take_top(scores, 0).tolist() == []
    assert take_top(scores, 5).tolist() == [0, 1, 2, 3, 4]
    assert take_top(scores, 2).dtype == np.int64


def test_take_top_window():
    scores = -np.arange(10.0)  # ranking is 0, 1, ..., 9
    assert take_top(scores, 3, start=0.5).tolist() == [5, 6, 7]
    assert take_top(scores, 3, start=0.9).tolist() == [7, 8, 9]  # clipped at the end
    assert take_top(scores, 10, start=0.5).tolist() == list(range(10))


def test_take_top_balanced_with_window():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2])
    scores = -np.arange(11.0)
    # budgets for 5 of (4, 6, 1): 2, 2, 1
    assert take_top(scores, 5, labels=labels, balance=True).tolist() == [0, 1, 4, 5, 10]
    out = take_top(scores, 5, labels=labels, balance=True, start=0.5)
    assert out.tolist() == [2, 3, 7, 8, 10]  # class 0 skips 2, class 1 skips 3, class 2 whole


def test_take_top_balanced_empty_class_and_num_classes():
    labels = np.array([0, 0, 2, 2])
    out = take_top(np.array([1.0, 2.0, 3.0, 4.0]), 2, labels=labels, balance=True, num_classes=4)
    assert out.tolist() == [1, 3]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scores": np.array([1.0, np.nan]), "n_select": 1}, "NaN"),
        ({"scores": np.ones(3), "n_select": 4}, "select"),
        ({"scores": np.ones(3), "n_select": -1}, "select"),
        ({"scores": np.ones(3), "n_select": 1, "start": 1.0}, "window"),
        ({"scores": np.ones(3), "n_select": 1, "start": -0.1}, "window"),
        ({"scores": np.ones(3), "n_select": 1, "balance": True}, "labels"),
    ],
)
def test_take_top_errors(kwargs, match):
    with pytest.raises(DeepCoreError, match=match):
        take_top(**kwargs)


def test_seeded_rank_breaks_ties_by_the_seed_only():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    orders = {tuple(rank(scores, seed=k).tolist()) for k in range(30)}
    assert all(o[3:] == (3, 0) and set(o[:3]) == {1, 2, 4} for o in orders)
    assert len(orders) == 6  # every order of the three tied samples occurs
    assert np.array_equal(rank(scores, seed=5), rank(scores, seed=5))
    distinct = np.random.default_rng(0).random(1000)
    assert np.array_equal(rank(distinct, seed=7), rank(distinct))  # no ties: a plain sort


def test_seeded_ties_in_take_top_and_per_group():
    scores = np.zeros(100)
    a = take_top(scores, 10, seed=1)
    assert np.array_equal(a, take_top(scores, 10, seed=1))
    assert not np.array_equal(a, take_top(scores, 10, seed=2))
    labels = np.repeat([0, 1], 50)
    b = take_top(scores, 10, labels=labels, balance=True, seed=1)
    assert np.bincount(labels[b]).tolist() == [5, 5] and b.max() > 4


def test_pred_sum_ties_keep_every_class_on_class_sorted_data():
    # PredSum's score takes E + 1 values; on class-sorted data with one member, 90% of
    # every class ties at count 1 and the budget cuts through the tie. Lowest index first
    # kept none of class 9; the seeded permutation keeps every class in proportion.
    from deep_core.methods import build_method
    from deep_core.signals import Signals

    n, c = 5000, 10
    labels = np.repeat(np.arange(c), n // c)
    rng = np.random.default_rng(0)
    agree = rng.random(n) < 0.9
    pred = np.where(agree, labels, (labels + 1) % c)
    probs = np.full((n, c), 0.01, dtype=np.float32)
    probs[np.arange(n), pred] = 0.91
    s = Signals({"labels": labels, "probs": probs})
    method, _ = build_method("PredSum", {"keep": "easy"})
    sub = method.select(s, 0.5, seed=3)
    counts = np.bincount(labels[sub.indices], minlength=c)
    assert counts.sum() == 2500
    assert counts.min() > 200 and counts.max() < 300  # ~250 of every class
    assert np.array_equal(sub.indices, method.select(s, 0.5, seed=3).indices)
    assert not np.array_equal(sub.indices, method.select(s, 0.5, seed=4).indices)
