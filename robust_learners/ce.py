"""Cross-entropy: the plain (non-robust) learner and the default warm-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deep_core.lazy import LazyModule
from deep_core.learner import Learner

from .base import register_learner

if TYPE_CHECKING:
    from deep_core.datasets import Batch
    from deep_core.engine import EpochSums, TrainContext

F = LazyModule("torch.nn.functional", globals())


@register_learner
class CE(Learner):
    """Standard training with cross-entropy on the (noisy) labels of the subset."""

    name = "CE"
    checkpointed = ("net", "optimizer", "scheduler")

    def setup(self, ctx: TrainContext) -> None:
        self.net = ctx.build_network(0)
        self.optimizer = ctx.make_optimizer(self.net.parameters())
        self.scheduler = ctx.make_scheduler(self.optimizer)

    def networks(self):
        return [self.net]

    def schedulers(self):
        return [self.scheduler]

    def train_epoch(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        sums = ctx.epoch_sums()
        for batch in ctx.train_batches(epoch, ("weak",)):
            self.train_step(ctx, batch, sums)
        return sums.metrics()

    def train_step(self, ctx: TrainContext, batch: Batch, sums: EpochSums) -> None:
        """One optimisation step on ``batch`` (no read back to the host)."""
        y = ctx.labels[batch.positions]
        with ctx.autocast():
            logits = self.net(ctx.to_input(batch.views[0]))
            losses = F.cross_entropy(logits, y, reduction="none")
        loss = ctx.weighted_mean(batch.positions, losses)
        ctx.step(loss, self.optimizer)
        ctx.record(batch.positions, logits)
        ctx.observe(batch.positions, losses)
        sums.add(loss, logits, y)

    def warmup(self) -> Learner:
        """The learner that trains the selection warm-up (CE itself)."""
        return CE()
