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

With ``snapshots=True`` the model is also read on the clean view before training and after
every epoch (``snapshot_el2n`` and ``snapshot_grad_norms``, (N, E + 1)): EL2N and GraNd
are defined at an early epoch and at initialisation (Paul et al. 2021), so
``--signal-epoch K`` reads column K of the same single warm-up. The snapshots do not
change training (eval mode, no random draws), so they are not part of the cache key's
training identity: an entry recorded with them serves every run of its key, with or
without snapshots, and holds every epoch, so one warm-up serves any ``--signal-epoch``
of a sweep (a run without snapshots first records the plain entry; the first run that
needs snapshots records the snapshot entry, which every later run reads).

With ``views=("clean", "strong")`` one more pass over one seeded random strong-augmented
view of every sample (the data set's ``strong`` view, the same draw for a given seed and
member) gives ``strong_probs`` and ``strong_features``: the Prune4ReL reference reads its
probabilities and embeddings there (``eval_train_strong``). The warm-up's learning-rate
schedule is sized on ``schedule_epochs`` (the reference: the main run's ``--epochs``) while
training stops after ``epochs``.

Each ensemble member is cached on its own under a key of everything that changes it (and
nothing else), so a sweep over methods and fractions (and a later, larger ensemble)
reuses what is already there. Parallel runs that need the same member wait on a file lock
for one recording instead of each training it.

The key includes a fingerprint of the data (``NoisyDataset.fingerprint``),
so changed files under the same path are recorded anew, and every entry carries a
sha256 manifest of its files that is checked on each load (an altered entry is logged
and recorded again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import Batch, NoisyDataset
from ..engine import Learner, OptimConfig, TrainConfig, TrainContext, Trainer, all_reduce_
from ..fingerprint import hash_file
from ..locks import remove_stale_temp, temp_prefix, wait_for_lock
from . import MEMBER_STACKED, SNAPSHOT_SIGNALS, Signals

log = logging.getLogger("deep_core")

FORMAT_VERSION = 4
#: per-entry checksums (sha256 of every file), verified on each load
MANIFEST = "manifest.json"
_MEMBER_ARRAYS = (
    "probs",
    "features",
    "losses",
    "correct",
    "margins",
    "prob_margins",
    "label_probs",
    "grad_norms",
)
_STRONG_ARRAYS = ("strong_probs", "strong_features")
#: arrays an entry holds only when recorded with them (strong view, snapshots)
_OPTIONAL_ARRAYS = (*_STRONG_ARRAYS, *SNAPSHOT_SIGNALS)
#: the views :func:`record_member` can read probabilities and features from
RECORDED_VIEWS = ("clean", "strong")


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
    schedule_epochs : int, optional
        Horizon of the learning-rate schedule (None: ``epochs``). The Prune4ReL reference
        sizes it on the main run's ``--epochs``.
    views : tuple of str, default=("clean",)
        Passes after training: ``"clean"`` always; ``"strong"`` adds ``strong_probs`` and
        ``strong_features`` from one seeded strong-augmented view.
    warm_model : str, optional
        A trained warm-up network's state dict: no training (``epochs`` must be 0); the
        passes read this network (``--pre-warmuped True --pre-warmed-filename``).
    snapshots : bool, default=False
        Also record ``snapshot_el2n`` and ``snapshot_grad_norms``: the clean view read
        before training and after every epoch (``E + 1`` passes, every member).
    """

    data_key: dict[str, Any]
    learner: str
    model: str
    epochs: int
    train: TrainConfig
    optim: OptimConfig
    pretrained: bool = False
    model_path: str | None = None
    schedule_epochs: int | None = None
    views: tuple[str, ...] = ("clean",)
    warm_model: str | None = None
    snapshots: bool = False

    @property
    def horizon(self) -> int:
        """Epochs the learning-rate schedule is sized on."""
        return self.epochs if self.schedule_epochs is None else self.schedule_epochs

    def member_key(self, member: int) -> str:
        """Hash of everything that changes member ``member``'s signals, and nothing else."""
        t = self.train
        payload = {
            "format": FORMAT_VERSION,
            "data": self.data_key,
            "learner": self.learner,
            "model": self.model,
            "epochs": self.epochs,
            "schedule_epochs": self.horizon if self.epochs else 0,
            # only member 0's probabilities and features are read (strong view included)
            "views": sorted(set(self.views) | {"clean"}) if member == 0 else ["clean"],
            "warm_model": _file_digest(self.warm_model) if self.warm_model else None,
            "batch_size": t.batch_size,
            "seed": t.seed,
            "channels_last": t.channels_last,
            "amp": t.amp,
            "deterministic": t.deterministic,
            "optim": self.optim.__dict__,
            "pretrained": self.pretrained,
            "model_path": self.model_path,
            "member": member,
            "snapshots": self.snapshots,
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def serving_keys(self, member: int) -> list[str]:
        """Keys of the entries that hold member ``member``'s signals, preferred first.

        An entry recorded with snapshots holds everything one recorded without them (the
        same training), so a run without snapshots reads either.
        """
        keys = [self.member_key(member)]
        if not self.snapshots:
            keys.append(replace(self, snapshots=True).member_key(member))
        return keys


class _EpochRecorder:
    """Per-sample training loss, correctness, AUM margins and probability of the label.

    ``margins`` is Pleiss et al.'s AUM summand (logit of the label minus the largest other
    logit); ``prob_margins`` is the same margin on softmax probabilities, which is what the
    CCS authors' code sums over training; ``label_probs`` is the softmax probability of
    the noisy label, the trajectory Dyn-Unc and DUAL read (both record it in training).

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
        self.label_probs = torch.zeros((n, epochs), dtype=torch.float32, device=dev)

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
        self.label_probs[positions, epoch] = p_label

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The five arrays on the host, summed over DDP ranks (their samples are disjoint)."""
        out = {}
        for name in ("losses", "correct", "margins", "prob_margins", "label_probs"):
            out[name] = all_reduce_(getattr(self, name)).cpu().numpy()
        return out


def _last_layer_norms(
    logits: torch.Tensor, h: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax, EL2N ``||p - onehot(y)||`` and the exact last-layer gradient norm per row."""
    p = torch.softmax(logits.float(), 1)
    h = h.float()
    el2n = (p - F.one_hot(y, p.shape[1]).float()).norm(dim=1)
    return p, el2n, el2n * torch.sqrt(h.pow(2).sum(1) + 1.0)


class _Snapshots:
    """EL2N and last-layer gradient norm of the model on the clean view, per epoch.

    Column ``k`` is the model after ``k`` warm-up epochs (0: as initialised). The
    (N, E + 1) arrays live on the training device; rank 0 reads every sample (the other
    DDP ranks go on training and meet it at their next collective), and :meth:`to_numpy`
    copies them to the host once, after training.
    """

    def __init__(self, labels: torch.Tensor, epochs: int) -> None:
        n, dev = labels.numel(), labels.device
        self.el2n = torch.zeros((n, epochs + 1), dtype=torch.float32, device=dev)
        self.grad_norms = torch.zeros((n, epochs + 1), dtype=torch.float32, device=dev)

    @torch.no_grad()
    def take(self, learner: Learner, ctx: TrainContext, column: int) -> None:
        """Read the model as it stands into column ``column`` (rank 0 only)."""
        if ctx.rank != 0:
            return
        for net in learner.networks():
            net.eval()  # the trainer sets train mode again at the start of each epoch
        idx = np.arange(len(ctx.dataset.train), dtype=np.int64)
        for batch in ctx.dataset.train.batches(
            idx,
            batch_size=ctx.config.test_batch_size,
            views=("clean",),
            device=ctx.device,
            workers=ctx.config.workers,
        ):
            with ctx.autocast():
                logits, h = learner.embed(ctx, batch.views[0])
            _, el2n, gn = _last_layer_norms(logits, h, ctx.labels[batch.positions])
            self.el2n[batch.positions, column] = el2n
            self.grad_norms[batch.positions, column] = gn

    def to_numpy(self) -> dict[str, np.ndarray]:
        """``snapshot_el2n`` and ``snapshot_grad_norms`` on the host (rank 0's, on every rank)."""
        return {
            "snapshot_el2n": all_reduce_(self.el2n).cpu().numpy(),
            "snapshot_grad_norms": all_reduce_(self.grad_norms).cpu().numpy(),
        }


class _WarmupContext(TrainContext):
    """A training context whose schedulers are sized on ``schedule_epochs``, not ``epochs``."""

    schedule_epochs: int = 0

    def make_scheduler(self, optimizer: torch.optim.Optimizer, epochs: int | None = None):
        return super().make_scheduler(
            optimizer, self.schedule_epochs if epochs is None else epochs
        )


def _file_digest(path: str) -> str:
    """``sha256`` of a file's bytes (a warm-up model is identified by its content)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


def _view_batches(ctx: TrainContext, view: str, seed: int) -> Iterator[Batch]:
    """Every training sample once, in order, in ``view`` (random views drawn from ``seed``).

    Under DDP each rank takes a contiguous shard, as :meth:`TrainContext.eval_batches`.
    """
    if view == "clean":
        return ctx.eval_batches(ctx.dataset.train, desc="signals")
    idx = np.arange(len(ctx.dataset.train), dtype=np.int64)
    if ctx.world_size > 1:
        idx = np.array_split(idx, ctx.world_size)[ctx.rank]
    return ctx.dataset.train.batches(
        idx,
        batch_size=ctx.config.test_batch_size,
        views=(view,),
        seed=seed,
        device=ctx.device,
        workers=ctx.config.workers,
    )


@torch.no_grad()
def view_pass(
    learner: Learner,
    ctx: TrainContext,
    *,
    view: str = "clean",
    seed: int = 0,
    scratch: Path | None = None,
) -> dict[str, np.ndarray]:
    """probs, features (and on the clean view the last-layer gradient norms) of every sample.

    Parameters
    ----------
    learner, ctx : the trained warm-up and its context.
    view : {"clean", "strong"}, default="clean"
        ``"strong"`` reads one random strong-augmented view per sample, drawn from
        ``seed``; its arrays are named ``strong_probs`` and ``strong_features``.
    seed : int
        Seed of the random view (unused for ``"clean"``).
    scratch : path, optional
        With one process, ``probs`` and ``features`` are written batch by batch into
        ``.npy`` files there (memory-mapped), so N×d features need no RAM: 1M samples ×
        2048 ResNet-50 features are 8.2 GB of float32.
    """
    if view not in RECORDED_VIEWS:
        raise ValueError(f"view must be one of {RECORDED_VIEWS}, got {view!r}")
    for net in learner.networks():
        net.eval()
    n = len(ctx.dataset.train)
    on_disk = scratch is not None and ctx.world_size == 1
    prefix = "" if view == "clean" else f"{view}_"

    def alloc(name: str, cols: int) -> np.ndarray:
        if on_disk:
            path = scratch / f"{prefix}{name}.npy"
            return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, cols))
        return np.zeros((n, cols), dtype=np.float32)

    probs = feats = None
    gn = np.zeros(n, dtype=np.float32)
    for batch in _view_batches(ctx, view, seed):
        with ctx.autocast():
            logits, h = learner.embed(ctx, batch.views[0])
        p, _, gn_batch = _last_layer_norms(logits, h, ctx.labels[batch.positions])
        h = h.float()
        if probs is None:
            probs, feats = alloc("probs", p.shape[1]), alloc("features", h.shape[1])
        pos = batch.positions.cpu().numpy()
        probs[pos] = p.cpu().numpy()
        feats[pos] = h.cpu().numpy()
        if view == "clean":
            gn[pos] = gn_batch.cpu().numpy()
    if probs is None:  # empty training set cannot happen past validation; keep types sane
        raise RuntimeError("no training samples to record")
    if on_disk:
        probs.flush()
        feats.flush()
    elif ctx.world_size > 1:  # each rank filled its shard; the rest are zeros
        for a in (probs, feats, gn):
            all_reduce_(torch.from_numpy(a))  # in place: the tensor shares a's memory
    if view == "clean":
        return {"probs": probs, "features": feats, "grad_norms": gn}
    return {f"{prefix}probs": probs, f"{prefix}features": feats}


def clean_pass(
    learner: Learner, ctx: TrainContext, *, scratch: Path | None = None
) -> dict[str, np.ndarray]:
    """probs, features and last-layer gradient norms on the clean view (:func:`view_pass`)."""
    return view_pass(learner, ctx, view="clean", scratch=scratch)


def record_member(
    dataset: NoisyDataset,
    learner: Learner,
    cfg: WarmupConfig,
    member: int,
    *,
    scratch: Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train one warm-up model and return its signal arrays and a small report.

    ``scratch``: folder where the large pass arrays are written memory-mapped. The
    report's ``history`` holds one row per warm-up epoch (``phase: "warmup"``, ``lr``,
    ``train_loss``, ``train_acc``...), as the run's ``metrics.jsonl`` shows them.
    """
    if cfg.warm_model is not None and cfg.epochs != 0:
        raise ValueError("a loaded warm-up model (warm_model) is not trained: epochs must be 0")
    indices = np.arange(len(dataset.labels), dtype=np.int64)
    train = TrainConfig(**{**cfg.train.__dict__, "epochs": cfg.epochs})
    recorder: _EpochRecorder | None = None

    def on_logits(positions: torch.Tensor, logits: torch.Tensor, epoch: int) -> None:
        recorder(positions, logits, epoch)  # on the training device: no copy to the host

    ctx = _WarmupContext(
        dataset,
        indices,
        train,
        cfg.optim,
        model=cfg.model,
        member=member,
        pretrained=cfg.pretrained,
        model_path=cfg.warm_model or cfg.model_path,
        recorder=on_logits,
    )
    recorder = _EpochRecorder(ctx.labels, cfg.epochs)
    ctx.schedule_epochs = cfg.horizon
    snapshots = _Snapshots(ctx.labels, cfg.epochs) if cfg.snapshots else None
    on_epoch = None
    if snapshots is not None:
        # the initial network, built as fit() builds it again (the same derived seeds)
        learner.setup(ctx)
        snapshots.take(learner, ctx, 0)

        def on_epoch(row: dict[str, Any]) -> None:
            snapshots.take(learner, ctx, int(row["epoch"]) + 1)

    # With epochs == 0 this records the initial (or the loaded) model.
    result = Trainer(learner, ctx, on_epoch=on_epoch, evaluate_each_epoch=False).fit()
    arrays = clean_pass(learner, ctx, scratch=scratch)
    if "strong" in cfg.views and member == 0:
        arrays.update(
            view_pass(learner, ctx, view="strong", seed=ctx.seed_for(90), scratch=scratch)
        )
    arrays.update(recorder.to_numpy())
    if snapshots is not None:
        arrays.update(snapshots.to_numpy())
    history = [{"phase": "warmup", "member": member, **row} for row in result.history]
    report = {
        "member": member,
        "warmup_test_acc": result.last_acc,
        "warmup_seconds": result.seconds,
        "schedule_epochs": cfg.horizon,
        "views": list(cfg.views),
        "snapshots": cfg.snapshots,
        "history": history,
    }
    return arrays, report


def _save_member(
    folder: Path, arrays: dict[str, np.ndarray], report: dict[str, Any], *, tmp: Path | None = None
) -> None:
    """Write a member's arrays and checksum manifest to a temporary folder, rename it in.

    Arrays already memory-mapped in ``tmp`` (written there by the clean pass) stay as
    they are. An existing (corrupt) entry at ``folder`` is replaced.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), dir=folder.parent))
    try:
        for name, arr in arrays.items():
            target = tmp / f"{name}.npy"
            if isinstance(arr, np.memmap) and Path(arr.filename).resolve() == target.resolve():
                continue
            np.save(target, arr, allow_pickle=False)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {name: hash_file(tmp / name) for name in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if folder.exists():  # a corrupt entry: move it out of the way, then drop it
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), dir=folder.parent))
            os.replace(folder, old / "entry")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise


def _load_member(
    folder: Path, *, verify: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays (memory-mapped) and report of a cache entry; None if it fails its checks.

    With ``verify``, every file is checked against the entry's checksum manifest; a
    missing, extra or changed file is logged and the entry is treated as absent.
    """
    if verify:
        problem = _entry_problem(folder)
        if problem is not None:
            log.warning("signals cache entry %s %s: recording it again", folder, problem)
            return None
    try:
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in _MEMBER_ARRAYS}
        return arrays, json.loads((folder / "report.json").read_text())
    except (OSError, ValueError) as e:
        log.warning("signals cache entry %s is unreadable (%s): recording it again", folder, e)
        return None


def _entry_problem(folder: Path) -> str | None:
    """Why ``folder`` does not match its checksum manifest (None if it does)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return "has no readable checksum manifest"
    if not isinstance(manifest, dict):
        return "has a corrupt checksum manifest"
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    expected = {f"{n}.npy" for n in _MEMBER_ARRAYS} | {"report.json"}
    if set(manifest) != present or not expected <= present:
        return "holds other files than its checksum manifest lists"
    for name, digest in manifest.items():
        try:
            if hash_file(folder / name) != digest:
                return f"fails its checksum ({name} changed)"
        except OSError as e:
            return f"cannot be read ({name}: {e.strerror})"
    return None


def _record_or_load(
    dataset: NoisyDataset,
    make_learner,
    cfg: WarmupConfig,
    m: int,
    folder: Path | None,
    key: str,
    *,
    rank: int,
    world_size: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Record member ``m`` into ``folder`` unless a run that held the lock before did."""
    cached = _load_member(folder) if folder is not None and folder.is_dir() else None
    if cached is not None:
        log.info("signals of warm-up member %d recorded meanwhile by another run: %s", m, folder)
        return cached[0], {**cached[1], "cached": True, "key": key}
    # One process writes the large arrays straight into the cache entry-to-be.
    scratch = None
    if folder is not None and world_size == 1:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp(folder.parent)
        scratch = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), dir=folder.parent))
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
            arrays = {**_load_member(folder, verify=False)[0], **_load_optional(folder, {})}
    return arrays, report


def _load_optional(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The strong-view and snapshot arrays of a cache entry that has them (``arrays`` lacks)."""
    return {
        n: np.load(folder / f"{n}.npy", mmap_mode="r")
        for n in _OPTIONAL_ARRAYS
        if n not in arrays and (folder / f"{n}.npy").is_file()
    }


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
        cached = None
        if cache_dir is not None:
            # an entry recorded with snapshots also serves a run without them
            for key in cfg.serving_keys(m):
                folder = Path(cache_dir) / key
                if folder.is_dir() and (cached := _load_member(folder)) is not None:
                    break
        key = cfg.member_key(m) if cached is None else key
        folder = Path(cache_dir) / key if cache_dir is not None else None
        if cached is not None:
            arrays, report = cached
            report = {**report, "cached": True, "key": key}
            log.info("signals of warm-up member %d loaded from cache %s", m, folder)
        else:
            # One process at a time records an entry (DDP ranks record together: no lock).
            lock = (
                wait_for_lock(folder.parent / f".{folder.name}.lock")
                if folder is not None and world_size == 1
                else None
            )
            with lock or contextlib.nullcontext():
                arrays, report = _record_or_load(
                    dataset, make_learner, cfg, m, folder, key, rank=rank, world_size=world_size
                )
        if folder is not None:
            arrays.update(_load_optional(folder, arrays))
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
        "label_probs": main["label_probs"],
    }
    for name in _STRONG_ARRAYS:
        if name in main:
            out[name] = main[name]
    for name in MEMBER_STACKED:
        if all(name in a for a in member_arrays):
            out[name] = np.stack([a[name] for a in member_arrays])
    if "member_probs" in needed:
        out["member_probs"] = np.stack([a["probs"] for a in member_arrays])
    if dataset.clean_labels is not None:
        out["clean_labels"] = dataset.clean_labels
    return Signals(out, num_classes=dataset.num_classes), {"members": reports}
