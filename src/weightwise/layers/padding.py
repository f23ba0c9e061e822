"""Zero padding and cropping of the spatial axes: ZeroPadding1D/2D/3D and Cropping1D/2D/3D.

The amounts are Keras's: in 1D one ``(before, after)`` pair (an int means both); in 2D and
3D one pair per spatial axis, given as an int (every side), a tuple of ints (both sides of
each axis) or a tuple of pairs. Configs hold the expanded pairs, as in Keras.
"""

from __future__ import annotations

from typing import Any

import torch

from weightwise.arguments import echo
from weightwise.layers.args import (
    MAX_SIZE,
    is_int,
    pad_spatial,
    standardize_data_format,
)
from weightwise.layers.base import InputSpec
from weightwise.layers.reshaping import StatelessLayer

__all__ = ["Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"]

Pairs = tuple[tuple[int, int], ...]
_ORDINALS = ("1st", "2nd", "3rd")


def _side_amounts(layer: StatelessLayer, value: Any, argument: str) -> tuple[int, int]:
    """One axis's ``(before, after)``: an int ``>= 0`` for both sides, or two of them (Keras's message)."""
    both = (value, value) if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else None
    fits = both is not None and len(both) == 2 and all(is_int(v) for v in both)
    negative = {int(v) for v in both if v < 0} if fits else set()
    if fits and not negative and max(both) <= MAX_SIZE:
        return int(both[0]), int(both[1])
    detail = f", including values {negative} that do not satisfy `value >= 0`" if negative else ""
    raise ValueError(f"{type(layer).__name__} layer {layer.name!r}: The `{argument}` argument must be a tuple of 2 "
                     f"integers. Received {argument}={echo(value)}{detail}")


def _all_amounts(layer: StatelessLayer, value: Any, argument: str, rank: int) -> Pairs:
    """The ``(before, after)`` of each of ``rank`` spatial axes, from Keras's forms of the argument."""
    owner = f"{type(layer).__name__} layer {layer.name!r}"
    if rank == 1:
        return (_side_amounts(layer, value, argument),)
    if is_int(value):
        if value < 0:
            raise ValueError(f"{owner}: `{argument}` cannot be negative. Received: {argument}={value}.")
        return ((int(value), int(value)),) * rank
    if isinstance(value, (tuple, list)):
        if len(value) != rank:
            count = "two" if rank == 2 else str(rank)
            raise ValueError(f"{owner}: `{argument}` should have {count} elements. Received: {argument}={echo(value)}.")
        return tuple(_side_amounts(layer, entry, f"{_ORDINALS[i]} entry of {argument}") for i, entry in enumerate(value))
    raise ValueError(f"{owner}: `{argument}` should be either an int, a tuple of {rank} ints or a tuple of {rank} "
                     f"tuples of 2 ints. Received: {argument}={echo(value)}.")


class _Spatial(StatelessLayer):
    """Shared by padding and cropping: ``rank`` spatial axes after the batch axis, the channels last or
    (``channels_first``) right after the batch axis."""

    rank = 0
    data_format = "channels_last"
    takes_data_format = True

    def _setup(self, amounts: Any, argument: str, data_format: str | None) -> Pairs:
        if self.takes_data_format:
            self.data_format = standardize_data_format(self, data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        return _all_amounts(self, amounts, argument, self.rank)

    @property
    def _first_spatial_axis(self) -> int:
        return 2 if self.data_format == "channels_first" else 1

    def _resize(self, input_shape: Any, change: Any) -> tuple[int | None, ...]:
        """``input_shape`` with each known spatial size ``s`` of axis ``i`` made ``change(i, s)``."""
        shape = list(input_shape)
        first = self._first_spatial_axis
        for i in range(self.rank):
            if shape[first + i] is not None:
                shape[first + i] = change(i, shape[first + i])
        return tuple(shape)

    def _config_value(self, pairs: Pairs) -> Any:
        return pairs[0] if self.rank == 1 else pairs


class _ZeroPadding(_Spatial):
    def __init__(self, padding: Any = 1, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pairs = self._setup(padding, "padding", data_format)
        self.padding = self._config_value(self._pairs)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return self._resize(input_shape, lambda i, size: size + sum(self._pairs[i]))

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        pairs = self._pairs if self.data_format == "channels_first" else (*self._pairs, (0, 0))
        return pad_spatial(inputs, pairs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class ZeroPadding1D(_ZeroPadding):
    """Pads the steps axis of ``(batch, steps, channels)`` inputs with zeros (``padding`` values before and
    after; axis 2 with ``data_format="channels_first"``).

    >>> from weightwise import ops
    >>> ZeroPadding1D(padding=(1, 2))(ops.ones((1, 2, 1)))[0, :, 0].tolist()
    [0.0, 1.0, 1.0, 0.0, 0.0]
    """

    rank = 1


class ZeroPadding2D(_ZeroPadding):
    """Pads the rows and columns of images with zeros: ``padding`` is an int, ``(rows, cols)`` or
    ``((top, bottom), (left, right))``.

    >>> from weightwise import ops
    >>> ZeroPadding2D(padding=((1, 0), (0, 2)))(ops.ones((1, 2, 2, 3))).shape
    torch.Size([1, 3, 4, 3])
    """

    rank = 2

    def __init__(self, padding: Any = (1, 1), data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(padding, data_format, **kwargs)


class ZeroPadding3D(_ZeroPadding):
    """Pads the three spatial axes of volumes with zeros: ``padding`` is an int, three ints or three pairs.

    >>> from weightwise import ops
    >>> ZeroPadding3D(padding=(1, 0, 2))(ops.ones((1, 2, 2, 2, 3))).shape
    torch.Size([1, 4, 2, 6, 3])
    """

    rank = 3

    def __init__(self, padding: Any = ((1, 1), (1, 1), (1, 1)), data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(padding, data_format, **kwargs)


class _Cropping(_Spatial):
    def __init__(self, cropping: Any, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pairs = self._setup(cropping, "cropping", data_format)
        self.cropping = self._config_value(self._pairs)

    def _too_much(self, shape: Any, name: str) -> ValueError:
        if self.rank == 1:
            return ValueError(f"`cropping` parameter of `Cropping1D` layer must be smaller than the input length. "
                              f"Received: {name}={tuple(shape)}, cropping={self.cropping}")
        return ValueError("Values in `cropping` argument should be smaller than the corresponding spatial dimension "
                          f"of the input. Received: {name}={tuple(shape)}, cropping={self.cropping}")

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        output_shape = self._resize(input_shape, lambda i, size: size - sum(self._pairs[i]))
        first = self._first_spatial_axis
        if any(size is not None and size <= 0 for size in output_shape[first:first + self.rank]):
            raise self._too_much(input_shape, "input_shape")
        return output_shape

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        first = self._first_spatial_axis
        spatial = inputs.shape[first:first + self.rank]
        if any(size - sum(pair) <= 0 for size, pair in zip(spatial, self._pairs)):
            raise self._too_much(inputs.shape, "inputs.shape")
        index = (slice(None),) * first + tuple(slice(before, size - after)
                                                for size, (before, after) in zip(spatial, self._pairs))
        return inputs[index]

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "cropping": self.cropping}
        if self.takes_data_format:
            config["data_format"] = self.data_format
        return config


class Cropping1D(_Cropping):
    """Crops the steps axis of ``(batch, steps, channels)`` inputs: ``cropping`` steps from the start and the end.

    >>> import torch
    >>> Cropping1D(cropping=(1, 2))(torch.arange(6.0).reshape(1, 6, 1))[0, :, 0].tolist()
    [1.0, 2.0, 3.0]
    """

    rank = 1
    takes_data_format = False  # as in Keras: the steps are always axis 1

    def __init__(self, cropping: Any = (1, 1), **kwargs: Any) -> None:
        super().__init__(cropping, None, **kwargs)


class Cropping2D(_Cropping):
    """Crops the rows and columns of images: ``cropping`` is an int, ``(rows, cols)`` or
    ``((top, bottom), (left, right))``.

    >>> from weightwise import ops
    >>> Cropping2D(cropping=((1, 0), (0, 2)))(ops.ones((1, 4, 5, 3))).shape
    torch.Size([1, 3, 3, 3])
    """

    rank = 2

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(cropping, data_format, **kwargs)


class Cropping3D(_Cropping):
    """Crops the three spatial axes of volumes: ``cropping`` is an int, three ints or three pairs.

    >>> from weightwise import ops
    >>> Cropping3D(cropping=(1, 0, 2))(ops.ones((1, 4, 4, 6, 3))).shape
    torch.Size([1, 2, 4, 2, 3])
    """

    rank = 3

    def __init__(self, cropping: Any = ((1, 1), (1, 1), (1, 1)), data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(cropping, data_format, **kwargs)
