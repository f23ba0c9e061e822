"""``ModelCheckpoint``: save the model or its weights during training."""

from __future__ import annotations

import os
import string
import warnings
from typing import Any

import numpy as np
import torch

from weightwise.arguments import echo, flag, is_int, real
from weightwise.callbacks._helpers import _print, _to_float, _verbose
from weightwise.callbacks.monitor_callback import MonitorCallback


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
        if not self.save_weights_only and not self.filepath.endswith((".keras", ".h5", ".hdf5")):
            raise ValueError(
                "Invalid value for argument `filepath`: it must end in `.keras` (Keras model format) or `.h5` "
                "(Keras's legacy HDF5 format), since "
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

    def _reads_batch_logs(self, hook: str) -> bool:
        return self.save_freq != "epoch"

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
