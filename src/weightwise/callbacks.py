"""Training callbacks: hooks into ``fit``/``evaluate``/``predict``, with Keras 3's API and decisions.

A callback is an object whose ``on_*`` hooks the training loop calls at fixed
points (start and end of training, of each epoch, of each batch), passing a
``logs`` dict of the current metric values. The training loop packs the
callbacks into a :class:`CallbackList` and calls its hooks; every built-in here
makes the same decisions as its Keras 3.15 counterpart on the same ``logs``.

What a callback needs from the model it is given with ``set_model``:
``stop_training`` (a bool the loop reads), ``get_weights()``/``set_weights()``
(``EarlyStopping(restore_best_weights=True)``), ``save_weights(path)``
(``ModelCheckpoint``), and ``optimizer.learning_rate``, a float that can be
read and assigned (``LearningRateScheduler``, ``ReduceLROnPlateau``).

>>> from types import SimpleNamespace
>>> model = SimpleNamespace(stop_training=False)
>>> callbacks = CallbackList([EarlyStopping(monitor="loss", patience=1)], add_history=True, model=model)
>>> callbacks.on_train_begin()
>>> for epoch, loss in enumerate([0.5, 0.4, 0.45, 0.42]):
...     callbacks.on_epoch_end(epoch, {"loss": loss})
...     if model.stop_training:
...         break
>>> model.history.epoch, model.history.history
([0, 1, 2], {'loss': [0.5, 0.4, 0.45]})
"""

from __future__ import annotations

import collections
import csv
import math
import numbers
import os
import string
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from weightwise import backend, ops
from weightwise.arguments import count, echo, flag, invalid, is_int, real

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]

_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
    "on_train_begin",
    "on_train_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)

# Direction of Keras's built-in metrics, by the names ``compile(metrics=[...])`` gives
# them (and their default names), for ``mode="auto"`` when the model cannot say.
_METRICS_UP = frozenset({
    "acc", "accuracy", "auc", "binary_accuracy", "binary_io_u", "categorical_accuracy",
    "concordance_correlation", "cosine_similarity", "f1_score", "f_beta_score", "fbeta_score", "io_u",
    "mean_io_u", "one_hot_io_u", "one_hot_mean_io_u", "pearson_correlation", "precision",
    "precision_at_recall", "r2_score", "recall", "recall_at_precision", "sensitivity_at_specificity",
    "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy", "specificity_at_sensitivity",
    "top_k_categorical_accuracy",
})
_METRICS_DOWN = frozenset({
    "bce", "binary_crossentropy", "categorical_crossentropy", "categorical_hinge", "hinge", "kl_divergence",
    "log_cosh_error", "logcosh", "mae", "mape", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_error", "mean_squared_logarithmic_error", "mse", "msle", "poisson",
    "root_mean_squared_error", "sparse_categorical_crossentropy", "squared_hinge",
})


# ---------------------------------------------------------------------------
# Small helpers


def _print(message: str, line_break: bool = True) -> None:
    """Write to ``sys.stdout`` and flush, as Keras's ``io_utils.print_msg`` does."""
    sys.stdout.write(f"{message}\n" if line_break else message)
    sys.stdout.flush()


def _to_float(value: Any) -> float:
    """A Python float from a number, a numpy scalar or a one-element tensor."""
    if isinstance(value, torch.Tensor):
        return float(ops.convert_to_numpy(value).reshape(()))
    return float(value)


def _in_floatx(value: Any) -> torch.Tensor:
    """``value`` as a 0-d tensor of :func:`weightwise.backend.floatx`, where Keras compares monitored values."""
    return torch.tensor(_to_float(value), dtype=backend.standardize_dtype(None))


def _read_learning_rate(optimizer: Any) -> float:
    """The optimizer's learning rate as Keras reads it: a Python float of a ``floatx`` value.

    Keras keeps the rate in a ``floatx`` variable, so what its callbacks read (and log,
    and compare with ``min_lr``) is rounded to ``float32``; reading it the same way
    makes the same decisions whatever precision the optimizer keeps.
    """
    if not hasattr(optimizer, "learning_rate"):
        raise ValueError(
            'Optimizer must have a "learning_rate" attribute. '
            f"Received: optimizer={type(optimizer).__name__}"
        )
    return float(_in_floatx(optimizer.learning_rate).item())


def _optimizer_of(model: Any, owner: str) -> Any:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{owner} needs the model's optimizer (`model.optimizer`), which is not set. "
            "Compile the model before training with this callback."
        )
    return optimizer


def _optimizers(optimizer: Any) -> list[tuple[str, Any]]:
    """``(name, optimizer)`` pairs: the parts of a multi-optimizer (``.optimizers``), else just it."""
    parts = getattr(optimizer, "optimizers", None)
    if parts is not None:
        return [(str(getattr(opt, "name", index)), opt) for index, opt in enumerate(parts)]
    return [("", optimizer)]


def _pythonify_logs(logs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Flatten nested dicts, sort the keys, and turn tensors and numpy scalars into floats.

    Values that do not convert (strings, multi-element arrays) are kept as they are,
    as Keras's ``pythonify_logs`` does.
    """
    result: dict[str, Any] = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, Mapping):
            result.update(_pythonify_logs(value))
            continue
        try:
            if isinstance(value, torch.Tensor):
                value = ops.convert_to_numpy(value)
            if isinstance(value, np.ndarray) and value.size == 1:
                value = value.reshape(())  # float() of a 1-element array of rank > 0 is deprecated
            value = float(value)
        except Exception:  # noqa: BLE001, S110 - anything that is not one number stays as it is
            pass
        result[key] = value
    return result


def _flatten(items: Any) -> list[Any]:
    if isinstance(items, (list, tuple)):
        return [leaf for item in items for leaf in _flatten(item)]
    return [items]


def _check_mode(mode: Any) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(
            f"Invalid value for argument `mode`: expected one of 'auto', 'min', 'max'. Received: mode={mode!r}"
        )
    return mode


def _verbose(value: Any, allowed: tuple[Any, ...] = (0, 1, 2)) -> int:
    """A verbosity: a bool or one of ``allowed`` (ints; ``"auto"`` where given), as an int (``"auto"`` is 1)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Integral) and int(value) in allowed:
        return int(value)
    if isinstance(value, str) and value in allowed:
        return 1
    expected = ", ".join(repr(v) for v in allowed)
    raise invalid("verbose", f"a bool or one of {expected}", value)


def _format_logs(logs: Mapping[str, Any]) -> str:
    """``loss: 0.1234 - accuracy: 0.9000``: 4 decimals, or 4-digit exponent form under 1e-3, as Keras prints."""
    parts = []
    for key, value in logs.items():
        try:
            number = _to_float(value)
        except (TypeError, ValueError):
            parts.append(f"{key}: {value}")
            continue
        parts.append(f"{key}: {number:.4f}" if abs(number) > 1e-3 else f"{key}: {number:.4e}")
    return " - ".join(parts)


def _format_time(seconds: float, unit_name: str) -> str:
    """A duration per unit as Keras's progress bar prints it: ``2s/step``, ``15ms/step``, ``80us/step``."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit_name}"
    return f"{seconds * 1e6:.0f}us/{unit_name}"


def _copy_weights(weights: Any) -> Any:
    """A copy of ``get_weights()`` output, so later training cannot change a kept snapshot."""
    if not isinstance(weights, (list, tuple)):
        return weights
    copied = []
    for weight in weights:
        if isinstance(weight, torch.Tensor):
            copied.append(weight.detach().clone())
        elif isinstance(weight, np.ndarray):
            copied.append(weight.copy())
        else:
            copied.append(weight)
    return type(weights)(copied) if isinstance(weights, tuple) else copied


# ---------------------------------------------------------------------------
# Base classes


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


class ProgbarLogger(Callback):
    """Prints progress and metrics to stdout, as ``fit(verbose=...)`` asks.

    Reads ``verbose``, ``epochs`` and ``steps`` from ``params``. ``verbose=0`` is
    silent; ``1`` shows a tqdm progress bar per epoch with the running metrics;
    ``2`` prints one line per epoch. With more than one epoch each epoch opens with
    ``Epoch i/n``. Inside ``fit`` the validation pass is silent; ``evaluate`` and
    ``predict`` get a bar (or line) of their own.

    >>> logger = ProgbarLogger()
    >>> logger.set_params({"verbose": 2, "epochs": 2, "steps": 10})
    >>> logger.on_train_begin()
    >>> logger.on_epoch_begin(0)
    Epoch 1/2
    >>> logger.on_epoch_end(0, {"loss": 0.25, "val_loss": 0.0001})
    10/10 - 0s - ...s/step - loss: 0.2500 - val_loss: 1.0000e-04
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.progbar: tqdm | None = None
        self.target: int | None = None
        self.verbose: int = 1
        self.epochs: int = 1
        self._called_in_fit = False
        self._open = False
        self._start = time.perf_counter()

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.verbose = _verbose(params.get("verbose", 1), (0, 1, 2, "auto"))
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Inside `fit`, the validation pass is silent.
        self._called_in_fit = True

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._reset_progbar()
        if self.verbose and self.epochs > 1:
            _print(f"Epoch {epoch + 1}/{self.epochs}")
        self._maybe_init_progbar()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Prediction results are not metrics: not shown.
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._finalize_progbar(logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._finalize_progbar(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # A bar left open by an interrupted epoch is closed, not left dangling.
        self._reset_progbar()

    def _reset_progbar(self) -> None:
        if self.progbar is not None:
            self.progbar.close()
        self.seen = 0
        self.progbar = None
        self._open = False

    def _maybe_init_progbar(self) -> None:
        if self._open:
            return
        self._open = True
        self._start = time.perf_counter()
        if self.verbose == 1:
            self.progbar = tqdm(
                total=self.target,
                unit="step",
                file=sys.stdout,
                leave=True,
                dynamic_ncols=True,
            )

    def _update_progbar(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._maybe_init_progbar()
        self.seen = batch + 1  # One-indexed.
        if self.progbar is not None:
            self.progbar.set_postfix_str(_format_logs(logs or {}), refresh=False)
            self.progbar.update(self.seen - self.progbar.n)

    def _finalize_progbar(self, logs: dict[str, Any] | None) -> None:
        logs = logs or {}
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
        if self.progbar is not None:
            self.progbar.total = self.target
            self.progbar.set_postfix_str(_format_logs(logs), refresh=False)
            self.progbar.update(self.target - self.progbar.n)
            self.progbar.close()
            self.progbar = None
        elif self.verbose == 2 and self.target:
            elapsed = time.perf_counter() - self._start
            digits = int(math.log10(self.target)) + 1
            line = f"{self.target:{digits}d}/{self.target} - {elapsed:.0f}s - {_format_time(elapsed / self.target, 'step')}"
            if logs:
                line += " - " + _format_logs(logs)
            _print(line)
        self._open = False


def _check_callbacks(callbacks: Any) -> list[Callback]:
    """The callbacks of ``callbacks`` (``None``, one callback, or a possibly nested list), checked.

    Each must be a callback instance: a :class:`Callback`, or an object with ``set_model``,
    ``set_params`` and every ``on_*`` hook. A class, a string or a number is a ``ValueError``
    naming it, raised before anything has run.

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
        logs = _pythonify_logs(logs)
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


# ---------------------------------------------------------------------------
# Built-in callbacks


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


class ModelCheckpoint(MonitorCallback):
    """Saves the model's weights (or the whole model) every epoch or every ``save_freq`` batches.

    ``filepath`` may hold format fields filled from the epoch (1-based), the batch
    (1-based, when saving by batch) and the logs: ``"ckpt-{epoch:02d}-{val_loss:.2f}.pt"``.
    With ``save_best_only=True`` it saves only when ``monitor`` improves on the best
    so far (or on ``initial_value_threshold``); if the logs lack ``monitor`` it
    warns and saves anyway.

    With ``save_weights_only=True`` it calls ``model.save_weights(path)``: Keras's
    format for a ``.weights.h5`` name, torch's for others (``.pt``). Otherwise it
    saves the whole model with ``model.save(path)`` to a ``.keras`` file: config,
    weights and optimizer state, so ``weightwise.models.load_model(path)`` followed by
    ``fit`` resumes on the same trajectory (Keras 3 loads these files too). Every save
    is atomic, and missing folders are created.

    Args:
        filepath: path (``str`` or ``os.PathLike``), possibly with format fields.
        monitor: the log name compared when ``save_best_only=True``.
        verbose: 1 prints a message for each save decision.
        save_best_only: save only on improvement of ``monitor``.
        save_weights_only: save the weights only (``model.save_weights``).
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see :class:`MonitorCallback`).
        save_freq: ``"epoch"``, or a positive number of training batches.
        initial_value_threshold: the value ``monitor`` must beat for a first save.

    >>> import os, tempfile
    >>> from types import SimpleNamespace
    >>> folder = tempfile.mkdtemp()
    >>> model = SimpleNamespace(save_weights=lambda path: open(path, "w").close())
    >>> checkpoint = ModelCheckpoint(os.path.join(folder, "w-{epoch:02d}-{loss:.1f}.pt"),
    ...                              monitor="loss", save_best_only=True, save_weights_only=True)
    >>> checkpoint.set_model(model)
    >>> for epoch, loss in enumerate([0.5, 0.7, 0.3]):
    ...     checkpoint.on_epoch_begin(epoch)
    ...     checkpoint.on_epoch_end(epoch, {"loss": loss})
    >>> sorted(os.listdir(folder))
    ['w-01-0.5.pt', 'w-03-0.3.pt']
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__(monitor, mode, real(initial_value_threshold, "initial_value_threshold", allow_none=True))
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise ValueError(
                f"Invalid value for argument `filepath`: expected a str or os.PathLike. Received: filepath={filepath!r}"
            ) from None
        if not isinstance(self.filepath, str):
            self.filepath = os.fsdecode(self.filepath)
        self._fields = _template_fields(self.filepath)
        self.verbose = _verbose(verbose)
        self.save_best_only = flag(save_best_only, "save_best_only")
        self.save_weights_only = flag(save_weights_only, "save_weights_only")
        if not self.save_weights_only and not self.filepath.endswith(".keras"):
            raise ValueError(
                "Invalid value for argument `filepath`: it must end in `.keras` (Keras model format), since "
                "save_weights_only=False saves the whole model. To save the weights alone, pass "
                f"save_weights_only=True (with a `.weights.h5` or `.pt` name). Received: filepath={self.filepath}"
            )
        if save_freq != "epoch" and (not is_int(save_freq) or save_freq <= 0):
            raise ValueError(
                "Invalid value for argument `save_freq`: expected 'epoch' or a positive integer number of "
                f"batches. Received: save_freq={echo(save_freq)}"
            )
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0

    def set_model(self, model: Any) -> None:
        """Store the model, and check that ``filepath``'s fields are names the model logs.

        Refused before training starts: a field that is not ``epoch``, ``batch``,
        ``learning_rate``, ``regularization_loss`` or one of the model's metric names
        (``val_``-prefixed or not), when the model can say what it logs.

        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(_log_names=lambda: ["loss", "mae"])
        >>> ModelCheckpoint("w-{epoch}-{val_mae:.2f}.keras").set_model(model)
        >>> ModelCheckpoint("w-{acc}.keras").set_model(model)
        Traceback (most recent call last):
        ...
        ValueError: Invalid value for argument `filepath`: its fields ['acc'] are not logged by the model, ...
        """
        logged = getattr(model, "_log_names", None)
        names = logged() if callable(logged) else None
        if names is not None:
            known = {"epoch", "batch", "learning_rate", "regularization_loss", *names}
            known |= {f"val_{name}" for name in known}
            unknown = [field for field in self._fields if field not in known]
            if unknown:
                raise ValueError(
                    f"Invalid value for argument `filepath`: its fields {unknown} are not logged by the model, which "
                    f"logs {sorted(known)}. Received: filepath={self.filepath!r}"
                )
        super().set_model(model)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._should_save_on_batch(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def _should_save_on_batch(self, batch: int) -> bool:
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            # A new epoch: batches are 0-based.
            add_batches = batch + 1
        else:
            add_batches = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add_batches
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None, filepath: str) -> bool:
        logs = logs or {}
        if not self.save_best_only:
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=4)
            return True
        if isinstance(current, (np.ndarray, torch.Tensor)) and current.ndim > 0:
            warnings.warn(
                "Can save best model only when `monitor` is a scalar value. "
                f"Received: {current}. Falling back to `save_best_only=False`.",
                stacklevel=4,
            )
            return True
        best_str = "None" if self.best is None else f"{_to_float(self.best):.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to {_to_float(current):.5f}, "
                    f"saving model to {filepath}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        try:
            if not self._should_save_model(epoch, batch, logs, filepath):
                return
            dirname = os.path.dirname(filepath)
            if dirname:
                os.makedirs(dirname, exist_ok=True)
            if self.save_weights_only:
                save_weights = getattr(self.model, "save_weights", None)
                if not callable(save_weights):
                    raise NotImplementedError(
                        "ModelCheckpoint(save_weights_only=True) saves with `model.save_weights(path)`, which "
                        f"{type(self.model).__name__} does not have."
                    )
                save_weights(filepath)
            else:
                save = getattr(self.model, "save", None)
                if not callable(save):
                    raise NotImplementedError(
                        f"ModelCheckpoint(save_weights_only=False) saves the whole model with `model.save()`, "
                        f"which {type(self.model).__name__} does not have. Use a weightwise Model, or pass "
                        "`save_weights_only=True` to save the weights with `model.save_weights()`."
                    )
                save(filepath)
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")
        except IsADirectoryError:
            raise OSError(
                "Please specify a non-directory filepath for ModelCheckpoint. "
                f"Filepath used is an existing directory: {filepath}"
            ) from None

    def _get_file_path(self, epoch: int, batch: int | None, logs: dict[str, Any]) -> str:
        """``filepath`` with its fields filled: ``epoch`` and ``batch`` 1-based, then the logs."""
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(
                f"Invalid value for argument `filepath`: failed to format this callback filepath: {self.filepath!r}. "
                f"Reason: {type(e).__name__}: {e}. The logs hold {sorted(logs)}."
            ) from None


def _template_fields(filepath: str) -> list[str]:
    """The names of ``filepath``'s format fields, each checked to format a number.

    Every field must be a plain name (no ``{}``, ``{0}``, ``{loss.real}``, ``{loss[0]}``), with a
    conversion and format spec that format an int (``epoch``, ``batch``) or a float (a log
    value): ``"ckpt-{epoch:02d}-{val_loss:.2f}"`` passes, ``"{loss:q}"`` does not.

    >>> _template_fields("ckpt-{epoch:02d}-{val_loss:.2f}.keras")
    ['epoch', 'val_loss']
    >>> _template_fields("ckpt-{loss:d}.keras")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `filepath`: the field {loss:d} cannot format a log value (Unknown format code 'd' for object of type 'float'). Received: filepath='ckpt-{loss:d}.keras'
    """
    formatter = string.Formatter()

    def refuse(reason: str) -> ValueError:
        return ValueError(f"Invalid value for argument `filepath`: {reason}. Received: filepath={filepath!r}")

    try:
        parsed = list(formatter.parse(filepath))
    except ValueError as error:
        raise refuse(f"it is not a valid format template ({error})") from None
    fields = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not field.isidentifier():
            raise refuse(f"the field {shown} is not a log name (fields are names such as {{epoch}} or {{val_loss}})")
        sample = 1 if field in ("epoch", "batch") else 0.5
        try:
            formatter.format_field(formatter.convert_field(sample, conversion), spec)
        except (ValueError, TypeError) as error:
            what = "an epoch or batch number" if field in ("epoch", "batch") else "a log value"
            raise refuse(f"the field {shown} cannot format {what} ({error})") from None
        fields.append(field)
    return fields


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


class CSVLogger(Callback):
    """Writes each epoch's logs as a row of a CSV file, as Keras does.

    The header is ``epoch`` then the sorted log names of the first epoch; when
    those have no ``val_`` name, the ``val_`` names are added too (``NA`` until
    they appear). Rows end with ``\\r\\n`` (the csv module's default). With
    ``append=True`` an existing file is continued, without a second header.

    Args:
        filename: path of the CSV file.
        separator: the field separator.
        append: continue an existing file instead of overwriting it.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> logger = CSVLogger(path)
    >>> logger.on_train_begin()
    >>> logger.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
    >>> logger.on_epoch_end(1, {"loss": 0.25, "val_loss": 0.5})
    >>> logger.on_train_end()
    >>> with open(path, newline="") as f:
    ...     print(f.read().replace("\\r\\n", "\\n"), end="")
    epoch,loss,val_loss
    0,0.5,0.75
    1,0.25,0.5
    """

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(
                f"Invalid value for argument `separator`: expected a one-character string. Received: separator={separator!r}"
            )
        try:
            self.filename = os.fspath(filename)
        except TypeError:
            raise ValueError(
                f"Invalid value for argument `filename`: expected a str or os.PathLike. Received: filename={filename!r}"
            ) from None
        self.sep = separator
        self.append = flag(append, "append")
        self.writer: csv.DictWriter[str] | None = None
        self.keys: list[str] | None = None
        self.append_header = True
        self.csv_file: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")  # noqa: SIM115 - kept open across epochs
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.csv_file is None or self.csv_file.closed:
            # Driven without on_train_begin: open the file now.
            self.on_train_begin()

        def handle_value(value: Any) -> Any:
            is_zero_dim = isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0
            if isinstance(value, str):
                return value
            if isinstance(value, torch.Tensor) and not is_zero_dim:
                value = ops.convert_to_numpy(value)
            if isinstance(value, collections.abc.Iterable) and not is_zero_dim:
                return f'"[{", ".join(map(str, value))}]"'
            if isinstance(value, torch.Tensor):
                return value.item()
            return value

        if self.keys is None:
            self.keys = sorted(logs.keys())
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])

        if self.writer is None:

            class CustomDialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys], dialect=CustomDialect)
            if self.append_header:
                self.writer.writeheader()

        row = {"epoch": epoch}
        row.update((key, handle_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


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


def _log_learning_rates(model: Any, logs: dict[str, Any] | None, owner: str) -> None:
    """Add ``learning_rate`` (``learning_rate_<name>`` per part of a multi-optimizer) to ``logs``."""
    if logs is None:
        return
    for name, optimizer in _optimizers(_optimizer_of(model, owner)):
        logs[f"learning_rate_{name}" if name else "learning_rate"] = _read_learning_rate(optimizer)


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
