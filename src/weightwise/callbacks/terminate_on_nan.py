"""``TerminateOnNaN``: stop training when the loss becomes NaN or infinite."""

from __future__ import annotations

import math
from typing import Any

from weightwise.arguments import flag
from weightwise.callbacks._helpers import _print, _to_float
from weightwise.callbacks.callback import Callback


class TerminateOnNaN(Callback):
    """Stops training when a batch's ``loss`` is NaN or infinite.

    By default it prints ``Batch i: Invalid loss, terminating training`` and sets
    ``model.stop_training = True``, so the loop ends cleanly and the other
    callbacks' ``on_train_end`` still run; ``raise_error=True`` raises a
    ``RuntimeError`` at once instead.

    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(stop_training=False)
    >>> callback = TerminateOnNaN()
    >>> callback.set_model(model)
    >>> callback.on_train_batch_end(0, {"loss": 0.5})
    >>> callback.on_train_batch_end(1, {"loss": float("nan")})
    Batch 1: Invalid loss, terminating training
    >>> model.stop_training
    True
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = flag(raise_error, "raise_error")

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None:
            return
        value = _to_float(loss)
        if math.isnan(value) or math.isinf(value):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {value}. Terminating training immediately."
                )
            _print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
