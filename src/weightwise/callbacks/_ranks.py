"""Which process of a ``torch.distributed`` job this is, and writing files from one of them.

Under ``torchrun`` every rank runs the same script: the same ``fit``, the same callbacks,
the same ``model.save``. Output meant for people or files (the progress bar, CSV logs,
TensorBoard events, checkpoints) comes from rank 0 only; the other ranks wait until rank 0
has written, so every rank can read the file afterwards. Without a process group (or with
a single process) this process is rank 0 of 1 and nothing waits.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, or ``(0, 1)`` without one."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is up."""
    return world()[1] > 1


def is_primary() -> bool:
    """Whether this process writes the job's files and prints its progress (rank 0, or no process group)."""
    return world()[0] == 0


def collective_device() -> torch.device:
    """Where tensors sent through the process group live: the current GPU under NCCL, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# Set while rank 0 runs a write for every rank: a save that calls another save runs it directly.
_writing = threading.local()


def on_primary(write: Callable[[], T]) -> T | None:
    """Run ``write()`` on rank 0 only; every rank returns once it is done, and raises if it failed.

    The outcome travels from rank 0 to the others (which is also the barrier), so an error
    in the write (a full disk, ``overwrite=False`` on an existing file) reaches every rank as
    the same exception type and message, rather than leaving them waiting. Every rank must
    call it, as every rank calls ``model.save`` in a ``torchrun`` script.

    >>> on_primary(lambda: "written")  # a single process is its own rank 0
    'written'
    """
    if not is_distributed() or getattr(_writing, "active", False):
        return write()
    outcome: list[Any] = [None]
    result = None
    failure: BaseException | None = None
    if is_primary():
        _writing.active = True
        try:
            result = write()
        except Exception as error:  # noqa: BLE001 - shared with the other ranks, then re-raised
            failure = error
            outcome = [(type(error), str(error))]
        finally:
            _writing.active = False
    torch.distributed.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[0] is not None:
        kind, message = outcome[0]
        try:
            error = kind(message)
        except Exception:  # noqa: BLE001 - a type that takes other arguments: keep the message
            error = RuntimeError(message)
        raise error
    return result


def primary_only(method: Callable[..., Any]) -> Callable[..., Any]:
    """A callback hook that runs on rank 0 only (its output goes to files or the screen)."""

    @functools.wraps(method)
    def hook(*args: Any, **kwargs: Any) -> Any:
        if is_primary():
            return method(*args, **kwargs)
        return None

    return hook


@contextlib.contextmanager
def full_weights(model: Any) -> Iterator[None]:
    """Inside, every FSDP2-sharded module of ``model`` holds its full (gathered) parameters.

    Every rank must enter it (the gather is a collective); outside FSDP2 it does nothing.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2 shards nothing
        yield
        return
    sharded = [module for module in model.modules() if isinstance(module, FSDPModule)] \
        if isinstance(model, torch.nn.Module) else []
    for module in sharded:
        module.unshard()
    try:
        yield
    finally:
        for module in sharded:
            module.reshard()


def written_by_rank_0(save: Callable[..., T]) -> Callable[..., T | None]:
    """A save function ``save(model, filepath, ...)`` that, under ``torchrun``, writes from rank 0 only.

    Every rank calls it (as every rank runs the script): the full weights are gathered
    (FSDP2), rank 0 writes, and all ranks return once the file is complete, or raise
    rank 0's error.
    """

    @functools.wraps(save)
    def collective_save(model: Any, *args: Any, **kwargs: Any) -> T | None:
        if not is_distributed() or getattr(_writing, "active", False):
            return save(model, *args, **kwargs)
        with full_weights(model):
            return on_primary(lambda: save(model, *args, **kwargs))

    return collective_save
