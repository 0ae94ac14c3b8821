"""Commands that need neither torch nor faiss do not import them (start-up in ~0.5 s).

Timings are in benchmarks/README.md (``benchmarks/bench_startup.py``); the tests pin the
cause: which heavy modules a command loads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """\
import sys
from deep_core.cli.{module} import main
try:
    main({args!r})
except SystemExit:
    pass
print(sorted(m for m in ("torch", "faiss", "scipy.special", "matplotlib") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("run", ["--help"]),
        ("select", ["--help"]),
        ("select", ["--list"]),
        ("prune", ["--help"]),
        ("report", ["--help"]),
    ],
)
def test_help_and_list_load_no_heavy_module(module, args):
    code = CHILD.format(module=module, args=args)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]


def test_library_modules_of_the_light_paths_stay_light():
    code = ("import sys, deep_core, deep_core.rundir, deep_core.report, deep_core.methods, "
            "deep_core.signals, deep_core.testing, deep_core.config; "
            "print(sorted(m for m in ('torch', 'faiss') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
