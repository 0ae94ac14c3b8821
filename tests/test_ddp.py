"""DDP under ``torchrun`` with two CPU processes (gloo).

* The learners: CE, SOP+ and DivideMix end with the same weights and the same reduced
  metrics on both ranks; the warm-up recorder records every sample exactly once per
  epoch although the sample count is odd (one padding sample per epoch).
* The CLI: ``torchrun main_label_noise.py`` makes one run directory, written by rank 0,
  and (slow) a run interrupted under ``torchrun`` resumes there (``--resume``) to the
  same metrics and weights as the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed unavailable"
)

WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    from deep_core import distributed
    from deep_core.datasets import DataConfig, load_dataset
    from deep_core.engine import OptimConfig, TrainConfig, TrainContext, Trainer
    from deep_core.signals.recorder import WarmupConfig, record_member
    from robust_learners.ce import CE
    from robust_learners.dividemix import DivideMix
    from robust_learners.sop import SOP

    torch.set_num_threads(1)
    out = sys.argv[1]
    ds = load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))
    subset = np.arange(0, len(ds.labels), 3)
    for name, learner in [("ce", CE()),
                          ("sop", SOP(ratio_consistency=0.9, ratio_balance=0.1)),
                          ("dividemix", DivideMix(warmup_epochs=1))]:
        ctx = TrainContext(ds, subset, TrainConfig(epochs=2, batch_size=32, progress=False),
                           OptimConfig(lr=0.05), model="SmallCNN")
        result = Trainer(learner, ctx).fit()
        nets = learner.networks()
        params = torch.cat([p.detach().flatten() for n in nets for p in n.parameters()])
        extra = {}
        if name == "sop":
            extra = {"u": learner.u.detach().double().sum().item(),
                     "v": learner.v.detach().double().abs().sum().item()}
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
        with open(f"{out}/{name}-{ctx.rank}.json", "w") as f:
            json.dump({"world": ctx.world_size, "rows": rows,
                       "params": params.double().sum().item(),
                       "params_sq": params.double().pow(2).sum().item(), **extra}, f)
    train = TrainConfig(epochs=2, batch_size=32, progress=False)
    wcfg = WarmupConfig(data_key={}, learner="CE", model="SmallCNN", epochs=2, train=train,
                        optim=OptimConfig(lr=0.05))
    arrays, _ = record_member(ds, CE(), wcfg, 0)
    np.savez(f"{out}/warmup-{distributed.rank()}.npz", losses=arrays["losses"],
             correct=arrays["correct"], margins=arrays["margins"])
    distributed.finish()
""")

# Stops a run under torchrun after the checkpoint of epoch 1 (on every rank).
INTERRUPT = textwrap.dedent("""
    import sys
    from deep_core import distributed
    from deep_core.cli.run import main
    from robust_learners.ce import CE

    original = CE.train_epoch

    def train_epoch(self, ctx, epoch):
        if epoch == 2:
            distributed.barrier()  # rank 0 has written the checkpoint of epoch 1
            raise SystemExit(3)
        return original(self, ctx, epoch)

    CE.train_epoch = train_epoch
    sys.exit(main(sys.argv[1:]))
""")


def _torchrun(script: str | Path, *args: str, cwd: Path | None = None):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(script),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_learners_and_warm_up_under_torchrun_with_two_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = _torchrun(script, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("ce", "sop", "dividemix"):
        r0, r1 = (json.loads((tmp_path / f"{name}-{r}.json").read_text()) for r in (0, 1))
        assert r0["world"] == r1["world"] == 2
        assert r0 == r1, name  # same weights, same u and v, same reduced metrics
        assert len(r0["rows"]) == 2 and all("test_acc" in row for row in r0["rows"])
        assert all("train_loss" in row for row in r0["rows"])
    dm = json.loads((tmp_path / "dividemix-0.json").read_text())["rows"][1]
    assert 0 < dm["labeled_1"] < 450 and 0 <= dm["auroc_1"] <= 1
    w0, w1 = (np.load(tmp_path / f"warmup-{r}.npz") for r in (0, 1))
    for k in ("losses", "correct", "margins"):
        assert np.array_equal(w0[k], w1[k]), k
    # 1,347 samples on 2 ranks: one padding sample per epoch, recorded by neither rank
    # (a sample recorded by no rank has loss 0; by two ranks, twice its loss)
    assert w0["losses"].shape == (1347, 2) and (w0["losses"] > 0).all()
    assert np.abs(w0["margins"]).max() < 50


CLI = [
    "--device", "cpu", "--progress", "False", "--noise-rate", "0.4", "-se", "2",
    "--epochs", "3", "-b", "64", "--lr", "0.05", "--selection", "SmallLoss",
    "--fraction", "0.5",
]  # fmt: skip


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir() and p.name != "signals-cache"]
    assert len(runs) == 1, runs
    return runs[0]


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _full_run(out: Path) -> tuple[Path, dict, list[dict]]:
    proc = _torchrun(REPO / "main_label_noise.py", *CLI, "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _only_run(out)  # one run directory, although two processes started the run
    return run, json.loads((run / "summary.json").read_text()), _rows(run)


def test_cli_under_torchrun_makes_one_run_directory(tmp_path):
    run, summary, rows = _full_run(tmp_path)
    assert summary["subset_size"] == 674 and summary["last_acc"] is not None
    assert [r["epoch"] for r in rows if r.get("phase") != "warmup"] == [0, 1, 2]
    assert all("train_loss" in r and "train_acc" in r for r in rows)
    # the warm-up recorded all 1,347 samples in both epochs (once each)
    (entry,) = [p for p in (tmp_path / "signals-cache").iterdir() if p.is_dir()]
    assert (np.load(entry / "losses.npy") > 0).all()


@pytest.mark.slow
def test_cli_resume_under_torchrun(tmp_path):
    run_a, summary, rows = _full_run(tmp_path / "a")
    stop = tmp_path / "interrupt.py"
    stop.write_text(INTERRUPT)
    proc = _torchrun(stop, *CLI, "--out-dir", str(tmp_path / "b"))
    assert proc.returncode != 0
    run_b = _only_run(tmp_path / "b")
    assert not (run_b / "summary.json").exists()
    assert [r["epoch"] for r in _rows(run_b) if r.get("phase") != "warmup"] == [0, 1]
    proc = _torchrun(REPO / "main_label_noise.py", "--resume", str(run_b), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(run_b) == rows
    resumed = json.loads((run_b / "summary.json").read_text())
    assert resumed["last_acc"] == summary["last_acc"]
    a = torch.load(run_a / "checkpoint.pt", weights_only=True)["learner"]["net"]
    b = torch.load(run_b / "checkpoint.pt", weights_only=True)["learner"]["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(k.startswith("module.") for k in a)  # loadable without DDP too
