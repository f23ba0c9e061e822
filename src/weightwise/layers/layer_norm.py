"""LayerNormalization: each example normalized over its own features, as Keras."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from weightwise import arguments
from weightwise.layers.args import invalid, is_int
from weightwise.layers.normalization import GammaBetaLayer, moments, scale_and_shift

__all__ = ["LayerNormalization"]


class LayerNormalization(GammaBetaLayer):
    """Normalizes each example over ``axis`` (an int or a list of ints; the last axis by default).

    ``gamma * (x - mean) / sqrt(var + epsilon) + beta``, with the mean and the biased variance
    taken over the ``axis`` entries of each example; ``gamma`` and ``beta`` have the shape of those
    axes. Training and inference are the same. Keras's deprecated ``rms_scaling=True`` (with a
    warning, as in Keras) divides by ``sqrt(var + epsilon)`` without centering and has no ``beta``.

    Keras's torch backend normalizes the trailing axes when given a single non-last axis (its
    fused-kernel shortcut); here the axes given are the ones normalized, as Keras documents.

    >>> from weightwise import ops
    >>> LayerNormalization(epsilon=0.0)(ops.convert_to_tensor([[1.0, 3.0]])).tolist()
    [[-1.0, 1.0]]
    """

    def __init__(
        self,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        rms_scaling = kwargs.pop("rms_scaling", False)
        super().__init__(center=center, scale=scale, beta_initializer=beta_initializer,
                         gamma_initializer=gamma_initializer, beta_regularizer=beta_regularizer,
                         gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                         gamma_constraint=gamma_constraint, **kwargs)
        owner = self._owner()
        # Keras's LayerNormalization leaves its inputs uncast: float32 inputs are normalized in float32
        # under a mixed policy, and only the outputs are cast to the compute dtype.
        self.autocast = False
        self.rms_scaling = arguments.flag(rms_scaling, "rms_scaling", owner=owner)
        if self.rms_scaling:
            warnings.warn(
                "You passed `rms_scaling=True`, which is deprecated. This argument incorrectly scales the input by "
                "the variance, not the root mean square. To correctly use RMS Normalization, please use "
                "`keras.layers.RMSNormalization` instead.", stacklevel=2)
        if isinstance(axis, (list, tuple)) and axis and all(is_int(a) for a in axis):
            self.axis: int | list[int] = [int(a) for a in axis]
        elif is_int(axis):
            self.axis = int(axis)
        else:
            raise TypeError(
                f"Expected an int or a list/tuple of ints for the argument 'axis', but received: {axis!r}")
        self.epsilon = arguments.real(epsilon, "epsilon", low=0, owner=owner)

    def build(self, input_shape: Sequence[int | None]) -> None:
        # Keras keeps `axis` as a sorted list once built (its config shows the list).
        axes = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        positions = self._check_axes(input_shape, axes)
        if len(set(positions)) != len(positions):
            raise invalid(self, "axis", self.axis, "distinct axes")
        shape = self._known_sizes(input_shape, positions)
        self._add_gamma_beta(shape, self.scale or self.rms_scaling, self.center and not self.rms_scaling)
        self.axis = axes

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(torch.promote_types(inputs.dtype, torch.float32))
        positions = sorted(axis % inputs.dim() for axis in self.axis)
        gamma = None if self.gamma is None else self.gamma.to(inputs.dtype)
        beta = None if self.beta is None else self.beta.to(inputs.dtype)
        trailing = positions == list(range(inputs.dim() - len(positions), inputs.dim()))
        if trailing and not self.rms_scaling:
            # The normalized axes are the last ones: torch's fused kernel, which Keras's torch backend uses too.
            outputs = F.layer_norm(inputs, tuple(inputs.shape[-len(positions):]), gamma, beta, self.epsilon)
            return outputs.to(self._dtype)
        shape = [inputs.shape[i] if i in positions else 1 for i in range(inputs.dim())]
        gamma = None if gamma is None else gamma.reshape(shape)
        beta = None if beta is None else beta.reshape(shape)
        mean, variance = moments(inputs, positions)
        if self.rms_scaling:
            mean = torch.zeros_like(mean)
        return scale_and_shift(inputs, mean, variance, self.epsilon, gamma, beta).to(self._dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            **self._gamma_beta_config(),
            "rms_scaling": self.rms_scaling,
        }
