"""``LambdaCallback``: a callback made of plain functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from weightwise.callbacks._helpers import _HOOKS
from weightwise.callbacks.callback import Callback


class LambdaCallback(Callback):
    """A callback made from plain functions, one per hook.

    ``on_epoch_begin``/``on_epoch_end`` get ``(epoch, logs)``, ``on_train_begin``/
    ``on_train_end`` get ``(logs)``, the batch hooks ``(batch, logs)``. Any other
    hook (``on_test_end=...``, ``on_predict_batch_end=...``) can be given by name.

    >>> losses = []
    >>> callback = LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    >>> callback.on_epoch_end(0, {"loss": 0.5})
    >>> callback.on_epoch_end(1, {"loss": 0.25})
    >>> losses
    [0.5, 0.25]
    """

    def __init__(
        self,
        on_epoch_begin: Callable[..., Any] | None = None,
        on_epoch_end: Callable[..., Any] | None = None,
        on_train_begin: Callable[..., Any] | None = None,
        on_train_end: Callable[..., Any] | None = None,
        on_train_batch_begin: Callable[..., Any] | None = None,
        on_train_batch_end: Callable[..., Any] | None = None,
        **kwargs: Callable[..., Any],
    ) -> None:
        super().__init__()
        for name, function in kwargs.items():
            if name not in _HOOKS:
                raise ValueError(
                    f"Invalid argument `{name}` for LambdaCallback: expected a hook name, one of {list(_HOOKS)}. "
                    f"Received: {name}={function!r}"
                )
        functions = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
            **kwargs,
        }
        for name, function in functions.items():
            if function is None:
                continue
            if not callable(function):
                raise ValueError(f"Invalid value for argument `{name}`: expected a callable. Received: {name}={function!r}")
            setattr(self, name, function)
