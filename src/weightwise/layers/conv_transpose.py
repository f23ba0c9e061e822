"""Transposed convolution layers: Conv1DTranspose, Conv2DTranspose and Conv3DTranspose.

The kernel has Keras's layout ``(*kernel_size, filters, in_channels)`` and the bias
``(filters,)``. Output sizes follow Keras's rule exactly (see
:func:`weightwise.layers.args.transpose_padding`): with ``padding="same"`` and no
``output_padding`` each spatial size is multiplied by its stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from weightwise.layers.args import (
    IntOrTuple,
    pad_spatial,
    standardize_shape,
    standardize_tuple,
    transpose_padding,
)
from weightwise.layers.base import InputSpec
from weightwise.layers.conv import (
    ConvGeometry,
    keras_conv_config,
    strictly_positive,
    torch_kernel,
)
from weightwise.layers.core import KernelLayer

__all__ = ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "ConvTranspose"]

_CONV_TRANSPOSE_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class ConvTranspose(ConvGeometry, KernelLayer):
    """N-D transposed convolution (the gradient of a convolution with respect to its input).

    ``rank`` (1, 2 or 3) is the number of spatial axes; the 1D/2D/3D classes fix it.
    ``output_padding`` (``None``, an int or ``rank`` ints, each below its stride) adds
    rows after the data. Strides above 1 and dilation above 1 cannot be combined.

    >>> from weightwise import ops
    >>> layer = ConvTranspose(2, 4, 3, strides=2, padding="same", kernel_regularizer="l2")
    >>> layer(ops.ones((1, 5, 6, 3))).shape
    torch.Size([1, 10, 12, 4])
    >>> tuple(layer.kernel.shape), len(layer.losses)
    ((3, 3, 4, 3), 1)
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        output_padding: IntOrTuple | None = None,
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        self._set_rank(rank)
        self.filters = strictly_positive(self, filters, "filters")
        self._set_geometry(kernel_size, strides, padding, data_format, dilation_rate)
        if output_padding is not None:
            output_padding = standardize_tuple(self, output_padding, self.rank, "output_padding", allow_zero=True)
            for axis, (extra, stride) in enumerate(zip(output_padding, self.strides)):
                if extra >= stride:
                    raise ValueError(
                        f"{type(self).__name__} layer {self.name!r}: `output_padding` must be strictly less than "
                        f"`strides` for all dimensions. At dimension {axis}, `output_padding` is {extra} but "
                        f"`strides` is {stride}. Received: output_padding={output_padding}, strides={self.strides}"
                    )
        self.output_padding = output_padding
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _pads(self) -> list[tuple[int, int]]:
        extras = self.output_padding or (None,) * self.rank
        return [transpose_padding(k, s, d, self.padding, extra)
                for k, s, d, extra in zip(self.kernel_size, self.strides, self.dilation_rate, extras)]

    def _output_spatial(self, shape: Sequence[int | None]) -> list[int | None]:
        return [None if size is None else (size - 1) * s + (k - 1) * d + 1 + before + after
                for size, k, s, d, (before, after)
                in zip(self._spatial(shape), self.kernel_size, self.strides, self.dilation_rate, self._pads())]

    def _check_spatial(self, shape: Sequence[int | None]) -> None:
        if 0 in self._spatial(shape):
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `inputs`: every spatial axis "
                f"must be non-empty. Received: input_shape={tuple(shape)}"
            )

    def build(self, input_shape: Sequence[int | None]) -> None:
        input_shape, in_channels = self._input_channels(input_shape)
        self._check_spatial(input_shape)
        self._add_kernel_and_bias((*self.kernel_size, self.filters, in_channels), self.filters)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: in_channels})

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check_spatial(tuple(inputs.shape))
        if not inputs.is_floating_point():
            inputs = self._kernel_inputs(inputs)
        # Keras's (*kernel_size, filters, in) is torch's (in, filters, *kernel_size) after the same
        # permutation as a convolution kernel's. torch computes the unpadded output; Keras's
        # asymmetric "same" window is then cut (or zero-padded) out of it, and the bias added.
        outputs = self._apply_kernel(
            _CONV_TRANSPOSE_FN[self.rank], self._channels_first(inputs), torch_kernel(self.kernel), None,
            stride=self.strides, dilation=self.dilation_rate,
        )
        outputs = pad_spatial(outputs, self._pads())
        if self.bias is not None:
            outputs = outputs + self.bias.reshape(-1, *(1,) * self.rank)
        return self._activate(self._channels_back(outputs))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """The output shape; ``None`` sizes stay unknown (the channels need not be known).

        >>> Conv2DTranspose(2, 3, strides=2, output_padding=1).compute_output_shape((None, 4, None, 3))
        (None, 10, None, 2)
        """
        owner = f"{type(self).__name__} layer {self.name!r}"
        input_shape = standardize_shape(input_shape, "input_shape", owner)
        InputSpec(ndim=self.rank + 2).check(self.name, input_shape)
        return self._output_shape(input_shape, self.filters)

    def get_config(self) -> dict[str, Any]:
        return keras_conv_config(self, super().get_config(), {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
        })


class Conv1DTranspose(ConvTranspose):
    """1D transposed convolution: :class:`ConvTranspose` with ``rank=1``.

    >>> from weightwise import ops
    >>> Conv1DTranspose(32, 3, 2, activation="relu")(ops.ones((4, 10, 8))).shape
    torch.Size([4, 21, 32])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        output_padding: IntOrTuple | None = None,
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            1, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )


class Conv2DTranspose(ConvTranspose):
    """2D transposed convolution: :class:`ConvTranspose` with ``rank=2``.

    >>> from weightwise import ops
    >>> Conv2DTranspose(32, 2, 2, activation="relu")(ops.ones((4, 10, 8, 16))).shape
    torch.Size([4, 20, 16, 32])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = (1, 1),
        padding: str = "valid",
        output_padding: IntOrTuple | None = None,
        data_format: str | None = None,
        dilation_rate: IntOrTuple = (1, 1),
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            2, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )


class Conv3DTranspose(ConvTranspose):
    """3D transposed convolution: :class:`ConvTranspose` with ``rank=3``.

    As in Keras, ``data_format`` comes before ``output_padding`` among its positional arguments.

    >>> from weightwise import ops
    >>> Conv3DTranspose(2, 3, 2, padding="same")(ops.ones((1, 4, 4, 4, 3))).shape
    torch.Size([1, 8, 8, 8, 2])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = (1, 1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        output_padding: IntOrTuple | None = None,
        dilation_rate: IntOrTuple = (1, 1, 1),
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            3, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )
