"""The key outputs of ``deepcore-prune --engine ray``: one Ray task per part of the keys.

Each task runs :func:`~deep_core.corpus.outputs.write_key_part` (reads its part's keys,
writes its rows of the scores file and its sorted kept keys into the staging folder,
atomically); the driver then joins the part files
(:func:`~deep_core.corpus.outputs.join_key_parts`) exactly as the local engine does,
so both engines write the same files. A task gets only its part's rows of the
per-sample arrays, and at most ``2 * workers`` tasks are in flight, so neither the
object store nor the driver holds a second copy of the O(N) arrays. Tasks are pure
(a retried part rewrites the same files, atomically: a worker lost mid-part leaves at
most a temporary file, removed with the folder); the staging folder must be on a file
system the workers share, as the embeddings file is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DeepCoreError
from .keys import KeySource
from .outputs import write_key_part
from .ray_engine import MAX_RETRIES, _kill_once

if TYPE_CHECKING:
    from .ray_engine import RayEngine


def write_parts(
    engine: RayEngine,
    keys: KeySource,
    folder: Path,
    output_format: str,
    group_names: np.ndarray,
    groups: np.ndarray,
    scores: np.ndarray,
    kept: np.ndarray,
) -> None:
    """Every part's files in ``folder``, one Ray task per part of ``keys``."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_write_part)
    names_ref = ray.put(group_names)
    keys_ref = ray.put(keys)
    window = 2 * engine.workers
    pending: list = []
    try:
        for part in range(keys.num_parts):
            if len(pending) >= window:
                done, pending = ray.wait(pending, num_returns=1)
                _get(engine, done)  # a part that failed stops the run
            lo, hi = int(keys.offsets[part]), int(keys.offsets[part + 1])
            pending.append(
                task.remote(
                    keys_ref, part, folder, output_format, names_ref, groups[lo:hi],
                    scores[lo:hi], kept[lo:hi],
                )
            )  # fmt: skip
        _get(engine, pending)
    except BaseException:
        # The caller removes ``folder``: no task may still be writing into it.
        for ref in pending:
            ray.cancel(ref)
        if pending:
            ray.wait(pending, num_returns=len(pending))
        raise


def _write_part(*args: object) -> None:
    write_key_part(*args)  # type: ignore[arg-type]
    _kill_once()  # ray_engine's test hook: the retry writes the same part again


def _get(engine: RayEngine, refs: list) -> None:
    """Wait for ``refs``; a part's :class:`DeepCoreError` is raised as is (one line)."""
    import ray

    try:
        engine._get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, DeepCoreError):
            raise DeepCoreError(str(e.cause)) from None
        raise
