"""``EarlyStopping``: stop training when a monitored metric stops improving."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from weightwise.arguments import count, flag, invalid, real
from weightwise.callbacks._helpers import _copy_weights, _print, _verbose
from weightwise.callbacks.monitor_callback import MonitorCallback


class EarlyStopping(MonitorCallback):
    """Stops training when a monitored quantity has stopped improving.

    At each epoch end (from ``start_from_epoch`` on) the monitored value is compared
    with the best so far; after ``patience`` epochs without an improvement greater
    than ``min_delta`` it sets ``model.stop_training = True`` (never at epoch 0).
    With a ``baseline``, the count of epochs without improvement restarts only for
    values that beat both the best and the baseline. With
    ``restore_best_weights=True`` the weights of the best epoch are put back at
    the end of training, whether or not training was stopped early. A missing
    ``monitor`` key warns and skips the epoch.

    Args:
        monitor: the log name to watch, e.g. ``"val_loss"``, ``"val_accuracy"``.
        min_delta: smallest change that counts as an improvement (its absolute value).
        patience: number of epochs without improvement before stopping.
        verbose: 1 prints a message when stopping and when restoring weights.
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see :class:`MonitorCallback`).
        baseline: a value the quantity must beat to count as improving.
        restore_best_weights: restore the best epoch's weights at the end of training.
        start_from_epoch: number of warm-up epochs not monitored.

    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(stop_training=False)
    >>> callback = EarlyStopping(monitor="loss", patience=2)
    >>> callback.set_model(model)
    >>> callback.on_train_begin()
    >>> for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.85, 0.7]):
    ...     callback.on_epoch_end(epoch, {"loss": loss})
    ...     if model.stop_training:
    ...         break
    >>> callback.stopped_epoch, callback.best, callback.best_epoch
    (3, 0.8, 1)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = count(patience, "patience")
        self.verbose = _verbose(verbose)
        self.baseline = real(baseline, "baseline", allow_none=True)
        self.wait = 0
        self.stopped_epoch = 0
        self.restore_best_weights = flag(restore_best_weights, "restore_best_weights")
        self.best_weights: Any = None
        self.best_epoch = 0
        self.start_from_epoch = count(start_from_epoch, "start_from_epoch")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Allow instances to be re-used across `fit` calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            # Decided at the first epoch end, once the model's metrics exist.
            self._set_monitor_op()

        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            # No monitored value, or still warming up.
            return
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the current weights are the best.
            self.best_weights = _copy_weights(self.model.get_weights())
            self.best_epoch = epoch

        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = _copy_weights(self.model.get_weights())
            # Restart the wait only when beating both the baseline and the best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return

        if self.wait >= self.patience and epoch > 0:
            # Patience exhausted: stop training.
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: dict[str, Any] | None) -> Any:
        """The monitored value in ``logs``, or ``None`` with a warning naming the available keys."""
        if logs is None:
            logs = {}
        if not isinstance(logs, Mapping):
            raise invalid("logs", "a dict of logged values or None", logs, error=TypeError)
        monitor_value = logs.get(self.monitor)
        if monitor_value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(list(logs.keys()))}",
                stacklevel=3,
            )
        return monitor_value
