"""BatchNormalization, LayerNormalization and GroupNormalization: rules, Keras conformance, fit and files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy
from layer_conformance import TOL, compare_calls, file_round_trip, fit_both, twins

import weightwise
from weightwise import constraints, layers

RNG = np.random.default_rng(0)


def rand(*shape: int, loc: float = 2.0, scale: float = 3.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * scale + loc).astype(np.float32)


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


# -- BatchNormalization ----------------------------------------------------------------------

BN_CASES = [
    ({}, (6, 3)),
    ({"momentum": 0.7}, (5, 4, 3)),
    ({"axis": 1, "momentum": 0.5, "epsilon": 1e-5}, (4, 3, 5, 5)),  # channels_first conv outputs
    ({"axis": -2, "center": False}, (4, 3, 2)),
    ({"scale": False, "gamma_regularizer": "l2", "beta_regularizer": "l1"}, (6, 4)),
    ({"gamma_regularizer": "l2", "beta_regularizer": {"class_name": "L1", "config": {"l1": 0.2}}}, (6, 2, 2, 4)),
    ({"renorm": True, "momentum": 0.8, "renorm_momentum": 0.6}, (6, 3)),
    ({"renorm": True, "renorm_clipping": {"rmax": 1.2, "rmin": 0.8, "dmax": 0.1}, "center": False}, (6, 2, 3)),
]
TRAIN_THEN_INFER = [{"training": True}, {"training": True}, {"training": False}, {"training": True}, {}]


@pytest.mark.parametrize(("kwargs", "shape"), BN_CASES)
def test_batch_norm_matches_keras(keras, kwargs, shape) -> None:
    ours, theirs = twins(keras, "BatchNormalization", kwargs, shape)
    compare_calls(ours, theirs, rand(*shape), TRAIN_THEN_INFER)


def test_batch_norm_mask_matches_keras(keras) -> None:
    ours, theirs = twins(keras, "BatchNormalization", {"momentum": 0.6}, (4, 5, 3))
    mask = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1]], dtype=bool)
    compare_calls(ours, theirs, rand(4, 5, 3), [{"training": True, "mask": mask}] * 2 + [{"mask": mask}])


def test_batch_norm_frozen_runs_in_inference_mode(keras) -> None:
    ours, theirs = twins(keras, "BatchNormalization", {"momentum": 0.5}, (6, 3))
    ours.trainable = theirs.trainable = False
    before = ours.get_weights()
    compare_calls(ours, theirs, rand(6, 3), [{"training": True}])
    for old, new in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert ours.trainable_weights == [] and len(ours.non_trainable_weights) == 4


def test_batch_norm_formula_by_hand() -> None:
    x = rand(8, 3)
    layer = layers.BatchNormalization(momentum=0.9, epsilon=0.01)
    out = to_numpy(layer(torch.tensor(x), training=True))
    mean, var = x.mean(axis=0), x.var(axis=0)  # the biased variance
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 0.01), **TOL)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), 0.1 * mean, **TOL)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), 0.9 + 0.1 * var, **TOL)
    inference = to_numpy(layer(torch.tensor(x)))
    np.testing.assert_allclose(inference, (x - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 0.01), **TOL)


def test_batch_norm_layer_checker() -> None:
    layer = run_layer_test(layers.BatchNormalization, {}, (4, 3), expected_output_shape=(4, 3), expected_num_weights=4)
    assert [w.name for w in layer.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.requires_grad for w in layer.weights] == [True, True, False, False]
    run_layer_test(layers.BatchNormalization, {"axis": 1, "renorm": True}, (2, 3, 4, 4), expected_num_weights=7)


def test_batch_norm_arguments() -> None:
    with pytest.raises(ValueError, match="synchronized=True"):
        layers.BatchNormalization(synchronized=True)
    with pytest.raises(ValueError, match="momentum"):
        layers.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="axis"):
        layers.BatchNormalization(axis=1.5)
    with pytest.raises(ValueError, match="center"):
        layers.BatchNormalization(center="yes")
    with pytest.raises(ValueError, match="Received invalid keys"):
        layers.BatchNormalization(renorm=True, renorm_clipping={"rmaxx": 1.0})
    with pytest.raises(ValueError, match="out of bounds"):
        layers.BatchNormalization(axis=3)(torch.ones(2, 3))
    with pytest.raises(ValueError, match="one dimension less"):
        layers.BatchNormalization()(torch.ones(2, 3), mask=torch.ones(2, 3), training=True)
    layer = layers.BatchNormalization()
    layer.build((None, 3))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        layer(torch.ones(2, 4))


def test_batch_norm_fit_updates_moving_statistics_only_by_momentum(keras) -> None:
    x, y = rand(24, 4, seed=1), rand(24, 2, seed=2)

    def build(lib: Any) -> Any:
        lib.utils.set_random_seed(0)
        return lib.Sequential([
            lib.Input(shape=(4,)),
            lib.layers.BatchNormalization(momentum=0.5, gamma_regularizer=lib.regularizers.L2(0.1),
                                          gamma_constraint=lib.constraints.MaxNorm(1.05, axis=0),
                                          beta_constraint=lib.constraints.NonNeg()),
            lib.layers.Dense(2),
        ])

    ours, theirs = fit_both(keras, build, x, y, steps=3)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **TOL)
    bn = ours.layers[0]
    assert not np.allclose(to_numpy(bn.moving_mean), 0.0)
    assert np.linalg.norm(to_numpy(bn.gamma)) <= 1.05 + 1e-6
    assert (to_numpy(bn.beta) >= 0).all()
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), **TOL)


def _bn_model(lib: Any) -> Any:
    return lib.Sequential([
        lib.Input(shape=(6, 6, 2)),
        lib.layers.Conv2D(3, 3, name="conv"),
        lib.layers.BatchNormalization(momentum=0.8, gamma_regularizer=lib.regularizers.L2(0.05),
                                      beta_constraint=lib.constraints.NonNeg(), name="bn"),
        lib.layers.Flatten(name="flat"),
        lib.layers.Dense(2, name="out"),
    ], name="bn_model")


@pytest.mark.parametrize("writer", ["keras", "weightwise"])
def test_batch_norm_keras_file_round_trip(keras, tmp_path, writer) -> None:
    x, y = rand(8, 6, 6, 2), rand(8, 2)
    ours, _ = file_round_trip(keras, _bn_model, x, y, tmp_path, writer)
    bn = next(layer for layer in ours.layers if layer.name == "bn")
    assert not np.allclose(to_numpy(bn.moving_mean), 0.0)  # moving statistics came across


# -- LayerNormalization and GroupNormalization ---------------------------------------------------

LN_CASES = [
    ({}, (4, 6)),
    ({"epsilon": 1e-5, "gamma_regularizer": "l2", "beta_regularizer": "l1"}, (3, 4, 5)),
    ({"axis": [-2, -1], "center": False}, (2, 3, 4, 5)),
    ({"axis": (2, 3), "scale": False}, (2, 3, 4, 5)),
    ({"axis": [1, 2, 3]}, (2, 3, 4, 5)),
    ({"axis": [-1, 1]}, (2, 3, 4, 5)),  # not contiguous: Keras's general path
]
GN_CASES = [
    ({"groups": 2}, (3, 4)),
    ({"groups": 3, "gamma_regularizer": "l2", "beta_regularizer": "l1", "epsilon": 1e-4}, (2, 5, 6)),
    ({"groups": -1}, (2, 4, 4, 3)),
    ({"groups": 2, "axis": 1, "center": False}, (2, 4, 3, 3)),  # channels_first
    ({"groups": 1, "axis": -2, "scale": False}, (2, 4, 6, 3)),
]


@pytest.mark.parametrize(("kwargs", "shape"), LN_CASES)
def test_layer_norm_matches_keras(keras, kwargs, shape) -> None:
    ours, theirs = twins(keras, "LayerNormalization", kwargs, shape)
    compare_calls(ours, theirs, rand(*shape), [{"training": True}, {}])


@pytest.mark.parametrize(("kwargs", "shape"), GN_CASES)
def test_group_norm_matches_keras(keras, kwargs, shape) -> None:
    ours, theirs = twins(keras, "GroupNormalization", kwargs, shape)
    compare_calls(ours, theirs, rand(*shape), [{"training": True}, {}])


def test_layer_norm_rms_scaling_matches_keras(keras) -> None:
    with pytest.warns(UserWarning, match="rms_scaling"):
        ours, theirs = twins(keras, "LayerNormalization", {"rms_scaling": True}, (3, 5))
    assert [w.name for w in ours.weights] == ["gamma"]
    compare_calls(ours, theirs, rand(3, 5), [{}])


def test_layer_norm_single_inner_axis_follows_the_docs() -> None:
    # Keras's torch backend normalizes the last axis here (or fails when the sizes differ); the
    # documented behaviour, normalizing axis 1, is checked against NumPy.
    x = rand(2, 3, 5)
    layer = layers.LayerNormalization(axis=1, gamma_initializer="ones")
    reference = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(to_numpy(layer(torch.tensor(x))), reference, **TOL)
    assert tuple(layer.gamma.shape) == (3,)


def test_group_norm_formula_by_hand() -> None:
    x = rand(2, 3, 4)
    out = to_numpy(layers.GroupNormalization(groups=2, epsilon=0.01)(torch.tensor(x)))
    grouped = x.reshape(2, 3, 2, 2)
    mean, var = grouped.mean(axis=(1, 3), keepdims=True), grouped.var(axis=(1, 3), keepdims=True)
    np.testing.assert_allclose(out, ((grouped - mean) / np.sqrt(var + 0.01)).reshape(x.shape), **TOL)


def test_layer_and_group_norm_layer_checker() -> None:
    layer = run_layer_test(layers.LayerNormalization, {"axis": [1, 2]}, (2, 3, 4), expected_num_weights=2)
    assert tuple(layer.gamma.shape) == (3, 4) and layer.get_config()["axis"] == [1, 2]
    layer = run_layer_test(layers.GroupNormalization, {"groups": 2}, (2, 5, 4), expected_num_weights=2)
    assert [w.name for w in layer.weights] == ["gamma", "beta"]


def test_layer_and_group_norm_arguments() -> None:
    with pytest.raises(TypeError, match="'axis'"):
        layers.LayerNormalization(axis="last")
    with pytest.raises(ValueError, match="out of bounds"):
        layers.LayerNormalization(axis=[1, 4])(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="epsilon"):
        layers.LayerNormalization(epsilon=-1.0)
    with pytest.raises(ValueError, match="groups"):
        layers.GroupNormalization(groups=0)
    with pytest.raises(ValueError, match="groups"):
        layers.GroupNormalization(groups=True)
    with pytest.raises(ValueError, match=r"Number of groups \(3\) must be a multiple"):
        layers.GroupNormalization(groups=3)(torch.ones(2, 4))
    with pytest.raises(ValueError, match="cannot be more than"):
        layers.GroupNormalization(groups=5)(torch.ones(2, 4))
    layer = layers.GroupNormalization(groups=-1)
    layer.build((None, 6))
    assert layer.groups == 6  # instance normalization, fixed at build as in Keras


@pytest.mark.parametrize("name", ["BatchNormalization", "LayerNormalization", "GroupNormalization"])
def test_one_fit_step_keeps_constrained_gamma_and_beta_in_bounds(name) -> None:
    extra = {"groups": 2} if name == "GroupNormalization" else {}
    model = weightwise.Sequential([
        weightwise.Input(shape=(4,)),
        getattr(layers, name)(gamma_constraint=constraints.MaxNorm(0.5, axis=0), beta_initializer="ones",
                              beta_constraint=constraints.NonNeg(), **extra),
        layers.Dense(1),
    ])
    model.compile(optimizer=weightwise.optimizers.SGD(10.0), loss="mse")
    model.fit(rand(8, 4), rand(8, 1) * 100, batch_size=8, epochs=1, verbose=0)
    norm = model.layers[0]
    assert np.linalg.norm(to_numpy(norm.gamma)) <= 0.5 + 1e-6
    assert (to_numpy(norm.beta) >= 0).all()


def _norms_model(lib: Any) -> Any:
    return lib.Sequential([
        lib.Input(shape=(4, 6)),
        lib.layers.LayerNormalization(axis=[-2, -1], gamma_regularizer=lib.regularizers.L2(0.05), name="ln"),
        lib.layers.GroupNormalization(groups=3, beta_constraint=lib.constraints.NonNeg(), name="gn"),
        lib.layers.Flatten(name="flat"),
        lib.layers.Dense(2, name="out"),
    ], name="norms")


def test_layer_and_group_norm_fit_matches_keras(keras) -> None:
    x, y = rand(12, 4, 6), rand(12, 2)
    ours, theirs = fit_both(keras, _norms_model, x, y, steps=3)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **TOL)


@pytest.mark.parametrize("writer", ["keras", "weightwise"])
def test_layer_and_group_norm_keras_file_round_trip(keras, tmp_path, writer) -> None:
    x, y = rand(8, 4, 6), rand(8, 2)
    ours, _ = file_round_trip(keras, _norms_model, x, y, tmp_path, writer)
    assert [type(layer).__name__ for layer in ours.layers][:2] == ["LayerNormalization", "GroupNormalization"]


def test_batch_norm_on_channels_first_conv_outputs_trains_as_keras(keras) -> None:
    def build(lib: Any) -> Any:
        L = lib.layers
        return lib.Sequential([
            lib.Input(shape=(2, 6, 6)),
            L.Conv2D(3, 3, data_format="channels_first", name="conv"),
            L.BatchNormalization(axis=1, momentum=0.6, gamma_constraint=lib.constraints.MaxNorm(1.2, axis=0),
                                 name="bn"),
            L.Flatten(name="flat"),
            L.Dense(2, name="out"),
        ])

    x, y = rand(12, 2, 6, 6), rand(12, 2)
    ours, theirs = fit_both(keras, build, x, y, steps=3)
    assert tuple(ours.layers[1].moving_mean.shape) == (3,)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **TOL)
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), **TOL)
