"""Warm-up training that records every per-sample signal in one pass, cached on disk.

The warm-up trains the robust learner's own warm-up recipe (CE for CE and DivideMix,
the SOP loss for SOP) on the full noisy training set for ``epochs`` epochs. During
training it records, per sample and epoch, the loss, whether the prediction matches
the noisy label, and the AUM margin, from the same forward pass that trains the
network (as Toneva et al. and Pleiss et al. do). After training, one pass over the
clean (un-augmented) view gives ``probs``, ``features`` and the exact last-layer
gradient norm: for cross-entropy with a linear last layer ``W h + b``, the gradient
is ``(p - y) h^T`` for W and ``p - y`` for b, so its norm is
``||p - y|| * sqrt(||h||^2 + 1)`` — per sample, no batch-mean scaling.

Each ensemble member is cached on its own under a key of everything that changes it,
so a sweep over methods and fractions (and a later, larger ensemble) reuses what is
already there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import NoisyDataset
from ..engine import Learner, OptimConfig, TrainConfig, TrainContext, Trainer, all_reduce_
from . import Signals

log = logging.getLogger("deep_core")

FORMAT_VERSION = 2
_MEMBER_ARRAYS = (
    "probs",
    "features",
    "losses",
    "correct",
    "margins",
    "prob_margins",
    "grad_norms",
)


@dataclass(frozen=True)
class WarmupConfig:
    """Everything that determines the recorded signals (the cache key).

    Attributes
    ----------
    data_key : dict
        Data set identity: name, noise type and rate, noise seed, n_train, path.
    learner : str
        Name of the warm-up recipe's learner.
    model : str
    epochs : int
        Warm-up epochs (``-se/--selection_epochs``).
    train : TrainConfig
    optim : OptimConfig
    pretrained, model_path : network initialisation.
    """

    data_key: dict[str, Any]
    learner: str
    model: str
    epochs: int
    train: TrainConfig
    optim: OptimConfig
    pretrained: bool = False
    model_path: str | None = None

    def member_key(self, member: int) -> str:
        t = self.train
        payload = {
            "format": FORMAT_VERSION,
            "data": self.data_key,
            "learner": self.learner,
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": t.batch_size,
            "seed": t.seed,
            "channels_last": t.channels_last,
            "amp": t.amp,
            "deterministic": t.deterministic,
            "optim": self.optim.__dict__,
            "pretrained": self.pretrained,
            "model_path": self.model_path,
            "member": member,
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


class _EpochRecorder:
    """Per-sample training loss, correctness and AUM margins (logits and probabilities).

    ``margins`` is Pleiss et al.'s AUM summand (logit of the label minus the largest other
    logit); ``prob_margins`` is the same margin on softmax probabilities, which is what the
    CCS authors' code sums over training.

    The (N, epochs) arrays live on the device of ``labels`` (the training device): a step
    only scatters into them, and :meth:`to_numpy` copies them to the host once, after
    training, summed over DDP ranks (each rank records the samples it trained).
    """

    def __init__(self, labels: torch.Tensor, epochs: int) -> None:
        n, dev = labels.numel(), labels.device
        self.labels = labels
        self.losses = torch.zeros((n, epochs), dtype=torch.float32, device=dev)
        self.correct = torch.zeros((n, epochs), dtype=torch.bool, device=dev)
        self.margins = torch.zeros((n, epochs), dtype=torch.float32, device=dev)
        self.prob_margins = torch.zeros((n, epochs), dtype=torch.float32, device=dev)

    @torch.no_grad()
    def __call__(self, positions: torch.Tensor, logits: torch.Tensor, epoch: int) -> None:
        logits = logits.float()
        y = self.labels[positions]
        loss = F.cross_entropy(logits, y, reduction="none")
        label_logit = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        p = torch.softmax(logits, 1)
        p_label = p.gather(1, y[:, None]).squeeze(1)
        p_other = p.scatter(1, y[:, None], float("-inf")).amax(1)
        self.losses[positions, epoch] = loss
        self.correct[positions, epoch] = logits.argmax(1) == y
        self.margins[positions, epoch] = label_logit - other
        self.prob_margins[positions, epoch] = p_label - p_other

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The four arrays on the host, summed over DDP ranks (their samples are disjoint)."""
        out = {}
        for name in ("losses", "correct", "margins", "prob_margins"):
            out[name] = all_reduce_(getattr(self, name)).cpu().numpy()
        return out


@torch.no_grad()
def clean_pass(
    learner: Learner, ctx: TrainContext, *, scratch: Path | None = None
) -> dict[str, np.ndarray]:
    """probs, features and last-layer gradient norms on the clean view of every sample.

    With a ``scratch`` folder (one process), ``probs`` and ``features`` are written batch
    by batch into ``.npy`` files there (memory-mapped), so N×d features need no RAM:
    1M samples × 2048 ResNet-50 features are 8.2 GB of float32.
    """
    for net in learner.networks():
        net.eval()
    ds = ctx.dataset
    n = len(ds.train)
    on_disk = scratch is not None and ctx.world_size == 1

    def alloc(name: str, cols: int) -> np.ndarray:
        if on_disk:
            path = scratch / f"{name}.npy"
            return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, cols))
        return np.zeros((n, cols), dtype=np.float32)

    probs = feats = None
    gn = np.zeros(n, dtype=np.float32)
    for batch in ctx.eval_batches(ds.train, desc="signals"):
        with ctx.autocast():
            logits, h = learner.embed(ctx, batch.views[0])
        p = torch.softmax(logits.float(), 1)
        h = h.float()
        if probs is None:
            probs, feats = alloc("probs", p.shape[1]), alloc("features", h.shape[1])
        pos = batch.positions.cpu().numpy()
        probs[pos] = p.cpu().numpy()
        feats[pos] = h.cpu().numpy()
        err = p - F.one_hot(ctx.labels[batch.positions], p.shape[1]).float()
        gn[pos] = (err.norm(dim=1) * torch.sqrt(h.pow(2).sum(1) + 1.0)).cpu().numpy()
    if probs is None:  # empty training set cannot happen past validation; keep types sane
        raise RuntimeError("no training samples to record")
    if on_disk:
        probs.flush()
        feats.flush()
    elif ctx.world_size > 1:  # each rank filled its shard; the rest are zeros
        for a in (probs, feats, gn):
            all_reduce_(torch.from_numpy(a))  # in place: the tensor shares a's memory
    return {"probs": probs, "features": feats, "grad_norms": gn}


def record_member(
    dataset: NoisyDataset,
    learner: Learner,
    cfg: WarmupConfig,
    member: int,
    *,
    scratch: Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train one warm-up model and return its signal arrays and a small report.

    ``scratch``: folder where the large clean-pass arrays are written memory-mapped.
    """
    indices = np.arange(len(dataset.labels), dtype=np.int64)
    train = TrainConfig(**{**cfg.train.__dict__, "epochs": cfg.epochs})
    recorder: _EpochRecorder | None = None

    def on_logits(positions: torch.Tensor, logits: torch.Tensor, epoch: int) -> None:
        recorder(positions, logits, epoch)  # on the training device: no copy to the host

    ctx = TrainContext(
        dataset,
        indices,
        train,
        cfg.optim,
        model=cfg.model,
        member=member,
        pretrained=cfg.pretrained,
        model_path=cfg.model_path,
        recorder=on_logits,
    )
    recorder = _EpochRecorder(ctx.labels, cfg.epochs)
    # With epochs == 0 this records the initial model (e.g. GraNd at initialisation).
    result = Trainer(learner, ctx, evaluate_each_epoch=False).fit()
    arrays = clean_pass(learner, ctx, scratch=scratch)
    arrays.update(recorder.to_numpy())
    report = {
        "member": member,
        "warmup_test_acc": result.last_acc,
        "warmup_seconds": result.seconds,
    }
    return arrays, report


def _save_member(
    folder: Path, arrays: dict[str, np.ndarray], report: dict[str, Any], *, tmp: Path | None = None
) -> None:
    """Write a member's arrays to a temporary folder and rename it into place.

    Arrays already memory-mapped in ``tmp`` (written there by the clean pass) stay as
    they are.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, arr in arrays.items():
            target = tmp / f"{name}.npy"
            if isinstance(arr, np.memmap) and Path(arr.filename).resolve() == target.resolve():
                continue
            np.save(target, arr, allow_pickle=False)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise


def _load_member(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in _MEMBER_ARRAYS}
    return arrays, json.loads((folder / "report.json").read_text())


def warm_up_signals(
    dataset: NoisyDataset,
    make_learner,
    cfg: WarmupConfig,
    *,
    members: int = 1,
    cache_dir: str | Path | None = None,
    needed: Iterable[str] = (),
) -> tuple[Signals, dict[str, Any]]:
    """Record (or load from the cache) the warm-up signals of ``members`` models.

    Parameters
    ----------
    dataset : NoisyDataset
    make_learner : callable
        Returns a fresh warm-up :class:`~deep_core.engine.Learner` per member.
    cfg : WarmupConfig
    members : int
        Ensemble size; member 0 gives probs, features and the per-epoch signals.
    cache_dir : path, optional
        Where members are cached (``<cache_dir>/<key>/``); None disables caching.
    needed : iterable of str
        Signal names the selection needs; ensemble arrays are assembled only if asked.

    Returns
    -------
    signals : Signals
    report : dict
        Per-member warm-up accuracy and seconds, and which members came from the cache.
    """
    from ..engine import dist_info

    rank, world_size = dist_info()
    needed = set(needed)
    member_arrays, reports = [], []
    for m in range(members):
        key = cfg.member_key(m)
        folder = Path(cache_dir) / key if cache_dir is not None else None
        if folder is not None and (folder / "report.json").is_file():
            arrays, report = _load_member(folder)
            report = {**report, "cached": True, "key": key}
            log.info("signals of warm-up member %d loaded from cache %s", m, folder)
        else:
            # One process writes the large arrays straight into the cache entry-to-be.
            scratch = None
            if folder is not None and world_size == 1:
                folder.parent.mkdir(parents=True, exist_ok=True)
                scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            try:
                arrays, report = record_member(dataset, make_learner(), cfg, m, scratch=scratch)
            except BaseException:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
                raise
            report = {**report, "cached": False, "key": key}
            if folder is not None and rank == 0:
                saved = {k: v for k, v in report.items() if k != "cached"}
                _save_member(folder, arrays, saved, tmp=scratch)
                log.info("signals of warm-up member %d recorded and cached in %s", m, folder)
                if scratch is not None:  # read back read-only, exactly as a cache hit
                    arrays = _load_member(folder)[0]
        member_arrays.append(arrays)
        reports.append(report)
    main = member_arrays[0]
    out: dict[str, np.ndarray] = {
        "labels": dataset.labels,
        "probs": main["probs"],
        "features": main["features"],
        "losses": main["losses"],
        "correct": main["correct"],
        "margins": main["margins"],
        "prob_margins": main["prob_margins"],
        "grad_norms": np.stack([a["grad_norms"] for a in member_arrays]),
    }
    if "member_probs" in needed:
        out["member_probs"] = np.stack([a["probs"] for a in member_arrays])
    if dataset.clean_labels is not None:
        out["clean_labels"] = dataset.clean_labels
    return Signals(out, num_classes=dataset.num_classes), {"members": reports}
