"""deepcore-run end to end on the embedded data: files, dry run, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from deep_core.cli.run import main
from deep_core.config import RunConfig
from deep_core.engine import Trainer
from deep_core.runner import resume_experiment, run_experiment

FAST = [
    "--noise-rate",
    "0.4",
    "--epochs",
    "3",
    "-se",
    "2",
    "-b",
    "64",
    "--lr",
    "0.05",
    "--progress",
    "False",
    "--device",
    "cpu",
]


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir() and p.name != "signals-cache"]
    assert len(runs) == 1, runs
    return runs[0]


def test_default_run_writes_a_complete_run_directory(tmp_path):
    assert (
        main([*FAST, "--selection", "SmallLoss", "--fraction", "0.5", "--out-dir", str(tmp_path)])
        == 0
    )
    run = _only_run(tmp_path)
    for name in (
        "config.yaml",
        "labels.npz",
        "subset.npz",
        "metrics.jsonl",
        "summary.json",
        "checkpoint.pt",
        "log.txt",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    for key in (
        "last_acc",
        "best_acc",
        "best_by",
        "subset_size",
        "subset_noise_rate",
        "class_counts",
        "selection_seconds",
        "train_seconds",
        "versions",
        "noisy_kept_fraction",
        "score_auroc",
    ):
        assert key in summary, key
    assert summary["best_by"] == "test" and summary["subset_size"] == 674
    assert sum(summary["class_counts"]) == 674
    # SmallLoss keeps far fewer mislabeled samples than the 40% of the full set
    assert summary["subset_noise_rate"] < 0.3 and summary["score_auroc"] > 0.7
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["phase"] == "warmup"  # the warm-up's rows come first
    rows = [r for r in rows if r.get("phase") != "warmup"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all({"train_loss", "test_acc", "lr", "seconds"} <= set(r) for r in rows)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["selection"] == "SmallLoss" and cfg["fraction"] == 0.5
    with np.load(run / "subset.npz") as z:
        idx = z["indices"]
        assert idx.dtype == np.int64 and idx.size == 674 and np.all(np.diff(idx) > 0)
    with np.load(run / "labels.npz") as z:  # the synthetic noise is saved with the run
        assert (z["labels"] != z["clean_labels"]).mean() == pytest.approx(0.4, abs=1e-3)


def test_second_selection_reuses_the_cached_warm_up(tmp_path, caplog):
    args = [*FAST, "--dry-run", "--out-dir", str(tmp_path)]
    assert main([*args, "--selection", "SmallLoss"]) == 0
    assert main([*args, "--selection", "Forgetting", "--fraction", "0.3"]) == 0
    runs = sorted(p for p in tmp_path.iterdir() if p.name != "signals-cache")
    reports = [json.loads((r / "selection.json").read_text()) for r in runs]
    cached = sorted(rep["signals"]["members"][0]["cached"] for rep in reports)
    assert cached == [False, True]
    for r in runs:
        s = json.loads((r / "summary.json").read_text())
        assert s["last_acc"] is None and s["best_acc"] is None
        assert not (r / "checkpoint.pt").exists()


def test_config_file_with_flag_override(tmp_path):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("selection: Uniform\nfraction: 0.25\nbalance: true\nepochs: 1\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                *FAST,
                "--config",
                str(cfgfile),
                "--fraction",
                "0.5",
                "--epochs",
                "1",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    run = _only_run(out)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["fraction"] == 0.5 and cfg["method_options"] == {"balance": True}
    counts = json.loads((run / "summary.json").read_text())["class_counts"]
    assert max(counts) - min(counts) <= 1  # balanced Uniform


class _Stop(Exception):
    pass


def test_resume_continues_to_the_same_result(tmp_path, monkeypatch):
    cfg = RunConfig(
        noise_rate=0.4,
        epochs=4,
        selection="Uniform",
        fraction=0.7,
        batch_size=64,
        lr=0.05,
        progress=False,
        device="cpu",
    )
    full = run_experiment(RunConfig(**{**cfg.to_dict(), "out_dir": str(tmp_path / "a")}))

    original_fit = Trainer.fit

    def fit_then_die(self, *, resume=False):
        user_hook = self.on_epoch

        def hook(row):
            user_hook(row)
            if row["epoch"] == 1:
                raise _Stop  # killed after the checkpoint of epoch 1

        self.on_epoch = hook
        return original_fit(self, resume=resume)

    monkeypatch.setattr(Trainer, "fit", fit_then_die)
    with pytest.raises(_Stop):
        run_experiment(RunConfig(**{**cfg.to_dict(), "out_dir": str(tmp_path / "b")}))
    monkeypatch.setattr(Trainer, "fit", original_fit)
    run_b = _only_run(tmp_path / "b")
    assert not (run_b / "summary.json").exists()  # no half-written summary
    resumed = resume_experiment(run_b)
    assert resumed["last_acc"] == full["last_acc"] and resumed["best_acc"] == full["best_acc"]
    run_a = _only_run(tmp_path / "a")
    a = torch.load(run_a / "checkpoint.pt", weights_only=True)["learner"]["net"]
    b = torch.load(run_b / "checkpoint.pt", weights_only=True)["learner"]["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    def strip(p):
        return [
            {k: v for k, v in json.loads(x).items() if k != "seconds"}  # noqa: E731
            for x in (p / "metrics.jsonl").read_text().splitlines()
        ]

    assert strip(run_a) == strip(run_b)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "MNIST"], "unknown dataset 'MNIST'; choose from: CIFAR10, CIFAR100, Clo"),
        (["--model", "VGG11"], "unknown model 'VGG11'"),
        (["--noise-type", "pairflip"], "unknown noise type for Digits 'pairflip'"),
        (["--selection", "Bogus"], "unknown selection method 'Bogus'; choose from:"),
        (["--fraction", "0"], "fraction must be in (0, 1]"),
        (["--fraction", "1.5"], "fraction must be in (0, 1]"),
        (["--noise-rate", "1.0"], "noise rate must be in [0, 1)"),
        (["--robust-learner", "Coteaching"], "unknown robust learner 'Coteaching'"),
        (["--lr-u", "5"], "--lr-u not used by robust learner CE"),
        (
            ["--dataset", "CIFAR10", "--data_path", "/nonexistent"],
            "CIFAR10 not found under /nonexistent",
        ),
        (["--dataset", "ImageFolder", "--data_path", "/nonexistent"], "needs a train/ sub-folder"),
        (["--resume", "/tmp"], "/tmp is not a run directory"),
        (["--n-class", "100"], "--n-class 100 but Digits has 10 classes"),
        (["--scheduler", "OneCycle"], "unknown scheduler 'OneCycle'"),
        (["--model-path", "/nonexistent.pt"], "model weights not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = main([*FAST, "--out-dir", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "args", [["--balance", "maybe"], ["--fraction", "abc"], ["--no-such-flag"]], ids=str
)
def test_bad_flag_value_is_one_line_exit_2(capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err


def test_settings_without_effect_are_reported(tmp_path, capsys, caplog):
    out = tmp_path / "runs"
    code = main(["--epochs", "0", "--dry-run", "--scheduler", "StepLR", "--milestone", "3",
                 "--min_lr", "0.001", "--out-dir", str(out), "--progress", "False",
                 "--noise-type", "clean", "--noise-rate", "0.3"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    (run,) = [p for p in out.iterdir() if p.name != "signals-cache"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dry_run"] and run.name.endswith("_dry")
    assert set(summary["ignored_options"]) == {"milestone", "min_lr", "noise-rate"}
    assert "--milestone (only MultiStepLR uses it; scheduler is StepLR)" in caplog.text


def test_pre_trained_needs_published_weights(tmp_path, capsys):
    args = ["--pre-trained", "True", "--dry-run", "--out-dir", str(tmp_path / "runs")]
    assert main([*args, "--model", "SmallCNN"]) == 2
    assert "no published weights for SmallCNN" in capsys.readouterr().err
