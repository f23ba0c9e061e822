"""Argument checks shared by the layers, and the padding arithmetic of conv and pooling layers.

Every check raises a ``ValueError`` that names the layer, the argument and the value: the
message form of :mod:`weightwise.arguments`, after the layer's class and name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import torch
import torch.nn.functional as F

from weightwise import arguments, backend
from weightwise.arguments import is_int

if TYPE_CHECKING:
    from weightwise.layers.base import Layer

IntOrTuple = Union[int, Sequence[int]]

# Sizes index torch tensors, whose sizes and element counts are int64.
MAX_SIZE = arguments.INT64_MAX


def _owner(layer: Layer) -> str:
    return f"{type(layer).__name__} layer {layer.name!r}"


def invalid(layer: Layer, argument: str, value: Any, expected: str) -> Exception:
    """The ``ValueError`` for a bad ``value`` of the layer's ``argument`` (for the caller to raise)."""
    return arguments.invalid(argument, expected, value, owner=_owner(layer))


def positive_int(layer: Layer, value: Any, argument: str) -> int:
    """``value`` as a Python int if it is a positive int (not a bool) that fits a tensor size.

    The message says "a positive integer", the words Keras's own tests look for.
    """
    if not is_int(value) or not 0 < value <= MAX_SIZE:
        raise invalid(layer, argument, value, f"a positive integer (at most {MAX_SIZE})")
    return int(value)


def standardize_tuple(layer: Layer, value: Any, rank: int, argument: str, allow_zero: bool = False) -> tuple[int, ...]:
    """``value`` (an int or ``rank`` ints, a list after JSON) as a tuple of ``rank`` positive ints
    (ints ``>= 0`` with ``allow_zero``, as for ``output_padding``).

    The message is Keras's, after the layer's name: ``The `strides` argument must be a tuple
    of 2 integers. Received strides=(1, 0), including values {0} that do not satisfy `value > 0`.``
    """
    values = (value,) * rank if is_int(value) else value
    if isinstance(values, (tuple, list)) and len(values) == rank and all(is_int(v) for v in values):
        least = 0 if allow_zero else 1
        bad = {int(v) for v in values if not least <= v <= MAX_SIZE}
        if not bad:
            return tuple(int(v) for v in values)
        detail = f", including values {bad} that do not satisfy `value {'>=' if allow_zero else '>'} 0`" \
            if min(bad) < least else f", including values {bad} beyond {MAX_SIZE}"
    else:
        detail = ""
    raise ValueError(f"{_owner(layer)}: The `{argument}` argument must be a tuple of {rank} integers. "
                     f"Received {argument}={arguments.echo(value)}{detail}.")


def standardize_shape(value: Any, argument: str, owner: str = "", allow_none: bool = True) -> tuple[int | None, ...]:
    """``value`` as a shape: a tuple of ints ``>= 0`` (and ``None`` for an unknown size, where allowed).

    A ``ValueError`` naming ``argument`` (after ``owner``, such as ``"Dense layer 'dense'"``)
    refuses anything else: a str, nesting, floats, bools, negative sizes, and sizes or
    element counts beyond torch's int64.

    >>> standardize_shape([None, 3], "shape")
    (None, 3)
    >>> standardize_shape((2.5,), "shape")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `shape`: expected a tuple of ints >= 0 or None. Received: shape=(2.5,)
    """
    entries = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else None
    valid = entries is not None and all(
        (d is None and allow_none) or (is_int(d) and 0 <= d <= MAX_SIZE) for d in entries
    )
    if valid and math.prod(int(d) for d in entries if d is not None) <= MAX_SIZE:
        return tuple(None if d is None else int(d) for d in entries)
    expected = "a tuple of ints >= 0 or None" if allow_none else "a tuple of ints >= 0"
    if valid:
        expected += f" whose product is at most {MAX_SIZE}"
    raise arguments.invalid(argument, expected, value, owner=owner)


def standardize_data_format(layer: Layer, data_format: Any) -> str:
    """The layer's ``data_format``: ``None`` takes :func:`weightwise.backend.image_data_format` now, at
    construction, as Keras does; a name is lower-cased (``'Channels_First'`` works, as in Keras)."""
    if data_format is None:
        return backend.image_data_format()
    if not isinstance(data_format, str) or data_format.lower() not in ("channels_last", "channels_first"):
        raise invalid(layer, "data_format", data_format, "one of {'channels_last', 'channels_first'}")
    return data_format.lower()


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


def transpose_padding(
    kernel: int, stride: int, dilation: int, padding: str, output_padding: int | None
) -> tuple[int, int]:
    """Keras's transposed-convolution padding of one axis, relative to torch's unpadded output.

    torch's ``conv_transpose`` without padding gives ``(size - 1) * stride + effective_kernel``
    values; Keras's output is that, padded by ``(before, after)`` (negative: cropped).
    ``"valid"`` gives ``(size - 1) * stride + effective_kernel + output_padding`` (with
    ``output_padding`` ``max(effective_kernel, stride) - effective_kernel`` when ``None``);
    ``"same"`` gives ``size * stride`` (``output_padding=None``) or
    ``(size - 1) * stride + effective_kernel % 2 + output_padding``.

    >>> transpose_padding(3, 2, 1, "same", None), transpose_padding(3, 2, 1, "valid", 1)
    ((0, -1), (0, 1))
    """
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        return 0, extra
    total = stride + effective - 2 if output_padding is None else effective + effective % 2 - 2 + output_padding
    before = min(total // 2 + total % 2, effective - 1)
    return before - (effective - 1), total - before - (effective - 1)


def pad_spatial(inputs: torch.Tensor, pads: Sequence[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of a channels-first tensor by ``pads`` (one ``(before, after)`` per axis)."""
    flat = [p for pad in reversed(pads) for p in pad]
    return F.pad(inputs, flat, value=value) if any(flat) else inputs
