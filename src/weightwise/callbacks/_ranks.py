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


def any_rank(value: bool) -> bool:
    """``value`` or'ed over every rank (a collective under torchrun, so every rank must call it).

    What one rank's callbacks need from a collective step (the global batch logs) every rank
    must then compute, or the ranks would wait on each other.

    >>> any_rank(False)  # a single process is the only rank
    False
    """
    if not is_distributed():
        return bool(value)
    flag = torch.tensor([1.0 if value else 0.0], device=collective_device())
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


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
    """Inside, an FSDP2-sharded ``model`` looks unsharded: full weights, full optimizer state, its own classes.

    Each sharded parameter (a DTensor) is replaced, in its module, by a plain Parameter
    holding the gathered full tensor (attributes kept); each DTensor in the state of the
    model's optimizer likewise; and each module ``fully_shard`` re-classed shows its own
    class again, so a config names ``Dense``, not ``FSDPDense``. Everything is put back on
    exit. Every rank must enter it (gathering is a collective, made in the same order on
    every rank); a model that is not sharded is left as it is.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without FSDP2 shards nothing
        yield
        return
    modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
    if not any(isinstance(module, FSDPModule) for module in modules):
        yield
        return
    undo: list[Callable[[], None]] = []
    try:
        for module in modules:
            if isinstance(module, FSDPModule):
                sharded_class = type(module)
                module.__class__ = next(base for base in sharded_class.__bases__ if base is not FSDPModule)
                undo.append(functools.partial(setattr, module, "__class__", sharded_class))
            for name, param in list(module._parameters.items()):
                if isinstance(param, DTensor):
                    full = torch.nn.Parameter(param.full_tensor().detach(), requires_grad=param.requires_grad)
                    full.__dict__.update(param.__dict__)
                    module._parameters[name] = full
                    undo.append(functools.partial(module._parameters.__setitem__, name, param))
        optimizer = getattr(model, "optimizer", None)
        torch_optimizer = getattr(optimizer, "torch_optimizer", optimizer)
        if isinstance(torch_optimizer, torch.optim.Optimizer):
            for group in torch_optimizer.param_groups:
                for param in group["params"]:
                    entries = torch_optimizer.state.get(param, {})
                    for key in sorted(entries):
                        if isinstance(entries[key], DTensor):
                            value = entries[key]
                            entries[key] = value.full_tensor()
                            undo.append(functools.partial(entries.__setitem__, key, value))
        yield
    finally:
        for step in reversed(undo):
            step()


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
