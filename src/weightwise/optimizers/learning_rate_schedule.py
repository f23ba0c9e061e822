"""How an optimizer reads a learning rate from a number, a schedule or a callable.

The schedule classes live in :mod:`weightwise.schedules`, below regularizers and
constraints, whose factors and bounds may be schedules too; :mod:`weightwise.optimizers.schedules`
gives them where Keras users look for them.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any

import torch

from weightwise.arguments import echo, finite_float, invalid
from weightwise.optimizers import schedules  # noqa: F401 - re-exported to the package, as before
from weightwise.schedules import (  # noqa: F401 - re-exported where the optimizers have always found them
    _SCHEDULES,
    ExponentialDecay,
    LearningRateSchedule,
)


def _validate_learning_rate(value: Any) -> Any:
    """A learning rate: a non-negative float, a schedule or a callable."""
    if isinstance(value, LearningRateSchedule) or (callable(value) and not isinstance(value, numbers.Real)):
        return value
    number = _rate(value)
    if number is None:
        raise invalid(
            "learning_rate", "a non-negative finite float, a LearningRateSchedule or a callable of the step count", value
        )
    return number


def _rate(value: Any) -> float | None:
    """A learning rate as a non-negative finite Python float (from a number, a numpy scalar or a
    one-element float tensor), or ``None`` if it is not one."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point() or value.is_meta:
            return None
        value = value.item()
    number = finite_float(value)
    return number if number is not None and number >= 0 else None


def _takes_no_step(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a zero-argument callable (Keras's form) rather than ``fn(step)``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL,):
            return False
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return False
    return True


def _evaluate_schedule(schedule: Callable[..., Any], step: int) -> float:
    value = (
        schedule() if not isinstance(schedule, LearningRateSchedule) and _takes_no_step(schedule) else schedule(step)
    )
    number = _rate(value)
    if number is None:
        raise ValueError(
            f"Invalid value for argument `learning_rate`: the schedule {echo(schedule)} gave {echo(value)} at "
            f"step {step}; expected a non-negative finite float (a number, a numpy scalar or a one-element float "
            "tensor)."
        )
    return number
