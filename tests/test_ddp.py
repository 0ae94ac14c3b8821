"""SOP+ and DivideMix under ``torchrun`` with two CPU processes (gloo): both ranks agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    from deep_core.datasets import DataConfig, load_dataset
    from deep_core.engine import OptimConfig, TrainConfig, TrainContext, Trainer, finish_distributed
    from robust_learners.dividemix import DivideMix
    from robust_learners.sop import SOP

    torch.set_num_threads(1)
    out = sys.argv[1]
    ds = load_dataset(DataConfig(noise_type="sym", noise_rate=0.4, seed=0))
    subset = np.arange(0, len(ds.labels), 3)
    for name, learner in [("sop", SOP(ratio_consistency=0.9, ratio_balance=0.1)),
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
    finish_distributed()
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_sop_plus_and_dividemix_under_torchrun_with_two_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("sop", "dividemix"):
        r0, r1 = (json.loads((tmp_path / f"{name}-{r}.json").read_text()) for r in (0, 1))
        assert r0["world"] == r1["world"] == 2
        assert r0 == r1, name  # same weights, same u and v, same gathered metrics
        assert len(r0["rows"]) == 2 and all("test_acc" in row for row in r0["rows"])
    dm = json.loads((tmp_path / "dividemix-0.json").read_text())["rows"][1]
    assert 0 < dm["labeled_1"] < 450 and 0 <= dm["auroc_1"] <= 1
