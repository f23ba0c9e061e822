"""GroupNormalization: each example normalized over groups of channels, as Keras."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from weightwise import arguments
from weightwise.layers.args import invalid, is_int
from weightwise.layers.base import InputSpec
from weightwise.layers.normalization import GammaBetaLayer, moments, scale_and_shift

__all__ = ["GroupNormalization"]


class GroupNormalization(GammaBetaLayer):
    """Normalizes each example over groups of channels: the ``axis`` channels split into ``groups``.

    Each group's mean and biased variance are taken over its channels and every other non-batch
    axis; then ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` per channel. ``groups=-1``
    (instance normalization) becomes one group per channel at build, as in Keras; the channels
    must be a multiple of ``groups``.

    >>> from weightwise import ops
    >>> layer = GroupNormalization(groups=2, epsilon=0.0)
    >>> layer(ops.convert_to_tensor([[1.0, 3.0, 0.0, 4.0]])).tolist()
    [[-1.0, 1.0, -1.0, 1.0]]
    """

    def __init__(
        self,
        groups: int = 32,
        axis: int = -1,
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
        if not is_int(groups) or (groups <= 0 and groups != -1):
            raise ValueError(
                "Received an invalid value for argument `groups`, expected a positive integer (or `-1` for "
                f"instance normalization). Received: groups={arguments.echo(groups)}")
        super().__init__(center=center, scale=scale, beta_initializer=beta_initializer,
                         gamma_initializer=gamma_initializer, beta_regularizer=beta_regularizer,
                         gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                         gamma_constraint=gamma_constraint, **kwargs)
        if not is_int(axis):
            raise invalid(self, "axis", axis, "an int")
        # Keras's GroupNormalization leaves its inputs uncast: it normalizes in float32 at least (in
        # float32 for float32 inputs under a mixed policy) and casts only the outputs to the compute dtype.
        self.autocast = False
        self.groups = int(groups)
        self.axis = int(axis)
        self.epsilon = arguments.real(epsilon, "epsilon", low=0, owner=self._owner())

    def build(self, input_shape: Sequence[int | None]) -> None:
        (axis,) = self._check_axes(input_shape, [self.axis])
        if input_shape[axis] is None:
            raise ValueError(
                f"Axis {self.axis} of input tensor should have a defined dimension but the layer received an input "
                f"with shape {tuple(input_shape)}.")
        channels = input_shape[axis]
        groups = channels if self.groups == -1 else self.groups
        if channels < groups:
            raise ValueError(f"Number of groups ({groups}) cannot be more than the number of channels ({channels}).")
        if channels % groups != 0:
            raise ValueError(f"Number of groups ({groups}) must be a multiple of the number of channels ({channels}).")
        self._add_gamma_beta((channels,), self.scale, self.center)
        self.groups = groups
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: channels})

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(torch.promote_types(inputs.dtype, torch.float32))
        axis = self.axis % inputs.dim()
        channels = inputs.shape[axis]
        # (batch, ..., groups, channels // groups, ...): statistics over all but the batch and group axes.
        grouped_shape = [*inputs.shape[:axis], self.groups, channels // self.groups, *inputs.shape[axis + 1:]]
        grouped = inputs.reshape(grouped_shape)
        weight_shape = [1] * len(grouped_shape)
        weight_shape[axis], weight_shape[axis + 1] = self.groups, channels // self.groups
        gamma = None if self.gamma is None else self.gamma.to(inputs.dtype).reshape(weight_shape)
        beta = None if self.beta is None else self.beta.to(inputs.dtype).reshape(weight_shape)
        mean, variance = moments(grouped, [i for i in range(1, grouped.dim()) if i != axis])
        outputs = scale_and_shift(grouped, mean, variance, self.epsilon, gamma, beta)
        return outputs.reshape(inputs.shape).to(self._dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            **self._gamma_beta_config(),
        }
