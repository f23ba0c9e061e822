"""Metrics: per-sample functions, stateful metrics and compile-style ``get`` against Keras 3 and NumPy."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_class_serialization_test, to_numpy

from weightwise import losses, metrics
from weightwise.metrics import (
    Accuracy,
    AutoAccuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    Mean,
    MeanAbsoluteError,
    MeanMetricWrapper,
    MeanSquaredError,
    Metric,
    SparseCategoricalAccuracy,
)


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(abs(hash(repr(parts))) % 2**32)


# --------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------
def _binary(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    r = rng("binary", shape)
    return r.integers(0, 2, size=shape).astype("float32"), r.uniform(0, 1, size=shape).astype("float32")


def _categorical(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    r = rng("categorical", shape)
    labels = r.integers(0, shape[-1], size=shape[:-1])
    return np.eye(shape[-1], dtype="float32")[labels], r.uniform(0, 1, size=shape).astype("float32")


def _sparse(shape: tuple[int, ...], trailing_one: bool) -> tuple[np.ndarray, np.ndarray]:
    r = rng("sparse", shape, trailing_one)
    labels = r.integers(0, shape[-1], size=shape[:-1] + ((1,) if trailing_one else ()))
    return labels, r.uniform(0, 1, size=shape).astype("float32")


@pytest.mark.parametrize("shape", [(8,), (8, 1), (8, 3), (4, 5, 2)], ids=str)
@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_binary_accuracy_matches_keras(keras: Any, shape: tuple[int, ...], threshold: float) -> None:
    y, p = _binary(shape)
    ours = metrics.binary_accuracy(y, p, threshold=threshold)
    theirs = keras.metrics.binary_accuracy(y, p, threshold=threshold)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))
    np.testing.assert_array_equal(to_numpy(ours), ((p > threshold) == y).astype("float32"))


@pytest.mark.parametrize("shape", [(8, 4), (3, 5, 4)], ids=str)
def test_categorical_accuracy_matches_keras(keras: Any, shape: tuple[int, ...]) -> None:
    y, p = _categorical(shape)
    ours = metrics.categorical_accuracy(y, p)
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(keras.metrics.categorical_accuracy(y, p)))
    np.testing.assert_array_equal(to_numpy(ours), (y.argmax(-1) == p.argmax(-1)).astype("float32"))


@pytest.mark.parametrize("shape", [(8, 4), (3, 5, 4)], ids=str)
@pytest.mark.parametrize("trailing_one", [False, True])
def test_sparse_categorical_accuracy_matches_keras(keras: Any, shape: tuple[int, ...], trailing_one: bool) -> None:
    y, p = _sparse(shape, trailing_one)
    ours = metrics.sparse_categorical_accuracy(y, p)
    theirs = keras.metrics.sparse_categorical_accuracy(y, p)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))
    np.testing.assert_array_equal(
        to_numpy(ours).reshape(-1), (y.reshape(-1) == p.reshape(-1, shape[-1]).argmax(-1)).astype("float32")
    )


@pytest.mark.parametrize("shapes", [((6,), (6,)), ((6, 1), (6,)), ((6,), (6, 1)), ((6, 2), (6, 2))], ids=str)
def test_accuracy_matches_keras(keras: Any, shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    r = rng("accuracy", shapes)
    y = r.integers(0, 3, size=shapes[0]).astype("float32")
    p = r.integers(0, 3, size=shapes[1]).astype("float32")
    from keras.src.metrics.accuracy_metrics import (
        accuracy as keras_accuracy,  # not exported by Keras
    )

    ours = metrics.accuracy(y, p)
    theirs = keras_accuracy(y, p)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))


# --------------------------------------------------------------------------------------
# Stateful metrics against Keras, over several batches
# --------------------------------------------------------------------------------------
WEIGHT_KINDS = ["none", "vector", "column", "scalar", "python_int"]


def _sample_weight(kind: str, batch: int, seed: int) -> Any:
    r = rng("w", kind, batch, seed)
    if kind == "none":
        return None
    if kind == "vector":
        w = r.uniform(0, 2, size=batch).astype("float32")
        w[0] = 0.0
        return w
    if kind == "column":
        return r.uniform(0, 2, size=(batch, 1)).astype("float32")
    if kind == "scalar":
        return np.asarray(r.uniform(0.5, 2), dtype="float32")
    return batch


@pytest.mark.parametrize("kind", WEIGHT_KINDS)
@pytest.mark.parametrize("values_shape", [(5,), (5, 3), ()], ids=str)
def test_mean_matches_keras(keras: Any, kind: str, values_shape: tuple[int, ...]) -> None:
    ours, theirs = Mean(), keras.metrics.Mean()
    for seed in range(3):
        values = rng("values", values_shape, seed).normal(size=values_shape).astype("float32")
        batch = values_shape[0] if values_shape else 1
        weight = _sample_weight(kind, batch, seed) if values_shape or kind in ("none", "scalar", "python_int") else None
        ours.update_state(values, sample_weight=weight)
        theirs.update_state(values, sample_weight=weight)
        np.testing.assert_allclose(to_numpy(ours.result()), to_numpy(theirs.result()), rtol=1e-6, atol=1e-7)
    assert ours.result().dtype == torch.float32
    ours.reset_state()
    assert ours.result().item() == 0.0


def test_mean_of_batch_losses_weighted_by_batch_size() -> None:
    tracker = Mean(name="loss")
    tracker.update_state(torch.tensor(2.0), sample_weight=32)
    tracker.update_state(torch.tensor(5.0), sample_weight=8)
    assert tracker.result().item() == pytest.approx((2 * 32 + 5 * 8) / 40)
    assert float(tracker.result()) == pytest.approx(2.6)


WRAPPER_CASES = [
    ("Accuracy", {}, "accuracy"),
    ("BinaryAccuracy", {}, "binary"),
    ("BinaryAccuracy", {"threshold": 0.3}, "binary"),
    ("CategoricalAccuracy", {}, "categorical"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
]


def _batch(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = rng("batch", kind, seed)
    if kind == "accuracy":
        return r.integers(0, 3, size=(6, 1)).astype("float32"), r.integers(0, 3, size=(6, 1)).astype("float32")
    if kind == "binary":
        return r.integers(0, 2, size=(6, 1)).astype("float32"), r.uniform(size=(6, 1)).astype("float32")
    if kind == "categorical":
        return np.eye(4, dtype="float32")[r.integers(0, 4, size=6)], r.uniform(size=(6, 4)).astype("float32")
    if kind == "sparse":
        return r.integers(0, 4, size=(6, 1)), r.uniform(size=(6, 4)).astype("float32")
    return r.normal(size=(6, 3)).astype("float32"), r.normal(size=(6, 3)).astype("float32")


@pytest.mark.parametrize("cls_name, kwargs, data", WRAPPER_CASES, ids=str)
@pytest.mark.parametrize("kind", ["none", "vector", "column"])
def test_wrapped_metrics_match_keras(keras: Any, cls_name: str, kwargs: dict[str, Any], data: str, kind: str) -> None:
    ours = getattr(metrics, cls_name)(**kwargs)
    theirs = getattr(keras.metrics, cls_name)(**kwargs)
    assert ours.name == theirs.name
    for seed in range(3):
        y, p = _batch(data, seed)
        weight = _sample_weight(kind, 6, seed)
        ours.update_state(y, p, sample_weight=weight)
        theirs.update_state(y, p, sample_weight=weight)
        np.testing.assert_allclose(to_numpy(ours.result()), to_numpy(theirs.result()), rtol=1e-6, atol=1e-7)
    before = ours.result().item()
    assert 0.0 <= before if "Accuracy" not in cls_name else 0.0 <= before <= 1.0
    ours.reset_state()
    theirs.reset_state()
    y, p = _batch(data, 7)
    ours.update_state(y, p)
    theirs.update_state(y, p)
    np.testing.assert_allclose(to_numpy(ours.result()), to_numpy(theirs.result()), rtol=1e-6)


def test_update_state_never_tracks_gradients() -> None:
    p = torch.tensor([[0.2, 0.8]], requires_grad=True)
    m = MeanSquaredError()
    m.update_state([[0.0, 1.0]], p)
    assert not m.result().requires_grad
    assert m([[0.0, 1.0]], p).item() == pytest.approx(0.04)


def test_metric_dtype() -> None:
    m = Mean(dtype="float64")
    m.update_state([1.0, 2.0])
    assert m.result().dtype == torch.float64 and m.dtype == "float64"
    assert Mean().dtype == "float32"
    with pytest.raises(ValueError, match="dtype"):
        Mean(dtype="int32")


def test_custom_metric_subclass() -> None:
    class Maximum(Metric):
        def __init__(self, name: str = "maximum", dtype: Any = None) -> None:
            super().__init__(name=name, dtype=dtype)
            self.add_variable((), name="best")

        def update_state(self, values: Any) -> None:
            self.best = torch.maximum(self.best, torch.max(torch.as_tensor(values, dtype=self.best.dtype)))

        def result(self) -> torch.Tensor:
            return self.best

    m = Maximum()
    m.update_state([1.0, 5.0])
    m.update_state([2.0])
    assert m.result().item() == 5.0 and len(m.variables) == 1
    m.reset_state()
    assert m.result().item() == 0.0
    with pytest.raises(NotImplementedError, match="update_state"):
        Metric().update_state(1.0)


# --------------------------------------------------------------------------------------
# get: what compile(metrics=[...]) makes of each entry
# --------------------------------------------------------------------------------------
SHAPE_CASES = [
    ((32, 1), (32, 1)),  # binary
    ((32,), (32, 1)),  # binary
    ((32,), (32, 10)),  # sparse: lower rank
    ((32, 1), (32, 10)),  # sparse: last axis 1
    ((32, 10), (32, 10)),  # categorical
    ((32, 5), (32, 5, 10)),  # sparse, sequence
    ((32,), (32,)),  # Keras says categorical here
]


@pytest.mark.parametrize("shapes", SHAPE_CASES, ids=str)
@pytest.mark.parametrize("identifier", ["accuracy", "acc", "Accuracy"])
def test_accuracy_resolves_as_keras_compile_does(
    keras: Any, shapes: tuple[tuple[int, ...], tuple[int, ...]], identifier: str
) -> None:
    from keras.src.trainers.compile_utils import get_metric

    y_true, y_pred = torch.zeros(shapes[0]), torch.zeros(shapes[1])
    theirs = get_metric(identifier, y_true, y_pred)
    eager = metrics.get(identifier, y_true=shapes[0], y_pred=shapes[1])
    assert type(eager).__name__ == type(theirs).__name__
    assert eager.name == theirs.name == identifier
    lazy = metrics.get(identifier, loss=losses.get("mse"))
    assert isinstance(lazy, AutoAccuracy) and lazy.name == identifier and lazy.resolved is None
    lazy.update_state(y_true, y_pred)
    assert lazy.resolved.__name__ == type(theirs).__name__


def test_auto_accuracy_keeps_its_choice_and_matches_the_concrete_metric(keras: Any) -> None:
    y, p = _sparse((8, 4), trailing_one=False)
    auto = AutoAccuracy()
    concrete = keras.metrics.SparseCategoricalAccuracy()
    for seed in range(2):
        y, p = _sparse((8, 4), trailing_one=bool(seed))
        auto.update_state(y, p)
        concrete.update_state(y, p)
    np.testing.assert_allclose(to_numpy(auto.result()), to_numpy(concrete.result()), rtol=1e-6)
    auto.reset_state()
    assert auto.resolved is SparseCategoricalAccuracy and auto.result().item() == 0.0


def test_names_are_the_keys_keras_logs_in_history(keras: Any) -> None:
    entries = ["accuracy", "mae", "MeanSquaredError", "acc", "mean_squared_error", "binary_accuracy"]
    x = np.random.default_rng(0).uniform(size=(16, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 2, size=(16, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        optimizer="sgd", loss="binary_crossentropy", metrics=[*entries, keras.metrics.MeanAbsoluteError(name="l1")]
    )
    history = model.fit(x, y, epochs=1, verbose=0)
    ours = [metrics.get(e, loss="binary_crossentropy").name for e in entries] + [
        metrics.get(MeanAbsoluteError(name="l1")).name
    ]
    assert set(history.history) == {"loss", *ours}


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("mae", MeanAbsoluteError),
        ("MAE", MeanAbsoluteError),
        ("mean_absolute_error", MeanAbsoluteError),
        ("MeanAbsoluteError", MeanAbsoluteError),
        ("mse", MeanSquaredError),
        ("MSE", MeanSquaredError),
        ("mean_squared_error", MeanSquaredError),
        ("MeanSquaredError", MeanSquaredError),
        ("binary_accuracy", BinaryAccuracy),
        ("BinaryAccuracy", BinaryAccuracy),
        ("categorical_accuracy", CategoricalAccuracy),
        ("sparse_categorical_accuracy", SparseCategoricalAccuracy),
        ("SparseCategoricalAccuracy", SparseCategoricalAccuracy),
        ("Mean", Mean),
    ],
)
def test_string_ids_give_keras_classes_named_as_written(keras: Any, identifier: str, cls: type) -> None:
    from keras.src.trainers.compile_utils import get_metric

    ours = metrics.get(identifier)
    theirs = get_metric(identifier, torch.zeros(4, 2), torch.zeros(4, 2))
    assert type(ours) is cls and type(theirs).__name__ == cls.__name__
    assert ours.name == theirs.name == identifier


def test_loss_function_names_give_their_mean(keras: Any) -> None:
    m = metrics.get("binary_crossentropy")
    assert type(m) is MeanMetricWrapper and m.name == "binary_crossentropy"
    theirs = keras.metrics.BinaryCrossentropy()
    y, p = _binary((6, 2))
    m.update_state(y, p)
    theirs.update_state(y, p)
    np.testing.assert_allclose(to_numpy(m.result()), to_numpy(theirs.result()), rtol=1e-6)


def test_get_passes_metrics_and_wraps_callables() -> None:
    m = BinaryAccuracy(name="acc_at_half")
    assert metrics.get(m) is m and m.name == "acc_at_half"
    assert metrics.get(None) is None
    assert type(metrics.get(CategoricalAccuracy)) is CategoricalAccuracy

    def my_error(y_true: Any, y_pred: Any) -> torch.Tensor:
        return losses.mae(y_true, y_pred)

    wrapped = metrics.get(my_error)
    assert type(wrapped) is MeanMetricWrapper and wrapped.name == "my_error"
    wrapped.update_state([[0.0], [0.0]], [[1.0], [3.0]])
    assert wrapped.result().item() == pytest.approx(2.0)
    from_loss = metrics.get(losses.Huber(name="hub"))
    assert type(from_loss) is MeanMetricWrapper and from_loss.name == "hub"
    configured = metrics.get({"class_name": "BinaryAccuracy", "config": {"threshold": 0.9}})
    assert type(configured) is BinaryAccuracy and configured.threshold == 0.9
    for bad in ("accuracyy", "f1_score", 3, [1]):
        with pytest.raises(ValueError, match=repr(bad).replace("[", r"\[").replace("]", r"\]")):
            metrics.get(bad)


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------
CONFIG_OBJECTS = [
    Mean(name="loss"),
    Accuracy(),
    BinaryAccuracy(threshold=0.7, name="acc"),
    CategoricalAccuracy(dtype="float64"),
    SparseCategoricalAccuracy(),
    MeanSquaredError(name="mse"),
    MeanAbsoluteError(),
    MeanMetricWrapper(metrics.binary_accuracy, name="ba", threshold=0.2),
    MeanMetricWrapper(losses.huber, name="huber_metric", delta=2.0),
]


@pytest.mark.parametrize("obj", CONFIG_OBJECTS, ids=lambda o: o.name)
def test_config_round_trips(obj: Metric) -> None:
    rebuilt = run_class_serialization_test(obj, metrics)
    assert rebuilt.name == obj.name


@pytest.mark.parametrize(
    "cls",
    [
        Mean,
        Accuracy,
        BinaryAccuracy,
        CategoricalAccuracy,
        SparseCategoricalAccuracy,
        MeanSquaredError,
        MeanAbsoluteError,
    ],
)
def test_configs_are_keras_and_travel_both_ways(keras: Any, cls: type) -> None:
    ours = cls()
    theirs = getattr(keras.metrics, cls.__name__)()
    assert ours.get_config() == theirs.get_config()
    assert type(keras.metrics.deserialize(json.loads(json.dumps(metrics.serialize(ours))))).__name__ == cls.__name__
    back = metrics.deserialize(keras.metrics.serialize(theirs))
    assert type(back) is cls and back.get_config() == ours.get_config()


def test_keras_mean_metric_wrapper_config_is_read(keras: Any) -> None:
    config = keras.metrics.serialize(
        keras.metrics.MeanMetricWrapper(keras.metrics.binary_accuracy, name="x", threshold=0.3)
    )
    m = metrics.deserialize(config)
    assert type(m) is MeanMetricWrapper and m._fn is metrics.binary_accuracy and m.name == "x"
    y, p = _binary((6, 1))
    m.update_state(y, p)
    assert m.result().item() == pytest.approx(float(((p > 0.3) == y).mean()))
    loss_config = keras.metrics.serialize(keras.metrics.MeanMetricWrapper(keras.losses.mean_squared_error, name="m"))
    assert metrics.deserialize(loss_config)._fn is losses.mean_squared_error


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: Mean(name=3), "name"),
        (lambda: BinaryAccuracy(0.7), "name"),
        (lambda: BinaryAccuracy(threshold="high"), "threshold"),
        (lambda: MeanMetricWrapper(5), "fn"),
        (lambda: Mean(dtype="int64"), "dtype"),
    ],
)
def test_bad_arguments_are_value_errors_naming_argument_and_value(make: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`.*{argument}="):
        make()
