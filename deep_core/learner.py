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

from .errors import DeepCoreError
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
    in :meth:`train_epoch` (returning metrics to log), and declare in
    :attr:`checkpointed` the attributes that hold what a resumed run needs; the engine
    saves and restores them (:meth:`state_dict`, :meth:`load_state_dict`). Options are
    keyword arguments of ``__init__``, declared there (:mod:`deep_core.options`) and
    stored as attributes of the same names; :meth:`options` reads them back.
    """

    name: ClassVar[str] = ""
    #: network updates per training batch (a step budget's epoch horizon; DivideMix: 2)
    updates_per_batch: ClassVar[int] = 1
    #: attributes (set in :meth:`setup`) that a resumed run needs, each saved under its own
    #: name: networks (saved without their DDP wrapper), optimizers, LR schedulers, anything
    #: else with ``state_dict``/``load_state_dict``, tensors (copied), or lists of these
    checkpointed: ClassVar[tuple[str, ...]] = ()
    #: checkpoint keys that differ from the attribute's name (kept as earlier versions wrote)
    checkpoint_keys: ClassVar[dict[str, str]] = {}

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
        """The state of every :attr:`checkpointed` attribute, keyed by its checkpoint key."""
        return {
            self.checkpoint_keys.get(name, name): _state_of(getattr(self, name))
            for name in self.checkpointed
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned into the objects :meth:`setup` built."""
        for name in self.checkpointed:
            _restore(getattr(self, name), state[self.checkpoint_keys.get(name, name)], name)

    def extra_metrics(self, ctx: TrainContext, epoch: int) -> dict[str, float]:
        """Per-epoch diagnostics computed after training (e.g. DivideMix's split AUROC)."""
        return {}


def unwrap(net: nn.Module) -> FeatureNet:
    """The network inside a ``DistributedDataParallel`` wrapper (else ``net`` itself)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    return net.module if isinstance(net, ddp) else net  # type: ignore[return-value]


def _state_of(obj: Any) -> Any:
    """The checkpoint form of a declared attribute (see :attr:`Learner.checkpointed`)."""
    if isinstance(obj, list | tuple):
        return [_state_of(o) for o in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, torch.nn.Module):
        return unwrap(obj).state_dict()
    return obj.state_dict()


@no_grad
def _restore(obj: Any, state: Any, name: str) -> None:
    """Load ``state`` (from :func:`_state_of`) into ``obj`` in place."""
    if isinstance(obj, list | tuple):
        if len(state) != len(obj):
            raise DeepCoreError(
                f"checkpoint holds {len(state)} entries of {name}, the learner has {len(obj)}"
            )
        for o, s in zip(obj, state, strict=True):
            _restore(o, s, name)
    elif isinstance(obj, torch.Tensor):
        obj.copy_(state)
    elif isinstance(obj, torch.nn.Module):
        unwrap(obj).load_state_dict(state)
    else:
        obj.load_state_dict(state)
