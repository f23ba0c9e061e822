"""layers.Lambda: calls, shapes, masks, and configs that move between Keras and weightwise, in safe mode and not."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise
from weightwise import layers, saving, serialization
from weightwise.layers import Lambda


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def serialized(obj: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lambda warning is the serialization module's to test
        return json_round_trip(saving.serialize_keras_object(obj))


X = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], dtype=np.float32)


def test_call_passes_arguments_and_matches_keras(keras: Any) -> None:
    theirs = keras.layers.Lambda(lambda x, scale: x * scale + 1, arguments={"scale": 3.0})
    ours = Lambda(lambda x, scale: x * scale + 1, arguments={"scale": 3.0})
    np.testing.assert_allclose(to_numpy(ours(torch.from_numpy(X))), keras.ops.convert_to_numpy(theirs(X)))


def test_function_gets_training_and_mask_when_it_names_them() -> None:
    seen = {}

    def record(x: torch.Tensor, mask: Any = None, training: Any = None) -> torch.Tensor:
        seen.update(mask=mask, training=training)
        return x

    layer = Lambda(record)
    layer(torch.ones(1, 2), mask=torch.tensor([[True, False]]), training=True)
    assert seen["training"] is True and seen["mask"].tolist() == [[True, False]]
    Lambda(lambda x: x)(torch.ones(1, 2), training=True)  # a function without them is called without them


@pytest.mark.parametrize(
    ("output_shape", "input_shape"),
    [((3,), (None, 3)), ((2, 5), (7, 4)), (lambda shape: (shape[0], 1), (None, 6))],
)
def test_compute_output_shape_matches_keras(keras: Any, output_shape: Any, input_shape: tuple) -> None:
    theirs = keras.layers.Lambda(lambda x: x, output_shape=output_shape)
    ours = Lambda(lambda x: x, output_shape=output_shape)
    assert tuple(ours.compute_output_shape(input_shape)) == tuple(theirs.compute_output_shape(input_shape))


def test_symbolic_call_gives_the_function_shape() -> None:
    inputs = layers.Input((4,))
    outputs = Lambda(lambda t: t[:, :2] * 2)(inputs)
    assert tuple(outputs.shape) == (None, 2)
    model = weightwise.models.Model(inputs, outputs)
    np.testing.assert_allclose(to_numpy(model(torch.ones(3, 4))), np.full((3, 2), 2.0))


def test_mask_and_supports_masking_as_keras(keras: Any) -> None:
    fixed = torch.tensor([True, False])
    assert Lambda(lambda x: x).supports_masking is keras.layers.Lambda(lambda x: x).supports_masking is False
    layer = Lambda(lambda x: x, mask=fixed)
    assert layer.supports_masking is True and layer.compute_mask(torch.ones(2)) is fixed
    computed = Lambda(lambda x: x, mask=lambda inputs, previous: inputs > 0)
    assert computed.compute_mask(torch.tensor([1.0, -1.0])).tolist() == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"function": 3}, "function"), ({"function": abs, "arguments": [1]}, "arguments"),
     ({"function": abs, "output_shape": "3"}, "output_shape"), ({"function": abs, "output_shape": (2.5,)}, "output_shape")],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict, argument: str) -> None:
    with pytest.raises((TypeError, ValueError), match=f"`{argument}`"):
        Lambda(**kwargs)


# -- configs ---------------------------------------------------------------------------------


def test_lambda_config_is_keras_form_and_keras_loads_it(keras: Any) -> None:
    ours = Lambda(lambda x, k: x * k - 1, output_shape=(3,), arguments={"k": 2.0}, name="affine")
    config = serialized(ours)
    function = config["config"]["function"]
    assert function["class_name"] == "__lambda__" and sorted(function["config"]) == ["closure", "code", "defaults"]
    assert config["config"]["output_shape"] == [3] and config["config"]["arguments"] == {"k": 2.0}
    with pytest.raises(ValueError, match="arbitrary code execution"):
        keras.saving.deserialize_keras_object(config)
    theirs = keras.saving.deserialize_keras_object(config, safe_mode=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs(X)), to_numpy(ours(torch.from_numpy(X))))
    assert tuple(theirs.compute_output_shape((None, 3))) == (None, 3)


def test_keras_lambda_config_loads_only_outside_safe_mode(keras: Any) -> None:
    theirs = keras.layers.Lambda(lambda x, k: x * k - 1, output_shape=(3,), arguments={"k": 2.0})
    config = json_round_trip(keras.saving.serialize_keras_object(theirs))
    with pytest.raises(ValueError, match="`Lambda` layer whose `function` is a Python lambda.*arbitrary code execution"):
        saving.deserialize_keras_object(config)
    with pytest.raises(ValueError, match="arbitrary code execution"):
        Lambda.from_config(config["config"])  # a direct from_config is safe by default too
    ours = saving.deserialize_keras_object(config, safe_mode=False)
    np.testing.assert_allclose(to_numpy(ours(torch.from_numpy(X))), keras.ops.convert_to_numpy(theirs(X)))
    assert ours.compute_output_shape((None, 3)) == (None, 3)


def test_safe_mode_scope_and_unsafe_switch_decide_for_lambda() -> None:
    config = serialized(Lambda(lambda x: x ** 2))
    with serialization.SafeModeScope(True), pytest.raises(ValueError, match="arbitrary code execution"):
        saving.deserialize_keras_object(config, safe_mode=False)
    with serialization.SafeModeScope(False):
        assert to_numpy(Lambda.from_config(config["config"])(torch.tensor([3.0]))).tolist() == [9.0]
    weightwise.config.enable_unsafe_deserialization()
    try:
        assert to_numpy(saving.deserialize_keras_object(config)(torch.tensor([2.0]))).tolist() == [4.0]
    finally:
        serialization._restore_safe_default()
    with pytest.raises(ValueError, match="arbitrary code execution"):
        saving.deserialize_keras_object(config)


def test_a_lambda_output_shape_is_refused_in_safe_mode_too() -> None:
    config = serialized(Lambda(weightwise.activations.relu, output_shape=lambda shape: shape))
    assert config["config"]["output_shape"]["class_name"] == "__lambda__"
    with pytest.raises(ValueError, match="`output_shape` is a Python lambda"):
        saving.deserialize_keras_object(config)
    restored = saving.deserialize_keras_object(config, safe_mode=False)
    assert restored.compute_output_shape((None, 5)) == (None, 5)


def test_a_named_function_loads_in_safe_mode() -> None:
    config = serialized(Lambda(weightwise.activations.relu, name="r"))
    restored = saving.deserialize_keras_object(config)
    assert restored.function is weightwise.activations.relu


def test_model_with_lambda_saves_and_loads_with_keras_both_ways(keras: Any, tmp_path: Any) -> None:
    inputs = layers.Input((3,))
    outputs = Lambda(lambda t: t * 2 + 1)(layers.Dense(2, kernel_initializer="ones")(inputs))
    model = weightwise.models.Model(inputs, outputs)
    path = str(tmp_path / "lambda.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    expected = to_numpy(model(torch.from_numpy(X)))
    with pytest.raises(ValueError, match="arbitrary code execution"):
        keras.saving.load_model(path)
    theirs = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs(X)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="arbitrary code execution"):
        weightwise.saving.load_model(path)
    ours = weightwise.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(to_numpy(ours(torch.from_numpy(X))), expected, rtol=1e-6)
