"""Depthwise convolution layers: DepthwiseConv1D and DepthwiseConv2D, with Keras's weights.

Each input channel is convolved with its own ``depth_multiplier`` filters, and the results
are concatenated channel by channel: output channel ``c * depth_multiplier + m`` is input
channel ``c`` under filter ``m``. The kernel is Keras's ``kernel`` of shape
``(*kernel_size, in_channels, depth_multiplier)`` (its rules are the ``depthwise_*``
arguments) and the bias has ``in_channels * depth_multiplier`` entries. A max-norm
constraint with Keras's default ``axis=0`` bounds the norm over the first kernel axis.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import activations, constraints, initializers, regularizers
from weightwise.layers.args import IntOrTuple, invalid
from weightwise.layers.base import InputSpec, Layer, WeightRule
from weightwise.layers.conv import ConvGeometry, strictly_positive, torch_kernel
from weightwise.layers.core import KernelLayer

__all__ = ["DepthwiseConv", "DepthwiseConv1D", "DepthwiseConv2D", "depthwise_torch_kernel"]


def depthwise_torch_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """A Keras depthwise kernel ``(*k, in, multiplier)`` as torch's grouped kernel ``(in * multiplier, 1, *k)``.

    Used with ``groups=in``: torch's output channel ``o`` reads input channel ``o // multiplier``,
    which is Keras's channel order.

    >>> tuple(depthwise_torch_kernel(torch.zeros(3, 4, 2)).shape)
    (8, 1, 3)
    """
    return torch_kernel(kernel.reshape(*kernel.shape[:-2], 1, kernel.shape[-2] * kernel.shape[-1]))


class DepthwiseBase(ConvGeometry, Layer):
    """What depthwise and separable convolutions share: ``depth_multiplier``, the geometry,
    the activation and the bias, and the depthwise step itself.

    Subclasses add their kernels in ``build`` and their rule attributes. Integer inputs are
    cast to the layer dtype, as for :class:`~weightwise.layers.Conv`.

    >>> from weightwise import ops
    >>> DepthwiseConv2D(3, depth_multiplier=2)(ops.ones((1, 5, 5, 3))).shape
    torch.Size([1, 3, 3, 6])
    """

    bias_regularizer = WeightRule("bias", "regularizer")
    bias_constraint = WeightRule("bias", "constraint")
    # The same input handling as Dense and Conv: casts, device checks, meta inputs.
    _kernel_inputs = KernelLayer._kernel_inputs
    _activate = KernelLayer._activate

    def __init__(
        self,
        rank: int,
        depth_multiplier: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple,
        padding: str,
        data_format: str | None,
        dilation_rate: IntOrTuple,
        activation: Any,
        use_bias: bool,
        depthwise_initializer: Any,
        bias_initializer: Any,
        bias_regularizer: Any,
        activity_regularizer: Any,
        bias_constraint: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not self._dtype.is_floating_point:
            raise invalid(self, "dtype", self.dtype, "a float dtype")
        self._set_rank(rank)
        self.depth_multiplier = strictly_positive(self, depth_multiplier, "depth_multiplier")
        self._set_geometry(kernel_size, strides, padding, data_format, dilation_rate, strides_with_dilation=True)
        if not isinstance(use_bias, bool):
            raise invalid(self, "use_bias", use_bias, "a bool")
        self.activation = self._resolve("activation", activation, activations.get)
        self.use_bias = use_bias
        self.depthwise_initializer = self._resolve("depthwise_initializer", depthwise_initializer, initializers.get)
        self.bias_initializer = self._resolve("bias_initializer", bias_initializer, initializers.get)
        self.bias_regularizer = bias_regularizer
        self.bias_constraint = bias_constraint
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _checked_channels(self, input_shape: Sequence[int | None]) -> int:
        """The input channels, after the checks a build makes before it adds anything."""
        input_shape, in_channels = self._input_channels(input_shape)
        self._check_spatial(input_shape)
        return in_channels

    def _add_depthwise_kernel(self, name: str, in_channels: int, regularizer: Any, constraint: Any) -> None:
        shape = (*self.kernel_size, in_channels, self.depth_multiplier)
        setattr(self, name, self.add_weight(name, shape, self.depthwise_initializer, regularizer, constraint))

    def _add_bias(self, size: int) -> None:
        if self.use_bias:
            self.bias = self.add_weight("bias", (size,), self.bias_initializer, self.bias_regularizer,
                                        self.bias_constraint)
        else:
            self.bias = None

    def _finish_build(self, in_channels: int) -> None:
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: in_channels})

    def _apply_kernel(self, op: Any, inputs: torch.Tensor, *weights: Any, **kwargs: Any) -> torch.Tensor:
        """``op(inputs, *weights, **kwargs)``; meta inputs give meta outputs, and inputs on another
        device than the weights a clear error instead of torch's."""
        if inputs.is_meta:
            weights = tuple(w.to("meta") if isinstance(w, torch.Tensor) else w for w in weights)
        else:
            device = next(iter(self._parameters.values())).device
            if inputs.device != device:
                raise ValueError(
                    f"{type(self).__name__} layer {self.name!r}: invalid value for argument `inputs`: the weights are "
                    f"on device {device}, the inputs elsewhere. Received: inputs on device={inputs.device}"
                )
        return op(inputs, *weights, **kwargs)

    def _depthwise(self, inputs: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The depthwise step on the (checked) ``inputs``, channels first, bias added."""
        self._check_spatial(tuple(inputs.shape))
        if not inputs.is_floating_point():
            inputs = self._kernel_inputs(inputs)
        x = self._channels_first(inputs)
        return self._convolve(x, depthwise_torch_kernel(kernel), bias, groups=x.shape[1])

    def _geometry_config(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }

    def _base_config(self) -> dict[str, Any]:
        base = super().get_config()
        config = {key: base[key] for key in ("name", "trainable", "dtype", "activity_regularizer") if key in base}
        if "rank" in inspect.signature(type(self).__init__).parameters:
            # The general class: the rank is a constructor argument (the 1D/2D classes fix it).
            config["rank"] = self.rank
        return config


class DepthwiseConv(DepthwiseBase):
    """N-D depthwise convolution: ``activation(depthwise_conv(inputs, kernel) + bias)``.

    ``rank`` (1 or 2 in Keras; 3 works too) is the number of spatial axes;
    :class:`DepthwiseConv1D` and :class:`DepthwiseConv2D` fix it. Output channel
    ``c * depth_multiplier + m`` convolves input channel ``c`` with ``kernel[..., c, m]``.
    ``padding`` is ``"valid"`` or ``"same"``; strides and dilation may both exceed 1.
    The weights are ``kernel`` ``(*kernel_size, in, depth_multiplier)``, whose rules are
    ``depthwise_regularizer`` and ``depthwise_constraint``, and ``bias``
    ``(in * depth_multiplier,)``.

    >>> from weightwise import ops
    >>> layer = DepthwiseConv(2, 2, 3, depthwise_regularizer="l2")
    >>> layer(ops.ones((1, 6, 6, 3))).shape
    torch.Size([1, 4, 4, 6])
    >>> tuple(layer.kernel.shape), tuple(layer.bias.shape), len(layer.losses)
    ((3, 3, 3, 2), (6,), 1)
    """

    depthwise_regularizer = WeightRule("kernel", "regularizer")
    depthwise_constraint = WeightRule("kernel", "constraint")

    def __init__(
        self,
        rank: int,
        depth_multiplier: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            rank, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, bias_regularizer, activity_regularizer, bias_constraint,
            **kwargs,
        )
        self.depthwise_regularizer = depthwise_regularizer
        self.depthwise_constraint = depthwise_constraint

    def build(self, input_shape: Sequence[int | None]) -> None:
        in_channels = self._checked_channels(input_shape)
        self._add_depthwise_kernel("kernel", in_channels, self.depthwise_regularizer, self.depthwise_constraint)
        self._add_bias(in_channels * self.depth_multiplier)
        self._finish_build(in_channels)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._activate(self._channels_back(self._depthwise(inputs, self.kernel, self.bias)))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """The output shape; ``None`` sizes stay unknown.

        >>> DepthwiseConv2D(3, strides=2, depth_multiplier=4).compute_output_shape((None, 9, None, 2))
        (None, 4, None, 8)
        """
        input_shape, in_channels = self._input_channels(input_shape)
        self._check_spatial(input_shape)
        return self._output_shape(input_shape, in_channels * self.depth_multiplier)

    def get_config(self) -> dict[str, Any]:
        return {
            **self._base_config(),
            "depth_multiplier": self.depth_multiplier,
            **self._geometry_config(),
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "depthwise_constraint": constraints.serialize(self.depthwise_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class DepthwiseConv1D(DepthwiseConv):
    """1D depthwise convolution: :class:`DepthwiseConv` with ``rank=1``.

    Inputs are ``(batch, steps, channels)`` (``channels_last``) or ``(batch, channels, steps)``.

    >>> from weightwise import ops
    >>> DepthwiseConv1D(3, 2, depth_multiplier=3, activation="relu")(ops.ones((4, 10, 12))).shape
    torch.Size([4, 4, 36])
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            1, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint, **kwargs,
        )


class DepthwiseConv2D(DepthwiseConv):
    """2D depthwise convolution: :class:`DepthwiseConv` with ``rank=2``.

    Inputs are ``(batch, height, width, channels)`` (``channels_last``) or
    ``(batch, channels, height, width)``. EEGNet's spatial filter is one:

    >>> from weightwise import ops
    >>> from weightwise.constraints import max_norm
    >>> layer = DepthwiseConv2D((8, 1), use_bias=False, depth_multiplier=2, depthwise_constraint=max_norm(1.0))
    >>> layer(ops.ones((2, 8, 64, 4))).shape
    torch.Size([2, 1, 64, 8])
    >>> tuple(layer.kernel.shape)
    (8, 1, 4, 2)
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = (1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: IntOrTuple = (1, 1),
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            2, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint, **kwargs,
        )
