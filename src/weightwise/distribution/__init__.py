"""Keras's ``keras.distribution`` API on torch.distributed: ``DataParallel`` is DDP, ``ModelParallel`` FSDP2.

The names and arguments are Keras 3's. A device ``"cpu:<i>"`` or ``"gpu:<i>"`` is the process of
rank ``i``; ``initialize()`` starts the process group from ``torchrun``'s environment; each
distribution gives the torch objects to run with: ``torch_strategy`` (``"ddp"`` or ``"fsdp"``),
``torch_mesh()`` and ``shard_placement_fn(model)`` (see :mod:`.distribution_lib`).

>>> import weightwise as keras
>>> keras.distribution.list_devices("cpu")
['cpu:0']
>>> keras.distribution.set_distribution(keras.distribution.DataParallel())
>>> keras.distribution.distribution().torch_strategy
'ddp'
>>> keras.distribution.set_distribution(None)
"""

from weightwise.distribution.devices import get_device_count, initialize, list_devices
from weightwise.distribution.distribution_lib import (
    DataParallel,
    ModelParallel,
    distribute_tensor,
    distribution,
    set_distribution,
)
from weightwise.distribution.layouts import DeviceMesh, LayoutMap, TensorLayout

__all__ = [
    "DataParallel",
    "DeviceMesh",
    "LayoutMap",
    "ModelParallel",
    "TensorLayout",
    "distribute_tensor",
    "distribution",
    "get_device_count",
    "initialize",
    "list_devices",
    "set_distribution",
]
