"""Synthetic label noise: exact rates, class maps, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.datasets.noise import (
    CIFAR10_ASYM,
    make_noisy_labels,
    superclass_map,
)
from deep_core.errors import DeepCoreError

CLEAN = np.repeat(np.arange(10), 500)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_sym_flips_exactly_rate_and_never_to_the_true_class(rate):
    noisy = make_noisy_labels(CLEAN, noise_type="sym", rate=rate, num_classes=10, seed=3)
    flipped = noisy != CLEAN
    assert flipped.sum() == round(rate * CLEAN.size)
    # uniform over the other classes: every (true, noisy) pair with true != noisy occurs
    if rate >= 0.4:
        pairs = set(zip(CLEAN[flipped], noisy[flipped]))
        assert len(pairs) == 90


def test_sym_all_may_keep_the_true_label():
    noisy = make_noisy_labels(CLEAN, noise_type="sym-all", rate=0.5, num_classes=10, seed=0)
    realised = (noisy != CLEAN).mean()
    assert 0.40 < realised < 0.50  # about 0.5 * 9 / 10


def test_same_seed_same_labels_other_seed_differs():
    a = make_noisy_labels(CLEAN, noise_type="sym", rate=0.3, num_classes=10, seed=7)
    b = make_noisy_labels(CLEAN, noise_type="sym", rate=0.3, num_classes=10, seed=7)
    c = make_noisy_labels(CLEAN, noise_type="sym", rate=0.3, num_classes=10, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_asym_follows_the_class_map_with_exact_per_class_rate():
    noisy = make_noisy_labels(
        CLEAN, noise_type="asym", rate=0.4, num_classes=10, seed=0, class_map=CIFAR10_ASYM
    )
    for src in range(10):
        members = CLEAN == src
        flipped = noisy[members] != src
        if src in CIFAR10_ASYM:
            assert flipped.sum() == 200
            assert set(noisy[members][flipped]) == {CIFAR10_ASYM[src]}
        else:
            assert flipped.sum() == 0


def test_cifar100_asym_stays_within_the_true_superclass():
    rng = np.random.default_rng(0)
    fine = np.arange(100)
    coarse = rng.permutation(np.repeat(np.arange(20), 5))  # superclasses not contiguous in id
    mapping = superclass_map(coarse, fine)
    assert sorted(mapping) == list(range(100))
    for f, t in mapping.items():
        assert t != f and coarse[t] == coarse[f]
    # a permutation inside every superclass: each class is hit once
    assert sorted(mapping.values()) == list(range(100))


def test_idn_rate_is_close_and_deterministic():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((CLEAN.size, 48)).astype(np.float32)
    a = make_noisy_labels(CLEAN, noise_type="idn", rate=0.3, num_classes=10, seed=2, images=images)
    b = make_noisy_labels(CLEAN, noise_type="idn", rate=0.3, num_classes=10, seed=2, images=images)
    assert np.array_equal(a, b)
    assert abs((a != CLEAN).mean() - 0.3) < 0.03


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(noise_type="sym", rate=1.0), "noise rate"),
        (dict(noise_type="sym", rate=-0.1), "noise rate"),
        (dict(noise_type="bogus", rate=0.1), "unknown synthetic noise type 'bogus'"),
        (dict(noise_type="asym", rate=0.1), "class map"),
        (dict(noise_type="idn", rate=0.1), "images"),
    ],
)
def test_bad_noise_settings_are_clear_errors(kwargs, match):
    with pytest.raises(DeepCoreError, match=match):
        make_noisy_labels(CLEAN, num_classes=10, seed=0, **kwargs)


# ----------------------------------------------------------------------------------
# CIFAR-N label files given by the user (official .pt beside the batches)
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"clean_label": np.zeros(49_999, np.int64), "worse_label": np.zeros(49_999, np.int64)},
            "has shape (49999,), expected (50000,)",
        ),
        ({"worse_label": np.zeros(50_000, np.int64)}, "has no 'clean_label' array"),
    ],
    ids=["wrong length", "no clean labels"],
)
def test_bad_cifar_n_label_file_is_a_clear_error(tmp_path, arrays, message):
    import torch

    from deep_core.datasets.cifar_n import load_human_labels

    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp_path / "CIFAR-10_human.pt")
    with pytest.raises(DeepCoreError, match="CIFAR-N") as e:
        load_human_labels("CIFAR10", search=[tmp_path])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_cifar_n_file_that_is_not_a_tensor_dict_is_rejected(tmp_path):
    from deep_core.datasets.cifar_n import load_human_labels

    (tmp_path / "CIFAR-10_human.pt").write_bytes(b"not a torch file")
    with pytest.raises(DeepCoreError, match="cannot read CIFAR-N labels"):
        load_human_labels("CIFAR10", search=[tmp_path])
