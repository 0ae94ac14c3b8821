"""The selection-method contract and its registry.

A method is a small class registered by its class name::

    @register
    class SmallLoss(SelectionMethod):
        \"\"\"Keep the lowest warm-up loss.\"\"\"
        summary = "lowest warm-up loss on the clean view (likely clean samples)"

        def __init__(self, *, balance: bool = False) -> None:
            self.balance = balance

        def required_signals(self):
            return frozenset({"probs"})

        def select(self, signals, fraction, *, seed=0):
            scores = ...                      # higher = kept first
            return self.take(signals, scores, fraction, seed=seed)

``__init__`` declares its keyword options in its signature (type, range, choices:
:mod:`deep_core.options`) and only stores them; creating a method checks every option
against that declaration first. ``select`` is deterministic for a given ``seed``;
budgeting goes through :mod:`deep_core.budget`.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np

from ..budget import budget_size, check_fraction, take_top
from ..errors import DeepCoreError
from ..options import Configurable, option_specs
from ..registry import Registry
from ..signals import Signals
from ..subset import Subset
from ._common import check_seed


class SelectionMethod(Configurable):
    """Base class: chooses ``round(fraction * N)`` samples from :class:`Signals`."""

    #: one line for ``--list`` and the docs
    summary: ClassVar[str] = ""
    #: per-class budgets when ``balance`` is True (methods that take that option)
    balance: bool = False
    #: "shared": ``balance`` means :func:`deep_core.budget.class_budgets`; any other value
    #: names the method's own documented rule (Prune4Rel: the reference's round-robin)
    balance_rule: ClassVar[str] = "shared"
    #: True for a :class:`DynamicMethod` (a new subset every training epoch)
    dynamic: ClassVar[bool] = False

    def required_signals(self) -> frozenset[str]:
        """Names of the signals :meth:`select` reads (besides ``labels``)."""
        return frozenset()

    def min_warmup_epochs(self) -> int:
        """Warm-up epochs (``-se``) the method needs at least; checked before any training."""
        return 0

    @property
    def ensemble_size(self) -> int:
        """Independently seeded warm-up models the method needs (1 = the main one)."""
        return 1

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------
    def check(self, signals: Signals) -> None:
        signals.require(self.required_signals(), who=type(self).__name__)

    def take(
        self,
        signals: Signals,
        scores: np.ndarray,
        fraction: float,
        *,
        seed: int,
        start: float = 0.0,
        info: dict[str, Any] | None = None,
    ) -> Subset:
        """Rank ``scores`` (higher first) and keep the budget, per class if balanced.

        ``seed`` is the method's seed: ties in ``scores`` are broken by a permutation
        drawn from it (:func:`deep_core.budget.rank`).
        """
        n_select = budget_size(len(signals), fraction)
        idx = take_top(
            scores,
            n_select,
            labels=signals.labels,
            balance=self.balance,
            num_classes=signals.num_classes,
            start=start,
            seed=check_seed(seed),
        )
        return Subset(indices=idx, scores=scores, info=dict(info or {}))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class DynamicMethod(SelectionMethod):
    """A method that trains on a new subset every epoch (RS2, InfoBatch, ...).

    :meth:`select` returns the pool the epochs draw from (every sample); the training
    engine (:class:`deep_core.engine.TrainContext`) then asks, once per epoch, for
    :meth:`epoch_subset` and :meth:`loss_weights`, and hands each epoch's per-sample
    training losses to :meth:`observe` (read from the device once, after the epoch).
    Positions are those of the whole training set. Everything a resumed run needs is in
    :meth:`state_dict`, which the engine keeps in its checkpoint.
    """

    dynamic: ClassVar[bool] = True
    #: False when :meth:`observe` is not used (the engine then keeps no per-sample losses)
    needs_losses: ClassVar[bool] = True

    def select(self, signals: Signals, fraction: float, *, seed: int = 0) -> Subset:
        """The training pool: every sample (score 0); the epochs choose from it."""
        self.check(signals)
        check_fraction(fraction)
        n = len(signals)
        info = {"dynamic": True, "fraction": float(fraction), "seed": int(seed)}
        return Subset(indices=np.arange(n, dtype=np.int64), scores=np.zeros(n), info=info)

    def start(
        self, *, labels: np.ndarray, num_classes: int, fraction: float, epochs: int, seed: int
    ) -> None:
        """Bind the method to a training run (called once, before the first epoch).

        Parameters
        ----------
        labels : ndarray of int, shape (n,)
            Noisy labels of the whole training set (for class balance).
        num_classes : int
        fraction : float
            Share of the training set each epoch trains on (the method's budget).
        epochs : int
            Training epochs of the run (InfoBatch's annealing is counted from the end).
        seed : int
            Root of every draw of the method; :meth:`epoch_subset` is a function of
            ``(seed, epoch, what was observed)``.
        """
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.fraction = check_fraction(fraction)
        self.epochs = int(epochs)
        self.seed = check_seed(seed)
        self.n = int(self.labels.size)
        self.budget = budget_size(self.n, self.fraction)
        if self.budget < 1:
            raise DeepCoreError(f"fraction {fraction:g} of {self.n} samples keeps none")

    def epoch_subset(self, epoch: int) -> np.ndarray:
        """Sorted unique positions trained on in ``epoch`` (epochs are asked in order)."""
        raise NotImplementedError

    def observe(self, epoch: int, positions: np.ndarray, losses: np.ndarray) -> None:  # noqa: B027
        """Per-sample training losses of ``epoch`` (the samples it trained on)."""

    def loss_weights(self, epoch: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(positions, weights)`` multiplying the per-sample losses of ``epoch`` (None: 1)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state_dict` returned."""


M = TypeVar("M", bound=type[SelectionMethod])
#: every selection method, by class name
METHODS: Registry[type[SelectionMethod]] = Registry("selection method")


def register(cls: M) -> M:
    """Class decorator: register a method under its class name (case-sensitive).

    Another class under a taken name raises ``ValueError``.
    """
    METHODS.register(cls.__name__, cls)
    return cls


def list_methods() -> dict[str, str]:
    """Registered names mapped to their one-line summaries, sorted by name.

    A dynamic method's summary starts with ``[dynamic]``.
    """
    return {
        name: ("[dynamic] " if cls.dynamic else "") + cls.summary for name, cls in METHODS.items()
    }


def get_method(name: str) -> type[SelectionMethod]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    return METHODS.get(name)


def option_names(cls: type[SelectionMethod]) -> tuple[str, ...]:
    """Keyword options accepted by a method's ``__init__``."""
    return tuple(option_specs(cls))


def build_method(
    name: str, options: dict[str, Any], *, strict: bool = True
) -> tuple[SelectionMethod, dict[str, Any]]:
    """Instantiate ``name`` with ``options``, each checked against its declaration.

    Parameters
    ----------
    name : str
        A registered method (:func:`list_methods`).
    options : dict
        Keyword options of the method.
    strict : bool, default=True
        Reject an option the method does not take (a typo such as ``tua`` for ``tau``
        is an error, never a silent default). The command lines pass ``strict=False``:
        the reference sweeps give every method the same flags, so options meant for
        another method are returned to be reported in the log.

    Returns
    -------
    method : SelectionMethod
    unused : dict
        The options the method did not take (empty when ``strict``).

    Raises
    ------
    DeepCoreError
        An unknown method, an option it does not take (``strict``), or a value of the
        wrong type, outside its range or its choices (:mod:`deep_core.options`).
    """
    cls = get_method(name)
    accepted = set(option_names(cls))
    used = {k: v for k, v in options.items() if k in accepted}
    unused = {k: v for k, v in options.items() if k not in accepted}
    if strict and unused:
        raise DeepCoreError(
            f"{name} does not take option(s) {', '.join(sorted(unused))}; "
            f"its options: {', '.join(sorted(accepted)) or 'none'}"
        )
    return cls(**used), unused  # creating it checks every value
