"""Layers that only rearrange their input: Flatten and Reshape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from weightwise.layers.args import standardize_data_format
from weightwise.layers.base import Layer

__all__ = ["Flatten", "Reshape"]


class Flatten(Layer):
    """Flattens every axis but the batch axis: ``(batch, d1, ..., dn) -> (batch, d1 * ... * dn)``.

    With ``data_format="channels_first"`` the channels axis is moved last before
    flattening, as Keras does, so a Dense layer after it sees the same feature order
    in both formats.

    >>> from weightwise import ops
    >>> Flatten()(ops.ones((2, 3, 4))).shape
    torch.Size([2, 12])
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        data_format = standardize_data_format(self, data_format)
        self.data_format = data_format

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_first" and inputs.dim() > 2:
            inputs = inputs.movedim(1, -1)
        return inputs.reshape(inputs.shape[0], -1) if inputs.dim() > 1 else inputs.reshape(-1, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshapes the non-batch axes to ``target_shape``; one entry may be ``-1``.

    >>> from weightwise import ops
    >>> Reshape((2, 3))(ops.ones((4, 6))).shape
    torch.Size([4, 2, 3])
    """

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = tuple(target_shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in target) or target.count(-1) > 1:
            raise ValueError(
                "Invalid value for argument `target_shape`: expected positive ints and at most one -1. "
                f"Received: target_shape={target_shape!r}"
            )
        self.target_shape = target

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        size = math.prod(inputs.shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 in self.target_shape and size % known) or (-1 not in self.target_shape and size != known):
            raise ValueError(
                f"Reshape layer {self.name!r}: cannot reshape an input of shape {tuple(inputs.shape)} "
                f"({size} values per sample) to target_shape={self.target_shape}."
            )
        return inputs.reshape(inputs.shape[0], *self.target_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": self.target_shape}
