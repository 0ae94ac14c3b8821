"""SOP / SOP+ and DivideMix: losses by hand, behaviour on noisy digits, subsets, resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deep_core.cli.run import main
from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import OptimConfig, TrainConfig, TrainContext, Trainer
from deep_core.errors import DeepCoreError
from deep_core.subset import auroc
from robust_learners import get_learner
from robust_learners.dividemix import (
    DivideMix,
    clean_probability,
    linear_rampup,
    neg_entropy,
    prior_penalty,
    semi_loss,
    sharpen,
)
from robust_learners.sop import SOP, sop_loss


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------
def _digits(seed: int = 0, rate: float = 0.4):
    return load_dataset(DataConfig(noise_type="sym", noise_rate=rate, seed=seed))


def _context(
    ds, *, epochs: int, seed: int = 0, indices=None, lr: float = 0.05, batch_size: int = 64
) -> TrainContext:
    idx = np.arange(len(ds.labels)) if indices is None else np.asarray(indices)
    return TrainContext(
        ds,
        idx,
        TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, progress=False),
        OptimConfig(lr=lr),
        model="SmallCNN",
    )


def _fit(learner, ds, *, epochs: int, seed: int = 0, indices=None):
    ctx = _context(ds, epochs=epochs, seed=seed, indices=indices)
    return Trainer(learner, ctx).fit(), ctx


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# ----------------------------------------------------------------------------------
# Losses on a hand-built batch
# ----------------------------------------------------------------------------------
LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.3, 1.2]])
STRONG = np.array([[1.0, 1.0, 0.0], [-0.5, 0.2, 0.4]])
LABELS = np.array([1, 2])  # sample 0 is "mislabeled" (the network prefers class 0)
U = np.array([[0.7], [0.05]])
V = np.array([[0.9, 0.2, 0.3], [0.1, 0.4, 1.5]])


def _sop_by_hand(rc: float, rb: float) -> float:
    y = np.eye(3)[LABELS]
    p = _softmax(LOGITS)
    big_u = np.clip(U**2 * y, 0, 1)
    big_v = np.clip(V**2 * (1 - y), 0, 1)
    q = np.maximum(p + big_u - big_v, 1e-4)
    q = np.clip(q / q.sum(1, keepdims=True), 1e-4, 1)
    ce = np.mean(-(y * np.log(q)).sum(1))
    hard = np.eye(3)[LOGITS.argmax(1)]
    mse = ((hard + big_u - big_v - y) ** 2).sum() / 2
    balance = -np.log(q.mean(0)).sum() / 3
    ps = _softmax(STRONG)
    kl = np.mean((p * (np.log(p) - np.log(ps))).sum(1))
    return ce + mse + rb * balance + rc * kl


@pytest.mark.parametrize("rc, rb", [(0.0, 0.0), (0.9, 0.1)])
def test_sop_loss_matches_a_hand_computation(rc, rb):
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    loss = sop_loss(
        t(LOGITS),
        F.one_hot(torch.tensor(LABELS), 3).float(),
        t(U),
        t(V),
        logits_strong=t(STRONG),
        ratio_consistency=rc,
        ratio_balance=rb,
    )
    assert loss.item() == pytest.approx(_sop_by_hand(rc, rb), rel=1e-5)


def test_sop_gradients_flow_as_in_the_paper():
    """The network learns from the CE term only, u from both terms, v from the MSE term only."""
    logits = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    u = torch.tensor(U, dtype=torch.float32, requires_grad=True)
    v = torch.tensor(V, dtype=torch.float32, requires_grad=True)
    y = F.one_hot(torch.tensor(LABELS), 3).float()
    sop_loss(logits, y, u, v).backward()

    # network: gradient of the CE term with U and V held fixed
    z = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    big_u = torch.clamp(torch.tensor(U, dtype=torch.float32) ** 2 * y, 0, 1)
    big_v = torch.clamp(torch.tensor(V, dtype=torch.float32) ** 2 * (1 - y), 0, 1)
    q = torch.clamp(torch.softmax(z, 1) + big_u - big_v, min=1e-4)
    q = q / q.sum(1, keepdim=True)
    torch.mean(-(y * torch.log(q)).sum(1)).backward()
    torch.testing.assert_close(logits.grad, z.grad)

    # v: d/dv of ||hard + U - V - y||^2 / B with V = v^2 (1 - y) (below the clamp)
    hard = np.eye(3)[LOGITS.argmax(1)]
    yn = np.eye(3)[LABELS]
    resid = hard + np.clip(U**2 * yn, 0, 1) - np.clip(V**2 * (1 - yn), 0, 1) - yn
    inside = (V**2 * (1 - yn)) < 1
    grad_v = 2 * resid * (-2 * V * (1 - yn)) * inside / 2
    np.testing.assert_allclose(v.grad.numpy(), grad_v, rtol=1e-5, atol=1e-7)
    # u: both terms pull u up on the sample whose label the network disagrees with
    assert u.grad[0, 0] < 0 and u.grad[0, 0] < u.grad[1, 0]


def test_dividemix_pieces_match_hand_computations():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(
        sharpen(p, 0.5).numpy(), [[0.25, 0.09, 0.04]] / np.float32(0.38), rtol=1e-6
    )

    lx_logits = torch.tensor(LOGITS, dtype=torch.float32)
    tx = torch.tensor([[0.2, 0.7, 0.1], [0.0, 0.1, 0.9]])
    lu_logits = torch.tensor(STRONG, dtype=torch.float32)
    tu = torch.tensor([[0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    lx, lu = semi_loss(lx_logits, tx, lu_logits, tu)
    log_p = np.log(_softmax(LOGITS))
    assert lx.item() == pytest.approx(-np.mean((log_p * tx.numpy()).sum(1)), rel=1e-6)
    assert lu.item() == pytest.approx(np.mean((_softmax(STRONG) - tu.numpy()) ** 2), rel=1e-6)

    both = np.concatenate([LOGITS, STRONG])
    mean_p = _softmax(both).mean(0)
    expected = np.sum(np.log((1 / 3) / mean_p)) / 3
    assert prior_penalty(torch.tensor(both)).item() == pytest.approx(expected, rel=1e-6)

    pp = _softmax(LOGITS)
    assert neg_entropy(lx_logits).item() == pytest.approx(
        np.mean((pp * np.log(pp)).sum(1)), rel=1e-6
    )

    assert linear_rampup(10.0, 10) == 0.0
    assert linear_rampup(14.0, 10) == 0.25
    assert linear_rampup(30.0, 10) == 1.0


def test_clean_probability_separates_a_bimodal_loss_and_is_seeded():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.gamma(2, 0.05, 700), 2 + rng.gamma(2, 0.2, 300)])
    prob = clean_probability(losses, seed=3)
    assert prob[:700].min() > 0.5 and prob[700:].max() < 0.5
    np.testing.assert_array_equal(prob, clean_probability(losses, seed=3))
    assert np.all(clean_probability(np.zeros(5), seed=0) >= 0)  # constant losses do not crash
    assert clean_probability(np.array([1.0]), seed=0).tolist() == [1.0]


def test_options_are_validated_and_named_like_the_flags():
    with pytest.raises(DeepCoreError, match="--lr-u"):
        SOP(lr_u=0)
    with pytest.raises(DeepCoreError, match="-rc"):
        SOP(ratio_consistency=-1)
    with pytest.raises(DeepCoreError, match="--p-threshold"):
        DivideMix(p_threshold=1.5)
    with pytest.raises(DeepCoreError, match="--T"):
        DivideMix(T=0)
    assert get_learner("SOP") is SOP and get_learner("DivideMix") is DivideMix
    sop = SOP(lr_u=1, lr_v=10, ratio_consistency=0.9, ratio_balance=0.1)
    assert sop.warmup().options() == sop.options()
    assert type(DivideMix().warmup()).__name__ == "DivideMixWarmup"


# ----------------------------------------------------------------------------------
# Behaviour on the embedded digits with 40% symmetric noise
# ----------------------------------------------------------------------------------
def test_sop_u_grows_on_flipped_samples_and_only_on_the_subset():
    ds = _digits()
    subset = np.arange(0, len(ds.labels), 2)
    learner = SOP()
    result, ctx = _fit(learner, ds, epochs=10, indices=subset)
    u2 = learner.u.detach()[:, 0].numpy() ** 2
    flipped = ds.noise_mask
    inside = np.zeros(len(ds.labels), bool)
    inside[subset] = True
    assert np.median(u2[inside & flipped]) > 100 * np.median(u2[inside & ~flipped])
    assert np.median(u2[inside & flipped]) > 0.01
    assert np.all(u2[~inside] < 1e-12)  # rows outside the subset keep their N(0, 1e-8²) start
    last = result.history[-1]
    assert last["u_noisy"] > 5 * last["u_clean"]


def test_dividemix_split_has_high_auroc_after_warm_up():
    ds = _digits()
    learner = DivideMix(warmup_epochs=4)
    _, ctx = _fit(learner, ds, epochs=4)  # only the CE warm-up
    clean = ds.labels == ds.clean_labels
    for k in (0, 1):
        prob = learner.co_divide(ctx, k, 4, ctx.epoch_pool(4))
        assert auroc(prob, clean) > 0.9
        labeled = prob > learner.p_threshold
        assert clean[labeled].mean() > 0.85 and labeled.sum() > 0.4 * clean.sum()


def _compare(seed: int, epochs: int, robust: list) -> dict[str, float]:
    """Last test accuracy of CE and of each robust learner, same seed and budget."""
    ds = _digits(seed)
    accs = {"CE": _fit(get_learner("CE")(), ds, epochs=epochs, seed=seed)[0].last_acc}
    for name, learner in robust:
        accs[name] = _fit(learner, ds, epochs=epochs, seed=seed)[0].last_acc
    return accs


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sop_plus_and_dividemix_beat_ce_on_noisy_digits(seed):
    """Same seed, same 30-epoch budget (CE ends at 88-91%, the robust learners at 95-98%)."""
    accs = _compare(
        seed,
        30,
        [
            ("SOP+", SOP(ratio_consistency=0.9, ratio_balance=0.1)),
            ("DivideMix", DivideMix(warmup_epochs=5)),
        ],
    )
    assert accs["SOP+"] > accs["CE"] + 3, accs
    assert accs["DivideMix"] > accs["CE"] + 3, accs


def test_sop_plus_and_dividemix_learn_on_noisy_digits_smoke():
    """The comparison above in a few epochs on a quarter of the data (the default run's
    check): every learner trains end to end and ends well above chance (10%)."""
    ds = _digits()
    quarter = np.arange(0, len(ds.labels), 4)
    for learner, epochs in ((get_learner("CE")(), 3),
                            (SOP(ratio_consistency=0.9, ratio_balance=0.1), 3),
                            (DivideMix(warmup_epochs=1), 2)):  # fmt: skip
        ctx = _context(ds, epochs=epochs, indices=quarter, batch_size=16)
        result = Trainer(learner, ctx).fit()
        assert all(np.isfinite(r["train_loss"]) for r in result.history)
        assert result.last_acc > 30, (type(learner).__name__, result.last_acc)


def test_sop_plus_trains_with_the_strong_view():
    ds = _digits()
    subset = np.arange(0, len(ds.labels), 8)
    plus = SOP(ratio_consistency=0.9, ratio_balance=0.1)
    res_plus, _ = _fit(plus, ds, epochs=1, indices=subset)
    res_sop, _ = _fit(SOP(), ds, epochs=1, indices=subset)
    assert np.isfinite(res_plus.history[0]["train_loss"])
    assert res_plus.history[0]["train_loss"] != res_sop.history[0]["train_loss"]


def test_dividemix_on_a_subset_logs_its_split():
    ds = _digits()
    subset = np.flatnonzero(np.arange(len(ds.labels)) % 3 != 0)
    result, _ = _fit(DivideMix(warmup_epochs=1), ds, epochs=2, indices=subset)
    row = result.history[1]
    for k in (1, 2):
        assert 0 < row[f"labeled_{k}"] < subset.size
        clean = ds.labels[subset] == ds.clean_labels[subset]
        assert row[f"precision_{k}"] > clean.mean() and row[f"auroc_{k}"] > 0.6
    assert row["lambda_u"] == pytest.approx(25.0 / 16)
    assert np.isfinite(row["train_loss"]) and "test_acc" in row


# ----------------------------------------------------------------------------------
# Resume equals an uninterrupted run
# ----------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _flat_state(learner) -> dict[str, torch.Tensor]:
    out = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                walk(f"{prefix}.{i}", v)

    walk("", learner.state_dict())
    return out


@pytest.mark.parametrize(
    "make",
    [lambda: SOP(ratio_balance=0.1), lambda: DivideMix(warmup_epochs=1)],
    ids=["SOP", "DivideMix"],
)
def test_resume_equals_an_uninterrupted_run(tmp_path, make):
    """Killed after epoch 1 (DivideMix: after its first co-divide epoch), resumed to epoch 3."""
    ds = _digits()
    subset = np.arange(0, len(ds.labels), 3)
    epochs = 3

    full = make()
    ref = Trainer(
        full, _context(ds, epochs=epochs, indices=subset), checkpoint=tmp_path / "a.pt"
    ).fit()

    def die(row):
        if row["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        Trainer(
            make(),
            _context(ds, epochs=epochs, indices=subset),
            checkpoint=tmp_path / "b.pt",
            on_epoch=die,
        ).fit()
    resumed = make()
    res = Trainer(
        resumed, _context(ds, epochs=epochs, indices=subset), checkpoint=tmp_path / "b.pt"
    ).fit(resume=True)

    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(res.history) == strip(ref.history)
    a, b = _flat_state(full), _flat_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------
# Through the command line, with each learner's own selection warm-up
# ----------------------------------------------------------------------------------
CLI = [
    "--noise-rate",
    "0.4",
    "--n-train",
    "600",
    "-b",
    "64",
    "--lr",
    "0.05",
    "--progress",
    "False",
    "--device",
    "cpu",
    "--selection",
    "SmallLoss",
    "-se",
    "1",
]


def _rows(out: Path) -> list[dict]:
    (run,) = [p for p in out.iterdir() if p.is_dir() and p.name != "signals-cache"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("phase") != "warmup"]  # the training epochs


def test_cli_runs_dividemix_and_sop_plus(tmp_path):
    out = tmp_path / "dm"
    assert (
        main(
            [
                *CLI,
                "--robust-learner",
                "DivideMix",
                "--warmup-epochs",
                "1",
                "--epochs",
                "2",
                "--fraction",
                "0.6",
                "--lambda-u",
                "5",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    rows = _rows(out)
    assert {"labeled_1", "precision_1", "auroc_1", "test_acc"} <= set(rows[1])

    out = tmp_path / "sop"
    assert (
        main(
            [
                *CLI,
                "--robust-learner",
                "SOP",
                "-rc",
                "0.9",
                "-rb",
                "0.1",
                "--lr-u",
                "1",
                "--epochs",
                "1",
                "--fraction",
                "0.3",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    assert {"u_noisy", "u_clean", "test_acc"} <= set(_rows(out)[0])


def test_cli_rejects_a_flag_of_another_learner(tmp_path, capsys):
    assert (
        main([*CLI, "--robust-learner", "SOP", "--lambda-u", "1", "--out-dir", str(tmp_path)]) == 2
    )
    assert "--lambda-u not used by robust learner SOP" in capsys.readouterr().err
