"""Keras's ``DeviceMesh``, ``TensorLayout`` and ``LayoutMap``, with the same arguments and rules.

A ``DeviceMesh`` is a grid of devices with a name per axis; a ``TensorLayout`` names, for each
dimension of a tensor, the mesh axis it is split over (or ``None``); a ``LayoutMap`` finds the
layout of a variable from its path (``"dense/kernel"``): first by the exact key, else by the one
key that matches the whole path as a regular expression (two matching keys are an error).

>>> mesh = DeviceMesh((1, 2), ["batch", "model"], devices=["cpu:0", "cpu:1"])
>>> layout_map = LayoutMap(mesh)
>>> layout_map[".*dense.*kernel"] = (None, "model")
>>> layout_map["sequential/dense_1/kernel"].axes
(None, 'model')
>>> layout_map["sequential/dense_1/bias"] is None
True
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist

from weightwise.arguments import echo, invalid, is_int
from weightwise.distribution.devices import list_devices
from weightwise.distribution.torch_mapping import (
    mesh_ranks,
    placements,
    torch_device_mesh,
)

__all__ = ["DeviceMesh", "LayoutMap", "TensorLayout"]


class DeviceMesh:
    """A grid of devices of ``shape``, one name per axis in ``axis_names``, for distributed computation.

    ``devices`` (default: :func:`list_devices`) are reshaped to ``shape``, so their number must be
    the product of ``shape``. A device is named ``"type:index"`` (``"cpu:0"``, ``"gpu:3"``) or
    given as a ``torch.device``; under torch.distributed the index is the rank that drives it.
    ``backend_mesh`` is the same grid as a ``torch.distributed.device_mesh.DeviceMesh`` (it needs
    an initialized process group and every rank to ask for it).

    >>> mesh = DeviceMesh((2, 2), ["batch", "model"], devices=[f"cpu:{i}" for i in range(4)])
    >>> mesh.shape, mesh.axis_names, mesh.devices.tolist()
    ((2, 2), ['batch', 'model'], [['cpu:0', 'cpu:1'], ['cpu:2', 'cpu:3']])
    >>> DeviceMesh((4, 2), ["batch", "model"], devices=[f"cpu:{i}" for i in range(4)])
    Traceback (most recent call last):
    ...
    ValueError: Shape does not match the number of devices. Received: shape=(4, 2); devices.shape=(4,)
    """

    def __init__(self, shape: Sequence[int], axis_names: Sequence[str], devices: Any = None) -> None:
        if shape is None or axis_names is None or len(shape) == 0 or len(axis_names) == 0:
            raise ValueError(f"Shape and axis_names cannot be empty. Received: shape={shape}, axis_names={axis_names}")
        if isinstance(shape, str) or not isinstance(shape, Sequence) or not all(
                is_int(size) and size > 0 for size in shape):
            raise invalid("shape", "a tuple of positive ints", shape)
        if isinstance(axis_names, str) or not isinstance(axis_names, Sequence) or not all(
                isinstance(name, str) and name for name in axis_names):
            raise invalid("axis_names", "a list of non-empty strings, one per axis of the shape", axis_names)
        if len(shape) != len(axis_names):
            raise ValueError(f"Shape and axis_names should have same size. Received: shape={shape}, "
                             f"axis_names={axis_names}")
        if len(set(axis_names)) != len(axis_names):
            raise invalid("axis_names", "distinct names", axis_names)
        devices = np.array(list_devices() if devices is None else devices, dtype=object)
        if math.prod(shape) != devices.size:
            raise ValueError(f"Shape does not match the number of devices. Received: shape={shape}; "
                             f"devices.shape={devices.shape}")
        devices = devices.reshape(tuple(int(size) for size in shape))
        self._kind, self._ranks = mesh_ranks(devices)
        self._shape = tuple(shape) if isinstance(shape, tuple) else list(shape)
        self._axis_names = tuple(axis_names) if isinstance(axis_names, tuple) else list(axis_names)
        self._devices = devices.astype(str) if all(isinstance(d, str) for d in devices.flat) else devices

    @property
    def shape(self) -> Sequence[int]:
        """The number of devices along each mesh axis."""
        return self._shape

    @property
    def axis_names(self) -> Sequence[str]:
        """The name of each mesh axis, such as ``"batch"`` or ``"model"``."""
        return self._axis_names

    @property
    def devices(self) -> np.ndarray:
        """The devices, as an array of the mesh's shape."""
        return self._devices

    @property
    def ranks(self) -> np.ndarray:
        """The grid of device indices: under torch.distributed, the rank that drives each device."""
        return self._ranks

    @property
    def device_type(self) -> str:
        """The kind of the devices: ``"cpu"``, ``"gpu"`` or ``"tpu"``."""
        return self._kind

    @property
    def backend_mesh(self) -> Any:
        """This grid as a ``torch.distributed.device_mesh.DeviceMesh`` with the same axis names (built once per process group)."""
        world = dist.group.WORLD if dist.is_available() and dist.is_initialized() else None
        cached = self.__dict__.get("_backend_mesh")
        if cached is None or world is None or cached[0] is not world:
            cached = self._backend_mesh = (world, torch_device_mesh(self._kind, self._ranks, self._axis_names,
                                                                    repr(self)))
        return cached[1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} shape={self.shape}, axis_names={self.axis_names}>"


class TensorLayout:
    """How a tensor is split over a ``DeviceMesh``: for each dimension, the mesh axis it is split over, or ``None``.

    ``device_mesh`` may come later (a ``LayoutMap`` gives its own to the layouts put in it), but
    only once. An axis that the mesh does not have is refused, and so is an axis named twice.
    ``backend_layout`` gives the DTensor placements, one per mesh axis.

    >>> mesh = DeviceMesh((2,), ["model"], devices=["cpu:0", "cpu:1"])
    >>> layout = TensorLayout((None, "model"), mesh)
    >>> layout.axes, layout.backend_layout
    ((None, 'model'), [Shard(dim=1)])
    >>> TensorLayout(("data",), mesh)
    Traceback (most recent call last):
    ...
    ValueError: Invalid axis names for Layout. Valid axis names: {'model'}, Got {'data'}
    """

    def __init__(self, axes: Sequence[str | None], device_mesh: DeviceMesh | None = None) -> None:
        if isinstance(axes, str) or not isinstance(axes, (Sequence, np.ndarray)):
            raise invalid("axes", "a tuple of mesh axis names or None, one per tensor dimension", axes,
                          error=TypeError)
        if not all(axis is None or isinstance(axis, str) for axis in axes):
            raise invalid("axes", "a tuple of mesh axis names (strings) or None, one per tensor dimension", axes)
        named = [axis for axis in axes if axis is not None]
        if len(set(named)) != len(named):
            raise invalid("axes", "each mesh axis named at most once", tuple(axes))
        if device_mesh is not None and not isinstance(device_mesh, DeviceMesh):
            raise invalid("device_mesh", "a DeviceMesh or None", device_mesh, error=TypeError)
        self._axes = tuple(axes)
        self._device_mesh = device_mesh
        self._validate_axes()

    @property
    def axes(self) -> tuple[str | None, ...]:
        """For each tensor dimension, the mesh axis it is split over, or ``None``."""
        return self._axes

    @property
    def device_mesh(self) -> DeviceMesh | None:
        """The mesh the layout refers to; it can be set once, when it is None."""
        return self._device_mesh

    @device_mesh.setter
    def device_mesh(self, device_mesh: DeviceMesh) -> None:
        if self._device_mesh is not None:
            raise ValueError(f"Cannot override device mesh value. Existing value is {self._device_mesh}")
        if not isinstance(device_mesh, DeviceMesh):
            raise invalid("device_mesh", "a DeviceMesh", device_mesh, error=TypeError)
        self._device_mesh = device_mesh
        try:
            self._validate_axes()
        except ValueError:
            self._device_mesh = None
            raise

    @property
    def backend_layout(self) -> list[Any]:
        """The DTensor placements on the mesh: ``Shard(d)`` for the axis named at dimension ``d``, else ``Replicate()``."""
        if self._device_mesh is None:
            raise ValueError(f"{self!r} has no device mesh yet: give it one (or put it in a LayoutMap) first.")
        return placements(self._axes, self._device_mesh.axis_names)

    def _validate_axes(self) -> None:
        if self._device_mesh is not None:
            valid = set(self._device_mesh.axis_names)
            names = set(self._axes) - {None}
            if names - valid:
                raise ValueError(f"Invalid axis names for Layout. Valid axis names: {valid}, Got {names}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} axes={self.axes}, device_mesh={self.device_mesh}>"


class LayoutMap(MutableMapping):
    """A dict from keys to ``TensorLayout``s whose lookups also treat the keys as regular expressions.

    ``layout_map[path]`` gives the layout stored under ``path`` itself; failing that, the layout
    of the one key that ``re.fullmatch``-es the whole ``path``; ``None`` when no key matches, and
    a ``ValueError`` when several do. Keys are strings set once each (setting one again is an
    error). A value may be a tuple of axis names (``(None, "model")``), taken as a
    ``TensorLayout``; layouts without a mesh get ``device_mesh``. Keys keep their insertion order.

    >>> mesh = DeviceMesh((2,), ["model"], devices=["cpu:0", "cpu:1"])
    >>> layout_map = LayoutMap(mesh)
    >>> layout_map[".*kernel"] = (None, "model")
    >>> layout_map[".*bias"] = ("model",)
    >>> layout_map["dense/kernel"].axes, layout_map["dense/bias"].device_mesh is mesh
    ((None, 'model'), True)
    >>> layout_map["dense/gamma"] is None
    True
    """

    def __init__(self, device_mesh: DeviceMesh | None) -> None:
        if device_mesh is not None and not isinstance(device_mesh, DeviceMesh):
            raise invalid("device_mesh", "a DeviceMesh", device_mesh, error=TypeError)
        self._layout_map: collections.OrderedDict[str, TensorLayout] = collections.OrderedDict()
        self._device_mesh = device_mesh

    def __getitem__(self, key: str) -> TensorLayout | None:
        if not isinstance(key, str):
            raise invalid("key", "a string (a variable or tensor path)", key, error=TypeError)
        if key in self._layout_map:
            return self._layout_map[key]
        matching = [pattern for pattern in self._layout_map if re.fullmatch(pattern, key)]
        if len(matching) > 1:
            raise ValueError(f"Path '{key}' matches multiple layout specification keys: {matching}. Please make sure "
                             "each tensor/variable path only matches at most one layout specification key in the "
                             "LayoutMap.")
        return self._layout_map[matching[0]] if matching else None

    def __setitem__(self, key: str, layout: TensorLayout | tuple[str | None, ...]) -> None:
        if not isinstance(key, str):
            raise invalid("key", "a string (a variable path or a regular expression)", key, error=TypeError)
        if key in self._layout_map:
            raise ValueError(f"{key} already exist in the LayoutMap with value {self._layout_map[key]}. Please make "
                             "sure to not use duplicated keys.")
        try:
            re.compile(key)
        except re.error as error:
            raise ValueError(f"The LayoutMap key {key!r} is not a valid regular expression: {error}.") from None
        if isinstance(layout, tuple):
            layout = TensorLayout(axes=layout, device_mesh=None)
        if not isinstance(layout, TensorLayout):
            raise ValueError(  # noqa: TRY004 - Keras raises ValueError here; scripts catch it
                f"{echo(layout)} should be a TensorLayout type, got {type(layout)}")
        if layout.device_mesh is None and self._device_mesh is not None:
            layout.device_mesh = self._device_mesh
        self._layout_map[key] = layout

    def __delitem__(self, key: str) -> None:
        del self._layout_map[key]

    def __len__(self) -> int:
        return len(self._layout_map)

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout_map)

    @property
    def device_mesh(self) -> DeviceMesh | None:
        """The mesh the layouts of this map refer to."""
        return self._device_mesh
