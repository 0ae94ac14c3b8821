"""The manifest of a run folder: the settings that define the run, with their checksum.

``config.yaml`` is meant to be read (and loaded with ``--config`` for a new run), so
it may be edited. ``manifest.json`` records the same settings when the run starts;
``--resume`` continues a run only while its ``config.yaml`` still matches them, apart
from the settings that do not change results (:data:`RESUMABLE`). An edited
``selection``, ``epochs`` or an emptied ``config.yaml`` is refused with one line naming
the changed keys, instead of a result filed under settings it was not trained with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import DeepCoreError
from .io import write_json

MANIFEST_NAME = "manifest.json"
#: settings a resumed run may change: where and how visibly it runs, not what it computes
RESUMABLE = ("device", "workers", "progress")


def _normal(settings: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip: tuples become lists, as they do through ``config.yaml``."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def write_run_manifest(folder: str | Path, settings: dict[str, Any]) -> None:
    """Record ``settings`` (the resolved config of the run) in ``folder/manifest.json``."""
    normal = _normal(settings)
    write_json(Path(folder) / MANIFEST_NAME, {"settings": normal, "sha256": _digest(normal)})


def check_run_manifest(folder: str | Path, settings: dict[str, Any]) -> None:
    """Raise unless ``settings`` (read from ``config.yaml``) match the folder's manifest.

    Raises
    ------
    DeepCoreError
        No or a corrupt manifest, or settings that differ in anything but
        :data:`RESUMABLE` (the message names the changed keys).
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
        recorded = data["settings"]
        intact = isinstance(recorded, dict) and data["sha256"] == _digest(recorded)
    except FileNotFoundError:
        raise DeepCoreError(
            f"{folder} has no {MANIFEST_NAME}, so its config.yaml cannot be checked; "
            "start the run again"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        intact = False
    if not intact:
        raise DeepCoreError(f"{path} is corrupt; start the run again")
    now = _normal(settings)
    changed = sorted(
        k for k in set(recorded) | set(now) if k not in RESUMABLE and recorded.get(k) != now.get(k)
    )
    if changed:
        raise DeepCoreError(
            f"config.yaml of {folder} no longer matches the settings the run started with "
            f"(changed: {', '.join(changed)}); only {', '.join(RESUMABLE)} may change on resume"
        )
