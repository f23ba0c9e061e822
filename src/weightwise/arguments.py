"""Argument checks: one message form for every bad value.

Every check here refuses a bad value with an error in Keras's form, naming the argument
and echoing what was received::

    Invalid value for argument `name`: expected <what>. Received: name=<value>

Which error: a bad value of a scalar option (a number, a count, a flag) is a
``ValueError``, whether its type or its range is wrong (a str where a number is due, a
float where an int is due, a non-bool flag): Keras raises ``ValueError`` for regularizer
factors that are no numbers, and these checks follow it. A ``TypeError`` is for data no
tensor can be made of (:func:`weightwise.ops.argument_tensor`) and for the arguments whose
contract already says ``TypeError`` (a non-number given to ``backend.set_epsilon``);
:func:`invalid` builds one with ``error=TypeError``.

Bools are never numbers here, and numpy scalars are accepted as the Python numbers they
hold. This module is at the bottom of the package: it imports only the standard library,
numpy and torch, so any module may use it.

>>> real(0.5, "rate", low=0, high=1)
0.5
>>> flag("yes", "shuffle")
Traceback (most recent call last):
...
ValueError: Invalid value for argument `shuffle`: expected a bool (True or False). Received: shuffle='yes'
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["INT64_MAX", "count", "echo", "finite_float", "flag", "invalid", "is_int", "real"]

# The largest size, index or element count a torch tensor can hold (int64).
INT64_MAX = 2**63 - 1

_BOOLS = (bool, np.bool_)


def echo(value: Any, limit: int = 120) -> str:
    """``value`` as a message shows it: its ``repr`` on one line, cut to ``limit`` characters.

    An int of 401 digits is cut. A tensor or array is followed by its shape and dtype (and
    device, off the CPU): its ``repr`` may be cut, and does not show them all.

    >>> echo("abc"), echo(10**400)[-6:]
    ("'abc'", '000...')
    >>> echo(torch.tensor([[1.5], [2.0]]))
    'tensor([[1.5000], [2.0000]]) of shape (2, 1) and dtype float32'
    >>> echo(torch.zeros(100, 3), limit=20)
    'tensor([[0., 0., ... of shape (100, 3) and dtype float32'
    """
    text = " ".join(repr(value).split()) if isinstance(value, (torch.Tensor, np.ndarray)) else repr(value)
    if len(text) > limit:
        text = f"{text[: limit - 3]}..."
    if isinstance(value, np.ndarray):
        return f"{text} of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, torch.Tensor):
        device = "" if value.device.type == "cpu" else f" on {value.device}"
        return f"{text} of shape {tuple(value.shape)} and dtype {str(value.dtype).replace('torch.', '')}{device}"
    return text


def invalid(name: str, expected: str, value: Any, owner: str = "", error: type[Exception] = ValueError) -> Exception:
    """The error for a bad ``value`` of the argument ``name``: what was ``expected``, what came.

    ``owner`` (such as ``"Dense layer 'dense'"``) goes first where the argument is one of
    an object's. The error is a ``ValueError`` unless ``error`` says otherwise; it is
    returned, for the caller to raise.

    >>> invalid("units", "a positive int", -2)
    ValueError('Invalid value for argument `units`: expected a positive int. Received: units=-2')
    >>> str(invalid("units", "a positive int", 0, owner="Dense layer 'dense'"))
    "Dense layer 'dense': invalid value for argument `units`: expected a positive int. Received: units=0"
    """
    start = f"{owner}: invalid" if owner else "Invalid"
    return error(f"{start} value for argument `{name}`: expected {expected}. Received: {name}={echo(value)}")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int (a Python or numpy int), and not a bool.

    >>> is_int(3), is_int(np.int8(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, _BOOLS)


def _as_float(value: Any) -> float | None:
    """``value`` as a Python float if it is a real number (not a bool) that has one, else ``None``."""
    if isinstance(value, _BOOLS) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):  # 10**400 has no float
        return None


def finite_float(value: Any) -> float | None:
    """``value`` as a finite Python float if it is a real number (not a bool), else ``None``.

    NaN, infinities, non-numbers, bools and ints too large for a float (``10**400``) give
    ``None``; numpy scalars give their value.

    >>> finite_float(2), finite_float(np.float32(0.5)), finite_float(10**400), finite_float(True)
    (2.0, 0.5, None, None)
    """
    number = _as_float(value)
    return number if number is not None and math.isfinite(number) else None


def _float_rule(low: float | None, high: float | None, low_open: bool, high_open: bool, finite: bool) -> str:
    """What :func:`real` expects, in words: ``a float in [0, 1)``, ``a finite float >= 0``, ..."""
    kind = "finite float" if finite else "float"
    if low is not None and high is not None:
        return f"a float in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low == 0 and low_open:
        return f"a positive {kind}"
    if low is not None:
        return f"a {kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a {kind} {'<' if high_open else '<='} {high:g}"
    return f"a {kind}"


def real(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
    allow_inf: bool = False,
    keep_int: bool = False,
    owner: str = "",
) -> Any:
    """``value`` as a Python float within the bounds, else a ``ValueError`` naming ``name``.

    ``low`` and ``high`` are inclusive unless ``low_open`` / ``high_open``. Bools, strings,
    NaN and numbers too large for a float (``10**400``) are refused, and so are infinities
    unless ``allow_inf``; numpy scalars are accepted. ``None`` is returned as it is where
    ``allow_none``. With ``keep_int``, an int comes back as a Python int (so a config keeps
    the ``2`` it was given, not ``2.0``).

    >>> real(np.float64(0.25), "rate", low=0, high=1)
    0.25
    >>> real(2, "max_value", low=0, keep_int=True), real(float("inf"), "max_value", low=0, allow_inf=True)
    (2, inf)
    >>> real(-1, "l2", low=0)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `l2`: expected a finite float >= 0. Received: l2=-1
    """
    if value is None and allow_none:
        return None
    number = _as_float(value)
    ok = number is not None and not math.isnan(number) and (allow_inf or math.isfinite(number))
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        rule = _float_rule(low, high, low_open, high_open, finite=not allow_inf)
        raise invalid(name, rule + (" or None" if allow_none else ""), value, owner)
    return int(value) if keep_int and isinstance(value, numbers.Integral) else number


def flag(value: Any, name: str, owner: str = "") -> bool:
    """``value`` as a Python bool if it is one (a numpy bool too), else a ``ValueError`` naming ``name``.

    Truthy stand-ins (``1``, ``"yes"``, ``None``) are refused: a typo should not switch an option.

    >>> flag(np.True_, "shuffle")
    True
    >>> flag(1, "shuffle")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `shuffle`: expected a bool (True or False). Received: shuffle=1
    """
    if not isinstance(value, _BOOLS):
        raise invalid(name, "a bool (True or False)", value, owner)
    return bool(value)


def _int_rule(low: int | None, high: int | None) -> str:
    """What :func:`count` expects, in words: ``a positive int``, ``an int in [0, 10]``, ..."""
    if low is not None and high is not None:
        return f"an int in [{low}, {high}]"
    if low == 1:
        return "a positive int"
    if low is not None:
        return f"an int >= {low}"
    if high is not None:
        return f"an int <= {high}"
    return "an int"


def count(
    value: Any, name: str, low: int | None = 0, high: int | None = None, allow_none: bool = False, owner: str = ""
) -> Any:
    """``value`` as a Python int in ``[low, high]``, else a ``ValueError`` naming ``name``.

    Bools and floats (``2.0`` too) are refused; numpy ints are accepted. ``low=None`` or
    ``high=None`` leaves that side open; ``None`` is returned as it is where ``allow_none``.

    >>> count(np.int64(3), "epochs"), count(None, "steps", low=1, allow_none=True)
    (3, None)
    >>> count(2**63, "size", high=INT64_MAX)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `size`: expected an int in [0, 9223372036854775807]. Received: size=9223372036854775808
    """
    if value is None and allow_none:
        return None
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise invalid(name, _int_rule(low, high) + (" or None" if allow_none else ""), value, owner)
    return int(value)
