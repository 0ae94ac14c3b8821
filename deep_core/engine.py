"""One training engine for every learner.

The engine owns what is common: the epoch loop, optimizers and schedulers from the
flags, evaluation each epoch, checkpoints and resume, metrics, seeds, the device, mixed
precision (:func:`amp_dtype`) and DDP under ``torchrun`` (:mod:`deep_core.distributed`).
A learner (``robust_learners``) only defines its networks, its loss and its per-epoch
preparation through :class:`Learner`.

The GPU never waits for the host within an epoch: in-memory data sets keep their images
on the training device and augment them there; a learner's ``train_step`` queues work
without reading a value back (no ``.item()``, no ``.cpu()``; its loss and accuracy
accumulate on the device in :class:`EpochSums` and are read once per epoch), which
``tests/test_host_sync.py`` checks on CPU. File-backed data sets decode in persistent
DataLoader workers into pinned memory and copy with ``non_blocking``.

Dynamic pruning and compute budgets: a :class:`TrainContext` may hold a dynamic
selection method (:class:`deep_core.methods.base.DynamicMethod`), which chooses each
epoch's training pool (:meth:`TrainContext.epoch_pool`) and per-sample loss weights
(:meth:`TrainContext.weighted_mean`) and is handed the epoch's per-sample training losses
(:meth:`TrainContext.observe`, accumulated on the device and read once after the epoch),
and a budget of optimisation steps or training samples after which no further batch is
drawn (:class:`Budget`). Every epoch row records its ``steps``, ``samples_seen``,
``subset_size`` and, where clean labels are known, the pool's ``subset_noise_rate``.

Determinism: every random draw is a function of ``(seed, epoch, stream)``: model
initialisation (:func:`deep_core.nets.build_model` with a derived seed), the order of
the batches and their augmentation (:meth:`deep_core.datasets.ImageSet.batches`), and
learner-specific draws (:meth:`TrainContext.rng`). A run resumed from the checkpoint
of epoch k therefore continues exactly as the uninterrupted run did.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed
from .config import (  # noqa: F401 (the engine's parts of a run's config, re-exported)
    AMP_MODES,
    OPTIMIZERS,
    SCHEDULERS,
    OptimConfig,
    TrainConfig,
)
from .datasets import Batch, ImageSet, NoisyDataset
from .datasets.base import stream_seed
from .distributed import all_reduce_
from .errors import DeepCoreError, unknown_name
from .learner import Learner, unwrap  # noqa: F401 (unwrap re-exported)
from .nets import build_model

log = logging.getLogger("deep_core")


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device`` (None: float32).

    ``True`` is bfloat16 on a CUDA device that supports it (no loss scaling needed),
    float16 on older GPUs, and float32 on CPU: CPU bfloat16 is opt-in (``"bf16"``), as
    it pays only where the CPU has bfloat16 GEMM kernels (AVX-512 BF16 / AMX; measured
    in ``benchmarks/README.md``).
    """
    if amp is False:
        return None
    cuda = device.type == "cuda"
    if amp is True:
        if not cuda:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16":
        if not cuda:
            raise DeepCoreError("--amp fp16 needs a CUDA device; use --amp bf16 on CPU")
        return torch.float16
    if cuda and not torch.cuda.is_bf16_supported():
        raise DeepCoreError(f"--amp bf16: {device} does not support bfloat16; use --amp fp16")
    return torch.bfloat16


def resolve_device(name: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``auto``; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeepCoreError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeepCoreError(f"device {name!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise DeepCoreError(f"unsupported device {name!r}; use cpu, cuda, cuda:N or auto")
    return dev


def dist_info() -> tuple[int, int]:
    """``(rank, world size)``; see :mod:`deep_core.distributed`."""
    return distributed.rank(), distributed.world_size()


# ----------------------------------------------------------------------------------
# What a learner sees
# ----------------------------------------------------------------------------------
class EpochSums:
    """Training loss and accuracy of an epoch, summed on the device.

    :meth:`add` queues a few device ops per step (no read back to the host);
    :meth:`metrics` sums over DDP ranks and reads the totals once per epoch.
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss·B, correct, B

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a step's mean ``loss`` over the batch and its top-1 hits on ``targets``."""
        b = targets.shape[0]
        self.sums[0] += loss.detach().double() * b
        self.sums[1] += (logits.detach().argmax(1) == targets).sum()
        self.sums[2] += b

    def metrics(self, suffix: str = "") -> dict[str, float]:
        """``train_loss`` and ``train_acc`` (%) over every rank's samples."""
        loss, correct, count = all_reduce_(self.sums).tolist()
        count = max(count, 1.0)
        return {f"train_loss{suffix}": loss / count, f"train_acc{suffix}": 100.0 * correct / count}


Recorder = Callable[[torch.Tensor, torch.Tensor, int], None]

#: what ``--budget`` counts
BUDGETS = ("epochs", "steps", "samples")


@dataclass(frozen=True)
class Budget:
    """Stop drawing training batches once ``value`` steps or samples are used.

    ``steps`` counts optimisation steps (:meth:`TrainContext.step`: one per network
    update, so DivideMix's two networks count twice); ``samples`` counts the rows of the
    training batches drawn (every batch of :meth:`TrainContext.train_batches`, labeled
    and unlabeled alike; evaluation passes such as DivideMix's co-divide are not counted).
    """

    kind: str
    value: int

    def validate(self) -> None:
        if self.kind not in ("steps", "samples"):
            raise unknown_name("budget", self.kind, ("steps", "samples"))
        if self.value < 1:
            raise DeepCoreError(f"--budget-value must be at least 1, got {self.value}")


class TrainContext:
    """The learner's handle on data, devices, optimizers and randomness.

    Parameters
    ----------
    dataset : NoisyDataset
    indices : ndarray of int64
        Training positions the learner may use (the selected subset).
    config : TrainConfig
    optim : OptimConfig
    model : str
        Network name for :meth:`build_network`.
    member : int
        Ensemble member (0 = the main model); shifts every random stream.
    pretrained, model_path : network weights (see :func:`deep_core.nets.build_model`).
    """

    def __init__(
        self,
        dataset: NoisyDataset,
        indices: np.ndarray,
        config: TrainConfig,
        optim: OptimConfig,
        *,
        model: str,
        member: int = 0,
        pretrained: bool = False,
        model_path: str | None = None,
        recorder: Recorder | None = None,
        dynamic: Any | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.config = config
        self.optim = optim
        self.model = model
        self.member = member
        self.pretrained = pretrained
        self.model_path = model_path
        self.device = distributed.init(resolve_device(config.device))
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        if self.device.type == "cuda" and not config.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: tuned kernels pay
        self.num_classes = dataset.num_classes
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.long, device=self.device)
        self.recorder = recorder
        self._pool: tuple[int, np.ndarray] | None = None
        self._padded: tuple[torch.Tensor, int] | None = None
        self.amp_dtype = amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch = 0
        #: a started :class:`deep_core.methods.base.DynamicMethod`, or None (static subset)
        self.dynamic = dynamic
        self.budget = budget
        self.steps = 0
        self.samples_seen = 0
        n = len(dataset.labels)
        track = dynamic is not None and getattr(dynamic, "needs_losses", True)
        self._loss_sums = torch.zeros(2, n, device=self.device) if track else None
        self._weights: torch.Tensor | None = None

    # -- dynamic pruning and budgets ----------------------------------------------------------
    def budget_spent(self) -> bool:
        """True once the run's step or sample budget is used up."""
        if self.budget is None:
            return False
        used = self.steps if self.budget.kind == "steps" else self.samples_seen
        return used >= self.budget.value

    def begin_epoch(self, epoch: int) -> None:
        """Fix ``epoch``'s pool and loss weights; clear the per-sample loss sums."""
        self.epoch = epoch
        pool = self.epoch_pool(epoch)
        self._weights = None
        if self.dynamic is not None and self.recorder is None:
            weights = self.dynamic.loss_weights(epoch)
            if weights is not None:
                w = torch.ones(len(self.dataset.labels), device=self.device)
                w[torch.as_tensor(weights[0], device=self.device)] = torch.as_tensor(
                    weights[1], dtype=torch.float32, device=self.device
                )
                self._weights = w
        if self._loss_sums is not None:
            self._loss_sums.zero_()
        self._epoch_start = (self.steps, self.samples_seen, int(pool.size))

    def loss_weights(self, positions: torch.Tensor) -> torch.Tensor | None:
        """The dynamic method's loss weights of ``positions`` this epoch (None: all 1)."""
        return None if self._weights is None else self._weights[positions]

    def weighted_mean(self, positions: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Mean of per-sample ``losses``, weighted by the dynamic method's loss weights.

        Without weights (a static subset, RS2, InfoBatch's annealing) the plain mean.
        """
        if self._weights is None:
            return losses.mean()
        return (losses * self._weights[positions].to(losses.dtype)).mean()

    @property
    def wants_losses(self) -> bool:
        """True when :meth:`observe` keeps per-sample losses (a dynamic method reads them)."""
        return self._loss_sums is not None and self.recorder is None

    def observe(self, positions: torch.Tensor, losses: torch.Tensor) -> None:
        """Add per-sample training losses of a step for the dynamic method (on the device)."""
        if not self.wants_losses:
            return
        if self._padded is not None and positions is self._padded[0]:
            keep = positions.shape[0] - self._padded[1]
            positions, losses = positions[:keep], losses[:keep]
        self._loss_sums[0].index_add_(0, positions, losses.detach().float())
        self._loss_sums[1].index_add_(0, positions, torch.ones_like(losses, dtype=torch.float32))

    def finish_epoch(self, epoch: int) -> dict[str, Any]:
        """The epoch's compute and pool statistics; hands its losses to the dynamic method."""
        steps0, samples0, size = self._epoch_start
        pool = self.epoch_pool(epoch)
        row: dict[str, Any] = {
            "steps": self.steps - steps0,
            "samples_seen": self.samples_seen - samples0,
            "subset_size": size,
        }
        clean = self.dataset.clean_labels
        if clean is not None and pool.size:
            row["subset_noise_rate"] = float(np.mean(self.dataset.labels[pool] != clean[pool]))
        if self._loss_sums is not None:
            sums = all_reduce_(self._loss_sums)[:, torch.as_tensor(pool, device=self.device)]
            total, count = sums.cpu().numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                losses = np.where(count > 0, total / count, np.nan)
            self.dynamic.observe(epoch, pool, losses)
        return row

    # -- randomness ---------------------------------------------------------------------
    def seed_for(self, *stream: int) -> int:
        """A seed for a named random stream of this run and ensemble member."""
        return stream_seed(self.config.seed, self.member, *stream)

    def rng(self, epoch: int, stream: int = 0) -> np.random.Generator:
        """A numpy generator for learner-specific draws in ``epoch`` (e.g. mixup's λ)."""
        return np.random.default_rng(self.seed_for(1000 + epoch, stream, self.rank))

    def torch_generator(self, epoch: int, stream: int = 0) -> torch.Generator:
        """A generator on the training device for learner-specific tensor draws.

        Draws on the device need no host-to-device copy; they differ between CPU and
        CUDA for the same seed (each device's generator is deterministic on its own).
        """
        return torch.Generator(device=self.device).manual_seed(
            self.seed_for(2000 + epoch, stream, self.rank)
        )

    def epoch_sums(self) -> EpochSums:
        """A device-side accumulator of the epoch's training loss and accuracy."""
        return EpochSums(self.device)

    # -- networks and optimisation ----------------------------------------------------------
    def build_network(self, index: int = 0) -> nn.Module:
        """Network ``index`` of the learner, on the device, seeded, DDP-wrapped if needed."""
        net = build_model(
            self.model,
            num_classes=self.num_classes,
            image_shape=self.dataset.train.image_shape,
            seed=self.seed_for(10 + index),
            pretrained=self.pretrained,
            model_path=self.model_path,
        )
        net = net.to(self.device)
        if self.config.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.world_size > 1:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return net

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        o = self.optim
        if o.optimizer == "SGD":
            return torch.optim.SGD(
                params,
                o.lr,
                momentum=o.momentum,
                weight_decay=o.weight_decay,
                nesterov=o.nesterov and o.momentum > 0,
            )
        cls = torch.optim.Adam if o.optimizer == "Adam" else torch.optim.AdamW
        return cls(params, o.lr, weight_decay=o.weight_decay)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, epochs: int | None = None):
        o = self.optim
        epochs = self.config.epochs if epochs is None else epochs
        if o.scheduler == "CosineAnnealingLR":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, epochs), eta_min=o.min_lr
            )
        if o.scheduler == "StepLR":
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
        if o.scheduler == "MultiStepLR":
            ms = list(o.milestones) if o.milestones else [max(1, epochs // 2)]
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=ms, gamma=o.gamma)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def autocast(self):
        """Autocast to :attr:`amp_dtype` when mixed precision is on; a no-op otherwise."""
        if self.amp_dtype is not None:
            return torch.autocast(self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def load_scaler_state(self, state: dict[str, Any]) -> None:
        """Restore the loss scaler from a checkpoint written on any device.

        A run checkpointed without loss scaling (CPU, bfloat16) has an empty scaler
        state; resumed with float16 on CUDA the scaler starts afresh, and a float16
        state resumed without scaling is dropped.
        """
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)

    def step(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """Backward ``loss`` and step ``optimizers`` (with loss scaling under AMP)."""
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        self.steps += 1

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return (
            x.contiguous(memory_format=torch.channels_last)
            if self.config.channels_last and x.ndim == 4
            else x
        )

    # -- data -------------------------------------------------------------------------------
    def epoch_pool(self, epoch: int) -> np.ndarray:
        """The positions one training epoch draws from (sorted).

        The learner's subset, unless the data set defines its own epoch draw
        (``epoch_indices``: Clothing-1M's class-balanced ``batches_per_epoch`` batches, as
        DivideMix trains on it); then a fresh draw of ``batches_per_epoch × batch_size``
        samples from the subset each epoch, the same for every caller within the epoch.
        With a dynamic method, its subset of ``epoch`` (positions of the whole training
        set) takes the place of the subset; a data set's own draw is then made from it.
        A selection warm-up (which records per-epoch signals of every sample) always
        uses the whole subset.
        """
        draw = getattr(self.dataset, "epoch_indices", None)
        dynamic = self.dynamic is not None
        if (draw is None and not dynamic) or self.recorder is not None:
            return self.indices
        if self._pool is None or self._pool[0] != epoch:
            pool = self.dynamic.epoch_subset(epoch) if dynamic else self.indices
            if draw is not None:
                n = int(self.dataset.batches_per_epoch) * self.config.batch_size
                pool = draw(pool, num_samples=n, epoch=epoch, seed=self.seed_for(70))
            self._pool = (epoch, np.asarray(pool, dtype=np.int64))
        return self._pool[1]

    def train_batches(
        self,
        epoch: int,
        views: Sequence[str] = ("weak",),
        *,
        indices: np.ndarray | None = None,
        stream: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
        desc: str | None = None,
        budgeted: bool = True,
    ) -> Iterator[Batch]:
        """Shuffled batches of ``indices`` (default: :meth:`epoch_pool`) for ``epoch``.

        Every batch drawn counts in :attr:`samples_seen`; once the :class:`Budget` is
        spent no further batch is drawn (``budgeted=False``: batches drawn alongside
        another budgeted batch, such as DivideMix's unlabeled ones, are never cut off).

        Under DDP each rank takes every ``world_size``-th sample of one shuffled order,
        padded as ``DistributedSampler`` pads: every rank makes the same number of steps
        (DDP needs it) and every sample is trained at least once per epoch. A padding
        sample (a repeat) is the last of its rank's share and is never recorded
        (:meth:`record`), so the warm-up records every sample exactly once per epoch.
        """
        idx = self.epoch_pool(epoch) if indices is None else np.asarray(indices, dtype=np.int64)
        seed = self.seed_for(3000 + stream)
        bs = batch_size or self.config.batch_size
        pad = 0
        if self.world_size > 1 and idx.size:
            g = torch.Generator().manual_seed(stream_seed(seed, epoch, 1))
            order = idx[torch.randperm(idx.size, generator=g).numpy()]
            total = -(-idx.size // self.world_size) * self.world_size
            order = np.concatenate([order, np.resize(order, total - idx.size)])
            pad = int(total > idx.size and self.rank >= idx.size % self.world_size)
            idx = order[self.rank :: self.world_size]
        it = self.dataset.train.batches(
            idx,
            batch_size=bs,
            views=views,
            shuffle=self.world_size == 1,
            seed=seed,
            epoch=epoch,
            device=self.device,
            drop_last=drop_last,
            workers=self.config.workers,
        )
        if pad:
            it = self._mark_padding(it, idx.size, pad)
        it = self._count(it, budgeted)
        return self._progress(it, idx.size, bs, desc or f"epoch {epoch}")

    def _count(self, it: Iterator[Batch], budgeted: bool) -> Iterator[Batch]:
        """Count the samples drawn; stop before a batch once the budget is spent.

        Under DDP every rank draws equal batches (padded shares), so the count is the
        rank's rows × world size and every rank stops at the same step.
        """
        for batch in it:
            if budgeted and self.budget_spent():
                return
            self.samples_seen += int(batch.positions.shape[0]) * self.world_size
            yield batch

    def _mark_padding(self, it: Iterator[Batch], n: int, pad: int) -> Iterator[Batch]:
        """Remember the batch that ends with ``pad`` padding samples (see :meth:`record`)."""
        seen = 0
        for batch in it:
            seen += batch.positions.shape[0]
            if seen == n:
                self._padded = (batch.positions, pad)
            yield batch

    def eval_batches(
        self, images: ImageSet, indices: np.ndarray | None = None, desc: str = "eval"
    ) -> Iterator[Batch]:
        """Clean-view batches in order; under DDP each rank takes a contiguous shard."""
        n = len(images)
        idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        if self.world_size > 1:
            idx = np.array_split(idx, self.world_size)[self.rank]
        it = images.batches(
            idx,
            batch_size=self.config.test_batch_size,
            views=("clean",),
            device=self.device,
            workers=self.config.workers,
        )
        return self._progress(it, idx.size, self.config.test_batch_size, desc)

    def _progress(self, it: Iterator[Batch], n: int, bs: int, desc: str) -> Iterator[Batch]:
        if not self.config.progress or not distributed.is_main():
            return it
        from tqdm import tqdm

        return iter(
            tqdm(it, total=math.ceil(n / bs), desc=desc, leave=False, unit="batch", mininterval=2.0)
        )

    def record(self, positions: torch.Tensor, logits: torch.Tensor) -> None:
        """Report training logits of the main network for the signal recorder (if any).

        DDP padding samples (repeats of samples another rank trains) are left out.
        """
        if self.recorder is None:
            return
        if self._padded is not None and positions is self._padded[0]:
            keep = positions.shape[0] - self._padded[1]
            positions, logits = positions[:keep], logits[:keep]
        self.recorder(positions, logits.detach(), self.epoch)


# ----------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    learner: Learner, ctx: TrainContext, images: ImageSet, labels: np.ndarray, desc: str = "test"
) -> float:
    """Top-1 accuracy (%) of ``learner.predict`` on ``images``."""
    for net in learner.networks():
        net.eval()
    y = torch.as_tensor(labels, dtype=torch.long, device=ctx.device)
    correct = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    for batch in ctx.eval_batches(images, desc=desc):
        with ctx.autocast():
            pred = learner.predict(ctx, batch.views[0]).argmax(1)
        correct[0] += (pred == y[batch.positions]).sum()
        correct[1] += batch.positions.numel()
    all_reduce_(correct)
    return float(100.0 * correct[0] / max(correct[1].item(), 1))


@dataclass
class FitResult:
    last_acc: float | None
    best_acc: float | None
    best_epoch: int | None
    best_by: str
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Runs a learner for ``config.epochs`` epochs with evaluation and checkpoints.

    Parameters
    ----------
    learner : Learner
    ctx : TrainContext
    checkpoint : path, optional
        Written atomically after every epoch; read by :meth:`fit` when ``resume``.
    on_epoch : callable, optional
        Called with each epoch's metrics dict (rank 0 only), e.g. to write logs.
    evaluate_each_epoch : bool
        Test (and validation) accuracy after every epoch.
    """

    def __init__(
        self,
        learner: Learner,
        ctx: TrainContext,
        *,
        checkpoint: str | Path | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        evaluate_each_epoch: bool = True,
    ) -> None:
        self.learner = learner
        self.ctx = ctx
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.on_epoch = on_epoch
        self.evaluate_each_epoch = evaluate_each_epoch

    def fit(self, *, resume: bool = False) -> FitResult:
        ctx, learner = self.ctx, self.learner
        if ctx.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        learner.setup(ctx)
        history: list[dict[str, Any]] = []
        start = 0
        seconds = 0.0
        if resume and self.checkpoint is not None and self.checkpoint.is_file():
            state = load_checkpoint(self.checkpoint, map_location=ctx.device)
            learner.load_state_dict(state["learner"])
            ctx.load_scaler_state(state["scaler"])
            history = list(state["history"])
            start = int(state["epoch"]) + 1
            seconds = float(state.get("seconds", 0.0))
            ctx.steps = sum(int(r.get("steps", 0)) for r in history)
            ctx.samples_seen = sum(int(r.get("samples_seen", 0)) for r in history)
            if ctx.dynamic is not None:
                ctx.dynamic.load_state_dict(_from_tensors(state["dynamic"]))
            log.info("resumed from %s at epoch %d", self.checkpoint, start)
        has_val = ctx.dataset.val is not None
        for epoch in range(start, ctx.config.epochs):
            if ctx.budget_spent():
                break
            t0 = time.time()
            ctx.begin_epoch(epoch)
            for net in learner.networks():
                net.train()
            row: dict[str, Any] = {"epoch": epoch, "lr": learner.lr()}
            row.update(learner.train_epoch(ctx, epoch))
            row.update(ctx.finish_epoch(epoch))
            row.update(learner.extra_metrics(ctx, epoch))
            last = epoch == ctx.config.epochs - 1 or ctx.budget_spent()
            if self.evaluate_each_epoch or last:
                if has_val:
                    row["val_acc"] = evaluate(
                        learner, ctx, ctx.dataset.val, ctx.dataset.val_labels, "val"
                    )
                row["test_acc"] = evaluate(learner, ctx, ctx.dataset.test, ctx.dataset.test_labels)
                # further test sets (WebVision's ImageNet validation) as ``<name>_acc``
                for name, (images, labels) in ctx.dataset.extra_tests.items():
                    row[f"{name}_acc"] = evaluate(learner, ctx, images, labels, name)
            learner.end_epoch(ctx, epoch)
            row["seconds"] = round(time.time() - t0, 3)
            seconds += row["seconds"]
            history.append(row)
            if self.checkpoint is not None:
                distributed.on_main(self._save, epoch, history, seconds)
            if self.on_epoch is not None:
                distributed.on_main(self.on_epoch, row)
            log.info(
                "epoch %d: %s",
                epoch,
                ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()
                    if k != "epoch"
                ),
            )
        return summarise(history, has_val, seconds)

    def _save(self, epoch: int, history: list[dict[str, Any]], seconds: float) -> None:
        """Write the checkpoint of ``epoch`` (everything :meth:`fit` needs to resume)."""
        ctx = self.ctx
        save_checkpoint(
            self.checkpoint,
            {
                "epoch": epoch,
                "learner": self.learner.state_dict(),
                "scaler": ctx.scaler.state_dict(),
                "history": history,
                "seconds": seconds,
                "dynamic": _to_tensors(ctx.dynamic.state_dict()) if ctx.dynamic else {},
            },
        )


def summarise(history: list[dict[str, Any]], has_val: bool, seconds: float) -> FitResult:
    """Last and best accuracy; "best" is chosen on validation when there is one."""
    rows = [r for r in history if "test_acc" in r]
    if not rows:
        return FitResult(None, None, None, "val" if has_val else "test", history, seconds)
    key = "val_acc" if has_val else "test_acc"
    best = max(rows, key=lambda r: (r[key], -r["epoch"]))
    return FitResult(
        rows[-1]["test_acc"],
        best["test_acc"],
        best["epoch"],
        "val" if has_val else "test",
        history,
        seconds,
    )


def _to_tensors(obj: Any) -> Any:
    """numpy arrays in nested dicts and lists as tensors (a ``weights_only`` checkpoint)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_tensors(v) for v in obj]
    return obj


def _from_tensors(obj: Any) -> Any:
    """The inverse of :func:`_to_tensors`."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu().numpy()
    if isinstance(obj, dict):
        return {k: _from_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_tensors(v) for v in obj]
    return obj


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from .io import atomic_open

    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DeepCoreError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from None
