"""Pooling layers: max and average pooling over windows, and global pooling over all positions.

``padding="same"`` pads as Keras and TensorFlow do (the odd extra position after the
data). Padded positions never take part: max pooling pads with ``-inf``, and average
pooling divides each window's sum by the number of real positions in it.

Max pooling keeps integer inputs' dtype, as Keras does; average pooling computes them in
the layer's dtype, as Keras's global average pooling does; bool inputs are cast to the
layer's dtype; complex inputs are refused. A pool over zero positions (an axis of size 0,
or a window larger than the input with ``padding="valid"``) has no max and no mean, so it
is a clear error rather than an empty or NaN result; an empty batch gives an empty result.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

from weightwise.layers.args import (
    IntOrTuple,
    invalid,
    is_int,
    output_length,
    pad_spatial,
    same_padding,
    standardize_data_format,
    standardize_padding,
    standardize_tuple,
)
from weightwise.layers.base import InputSpec, Layer

__all__ = [
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalPooling",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Pooling",
]

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_POOL_TYPES = ("max", "average")


def _check_rank(layer: Layer, rank: Any) -> int:
    if not is_int(rank) or rank not in (1, 2, 3):
        raise invalid(layer, "rank", rank, "1, 2 or 3")
    return rank


def _check_pool_type(layer: Layer, pool_type: Any) -> str:
    if pool_type not in _POOL_TYPES:
        raise invalid(layer, "pool_type", pool_type, "'max' or 'average'")
    return pool_type


def _pool_inputs(layer: Layer, inputs: torch.Tensor, pool_type: str) -> torch.Tensor:
    """``inputs`` in a dtype the pool computes in: refuse complex, cast bools (and ints to average) to the layer dtype."""
    if inputs.is_floating_point():
        return inputs
    if inputs.is_complex():
        raise TypeError(
            f"{type(layer).__name__} layer {layer.name!r}: invalid value for argument `inputs`: expected real numbers. "
            f"Received: inputs with dtype={inputs.dtype}"
        )
    if inputs.dtype == torch.bool or pool_type == "average":
        return inputs.to(layer._dtype)
    return inputs


def _max_pool(x: torch.Tensor, pool_size: tuple[int, ...], strides: tuple[int, ...],
              pads: list[tuple[int, int]], symmetric: bool) -> torch.Tensor:
    """Max pooling of a channels-first ``x``; padded positions never win (for ints too)."""
    if len(pool_size) == 1 and not x.is_floating_point():
        # torch has no integer max_pool1d: pool a trailing axis of size 1 in 2-D instead.
        return _max_pool(x.unsqueeze(-1), (*pool_size, 1), (*strides, 1), [*pads, (0, 0)], symmetric).squeeze(-1)
    if symmetric:
        return _MAX_POOL[len(pool_size)](x, pool_size, strides, padding=[p for p, _ in pads])
    lowest = float("-inf") if x.is_floating_point() else torch.iinfo(x.dtype).min
    return _MAX_POOL[len(pool_size)](pad_spatial(x, pads, value=lowest), pool_size, strides)


def _rank_config(layer: Layer) -> dict[str, Any]:
    """``rank`` and ``pool_type`` for the general classes, whose constructors take them."""
    parameters = inspect.signature(type(layer).__init__).parameters
    return {key: getattr(layer, key) for key in ("rank", "pool_type") if key in parameters}


class Pooling(Layer):
    """Max or average pooling over windows of ``pool_size``, moved by ``strides``.

    ``rank`` (1, 2 or 3) is the number of spatial axes and ``pool_type`` is ``"max"``
    or ``"average"``; the ``MaxPooling*D`` and ``AveragePooling*D`` classes fix both.
    ``strides`` defaults to ``pool_size``. With ``padding="same"`` each output is the
    max, or the mean, of the real (unpadded) positions in its window, as in Keras.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    >>> Pooling(1, "average", pool_size=2, padding="same")(x).flatten()
    tensor([1.5000, 3.5000, 5.0000])
    """

    def __init__(
        self,
        rank: int,
        pool_type: str,
        pool_size: IntOrTuple,
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rank = _check_rank(self, rank)
        self.pool_type = _check_pool_type(self, pool_type)
        self.pool_size = standardize_tuple(self, pool_size, rank, "pool_size")
        self.strides = standardize_tuple(self, pool_size if strides is None else strides, rank, "strides")
        self.padding = standardize_padding(self, padding)
        self.data_format = standardize_data_format(self, data_format)
        self.input_spec = InputSpec(ndim=rank + 2)
        self._build_at_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = _pool_inputs(self, inputs, self.pool_type)
        x = inputs.movedim(-1, 1) if self.data_format == "channels_last" else inputs
        spatial = tuple(x.shape[2:])
        if any(output_length(n, k, s, self.padding) <= 0 for n, k, s in zip(spatial, self.pool_size, self.strides)):
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: the input is too small for the pool. "
                f"Received: input_shape={tuple(inputs.shape)}, pool_size={self.pool_size}, padding={self.padding!r}"
            )
        pads = [same_padding(*args) for args in zip(spatial, self.pool_size, self.strides)] if self.padding == "same" \
            else [(0, 0)] * self.rank
        symmetric = all(before == after for before, after in pads)
        if self.pool_type == "max":
            outputs = _max_pool(x, self.pool_size, self.strides, pads, symmetric)
        elif symmetric:
            outputs = _AVG_POOL[self.rank](
                x, self.pool_size, self.strides, padding=[p for p, _ in pads], count_include_pad=False
            )
        else:
            # Mean of the real positions: window sums over zero padding, divided by each
            # window's share of real positions (both pools divide by the window size).
            pool = _AVG_POOL[self.rank]
            ones = torch.ones((1, 1, *spatial), dtype=x.dtype, device=x.device)
            outputs = pool(pad_spatial(x, pads), self.pool_size, self.strides) / pool(
                pad_spatial(ones, pads), self.pool_size, self.strides
            )
        return outputs.movedim(1, -1) if self.data_format == "channels_last" else outputs

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **_rank_config(self),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


class MaxPooling1D(Pooling):
    """Max pooling over steps: the largest value in each window of ``pool_size`` steps.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    >>> MaxPooling1D(pool_size=2, strides=1)(x).flatten()
    tensor([2., 3., 4., 5.])
    """

    def __init__(
        self,
        pool_size: IntOrTuple = 2,
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(1, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


class MaxPooling2D(Pooling):
    """Max pooling over height and width: the largest value in each ``pool_size`` window.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).reshape(1, 3, 3, 1)
    >>> MaxPooling2D(pool_size=(2, 2), strides=(1, 1))(x)[0, :, :, 0]
    tensor([[5., 6.],
            [8., 9.]])
    """

    def __init__(
        self,
        pool_size: IntOrTuple = (2, 2),
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(2, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


class MaxPooling3D(Pooling):
    """Max pooling over three spatial axes: the largest value in each ``pool_size`` window.

    >>> from weightwise import ops
    >>> MaxPooling3D(pool_size=2, padding="same")(ops.ones((1, 5, 5, 5, 2))).shape
    torch.Size([1, 3, 3, 3, 2])
    """

    def __init__(
        self,
        pool_size: IntOrTuple = (2, 2, 2),
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(3, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


class AveragePooling1D(Pooling):
    """Average pooling over steps: the mean of each window of ``pool_size`` steps.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    >>> AveragePooling1D(pool_size=2, strides=1)(x).flatten()
    tensor([1.5000, 2.5000, 3.5000, 4.5000])
    """

    def __init__(
        self,
        pool_size: IntOrTuple,
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(1, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class AveragePooling2D(Pooling):
    """Average pooling over height and width: the mean of each ``pool_size`` window.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).reshape(1, 3, 3, 1)
    >>> AveragePooling2D(pool_size=(2, 2), strides=(1, 1))(x)[0, :, :, 0]
    tensor([[3., 4.],
            [6., 7.]])
    """

    def __init__(
        self,
        pool_size: IntOrTuple,
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(2, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class AveragePooling3D(Pooling):
    """Average pooling over three spatial axes: the mean of each ``pool_size`` window.

    >>> from weightwise import ops
    >>> AveragePooling3D(pool_size=2)(ops.ones((1, 4, 4, 4, 2))).shape
    torch.Size([1, 2, 2, 2, 2])
    """

    def __init__(
        self,
        pool_size: IntOrTuple,
        strides: IntOrTuple | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(3, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class GlobalPooling(Layer):
    """Max or mean over every spatial position, one value per channel and sample.

    ``rank`` (1, 2 or 3) is the number of spatial axes and ``pool_type`` ``"max"`` or
    ``"average"``; the ``Global*Pooling*D`` classes fix both. ``keepdims=True`` keeps
    the spatial axes with size 1.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[[1.0, 10.0], [3.0, 30.0]]])
    >>> GlobalPooling(1, "average")(x)
    tensor([[ 2., 20.]])
    """

    def __init__(
        self, rank: int, pool_type: str, data_format: str | None = None, keepdims: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.rank = _check_rank(self, rank)
        self.pool_type = _check_pool_type(self, pool_type)
        self.data_format = standardize_data_format(self, data_format)
        if not isinstance(keepdims, bool):
            raise invalid(self, "keepdims", keepdims, "a bool")
        self.keepdims = keepdims
        self.input_spec = InputSpec(ndim=rank + 2)
        self._build_at_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = _pool_inputs(self, inputs, self.pool_type)
        first = 1 if self.data_format == "channels_last" else 2
        axes = tuple(range(first, first + self.rank))
        if any(inputs.shape[axis] == 0 for axis in axes):
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `inputs`: there is no "
                f"{self.pool_type} over zero positions. Received: inputs with shape {tuple(inputs.shape)}"
            )
        if self.pool_type == "max":
            return torch.amax(inputs, dim=axes, keepdim=self.keepdims)
        return torch.mean(inputs, dim=axes, keepdim=self.keepdims)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), **_rank_config(self)}
        return {**config, "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(GlobalPooling):
    """Mean over all steps: ``(batch, steps, channels) -> (batch, channels)``.

    >>> from weightwise import ops
    >>> GlobalAveragePooling1D()(ops.ones((2, 5, 3))).shape
    torch.Size([2, 3])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(1, "average", data_format, keepdims, **kwargs)
        self.supports_masking = True

    def call(self, inputs: torch.Tensor, mask: Any = None) -> torch.Tensor:
        """The mean over the steps whose ``mask`` entry (shape ``(batch, steps)``) is true or non-zero.

        A sample whose steps are all masked has no mean; it gets 0 (Keras gives NaN).
        """
        if mask is None:
            return super().call(inputs)
        inputs = _pool_inputs(self, inputs, self.pool_type)
        steps_axis = 1 if self.data_format == "channels_last" else 2
        mask = torch.as_tensor(mask, device=inputs.device) if not isinstance(mask, torch.Tensor) else mask
        if tuple(mask.shape) != (inputs.shape[0], inputs.shape[steps_axis]) or mask.is_complex():
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `mask`: expected real or bool "
                f"values of shape (batch, steps) = {(inputs.shape[0], inputs.shape[steps_axis])}. "
                f"Received: mask with shape {tuple(mask.shape)} and dtype {mask.dtype}"
            )
        keep = mask.to(device=inputs.device, dtype=torch.bool).unsqueeze(3 - steps_axis)
        total = torch.where(keep, inputs, 0).sum(dim=steps_axis, keepdim=self.keepdims)
        count = keep.sum(dim=steps_axis, keepdim=self.keepdims).to(inputs.dtype)
        return total / count.clamp(min=1)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
        # The steps are pooled away, so no mask goes on.
        return None


class GlobalAveragePooling2D(GlobalPooling):
    """Mean over height and width: ``(batch, height, width, channels) -> (batch, channels)``.

    >>> from weightwise import ops
    >>> GlobalAveragePooling2D(keepdims=True)(ops.ones((2, 4, 5, 3))).shape
    torch.Size([2, 1, 1, 3])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(2, "average", data_format, keepdims, **kwargs)


class GlobalAveragePooling3D(GlobalPooling):
    """Mean over three spatial axes: ``(batch, d1, d2, d3, channels) -> (batch, channels)``.

    >>> from weightwise import ops
    >>> GlobalAveragePooling3D(data_format="channels_first")(ops.ones((2, 3, 4, 4, 4))).shape
    torch.Size([2, 3])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(3, "average", data_format, keepdims, **kwargs)


class GlobalMaxPooling1D(GlobalPooling):
    """Max over all steps: ``(batch, steps, channels) -> (batch, channels)``.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[[1.0, 10.0], [3.0, 30.0]]])
    >>> GlobalMaxPooling1D()(x)
    tensor([[ 3., 30.]])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(1, "max", data_format, keepdims, **kwargs)


class GlobalMaxPooling2D(GlobalPooling):
    """Max over height and width: ``(batch, height, width, channels) -> (batch, channels)``.

    >>> from weightwise import ops
    >>> GlobalMaxPooling2D()(ops.ones((2, 4, 5, 3))).shape
    torch.Size([2, 3])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(2, "max", data_format, keepdims, **kwargs)


class GlobalMaxPooling3D(GlobalPooling):
    """Max over three spatial axes: ``(batch, d1, d2, d3, channels) -> (batch, channels)``.

    >>> from weightwise import ops
    >>> GlobalMaxPooling3D(keepdims=True)(ops.ones((2, 4, 4, 4, 3))).shape
    torch.Size([2, 1, 1, 1, 3])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(3, "max", data_format, keepdims, **kwargs)
