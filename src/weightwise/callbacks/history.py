"""``History``: the per-epoch logs that ``fit`` returns."""

from __future__ import annotations

from typing import Any

from weightwise.callbacks.callback import Callback


class History(Callback):
    """Records each epoch's logs: ``history`` maps each log name to its list of values.

    ``CallbackList(add_history=True)`` adds one, and the model's ``history``
    attribute is set to it, which is what ``fit`` returns. Values accumulate across
    trainings that reuse the same ``History``; ``epoch`` restarts with each one.

    >>> history = History()
    >>> history.on_train_begin()
    >>> history.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.6})
    >>> history.on_epoch_end(1, {"loss": 0.4, "val_loss": 0.5})
    >>> history.epoch, history.history
    ([0, 1], {'loss': [0.5, 0.4], 'val_loss': [0.6, 0.5]})
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.epoch = []
        if self.model is not None:
            self.model.history = self

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self
