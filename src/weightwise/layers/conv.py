"""Convolution layers: Conv1D, Conv2D and Conv3D, with Keras's kernel layout and padding.

The kernel has Keras's layout ``(*kernel_size, in_channels // groups, filters)``, so
Keras weights load unchanged and a constraint axis such as ``[0, 1, 2]`` addresses
each Conv2D filter. Inputs are ``channels_last`` unless ``data_format="channels_first"``.
``padding="same"`` pads exactly as Keras and TensorFlow do, the extra row or column
going after the data when the total is odd.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from weightwise import regularizers
from weightwise.arguments import echo
from weightwise.layers.args import (
    IntOrTuple,
    invalid,
    is_int,
    output_length,
    pad_spatial,
    positive_int,
    same_padding,
    standardize_data_format,
    standardize_padding,
    standardize_shape,
    standardize_tuple,
)
from weightwise.layers.base import InputSpec
from weightwise.layers.core import KernelLayer

__all__ = ["Conv", "Conv1D", "Conv2D", "Conv3D"]


CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
# Where torch's convolution, given the bias, adds it before its one rounding to the output dtype, while
# Keras adds it after the convolution: in these dtypes the two differ by an ulp.
_HALF = (torch.float16, torch.bfloat16)


class ConvGeometry:
    """What every convolution derives from ``rank``, ``kernel_size``, ``strides``, ``padding``,
    ``data_format`` and ``dilation_rate``: argument checks, input checks and the padded call.

    A mixin for layers built on :class:`~weightwise.layers.core.KernelLayer` or
    :class:`~weightwise.layers.base.Layer` (the plain, depthwise, separable and transposed
    convolutions); it holds no state of its own beyond those arguments.

    >>> layer = Conv2D(1, 3, strides=2, padding="same")
    >>> layer._padding((7, 8))
    [(1, 1), (0, 1)]
    """

    rank: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilation_rate: tuple[int, ...]
    padding: str
    data_format: str
    name: str

    def _set_geometry(
        self,
        kernel_size: Any,
        strides: Any,
        padding: Any,
        data_format: Any,
        dilation_rate: Any,
        *,
        allow_causal: bool = False,
        strides_with_dilation: bool = False,
    ) -> None:
        """Check and store the geometry arguments (``self.rank`` already set), in Keras's order."""
        rank = self.rank
        self.kernel_size = standardize_tuple(self, kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(self, strides, rank, "strides")
        self.dilation_rate = standardize_tuple(self, dilation_rate, rank, "dilation_rate")
        if not strides_with_dilation and max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `strides`: "
                f"`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.padding = standardize_padding(self, padding, allow_causal=allow_causal)
        self.data_format = standardize_data_format(self, data_format)

    def _set_rank(self, rank: Any) -> None:
        if not is_int(rank) or rank not in CONV_FN:
            raise invalid(self, "rank", rank, "1, 2 or 3")  # type: ignore[arg-type]
        self.rank = int(rank)

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _input_channels(self, input_shape: Sequence[int | None]) -> tuple[tuple[int | None, ...], int]:
        """The standardized ``input_shape`` and its channel count; the rank and channels checked."""
        owner = f"{type(self).__name__} layer {self.name!r}"
        input_shape = standardize_shape(input_shape, "input_shape", owner)
        InputSpec(ndim=self.rank + 2).check(self.name, input_shape)
        in_channels = input_shape[self._channel_axis]
        if in_channels is None:
            raise ValueError(
                f"{owner}: the channel dimension of the inputs must be known. Received: input_shape={tuple(input_shape)}"
            )
        return input_shape, in_channels

    def _spatial(self, shape: Sequence[int | None]) -> Sequence[int | None]:
        return shape[1:-1] if self.data_format == "channels_last" else shape[2:]

    def _output_spatial(self, shape: Sequence[int | None]) -> list[int | None]:
        return [None if size is None else output_length(size, k, s, self.padding, d)
                for size, k, s, d in zip(self._spatial(shape), self.kernel_size, self.strides, self.dilation_rate)]

    def _output_shape(self, shape: Sequence[int | None], channels: int) -> tuple[int | None, ...]:
        """``shape`` with its spatial sizes replaced by :meth:`_output_spatial` and ``channels`` channels."""
        spatial = self._output_spatial(shape)
        if self.data_format == "channels_last":
            return (shape[0], *spatial, channels)
        return (shape[0], channels, *spatial)

    def _check_spatial(self, shape: Sequence[int | None]) -> None:
        if any(size is not None and size <= 0 for size in self._output_spatial(shape)):
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: Computed output size would be zero or negative: "
                f"the input is too small for the kernel. Received: input_shape={tuple(shape)}, "
                f"kernel_size={self.kernel_size}, strides={self.strides}, dilation_rate={self.dilation_rate}, "
                f"padding={self.padding!r}"
            )

    def _padding(self, spatial: Sequence[int], kernel_size: Sequence[int] | None = None,
                 same_unit: bool = False) -> list[tuple[int, int]]:
        """``(before, after)`` per spatial axis; ``same_unit``: ``"same"`` with unit strides and dilation."""
        kernel_size = kernel_size or self.kernel_size
        if same_unit:
            return [same_padding(size, k, 1) for size, k in zip(spatial, kernel_size)]
        if self.padding == "same":
            return [same_padding(*args) for args in zip(spatial, kernel_size, self.strides, self.dilation_rate)]
        if self.padding == "causal":
            return [((kernel_size[0] - 1) * self.dilation_rate[0], 0)]
        return [(0, 0)] * self.rank

    def _channels_first(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.movedim(-1, 1) if self.data_format == "channels_last" else inputs

    def _channels_back(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.movedim(1, -1) if self.data_format == "channels_last" else outputs

    def _convolve(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, groups: int,
                  same_unit: bool = False) -> torch.Tensor:
        """Pad the channels-first ``x`` as ``padding`` says, then convolve with a torch-layout ``kernel``.

        Symmetric padding goes to torch's convolution; the odd pixel of ``"same"`` (after the
        data) and ``"causal"`` padding need an explicit pad first. ``same_unit`` convolves with
        ``"same"`` padding, unit strides and no dilation instead (a ConvLSTM's recurrent step).
        """
        pads = self._padding(tuple(x.shape[2:]), tuple(kernel.shape[2:]), same_unit)
        if all(before == after for before, after in pads):
            padding: Any = tuple(before for before, _ in pads)
        else:
            x, padding = pad_spatial(x, pads), 0
        stride, dilation = ((1,) * self.rank, (1,) * self.rank) if same_unit else (self.strides, self.dilation_rate)
        return self._convolve_and_add(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                                      groups=groups)

    def _convolve_and_add(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                          **kwargs: Any) -> torch.Tensor:
        """torch's convolution of the channels-first ``x`` with ``kernel``, plus ``bias``.

        In float16 and bfloat16 the bias is added to the rounded convolution, as Keras adds it, so
        the outputs are Keras's to the bit; elsewhere torch adds it inside the convolution.
        """
        apply = self._apply_kernel  # type: ignore[attr-defined]
        if bias is None or x.dtype not in _HALF:
            return apply(CONV_FN[self.rank], x, kernel, bias, **kwargs)
        outputs = apply(CONV_FN[self.rank], x, kernel, None, **kwargs)
        return outputs + bias.reshape(-1, *(1,) * self.rank)


def torch_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """A Keras-layout kernel ``(*kernel_size, in, out)`` as torch's ``(out, in, *kernel_size)`` (a view).

    >>> tuple(torch_kernel(torch.zeros(3, 5, 2, 4)).shape)
    (4, 2, 3, 5)
    """
    rank = kernel.dim() - 2
    return kernel.permute(rank + 1, rank, *range(rank))


class Conv(ConvGeometry, KernelLayer):
    """N-D convolution (cross-correlation): ``output = activation(conv(inputs, kernel) + bias)``.

    ``rank`` (1, 2 or 3) is the number of spatial axes; :class:`Conv1D`, :class:`Conv2D`
    and :class:`Conv3D` fix it. The other arguments are Keras's: ``filters`` output
    channels, ``kernel_size``/``strides``/``dilation_rate`` as an int or ``rank`` ints,
    ``padding`` ``"valid"``, ``"same"`` or (rank 1 only) ``"causal"``, and ``groups``,
    which must divide both the input channels and ``filters``. The kernel has shape
    ``(*kernel_size, in_channels // groups, filters)`` and the bias ``(filters,)``.

    >>> from weightwise import ops
    >>> layer = Conv(2, filters=4, kernel_size=3, padding="same", kernel_regularizer="l2")
    >>> layer(ops.ones((1, 5, 5, 3))).shape
    torch.Size([1, 5, 5, 4])
    >>> tuple(layer.kernel.shape), len(layer.losses)
    ((3, 3, 3, 4), 1)
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        groups: int = 1,
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
        self.filters = filters = strictly_positive(self, filters, "filters")
        self._set_geometry(kernel_size, strides, padding, data_format, dilation_rate, allow_causal=self.rank == 1)
        if not is_int(groups) or groups <= 0:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: invalid value for argument `groups`: The number "
                             f"of groups must be a positive integer. Received: groups={echo(groups)}.")
        if filters % groups:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: invalid value for argument `groups`: The number "
                             f"of filters must be evenly divisible by the number of groups. Received: groups={groups}, filters={filters}.")
        self.groups = groups
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def build(self, input_shape: Sequence[int | None]) -> None:
        # Check the shape and rank first, so a wrong input builds nothing.
        input_shape, in_channels = self._input_channels(input_shape)
        if in_channels % self.groups:
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: the number of input channels must be evenly divisible "
                f"by the number of groups. Received groups={self.groups}, but the input has {in_channels} channels "
                f"(full input shape is {tuple(input_shape)})."
            )
        self._check_spatial(input_shape)
        self._add_kernel_and_bias((*self.kernel_size, in_channels // self.groups, self.filters), self.filters)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: in_channels})

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check_spatial(tuple(inputs.shape))
        if not inputs.is_floating_point():
            inputs = self._kernel_inputs(inputs)
        outputs = self._convolve(self._channels_first(inputs), torch_kernel(self.kernel), self.bias, self.groups)
        return self._activate(self._channels_back(outputs))

    def get_config(self) -> dict[str, Any]:
        return keras_conv_config(self, super().get_config(), {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
        })


def keras_conv_config(layer: KernelLayer, base: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """A kernel convolution's config in Keras's key order: name, trainable, dtype, a set activity
    regularizer, ``rank`` (for the general classes only), ``arguments``, then the activation,
    initializers and rules from ``base`` (the :class:`KernelLayer` config). Keras's convolutions
    always list ``activity_regularizer``."""
    base = dict(base)
    # A set activity regularizer sits after the dtype, where Keras's base config puts it.
    config = {key: base.pop(key) for key in ("name", "trainable", "dtype", "activity_regularizer") if key in base}
    if "rank" in inspect.signature(type(layer).__init__).parameters:
        # The general class: the rank is a constructor argument (the 1D/2D/3D classes fix it).
        config["rank"] = layer.rank  # type: ignore[attr-defined]
    config.update(arguments)
    for key in ("activation", "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                "bias_regularizer"):
        config[key] = base.pop(key)
    config["activity_regularizer"] = regularizers.serialize(layer.activity_regularizer)
    config.update(base)
    return config


def strictly_positive(layer: Any, value: Any, argument: str) -> int:
    """``value`` (``filters``, ``depth_multiplier``) as a positive int, refused in the words of Keras's own tests."""
    if is_int(value) and value <= 0:
        raise ValueError(f"{type(layer).__name__} layer {layer.name!r}: Invalid value for argument `{argument}`. "
                         f"Expected a strictly positive value. Received {argument}={value}.")
    return positive_int(layer, value, argument)


class Conv1D(Conv):
    """1D convolution (e.g. over time): :class:`Conv` with ``rank=1``; also takes ``padding="causal"``.

    Inputs are ``(batch, steps, channels)`` (``channels_last``) or ``(batch, channels, steps)``.

    >>> from weightwise import ops
    >>> Conv1D(32, 3, activation="relu")(ops.ones((4, 10, 128))).shape
    torch.Size([4, 8, 32])
    >>> Conv1D(2, 3, padding="causal")(ops.ones((4, 10, 1))).shape
    torch.Size([4, 10, 2])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        groups: int = 1,
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
            1, filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation, use_bias,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, bias_constraint, **kwargs,
        )


class Conv2D(Conv):
    """2D convolution (e.g. over images): :class:`Conv` with ``rank=2``.

    Inputs are ``(batch, height, width, channels)`` (``channels_last``) or
    ``(batch, channels, height, width)``.

    >>> from weightwise import ops
    >>> from weightwise.constraints import MaxNorm
    >>> layer = Conv2D(64, 3, padding="same", kernel_constraint=MaxNorm(2.0, axis=[0, 1, 2]))
    >>> layer(ops.ones((4, 10, 10, 3))).shape
    torch.Size([4, 10, 10, 64])
    >>> tuple(layer.kernel.shape)
    (3, 3, 3, 64)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = (1, 1),
        groups: int = 1,
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
            2, filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation, use_bias,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, bias_constraint, **kwargs,
        )


class Conv3D(Conv):
    """3D convolution (e.g. over volumes or video): :class:`Conv` with ``rank=3``.

    Inputs are ``(batch, depth, height, width, channels)`` (``channels_last``) or
    ``(batch, channels, depth, height, width)``.

    >>> from weightwise import ops
    >>> Conv3D(2, (3, 3, 3), strides=2, data_format="channels_first")(ops.ones((1, 4, 9, 9, 9))).shape
    torch.Size([1, 2, 4, 4, 4])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = (1, 1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = (1, 1, 1),
        groups: int = 1,
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
            3, filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation, use_bias,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, bias_constraint, **kwargs,
        )
