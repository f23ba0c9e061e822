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

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from weightwise.arguments import echo, finite_float, flag, invalid, is_int, real
from weightwise.serialization import ObjectFamily

__all__ = [
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LearningRateSchedule",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "deserialize",
    "serialize",
]


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
        """The arguments that rebuild the schedule; a custom schedule must define it to be saved."""
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


def _steps(value: Any, name: str) -> Any:
    """A positive number of steps, kept as given (an int stays an int); Keras's message when it is ``<= 0``."""
    if finite_float(value) is None:
        raise invalid(name, "a positive number of steps", value)
    if value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={echo(value)}")
    return real(value, name, keep_int=True)


def _rate(value: Any, name: str, **bounds: Any) -> Any:
    """A finite number ``>= 0`` unless ``bounds`` say otherwise, kept as given (an int stays an int)."""
    bounds.setdefault("low", 0)
    return real(value, name, keep_int=True, **bounds)


def _numbers(given: Any, name: str, low: float | None = None) -> list[Any]:
    """A list of finite numbers (``>= low`` if given), each kept as given (an int stays an int)."""
    rule = "a list of finite numbers" + ("" if low is None else f" >= {low:g}")
    if isinstance(given, (str, bytes, Mapping)) or not isinstance(given, Sequence):
        raise invalid(name, rule, given)
    if any(finite_float(item) is None or (low is not None and item < low) for item in given):
        raise invalid(name, rule, given)
    return [real(item, name, keep_int=True) for item in given]


def _name(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid("name", "a str or None", value)
    return value


def _step_value(step: Any) -> tuple[float, bool]:
    """The step as a Python float, and whether it is of an integer type (a tensor's dtype decides for a tensor)."""
    if isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_complex():
        return float(step.item()), not step.is_floating_point()
    number = finite_float(step)
    if number is None:
        raise invalid("step", "a finite number or a one-element real tensor", step)
    return number, is_int(step)


class _StepDecay(LearningRateSchedule):
    """The arguments ExponentialDecay and InverseTimeDecay share, and their ``step / decay_steps``."""

    def __init__(
        self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool, name: str | None
    ) -> None:
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _steps(decay_steps, "decay_steps")
        self.decay_rate = _rate(decay_rate, "decay_rate")
        self.staircase = flag(staircase, "staircase")
        self.name = _name(name)

    def _progress(self, step: Any) -> float:
        progress = _step_value(step)[0] / self.decay_steps
        return math.floor(progress) if self.staircase else progress

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class ExponentialDecay(_StepDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, as Keras's schedule.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``.

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

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False,
                 name: str | None = "ExponentialDecay") -> None:
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step: Any) -> float:
        return float(self.initial_learning_rate * self.decay_rate ** self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant for each interval of steps: ``values[i]`` for ``boundaries[i-1] < step <= boundaries[i]``.

    ``values[0]`` holds for ``step <= boundaries[0]`` and ``values[-1]`` for
    ``step > boundaries[-1]``, as in Keras. An integer step is compared with the
    boundaries cast to integers (truncated), as Keras casts them to the step's dtype.

    Args:
        boundaries: strictly increasing numbers (Keras's docs ask for this; here it is checked).
        values: non-negative numbers, one more than ``boundaries``.
        name: kept in the config, as in Keras.

    >>> schedule = PiecewiseConstantDecay([100, 200], [1e-2, 1e-3, 1e-4])
    >>> schedule(0), schedule(100), schedule(101), schedule(1000)
    (0.01, 0.01, 0.001, 0.0001)
    """

    def __init__(self, boundaries: Sequence[float], values: Sequence[float], name: str | None = "PiecewiseConstant") -> None:
        boundaries = _numbers(boundaries, "boundaries")
        values = _numbers(values, "values", low=0)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and values={values} "
                f"of length {len(values)}."
            )
        if any(b >= c for b, c in itertools.pairwise(boundaries)):
            raise invalid("boundaries", "a strictly increasing list of numbers", boundaries)
        self.boundaries = boundaries
        self.values = values
        self.name = _name(name)

    def __call__(self, step: Any) -> float:
        value, integral = _step_value(step)
        boundaries = [math.trunc(b) for b in self.boundaries] if integral else self.boundaries
        # The first boundary at or past the step closes the step's interval.
        index = next((i for i, b in enumerate(boundaries) if value <= b), len(boundaries))
        return float(self.values[index])

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` in ``decay_steps`` along a power of the step.

    With ``t = min(step, decay_steps)`` (or, with ``cycle``, ``decay_steps`` stretched to
    the first multiple at or past ``step``)::

        (initial_learning_rate - end_learning_rate) * (1 - t / decay_steps) ** power + end_learning_rate

    It also warms a factor up: ``PolynomialDecay(0.0, 1000, end_learning_rate=1e-3,
    power=1.0)`` rises in a straight line from 0 to 1e-3 over 1000 steps and stays there,
    so ``L2(PolynomialDecay(0.0, 1000, end_learning_rate=1e-3, power=1.0))`` is an L2
    penalty whose factor warms up.

    Args:
        initial_learning_rate: non-negative float.
        decay_steps: positive number of steps.
        end_learning_rate: non-negative float; default 0.0001.
        power: non-negative float; default 1.0.
        cycle: start again after each ``decay_steps``.
        name: kept in the config, as in Keras.

    >>> schedule = PolynomialDecay(0.1, 10, end_learning_rate=0.0)
    >>> schedule(0), schedule(5), schedule(20)
    (0.1, 0.05, 0.0)
    >>> PolynomialDecay(0.0, 100, end_learning_rate=1e-3, power=1.0)(50)
    0.0005
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str | None = "PolynomialDecay",
    ) -> None:
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _steps(decay_steps, "decay_steps")
        self.end_learning_rate = _rate(end_learning_rate, "end_learning_rate")
        self.power = _rate(power, "power")
        self.cycle = flag(cycle, "cycle")
        self.name = _name(name)

    def __call__(self, step: Any) -> float:
        value = _step_value(step)[0]
        decay_steps = float(self.decay_steps)
        if self.cycle:
            decay_steps *= 1.0 if value == 0 else math.ceil(value / self.decay_steps)
        else:
            value = min(value, decay_steps)
        progress = value / decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return float(span * (1 - progress) ** self.power + self.end_learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class InverseTimeDecay(_StepDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``, as Keras's schedule.

    With ``staircase=True``, ``step / decay_steps`` is floored.

    Args:
        initial_learning_rate: non-negative float.
        decay_steps: positive number of steps.
        decay_rate: non-negative float.
        staircase: decay at discrete intervals.
        name: kept in the config, as in Keras.

    >>> InverseTimeDecay(0.1, decay_steps=10, decay_rate=1.0)(10)
    0.05
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False,
                 name: str | None = "InverseTimeDecay") -> None:
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step: Any) -> float:
        return float(self.initial_learning_rate / (1 + self.decay_rate * self._progress(step)))


def _cosine(progress: float, alpha: float, scale: float = 1.0) -> float:
    """``(1 - alpha) * scale * (1 + cos(pi * progress)) / 2 + alpha``: half a cosine from ``scale`` down."""
    return (1 - alpha) * (0.5 * scale * (1.0 + math.cos(math.pi * progress))) + alpha


class CosineDecay(LearningRateSchedule):
    """Half a cosine from the starting value down to ``alpha`` times it, after an optional linear warm-up.

    Without ``warmup_target``, with ``t = min(step, decay_steps)``::

        initial_learning_rate * ((1 - alpha) * (1 + cos(pi * t / decay_steps)) / 2 + alpha)

    With ``warmup_target``, the value first rises in a straight line from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps`` steps, then
    decays as above from ``warmup_target``, over ``decay_steps`` more steps.

    Args:
        initial_learning_rate: non-negative float.
        decay_steps: positive number of steps to decay over.
        alpha: non-negative float: the final value as a fraction of the starting one.
        name: kept in the config, as in Keras.
        warmup_target: non-negative float, or ``None`` for no warm-up.
        warmup_steps: non-negative number of warm-up steps.

    >>> schedule = CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=10)
    >>> schedule(0), schedule(5), schedule(10), schedule(110)
    (0.0, 0.05, 0.1, 0.0)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str | None = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _steps(decay_steps, "decay_steps")
        self.alpha = _rate(alpha, "alpha")
        self.name = _name(name)
        self.warmup_steps = _rate(warmup_steps, "warmup_steps")
        self.warmup_target = _rate(warmup_target, "warmup_target", allow_none=True)

    def __call__(self, step: Any) -> float:
        value = _step_value(step)[0]
        decay_steps = float(self.decay_steps)
        if self.warmup_target is None:
            value = min(value, decay_steps)
            return float(self.initial_learning_rate * _cosine(value / decay_steps, self.alpha))
        warmup_steps = float(self.warmup_steps)
        value = min(value, decay_steps + warmup_steps)
        if value < warmup_steps:
            rise = self.warmup_target - self.initial_learning_rate
            return float(rise * (value / warmup_steps) + self.initial_learning_rate)
        return float(self.warmup_target * _cosine((value - warmup_steps) / decay_steps, self.alpha))

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Loshchilov and Hutter, 2017).

    The multiplier decays from 1 to ``alpha`` over ``first_decay_steps``; then it
    restarts: period ``i`` lasts ``first_decay_steps * t_mul ** i`` steps and starts
    from ``m_mul ** i``. Within a period, at the fraction ``f`` of it::

        initial_learning_rate * ((1 - alpha) * m_mul ** i * (1 + cos(pi * f)) / 2 + alpha)

    With ``t_mul < 1`` the periods shrink and add up to ``first_decay_steps / (1 - t_mul)``
    steps; a step past that has no period, and is an error (Keras gives NaN).

    Args:
        initial_learning_rate: non-negative float.
        first_decay_steps: positive number of steps of the first period.
        t_mul: positive float: each period is ``t_mul`` times as long as the one before.
        m_mul: non-negative float: each period starts ``m_mul`` times as high.
        alpha: non-negative float: the lowest value, as a fraction of ``initial_learning_rate``.
        name: kept in the config, as in Keras.

    >>> schedule = CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5)
    >>> schedule(0), schedule(5), schedule(10), schedule(30)
    (1.0, 0.5, 0.5, 0.25)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str | None = "SGDRDecay",
    ) -> None:
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.first_decay_steps = _steps(first_decay_steps, "first_decay_steps")
        # Kept under Keras's private names, which its get_config reads.
        self._t_mul = _rate(t_mul, "t_mul", low_open=True)
        self._m_mul = _rate(m_mul, "m_mul")
        self.alpha = _rate(alpha, "alpha")
        self.name = _name(name)

    def _period(self, fraction: float) -> tuple[int, float]:
        """The period that ``fraction`` (steps over ``first_decay_steps``) falls in, and how far into it."""
        t_mul = float(self._t_mul)
        if t_mul == 1.0:
            index = math.floor(fraction)
            return index, fraction - index
        if t_mul < 1.0 and fraction >= 1.0 / (1.0 - t_mul):
            raise ValueError(
                f"CosineDecayRestarts with t_mul={self._t_mul} < 1 has periods that add up to "
                f"{self.first_decay_steps / (1.0 - t_mul):g} steps; it has no value at a later step. "
                f"Received: step={fraction * self.first_decay_steps:g}"
            )

        def start(i: int) -> float:  # where period i starts, in units of first_decay_steps
            return (1.0 - t_mul**i) / (1.0 - t_mul)

        index = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
        # The logarithm may land a rounding error away from a period's start: settle on the exact period.
        while index > 0 and start(index) > fraction:
            index -= 1
        while start(index + 1) <= fraction:
            index += 1
        return index, (fraction - start(index)) / t_mul**index

    def __call__(self, step: Any) -> float:
        index, within = self._period(_step_value(step)[0] / self.first_decay_steps)
        return float(self.initial_learning_rate * _cosine(within, self.alpha, scale=self._m_mul**index))

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self._t_mul,
            "m_mul": self._m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


_SCHEDULES = ObjectFamily(
    "learning rate schedule",
    "keras.optimizers.schedules",
    [
        LearningRateSchedule,
        ExponentialDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        InverseTimeDecay,
        CosineDecay,
        CosineDecayRestarts,
    ],
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
