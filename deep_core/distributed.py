"""Rank handling under ``torchrun`` in one place.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. :func:`init` joins the process group
(gloo on CPU, NCCL on CUDA) *before* a run decides anything that depends on the rank:
the run directory is created, and every file written, by rank 0 only. Outside
``torchrun`` every helper here is a no-op for one process (rank 0 of 1).

The rank policy is spelled here and nowhere else: :func:`on_main` runs what only rank 0
does (write a file, log an epoch), :func:`from_main` runs what rank 0 decides for every
rank (claim the run folder, select the subset) and hands every rank its result, or its
error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from .errors import DeepCoreError, one_line

T = TypeVar("T")


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def launched() -> bool:
    """True when started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> torch.device:
    """Join the process group when launched by ``torchrun``; returns this rank's device.

    Idempotent: later calls return the rank's device without re-initialising. On CUDA,
    rank ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``.
    """
    if launched() and not _initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if launched() and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def rank() -> int:
    """This process's rank (0 outside ``torchrun``)."""
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    """Number of processes (1 outside ``torchrun``)."""
    return torch.distributed.get_world_size() if _initialized() else 1


def is_main() -> bool:
    """True on rank 0, the only rank that writes files and logs."""
    return rank() == 0


def on_main(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)`` on rank 0, the only rank that writes files and logs.

    Returns its result on rank 0 and None on the other ranks, which do not wait (not a
    collective: it may be called on rank 0 alone).
    """
    return fn(*args, **kwargs) if is_main() else None


def from_main(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` computed once, on rank 0, with its result on every rank.

    A collective: every rank calls it. An exception raised by ``fn`` is raised on every
    rank (rank 0's own; on the others a :class:`~deep_core.errors.DeepCoreError` with its
    message), so no rank waits for one that failed. The result must be picklable.
    """
    result: Any = None
    failure: Exception | None = None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            failure = e
    if world_size() > 1:
        message = None if failure is None else one_line(str(failure)) or type(failure).__name__
        message, result = broadcast_object((message, None if failure else result))
        if message is not None and failure is None:
            raise DeepCoreError(message)
    if failure is not None:
        raise failure
    return result


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if world_size() > 1:
        torch.distributed.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` (any picklable value) on every rank."""
    if world_size() == 1:
        return obj
    box: list[Any] = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``t`` in place with rank ``src``'s tensor (no-op on one process)."""
    if world_size() > 1:
        _collective(t, lambda x: torch.distributed.broadcast(x, src=src))
    return t


def all_reduce_(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op on one process).

    Boolean tensors are summed as integers and read back as "any rank set it".
    """
    if world_size() > 1:
        _collective(t, torch.distributed.all_reduce)
    return t


def _collective(t: torch.Tensor, op) -> None:
    # NCCL handles only CUDA tensors and no bool: such tensors make a round trip.
    nccl = torch.distributed.get_backend() == "nccl"
    if (nccl and t.device.type == "cpu") or t.dtype == torch.bool:
        dev = torch.device("cuda", torch.cuda.current_device()) if nccl else t.device
        moved = t.to(dev, torch.uint8 if t.dtype == torch.bool else t.dtype)
        op(moved)
        t.copy_(moved.to(t.device, t.dtype))
    else:
        op(t)


def finish(*, wait: bool = True) -> None:
    """Leave the process group; a no-op outside ``torchrun``.

    ``wait`` (after a successful run) first waits for every rank: without it a rank can
    exit while gloo's threads still serve another, which aborts that one ("terminate
    called without an active exception"). After an error, ranks leave without waiting.
    """
    if _initialized():
        if wait:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
