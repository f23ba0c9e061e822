"""SimpleRNNCell and SimpleRNN: ``h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``."""

from __future__ import annotations

from typing import Any

import torch

from weightwise.layers.rnn.cell import RecurrentCell
from weightwise.layers.rnn.cell_rnn import CellRNN
from weightwise.layers.rnn.fused import RELU, TANH

__all__ = ["SimpleRNN", "SimpleRNNCell"]


class SimpleRNNCell(RecurrentCell):
    """One step of a fully connected RNN: ``h = activation(x @ kernel + bias + h_prev @ recurrent_kernel)``.

    Weights: ``kernel (input_dim, units)``, ``recurrent_kernel (units, units)``, ``bias
    (units,)``. While training, ``dropout`` masks the inputs and ``recurrent_dropout`` the
    previous state, one mask per sequence.

    >>> from weightwise import ops
    >>> cell = SimpleRNNCell(2, kernel_initializer="ones", recurrent_initializer="zeros")
    >>> output, states = cell(ops.ones((1, 3)), [ops.zeros((1, 2))])
    >>> [round(v, 4) for v in output[0].tolist()]
    [0.9951, 0.9951]
    """

    def __init__(self, units: int, activation: Any = "tanh", use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self.state_size = self.units

    def build(self, input_shape: Any) -> None:
        self._add_weights(self._input_dim(input_shape), 1, (self.units,))

    def call(self, sequence: torch.Tensor, states: Any, training: bool = False) -> tuple[torch.Tensor, Any]:
        nested = isinstance(states, (list, tuple))
        previous = states[0] if nested else states
        if training and self.dropout > 0:
            sequence = sequence * self.get_dropout_mask(sequence)
        h = torch.matmul(sequence, self.kernel)
        if self.bias is not None:
            h = h + self.bias
        if training and self.recurrent_dropout > 0:
            previous = previous * self.get_recurrent_dropout_mask(previous)
        output = h + torch.matmul(previous, self.recurrent_kernel)
        if self.activation is not None:
            output = self.activation(output)
        return output, [output] if nested else output

    def fused_kernel(self) -> str | None:
        """``"rnn_tanh"`` or ``"rnn_relu"``, torch's fused kernels, for those two activations."""
        return "rnn_tanh" if self.activation in TANH else "rnn_relu" if self.activation in RELU else None


class SimpleRNN(CellRNN):
    """Fully connected RNN whose output is fed back as its state (Keras's ``SimpleRNN``).

    Takes :class:`SimpleRNNCell`'s arguments and :class:`RNN`'s; the weights live on
    ``layer.cell`` (``simple_rnn/simple_rnn_cell/kernel``). Unlike Keras 3.15, whose
    SimpleRNN drops it, ``activity_regularizer`` applies to the output, as its docs say.

    >>> from weightwise import ops
    >>> layer = SimpleRNN(4, return_sequences=True, recurrent_regularizer="l2")
    >>> tuple(layer(ops.ones((2, 5, 3))).shape), [w.path for w in layer.weights]
    ((2, 5, 4), ['simple_rnn/simple_rnn_cell/kernel', 'simple_rnn/simple_rnn_cell/recurrent_kernel', 'simple_rnn/simple_rnn_cell/bias'])
    """

    cell_class = SimpleRNNCell
    cell_name = "simple_rnn_cell"
    config_drops = ("seed",)

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        given = {key: value for key, value in locals().items() if key not in ("self", "kwargs", "__class__")}
        super().__init__(given, kwargs)
