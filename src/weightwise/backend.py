"""The few global settings Keras keeps: the fuzz factor ``epsilon``, the default float type
and the image data format, plus the name of the backend (always ``"torch"``).

Everything else in weightwise is stateless; these mirror ``keras.config`` and ``keras.backend``.
Unlike Keras, nothing is read from (or written to) ``~/.keras/keras.json``: the settings
start at Keras's defaults and change only through the setters here.
"""

from __future__ import annotations

import gc
import numbers
from typing import Any

import torch

from weightwise.arguments import flag, invalid, real

__all__ = [
    "backend",
    "clear_session",
    "compute_dtype",
    "epsilon",
    "floatx",
    "get_uid",
    "image_data_format",
    "set_epsilon",
    "set_floatx",
    "set_image_data_format",
    "standardize_data_format",
    "standardize_dtype",
    "standardize_shape",
]

_FLOAT_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}

_DATA_FORMATS = ("channels_last", "channels_first")

_UIDS: dict[str, int] = {}
_EPSILON = 1e-7
_FLOATX = "float32"
_IMAGE_DATA_FORMAT = "channels_last"


def backend() -> str:
    """The name of the backend Keras code runs on: always ``"torch"``.

    >>> backend()
    'torch'
    """
    return "torch"


def get_uid(prefix: str = "") -> int:
    """How many times ``prefix`` has been asked for, this call included: 1, then 2, 3, ...

    Layers and functional-graph operations take their automatic names from it (``dense``,
    then ``dense_1``, ...), sharing one count per prefix as in Keras; :func:`clear_session`
    starts every count again.

    >>> get_uid("doc_uid"), get_uid("doc_uid")
    (1, 2)
    """
    if not isinstance(prefix, str):
        raise TypeError(f"Invalid value for argument `prefix`: expected a string. Received: prefix={prefix!r}")
    count = _UIDS.get(prefix, 0) + 1
    _UIDS[prefix] = count
    return count


def clear_session(free_memory: bool = True) -> None:
    """Start automatic names afresh (the next ``Dense`` is ``dense`` again), as Keras's ``clear_session``.

    With ``free_memory`` (the default) Python's garbage collector runs too, so models
    dropped in a loop release their tensors at once. Weights, models and settings such as
    :func:`epsilon` are left alone.

    >>> from weightwise import layers
    >>> _ = [layers.Dense(2) for _ in range(3)]
    >>> clear_session()
    >>> layers.Dense(2).name
    'dense'
    """
    free_memory = flag(free_memory, "free_memory")
    _UIDS.clear()
    if free_memory:
        gc.collect()


def epsilon() -> float:
    """Return the fuzz factor added to denominators (Keras default ``1e-7``).

    >>> epsilon()
    1e-07
    """
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set the fuzz factor returned by :func:`epsilon`.

    The value must be a positive finite number.

    >>> old = epsilon()
    >>> set_epsilon(1e-5)
    >>> epsilon()
    1e-05
    >>> set_epsilon(old)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # A str or None is no number at all: a TypeError, where a number out of range is a ValueError.
        raise invalid("value", "a float", value, error=TypeError)
    global _EPSILON
    _EPSILON = real(value, "value", low=0, low_open=True)


def floatx() -> str:
    """Return the default float type as a string (``'float32'`` unless changed).

    >>> floatx()
    'float32'
    """
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float type: one of ``float16``, ``bfloat16``, ``float32``, ``float64``.

    >>> set_floatx("float64")
    >>> floatx()
    'float64'
    >>> set_floatx("float32")
    """
    if not isinstance(value, str) or value not in _FLOAT_DTYPES:
        raise ValueError(
            f"Invalid value for argument `value`. Expected one of {sorted(_FLOAT_DTYPES)}. Received: value={value!r}"
        )
    global _FLOATX
    _FLOATX = value


def image_data_format() -> str:
    """The default data format of conv and pooling layers: ``'channels_last'`` unless changed.

    >>> image_data_format()
    'channels_last'
    """
    return _IMAGE_DATA_FORMAT


def standardize_data_format(data_format: str | None) -> str:
    """A layer's ``data_format`` argument as it applies: ``None`` means :func:`image_data_format`.

    Otherwise it must be ``'channels_last'`` or ``'channels_first'`` (any letter case, as in
    Keras); anything else is a ``ValueError`` naming ``data_format``.

    >>> standardize_data_format(None), standardize_data_format("Channels_First")
    ('channels_last', 'channels_first')
    >>> standardize_data_format("NHWC")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `data_format`: expected one of ('channels_last', 'channels_first'). Received: data_format='NHWC'
    """
    if data_format is None:
        return _IMAGE_DATA_FORMAT
    if not isinstance(data_format, str) or data_format.lower() not in _DATA_FORMATS:
        raise invalid("data_format", f"one of {_DATA_FORMATS}", data_format)
    return data_format.lower()


def set_image_data_format(data_format: str) -> None:
    """Set the default data format that conv and pooling layers built with ``data_format=None`` use.

    ``data_format`` is ``'channels_last'`` or ``'channels_first'``; layers read it when they are made.

    >>> set_image_data_format("channels_first")
    >>> image_data_format()
    'channels_first'
    >>> set_image_data_format("channels_last")
    """
    if data_format is None:
        # None is the layers' "use the default", not a format the default can be set to.
        raise invalid("data_format", f"one of {_DATA_FORMATS}", data_format)
    global _IMAGE_DATA_FORMAT
    _IMAGE_DATA_FORMAT = standardize_data_format(data_format)


def standardize_dtype(dtype: object = None) -> torch.dtype:
    """Turn a dtype given as a string, numpy dtype or torch dtype into a ``torch.dtype``.

    ``None`` means :func:`floatx`.

    >>> standardize_dtype("float64")
    torch.float64
    >>> standardize_dtype(None)
    torch.float32
    """
    if dtype is None:
        return _FLOAT_DTYPES[_FLOATX]
    if isinstance(dtype, torch.dtype):
        return dtype
    name = getattr(dtype, "name", None) if not isinstance(dtype, str) else dtype
    if name is None and isinstance(dtype, type):
        name = getattr(dtype, "__name__", None)
    if isinstance(name, str):
        name = {"float": "float32", "int": "int32", "bool": "bool"}.get(name, name)
        resolved = getattr(torch, name, None)
        if isinstance(resolved, torch.dtype):
            return resolved
    raise ValueError(f"Invalid value for argument `dtype`: not a known dtype. Received: dtype={dtype!r}")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype penalties and projections of a ``dtype`` tensor are computed in.

    ``float32`` and ``float64`` as they are; half precision widened to ``float32``,
    whose range a sum of squares needs; anything else (integers, bool) :func:`floatx`.

    >>> compute_dtype(torch.float16)
    torch.float32
    >>> compute_dtype(torch.int64)
    torch.float32
    >>> compute_dtype(torch.float64)
    torch.float64
    """
    dtype = standardize_dtype(dtype)
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype if dtype.is_floating_point else standardize_dtype(None)


def rule_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype regularizers and constraints compute in for a ``dtype`` tensor.

    As :func:`compute_dtype`, except that complex stays complex (``complex32`` widened to
    ``complex64``): penalties and norms of complex weights use the magnitude ``|z|``.

    >>> rule_dtype(torch.bfloat16), rule_dtype(torch.complex64), rule_dtype(torch.int8)
    (torch.float32, torch.complex64, torch.float32)
    """
    dtype = standardize_dtype(dtype)
    if dtype.is_complex:
        return torch.complex64 if dtype == torch.complex32 else dtype
    return compute_dtype(dtype)


def standardize_shape(shape: Any) -> tuple[int | None, ...]:
    """``shape`` as a tuple of ints >= 0 and ``None`` for unknown sizes, with Keras's errors.

    A ``torch.Size``, a list or numpy ints become a plain tuple; ``None``, strings, floats and
    negative sizes raise a ``ValueError`` naming the shape.

    >>> standardize_shape(torch.Size([2, 3])), standardize_shape([None, 4])
    ((2, 3), (None, 4))
    >>> standardize_shape((2, -1))
    Traceback (most recent call last):
    ...
    ValueError: Cannot convert '(2, -1)' to a shape. Negative dimensions are not allowed.
    """
    if shape is None:
        raise ValueError("Undefined shapes are not supported.")
    if isinstance(shape, str) or not hasattr(shape, "__iter__"):
        raise ValueError(f"Cannot convert '{shape}' to a shape.")
    dims = tuple(shape)
    out: list[int | None] = []
    for d in dims:
        if d is None or isinstance(d, torch.SymInt):
            out.append(None)
            continue
        if isinstance(d, (str, float, bool)) or not hasattr(d, "__index__"):
            raise ValueError(f"Cannot convert '{shape}' to a shape. Found invalid dimension '{d}' of type '{type(d)}'.")
        if int(d) < 0:
            raise ValueError(f"Cannot convert '{shape}' to a shape. Negative dimensions are not allowed.")
        out.append(int(d))
    return tuple(out)
