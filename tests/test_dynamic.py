"""Dynamic pruning: RS2's rounds, InfoBatch's pruning and rescaling, the EMA small-loss
method, resume mid-run, and every learner on a changing subset (Digits, a few seconds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deep_core.budget import class_budgets
from deep_core.config import RunConfig
from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import OptimConfig, TrainConfig, TrainContext, Trainer
from deep_core.errors import DeepCoreError
from deep_core.methods import build_method, list_methods
from deep_core.rundir import RunDir
from deep_core.runner import resume_experiment, run_experiment


class _Stop(Exception):
    pass


def _started(name, *, n=103, fraction=0.3, epochs=8, seed=0, labels=None, **options):
    method, unused = build_method(name, options)
    assert not unused
    labels = np.arange(n) % 4 if labels is None else labels
    method.start(labels=labels, num_classes=4, fraction=fraction, epochs=epochs, seed=seed)
    return method


def test_dynamic_methods_are_marked_in_the_list():
    listed = list_methods()
    for name in ("RS2", "InfoBatch", "EMASmallLoss"):
        assert listed[name].startswith("[dynamic] ")
    assert not listed["Uniform"].startswith("[dynamic]")


@pytest.mark.parametrize("n, fraction", [(100, 0.25), (103, 0.3), (50, 0.7)])
def test_rs2_covers_every_sample_once_per_round(n, fraction):
    rs2 = _started("RS2", n=n, fraction=fraction)
    m = round(fraction * n)
    k = math.ceil(n / m)  # = ⌈1/fraction⌉ epochs per round
    assert k == math.ceil(1 / fraction)
    subsets = [rs2.epoch_subset(e) for e in range(4 * k)]
    assert all(s.size == m and np.unique(s).size == m for s in subsets)
    # the first ⌈1/fraction⌉ epochs see every sample
    assert np.array_equal(np.unique(np.concatenate(subsets[:k])), np.arange(n))
    if n % m == 0:  # rounds align with epochs: each block of k epochs is a partition
        for j in range(4):
            block = np.concatenate(subsets[j * k : (j + 1) * k])
            assert np.array_equal(np.sort(block), np.arange(n))
    # over many epochs every sample is trained equally often, up to one round's slack
    counts = np.bincount(np.concatenate(subsets), minlength=n)
    assert counts.max() - counts.min() <= 2
    again = _started("RS2", n=n, fraction=fraction)
    assert all(np.array_equal(again.epoch_subset(e), s) for e, s in enumerate(subsets))
    other = _started("RS2", n=n, fraction=fraction, seed=1)
    assert not np.array_equal(other.epoch_subset(0), subsets[0])


def test_rs2_balanced_and_with_replacement():
    labels = np.repeat(np.arange(4), [40, 30, 20, 13])
    rs2 = _started("RS2", n=labels.size, fraction=0.3, labels=labels, balance=True)
    budgets = class_budgets(labels, round(0.3 * labels.size), 4)
    seen = [set() for _ in range(4)]
    for e in range(6):
        s = rs2.epoch_subset(e)
        assert np.array_equal(np.bincount(labels[s], minlength=4), budgets)
        for c in range(4):
            seen[c] |= set(s[labels[s] == c].tolist())
            if e + 1 >= math.ceil((labels == c).sum() / budgets[c]):
                assert len(seen[c]) == (labels == c).sum()  # class c covered by its round
    rep = _started("RS2", n=100, fraction=0.3, replacement=True)
    a, b = rep.epoch_subset(0), rep.epoch_subset(1)
    assert a.size == b.size == 30 and not np.array_equal(a, b)


def test_infobatch_matches_a_hand_computation():
    n, epochs = 10, 8
    ib = _started("InfoBatch", n=n, fraction=0.5, epochs=epochs, ratio=0.5)
    losses = np.linspace(0.1, 1.0, n)
    sizes = []
    for e in range(epochs):
        kept = ib.epoch_subset(e)
        weights = ib.loss_weights(e)
        sizes.append(kept.size)
        if e == 0 or e == 7:  # first epoch: all scores 3; e + 1 = 8 > 8 · 0.875: annealing
            assert np.array_equal(kept, np.arange(n)) and weights is None
        else:
            # the reference: well-learned = loss below the mean (0.55): samples 0..4;
            # int(0.5 · 5) = 2 of them kept with weight 1 / 0.5, the others all kept
            chosen = np.random.default_rng([0, e]).choice(np.arange(5), 2, replace=False)
            assert np.array_equal(kept, np.sort(np.concatenate([np.arange(5, 10), chosen])))
            assert np.array_equal(weights[0], np.sort(chosen))
            assert np.allclose(weights[1], 2.0)
        ib.observe(e, kept, losses[kept])
    assert sum(sizes) / (epochs * n) == pytest.approx((10 + 6 * 7 + 10) / 80)
    with pytest.raises(DeepCoreError, match="ratio"):
        build_method("InfoBatch", {"ratio": 1.0})


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))


def _ctx(ds, method, *, epochs=3):
    return TrainContext(
        ds,
        np.arange(len(ds.labels)),
        TrainConfig(epochs=epochs, batch_size=64, progress=False),
        OptimConfig(lr=0.05),
        model="SmallCNN",
        dynamic=method,
    )


def test_infobatch_rescales_the_kept_well_learned_losses_in_a_step(digits):
    n = len(digits.labels)
    ib = _started("InfoBatch", n=n, fraction=0.5, epochs=8, labels=digits.labels, ratio=0.5)
    ib.observe(0, np.arange(n), np.linspace(0.0, 1.0, n))
    ctx = _ctx(digits, ib)
    ctx.begin_epoch(1)
    up, w = ib.loss_weights(1)
    pos = torch.as_tensor(np.concatenate([up[:3], np.setdiff1d(ctx.epoch_pool(1), up)[:3]]))
    losses = torch.arange(1.0, 7.0)
    expected = (2 * (1 + 2 + 3) + 4 + 5 + 6) / 6  # the first three are weighted 1 / 0.5
    assert float(ctx.weighted_mean(pos, losses)) == pytest.approx(expected)
    assert np.allclose(w, 2.0)


def test_ema_small_loss_keeps_the_smallest_history_and_explores():
    n = 100
    m = _started("EMASmallLoss", n=n, fraction=0.5, epochs=6, explore=0.2)
    loss = np.arange(n, dtype=float)
    for e in range(2):  # RS2 rounds first: every sample gets a loss
        s = m.epoch_subset(e)
        assert s.size == 50
        m.observe(e, s, loss[s])
    s = m.epoch_subset(2)
    assert s.size == 50 and set(range(40)) <= set(s.tolist())  # 40 best + 10 explored
    m.observe(2, np.array([0]), np.array([100.0]))
    assert m.ema[0] == pytest.approx(0.5 * 100 + 0.5 * 0)


def test_ema_small_loss_has_a_cleaner_subset_than_rs2_and_infobatch(tmp_path):
    rates = {}
    for name in ("RS2", "InfoBatch", "EMASmallLoss"):
        s = run_experiment(_cfg(tmp_path, name, epochs=8, fraction=0.3))
        rates[name] = s["mean_epoch_noise_rate"]
    assert rates["EMASmallLoss"] < rates["RS2"] - 0.05
    assert rates["EMASmallLoss"] < rates["InfoBatch"] - 0.05


def _cfg(tmp_path: Path, selection: str, **kw) -> RunConfig:
    base = dict(
        noise_rate=0.4,
        epochs=4,
        selection=selection,
        fraction=0.5,
        batch_size=64,
        lr=0.05,
        progress=False,
        device="cpu",
        out_dir=str(tmp_path / selection),
    )
    return RunConfig(**{**base, **kw})


def _only_run(out: Path) -> RunDir:
    runs = [p for p in Path(out).iterdir() if p.is_dir() and p.name != "signals-cache"]
    assert len(runs) == 1, runs
    return RunDir(runs[0])


@pytest.mark.parametrize("selection", ["EMASmallLoss", "InfoBatch"])
def test_resume_mid_run_equals_an_uninterrupted_run(tmp_path, monkeypatch, selection):
    full = run_experiment(_cfg(tmp_path / "a", selection, epochs=5))
    original_fit = Trainer.fit

    def fit_then_die(self, *, resume=False):
        user_hook = self.on_epoch

        def hook(row):
            user_hook(row)
            if row["epoch"] == 2:
                raise _Stop  # killed after the checkpoint of epoch 2

        self.on_epoch = hook
        return original_fit(self, resume=resume)

    monkeypatch.setattr(Trainer, "fit", fit_then_die)
    with pytest.raises(_Stop):
        run_experiment(_cfg(tmp_path / "b", selection, epochs=5))
    monkeypatch.setattr(Trainer, "fit", original_fit)
    run_b = _only_run(tmp_path / "b" / selection)
    resumed = resume_experiment(run_b.path)
    run_a = _only_run(tmp_path / "a" / selection)
    assert resumed["last_acc"] == full["last_acc"]
    assert resumed["steps"] == full["steps"] and resumed["samples_seen"] == full["samples_seen"]
    sub_a, sub_b = run_a.read_epoch_subsets(), run_b.read_epoch_subsets()
    assert sorted(sub_a) == sorted(sub_b) == list(range(5))
    assert all(np.array_equal(sub_a[e], sub_b[e]) for e in sub_a)
    a = torch.load(run_a.checkpoint, weights_only=True)["learner"]["net"]
    b = torch.load(run_b.checkpoint, weights_only=True)["learner"]["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "learner, options, selection",
    [
        ("SOP", {"ratio_consistency": 0.9, "ratio_balance": 0.1}, "InfoBatch"),
        ("DivideMix", {"warmup_epochs": 1}, "RS2"),
        ("DivideMix", {"warmup_epochs": 1}, "EMASmallLoss"),
    ],
)
def test_dynamic_runs_with_every_learner_record_their_epoch_subsets(
    tmp_path, learner, options, selection
):
    summary = run_experiment(
        _cfg(tmp_path, selection, epochs=3, robust_learner=learner, learner_options=options)
    )
    run = _only_run(tmp_path / selection)
    rows = [r for r in run.read_metrics() if "steps" in r]
    subsets = run.read_epoch_subsets()
    labels = run.read_labels()
    assert sorted(subsets) == [r["epoch"] for r in rows] == [0, 1, 2]
    for r in rows:
        s = subsets[r["epoch"]]
        assert r["subset_size"] == s.size and r["samples_seen"] > 0
        noisy = np.mean(labels["labels"][s] != labels["clean_labels"][s])
        assert r["subset_noise_rate"] == pytest.approx(noisy)
        if "labeled_1" in r:  # DivideMix co-divides what the epoch sees
            assert r["labeled_1"] <= s.size
    if selection == "RS2":
        assert all(s.size == round(0.5 * len(labels["labels"])) for s in subsets.values())
    assert summary["steps"] == sum(r["steps"] for r in rows) > 0
    assert summary["seen_fraction"] == pytest.approx(
        sum(s.size for s in subsets.values()) / (3 * len(labels["labels"]))
    )
    json.dumps(summary)  # serialisable


DYNAMIC = sorted(n for n in list_methods() if list_methods()[n].startswith("[dynamic]"))


@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_contract(name):
    """Pool = every sample; each epoch a sorted unique subset, a function of the seed."""
    from deep_core.methods import get_method
    from deep_core.methods.base import option_names
    from deep_core.signals import Signals

    method = get_method(name)()
    assert method.dynamic and set(method.options()) == set(option_names(type(method)))
    labels = np.arange(60) % 3
    pool = method.select(Signals({"labels": labels}, num_classes=3), 0.4, seed=2)
    assert np.array_equal(pool.indices, np.arange(60)) and pool.info["dynamic"]
    runs = []
    for _ in range(2):
        m = _started(name, n=60, fraction=0.4, epochs=6, labels=labels, seed=2)
        subsets = []
        for e in range(6):
            s = m.epoch_subset(e)
            assert s.dtype == np.int64 and np.all(np.diff(s) > 0) and 0 <= s[0] and s[-1] < 60
            assert np.array_equal(m.epoch_subset(e), s)  # asked twice: the same
            m.observe(e, s, (s % 7).astype(np.float32))
            subsets.append(s)
        runs.append(subsets)
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
