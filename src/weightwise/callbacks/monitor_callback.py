"""``MonitorCallback``: the base of callbacks that watch one metric and know which way is better."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from weightwise import ops
from weightwise.arguments import invalid, real
from weightwise.callbacks._helpers import (
    _METRICS_DOWN,
    _METRICS_UP,
    _check_mode,
    _in_floatx,
    _to_float,
)
from weightwise.callbacks.callback import Callback


class MonitorCallback(Callback):
    """Base class of the callbacks that watch one logged quantity for improvement.

    ``mode="min"`` wants the quantity lower, ``"max"`` higher. ``"auto"`` decides
    on the first epoch end: ``loss`` and ``val_loss`` go down; another name takes
    the direction (``_direction``, ``"up"`` or ``"down"``) of the model's metric of
    that name in ``model.metrics``, else of the Keras built-in metric of that name
    (``accuracy``, ``auc`` go up; ``mae``, ``mse`` go down); a name none of these
    knows raises a ``ValueError``. A value improves when it beats the reference by
    more than ``min_delta``, compared in ``floatx`` as Keras compares.

    >>> callback = MonitorCallback(monitor="val_accuracy", min_delta=0.01)
    >>> callback._set_monitor_op()
    >>> callback._is_improvement(0.905, 0.9), callback._is_improvement(0.92, 0.9)
    (False, True)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        baseline: float | None = None,
        min_delta: float = 0,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise invalid("monitor", "a log name", monitor)
        self.monitor = monitor
        self.mode = _check_mode(mode)
        self.best = real(baseline, "baseline", allow_none=True)
        self.min_delta = abs(real(min_delta, "min_delta"))
        self.monitor_op: Callable[[Any, Any], Any] | None = None

    def _set_monitor_op(self) -> None:
        if self.mode == "min":
            self.monitor_op = ops.less
        elif self.mode == "max":
            self.monitor_op = ops.greater
        else:
            metric_name = self.monitor.removeprefix("val_")
            if metric_name == "loss":
                self.monitor_op = ops.less
            direction = _model_metric_direction(self.model, metric_name)
            if direction is None and self.monitor_op is None:
                direction = "up" if metric_name in _METRICS_UP else "down" if metric_name in _METRICS_DOWN else None
            if direction is not None:
                self.monitor_op = ops.greater if direction == "up" else ops.less
            if self.monitor_op is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but weightwise isn't able "
                    "to automatically determine whether that metric should be maximized or minimized. "
                    "Pass `mode='max'` in order to monitor based on the highest metric value, or pass "
                    "`mode='min'` in order to use the lowest value."
                )
        if self.monitor_op is ops.less:
            self.min_delta *= -1

    def _is_improvement(self, monitor_value: Any, reference_value: Any) -> bool:
        if reference_value is None:
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        return bool(self.monitor_op(_in_floatx(_to_float(monitor_value) - self.min_delta), _in_floatx(reference_value)))


def _model_metric_direction(model: Any, name: str) -> str | None:
    """The ``_direction`` of the model's metric called ``name``, looking one level into metric containers."""
    try:
        items = list(getattr(model, "metrics", None) or [])
    except Exception:  # noqa: BLE001 - a model whose metrics cannot be listed (yet) has none to ask
        return None
    flat: list[Any] = []
    for metric in items:
        flat.append(metric)
        inner = getattr(metric, "metrics", None)
        if isinstance(inner, (list, tuple)):
            flat.extend(inner)
    direction = None
    for metric in flat:
        if getattr(metric, "name", None) == name and getattr(metric, "_direction", None) in ("up", "down"):
            direction = metric._direction
    return direction
