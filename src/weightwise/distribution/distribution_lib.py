"""Keras's ``DataParallel`` and ``ModelParallel`` distributions, mapped onto torch.distributed.

A distribution says how training spreads over the devices of a ``DeviceMesh``. Keras's
distributions keep their arguments, properties and layout lookups; each also says how to run on
torch.distributed, where one process drives one device:

============================  ===========  ==================================================
Keras                         ``torch_``   torch.distributed
============================  ===========  ==================================================
``DataParallel``              ``"ddp"``    DDP over every device of the mesh (a 1-D mesh)
``ModelParallel``, 1-D mesh   ``"fsdp"``   FSDP2 over the mesh axis; each parameter sharded on
                                           the dimension its layout names (else dim 0)
``ModelParallel``, 2-D mesh   ``"fsdp"``   HSDP: a 2-D torch mesh (batch axis, other axis),
                                           replicated over the batch axis and sharded over the
                                           other as its layout says
============================  ===========  ==================================================

``torch_mesh()`` gives the torch ``DeviceMesh`` to hand to DDP (``device_mesh=``) or
``fully_shard`` (``mesh=``), and ``shard_placement_fn(model)`` the ``shard_placement_fn`` of
``fully_shard``. FSDP2 gathers each parameter whole for the forward pass, so a layout chooses how
a parameter is stored between steps, never what is computed: results equal an unsharded run.
Under DDP and FSDP2 every rank trains on its own part of each batch.

>>> import weightwise as keras
>>> mesh = keras.distribution.DeviceMesh((2,), ["model"], devices=["cpu:0", "cpu:1"])
>>> layout_map = keras.distribution.LayoutMap(mesh)
>>> layout_map[".*dense.*kernel"] = (None, "model")
>>> model_parallel = keras.distribution.ModelParallel(layout_map=layout_map)
>>> model_parallel.torch_strategy, model_parallel.batch_dim_name
('fsdp', 'model')
>>> with model_parallel.scope():
...     keras.distribution.distribution() is model_parallel
True
>>> keras.distribution.distribution() is None
True
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist

from weightwise.arguments import flag, invalid
from weightwise.distribution.devices import list_devices, rank, world_size
from weightwise.distribution.layouts import DeviceMesh, LayoutMap, TensorLayout
from weightwise.distribution.torch_mapping import (
    ShardPlacementFn,
    check_world,
    parameter_paths,
    shard_dim,
    torch_device_mesh,
)
from weightwise.ops import SymbolicTensor

__all__ = ["DataParallel", "Distribution", "ModelParallel", "distribute_tensor", "distribution", "set_distribution"]

DEFAULT_BATCH_DIM_NAME = "batch"

# Keras keeps the current distribution per thread (its global state is thread-local).
_STATE = threading.local()


class Distribution:
    """The base of the distributions: a ``DeviceMesh``, the mesh axis the batch is split over, and its torch mapping.

    ``auto_shard_dataset`` (default ``True``) asks ``fit`` to give each process its own part of
    the data; ``False`` says the data is already split between processes. ``num_processes`` is
    the world size (the process group's, else torchrun's ``WORLD_SIZE``, else 1) when the
    distribution is made. ``scope()`` makes it current for a ``with`` block.

    Subclasses set ``torch_strategy`` (``"ddp"`` or ``"fsdp"``) and define ``num_model_replicas``,
    ``torch_mesh()`` and ``shard_placement_fn(model)``.

    >>> dp = DataParallel(devices=["cpu:0"])
    >>> isinstance(dp, Distribution), dp.num_processes, dp.data_shard_id
    (True, 1, 0)
    """

    torch_strategy: ClassVar[str]

    def __init__(self, device_mesh: DeviceMesh, batch_dim_name: str | None = None, auto_shard_dataset: bool = True,
                 ) -> None:
        if not isinstance(device_mesh, DeviceMesh):
            raise invalid("device_mesh", "a DeviceMesh", device_mesh, error=TypeError)
        if batch_dim_name is not None and batch_dim_name not in device_mesh.axis_names:
            raise invalid("batch_dim_name", f"an axis name of the device mesh {list(device_mesh.axis_names)}",
                          batch_dim_name)
        self._device_mesh = device_mesh
        self._batch_dim_name = batch_dim_name
        self._auto_shard_dataset = flag(auto_shard_dataset, "auto_shard_dataset")
        self._num_processes = world_size()
        self._process_id = rank()
        self._is_multi_process = self._num_processes > 1
        self._torch_mesh: tuple[Any, Any] | None = None

    @property
    def num_processes(self) -> int:
        """Total number of processes in the run."""
        return self._num_processes

    @property
    def num_model_replicas(self) -> int:
        """How many model replicas the batch is split between (the size of the batch axis)."""
        raise NotImplementedError

    @property
    def data_shard_id(self) -> int:
        """Which part of the data this process reads, by Keras's rule (processes of one replica share a part)."""
        replicas = self.num_model_replicas
        if replicas >= self.num_processes:
            return self._process_id
        return self._process_id // (self.num_processes // replicas)

    @property
    def device_mesh(self) -> DeviceMesh:
        """The mesh the distribution spreads training over."""
        return self._device_mesh

    @property
    def batch_dim_name(self) -> str | None:
        """The mesh axis the batch is split over."""
        return self._batch_dim_name

    @property
    def auto_shard_dataset(self) -> bool:
        """Keras's flag for splitting a dataset per process; ``fit`` splits its data itself."""
        return self._auto_shard_dataset

    @auto_shard_dataset.setter
    def auto_shard_dataset(self, auto_shard_dataset: bool) -> None:
        self._auto_shard_dataset = flag(auto_shard_dataset, "auto_shard_dataset")

    def get_data_layout(self, data_shape: Sequence[int]) -> TensorLayout:
        """The layout of input data of ``data_shape``: the first dimension split over the batch axis."""
        axes: list[str | None] = [None] * len(data_shape)
        axes[0] = self.batch_dim_name
        return TensorLayout(axes, self.device_mesh)

    def get_variable_layout(self, variable: Any) -> TensorLayout:
        """The layout of ``variable``: its own ``_layout`` if it has one, else the distribution's rule."""
        explicit = getattr(variable, "_layout", None)
        if explicit is not None:
            return explicit
        return self._variable_layout(variable)

    def _variable_layout(self, variable: Any) -> TensorLayout:
        return TensorLayout([None] * len(variable.shape), self.device_mesh)

    def get_tensor_layout(self, path: str) -> TensorLayout | None:
        """The layout of the intermediate tensor at ``path``, or ``None`` to leave it as it is."""
        return None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Make this distribution the current one inside a ``with`` block; the previous one comes back after."""
        previous = distribution()
        set_distribution(self)
        try:
            yield
        finally:
            set_distribution(previous)

    def torch_mesh(self) -> Any:
        """The torch ``DeviceMesh`` to run on; ``None`` without an initialized process group (one process).

        Every rank must call it, in the same order (torch makes a process group per mesh axis);
        it is built once per process group. A mesh that does not hold each rank once is refused.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world = dist.group.WORLD
        if self._torch_mesh is None or self._torch_mesh[0] is not world:
            ranks, names = self._torch_grid()
            self._torch_mesh = (world, torch_device_mesh(self.device_mesh.device_type, ranks, names, repr(self)))
        return self._torch_mesh[1]

    def _torch_grid(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """The grid of ranks of the torch mesh and its axis names."""
        raise NotImplementedError

    def shard_placement_fn(self, model: torch.nn.Module) -> ShardPlacementFn | None:
        """``fully_shard``'s ``shard_placement_fn`` for ``model``; ``None`` where parameters are not sharded."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device_mesh={self.device_mesh}>"


class DataParallel(Distribution):
    """Data parallelism: every device holds the whole model and reads its own part of each batch; torch's DDP.

    Give a ``device_mesh`` (1-D; of a mesh of more axes the first names the batch axis, with a
    warning, and every device is a replica) or a list of ``devices``, not both; by default the
    mesh holds every device of :func:`list_devices`, with the axis ``"batch"``. On
    torch.distributed, ``torch_mesh()`` is a 1-D mesh over all the devices, for DDP.

    >>> dp = DataParallel(devices=["cpu:0", "cpu:1"])
    >>> dp.torch_strategy, dp.batch_dim_name, dp.num_model_replicas
    ('ddp', 'batch', 2)
    >>> dp.get_data_layout((16, 3)).axes
    ('batch', None)
    """

    torch_strategy = "ddp"

    def __init__(self, device_mesh: DeviceMesh | None = None, devices: Any = None, auto_shard_dataset: bool = True,
                 ) -> None:
        if device_mesh is not None and devices is not None:
            raise ValueError("DataParallel takes `device_mesh` or `devices`, not both. Received: "
                             f"device_mesh={device_mesh}, devices={devices}")
        if device_mesh is not None:
            if not isinstance(device_mesh, DeviceMesh):
                raise ValueError(f"Expect `mesh` to be an instance of `DeviceMesh`. Received: mesh={device_mesh} "
                                 f"(of type {type(device_mesh)})")
            super().__init__(device_mesh, device_mesh.axis_names[0], auto_shard_dataset)
            if len(device_mesh.shape) != 1:
                warnings.warn(f"Expect the input mesh to be 1D, but received mesh.devices.ndim="
                              f"{len(device_mesh.shape)}. The first axis will be used for data-parallel sharding.",
                              stacklevel=2)
            return
        devices = np.array(list_devices() if devices is None else devices, dtype=object)
        if devices.ndim != 1 or devices.size == 0:
            raise invalid("devices", "a non-empty list of devices", devices.tolist())
        mesh = DeviceMesh(shape=devices.shape, axis_names=[DEFAULT_BATCH_DIM_NAME], devices=devices)
        super().__init__(mesh, DEFAULT_BATCH_DIM_NAME, auto_shard_dataset)

    @property
    def num_model_replicas(self) -> int:
        return int(self.device_mesh.devices.size)

    def _torch_grid(self) -> tuple[np.ndarray, tuple[str, ...]]:
        return self.device_mesh.ranks.reshape(-1), (self.batch_dim_name,)


class ModelParallel(Distribution):
    """Model parallelism: variables split over the mesh as a ``LayoutMap`` says; torch's FSDP2 (HSDP on a 2-D mesh).

    ``layout_map`` (required, keyword-only) maps variable paths (``"dense/kernel"``, see
    ``[v.path for v in model.weights]``) to layouts on its ``device_mesh``; ``batch_dim_name``
    (default: the first mesh axis) is the axis the batch is split over. Unmatched variables
    are replicated.

    On torch.distributed the mesh has one or two axes. With one, FSDP2 shards over it, each
    parameter on the dimension its layout names (default dim 0). With two, the batch axis
    replicates and the other shards (HSDP on a 2-D torch mesh, batch axis first), so a layout
    may name only the other axis. A layout naming two dimensions, or an axis the mesh lacks,
    or a dimension the shard axis does not divide, is refused by ``shard_placement_fn``.

    >>> mesh = DeviceMesh((1, 2), ["batch", "model"], devices=["cpu:0", "cpu:1"])
    >>> layout_map = LayoutMap(mesh)
    >>> layout_map[".*kernel"] = (None, "model")
    >>> mp = ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    >>> mp.num_model_replicas, mp.torch_strategy
    (1, 'fsdp')
    >>> import weightwise as keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    >>> fn = mp.shard_placement_fn(model)
    >>> fn(model.layers[0].kernel), fn(model.layers[0].bias)
    (Shard(dim=1), None)
    """

    torch_strategy = "fsdp"

    def __init__(self, *, layout_map: LayoutMap | None = None, batch_dim_name: str | None = None,
                 auto_shard_dataset: bool = True, **kwargs: Any) -> None:
        kwargs.pop("device_mesh", None)
        if kwargs:
            raise TypeError(f"ModelParallel got unexpected keyword arguments: {sorted(kwargs)}")
        if layout_map is None:
            raise ValueError("You must specify a layout_map argument.")
        if not isinstance(layout_map, LayoutMap):
            raise ValueError(  # noqa: TRY004 - Keras raises ValueError here; scripts catch it
                f"Argument `layout_map` must be a `LayoutMap` instance. Received: layout_map={layout_map}")
        device_mesh = layout_map.device_mesh
        if device_mesh is None:
            raise ValueError("Argument `layout_map` must have a device mesh: make it with LayoutMap(device_mesh).")
        if len(device_mesh.shape) > 2:
            raise ValueError(f"ModelParallel maps to FSDP2 on a mesh of one axis, or HSDP on two (batch, model); the "
                             f"device mesh {device_mesh} has {len(device_mesh.shape)} axes.")
        super().__init__(device_mesh, batch_dim_name or device_mesh.axis_names[0], auto_shard_dataset)
        self._layout_map = layout_map
        if (self._is_multi_process and self.num_processes > self.num_model_replicas
                and self.num_processes % self.num_model_replicas != 0):
            raise ValueError("If `num_processes` is greater than `num_model_replicas`, `num_processes` must be "
                             f"divisible by `num_model_replicas`. Got num_processes={self.num_processes}, "
                             f"num_model_replicas={self.num_model_replicas}.")

    @property
    def num_model_replicas(self) -> int:
        return int(self.device_mesh.shape[list(self.device_mesh.axis_names).index(self.batch_dim_name)])

    def _variable_layout(self, variable: Any) -> TensorLayout:
        path = getattr(variable, "path", None)
        if not isinstance(path, str):
            raise invalid("variable", "a variable with a `path` (such as 'dense/kernel')", variable, error=TypeError)
        layout = self._layout_map[path]
        return layout if layout is not None else super()._variable_layout(variable)

    def get_tensor_layout(self, path: str) -> TensorLayout | None:
        return self._layout_map[path]

    def _axes(self) -> tuple[str | None, str]:
        """The replicated axis (the batch axis of a 2-D mesh, else ``None``) and the sharded axis."""
        names = list(self.device_mesh.axis_names)
        if len(names) == 1:
            return None, names[0]
        return self.batch_dim_name, next(name for name in names if name != self.batch_dim_name)

    def _torch_grid(self) -> tuple[np.ndarray, tuple[str, ...]]:
        replicate, shard = self._axes()
        names = list(self.device_mesh.axis_names)
        if replicate is None:
            return self.device_mesh.ranks, (shard,)
        return np.moveaxis(self.device_mesh.ranks, names.index(replicate), 0), (replicate, shard)

    def shard_placement_fn(self, model: torch.nn.Module) -> ShardPlacementFn:
        """``fully_shard``'s ``shard_placement_fn``: each parameter of ``model`` to ``Shard(dim)`` of its layout.

        A parameter is found in the layout map by its path (a weightwise variable's ``path``,
        else its ``/``-joined torch name). No layout, or one naming no axis, gives ``None``
        (FSDP2's default ``Shard(0)``). Every parameter is checked before anything is returned.
        """
        if not isinstance(model, torch.nn.Module):
            raise invalid("model", "a torch.nn.Module", model, error=TypeError)
        check_world(self.device_mesh.ranks, repr(self))
        replicate, shard = self._axes()
        shard_size = int(self.device_mesh.shape[list(self.device_mesh.axis_names).index(shard)])
        dims = []
        for path, param in parameter_paths(model):
            layout = self._layout_map[path]
            dim = None if layout is None else shard_dim(path, tuple(param.shape), layout.axes,
                                                        self.device_mesh.axis_names, shard, shard_size, replicate)
            dims.append((param, dim))
        return ShardPlacementFn(dims)


def distribution() -> Distribution | None:
    """The current distribution: the innermost ``scope()``'s, else the one given to ``set_distribution``, else ``None``.

    >>> distribution() is None
    True
    """
    return getattr(_STATE, "distribution", None)


def set_distribution(value: Distribution | None) -> None:
    """Make ``value`` the current distribution (``None``: no distribution), for this thread as in Keras.

    >>> dp = DataParallel(devices=["cpu:0"])
    >>> set_distribution(dp); distribution() is dp
    True
    >>> set_distribution(None)
    """
    if value is not None and not isinstance(value, Distribution):
        raise invalid("value", "a Distribution (DataParallel or ModelParallel) or None", value, error=TypeError)
    _STATE.distribution = value


def distribute_tensor(tensor: Any, layout: TensorLayout) -> Any:
    """``tensor`` laid out as ``layout`` says: a DTensor with its placements on the layout's mesh.

    Every rank passes the same whole tensor (a DTensor is redistributed). Without an
    initialized process group there is one process holding everything, and ``tensor`` comes
    back as it is; so does a symbolic tensor (a functional model's ``Input``).

    >>> layout = TensorLayout(("batch", None), DeviceMesh((1,), ["batch"], devices=["cpu:0"]))
    >>> distribute_tensor(torch.ones(2, 3), layout).shape
    torch.Size([2, 3])
    """
    if isinstance(tensor, SymbolicTensor):
        return tensor
    if not isinstance(layout, TensorLayout):
        raise invalid("layout", "a TensorLayout", layout, error=TypeError)
    if layout.device_mesh is None:
        raise ValueError(f"Argument `layout` needs a device mesh. Received: layout={layout}")
    if not isinstance(tensor, torch.Tensor):
        raise invalid("tensor", "a torch.Tensor", tensor, error=TypeError)
    if len(layout.axes) != tensor.ndim:
        raise ValueError(f"The layout {layout.axes} names {len(layout.axes)} dimensions, but the tensor has "
                         f"{tensor.ndim} (shape {tuple(tensor.shape)}).")
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor import distribute_tensor as torch_distribute_tensor

    mesh = layout.device_mesh.backend_mesh
    if isinstance(tensor, DTensor):
        return tensor.redistribute(mesh, layout.backend_layout)
    return torch_distribute_tensor(tensor, mesh, layout.backend_layout)
