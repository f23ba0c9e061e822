"""Keras idioms on the core, conv and pooling layers: error wording, ``activation = None``, masks,
masking flags, built-at-construction, ``Wrapper`` and ``validate_float_arg``; checked against Keras."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

from weightwise import layers, ops, regularizers, saving


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# -- error wording: Keras's words where its tests look for them, plus our layer and value --


@pytest.mark.parametrize("units", [0, -3, 2.5, None, "64", True])
def test_dense_units_error_says_positive_integer_and_echoes_the_value(units: Any) -> None:
    with pytest.raises(ValueError, match="positive integer") as info:
        layers.Dense(units)
    assert "`units`" in str(info.value) and f"units={units!r}" in str(info.value)


@pytest.mark.parametrize(
    ("build", "keras_words"),
    [
        (lambda lib: lib.layers.Conv1D(filters=0, kernel_size=1),
         "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0."),
        (lambda lib: lib.layers.Conv2D(filters=2, kernel_size=(1, 0)),
         ("The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=(1, 0), including values "
          "{0} that do not satisfy `value > 0`")),
        (lambda lib: lib.layers.Conv2D(filters=2, kernel_size=2, strides=(1, 0)),
         ("The `strides` argument must be a tuple of 2 integers. Received strides=(1, 0), including values {0} "
          "that do not satisfy `value > 0`")),
        (lambda lib: lib.layers.Conv2D(filters=2, kernel_size=2, strides=2, dilation_rate=(2, 1)),
         ("`strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: strides=(2, 2) and "
          "dilation_rate=(2, 1)")),
        (lambda lib: lib.layers.Conv2D(filters=5, kernel_size=2, groups=0),
         "The number of groups must be a positive integer. Received: groups=0."),
        (lambda lib: lib.layers.Conv2D(filters=5, kernel_size=2, groups=2),
         ("The number of filters must be evenly divisible by the number of groups. Received: groups=2, "
          "filters=5.")),
    ],
)
def test_conv_errors_carry_keras_words(keras: Any, build: Any, keras_words: str) -> None:
    import weightwise

    with pytest.raises(ValueError) as theirs:
        build(keras)
    assert keras_words in str(theirs.value)  # the words are Keras's own
    with pytest.raises(ValueError) as ours:
        build(weightwise)
    assert keras_words in str(ours.value)
    assert "layer '" in str(ours.value)  # and ours also names the layer


def test_conv_filters_of_the_wrong_type_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"`filters`.*Received: filters='4'"):
        layers.Conv2D("4", 3)


# -- layer.activation = None ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [("Dense", {"units": 3}, (2, 4)), ("Conv1D", {"filters": 2, "kernel_size": 2}, (2, 5, 3)),
     ("Conv2D", {"filters": 2, "kernel_size": 2}, (1, 4, 4, 3))],
)
def test_activation_set_to_none_is_linear_as_in_keras(keras: Any, name: str, kwargs: dict, shape: tuple) -> None:
    x = rand(*shape)
    theirs = getattr(keras.layers, name)(activation="relu", **kwargs)
    theirs(x)
    ours = getattr(layers, name)(activation="relu", **kwargs)
    ours(torch.from_numpy(x))
    weights = [rand(*np.shape(w), seed=index + 1) for index, w in enumerate(theirs.get_weights())]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    theirs.activation = None
    ours.activation = None
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert (expected < 0).any()  # the relu is really gone
    np.testing.assert_allclose(to_numpy(ours(torch.from_numpy(x))), expected, rtol=1e-5, atol=1e-6)
    # The config says linear and rebuilds a linear layer.
    restored = getattr(layers, name).from_config(ours.get_config())
    restored(torch.from_numpy(x))
    restored.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(restored(torch.from_numpy(x))), expected, rtol=1e-5, atol=1e-6)


# -- GlobalAveragePooling1D and its mask ------------------------------------------------------


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("mask_dtype", ["int32", "bool", "float32"])
def test_global_average_pooling1d_mask_matches_keras(keras: Any, data_format: str, keepdims: bool,
                                                     mask_dtype: str) -> None:
    x = rand(3, 5, 4)
    steps = 5 if data_format == "channels_last" else 4
    mask = (np.random.default_rng(1).random((3, steps)) > 0.4).astype(mask_dtype)
    mask[:, 0] = 1  # every sample keeps a step: Keras's result is then finite
    theirs = keras.layers.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims)
    ours = layers.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims)
    expected = keras.ops.convert_to_numpy(theirs(x, mask=mask))
    np.testing.assert_allclose(to_numpy(ours(torch.from_numpy(x), mask=torch.from_numpy(mask))), expected,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(ours(x, mask)), expected, rtol=1e-6, atol=1e-6)  # arrays, positionally


def test_global_average_pooling1d_fully_masked_sample_gives_zero_not_nan() -> None:
    x = torch.ones(2, 3, 2)
    out = layers.GlobalAveragePooling1D()(x, mask=torch.tensor([[0, 0, 0], [1, 0, 1]]))
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))


def test_global_average_pooling1d_masked_values_do_not_leak_nan() -> None:
    x = torch.tensor([[[1.0], [math.nan], [3.0]]])
    out = layers.GlobalAveragePooling1D()(x, mask=torch.tensor([[True, False, True]]))
    assert torch.equal(out, torch.tensor([[2.0]]))


@pytest.mark.parametrize("mask", [torch.ones(2, 4), torch.ones(3), torch.ones(2, 3, dtype=torch.complex64)])
def test_global_average_pooling1d_bad_mask_is_refused_by_name(mask: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"`mask`.*Received: mask with shape"):
        layers.GlobalAveragePooling1D()(torch.ones(2, 3, 5), mask=mask)


# -- masking flags and built-at-construction, as Keras reports them ----------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("Dense", {"units": 2}), ("ActivityRegularization", {}), ("Conv2D", {"filters": 2, "kernel_size": 2}),
     ("MaxPooling2D", {}), ("AveragePooling1D", {"pool_size": 2}), ("GlobalAveragePooling1D", {}),
     ("GlobalAveragePooling2D", {}), ("GlobalMaxPooling1D", {}), ("Activation", {"activation": "relu"}),
     ("Dropout", {"rate": 0.5}), ("Flatten", {}), ("Reshape", {"target_shape": (2,)}),
     ("Lambda", {"function": abs})],
)
def test_supports_masking_and_built_match_keras(keras: Any, name: str, kwargs: dict) -> None:
    theirs = getattr(keras.layers, name)(**kwargs)
    ours = getattr(layers, name)(**kwargs)
    assert ours.supports_masking == theirs.supports_masking
    assert ours.built == theirs.built


# -- Wrapper ---------------------------------------------------------------------------------


class _Twice(layers.Wrapper):
    def call(self, inputs: Any) -> Any:
        return self.layer(self.layer(inputs))


def test_wrapper_builds_its_layer_and_round_trips_its_config() -> None:
    inner = layers.Dense(3, name="inner")
    wrapper = _Twice(inner, name="twice")
    wrapper.build((None, 3))
    assert inner.built and tuple(inner.kernel.shape) == (3, 3)
    config = json.loads(json.dumps(saving.serialize_keras_object(wrapper)))
    assert config["config"]["layer"]["class_name"] == "Dense"
    restored = saving.deserialize_keras_object(config, custom_objects={"_Twice": _Twice})
    assert isinstance(restored.layer, layers.Dense) and restored.layer.name == "inner"


def test_wrapper_refuses_what_is_not_a_layer() -> None:
    with pytest.raises(ValueError, match=r"`layer`.*Received: layer=3"):
        _Twice(3)


# -- validate_float_arg ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 1, 2.5, 1e-10, np.float32(0.5)])
def test_validate_float_arg_accepts_as_keras(keras: Any, value: Any) -> None:
    from keras.src.regularizers.regularizers import validate_float_arg

    result = regularizers.validate_float_arg(value, "factor")
    assert type(result) is float and result == validate_float_arg(float(value), "factor")


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, -math.inf, "1", None, [1.0]])
def test_validate_float_arg_refuses_as_keras(keras: Any, value: Any) -> None:
    from keras.src.regularizers.regularizers import validate_float_arg

    with pytest.raises((ValueError, TypeError)):
        validate_float_arg(value, "factor")
    with pytest.raises(ValueError, match=r"Invalid value for argument `factor`: expected a non-negative float"):
        regularizers.validate_float_arg(value, "factor")


def test_validate_float_arg_refuses_bools_unlike_keras() -> None:
    # The factor rule of the built-ins (README, deliberate differences): bools are not numbers here.
    with pytest.raises(ValueError, match="factor=True"):
        regularizers.validate_float_arg(True, "factor")
    assert ops is not None
