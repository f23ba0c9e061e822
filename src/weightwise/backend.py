"""The few global numeric settings: the fuzz factor ``epsilon`` and the default float type.

Everything else in weightwise is stateless; these two mirror ``keras.config``.
"""

from __future__ import annotations

import numbers

import torch

from weightwise.arguments import invalid, real

__all__ = ["compute_dtype", "epsilon", "set_epsilon", "floatx", "set_floatx", "standardize_dtype"]

_FLOAT_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}

_EPSILON = 1e-7
_FLOATX = "float32"


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
