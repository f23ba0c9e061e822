"""Keras's learning rate schedules: ``schedule(step) -> value``.

A schedule maps the optimizer's iteration count to a number. Optimizers read their
learning rate from one (``weightwise.optimizers.schedules`` is this module), and
regularizer factors and constraint bounds may be one too (:mod:`weightwise.factors`):
this module sits low in the package so that both can build schedules from configs.

>>> ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(10)
0.05
>>> serialize(ExponentialDecay(0.1, 10, 0.5))["class_name"]
'ExponentialDecay'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from weightwise.arguments import flag, invalid, real
from weightwise.serialization import ObjectFamily

__all__ = ["ExponentialDecay", "LearningRateSchedule", "deserialize", "serialize"]


class LearningRateSchedule:
    """Base class of learning rate schedules: ``schedule(step) -> learning rate``.

    ``step`` is the optimizer's ``iterations`` before the update, so the first
    update uses ``schedule(0)``. Subclasses override ``__call__`` and
    ``get_config``; ``from_config`` rebuilds them as ``cls(**config)``.

    >>> class InverseTime(LearningRateSchedule):
    ...     def __init__(self, initial_learning_rate):
    ...         self.initial_learning_rate = initial_learning_rate
    ...     def __call__(self, step):
    ...         return self.initial_learning_rate / (step + 1)
    ...     def get_config(self):
    ...         return {"initial_learning_rate": self.initial_learning_rate}
    >>> InverseTime(0.1)(4)
    0.02
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`."
        )

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` in order to be serializable."
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LearningRateSchedule:
        """Rebuild a schedule from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        try:
            config = self.get_config()
        except NotImplementedError:
            return object.__repr__(self)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, as Keras's schedule.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``. The
    value is a Python float computed in double precision (Keras computes it in
    float32, so the two agree to about 1e-7 relative).

    Args:
        initial_learning_rate: non-negative float.
        decay_steps: positive number of steps.
        decay_rate: non-negative float.
        staircase: decay at discrete intervals.
        name: kept in the config, as in Keras.

    >>> schedule = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    >>> schedule(0), schedule(10), schedule(5)
    (0.1, 0.05, 0.07071067811865477)
    >>> ExponentialDecay(0.1, 10, 0.5, staircase=True)(15)
    0.05
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str = "ExponentialDecay",
    ) -> None:
        self.initial_learning_rate = real(initial_learning_rate, "initial_learning_rate", low=0)
        # Kept as given (an int stays an int in the config), but as a Python number.
        self.decay_steps = real(decay_steps, "decay_steps", low=0, low_open=True, keep_int=True)
        self.decay_rate = real(decay_rate, "decay_rate", low=0)
        self.staircase = flag(staircase, "staircase")
        if not isinstance(name, str):
            raise invalid("name", "a str", name)
        self.name = name

    def __call__(self, step: Any) -> float:
        progress = float(step) / self.decay_steps
        if self.staircase:
            progress = math.floor(progress)
        return self.initial_learning_rate * self.decay_rate**progress

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


_SCHEDULES = ObjectFamily(
    "learning rate schedule", "keras.optimizers.schedules", [LearningRateSchedule, ExponentialDecay]
)


def serialize(schedule: Any) -> Any:
    """Return the Keras 3 config dict of a schedule.

    >>> serialize(ExponentialDecay(0.1, 10, 0.5))["module"]
    'keras.optimizers.schedules'
    """
    return _SCHEDULES.serialize(schedule)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build a schedule from its Keras 3 config dict (registered custom schedules too).

    >>> deserialize({"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1,
    ...     "decay_steps": 10, "decay_rate": 0.5}})(20)
    0.025
    """
    return _SCHEDULES.deserialize(config, custom_objects)
