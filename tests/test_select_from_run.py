"""Signals.from_run and ``deepcore-select --run``: a run's own signals give its own subset."""

from __future__ import annotations

import numpy as np
import pytest

from deep_core.cli.run import main as run_main
from deep_core.cli.select import main as select_main
from deep_core.rundir import RunDir, find_run_dirs
from deep_core.signals import Signals

FLAGS = ["--n-train", "300", "-se", "1", "--fraction", "0.5", "--device", "cpu",
         "--progress", "False", "--dry-run"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in ("SmallLoss", "Uniform"):
        assert run_main([*FLAGS, "--selection", method, "--out-dir", str(out)]) == 0
    return {RunDir(d.path).read_config()["selection"]: d for d in find_run_dirs(out)}


def test_from_run_gives_the_signals_the_run_selected_from(runs):
    run = runs["SmallLoss"]
    signals = Signals.from_run(run.path)
    labels = run.read_labels()
    assert np.array_equal(signals.labels, labels["labels"])
    assert np.array_equal(signals.clean_labels, labels["clean_labels"])
    assert signals.probs.shape == (300, 10) and signals.losses.shape == (300, 1)
    assert signals.grad_norms.shape == (1, 300)
    assert isinstance(signals.features, np.memmap)  # read from the cache, not copied


def test_select_run_reproduces_the_run_subset(runs, tmp_path, capsys):
    run = runs["SmallLoss"]
    out = tmp_path / "subset.npy"
    assert select_main(["--run", str(run.path), "--selection", "SmallLoss", "--fraction", "0.5",
                        "--out", str(out)]) == 0  # fmt: skip
    assert np.array_equal(np.load(out), run.read_subset().indices)
    assert "kept 150 of 300" in capsys.readouterr().out


def test_labels_only_run_and_a_wrong_cache(runs, tmp_path, capsys):
    uniform = Signals.from_run(runs["Uniform"].path)
    assert set(uniform.names) == {"labels", "clean_labels"}
    args = ["--run", str(runs["SmallLoss"].path), "--selection", "SmallLoss", "--fraction",
            "0.5", "--out", str(tmp_path / "s.npy"), "--signals-cache", str(tmp_path)]  # fmt: skip
    assert select_main(args) == 2
    assert "not found in" in capsys.readouterr().err
    assert select_main(["--signals", "x.npz", "--run", "y"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
