"""Keras 3 metrics on torch tensors: stateful objects that average over batches.

A metric accumulates with ``update_state(y_true, y_pred, sample_weight=None)``,
reports with ``result()`` and starts over with ``reset_state()``. The values and
the weighting are Keras 3's: a :class:`MeanMetricWrapper` averages a per-sample
function (``accuracy``, ``mean_squared_error``, ...) over every sample seen,
weighted by ``sample_weight``; results are in the metric's ``dtype``
(``floatx``, ``float32``, unless given).

>>> m = BinaryAccuracy()
>>> m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
>>> m.result()
tensor(0.7500)
>>> m.update_state([[1]], [[0.2]])
>>> m.result()
tensor(0.6000)

:func:`get` resolves the entries of ``compile(metrics=[...])`` as Keras's
``compile`` does, including the name each metric is logged under.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from weightwise import backend, losses, ops
from weightwise.arguments import invalid, real
from weightwise.losses import (
    _same_shape_or_broadcast,
    squeeze_or_expand_to_same_rank,
)
from weightwise.serialization import ObjectFamily, serialize_keras_object, to_snake_case

__all__ = [
    "Accuracy",
    "AutoAccuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "KLDivergence",
    "Mean",
    "MeanAbsoluteError",
    "MeanMetricWrapper",
    "MeanSquaredError",
    "Metric",
    "SparseCategoricalAccuracy",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "deserialize",
    "get",
    "kl_divergence",
    "serialize",
    "sparse_categorical_accuracy",
]




def _floatx() -> torch.dtype:
    return backend.standardize_dtype(None)


# -- per-sample functions ---------------------------------------------------------------
kl_divergence = losses.kl_divergence  # one function for both families, as in Keras


def accuracy(y_true: Any, y_pred: Any) -> torch.Tensor:
    """1 where ``y_pred`` equals ``y_true`` exactly, else 0 (in ``floatx``).

    >>> accuracy([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    tensor([[0.],
            [1.],
            [1.],
            [1.]])
    """
    y_pred = ops.argument_tensor(y_pred, "y_pred", real=True)
    y_true = ops.argument_tensor(y_true, "y_true", real=True).to(dtype=y_pred.dtype, device=y_pred.device)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    _same_shape_or_broadcast(y_true, y_pred)
    return torch.eq(y_true, y_pred).to(_floatx())


def _validate_threshold(value: Any) -> float:
    # Predictions are compared with it as probabilities; outside [0, 1] every sample is one class.
    return real(value, "threshold", low=0, high=1)


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> torch.Tensor:
    """1 where ``y_pred > threshold`` equals the label ``y_true`` (0 or 1), else 0.

    ``threshold`` is a probability: a float in [0, 1].

    >>> binary_accuracy([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    tensor([[1.],
            [1.],
            [1.],
            [0.]])
    """
    threshold = _validate_threshold(threshold)
    y_pred = ops.argument_tensor(y_pred, "y_pred", real=True)
    y_true = ops.argument_tensor(y_true, "y_true", real=True).to(device=y_pred.device)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    _same_shape_or_broadcast(y_true, y_pred)
    y_pred = torch.gt(y_pred, threshold).to(y_true.dtype)
    return torch.eq(y_true, y_pred).to(_floatx())


def _class_scores(y_pred: Any) -> torch.Tensor:
    """Predictions with a class axis (rank >= 1) to take the arg-max over."""
    y_pred = ops.argument_tensor(y_pred, "y_pred", real=True)
    if y_pred.dim() == 0:
        raise ValueError(
            f"Argument `y_pred` must be at least rank 1 (scores per class). Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    return y_pred


def categorical_accuracy(y_true: Any, y_pred: Any) -> torch.Tensor:
    """1 where the arg-max of ``y_pred`` is the arg-max of the one-hot ``y_true``, else 0.

    >>> categorical_accuracy([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    tensor([0., 1.])
    """
    y_pred = _class_scores(y_pred)
    y_true = ops.argument_tensor(y_true, "y_true", real=True).to(device=y_pred.device)
    _same_shape_or_broadcast(y_true, y_pred)
    y_true = torch.argmax(y_true, dim=-1).to(y_pred.dtype)
    original_shape = y_true.shape
    reshape_matches = False
    if y_true.dim() == y_pred.dim():
        y_true = y_true.squeeze(-1)
        reshape_matches = True
    y_pred = torch.argmax(y_pred, dim=-1).to(y_true.dtype)
    matches = torch.eq(y_true, y_pred).to(_floatx())
    if reshape_matches:
        matches = matches.reshape(original_shape)
    return matches


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> torch.Tensor:
    """1 where the arg-max of ``y_pred`` is the integer label ``y_true``, else 0.

    >>> sparse_categorical_accuracy([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    tensor([0., 1.])
    """
    y_pred = _class_scores(y_pred)
    y_true = ops.argument_tensor(y_true, "y_true", real=True).to(dtype=y_pred.dtype, device=y_pred.device)
    original_shape = y_true.shape
    reshape_matches = False
    if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
        reshape_matches = True
    predicted = torch.argmax(y_pred, dim=-1).to(y_true.dtype)
    _same_shape_or_broadcast(y_true, predicted, "Argument `y_true` must hold one class label per row of `y_pred`",
                             shown=(original_shape, y_pred.shape))
    matches = torch.eq(y_true, predicted).to(_floatx())
    if reshape_matches:
        matches = matches.reshape(original_shape)
    if matches.dim() > 1 and matches.shape[-1] == 1:
        matches = matches.squeeze(-1)
    return matches


# -- stateful metrics -------------------------------------------------------------------
class Metric:
    """Base class of metrics: ``update_state``, ``result``, ``reset_state``, ``get_config``.

    State lives in tensors made with :meth:`add_variable`, which the default
    :meth:`reset_state` sets back to zero. Updates never track gradients.
    Calling a metric updates it and returns the result.

    Args:
        dtype: the dtype of the state and the result; default ``floatx``.
        name: the name the metric is logged under; default the snake_case class name.

    >>> class Total(Metric):
    ...     def __init__(self, name="total", dtype=None):
    ...         super().__init__(name=name, dtype=dtype)
    ...         self.add_variable((), name="sum")
    ...     def update_state(self, values):
    ...         self.sum = self.sum + ops.sum(values)
    ...     def result(self):
    ...         return self.sum
    >>> total = Total()
    >>> total([1.0, 2.0]), total([3.0])
    (tensor(3.), tensor(6.))
    >>> total.reset_state()
    >>> total.result()
    tensor(0.)
    """

    def __init__(self, dtype: Any = None, name: str | None = None) -> None:
        if name is None:
            name = to_snake_case(type(self).__name__)
        if not isinstance(name, str):
            raise invalid("name", "a str", name)
        self.name = name
        self._dtype = backend.standardize_dtype(dtype)
        if not self._dtype.is_floating_point:
            raise invalid("dtype", "a float dtype", dtype)
        self._variable_names: list[str] = []

    @property
    def dtype(self) -> str:
        """The metric's dtype, as a string (``'float32'``)."""
        return str(self._dtype).replace("torch.", "")

    def add_variable(
        self, shape: Any = (), initializer: str = "zeros", dtype: Any = None, name: str | None = None
    ) -> torch.Tensor:
        """Create a zero state tensor as attribute ``name``, reset by :meth:`reset_state`."""
        if initializer != "zeros":
            raise ValueError(
                "Invalid value for argument `initializer`: metric state starts at 'zeros'. "
                f"Received: initializer={initializer!r}"
            )
        if not isinstance(name, str) or not name.isidentifier():
            raise invalid("name", "an identifier", name)
        value = torch.zeros(tuple(shape), dtype=self._dtype if dtype is None else backend.standardize_dtype(dtype))
        setattr(self, name, value)
        self._variable_names.append(name)
        return value

    @property
    def variables(self) -> list[torch.Tensor]:
        """The current state tensors, in creation order."""
        return [getattr(self, name) for name in self._variable_names]

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        """Accumulate statistics; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `update_state`.")

    def result(self) -> torch.Tensor:
        """The current value; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `result`.")

    def reset_state(self) -> None:
        """Set every state tensor back to zero."""
        for name in self._variable_names:
            setattr(self, name, torch.zeros_like(getattr(self, name)))

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.no_grad():
            self.update_state(*args, **kwargs)
            return self.result()

    def get_config(self) -> dict[str, Any]:
        """``name`` and ``dtype``, as Keras's."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Metric:
        """Rebuild a metric from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _reduce_to_samplewise_values(
    values: torch.Tensor, sample_weight: Any, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keras's ``reduce_to_samplewise_values`` with ``mean``: one value (and weight) per sample."""
    mask = getattr(values, "_keras_mask", None)
    values = values.detach().to(dtype)
    if sample_weight is not None:
        sample_weight = ops.argument_tensor(sample_weight, "sample_weight", real=True)
        sample_weight = sample_weight.detach().to(dtype=dtype, device=values.device)
        if mask is not None:
            sample_weight = losses._apply_mask(sample_weight, mask.to(values.device), dtype, reduction="sum")
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim, values_ndim = sample_weight.dim(), values.dim()
        if values_ndim > weight_ndim:
            values = torch.mean(values, dim=list(range(weight_ndim, values_ndim)))
        try:
            sample_weight = torch.broadcast_to(sample_weight, values.shape)
        except RuntimeError:
            raise ValueError(
                "Invalid value for argument `sample_weight`: its shape must broadcast to the shape of the values. "
                f"Received: sample_weight.shape={tuple(sample_weight.shape)} for values of shape {tuple(values.shape)}"
            ) from None
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = torch.mean(sample_weight, dim=list(range(1, weight_ndim)))
    if values.dim() > 1:
        values = torch.mean(values, dim=list(range(1, values.dim())))
    return values, sample_weight


# State dtypes that hold any batch size exactly.
_EXACT_COUNTS = (torch.float32, torch.float64)


class Mean(Metric):
    """The weighted mean of all values seen: ``sum(values * weights) / sum(weights)``.

    Values of rank above one are first averaged to one value per sample (or
    down to ``sample_weight``'s rank); without weights each sample weighs 1,
    and a scalar counts as one sample. A scalar ``sample_weight`` weighs every
    sample of the batch. Empty: 0.

    >>> m = Mean()
    >>> m.update_state([1, 3, 5, 7])
    >>> m.result()
    tensor(4.)
    >>> m.reset_state()
    >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    >>> m.result()
    tensor(2.)
    """

    def __init__(self, name: str = "mean", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.add_variable((), name="total")
        self.add_variable((), name="count")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        """Add ``values`` (weighted by ``sample_weight``) to the mean."""
        if type(sample_weight) is int and self._dtype in _EXACT_COUNTS and isinstance(values, torch.Tensor) \
                and values.dim() == 0 and values.is_floating_point() and getattr(values, "_keras_mask", None) is None:
            # fit's loss trackers: one value weighted by the batch size. The same numbers as below
            # (a batch size is exact in float32), without building a weight tensor.
            value = values.detach().to(self._dtype)
            self.total = self.total.to(value.device) + value * sample_weight
            self.count = self.count.to(value.device) + sample_weight
            return
        with torch.no_grad():
            values = ops.argument_tensor(values, "values", real=True)
            values, sample_weight = _reduce_to_samplewise_values(values, sample_weight, self._dtype)
            if sample_weight is not None:
                count = torch.sum(sample_weight)
            else:
                count = torch.tensor(float(values.shape[0]) if values.dim() >= 1 else 1.0, dtype=self._dtype)
            device = values.device
            self.total = self.total.to(device) + torch.sum(values)
            self.count = self.count.to(device) + count.to(dtype=self._dtype, device=device)

    def result(self) -> torch.Tensor:
        return ops.divide_no_nan(self.total, self.count.to(self.total.device))


class MeanMetricWrapper(Mean):
    """The :class:`Mean` of a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    >>> def absolute_error(y_true, y_pred):
    ...     return ops.absolute(ops.subtract(y_true, y_pred))
    >>> m = MeanMetricWrapper(absolute_error, name="absolute_error")
    >>> m.update_state([0.0, 1.0], [1.0, 3.0], sample_weight=[3.0, 1.0])
    >>> m.result()
    tensor(1.2500)
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise invalid("fn", "a callable", fn)
        # name=None: Keras's default, the snake_case class name (mean_metric_wrapper for this class).
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add ``fn(y_true, y_pred)`` of this batch to the mean."""
        mask = getattr(y_pred, "_keras_mask", None)
        with torch.no_grad():
            values = self._fn(y_true, y_pred, **self._fn_kwargs)
            if mask is not None:
                mask = ops.convert_to_tensor(mask)
                if sample_weight is not None:
                    sample_weight = ops.convert_to_tensor(sample_weight).to(dtype=self._dtype, device=mask.device)
                sample_weight = losses._apply_mask(sample_weight, mask, self._dtype, reduction="sum")
            super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        # from_config is cls(**config): the function belongs in the config only when the
        # constructor takes it; the built-in subclasses fix their own.
        if "fn" in inspect.signature(type(self).__init__).parameters:
            config["fn"] = serialize_keras_object(self._fn)
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Metric:
        config = dict(config)
        if "fn" in config:
            config["fn"] = _deserialize_function(config["fn"])
        return cls(**config)


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly (see :func:`accuracy`).

    >>> m = Accuracy()
    >>> m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    >>> m.result()
    tensor(0.7500)
    """

    def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
        super().__init__(accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches the binary labels (see :func:`binary_accuracy`).

    Keras's argument order: ``BinaryAccuracy(name, dtype, threshold)``.

    >>> m = BinaryAccuracy(threshold=0.7)
    >>> m.update_state([1, 1, 0, 0], [0.98, 0.6, 0.0, 0.6])
    >>> m.result()
    tensor(0.7500)
    """

    def __init__(self, name: str = "binary_accuracy", dtype: Any = None, threshold: float = 0.5) -> None:
        threshold = _validate_threshold(threshold)
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the arg-max prediction matches the one-hot label (see :func:`categorical_accuracy`).

    >>> m = CategoricalAccuracy()
    >>> m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    >>> m.result()
    tensor(0.5000)
    """

    def __init__(self, name: str = "categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the arg-max prediction matches the integer label (see :func:`sparse_categorical_accuracy`).

    >>> m = SparseCategoricalAccuracy()
    >>> m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    >>> m.result()
    tensor(0.5000)
    """

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)


class MeanSquaredError(MeanMetricWrapper):
    """The mean of :func:`weightwise.losses.mean_squared_error` over all samples seen.

    >>> m = MeanSquaredError()
    >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    >>> m.result()
    tensor(0.2500)
    """

    def __init__(self, name: str = "mean_squared_error", dtype: Any = None) -> None:
        super().__init__(losses.mean_squared_error, name=name, dtype=dtype)


class KLDivergence(MeanMetricWrapper):
    """The mean of :func:`weightwise.losses.kl_divergence` over all samples seen.

    >>> metric = KLDivergence()
    >>> metric.update_state([[0.0, 1.0], [1.0, 0.0]], [[0.4, 0.6], [0.4, 0.6]])
    >>> round(float(metric.result()), 4)
    0.7136
    """

    def __init__(self, name: str = "kl_divergence", dtype: Any = None) -> None:
        super().__init__(losses.kl_divergence, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """The mean of :func:`weightwise.losses.mean_absolute_error` over all samples seen.

    >>> m = MeanAbsoluteError()
    >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    >>> m.result()
    tensor(0.2500)
    """

    def __init__(self, name: str = "mean_absolute_error", dtype: Any = None) -> None:
        super().__init__(losses.mean_absolute_error, name=name, dtype=dtype)


def _shape(x: Any) -> tuple[int, ...]:
    if hasattr(x, "shape"):
        return tuple(x.shape)
    return tuple(int(d) for d in x)


def _accuracy_class(y_true_shape: tuple[int, ...], y_pred_shape: tuple[int, ...]) -> type[MeanMetricWrapper]:
    """Keras's ``is_binary_or_sparse_categorical``: which accuracy ``'accuracy'`` means for these shapes."""
    true_last = y_true_shape[-1] if y_true_shape else 1
    pred_last = y_pred_shape[-1] if y_pred_shape else 1
    if pred_last == 1:
        return BinaryAccuracy
    if len(y_true_shape) < len(y_pred_shape) or (true_last == 1 and pred_last > 1):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


class AutoAccuracy(MeanMetricWrapper):
    """``metrics=['accuracy']`` as Keras's ``compile`` reads it, decided on the first update.

    Keras picks the accuracy from the shapes of the targets and predictions,
    never from the loss: predictions with a last axis of 1 mean
    :class:`BinaryAccuracy`; targets of lower rank than the predictions, or a
    last axis of 1 against several classes, :class:`SparseCategoricalAccuracy`;
    anything else :class:`CategoricalAccuracy`. This metric applies that rule to
    the first batch it sees and keeps the choice (``resolved``) from then on,
    through ``reset_state``.

    >>> m = AutoAccuracy()
    >>> m.update_state([2, 1], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    >>> m.resolved.__name__, m.result()
    ('SparseCategoricalAccuracy', tensor(0.5000))
    """

    def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
        super().__init__(accuracy, name=name, dtype=dtype)
        self.resolved: type[MeanMetricWrapper] | None = None

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        if self.resolved is None:
            self.resolved = _accuracy_class(_shape(ops.argument_tensor(y_true, "y_true", real=True)),
                                            _shape(ops.argument_tensor(y_pred, "y_pred", real=True)))
            self._fn = self.resolved(dtype=self.dtype)._fn
        super().update_state(y_true, y_pred, sample_weight=sample_weight)


# Function configs name the function; strings name the classes (see `get`).
_FAMILY = ObjectFamily(
    "metric",
    "keras.metrics",
    [
        Metric,
        Mean,
        MeanMetricWrapper,
        Accuracy,
        BinaryAccuracy,
        CategoricalAccuracy,
        SparseCategoricalAccuracy,
        MeanSquaredError,
        MeanAbsoluteError,
        KLDivergence,
        AutoAccuracy,
        accuracy,
        binary_accuracy,
        categorical_accuracy,
        sparse_categorical_accuracy,
        kl_divergence,
    ],
    extra_names={"mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError},
)

# A string naming an accuracy function means its class, as in Keras's `metrics.get`.
_CLASS_OF_FUNCTION: dict[Any, type[Metric]] = {
    accuracy: Accuracy,
    binary_accuracy: BinaryAccuracy,
    categorical_accuracy: CategoricalAccuracy,
    sparse_categorical_accuracy: SparseCategoricalAccuracy,
}


def _deserialize_function(config: Any) -> Any:
    """A function from its config: a metric function, else a loss function (``MeanSquaredError``'s)."""
    if callable(config):
        return config
    try:
        found = _FAMILY.deserialize(config)
    except ValueError:
        found = None
    if found is None or inspect.isclass(found):
        # 'mean_squared_error' names the metric class here but the function in losses.
        try:
            return losses.deserialize(config)
        except ValueError:
            if found is None:
                raise
    return found


def serialize(metric: Any) -> Any:
    """Return the Keras 3 config dict of a metric.

    >>> serialize(BinaryAccuracy(threshold=0.7))["config"]
    {'name': 'binary_accuracy', 'dtype': 'float32', 'threshold': 0.7}
    """
    return _FAMILY.serialize(metric)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build a metric from a Keras config dict, or return what a string id names (a class is instantiated).

    >>> deserialize({"class_name": "Mean", "config": {"name": "loss", "dtype": "float32"}})
    <Mean name=loss>
    """
    return _FAMILY.deserialize(config, custom_objects)


def _object_name(obj: Any) -> str:
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    return to_snake_case(getattr(obj, "__name__", None) or type(obj).__name__)


def get(identifier: Any, loss: Any = None, y_true: Any = None, y_pred: Any = None) -> Metric | None:
    """Resolve an entry of ``compile(metrics=[...])`` to a :class:`Metric`, named as Keras logs it.

    - ``'accuracy'`` / ``'acc'`` (any case): with ``y_true`` and ``y_pred``
      (tensors or shapes) given, the accuracy Keras's ``compile`` picks for
      those shapes; without them an :class:`AutoAccuracy` that decides on its
      first update. ``loss`` is accepted for the training loop's convenience
      but does not take part: Keras 3 decides from the shapes alone.
    - other strings: the metric class (``'mae'``, ``'mean_absolute_error'``,
      ``'MeanAbsoluteError'``, ``'binary_accuracy'``, ...) or the mean of a loss
      function (``'binary_crossentropy'``), **named as written**, as in
      ``history.history``;
    - a :class:`Metric` passes through with its own name; a ``Metric`` class
      is instantiated; a config dict is deserialized;
    - any other callable ``fn(y_true, y_pred)`` becomes a
      :class:`MeanMetricWrapper` named after it.

    ``None`` stays ``None``; anything else raises a ``ValueError``.

    >>> get("accuracy", y_true=(32,), y_pred=(32, 10))
    <SparseCategoricalAccuracy name=accuracy>
    >>> get("mae")
    <MeanAbsoluteError name=mae>
    >>> get("acc")
    <AutoAccuracy name=acc>
    """
    if identifier is None:
        return None
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        if y_true is not None and y_pred is not None:
            return _accuracy_class(_shape(y_true), _shape(y_pred))(name=identifier)
        return AutoAccuracy(name=identifier)
    if isinstance(identifier, str):
        try:
            obj = _FAMILY.deserialize(identifier)
        except ValueError as error:
            try:
                obj = losses.deserialize(identifier)
            except ValueError:
                raise error from None
            if inspect.isclass(obj) or not callable(obj):
                raise error from None
        obj = _CLASS_OF_FUNCTION.get(obj, obj)
        metric = obj() if inspect.isclass(obj) else obj
        if not isinstance(metric, Metric):
            metric = MeanMetricWrapper(metric)
        metric.name = identifier
        return metric
    if isinstance(identifier, Mapping):
        obj = _FAMILY.deserialize(identifier)
    else:
        obj = identifier
    if inspect.isclass(obj):
        if issubclass(obj, Metric):
            return obj()
        raise ValueError(f"Could not interpret metric identifier: {identifier!r}. The class is not a Metric.")
    if isinstance(obj, Metric):
        return obj
    if callable(obj):
        return MeanMetricWrapper(obj, name=_object_name(obj))
    raise ValueError(
        f"Could not interpret metric identifier: {identifier!r}. Expected None, a string id, a config dict, "
        "a Metric or a function fn(y_true, y_pred) returning per-sample values."
    )
