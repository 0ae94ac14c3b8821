"""--protocol reference|clean: the warm-up schedule, the signal view, the cache key, the
reference's flags and defaults, asym noise, and one recording per cache entry."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deep_core.cli.run import build_parser, config_from_args, ddp_command
from deep_core.config import RunConfig
from deep_core.datasets.noise import CIFAR10_ASYM, DIGITS_ASYM, make_noisy_labels
from deep_core.errors import DeepCoreError
from deep_core.methods import get_method
from deep_core.recipe import build_recipe
from deep_core.runner import (
    load_data,
    run_experiment,
    select_subset,
    settings_without_effect,
    validate,
    warmup_config,
)
from deep_core.signals import recorder
from deep_core.steps import reference_log

FAST = dict(n_train=300, selection_epochs=2, epochs=6, progress=False, batch_size=64)


def _cfg(tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(**{**FAST, "out_dir": str(tmp_path), **kw})


def _key(cfg: RunConfig) -> str:
    ds = load_data(cfg, cfg.seed)
    return warmup_config(cfg, ds, cfg.seed).member_key(0)


def test_protocols_differ_in_the_cache_key_and_only_where_the_warmup_differs(tmp_path):
    ref, clean = _cfg(tmp_path), _cfg(tmp_path, protocol="clean")
    assert _key(ref) != _key(clean)
    # the reference schedule is sized on --epochs: a longer run is another warm-up
    assert _key(ref) != _key(replace(ref, epochs=12))
    # ... while the clean schedule is sized on -se alone
    assert _key(clean) == _key(replace(clean, epochs=12))
    # explicit flags give the same warm-up as the protocol that implies them
    assert _key(replace(clean, warmup_schedule="run", signal_view="strong")) == _key(ref)
    # the selection method and its options never change the warm-up
    assert _key(ref) == _key(replace(ref, selection="Prune4Rel", method_options={"tau": 0.9}))


def test_dividemix_only_options_leave_the_cache_key_alone(tmp_path):
    base = _cfg(tmp_path, robust_learner="DivideMix", epochs=12)
    other = {
        "lambda_u": 150.0,
        "T": 0.3,
        "alpha": 0.5,
        "p_threshold": 0.7,
        "warmup_epochs": 3,
        "reference_rampup": True,
        "confidence_penalty": True,
    }
    assert _key(base) == _key(replace(base, learner_options=other))
    assert _key(base) != _key(replace(base, robust_learner="CE"))


def _spy_select(monkeypatch, name: str) -> list:
    cls = get_method(name)
    seen = []
    original = cls.select

    def spy(self, signals, fraction, *, seed=0):
        seen.append(signals)
        return original(self, signals, fraction, seed=seed)

    monkeypatch.setattr(cls, "select", spy)
    return seen


def test_prune4rel_reads_the_strong_view_under_reference_only(tmp_path, monkeypatch):
    p4r, small = _spy_select(monkeypatch, "Prune4Rel"), _spy_select(monkeypatch, "SmallLoss")
    cfg = _cfg(tmp_path, selection="Prune4Rel", fraction=0.3)
    ds = load_data(cfg, 0)
    _, rep_p = select_subset(cfg, ds, 0)
    _, rep_s = select_subset(replace(cfg, selection="SmallLoss"), ds, 0)
    # one warm-up serves both methods
    assert rep_s["signals"]["members"][0]["cached"]
    assert rep_p["signals"]["members"][0]["key"] == rep_s["signals"]["members"][0]["key"]
    assert (rep_p["signal_view"], rep_s["signal_view"]) == ("strong", "clean")
    sp, ss = p4r[-1], small[-1]
    assert np.array_equal(sp.probs, ss.strong_probs)
    assert np.array_equal(sp.features, ss.strong_features)
    assert not np.array_equal(ss.probs, ss.strong_probs)  # the views really differ
    # the strong view is seeded: recorded again (no cache), the same view comes back
    again = replace(cfg, signals_cache=str(tmp_path / "other-cache"))
    select_subset(again, ds, 0)
    assert np.array_equal(p4r[-1].probs, sp.probs)
    # --protocol clean: Prune4Rel reads the clean view
    _, rep_c = select_subset(replace(cfg, protocol="clean"), ds, 0)
    assert rep_c["signal_view"] == "clean" and "strong_probs" not in p4r[-1]


def _cosine(lr: float, eta_min: float, t_max: int, epoch: int) -> float:
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


@pytest.mark.parametrize("protocol, horizon", [("reference", 20), ("clean", 3)])
def test_warmup_rows_follow_the_protocols_schedule(tmp_path, protocol, horizon):
    cfg = _cfg(
        tmp_path,
        protocol=protocol,
        selection="SmallLoss",
        selection_epochs=3,
        epochs=20,
        lr=0.1,
        min_lr=1e-4,
        dry_run=True,
    )
    summary = run_experiment(cfg)
    rows = [json.loads(line) for line in (tmp_path / summary["run"] / "metrics.jsonl").open()]
    warm = [r for r in rows if r.get("phase") == "warmup"]
    assert [r["epoch"] for r in warm] == [0, 1, 2] and len(rows) == 3  # a dry run: no training
    for r in warm:
        assert r["lr"] == pytest.approx(_cosine(0.1, 1e-4, horizon, r["epoch"]), rel=1e-9)
        assert "train_loss" in r and "train_acc" in r


# Lines of the reference's scripts (scripts/*.sh of kaist-dmlab/Prune4Rel), loop variables
# filled in, with --protocol reference as this package's scripts add it.
REFERENCE_LINES = {
    "dividemix_CF10": "--gpu 0 --model PreActResNet18 --noise-type real1, -se 10 --epochs 300"
    " --fraction 0.2 --selection Prune4Rel --save-log True --pre-warmuped False"
    " --metric cossim --uncertainty LeastConfidence --tau 0.975 --balance True",
    "sop_CF100": "--gpu 1 --model PreActResNet18 --robust-learner SOP -rc 0.9 -rb 0.1"
    " --noise-type real -se 30 --epochs 300 --fraction 0.4 --selection Moderate --save-log True"
    " --dataset CIFAR100 --n-class 100 --lr-u 1 --metric cossim --uncertainty LeastConfidence"
    " --tau 0.95 --eta 1 --balance True",
    "sop_WebV": "--gpu 0 --model Inception_ResNetv2 --robust-learner SOP -rc 0 -rb 0"
    " --noise-type clean -se 10 --epochs 100 --fraction 0.2 --selection Prune4Rel --save-log True"
    " --pre-warmuped False --dataset WebVision --data_path /path/to/data/ --n-class 50"
    " --lr-u 0.1 --lr-v 1 --scheduler MultiStepLR --batch-size 32 --n-train 65944"
    " --metric cossim --uncertainty LeastConfidence --tau 0.95 --eta 1 --balance True",
    "dividemix_c1m": "--gpu 0 1 2 3 --model ResNet50 --dataset Clothing1M -se 1 --epochs 10"
    " --fraction 0.01 --selection Prune4Rel --save-log True --data_path /data/clothing1m"
    " --resolution 224 --batch-size 32 --lr 0.002 --lambda-u 0.1 --alpha 0.5 -wd 1e-3"
    " --pre-trained True --multi-gpu True --scheduler MultiStepLR --noise-type clean"
    " --n-train 1000000 --pre-warmuped True --metric cossim --uncertainty LeastConfidence"
    " --tau 0.8 --eta 1 --balance True",
    "sop_imagenet_02": "--gpu 0 1 --model ResNet50 --resolution 224 -se 10 --epochs 50"
    " --batch-size 64 --fraction 0.05 --selection Prune4Rel --save-log True --robust-learner SOP"
    " -rc 0 -rb 0 --lr-u 0.1 --lr-v 1 --lr 0.02 -wd 1e-3 --dataset ImageNet"
    " --data_path /path/to/data/ --noise-type asym --noise-rate 0.2 --multi-gpu True"
    " --test-batch-size 64 --n-train 1281167 --pre-warmuped True"
    " --pre-warmed-filename /path/to/warmup_model/ --metric cossim --uncertainty LeastConfidence"
    " --tau 0.95 --balance True",
}


def _config(line: str) -> RunConfig:
    return config_from_args(build_parser().parse_args(line.split()))


@pytest.mark.parametrize("name", sorted(REFERENCE_LINES))
def test_every_flag_of_the_reference_lines_parses(name):
    line = REFERENCE_LINES[name] + " --protocol reference"
    if name == "dividemix_c1m":  # it loaded a warm-up from a fixed path of the authors'
        with pytest.raises(DeepCoreError, match="--pre-warmed-filename"):
            _config(line)
        line += " --pre-warmed-filename warm.pt"
    cfg = _config(line)
    assert cfg.protocol == "reference" and "," not in cfg.noise_type
    if "--gpu 0 " in line and "--multi-gpu" in line:
        assert cfg.device == "cuda"  # several ids: one DDP process per GPU
    if "--resolution" in line:
        assert cfg.image_size == 224


def test_reference_line_means_what_it_meant_there():
    # dividemix_CF10.sh names no data set, no learner, no --lambda-u and no --eta
    cfg = _config(REFERENCE_LINES["dividemix_CF10"] + " --protocol reference")
    assert (cfg.dataset, cfg.robust_learner, cfg.noise_type) == ("CIFAR10", "DivideMix", "real1")
    assert cfg.learner_options == {"lambda_u": 1.0}
    opts = cfg.method_options
    assert (opts["tau"], opts["eta"], opts["uncertainty"]) == (0.975, 100.0, "LeastConfidence")
    assert opts["balance"] is True and opts["metric"] == "cossim"
    assert cfg.device == "cuda:0" and cfg.warmup_model is None
    # without --protocol the friendly defaults hold (the embedded data, CE)
    cfg = _config("--selection Prune4Rel --pre-warmuped False")
    assert (cfg.dataset, cfg.robust_learner, cfg.protocol) == ("Digits", "CE", "reference")
    assert "tau" not in cfg.method_options


def test_flags_that_change_nothing_are_reported_not_rejected():
    cfg = _config("--print_freq 20 -slr 0.1 --submodular GraphCut --pre-warmed-filename x.pt")
    ignored = settings_without_effect(cfg)
    for flag in ("--print_freq", "--selection_lr", "--submodular", "--pre-warmed-filename"):
        assert any(text.startswith(flag + " ") for text in ignored), flag
    validate(cfg)


def test_several_gpus_launch_one_ddp_process_each():
    cmd, env = ddp_command(["--gpu", "0", "1", "--multi-gpu", "True"], [2, 5])
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert cmd[6:8] == ["-m", "deep_core.cli.run"] and env["CUDA_VISIBLE_DEVICES"] == "2,5"


def test_dividemix_warmup_covering_every_epoch_is_an_error(tmp_path):
    with pytest.raises(DeepCoreError, match="covers all --epochs 10"):
        validate(RunConfig(robust_learner="DivideMix", epochs=10))  # default warm-up 10
    validate(RunConfig(robust_learner="DivideMix", epochs=11))
    with pytest.raises(DeepCoreError, match="warm-up"):
        validate(
            RunConfig(robust_learner="DivideMix", epochs=4, learner_options={"warmup_epochs": 4})
        )
    from robust_learners import get_learner

    dm = get_learner("DivideMix")()
    assert dm.training_warmup_epochs(dataset="Clothing1M", num_classes=14) == 1
    assert dm.training_warmup_epochs(dataset="CIFAR100", num_classes=100) == 30


@pytest.mark.parametrize("class_map", [CIFAR10_ASYM, DIGITS_ASYM], ids=["cifar10", "digits"])
@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_asym_realises_the_requested_rate(class_map, rate):
    clean = np.repeat(np.arange(10), 1000)
    noisy = make_noisy_labels(
        clean, noise_type="asym", rate=rate, num_classes=10, seed=0, class_map=class_map
    )
    assert (noisy != clean).mean() == pytest.approx(rate, abs=1e-3)
    # the reference's pairs: every flipped label is its class's partner, both ways
    assert all(class_map[class_map[c]] == c for c in range(10))
    assert set(zip(clean[noisy != clean], noisy[noisy != clean])) == set(class_map.items())


def test_asym_on_the_embedded_data(tmp_path):
    ds = load_data(RunConfig(noise_type="asym", noise_rate=0.3), 0)
    assert ds.realised_noise_rate() == pytest.approx(0.3, abs=0.01)


def test_save_log_files_of_a_tau_sweep_do_not_overwrite_each_other(tmp_path):
    summary = {"last_acc": 80.0, "best_acc": 81.0, "subset_noise_rate": 0.1, "seed": 0,
               "model": "PreActResNet18", "class_counts": [3, 0, 2]}  # fmt: skip
    for tau in (0.9, 0.95):
        cfg = RunConfig(
            out_dir=str(tmp_path),
            selection="Prune4Rel",
            method_options={"tau": tau, "eta": 1.0, "balance": True},
        )
        reference_log(build_recipe(cfg), summary)
    files = sorted(tmp_path.glob("logs/Digits/CE/Prune4Rel/*/*.txt"))
    assert [f.parent.name for f in files] == ["tau0.95_eta1.0_balance", "tau0.9_eta1.0_balance"]
    assert files[0].name.startswith("sym_r0.4_PreActResNet18_fr0.2_trial0_date")
    assert files[0].read_text().split() == ["80.000000", "81.000000", "10.000000", "3.000000",
                                            "2.000000"]  # fmt: skip


def test_concurrent_runs_record_one_warmup(tmp_path, monkeypatch):
    calls = []
    original = recorder.record_member

    def counted(*args, **kwargs):
        calls.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(recorder, "record_member", counted)
    cfg = _cfg(tmp_path, selection="SmallLoss")
    ds = load_data(cfg, 0)
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = select_subset(cfg, ds, 0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    cached = sorted(r[1]["signals"]["members"][0]["cached"] for r in results)
    assert cached == [False, True]
    assert np.array_equal(results[0][0].indices, results[1][0].indices)


def test_a_pre_warmed_model_is_read_instead_of_trained(tmp_path, monkeypatch):
    import torch

    from deep_core.nets import build_model

    ds = load_data(_cfg(tmp_path), 0)
    net = build_model("SmallCNN", num_classes=10, image_shape=ds.train.image_shape, seed=3)
    torch.save(net.state_dict(), tmp_path / "warm.pt")
    warm = str(tmp_path / "warm.pt")
    cfg = _cfg(tmp_path, selection="SmallLoss", model="SmallCNN", warmup_model=warm)
    _, rep = select_subset(cfg, ds, 0)
    assert rep["warmup_history"] == [] and rep["warmup_schedule_epochs"] == 0
    # Forgetting needs the warm-up's own epochs: it trains one, as the reference does
    _, rep = select_subset(replace(cfg, selection="Forgetting"), ds, 0)
    assert len(rep["warmup_history"]) == 2 and "pre_warmed_filename" in rep["ignored_options"]
