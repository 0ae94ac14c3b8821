"""deepcore-report: grouping, statistics, best marks, incomplete runs, settings checks."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from deep_core.cli.report import main
from deep_core.config import RunConfig
from deep_core.errors import DeepCoreError
from deep_core.report import Stat, build_report, find_runs, plot, render_csv, render_markdown
from deep_core.rundir import RunDir, run_name, settings_hash


def fake_run(root, *, selection="Uniform", fraction=0.5, seed=0, learner="CE", acc=50.0,
             noise=0.3, seconds=1.0, complete=True, learner_options=None,
             **settings):  # fmt: skip
    """A run directory written through :class:`RunDir` as deepcore-run writes it."""
    cfg = RunConfig(selection=selection, fraction=fraction, seed=seed, robust_learner=learner,
                    learner_options=learner_options or {}, **settings)  # fmt: skip
    run = RunDir(root / run_name(cfg, seed))
    run.path.mkdir(parents=True)
    run.write_config(cfg)
    run.log.write_text("x epoch 0: lr=0.1\nx epoch 1: lr=0.1\n")
    if complete:
        run.write_summary({
            "run": run.path.name, "dataset": "Digits", "noise_type": cfg.noise_type,
            "noise_rate": cfg.noise_rate, "selection": selection, "method_options": {},
            "robust_learner": learner, "learner_options": cfg.learner_options,
            "model": "SmallCNN", "fraction": fraction, "seed": seed, "epochs": cfg.epochs,
            "settings_hash": settings_hash(cfg), "last_acc": acc, "best_acc": acc + 1.0,
            "best_epoch": 1, "best_by": "test", "subset_noise_rate": noise,
            "selection_seconds": seconds, "train_seconds": 3.0,
        })  # fmt: skip
    return run.path


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(60.0, 70.0), (62.0, 74.0), (64.0, 72.0)]):
        fake_run(root, selection="Uniform", fraction=0.2, seed=seed, acc=a, noise=0.4)
        fake_run(root, selection="SmallLoss", fraction=0.2, seed=seed, acc=b, noise=0.1)
        fake_run(root, selection="Uniform", fraction=0.8, seed=seed, acc=b, noise=0.4)
        fake_run(root, selection="SmallLoss", fraction=0.8, seed=seed, acc=a, noise=0.2)
    fake_run(root, selection="SmallLoss", fraction=0.8, seed=3, complete=False)
    (root / "signals-cache" / "abc").mkdir(parents=True)  # not a run
    (root / "signals-cache" / "abc" / "report.json").write_text("{}")
    return root


def test_groups_and_statistics(runs):
    report = build_report(runs)
    assert report.n_complete == 12 and report.n_incomplete == 1
    cells = {g.key: g for g in report.groups}
    g = cells[("SmallLoss", 0.2)]
    s = g.stat(report.quantities[0])
    assert s.n == 3 and s.mean == pytest.approx(72.0) and s.std == pytest.approx(2.0)
    assert len(cells[("SmallLoss", 0.8)].incomplete) == 1
    assert g.seeds() == [0, 1, 2]


def test_markdown_marks_best_and_lists_incomplete(runs):
    text = render_markdown(build_report(runs))
    assert "| SmallLoss | **72.00 ± 2.00** (3) | 62.00 ± 2.00 (3, +1 incomplete) |" in text
    assert "| Uniform | 62.00 ± 2.00 (3) | **72.00 ± 2.00** (3) |" in text
    assert "## Subset noise rate (%)" in text and "**10.00" in text  # lower noise is better
    assert "## Selection time" in text
    assert "Incomplete runs" in text and "last logged epoch 1 of 200" in text
    best = build_report(runs, metric="best")
    assert "**73.00 ± 2.00**" in render_markdown(best)
    assert "Best epoch chosen on: test." in render_markdown(best)


def test_csv(runs):
    rows = list(csv.DictReader(io.StringIO(render_csv(build_report(runs)))))
    assert len(rows) == 4
    row = next(r for r in rows if r["selection"] == "SmallLoss" and r["fraction"] == "0.8")
    assert row["runs"] == "3" and row["incomplete"] == "1" and row["seeds"] == "0 1 2"
    assert float(row["acc_mean"]) == pytest.approx(62.0) and row["acc_best"] == "0"
    assert float(row["subset_noise_rate_mean"]) == pytest.approx(20.0)


def test_mixed_settings_are_an_error(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, seed=0, epochs=10)
    fake_run(root, seed=1, epochs=300, lr=0.1)
    with pytest.raises(DeepCoreError, match=r"differ in settings .*epochs .*lr"):
        build_report(root)
    # Grouping by the differing keys separates them.
    assert len(build_report(root, group_by=["epochs", "lr", "fraction"]).groups) == 2


def test_seed_device_and_out_dir_may_differ(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, seed=0, device="cpu", out_dir="a", workers=0)
    fake_run(root, seed=1, device="cuda:1", out_dir="b", workers=4)
    assert build_report(root).groups[0].stat(build_report(root).quantities[0]).n == 2


def test_several_learners_need_their_own_group(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, learner="CE")
    fake_run(root, learner="SOP", seed=1)
    with pytest.raises(DeepCoreError, match="robust_learner"):
        build_report(root)
    report = build_report(root, group_by=["robust_learner", "selection", "fraction"])
    assert "| CE | Uniform |" in render_markdown(report)


def test_stat_ignores_missing_values():
    assert Stat.of([None, 1.0, 3.0]) == Stat(2.0, pytest.approx(np.sqrt(2.0)), 2)
    assert Stat.of([None]) == Stat(None, None, 0)
    assert Stat.of([0.5], scale=100.0) == Stat(50.0, None, 1)


def test_root_may_be_a_single_run(tmp_path):
    run = fake_run(tmp_path / "runs", seed=0)
    assert [r.path for r in find_runs(run)] == [run]


def test_cli_writes_table_and_plot(runs, tmp_path, capsys):
    table, png = tmp_path / "out" / "table.md", tmp_path / "out" / "plot.png"
    assert main([str(runs), "--output", str(table), "--plot", str(png)]) == 0
    assert table.read_text().startswith("# Runs in")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in table.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    assert "1 incomplete run" in capsys.readouterr().err
    assert main([str(runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("selection,fraction,runs")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "runs folder not found"),
        (["{empty}"], "no run directories"),
        (["{runs}", "--group-by", "nonsense"], "unknown --group-by key 'nonsense'"),
        (["{runs}", "--group-by", "seed,fraction"], "aggregates over seeds"),
        (["{runs}", "--group-by", "fraction"], "differ in settings other than the seed: selection"),
        (["{runs}", "--metric", "median"], "invalid choice"),
        (
            ["{runs}", "--group-by", "selection", "--plot", "{tmp}/p.png"],
            "put fraction in --group-by",
        ),
    ],
)
def test_cli_bad_input(runs, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "runs": runs,
             "tmp": tmp_path}  # fmt: skip
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err, err
    assert not (tmp_path / "p.png").exists()


def test_corrupt_summary_is_one_line_error(tmp_path, capsys):
    run = fake_run(tmp_path / "runs")
    (run / "summary.json").write_text("{not json")
    assert main([str(tmp_path / "runs")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_sop_with_rc_or_rb_is_labelled_sop_plus(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, learner="SOP", acc=80.0)
    fake_run(root, learner="SOP", acc=90.0, learner_options={"ratio_consistency": 0.9,
                                                             "ratio_balance": 0.1})  # fmt: skip
    fake_run(root, learner="SOP", acc=85.0, learner_options={"ratio_balance": 0.1})
    report = build_report(root, group_by=["robust_learner", "learner_options", "fraction"])
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert sorted(r["robust_learner"] for r in rows) == ["SOP", "SOP+", "SOP+"]


def test_one_fraction_plot_has_readable_ticks(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    fake_run(tmp_path / "runs", fraction=0.5)
    ticks = []
    original = Axes.set_xticks
    monkeypatch.setattr(Axes, "set_xticks", lambda ax, t, labels=None, **kw: (
        ticks.append(list(labels)), original(ax, t, labels, **kw))[1])  # fmt: skip
    plot(build_report(tmp_path / "runs"), tmp_path / "p.png")
    assert ticks and all(t == ["0.5"] for t in ticks)


def test_run_dir_round_trip(tmp_path):
    cfg = RunConfig(selection="SmallLoss", fraction=0.3, seed=2)
    run = RunDir(tmp_path / run_name(cfg, 2))
    assert run.path.name.startswith("Digits_CE_SmallLoss_sym0.4_fr0.3_s2_")
    assert not run.has_marker() and run.read_summary() is None and run.read_config() is None
    run.write_config(cfg)
    labels = np.array([0, 1, 1])
    run.write_labels(labels, ids=np.arange(3), clean_labels=None)
    run.write_metrics([{"epoch": 0, "test_acc": 50.0}, {"epoch": 1, "test_acc": 60.0}])
    run.write_selection({"selection_seconds": 0.5})
    assert run.is_run() and run.read_config()["selection"] == "SmallLoss"
    assert set(run.read_labels()) == {"labels", "ids"}
    assert [r["epoch"] for r in run.read_metrics()] == [0, 1]
    assert run.read_selection() == {"selection_seconds": 0.5}
    assert [d.path for d in find_runs(tmp_path)] == [run.path]


def test_settings_hash_ignores_non_settings():
    a = RunConfig(seed=0, device="cpu", out_dir="a")
    assert settings_hash(a) == settings_hash(RunConfig(seed=5, device="cuda", out_dir="b"))
    assert settings_hash(a) != settings_hash(RunConfig(epochs=3))

