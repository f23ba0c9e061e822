"""DepthwiseConv1D/2D, SeparableConv1D/2D and Conv1D/2D/3DTranspose: rules, the layer checks, and Keras 3.

Every number is checked against Keras 3.15.1 itself (KERAS_BACKEND=torch), from the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import binding, constraints, regularizers
from weightwise.layers import (
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3DTranspose,
    ConvTranspose,
    DepthwiseConv,
    DepthwiseConv1D,
    DepthwiseConv2D,
    SeparableConv,
    SeparableConv1D,
    SeparableConv2D,
)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


# -- the shared layer checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape",
    [
        (DepthwiseConv1D, {"kernel_size": 3}, (2, 9, 3), (2, 7, 3)),
        (DepthwiseConv1D, {"kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2},
         (2, 9, 3), (2, 5, 6)),
        (DepthwiseConv2D, {"kernel_size": (2, 3), "depth_multiplier": 3, "data_format": "channels_first"},
         (2, 2, 6, 7), (2, 6, 5, 5)),
        (DepthwiseConv2D, {"kernel_size": 3, "use_bias": False, "dilation_rate": 2}, (2, 7, 7, 2), (2, 3, 3, 2)),
        (DepthwiseConv, {"rank": 2, "depth_multiplier": 2, "kernel_size": 3}, (1, 5, 5, 2), (1, 3, 3, 4)),
        (SeparableConv1D, {"filters": 4, "kernel_size": 3}, (2, 9, 3), (2, 7, 4)),
        (SeparableConv2D, {"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
         (2, 6, 7, 3), (2, 6, 7, 4)),
        (SeparableConv2D, {"filters": 2, "kernel_size": 2, "strides": 2, "data_format": "channels_first",
                           "use_bias": False}, (2, 3, 6, 6), (2, 2, 3, 3)),
        (SeparableConv, {"rank": 1, "filters": 3, "kernel_size": 2}, (1, 5, 2), (1, 4, 3)),
        (Conv1DTranspose, {"filters": 4, "kernel_size": 3, "strides": 2}, (2, 5, 3), (2, 11, 4)),
        (Conv2DTranspose, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 1},
         (2, 4, 5, 3), (2, 8, 10, 4)),
        (Conv2DTranspose, {"filters": 2, "kernel_size": 2, "dilation_rate": 2, "data_format": "channels_first"},
         (2, 3, 4, 4), (2, 2, 6, 6)),
        (Conv3DTranspose, {"filters": 2, "kernel_size": (1, 2, 3)}, (1, 3, 3, 3, 2), (1, 3, 4, 5, 2)),
        (ConvTranspose, {"rank": 1, "filters": 2, "kernel_size": 3, "padding": "same"}, (1, 5, 2), (1, 5, 2)),
    ],
)
def test_every_layer_through_the_shared_checker(cls, kwargs, input_shape, output_shape) -> None:
    run_layer_test(cls, kwargs, input_shape, expected_output_shape=output_shape)


# Which weight each rule argument binds to (the checker maps `x_regularizer` to weight `x`,
# which these layers' Keras names do not follow).
RULE_WEIGHTS = {
    DepthwiseConv2D: {"depthwise": "kernel", "bias": "bias"},
    SeparableConv2D: {"depthwise": "depthwise_kernel", "pointwise": "pointwise_kernel", "bias": "bias"},
    Conv2DTranspose: {"kernel": "kernel", "bias": "bias"},
}


@pytest.mark.parametrize("cls", list(RULE_WEIGHTS))
def test_every_rule_argument_reaches_its_weight_and_stays_live(cls) -> None:
    given: dict[str, Any] = {"activity_regularizer": regularizers.L1(0.5)}
    for index, prefix in enumerate(RULE_WEIGHTS[cls]):
        given[f"{prefix}_regularizer"] = regularizers.L2(0.01 * (index + 1))
        given[f"{prefix}_constraint"] = constraints.MaxNorm(index + 1.0)
    args = {"kernel_size": 3} if cls is DepthwiseConv2D else {"filters": 2, "kernel_size": 3}
    layer = cls(**args, **given)
    for arg, obj in given.items():
        assert getattr(layer, arg) is obj, arg  # before build
    layer(rand(2, 5, 5, 3))
    for arg, obj in given.items():
        assert getattr(layer, arg) is obj, arg
        if arg != "activity_regularizer":
            prefix, kind = arg.rsplit("_", 1)
            assert getattr(binding.rule_of(layer, RULE_WEIGHTS[cls][prefix]), kind) is obj, arg
    assert len(layer.losses) == len(RULE_WEIGHTS[cls]) + 1
    # Set after build, a rule rebinds its weight at once.
    prefix = next(iter(RULE_WEIGHTS[cls]))
    new = constraints.UnitNorm(axis=0)
    setattr(layer, f"{prefix}_constraint", new)
    assert binding.rule_of(layer, RULE_WEIGHTS[cls][prefix]).constraint is new
    setattr(layer, f"{prefix}_regularizer", None)
    assert len(layer.losses) == len(RULE_WEIGHTS[cls])


def test_weights_have_keras_names_order_and_shapes() -> None:
    depthwise = DepthwiseConv2D(3, depth_multiplier=2)
    depthwise(rand(1, 5, 5, 4))
    assert [(w.name, tuple(w.shape)) for w in depthwise.weights] == [("kernel", (3, 3, 4, 2)), ("bias", (8,))]
    separable = SeparableConv1D(5, 3, depth_multiplier=2)
    separable(rand(1, 6, 4))
    assert [(w.name, tuple(w.shape)) for w in separable.weights] == [
        ("depthwise_kernel", (3, 4, 2)), ("pointwise_kernel", (1, 8, 5)), ("bias", (5,))]
    transpose = Conv3DTranspose(5, (1, 2, 3))
    transpose(rand(1, 3, 3, 3, 4))
    assert [(w.name, tuple(w.shape)) for w in transpose.weights] == [("kernel", (1, 2, 3, 5, 4)), ("bias", (5,))]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DepthwiseConv2D(3, depth_multiplier=0),
         r"depth_multiplier`. Expected a strictly positive value. Received depth_multiplier=0"),
        (lambda: DepthwiseConv2D(3, padding="causal"), r"`padding`.*Received: padding='causal'"),
        (lambda: DepthwiseConv1D(3, depth_multiplier=1.5), r"`depth_multiplier`.*Received: depth_multiplier=1.5"),
        (lambda: SeparableConv2D(0, 3), r"Received filters=0"),
        (lambda: SeparableConv2D(2, (3, 0)), r"kernel_size=\(3, 0\), including values \{0\}"),
        (lambda: SeparableConv1D(2, 3, pointwise_initializer="nope"), r"`pointwise_initializer`"),
        (lambda: DepthwiseConv2D(3, depthwise_regularizer="nope"), r"`depthwise_regularizer`"),
        (lambda: Conv2DTranspose(2, 3, strides=2, output_padding=2), r"`output_padding` must be strictly less"),
        (lambda: Conv1DTranspose(2, 3, output_padding=-1), r"output_padding=-1.*`value >= 0`"),
        (lambda: Conv2DTranspose(2, 3, strides=2, dilation_rate=2), r"`strides > 1` not supported"),
        (lambda: Conv1DTranspose(2, 3, padding="causal"), r"Received: padding='causal'"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("layer", [DepthwiseConv1D(5, strides=2), SeparableConv1D(2, 5)])
def test_too_small_an_input_builds_nothing(layer) -> None:
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        layer(rand(2, 4, 3))
    assert not layer.built and not layer.weights


def test_wrong_input_rank_and_channels_after_build() -> None:
    layer = SeparableConv2D(2, 3)
    layer(rand(1, 5, 5, 3))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        layer(rand(1, 5, 5, 4))
    with pytest.raises(ValueError, match="expected ndim=4"):
        DepthwiseConv2D(3)(rand(5, 5, 3))


def test_integer_inputs_are_cast_to_the_layer_dtype() -> None:
    for layer in (DepthwiseConv1D(2), SeparableConv1D(2, 2), Conv1DTranspose(2, 2)):
        out = layer(torch.ones(1, 4, 3, dtype=torch.int64))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, layer(torch.ones(1, 4, 3)))


# -- Keras conformance: outputs, losses, gradients ----------------------------------------------------


def rules(lib: Any, cls_name: str) -> dict[str, Any]:
    """The same rules from ``lib`` (``keras`` or ``weightwise``), on every rule argument of the layer."""
    R, C = lib.regularizers, lib.constraints
    if cls_name.startswith("Depthwise"):
        prefixes = ["depthwise"]
    elif cls_name.startswith("Separable"):
        prefixes = ["depthwise", "pointwise"]
    else:
        prefixes = ["kernel"]
    given: dict[str, Any] = {"bias_regularizer": R.L2(0.03), "activity_regularizer": R.L1(0.001),
                             "bias_constraint": C.NonNeg()}
    for index, prefix in enumerate(prefixes):
        given[f"{prefix}_regularizer"] = R.L1L2(l1=0.01, l2=0.02 * (index + 1))
        given[f"{prefix}_constraint"] = C.MaxNorm(1.0 + index)
    return given


CASES = [
    ("DepthwiseConv1D", {"kernel_size": 3, "depth_multiplier": 2}, (2, 10, 3)),
    ("DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "padding": "same", "data_format": "channels_first"},
     (2, 3, 11)),
    ("DepthwiseConv1D", {"kernel_size": 2, "dilation_rate": 3, "padding": "same", "depth_multiplier": 3,
                         "activation": "tanh"}, (2, 10, 2)),
    ("DepthwiseConv2D", {"kernel_size": 3}, (2, 8, 8, 3)),
    ("DepthwiseConv2D", {"kernel_size": (2, 3), "strides": (2, 1), "padding": "same", "depth_multiplier": 2},
     (2, 7, 9, 3)),
    ("DepthwiseConv2D", {"kernel_size": 3, "dilation_rate": 2, "data_format": "channels_first",
                         "depth_multiplier": 2, "activation": "relu"}, (2, 3, 9, 8)),
    ("DepthwiseConv2D", {"kernel_size": 4, "strides": 3, "padding": "same", "use_bias": False}, (2, 10, 11, 2)),
    ("DepthwiseConv2D", {"kernel_size": 3, "strides": 2, "dilation_rate": 2, "padding": "same"}, (2, 9, 9, 2)),
    ("SeparableConv1D", {"filters": 4, "kernel_size": 3}, (2, 10, 3)),
    ("SeparableConv1D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "depth_multiplier": 2,
                         "data_format": "channels_first"}, (2, 3, 11)),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3, "depth_multiplier": 2}, (2, 8, 8, 3)),
    ("SeparableConv2D", {"filters": 4, "kernel_size": (1, 4), "padding": "same", "dilation_rate": (1, 2),
                         "activation": "elu"}, (2, 3, 9, 3)),
    ("SeparableConv2D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
                         "data_format": "channels_first", "use_bias": False}, (2, 2, 9, 8)),
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2}, (2, 6, 3)),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 4, "strides": 3, "padding": "same", "output_padding": 2,
                         "data_format": "channels_first"}, (2, 3, 5)),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 1, "strides": 3, "padding": "same"}, (2, 5, 3)),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 4, 5, 3)),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": (2, 3), "strides": (2, 3), "output_padding": (1, 0),
                         "activation": "sigmoid"}, (2, 4, 5, 3)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": "same",
                         "data_format": "channels_first"}, (2, 3, 5, 6)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "valid", "output_padding": 0,
                         "use_bias": False}, (2, 4, 4, 2)),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}, (1, 3, 4, 3, 2)),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 2, "strides": (1, 2, 2), "output_padding": (0, 1, 0),
                         "data_format": "channels_first"}, (1, 2, 3, 3, 3)),
]


def at_float32(value: Any) -> Any:
    """After JSON, floats at float32 precision (Keras keeps rule factors as float32)."""
    if isinstance(value, dict):
        return {key: at_float32(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [at_float32(item) for item in value]
    return float(np.float32(value)) if isinstance(value, (float, np.floating)) else value


def _pair(keras: Any, name: str, kwargs: dict[str, Any], x: np.ndarray) -> tuple[Any, Any]:
    theirs = getattr(keras.layers, name)(**kwargs, **rules(keras, name))
    theirs(x)
    ours = getattr(weightwise.layers, name)(**kwargs, **rules(weightwise, name))
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.weights]
    # Non-zero biases, so the bias path is compared too.
    ours.set_weights([w + 0.1 * (w.ndim == 1) for w in (to_numpy(w) for w in theirs.weights)])
    theirs.set_weights(ours.get_weights())
    return theirs, ours


@pytest.mark.parametrize("name, kwargs, input_shape", CASES, ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("training", [False, True])
def test_matches_keras_outputs_losses_and_gradients(keras, name, kwargs, input_shape, training: bool) -> None:
    x = rand(*input_shape, seed=len(input_shape))
    theirs, ours = _pair(keras, name, kwargs, x)

    their_x = torch.tensor(x, requires_grad=True)
    their_out = theirs(their_x, training=training)
    their_total = (their_out * torch.from_numpy(rand(*their_out.shape, seed=7))).sum() + sum(theirs.losses)
    their_grads = torch.autograd.grad(their_total, [their_x, *(w.value for w in theirs.trainable_weights)])

    our_x = torch.tensor(x, requires_grad=True)
    our_out = ours(our_x, training=training)
    our_total = (our_out * torch.from_numpy(rand(*our_out.shape, seed=7))).sum() + sum(ours.losses)
    our_grads = torch.autograd.grad(our_total, [our_x, *ours.trainable_weights])

    np.testing.assert_allclose(to_numpy(our_out), to_numpy(their_out), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sorted(float(to_numpy(v)) for v in ours.losses),
                               sorted(float(to_numpy(v)) for v in theirs.losses), rtol=1e-5, atol=1e-6)
    assert len(ours.losses) == len(theirs.losses)
    for mine, reference in zip(our_grads, their_grads):
        np.testing.assert_allclose(to_numpy(mine), to_numpy(reference), rtol=1e-5, atol=1e-5)
    assert tuple(ours.compute_output_shape(input_shape)) == tuple(theirs.compute_output_shape(input_shape))


@pytest.mark.parametrize("name, kwargs, input_shape", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_configs_are_keras_and_load_both_ways(keras, name, kwargs, input_shape) -> None:
    theirs = getattr(keras.layers, name)(**kwargs, **rules(keras, name))
    ours = getattr(weightwise.layers, name)(**kwargs, **rules(weightwise, name))
    their_config, our_config = theirs.get_config(), ours.get_config()
    assert list(our_config) == list(their_config)
    assert at_float32({**our_config, "name": None}) == at_float32({**their_config, "name": None})
    # Each side builds from the other's config, to the same config.
    rebuilt = getattr(weightwise.layers, name).from_config(their_config).get_config()
    assert at_float32(rebuilt) == at_float32({**our_config, "name": their_config["name"]})
    back = getattr(keras.layers, name).from_config(our_config)
    assert list(back.get_config()) == list(their_config)


# -- training: constraints hold, and one step matches Keras -------------------------------------------


def eeg_block(lib: Any) -> Any:
    """The layers under test in one model, with max-norm constraints on the depthwise kernels."""
    L, C = lib.layers, lib.constraints
    return lib.Sequential([
        lib.Input(shape=(6, 16, 2)),
        L.DepthwiseConv2D((6, 1), depth_multiplier=2, depthwise_constraint=C.max_norm(1.0), name="depthwise"),
        L.SeparableConv2D(4, (1, 3), padding="same", depthwise_constraint=C.max_norm(0.5),
                          pointwise_constraint=C.MaxNorm(0.8, axis=[0, 1, 2]), bias_constraint=C.NonNeg(),
                          name="separable"),
        L.Conv2DTranspose(3, (1, 3), strides=(1, 2), padding="same", kernel_constraint=C.UnitNorm(axis=[0, 1, 2]),
                          kernel_regularizer=lib.regularizers.L2(0.01), name="transpose"),
        L.Flatten(),
        L.Dense(2),
    ])


def test_one_fit_step_matches_keras_and_keeps_constraints(keras) -> None:
    x, y = rand(8, 6, 16, 2, seed=1) * 3.0, rand(8, 2, seed=2)
    theirs = eeg_block(keras)
    ours = eeg_block(weightwise)
    # Kernels well outside their bounds, so every constraint has work to do after the step.
    theirs.set_weights([to_numpy(w) * (4.0 if w.ndim > 1 else 1.0) for w in theirs.weights])
    ours.set_weights([to_numpy(w) for w in theirs.weights])
    assert ours.get_layer("depthwise").kernel.detach().norm(dim=0).min() > 1.0
    for model, lib in ((theirs, keras), (ours, weightwise)):
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, to_numpy(reference), rtol=1e-5, atol=1e-5)

    depthwise, separable, transpose = (ours.get_layer(n) for n in ("depthwise", "separable", "transpose"))
    # MaxNorm's default axis=0: the norm over the first kernel axis, per (column, channel, multiplier).
    assert depthwise.kernel.detach().norm(dim=0).max() <= 1.0 + 1e-6
    assert separable.depthwise_kernel.detach().norm(dim=0).max() <= 0.5 + 1e-6
    assert separable.pointwise_kernel.detach().square().sum(dim=(0, 1, 2)).sqrt().max() <= 0.8 + 1e-6
    assert separable.bias.detach().min() >= 0
    np.testing.assert_allclose(to_numpy(transpose.kernel.detach().square().sum(dim=(0, 1, 2)).sqrt()), 1.0, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(depthwise.kernel.detach().norm(dim=0)), 1.0, rtol=1e-5)


# -- .keras files ------------------------------------------------------------------------------------


def test_keras_files_move_both_ways(keras, tmp_path) -> None:
    x = rand(4, 6, 16, 2, seed=3)
    theirs = eeg_block(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-5,
                               atol=1e-5)
    assert type(ours.get_layer("separable").pointwise_constraint) is weightwise.constraints.MaxNorm
    ours.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(back.predict(x, verbose=0)), ours.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    assert back.get_layer("depthwise").depthwise_constraint.max_value == 1.0
