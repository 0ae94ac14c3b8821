"""Paths of a run that the other tests do not take: every network, the optimiser and
scheduler branches, ``--save-log``, ``--gpu`` against ``--device``, image-folder data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from deep_core.cli.run import build_parser, config_from_args
from deep_core.cli.run import main as run_main
from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import OptimConfig, TrainConfig, TrainContext
from deep_core.nets import build_model, model_names
from deep_core.rundir import RunDir, find_run_dirs

QUICK = ["--device", "cpu", "--progress", "False", "--selection", "Uniform"]


# ----------------------------------------------------------------------------------
# Networks: every registered name builds and runs forward at a small size
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", model_names())
def test_every_network_builds_and_runs_forward(name):
    side = 32
    if "inception" in name.lower():  # through timm (an optional extra), 75 px at least
        pytest.importorskip("timm")
        side = 75
    net = build_model(name, num_classes=3, image_shape=(3, side, side), seed=0).eval()
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, features = net.forward_features(x)
    assert logits.shape == (2, 3) and features.shape == (2, net.feature_dim)
    assert torch.isfinite(logits).all()


# ----------------------------------------------------------------------------------
# Optimisers and schedulers
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(noise_rate=0.2, n_train=64))


def _context(ds, **optim) -> TrainContext:
    return TrainContext(ds, np.arange(64), TrainConfig(epochs=4, progress=False),
                        OptimConfig(lr=0.1, **optim), model="SmallCNN")  # fmt: skip


@pytest.mark.parametrize(
    ("optimizer", "cls"),
    [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)],
)
def test_optimizers(digits, optimizer, cls):
    ctx = _context(digits, optimizer=optimizer, weight_decay=0.01)
    opt = ctx.make_optimizer(ctx.build_network().parameters())
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01
    if optimizer == "SGD":
        assert group["momentum"] == 0.9 and group["nesterov"]


@pytest.mark.parametrize(
    ("options", "lrs"),
    [
        ({"scheduler": "StepLR", "step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05]),
        ({"scheduler": "MultiStepLR", "milestones": (1, 3)}, [0.1, 0.01, 0.01, 0.001]),
        ({"scheduler": "MultiStepLR"}, [0.1, 0.1, 0.01, 0.01]),  # default: half the epochs
        ({"scheduler": "none"}, [0.1, 0.1, 0.1, 0.1]),
        ({"scheduler": "CosineAnnealingLR", "min_lr": 0.0}, [0.1, 0.0854, 0.05, 0.0146]),
    ],
)
def test_schedulers_step_per_epoch(digits, options, lrs):
    ctx = _context(digits, **options)
    opt = ctx.make_optimizer(ctx.build_network().parameters())
    sched = ctx.make_scheduler(opt)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(lrs, abs=1e-4)


# ----------------------------------------------------------------------------------
# Command-line paths
# ----------------------------------------------------------------------------------
def test_gpu_does_not_override_an_explicit_device(caplog):
    parse = build_parser().parse_args
    assert config_from_args(parse(["--gpu", "1"])).device == "cuda:1"
    with caplog.at_level(logging.WARNING, logger="deep_core"):
        assert config_from_args(parse(["--gpu", "0", "--device", "cpu"])).device == "cpu"
    assert "--gpu 0 is ignored" in caplog.text


def test_save_log_and_adam_with_step_lr(tmp_path):
    out = tmp_path / "runs"
    args = [*QUICK, "--n-train", "120", "--fraction", "0.5", "--epochs", "2", "--optimizer",
            "Adam", "--lr", "0.001", "--scheduler", "StepLR", "--step_size", "1", "--gamma",
            "0.5", "--save-log", "True", "--out-dir", str(out)]  # fmt: skip
    assert run_main(args) == 0
    (run,) = find_run_dirs(out)
    summary = run.read_summary()
    assert [r["lr"] for r in run.read_metrics()] == pytest.approx([0.001, 0.0005])
    # named as the reference names it: ..._trial<exp>_date<time>.txt
    folder = out / "logs" / "Digits" / "CE" / "Uniform"
    (log,) = folder.glob("sym_r0.4_SmallCNN_fr0.5_trial0_date*.txt")
    row = [float(v) for v in log.read_text().split()]
    expected = [summary["last_acc"], summary["best_acc"], 100 * summary["subset_noise_rate"]]
    assert row[:3] == pytest.approx(expected, abs=1e-6)
    assert row[3:] == summary["class_counts"] and sum(row[3:]) == 60


# ----------------------------------------------------------------------------------
# Image folders: the in-memory path (<= 64 px) and the file-backed one (decoded per epoch)
# ----------------------------------------------------------------------------------
def _image_folder(root, *, per_class: int, size: int = 20) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for split, n in (("train", per_class), ("test", 3)):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")


@pytest.mark.parametrize("image_size", [16, 72])
def test_image_folder_trains(tmp_path, image_size):
    data = tmp_path / "data"
    _image_folder(data, per_class=8)
    out = tmp_path / "runs"
    args = [*QUICK, "--dataset", "ImageFolder", "--data_path", str(data), "--image-size",
            str(image_size), "--model", "SmallCNN", "--noise-rate", "0.25", "--fraction", "0.5",
            "--epochs", "2", "--batch-size", "8", "--out-dir", str(out)]  # fmt: skip
    assert run_main(args) == 0
    (run,) = find_run_dirs(out)
    labels = RunDir(run.path).read_labels()
    assert labels["labels"].size == 24 and (labels["labels"] != labels["clean_labels"]).sum() == 6
    summary = run.read_summary()
    assert summary["subset_size"] == 12 and 0.0 <= summary["last_acc"] <= 100.0
    assert len(run.read_metrics()) == 2
    assert json.loads(run.summary.read_text())["dataset"] == "ImageFolder"
