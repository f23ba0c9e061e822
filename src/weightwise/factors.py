"""Factors and bounds that may be numbers or schedules of the training step.

A regularizer factor, a decay factor or a constraint bound is either a number or a
schedule: a :class:`~weightwise.schedules.LearningRateSchedule` or any callable of the
step count (:func:`weightwise.clock.is_scheduled`). A schedule is evaluated at
:func:`weightwise.clock.step` each time the rule runs, so ``L2(PolynomialDecay(0.0,
1000, end_learning_rate=1e-3, power=1.0))`` warms the factor up over 1000 steps.

- :func:`factor` checks an argument when a rule is made: a number must be a finite
  float ``>= 0`` (or meet the bounds given), and comes back as a Python float; a
  schedule comes back as it is; a schedule's config dict is deserialized first.
- :func:`factor_value` is the number to use now, checked the same way.
- :func:`factor_config` writes a factor into a config (a float stays a float, a
  schedule becomes its Keras config) and :func:`factor_from_config` reads it back.

>>> rate = factor(lambda step: 0.1 * step, "l2")
>>> from weightwise import clock
>>> with clock.at_step(3):
...     factor_value(rate, "l2")
0.30000000000000004
>>> factor(-1, "l2")
Traceback (most recent call last):
...
ValueError: Invalid value for argument `l2`: expected a finite float >= 0. Received: l2=-1
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from weightwise import clock, schedules
from weightwise.arguments import echo, invalid, real
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["Factor", "factor", "factor_config", "factor_from_config", "factor_value", "rule_repr"]

Factor = float | Callable[[int], Any]
"""What a factor or bound argument takes: a number, or a schedule of the step count."""

_NOT_A_CLASS = "a number or a schedule instance (a LearningRateSchedule or a callable of the step count), not a class"


def _is_schedule_config(value: Any) -> bool:
    return isinstance(value, Mapping) and "class_name" in value


def factor(value: Any, name: str, **bounds: Any) -> Any:
    """``value`` checked as a factor named ``name``: a Python float, or a schedule.

    A number is checked by :func:`weightwise.arguments.real` with ``bounds`` (``low=0``
    unless given; ``allow_inf``, ``high``, ``keep_int``, ``owner`` as there), with its
    messages. A schedule instance or a callable of the step passes as it is; a schedule's
    config dict (``{"class_name": ..., "config": ...}``, as :func:`factor_config` writes)
    is deserialized, so ``cls(**config)`` rebuilds a rule whose factor is a schedule. A
    class (not an instance), a callable that cannot take the step (Keras's zero-argument
    learning rate callables) and any other value are refused with a ``ValueError``.

    >>> factor(2, "l1")
    2.0
    >>> factor(schedules.ExponentialDecay(0.1, 10, 0.5), "l1")
    ExponentialDecay(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase=False, name='ExponentialDecay')
    >>> factor("0.1", "l1")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `l1`: expected a finite float >= 0. Received: l1='0.1'
    """
    if _is_schedule_config(value):
        value = factor_from_config(value)
    if inspect.isclass(value):
        raise invalid(name, _NOT_A_CLASS, value, bounds.get("owner", ""))
    if clock.is_scheduled(value):
        if not _takes_the_step(value):
            raise invalid(name, "a schedule: a callable of the step count, schedule(step)", value,
                          bounds.get("owner", ""))
        return value
    bounds.setdefault("low", 0)
    return real(value, name, **bounds)


def _takes_the_step(schedule: Callable[..., Any]) -> bool:
    """Whether ``schedule(step)`` can be called; a callable whose signature is hidden gets the benefit of the doubt."""
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(0)
    except TypeError:
        return False
    return True


def factor_value(value: Any, name: str, low: float = 0.0, high: float | None = None, allow_inf: bool = False) -> Any:
    """The number a factor stands for now: ``value`` itself, or its schedule's value at the current step.

    A schedule's value (a number, a numpy scalar or a one-element tensor) must be a float
    in ``[low, high]``, finite unless ``allow_inf``; anything else raises a ``ValueError``
    naming ``name``, the schedule, the step and what it gave. A number is returned as it
    is, unchecked (:func:`factor` checked it), so the common case costs one ``isinstance``.

    >>> from weightwise import clock
    >>> with clock.at_step(2):
    ...     factor_value(lambda step: 0.5 - step, "l2")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `l2`: the schedule <function <lambda> at ...> gave -1.5 at step 2; expected a finite float >= 0.
    """
    if isinstance(value, (float, int)):
        return value
    step = clock.step()
    result = value(step)
    number = _as_number(result)
    ok = (
        number is not None
        and not math.isnan(number)
        and (allow_inf or math.isfinite(number))
        and number >= low
        and (high is None or number <= high)
    )
    if not ok:
        rule = "a float" if allow_inf else "a finite float"
        rule += f" in [{low:g}, {high:g}]" if high is not None else f" >= {low:g}"
        raise ValueError(
            f"Invalid value for argument `{name}`: the schedule {echo(value)} gave {echo(result)} at step {step}; "
            f"expected {rule}."
        )
    return number


def _as_number(value: Any) -> float | None:
    """A schedule's value as a Python float (from a number, a numpy scalar or a one-element real tensor)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool or value.is_meta:
            return None
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):
        return None


def factor_config(value: Any) -> Any:
    """A factor as a config holds it: a number as it is, a schedule as its Keras config dict.

    >>> factor_config(0.01)
    0.01
    >>> factor_config(schedules.ExponentialDecay(0.1, 10, 0.5))["config"]["decay_steps"]
    10
    """
    if not clock.is_scheduled(value):
        return value
    if isinstance(value, schedules.LearningRateSchedule):
        return schedules.serialize(value)
    return serialize_keras_object(value)


def factor_from_config(value: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """The factor a config holds: a number as it is; a schedule's config dict deserialized.

    Registered custom schedules, and those in an active ``custom_object_scope`` or in
    ``custom_objects``, are found by name, as for an optimizer's ``learning_rate``.

    >>> factor_from_config({"class_name": "ExponentialDecay", "config": {
    ...     "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}})(10)
    0.05
    >>> factor_from_config(0.5)
    0.5
    """
    if not _is_schedule_config(value):
        return value
    if value.get("class_name") in ("function", "__lambda__"):
        return deserialize_keras_object(value, custom_objects)
    return schedules.deserialize(value, custom_objects)


def rule_repr(rule: Any, config: Mapping[str, Any]) -> str:
    """``Name(key=value, ...)`` from a rule's config, showing a schedule as the object it is, not its config.

    >>> from weightwise.regularizers import L2
    >>> rule_repr(L2(0.1), {"l2": 0.1})
    'L2(l2=0.1)'
    >>> L2(schedules.ExponentialDecay(0.1, 10, 0.5))
    L2(l2=ExponentialDecay(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase=False, name='ExponentialDecay'))
    """
    shown = []
    for key, value in config.items():
        held = getattr(rule, key, None)
        scheduled = _is_schedule_config(value) and clock.is_scheduled(held)
        shown.append(f"{key}={(held if scheduled else value)!r}")
    return f"{type(rule).__name__}({', '.join(shown)})"
