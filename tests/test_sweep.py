"""deepcore-sweep: grid expansion, local and Ray engines against direct runs, kills, skips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deep_core.cli import run as run_cli
from deep_core.cli import sweep as sweep_cli
from deep_core.errors import DeepCoreError
from deep_core.locks import FolderLock
from deep_core.sweep import (
    Cell,
    LocalEngine,
    attempt_command,
    expand_grid,
    plan,
    read_grid,
)

REPO = Path(__file__).resolve().parents[1]

# 4 short Digits runs: 2 methods x 2 fractions sharing one cached warm-up
GRID = """\
flags:
  epochs: 8
  se: 1
  n-train: 300
  progress: false
grid:
  fraction: [0.3, 0.6]
  selection: [Uniform, {selection: SmallLoss, balance: true}]
"""


def test_expand_grid_order_values_and_flags():
    cells = expand_grid(
        flags={"protocol": "reference", "se": 10, "milestone": [5, 7], "dry-run": True},
        grid={"fraction": [0.2, 0.4], "selection": ["Uniform", {"selection": "SmallLoss",
                                                              "balance": True}]},
        extra_argv=["--n-train", "100"],
    )  # fmt: skip
    fixed = ["--protocol", "reference", "-se", "10", "--milestone", "5", "7", "--dry-run", "True"]
    assert [c.argv for c in cells] == [
        (*fixed, "--fraction", "0.2", "--selection", "Uniform", "--n-train", "100"),
        (*fixed, "--fraction", "0.2", "--selection", "SmallLoss", "--balance", "True",
         "--n-train", "100"),
        (*fixed, "--fraction", "0.4", "--selection", "Uniform", "--n-train", "100"),
        (*fixed, "--fraction", "0.4", "--selection", "SmallLoss", "--balance", "True",
         "--n-train", "100"),
    ]  # fmt: skip
    assert cells[1].label == "fraction=0.2 selection=SmallLoss balance=True"
    assert expand_grid(flags={"seed": 1}, grid={}) == [Cell(("--seed", "1"), "")]


def test_expand_grid_rejects_unknown_and_sweep_owned_flags(tmp_path):
    with pytest.raises(DeepCoreError, match="no option --fractoin"):
        expand_grid(flags={}, grid={"fractoin": [0.1]})
    for owned in ("out-dir", "device", "gpu", "resume", "skip-complete"):
        with pytest.raises(DeepCoreError, match="set by deepcore-sweep"):
            expand_grid(flags={owned: "x"}, grid={})
    with pytest.raises(DeepCoreError, match="needs a value"):
        expand_grid(flags={"seed": None}, grid={})
    bad = tmp_path / "g.yaml"
    bad.write_text("grid:\n  seed: 3\n")
    with pytest.raises(DeepCoreError, match="non-empty list"):
        read_grid(bad)
    bad.write_text("flag:\n  seed: 3\n")
    with pytest.raises(DeepCoreError, match="unknown key"):
        read_grid(bad)
    # a cell deepcore-run refuses fails before anything runs, naming the cell
    cells = expand_grid(flags={}, grid={"fraction": [0.5, 1.5]})
    with pytest.raises(DeepCoreError, match="fraction=1.5"):
        plan(cells, out_dir=tmp_path / "out")
    with pytest.raises(DeepCoreError, match="same run"):
        plan(expand_grid(flags={}, grid={"seed": [1, 1]}), out_dir=tmp_path / "out")
    # flags after -- go through the same checks
    with pytest.raises(DeepCoreError, match="set by deepcore-sweep"):
        plan(expand_grid(flags={}, grid={}, extra_argv=["--device", "cpu"]),
             out_dir=tmp_path / "out")  # fmt: skip


def _cells(tmp_path: Path) -> list[Cell]:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    flags, axes = read_grid(grid)
    return expand_grid(flags=flags, grid=axes)


def _results(out: Path) -> dict[str, dict]:
    """Run name → summary (without timings and versions) and subset indices."""
    found = {}
    for d in sorted(p for p in out.iterdir() if (p / "config.yaml").is_file()):
        summary = json.loads((d / "summary.json").read_text())
        for k in [k for k in summary if k.endswith("_seconds") or k == "versions"]:
            del summary[k]
        with np.load(d / "subset.npz") as z:
            summary["indices"] = z["indices"].tolist()
        found[d.name] = summary
    return found


@pytest.fixture(scope="module")
def direct(tmp_path_factory) -> dict[str, dict]:
    """The grid's runs launched one by one (deepcore-run, one thread as in the sweep)."""
    tmp = tmp_path_factory.mktemp("direct")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cell in _cells(tmp):
            argv = [*cell.argv, "--out-dir", str(tmp / "out"), "--device", "cpu"]
            assert run_cli.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    results = _results(tmp / "out")
    assert len(results) == 4
    return results


class Killer(threading.Thread):
    """Kills, once, the process training a run (or its parent) after its first checkpoint."""

    def __init__(self, out: Path, *, parent: bool) -> None:
        super().__init__(daemon=True)
        self.out, self.parent, self.killed = out, parent, None
        self.orphan_ended: bool | None = None  # the run's process, once its parent was killed
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            for d in self.out.glob("Digits_*"):
                if (d / "checkpoint.pt").is_file() and not (d / "summary.json").is_file():
                    self._kill(d)
            time.sleep(0.02)

    def _kill(self, run: Path) -> None:
        owner = (run / ".lock").read_text().split()
        if len(owner) < 4:
            return
        run_pid = pid = int(owner[3])
        if self.parent:  # the Ray worker that started the run
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.killed = run.name
        if self.parent:
            self.orphan_ended = _ends(run_pid, within=20.0)


def _ends(pid: int, *, within: float) -> bool:
    """True if process ``pid`` is gone (or a zombie) within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_local_sweep_matches_direct_runs_resumes_a_killed_run_and_skips(tmp_path, direct,
                                                                        capsys):  # fmt: skip
    out = tmp_path / "out"
    (tmp_path / "grid.yaml").write_text(GRID)
    killer = Killer(out, parent=False)
    killer.start()
    code = sweep_cli.main([str(tmp_path / "grid.yaml"), "--out-dir", str(out),
                           "--engine", "local", "--jobs", "2", "--cpus-per-run", "1"])  # fmt: skip
    killer.stop.set()
    err = capsys.readouterr().err
    assert code == 0, err
    assert killer.killed is not None
    assert f"retry {killer.killed}: killed by signal SIGKILL" in err
    log = (out / "sweep-logs" / f"{killer.killed}.log").read_text()
    assert "resuming interrupted run" in log
    assert _results(out) == direct
    # a second pass finds every run complete and starts nothing
    code = sweep_cli.main([str(tmp_path / "grid.yaml"), "--out-dir", str(out),
                           "--engine", "local", "--report"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and "4 complete run(s) skipped" in err and "start " not in err
    assert "| SmallLoss |" in (out / "report.md").read_text()


def test_a_run_held_by_another_process_is_waited_for(tmp_path):
    (job,) = plan(expand_grid(flags={"n-train": 100}, grid={}), out_dir=tmp_path)
    assert not job.held_elsewhere()
    job.run_dirs[0].mkdir()
    with FolderLock(job.run_dirs[0]):
        # another process's lock (flock locks are per open file, so this one counts)
        assert job.held_elsewhere()
    assert not job.held_elsewhere()


def test_ray_sweep_with_a_killed_worker_matches_direct_runs(tmp_path, direct):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    (tmp_path / "grid.yaml").write_text(GRID)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killer = Killer(out, parent=True)
    killer.start()
    res = subprocess.run(
        # relative paths: a task's run reads them from the sweep's folder
        [sys.executable, "-m", "deep_core.cli.sweep", "grid.yaml", "--out-dir", "out",
         "--engine", "ray", "--jobs", "2", "--cpus-per-run", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    killer.stop.set()
    assert res.returncode == 0, res.stderr[-3000:]
    assert killer.killed is not None
    assert f"retry {killer.killed}: Ray task failed" in res.stderr
    assert killer.orphan_ended  # the run died with its worker: no second trainer behind it
    assert "wait " not in res.stderr
    log = (out / "sweep-logs" / f"{killer.killed}.log").read_text()
    assert "resuming interrupted run" in log
    assert _results(out) == direct


def test_attempt_commands():
    cmd = attempt_command(["--seed", "1"], out_dir="o", gpus_per_run=0, python="py")
    assert cmd == ["py", "-m", "deep_core.cli.run", "--seed", "1", "--out-dir", "o",
                   "--device", "cpu", "--skip-complete", "True"]  # fmt: skip
    assert attempt_command([], out_dir="o", gpus_per_run=1, python="py")[6] == "cuda:0"
    ddp = attempt_command([], out_dir="o", gpus_per_run=4, python="py")
    assert ddp[:7] == ["py", "-m", "torch.distributed.run", "--standalone",
                       "--nproc_per_node", "4", "-m"]  # fmt: skip
    assert ddp[ddp.index("--device") + 1] == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_gpu_runs_without_a_gpu_are_an_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(DeepCoreError, match="0 GPU"):
        LocalEngine(gpus_per_run=1, cpus_per_run=1)


def test_help_loads_neither_torch_nor_ray():
    code = (
        "import sys\n"
        "from deep_core.cli.sweep import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)  # fmt: skip
    assert res.stdout.strip().splitlines()[-1] == "[]"
