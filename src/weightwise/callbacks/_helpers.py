"""What several callbacks share: the hook names, metric directions, log formatting and optimizer access."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from weightwise import backend, ops
from weightwise.arguments import invalid
from weightwise.callbacks._ranks import is_primary

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




def _print(message: str, line_break: bool = True) -> None:
    """Write to ``sys.stdout`` and flush, as Keras's ``io_utils.print_msg`` does (from rank 0 only, under torchrun)."""
    if not is_primary():
        return
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


def _log_learning_rates(model: Any, logs: dict[str, Any] | None, owner: str) -> None:
    """Add ``learning_rate`` (``learning_rate_<name>`` per part of a multi-optimizer) to ``logs``."""
    if logs is None:
        return
    for name, optimizer in _optimizers(_optimizer_of(model, owner)):
        logs[f"learning_rate_{name}" if name else "learning_rate"] = _read_learning_rate(optimizer)
