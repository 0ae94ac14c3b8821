"""The engine: mixed-precision modes, checkpoints that move between devices, device batches.

The CUDA side of these properties is in ``test_engine_cuda.py`` (run by
``benchmarks/gpu_check.sh`` on a GPU machine).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deep_core.cli.run import build_parser, config_from_args
from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import (
    OptimConfig,
    TrainConfig,
    TrainContext,
    Trainer,
    amp_dtype,
    load_checkpoint,
)
from deep_core.errors import DeepCoreError
from robust_learners.ce import CE
from robust_learners.sop import SOP

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))


def _ctx(ds, *, epochs=1, amp=True, indices=None):
    idx = np.arange(0, len(ds.labels), 4) if indices is None else indices
    return TrainContext(
        ds,
        idx,
        TrainConfig(epochs=epochs, batch_size=64, amp=amp, progress=False),
        OptimConfig(lr=0.05),
        model="SmallCNN",
    )


# ----------------------------------------------------------------------------------
# --amp
# ----------------------------------------------------------------------------------
def test_amp_modes_on_cpu():
    assert amp_dtype(True, CPU) is None  # float32 stays the CPU default
    assert amp_dtype(False, CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(DeepCoreError, match="--amp fp16 needs a CUDA device"):
        amp_dtype("fp16", CPU)
    with pytest.raises(DeepCoreError, match="--amp must be True, False, bf16 or fp16"):
        TrainConfig(epochs=1, amp="int8").validate()


@pytest.mark.parametrize(
    "flag, value", [("True", True), ("false", False), ("bf16", "bf16"), ("FP16", "fp16")]
)
def test_amp_flag_parses_booleans_and_dtypes(flag, value):
    cfg = config_from_args(build_parser().parse_args(["--amp", flag]))
    assert cfg.amp == value


def test_bf16_autocast_trains_on_cpu(digits):
    ctx = _ctx(digits, amp="bf16")
    assert ctx.amp_dtype is torch.bfloat16 and not ctx.scaler.is_enabled()
    learner = CE()
    learner.setup(ctx)
    batch = next(iter(ctx.train_batches(0)))
    with ctx.autocast():
        out = learner.net(ctx.to_input(batch.views[0]))
    assert out.dtype == torch.bfloat16
    every = np.arange(len(digits.labels))
    acc = {
        amp: Trainer(CE(), _ctx(digits, epochs=4, amp=amp, indices=every)).fit().last_acc
        for amp in (False, "bf16")
    }
    assert acc["bf16"] > 60 and abs(acc["bf16"] - acc[False]) < 8, acc  # same seed, schedule


# ----------------------------------------------------------------------------------
# Checkpoints across devices
# ----------------------------------------------------------------------------------
def test_scaler_state_from_another_device_is_handled(digits):
    """CPU/bf16 runs save an empty scaler state; CUDA float16 runs a filled one."""
    ctx = _ctx(digits)
    ctx.load_scaler_state({"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                           "growth_interval": 2000, "_growth_tracker": 3})  # fmt: skip
    assert not ctx.scaler.is_enabled() and ctx.scaler.state_dict() == {}
    ctx.scaler = torch.amp.GradScaler("cpu", init_scale=8.0)  # stands in for CUDA fp16
    with pytest.raises(RuntimeError, match="empty"):
        ctx.scaler.load_state_dict({})  # what crashed a CPU-started run resumed on CUDA
    ctx.load_scaler_state({})  # starts afresh instead
    assert ctx.scaler.get_scale() == 8.0
    filled = torch.amp.GradScaler("cpu", init_scale=64.0).state_dict()
    ctx.load_scaler_state(filled)
    assert ctx.scaler.get_scale() == 64.0


def test_checkpoint_resumes_to_the_same_weights(digits, tmp_path):
    """Resume reads every tensor onto the context's device (``map_location``)."""
    ck = tmp_path / "checkpoint.pt"
    full = Trainer(SOP(ratio_balance=0.1), _ctx(digits, epochs=2)).fit()

    def stop(row):
        raise KeyboardInterrupt  # killed after the checkpoint of epoch 0

    first = Trainer(SOP(ratio_balance=0.1), _ctx(digits, epochs=2), checkpoint=ck, on_epoch=stop)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    state = load_checkpoint(ck)
    assert state["scaler"] == {}
    assert not any(k.startswith("module.") for k in state["learner"]["net"])
    learner = SOP(ratio_balance=0.1)
    resumed = Trainer(learner, _ctx(digits, epochs=2), checkpoint=ck).fit(resume=True)
    assert resumed.last_acc == full.last_acc
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]


# ----------------------------------------------------------------------------------
# Batches on the device
# ----------------------------------------------------------------------------------
def test_in_memory_batches_are_a_function_of_seed_and_epoch(digits):
    ctx = _ctx(digits)
    a = list(ctx.train_batches(3, ("weak", "weak")))
    b = list(ctx.train_batches(3, ("weak", "weak")))
    c = list(ctx.train_batches(4, ("weak", "weak")))
    assert all(torch.equal(x.views[1], y.views[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0].positions, c[0].positions)
    assert not torch.equal(a[0].views[0], a[0].views[1])  # two draws of the weak view
    assert all(v.device == ctx.device for batch in a for v in [*batch.views, batch.positions])


def _image_files(folder, n=12):
    from torchvision.io import write_png

    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        write_png(torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8, generator=g), str(p))
        paths.append(str(p))
    return paths


def test_file_loaders_persist_across_passes_and_batches_do_not_depend_on_workers(
    tmp_path, monkeypatch
):
    from torchvision.transforms import v2

    from deep_core.datasets.base import FileImageSet

    weak = v2.Compose([v2.RandomCrop(8), v2.ToDtype(torch.float32, scale=True)])
    clean = v2.Compose([v2.CenterCrop(8), v2.ToDtype(torch.float32, scale=True)])
    paths = _image_files(tmp_path)
    created = []
    real = torch.utils.data.DataLoader

    class Counting(real):
        def __init__(self, *a, **k):
            created.append(k["num_workers"])
            super().__init__(*a, **k)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Counting)

    def epoch(images, e, workers):
        """A DivideMix-like epoch: two interleaved passes, then an evaluation pass."""
        kw = dict(batch_size=4, shuffle=True, seed=1, epoch=e, workers=workers)
        unl = images.batches(views=("weak", "weak"), **kw)
        out = []
        for b in images.batches(views=("weak",), **kw):
            out += [b.views[0], next(unl).views[1]]
        del unl  # abandoned mid-pass, as DivideMix's endless unlabeled stream
        out += [b.views[0] for b in images.batches(batch_size=5, workers=workers)]
        return out

    with_workers = FileImageSet(paths, {"weak": weak, "clean": clean}, (3, 8, 8))
    a = [epoch(with_workers, e, 1) for e in range(3)]
    assert created == [1, 1]  # two loaders (the interleaved passes), kept for 3 epochs
    b = [epoch(FileImageSet(paths, {"weak": weak, "clean": clean}, (3, 8, 8)), e, 0)
         for e in range(3)]  # fmt: skip
    assert all(torch.equal(x, y) for ea, eb in zip(a, b) for x, y in zip(ea, eb))
    assert not torch.equal(a[0][0], a[1][0])  # a new draw each epoch
