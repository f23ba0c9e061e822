"""Layers that only rearrange their input: Flatten, Reshape, Permute and RepeatVector."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from weightwise.layers.args import MAX_SIZE, is_int, standardize_data_format
from weightwise.layers.base import InputSpec, Layer

__all__ = ["Flatten", "Permute", "RepeatVector", "Reshape"]


class StatelessLayer(Layer):
    """A layer without weights that Keras leaves unbuilt until its first call or ``build`` (Permute,
    RepeatVector, the padding, cropping and up-sampling layers, Rescaling): ``build`` only marks it built, as
    Keras's default ``build`` does."""

    def build(self, input_shape: Any) -> None:
        """Create nothing: the layer has no weights."""


class Flatten(StatelessLayer):
    """Flattens every axis but the batch axis: ``(batch, d1, ..., dn) -> (batch, d1 * ... * dn)``.

    With ``data_format="channels_first"`` the channels axis is moved last before
    flattening, as Keras does, so a Dense layer after it sees the same feature order
    in both formats. An input of rank 1 becomes ``(batch, 1)``; a scalar, with no batch
    axis, is refused, as in Keras.

    >>> from weightwise import ops
    >>> Flatten()(ops.ones((2, 3, 4))).shape
    torch.Size([2, 12])
    >>> Flatten()(ops.ones((0, 3, 4))).shape
    torch.Size([0, 12])
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        data_format = standardize_data_format(self, data_format)
        self.data_format = data_format
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_first" and inputs.dim() > 2:
            inputs = inputs.movedim(1, -1)
        # The size is spelled out: torch cannot infer a -1 next to an empty batch.
        return inputs.reshape(inputs.shape[0], math.prod(inputs.shape[1:]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshapes the non-batch axes to ``target_shape``: ints ``>= 0``, and at most one ``-1``.

    The ``-1`` is inferred from the size of one sample, so it is known even for an
    empty batch, as in Keras. A ``target_shape`` with both a ``0`` and a ``-1`` is
    refused: with no values per sample, the ``-1`` could be any size.

    >>> from weightwise import ops
    >>> Reshape((2, 3))(ops.ones((4, 6))).shape
    torch.Size([4, 2, 3])
    >>> Reshape((-1, 3))(ops.ones((0, 6))).shape
    torch.Size([0, 2, 3])
    """

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = tuple(target_shape) if isinstance(target_shape, (tuple, list, torch.Size)) else None
        # Keras's messages, then ours for what Keras lets through.
        if target is None or not all(is_int(d) and -1 <= d <= MAX_SIZE for d in target):
            raise ValueError("Each dimension in `target_shape` must be a non-negative integer, or `-1` for a single "
                             f"unknown dimension. Received: target_shape={target if target is not None else repr(target_shape)}.")
        if target.count(-1) > 1:
            raise ValueError(f"There must be at most one unknown dimension (-1) in `target_shape`. "
                             f"Received: target_shape={target}.")
        if (-1 in target and 0 in target) or math.prod(target) > MAX_SIZE:
            raise ValueError(
                "Invalid value for argument `target_shape`: expected a tuple of ints >= 0 with at most one -1 "
                f"(and no -1 beside a 0), of at most {MAX_SIZE} values. Received: target_shape={target}"
            )
        self.target_shape = tuple(int(d) for d in target)
        self.input_spec = InputSpec(min_ndim=1)
        self._build_at_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        size = math.prod(inputs.shape[1:])
        # A list, not a generator: torch.compile cannot pass a generator to math.prod.
        known = math.prod([d for d in self.target_shape if d != -1])
        if (-1 in self.target_shape and size % known) or (-1 not in self.target_shape and size != known):
            raise ValueError(
                f"Reshape layer {self.name!r}: cannot reshape an input of shape {tuple(inputs.shape)} "
                f"({size} values per sample) to target_shape={self.target_shape}."
            )
        target = tuple(size // known if d == -1 else d for d in self.target_shape)
        return inputs.reshape(inputs.shape[0], *target)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(StatelessLayer):
    """Reorders the non-batch axes: output axis ``i`` is input axis ``dims[i - 1]`` (numbered from 1).

    ``dims`` is a permutation of ``1..n`` for inputs of rank ``n + 1``; the batch axis stays first.

    >>> from weightwise import ops
    >>> Permute((2, 1))(ops.ones((4, 10, 64))).shape
    torch.Size([4, 64, 10])
    >>> Permute((2, 1)).compute_output_shape((None, 10, 64))
    (None, 64, 10)
    """

    def __init__(self, dims: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(dims, (tuple, list, torch.Size)):
            raise TypeError(f"Invalid permutation argument `dims` for Permute layer: expected a tuple of ints. "
                            f"Received: dims={dims!r}")
        if not all(is_int(d) for d in dims) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError("Invalid permutation argument `dims` for Permute layer. The set of indices in `dims` "
                             f"must be consecutive and start from 1. Received: dims={tuple(dims)!r}")
        self.dims = tuple(int(d) for d in dims)
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.permute(0, *self.dims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims}


def positive_count(value: Any, argument: str) -> int:
    """``value`` as a positive Python int, with Keras's errors: a ``TypeError`` for anything but an int
    (bools included), a ``ValueError`` for an int below 1."""
    if not is_int(value):
        raise TypeError(f"Expected an integer value for `{argument}`, got {type(value)}. "
                        f"Received: {argument}={value!r}")
    if not 0 < value <= MAX_SIZE:
        raise ValueError(f"Argument `{argument}` should be a positive integer (at most {MAX_SIZE}). "
                         f"Received: {argument}={value}")
    return int(value)


class RepeatVector(StatelessLayer):
    """Repeats each ``(batch, features)`` input ``n`` times: the output is ``(batch, n, features)``.

    >>> from weightwise import ops
    >>> RepeatVector(3)(ops.convert_to_tensor([[1.0, 2.0]])).tolist()
    [[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]]
    """

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = positive_count(n, "n")
        self.input_spec = InputSpec(ndim=2)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (input_shape[0], self.n, input_shape[1])

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.unsqueeze(1).repeat(1, self.n, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}
