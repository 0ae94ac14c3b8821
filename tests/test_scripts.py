"""scripts/*.sh: syntax, the commands they issue, fail-fast, resume, and a real quickstart."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deep_core.cli.run import build_parser, config_from_args
from deep_core.runner import validate
from deep_core.sweep import expand_grid, read_grid

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
PAPER = ["cifar10n_sop", "cifar10n_dividemix", "cifar100n_sop", "cifar100n_dividemix",
         "webvision_sop", "clothing1m_dividemix"]  # fmt: skip
PAPER_METHODS = ["Uniform", "Uncertainty", "kCenterGreedy", "Forgetting", "GraNd", "Glister",
                 "Moderate", "SmallLoss", "Prune4Rel"]  # fmt: skip


def test_all_scripts_exist():
    names = {p.stem for p in SCRIPTS}
    assert set(PAPER) | {"quickstart", "common"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_syntax_and_strict_mode(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    if script.name != "common.sh":
        text = script.read_text()
        assert "set -euo pipefail" in text
        assert text.index("set -euo pipefail") < text.index("source ")
        for var in ("OUT=", "SEEDS=", "GPUS=", "EPOCH_SCALE="):
            assert var in text.split("source ")[0], f"{script.name}: {var} not at the top"


def _fake_python(tmp_path: Path, *, fail_after: int | None = None) -> Path:
    """An interpreter stand-in that logs each call (one line of arguments) and succeeds."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fail = "" if fail_after is None else (
        f'n=$(wc -l < "{log}"); if [ "$n" -ge {fail_after} ]; then exit 3; fi'
    )  # fmt: skip
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%q " "$@" >> "{log}"; echo >> "{log}"\n'
        f"{fail}\n"
        'if [ "${1:-}" = -m ] && [ "${2:-}" = deep_core.cli.report ]; then\n'
        '  out=""; while [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done\n'
        '  mkdir -p "$(dirname "$out")"; echo "# table" > "$out"\n'
        "fi\n"
    )
    fake.chmod(0o755)
    return log


def _calls(log: Path) -> list[list[str]]:
    return [shlex.split(line) for line in log.read_text().splitlines() if line.strip()]


def _flag(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def _run_script(name: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": str(tmp_path / "python"), "OUT": str(tmp_path / "out"),
            "GPUS": "cpu", **env}  # fmt: skip
    return subprocess.run(["bash", str(REPO / "scripts" / f"{name}.sh")], env=full,
                          capture_output=True, text=True)  # fmt: skip


def _sweep_runs(call: list[str]) -> list[list[str]]:
    """The deepcore-run flags of every run of a logged ``deepcore-sweep`` call."""
    assert call[:2] == ["-m", "deep_core.cli.sweep"]
    flags, grid = read_grid(call[2])
    fixed = call[call.index("--") + 1 :]
    return [list(c.argv) for c in expand_grid(flags=flags, grid=grid, extra_argv=fixed)]


@pytest.mark.parametrize("name", PAPER)
def test_paper_script_commands(name, tmp_path):
    log = _fake_python(tmp_path)
    res = _run_script(name, tmp_path, SEEDS="3 4", EPOCH_SCALE="0.1", DATA="/data/x")
    assert res.returncode == 0, res.stderr
    calls = _calls(log)
    assert len(calls) == 2
    sweep, report = calls
    assert report[:2] == ["-m", "deep_core.cli.report"] and str(tmp_path / "out") in report
    assert _flag(sweep, "--out-dir") == str(tmp_path / "out")
    assert _flag(sweep, "--gpus-per-run") == "0"  # GPUS=cpu
    runs = _sweep_runs(sweep)
    noise = {"cifar10n_sop": 4, "cifar10n_dividemix": 4}.get(name, 1)
    fractions = 4
    methods = {_flag(c, "--selection") for c in runs}
    # the paper's eight baselines and Prune4Rel
    assert methods == set(PAPER_METHODS)
    assert len(runs) == noise * fractions * len(methods) * 2
    for call in runs:
        assert _flag(call, "--protocol") == "reference"
        assert _flag(call, "--data_path") == "/data/x"
        assert "," not in _flag(call, "--noise-type")  # the reference's "real1," bug
        assert "-rc" not in call or _flag(call, "-rc") not in ("3", "4")  # nor "-rc $seed"
        # --balance only where the reference's --balance worked
        balanced = _flag(call, "--selection") in ("Prune4Rel", "Forgetting", "Glister")
        assert ("--balance" in call) == balanced
        assert not balanced or _flag(call, "--balance") == "True"
    assert sorted({_flag(c, "--seed") for c in runs}) == ["3", "4"]
    first = runs[0]
    epochs = {"webvision_sop": "10", "clothing1m_dividemix": "2"}.get(name, "30")
    assert _flag(first, "--epochs") == epochs  # EPOCH_SCALE 0.1
    tau, eta = {
        "cifar10n_sop": ("0.975", "1"),
        "cifar10n_dividemix": ("0.975", "100"),  # its script leaves --eta to the default
        "clothing1m_dividemix": ("0.8", "1"),
    }.get(name, ("0.95", "1"))
    assert (_flag(first, "--tau"), _flag(first, "--eta")) == (tau, eta)
    if "cifar10n" in name:
        assert _flag(first, "-se") == "1"
    if name.endswith("_sop") and "cifar" in name:
        assert (_flag(first, "-rc"), _flag(first, "-rb")) == ("0.9", "0.1")
    if "dividemix" in name and "cifar" in name:
        assert _flag(first, "--lambda-u") == "1"
    if name == "clothing1m_dividemix":
        assert _flag(first, "--lr") == "0.002" and _flag(first, "--lambda-u") == "0.1"
        assert _flag(first, "--warmup-epochs") == "1"
        assert _flag(first, "--confidence-penalty") == "True"
        assert {_flag(c, "--fraction") for c in runs} == {"0.01", "0.05", "0.1", "0.2"}
    if name == "webvision_sop":
        assert _flag(first, "--lr-u") == "0.1" and _flag(first, "--batch-size") == "32"
    # Every flag exists and every setting is valid for deepcore-run (no data needed).
    from deep_core.methods import list_methods

    for method in sorted(methods):
        call = next(c for c in runs if _flag(c, "--selection") == method)
        cfg = config_from_args(build_parser().parse_args(call))
        if method in list_methods():  # kCenterGreedy and Glister register in their own change
            validate(cfg)


def test_gpus_and_engine_settings_reach_deepcore_sweep(tmp_path):
    log = _fake_python(tmp_path)
    # Clothing-1M: each run on every GPU of GPUS (one DDP process per GPU)
    res = _run_script("clothing1m_dividemix", tmp_path, GPUS="0,1,2", SEEDS="0",
                      METHODS="Uniform", FRACTIONS="0.1")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _flag(_calls(log)[0], "--gpus-per-run") == "3"
    log.unlink()
    res = _run_script("cifar10n_sop", tmp_path, GPUS="0,1", JOBS="3", ENGINE="ray",
                      ADDRESS="auto", MAX_RETRIES="5", CPUS_PER_RUN="4")  # fmt: skip
    assert res.returncode == 0, res.stderr
    sweep = _calls(log)[0]
    assert _flag(sweep, "--gpus-per-run") == "1"  # one run per GPU, two at a time
    assert (_flag(sweep, "--jobs"), _flag(sweep, "--engine"), _flag(sweep, "--address")) == (
        "3", "ray", "auto")  # fmt: skip
    assert (_flag(sweep, "--max-retries"), _flag(sweep, "--cpus-per-run")) == ("5", "4")


def test_a_failed_sweep_stops_the_script(tmp_path):
    log = _fake_python(tmp_path, fail_after=1)
    res = _run_script("cifar100n_sop", tmp_path)
    assert res.returncode != 0
    assert len(_calls(log)) == 1  # no report after a failed sweep


def test_quick_default_and_extra_flags(tmp_path):
    log = _fake_python(tmp_path)
    res = _run_script("quickstart", tmp_path, JOBS="2", EXTRA="--n-train 500 --workers 2")
    assert res.returncode == 0, res.stderr
    sweeps = [c for c in _calls(log) if c[:2] == ["-m", "deep_core.cli.sweep"]]
    assert len(sweeps) == 2 and all(_flag(c, "--jobs") == "2" for c in sweeps)
    runs = [run for c in sweeps for run in _sweep_runs(c)]
    assert {_flag(c, "--selection") for c in runs} == {"Uniform", "SmallLoss", "Prune4Rel"}
    assert {_flag(c, "--fraction") for c in runs} == {"0.2", "0.5"} and len(runs) == 12
    assert all(c[-4:] == ["--n-train", "500", "--workers", "2"] for c in runs)


def test_bad_epoch_scale(tmp_path):
    _fake_python(tmp_path)
    res = _run_script("cifar10n_sop", tmp_path, EPOCH_SCALE="fast")
    assert res.returncode != 0 and "EPOCH_SCALE" in res.stderr


def _quickstart(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "qs"), "GPUS": "cpu",
            "EPOCHS": "1", "WARMUP_EPOCHS": "1", "ENGINE": "local", **env}  # fmt: skip
    return subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh")], env=full,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_quickstart_runs_reports_and_resumes(tmp_path):
    res = _quickstart(tmp_path, METHODS="SmallLoss", FRACTIONS="0.5")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "qs"
    runs = sorted(p for p in out.iterdir() if (p / "summary.json").is_file())
    assert [json.loads((p / "summary.json").read_text())["robust_learner"] for p in runs] == [
        "CE", "SOP"]  # fmt: skip
    assert "| CE | SmallLoss |" in (out / "report.md").read_text()
    assert (out / "report.png").stat().st_size > 0
    # A second pass skips both complete runs and rebuilds the same report.
    (runs[1] / "summary.json").unlink()  # an interrupted run is resumed instead
    again = _quickstart(tmp_path, METHODS="SmallLoss", FRACTIONS="0.5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 complete run(s) skipped" in again.stderr
    assert (runs[1] / "summary.json").is_file()
    assert "resuming interrupted run" in (out / "sweep-logs" / f"{runs[1].name}.log").read_text()
    assert len([p for p in out.iterdir() if (p / "config.yaml").is_file()]) == 2


@pytest.mark.slow
def test_quickstart_every_method(tmp_path):
    # two warm-up epochs: DynUnc and DUAL need a window of at least two
    res = _quickstart(tmp_path, FRACTIONS="0.5", FULL="1", WARMUP_EPOCHS="2")
    assert res.returncode == 0, res.stderr[-3000:]
    text = (tmp_path / "qs" / "report.md").read_text()
    from deep_core.methods import list_methods

    for name in list_methods():
        assert f"| CE | {name} |" in text and f"| SOP+ | {name} |" in text
