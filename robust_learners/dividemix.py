"""DivideMix: co-divide the data with loss GMMs, then MixMatch (Li et al., ICLR 2020).

Two networks are trained. The first ``warmup_epochs`` epochs train both with
cross-entropy on the noisy labels (plus the confidence penalty ``mean Σ p log p`` for
asymmetric noise and always on Clothing-1M, as the authors' ``Train_clothing1M.py``, which
keeps the warm-up from becoming over-confident; Clothing-1M warms up 1 epoch, as there).
A run (``deepcore-run``) whose warm-up covers every epoch is an error: no epoch would
run DivideMix.
Then, each epoch:

1. **Co-divide.** For each network, the per-sample cross-entropy on the clean view of
   the training subset is min-max normalised and a two-component
   ``GaussianMixture(max_iter=10, tol=1e-2, reg_covar=5e-4)`` (scikit-learn) is fitted;
   a sample's clean probability ``w`` is its posterior under the low-mean component,
   and it is *labeled* when ``w > p_threshold``. Each network then trains on the split
   made by the *other* network.
2. **MixMatch** per batch of labeled (two weak views) and unlabeled (two weak views)
   samples: co-refinement of the labels, ``sharpen(w·y + (1−w)·p̄, T)`` with the
   network's own mean prediction ``p̄``; co-guessing of the unlabeled targets,
   ``sharpen(mean of 2 networks × 2 views, T)``; mixup of all inputs and targets with
   ``λ ~ Beta(alpha, alpha)``, ``λ = max(λ, 1−λ)``; loss
   ``Lx + λ_u(t)·Lu + Σ π log(π / p̄_mix)`` with soft cross-entropy ``Lx`` on the
   labeled part, mean squared error ``Lu`` on the unlabeled part and the uniform prior
   ``π``. ``λ_u(t)`` ramps up linearly from 0 to ``lambda_u`` over 16 epochs after
   the warm-up, counted per batch, as in the authors' CIFAR code.
3. Evaluation uses the sum of both networks' logits.

Faithful to LiJunnan1992/DivideMix ``Train_cifar.py`` and the Prune4ReL copy
(``robustlearner/dividemix.py``), with two reference quirks fixed and one kept behind
a flag:

* Prune4ReL drops the CE warm-up when it re-initialises the networks for the pruned
  subset; here the warm-up always runs (``warmup_epochs``; 10 for 10-class data, 30 for
  100 classes, as the authors use).
* Prune4ReL disables the ``λ_u`` ramp-up (``return self.lambda_u # * float(current)``);
  ``reference_rampup=True`` reproduces that.
* The reference crashes when one side of the split is empty; here an empty unlabeled
  side trains on the labeled part alone and an empty labeled side skips the network
  for that epoch.

With a dynamic selection method (:class:`deep_core.methods.base.DynamicMethod`) each
epoch's co-divide and MixMatch run on that epoch's subset; the method observes network
1's per-sample losses (of its warm-up steps, then of its co-divide pass) and its loss
weights (InfoBatch's rescaling) apply to the warm-up's cross-entropy; MixMatch's losses
are of mixed samples and are not reweighted.

Not implemented: the authors' averaging of the last 5 epochs' losses before the GMM at
90% noise. The GMM's random state is a function of (seed, epoch), so a resumed run
re-fits exactly the same mixtures; the checkpoint holds both networks, optimizers and
schedulers. Batches: labeled and unlabeled batches both have ``--batch-size`` samples
(the authors use 64 each for MixMatch and 128 for the warm-up; Prune4ReL passes 128).

Logged per epoch after the warm-up (``1``/``2`` = the network whose GMM made the split):
``labeled_1/2`` (labeled-set size), and where clean labels are known ``precision_1/2``
(fraction of the labeled set whose noisy label is right) and ``auroc_1/2`` (AUROC of
the clean probability against the true clean mask; evaluation only).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import numpy as np

from deep_core.lazy import LazyModule
from deep_core.learner import Learner, no_grad
from deep_core.options import Interval

from .base import register_learner

if TYPE_CHECKING:
    from deep_core.datasets import Batch
    from deep_core.engine import EpochSums, TrainContext

torch = LazyModule("torch", globals())
F = LazyModule("torch.nn.functional", globals())
distributed = LazyModule("deep_core.distributed", globals())

#: epochs over which lambda_u ramps up after the warm-up (authors' CIFAR code)
RAMPUP_EPOCHS = 16


# ----------------------------------------------------------------------------------
# The pieces, as pure functions
# ----------------------------------------------------------------------------------
def clean_probability(losses: np.ndarray, *, seed: int) -> np.ndarray:
    """Posterior of the low-loss component of a 2-GMM on min-max normalised losses.

    Parameters
    ----------
    losses : ndarray (n,)
        Per-sample cross-entropy of the training subset.
    seed : int
        Random state of the mixture's k-means initialisation.

    Returns
    -------
    ndarray (n,) of float64 in [0, 1]
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, dtype=np.float64)
    if x.size < 2:
        return np.ones_like(x)
    span = x.max() - x.min()
    x = (x - x.min()) / (span if span > 0 else 1.0)
    gmm = GaussianMixture(
        n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed % 2**32
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=10 is deliberate
        gmm.fit(x[:, None])
    return gmm.predict_proba(x[:, None])[:, int(gmm.means_.argmin())]


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """Temperature sharpening ``p^(1/T)``, renormalised over classes."""
    pt = p ** (1.0 / T)
    return pt / pt.sum(1, keepdim=True)


def semi_loss(
    logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor, targets_u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixMatch's ``Lx`` (soft cross-entropy) and ``Lu`` (mean squared error of softmax)."""
    lx = -torch.mean(torch.sum(F.log_softmax(logits_x, 1) * targets_x, 1))
    if logits_u.shape[0] == 0:
        return lx, logits_x.new_zeros(())
    lu = torch.mean((torch.softmax(logits_u, 1) - targets_u) ** 2)
    return lx, lu


def prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """``KL(π ‖ mean softmax)`` to the uniform prior ``π``."""
    c = logits.shape[1]
    prior = torch.full((c,), 1.0 / c, dtype=logits.dtype, device=logits.device)
    return torch.sum(prior * torch.log(prior / torch.softmax(logits, 1).mean(0)))


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Negative entropy ``mean Σ p log p`` (added to the warm-up loss for asymmetric noise)."""
    p = torch.softmax(logits, 1)
    return torch.mean(torch.sum(p * torch.log_softmax(logits, 1), 1))


def linear_rampup(current: float, warm_up: float, length: int = RAMPUP_EPOCHS) -> float:
    """``clip((current − warm_up) / length, 0, 1)``."""
    return float(np.clip((current - warm_up) / length, 0.0, 1.0))


# ----------------------------------------------------------------------------------
# The learner
# ----------------------------------------------------------------------------------
@register_learner
class DivideMix(Learner):
    """DivideMix on the shared engine.

    Parameters
    ----------
    lambda_u : float, default=25
        Weight of the unlabeled loss. The authors' CIFAR-10 settings: 0 for 20%
        symmetric and 40% asymmetric noise, 25 for 50%, 50 for 80%, 150 for 90%.
        Prune4ReL's default is 1 with the ramp-up disabled.
    p_threshold : float, default=0.5
        Clean-probability threshold for the labeled set.
    T : float, default=0.5
        Sharpening temperature.
    alpha : float, default=4
        Mixup's Beta(alpha, alpha).
    warmup_epochs : int, optional
        CE warm-up epochs at the start of training (default 10, 30 when the data has
        100 or more classes, 1 on Clothing-1M: the authors').
    reference_rampup : bool, default=False
        Use ``lambda_u`` from the first epoch, as Prune4ReL does (no ramp-up).
    confidence_penalty : bool, optional
        Add the confidence penalty to the warm-up loss (default: for asymmetric
        synthetic noise and on Clothing-1M, as the authors do).
    """

    name = "DivideMix"
    updates_per_batch = 2
    checkpointed = ("nets", "optimizers", "scheds")
    checkpoint_keys = {"scheds": "schedulers"}

    def __init__(
        self,
        *,
        lambda_u: Annotated[float, Interval(0)] = 25.0,
        p_threshold: Annotated[float, Interval(0, 1)] = 0.5,
        T: Annotated[float, Interval(0, lo_open=True)] = 0.5,
        alpha: Annotated[float, Interval(0, lo_open=True)] = 4.0,
        warmup_epochs: Annotated[int, Interval(0)] | None = None,
        reference_rampup: bool = False,
        confidence_penalty: bool | None = None,
    ) -> None:
        self.lambda_u = float(lambda_u)
        self.p_threshold = float(p_threshold)
        self.T = float(T)
        self.alpha = float(alpha)
        self.warmup_epochs = warmup_epochs
        self.reference_rampup = bool(reference_rampup)
        self.confidence_penalty = confidence_penalty

    # -- engine hooks --------------------------------------------------------------------
    def setup(self, ctx: TrainContext) -> None:
        self.nets = [ctx.build_network(0), ctx.build_network(1)]
        self.optimizers = [ctx.make_optimizer(n.parameters()) for n in self.nets]
        self.scheds = [ctx.make_scheduler(o) for o in self.optimizers]
        self.n_warmup = self.training_warmup_epochs(
            dataset=ctx.dataset.name, num_classes=ctx.num_classes
        )
        self.penalty = self.confidence_penalty
        if self.penalty is None:
            self.penalty = (
                ctx.dataset.noise.get("type") == "asym" or ctx.dataset.name == "Clothing1M"
            )

    def training_warmup_epochs(self, *, dataset: str, num_classes: int) -> int:
        """CE warm-up epochs of training: ``warmup_epochs``, else the authors' per data set."""
        if self.warmup_epochs is not None:
            return int(self.warmup_epochs)
        if dataset == "Clothing1M":
            return 1
        return 30 if num_classes >= 100 else 10

    def networks(self):
        return list(self.nets)

    def schedulers(self):
        return list(self.scheds)

    @no_grad
    def predict(self, ctx: TrainContext, x: torch.Tensor) -> torch.Tensor:
        """The sum of both networks' logits."""
        x = ctx.to_input(x)
        return self.nets[0](x) + self.nets[1](x)

    def train_epoch(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        if epoch < self.n_warmup:
            return self.warmup_epoch(ctx, epoch)
        pool = ctx.epoch_pool(epoch)  # the subset (Clothing-1M: this epoch's balanced draw)
        probs = [self.co_divide(ctx, k, epoch, pool) for k in (0, 1)]
        row = self.split_metrics(ctx, probs, pool)
        sums = torch.zeros(4, dtype=torch.float64, device=ctx.device)  # loss, Lx, Lu, steps
        for k in (0, 1):
            sums += self._mixmatch(ctx, epoch, k, probs[1 - k], pool)
        loss, lx, lu, steps = distributed.all_reduce_(sums).tolist()
        steps = max(steps, 1.0)
        row.update(
            train_loss=loss / steps,
            loss_x=lx / steps,
            loss_u=lu / steps,
            lambda_u=self._lambda_u(epoch + 1.0),
        )
        return row

    # -- warm-up -------------------------------------------------------------------------
    def warmup_epoch(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        """CE on the noisy labels for both networks (each on its own batch order)."""
        row: dict[str, float] = {}
        for k, net in enumerate(self.nets):
            net.train()
            sums = ctx.epoch_sums()
            for batch in ctx.train_batches(epoch, ("weak",), stream=k, desc=f"warm-up {k + 1}"):
                self.warmup_step(ctx, k, batch, sums)
            row.update(sums.metrics("" if k == 0 else "_2"))
        return row

    def warmup_step(self, ctx: TrainContext, k: int, batch: Batch, sums: EpochSums) -> None:
        """One cross-entropy step of network ``k`` (network 1 feeds the recorder)."""
        y = ctx.labels[batch.positions]
        with ctx.autocast():
            logits = self.nets[k](ctx.to_input(batch.views[0]))
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        ce = ctx.weighted_mean(batch.positions, losses)
        loss = ce + neg_entropy(logits.float()) if self.penalty else ce
        ctx.step(loss, self.optimizers[k])
        if k == 0:
            ctx.record(batch.positions, logits)
            ctx.observe(batch.positions, losses)
        sums.add(ce, logits, y)

    # -- co-divide -----------------------------------------------------------------------
    @no_grad
    def per_sample_losses(self, ctx: TrainContext, k: int, pool: np.ndarray) -> np.ndarray:
        """Cross-entropy of network ``k`` on the clean view of ``pool`` (all ranks)."""
        net = self.nets[k]
        net.eval()
        losses = torch.zeros(len(ctx.dataset.labels), dtype=torch.float32, device=ctx.device)
        for batch in ctx.eval_batches(ctx.dataset.train, pool, desc=f"co-divide {k + 1}"):
            with ctx.autocast():
                logits = net(ctx.to_input(batch.views[0]))
            losses[batch.positions] = F.cross_entropy(
                logits.float(), ctx.labels[batch.positions], reduction="none"
            )
        distributed.all_reduce_(losses)  # each rank filled its shard; the rest are zeros
        return losses[torch.as_tensor(pool, device=ctx.device)].cpu().numpy()

    def co_divide(self, ctx: TrainContext, k: int, epoch: int, pool: np.ndarray) -> np.ndarray:
        """Clean probability of each sample of ``pool`` (in its order) by network ``k``."""
        losses = self.per_sample_losses(ctx, k, pool)
        if k == 0:  # a dynamic method's view of the epoch's losses (network 1, clean view)
            dev = ctx.device
            ctx.observe(torch.as_tensor(pool, device=dev), torch.as_tensor(losses, device=dev))
        prob = clean_probability(losses, seed=ctx.seed_for(4000 + epoch, k))
        if ctx.world_size > 1:  # one split for every rank, whatever the float details
            prob = distributed.broadcast_(torch.as_tensor(prob)).numpy()
        return prob

    def split_metrics(
        self, ctx: TrainContext, probs: list[np.ndarray], pool: np.ndarray
    ) -> dict[str, float]:
        from deep_core.subset import auroc

        row: dict[str, float] = {}
        idx = pool
        clean = None
        if ctx.dataset.clean_labels is not None:
            clean = ctx.dataset.labels[idx] == ctx.dataset.clean_labels[idx]
        for k, prob in enumerate(probs):
            labeled = prob > self.p_threshold
            row[f"labeled_{k + 1}"] = int(labeled.sum())
            if clean is None:
                continue
            if labeled.any():
                row[f"precision_{k + 1}"] = float(clean[labeled].mean())
            a = auroc(prob, clean)
            if a is not None:
                row[f"auroc_{k + 1}"] = a
        return row

    # -- MixMatch ------------------------------------------------------------------------
    def _lambda_u(self, current: float) -> float:
        if self.reference_rampup:
            return self.lambda_u
        return self.lambda_u * linear_rampup(current, self.n_warmup)

    def _unlabeled_batches(
        self, ctx: TrainContext, epoch: int, indices: np.ndarray, stream: int
    ) -> Iterator[Batch]:
        """Endless shuffled batches of the unlabeled part (a new order on each pass)."""
        cycle = 0
        while True:
            yield from ctx.train_batches(
                (epoch << 16) + cycle,
                ("weak", "weak"),
                indices=indices,
                stream=stream,
                desc="unlabeled",
                budgeted=False,
            )
            cycle += 1

    def _mixmatch(
        self, ctx: TrainContext, epoch: int, k: int, prob: np.ndarray, pool: np.ndarray
    ) -> torch.Tensor:
        """Train network ``k`` for one epoch on the other network's split ``prob`` of ``pool``."""
        sums = torch.zeros(4, dtype=torch.float64, device=ctx.device)
        net, other = self.nets[k], self.nets[1 - k]
        mask = prob > self.p_threshold
        labeled, unlabeled = pool[mask], pool[~mask]
        if labeled.size < ctx.world_size:  # no labeled batch on some rank: skip on all
            return sums
        w_all = torch.zeros(len(ctx.dataset.labels), dtype=torch.float32, device=ctx.device)
        w_all[torch.as_tensor(labeled, device=ctx.device)] = torch.as_tensor(
            prob[mask], dtype=torch.float32, device=ctx.device
        )
        has_u = unlabeled.size >= ctx.world_size
        unl = self._unlabeled_batches(ctx, epoch, unlabeled, 20 + k) if has_u else None
        num_iter = (labeled.size // ctx.world_size) // ctx.config.batch_size + 1
        rng = ctx.rng(epoch, 10 + k)
        gen = ctx.torch_generator(epoch, 10 + k)
        net.train()
        other.eval()
        for i, batch in enumerate(
            ctx.train_batches(
                epoch, ("weak", "weak"), indices=labeled, stream=10 + k, desc=f"train net {k + 1}"
            )
        ):
            lam = float(rng.beta(self.alpha, self.alpha))
            self.mixmatch_step(
                ctx,
                k,
                batch,
                next(unl) if has_u else None,
                w=w_all[batch.positions][:, None],
                lam=max(lam, 1.0 - lam),
                lambda_u=self._lambda_u(epoch + i / num_iter),
                generator=gen,
                sums=sums,
            )
        return sums

    def mixmatch_step(
        self,
        ctx: TrainContext,
        k: int,
        batch: Batch,
        unlabeled: Batch | None,
        *,
        w: torch.Tensor,
        lam: float,
        lambda_u: float,
        generator: torch.Generator,
        sums: torch.Tensor,
    ) -> None:
        """One MixMatch step of network ``k`` on a labeled and an unlabeled batch.

        ``w``: clean probabilities (B, 1) of the labeled batch; ``lam``: the mixup weight.
        """
        net, other = self.nets[k], self.nets[1 - k]
        x1, x2 = (ctx.to_input(v) for v in batch.views)
        b = x1.shape[0]
        y = F.one_hot(ctx.labels[batch.positions], ctx.num_classes).float()
        parts = [x1, x2]
        with torch.no_grad():
            if unlabeled is not None:  # co-guessing: 2 networks × 2 views
                u1, u2 = (ctx.to_input(v) for v in unlabeled.views)
                parts += [u1, u2]
                with ctx.autocast():
                    outs = [net(u1), net(u2), other(u1), other(u2)]
                pu = sum(torch.softmax(o.float(), 1) for o in outs) / 4
                targets_u = sharpen(pu, self.T)
            with ctx.autocast():  # co-refinement with the network's own prediction
                ox1, ox2 = net(x1), net(x2)
            px = (torch.softmax(ox1.float(), 1) + torch.softmax(ox2.float(), 1)) / 2
            targets_x = sharpen(w * y + (1 - w) * px, self.T)
        inputs = torch.cat(parts)
        targets = torch.cat(
            [targets_x, targets_x] + ([targets_u, targets_u] if unlabeled is not None else [])
        )
        perm = torch.randperm(inputs.shape[0], generator=generator, device=ctx.device)
        mixed_input = lam * inputs + (1 - lam) * inputs[perm]
        mixed_target = lam * targets + (1 - lam) * targets[perm]
        with ctx.autocast():
            logits = net(ctx.to_input(mixed_input))
        logits = logits.float()
        lx, lu = semi_loss(
            logits[: 2 * b], mixed_target[: 2 * b], logits[2 * b :], mixed_target[2 * b :]
        )
        loss = lx + lambda_u * lu + prior_penalty(logits)
        ctx.step(loss, self.optimizers[k])
        sums[:3] += torch.stack([loss.detach(), lx.detach(), lu.detach()]).double()
        sums[3] += 1

    def warmup(self) -> Learner:
        """The selection warm-up: plain CE on both networks (signals from network 1).

        As the Prune4ReL reference's ``train_DivideMix_warmup`` (no confidence penalty).
        It takes none of DivideMix's options, so runs that differ in ``lambda_u``, ``T``,
        ``alpha``, ``p_threshold`` or the training warm-up share one selection warm-up.
        """
        return DivideMixWarmup(confidence_penalty=False)


class DivideMixWarmup(DivideMix):
    """DivideMix's CE warm-up of both networks for every epoch (the selection warm-up).

    Signals come from network 1 (:meth:`ctx.record` in its training step and
    :meth:`embed`); evaluation sums both networks' logits. Its one option is
    ``confidence_penalty``, so its :meth:`options` (part of the warm-up's cache key)
    leave out DivideMix's training options (see :meth:`DivideMix.warmup`).
    """

    name = "DivideMixWarmup"

    def __init__(self, *, confidence_penalty: bool | None = None) -> None:
        super().__init__(confidence_penalty=confidence_penalty)

    def train_epoch(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        return self.warmup_epoch(ctx, epoch)
