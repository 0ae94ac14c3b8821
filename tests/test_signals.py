"""Signals: every input check, access, slicing, and the .npz and run-directory readers."""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.errors import DeepCoreError
from deep_core.signals import Signals

N, C = 6, 3
LABELS = np.array([0, 1, 2, 0, 1, 2])


def _probs(n: int = N) -> np.ndarray:
    return np.full((n, C), 1.0 / C, dtype=np.float32)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"probs": _probs()}, "signals need 'labels'"),
        ({"labels": LABELS[:, None]}, "labels must be one-dimensional"),
        ({"labels": LABELS.astype(float)}, "labels must be integers"),
        ({"labels": LABELS, "probs": np.ones(N)}, "'probs' must have 2 dimensions"),
        ({"labels": LABELS, "features": np.ones((N - 1, 4))}, "'features' has 5 samples"),
        ({"labels": LABELS, "member_probs": np.ones((2, N + 1, C))}, "'member_probs' has 7"),
        ({"labels": LABELS, "grad_norms": np.ones(N + 2)}, "'grad_norms' has 8 samples"),
        ({"labels": LABELS, "my_score": np.ones(N - 2)}, "'my_score' has 4 rows"),
        ({"labels": LABELS, "losses": np.full((N, 2), np.nan)}, "'losses' contains NaN"),
        ({"labels": LABELS, "margins": np.full((N, 2), np.inf)}, "'margins' contains NaN"),
        ({"labels": np.array([0, 1, -1])}, "labels must lie in [0, 2)"),
        ({"labels": LABELS, "probs": np.full((N, 2), 0.5)}, "labels must lie in [0, 2)"),
    ],
)
def test_bad_input_is_one_line_error(arrays, message):
    with pytest.raises(DeepCoreError) as e:
        Signals(arrays)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_labels_beyond_num_classes():
    with pytest.raises(DeepCoreError, match=r"\[0, 2\)"):
        Signals({"labels": LABELS}, num_classes=2)


def test_non_finite_values_pass_when_the_check_is_off():
    s = Signals({"labels": LABELS, "losses": np.full((N, 2), np.nan)}, check_finite=False)
    assert np.isnan(s.losses).all()


def test_num_classes_is_inferred():
    assert Signals({"labels": LABELS}).num_classes == 3
    assert Signals({"labels": LABELS, "probs": np.full((N, 5), 0.2)}).num_classes == 5
    member = Signals({"labels": LABELS, "member_probs": np.full((2, N, 4), 0.25)})
    assert member.num_classes == 4
    assert Signals({"labels": np.zeros(0, dtype=np.int64)}).num_classes == 0
    assert Signals({"labels": LABELS}, num_classes=7).num_classes == 7


def test_dtypes_and_one_member_grad_norms():
    s = Signals({"labels": LABELS.astype(np.int8), "clean_labels": LABELS.astype(np.int16),
                 "grad_norms": np.arange(N, dtype=np.float32)})  # fmt: skip
    assert s.labels.dtype == np.int64 and s.clean_labels.dtype == np.int64
    assert s.grad_norms.shape == (1, N)


def test_access_require_and_subset():
    grads = np.arange(2 * N, dtype=float).reshape(2, N)
    s = Signals({"labels": LABELS, "probs": _probs(), "member_probs": np.full((2, N, C), 1.0 / C),
                 "grad_norms": grads, "extra": np.arange(N)})  # fmt: skip
    assert len(s) == N and "probs" in s and "features" not in s
    assert set(s.names) == {"labels", "probs", "member_probs", "grad_norms", "extra"}
    assert s.get("features") is None and s.as_dict()["extra"] is s.extra
    with pytest.raises(AttributeError, match="no signal 'features'"):
        s.features  # noqa: B018
    s.require(["labels", "probs"], who="X")
    with pytest.raises(DeepCoreError, match=r"X needs signals \['features'\]"):
        s.require(["probs", "features"], who="X")
    sub = s.subset(np.array([1, 4]))
    assert len(sub) == 2 and sub.num_classes == C
    assert sub.member_probs.shape == (2, 2, C)
    assert sub.grad_norms.tolist() == [[1.0, 4.0], [7.0, 10.0]]
    assert sub.extra.tolist() == [1, 4]


def test_from_npz(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, labels=LABELS, probs=_probs())
    s = Signals.from_npz(path)
    assert s.num_classes == C and s.probs.shape == (N, C)
    assert Signals.from_npz(path, num_classes=4).num_classes == 4
    with pytest.raises(DeepCoreError, match="signals file not found"):
        Signals.from_npz(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(DeepCoreError, match="cannot read signals file"):
        Signals.from_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", labels=LABELS, extra=np.array([{"a": 1}] * N, dtype=object))
    with pytest.raises(DeepCoreError, match="cannot read signals file"):
        Signals.from_npz(tmp_path / "obj.npz")


def test_from_run_errors(tmp_path):
    with pytest.raises(DeepCoreError, match="run directory not found"):
        Signals.from_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepCoreError, match="not a run directory"):
        Signals.from_run(tmp_path / "empty")


def test_written_synthetic_signals_match_their_description(tmp_path):
    from deep_core.testing import write_synthetic_signals

    names = write_synthetic_signals(tmp_path, 2500, 4, dim=6, epochs=3, seed=1, chunk=1000)
    arrays = {k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in names}
    s = Signals(arrays)
    assert len(s) == 2500 and s.num_classes == 4
    assert s.features.shape == (2500, 6) and s.losses.shape == (2500, 3)
    assert s.grad_norms.shape == (1, 2500) and s.member_probs.shape == (1, 2500, 4)
    noisy = s.labels != s.clean_labels
    assert 0.25 < noisy.mean() < 0.35
    assert s.losses[noisy].mean() > s.losses[~noisy].mean()  # noise is where it says
    again = tmp_path / "again"
    again.mkdir()
    write_synthetic_signals(again, 2500, 4, dim=6, epochs=3, seed=1, chunk=1000)
    assert np.array_equal(np.load(again / "features.npy"), s.features)
