"""What SimpleRNNCell, LSTMCell and GRUCell share: their arguments, weights, rules and config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from weightwise import activations, arguments, constraints, initializers, regularizers
from weightwise.layers.args import invalid, positive_int
from weightwise.layers.base import Layer, WeightRule
from weightwise.layers.rnn.dropout_cell import DropoutRNNCell

__all__ = ["RecurrentCell"]


class RecurrentCell(Layer, DropoutRNNCell):
    """A cell with a ``kernel`` (inputs), a ``recurrent_kernel`` (state) and an optional ``bias``.

    It owns the arguments the three Keras cells share (``units``, ``activation``,
    ``use_bias``, the three initializers, regularizers and constraints of ``kernel``,
    ``recurrent_kernel`` and ``bias``, ``dropout``, ``recurrent_dropout``, ``seed``) and
    binds the rules to the weights it creates; the six rule attributes stay live after
    build. A subclass sets ``state_size``, creates the weights with :meth:`_add_weights`
    and writes ``call(inputs, states, training)``.

    >>> from weightwise.layers import SimpleRNNCell
    >>> cell = SimpleRNNCell(3, recurrent_regularizer="l2")
    >>> cell.build((None, 2))
    >>> [tuple(w.shape) for w in cell.weights], len(cell.losses)
    ([(2, 3), (3, 3), (3,)], 1)
    """

    kernel_regularizer = WeightRule("kernel", "regularizer")
    recurrent_regularizer = WeightRule("recurrent_kernel", "regularizer")
    bias_regularizer = WeightRule("bias", "regularizer")
    kernel_constraint = WeightRule("kernel", "constraint")
    recurrent_constraint = WeightRule("recurrent_kernel", "constraint")
    bias_constraint = WeightRule("bias", "constraint")

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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not self._dtype.is_floating_point:
            raise invalid(self, "dtype", self.dtype, "a float dtype")
        self.units = positive_int(self, units, "units")
        self.activation = self._resolve("activation", activation, activations.get)
        self.use_bias = arguments.flag(use_bias, "use_bias", owner=self._owner())
        self.kernel_initializer = self._resolve("kernel_initializer", kernel_initializer, initializers.get)
        self.recurrent_initializer = self._resolve("recurrent_initializer", recurrent_initializer, initializers.get)
        self.bias_initializer = self._resolve("bias_initializer", bias_initializer, initializers.get)
        self.kernel_regularizer = kernel_regularizer
        self.recurrent_regularizer = recurrent_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel_constraint = kernel_constraint
        self.recurrent_constraint = recurrent_constraint
        self.bias_constraint = bias_constraint
        # Keras clips rates into [0, 1] silently; its docs promise a float in [0, 1], so others are refused.
        self.dropout = arguments.real(dropout, "dropout", low=0, high=1, keep_int=False, owner=self._owner())
        self.recurrent_dropout = arguments.real(
            recurrent_dropout, "recurrent_dropout", low=0, high=1, owner=self._owner())
        if seed is not None and not (arguments.is_int(seed) and seed >= 0):
            raise invalid(self, "seed", seed, "a non-negative int or None")
        self.seed = None if seed is None else int(seed)
        self.output_size = self.units

    def _owner(self) -> str:
        return f"{type(self).__name__} layer {self.name!r}"

    def _add_weights(self, input_dim: int, gates: int, bias_shape: Sequence[int],
                     bias_initializer: Callable[..., Any] | None = None) -> None:
        """Create ``kernel (input_dim, gates*units)``, ``recurrent_kernel (units, gates*units)`` and the bias."""
        self.kernel = self.add_weight("kernel", (input_dim, gates * self.units), self.kernel_initializer,
                                      self.kernel_regularizer, self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", (self.units, gates * self.units), self.recurrent_initializer,
            self.recurrent_regularizer, self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", tuple(bias_shape), bias_initializer or self.bias_initializer,
                                        self.bias_regularizer, self.bias_constraint)
        else:
            self.bias = None

    def _input_dim(self, input_shape: Sequence[int | None]) -> int:
        input_dim = tuple(input_shape)[-1] if input_shape else None
        if input_dim is None:
            raise ValueError(f"{self._owner()}: the last dimension of the step inputs must be known. "
                             f"Received: input_shape={input_shape}")
        return int(input_dim)

    def _step_inputs(self, inputs: torch.Tensor, training: bool, recurrent: bool, gates: int) -> list[torch.Tensor]:
        """``inputs`` once per gate, each times its dropout mask when training with a rate in (0, 1)."""
        rate = self.recurrent_dropout if recurrent else self.dropout
        if not (training and 0.0 < rate < 1.0):
            return [inputs] * gates
        mask = self.get_recurrent_dropout_mask(inputs) if recurrent else self.get_dropout_mask(inputs)
        masks = mask if isinstance(mask, list) else [mask] * gates
        return [inputs * m for m in masks]

    def get_initial_state(self, batch_size: int | None = None) -> list[torch.Tensor]:
        """Zero states, one ``(batch_size, size)`` tensor per entry of ``state_size``."""
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        device = self.kernel.device if isinstance(self._parameters.get("kernel"), torch.Tensor) else None
        return [torch.zeros((batch_size, size), dtype=self._dtype, device=device) for size in sizes]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
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
