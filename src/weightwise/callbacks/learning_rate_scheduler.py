"""``LearningRateScheduler``: set the learning rate from a function of the epoch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from weightwise.arguments import echo, invalid
from weightwise.callbacks._helpers import (
    _log_learning_rates,
    _optimizer_of,
    _optimizers,
    _print,
    _read_learning_rate,
    _verbose,
)
from weightwise.callbacks.callback import Callback


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at each epoch start from ``schedule``.

    ``schedule(epoch, lr)`` (``epoch`` 0-based, ``lr`` the current rate) returns
    the new rate; a ``schedule(epoch)`` of one argument works too (tried when the
    two-argument call raises ``TypeError``, as in Keras). The result must be a
    float (Python, numpy, or a one-element floating tensor). The rate in effect is
    logged as ``learning_rate`` at each epoch end.

    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.5))
    >>> callback = LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr / 2)
    >>> callback.set_model(model)
    >>> rates = []
    >>> for epoch in range(4):
    ...     callback.on_epoch_begin(epoch)
    ...     logs = {}
    ...     callback.on_epoch_end(epoch, logs)
    ...     rates.append(logs["learning_rate"])
    >>> rates
    [0.5, 0.5, 0.25, 0.125]
    """

    def __init__(self, schedule: Callable[..., Any], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise invalid("schedule", "a callable", schedule)
        self.schedule = schedule
        self.verbose = _verbose(verbose)

    def _update_optimizer_lr(self, optimizer: Any, epoch: int) -> float:
        learning_rate = _read_learning_rate(optimizer)
        try:
            learning_rate = self.schedule(epoch, learning_rate)
        except TypeError:  # A one-argument schedule(epoch).
            learning_rate = self.schedule(epoch)
        if isinstance(learning_rate, torch.Tensor) and learning_rate.is_floating_point() and learning_rate.numel() == 1:
            learning_rate = float(learning_rate.item())
        if not isinstance(learning_rate, (float, np.floating)) or not math.isfinite(learning_rate) or learning_rate < 0:
            # Checked here, before the optimizer is touched, so a bad value changes nothing.
            raise ValueError(
                "Invalid value returned by argument `schedule`: the output of the `schedule` function should be a float "
                f"(non-negative and finite). Got: {echo(learning_rate)} at epoch {epoch}"
            )
        optimizer.learning_rate = float(learning_rate)
        return float(learning_rate)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for name, optimizer in _optimizers(_optimizer_of(self.model, "LearningRateScheduler")):
            learning_rate = self._update_optimizer_lr(optimizer, epoch)
            if self.verbose > 0:
                which = f"{name} " if name else ""
                _print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting {which}learning rate to {learning_rate}.")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        _log_learning_rates(self.model, logs, "LearningRateScheduler")
