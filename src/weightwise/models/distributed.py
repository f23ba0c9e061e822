"""``fit``, ``evaluate`` and ``predict`` under ``torchrun``: wrapping, reducing, gathering.

When a ``torch.distributed`` process group of more than one process is up, training
steps run through a ``DistributedDataParallel`` wrapper of the model (``"ddp"``, the
default) or on the model sharded in place with FSDP2's ``fully_shard`` (``"fsdp"``):
each weight-owning layer, then the root. The DDP wrapper is a plain attribute of the
model, outside its module tree, so ``state_dict``, ``model.weights`` and saving see the
model as it is; it lives for one ``fit`` (or ``train_on_batch``) call. FSDP2 shards the
model itself, once: from then on its weights are DTensors (``full_tensor()`` gives a whole
one), and saving writes the gathered full weights. Either way every rank starts from
rank 0's weights.

Rules are unchanged by the wrapping: DDP and FSDP2 average the data gradients over
the ranks, and each rank adds the full weight-penalty gradient once (every rank holds
the same weights, so the average leaves it unchanged). Activity penalties are divided
by each rank's own batch size, as Keras divides them by the per-replica batch; the
gradient average makes that the mean over the global batch, so a run of ``W`` ranks with
batch ``b`` each equals a one-process run with batch ``W * b``.

The metrics and loss trackers are summed over the ranks (their state is additive: sums
and counts), so the logs every rank sees, and its History, are those of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from weightwise.arguments import echo
from weightwise.callbacks._ranks import collective_device, is_distributed, world
from weightwise.distribution import distribution as current_distribution

__all__ = ["STRATEGIES", "check_distribute"]

STRATEGIES = ("ddp", "fsdp")

# Model attributes (set in __dict__, outside the module tree).
_WRAPPER = "_distributed_forward"
_SHARDED = "_fsdp_sharded"


def check_distribute(value: Any) -> str | None:
    """``compile``'s ``distribute``: ``None`` (decided when training starts), ``"ddp"`` or ``"fsdp"``.

    >>> check_distribute("fsdp")
    'fsdp'
    >>> check_distribute("zero3")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `distribute`: expected None, 'ddp' or 'fsdp'. Received: distribute='zero3'
    """
    if value is None or (isinstance(value, str) and value in STRATEGIES):
        return value
    raise ValueError(f"Invalid value for argument `distribute`: expected None, 'ddp' or 'fsdp'. "
                     f"Received: distribute={echo(value)}")


def strategy(model: Any) -> tuple[str, Any, Callable[..., Any] | None] | None:
    """``(kind, mesh, shard_placement_fn)`` of ``model`` under the current process group, or ``None``.

    ``compile(distribute=...)`` decides; with ``None`` the current distribution
    (``weightwise.distribution``) does, and without one it is DDP on the world group.
    A ``distribute`` other than the distribution's own strategy runs on the world group,
    ignoring the distribution's mesh and layouts.
    """
    if not is_distributed():
        return None
    kind = getattr(model, "_distribute", None)
    distribution = current_distribution()
    if distribution is None or kind not in (None, distribution.torch_strategy):
        return kind or "ddp", None, None
    kind = distribution.torch_strategy
    # The layouts are read from the variable paths, which sharding replaces: only before it.
    placement = distribution.shard_placement_fn(model) if kind == "fsdp" and not model.__dict__.get(_SHARDED) else None
    return kind, distribution.torch_mesh(), placement


def _trainable_key(model: torch.nn.Module) -> tuple[int, ...]:
    return tuple(id(p) for p in model.parameters() if p.requires_grad)


def prepare(model: Any, training: bool) -> None:
    """Make ``model`` run distributed (FSDP2 shards; for training, the DDP wrapper); nothing without a group.

    Called at the start of ``fit`` (``training=True``), ``evaluate`` and ``predict`` on
    every rank (DDP's construction and FSDP2's sharding are collectives), once the model
    is built. Inference under DDP runs the model itself: its weights are the same on every rank.
    """
    chosen = strategy(model)
    if chosen is None:
        return
    kind, mesh, placement = chosen
    if kind == "fsdp":
        _shard(model, mesh, placement)
        return
    if not training:
        return
    wrapper = model.__dict__.get(_WRAPPER)
    key = _trainable_key(model)
    if not key:  # nothing to train, nothing to average (and DDP refuses such a model)
        model.__dict__.pop(_WRAPPER, None)
        return
    if wrapper is not None and wrapper[0] == key:
        return
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters(), torch.empty(0)).device
    ddp = DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        process_group=mesh.get_group() if mesh is not None else None,
    )
    forward: Any = torch.compile(ddp) if getattr(model, "jit_compile", False) else ddp
    # Kept out of the module tree (a plain attribute): the model's parameters are not registered twice.
    model.__dict__[_WRAPPER] = (key, forward)


def release(model: Any) -> None:
    """Drop the DDP wrapper (the model stays FSDP2-sharded: its parameters are the shards)."""
    model.__dict__.pop(_WRAPPER, None)


def training_forward(model: Any) -> Any:
    """The module a training step calls: the DDP wrapper while one is set, else ``None``."""
    wrapper = model.__dict__.get(_WRAPPER)
    return None if wrapper is None else wrapper[1]


def _shard(model: Any, mesh: Any, placement: Callable[..., Any] | None) -> None:
    if model.__dict__.get(_SHARDED):
        return
    from torch.distributed.fsdp import fully_shard

    options: dict[str, Any] = {}
    if mesh is not None:
        options["mesh"] = mesh
    if placement is not None:
        options["shard_placement_fn"] = placement
    # As DDP does when it wraps: every rank starts from rank 0's weights (fully_shard keeps each rank's own).
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)
    # Inner layers first: each weight-owning layer is one FSDP2 unit, the root takes the rest.
    owners = [m for m in model.modules() if m is not model and any(True for _ in m.parameters(recurse=False))]
    for module in reversed(owners):
        fully_shard(module, **options)
    fully_shard(model, **options)
    model.__dict__[_SHARDED] = True
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        # Its variables were the unsharded parameters, which FSDP2 has replaced.
        optimizer.build(model.trainable_weights)


class Fillers:
    """What keeps the ranks in step in an inference pass, where they may hold different numbers of batches.

    Made before the pass: under a process group it learns the most batches any rank holds
    (one collective; data without a length is already ended together on every rank).
    After the pass, ``run(steps, last_x)`` repeats, on an FSDP2-sharded model (whose every
    forward gathers weights from all ranks), a forward on this rank's last batch (its
    result unused) until this rank has taken as many; ``shared`` says whether any rank had
    a batch. Without a process group it does nothing.
    """

    def __init__(self, model: Any, batches: Any) -> None:
        self.model = model
        self.most: int | None = None
        self.shared = False
        if is_distributed() and batches.has_length():
            most = torch.tensor([len(batches)], dtype=torch.int64, device=collective_device())
            torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
            self.most = int(most.item())

    def run(self, steps: int, last_x: Any) -> None:
        self.shared = steps > 0 if self.most is None else self.most > 0
        if self.most is None or self.most == steps or not self.model.__dict__.get(_SHARDED):
            return
        if last_x is None:
            raise ValueError("Invalid value for argument `x`: under FSDP2 every rank needs at least one batch to "
                             f"evaluate or predict on, and rank {world()[0]} got none. Pass at least one sample "
                             "per rank.")
        from weightwise import binding
        from weightwise.models.data import to_device

        device = next(self.model.parameters(), torch.empty(0)).device
        for _ in range(self.most - steps):
            self.model(to_device(last_x, device), training=False)
        binding.clear_call_losses(self.model)


def global_logs(logged: Sequence[tuple[str, Any]]) -> dict[str, float]:
    """The results of ``(name, metric)`` pairs over every rank: their state tensors summed, then ``result()``.

    The metrics keep their own (local) state; the sum is taken in float64 in one collective.
    """
    metrics = [metric for _, metric in logged]
    states = [[getattr(metric, name) for name in metric._variable_names] for metric in metrics]
    flat = [tensor.detach().reshape(-1).to(torch.float64).cpu() for state in states for tensor in state]
    if not flat:
        return {name: float(metric.result()) for name, metric in logged}
    total = torch.cat(flat).to(collective_device())
    torch.distributed.all_reduce(total)
    total = total.cpu()
    results: dict[str, float] = {}
    offset = 0
    for (name, metric), state in zip(logged, states):
        reduced = []
        for tensor in state:
            size = tensor.numel()
            reduced.append(total[offset:offset + size].reshape(tensor.shape).to(tensor.dtype).to(tensor.device))
            offset += size
        for variable, value in zip(metric._variable_names, reduced):
            setattr(metric, variable, value)
        try:
            results[name] = float(metric.result())
        finally:
            for variable, value in zip(metric._variable_names, state):
                setattr(metric, variable, value)
    return results


def gather_outputs(outputs: list[Any], split: str | None, concatenate: Callable[[list[Any]], Any]) -> Any:
    """``predict``'s outputs of every rank, in the global order, from this rank's per-batch ``outputs``.

    Rank ``r`` predicted the samples (``split="samples"``) or the batches (``"batches"``, a
    PyDataset) at global positions ``r, r + W, r + 2W, ...`` (see :mod:`weightwise.models.data`),
    so item ``j`` of rank ``r`` goes to position ``r + W j``. Data the user split (``None``)
    gives this rank's own outputs.
    """
    if split is None or not is_distributed():
        return concatenate(outputs)
    _, size = world()
    local = concatenate(outputs) if split == "samples" else [concatenate([batch]) for batch in outputs]
    parts: list[Any] = [None] * size
    torch.distributed.all_gather_object(parts, local)
    if split == "samples":
        return _merge(parts, _interleaved)
    ordered = [parts[rank][j] for j in range(max(len(p) for p in parts)) for rank in range(size) if j < len(parts[rank])]
    return _merge(ordered, np.concatenate)


def _merge(parts: list[Any], leaves: Callable[[list[np.ndarray]], np.ndarray]) -> Any:
    """``leaves`` applied to the arrays at each place of like structures (arrays, lists/tuples/dicts of them)."""
    first = parts[0]
    if isinstance(first, dict):
        return {key: _merge([part[key] for part in parts], leaves) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_merge([part[i] for part in parts], leaves) for i in range(len(first)))
    return leaves(parts)


def _interleaved(parts: list[np.ndarray]) -> np.ndarray:
    """Rows ``r, r + W, r + 2W, ...`` from ``parts[r]``."""
    joined = np.empty((sum(len(part) for part in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    for rank, part in enumerate(parts):
        joined[rank::len(parts)] = part
    return joined
