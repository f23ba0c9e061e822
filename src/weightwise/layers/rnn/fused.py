"""torch's fused RNN kernels (cuDNN on GPU) for SimpleRNN, LSTM and GRU, on Keras-layout weights.

A layer takes this path when its configuration computes exactly what the step loop would:
Keras's default activations (tanh and sigmoid; tanh or relu for SimpleRNN), no recurrent
dropout while training, no per-gate dropout masks, GRU with ``reset_after=True``, an
unmodified cell class, and a mask (if any) whose kept steps form one run in each row:
right padding (``pad_sequences(padding="post")``), left padding (its default, ``"pre"``),
or both. Such a mask is handled by packing, with Keras's outputs at the masked steps.
Any other configuration (a mask with holes, for one) runs the step loop. The kernels receive views of the Keras weights
(transposed and, for GRU, with the gate blocks reordered from Keras's z, r, h to torch's
r, z, n), so gradients flow back to ``kernel``, ``recurrent_kernel`` and ``bias``, where the
rules are bound.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

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
    return mask is None or _block(mask) is not None


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


def _block(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(start, length)`` per row if each row's kept steps form one run (right or left padding), else ``None``."""
    length = mask.sum(dim=1)
    start = torch.where(length > 0, mask.to(torch.int8).argmax(dim=1), 0)
    steps = torch.arange(mask.shape[1], device=mask.device)
    block = (steps >= start[:, None]) & (steps < (start + length)[:, None])
    return (start, length) if bool((block == mask).all()) else None


def _run_kernel(kernel_name: str, sequences: torch.Tensor, initial_state: list[torch.Tensor],
                params: list[torch.Tensor], has_biases: bool, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """torch's kernel over ``(batch, time, features)``; with ``lengths``, over each row's first ``lengths`` steps.

    Outputs past a row's length are zero; its states are those after its last step.
    """
    run = getattr(torch._VF, kernel_name)
    hidden = [state.unsqueeze(0) for state in initial_state]
    hx = (hidden[0], hidden[1]) if kernel_name == "lstm" else hidden[0]
    train = torch.is_grad_enabled()
    if lengths is None:
        outputs, *states = run(sequences, hx, params, has_biases, 1, 0.0, train, False, True)
        return outputs, [state[0] for state in states]
    packed = pack_padded_sequence(sequences, lengths.cpu(), batch_first=True, enforce_sorted=False)
    order, back = packed.sorted_indices, packed.unsorted_indices
    hx = tuple(h.index_select(1, order) for h in hx) if kernel_name == "lstm" else hx.index_select(1, order)
    data, *states = run(packed.data, packed.batch_sizes, hx, params, has_biases, 1, 0.0, train, False)
    outputs, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes, order, back), batch_first=True,
                                     total_length=sequences.shape[1])
    return outputs, [state[0].index_select(0, back) for state in states]


def _run_masked(kernel_name: str, sequences: torch.Tensor, initial_state: list[torch.Tensor],
                params: list[torch.Tensor], has_biases: bool, mask: torch.Tensor, zero_output_for_mask: bool
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Keras's masked loop on the fused kernel, for masks whose kept steps form one run per row.

    The run is moved to the front, packed, and the outputs put back: steps before the run
    output zeros, steps after it repeat its last output (zeros with ``zero_output_for_mask``),
    and a row with no kept step keeps its initial states.
    """
    start, length = _block(mask)
    steps = torch.arange(mask.shape[1], device=mask.device)
    last = mask.shape[1] - 1
    shifted = sequences.gather(1, (steps + start[:, None]).clamp(max=last)[..., None].expand_as(sequences))
    outputs, states = _run_kernel(kernel_name, shifted, initial_state, params, has_biases, length.clamp(min=1))
    relative = (steps - start[:, None]).clamp(min=0).minimum((length - 1).clamp(min=0)[:, None])
    placed = outputs.gather(1, relative[..., None].expand(-1, -1, outputs.shape[-1]))
    after = (steps >= (start + length)[:, None]) & (length > 0)[:, None]
    keep = mask if zero_output_for_mask else mask | after
    outputs = torch.where(keep[..., None], placed, torch.zeros_like(placed))
    empty = (length == 0)[:, None]
    states = [torch.where(empty, initial, state) for initial, state in zip(initial_state, states)]
    return outputs, states


def run_fused(layer: Any, sequences: torch.Tensor, initial_state: list[torch.Tensor], training: bool,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The layer's ``(last_output, outputs, states)`` from the fused kernel; call only where :func:`fusable`."""
    kernel_name = _kernel_name(layer)
    cell = layer.cell
    # The cells' own rule: LSTM and GRU drop inputs for rates in (0, 1), SimpleRNN for any positive rate.
    drops = cell.dropout > 0 if kernel_name.startswith("rnn") else 0.0 < cell.dropout < 1.0
    if training and drops:
        sequences = sequences * cell.get_dropout_mask(sequences[:, 0]).unsqueeze(1)
    if layer.go_backwards:
        sequences = torch.flip(sequences, dims=[1])
        mask = None if mask is None else torch.flip(mask, dims=[1])
    params, has_biases = _params(layer, kernel_name)
    if mask is None or bool(mask.all()):
        outputs, states = _run_kernel(kernel_name, sequences, initial_state, params, has_biases)
    else:
        outputs, states = _run_masked(kernel_name, sequences, initial_state, params, has_biases, mask,
                                      layer.zero_output_for_mask)
    last_output = outputs[:, -1]
    if not layer.return_sequences:
        outputs = last_output.unsqueeze(1)
    return last_output, outputs, states
