"""The learner contract: a training recipe on the shared engine (:mod:`deep_core.engine`).

This module imports no torch (:mod:`deep_core.lazy`), so the learners' classes, and with
them their option declarations (:mod:`deep_core.options`), load at the speed of
``deepcore-run --help``.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .lazy import LazyModule
from .options import Configurable

if TYPE_CHECKING:
    from torch import Tensor, nn

    from .engine import TrainContext
    from .nets import FeatureNet

torch = LazyModule("torch", globals())
F = TypeVar("F", bound=Callable[..., Any])


def no_grad(fn: F) -> F:
    """``@torch.no_grad()`` that imports torch when ``fn`` is first called, not when defined."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Learner(Configurable, abc.ABC):
    """A training recipe on the shared engine.

    Subclasses build their networks and optimizers in :meth:`setup`, train one epoch
    in :meth:`train_epoch` (returning metrics to log), and keep every piece of state
    that a resumed run needs in :meth:`state_dict`. Options are keyword arguments of
    ``__init__``, declared there (:mod:`deep_core.options`) and stored as attributes of
    the same names; :meth:`options` reads them back.
    """

    name: ClassVar[str] = ""
    #: network updates per training batch (a step budget's epoch horizon; DivideMix: 2)
    updates_per_batch: ClassVar[int] = 1

    def warmup(self) -> Learner:
        """The learner that trains the selection warm-up of a run with this recipe.

        Its recorded signals feed the selection method; its name and options are part of
        the warm-up's cache key, so runs with the same warm-up share it. The default is this
        recipe itself with the same options; a recipe whose warm-up differs overrides it
        (CE: plain CE; DivideMix: CE on both networks).
        """
        return type(self)(**self.options())

    @abc.abstractmethod
    def setup(self, ctx: TrainContext) -> None: ...

    @abc.abstractmethod
    def train_epoch(self, ctx: TrainContext, epoch: int) -> dict[str, float]: ...

    @abc.abstractmethod
    def networks(self) -> list[nn.Module]: ...

    def schedulers(self) -> list[Any]:
        return []

    def end_epoch(self, ctx: TrainContext, epoch: int) -> None:
        """Called after evaluation; steps the LR schedulers by default."""
        for s in self.schedulers():
            s.step()

    def lr(self) -> float:
        sch = self.schedulers()
        return float(sch[0].get_last_lr()[0]) if sch else float("nan")

    @no_grad
    def predict(self, ctx: TrainContext, x: Tensor) -> Tensor:
        """Logits for evaluation (default: the first network)."""
        return self.networks()[0](ctx.to_input(x))

    @no_grad
    def embed(self, ctx: TrainContext, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and penultimate features of the main network (signal recording)."""
        net = unwrap(self.networks()[0])
        return net.forward_features(ctx.to_input(x))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state_dict` returned (default: nothing to restore)."""

    def extra_metrics(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        """Per-epoch diagnostics computed after training (e.g. DivideMix's split AUROC)."""
        return {}


def unwrap(net: nn.Module) -> FeatureNet:
    """The network inside a ``DistributedDataParallel`` wrapper (else ``net`` itself)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    return net.module if isinstance(net, ddp) else net  # type: ignore[return-value]
