"""Learners declare their checkpointed attributes; the engine saves and restores them.

A resumed run equals an uninterrupted one for every learner, and the checkpoint keys are
those the learners wrote by hand before (so earlier checkpoints still resume).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deep_core.datasets import DataConfig, load_dataset
from deep_core.engine import Learner, OptimConfig, TrainConfig, TrainContext, Trainer
from robust_learners.ce import CE
from robust_learners.dividemix import DivideMix
from robust_learners.sop import SOP

LEARNERS = {
    "CE": CE,
    "SOP+": lambda: SOP(ratio_consistency=0.9, ratio_balance=0.1),
    "DivideMix": lambda: DivideMix(warmup_epochs=1),
}


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0, n_train=240))


def _context(ds, epochs: int = 3, seed: int = 0) -> TrainContext:
    return TrainContext(
        ds,
        np.arange(len(ds.labels)),
        TrainConfig(epochs=epochs, batch_size=64, seed=seed, progress=False),
        OptimConfig(lr=0.05),
        model="SmallCNN",
    )


def _flat(state, prefix: str = "") -> dict[str, object]:
    if isinstance(state, dict):
        return {k: v for key, s in state.items() for k, v in _flat(s, f"{prefix}/{key}").items()}
    if isinstance(state, list | tuple):
        return {k: v for i, s in enumerate(state) for k, v in _flat(s, f"{prefix}/{i}").items()}
    return {prefix: state}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def _hand_written_state(learner: Learner) -> dict:
    """The checkpoint state as the learners wrote it by hand before the declarations."""
    if isinstance(learner, DivideMix):
        return {
            "nets": [n.state_dict() for n in learner.nets],
            "optimizers": [o.state_dict() for o in learner.optimizers],
            "schedulers": [s.state_dict() for s in learner.scheds],
        }
    state = {
        "net": learner.net.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "scheduler": learner.scheduler.state_dict(),
    }
    if isinstance(learner, SOP):
        state.update(
            u=learner.u.detach().clone(),
            v=learner.v.detach().clone(),
            optimizer_u=learner.optimizer_u.state_dict(),
            optimizer_v=learner.optimizer_v.state_dict(),
        )
    return state


@pytest.mark.parametrize("name", list(LEARNERS))
def test_resume_equals_an_uninterrupted_run(tmp_path, digits, name):
    """Stopped after epoch 1 (DivideMix: its first co-divide epoch), resumed to epoch 3."""
    make = LEARNERS[name]
    full = make()
    ref = Trainer(full, _context(digits), checkpoint=tmp_path / "a.pt").fit()

    def stop(row):
        if row["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        Trainer(make(), _context(digits), checkpoint=tmp_path / "b.pt", on_epoch=stop).fit()
    resumed = make()
    res = Trainer(resumed, _context(digits), checkpoint=tmp_path / "b.pt").fit(resume=True)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(res.history) == strip(ref.history)
    a, b = _flat(full.state_dict()), _flat(resumed.state_dict())
    assert a.keys() == b.keys()
    for k in a:
        assert _equal(a[k], b[k]), k


@pytest.mark.parametrize("name", list(LEARNERS))
def test_checkpoint_keys_are_those_written_by_hand_before(digits, name):
    learner = LEARNERS[name]()
    learner.setup(_context(digits, epochs=2))
    new, old = _flat(learner.state_dict()), _flat(_hand_written_state(learner))
    assert new.keys() == old.keys()
    for k in new:
        assert _equal(new[k], old[k]), k
    # a state written the earlier way loads into a learner initialised otherwise
    fresh = LEARNERS[name]()
    fresh.setup(_context(digits, epochs=2, seed=1))
    assert not all(_equal(v, _flat(fresh.state_dict())[k]) for k, v in new.items())
    fresh.load_state_dict(_hand_written_state(learner))
    assert all(_equal(v, _flat(fresh.state_dict())[k]) for k, v in new.items())


def test_a_learner_that_declares_nothing_has_an_empty_state(digits):
    class Plain(CE):
        checkpointed = ()

    learner = Plain()
    learner.setup(_context(digits, epochs=1))
    assert learner.state_dict() == {}
    learner.load_state_dict({})
