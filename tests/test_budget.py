"""Compute-matched budgets (``--budget steps|samples``) and the report's compute columns."""

from __future__ import annotations

import pytest

from deep_core.cli.run import main
from deep_core.config import RunConfig
from deep_core.errors import DeepCoreError
from deep_core.report import build_report, plot, render_csv, render_markdown
from deep_core.runner import run_experiment, training_budget
from robust_learners.ce import CE
from robust_learners.dividemix import DivideMix


def _cfg(tmp_path, **kw) -> RunConfig:
    base = dict(
        noise_rate=0.4,
        epochs=3,
        selection="Uniform",
        fraction=0.5,
        batch_size=64,
        lr=0.05,
        progress=False,
        device="cpu",
        out_dir=str(tmp_path),
    )
    return RunConfig(**{**base, **kw})


def test_a_step_budget_gives_every_fraction_the_same_steps(tmp_path):
    small = run_experiment(_cfg(tmp_path, fraction=0.2, budget="steps", budget_value=25))
    large = run_experiment(_cfg(tmp_path, fraction=0.6, budget="steps", budget_value=25))
    dynamic = run_experiment(
        _cfg(tmp_path, selection="RS2", fraction=0.2, budget="steps", budget_value=25)
    )
    assert small["steps"] == large["steps"] == dynamic["steps"] == 25
    # 269 samples = 5 batches per epoch: 5 epochs; 808 samples = 13 batches: 2 epochs
    assert (small["epoch_horizon"], small["epochs_trained"]) == (5, 5)
    assert (large["epoch_horizon"], large["epochs_trained"]) == (2, 2)
    assert small["samples_seen"] < large["samples_seen"]
    for s in (small, large, dynamic):
        assert s["last_acc"] is not None and s["wall_seconds"] >= s["train_seconds"]


def test_a_sample_budget_stops_at_the_batch_that_reaches_it(tmp_path):
    s = run_experiment(_cfg(tmp_path, budget="samples", budget_value=1000))
    assert 1000 <= s["samples_seen"] < 1000 + 64
    assert s["epochs_trained"] == 2  # 674 samples per epoch: the budget ends epoch 1
    e = run_experiment(_cfg(tmp_path, budget="epochs", budget_value=2, seed=1))
    assert e["epochs_trained"] == 2 and e["steps"] == 2 * 11


def test_the_epoch_horizon_of_a_budget():
    cfg = RunConfig(batch_size=100, budget="steps", budget_value=100)
    assert training_budget(cfg, subset_size=1000, learner=CE())[0] == 10
    assert training_budget(cfg, subset_size=1000, learner=DivideMix())[0] == 5  # 2 networks
    cfg = RunConfig(budget="samples", budget_value=2500)
    epochs, budget = training_budget(cfg, subset_size=1000, learner=CE())
    assert epochs == 3 and (budget.kind, budget.value) == ("samples", 2500)
    assert training_budget(RunConfig(epochs=7), subset_size=10, learner=CE()) == (7, None)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"budget": "steps"}, "--budget steps needs --budget-value"),
        ({"budget": "flops", "budget_value": 3}, "unknown budget"),
        ({"budget": "steps", "budget_value": 0}, "--budget-value must be a positive integer"),
    ],
)
def test_bad_budgets_are_errors(settings, message):
    with pytest.raises(DeepCoreError, match=message):
        RunConfig(**settings)


def test_the_cli_takes_a_budget_and_refuses_a_bad_one(tmp_path, capsys):
    argv = ["--epochs", "2", "-b", "64", "--progress", "False", "--device", "cpu"]
    assert main([*argv, "--budget", "steps", "--out-dir", str(tmp_path)]) == 2
    assert "error: --budget steps needs --budget-value" in capsys.readouterr().err
    out = tmp_path / "ok"
    assert main([*argv, "--budget", "steps", "--budget-value", "7", "--out-dir", str(out)]) == 0


def test_the_report_puts_compute_in_a_column_and_on_the_x_axis(tmp_path):
    for selection in ("Uniform", "RS2"):
        for value in (10, 20):
            run_experiment(
                _cfg(tmp_path, selection=selection, budget="steps", budget_value=value)
            )
    report = build_report(tmp_path, group_by=["selection", "budget_value"], compute=True)
    text = render_markdown(report)
    assert "## Optimisation steps" in text and "## Wall time" in text
    assert "| RS2 | **10** (1) | **20** (1) |" in text.split("## Optimisation steps")[1]
    assert "steps_mean" in render_csv(report).splitlines()[0]
    plot(report, tmp_path / "by_steps.png", x="steps")
    assert (tmp_path / "by_steps.png").stat().st_size > 1000
    with pytest.raises(DeepCoreError, match="plot x axis"):
        plot(report, tmp_path / "x.png", x="epochs")
