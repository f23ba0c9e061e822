"""``ReduceLROnPlateau``: lower the learning rate when a monitored metric stops improving."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from weightwise.arguments import count, real
from weightwise.callbacks._helpers import (
    _log_learning_rates,
    _optimizer_of,
    _optimizers,
    _print,
    _read_learning_rate,
    _verbose,
)
from weightwise.callbacks.monitor_callback import MonitorCallback


class ReduceLROnPlateau(MonitorCallback):
    """Multiplies the learning rate by ``factor`` when a monitored quantity stops improving.

    After ``patience`` epochs without an improvement greater than ``min_delta``,
    ``lr`` becomes ``max(lr * factor, min_lr)`` (if ``lr`` is still above
    ``min_lr``), then ``cooldown`` epochs pass before epochs without improvement
    count again. The rate in effect is logged as ``learning_rate``. The rate is
    read rounded to ``floatx``, as Keras's optimizer variable holds it.

    Args:
        monitor: the log name to watch.
        factor: the multiplier, in ``[0, 1)``.
        patience: epochs without improvement before reducing.
        verbose: 1 prints a message at each reduction.
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see :class:`MonitorCallback`).
        min_delta: smallest change that counts as an improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound on the learning rate.

    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.5))
    >>> callback = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_lr=0.1)
    >>> callback.set_model(model)
    >>> callback.on_train_begin()
    >>> rates = []
    >>> for epoch, loss in enumerate([1.0, 1.0, 1.0, 0.5, 0.5, 0.5]):
    ...     callback.on_epoch_end(epoch, {"loss": loss})
    ...     rates.append(model.optimizer.learning_rate)
    >>> rates
    [0.5, 0.25, 0.125, 0.125, 0.1, 0.1]
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        factor = real(factor, "factor")
        if not 0.0 <= factor < 1.0:
            raise ValueError(
                "Invalid value for argument `factor`: ReduceLROnPlateau does not support a factor >= 1.0 "
                f"(or below 0). Received: factor={factor!r}"
            )
        self.factor = factor
        self.min_lr = real(min_lr, "min_lr", low=0)
        self.patience = count(patience, "patience")
        self.verbose = _verbose(verbose)
        self.cooldown = count(cooldown, "cooldown")
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self) -> None:
        """Reset the wait and cooldown counters and the best value."""
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def _reduce_optimizer_lr(self, optimizer: Any, epoch: int, name: str = "") -> bool:
        old_lr = _read_learning_rate(optimizer)
        if old_lr > np.float32(self.min_lr):
            new_lr = max(old_lr * self.factor, self.min_lr)
            optimizer.learning_rate = new_lr
            if self.verbose > 0:
                which = f" {name}" if name else ""
                _print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing{which} learning rate to {new_lr}.")
            return True
        return False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        _log_learning_rates(self.model, logs, "ReduceLROnPlateau")
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(list(logs.keys()))}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                reduced = False
                for name, optimizer in _optimizers(_optimizer_of(self.model, "ReduceLROnPlateau")):
                    if self._reduce_optimizer_lr(optimizer, epoch, name):
                        reduced = True
                if reduced:
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def in_cooldown(self) -> bool:
        """Whether the cooldown after a reduction is still running."""
        return self.cooldown_counter > 0
