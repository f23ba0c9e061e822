"""Losses: per-sample functions and Loss objects against NumPy and Keras 3 (torch backend).

Keras's Loss objects compute in float32 unless given a dtype; weightwise keeps float64
predictions in float64. So float32 inputs are compared with Keras's defaults (rtol 1e-6),
float64 inputs with Keras's ``dtype="float64"``, and the dtype difference is pinned in
``test_float64_stays_float64_where_keras_defaults_to_float32``.

In float64, Keras's ``ops.mean`` (torch backend) computes in float32 and casts back
(its ``result_type(float64, "float32")`` is float32), so Keras's float64 losses built on a
mean (MSE, MAE, Huber, binary cross-entropy) are only float32-accurate: they are compared
at rtol 3e-7, and against NumPy at 1e-12. The sum-based cross-entropies agree to 1e-12.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_class_serialization_test, to_numpy

from weightwise import losses
from weightwise.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    LossFunctionWrapper,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)

EPS = 1e-7
TOL = {"float32": {"rtol": 1e-6, "atol": 1e-7}, "float64": {"rtol": 1e-12, "atol": 1e-14}}
KERAS_MEAN_64 = {"rtol": 3e-7, "atol": 1e-12}
MEAN_BASED = {"mean_squared_error", "mean_absolute_error", "huber", "binary_crossentropy"}


def keras_tol(name: str, dtype: str) -> dict[str, float]:
    """The tolerance against Keras: float32 rounding for Keras's float64 means, see the module docstring."""
    return KERAS_MEAN_64 if dtype == "float64" and name in MEAN_BASED else TOL[dtype]


DTYPES = ["float32", "float64"]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(abs(hash(repr(parts))) % 2**32)


def probabilities(r: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    p = r.uniform(0.0, 1.0, size=shape)
    p[..., 0] = 0.0  # exercise the clipping at epsilon
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def one_hot(labels: np.ndarray, classes: int, dtype: str) -> np.ndarray:
    return np.eye(classes, dtype=dtype)[labels]


# --------------------------------------------------------------------------------------
# NumPy references, written from the formulas
# --------------------------------------------------------------------------------------
def np_bce(y: np.ndarray, p: np.ndarray, from_logits: bool = False, smoothing: float = 0.0) -> np.ndarray:
    """In float64, except that probabilities are clipped in their own dtype (1 - 1e-7 rounds in float32)."""
    y = y.astype(np.float64) * (1 - smoothing) + 0.5 * smoothing
    if from_logits:
        p = p.astype(np.float64)
        elementwise = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
    else:
        p = np.clip(p, p.dtype.type(EPS), p.dtype.type(1 - EPS)).astype(np.float64)
        elementwise = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return elementwise.mean(-1)


def np_cce(y: np.ndarray, p: np.ndarray, from_logits: bool = False, smoothing: float = 0.0) -> np.ndarray:
    y = y.astype(np.float64) * (1 - smoothing) + smoothing / y.shape[-1]
    if from_logits:
        p = p.astype(np.float64)
        shifted = p - p.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    else:
        normalized = p / p.sum(-1, keepdims=True)
        log_p = np.log(np.clip(normalized, p.dtype.type(EPS), p.dtype.type(1 - EPS)).astype(np.float64))
    return -(y * log_p).sum(-1)


def np_huber(y: np.ndarray, p: np.ndarray, delta: float) -> np.ndarray:
    x = np.abs(p - y)
    return np.where(x <= delta, 0.5 * x**2, delta * x - 0.5 * delta**2).mean(-1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functions_match_numpy(dtype: str) -> None:
    r = rng("numpy", dtype)
    y = r.normal(size=(8, 5)).astype(dtype)
    p = r.normal(size=(8, 5)).astype(dtype)
    tol = TOL[dtype]
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    np.testing.assert_allclose(to_numpy(losses.mse(y, p)), ((y64 - p64) ** 2).mean(-1), **tol)
    np.testing.assert_allclose(to_numpy(losses.mae(y, p)), np.abs(y64 - p64).mean(-1), **tol)
    for delta in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(to_numpy(losses.huber(y, p, delta=delta)), np_huber(y64, p64, delta), **tol)
    labels = r.integers(0, 2, size=(8, 5)).astype(dtype)
    probs = r.uniform(0, 1, size=(8, 5)).astype(dtype)
    probs[0, 0], probs[1, 1] = 0.0, 1.0
    for smoothing in (0.0, 0.2):
        np.testing.assert_allclose(
            to_numpy(losses.binary_crossentropy(labels, probs, label_smoothing=smoothing)),
            np_bce(labels, probs, smoothing=smoothing),
            rtol=1e-5 if dtype == "float32" else 1e-9,
        )
        np.testing.assert_allclose(
            to_numpy(losses.binary_crossentropy(labels, p, from_logits=True, label_smoothing=smoothing)),
            np_bce(labels, p, from_logits=True, smoothing=smoothing),
            **tol,
        )
    classes = r.integers(0, 5, size=8)
    target = one_hot(classes, 5, dtype)
    cat = probabilities(r, (8, 5), dtype)
    for smoothing in (0.0, 0.1):
        np.testing.assert_allclose(
            to_numpy(losses.categorical_crossentropy(target, cat, label_smoothing=smoothing)),
            np_cce(target, cat, smoothing=smoothing),
            rtol=1e-5 if dtype == "float32" else 1e-9,
        )
        np.testing.assert_allclose(
            to_numpy(losses.categorical_crossentropy(target, p, from_logits=True, label_smoothing=smoothing)),
            np_cce(target, p, from_logits=True, smoothing=smoothing),
            **tol,
        )
    np.testing.assert_allclose(
        to_numpy(losses.sparse_categorical_crossentropy(classes, cat)),
        np_cce(target, cat),
        rtol=1e-5 if dtype == "float32" else 1e-9,
    )
    for out in (
        losses.mse(y, p),
        losses.binary_crossentropy(labels, probs),
        losses.sparse_categorical_crossentropy(classes, cat),
    ):
        assert out.dtype == getattr(torch, dtype)
        assert tuple(out.shape) == (8,)


# --------------------------------------------------------------------------------------
# Functions against Keras's
# --------------------------------------------------------------------------------------
def _inputs(name: str, dtype: str, shape: tuple[int, ...] = (6, 4)) -> tuple[np.ndarray, np.ndarray]:
    r = rng("inputs", name, dtype, shape)
    if name in ("mean_squared_error", "mean_absolute_error", "huber"):
        return r.normal(size=shape).astype(dtype), r.normal(size=shape).astype(dtype)
    if name == "binary_crossentropy":
        p = r.uniform(0, 1, size=shape)
        p.flat[0], p.flat[1] = 0.0, 1.0
        return r.integers(0, 2, size=shape).astype(dtype), p.astype(dtype)
    if name == "categorical_crossentropy":
        return one_hot(r.integers(0, shape[-1], size=shape[:-1]), shape[-1], dtype), probabilities(r, shape, dtype)
    return r.integers(0, shape[-1], size=shape[:-1]), probabilities(r, shape, dtype)


FUNCTION_CASES = [
    ("mean_squared_error", {}),
    ("mean_absolute_error", {}),
    ("huber", {}),
    ("huber", {"delta": 0.3}),
    ("binary_crossentropy", {}),
    ("binary_crossentropy", {"label_smoothing": 0.3}),
    ("binary_crossentropy", {"from_logits": True}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1, "axis": 0}),
    ("categorical_crossentropy", {}),
    ("categorical_crossentropy", {"label_smoothing": 0.2}),
    ("categorical_crossentropy", {"from_logits": True}),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("sparse_categorical_crossentropy", {}),
    ("sparse_categorical_crossentropy", {"from_logits": True}),
]


@pytest.mark.parametrize("name, kwargs", FUNCTION_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4)], ids=str)
def test_functions_and_gradients_match_keras(
    keras: Any, name: str, kwargs: dict[str, Any], dtype: str, shape: tuple[int, ...]
) -> None:
    y_true, y_pred = _inputs(name, dtype, shape)
    if kwargs.get("from_logits"):
        y_pred = rng("logits", name, dtype, shape).normal(scale=3.0, size=y_pred.shape).astype(dtype)
    ours_in = torch.tensor(y_pred, requires_grad=True)
    theirs_in = torch.tensor(y_pred, requires_grad=True)
    ours = getattr(losses, name)(torch.tensor(y_true), ours_in, **kwargs)
    theirs = getattr(keras.losses, name)(torch.tensor(y_true), theirs_in, **kwargs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), **keras_tol(name, dtype))
    (ours_grad,) = torch.autograd.grad(ours.sum(), ours_in)
    (theirs_grad,) = torch.autograd.grad(theirs.sum(), theirs_in)
    np.testing.assert_allclose(to_numpy(ours_grad), to_numpy(theirs_grad), **keras_tol(name, dtype))


def test_categorical_crossentropy_on_another_axis_matches_keras(keras: Any) -> None:
    r = rng("axis")
    y = one_hot(r.integers(0, 3, size=(4, 5)), 3, "float32").transpose(0, 2, 1)  # classes on axis 1
    p = r.uniform(0.05, 1, size=(4, 3, 5)).astype("float32")
    ours = losses.categorical_crossentropy(y, p, axis=1)
    theirs = keras.losses.categorical_crossentropy(y, p, axis=1)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6)
    labels = r.integers(0, 3, size=(4, 5))
    np.testing.assert_allclose(
        to_numpy(losses.sparse_categorical_crossentropy(labels, p, axis=1)),
        to_numpy(keras.losses.sparse_categorical_crossentropy(torch.tensor(labels), torch.tensor(p), axis=1)),
        rtol=1e-6,
    )


# --------------------------------------------------------------------------------------
# Loss objects and reductions against Keras
# --------------------------------------------------------------------------------------
CLASS_CASES = [
    ("MeanSquaredError", {}, "mean_squared_error"),
    ("MeanAbsoluteError", {}, "mean_absolute_error"),
    ("Huber", {"delta": 0.7}, "huber"),
    ("BinaryCrossentropy", {}, "binary_crossentropy"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, "binary_crossentropy"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "categorical_crossentropy"),
    ("CategoricalCrossentropy", {"from_logits": True}, "categorical_crossentropy"),
    ("SparseCategoricalCrossentropy", {}, "sparse_categorical_crossentropy"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse_categorical_crossentropy"),
    ("SparseCategoricalCrossentropy", {"ignore_class": 2}, "sparse_categorical_crossentropy"),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]


def _weights(kind: str, batch: int, dtype: str) -> Any:
    r = rng("weights", kind, batch)
    if kind == "none":
        return None
    if kind == "vector":
        w = r.uniform(0, 2, size=batch)
        w[0] = 0.0
        return w.astype(dtype)
    if kind == "column":
        return r.uniform(0, 2, size=(batch, 1)).astype(dtype)
    if kind == "scalar":
        return np.asarray(0.25, dtype=dtype)
    return [float(x) for x in r.uniform(0, 2, size=batch)]  # a Python list


@pytest.mark.parametrize("cls_name, kwargs, fn_name", CLASS_CASES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "vector", "column", "scalar", "list"])
def test_loss_objects_match_keras(
    keras: Any, cls_name: str, kwargs: dict[str, Any], fn_name: str, reduction: Any, weights: str
) -> None:
    y_true, y_pred = _inputs(fn_name, "float32", (7, 4))
    if kwargs.get("from_logits"):
        y_pred = rng("logits", cls_name).normal(scale=2.0, size=y_pred.shape).astype("float32")
    sample_weight = _weights(weights, 7, "float32")
    ours = getattr(losses, cls_name)(reduction=reduction, **kwargs)(y_true, y_pred, sample_weight=sample_weight)
    keras_loss = getattr(keras.losses, cls_name)(reduction=reduction, **kwargs)
    if weights == "scalar" and "ignore_class" in kwargs:
        # Keras multiplies a scalar weight by the mask in place and fails; weightwise broadcasts the scalar.
        with pytest.raises(RuntimeError):
            keras_loss(y_true, y_pred, sample_weight=sample_weight)
        sample_weight = np.full(7, float(sample_weight), dtype="float32")
        np.testing.assert_allclose(
            to_numpy(ours), to_numpy(keras_loss(y_true, y_pred, sample_weight=sample_weight)), rtol=1e-6
        )
        return
    theirs = keras_loss(y_true, y_pred, sample_weight=sample_weight)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls_name, kwargs, fn_name", CLASS_CASES, ids=str)
def test_loss_objects_in_float64_match_keras_given_float64(
    keras: Any, cls_name: str, kwargs: dict[str, Any], fn_name: str
) -> None:
    y_true, y_pred = _inputs(fn_name, "float64", (5, 3, 4))
    sample_weight = rng("w64", cls_name).uniform(0, 1, size=(5, 3))
    ours = getattr(losses, cls_name)(**kwargs)(y_true, y_pred, sample_weight=sample_weight)
    theirs = getattr(keras.losses, cls_name)(dtype="float64", **kwargs)(y_true, y_pred, sample_weight=sample_weight)
    # Keras's ops.divide_no_nan(float64, float64) gives float32 on torch, so even dtype="float64"
    # ends in a float32 loss; weightwise's stays float64.
    assert ours.dtype == torch.float64 and theirs.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=5e-7)
    per_sample = to_numpy(getattr(losses, fn_name)(y_true, y_pred, **kwargs))
    count = per_sample.size if "ignore_class" not in kwargs else (y_true != kwargs["ignore_class"]).sum()
    expected = (per_sample * sample_weight).sum() / count
    np.testing.assert_allclose(to_numpy(ours), expected, rtol=1e-12)


def test_float64_stays_float64_where_keras_defaults_to_float32(keras: Any) -> None:
    y = np.array([[0.1, 0.2]], dtype="float64")
    p = np.array([[0.3, 0.5]], dtype="float64")
    assert MeanSquaredError()(y, p).dtype == torch.float64
    assert keras.losses.MeanSquaredError()(y, p).dtype == torch.float32
    assert MeanSquaredError(dtype="float32")(y, p).dtype == torch.float32
    assert MeanSquaredError()(y.astype("float16"), p.astype("float16")).dtype == torch.float32
    assert keras.losses.MeanSquaredError()(y.astype("float16"), p.astype("float16")).dtype == torch.float32


def test_sum_over_batch_size_divides_by_the_count_not_the_weights(keras: Any) -> None:
    y = np.zeros((4, 1), dtype="float32")
    p = np.array([[1.0], [2.0], [3.0], [4.0]], dtype="float32")
    w = np.array([1.0, 0.0, 0.0, 1.0], dtype="float32")
    ours = MeanAbsoluteError()(y, p, sample_weight=w).item()
    assert ours == pytest.approx((1.0 + 4.0) / 4)  # not (1 + 4) / 2
    assert ours == pytest.approx(float(keras.losses.MeanAbsoluteError()(y, p, sample_weight=w)))
    assert MeanAbsoluteError(reduction="mean_with_sample_weight")(y, p, sample_weight=w).item() == pytest.approx(2.5)
    assert MeanAbsoluteError(reduction="sum")(y, p, sample_weight=w).item() == pytest.approx(5.0)
    assert MeanAbsoluteError()(y, p, sample_weight=np.zeros(4)).item() == 0.0
    assert MeanAbsoluteError(reduction="mean_with_sample_weight")(y, p, sample_weight=np.zeros(4)).item() == 0.0
    np.testing.assert_allclose(to_numpy(MeanAbsoluteError(reduction=None)(y, p, sample_weight=w)), [1, 0, 0, 4])


def test_ignore_class_averages_over_the_other_entries(keras: Any) -> None:
    labels = np.array([[0, 2, 1], [2, 2, 1]])
    r = rng("ignore")
    p = probabilities(r, (2, 3, 3), "float32")
    for reduction in ("sum_over_batch_size", "sum", "none"):
        ours = SparseCategoricalCrossentropy(ignore_class=2, reduction=reduction)(labels, p)
        theirs = keras.losses.SparseCategoricalCrossentropy(ignore_class=2, reduction=reduction)(labels, p)
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6)
    per_entry = to_numpy(losses.sparse_categorical_crossentropy(labels, p, ignore_class=2))
    assert per_entry[0, 1] == per_entry[1, 0] == per_entry[1, 1] == 0.0
    mean = SparseCategoricalCrossentropy(ignore_class=2)(labels, p).item()
    assert mean == pytest.approx(per_entry.sum() / 3, rel=1e-6)


def test_sparse_labels_of_shape_n_1_and_int_dtypes(keras: Any) -> None:
    r = rng("sparse shapes")
    p = probabilities(r, (6, 4), "float32")
    labels = r.integers(0, 4, size=6)
    expected = to_numpy(keras.losses.SparseCategoricalCrossentropy()(labels, p))
    for y in (labels, labels[:, None], labels.astype("int32"), labels.astype("float32"), torch.tensor(labels)):
        np.testing.assert_allclose(to_numpy(SparseCategoricalCrossentropy()(y, p)), expected, rtol=1e-6)


def test_rank_mismatch_is_squeezed_or_expanded_as_keras(keras: Any) -> None:
    y = np.array([1.0, 0.0, 2.0], dtype="float32")
    p = np.array([[0.5], [0.5], [1.0]], dtype="float32")
    for cls in ("MeanSquaredError", "MeanAbsoluteError", "Huber"):
        ours = getattr(losses, cls)()(y, p)
        theirs = getattr(keras.losses, cls)()(y, p)
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(MeanSquaredError()(y, p)), (0.25 + 0.25 + 1.0) / 3, rtol=1e-6)


def test_loss_result_keeps_the_graph() -> None:
    p = torch.tensor([[0.2, 0.8]], requires_grad=True)
    loss = CategoricalCrossentropy()([[0.0, 1.0]], p)
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_custom_loss_subclass_and_wrapper_name() -> None:
    class Cubic(Loss):
        def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
            return torch.mean(torch.abs(y_true - y_pred) ** 3, dim=-1)

    assert Cubic().name == "cubic"
    assert Cubic()([[0.0], [0.0]], [[1.0], [2.0]]).item() == pytest.approx(4.5)
    with pytest.raises(NotImplementedError, match="call"):
        Loss()([1.0], [1.0])
    assert LossFunctionWrapper(losses.mse).name == "loss_function_wrapper"


# --------------------------------------------------------------------------------------
# get, string ids, configs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "identifier, fn",
    [
        ("mse", losses.mean_squared_error),
        ("MSE", losses.mean_squared_error),
        ("mean_squared_error", losses.mean_squared_error),
        ("mae", losses.mean_absolute_error),
        ("mean_absolute_error", losses.mean_absolute_error),
        ("huber", losses.huber),
        ("binary_crossentropy", losses.binary_crossentropy),
        ("bce", losses.binary_crossentropy),
        ("categorical_crossentropy", losses.categorical_crossentropy),
        ("sparse_categorical_crossentropy", losses.sparse_categorical_crossentropy),
    ],
)
def test_function_ids_give_wrappers_named_as_written(keras: Any, identifier: str, fn: Any) -> None:
    loss = losses.get(identifier)
    assert type(loss) is LossFunctionWrapper and loss.fn is fn and loss.name == identifier
    assert getattr(keras.losses.get(identifier), "__name__", None) == fn.__name__


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("MeanSquaredError", MeanSquaredError),
        ("MeanAbsoluteError", MeanAbsoluteError),
        ("Huber", Huber),
        ("BinaryCrossentropy", BinaryCrossentropy),
        ("CategoricalCrossentropy", CategoricalCrossentropy),
        ("SparseCategoricalCrossentropy", SparseCategoricalCrossentropy),
    ],
)
def test_class_ids_give_instances(keras: Any, identifier: str, cls: type) -> None:
    loss = losses.get(identifier)
    assert type(loss) is cls
    assert loss.name == keras.losses.get(identifier).name


def test_get_passes_losses_wraps_functions_and_refuses_the_rest() -> None:
    loss = Huber()
    assert losses.get(loss) is loss
    assert losses.get(None) is None
    assert type(losses.get(BinaryCrossentropy)) is BinaryCrossentropy

    def my_loss(y_true: Any, y_pred: Any) -> torch.Tensor:
        return losses.mae(y_true, y_pred) * 2

    wrapped = losses.get(my_loss)
    assert isinstance(wrapped, Loss) and wrapped.name == "my_loss"
    assert wrapped([[0.0, 1.0]], [[1.0, 1.0]]).item() == pytest.approx(1.0)
    configured = losses.get({"class_name": "BinaryCrossentropy", "config": {"from_logits": True}})
    assert type(configured) is BinaryCrossentropy and configured.from_logits
    for bad in (42, "msee", [1], object):
        with pytest.raises(
            ValueError,
            match=repr(bad)[:20].replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
        ):
            losses.get(bad)


FUNCTION_OF_CLASS = {cls: fn for cls, _, fn in CLASS_CASES}

CONFIG_OBJECTS = [
    MeanSquaredError(),
    MeanAbsoluteError(reduction="sum", name="l1"),
    Huber(delta=2.5),
    BinaryCrossentropy(from_logits=True, label_smoothing=0.1, axis=0),
    CategoricalCrossentropy(label_smoothing=0.2, reduction=None),
    SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="mean_with_sample_weight"),
    MeanSquaredError(dtype="float64"),
]


@pytest.mark.parametrize("obj", CONFIG_OBJECTS, ids=lambda o: type(o).__name__)
def test_config_round_trips_and_keras_reads_them(keras: Any, obj: Loss) -> None:
    run_class_serialization_test(obj, losses)
    config = json.loads(json.dumps(losses.serialize(obj)))
    theirs = keras.losses.deserialize(config)
    assert type(theirs).__name__ == type(obj).__name__
    y, p = _inputs(FUNCTION_OF_CLASS[type(obj).__name__], "float32")
    np.testing.assert_allclose(to_numpy(obj(y, p)), to_numpy(theirs(y, p)), rtol=1e-6)
    back = losses.deserialize(keras.losses.serialize(theirs))
    assert type(back) is type(obj)


@pytest.mark.parametrize(
    "cls",
    [
        MeanSquaredError,
        MeanAbsoluteError,
        Huber,
        BinaryCrossentropy,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
    ],
)
def test_config_keys_are_keras_plus_what_keras_forgets(keras: Any, cls: type) -> None:
    ours = cls().get_config()
    theirs = getattr(keras.losses, cls.__name__)().get_config()
    extra = {"Huber": ["delta"], "SparseCategoricalCrossentropy": ["axis"]}.get(cls.__name__, [])
    assert list(ours) == list(theirs) + extra
    assert {k: ours[k] for k in theirs} == theirs
    # What Keras forgets: a Keras Huber(delta=2.0) comes back from its config with delta=1.0.
    if cls is Huber:
        assert "delta" not in keras.losses.Huber(delta=2.0).get_config()
        assert Huber.from_config(Huber(delta=2.0).get_config()).delta == 2.0


def test_keras_function_wrapper_configs_are_read(keras: Any) -> None:
    from keras.src.losses.losses import LossFunctionWrapper as KerasWrapper

    config = keras.losses.serialize(KerasWrapper(keras.losses.huber, name="h", delta=0.5))
    assert config["module"] == "keras.src.losses.losses"
    loss = losses.deserialize(config)
    assert type(loss) is LossFunctionWrapper and loss.fn is losses.huber and loss.name == "h"
    y, p = _inputs("huber", "float32")
    np.testing.assert_allclose(
        to_numpy(loss(y, p)), to_numpy(KerasWrapper(keras.losses.huber, delta=0.5)(y, p)), rtol=1e-6
    )
    assert losses.deserialize(keras.losses.serialize(keras.losses.mean_squared_error)) is losses.mean_squared_error
    wrapped = losses.get("huber")
    again = losses.deserialize(json.loads(json.dumps(losses.serialize(wrapped))))
    assert type(again) is LossFunctionWrapper and again.fn is losses.huber and again.name == "huber"


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: MeanSquaredError(reduction="average"), "reduction"),
        (lambda: BinaryCrossentropy(label_smoothing=1.5), "label_smoothing"),
        (lambda: CategoricalCrossentropy(label_smoothing=-0.1), "label_smoothing"),
        (lambda: BinaryCrossentropy(from_logits="yes"), "from_logits"),
        (lambda: CategoricalCrossentropy(axis=True), "axis"),
        (lambda: Huber(delta=-1.0), "delta"),
        (lambda: SparseCategoricalCrossentropy(ignore_class=1.5), "ignore_class"),
        (lambda: LossFunctionWrapper(3), "fn"),
        (lambda: MeanSquaredError(name=5), "name"),
    ],
)
def test_bad_arguments_are_value_errors_naming_argument_and_value(make: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`.*{argument}="):
        make()


def test_shape_mismatches_are_value_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        losses.binary_crossentropy([[1.0, 0.0]], [[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="same shape"):
        losses.categorical_crossentropy([[1.0, 0.0]], [[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="same shape up until the last dimension"):
        losses.sparse_categorical_crossentropy([1, 0, 1], [[0.5, 0.5]])
    with pytest.warns(SyntaxWarning, match="binary_crossentropy"):
        losses.categorical_crossentropy([[1.0]], [[0.5]])
