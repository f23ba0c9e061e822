"""LSTMCell and LSTM (Hochreiter & Schmidhuber, 1997), with Keras's gate order i, f, c, o."""

from __future__ import annotations

from typing import Any

import torch

from weightwise import arguments, initializers
from weightwise.layers.rnn.cell_rnn import CellRNN
from weightwise.layers.rnn.fused import SIGMOID, TANH
from weightwise.layers.rnn.gated import GatedCell

__all__ = ["LSTM", "LSTMCell"]


class LSTMCell(GatedCell):
    """One LSTM step. With ``z = x @ kernel + h_prev @ recurrent_kernel + bias`` split into i, f, c, o:

    ``c = sigma(f) * c_prev + sigma(i) * act(c~)``, ``h = sigma(o) * act(c)``, where
    ``sigma`` is ``recurrent_activation`` (sigmoid) and ``act`` is ``activation`` (tanh).

    Weights: ``kernel (input_dim, 4*units)``, ``recurrent_kernel (units, 4*units)``, ``bias
    (4*units,)``; ``unit_forget_bias`` starts the forget gate's bias at 1. The states are
    ``[h, c]``. With ``recurrent_dropout`` (Keras's implementation 1) each gate gets its
    own dropout masks.

    >>> from weightwise import ops
    >>> cell = LSTMCell(2, kernel_initializer="ones", recurrent_initializer="zeros")
    >>> h, (h_again, c) = cell(ops.ones((1, 3)), [ops.zeros((1, 2)), ops.zeros((1, 2))])
    >>> [round(v, 4) for v in h[0].tolist()], cell.bias.tolist()
    ([0.7038, 0.7038], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    """

    gates = 4

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        unit_forget_bias: bool = True,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, recurrent_activation=recurrent_activation, implementation=implementation,
                         activation=activation, use_bias=use_bias, **kwargs)
        self.unit_forget_bias = arguments.flag(unit_forget_bias, "unit_forget_bias", owner=self._owner())
        self.state_size = [self.units, self.units]

    def build(self, input_shape: Any) -> None:
        bias_initializer = self.bias_initializer
        if self.use_bias and self.unit_forget_bias:
            def bias_initializer(_: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
                return torch.cat([self.bias_initializer((self.units,), *args, **kwargs),
                                  initializers.get("ones")((self.units,), *args, **kwargs),
                                  self.bias_initializer((self.units * 2,), *args, **kwargs)])
        self._add_weights(self._input_dim(input_shape), 4, (4 * self.units,), bias_initializer)

    def call(self, inputs: torch.Tensor, states: Any, training: bool = False) -> tuple[torch.Tensor, list[Any]]:
        h_prev, c_prev = states[0], states[1]
        z = self._gate_matmul(inputs, self.kernel, training, recurrent=False) \
            + self._gate_matmul(h_prev, self.recurrent_kernel, training, recurrent=True)
        if self.bias is not None:
            z = z + self.bias
        z_i, z_f, z_c, z_o = torch.split(z, self.units, dim=-1)
        c = self.recurrent_activation(z_f) * c_prev + self.recurrent_activation(z_i) * self.activation(z_c)
        h = self.recurrent_activation(z_o) * self.activation(c)
        return h, [h, c]

    def fused_kernel(self) -> str | None:
        """``"lstm"``, torch's fused kernel, where the activations are Keras's defaults."""
        return "lstm" if self.activation in TANH and self.recurrent_activation in SIGMOID else None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class LSTM(CellRNN):
    """Long Short-Term Memory layer (Keras's ``LSTM``): an :class:`RNN` over an :class:`LSTMCell`.

    Takes the cell's arguments and :class:`RNN`'s; the weights live on ``layer.cell``
    (``lstm/lstm_cell/kernel``, ``.../recurrent_kernel``, ``.../bias``). ``use_cudnn``
    (``"auto"``, True or False) chooses torch's fused LSTM kernel where the configuration
    allows; the result is the same either way.

    >>> from weightwise import ops
    >>> layer = LSTM(4, return_state=True, recurrent_regularizer="l2")
    >>> output, h, c = layer(ops.ones((2, 5, 3)))
    >>> tuple(output.shape), [tuple(w.shape) for w in layer.weights]
    ((2, 4), [(3, 16), (4, 16), (16,)])
    """

    cell_class = LSTMCell
    cell_name = "lstm_cell"
    delegated = (*CellRNN.delegated, "recurrent_activation", "unit_forget_bias")

    def __init__(
        self,
        units: int,
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
        unroll: bool = False,
        use_cudnn: Any = "auto",
        **kwargs: Any,
    ) -> None:
        given = {key: value for key, value in locals().items() if key not in ("self", "kwargs", "__class__")}
        super().__init__(given, kwargs)

