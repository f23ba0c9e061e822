"""What the normalization layers share: the ``gamma``/``beta`` base class, Keras's moments and masks.

The layers themselves live in :mod:`~weightwise.layers.batch_norm`,
:mod:`~weightwise.layers.layer_norm` and :mod:`~weightwise.layers.group_norm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from weightwise import arguments, constraints, initializers, regularizers
from weightwise.layers.base import Layer, WeightRule

__all__ = ["GammaBetaLayer", "as_mask", "moments", "scale_and_shift"]


def as_mask(layer: Layer, mask: Any, inputs: torch.Tensor) -> torch.Tensor | None:
    """``mask`` (a tensor, array or nested list; any dtype, nonzero meaning kept) as a bool tensor
    on the device of ``inputs``; ``None`` stays ``None``."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        try:
            mask = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(
                f"{type(layer).__name__} layer {layer.name!r}: invalid value for argument `mask`: expected a tensor. "
                f"Received: mask={arguments.echo(mask)}"
            ) from error
    return mask.to(device=inputs.device, dtype=torch.bool)


def moments(inputs: torch.Tensor, axes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over ``axes`` (kept), as Keras's torch backend computes them:
    ``mean(x**2) - mean(x)**2``."""
    mean = inputs.mean(dim=list(axes), keepdim=True)
    return mean, inputs.square().mean(dim=list(axes), keepdim=True) - mean.square()


def scale_and_shift(
    inputs: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor, epsilon: float,
    gamma: torch.Tensor | None, beta: torch.Tensor | None,
) -> torch.Tensor:
    """``inputs * inv + (beta - mean * inv)`` with ``inv = gamma / sqrt(variance + epsilon)``, Keras's
    arrangement for layer and group normalization (all operands broadcast)."""
    inv = torch.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    shift = -mean * inv
    if beta is not None:
        shift = shift + beta
    return inputs * inv + shift


class GammaBetaLayer(Layer):
    """What the normalization layers share: ``center``/``scale`` switches, and the ``gamma`` (scale) and
    ``beta`` (offset) weights with their initializers, regularizers and constraints."""

    beta_regularizer = WeightRule("beta", "regularizer")
    gamma_regularizer = WeightRule("gamma", "regularizer")
    beta_constraint = WeightRule("beta", "constraint")
    gamma_constraint = WeightRule("gamma", "constraint")

    def __init__(
        self,
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
        super().__init__(**kwargs)
        owner = self._owner()
        if not self._dtype.is_floating_point:
            raise arguments.invalid("dtype", "a float dtype", self.dtype, owner=owner)
        self.center = arguments.flag(center, "center", owner=owner)
        self.scale = arguments.flag(scale, "scale", owner=owner)
        self.beta_initializer = self._resolve("beta_initializer", beta_initializer, initializers.get)
        self.gamma_initializer = self._resolve("gamma_initializer", gamma_initializer, initializers.get)
        self.beta_regularizer = beta_regularizer
        self.gamma_regularizer = gamma_regularizer
        self.beta_constraint = beta_constraint
        self.gamma_constraint = gamma_constraint
        self.supports_masking = True
        self.gamma = self.beta = None

    def _owner(self) -> str:
        return f"{type(self).__name__} layer {self.name!r}"

    def _add_gamma_beta(self, shape: tuple[int, ...], scale: bool, center: bool) -> None:
        """Create ``gamma`` and ``beta`` of ``shape`` where used; ``None`` where not (as in Keras).

        Both are read uncast under a mixed policy (``autocast=False``, as Keras creates them): the
        layers normalize in float32 at least and cast only their outputs to the compute dtype.
        """
        for name in ("gamma", "beta"):
            # The None placeholders set at construction make way for the weights.
            self.__dict__.pop(name, None)
        if scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer,
                                         self.gamma_constraint, autocast=False)
        else:
            self.gamma = None
        if center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer,
                                        self.beta_constraint, autocast=False)
        else:
            self.beta = None

    def _check_axes(self, input_shape: Sequence[int | None], axes: Sequence[int]) -> list[int]:
        """``axes`` as non-negative indices of ``input_shape``, or Keras's out-of-bounds error."""
        for axis in axes:
            if not -len(input_shape) <= axis < len(input_shape):
                raise ValueError(
                    f"Axis {axis} is out of bounds for input shape {tuple(input_shape)}. Received: axis={self.axis}")
        return [axis % len(input_shape) for axis in axes]

    def _known_sizes(self, input_shape: Sequence[int | None], axes: Sequence[int]) -> tuple[int, ...]:
        sizes = tuple(input_shape[axis] for axis in axes)
        if None in sizes:
            raise ValueError(
                f"{self._owner()}: the normalized axes {list(axes)} of the inputs must have known sizes. "
                f"Received: input_shape={tuple(input_shape)}")
        return sizes

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        self._check_axes(input_shape, self.axis if isinstance(self.axis, list) else [self.axis])
        return tuple(input_shape)

    def _gamma_beta_config(self) -> dict[str, Any]:
        return {
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
