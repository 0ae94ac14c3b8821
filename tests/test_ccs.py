"""CCS against a transcription of the authors' selection code, plus its documented choices.

The transcription below follows ``CoresetSelection.mislabel_mask`` and
``CoresetSelection.stratified_sampling`` (with its ``bin_allocate``) of
github.com/haizhongzheng/Coverage-centric-coreset-selection, and the accumulated margin
of its ``generate_importance_score.py``, in numpy. Random draws differ (torch vs numpy),
so the tests compare what is deterministic: the AUM, the samples cut, the strata and
the number kept in every stratum.
"""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.errors import DeepCoreError
from deep_core.methods import build_method, get_method
from deep_core.methods.ccs import (
    AUTHORS_BETA,
    accumulated_margin,
    area_under_margin,
    authors_beta,
    difficulty,
    strata_budgets,
)
from deep_core.signals import Signals

# ---------------------------------------------------------------------------------------
# transcription of the authors' code (numpy; torch's argsort replaced by a stable one)


def ref_accumulated_margin(probs_per_epoch: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``generate_importance_score.py``: sum over logged outputs of p_label - max other p."""
    out = np.zeros(labels.size)
    rows = np.arange(labels.size)
    for p in probs_per_epoch:  # (E, N, C): one logged output per sample and epoch
        p = p.copy()
        target = p[rows, labels]
        p[rows, labels] = 0
        out += target - p.max(axis=1)
    return out


def ref_bin_allocate(num: int, bins: np.ndarray) -> np.ndarray:
    order = np.argsort(bins, kind="stable")
    rest, budgets = num, []
    for i, size in enumerate(bins[order]):
        cur = min(int(size), rest // (bins.size - i))
        budgets.append(cur)
        rest -= cur
    out = np.zeros(bins.size, dtype=np.int64)
    out[order] = budgets
    return out


def ref_ccs_strata(aum: np.ndarray, coreset_ratio: float, mis_ratio: float, stratas: int = 50):
    """The cut, the strata of what is left (ids into ``aum``) and the budget per stratum."""
    n = aum.size
    mis_num = int(mis_ratio * n)
    order = np.argsort(aum, kind="stable")  # ascending AUM: hardest first
    cut, easy = order[:mis_num], order[mis_num:]
    score = aum[easy]
    lo, hi = score.min(), score.max() * 1.0001
    step = (hi - lo) / stratas
    members = [
        easy[(score >= lo + k * step) & (score < lo + (k + 1) * step)] for k in range(stratas)
    ]
    sizes = np.array([m.size for m in members])
    budgets = ref_bin_allocate(int(coreset_ratio * n), sizes)
    return cut, members, budgets


# ---------------------------------------------------------------------------------------
# synthetic warm-up signals with injected label noise


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_signals(n: int = 1000, c: int = 10, epochs: int = 5, noise: float = 0.3, seed: int = 0):
    """Per-epoch logits learning the clean class, late memorisation of the noisy label."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    noisy = clean.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (clean[flip] + rng.integers(1, c, flip.sum())) % c
    strength = rng.uniform(0.5, 5.0, n)
    logits = np.stack(
        [
            t * strength[:, None] * np.eye(c)[clean]
            + 2.0 * t**3 * np.eye(c)[noisy]
            + rng.normal(size=(n, c))
            for t in (np.arange(epochs) + 1.0) / epochs
        ]
    )  # (E, N, C)
    probs = _softmax(logits)
    rows = np.arange(n)
    mask = np.eye(c, dtype=bool)[noisy]
    margins = logits[:, rows, noisy] - np.where(mask, -np.inf, logits).max(axis=2)
    prob_margins = probs[:, rows, noisy] - np.where(mask, -np.inf, probs).max(axis=2)
    correct = logits.argmax(axis=2) == noisy
    signals = Signals(
        {
            "labels": noisy,
            "clean_labels": clean,
            "probs": probs[-1].astype(np.float32),
            "margins": margins.T.astype(np.float32),
            "prob_margins": prob_margins.T.astype(np.float32),
            "correct": correct.T,
            "features": rng.normal(size=(n, 4)).astype(np.float32),
            "grad_norms": rng.random((1, n)).astype(np.float32),
        },
        num_classes=c,
    )
    return signals, probs


def run(signals: Signals, fraction: float, seed: int = 0, **options):
    method, unused = build_method("CCS", options)
    assert not unused
    return method.select(signals, fraction, seed=seed)


def noise_rate(signals: Signals, idx: np.ndarray) -> float:
    return float((signals.labels[idx] != signals.clean_labels[idx]).mean())


@pytest.fixture(scope="module")
def noisy():
    return make_signals(1500, 10, noise=0.4, seed=11)


# ---------------------------------------------------------------------------------------
# equality with the transcription


def test_aum_is_the_authors_accumulated_probability_margin(noisy):
    signals, probs = noisy
    ref = ref_accumulated_margin(probs, signals.labels)
    assert np.allclose(accumulated_margin(signals.prob_margins), ref, atol=1e-5)
    sub = run(signals, 0.3, ccs_beta=0.0)
    assert np.allclose(sub.scores, ref, atol=1e-5)  # scores are the AUM, higher = easier
    assert sub.info["ccs_aum"] == "prob_sum"


@pytest.mark.parametrize("fraction, beta", [(0.1, 0.3), (0.2, 0.2), (0.3, 0.1), (0.5, 0.0)])
def test_cut_strata_and_stratum_budgets_match_the_authors_code(noisy, fraction, beta):
    signals, _ = noisy
    aum = accumulated_margin(signals.prob_margins)
    assert aum.max() > 0  # the code's upper edge max * 1.0001 then covers the maximum
    cut, members, budgets = ref_ccs_strata(aum, fraction, beta)
    for seed in (0, 1):
        idx = run(signals, fraction, seed=seed, ccs_beta=beta).indices
        assert not np.isin(idx, cut).any()
        assert len(idx) == budgets.sum() == int(fraction * len(aum))
        kept = [int(np.isin(idx, m).sum()) for m in members]
        assert kept == budgets.tolist()


def test_strata_budgets_is_bin_allocate():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 40, rng.integers(1, 60))
        total = int(rng.integers(0, sizes.sum() + 1))
        out = strata_budgets(sizes, total)
        assert np.array_equal(out, ref_bin_allocate(total, sizes))
        assert out.sum() == total and (out <= sizes).all()
    # small strata whole; the remainder of 10 // 3 goes to the largest stratum
    assert strata_budgets(np.array([9, 1, 20]), 10).tolist() == [4, 1, 5]


# ---------------------------------------------------------------------------------------
# the default hard cutoff rate


def test_authors_beta_table_and_interpolation():
    for rate, beta in AUTHORS_BETA:
        assert authors_beta(rate) == pytest.approx(beta)
    assert authors_beta(0.9) == pytest.approx(0.3) and authors_beta(0.8) == pytest.approx(0.2)
    assert authors_beta(0.0) == 0.0
    assert authors_beta(0.5) == pytest.approx(0.125)  # linear from (0, 0) to (0.8, 0.2)
    assert authors_beta(0.85) == pytest.approx(0.25)
    assert authors_beta(0.99) == pytest.approx(0.3)  # held above the last point


def test_default_beta_is_the_authors_for_the_pruning_rate(noisy):
    signals, _ = noisy
    n = len(signals)
    for fraction, beta in [(0.1, 0.3), (0.2, 0.2), (0.5, 0.125)]:
        sub = run(signals, fraction)
        assert sub.info["ccs_beta"] == pytest.approx(beta)
        assert sub.info["beta_from"] == "authors"
        assert sub.info["pruned_hard"] == int(np.floor(beta * n))
    assert run(signals, 0.5, ccs_beta=0.0).info["beta_from"] == "ccs_beta"


def test_default_beta_keeps_less_noise_than_no_cut(noisy):
    signals, _ = noisy
    uniform = np.mean(
        [noise_rate(signals, build_method("Uniform", {})[0].select(signals, 0.5, seed=k).indices)
         for k in range(5)]
    )  # fmt: skip
    no_cut = noise_rate(signals, run(signals, 0.5, ccs_beta=0.0).indices)
    default = noise_rate(signals, run(signals, 0.5).indices)
    assert no_cut > uniform  # stratified sampling over-samples the sparse low-AUM tail
    assert default < uniform < no_cut


# ---------------------------------------------------------------------------------------
# the previous variant, other base scores, options


def test_logit_mean_variant_is_pleiss_aum(noisy):
    signals, _ = noisy
    method = get_method("CCS")(ccs_aum="logit_mean", ccs_beta=0.4, num_bins=10)
    assert method.required_signals() == {"margins"}
    assert get_method("CCS")().required_signals() == {"prob_margins"}
    sub = method.select(signals, 0.3)
    aum = signals.margins.astype(np.float64).mean(axis=1)
    assert np.allclose(sub.scores, aum) and np.allclose(area_under_margin(signals.margins), aum)
    left = np.sort(aum)[int(0.4 * len(aum)) :]
    assert aum[sub.indices].min() >= left.min()
    assert noise_rate(signals, sub.indices) < 0.2


@pytest.mark.parametrize(
    "score", ["forgetting", "el2n", "loss", "grand", "uncertainty", "moderate", "pred_sum"]
)
def test_cut_the_hardest_by_any_base_score(noisy, score):
    signals, _ = noisy
    sub = run(signals, 0.3, ccs_beta=0.4, ccs_score=score, num_bins=10)
    hard = difficulty(signals, score)
    assert np.array_equal(sub.scores, -hard) and len(sub) == round(0.3 * len(signals))
    n_cut = int(0.4 * len(hard))
    threshold = np.sort(hard)[::-1][n_cut - 1]
    assert not np.isin(sub.indices, np.flatnonzero(hard > threshold)).any()
    assert (hard[sub.indices] <= threshold).all()


def test_ties_in_the_cut_follow_the_seed_not_the_index():
    # forgetting counts on class-sorted data: classes 0-4 never learned (count E, all
    # tied), classes 5-9 forgotten once. Cut 20% and keep all the rest: the cut takes
    # 200 of the 500 tied samples, spread over their classes by the seed's permutation
    # (lowest index first cut classes 0 and 1 whole).
    n, c, e = 1000, 10, 4
    labels = np.repeat(np.arange(c), n // c)
    correct = np.zeros((n, e), dtype=bool)
    correct[labels >= 5, 0] = True
    s = Signals({"labels": labels, "correct": correct}, num_classes=c)
    subs = [run(s, 0.8, seed=k, ccs_score="forgetting", ccs_beta=0.2) for k in (0, 0, 1)]
    assert np.array_equal(subs[0].indices, subs[1].indices)
    assert not np.array_equal(subs[0].indices, subs[2].indices)
    for sub in subs:
        cut = np.setdiff1d(np.arange(n), sub.indices)
        per_class = np.bincount(labels[cut], minlength=c)
        assert per_class.sum() == 200 and (per_class[5:] == 0).all()
        assert (per_class[:5] >= 20).all() and (per_class[:5] <= 60).all()


def test_seeds_differ_and_repeat(noisy):
    signals, _ = noisy
    a = run(signals, 0.3, seed=0).indices
    assert np.array_equal(a, run(signals, 0.3, seed=0).indices)
    assert not np.array_equal(a, run(signals, 0.3, seed=1).indices)


def _tiny_aum(aum: np.ndarray) -> Signals:
    pm = np.stack([aum / 2, aum / 2], axis=1)  # summed over 2 epochs: the AUM
    return Signals({"labels": np.zeros(aum.size, dtype=np.int64), "prob_margins": pm})


def test_tiny_cut_and_strata():
    aum = np.array([-5.0, -4.0, 0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3])
    s = _tiny_aum(aum)
    for seed in range(6):
        sub = run(s, 0.4, seed=seed, ccs_beta=0.2, num_bins=2)
        assert np.allclose(sub.scores, aum)
        assert sub.info["pruned_hard"] == 2
        idx = set(sub.indices.tolist())
        assert not idx & {0, 1}
        assert len(idx & {2, 3, 4, 5}) == 2 and len(idx & {6, 7, 8, 9}) == 2
    # the budget does not fit after the cut: fewer hard samples are cut
    sub = run(s, 0.9, ccs_beta=0.5)
    assert len(sub) == 9 and sub.info["pruned_hard"] == 1 and 0 not in sub.indices


def test_small_stratum_is_taken_whole():
    sub = run(_tiny_aum(np.array([10.0] + [0.0] * 9)), 0.5, ccs_beta=0.0, num_bins=2)
    assert 0 in sub.indices and len(sub) == 5


def test_negative_maximum_stays_in_a_stratum():
    # the authors' upper edge max * 1.0001 lost a negative maximum; here it is kept
    sub = run(_tiny_aum(-np.arange(1.0, 11.0)), 1.0, num_bins=3)
    assert len(sub) == 10


def test_balanced_runs_per_class(noisy):
    signals, _ = noisy
    sub = run(signals, 0.2, balance=True)
    counts = np.bincount(signals.labels[sub.indices], minlength=10)
    assert counts.max() - counts.min() <= 1 and len(sub) == 300


@pytest.mark.parametrize(
    "options", [{"ccs_beta": 1.0}, {"ccs_beta": -0.1}, {"ccs_aum": "mean"}, {"num_bins": 0}]
)
def test_bad_options(options):
    with pytest.raises(DeepCoreError):
        build_method("CCS", options)
