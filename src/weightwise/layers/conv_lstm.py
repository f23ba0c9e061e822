"""Convolutional LSTM layers: ConvLSTM1D, ConvLSTM2D and ConvLSTM3D (Shi et al., 2015), as Keras's.

An LSTM whose input and recurrent transformations are convolutions: the states ``h`` and
``c`` are feature maps. The cell's weights are Keras's: ``kernel``
``(*kernel_size, in_channels, 4 * filters)``, ``recurrent_kernel``
``(*kernel_size, filters, 4 * filters)`` and ``bias`` ``(4 * filters,)``, each holding the
gates in the order i, f, c, o. The input convolution takes the layer's ``strides``,
``padding`` and ``dilation_rate``; the recurrent one is ``"same"`` with unit strides.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import activations, arguments, constraints, initializers, regularizers
from weightwise.layers.args import IntOrTuple
from weightwise.layers.base import InputSpec, Layer
from weightwise.layers.conv import ConvGeometry, strictly_positive, torch_kernel
from weightwise.layers.core import KernelLayer
from weightwise.layers.rnn.cell import RecurrentCell
from weightwise.layers.rnn.cell_rnn import CellRNN
from weightwise.layers.rnn.rnn import RNN

__all__ = ["ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "ConvLSTMCell"]

_GATES = 4


class ConvLSTMCell(ConvGeometry, RecurrentCell):
    """One ConvLSTM step on ``(batch, *spatial, channels)`` inputs (channels first with ``data_format``).

    With ``z = conv(x, kernel) + bias + conv_same(h_prev, recurrent_kernel)`` split into
    i, f, c, o along the channels: ``c = sigma(f) * c_prev + sigma(i) * act(c~)`` and
    ``h = sigma(o) * act(c)``. The states are ``[h, c]``, feature maps of the input
    convolution's output shape. ``dropout`` and ``recurrent_dropout`` draw one mask per
    gate, as Keras does.

    >>> from weightwise import ops
    >>> cell = ConvLSTMCell(2, 4, 3, padding="same")
    >>> h, (h_again, c) = cell(ops.ones((1, 5, 5, 3)), [ops.zeros((1, 5, 5, 4)), ops.zeros((1, 5, 5, 4))])
    >>> tuple(h.shape), [tuple(w.shape) for w in cell.weights]
    ((1, 5, 5, 4), [(3, 3, 3, 16), (3, 3, 4, 16), (16,)])
    """

    # The same input handling as the convolutions: device checks and meta inputs.
    _apply_kernel = KernelLayer._apply_kernel

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # The recurrent cell's `units` has no meaning here: a ConvLSTM counts `filters`, checked below.
        super().__init__(
            1, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed, **kwargs,
        )
        del self.units, self.output_size
        self._set_rank(rank)
        self.filters = strictly_positive(self, filters, "filters")
        self._set_geometry(kernel_size, strides, padding, data_format, dilation_rate, strides_with_dilation=True)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{self._owner()}: Specifying `strides > 1` is not compatible with `dilation_rate > 1`. Please provide "
                f"`strides=1` or `dilation_rate=1`. Received: strides={self.strides} and "
                f"dilation_rate={self.dilation_rate}"
            )
        self.recurrent_activation = self._resolve("recurrent_activation", recurrent_activation, activations.get)
        self.unit_forget_bias = arguments.flag(unit_forget_bias, "unit_forget_bias", owner=self._owner())
        self.dropout_mask_count = _GATES
        # Two states, h and c, each a feature map rather than a vector (Keras's -1: "custom").
        self.state_size = [-1, -1]
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def build(self, input_shape: Sequence[int | None], states_shape: Any = None) -> None:
        input_shape, in_channels = self._input_channels(input_shape)
        spatial = tuple(self._spatial(input_shape))
        if None in spatial:
            raise ValueError(f"{self._owner()}: ConvLSTM layers only support static input shapes for the spatial "
                             f"dimension. Received invalid input shape: input_shape={input_shape}")
        self._check_spatial(input_shape)
        bias_initializer = self.bias_initializer
        if self.use_bias and self.unit_forget_bias:
            def bias_initializer(_: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
                return torch.cat([self.bias_initializer((self.filters,), *args, **kwargs),
                                  initializers.get("ones")((self.filters,), *args, **kwargs),
                                  self.bias_initializer((self.filters * 2,), *args, **kwargs)])
        self.kernel = self.add_weight("kernel", (*self.kernel_size, in_channels, _GATES * self.filters),
                                      self.kernel_initializer, self.kernel_regularizer, self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", (*self.kernel_size, self.filters, _GATES * self.filters), self.recurrent_initializer,
            self.recurrent_regularizer, self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (_GATES * self.filters,), bias_initializer, self.bias_regularizer,
                                        self.bias_constraint)
        else:
            self.bias = None
        self.spatial_dims, self.input_dim = spatial, in_channels
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: in_channels})

    def _gate_conv(self, inputs: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, training: bool,
                   recurrent: bool) -> torch.Tensor:
        """The four gates' convolutions of ``inputs`` (channels first out), each under its dropout mask."""
        parts = self._step_inputs(inputs, training, recurrent, _GATES)
        if all(part is inputs for part in parts):
            pairs = [(inputs, kernel, bias)]
        else:
            biases = [None] * _GATES if bias is None else torch.split(bias, self.filters)
            pairs = list(zip(parts, torch.split(kernel, self.filters, dim=-1), biases))
        return torch.cat([self._convolve(self._channels_first(x), torch_kernel(k), b, 1, same_unit=recurrent)
                          for x, k, b in pairs], dim=1)

    def call(self, inputs: torch.Tensor, states: Any, training: bool = False) -> tuple[torch.Tensor, list[Any]]:
        # States given directly to the cell may be arrays, as Keras accepts.
        h_prev, c_prev = (s if isinstance(s, torch.Tensor) else torch.as_tensor(s, dtype=inputs.dtype,
                                                                                  device=inputs.device)
                          for s in states[:2])
        z = self._gate_conv(inputs, self.kernel, self.bias, training, recurrent=False) \
            + self._gate_conv(h_prev, self.recurrent_kernel, None, training, recurrent=True)
        z_i, z_f, z_c, z_o = torch.split(z, self.filters, dim=1)
        c = self.recurrent_activation(z_f) * self._channels_first(c_prev) \
            + self.recurrent_activation(z_i) * self.activation(z_c)
        h = self._channels_back(self.recurrent_activation(z_o) * self.activation(c))
        return h, [h, self._channels_back(c)]

    def compute_output_shape(self, inputs_shape: Sequence[int | None], states_shape: Any = None) -> Any:
        """The shape of ``h`` (and of both states) for step inputs of ``inputs_shape``.

        >>> ConvLSTMCell(2, 4, 3).compute_output_shape((None, 7, 7, 3))[0]
        (None, 5, 5, 4)
        """
        shape = self._output_shape(tuple(inputs_shape), self.filters)
        return shape, [shape, shape]

    def get_initial_state(self, batch_size: int | None = None) -> list[torch.Tensor]:
        """Zero ``h`` and ``c`` of the shape the built cell outputs."""
        if self.data_format == "channels_last":
            input_shape = (batch_size, *self.spatial_dims, self.input_dim)
        else:
            input_shape = (batch_size, self.input_dim, *self.spatial_dims)
        shape = self.compute_output_shape(input_shape)[0]
        return [torch.zeros(shape, dtype=self._dtype), torch.zeros(shape, dtype=self._dtype)]

    def fused_kernel(self) -> str | None:
        """torch has no fused ConvLSTM kernel: ``None``, so the step loop runs."""
        return None

    def get_config(self) -> dict[str, Any]:
        return {
            **Layer.get_config(self),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }


class ConvLSTM(CellRNN):
    """N-D convolutional LSTM: an :class:`~weightwise.layers.RNN` over a :class:`ConvLSTMCell`.

    Inputs are ``(batch, time, *spatial, channels)`` (``channels_last``) or
    ``(batch, time, channels, *spatial)``. The cell's arguments read back from the layer
    (``layer.filters``, ``layer.kernel_regularizer``, settable rules included); the weights
    live on ``layer.cell`` (``conv_lstm2d/conv_lstm_cell/kernel``, ...).

    >>> from weightwise import ops
    >>> layer = ConvLSTM(2, 4, 3, return_sequences=True, recurrent_regularizer="l2")
    >>> tuple(layer(ops.ones((2, 3, 6, 6, 2))).shape), len(layer.losses)
    ((2, 3, 4, 4, 4), 1)
    """

    cell_class = ConvLSTMCell
    cell_name = "conv_lstm_cell"
    delegated = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation",
                 "recurrent_activation", "use_bias", "kernel_initializer", "recurrent_initializer",
                 "bias_initializer", "unit_forget_bias", "dropout", "recurrent_dropout", "kernel_regularizer",
                 "recurrent_regularizer", "bias_regularizer", "kernel_constraint", "recurrent_constraint",
                 "bias_constraint")

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        **kwargs: Any,
    ) -> None:
        given = {key: value for key, value in locals().items() if key not in ("self", "kwargs", "__class__")}
        if "activity_regularizer" in kwargs:
            given["activity_regularizer"] = kwargs.pop("activity_regularizer")
        super().__init__(given, kwargs)
        self.input_spec = InputSpec(ndim=self.cell.rank + 3)

    @property
    def rank(self) -> int:
        """The number of spatial axes (the cell's)."""
        return self.cell.rank

    def compute_output_shape(self, sequences_shape: Sequence[int | None], initial_state_shape: Any = None) -> Any:
        """Keras's shapes: the output (per step with ``return_sequences``), then ``h`` and ``c``.

        >>> ConvLSTM2D(4, 3, return_state=True).compute_output_shape((None, 3, 7, 7, 2))[1]
        (None, 5, 5, 4)
        """
        batch_size, steps = sequences_shape[0], sequences_shape[1]
        state_shape = tuple(self.cell.compute_output_shape((batch_size, *sequences_shape[2:]))[0][1:])
        output_shape = (batch_size, steps, *state_shape) if self.return_sequences else (batch_size, *state_shape)
        if self.return_state:
            return output_shape, (batch_size, *state_shape), (batch_size, *state_shape)
        return output_shape

    def get_config(self) -> dict[str, Any]:
        config = RNN.get_config(self)
        del config["cell"]
        for key, value in self.cell.get_config().items():
            if key not in ("name", "trainable", "dtype"):
                config[key] = value
            if key == "bias_regularizer":
                # Keras lists the activity regularizer here (or after the dtype, where it is set).
                config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if "rank" in inspect.signature(type(self).__init__).parameters:
            # The general class: the rank is a constructor argument (the 1D/2D/3D classes fix it).
            config["rank"] = self.rank
        return config


class ConvLSTM1D(ConvLSTM):
    """1D convolutional LSTM: :class:`ConvLSTM` on ``(batch, time, steps, channels)`` inputs.

    >>> from weightwise import ops
    >>> ConvLSTM1D(4, 3, padding="same")(ops.ones((2, 5, 8, 3))).shape
    torch.Size([2, 8, 4])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**_ranked(1, locals(), kwargs))


class ConvLSTM2D(ConvLSTM):
    """2D convolutional LSTM: :class:`ConvLSTM` on ``(batch, time, rows, cols, channels)`` inputs.

    >>> from weightwise import ops
    >>> ConvLSTM2D(4, 3, return_sequences=True)(ops.ones((2, 5, 8, 8, 3))).shape
    torch.Size([2, 5, 6, 6, 4])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**_ranked(2, locals(), kwargs))


class ConvLSTM3D(ConvLSTM):
    """3D convolutional LSTM: :class:`ConvLSTM` on ``(batch, time, depth, rows, cols, channels)`` inputs.

    >>> from weightwise import ops
    >>> ConvLSTM3D(2, 3, padding="same")(ops.ones((1, 2, 4, 4, 4, 3))).shape
    torch.Size([1, 4, 4, 4, 2])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**_ranked(3, locals(), kwargs))


def _ranked(rank: int, named: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A fixed-rank class's arguments for :class:`ConvLSTM`: its named ones, the rank, and the rest."""
    given = {key: value for key, value in named.items() if key not in ("self", "kwargs", "__class__")}
    return {"rank": rank, **given, **kwargs}
