"""Element-wise parameter-free layers: Identity, UnitNormalization and Rescaling."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from weightwise import backend, ops
from weightwise.arguments import echo, is_int
from weightwise.layers.base import Layer
from weightwise.layers.reshaping import StatelessLayer
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["Identity", "Rescaling", "UnitNormalization"]


class Identity(Layer):
    """Returns its inputs unchanged (any structure of tensors); masks pass through.

    >>> from weightwise import ops
    >>> x = ops.ones((2, 3))
    >>> Identity()(x) is x
    True
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs: Any) -> Any:
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class UnitNormalization(Layer):
    """Scales each input to unit L2 norm along ``axis`` (an int or a list of ints):
    ``x * min(1 / sqrt(sum(x ** 2)), 1e12)``, so a zero vector stays zero.

    >>> from weightwise import ops
    >>> UnitNormalization()(ops.convert_to_tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(is_int(a) for a in axis):
            self.axis: int | list[int] = [int(a) for a in axis]
        elif is_int(axis):
            self.axis = int(axis)
        else:
            raise TypeError("Invalid value for `axis` argument: expected an int or a list/tuple of ints. "
                            f"Received: axis={echo(axis)}")
        self.supports_masking = True
        self._build_at_init()

    def _check_axes(self, input_shape: Sequence[int | None]) -> None:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if any(not -len(input_shape) <= axis < len(input_shape) for axis in axes):
            raise ValueError(f"Axis {self.axis} is out of bounds for input shape {tuple(input_shape)}.")

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check_axes(inputs.shape)
        return ops.normalize(inputs, axis=self.axis, order=2, epsilon=1e-12)

    def compute_output_shape(self, input_shape: Any) -> Any:
        self._check_axes(input_shape)
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


def _factor(layer: Layer, value: Any, argument: str) -> Any:
    """``value`` if it is a real number or an array (list, tuple, ndarray, tensor) of them; else a ``ValueError``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return value
    try:
        array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype.kind not in "iuf":
        raise ValueError(f"Rescaling layer {layer.name!r}: invalid value for argument `{argument}`: expected a real "
                         f"number or an array of them. Received: {argument}={echo(value)}")
    return value


class Rescaling(StatelessLayer):
    """Rescales inputs: ``output = inputs * scale + offset``, in the layer's float dtype (inputs of any
    dtype, integers included).

    ``scale`` and ``offset`` are numbers, or arrays that broadcast against the inputs, such
    as one value per channel. While the global image data format is ``"channels_first"``, a
    per-channel ``scale`` or ``offset`` of rank below 3 gets trailing axes of size 1 so that
    it meets the channels axis of images (Keras does this for ``scale`` only).

    >>> from weightwise import ops
    >>> Rescaling(scale=1 / 127.5, offset=-1)(ops.convert_to_tensor([[0, 255]], dtype="uint8"))
    tensor([[-1.,  1.]])
    """

    def __init__(self, scale: Any, offset: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = _factor(self, scale, "scale")
        self.offset = _factor(self, offset, "offset")
        self.supports_masking = True

    def _as_tensor(self, value: Any, device: torch.device) -> torch.Tensor:
        tensor = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value),
                                 dtype=self._dtype, device=device)
        if tensor.dim() > 0 and backend.image_data_format() == "channels_first":
            tensor = tensor.reshape(tuple(tensor.shape) + (1,) * (3 - tensor.dim()))
        return tensor

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        scale, offset = self._as_tensor(self.scale, inputs.device), self._as_tensor(self.offset, inputs.device)
        return inputs.to(self._dtype) * scale + offset

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": serialize_keras_object(self.scale),
                "offset": serialize_keras_object(self.offset)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Layer:
        if not isinstance(config, dict):
            return super().from_config(config)
        config = dict(config)
        for key in ("scale", "offset"):
            if key in config:
                config[key] = deserialize_keras_object(config[key], custom_objects=custom_objects)
        return super().from_config(config)
