"""kCenterGreedy and Glister against transcriptions of the reference loops.

The oracles below are written from reading DeepCore / Prune4ReL's ``k_center_greedy``
and ``Glister`` + ``LazyGreedy`` (dense matrices, torch, float64; small N only). They
run on synthetic signals and on signals of real CIFAR-10 images with the CIFAR-10N
"worse" human labels (skipped when ../shared is absent).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deep_core.budget import class_budgets
from deep_core.errors import DeepCoreError
from deep_core.methods import build_method
from deep_core.methods.kcenter_greedy import kcenter_greedy
from deep_core.signals import Signals

# ---------------------------------------------------------------------------------------
# oracles


def oracle_k_center_greedy(matrix, budget, seed, index=None):
    """ORACLE: the reference ``k_center_greedy`` (no already-selected points), float64.

    Returns the selected ``index`` entries in pick order and the covering radius (the
    largest distance of an unselected sample to the selected ones; not in the reference).
    """
    matrix = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    sample_num = matrix.shape[0]
    index = np.arange(sample_num) if index is None else index

    def euclidean_dist(x, y):
        xx = (x**2).sum(1, keepdim=True).expand(x.shape[0], y.shape[0])
        yy = (y**2).sum(1, keepdim=True).expand(y.shape[0], x.shape[0]).t()
        return (xx + yy - 2 * x @ y.t()).clamp(min=1e-12).sqrt()

    rs = np.random.RandomState(seed)  # the reference: np.random.seed(seed); randint
    select_result = np.zeros(sample_num, dtype=bool)
    first = rs.randint(0, sample_num)
    order = [first]
    budget -= 1
    select_result[first] = True
    dis_matrix = -1 * torch.ones([1 + budget - 1, sample_num], dtype=torch.float64)
    dis_matrix[:1, ~select_result] = euclidean_dist(
        matrix[select_result], matrix[~select_result]
    )
    mins = torch.min(dis_matrix[:1, :], dim=0).values
    for i in range(budget):
        p = torch.argmax(mins).item()
        select_result[p] = True
        order.append(p)
        if i == budget - 1:
            break
        mins[p] = -1
        dis_matrix[1 + i, ~select_result] = euclidean_dist(matrix[[p]], matrix[~select_result])
        mins = torch.min(mins, dis_matrix[1 + i])
    radius = euclidean_dist(matrix[~select_result], matrix[select_result]).min(dim=1).values
    return index[np.array(order)], float(radius.max()) if radius.numel() else 0.0


def oracle_glister(probs, features, labels, budget, *, eta, update):
    """ORACLE: the reference ``Glister.finish_run`` + ``LazyGreedy`` on one group.

    Dense gradients ``[bias, weight]`` per sample of the cross-entropy of the logits
    (per sample, not the batch mean), validation set = the same samples, and
    ``update_val_gradients`` after each pick when ``update`` (the reference's misspelled
    keyword disabled it). Logits are ``log probs``. Returns the picks in order.
    """
    n, c = probs.shape
    d = features.shape[1]
    out0 = torch.log(torch.as_tensor(np.asarray(probs, dtype=np.float64)))
    emb = torch.as_tensor(np.asarray(features, dtype=np.float64))
    y = torch.as_tensor(labels)

    def gradients(outputs):
        outputs = outputs.clone().requires_grad_(True)
        loss = F.cross_entropy(outputs, y, reduction="sum")
        bias = torch.autograd.grad(loss, outputs)[0]
        weight = emb.view(n, 1, d).repeat(1, c, 1) * bias.view(n, c, 1).repeat(1, 1, d)
        return torch.cat([bias, weight.flatten(1)], dim=1)

    train_grads = gradients(out0)
    val_grads = train_grads.mean(dim=0)

    def gain_function(idx):
        return (train_grads[idx] @ val_grads.view(-1, 1)).numpy().flatten()

    def update_val_gradients(selected):
        nonlocal val_grads
        s = train_grads[selected].mean(dim=0)
        new_out = out0 - eta * s[:c].view(1, -1) - eta * emb @ s[c:].view(c, -1).T
        val_grads = gradients(new_out).mean(dim=0)

    # LazyGreedy.select
    selected = np.zeros(n, dtype=bool)
    greedy_gain = np.zeros(n)
    greedy_gain[~selected] = gain_function(~selected)
    order = []
    for _ in range(budget):
        best_gain, last_max_element = -np.inf, -1
        while True:
            cur_max_element = greedy_gain.argmax()
            if last_max_element == cur_max_element:
                selected[cur_max_element] = True
                order.append(int(cur_max_element))
                greedy_gain[cur_max_element] = -np.inf
                if update:
                    update_val_gradients(selected)
                break
            new_gain = gain_function(np.array([cur_max_element]))[0]
            greedy_gain[cur_max_element] = new_gain
            if new_gain >= best_gain:
                best_gain = new_gain
                last_max_element = cur_max_element
    return np.array(order, dtype=np.int64)


def val_loss_after(probs, features, labels, picks, eta):
    """Cross-entropy on all samples after one step ``theta - eta * mean_picks grad``."""
    p = np.asarray(probs, dtype=np.float64)
    h = np.asarray(features, dtype=np.float64)
    b = p.copy()
    b[np.arange(len(labels)), labels] -= 1.0
    mb = b[picks].mean(axis=0)
    mw = b[picks].T @ h[picks] / len(picks)
    z = np.log(p) - eta * mb - eta * h @ mw.T
    z -= z.max(axis=1, keepdims=True)
    logz = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(logz - z[np.arange(len(labels)), labels]))


# ---------------------------------------------------------------------------------------
# data


def synthetic(n=600, c=4, d=12, noise=0.3, seed=0):
    """Class-clustered features, a linear softmax head on them, flipped labels."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    x = 2.0 * rng.standard_normal((c, d))[clean] + rng.standard_normal((n, d))
    w = rng.standard_normal((c, d)) * 0.3
    logits = x @ w.T + 2.0 * np.eye(c)[clean]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    noisy = np.where(rng.random(n) < noise, rng.integers(0, c, n), clean)
    return Signals(
        {
            "labels": noisy,
            "clean_labels": clean,
            "probs": probs.astype(np.float32),
            "features": x.astype(np.float32),
        },
        num_classes=c,
    )


@pytest.fixture(scope="module")
def cifar_signals(cifar10_root) -> Signals:
    """Signals of the first 1,500 CIFAR-10 training images with the CIFAR-10N worst labels.

    Features: a seeded random ReLU projection of 2x2-pooled, standardised pixels (64
    dims); probs: a softmax head fitted on them to the noisy labels (a cheap stand-in
    for a warm-up model whose last layer is linear in the features).
    """
    from deep_core.datasets.cifar import read_split
    from deep_core.datasets.cifar_n import load_human_labels

    n = 1500
    images, clean, _ = read_split("CIFAR10", cifar10_root / "cifar-10-batches-py", "train")
    noisy = load_human_labels("CIFAR10")["worse_label"][:n]
    x = torch.from_numpy(images[:n].astype(np.float32) / 255.0)
    x = F.avg_pool2d(x, 2).flatten(1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    gen = torch.Generator().manual_seed(0)
    h = torch.relu(x @ torch.randn(x.shape[1], 64, generator=gen) / x.shape[1] ** 0.5)
    head = torch.nn.Linear(64, 10)
    torch.nn.init.zeros_(head.weight)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=60)
    target = torch.from_numpy(noisy)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(h), target) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        probs = torch.softmax(head(h), dim=1).numpy()
    return Signals(
        {
            "labels": noisy,
            "clean_labels": clean[:n],
            "probs": probs.astype(np.float32),
            "features": h.numpy().astype(np.float32),
        },
        num_classes=10,
    )


def run(name, signals, fraction, seed=0, **options):
    method, unused = build_method(name, options)
    assert not unused
    return method.select(signals, fraction, seed=seed)


# ---------------------------------------------------------------------------------------
# kCenterGreedy


def check_kcenter(signals: Signals, fraction: float, seed: int, balance: bool) -> None:
    sub = run("kCenterGreedy", signals, fraction, seed=seed, balance=balance)
    k = round(fraction * len(signals))
    if not balance:
        order, _ = oracle_k_center_greedy(signals.features, k, seed)
        assert np.array_equal(sub.indices, np.sort(order))
        # the greedy order is kept in the scores
        assert np.array_equal(np.argsort(-sub.scores, kind="stable")[:k], order)
        return
    budgets = class_budgets(signals.labels, k, signals.num_classes)
    expected = []
    for c, kc in enumerate(budgets):
        idx = np.flatnonzero(signals.labels == c)
        if kc == idx.size:
            expected.append(idx)
        elif kc > 0:  # the reference crashes for a budget of one; the greedy is trivial
            expected.append(oracle_k_center_greedy(signals.features[idx], kc, seed, idx)[0])
    assert np.array_equal(sub.indices, np.sort(np.concatenate(expected)))


@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_kcenter_matches_reference_synthetic(balance, seed):
    check_kcenter(synthetic(seed=seed), 0.15, seed, balance)


@pytest.mark.shared
@pytest.mark.parametrize("balance", [False, True])
def test_kcenter_matches_reference_cifar(cifar_signals, balance):
    check_kcenter(cifar_signals, 0.1, 0, balance)


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_kcenter_batching_is_exact_with_duplicates_and_ties(batch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 6)).astype(np.float32)
    x[100:110] = x[3]  # exact duplicates of a sample
    x[200:300] = np.round(x[200:300])  # a lattice: many tied distances
    for seed in (0, 3, 7):
        order, radius = oracle_k_center_greedy(x, 120, seed)
        res = kcenter_greedy(x, 120, first=int(order[0]), batch=batch)
        assert np.array_equal(res.order, order)
        assert res.radius == pytest.approx(radius, rel=1e-5)


def test_kcenter_covering_radius_close_to_plain_and_far_below_random():
    s = synthetic(n=2000, d=3, seed=2)
    sub = run("kCenterGreedy", s, 0.05, seed=1)
    _, plain_radius = oracle_k_center_greedy(s.features, len(sub), 1)
    assert sub.info["covering_radius"] == pytest.approx(plain_radius, rel=0.02)
    x = s.features.astype(np.float64)

    def radius(idx):
        d2 = ((x[:, None, :] - x[None, idx, :]) ** 2).sum(-1)
        return float(np.sqrt(d2.min(axis=1).max()))

    assert radius(sub.indices) == pytest.approx(plain_radius, rel=1e-4)
    rand = run("Uniform", s, 0.05, seed=1).indices
    assert radius(rand) > 1.3 * plain_radius


def test_kcenter_first_centre_is_the_reference_draw():
    s = synthetic(n=300)
    for seed in (0, 1, 42):
        sub = run("kCenterGreedy", s, 1 / 300, seed=seed)
        assert list(sub.indices) == [np.random.RandomState(seed).randint(0, 300)]


# ---------------------------------------------------------------------------------------
# Glister


def check_glister(signals: Signals, fraction: float, balance: bool, update: bool, eta: float):
    sub = run(
        "Glister", signals, fraction, balance=balance, taylor_update=update, glister_eta=eta
    )
    k = round(fraction * len(signals))
    groups = (
        [(np.flatnonzero(signals.labels == c), kc) for c, kc in enumerate(
            class_budgets(signals.labels, k, signals.num_classes))]
        if balance
        else [(np.arange(len(signals)), k)]
    )
    expected = []
    for idx, kc in groups:
        if kc == 0:
            continue
        order = oracle_glister(
            signals.probs[idx], signals.features[idx], signals.labels[idx], int(kc),
            eta=eta, update=update,
        )
        expected.append(idx[order])
    assert np.array_equal(sub.indices, np.sort(np.concatenate(expected)))
    return sub


@pytest.mark.parametrize("update", [True, False])
@pytest.mark.parametrize("balance", [False, True])
def test_glister_matches_reference_synthetic(update, balance):
    check_glister(synthetic(seed=1), 0.1, balance, update, eta=0.05)


@pytest.mark.shared
@pytest.mark.parametrize("update", [True, False])
def test_glister_matches_reference_cifar(cifar_signals, update):
    check_glister(cifar_signals, 0.05, False, update, eta=0.02)


@pytest.mark.parametrize("eta", [0.01, 0.2])
def test_glister_lowers_the_validation_loss_it_targets(eta):
    s = synthetic(n=800, seed=4)
    sub = run("Glister", s, 0.1, glister_eta=eta)
    info = sub.info
    assert info["val_loss_after"] < info["val_loss_before"]
    mine = val_loss_after(s.probs, s.features, s.labels, sub.indices, eta)
    assert mine == pytest.approx(info["val_loss_after"], rel=1e-5)
    rand = [
        val_loss_after(s.probs, s.features, s.labels, run("Uniform", s, 0.1, seed=k).indices, eta)
        for k in range(5)
    ]
    assert mine < min(rand)


@pytest.mark.shared
def test_glister_lowers_the_validation_loss_on_cifar(cifar_signals):
    s = cifar_signals
    sub = run("Glister", s, 0.05, glister_eta=0.02)
    assert sub.info["val_loss_after"] < sub.info["val_loss_before"]
    rand = run("Uniform", s, 0.05, seed=0).indices
    assert sub.info["val_loss_after"] < val_loss_after(s.probs, s.features, s.labels, rand, 0.02)


def test_glister_static_scores_are_the_gains():
    s = synthetic(n=200, seed=3)
    sub = run("Glister", s, 0.2, taylor_update=False)
    p = s.probs.astype(np.float64)
    h = s.features.astype(np.float64)
    b = p - np.eye(4)[s.labels]
    g = np.concatenate([b, (b[:, :, None] * h[:, None, :]).reshape(len(b), -1)], axis=1)
    expected = g @ g.mean(axis=0)
    assert np.allclose(sub.scores, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_glister_bad_eta():
    with pytest.raises(DeepCoreError, match="glister-eta"):
        build_method("Glister", {"glister_eta": 0.0})
