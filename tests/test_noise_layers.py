"""Noise layers (SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout) against Keras 3 and by
their statistics."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import layers, utils

RNG = np.random.default_rng(0)

# (class name, constructor arguments, input shape): seeded, so Keras's draws can be compared exactly.
CASES = [
    ("SpatialDropout1D", {"rate": 0.4, "seed": 3}, (4, 5, 6)),
    ("SpatialDropout2D", {"rate": 0.5, "seed": 7}, (4, 3, 5, 6)),
    ("SpatialDropout2D", {"rate": 0.3, "seed": 1, "data_format": "channels_first"}, (4, 6, 3, 5)),
    ("SpatialDropout3D", {"rate": 0.5, "seed": 2}, (3, 2, 3, 4, 5)),
    ("SpatialDropout3D", {"rate": 0.2, "seed": 2, "data_format": "channels_first"}, (3, 5, 2, 3, 4)),
    ("GaussianNoise", {"stddev": 0.3, "seed": 4}, (4, 7)),
    ("GaussianNoise", {"stddev": 1, "seed": 9}, (2, 3, 4)),
    ("GaussianDropout", {"rate": 0.3, "seed": 5}, (4, 7)),
    ("GaussianDropout", {"rate": 0.7, "seed": 6}, (2, 3, 4)),
    ("AlphaDropout", {"rate": 0.3, "seed": 8}, (4, 7)),
    ("AlphaDropout", {"rate": 0.5, "seed": 8, "noise_shape": (None, 1, 4)}, (3, 5, 4)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_configs_and_masking_flags_are_keras(keras, name, kwargs, shape) -> None:
    ours, theirs = getattr(layers, name)(name="noise", **kwargs), getattr(keras.layers, name)(name="noise", **kwargs)
    mine, reference = _json(ours.get_config()), _json(theirs.get_config())
    if name.startswith("Spatial"):
        # Keras's SpatialDropout writes its variable dtype, which drops a mixed policy; weightwise writes
        # the policy, as every layer does (and Keras reads it back).
        assert mine["dtype"] == _json(keras.dtype_policies.serialize(theirs.dtype_policy))
        mine["dtype"] = reference["dtype"]
    assert mine == reference
    assert ours.supports_masking is theirs.supports_masking is True
    assert ours.built is theirs.built is True
    again = type(ours).from_config(_json(theirs.get_config()))
    assert again.get_config() == ours.get_config()


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_seeded_training_draws_and_gradients_are_keras(keras, name, kwargs, shape) -> None:
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    x = RNG.normal(size=shape).astype(np.float32)
    weights = torch.from_numpy(RNG.normal(size=shape).astype(np.float32))
    for _ in range(3):  # each call draws anew, in Keras's sequence
        ours_x = torch.tensor(x, requires_grad=True)
        theirs_x = torch.tensor(x, requires_grad=True)
        ours_out = ours(ours_x, training=True)
        theirs_out = theirs(theirs_x, training=True)
        np.testing.assert_allclose(to_numpy(ours_out), to_numpy(theirs_out), rtol=1e-6, atol=1e-6)
        (ours_out * weights).sum().backward()
        (theirs_out * weights).sum().backward()
        np.testing.assert_allclose(to_numpy(ours_x.grad), to_numpy(theirs_x.grad), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_inference_returns_the_input(name, kwargs, shape) -> None:
    layer = getattr(layers, name)(**kwargs)
    x = torch.from_numpy(RNG.normal(size=shape).astype(np.float32))
    assert layer(x) is x
    assert layer(x, training=False) is x
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *shape[1:])


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_layer_checker(name, kwargs, shape) -> None:
    # Keras's SpatialDropout constructors take no `activity_regularizer` (nor any other base argument).
    exclude = ("activity_regularizer",) if name.startswith("Spatial") else ()
    run_layer_test(getattr(layers, name), kwargs, shape, expected_output_shape=shape, expected_num_weights=0,
                   exclude=exclude)


def test_layers_with_nothing_to_draw_return_the_input_while_training() -> None:
    x = torch.ones(2, 3, 4)
    for layer in (layers.SpatialDropout1D(0), layers.GaussianNoise(0), layers.GaussianDropout(0),
                  layers.AlphaDropout(0)):
        assert layer(x, training=True) is x
        assert not hasattr(layer, "seed_generator")  # as in Keras: no generator when nothing is drawn


@pytest.mark.parametrize(("cls", "shape", "channels_axis"), [
    (layers.SpatialDropout1D, (400, 6, 50), -1),
    (lambda rate: layers.SpatialDropout2D(rate), (400, 3, 4, 50), -1),
    (lambda rate: layers.SpatialDropout2D(rate, data_format="channels_first"), (400, 50, 3, 4), 1),
    (lambda rate: layers.SpatialDropout3D(rate), (200, 2, 3, 2, 50), -1),
    (lambda rate: layers.SpatialDropout3D(rate, data_format="channels_first"), (200, 50, 2, 3, 2), 1),
])
def test_spatial_dropout_drops_whole_channels(cls, shape, channels_axis) -> None:
    rate = 0.3
    out = cls(rate)(torch.ones(shape), training=True)
    # Per sample and channel, one value shared by every position: 0 or 1 / (1 - rate).
    maps = out.movedim(channels_axis, 1).reshape(shape[0], shape[channels_axis], -1)
    assert bool((maps == maps[..., :1]).all())
    values = set(np.round(maps[..., 0].unique().tolist(), 5))
    assert values == {0.0, round(1 / (1 - rate), 5)}
    dropped = float((maps[..., 0] == 0).float().mean())
    assert abs(dropped - rate) < 0.03  # 20000 draws: 4 standard deviations


def test_spatial_dropout_keeps_the_expected_sum() -> None:
    out = layers.SpatialDropout2D(0.4, seed=0)(torch.ones(500, 2, 2, 40), training=True)
    assert abs(float(out.mean()) - 1.0) < 0.03


def test_gaussian_noise_statistics() -> None:
    x = torch.full((400, 500), 3.0)
    noise = layers.GaussianNoise(0.4, seed=0)(x, training=True) - x
    assert abs(float(noise.mean())) < 0.003
    assert abs(float(noise.var()) - 0.16) < 0.002


def test_gaussian_dropout_statistics() -> None:
    x = torch.full((400, 500), 2.0)
    factor = layers.GaussianDropout(0.2, seed=0)(x, training=True) / x
    assert abs(float(factor.mean()) - 1.0) < 0.003
    assert abs(float(factor.var()) - 0.25) < 0.003  # rate / (1 - rate)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.8])
def test_alpha_dropout_keeps_the_mean_and_variance_of_selu_inputs(rate) -> None:
    # Standard-normal inputs through SELU have mean 0 and variance 1 (the fixed point alpha dropout keeps).
    x = torch.nn.functional.selu(torch.from_numpy(RNG.normal(size=(1000, 400)).astype(np.float32)))
    out = layers.AlphaDropout(rate, seed=0)(x, training=True)
    assert abs(float(out.mean()) - float(x.mean())) < 0.01
    assert abs(float(out.var()) - float(x.var())) < 0.02
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    dropped = torch.isclose(out, torch.tensor(a * alpha_p - a * alpha_p * rate), atol=1e-6)
    assert abs(float(dropped.float().mean()) - rate) < 0.01


def test_alpha_dropout_at_rate_one_gives_zeros() -> None:
    out = layers.AlphaDropout(1.0)(torch.ones(3, 4), training=True)
    assert bool((out == 0).all()) and not bool(out.isnan().any())


def test_noise_shape_shares_draws_in_alpha_dropout() -> None:
    out = layers.AlphaDropout(0.5, noise_shape=(None, 1, None), seed=0)(torch.ones(20, 5, 10), training=True)
    assert bool((out == out[:, :1, :]).all())
    with pytest.raises(ValueError, match="noise_shape"):
        layers.AlphaDropout(0.5, noise_shape=(None, 2, None))(torch.ones(2, 5, 10), training=True)


def test_unseeded_draws_follow_set_random_seed() -> None:
    x = torch.ones(4, 3, 3, 8)
    draws = []
    for _ in range(2):
        utils.set_random_seed(11)
        layer = layers.SpatialDropout2D(0.5)
        draws.append(layer(x, training=True))
    assert torch.equal(draws[0], draws[1])


def test_each_training_call_draws_anew() -> None:
    layer = layers.GaussianNoise(0.5, seed=1)
    x = torch.zeros(4, 50)
    assert not torch.equal(layer(x, training=True), layer(x, training=True))


def test_meta_inputs_give_meta_outputs_of_the_right_shape() -> None:
    for layer in (layers.SpatialDropout2D(0.5), layers.GaussianNoise(0.2), layers.GaussianDropout(0.2),
                  layers.AlphaDropout(0.2)):
        out = layer(torch.ones(2, 3, 4, 5, device="meta"), training=True)
        assert out.is_meta and out.shape == (2, 3, 4, 5)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: layers.SpatialDropout2D(1.5), "rate"),
    (lambda: layers.SpatialDropout2D(True), "rate"),
    (lambda: layers.SpatialDropout2D("0.5"), "rate"),
    (lambda: layers.SpatialDropout2D(0.5, data_format="channels_middle"), "data_format"),
    (lambda: layers.SpatialDropout1D(0.5, seed=-1), "seed"),
    (lambda: layers.SpatialDropout3D(0.5, seed=1.5), "seed"),
    (lambda: layers.GaussianNoise(-0.1), "stddev"),
    (lambda: layers.GaussianNoise(1.5), "stddev"),
    (lambda: layers.GaussianNoise(float("nan")), "stddev"),
    (lambda: layers.GaussianDropout(1.0), "rate"),
    (lambda: layers.GaussianDropout(-0.5), "rate"),
    (lambda: layers.AlphaDropout(1.5), "rate"),
    (lambda: layers.AlphaDropout(0.5, seed="x"), "seed"),
    (lambda: layers.AlphaDropout(0.5, noise_shape=(2, 0)), "noise_shape"),
])
def test_bad_arguments_are_refused_naming_them(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_spatial_dropout_takes_only_keras_arguments(keras) -> None:
    for lib in (layers, keras.layers):
        with pytest.raises(TypeError):
            lib.SpatialDropout2D(0.5, trainable=False)
        with pytest.raises(TypeError):
            lib.SpatialDropout1D(0.5, data_format="channels_last")


@pytest.mark.parametrize(("layer", "shape"), [
    (layers.SpatialDropout1D(0.5), (2, 3)),
    (layers.SpatialDropout2D(0.5), (2, 3, 4)),
    (layers.SpatialDropout3D(0.5), (2, 3, 4, 5)),
])
def test_spatial_dropout_checks_the_input_rank(layer, shape) -> None:
    with pytest.raises(ValueError, match="expected ndim"):
        layer(torch.ones(shape), training=True)


def test_symbolic_calls_keep_the_shape() -> None:
    inputs = layers.Input((3, 2, 4))
    assert layers.SpatialDropout2D(0.5)(inputs, training=True).shape == (None, 3, 2, 4)
    assert layers.GaussianNoise(0.5)(inputs, training=True).shape == (None, 3, 2, 4)


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_masks_pass_through(name, kwargs, shape) -> None:
    layer = getattr(layers, name)(**kwargs)
    x = torch.ones(shape)
    mask = torch.ones(shape[:2], dtype=torch.bool)
    assert layer.compute_mask(x, mask) is mask


def test_fit_draws_the_noise_keras_draws(keras) -> None:
    # Seeded noise layers in a model: fit from the same weights takes the same steps as Keras's fit.
    x = RNG.normal(size=(8, 4, 4, 3)).astype(np.float32)
    y = RNG.normal(size=(8, 2)).astype(np.float32)

    def build(lib: Any) -> Any:
        L = lib.layers
        inputs = lib.Input((4, 4, 3))
        h = L.GaussianNoise(0.2, seed=4)(L.SpatialDropout2D(0.5, seed=3)(inputs))
        h = L.Flatten()(L.Permute((3, 1, 2))(h))
        h = L.GaussianDropout(0.3, seed=6)(L.AlphaDropout(0.2, seed=5)(h))
        model = lib.Model(inputs, L.Dense(2)(h))
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        return model

    theirs, ours = build(keras), build(weightwise)
    before = theirs.get_weights()
    ours.set_weights(before)
    theirs.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    ours.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    for want, got in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(ours.get_weights()[0], before[0])  # the steps did move the weights
