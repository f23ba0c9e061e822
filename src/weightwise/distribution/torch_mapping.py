"""How a Keras device mesh and tensor layouts become torch.distributed objects.

- A device ``"<type>:<i>"`` is the process of rank ``i`` (one device per process), so a Keras
  mesh is a grid of ranks: :func:`mesh_ranks`. Under a process group it must hold every rank
  exactly once (:func:`check_world`): DDP and FSDP2 run the same program on all ranks.
- A mesh becomes a ``torch.distributed.device_mesh.DeviceMesh`` on the same grid of ranks, with
  the same axis names, of device type ``"cpu"`` (gloo) or ``"cuda"``: :func:`torch_device_mesh`.
- A layout ``axes`` (one mesh axis name or ``None`` per tensor dimension) becomes one DTensor
  placement per mesh axis: ``Shard(d)`` for the axis named at dimension ``d``, ``Replicate()``
  for an axis no dimension names: :func:`placements`.
- For FSDP2, the dimension a parameter's layout names is its ``Shard(dim)``: :func:`shard_dim`
  and :class:`ShardPlacementFn`.

>>> import numpy as np
>>> mesh_ranks(np.array([["cpu:0", "cpu:1"], ["cpu:2", "cpu:3"]]))
('cpu', array([[0, 1],
       [2, 3]]))
>>> placements((None, "model"), ("batch", "model"))
[Replicate(), Shard(dim=1)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import Replicate, Shard

from weightwise.distribution.devices import parse_device

__all__ = ["ShardPlacementFn", "check_world", "mesh_ranks", "parameter_paths", "placements", "shard_dim",
           "torch_device_mesh"]

_TORCH_DEVICE_TYPES = {"cpu": "cpu", "gpu": "cuda"}


def mesh_ranks(devices: np.ndarray) -> tuple[str, np.ndarray]:
    """The device kind of a mesh and its grid of device indices (the ranks that own them).

    Refuses a device that is not named ``"type:index"``, a mix of kinds, and a device twice.

    >>> mesh_ranks(np.array(["gpu:1", "cuda:0"]))
    ('gpu', array([1, 0]))
    >>> mesh_ranks(np.array(["cpu:0", "gpu:1"]))
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `devices`: expected devices of one type. Received: devices=['cpu:0', 'gpu:1']
    """
    parsed = [parse_device(device) for device in devices.flat]
    kinds = {kind for kind, _ in parsed}
    indices = [index for _, index in parsed]
    shown = [str(device) for device in devices.flat]
    if len(kinds) > 1:
        raise ValueError(f"Invalid value for argument `devices`: expected devices of one type. Received: devices={shown}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"Invalid value for argument `devices`: expected each device once. Received: devices={shown}")
    return (kinds.pop() if kinds else "cpu"), np.array(indices, dtype=np.int64).reshape(devices.shape)


def check_world(ranks: np.ndarray, where: str) -> None:
    """Refuse a mesh that does not hold each rank of the initialized process group exactly once.

    Under torch.distributed a process drives one device, and DDP and FSDP2 need every rank, so
    the mesh's size must be the world size and its devices the indices ``0 .. world_size - 1``.
    Without a process group there is nothing to check against.

    >>> check_world(np.array([0, 1]), "DataParallel") is None  # no process group here
    True
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    if sorted(int(rank) for rank in ranks.flat) != list(range(world)):
        raise ValueError(
            f"{where}: the device mesh of shape {tuple(ranks.shape)} holds the devices {ranks.flatten().tolist()}, but "
            f"the process group has {world} ranks. Each rank drives one device, so the mesh must hold the devices "
            f"0 to {world - 1} once each (a shape whose sizes multiply to {world}), as list_devices() gives them.")


def torch_device_mesh(kind: str, ranks: np.ndarray, names: Sequence[str], where: str) -> Any:
    """A ``torch.distributed.device_mesh.DeviceMesh`` on the grid ``ranks``, with the axis ``names``.

    Every rank must call this, in the same order (torch creates a process group per mesh axis).

    >>> torch_device_mesh("cpu", np.array([0, 1]), ["batch"], "DataParallel")
    Traceback (most recent call last):
    ...
    ValueError: DataParallel: a torch DeviceMesh needs an initialized process group; call keras.distribution.initialize() or torch.distributed.init_process_group() first.
    """
    from torch.distributed.device_mesh import DeviceMesh

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(f"{where}: a torch DeviceMesh needs an initialized process group; call "
                         "keras.distribution.initialize() or torch.distributed.init_process_group() first.")
    if kind not in _TORCH_DEVICE_TYPES:
        raise ValueError(f"{where}: torch has no {kind!r} devices; a mesh of 'cpu' or 'gpu' devices can be mapped.")
    check_world(ranks, where)
    return DeviceMesh(_TORCH_DEVICE_TYPES[kind], torch.as_tensor(ranks), mesh_dim_names=tuple(names))


def placements(axes: Sequence[str | None], mesh_names: Sequence[str]) -> list[Any]:
    """One DTensor placement per mesh axis: ``Shard(d)`` where dimension ``d`` names the axis, else ``Replicate()``.

    >>> placements(("model", None), ("model",))
    [Shard(dim=0)]
    """
    axes = list(axes)
    return [Shard(axes.index(name)) if name in axes else Replicate() for name in mesh_names]


def parameter_paths(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Each parameter of ``model`` once, with the path a ``LayoutMap`` matches it by.

    A weightwise variable has its Keras path (``"dense/kernel"``); any other parameter the
    ``/``-joined name torch gives it in ``model`` (``"encoder/0/weight"``).

    >>> parameter_paths(torch.nn.Sequential(torch.nn.Linear(2, 2)))[0][0]
    '0/weight'
    """
    found = []
    for name, param in model.named_parameters():
        path = getattr(param, "path", None)
        found.append((path if isinstance(path, str) else name.replace(".", "/"), param))
    return found


def shard_dim(path: str, shape: Sequence[int], axes: Sequence[str | None], mesh_names: Sequence[str],
              shard_axis: str, shard_size: int, replicate_axis: str | None) -> int | None:
    """The dimension FSDP2 shards a parameter on, from its layout ``axes``; ``None`` where no axis is named.

    The one mesh axis FSDP2 shards over is ``shard_axis`` (of ``shard_size`` devices); a
    ``replicate_axis`` (the batch axis of a 2-D mesh) holds whole copies, so a layout cannot
    shard over it. Refused: a layout of another rank than the parameter, a name that is not a
    mesh axis, two sharded dimensions, a sharded size that ``shard_size`` does not divide.

    >>> shard_dim("dense/kernel", (4, 6), (None, "model"), ("batch", "model"), "model", 2, "batch")
    1
    """
    where = f"The layout {tuple(axes)} of the variable {path!r} of shape {tuple(shape)}"
    if len(axes) != len(shape):
        raise ValueError(f"{where} must name one mesh axis or None for each of its {len(shape)} dimensions.")
    unknown = [name for name in axes if name is not None and name not in mesh_names]
    if unknown:
        raise ValueError(f"{where} names {unknown}, which are not axes of the device mesh {tuple(mesh_names)}.")
    named = [dim for dim, name in enumerate(axes) if name is not None]
    if not named:
        return None
    if len(named) > 1:
        raise ValueError(f"{where} shards {len(named)} dimensions; FSDP2 shards a parameter along one dimension, so "
                         "a layout may name one mesh axis.")
    dim = named[0]
    if axes[dim] == replicate_axis:
        raise ValueError(f"{where} shards over the batch axis {replicate_axis!r}, over which the parameters are "
                         f"replicated (HSDP); shard over {shard_axis!r} instead.")
    if shape[dim] % shard_size:
        raise ValueError(f"{where} shards dimension {dim} of size {shape[dim]} over the {shard_size} devices of the "
                         f"mesh axis {shard_axis!r}, which does not divide it.")
    return dim


class ShardPlacementFn:
    """``fully_shard``'s ``shard_placement_fn``: each parameter it was built for to ``Shard(dim)``, others to ``None``.

    ``None`` keeps FSDP2's default, ``Shard(0)``. It holds the parameters it maps, by identity,
    so it must be built before ``fully_shard`` swaps them for DTensors.

    >>> layer = torch.nn.Linear(2, 4)
    >>> fn = ShardPlacementFn([(layer.weight, 1)])
    >>> fn(layer.weight), fn(layer.bias)
    (Shard(dim=1), None)
    """

    def __init__(self, dims: Iterable[tuple[torch.nn.Parameter, int | None]]) -> None:
        self._dims = {id(param): (param, dim) for param, dim in dims}

    def __call__(self, param: torch.nn.Parameter) -> Shard | None:
        _, dim = self._dims.get(id(param), (None, None))
        return None if dim is None else Shard(dim)

    def __repr__(self) -> str:
        sharded = sum(dim is not None for _, dim in self._dims.values())
        return f"<ShardPlacementFn for {len(self._dims)} parameters, {sharded} on a chosen dimension>"
