"""Activation layers: ReLU, LeakyReLU, ELU, Softmax and PReLU (the one with a weight, ``alpha``)."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import activations, arguments, constraints, initializers, regularizers
from weightwise.layers.args import is_int
from weightwise.layers.base import InputSpec, Layer, WeightRule

__all__ = ["ELU", "LeakyReLU", "PReLU", "ReLU", "Softmax"]


def _number(value: Any, name: str, message: str, allow_none: bool = False, allow_inf: bool = False) -> Any:
    """``value`` if it is a real number ``>= 0`` (an int stays an int, as Keras keeps what it is given);
    otherwise a ``ValueError``: ``message`` (Keras's words), then the value received."""
    if value is None and allow_none:
        return None
    try:
        arguments.real(value, name, low=0, allow_inf=allow_inf)
    except ValueError:
        raise ValueError(f"{message} Received: {name}={arguments.echo(value)}") from None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


class _Stateless(Layer):
    """A weightless activation layer: it passes masks on, is built at construction and keeps shapes."""

    def _finish_init(self) -> None:
        self.supports_masking = True
        self._build_at_init()

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class ReLU(_Stateless):
    """Rectified linear unit: ``min(x, max_value)`` above ``threshold``, ``negative_slope * (x - threshold)``
    below it (``max(x, 0)`` with the defaults).

    >>> from weightwise import ops
    >>> ReLU(max_value=2.0, negative_slope=0.5)(ops.convert_to_tensor([-2.0, 1.0, 5.0])).tolist()
    [-1.0, 1.0, 2.0]
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_value = _number(max_value, "max_value", "max_value of a ReLU layer cannot be a negative value.",
                                 allow_none=True, allow_inf=True)
        self.negative_slope = _number(negative_slope, "negative_slope",
                                      "negative_slope of a ReLU layer cannot be None or a negative value.")
        self.threshold = _number(threshold, "threshold", "threshold of a ReLU layer cannot be None or a negative value.")
        self._finish_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return activations.relu(inputs, negative_slope=self.negative_slope, max_value=self.max_value,
                                threshold=self.threshold)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(_Stateless):
    """Leaky rectified linear unit: ``x`` for ``x >= 0``, ``negative_slope * x`` otherwise.

    Keras's deprecated ``alpha`` argument is accepted in place of ``negative_slope``, with a warning.

    >>> from weightwise import ops
    >>> LeakyReLU(negative_slope=0.5)(ops.convert_to_tensor([-2.0, 3.0])).tolist()
    [-1.0, 3.0]
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = _number(
            negative_slope, "negative_slope",
            "The negative_slope value of a Leaky ReLU layer cannot be None or negative value. Expected a float.")
        self._finish_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return activations.leaky_relu(inputs, negative_slope=self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_Stateless):
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    >>> from weightwise import ops
    >>> ELU(alpha=2.0)(ops.convert_to_tensor([0.0, 1.0])).tolist()
    [0.0, 1.0]
    """

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = arguments.real(alpha, "alpha", keep_int=True, owner=f"ELU layer {self.name!r}")
        self._finish_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return activations.elu(inputs, alpha=self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(_Stateless):
    """Softmax over ``axis`` (an int, or a list of ints normalized jointly).

    With a ``mask`` (broadcastable to the inputs; non-bool masks count where above 0.5), masked
    entries enter the softmax as a large negative number (``-1e9``; ``-3e4`` in float16) and come
    out as exactly 0, so a fully masked row gives zeros, as in Keras.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[1.0, 1.0, 5.0]])
    >>> Softmax()(x, mask=ops.convert_to_tensor([[True, True, False]])).tolist()
    [[0.5, 0.5, 0.0]]
    """

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (is_int(axis) or (isinstance(axis, (list, tuple)) and axis and all(is_int(a) for a in axis))):
            raise arguments.invalid("axis", "an int or a non-empty list of ints", axis, owner=f"Softmax layer {self.name!r}")
        self.axis = axis
        self._finish_init()

    def call(self, inputs: torch.Tensor, mask: Any = None) -> torch.Tensor:
        if mask is not None:
            mask = self._mask(mask, inputs)
            large_negative = -3e4 if inputs.dtype == torch.float16 else -1e9
            inputs = torch.where(mask, inputs, torch.tensor(large_negative, dtype=inputs.dtype, device=inputs.device))
        axis = self.axis
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else tuple(axis)
        outputs = activations.softmax(inputs, axis=axis)
        if mask is not None:
            outputs = torch.where(mask, outputs, torch.zeros((), dtype=outputs.dtype, device=outputs.device))
        return outputs

    def _mask(self, mask: Any, inputs: torch.Tensor) -> torch.Tensor:
        """``mask`` as a bool tensor broadcastable to ``inputs`` (Keras's checks and messages)."""
        mask = torch.as_tensor(mask, device=inputs.device)
        if mask.dim() > inputs.dim():
            raise ValueError(
                "The `mask` must be broadcastable to `inputs` and must not have more dimensions. "
                f"Received: inputs.shape={tuple(inputs.shape)}, mask.shape={tuple(mask.shape)}")
        if any(m not in (1, i) for m, i in zip(reversed(mask.shape), reversed(inputs.shape))):
            raise ValueError(
                "The `mask` must be broadcastable to `inputs`. Each mask dimension must be 1 or match the "
                f"corresponding input dimension. Received: inputs.shape={tuple(inputs.shape)}, "
                f"mask.shape={tuple(mask.shape)}")
        return mask if mask.dtype == torch.bool else mask > 0.5

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """Parametric ReLU: ``x`` for ``x >= 0``, ``alpha * x`` otherwise, with a learned ``alpha``.

    ``alpha`` has the input's shape without the batch axis, with size 1 along each of
    ``shared_axes`` (axes counted with the batch axis as 0; e.g. ``[1, 2]`` shares one alpha
    per channel over the image of a channels-last ``Conv2D``).

    >>> from weightwise import ops
    >>> layer = PReLU(alpha_initializer="ones", shared_axes=[1])
    >>> out = layer(ops.convert_to_tensor([[[-2.0, 3.0], [1.0, -1.0]]]))
    >>> tuple(layer.alpha.shape), out.tolist()
    ((1, 2), [[[-2.0, 3.0], [1.0, -1.0]]])
    """

    alpha_regularizer = WeightRule("alpha", "regularizer")
    alpha_constraint = WeightRule("alpha", "constraint")

    def __init__(
        self,
        alpha_initializer: Any = "Zeros",
        alpha_regularizer: Any = None,
        alpha_constraint: Any = None,
        shared_axes: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"PReLU layer {self.name!r}"
        if not self._dtype.is_floating_point:
            raise arguments.invalid("dtype", "a float dtype", self.dtype, owner=owner)
        if shared_axes is not None:
            shared_axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(is_int(axis) and axis >= 1 for axis in shared_axes):
                # Keras counts from the batch axis (0); a negative axis would pick the wrong one there.
                raise arguments.invalid("shared_axes", "None, or ints >= 1 (axis 0 is the batch)", shared_axes,
                                        owner=owner)
            shared_axes = [int(axis) for axis in shared_axes]
        self.supports_masking = True
        self.alpha_initializer = self._resolve("alpha_initializer", alpha_initializer, initializers.get)
        self.alpha_regularizer = alpha_regularizer
        self.alpha_constraint = alpha_constraint
        self.shared_axes = shared_axes

    def build(self, input_shape: Sequence[int | None]) -> None:
        shared = set(self.shared_axes or ())
        if any(axis >= len(input_shape) for axis in shared):
            raise arguments.invalid("shared_axes", f"axes below the input rank {len(input_shape)}", self.shared_axes,
                                    owner=f"PReLU layer {self.name!r}")
        shape = tuple(1 if axis in shared else input_shape[axis] for axis in range(1, len(input_shape)))
        if None in shape:
            raise ValueError(
                f"PReLU layer {self.name!r}: every input axis but the batch and the shared ones must have a known "
                f"size. Received: input_shape={tuple(input_shape)}, shared_axes={self.shared_axes}")
        self.alpha = self.add_weight("alpha", shape, self.alpha_initializer, self.alpha_regularizer,
                                     self.alpha_constraint)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={
            axis: input_shape[axis] for axis in range(1, len(input_shape)) if axis not in shared})

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(inputs) - self.alpha * torch.relu(-inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        }
