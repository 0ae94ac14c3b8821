"""The engine on a CUDA device (``pytest -m cuda``; skipped without a GPU).

``benchmarks/gpu_check.sh`` runs these first on a GPU machine. They check what a CPU run
cannot: a training step queues work without waiting for the GPU
(``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call into an
error), in-memory data lives on the GPU, AMP picks bfloat16 where supported, and a run
moves between CPU and CUDA through its checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import json

import numpy as np
import pytest
import torch

from deep_core.cli.run import main
from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import OptimConfig, TrainConfig, TrainContext, Trainer
from deep_core.signals.recorder import _EpochRecorder
from robust_learners.ce import CE
from robust_learners.dividemix import DivideMix
from robust_learners.sop import SOP

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@contextlib.contextmanager
def no_sync():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))


def _ctx(ds, *, epochs=2, amp=True, recorder=None):
    return TrainContext(
        ds,
        np.arange(0, len(ds.labels), 2),
        TrainConfig(epochs=epochs, batch_size=64, device="cuda", amp=amp, progress=False),
        OptimConfig(lr=0.05),
        model="SmallCNN",
        recorder=recorder,
    )


@pytest.mark.parametrize(
    "make, steps",
    [
        (CE, ("train_step",)),
        (lambda: SOP(ratio_consistency=0.9, ratio_balance=0.1), ("train_step",)),
        (lambda: DivideMix(warmup_epochs=1), ("warmup_step", "mixmatch_step")),
    ],
    ids=["CE", "SOP+", "DivideMix"],
)
def test_a_training_step_does_not_wait_for_the_gpu(digits, monkeypatch, make, steps):
    learner = make()
    calls = []
    for name in steps:
        original = getattr(type(learner), name)

        @functools.wraps(original)
        def guarded(self, *args, _original=original, **kwargs):
            calls.append(1)
            with no_sync():
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(type(learner), name, guarded)
    recorder = _EpochRecorder(torch.as_tensor(digits.labels, device="cuda"), 2)
    ctx = _ctx(digits, recorder=recorder)
    result = Trainer(learner, ctx, evaluate_each_epoch=False).fit()
    assert calls and np.isfinite(result.history[-1]["train_loss"])
    assert recorder.losses.is_cuda


def test_in_memory_data_and_batches_live_on_the_gpu(digits):
    ctx = _ctx(digits)
    batch = next(iter(ctx.train_batches(0, ("weak", "strong"))))
    assert batch.positions.is_cuda and all(v.is_cuda for v in batch.views)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert ctx.amp_dtype is expected
    assert torch.backends.cudnn.benchmark


def test_making_a_weak_batch_does_not_wait_for_the_gpu(digits):
    it = iter(_ctx(digits).train_batches(0, ("weak", "weak")))
    next(it)  # the pass's one copy: its order to the device
    with no_sync():
        batch = next(it)
    assert batch.views[0].is_cuda


@pytest.mark.parametrize("first, second", [("cpu", "cuda"), ("cuda", "cpu")])
def test_resume_moves_between_cpu_and_cuda(tmp_path, monkeypatch, first, second):
    """A run interrupted on one device finishes on the other."""
    args = ["--epochs", "3", "-b", "64", "--lr", "0.05", "--progress", "False",
            "--out-dir", str(tmp_path)]  # fmt: skip
    original = CE.train_epoch

    def stop_at_2(self, ctx, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, ctx, epoch)

    monkeypatch.setattr(CE, "train_epoch", stop_at_2)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--device", first])
    monkeypatch.setattr(CE, "train_epoch", original)
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "signals-cache"]
    assert main(["--resume", str(run), "--device", second]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["last_acc"] is not None


def test_float16_scaler_starts_afresh_from_a_cpu_checkpoint(digits):
    """The crash this replaces: an empty (CPU) scaler state loaded into a CUDA fp16 one."""
    ctx = _ctx(digits, amp="fp16")
    assert ctx.scaler.is_enabled()
    ctx.load_scaler_state({})
    assert ctx.scaler.get_scale() == torch.amp.GradScaler("cuda").get_scale()
