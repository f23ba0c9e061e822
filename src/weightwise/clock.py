"""The training step that scheduled factors are evaluated at.

A regularizer factor, a decay factor or a constraint bound may be a schedule: a
callable ``schedule(step) -> float``, such as Keras's learning rate schedules. It is
evaluated at the iteration count of the optimizer that trains the weight, which
this module keeps as one process-wide counter:

- a weightwise optimizer (``model.fit``, ``optimizer.step()``, ``apply``) writes its
  ``iterations`` here after every update, so the forward pass of update ``k``
  (counting from 0) reads ``k``, as the learning rate schedule does;
- a ``torch.optim`` optimizer given to ``regularize``, ``constrain`` or ``decay``
  (``optimizer=``) is followed: each of its steps writes its own step count here;
- a hand loop with neither may set the step itself with :func:`set_step`.

One counter serves one training loop at a time: with several optimizers stepping in
turn, the step is the count of whichever stepped last.

``weightwise.factors.factor_value`` reads a factor at this step.

>>> set_step(0)
>>> with at_step(9):
...     step()
9
>>> step()
0
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from weightwise.arguments import echo

__all__ = ["at_step", "follow", "is_scheduled", "set_step", "step"]

_STEP = 0


def step() -> int:
    """The current step: the iteration count of the optimizer that stepped last.

    >>> set_step(3)
    >>> step()
    3
    """
    return _STEP


def set_step(value: int) -> None:
    """Make ``value`` the step that schedules are evaluated at.

    >>> set_step(-1)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `step`: expected an int >= 0. Received: step=-1
    """
    global _STEP
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"Invalid value for argument `step`: expected an int >= 0. Received: step={echo(value)}")
    _STEP = int(value)


@contextmanager
def at_step(value: int) -> Iterator[None]:
    """Evaluate schedules at ``value`` inside the block; the previous step comes back after it.

    >>> set_step(1)
    >>> with at_step(5):
    ...     step()
    5
    >>> step()
    1
    """
    previous = _STEP
    set_step(value)
    try:
        yield
    finally:
        set_step(previous)


def is_scheduled(value: Any) -> bool:
    """Whether ``value`` is a schedule (a callable of the step) rather than a number.

    >>> is_scheduled(0.01), is_scheduled(lambda step: 0.01)
    (False, True)
    """
    return callable(value) and not isinstance(value, (numbers.Number, torch.Tensor))


# The torch optimizers being followed, with their own step counts.
_FOLLOWED: weakref.WeakKeyDictionary[torch.optim.Optimizer, list[int]] = weakref.WeakKeyDictionary()


def _steps_taken(optimizer: torch.optim.Optimizer) -> int:
    """The number of steps an optimizer's state records (0 when it keeps no step count)."""
    for state in optimizer.state.values():
        taken = state.get("step") if isinstance(state, dict) else None
        if taken is not None:
            return int(taken.item() if isinstance(taken, torch.Tensor) else taken)
    return 0


def follow(optimizer: torch.optim.Optimizer) -> None:
    """Count the steps of a ``torch.optim`` optimizer, writing its count here after each one.

    Following starts the count at the steps the optimizer's state already records (0 for a
    new one) and writes it here at once; following the same optimizer twice counts each of its
    steps once.

    >>> w = torch.nn.Parameter(torch.ones(1))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> set_step(7)
    >>> follow(opt); follow(opt)
    >>> step()
    0
    >>> w.grad = torch.ones(1)
    >>> opt.step(); opt.step()
    >>> step()
    2
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"Invalid value for argument `optimizer`: expected a torch.optim.Optimizer. Received: optimizer={echo(optimizer)}"
        )
    if optimizer in _FOLLOWED:
        return
    # An optimizer that stepped before it was followed counts on from where it is (torch keeps a
    # per-parameter ``step`` in most optimizers' state), and its next step reads that count now,
    # not whatever an earlier loop left here.
    count = _FOLLOWED[optimizer] = [_steps_taken(optimizer)]
    set_step(count[0])

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        count[0] += 1
        set_step(count[0])

    optimizer.register_step_post_hook(hook)
