"""Cross-check with cleanlab: SmallLoss ranks as cleanlab's self-confidence, and
``deepcore-select`` reports label-issue precision/recall next to ``find_label_issues``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.stats import rankdata

from deep_core.cli.select import main as select_main
from deep_core.config import RunConfig
from deep_core.methods import build_method
from deep_core.runner import run_experiment
from deep_core.signals import Signals
from deep_core.testing import synthetic_signals

cleanlab_rank = pytest.importorskip("cleanlab.rank")
cleanlab_filter = pytest.importorskip("cleanlab.filter")


def _assert_smallloss_is_self_confidence(signals: Signals) -> None:
    probs = np.asarray(signals.probs, dtype=np.float64)
    theirs = cleanlab_rank.get_label_quality_scores(
        signals.labels, probs, method="self_confidence"
    )
    ours = build_method("SmallLoss", {})[0].select(signals, 0.5, seed=0)
    # the same order, ties included: log is monotone
    np.testing.assert_array_equal(rankdata(ours.scores), rankdata(theirs))
    k = len(ours)
    top = np.sort(np.argsort(-theirs, kind="stable")[:k])
    if len(np.unique(theirs)) == len(theirs):  # without ties the kept sets are equal
        np.testing.assert_array_equal(ours.indices, top)


def _pr(flagged: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    hits = (flagged & noisy).sum()
    return hits / flagged.sum(), hits / noisy.sum()


def test_smallloss_ranks_as_cleanlab_self_confidence():
    _assert_smallloss_is_self_confidence(synthetic_signals(600, 5, noise=0.3, seed=4))


def test_select_reports_label_issues_next_to_cleanlab(tmp_path, capsys):
    sig = synthetic_signals(800, 4, noise=0.3, seed=1)
    np.savez(tmp_path / "s.npz", **sig.as_dict())
    out = tmp_path / "sub.npy"
    argv = ["--signals", str(tmp_path / "s.npz"), "--selection", "SmallLoss",
            "--fraction", "0.6", "--out", str(out)]  # fmt: skip
    assert select_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    noisy = sig.labels != sig.clean_labels
    pruned = np.ones(len(sig), dtype=bool)
    pruned[np.load(out)] = False
    p, r = _pr(pruned, noisy)
    assert f"pruned-away set precision {p:.4g}, recall {r:.4g} ({pruned.sum():,} samples)" in (
        lines[-2]
    )
    flagged = cleanlab_filter.find_label_issues(
        sig.labels, np.asarray(sig.probs, dtype=np.float64), n_jobs=1
    )
    p, r = _pr(flagged, noisy)
    assert lines[-1] == (
        f"cleanlab find_label_issues on the same probs: precision {p:.4g}, recall {r:.4g} "
        f"({flagged.sum():,} samples)"
    )
    # without clean labels, and without cleanlab, a line says so
    arrays = sig.as_dict()
    arrays.pop("clean_labels")
    np.savez(tmp_path / "noclean.npz", **arrays)
    assert select_main([*argv[:1], str(tmp_path / "noclean.npz"), *argv[2:]]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "label issues: n/a (the signals hold no clean labels)"
    )


def test_select_says_when_cleanlab_is_missing(tmp_path, capsys, monkeypatch):
    sig = synthetic_signals(200, 4, seed=2)
    np.savez(tmp_path / "s.npz", **sig.as_dict())
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # import fails
    argv = ["--signals", str(tmp_path / "s.npz"), "--selection", "Uniform", "--fraction", "0.5",
            "--out", str(tmp_path / "sub.npy")]  # fmt: skip
    assert select_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("label issues (")
    assert lines[-1] == "cleanlab is not installed: no cross-check (pip install cleanlab)"


@pytest.mark.shared
def test_on_real_cifar10n_worst_labels_with_a_quick_model(cifar10_root, tmp_path, capsys):
    """CIFAR-10N worst labels of a 2,000-image slice, out-of-fold probabilities of a
    logistic regression on 8x8-pooled pixels (cleanlab's usual set-up), a few seconds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from deep_core.datasets import DataConfig, load_dataset

    ds = load_dataset(
        DataConfig(dataset="CIFAR10", data_path=str(cifar10_root), noise_type="realW",
                   n_train=2000)
    )  # fmt: skip
    x = np.asarray(ds.train.images, dtype=np.float64)
    x = x.reshape(len(x), 3, 8, 4, 8, 4).mean(axis=(3, 5)).reshape(len(x), -1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    probs = cross_val_predict(
        LogisticRegression(max_iter=300), x, ds.labels, cv=3, method="predict_proba"
    )
    sig = Signals({"labels": ds.labels, "clean_labels": ds.clean_labels, "probs": probs})
    assert (sig.labels != sig.clean_labels).mean() > 0.35  # the worst human labels
    _assert_smallloss_is_self_confidence(sig)
    np.savez(tmp_path / "s.npz", **sig.as_dict())
    argv = ["--signals", str(tmp_path / "s.npz"), "--selection", "SmallLoss", "--fraction",
            "0.6", "--out", str(tmp_path / "sub.npy")]  # fmt: skip
    assert select_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("label issues (") and "pruned-away set precision" in lines[-2]
    assert lines[-1].startswith("cleanlab find_label_issues on the same probs: precision")


@pytest.mark.shared
@pytest.mark.slow
def test_on_real_cifar10n_worst_labels(cifar10_root, tmp_path, capsys):
    """A tiny warm-up on a 2,000-image slice of CIFAR-10 with the CIFAR-10N worst labels
    (about a minute on a 2-core CPU)."""
    cfg = RunConfig(
        dataset="CIFAR10",
        data_path=str(cifar10_root),
        noise_type="realW",
        n_train=2000,
        model="SmallCNN",
        selection_epochs=2,
        epochs=4,
        selection="SmallLoss",
        fraction=0.6,
        protocol="clean",
        dry_run=True,
        progress=False,
        out_dir=str(tmp_path),
    )
    run = tmp_path / run_experiment(cfg)["run"]
    sig = Signals.from_run(run)
    assert (sig.labels != sig.clean_labels).mean() > 0.3  # the worst human labels
    _assert_smallloss_is_self_confidence(sig)
    argv = ["--run", str(run), "--selection", "SmallLoss", "--fraction", "0.6",
            "--out", str(tmp_path / "sub.npy")]  # fmt: skip
    assert select_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("label issues (") and "pruned-away set precision" in lines[-2]
    assert lines[-1].startswith("cleanlab find_label_issues on the same probs: precision")
