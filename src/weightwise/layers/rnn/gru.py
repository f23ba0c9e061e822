"""GRUCell and GRU (Cho et al., 2014), with Keras's gate order z, r, h and both reset conventions."""

from __future__ import annotations

from typing import Any

import torch

from weightwise import arguments
from weightwise.layers.rnn.cell_rnn import CellRNN
from weightwise.layers.rnn.fused import SIGMOID, TANH
from weightwise.layers.rnn.gated import GatedCell

__all__ = ["GRU", "GRUCell"]


class GRUCell(GatedCell):
    """One GRU step, gates in Keras's order z (update), r (reset), h (candidate):

    ``z = sigma(x W_z + h_prev U_z + b_z)``, ``r = sigma(x W_r + h_prev U_r + b_r)``, and
    ``h = z * h_prev + (1 - z) * act(x W_h + b_h + r * (h_prev U_h + b'_h))`` with
    ``reset_after=True`` (the default; the bias is ``(2, 3*units)``: input and recurrent
    rows), or ``act(x W_h + b_h + (r * h_prev) U_h)`` with ``reset_after=False`` (the bias is
    ``(3*units,)``). ``sigma`` is ``recurrent_activation``, ``act`` is ``activation``.

    >>> from weightwise import ops
    >>> cell = GRUCell(2, kernel_initializer="ones", recurrent_initializer="zeros")
    >>> h, [h_again] = cell(ops.ones((1, 3)), [ops.zeros((1, 2))])
    >>> [round(v, 4) for v in h[0].tolist()], tuple(cell.bias.shape)
    ([0.0472, 0.0472], (2, 6))
    """

    gates = 3

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        reset_after: bool = True,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, recurrent_activation=recurrent_activation, implementation=implementation,
                         activation=activation, use_bias=use_bias, **kwargs)
        self.reset_after = arguments.flag(reset_after, "reset_after", owner=self._owner())
        self.state_size = self.units

    def build(self, input_shape: Any) -> None:
        bias_shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        self._add_weights(self._input_dim(input_shape), 3, bias_shape)

    def call(self, inputs: torch.Tensor, states: Any, training: bool = False) -> tuple[torch.Tensor, Any]:
        nested = isinstance(states, (list, tuple))
        h_prev = states[0] if nested else states
        input_bias = recurrent_bias = None
        if self.bias is not None:
            input_bias, recurrent_bias = (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None)
        x = self._gate_matmul(inputs, self.kernel, training, recurrent=False)
        if input_bias is not None:
            x = x + input_bias
        x_z, x_r, x_h = torch.split(x, self.units, dim=-1)
        h_z, h_r, h_h = self._step_inputs(h_prev, training, recurrent=True, gates=3)
        u_z, u_r, u_h = torch.split(self.recurrent_kernel, self.units, dim=-1)
        if self.reset_after:
            inner = self._gate_matmul(h_prev, self.recurrent_kernel, training, recurrent=True)
            if recurrent_bias is not None:
                inner = inner + recurrent_bias
            r_z, r_r, r_h = torch.split(inner, self.units, dim=-1)
        else:
            r_z, r_r = torch.matmul(h_z, u_z), torch.matmul(h_r, u_r)
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        recurrent_h = r * r_h if self.reset_after else torch.matmul(r * h_h, u_h)
        candidate = self.activation(x_h + recurrent_h)
        h = z * h_prev + (1 - z) * candidate
        return h, [h] if nested else h

    def fused_kernel(self) -> str | None:
        """``"gru"``, torch's fused kernel, with ``reset_after=True`` and Keras's default activations."""
        fits = self.reset_after and self.activation in TANH and self.recurrent_activation in SIGMOID
        return "gru" if fits else None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "reset_after": self.reset_after}


class GRU(CellRNN):
    """Gated Recurrent Unit layer (Keras's ``GRU``): an :class:`RNN` over a :class:`GRUCell`.

    Takes the cell's arguments and :class:`RNN`'s; the weights live on ``layer.cell``
    (``gru/gru_cell/kernel``, ...). ``use_cudnn`` (``"auto"``, True or False) chooses torch's
    fused GRU kernel where the configuration allows; the result is the same either way.

    >>> from weightwise import ops
    >>> layer = GRU(4, return_sequences=True, bias_constraint="non_neg")
    >>> tuple(layer(ops.ones((2, 5, 3))).shape), [tuple(w.shape) for w in layer.weights]
    ((2, 5, 4), [(3, 12), (4, 12), (2, 12)])
    """

    cell_class = GRUCell
    cell_name = "gru_cell"
    delegated = (*CellRNN.delegated, "recurrent_activation", "reset_after")

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
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
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        reset_after: bool = True,
        use_cudnn: Any = "auto",
        **kwargs: Any,
    ) -> None:
        given = {key: value for key, value in locals().items() if key not in ("self", "kwargs", "__class__")}
        super().__init__(given, kwargs)
