"""Metric and loss objects used by hand, as Keras's custom-training-loop guides use them, against Keras 3.

A hand-written loop creates a metric once, calls ``update_state(y_true, y_pred, sample_weight=...)``
on every batch (with torch tensors straight from a DataLoader and predictions that still track
gradients), reads ``result()`` and calls ``reset_state()`` at the end of each epoch. It calls a
loss object as ``loss_fn(y_true, y_pred)`` and back-propagates through the value. Every metric and
loss class we have is run that way here, beside the same Keras object fed the same batches.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise

BATCH, CLASSES = 6, 4


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


def batch(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One batch ``(y_true, y_pred)`` of the kind a metric or loss reads."""
    if kind == "one_hot":
        return (np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)],
                rng.normal(size=(BATCH, CLASSES)).astype(np.float32))
    if kind == "labels":
        return rng.integers(0, CLASSES, (BATCH, 1)), rng.normal(size=(BATCH, CLASSES)).astype(np.float32)
    if kind == "flat_labels":
        return rng.integers(0, CLASSES, (BATCH,)), rng.normal(size=(BATCH, CLASSES)).astype(np.float32)
    if kind == "binary":
        return rng.integers(0, 2, (BATCH, 1)).astype(np.float32), rng.random((BATCH, 1)).astype(np.float32)
    if kind == "binary_logits":
        return rng.integers(0, 2, (BATCH, 1)).astype(np.float32), rng.normal(size=(BATCH, 1)).astype(np.float32)
    if kind == "equal":
        return (rng.integers(0, 3, (BATCH, 2)).astype(np.float32),
                rng.integers(0, 3, (BATCH, 2)).astype(np.float32))
    assert kind == "regression"
    return rng.normal(size=(BATCH, 3)).astype(np.float32), rng.normal(size=(BATCH, 3)).astype(np.float32)


def weights(kind: str | None, rng: np.random.Generator) -> Any:
    if kind is None:
        return None
    if kind == "scalar":
        return 0.5
    return rng.random((BATCH,) if kind == "per_sample" else (BATCH, 1)).astype(np.float32)


def as_form(value: Any, form: str, grad: bool = False) -> Any:
    """A batch as a script passes it: numpy, a list, or a torch tensor (predictions tracking gradients)."""
    if value is None or np.isscalar(value) or form == "numpy":
        return value
    if form == "list":
        return value.tolist()
    tensor = torch.from_numpy(np.array(value))
    return tensor.requires_grad_(True) if grad and tensor.is_floating_point() else tensor


METRICS = [
    ("Accuracy", "equal"),
    ("BinaryAccuracy", "binary"),
    ("CategoricalAccuracy", "one_hot"),
    ("SparseCategoricalAccuracy", "labels"),
    ("SparseCategoricalAccuracy", "flat_labels"),
    ("MeanSquaredError", "regression"),
    ("MeanAbsoluteError", "regression"),
]


@pytest.mark.parametrize("form", ["numpy", "list", "torch"])
@pytest.mark.parametrize("weighting", [None, "per_sample", "column", "scalar"])
@pytest.mark.parametrize(("cls_name", "kind"), METRICS)
def test_metric_epochs_by_hand_match_keras(keras, cls_name: str, kind: str, weighting: str | None, form: str) -> None:
    theirs, ours = getattr(keras.metrics, cls_name)(), getattr(weightwise.metrics, cls_name)()
    rng = np.random.default_rng(zlib.crc32(repr((cls_name, kind, weighting, form)).encode()))
    for epoch in range(2):
        for _ in range(3):
            y_true, y_pred = batch(kind, rng)
            sample_weight = weights(weighting, rng)
            for metric in (theirs, ours):
                metric.update_state(as_form(y_true, form), as_form(y_pred, form, grad=True),
                                    sample_weight=as_form(sample_weight, form))
        expected, got = theirs.result(), ours.result()
        assert isinstance(got, torch.Tensor) and got.shape == () and got.dtype == torch.float32
        assert not got.requires_grad
        np.testing.assert_allclose(float(got), float(to_numpy(expected)), rtol=1e-6, atol=1e-7)
        theirs.reset_state()
        ours.reset_state()
        assert float(ours.result()) == float(to_numpy(theirs.result())) == 0.0


@pytest.mark.parametrize("form", ["numpy", "torch", "python"])
@pytest.mark.parametrize("weighting", [None, "per_sample", "scalar"])
def test_mean_of_batch_values_by_hand_matches_keras(keras, weighting: str | None, form: str) -> None:
    theirs, ours = keras.metrics.Mean(name="loss"), weightwise.metrics.Mean(name="loss")
    rng = np.random.default_rng(3)
    for _ in range(4):
        values = rng.normal(size=(BATCH,)).astype(np.float32)
        sample_weight = weights(weighting, rng)
        if form == "python":
            values, sample_weight = float(values[0]), None if sample_weight is None else 2.0
        for metric in (theirs, ours):
            metric.update_state(as_form(values, form, grad=True), sample_weight=as_form(sample_weight, form))
    np.testing.assert_allclose(float(ours.result()), float(to_numpy(theirs.result())), rtol=1e-6)
    assert ours.name == theirs.name == "loss"


def test_metric_called_directly_updates_and_returns_the_result(keras) -> None:
    rng = np.random.default_rng(4)
    theirs, ours = keras.metrics.CategoricalAccuracy(), weightwise.metrics.CategoricalAccuracy()
    for _ in range(3):
        y_true, y_pred = batch("one_hot", rng)
        np.testing.assert_allclose(float(ours(y_true, y_pred)), float(to_numpy(theirs(y_true, y_pred))), rtol=1e-6)
    assert [tuple(v.shape) for v in ours.variables] == [tuple(v.shape) for v in theirs.variables]
    assert ours.get_config() == theirs.get_config()


def test_guide_loop_metrics_on_dataloader_batches(keras) -> None:
    """The guide's epoch loop: one-hot float targets from a DataLoader, logits that track gradients."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, 40)]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=16)
    linear = torch.nn.Linear(8, CLASSES)
    theirs, ours = keras.metrics.CategoricalAccuracy(), weightwise.metrics.CategoricalAccuracy()
    for _ in range(2):
        for inputs, targets in loader:
            logits = linear(inputs)
            theirs.update_state(targets, logits)
            ours.update_state(targets, logits)
        assert f"{float(ours.result()):.4f}" == f"{float(to_numpy(theirs.result())):.4f}"
        theirs.reset_state()
        ours.reset_state()


LOSSES = [
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("Huber", {"delta": 0.7}, "regression"),
    ("CategoricalCrossentropy", {"from_logits": True}, "one_hot"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "one_hot_probabilities"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "flat_labels"),
    ("SparseCategoricalCrossentropy", {}, "labels_probabilities"),
    ("BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
    ("BinaryCrossentropy", {}, "binary"),
]


@pytest.mark.parametrize("weighting", [None, "per_sample", "scalar"])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None])
@pytest.mark.parametrize(("cls_name", "kwargs", "kind"), LOSSES)
def test_loss_object_called_by_hand_matches_keras_value_and_gradient(
    keras, cls_name: str, kwargs: dict[str, Any], kind: str, reduction: str | None, weighting: str | None
) -> None:
    rng = np.random.default_rng(zlib.crc32(repr((cls_name, kind, reduction, weighting)).encode()))
    y_true, y_pred = batch(kind.replace("_probabilities", ""), rng)
    if kind.endswith("_probabilities"):
        y_pred = torch.softmax(torch.from_numpy(y_pred), dim=-1).numpy()
    sample_weight = weights(weighting, rng)
    results = []
    for lib in (keras, weightwise):
        loss_fn = getattr(lib.losses, cls_name)(reduction=reduction, **kwargs)
        prediction = torch.from_numpy(y_pred.copy()).requires_grad_(True)
        value = loss_fn(torch.from_numpy(y_true), prediction, sample_weight=as_form(sample_weight, "torch"))
        value.sum().backward()
        results.append((to_numpy(value), prediction.grad.numpy()))
    (expected, expected_grad), (got, got_grad) = results
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_grad, expected_grad, rtol=1e-4, atol=1e-7)


def test_guide_loss_then_backward_through_a_model(keras) -> None:
    """``loss = loss_fn(targets, logits)`` then ``loss.backward()``, as the guide writes it."""
    rng = np.random.default_rng(6)
    targets = torch.from_numpy(np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)])
    inputs = torch.from_numpy(rng.normal(size=(BATCH, 5)).astype(np.float32))
    grads = []
    for lib in (keras, weightwise):
        torch.manual_seed(0)
        linear = torch.nn.Linear(5, CLASSES)
        loss = lib.losses.CategoricalCrossentropy(from_logits=True)(targets, linear(inputs))
        loss.backward()
        grads.append((float(loss.detach().numpy()), linear.weight.grad.numpy().copy()))
    assert grads[1][0] == pytest.approx(grads[0][0], rel=1e-6)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-5, atol=1e-7)
