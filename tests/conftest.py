"""Shared fixtures: the optional real data in ../shared, small thread counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CIFAR_ZIP = SHARED / "data" / "cifar10-jpeg.zip"
MAKE_CIFAR = SHARED / "tools" / "make_cifar10.py"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """The shared CIFAR-10 copy in the standard python layout (skips when absent)."""
    if not (CIFAR_ZIP.is_file() and MAKE_CIFAR.is_file()):
        pytest.skip("../shared/data/cifar10-jpeg.zip is not available")
    root = tmp_path_factory.mktemp("cifar")
    subprocess.run([sys.executable, str(MAKE_CIFAR), str(root)], check=True, capture_output=True)
    return root
