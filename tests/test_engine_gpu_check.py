"""``benchmarks/gpu_check.sh`` runs end to end on CPU with tiny sizes and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.shared
def test_gpu_check_runs_on_cpu_with_tiny_sizes(cifar10_root, tmp_path):
    out = tmp_path / "check"
    cmd = ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu",
           "--data", str(cifar10_root), "--out", str(out), "--n-train", "256",
           "--model", "ResNet8", "--batch-size", "32", "--steps", "2", "--epochs", "1",
           "--selection-epochs", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["cuda_tests"]["exit_code"] == 0  # skipped without a GPU, none failed
    figures = report["throughput"]
    assert set(figures["learners"]) == {"CE", "SOP+", "DivideMix"}
    assert all(v["samples_per_s"] > 0 for v in figures["learners"].values())
    assert set(figures["pipeline"]) == {"weak", "weak+strong"}
    assert set(report["cell"]) == {"Prune4Rel", "Uniform"}
    for cell in report["cell"].values():
        assert cell["subset_size"] == 51 and cell["last_acc"] is not None
