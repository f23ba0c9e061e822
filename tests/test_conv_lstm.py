"""ConvLSTM1D/2D/3D and their cell: rules on the cell's weights, the layer checks, and Keras 3 conformance.

Numbers are checked against Keras 3.15.1 itself (KERAS_BACKEND=torch), from the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import binding, constraints, layers, regularizers
from weightwise.layers.conv_lstm import ConvLSTMCell

RULES = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
         "recurrent_constraint", "bias_constraint")


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape",
    [
        (layers.ConvLSTM1D, {"filters": 3, "kernel_size": 3}, (2, 4, 7, 2), (2, 5, 3)),
        (layers.ConvLSTM1D, {"filters": 3, "kernel_size": 2, "padding": "same", "return_sequences": True},
         (2, 4, 7, 2), (2, 4, 7, 3)),
        (layers.ConvLSTM2D, {"filters": 2, "kernel_size": 3, "strides": 2, "data_format": "channels_first"},
         (2, 3, 2, 7, 7), (2, 2, 3, 3)),
        (layers.ConvLSTM2D, {"filters": 2, "kernel_size": (2, 3), "use_bias": False, "go_backwards": True},
         (2, 3, 5, 6, 2), (2, 4, 4, 2)),
        (layers.ConvLSTM3D, {"filters": 2, "kernel_size": 2, "padding": "same"}, (1, 2, 3, 3, 3, 2), (1, 3, 3, 3, 2)),
        (layers.ConvLSTM, {"rank": 1, "filters": 2, "kernel_size": 3}, (2, 3, 5, 2), (2, 3, 2)),
    ],
)
def test_every_layer_through_the_shared_checker(cls, kwargs, input_shape, output_shape) -> None:
    run_layer_test(cls, kwargs, input_shape, expected_output_shape=output_shape,
                   expected_num_weights=3 if kwargs.get("use_bias", True) else 2)


@pytest.mark.parametrize("cls", [layers.ConvLSTM2D, ConvLSTMCell])
def test_every_rule_argument_reaches_the_cells_weight(cls) -> None:
    given = {name: regularizers.L1(0.01 * (i + 1)) if name.endswith("_regularizer") else constraints.MaxNorm(i + 1.0)
             for i, name in enumerate(RULES)}
    if cls is ConvLSTMCell:
        layer = cell = cls(2, 3, 3, **given)
        cell.build((2, 5, 5, 2))
    else:
        layer = cls(3, 3, activity_regularizer=regularizers.L2(0.1), **given)
        layer(rand(2, 3, 5, 5, 2))
        cell = layer.cell
    weight_of = {"kernel": "kernel", "recurrent": "recurrent_kernel", "bias": "bias"}
    for name, rule in given.items():
        assert getattr(layer, name) is rule, name
        part, kind = name.rsplit("_", 1)
        assert getattr(binding.rule_of(cell, weight_of[part]), kind) is rule, name
    assert len(layer.losses) == 3 + (cls is not ConvLSTMCell)
    if cls is not ConvLSTMCell:
        new = constraints.UnitNorm(axis=[0, 1, 2])
        layer.recurrent_constraint = new
        assert binding.rule_of(cell, "recurrent_kernel").constraint is new


def test_weights_have_keras_layouts_paths_and_forget_bias() -> None:
    layer = layers.ConvLSTM2D(4, (2, 3), name="clstm")
    layer(rand(1, 2, 5, 5, 3))
    assert [(w.path, tuple(w.shape)) for w in layer.weights] == [
        ("clstm/conv_lstm_cell/kernel", (2, 3, 3, 16)),
        ("clstm/conv_lstm_cell/recurrent_kernel", (2, 3, 4, 16)),
        ("clstm/conv_lstm_cell/bias", (16,)),
    ]
    np.testing.assert_array_equal(to_numpy(layer.cell.bias), [0.0] * 4 + [1.0] * 4 + [0.0] * 8)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: layers.ConvLSTM2D(0, 3), r"Received filters=0"),
        (lambda: layers.ConvLSTM2D(2, 3, strides=2, dilation_rate=2), r"Specifying `strides > 1` is not compatible"),
        (lambda: layers.ConvLSTM1D(2, 3, padding="causal"), r"Received: padding='causal'"),
        (lambda: layers.ConvLSTM2D(2, (3, 0)), r"kernel_size=\(3, 0\)"),
        (lambda: layers.ConvLSTM2D(2, 3, recurrent_dropout=1.5), r"recurrent_dropout"),
        (lambda: layers.ConvLSTM(4, 2, 3), r"`rank`.*Received: rank=4"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_unknown_spatial_sizes_are_refused_as_in_keras() -> None:
    with pytest.raises(ValueError, match="only support static input shapes for the spatial"):
        layers.ConvLSTM2D(2, 3).build((None, 3, None, 5, 2))


def test_dropout_draws_per_gate_masks_and_only_while_training() -> None:
    layer = layers.ConvLSTM1D(3, 3, dropout=0.5, recurrent_dropout=0.5, seed=4)
    x = torch.from_numpy(rand(2, 4, 6, 2))
    inference = layer(x)
    torch.testing.assert_close(layer(x), inference)
    trained = layer(x, training=True)
    assert not torch.allclose(trained, inference)
    masks = layer.cell._create_dropout_mask(torch.ones(2, 6, 2), 0.5)
    assert len(masks) == 4 and not torch.equal(masks[0], masks[1])


# -- Keras conformance --------------------------------------------------------------------------------


def rules(lib: Any) -> dict[str, Any]:
    R, C = lib.regularizers, lib.constraints
    return {"kernel_regularizer": R.L1L2(l1=0.01, l2=0.02), "recurrent_regularizer": R.L2(0.03),
            "bias_regularizer": R.L1(0.01), "activity_regularizer": R.L2(0.001),
            "kernel_constraint": C.MaxNorm(2.0), "recurrent_constraint": C.UnitNorm(), "bias_constraint": C.NonNeg()}


CASES = [
    ("ConvLSTM1D", {"filters": 3, "kernel_size": 3}, (2, 4, 8, 2)),
    ("ConvLSTM1D", {"filters": 2, "kernel_size": 2, "padding": "same", "return_sequences": True,
                    "go_backwards": True, "data_format": "channels_first"}, (2, 3, 2, 7)),
    ("ConvLSTM1D", {"filters": 2, "kernel_size": 3, "strides": 2, "return_state": True, "activation": "relu",
                    "recurrent_activation": "hard_sigmoid"}, (2, 3, 9, 2)),
    ("ConvLSTM2D", {"filters": 3, "kernel_size": 3, "padding": "same"}, (2, 3, 5, 6, 2)),
    ("ConvLSTM2D", {"filters": 2, "kernel_size": (2, 3), "dilation_rate": 2, "return_sequences": True,
                    "unit_forget_bias": False}, (2, 3, 7, 7, 3)),
    ("ConvLSTM2D", {"filters": 2, "kernel_size": 2, "strides": (2, 1), "data_format": "channels_first",
                    "return_state": True, "use_bias": False}, (2, 3, 2, 6, 5)),
    ("ConvLSTM3D", {"filters": 2, "kernel_size": 2, "padding": "same", "return_sequences": True},
     (2, 2, 3, 4, 3, 2)),
]


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def pair(keras: Any, name: str, kwargs: dict[str, Any], x: np.ndarray) -> tuple[Any, Any]:
    theirs = getattr(keras.layers, name)(**kwargs, **rules(keras))
    theirs(x)
    ours = getattr(weightwise.layers, name)(**kwargs, **rules(weightwise))
    ours(x)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    ours.set_weights([to_numpy(w) for w in theirs.weights])
    return theirs, ours


def outputs_losses_grads(layer: Any, x: np.ndarray, weights: list[Any], **call: Any) -> tuple[list, list, list]:
    inputs = torch.tensor(x, requires_grad=True)
    outputs = as_list(layer(inputs, **call))
    probes = [torch.from_numpy(rand(*o.shape, seed=9 + i)) for i, o in enumerate(outputs)]
    total = sum((o * p).sum() for o, p in zip(outputs, probes)) + sum(layer.losses)
    grads = torch.autograd.grad(total, [inputs, *weights])
    return [to_numpy(o) for o in outputs], sorted(float(to_numpy(v)) for v in layer.losses), \
        [to_numpy(g) for g in grads]


@pytest.mark.parametrize("name, kwargs, input_shape", CASES, ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("masked", [False, True])
def test_matches_keras_outputs_losses_and_gradients(keras, name, kwargs, input_shape, masked: bool) -> None:
    x = rand(*input_shape, seed=1) * 0.5
    theirs, ours = pair(keras, name, kwargs, x)
    call: dict[str, Any] = {"training": True}
    if masked:
        mask = np.ones(input_shape[:2], dtype=bool)
        mask[0, 1] = mask[1, -1] = False
        call["mask"] = mask
    their_call = {**call, "mask": torch.from_numpy(call["mask"])} if masked else call
    expected = outputs_losses_grads(theirs, x, [w.value for w in theirs.trainable_weights], **their_call)
    got = outputs_losses_grads(ours, x, list(ours.trainable_weights), **their_call)
    for mine, reference in zip(got[0], expected[0]):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-6)
    for mine, reference in zip(got[2], expected[2]):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)
    # Inference mode too, and Keras's output shapes.
    np.testing.assert_allclose(to_numpy(as_list(ours(x))[0]), to_numpy(as_list(theirs(x))[0]), rtol=1e-5, atol=1e-5)
    shapes = ours.compute_output_shape((None, *input_shape[1:]))
    assert shapes == theirs.compute_output_shape((None, *input_shape[1:]))


def test_initial_state_and_the_cell_alone_match_keras(keras) -> None:
    x = rand(2, 3, 5, 5, 2, seed=3)
    theirs, ours = pair(keras, "ConvLSTM2D", {"filters": 3, "kernel_size": 3, "padding": "same"}, x)
    states = [rand(2, 5, 5, 3, seed=4), rand(2, 5, 5, 3, seed=5)]
    np.testing.assert_allclose(to_numpy(ours(x, initial_state=states)),
                               to_numpy(theirs(x, initial_state=states)), rtol=1e-5, atol=1e-5)
    step = x[:, 0]
    h, (_, c) = ours.cell(step, states)
    their_h, (_, their_c) = theirs.cell(step, states)
    np.testing.assert_allclose(to_numpy(h), to_numpy(their_h), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(c), to_numpy(their_c), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kwargs, input_shape", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_configs_are_keras_and_load_both_ways(keras, name, kwargs, input_shape) -> None:
    theirs = getattr(keras.layers, name)(**kwargs, **rules(keras))
    ours = getattr(weightwise.layers, name)(**kwargs, **rules(weightwise))
    their_config, our_config = theirs.get_config(), ours.get_config()
    assert list(our_config) == list(their_config)
    assert at_float32({**our_config, "name": None}) == at_float32({**their_config, "name": None})
    rebuilt = getattr(weightwise.layers, name).from_config(their_config).get_config()
    assert at_float32(rebuilt) == at_float32({**our_config, "name": their_config["name"]})
    assert list(getattr(keras.layers, name).from_config(our_config).get_config()) == list(their_config)


def at_float32(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: at_float32(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [at_float32(item) for item in value]
    return float(np.float32(value)) if isinstance(value, (float, np.floating)) else value


def video_model(lib: Any) -> Any:
    L, C, R = lib.layers, lib.constraints, lib.regularizers
    return lib.Sequential([
        lib.Input(shape=(3, 6, 6, 2)),
        L.ConvLSTM2D(3, 3, padding="same", return_sequences=True, kernel_constraint=C.MaxNorm(0.5, axis=[0, 1, 2]),
                     recurrent_constraint=C.UnitNorm(axis=[0, 1, 2]), recurrent_regularizer=R.L2(0.01), name="clstm"),
        L.ConvLSTM2D(2, 3, bias_constraint=C.NonNeg(), name="top"),
        L.Flatten(),
        L.Dense(2),
    ])


def test_one_fit_step_matches_keras_and_keeps_constraints(keras) -> None:
    x, y = rand(4, 3, 6, 6, 2, seed=6) * 2, rand(4, 2, seed=7)
    theirs, ours = video_model(keras), video_model(weightwise)
    theirs.set_weights([to_numpy(w) * (3.0 if len(w.shape) > 1 else 1.0) for w in theirs.weights])
    ours.set_weights([to_numpy(w) for w in theirs.weights])
    for model, lib in ((theirs, keras), (ours, weightwise)):
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss="mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, to_numpy(reference), rtol=1e-5, atol=1e-5)
    cell = ours.get_layer("clstm").cell
    norms = cell.kernel.detach().square().sum(dim=(0, 1, 2)).sqrt()
    assert norms.max() <= 0.5 + 1e-6
    np.testing.assert_allclose(to_numpy(cell.recurrent_kernel.detach().square().sum(dim=(0, 1, 2)).sqrt()), 1.0,
                               rtol=1e-5)
    assert ours.get_layer("top").cell.bias.detach().min() >= 0


def test_keras_files_move_both_ways(keras, tmp_path) -> None:
    x = rand(2, 3, 6, 6, 2, seed=8)
    theirs = video_model(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-5,
                               atol=1e-5)
    assert ours.get_layer("clstm").recurrent_regularizer.l2 == pytest.approx(0.01)
    ours.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(back.predict(x, verbose=0)), ours.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
