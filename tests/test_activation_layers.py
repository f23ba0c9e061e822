"""ReLU, LeakyReLU, ELU, Softmax and PReLU: rules, masks, Keras conformance, fit and files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy
from layer_conformance import (
    TOL,
    compare_calls,
    file_round_trip,
    fit_both,
    json_normalized,
    twins,
)

import weightwise
from weightwise import constraints, layers


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * 2).astype(np.float32)


STATELESS = [
    ("ReLU", {}),
    ("ReLU", {"max_value": 1.5}),
    ("ReLU", {"negative_slope": 0.2, "threshold": 0.5}),
    ("ReLU", {"max_value": 2, "negative_slope": 0.1, "threshold": 1.0}),
    ("LeakyReLU", {}),
    ("LeakyReLU", {"negative_slope": 0.05}),
    ("ELU", {}),
    ("Softmax", {}),
    ("Softmax", {"axis": 1}),
    ("Softmax", {"axis": [1, 2]}),
    ("Softmax", {"axis": [-1]}),
]


@pytest.mark.parametrize(("name", "kwargs"), STATELESS)
def test_stateless_activation_layers_match_keras(keras, name, kwargs) -> None:
    ours, theirs = twins(keras, name, kwargs, (3, 4, 5))
    assert ours.built and theirs.built  # built at construction, as Keras's
    assert ours.supports_masking and theirs.supports_masking
    compare_calls(ours, theirs, rand(3, 4, 5), [{}, {"training": True}])
    assert ours.compute_output_shape((None, 4, 5)) == theirs.compute_output_shape((None, 4, 5))


def test_elu_alpha_matches_keras(keras) -> None:
    ours, theirs = twins(keras, "ELU", {"alpha": 0.4}, (2, 6))
    compare_calls(ours, theirs, rand(2, 6), [{}])
    assert ours.get_config()["alpha"] == 0.4
    assert keras.layers.ELU.from_config(ours.get_config()).alpha == 0.4


@pytest.mark.parametrize("mask", [
    np.array([[True, True, False, True, False]] * 4).reshape(4, 5),
    np.array([[1.0, 0.0, 0.7, 0.2, 1.0]], dtype=np.float32),  # non-bool: above 0.5 counts
    np.zeros((3, 4, 5), dtype=bool),  # fully masked rows give zeros
])
def test_softmax_mask_matches_keras(keras, mask) -> None:
    ours, theirs = twins(keras, "Softmax", {}, (3, 4, 5))
    compare_calls(ours, theirs, rand(3, 4, 5), [{"mask": mask}])


def test_softmax_mask_errors() -> None:
    with pytest.raises(ValueError, match="broadcastable"):
        layers.Softmax()(torch.ones(2, 3), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="must not have more dimensions"):
        layers.Softmax()(torch.ones(2, 3), mask=torch.ones(1, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="axis"):
        layers.Softmax(axis="last")


PRELU_CASES = [
    ({}, (3, 4)),
    ({"alpha_initializer": "random_uniform", "alpha_regularizer": "l2"}, (2, 3, 4)),
    ({"shared_axes": [1, 2], "alpha_regularizer": {"class_name": "L1", "config": {"l1": 0.2}}}, (2, 3, 3, 4)),
    ({"shared_axes": 1}, (2, 5, 3)),
]


@pytest.mark.parametrize(("kwargs", "shape"), PRELU_CASES)
def test_prelu_matches_keras(keras, kwargs, shape) -> None:
    ours, theirs = twins(keras, "PReLU", kwargs, shape)
    x = rand(*shape)
    compare_calls(ours, theirs, x, [{}, {"training": True}])


def test_prelu_alpha_shape_rule() -> None:
    layer = layers.PReLU(shared_axes=[1, 2])
    layer.build((None, 5, 6, 3))
    assert tuple(layer.alpha.shape) == (1, 1, 3)
    layer = layers.PReLU()
    layer.build((None, 5, 3))
    assert tuple(layer.alpha.shape) == (5, 3)
    with pytest.raises(ValueError, match="shared_axes"):
        layers.PReLU(shared_axes=[-1])
    with pytest.raises(ValueError, match="shared_axes"):
        layers.PReLU(shared_axes=[3])(torch.ones(2, 3))


def test_activation_layers_checker() -> None:
    for name, kwargs in STATELESS:
        run_layer_test(getattr(layers, name), kwargs, (2, 3, 4), expected_output_shape=(2, 3, 4), expected_num_weights=0)
    layer = run_layer_test(layers.PReLU, {"shared_axes": [1]}, (2, 3, 4), expected_num_weights=1)
    assert [w.name for w in layer.weights] == ["alpha"]


def test_relu_and_leaky_relu_arguments() -> None:
    with pytest.raises(ValueError, match="max_value of a ReLU layer cannot be a negative value"):
        layers.ReLU(max_value=-1)
    with pytest.raises(ValueError, match="negative_slope of a ReLU layer cannot be None"):
        layers.ReLU(negative_slope=None)
    with pytest.raises(ValueError, match="threshold of a ReLU layer cannot be None.*threshold='1'"):
        layers.ReLU(threshold="1")
    with pytest.raises(ValueError, match="negative_slope value of a Leaky ReLU layer"):
        layers.LeakyReLU(negative_slope=-0.1)
    with pytest.warns(UserWarning, match="`alpha` is deprecated"):
        layer = layers.LeakyReLU(alpha=0.2)
    assert layer.negative_slope == 0.2 and "alpha" not in layer.get_config()
    with pytest.raises(ValueError, match="alpha"):
        layers.ELU(alpha=float("nan"))


def test_layer_as_activation_round_trips_like_keras(keras) -> None:
    ours = layers.Dense(4, activation=layers.LeakyReLU(negative_slope=0.15, name="my_leaky"))
    theirs = keras.layers.Dense(4, activation=keras.layers.LeakyReLU(negative_slope=0.15, name="my_leaky"))
    assert json_normalized(ours.get_config()["activation"]) == json_normalized(theirs.get_config()["activation"])
    again = layers.deserialize(layers.serialize(ours))
    assert isinstance(again.activation, layers.LeakyReLU) and again.activation.name == "my_leaky"
    from_keras = layers.deserialize(keras.layers.serialize(theirs))
    assert isinstance(from_keras.activation, layers.LeakyReLU) and from_keras.activation.negative_slope == 0.15


def test_one_fit_step_keeps_constrained_alpha_in_bounds() -> None:
    model = weightwise.Sequential([
        weightwise.Input(shape=(6,)),
        layers.PReLU(alpha_initializer="ones", alpha_constraint=constraints.NonNeg()),
        layers.Dense(1),
    ])
    model.compile(optimizer=weightwise.optimizers.SGD(10.0), loss="mse")
    model.fit(-np.abs(rand(8, 6)), np.full((8, 1), 100.0, np.float32), batch_size=8, epochs=1, verbose=0)
    alpha = to_numpy(model.layers[0].alpha)
    assert (alpha >= 0).all() and not np.allclose(alpha, 1.0)


def _activations_model(lib: Any) -> Any:
    L = lib.layers
    return lib.Sequential([
        lib.Input(shape=(4, 5)),
        L.PReLU(alpha_initializer="random_uniform", alpha_regularizer=lib.regularizers.L2(0.01),
                alpha_constraint=lib.constraints.NonNeg(), shared_axes=[1], name="prelu"),
        L.ReLU(max_value=3.0, negative_slope=0.1, name="relu"),
        L.LeakyReLU(negative_slope=0.2, name="leaky"),
        L.ELU(name="elu"),
        L.Dense(3, activation=L.ReLU(name="inner_relu"), name="dense"),
        L.Softmax(axis=1, name="softmax"),
        L.Flatten(name="flat"),
    ], name="acts")


def test_activation_layers_fit_matches_keras(keras) -> None:
    x, y = rand(12, 4, 5), np.abs(rand(12, 12, seed=1))
    ours, theirs = fit_both(keras, _activations_model, x, y, steps=3)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **TOL)


@pytest.mark.parametrize("writer", ["keras", "weightwise"])
def test_activation_layers_keras_file_round_trip(keras, tmp_path, writer) -> None:
    ours, _ = file_round_trip(keras, _activations_model, rand(8, 4, 5), np.abs(rand(8, 12, seed=1)), tmp_path, writer)
    assert [type(layer).__name__ for layer in ours.layers][:4] == ["PReLU", "ReLU", "LeakyReLU", "ELU"]
    assert isinstance(ours.layers[4].activation, layers.ReLU)
    assert isinstance(ours.layers[0].alpha_constraint, constraints.NonNeg)
