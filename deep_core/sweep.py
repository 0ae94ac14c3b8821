"""Sweeps: a grid of ``deepcore-run`` command lines, run on Ray or in local processes.

A grid file (YAML) names the flags every run gets and the axes whose cartesian product
makes the runs, first axis outermost::

    flags:                       # every run (keys are deepcore-run flags without dashes)
      protocol: reference
      dataset: CIFAR10
      se: 10                     # -se 10
      milestone: [150, 225]      # a list is several values of one flag
    grid:
      noise-type: [real1, real2, real3, realW]
      fraction: [0.2, 0.4, 0.6, 0.8]
      selection:                 # a mapping sets several flags together
        - Uniform
        - {selection: Prune4Rel, balance: true}
      seed: [0, 1, 2]

Each grid cell is a ``deepcore-run`` command line, parsed and checked by the same parser
(:func:`deep_core.cli.run.build_parser`) before anything starts. Each attempt of a cell
runs ``python -m deep_core.cli.run CELL --skip-complete True`` in a subprocess (or under
``torch.distributed.run`` for several GPUs per run): a killed attempt leaves its checkpoint
behind and a new attempt resumes from it; a subprocess also keeps each run's torch threads
(``OMP_NUM_THREADS`` = the run's CPUs) and CUDA state to itself. The subprocess dies with
the process that started it (Linux ``PR_SET_PDEATHSIG``), so a killed worker never leaves a
run training behind its back.

Runs whose ``summary.json`` exists are skipped before anything starts; a failed attempt (a
non-zero exit, or a Ray worker that died) is started again, resuming from the checkpoint,
at most ``max_retries`` times; a run another live process holds (its folder's lock) is
waited for, never trained twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from .errors import DeepCoreError

ENGINES = ("ray", "local")

#: deepcore-run settings the sweep sets itself (argparse dest → how to set them instead)
SWEEP_OWNED = {
    "out_dir": "deepcore-sweep --out-dir",
    "device": "deepcore-sweep --gpus-per-run",
    "gpu": "deepcore-sweep --gpus-per-run",
    "multi_gpu": "deepcore-sweep --gpus-per-run",
    "resume": "deepcore-sweep (it resumes interrupted runs itself)",
    "skip_complete": "deepcore-sweep (it skips complete runs itself)",
}

#: seconds between two looks at a run another process holds
LOCK_POLL_SECONDS = 10.0


# ----------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One run of a sweep: ``deepcore-run`` flags (without ``--out-dir`` and the device).

    ``label`` names the cell's grid values, e.g. ``"fraction=0.2 selection=Uniform"``.
    """

    argv: tuple[str, ...]
    label: str


def read_grid(path: str | Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The ``flags`` and ``grid`` mappings of a grid file (both may be absent).

    Raises
    ------
    DeepCoreError
        The file is missing, not YAML, or not shaped as described in this module.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DeepCoreError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DeepCoreError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DeepCoreError(f"{path} must hold a mapping with 'flags' and 'grid'")
    unknown = sorted(set(data) - {"flags", "grid"})
    if unknown:
        raise DeepCoreError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}"
                            " (expected 'flags' and 'grid')")  # fmt: skip
    flags, grid = data.get("flags") or {}, data.get("grid") or {}
    if not isinstance(flags, dict):
        raise DeepCoreError(f"{path}: 'flags' must be a mapping of flag: value")
    if not isinstance(grid, dict):
        raise DeepCoreError(f"{path}: 'grid' must be a mapping of flag: [values]")
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise DeepCoreError(f"{path}: grid axis {axis!r} must be a non-empty list")
    return {str(k): v for k, v in flags.items()}, {str(k): v for k, v in grid.items()}


def expand_grid(
    *,
    flags: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    extra_argv: Sequence[str] = (),
) -> list[Cell]:
    """The runs of a grid: the cartesian product of its axes, first axis outermost.

    Parameters
    ----------
    flags : mapping
        Flag (``deepcore-run`` option without its dashes, ``noise-type``, ``se``) → value
        for every run. ``True``/``False`` become ``True``/``False``; a list gives the flag
        several values (``milestone: [150, 225]``).
    grid : mapping
        Axis → list of values. A scalar value sets the flag named by the axis; a mapping
        value sets each of its flags (several flags that vary together).
    extra_argv : sequence of str, default=()
        Command-line tokens appended to every run, after the grid's flags (so they win).

    Returns
    -------
    list of Cell
        In a deterministic order: the last axis varies fastest.

    Raises
    ------
    DeepCoreError
        A flag ``deepcore-run`` does not have, or one the sweep sets itself.
    """
    from .cli.run import build_parser

    options = build_parser()._option_string_actions
    fixed = [t for name, value in flags.items() for t in _tokens(name, value, options)]
    axes = list(grid.items())
    cells = []
    for combo in product(*(values for _, values in axes)):
        argv, label = list(fixed), []
        for (axis, _), value in zip(axes, combo):
            if isinstance(value, dict):
                for name, v in value.items():
                    argv += _tokens(str(name), v, options)
                    label.append(f"{name}={_text(v)}")
            else:
                argv += _tokens(axis, value, options)
                label.append(f"{axis}={_text(value)}")
        cells.append(Cell(tuple(argv) + tuple(extra_argv), " ".join(label)))
    return cells


def _option(name: str, options: Mapping[str, Any]) -> str:
    """``noise-type`` → ``--noise-type``, ``se`` → ``-se`` (the option ``deepcore-run`` has)."""
    bare = name.lstrip("-")
    for flag in ("--" + bare, "-" + bare):
        if flag in options:
            dest = options[flag].dest
            if dest in SWEEP_OWNED:
                raise DeepCoreError(f"grid flag {name!r} is set by {SWEEP_OWNED[dest]}")
            return flag
    raise DeepCoreError(f"grid flag {name!r}: deepcore-run has no option --{bare} or -{bare}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _tokens(name: str, value: Any, options: Mapping[str, Any]) -> list[str]:
    flag = _option(name, options)
    if value is None or isinstance(value, dict):
        raise DeepCoreError(f"grid flag {name!r} needs a value, a list of values or True/False")
    values = value if isinstance(value, list | tuple) else [value]
    return [flag, *(_text(v) for v in values)]


# ----------------------------------------------------------------------------------
# Planning: every cell checked, its run folders named, before anything starts
# ----------------------------------------------------------------------------------
@dataclass
class Job:
    """A cell, the run folders it writes, and its attempts so far."""

    cell: Cell
    run_dirs: tuple[Path, ...]
    failures: int = 0
    attempts: int = 0
    started: float = 0.0
    not_before: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run_dirs[0].name

    def complete(self) -> bool:
        return all((p / "summary.json").is_file() for p in self.run_dirs)

    def held_elsewhere(self) -> bool:
        """True if another live process holds the lock of one of its incomplete runs."""
        from .locks import FolderLock, FolderLocked

        for p in self.run_dirs:
            if p.is_dir() and not (p / "summary.json").is_file():
                try:
                    with FolderLock(p, what="run folder"):
                        pass
                except FolderLocked:
                    return True
        return False


def plan(cells: Sequence[Cell], *, out_dir: str | Path) -> list[Job]:
    """Check every cell as ``deepcore-run`` would and name its run folders.

    Raises
    ------
    DeepCoreError
        A cell ``deepcore-run`` would refuse (the message names the cell), or two cells
        that are the same run.
    """
    from .cli.run import build_parser, config_from_args
    from .runner import run_name, validate

    parser = build_parser()
    jobs, seen = [], {}
    for cell in cells:
        try:
            ns = parser.parse_args([*cell.argv, "--out-dir", str(out_dir)])
            for dest, how in SWEEP_OWNED.items():
                if dest in vars(ns) and dest != "out_dir":
                    raise DeepCoreError(f"{dest.replace('_', '-')} is set by {how}")
            cfg = config_from_args(ns)
            validate(cfg)
        except DeepCoreError as e:
            raise DeepCoreError(f"run {cell.label or ' '.join(cell.argv)}: {e}") from None
        dirs = tuple(Path(out_dir) / run_name(cfg, cfg.seed + k) for k in range(cfg.num_exp))
        for d in dirs:
            if d in seen:
                raise DeepCoreError(
                    f"runs {seen[d]!r} and {cell.label!r} are the same run ({d.name})"
                )
            seen[d] = cell.label
        jobs.append(Job(cell, dirs))
    return jobs


# ----------------------------------------------------------------------------------
# One attempt of one run (in a Ray worker or in the sweep's own process)
# ----------------------------------------------------------------------------------
def attempt_command(
    argv: Sequence[str], *, out_dir: str, gpus_per_run: int, python: str | None = None
) -> list[str]:
    """The command of one attempt: ``deepcore-run`` with the device and ``--skip-complete``.

    One GPU: ``--device cuda:0`` (the engine sets ``CUDA_VISIBLE_DEVICES`` to the run's
    GPU); several: one DDP process per GPU under ``torch.distributed.run``; none: CPU.
    """
    python = python or sys.executable
    if gpus_per_run > 1:
        head = [python, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(gpus_per_run), "-m", "deep_core.cli.run"]  # fmt: skip
        device = "cuda"
    else:
        head = [python, "-m", "deep_core.cli.run"]
        device = "cuda:0" if gpus_per_run == 1 else "cpu"
    tail = ["--out-dir", out_dir, "--device", device, "--skip-complete", "True"]
    return head + list(argv) + tail


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent ends (Linux prctl)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_attempt(
    argv: Sequence[str],
    *,
    out_dir: str,
    gpus_per_run: int,
    cpus_per_run: int,
    log_path: str,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen:
    """Start one attempt in a subprocess whose output is appended to ``log_path``.

    ``cwd``: the folder relative paths (``--out-dir``, ``--data_path``, ``log_path``) are
    read from; a Ray worker gets the sweep's, which must exist on its node (a shared file
    system).
    """
    if cwd is not None and not os.path.isdir(cwd):
        import socket

        raise DeepCoreError(
            f"the sweep's folder {cwd} does not exist on {socket.gethostname()}:"
            " run the sweep from a folder every node shares"
        )
    cmd = attempt_command(argv, out_dir=out_dir, gpus_per_run=gpus_per_run)
    full_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(cpus_per_run)}
    log_file = Path(cwd or ".") / log_path
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
            preexec_fn=_die_with_parent,
        )  # fmt: skip


def run_attempt(
    argv: Sequence[str],
    *,
    out_dir: str,
    gpus_per_run: int,
    cpus_per_run: int,
    log_path: str,
    cwd: str | None = None,
) -> int:
    """One attempt, to its end (the body of a Ray task); returns its exit status."""
    proc = start_attempt(
        argv, out_dir=out_dir, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
        log_path=log_path, cwd=cwd,
    )  # fmt: skip
    return proc.wait()


# ----------------------------------------------------------------------------------
# Engines: start attempts, report the ones that ended
# ----------------------------------------------------------------------------------
class LocalEngine:
    """Attempts as subprocesses of this process, one slot per GPU group or CPU group."""

    def __init__(self, *, gpus_per_run: int, cpus_per_run: int) -> None:
        self.gpus_per_run, self.cpus_per_run = gpus_per_run, cpus_per_run
        if gpus_per_run:
            gpus = _visible_gpus()
            if len(gpus) < gpus_per_run:
                raise DeepCoreError(
                    f"--gpus-per-run {gpus_per_run} but {len(gpus)} GPU(s) are visible"
                    " (--gpus-per-run 0 runs on the CPU)"
                )
            groups = [gpus[i : i + gpus_per_run] for i in range(0, len(gpus), gpus_per_run)]
            self.free = [{"CUDA_VISIBLE_DEVICES": ",".join(g)} for g in groups
                         if len(g) == gpus_per_run]  # fmt: skip
        else:
            n = max(1, (os.cpu_count() or 1) // cpus_per_run)
            self.free = [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(n)]
        self.slots = len(self.free)
        self.running: dict[int, tuple[subprocess.Popen, dict[str, str]]] = {}

    def submit(self, key: int, argv: Sequence[str], *, out_dir: str, log_path: str) -> None:
        env = self.free.pop()
        proc = start_attempt(
            argv, out_dir=out_dir, gpus_per_run=self.gpus_per_run,
            cpus_per_run=self.cpus_per_run, log_path=log_path, env=env,
        )  # fmt: skip
        self.running[key] = (proc, env)

    def wait(self, timeout: float) -> list[tuple[int, str | None]]:
        """Attempts that ended within ``timeout`` s: (key, None if exit 0 else why)."""
        end = time.monotonic() + timeout
        while True:
            done = []
            for key, (proc, env) in list(self.running.items()):
                rc = proc.poll()
                if rc is not None:
                    del self.running[key]
                    self.free.append(env)
                    done.append((key, None if rc == 0 else _exit_text(rc)))
            if done or time.monotonic() >= end:
                return done
            time.sleep(0.2)

    def close(self) -> None:
        for proc, _ in self.running.values():
            proc.terminate()
        for proc, _ in self.running.values():
            proc.wait()


class RayEngine:
    """Attempts as Ray tasks (``num_gpus``/``num_cpus`` each), on a local instance or a cluster."""

    def __init__(
        self, *, gpus_per_run: int | None, cpus_per_run: int, address: str | None
    ) -> None:
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            if address:
                ray.init(address=address, configure_logging=False, log_to_driver=False)
            else:
                # a local instance for this sweep: runs return only their exit status, so
                # a small object store is enough
                ray.init(include_dashboard=False, configure_logging=False,
                         log_to_driver=False, object_store_memory=100 * 2**20)  # fmt: skip
        resources = ray.cluster_resources()
        if gpus_per_run is None:
            gpus_per_run = 1 if resources.get("GPU", 0) >= 1 else 0
        for kind, need in (("GPU", gpus_per_run), ("CPU", cpus_per_run)):
            if need > resources.get(kind, 0):
                raise DeepCoreError(
                    f"each run needs {need} {kind}(s) but the Ray cluster has"
                    f" {resources.get(kind, 0):g}"
                )
        self.gpus_per_run, self.cpus_per_run = gpus_per_run, cpus_per_run
        # retries are the sweep's own (resuming from the checkpoint), not Ray's
        self.task = ray.remote(run_attempt).options(
            num_gpus=gpus_per_run, num_cpus=cpus_per_run, max_retries=0
        )
        fits = [resources.get("CPU", 0) // cpus_per_run]
        if gpus_per_run:
            fits.append(resources.get("GPU", 0) // gpus_per_run)
        self.slots = max(1, int(min(fits)))
        self.running: dict[Any, int] = {}

    def submit(self, key: int, argv: Sequence[str], *, out_dir: str, log_path: str) -> None:
        ref = self.task.remote(
            list(argv), out_dir=out_dir, gpus_per_run=self.gpus_per_run,
            cpus_per_run=self.cpus_per_run, log_path=log_path, cwd=os.getcwd(),
        )  # fmt: skip
        self.running[ref] = key

    def wait(self, timeout: float) -> list[tuple[int, str | None]]:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        done = []
        for ref in ready:
            key = self.running.pop(ref)
            try:
                rc = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:  # the worker died, or the task raised
                done.append((key, f"Ray task failed: {str(e).splitlines()[0]}"))
                continue
            done.append((key, None if rc == 0 else _exit_text(rc)))
        return done

    def close(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


def _visible_gpus() -> list[str]:
    """The ids (as ``CUDA_VISIBLE_DEVICES`` names them) of the GPUs torch can use here."""
    import torch

    n = torch.cuda.device_count()
    ids = os.environ.get("CUDA_VISIBLE_DEVICES")
    if ids is None:
        return [str(i) for i in range(n)]
    return [g for g in (s.strip() for s in ids.split(",")) if g][:n]


def _exit_text(rc: int) -> str:
    if rc < 0:
        return f"killed by signal {signal.Signals(-rc).name}"
    return f"exit status {rc}"


def default_engine() -> str:
    """``ray`` when Ray is installed, else ``local``."""
    import importlib.util

    return "ray" if importlib.util.find_spec("ray") is not None else "local"


# ----------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a sweep did: run names per outcome, and the retries it made."""

    skipped: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retries: int = 0


def run_sweep(
    jobs: Sequence[Job],
    *,
    out_dir: str | Path,
    engine: str = "local",
    address: str | None = None,
    gpus_per_run: int | None = None,
    cpus_per_run: int = 1,
    max_retries: int = 2,
    jobs_at_once: int | None = None,
    echo: Any = None,
) -> SweepResult:
    """Run every incomplete job to its end, retrying failed attempts from their checkpoint.

    Parameters
    ----------
    jobs : sequence of Job
        From :func:`plan`.
    out_dir : path
        The runs' parent folder; attempt logs go to ``OUT/sweep-logs/<run>.log``.
    engine : {"local", "ray"}, default="local"
        ``ray``: Ray tasks on the instance at ``address``, or on a local instance started
        for the sweep; ``local``: subprocesses of this process.
    address : str or None, default=None
        Ray cluster address (``auto``: the cluster this machine belongs to).
    gpus_per_run : int or None, default=None
        GPUs per run; ``None``: 1 where GPUs are visible, else 0 (CPU runs).
    cpus_per_run : int, default=1
        CPUs per run, also its ``OMP_NUM_THREADS``.
    max_retries : int, default=2
        Attempts after the first for a run whose attempt failed (each resumes from the
        checkpoint). A run another process holds is waited for and not counted.
    jobs_at_once : int or None, default=None
        At most this many runs at a time (default: as many as the resources hold).
    echo : callable or None, default=None
        Called with one line per event (start, done, retry, failure).

    Returns
    -------
    SweepResult
    """
    if engine not in ENGINES:
        raise DeepCoreError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if cpus_per_run < 1:
        raise DeepCoreError(f"--cpus-per-run must be at least 1, got {cpus_per_run}")
    if gpus_per_run is not None and gpus_per_run < 0:
        raise DeepCoreError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
    if max_retries < 0:
        raise DeepCoreError(f"--max-retries must be >= 0, got {max_retries}")
    if jobs_at_once is not None and jobs_at_once < 1:
        raise DeepCoreError(f"--jobs must be at least 1, got {jobs_at_once}")
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    out = str(Path(out_dir))
    result = SweepResult()
    todo: deque[int] = deque()
    for i, job in enumerate(jobs):
        if job.complete():
            result.skipped.append(job.name)
        else:
            todo.append(i)
    if result.skipped:
        say(f"sweep: {len(result.skipped)} complete run(s) skipped")
    if not todo:
        return result
    if engine == "ray":
        runner: LocalEngine | RayEngine = RayEngine(
            gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run, address=address
        )
    else:
        if gpus_per_run is None:
            gpus_per_run = 1 if _visible_gpus() else 0
        runner = LocalEngine(gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    slots = min(runner.slots, jobs_at_once or runner.slots)
    say(f"sweep: {len(todo)} run(s) on {engine}, {slots} at a time")
    logs = Path(out) / "sweep-logs"
    total, running = len(todo), 0
    try:
        while todo or running:
            now = time.monotonic()
            for _ in range(len(todo)):
                if running >= slots:
                    break
                i = todo.popleft()
                job = jobs[i]
                if job.not_before > now:
                    todo.append(i)
                    continue
                job.attempts += 1
                job.started = time.monotonic()
                log_path = str(logs / f"{job.name}.log")
                runner.submit(i, job.cell.argv, out_dir=out, log_path=log_path)
                running += 1
                again = f" (attempt {job.attempts})" if job.attempts > 1 else ""
                say(f"start {job.name}{again}: {job.cell.label} (log {log_path})")
            for i, why in runner.wait(timeout=1.0):
                running -= 1
                job = jobs[i]
                if job.complete():
                    result.completed.append(job.name)
                    n = len(result.completed) + len(result.failed)
                    took = time.monotonic() - job.started
                    say(f"done  {job.name} [{n}/{total}] in {took:.0f} s")
                    continue
                if why is None and job.held_elsewhere():
                    say(f"wait  {job.name}: another process is training it")
                    job.not_before = time.monotonic() + LOCK_POLL_SECONDS
                    todo.append(i)
                    continue
                job.failures += 1
                job.errors.append(why or "ended without summary.json")
                if job.failures > max_retries:
                    result.failed.append(job.name)
                    say(f"FAIL  {job.name}: {job.errors[-1]}; gave up after {job.attempts}"
                        f" attempt(s) (log {logs / (job.name + '.log')})")  # fmt: skip
                    continue
                result.retries += 1
                say(f"retry {job.name}: {job.errors[-1]}; resuming from its checkpoint"
                    f" (retry {job.failures} of {max_retries})")  # fmt: skip
                todo.append(i)
            if todo and running == 0 and all(jobs[i].not_before > time.monotonic() for i in todo):
                time.sleep(0.5)
    finally:
        runner.close()
    return result
