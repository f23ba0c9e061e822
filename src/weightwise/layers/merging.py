"""Layers that merge a list of inputs: Concatenate and Add.

Inputs of different dtypes are promoted as torch (and Keras) promote them: an int and a
float tensor give a float result. All inputs must be tensors on one device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from weightwise.layers.args import is_int
from weightwise.layers.base import Layer

__all__ = ["Add", "Concatenate"]


def _check_list(layer: Layer, inputs: Any) -> Sequence[torch.Tensor]:
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 1 or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ValueError(
            f"A merge layer ({type(layer).__name__} {layer.name!r}) should be called on a list of inputs. "
            f"Received: inputs={inputs!r:.300} (not a list of tensors)"
        )
    devices = {t.device for t in inputs}
    if len(devices) > 1:
        raise ValueError(
            f"A merge layer ({type(layer).__name__} {layer.name!r}) needs its inputs on one device. "
            f"Received: inputs on devices {sorted(str(d) for d in devices)}"
        )
    return inputs


class Concatenate(Layer):
    """Concatenates a list of tensors along ``axis`` (default: the last).

    >>> from weightwise import ops
    >>> Concatenate()([ops.ones((2, 3)), ops.zeros((2, 1))]).shape
    torch.Size([2, 4])
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not is_int(axis):
            raise ValueError(f"Invalid value for argument `axis`: expected an int. Received: axis={axis!r}")
        self.axis = int(axis)

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        tensors = _check_list(self, inputs)
        shapes = [tuple(t.shape) for t in tensors]
        rank = len(shapes[0])
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"Concatenate layer {self.name!r}: invalid value for argument `axis`: expected an axis of inputs of "
                f"rank {rank}, in [{-rank}, {rank}). Received: axis={self.axis}, input_shape={shapes}"
            )
        axis = self.axis % rank
        for shape in shapes:
            if len(shape) != rank or any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0])) if i != axis):
                raise ValueError(
                    "A `Concatenate` layer requires inputs with matching shapes except for the concatenation "
                    f"axis. Received: input_shape={shapes}"
                )
        return torch.cat(list(tensors), dim=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Add(Layer):
    """Adds a list of tensors of the same shape elementwise.

    >>> from weightwise import ops
    >>> Add()([ops.ones((2, 2)), ops.ones((2, 2))])
    tensor([[2., 2.],
            [2., 2.]])
    """

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        tensors = _check_list(self, inputs)
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(f"Inputs to an `Add` layer must have the same shape. Received: input_shape={sorted(shapes)}")
        total = tensors[0]
        for tensor in tensors[1:]:
            total = total + tensor
        return total
