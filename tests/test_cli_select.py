"""deepcore-select (bring your own signals) and the shared method-flag mapping."""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deep_core.cli.method_args import (
    add_method_arguments,
    method_defaults,
    method_option_specs,
    method_options_from_args,
    method_options_from_mapping,
    option_flag,
    unused_option_warnings,
)
from deep_core.cli.select import main
from deep_core.errors import DeepCoreError
from deep_core.methods import build_method, get_method, list_methods
from deep_core.methods.base import option_names
from deep_core.signals import Signals


@pytest.fixture()
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n, c = 120, 4
    labels = np.arange(n) % c
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    path = tmp_path / "signals.npz"
    np.savez(path, labels=labels, probs=probs.astype(np.float32), features=logits)
    return path


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------
# deepcore-select


def test_list_prints_one_line_per_method(capsys):
    rc, out, _ = _run(["--list"], capsys)
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == len(list_methods())
    for line, (name, summary) in zip(lines, list_methods().items(), strict=True):
        assert line.split()[0] == name and line.endswith(summary)


def test_select_writes_sorted_int64_npy(npz, tmp_path, capsys):
    out = tmp_path / "deep" / "dir" / "subset.npy"
    rc, stdout, err = _run(
        ["--signals", npz, "--selection", "SmallLoss", "--fraction", 0.3, "--out", out], capsys
    )
    assert rc == 0, err
    idx = np.load(out)
    assert idx.dtype == np.int64 and idx.size == round(0.3 * 120)
    assert np.all(np.diff(idx) > 0)
    expected = get_method("SmallLoss")().select(Signals.from_npz(npz), 0.3).indices
    assert np.array_equal(idx, expected)
    assert "36" in stdout
    assert [p.name for p in out.parent.iterdir()] == ["subset.npy"]  # no temp file left


def test_options_and_seed_reach_the_method(npz, tmp_path, capsys):
    out = tmp_path / "s.npy"
    base = ["--signals", npz, "--fraction", 0.5, "--out", out]
    rc, _, err = _run([*base, "--selection", "SmallLoss", "--balance"], capsys)
    assert rc == 0 and err == ""
    labels = np.load(npz)["labels"]
    assert np.bincount(labels[np.load(out)]).tolist() == [15, 15, 15, 15]
    rc, _, _ = _run([*base, "--selection", "Uncertainty", "--uncertainty", "Entropy"], capsys)
    sig = Signals.from_npz(npz)
    ent = get_method("Uncertainty")(uncertainty="Entropy").select(sig, 0.5).indices
    assert rc == 0 and np.array_equal(np.load(out), ent)
    rc, _, _ = _run([*base, "--selection", "Uniform", "--seed", 5], capsys)
    assert rc == 0
    assert np.array_equal(np.load(out), get_method("Uniform")().select(sig, 0.5, seed=5).indices)


def test_unused_flag_is_reported(npz, tmp_path, capsys):
    argv = ["--signals", npz, "--selection", "SmallLoss", "--fraction", 0.5]
    rc, _, err = _run([*argv, "--out", tmp_path / "s.npy", "--uncertainty", "Entropy"], capsys)
    assert rc == 0
    assert "warning: --uncertainty is not used by SmallLoss" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--selection", "NoSuch", "--fraction", "0.5"], "SmallLoss"),  # lists the names
        (["--selection", "smallloss", "--fraction", "0.5"], "unknown selection method"),
        (["--selection", "SmallLoss", "--fraction", "1.5"], "fraction"),
        (["--selection", "SmallLoss", "--fraction", "abc"], "fraction"),
        (["--selection", "GraNd", "--fraction", "0.5"], "grad_norms"),  # missing signal
        (["--selection", "Uncertainty", "--fraction", "0.5", "--uncertainty", "X"], "'X'"),
        (["--selection", "GraNd", "--fraction", "0.5", "--repeat", "0"], "repeat"),
        (["--selection", "SmallLoss", "--fraction", "0.5", "--balance", "maybe"], "True"),
        (["--selection", "SmallLoss"], "--fraction"),
        (["--selection", "SmallLoss", "--fraction", "0.5", "--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, npz, tmp_path, capsys):
    out = tmp_path / "s.npy"
    rc, _, err = _run(["--signals", npz, "--out", out, *argv], capsys)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()


def test_missing_signals_file(tmp_path, capsys):
    rc, _, err = _run(
        ["--signals", tmp_path / "no.npz", "--selection", "Uniform", "--fraction", 0.5]
        + ["--out", tmp_path / "s.npy"],
        capsys,
    )
    assert rc == 2 and "not found" in err


def test_console_entry_point_exit_status(npz, tmp_path):
    cmd = [sys.executable, "-m", "deep_core.cli.select", "--signals", str(npz)]
    ok = subprocess.run(
        [*cmd, "--selection", "Moderate", "--fraction", "0.25", "--out", str(tmp_path / "m.npy")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert np.load(tmp_path / "m.npy").size == 30
    bad = subprocess.run([*cmd, "--selection", "Nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


# ---------------------------------------------------------------------------------------
# the method-flag mapping


def test_every_option_of_every_method_has_a_flag():
    specs = method_option_specs(strict=True)  # raises on a type clash or no CLI form
    for name in list_methods():
        for option in option_names(get_method(name)):
            assert option in specs and name in specs[option].used_by


def test_every_default_round_trips_through_its_flag():
    for option, spec in method_option_specs().items():
        for method, default in spec.used_by.items():
            text = "none" if default is None else str(default)
            assert spec.parse(text) == default, (method, option)


def test_reference_flag_names():
    specs = method_option_specs()
    for option, flag in [("uncertainty", "--uncertainty"), ("balance", "--balance")]:
        assert specs[option].flag == flag
    assert specs["repeat"].flag == "--repeat" and specs["ccs_beta"].flag == "--ccs-beta"
    for option in ("tau", "eta"):  # from Prune4Rel when it is registered
        if option in specs:
            assert specs[option].flag == "--" + option
    assert option_flag("window_start") == "--window-start"


# Long flags of the reference main_label_noise.py (arguments.py) as option names. A method
# option with one of these names would clash with main_label_noise.py's own flag (argparse
# refuses two actions for one flag, and the dest would be shared).
REFERENCE_FLAGS = set(
    """dataset n_train n_class n_query core_resolution resolution core_model model penultimate
    selection robust_learner num_exp num_eval epochs data_path gpu print_freq fraction seed
    workers cross pre_trained multi_gpu pre_warmuped pre_warmed_filename pre_selected
    pre_selected_filename n_redundant noise_type noise_rate ood_rate optimizer lr min_lr
    momentum weight_decay nesterov scheduler milestone gamma step_size batch_size train_batch
    selection_batch lambda_u p_threshold T alpha lambda_elr beta mixup_alpha gamma_elr_plus
    lr_u lr_v ratio_consistency ratio_balance test_batch_size test_interval test_fraction
    selection_epochs meta_epochs selection_momentum selection_weight_decay selection_optimizer
    selection_nesterov selection_lr meta_lr meta_steps selection_test_interval
    selection_test_fraction lamda lamda_scheduling pairwise_mask label_smoothing save_log
    save_path resume""".split()
)
# Reference flags that ARE selection-method options (passed through to the method).
REFERENCE_METHOD_FLAGS = {
    "uncertainty", "balance", "repeat", "tau", "eta", "metric", "num_bins", "num_easy",
    "is_core", "submodular", "submodular_greedy",
}  # fmt: skip


def test_no_method_option_clashes_with_a_reference_flag():
    # Run-level settings (device, workers) are handed to the methods that take them by the
    # runner; main_label_noise.py keeps the run-level flag.
    from deep_core.runner import SHARED_METHOD_OPTIONS

    allowed = REFERENCE_METHOD_FLAGS | set(SHARED_METHOD_OPTIONS)
    clashes = {
        option: sorted(spec.used_by)
        for option, spec in method_option_specs().items()
        if option in REFERENCE_FLAGS - allowed
    }
    assert not clashes, f"rename these method options (reference flags): {clashes}"


def _parse(argv, **kw):
    p = argparse.ArgumentParser()
    p.add_argument("--selection")
    add_method_arguments(p, **kw)
    return p.parse_args(argv)


def test_only_given_flags_are_returned():
    assert method_options_from_args(_parse([])) == {}
    ns = _parse(["--balance", "--uncertainty", "Entropy", "--ccs-beta", "0.1", "--repeat", "3"])
    assert method_options_from_args(ns) == {
        "balance": True,
        "uncertainty": "Entropy",
        "ccs_beta": 0.1,
        "repeat": 3,
    }
    assert method_options_from_args(_parse(["--balance", "False"])) == {"balance": False}
    assert ns.uncertainty == "Entropy"  # dest is the option name, like the reference args


def test_exclude_leaves_a_flag_to_the_caller():
    p = argparse.ArgumentParser()
    p.add_argument("--balance", default="mine")
    add_method_arguments(p, exclude={"balance"})
    ns = p.parse_args([])
    assert ns.balance == "mine"
    assert method_options_from_args(ns, exclude={"balance"}) == {}


def test_options_from_a_config_mapping():
    config = {"balance": "True", "ccs-beta": 0, "repeat": 2, "lr": 0.1, "uncertainty": "Margin"}
    opts = method_options_from_mapping(config)
    assert opts == {"balance": True, "ccs_beta": 0.0, "repeat": 2, "uncertainty": "Margin"}
    assert isinstance(opts["ccs_beta"], float)
    for bad in ({"repeat": 1.5}, {"balance": 1}, {"ccs_score": "X"}, {"repeat": "two"}):
        with pytest.raises(DeepCoreError):
            method_options_from_mapping(bad)


def test_flags_override_config_then_unused_are_warned():
    config = method_options_from_mapping({"uncertainty": "Entropy", "balance": False})
    opts = {**config, **method_options_from_args(_parse(["--balance", "True"]))}
    method, unused = build_method("SmallLoss", opts, strict=False)
    assert method.balance is True
    assert unused_option_warnings("SmallLoss", unused) == [
        "warning: --uncertainty is not used by SmallLoss (ignored)"
    ]


def test_build_method_rejects_options_the_method_does_not_take():
    # the README's API example with a typo: an error, not a silently default tau
    with pytest.raises(DeepCoreError, match="tua"):
        build_method("Prune4Rel", {"tua": 0.975})


def test_method_defaults():
    assert method_defaults("Uncertainty") == {
        "uncertainty": "Margin",
        "balance": False,
        "window_start": 0.0,
    }
    for name in list_methods():
        params = inspect.signature(get_method(name).__init__).parameters
        assert set(method_defaults(name)) == set(params) - {"self"}
