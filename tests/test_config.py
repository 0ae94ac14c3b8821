"""RunConfig is composed of the parts it hands on, each field declared once; the flat form
(config.yaml, --config, flags) is unchanged; the rank policy of deep_core.distributed."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from deep_core import distributed
from deep_core.checks import check_run_config
from deep_core.config import (
    FLAT_ALIASES,
    PARTS,
    DataConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    dump_yaml,
)
from deep_core.errors import DeepCoreError
from deep_core.rundir import run_name, settings_hash

#: ``config.yaml`` of a run written before RunConfig was composed of its parts (keys in
#: that version's order), with the run name that version gave it
OLD_CONFIG = """\
dataset: Digits
data_path: null
noise_type: sym
noise_rate: 0.4
n_train: 200
n_class: null
download: false
image_size: null
model: null
pre_trained: false
model_path: null
selection: SmallLoss
fraction: 0.5
selection_epochs: 1
protocol: reference
warmup_schedule: null
signal_view: auto
warmup_model: null
method_options: {}
signals_cache: null
robust_learner: CE
learner_options: {}
epochs: 2
batch_size: 64
test_batch_size: 256
optimizer: SGD
lr: 0.02
min_lr: 0.0001
momentum: 0.9
weight_decay: 0.0005
nesterov: true
scheduler: CosineAnnealingLR
milestone: null
gamma: 0.1
step_size: 100
budget: epochs
budget_value: null
seed: 0
num_exp: 1
device: cpu
workers: 0
out_dir: runs
save_log: false
dry_run: false
deterministic: false
amp: true
channels_last: true
progress: false
reference_flags: {}
"""
OLD_NAME = "Digits_CE_SmallLoss_sym0.4_fr0.5_s0_86e1bf"


def _declared(cls: type) -> set[str]:
    """The fields ``cls`` declares itself (not inherited)."""
    return set(getattr(cls, "__annotations__", {})) & {f.name for f in dataclasses.fields(cls)}


def test_no_field_is_declared_twice():
    own = _declared(RunConfig) - set(PARTS)
    parts = {name: _declared(cls) for name, cls in PARTS.items()}
    for name, fields in parts.items():
        assert not own & fields, f"RunConfig re-declares {sorted(own & fields)} of {name}"
    # between the parts only the seed is shared: the run's one seed, which the data (its
    # synthetic noise) and the training (every draw) both take
    assert parts["data"] & parts["optim"] == set()
    assert parts["optim"] & parts["train"] == set()
    assert parts["data"] & parts["train"] == {"seed"}
    flat = RunConfig.field_names()
    assert len(flat) == len(set(flat))
    flat_name = {field: name for name, field in FLAT_ALIASES.items()}
    assert set(flat) == own | {flat_name.get(k, k) for k in set().union(*parts.values())}
    assert not (set(FLAT_ALIASES) & set().union(own, *parts.values()))


def test_a_config_yaml_of_an_earlier_version_loads_to_the_same_run():
    cfg = RunConfig.from_dict(yaml.safe_load(OLD_CONFIG))
    assert run_name(cfg, 0) == OLD_NAME
    assert cfg.to_dict() == yaml.safe_load(OLD_CONFIG)
    assert RunConfig.from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg
    assert settings_hash(cfg) == OLD_NAME.rsplit("_", 1)[1]


def test_the_run_defaults_that_differ_from_the_parts_survive():
    cfg = RunConfig()
    assert cfg.epochs == cfg.train.epochs == 200
    assert cfg.device == cfg.train.device == "auto"
    assert TrainConfig(epochs=1).device == "cpu"
    with pytest.raises(TypeError):
        TrainConfig()  # the engine's epochs have no default
    assert cfg.noise_rate == 0.4 and DataConfig().noise_rate == 0.0
    assert RunConfig(dataset="CIFAR10").noise_rate == 0.0
    assert RunConfig(noise_type="clean").noise_rate == 0.0
    assert RunConfig(noise_rate=None).noise_rate == 0.4
    assert RunConfig(noise_rate=0.1).noise_rate == 0.1
    # a resolved rate stays with the config when other settings change
    assert replace(cfg, dataset="CIFAR10").noise_rate == 0.4
    assert replace(cfg, dataset="CIFAR10", noise_rate=None).noise_rate == 0.0
    for part, cls in (("optim", OptimConfig), ("data", DataConfig)):
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        got = getattr(cfg, part).__dict__
        assert {k: v for k, v in got.items() if k != "noise_rate"} == {
            k: v for k, v in defaults.items() if k != "noise_rate"
        }


def test_flat_and_part_views_agree():
    cfg = RunConfig(lr=0.1, epochs=3, milestone=[2, 5], seed=4, dataset="CIFAR10", workers=2)
    assert (cfg.lr, cfg.optim.lr) == (0.1, 0.1)
    assert cfg.milestone == cfg.optim.milestones == [2, 5]
    assert cfg.seed == cfg.data.seed == cfg.train.seed == 4
    assert (cfg.dataset, cfg.workers) == (cfg.data.dataset, cfg.train.workers)
    again = replace(cfg, epochs=12, momentum=0.5)
    assert (again.train.epochs, again.optim.momentum, again.lr) == (12, 0.5, 0.1)
    # flat settings override a given part's field
    mixed = RunConfig(optim=OptimConfig(lr=1.0, gamma=0.5), lr=2.0)
    assert (mixed.lr, mixed.gamma) == (2.0, 0.5)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_unknown_and_ill_typed_settings_are_errors():
    with pytest.raises(TypeError, match="milestones"):
        RunConfig(milestones=[1])  # the part's name; the flat one is ``milestone``
    with pytest.raises(DeepCoreError, match="unknown keys in f.yaml: lr_x"):
        RunConfig.from_dict({"lr_x": 1}, source="f.yaml")
    with pytest.raises(DeepCoreError, match="milestone must be a list of .*, got 5"):
        check_run_config(RunConfig(milestone=5))
    with pytest.raises(DeepCoreError, match="lr must be a number"):
        check_run_config(RunConfig(lr="fast"))
    with pytest.raises(DeepCoreError, match="one seed"):
        RunConfig(data=DataConfig(seed=1), train=TrainConfig(epochs=1, seed=2))


def test_rank_policy_on_one_process():
    calls = []
    assert distributed.on_main(calls.append, 1) is None and calls == [1]
    assert distributed.from_main(lambda: {"subset": 3}) == {"subset": 3}

    def fail():
        raise DeepCoreError("taken")

    with pytest.raises(DeepCoreError, match="taken"):
        distributed.from_main(fail)


RANKS_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from deep_core import distributed
    from deep_core.errors import DeepCoreError

    distributed.init(torch.device("cpu"))
    rank = distributed.rank()
    ran = []
    distributed.on_main(ran.append, rank)
    shared = distributed.from_main(lambda: {"chosen_by": distributed.rank()})

    def fail():
        raise DeepCoreError("run directory taken")

    try:
        distributed.from_main(fail)
        outcome = "no error"
    except DeepCoreError as e:
        outcome = str(e)
    line = f"rank {rank}: ran {ran} shared {shared['chosen_by']} error {outcome}"
    with open(f"{sys.argv[1]}/rank{rank}.txt", "w") as f:  # a file each: no interleaving
        f.write(line)
    distributed.finish()
""")


def test_rank_policy_under_two_processes(tmp_path):
    """on_main runs on rank 0 only; from_main hands rank 0's result, or its error, to all."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", str(script), str(tmp_path)]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert lines == [
        "rank 0: ran [0] shared 0 error run directory taken",
        "rank 1: ran [] shared 0 error run directory taken",
    ]
