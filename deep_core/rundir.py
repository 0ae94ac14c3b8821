"""The run-directory format: its name, its files, and the keys of its summary.

``deepcore-run`` writes one directory per run; ``deepcore-report``, ``deepcore-select
--run``, :meth:`deep_core.signals.Signals.from_run` and the tests read it. This module
is the only place that spells the format, and it imports neither torch nor faiss, so
that reading a folder of runs stays fast.

``<out_dir>/<dataset>_<learner>_<selection>_<noise>_fr<fraction>_s<seed>_<hash>[_dry]/``

================ ==================================================================
file             content
================ ==================================================================
config.yaml      the resolved :class:`~deep_core.config.RunConfig` (seed = this run's)
labels.npz       ``labels`` (noisy), ``ids``, ``clean_labels`` where known
selection.json   warm-up and selection report (signal cache keys, seconds, info)
subset.npz       selected ``indices``, per-sample ``scores``, optional ``weights``
metrics.jsonl    one JSON object per epoch
tb/              TensorBoard events
checkpoint.pt    the training state, every epoch (``--resume``)
log.txt          the run's log (``epoch N: ...`` lines)
summary.json     settings and results (:data:`RESULT_KEYS`); written last
================ ==================================================================

Every file is written atomically (:mod:`deep_core.io`). Warm-up signals live outside
the run, in ``<out_dir>/signals-cache/<key>/`` (or ``--signals-cache``), shared by the
runs of a sweep; ``selection.json`` names the keys of the entries a run used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .config import RunConfig, dump_yaml, takes_noise_rate
from .errors import DeepCoreError
from .io import load_npz, save_npz, write_json, write_text
from .subset import Subset

#: settings that may differ between runs of one group (they do not change the method):
#: left out of the settings hash and of the report's same-settings check
NON_SETTINGS = (
    "seed",
    "num_exp",
    "device",
    "workers",
    "out_dir",
    "progress",
    "signals_cache",
    "save_log",
    "data_path",
    "dry_run",
    "reference_flags",
)
#: ``summary.json`` keys that are results, not settings
RESULT_KEYS = frozenset(
    {
        "run",
        "seed",
        "settings_hash",
        "last_acc",
        "best_acc",
        "best_epoch",
        "best_by",
        "subset_size",
        "class_counts",
        "subset_noise_rate",
        "noisy_kept_fraction",
        "score_auroc",
        "full_noise_rate",
        "warmup_seconds",
        "selection_seconds",
        "train_seconds",
        "wall_seconds",
        "steps",
        "samples_seen",
        "seen_fraction",
        "epochs_trained",
        "epoch_horizon",
        "mean_epoch_noise_rate",
        "ignored_options",
        "versions",
    }
)
#: files that make a folder a run directory (any one of them: a crashed run may lack some)
RUN_MARKERS = ("summary.json", "config.yaml", "labels.npz", "log.txt")
#: default folder of the warm-up signal cache, inside the runs' parent folder
SIGNALS_CACHE = "signals-cache"


#: settings added later, left out of the hash at their defaults (earlier runs keep their names)
_LATER_DEFAULTS = {"budget": "epochs", "budget_value": None}


def settings_hash(cfg: RunConfig) -> str:
    """Hash of every setting except :data:`NON_SETTINGS` (6 hex digits)."""
    d = {
        k: v
        for k, v in cfg.to_dict().items()
        if k not in NON_SETTINGS and not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_name(cfg: RunConfig, seed: int) -> str:
    """``<dataset>_<learner>_<selection>_<noise>_fr<f>_s<seed>_<settings hash>[_dry]``."""
    noise = cfg.noise_type
    if takes_noise_rate(noise):
        noise += f"{cfg.noise_rate:g}"
    # a dry run (selection only) never takes the place of the real run
    return (
        f"{cfg.dataset}_{cfg.robust_learner}_{cfg.selection}_{noise}_fr{cfg.fraction:g}"
        f"_s{seed}_{settings_hash(cfg)}" + ("_dry" if cfg.dry_run else "")
    )


class RunDir:
    """The files of one run: their paths, atomic writers and checked readers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    labels = property(lambda self: self.path / "labels.npz")
    selection = property(lambda self: self.path / "selection.json")
    subset = property(lambda self: self.path / "subset.npz")
    epoch_subsets = property(lambda self: self.path / "epoch_subsets.npz")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    log = property(lambda self: self.path / "log.txt")
    tb = property(lambda self: self.path / "tb")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def is_run(self) -> bool:
        """True once the run has started (config and labels written): it can be resumed."""
        return self.config.is_file() and self.labels.is_file()

    def has_marker(self) -> bool:
        """True if any of :data:`RUN_MARKERS` is here (a run, possibly crashed early)."""
        return any((self.path / m).is_file() for m in RUN_MARKERS)

    # -- write side (the runner) ----------------------------------------------------
    def write_config(self, cfg: RunConfig) -> None:
        write_text(self.config, dump_yaml(cfg))

    def write_labels(
        self, labels: np.ndarray, *, ids: np.ndarray, clean_labels: np.ndarray | None
    ) -> None:
        arrays = {"labels": labels, "ids": ids}
        if clean_labels is not None:
            arrays["clean_labels"] = clean_labels
        save_npz(self.labels, **arrays)

    def write_selection(self, report: Mapping[str, Any]) -> None:
        write_json(self.selection, dict(report))

    def write_subset(self, subset: Subset) -> None:
        arrays = {"indices": subset.indices, "scores": subset.scores}
        if subset.weights is not None:
            arrays["weights"] = subset.weights
        save_npz(self.subset, **arrays)

    def write_epoch_subsets(self, subsets: Mapping[int, np.ndarray], n: int) -> None:
        """``epoch_subsets.npz``: the positions each epoch trained on (dynamic methods).

        ``epochs`` (E,) and ``packed`` (E, ⌈n/8⌉): row ``k`` is the membership mask of
        epoch ``epochs[k]`` packed with ``numpy.packbits`` (n/8 bytes per epoch).
        """
        epochs = np.array(sorted(subsets), dtype=np.int64)
        packed = np.zeros((epochs.size, -(-n // 8)), dtype=np.uint8)
        for row, e in enumerate(epochs):
            mask = np.zeros(n, dtype=bool)
            mask[subsets[int(e)]] = True
            packed[row] = np.packbits(mask)
        save_npz(self.epoch_subsets, epochs=epochs, packed=packed, n=np.int64(n))

    def read_epoch_subsets(self) -> dict[int, np.ndarray]:
        """Epoch → sorted positions trained on (empty when the file is absent)."""
        if not self.epoch_subsets.is_file():
            return {}
        z = load_npz(self.epoch_subsets, what="per-epoch subset file")
        n = int(z["n"])
        return {
            int(e): np.flatnonzero(np.unpackbits(row, count=n)).astype(np.int64)
            for e, row in zip(z["epochs"], z["packed"], strict=True)
        }

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """``metrics.jsonl``: the warm-up's rows (from ``selection.json``), then ``history``."""
        rows = self.warmup_rows() + list(history)
        write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def warmup_rows(self) -> list[dict[str, Any]]:
        """The warm-up's per-epoch rows (``"phase": "warmup"``) recorded in ``selection.json``."""
        if not self.selection.is_file():
            return []
        return list(_read_json(self.selection).get("warmup_history", []))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json(self.summary, dict(summary))

    # -- read side (report, select --run, Signals.from_run, tests) ------------------
    def read_config(self) -> dict[str, Any] | None:
        """``config.yaml`` as a mapping, or None if absent."""
        if not self.config.is_file():
            return None
        try:
            data = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise DeepCoreError(f"cannot read {self.config}: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise DeepCoreError(f"{self.config} does not hold a mapping")
        return data

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json``, or None while the run is incomplete."""
        return _read_json(self.summary) if self.summary.is_file() else None

    def read_selection(self) -> dict[str, Any]:
        if not self.selection.is_file():
            raise DeepCoreError(f"{self.path} has no selection.json (selection not done yet)")
        return _read_json(self.selection)

    def read_labels(self) -> dict[str, np.ndarray]:
        """``labels``, ``ids`` and, where known, ``clean_labels``."""
        if not self.labels.is_file():
            raise DeepCoreError(f"{self.path} is not a run directory (no labels.npz)")
        try:
            with np.load(self.labels, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DeepCoreError(f"cannot read {self.labels}: {e}") from None

    def read_subset(self) -> Subset:
        with np.load(self.subset, allow_pickle=False) as z:
            return Subset(z["indices"], z["scores"], z["weights"] if "weights" in z.files else None)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch rows of ``metrics.jsonl`` (empty before the first epoch)."""
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line]

    def last_logged_epoch(self) -> int | None:
        """The last ``epoch N:`` of ``log.txt`` (read from its end), or None."""
        if not self.log.is_file():
            return None
        with open(self.log, "rb") as f:
            f.seek(max(0, self.log.stat().st_size - 65536))
            tail = f.read().decode("utf-8", "replace")
        found = re.findall(r"\bepoch (\d+):", tail)
        return int(found[-1]) if found else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DeepCoreError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DeepCoreError(f"{path} does not hold a JSON object")
    return data


def find_run_dirs(root: str | Path) -> list[RunDir]:
    """Every run directory below ``root`` (``root`` itself may be one), sorted by path.

    A folder is a run if it holds one of :data:`RUN_MARKERS`; the search does not
    descend into runs, hidden folders or the signal cache.
    """
    root = Path(root)
    if not root.is_dir():
        raise DeepCoreError(f"runs folder not found: {root}")
    runs: list[RunDir] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        if RunDir(folder).has_marker():
            runs.append(RunDir(folder))
            continue
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError as e:
            raise DeepCoreError(f"cannot list {folder}: {e.strerror}") from None
        stack.extend(
            p
            for p in reversed(children)
            if not p.name.startswith(".") and p.name != SIGNALS_CACHE
        )
    return sorted(runs, key=lambda r: str(r.path))
