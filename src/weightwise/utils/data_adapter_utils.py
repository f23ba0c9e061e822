"""Packing and unpacking a batch as ``x``, ``(x, y)`` or ``(x, y, sample_weight)``.

>>> unpack_x_y_sample_weight(pack_x_y_sample_weight([1, 2], [3]))
([1, 2], [3], None)
"""

from __future__ import annotations

from typing import Any

__all__ = ["pack_x_y_sample_weight", "unpack_x_y_sample_weight"]


def unpack_x_y_sample_weight(data: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` from a batch, with ``None`` for the parts it lacks.

    A tuple or list of 1 to 3 items is ``x``, ``(x, y)`` or ``(x, y, sample_weight)``;
    anything else (an array, a dict) is ``x`` alone. A tuple or list of another length
    is a ``ValueError``.

    >>> unpack_x_y_sample_weight(("features", "labels"))
    ('features', 'labels', None)
    >>> unpack_x_y_sample_weight({"a": 1})
    ({'a': 1}, None, None)
    """
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if not 1 <= len(data) <= 3:
        raise ValueError(
            "Invalid value for argument `data`: expected `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`. "
            f"Received a {type(data).__name__} of length {len(data)}"
        )
    x, y, sample_weight = data + (None,) * (3 - len(data))
    return x, y, sample_weight


def pack_x_y_sample_weight(x: Any, y: Any = None, sample_weight: Any = None) -> Any:
    """The batch a ``PyDataset`` or a generator returns for these parts (the inverse of unpacking).

    ``x`` alone is returned as it is, unless it is a tuple or list (then ``(x,)``, so
    that it is not read as ``(x, y)``); otherwise ``(x, y)`` or ``(x, y, sample_weight)``.

    >>> pack_x_y_sample_weight("x"), pack_x_y_sample_weight(["a", "b"]), pack_x_y_sample_weight("x", "y")
    ('x', (['a', 'b'],), ('x', 'y'))
    """
    if y is None:
        return (x,) if isinstance(x, (tuple, list)) else x
    if sample_weight is None:
        return x, y
    return x, y, sample_weight
