"""SOP and SOP+: robust training by sparse over-parameterisation (Liu et al., ICML 2022).

Every training sample ``i`` gets two extra parameters, ``u_i`` (a scalar) and ``v_i``
(a C-vector), that model its label noise as a sparse term. With the one-hot noisy
label ``y``, the network's softmax ``p`` and the batch size ``B``::

    U = clamp(u² · y, 0, 1)          (mass added to the given label)
    V = clamp(v² · (1 − y), 0, 1)    (mass taken off the other classes)
    q = clamp(normalise₁(clamp(p + U − sg(V), 1e-4)), 1e-4, 1)
    loss = −Σ y log q  +  ‖sg(onehot(argmax f)) + U − V − y‖² / B

(``sg`` = stop-gradient). The network learns from the first term only, ``u`` from both
and ``v`` from the second only. ``u`` and ``v`` start at N(0, 1e-8²) and are trained by
their own plain SGD (no momentum, no weight decay, constant learning rates ``lr_u``,
``lr_v``). On a mislabeled sample the network disagrees with ``y``, so ``u`` grows to
absorb the label's missing mass instead of the network memorising it.

SOP+ adds two terms (``ratio_consistency`` = ``-rc``, ``ratio_balance`` = ``-rb``):

* ``-rb`` × the cross-entropy of the batch-mean ``q`` to the uniform prior, ``−Σ π log q̄``
  (the reference's form: the KL divergence to the prior up to the constant ``log C``);
* ``-rc`` × ``KL(sg(softmax f(weak)) ‖ softmax f(strong))``, where the weak view is
  crop + flip and the strong view is the reference's: AutoAugment (the paper's CIFAR-10
  policy with Fast AutoAugment's magnitudes) on the raw image, then crop, flip and
  Cutout 16 (:func:`deep_core.augment.strong_view`, the same view Prune4ReL's
  strong-view signals use), drawn per image; both views go through the network in one
  batch, as in the reference.

Faithful to the authors' code (shengliu66/SOP ``model/loss.py``) and the Prune4ReL copy
(``robustlearner/sop.py``). Defaults are the Prune4ReL CIFAR scripts: ``lr_u 10``,
``lr_v 100`` with the engine's lr 0.02, momentum 0.9, weight decay 5e-4, cosine, batch
128; SOP+ uses ``-rc 0.9 -rb 0.1``. The SOP authors' own CIFAR-100 config differs:
``lr_u 1, lr_v 10`` (``lr_u 0.1, lr_v 100`` for asymmetric noise), weight decay 1e-3,
no Nesterov, cosine to 2e-4 over 300 epochs.

Implementation notes: ``u`` and ``v`` have one row per training position of the whole
data set (any subset indexes them directly) and are looked up with sparse gradients, so
a step touches only the batch's rows. Under DDP each rank updates the rows of its shard;
the per-epoch changes are summed across ranks (the shards are disjoint) so every rank
starts the next epoch with the same ``u`` and ``v``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from deep_core.lazy import LazyModule
from deep_core.learner import Learner, no_grad
from deep_core.options import Aliases, Interval

from .base import register_learner

if TYPE_CHECKING:
    from deep_core.datasets import Batch
    from deep_core.engine import EpochSums, TrainContext

torch = LazyModule("torch", globals())
F = LazyModule("torch.nn.functional", globals())
distributed = LazyModule("deep_core.distributed", globals())

#: standard deviation of the initial u and v
INIT_STD = 1e-8
EPS = 1e-4


def sop_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    logits_strong: torch.Tensor | None = None,
    ratio_consistency: float = 0.0,
    ratio_balance: float = 0.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The SOP(+) loss of one batch.

    Parameters
    ----------
    logits : Tensor (B, C)
        Network outputs on the weak view.
    targets : Tensor (B, C)
        One-hot noisy labels.
    u : Tensor (B, 1)
        The batch's rows of ``u``.
    v : Tensor (B, C)
        The batch's rows of ``v``.
    logits_strong : Tensor (B, C), optional
        Outputs on the strong view (needed for the consistency term).
    ratio_consistency, ratio_balance : float, default=0
        SOP+ weights ``-rc`` and ``-rb``; 0 gives plain SOP.
    weights : Tensor (B,), optional
        Per-sample weights of the cross-entropy term (a dynamic method's loss rescaling,
        e.g. InfoBatch's); None: the plain mean.

    Returns
    -------
    Tensor
        Scalar loss (float32).
    """
    logits = logits.float()
    big_u = torch.clamp(u**2 * targets, 0, 1)
    big_v = torch.clamp(v**2 * (1 - targets), 0, 1)
    q = torch.clamp(torch.softmax(logits, 1) + big_u - big_v.detach(), min=EPS)
    q = torch.clamp(F.normalize(q, p=1, eps=EPS), min=EPS, max=1.0)
    ce = -torch.sum(targets * torch.log(q), dim=1)
    loss = torch.mean(ce if weights is None else ce * weights)
    hard = F.one_hot(logits.detach().argmax(1), logits.shape[1]).to(logits.dtype)
    loss = loss + F.mse_loss(hard + big_u - big_v, targets, reduction="sum") / logits.shape[0]
    if ratio_balance > 0:
        mean_q = torch.clamp(q.mean(0), min=EPS, max=1.0)
        loss = loss + ratio_balance * -(torch.log(mean_q).sum() / logits.shape[1])
    if ratio_consistency > 0 and logits_strong is not None:
        p_weak = torch.softmax(logits, 1).detach()
        kl = F.kl_div(torch.log_softmax(logits_strong.float(), 1), p_weak, reduction="none").sum(1)
        loss = loss + ratio_consistency * kl.mean()
    return loss


@register_learner
class SOP(Learner):
    """SOP; SOP+ when ``ratio_consistency`` and/or ``ratio_balance`` are positive.

    Parameters
    ----------
    lr_u : float, default=10
        Learning rate of ``u``.
    lr_v : float, default=100
        Learning rate of ``v``.
    ratio_consistency : float, default=0
        Weight of the weak/strong consistency term (SOP+: 0.9).
    ratio_balance : float, default=0
        Weight of the class-balance term (SOP+: 0.1).
    """

    name = "SOP"
    checkpointed = ("net", "optimizer", "scheduler", "u", "v", "optimizer_u", "optimizer_v")

    def __init__(
        self,
        *,
        lr_u: Annotated[float, Interval(0, lo_open=True)] = 10.0,
        lr_v: Annotated[float, Interval(0, lo_open=True)] = 100.0,
        ratio_consistency: Annotated[float, Interval(0), Aliases("-rc")] = 0.0,
        ratio_balance: Annotated[float, Interval(0), Aliases("-rb")] = 0.0,
    ) -> None:
        self.lr_u = float(lr_u)
        self.lr_v = float(lr_v)
        self.ratio_consistency = float(ratio_consistency)
        self.ratio_balance = float(ratio_balance)

    # -- engine hooks --------------------------------------------------------------------
    def setup(self, ctx: TrainContext) -> None:
        self.net = ctx.build_network(0)
        self.optimizer = ctx.make_optimizer(self.net.parameters())
        self.scheduler = ctx.make_scheduler(self.optimizer)
        n, c = len(ctx.dataset.labels), ctx.num_classes
        g = torch.Generator().manual_seed(ctx.seed_for(50))
        self.u = torch.nn.Parameter((torch.randn(n, 1, generator=g) * INIT_STD).to(ctx.device))
        self.v = torch.nn.Parameter((torch.randn(n, c, generator=g) * INIT_STD).to(ctx.device))
        # sparse gradients touch only a batch's rows on CPU; on CUDA coalescing them would
        # sync with the host every step, and a dense (N, C) gradient costs microseconds
        self.sparse = ctx.device.type == "cpu"
        self.optimizer_u = torch.optim.SGD([self.u], lr=self.lr_u, momentum=0.0, weight_decay=0.0)
        self.optimizer_v = torch.optim.SGD([self.v], lr=self.lr_v, momentum=0.0, weight_decay=0.0)

    def networks(self):
        return [self.net]

    def schedulers(self):
        return [self.scheduler]

    def train_epoch(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        strong = self.ratio_consistency > 0
        views = ("weak", "strong") if strong else ("weak",)
        if ctx.world_size > 1:
            start = (self.u.detach().clone(), self.v.detach().clone())
        sums = ctx.epoch_sums()
        for batch in ctx.train_batches(epoch, views):
            self.train_step(ctx, batch, sums)
        if ctx.world_size > 1:
            self._merge_ranks(*start)
        return sums.metrics()

    def train_step(self, ctx: TrainContext, batch: Batch, sums: EpochSums) -> None:
        """One optimisation step of the network, ``u`` and ``v`` on ``batch``."""
        strong = len(batch.views) > 1
        pos = batch.positions
        y = ctx.labels[pos]
        b = y.shape[0]
        x = torch.cat(batch.views) if strong else batch.views[0]
        with ctx.autocast():
            out = self.net(ctx.to_input(x))
        logits, logits_strong = (out[:b], out[b:]) if strong else (out, None)
        loss = sop_loss(
            logits,
            F.one_hot(y, ctx.num_classes).float(),
            F.embedding(pos, self.u, sparse=self.sparse),
            F.embedding(pos, self.v, sparse=self.sparse),
            logits_strong=logits_strong,
            ratio_consistency=self.ratio_consistency,
            ratio_balance=self.ratio_balance,
            weights=ctx.loss_weights(pos),
        )
        ctx.step(loss, self.optimizer, self.optimizer_u, self.optimizer_v)
        ctx.record(pos, logits)
        if ctx.wants_losses:
            ctx.observe(pos, F.cross_entropy(logits.detach().float(), y, reduction="none"))
        sums.add(loss, logits, y)

    @no_grad
    def _merge_ranks(self, u0: torch.Tensor, v0: torch.Tensor) -> None:
        """Sum every rank's epoch update of u and v (their shards are disjoint)."""
        for p, p0 in ((self.u, u0), (self.v, v0)):
            delta = distributed.all_reduce_(p.detach() - p0)
            p.copy_(p0 + delta)

    @no_grad
    def extra_metrics(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        """Mean ``clamp(u², 0, 1)`` of the subset's mislabeled and clean samples (when known)."""
        clean = ctx.dataset.clean_labels
        if clean is None:
            return {}
        idx = ctx.indices
        flipped = torch.as_tensor(ctx.dataset.labels[idx] != clean[idx], device=ctx.device)
        big_u = torch.clamp(self.u.detach()[torch.as_tensor(idx, device=ctx.device), 0] ** 2, 0, 1)
        out = {}
        if flipped.any():
            out["u_noisy"] = float(big_u[flipped].mean())
        if not flipped.all():
            out["u_clean"] = float(big_u[~flipped].mean())
        return out

    def warmup(self) -> Learner:
        """The selection warm-up trains the SOP(+) loss itself, with the same options."""
        return SOP(**self.options())
