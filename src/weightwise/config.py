"""Keras's ``keras.config``: the global settings, under Keras's names.

The numeric settings and the image data format live in :mod:`weightwise.backend` and are
re-exported here. This module adds the two switches Keras keeps in ``keras.config``:

- traceback filtering. weightwise never filters tracebacks (its frames are plain Python
  frames), so the switch is recorded and reported, and changes nothing else;
- the global dtype policy (``set_dtype_policy``, ``dtype_policy``), from
  :mod:`weightwise.dtype_policies`;
- unsafe deserialization. :func:`enable_unsafe_deserialization` turns safe mode off for
  every later load, whatever ``safe_mode`` a call passes, as in Keras. Deserialization
  reads the setting through :func:`in_safe_mode`; ``SafeModeScope`` sets it through
  :func:`set_safe_mode`. Neither is a ``keras.config`` name, so neither is in ``__all__``.

>>> from weightwise import config
>>> config.epsilon(), config.floatx(), config.image_data_format(), config.backend()
(1e-07, 'float32', 'channels_last', 'torch')
"""

from __future__ import annotations

from weightwise.arguments import flag
from weightwise.backend import (
    backend,
    epsilon,
    floatx,
    image_data_format,
    set_epsilon,
    set_floatx,
    set_image_data_format,
)
from weightwise.dtype_policies import dtype_policy, set_dtype_policy

__all__ = [
    "backend",
    "disable_flash_attention",
    "disable_traceback_filtering",
    "dtype_policy",
    "enable_flash_attention",
    "enable_traceback_filtering",
    "enable_unsafe_deserialization",
    "epsilon",
    "floatx",
    "image_data_format",
    "is_flash_attention_enabled",
    "is_traceback_filtering_enabled",
    "set_dtype_policy",
    "set_epsilon",
    "set_floatx",
    "set_image_data_format",
]

_TRACEBACK_FILTERING = True
# None: attention layers may use flash attention where torch can (Keras's default); False: they never do.
_FLASH_ATTENTION: bool | None = None
# None: no global decision, each load follows its own `safe_mode` argument.
_SAFE_MODE: bool | None = None


def enable_traceback_filtering() -> None:
    """Record that traceback filtering is on (the default; weightwise never filters frames).

    >>> enable_traceback_filtering()
    >>> is_traceback_filtering_enabled()
    True
    """
    global _TRACEBACK_FILTERING
    _TRACEBACK_FILTERING = True


def disable_traceback_filtering() -> None:
    """Record that traceback filtering is off. Tracebacks are the same either way.

    >>> disable_traceback_filtering()
    >>> is_traceback_filtering_enabled()
    False
    >>> enable_traceback_filtering()
    """
    global _TRACEBACK_FILTERING
    _TRACEBACK_FILTERING = False


def is_traceback_filtering_enabled() -> bool:
    """Whether traceback filtering was last turned on (``True`` at start, as in Keras).

    >>> is_traceback_filtering_enabled()
    True
    """
    return _TRACEBACK_FILTERING


def enable_flash_attention() -> None:
    """Let attention layers created from now on (with ``flash_attention=None``) use flash attention.

    As in Keras this is the default, "attempt": torch picks its flash kernel where the inputs
    allow it. :func:`is_flash_attention_enabled` then gives ``None``.

    >>> enable_flash_attention()
    >>> is_flash_attention_enabled() is None
    True
    """
    global _FLASH_ATTENTION
    _FLASH_ATTENTION = None


def disable_flash_attention() -> None:
    """Make attention layers created from now on with ``flash_attention=None`` avoid the flash kernel.

    >>> disable_flash_attention()
    >>> is_flash_attention_enabled()
    False
    >>> enable_flash_attention()
    """
    global _FLASH_ATTENTION
    _FLASH_ATTENTION = False


def is_flash_attention_enabled() -> bool | None:
    """``False`` after :func:`disable_flash_attention`; otherwise ``None``, meaning enabled where possible (Keras's values).

    >>> is_flash_attention_enabled() is None
    True
    """
    return _FLASH_ATTENTION


def enable_unsafe_deserialization() -> None:
    """Turn safe mode off for every later deserialization, whatever its ``safe_mode`` argument.

    Only do this for files you trust: it allows what safe mode refuses (lambdas, code in a
    file). ``set_safe_mode(None)`` goes back to each call deciding.

    >>> enable_unsafe_deserialization()
    >>> in_safe_mode()
    False
    >>> set_safe_mode(None)
    """
    set_safe_mode(False)


def in_safe_mode() -> bool | None:
    """The global safe-mode setting: ``None`` (each call's ``safe_mode`` decides), ``True`` or ``False``.

    A deserializer uses ``safe_mode if in_safe_mode() is None else in_safe_mode()``.

    >>> in_safe_mode() is None
    True
    """
    return _SAFE_MODE


def set_safe_mode(value: bool | None) -> None:
    """Set the global safe-mode setting read by :func:`in_safe_mode` (a bool, or ``None`` to clear it).

    >>> set_safe_mode(True)
    >>> in_safe_mode()
    True
    >>> set_safe_mode(None)
    """
    global _SAFE_MODE
    _SAFE_MODE = None if value is None else flag(value, "value")
