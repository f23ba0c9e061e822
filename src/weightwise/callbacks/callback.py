"""The callback base class: every hook a no-op until a subclass overrides it."""

from __future__ import annotations

from typing import Any

from torch.nn.parallel import DistributedDataParallel


class Callback:
    """Base class for callbacks: every hook is a no-op until a subclass overrides it.

    The training loop calls ``set_model`` and ``set_params`` first, then the hooks.
    ``on_train_batch_begin``/``on_train_batch_end`` call ``on_batch_begin``/
    ``on_batch_end`` by default, their older names, as in Keras.

    Attributes:
        model: the model being trained (a ``DistributedDataParallel`` wrapper is
            unwrapped to its module).
        params: dict of training parameters: ``epochs``, ``steps``, ``verbose``.

    >>> class CountEpochs(Callback):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.count = 0
    ...
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         self.count += 1
    >>> callback = CountEpochs()
    >>> for epoch in range(3):
    ...     callback.on_epoch_end(epoch, {"loss": 0.1})
    >>> callback.count
    3
    """

    def __init__(self) -> None:
        self.params: dict[str, Any] | None = None
        self._model: Any = None

    def set_params(self, params: dict[str, Any]) -> None:
        """Store the training parameters (``epochs``, ``steps``, ``verbose``)."""
        self.params = params

    def set_model(self, model: Any) -> None:
        """Store the model the hooks act on."""
        self._model = model

    @property
    def model(self) -> Any:
        """The model given to :meth:`set_model`; a ``DistributedDataParallel`` wrapper gives its module."""
        if isinstance(self._model, DistributedDataParallel):
            return self._model.module
        return self._model

    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Older name of :meth:`on_train_batch_begin`, which calls it by default."""

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Older name of :meth:`on_train_batch_end`, which calls it by default."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of epoch ``epoch`` (0-based) of ``fit``."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of an epoch; ``logs`` has the epoch's metrics, ``val_``-prefixed for validation."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before training batch ``batch`` (0-based within the epoch)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after a training batch; ``logs`` has the metrics aggregated so far in the epoch."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before a batch of ``evaluate`` (or of validation in ``fit``)."""

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after a batch of ``evaluate`` (or of validation in ``fit``)."""

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before a batch of ``predict``."""

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after a batch of ``predict``."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of ``fit``."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of ``fit``; ``logs`` are the last epoch's."""

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of ``evaluate`` or of a validation pass."""

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of ``evaluate`` or of a validation pass."""

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of ``predict``."""
