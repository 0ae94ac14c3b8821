"""Time-resolved signals: snapshot epochs of one warm-up, Dyn-Unc and DUAL."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta as beta_dist

from deep_core.config import RunConfig
from deep_core.errors import DeepCoreError
from deep_core.methods import build_method
from deep_core.methods.el2n import el2n_of
from deep_core.methods.forgetting import forgetting_counts
from deep_core.runner import (
    build_learner,
    load_data,
    run_experiment,
    select_subset,
    validate,
    warmup_config,
)
from deep_core.signals import Signals, recorder

FAST = dict(n_train=240, selection_epochs=3, epochs=6, progress=False, batch_size=64)


def _cfg(tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(**{**FAST, "out_dir": str(tmp_path), "protocol": "clean", **kw})


def _warm_up(cfg: RunConfig, ds, **changes) -> Signals:
    wcfg = warmup_config(cfg, ds, cfg.seed)
    if "epochs" in changes:
        changes["train"] = replace(wcfg.train, epochs=changes["epochs"])
    wcfg = replace(wcfg, **changes)
    signals, _ = recorder.warm_up_signals(ds, lambda: build_learner(cfg).warmup(), wcfg)
    return signals


# ---------------------------------------------------------------------------------------
# snapshots: column K is the model after K epochs of the same warm-up


def test_snapshot_columns_equal_models_trained_that_long(tmp_path):
    cfg = _cfg(tmp_path)
    ds = load_data(cfg, 0)
    full = _warm_up(cfg, ds, snapshots=True)
    e = cfg.selection_epochs
    assert full.snapshot_el2n.shape == (1, len(ds.labels), e + 1)
    assert full.label_probs.shape == (len(ds.labels), e)
    for k in (0, 1, e):
        # the same schedule horizon, stopped after k epochs (k = 0: the initial network)
        short = full if k == e else _warm_up(cfg, ds, epochs=k)
        np.testing.assert_allclose(
            full.snapshot_el2n[0, :, k], el2n_of(short.probs, ds.labels), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            full.snapshot_grad_norms[0, :, k], short.grad_norms[0], rtol=1e-5, atol=1e-6
        )
    # snapshots change nothing the warm-up trains
    plain = _warm_up(cfg, ds)
    np.testing.assert_array_equal(plain.probs, full.probs)
    np.testing.assert_array_equal(plain.label_probs, full.label_probs)
    # label_probs is the training pass's probability of the label: exp(-loss)
    np.testing.assert_allclose(full.label_probs, np.exp(-full.losses), rtol=1e-5, atol=1e-6)


def test_methods_read_the_snapshot_of_their_epoch(tmp_path):
    cfg = _cfg(tmp_path)
    ds = load_data(cfg, 0)
    sig = _warm_up(cfg, ds, snapshots=True)
    grand, _ = build_method("GraNd", {"signal_epoch": 0})
    assert grand.required_signals() == {"snapshot_grad_norms"}
    sub = grand.select(sig, 0.3, seed=0)
    np.testing.assert_allclose(sub.scores, sig.snapshot_grad_norms[0, :, 0], rtol=1e-6)
    el2n, _ = build_method("EL2N", {"signal_epoch": 2})
    np.testing.assert_allclose(
        el2n.select(sig, 0.3).scores, sig.snapshot_el2n[0, :, 2], rtol=1e-6
    )
    forgetting, _ = build_method("Forgetting", {"signal_epoch": 2})
    np.testing.assert_array_equal(
        forgetting.select(sig, 0.3).scores, forgetting_counts(np.asarray(sig.correct)[:, :2])
    )
    with pytest.raises(DeepCoreError, match="cover epochs 0..3"):
        build_method("EL2N", {"signal_epoch": 4})[0].select(sig, 0.3)
    with pytest.raises(DeepCoreError, match=r"signal_epoch must be in \[1, inf\), got 0"):
        build_method("Forgetting", {"signal_epoch": 0})


def test_signal_epoch_past_the_warmup_fails_before_data_is_loaded(tmp_path):
    with pytest.raises(DeepCoreError, match="--signal-epoch 5 is past the warm-up's 3 epochs"):
        validate(_cfg(tmp_path, selection="GraNd", method_options={"signal_epoch": 5}))


def test_one_warmup_serves_every_signal_epoch_of_a_sweep(tmp_path, monkeypatch):
    calls = []
    original = recorder.record_member

    def counted(*args, **kwargs):
        calls.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(recorder, "record_member", counted)
    base = _cfg(tmp_path)
    ds = load_data(base, 0)
    runs = [
        ("EL2N", {"signal_epoch": 2}),
        ("GraNd", {"signal_epoch": 0}),
        ("Forgetting", {"signal_epoch": 1}),
        ("DUAL", {}),
        ("SmallLoss", {}),  # no snapshots needed: the snapshot entry serves it too
    ]
    keys = set()
    for name, options in runs:
        _, rep = select_subset(replace(base, selection=name, method_options=options), ds, 0)
        keys.add(rep["signals"]["members"][0]["key"])
    assert len(calls) == 1 and len(keys) == 1
    # the plain entry a run without snapshots records is another key, with the same training
    other = replace(base, selection="SmallLoss", signals_cache=str(tmp_path / "other"))
    sub, rep = select_subset(other, ds, 0)
    assert rep["signals"]["members"][0]["key"] not in keys and len(calls) == 2
    sub_snap, _ = select_subset(replace(base, selection="SmallLoss"), ds, 0)
    np.testing.assert_array_equal(sub.indices, sub_snap.indices)


def test_a_run_directory_gives_its_snapshots_back(tmp_path):
    cfg = _cfg(tmp_path, selection="EL2N", method_options={"signal_epoch": 1}, dry_run=True)
    summary = run_experiment(cfg)
    sig = Signals.from_run(tmp_path / summary["run"])
    assert sig.snapshot_el2n.shape == (1, FAST["n_train"], FAST["selection_epochs"] + 1)
    assert sig.label_probs.shape == (FAST["n_train"], FAST["selection_epochs"])
    two_d = Signals({"labels": sig.labels, "snapshot_el2n": sig.snapshot_el2n[0]})
    assert two_d.snapshot_el2n.shape == sig.snapshot_el2n.shape  # one member


# ---------------------------------------------------------------------------------------
# Dyn-Unc and DUAL against a transcription of the papers' formulas


def _paper_dyn_unc(p: np.ndarray, j: int) -> np.ndarray:
    """He et al. 2024, Eq. (2)-(3): mean over k of the std of P over window [k, k + J)."""
    n, e = p.shape
    out = np.zeros(n)
    for i in range(n):
        u = [np.std(p[i, k : k + j], ddof=1) for k in range(e - j + 1)]
        out[i] = sum(u) / len(u)
    return out


def _paper_dual(p: np.ndarray, j: int) -> np.ndarray:
    """Cho et al. 2025: mean over windows of std(P) * (1 - mean(P))."""
    n, e = p.shape
    out = np.zeros(n)
    for i in range(n):
        terms = []
        for k in range(e - j + 1):
            w = p[i, k : k + j]
            terms.append(np.std(w, ddof=1) * (1.0 - np.mean(w)))
        out[i] = sum(terms) / len(terms)
    return out


def _trajectories(seed: int = 0, epochs: int = 14):
    """Easy (fit at once), hard (learned slowly) and mislabeled (never fit) samples."""
    rng = np.random.default_rng(seed)
    n_each = 40
    t = np.arange(epochs)[None, :]
    easy = 1.0 - 0.9 * np.exp(-2.0 * (t + rng.uniform(0.5, 1.5, (n_each, 1))))
    hard = np.clip(0.05 + rng.uniform(0.04, 0.07, (n_each, 1)) * t, 0.0, 0.95)
    noisy = 0.03 + 0.01 * rng.random((n_each, epochs))
    p = np.concatenate([easy, hard, noisy]).astype(np.float32)
    p = np.clip(p + 0.005 * rng.standard_normal(p.shape), 0.0, 1.0).astype(np.float32)
    clean = np.zeros(3 * n_each, dtype=np.int64)
    labels = clean.copy()
    labels[2 * n_each :] = 1  # the mislabeled third
    kind = np.repeat(np.array(["easy", "hard", "noisy"]), n_each)
    sig = Signals({"labels": labels, "clean_labels": clean, "label_probs": p}, num_classes=2)
    return sig, kind


@pytest.mark.parametrize("window", [None, 4, 14])
def test_dyn_unc_and_dual_equal_the_paper_formulas(window):
    sig, _ = _trajectories()
    j = 10 if window is None else window
    options = {} if window is None else {"window": window}
    p = np.asarray(sig.label_probs, dtype=np.float64)
    dyn = build_method("DynUnc", options)[0].select(sig, 0.5)
    np.testing.assert_allclose(dyn.scores, _paper_dyn_unc(p, j), rtol=1e-10, atol=1e-12)
    dual = build_method("DUAL", options)[0].select(sig, 0.5)
    np.testing.assert_allclose(dual.scores, _paper_dual(p, j), rtol=1e-10, atol=1e-12)
    # T = signal_epoch reads the first T epochs only
    first = build_method("DUAL", {**options, "signal_epoch": j})[0].select(sig, 0.5)
    np.testing.assert_allclose(first.scores, _paper_dual(p[:, :j], j), rtol=1e-10, atol=1e-12)


def test_trajectory_scores_rank_the_injected_noise_where_the_papers_say():
    sig, kind = _trajectories()
    # a label the model never fits has a flat, low trajectory: it is not uncertain, so
    # both scores rank it below the samples still being learned and prune it with the
    # easy ones (the noise robustness the DUAL paper reports)
    for name in ("DynUnc", "DUAL"):
        sub = build_method(name, {})[0].select(sig, 1 / 3)
        assert sub.scores[kind == "noisy"].max() < sub.scores[kind == "hard"].min()
        assert set(kind[sub.indices]) == {"hard"}
        assert sub.info["window"] == 10
    # DUAL's difficulty term (1 - mean) puts the samples fit at once last of all
    dual = build_method("DUAL", {})[0].select(sig, 1 / 3)
    assert dual.scores[kind == "easy"].max() < dual.scores[kind == "noisy"].min()


def test_dual_beta_sampling_follows_the_authors_weights():
    sig, kind = _trajectories(epochs=12)
    p = np.asarray(sig.label_probs, dtype=np.float64)
    score = _paper_dual(p, 10)
    fraction = 0.1
    # transcription of the authors' beta_sampling: anchor = mean prediction of the 10 top
    # scores, b = 15 (1 - anchor)(1 - r^c_d), a = 16 - b, weight = pdf(mean prediction) x score
    mu = p.mean(axis=1)
    anchor = mu[np.argsort(score)[-10:]].mean()
    b = 15 * (1 - anchor) * (1 - (1 - fraction) ** 4)
    weights = beta_dist.pdf(np.clip(mu, 1e-6, 1 - 1e-6), 16 - b, b) * score
    method = build_method("DUAL", {"sampling": "beta"})[0]
    sub = method.select(sig, fraction, seed=1)
    assert len(sub) == round(fraction * len(sig))
    assert sub.info["beta_b"] == pytest.approx(b) and sub.info["beta_a"] == pytest.approx(16 - b)
    np.testing.assert_allclose(sub.scores, score, rtol=1e-10)  # reported: the DUAL score
    assert np.array_equal(method.select(sig, fraction, seed=1).indices, sub.indices)
    assert not np.array_equal(method.select(sig, fraction, seed=2).indices, sub.indices)
    # inclusion frequency over seeds follows the weights (weighted draw, no replacement)
    counts = np.zeros(len(sig))
    for s in range(300):
        counts[method.select(sig, fraction, seed=s).indices] += 1
    top = np.argsort(weights)[-12:]
    assert counts[top].mean() > 3 * counts.mean()
    assert counts[weights == 0].sum() == 0
    balanced = build_method("DUAL", {"sampling": "beta", "balance": True})[0]
    got = balanced.select(sig, 0.5, seed=0)
    assert np.bincount(sig.labels[got.indices]).tolist() == [30, 30]


def test_window_longer_than_the_warmup_is_a_clear_error():
    sig, _ = _trajectories(epochs=6)
    with pytest.raises(DeepCoreError, match="a window of 8 epochs needs at least 8"):
        build_method("DynUnc", {"window": 8})[0].select(sig, 0.5)
    with pytest.raises(DeepCoreError, match="signal_epoch=9 but the warm-up recorded 6"):
        build_method("DUAL", {"signal_epoch": 9})[0].select(sig, 0.5)
    with pytest.raises(DeepCoreError, match=r"c_d must be in \(0, inf\)"):
        build_method("DUAL", {"c_d": 0.0})


# ---------------------------------------------------------------------------------------
# DDP: rank 0 reads every sample; every rank ends with the same snapshots

_DDP_WORKER = """
import sys
import numpy as np
import torch
from deep_core import distributed
from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import OptimConfig, TrainConfig
from deep_core.signals.recorder import WarmupConfig, record_member
from robust_learners.ce import CE

torch.set_num_threads(1)
ds = load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0, n_train=300))
wcfg = WarmupConfig(data_key={}, learner="CE", model="SmallCNN", epochs=2,
                    train=TrainConfig(epochs=2, batch_size=32, progress=False),
                    optim=OptimConfig(lr=0.05), snapshots=True)
arrays, _ = record_member(ds, CE(), wcfg, 0)
keep = ("snapshot_el2n", "snapshot_grad_norms", "grad_norms", "label_probs")
np.savez(f"{sys.argv[1]}/w-{distributed.rank()}-{distributed.world_size()}.npz",
         **{k: np.asarray(arrays[k]) for k in keep})
distributed.finish()
"""


@pytest.mark.slow
def test_snapshots_under_ddp(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONPATH": str(repo)}  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
              "--standalone"]  # fmt: skip
    for cmd in ([sys.executable], launch):
        done = subprocess.run([*cmd, str(script), str(tmp_path)], env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    one, r0, r1 = (np.load(tmp_path / f"w-{f}.npz") for f in ("0-1", "0-2", "1-2"))
    for name in ("snapshot_el2n", "snapshot_grad_norms", "label_probs"):
        np.testing.assert_array_equal(r0[name], r1[name])  # every rank holds the whole array
        assert (r0[name] != 0).all()  # every sample read
    # the initial network does not depend on the number of processes ...
    np.testing.assert_allclose(r0["snapshot_el2n"][:, 0], one["snapshot_el2n"][:, 0], rtol=1e-6)
    # ... and the last column is the final clean pass of the DDP run
    np.testing.assert_allclose(r0["snapshot_grad_norms"][:, -1], r0["grad_norms"], rtol=1e-5)
