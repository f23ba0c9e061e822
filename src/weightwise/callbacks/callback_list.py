"""``CallbackList``: many callbacks behind one set of hooks, as the training loop calls them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from weightwise.arguments import echo, flag
from weightwise.callbacks._helpers import _HOOKS, _flatten, _pythonify_logs
from weightwise.callbacks.callback import Callback
from weightwise.callbacks.history import History
from weightwise.callbacks.progbar_logger import ProgbarLogger


def _check_callbacks(callbacks: Any) -> list[Callback]:
    """The callbacks of ``callbacks`` (``None``, one callback, or a possibly nested list), checked.

    Each must be a callback instance: a :class:`Callback`, or an object with ``set_model``,
    ``set_params`` and every ``on_*`` hook. A class, a string or a number is a ``ValueError``
    naming it, raised before anything has run.

    >>> from weightwise.callbacks import EarlyStopping, TerminateOnNaN
    >>> _check_callbacks([History(), [TerminateOnNaN()]])  # doctest: +ELLIPSIS
    [<...History object at ...>, <...TerminateOnNaN object at ...>]
    >>> _check_callbacks([EarlyStopping])
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `callbacks`: expected Callback instances. Received: callback=<class ...>
    """
    found = _flatten(callbacks) if callbacks is not None else []
    for callback in found:
        is_instance = not isinstance(callback, type) and all(
            callable(getattr(callback, hook, None)) for hook in ("set_model", "set_params", *_HOOKS)
        )
        if not is_instance:
            raise ValueError(
                "Invalid value for argument `callbacks`: expected Callback instances. "
                f"Received: callback={echo(callback)}"
            )
    return found


def _reads_batch_logs(callback: Any, hook: str) -> bool:
    if not isinstance(callback, Callback):
        return True
    # The base class's on_train_batch_end forwards to on_batch_end, its older name.
    for name in (hook, "on_batch_end") if hook == "on_train_batch_end" else (hook,):
        function = getattr(getattr(callback, name), "__func__", None)
        if function is getattr(Callback, name):
            continue
        # A built-in callback answers for its own hooks only, not for a subclass's override.
        owner = next((k for k in type(callback).__mro__ if "_reads_batch_logs" in vars(k)), None)
        if owner is None or function is None or vars(owner).get(name) is not function \
                or callback._reads_batch_logs(name):
            return True
    return False


class CallbackList(Callback):
    """Calls each hook on every callback in a list, in order: what the training loop drives.

    ``logs`` are flattened, their keys sorted, and tensors turned into floats
    before the callbacks see them; every callback of one call gets the same dict,
    so a key one adds (``learning_rate``) reaches those after it.

    Args:
        callbacks: a list (possibly nested) of callbacks.
        add_history: append a :class:`History` if the list has none.
        add_progbar: append a :class:`ProgbarLogger` if the list has none.
        model: the model, given to every callback with ``set_model``; its
            ``history`` is set to the list's :class:`History`.
        **params: given to every callback with ``set_params`` (``epochs``,
            ``steps``, ``verbose``).

    >>> from types import SimpleNamespace
    >>> from weightwise import ops
    >>> from weightwise.callbacks import LambdaCallback
    >>> model = SimpleNamespace(stop_training=False)
    >>> seen = []
    >>> callbacks = CallbackList(
    ...     [LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, logs)))],
    ...     add_history=True, model=model, epochs=1, steps=2, verbose=0,
    ... )
    >>> callbacks.on_train_begin()
    >>> callbacks.on_epoch_end(0, {"loss": ops.convert_to_tensor(0.5)})
    >>> callbacks.on_train_end()
    >>> seen, model.history.history
    ([(0, {'loss': 0.5})], {'loss': [0.5]})
    """

    def __init__(
        self,
        callbacks: Iterable[Callback] | Callback | None = None,
        add_history: bool = False,
        add_progbar: bool = False,
        model: Any = None,
        **params: Any,
    ) -> None:
        super().__init__()
        self.callbacks: list[Callback] = _check_callbacks(callbacks)
        # Callbacks that add keys to the logs (RegularizationMonitor) run first, so the others see them.
        self.callbacks.sort(key=lambda callback: not getattr(callback, "_writes_logs", False))
        self._in_begin_end_block_count = 0
        self._add_default_callbacks(flag(add_history, "add_history"), flag(add_progbar, "add_progbar"))
        self.set_model(model)
        self.set_params(params)

    def _add_default_callbacks(self, add_history: bool, add_progbar: bool) -> None:
        self._progbar: ProgbarLogger | None = None
        self._history: History | None = None
        for callback in self.callbacks:
            if isinstance(callback, ProgbarLogger):
                self._progbar = callback
            elif isinstance(callback, History):
                self._history = callback
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)

    def append(self, callback: Callback) -> None:
        """Add a callback at the end of the list (it gets the list's model and params)."""
        self.callbacks.append(callback)
        if self._model is not None:
            callback.set_model(self._model)
        if self.params:
            callback.set_params(self.params)

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def set_model(self, model: Any) -> None:
        if model is None:
            return
        # The callbacks first: one that refuses the model (ModelCheckpoint) leaves it as it was.
        for callback in self.callbacks:
            callback.set_model(model)
        super().set_model(model)
        if self._history is not None:
            model.history = self._history

    def _reads_batch_logs(self, hook: str) -> bool:
        """Whether some callback reads the logs that ``hook`` (``on_train_batch_end`` or
        ``on_test_batch_end``) is given; the training loop computes them only then.

        A callback whose hook is the base class's no-op reads nothing; a built-in one says
        itself (``_reads_batch_logs``), e.g. a progress bar with ``verbose=2`` does not; any
        other override, or an object that is not a :class:`Callback`, reads them.
        """
        return any(_reads_batch_logs(callback, hook) for callback in self.callbacks)

    def _abort(self) -> None:
        """Close a progress bar left open by a run that raised (the run's ``on_*_end`` never comes)."""
        if self._progbar is not None:
            self._progbar._reset_progbar()
        self._in_begin_end_block_count = 0

    def _on_begin(self) -> None:
        self._in_begin_end_block_count += 1

    def _on_end(self) -> None:
        self._in_begin_end_block_count -= 1
        if self._in_begin_end_block_count < 0:
            self._in_begin_end_block_count = 0
            raise ValueError("`on_xxx_end` called without corresponding `on_xxx_begin`")

    def _call(self, hook: str, *args: Any, logs: Any = None) -> None:
        # As in Keras: batch hooks get `logs` by keyword, epoch and begin/end hooks by position,
        # which is how LambdaCallback's functions receive them.
        logs = _pythonify_logs(logs) if logs else {}
        by_keyword = "batch" in hook
        for callback in self.callbacks:
            method = getattr(callback, hook)
            if by_keyword:
                method(*args, logs=logs)
            else:
                method(*args, logs)

    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_batch_end", batch, logs=logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_batch_end", batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_batch_end", batch, logs=logs)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._on_begin()
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_end", logs=logs)
        self._on_end()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._on_begin()
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_end", logs=logs)
        self._on_end()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._on_begin()
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_end", logs=logs)
        self._on_end()
