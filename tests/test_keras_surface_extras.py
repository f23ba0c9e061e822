"""Small pieces of Keras's API that its own test files reach for, each checked against Keras 3."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import weightwise
from weightwise import layers, losses, metrics
from weightwise.layers import KerasTensor

Y_TRUE = np.array([[0.0, 1.0], [0.3, 0.7], [1.0, 0.0]], "float32")
Y_PRED = np.array([[0.4, 0.6], [0.5, 0.5], [0.0, 1.0]], "float32")


def test_kl_divergence_function_loss_and_metric_match_keras() -> None:
    np.testing.assert_allclose(losses.kl_divergence(Y_TRUE, Y_PRED).numpy(),
                               keras.ops.convert_to_numpy(keras.losses.kl_divergence(Y_TRUE, Y_PRED)), rtol=1e-6)
    np.testing.assert_allclose(float(losses.KLDivergence()(Y_TRUE, Y_PRED)),
                               float(keras.losses.KLDivergence()(Y_TRUE, Y_PRED)), rtol=1e-6)
    ours, theirs = metrics.KLDivergence(), keras.metrics.KLDivergence()
    for metric in (ours, theirs):
        metric.update_state(Y_TRUE[:2], Y_PRED[:2])
        metric.update_state(Y_TRUE[2:], Y_PRED[2:])
    np.testing.assert_allclose(float(ours.result()), float(theirs.result()), rtol=1e-6)
    assert metrics.kl_divergence is losses.kl_divergence
    assert weightwise.saving.deserialize_keras_object(
        weightwise.saving.serialize_keras_object(losses.kl_divergence)) is losses.kl_divergence


def test_keras_tensor_made_by_hand_is_a_free_input_with_keras_signature() -> None:
    layer = layers.Dense(2, activation="relu")
    out = layer(KerasTensor((1, 2)))
    assert out.shape == (1, 2) and out.dtype == "float32"
    with pytest.raises(ValueError, match="incompatible with the layer"):
        layer(KerasTensor((1, 3)))
    assert KerasTensor((None, 3), dtype="int32").dtype == "int32"
    with pytest.raises(ValueError, match="sparse"):
        KerasTensor((2,), sparse=True)


def test_compute_and_variable_dtype_follow_the_layer_dtype_as_in_keras() -> None:
    for dtype in ("float32", "float64"):
        ours, theirs = layers.Dense(2, dtype=dtype), keras.layers.Dense(2, dtype=dtype)
        assert (ours.compute_dtype, ours.variable_dtype) == (theirs.compute_dtype, theirs.variable_dtype)


@pytest.mark.parametrize("config, message", [
    ({"layers": [{"class_name": "Dense", "module": "keras.layers", "config": {"units": 4}}]},
     "containing the 'name' and 'layers' keys"),
    ({"name": "s", "layers": [{"class_name": "Dense", "module": "keras.layers", "config": {"units": 4}}, {}]},
     "containing a 'config' key"),
])
def test_malformed_sequential_configs_get_keras_errors(config, message) -> None:
    with pytest.raises(ValueError, match=message):
        weightwise.Sequential.from_config(config)
    with pytest.raises(ValueError, match=message):
        keras.Sequential.from_config(config)
