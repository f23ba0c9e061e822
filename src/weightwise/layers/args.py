"""Argument checks shared by the layers, and the padding arithmetic of conv and pooling layers.

Every check raises a ``ValueError`` that names the layer, the argument and the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import torch
import torch.nn.functional as F

from weightwise.layers.base import Layer

IntOrTuple = Union[int, Sequence[int]]


def invalid(layer: Layer, argument: str, value: Any, expected: str) -> ValueError:
    return ValueError(
        f"{type(layer).__name__} layer {layer.name!r}: invalid value for argument `{argument}`: "
        f"expected {expected}. Received: {argument}={value!r}"
    )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(layer: Layer, value: Any, argument: str) -> int:
    """``value`` if it is a positive int (not a bool)."""
    if not is_int(value) or value <= 0:
        raise invalid(layer, argument, value, "a positive int")
    return value


def standardize_tuple(layer: Layer, value: Any, rank: int, argument: str) -> tuple[int, ...]:
    """``value`` (an int or ``rank`` ints, a list after JSON) as a tuple of ``rank`` positive ints."""
    values = (value,) * rank if is_int(value) else value
    if not isinstance(values, (tuple, list)) or len(values) != rank or not all(is_int(v) and v > 0 for v in values):
        raise invalid(layer, argument, value, f"a positive int or a tuple of {rank} positive ints")
    return tuple(values)


def standardize_data_format(layer: Layer, data_format: Any) -> str:
    """``None`` is Keras's default, ``'channels_last'``."""
    data_format = "channels_last" if data_format is None else data_format
    if data_format not in ("channels_last", "channels_first"):
        raise invalid(layer, "data_format", data_format, "one of {'channels_last', 'channels_first'}")
    return data_format


def standardize_padding(layer: Layer, padding: Any, allow_causal: bool = False) -> str:
    """The padding mode, lower-cased as Keras does; ``'causal'`` only where allowed."""
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise invalid(layer, "padding", padding, "one of {" + ", ".join(repr(a) for a in allowed) + "}")
    return padding.lower()


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow ``"same"`` padding of one axis: ``(before, after)``, the odd one after.

    >>> same_padding(5, 2, 1), same_padding(6, 3, 2), same_padding(7, 3, 1, dilation=2)
    ((0, 1), (0, 1), (2, 2))
    """
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def output_length(size: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    """Length of one output axis (``"same"`` and ``"causal"`` give ``ceil(size / stride)``)."""
    if padding in ("same", "causal"):
        return math.ceil(size / stride)
    return (size - ((kernel - 1) * dilation + 1)) // stride + 1


def pad_spatial(inputs: torch.Tensor, pads: Sequence[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of a channels-first tensor by ``pads`` (one ``(before, after)`` per axis)."""
    flat = [p for pad in reversed(pads) for p in pad]
    return F.pad(inputs, flat, value=value) if any(flat) else inputs
