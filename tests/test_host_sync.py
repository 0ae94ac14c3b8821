"""A training step never reads a tensor back to the host (checked on CPU, so in CI).

On a GPU every such read (``.item()``, ``.cpu()``, ``bool(t)``...) waits for the device
to finish the queued work, so a step that makes one keeps the GPU idle between steps.
The guard below makes every read raise for the duration of a step: one optimisation
step on one batch, the warm-up recorder included. Producing the batch (data loading)
and per-epoch work (metrics, DivideMix's co-divide) are outside a step and may read.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pytest
import torch

from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import OptimConfig, TrainConfig, TrainContext, Trainer
from deep_core.signals.recorder import _EpochRecorder
from robust_learners.ce import CE
from robust_learners.dividemix import DivideMix
from robust_learners.sop import SOP

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


class HostRead(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads():
    """Make every read of a tensor's values by the host raise :class:`HostRead`."""
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostRead(f"Tensor.{name}() read a tensor back to the host during a step")

        return read

    for name in READS:
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def guard_steps(monkeypatch, cls, names, counter):
    """Run ``cls.<name>`` (each step method) under :func:`no_host_reads`, counting calls."""
    for name in names:
        original = getattr(cls, name)

        @functools.wraps(original)
        def guarded(self, *args, _original=original, _name=name, **kwargs):
            counter[_name] = counter.get(_name, 0) + 1
            with no_host_reads():
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, guarded)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))


def _fit(learner, ds, *, epochs, recorder=None):
    ctx = TrainContext(
        ds,
        np.arange(0, len(ds.labels), 4),
        TrainConfig(epochs=epochs, batch_size=64, progress=False),
        OptimConfig(lr=0.05),
        model="SmallCNN",
        recorder=recorder,
    )
    return Trainer(learner, ctx, evaluate_each_epoch=False).fit(), ctx


def test_the_guard_catches_every_kind_of_read():
    t = torch.ones(2)
    with no_host_reads():
        for read in (
            lambda: t.sum().item(),
            lambda: t.tolist(),
            lambda: t.cpu(),
            lambda: t.numpy(),
            lambda: bool(t[0]),
            lambda: float(t[0]),
            lambda: int(t[0]),
        ):
            with pytest.raises(HostRead):
                read()
    assert t.sum().item() == 2.0  # restored afterwards


@pytest.mark.parametrize(
    "make, steps",
    [
        (CE, ("train_step",)),
        (SOP, ("train_step",)),
        (lambda: SOP(ratio_consistency=0.9, ratio_balance=0.1), ("train_step",)),
        (lambda: DivideMix(warmup_epochs=1), ("warmup_step", "mixmatch_step")),
    ],
    ids=["CE", "SOP", "SOP+", "DivideMix"],
)
def test_a_training_step_makes_no_host_read(digits, monkeypatch, make, steps):
    learner = make()
    counter: dict[str, int] = {}
    guard_steps(monkeypatch, type(learner), steps, counter)
    result, _ = _fit(learner, digits, epochs=2)
    assert all(counter.get(s, 0) > 0 for s in steps), counter  # every step kind ran
    assert np.isfinite(result.history[-1]["train_loss"])


def test_the_warm_up_recorder_makes_no_host_read_and_stays_on_the_device(digits, monkeypatch):
    counter: dict[str, int] = {}
    guard_steps(monkeypatch, CE, ("train_step",), counter)
    guard_steps(monkeypatch, _EpochRecorder, ("__call__",), counter)
    labels = torch.as_tensor(digits.labels)
    recorder = _EpochRecorder(labels, 2)
    _, ctx = _fit(CE(), digits, epochs=2, recorder=recorder)
    assert counter["__call__"] == counter["train_step"] > 0
    seen = np.zeros(len(digits.labels), dtype=bool)
    seen[ctx.indices] = True
    arrays = recorder.to_numpy()
    assert (arrays["losses"][seen] > 0).all() and (arrays["losses"][~seen] == 0).all()
    assert arrays["correct"].dtype == np.bool_ and arrays["correct"][seen].any()


def test_a_syncing_step_is_caught(digits, monkeypatch):
    """The test above would fail if a step read a value (here CE's old ``loss.item()``)."""

    def old_step(self, ctx, batch, sums):
        y = ctx.labels[batch.positions]
        loss = torch.nn.functional.cross_entropy(self.net(ctx.to_input(batch.views[0])), y)
        ctx.step(loss, self.optimizer)
        loss.item()

    monkeypatch.setattr(CE, "train_step", old_step)
    guard_steps(monkeypatch, CE, ("train_step",), {})
    with pytest.raises(HostRead):
        _fit(CE(), digits, epochs=1)


@pytest.mark.parametrize(
    "make, steps",
    [
        (CE, ("train_step",)),
        (lambda: SOP(ratio_consistency=0.9, ratio_balance=0.1), ("train_step",)),
        (lambda: DivideMix(warmup_epochs=1), ("warmup_step", "mixmatch_step")),
    ],
    ids=["CE", "SOP+", "DivideMix"],
)
def test_a_dynamic_step_makes_no_host_read(digits, monkeypatch, make, steps):
    """InfoBatch's pruned epochs: per-sample loss weights and loss observation on the device."""
    from deep_core.methods import build_method

    method, _ = build_method("InfoBatch", {"ratio": 0.5})
    method.start(labels=digits.labels, num_classes=10, fraction=0.5, epochs=4, seed=0)
    learner = make()
    counter: dict[str, int] = {}
    guard_steps(monkeypatch, type(learner), steps, counter)
    ctx = TrainContext(
        digits,
        np.arange(len(digits.labels)),
        TrainConfig(epochs=3, batch_size=64, progress=False),
        OptimConfig(lr=0.05),
        model="SmallCNN",
        dynamic=method,
    )
    result = Trainer(learner, ctx, evaluate_each_epoch=False).fit()
    assert all(counter.get(s, 0) > 0 for s in steps), counter
    sizes = [r["subset_size"] for r in result.history]
    assert sizes[0] == len(digits.labels) > sizes[1]  # epoch 1 pruned, with weights 1/0.5
    assert np.isfinite(method.scores).all() and (method.scores != 3.0).any()
