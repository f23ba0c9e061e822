"""Keras's numeric helpers for labels and arrays: one-hot encoding and normalization.

>>> to_categorical([0, 2]).tolist()
[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from weightwise import ops
from weightwise.arguments import count, echo, invalid, is_int, real

__all__ = ["normalize", "to_categorical"]


def _class_indices(x: Any) -> np.ndarray:
    """``x`` as an int64 array of class indices; floats must hold whole numbers."""
    try:
        array = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError):
        raise invalid("x", "an array of class indices (ints)", x, error=TypeError) from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise invalid("x", "an array of class indices (ints)", x, error=TypeError)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array) & (array == np.round(array))):
        # Keras truncates 2.7 to class 2 silently; a fractional label is more likely a mistake.
        raise invalid("x", "whole-number class indices", x)
    if array.size and array.min() < 0:
        raise invalid("x", "class indices >= 0", x)
    return array.astype(np.int64)


def to_categorical(x: Any, num_classes: int | None = None) -> Any:
    """One-hot rows for the class indices in ``x``: class ``k`` becomes ``e_k`` of length ``num_classes``.

    ``num_classes=None`` means ``max(x) + 1``. A trailing axis of size 1 is dropped first
    (labels of shape ``(n, 1)`` give ``(n, num_classes)``); the class axis is last. A torch
    tensor gives a float32 tensor (Keras's torch backend gives int64; its docs and its other
    backends give floats); anything else gives a float64 numpy array, as in Keras.
    Indices must be whole numbers in ``[0, num_classes)``.

    >>> to_categorical([[1], [0]], num_classes=3)
    array([[0., 1., 0.],
           [1., 0., 0.]])
    >>> to_categorical(torch.tensor([1, 0]))
    tensor([[0., 1.],
            [1., 0.]])
    >>> to_categorical([3], num_classes=3)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `x`: expected class indices < num_classes=3. Received: x=[3]
    """
    count(num_classes, "num_classes", low=1, allow_none=True)
    labels = _class_indices(x)
    shape = labels.shape[:-1] if labels.ndim > 1 and labels.shape[-1] == 1 else labels.shape
    flat = labels.reshape(-1)
    if num_classes is None:
        if flat.size == 0:
            raise invalid("num_classes", "an int when `x` holds no labels to count the classes of", num_classes)
        num_classes = int(flat.max()) + 1
    elif flat.size and flat.max() >= num_classes:
        raise invalid("x", f"class indices < num_classes={num_classes}", x)
    one_hot = np.zeros((flat.size, num_classes))
    one_hot[np.arange(flat.size), flat] = 1.0
    one_hot = one_hot.reshape(tuple(shape) + (num_classes,))
    if isinstance(x, torch.Tensor):
        return torch.from_numpy(one_hot).to(device=x.device, dtype=torch.float32)
    return one_hot


def normalize(x: Any, axis: int = -1, order: float = 2) -> Any:
    """``x`` divided by its ``order``-norm along ``axis``; a vector of norm 0 is left as it is.

    A numpy array gives a numpy array, ``x / ||x||`` with numpy's norm (any ``order``
    ``np.linalg.norm`` takes for vectors: a positive number or ``inf``); anything else
    gives a tensor, as ``weightwise.ops.normalize`` (whose ``order`` is an int >= 1).

    >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    >>> normalize(np.array([[3.0, 4.0]]), axis=2)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `axis`: expected an int in [-2, 1] for x of rank 2. Received: axis=2
    """
    if not isinstance(x, np.ndarray):
        return ops.normalize(x, axis=axis, order=order)
    order = real(order, "order", low=0, low_open=True, allow_inf=True)
    if not is_int(axis) or not -x.ndim <= axis < max(x.ndim, 1):
        raise invalid("axis", f"an int in [{-x.ndim}, {x.ndim - 1}] for x of rank {x.ndim}", axis)
    if not (np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)):
        raise TypeError(f"Invalid value for argument `x`: expected real numbers. Received: x={echo(x)}")
    norm = np.linalg.norm(x, ord=order, axis=int(axis), keepdims=True)
    norm[norm == 0] = 1
    return x / norm
