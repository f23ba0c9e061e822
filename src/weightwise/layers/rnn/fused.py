"""torch's fused RNN kernels (cuDNN on GPU) for SimpleRNN, LSTM and GRU, on Keras-layout weights.

A layer takes this path when its configuration computes exactly what the step loop would:
Keras's default activations (tanh and sigmoid; tanh or relu for SimpleRNN), no recurrent
dropout while training, no per-gate dropout masks, GRU with ``reset_after=True``, an
unmodified cell class, and no mask or a mask that keeps every step. Any other
configuration runs the step loop. The kernels receive views of the Keras weights
(transposed and, for GRU, with the gate blocks reordered from Keras's z, r, h to torch's
r, z, n), so gradients flow back to ``kernel``, ``recurrent_kernel`` and ``bias``, where the
rules are bound.
"""

from __future__ import annotations

from typing import Any

import torch

from weightwise import activations

__all__ = ["RELU", "SIGMOID", "TANH", "fusable", "run_fused"]

TANH = (activations.tanh, torch.tanh)
SIGMOID = (activations.sigmoid, torch.sigmoid)
RELU = (activations.relu, torch.relu)


def _kernel_name(layer: Any) -> str | None:
    """The fused kernel of the layer's cell (``"lstm"``, ``"gru"``, ``"rnn_tanh"``, ``"rnn_relu"``), if any.

    A cell of a subclass may compute something else, so only the layer's own cell class qualifies.
    """
    cell = layer.cell
    fused_kernel = getattr(cell, "fused_kernel", None)
    return fused_kernel() if fused_kernel is not None and type(cell) is layer.cell_class else None


def fusable(layer: Any, mask: torch.Tensor | None, training: bool) -> bool:
    """Whether ``layer`` can run on a fused kernel for this call (see the module's docstring).

    >>> from weightwise.layers import GRU, LSTM
    >>> fusable(LSTM(2), None, False), fusable(GRU(2, reset_after=False), None, False)
    (True, False)
    >>> fusable(LSTM(2, recurrent_dropout=0.5), None, True), fusable(LSTM(2, recurrent_dropout=0.5), None, False)
    (False, True)
    """
    cell = layer.cell
    if layer.unroll or _kernel_name(layer) is None:
        return False
    if training and cell.recurrent_dropout > 0:
        return False
    if training and cell.dropout > 0 and getattr(cell, "implementation", 2) == 1:
        return False  # one dropout mask per gate
    return mask is None or bool(mask.all())


def _gru_order(weight: torch.Tensor, units: int) -> torch.Tensor:
    """Keras's GRU gate blocks z, r, h (along the last axis) in torch's order r, z, n."""
    z, r, h = torch.split(weight, units, dim=-1)
    return torch.cat([r, z, h], dim=-1)


def _params(layer: Any, kernel_name: str) -> tuple[list[torch.Tensor], bool]:
    """torch's ``[w_ih, w_hh, b_ih, b_hh]`` as views of the cell's Keras-layout weights."""
    cell = layer.cell
    kernel, recurrent, bias = cell.kernel, cell.recurrent_kernel, cell.bias
    if kernel_name == "gru":
        kernel, recurrent = _gru_order(kernel, cell.units), _gru_order(recurrent, cell.units)
    params = [kernel.T, recurrent.T]
    if bias is None:
        return params, False
    if kernel_name == "gru":
        return [*params, _gru_order(bias[0], cell.units), _gru_order(bias[1], cell.units)], True
    # Keras adds one bias; torch adds two, so the second is zero.
    return [*params, bias, torch.zeros_like(bias)], True


def run_fused(layer: Any, sequences: torch.Tensor, initial_state: list[torch.Tensor], training: bool
              ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The layer's ``(last_output, outputs, states)`` from the fused kernel; call only where :func:`fusable`."""
    kernel_name = _kernel_name(layer)
    cell = layer.cell
    # The cells' own rule: LSTM and GRU drop inputs for rates in (0, 1), SimpleRNN for any positive rate.
    drops = cell.dropout > 0 if kernel_name.startswith("rnn") else 0.0 < cell.dropout < 1.0
    if training and drops:
        sequences = sequences * cell.get_dropout_mask(sequences[:, 0]).unsqueeze(1)
    if layer.go_backwards:
        sequences = torch.flip(sequences, dims=[1])
    params, has_biases = _params(layer, kernel_name)
    run = getattr(torch._VF, kernel_name)
    hidden = [state.unsqueeze(0) for state in initial_state]
    arguments = (has_biases, 1, 0.0, torch.is_grad_enabled(), False, True)
    if kernel_name == "lstm":
        outputs, h, c = run(sequences, (hidden[0], hidden[1]), params, *arguments)
        states = [h[0], c[0]]
    else:
        outputs, h = run(sequences, hidden[0], params, *arguments)
        states = [h[0]]
    last_output = outputs[:, -1]
    if not layer.return_sequences:
        outputs = last_output.unsqueeze(1)
    return last_output, outputs, states
