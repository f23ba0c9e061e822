"""Separable convolution layers: SeparableConv1D and SeparableConv2D, with Keras's weights.

A depthwise convolution (each input channel under its own ``depth_multiplier`` filters)
followed by a pointwise (1x1) convolution to ``filters`` channels, then the bias. The
weights are, in Keras's order, ``depthwise_kernel`` ``(*kernel_size, in, depth_multiplier)``,
``pointwise_kernel`` ``(1, ..., in * depth_multiplier, filters)`` and ``bias`` ``(filters,)``,
ruled by the ``depthwise_*``, ``pointwise_*`` and ``bias_*`` arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from weightwise import constraints, initializers, regularizers
from weightwise.layers.args import IntOrTuple
from weightwise.layers.base import WeightRule
from weightwise.layers.conv import strictly_positive, torch_kernel
from weightwise.layers.depthwise_conv import DepthwiseBase

__all__ = ["SeparableConv", "SeparableConv1D", "SeparableConv2D"]


class SeparableConv(DepthwiseBase):
    """N-D separable convolution: ``activation(pointwise(depthwise(inputs)) + bias)``.

    ``rank`` (1 or 2 in Keras) is the number of spatial axes; :class:`SeparableConv1D`
    and :class:`SeparableConv2D` fix it. ``strides``, ``padding`` (``"valid"`` or
    ``"same"``) and ``dilation_rate`` apply to the depthwise step; the pointwise step is
    a 1x1 convolution from ``in * depth_multiplier`` channels to ``filters``.

    >>> from weightwise import ops
    >>> layer = SeparableConv(2, 4, 3, depth_multiplier=2, pointwise_regularizer="l1")
    >>> layer(ops.ones((1, 6, 6, 3))).shape
    torch.Size([1, 4, 4, 4])
    >>> [tuple(w.shape) for w in layer.weights], len(layer.losses)
    ([(3, 3, 3, 2), (1, 1, 6, 4), (4,)], 1)
    """

    depthwise_regularizer = WeightRule("depthwise_kernel", "regularizer")
    depthwise_constraint = WeightRule("depthwise_kernel", "constraint")
    pointwise_regularizer = WeightRule("pointwise_kernel", "regularizer")
    pointwise_constraint = WeightRule("pointwise_kernel", "constraint")

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            rank, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, bias_regularizer, activity_regularizer, bias_constraint,
            **kwargs,
        )
        self.filters = strictly_positive(self, filters, "filters")
        self.pointwise_initializer = self._resolve("pointwise_initializer", pointwise_initializer, initializers.get)
        self.depthwise_regularizer = depthwise_regularizer
        self.pointwise_regularizer = pointwise_regularizer
        self.depthwise_constraint = depthwise_constraint
        self.pointwise_constraint = pointwise_constraint

    def build(self, input_shape: Sequence[int | None]) -> None:
        in_channels = self._checked_channels(input_shape)
        self._add_depthwise_kernel("depthwise_kernel", in_channels, self.depthwise_regularizer,
                                   self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel", (*(1,) * self.rank, in_channels * self.depth_multiplier, self.filters),
            self.pointwise_initializer, self.pointwise_regularizer, self.pointwise_constraint,
        )
        self._add_bias(self.filters)
        self._finish_build(in_channels)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        depthwise = self._depthwise(inputs, self.depthwise_kernel, None)
        outputs = self._convolve_and_add(depthwise, torch_kernel(self.pointwise_kernel), self.bias)
        return self._activate(self._channels_back(outputs))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """The output shape; ``None`` sizes stay unknown.

        >>> SeparableConv1D(5, 3, padding="same", strides=2).compute_output_shape((None, 9, 2))
        (None, 5, 5)
        """
        input_shape, _ = self._input_channels(input_shape)
        self._check_spatial(input_shape)
        return self._output_shape(input_shape, self.filters)

    def get_config(self) -> dict[str, Any]:
        config = self._base_config()
        config.update(depth_multiplier=self.depth_multiplier, filters=self.filters)
        config.update(self._geometry_config())
        config.update(
            depthwise_initializer=initializers.serialize(self.depthwise_initializer),
            pointwise_initializer=initializers.serialize(self.pointwise_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            depthwise_regularizer=regularizers.serialize(self.depthwise_regularizer),
            pointwise_regularizer=regularizers.serialize(self.pointwise_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
            activity_regularizer=regularizers.serialize(self.activity_regularizer),
            depthwise_constraint=constraints.serialize(self.depthwise_constraint),
            pointwise_constraint=constraints.serialize(self.pointwise_constraint),
            bias_constraint=constraints.serialize(self.bias_constraint),
        )
        return config


class SeparableConv1D(SeparableConv):
    """1D separable convolution: :class:`SeparableConv` with ``rank=1``.

    >>> from weightwise import ops
    >>> SeparableConv1D(4, 3, 2, activation="relu")(ops.ones((4, 10, 12))).shape
    torch.Size([4, 4, 4])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            1, filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier, activation,
            use_bias, depthwise_initializer, pointwise_initializer, bias_initializer, depthwise_regularizer,
            pointwise_regularizer, bias_regularizer, activity_regularizer, depthwise_constraint, pointwise_constraint,
            bias_constraint, **kwargs,
        )


class SeparableConv2D(SeparableConv):
    """2D separable convolution: :class:`SeparableConv` with ``rank=2``.

    >>> from weightwise import ops
    >>> layer = SeparableConv2D(8, (1, 16), use_bias=False, padding="same")
    >>> layer(ops.ones((2, 1, 16, 8))).shape
    torch.Size([2, 1, 16, 8])
    >>> [tuple(w.shape) for w in layer.weights]
    [(1, 16, 8, 1), (1, 1, 8, 8)]
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = (1, 1),
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            2, filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier, activation,
            use_bias, depthwise_initializer, pointwise_initializer, bias_initializer, depthwise_regularizer,
            pointwise_regularizer, bias_regularizer, activity_regularizer, depthwise_constraint, pointwise_constraint,
            bias_constraint, **kwargs,
        )
