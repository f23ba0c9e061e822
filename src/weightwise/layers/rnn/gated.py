"""What LSTMCell and GRUCell share: a recurrent activation, per-gate weight blocks, Keras's implementations."""

from __future__ import annotations

from typing import Any

import torch

from weightwise import activations, arguments
from weightwise.layers.rnn.cell import RecurrentCell

__all__ = ["GatedCell", "check_use_cudnn"]


def check_use_cudnn(value: Any) -> Any:
    """``use_cudnn`` of LSTM and GRU: ``"auto"``, True or False (Keras's message otherwise)."""
    if not any(value is allowed or (isinstance(value, str) and value == allowed) for allowed in ("auto", True, False)):
        raise ValueError("Invalid valid received for argument `use_cudnn`. Expected one of {'auto', True, False}. "
                         f"Received: use_cudnn={value!r}")
    return value


class GatedCell(RecurrentCell):
    """A cell whose kernels hold ``gates`` blocks of ``units`` columns, gated by ``recurrent_activation``.

    ``implementation`` is Keras's: 2 multiplies by the whole kernels at once; 1 (forced by a
    ``recurrent_dropout``) gives each gate its own dropout masks. Both give the same numbers
    without dropout.

    >>> from weightwise.layers import GRUCell
    >>> GRUCell(2, recurrent_dropout=0.5).implementation, GRUCell(2).implementation
    (1, 2)
    """

    gates: int

    def __init__(self, units: int, recurrent_activation: Any = "sigmoid", implementation: int = 2,
                 **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.recurrent_activation = self._resolve("recurrent_activation", recurrent_activation, activations.get)
        # Keras keeps any value (configs of older versions carry 0); only 1 changes the computation.
        if not (arguments.is_int(implementation) and implementation >= 0):
            raise ValueError(f"{self._owner()}: invalid value for argument `implementation`: expected 1 or 2. "
                             f"Received: implementation={implementation!r}")
        self.implementation = 1 if self.recurrent_dropout else int(implementation)
        if self.implementation == 1:
            self.dropout_mask_count = self.gates

    def _gate_matmul(self, inputs: torch.Tensor, weight: torch.Tensor, training: bool, recurrent: bool) -> torch.Tensor:
        """``inputs @ weight``, each gate's block of columns taking the inputs under that gate's dropout mask."""
        parts = self._step_inputs(inputs, training, recurrent, self.gates)
        if all(part is inputs for part in parts):
            return torch.matmul(inputs, weight)
        blocks = torch.split(weight, self.units, dim=-1)
        return torch.cat([torch.matmul(part, block) for part, block in zip(parts, blocks)], dim=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "recurrent_activation": activations.serialize(self.recurrent_activation)}
