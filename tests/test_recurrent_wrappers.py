"""TimeDistributed and Bidirectional against Keras 3: weights copied from Keras, then outputs,
``losses`` and gradients (of the weights and the inputs) compared to 1e-5, in training and
inference mode; rules reaching the wrapped layers; configs and ``.keras`` files both ways."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import binding, constraints, layers, regularizers
from weightwise.layers import TimeDistributed

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _flat(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _run(layer: Any, weights: list[Any], x: np.ndarray, kwargs: dict[str, Any]) -> tuple[list, list, list]:
    """Outputs, losses, and the gradients of sum(outputs * fixed weights) + sum(losses) w.r.t. weights and input."""
    inputs = torch.tensor(x, requires_grad=True)
    outputs = _flat(layer(inputs, **kwargs))
    losses = list(layer.losses)
    total = sum((out * torch.from_numpy(rand(*out.shape, seed=7 + i))).sum() for i, out in enumerate(outputs))
    total = total + sum(losses)
    grads = torch.autograd.grad(total, [*weights, inputs])
    return [to_numpy(o) for o in outputs], [float(loss.detach()) for loss in losses], [to_numpy(g) for g in grads]


def _unnumbered(path: str) -> str:
    """A weight path without the counters that make names unique (``lstm_3`` is ``lstm``): each library counts its own."""
    return re.sub(r"_\d+(?=/|$)", "", path)


def assert_matches_keras(keras: Any, make: Callable[[Any], Any], x: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
    """Build ``make(keras.layers)`` and ``make(weightwise.layers)``, copy Keras's weights into ours, and compare."""
    keras.utils.set_random_seed(0)
    theirs = make(keras.layers)
    ours = make(layers)
    theirs(x)
    ours(x)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [_unnumbered(w.path) for w in ours.weights] == [_unnumbered(w.path) for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    for training in (False, True):
        call = {**kwargs, "training": training}
        k_out, k_losses, k_grads = _run(theirs, [w.value for w in theirs.trainable_weights], x, call)
        o_out, o_losses, o_grads = _run(ours, ours.trainable_weights, x, call)
        assert len(o_out) == len(k_out)
        for ours_value, keras_value in zip(o_out, k_out):
            np.testing.assert_allclose(ours_value, keras_value, **TOL)
        np.testing.assert_allclose(sorted(o_losses), sorted(k_losses), **TOL)
        assert len(o_grads) == len(k_grads)
        for ours_value, keras_value in zip(o_grads, k_grads):
            np.testing.assert_allclose(ours_value, keras_value, **TOL)
    return theirs, ours


# --------------------------------------------------------------------------------------
# TimeDistributed
# --------------------------------------------------------------------------------------
TD_CASES = {
    "dense": (lambda L: L.TimeDistributed(L.Dense(4, activation="tanh", kernel_regularizer=l2_config(0.02),
                                                  bias_regularizer=l1_config(0.03))), (3, 5, 6)),
    "dense_4d": (lambda L: L.TimeDistributed(L.Dense(2, use_bias=False, kernel_regularizer="l1")), (2, 3, 4, 5)),
    "dense_activity": (lambda L: L.TimeDistributed(L.Dense(3, activity_regularizer="l2"),
                                                   activity_regularizer=l1_config(0.05)), (2, 4, 3)),
    "conv2d": (lambda L: L.TimeDistributed(L.Conv2D(3, 2, strides=2, padding="same", kernel_regularizer="l2")),
               (2, 3, 6, 6, 2)),
    "conv2d_channels_first": (lambda L: L.TimeDistributed(L.Conv2D(2, 3, data_format="channels_first",
                                                                   bias_regularizer="l1")), (2, 4, 3, 5, 5)),
    "conv1d": (lambda L: L.TimeDistributed(L.Conv1D(2, 2, dilation_rate=2)), (2, 3, 7, 2)),
}


def l1_config(value: float) -> Any:
    return {"class_name": "L1", "config": {"l1": value}}


def l2_config(value: float) -> Any:
    return {"class_name": "L2", "config": {"l2": value}}


@pytest.mark.parametrize("case", list(TD_CASES))
def test_time_distributed_matches_keras(keras, case):
    make, shape = TD_CASES[case]
    assert_matches_keras(keras, make, rand(*shape))


def test_time_distributed_config_is_keras(keras):
    make, shape = TD_CASES["dense"]
    theirs, ours = make(keras.layers), make(layers)
    theirs(rand(*shape))
    ours(rand(*shape))
    mine, reference = json.loads(json.dumps(ours.get_config())), json.loads(json.dumps(theirs.get_config()))
    assert set(mine) == set(reference)
    assert set(mine["layer"]["config"]) == set(reference["layer"]["config"]) - {"quantization_config"}
    assert mine["layer"]["build_config"] == reference["layer"]["build_config"] == {"input_shape": [3, 6]}
    rebuilt = keras.layers.TimeDistributed.from_config(mine)
    assert rebuilt.layer.kernel_regularizer.l2 == pytest.approx(0.02)
    again = TimeDistributed.from_config(reference)
    assert again.layer.get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.02)


def test_time_distributed_layer_checker():
    layer = run_layer_test(TimeDistributed, {"layer": layers.Dense(3)}, (2, 4, 5), expected_output_shape=(2, 4, 3),
                           expected_num_weights=2)
    assert [w.path for w in layer.weights] == [f"{layer.name}/{layer.layer.name}/kernel",
                                               f"{layer.name}/{layer.layer.name}/bias"]


def test_time_distributed_passes_rules_through_and_training_keeps_them():
    inner = layers.Dense(3, kernel_regularizer=regularizers.L2(0.1), bias_regularizer="l1",
                         kernel_constraint=constraints.MaxNorm(0.2), bias_constraint="non_neg")
    wrapper = TimeDistributed(inner)
    x = torch.from_numpy(rand(4, 5, 2))
    wrapper(x)
    kernel, bias = inner.kernel, inner.bias
    assert binding.rule_of(inner, "kernel").regularizer is inner.kernel_regularizer
    assert wrapper.weights == [kernel, bias]
    expected = 0.1 * kernel.detach().pow(2).sum() + 0.01 * bias.detach().abs().sum()
    torch.testing.assert_close(sum(wrapper.losses), expected)
    # A rule set on the inner layer after build takes effect through the wrapper too.
    inner.bias_regularizer = None
    assert len(wrapper.losses) == 1
    model = weightwise.Sequential([weightwise.Input((5, 2)), wrapper])
    model.compile(optimizer=weightwise.optimizers.SGD(1.0), loss="mse")
    model.fit(to_numpy(x), 10 * rand(4, 5, 3, seed=1), epochs=2, verbose=0)
    assert float(kernel.detach().norm(dim=0).max()) <= 0.2 + 1e-6
    assert float(bias.detach().min()) >= 0.0


class _StepMask(layers.Layer):
    """Records the mask and training flag each step receives; scales each row by its mask."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[Any, Any]] = []

    def call(self, inputs, training=None, mask=None):
        self.seen.append((None if mask is None else mask.clone(), training))
        return inputs if mask is None else inputs * mask.to(inputs.dtype)[:, None]


def test_time_distributed_gives_each_step_its_mask_and_the_training_flag():
    inner = _StepMask()
    wrapper = TimeDistributed(inner)
    x = torch.from_numpy(rand(3, 2, 4))
    mask = np.array([[False, True], [True, False], [True, True]])
    out = wrapper(x, mask=mask, training=True)
    assert [training for _, training in inner.seen] == [True, True]
    for step, (step_mask, _) in enumerate(inner.seen):
        assert step_mask.tolist() == mask[:, step].tolist()
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x) * mask[..., None])
    assert wrapper.supports_masking
    assert wrapper.compute_mask(x, torch.from_numpy(mask)).tolist() == mask.tolist()
    inner.seen.clear()
    wrapper(x)
    assert [seen for seen, _ in inner.seen] == [None, None]


def test_time_distributed_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"`layer`.*Received: layer=3"):
        TimeDistributed(3)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        TimeDistributed(layers.Dense(2))(torch.ones(2, 3))
    wrapper = TimeDistributed(layers.Dense(2))
    x = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match=r"has a shape \(2, 4\) that is incompatible.*\(2, 3\)"):
        wrapper(x, mask=np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="at least 2D"):
        wrapper(x, mask=np.ones((2,), dtype=bool))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        wrapper(torch.ones(2, 4))


def test_time_distributed_output_shape_and_symbolic_call():
    wrapper = TimeDistributed(layers.Conv2D(4, 3))
    assert wrapper.compute_output_shape((None, 10, 8, 8, 3)) == (None, 10, 6, 6, 4)
    out = wrapper(layers.Input(shape=(10, 8, 8, 3), batch_size=2))
    assert tuple(out.shape) == (2, 10, 6, 6, 4)


def _model(lib: Any, wrapper: Callable[[Any], Any], shape: tuple[int, ...]) -> Any:
    return lib.Sequential([lib.Input(shape=shape), wrapper(lib.layers), lib.layers.Activation("linear")])


SAVE_CASES = {
    "time_distributed_dense": (lambda L: L.TimeDistributed(L.Dense(3, kernel_regularizer="l1",
                                                                   bias_constraint="non_neg")), (4, 5)),
    "time_distributed_conv2d": (lambda L: L.TimeDistributed(L.Conv2D(2, 2, kernel_constraint="unit_norm")),
                                (3, 5, 5, 2)),
}


@pytest.mark.parametrize("case", list(SAVE_CASES))
def test_keras_files_move_both_ways(keras, tmp_path, case):
    make, shape = SAVE_CASES[case]
    data = rand(3, *shape, seed=5)
    keras.utils.set_random_seed(0)
    theirs = _model(keras, make, shape)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    assert type(ours.layers[0]).__name__ == type(theirs.layers[0]).__name__
    np.testing.assert_allclose(ours.predict(data, verbose=0), to_numpy(theirs.predict(data, verbose=0)), **TOL)
    assert [to_numpy(w).tolist() for w in ours.weights] == [to_numpy(w).tolist() for w in theirs.weights]
    mine = _model(weightwise, make, shape)
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(back.predict(data, verbose=0)), mine.predict(data, verbose=0), **TOL)
    assert type(back.layers[0].layer).__name__ == type(mine.layers[0].layer).__name__


# --------------------------------------------------------------------------------------
# Bidirectional
# --------------------------------------------------------------------------------------
RULED = {"kernel_regularizer": l2_config(0.02), "recurrent_regularizer": l1_config(0.01),
         "bias_regularizer": l2_config(0.03)}
BI_CASES = {
    "lstm_concat_sequences": lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True, **RULED)),
    "lstm_sum_last": lambda L: L.Bidirectional(L.LSTM(4, **RULED), merge_mode="sum"),
    "lstm_ave_states": lambda L: L.Bidirectional(L.LSTM(3, return_state=True, activity_regularizer="l2"),
                                                 merge_mode="ave"),
    "lstm_none_sequences_states": lambda L: L.Bidirectional(L.LSTM(2, return_sequences=True, return_state=True),
                                                            merge_mode=None),
    "lstm_unit_forget_bias_off_mul": lambda L: L.Bidirectional(
        L.LSTM(3, unit_forget_bias=False, return_sequences=True), merge_mode="mul"),
    "gru_concat_sequences": lambda L: L.Bidirectional(L.GRU(3, return_sequences=True, **RULED)),
    "gru_mul_states": lambda L: L.Bidirectional(L.GRU(3, return_state=True, return_sequences=True), merge_mode="mul"),
    "gru_reset_before_sum": lambda L: L.Bidirectional(L.GRU(4, reset_after=False, **RULED), merge_mode="sum"),
    "gru_none_last": lambda L: L.Bidirectional(L.GRU(2, activation="relu"), merge_mode=None),
    "simple_rnn_ave": lambda L: L.Bidirectional(L.SimpleRNN(3, return_sequences=True, **RULED), merge_mode="ave"),
    "custom_backward_layer": lambda L: L.Bidirectional(
        L.LSTM(3, return_sequences=True, name="lstm"),
        backward_layer=L.GRU(3, go_backwards=True, return_sequences=True, kernel_regularizer="l1", name="gru")),
    "bidirectional_activity": lambda L: L.Bidirectional(L.GRU(2), activity_regularizer=l1_config(0.1)),
}


@pytest.mark.parametrize("case", list(BI_CASES))
def test_bidirectional_matches_keras(keras, case):
    assert_matches_keras(keras, BI_CASES[case], rand(3, 5, 4))


MASK = np.array([[True, True, True, True, True], [True, True, True, False, False], [False, True, True, True, False]])


@pytest.mark.parametrize("case", ["lstm_concat_sequences", "gru_mul_states", "lstm_sum_last", "gru_none_last",
                                  "simple_rnn_ave"])
def test_bidirectional_with_a_mask_matches_keras(keras, case):
    assert_matches_keras(keras, BI_CASES[case], rand(3, 5, 4, seed=2), mask=MASK)


@pytest.mark.parametrize("cell, count", [("LSTM", 4), ("GRU", 2)])
def test_bidirectional_initial_state_matches_keras(keras, cell, count):
    states = [rand(3, 3, seed=10 + i) for i in range(count)]
    assert_matches_keras(keras, lambda L: L.Bidirectional(getattr(L, cell)(3, return_sequences=True)),
                         rand(3, 5, 4, seed=3), initial_state=states)


def test_bidirectional_config_is_keras(keras):
    make = BI_CASES["custom_backward_layer"]
    theirs, ours = make(keras.layers), make(layers)
    mine, reference = json.loads(json.dumps(ours.get_config())), json.loads(json.dumps(theirs.get_config()))
    assert set(mine) == set(reference)
    assert mine["merge_mode"] == reference["merge_mode"] == "concat"
    for key in ("layer", "backward_layer"):
        assert mine[key]["class_name"] == reference[key]["class_name"]
        assert mine[key]["config"]["name"] == reference[key]["config"]["name"]
        assert mine[key]["config"]["go_backwards"] == reference[key]["config"]["go_backwards"]
    rebuilt = layers.Bidirectional.from_config(reference)
    assert rebuilt.forward_layer.name == "forward_lstm" and type(rebuilt.backward_layer).__name__ == "GRU"
    assert keras.layers.Bidirectional.from_config(mine).backward_layer.kernel_regularizer.l1 == pytest.approx(0.01)
    # A Bidirectional rebuilt from its own config names its layers the same (no doubled prefix).
    assert layers.Bidirectional.from_config(ours.get_config()).get_config()["layer"]["config"]["name"] == "forward_lstm"


@pytest.mark.parametrize("kwargs", [{}, {"merge_mode": "sum"}, {"merge_mode": "ave"}])
def test_bidirectional_layer_checker(kwargs):
    # The checker counts the wrapper's own rules (its activity regularizer); the inner ones are tested below.
    layer = run_layer_test(layers.Bidirectional, {"layer": layers.LSTM(3, return_sequences=True), **kwargs}, (2, 4, 5),
                           expected_num_weights=6)
    assert [w.path.split("/", 1)[1] for w in layer.weights] == [
        f"{direction}_{layer.forward_layer.name[len('forward_'):]}/lstm_cell/{name}"
        for direction in ("forward", "backward") for name in ("kernel", "recurrent_kernel", "bias")]


def test_bidirectional_passes_rules_to_both_directions_and_training_keeps_them():
    given = layers.LSTM(3, kernel_regularizer=regularizers.L2(0.1), recurrent_constraint=constraints.MaxNorm(0.3),
                        bias_constraint="non_neg")
    wrapper = layers.Bidirectional(given)
    x = rand(4, 5, 2)
    wrapper(x)
    assert given.built is False and not given.weights  # the given layer is only a template
    cells = [wrapper.forward_layer.cell, wrapper.backward_layer.cell]
    for cell in cells:
        assert binding.rule_of(cell, "kernel").regularizer.l2 == 0.1
        assert binding.rule_of(cell, "recurrent_kernel").constraint.max_value == 0.3
    expected = sum(0.1 * cell.kernel.detach().pow(2).sum() for cell in cells)
    torch.testing.assert_close(sum(wrapper.losses), expected)
    model = weightwise.Sequential([weightwise.Input((5, 2)), wrapper])
    model.compile(optimizer=weightwise.optimizers.SGD(1.0), loss="mse")
    model.fit(x, 10 * rand(4, 6, seed=1), epochs=2, verbose=0)
    for cell in cells:
        assert float(cell.recurrent_kernel.detach().norm(dim=0).max()) <= 0.3 + 1e-6
        assert float(cell.bias.detach().min()) >= 0.0


def test_bidirectional_weights_argument_sets_both_halves():
    reference = layers.Bidirectional(layers.GRU(2))
    reference(rand(2, 3, 4))
    values = [w + 1.0 for w in reference.get_weights()]
    wrapper = layers.Bidirectional(layers.GRU(2), weights=values)
    wrapper(rand(2, 3, 4))
    for ours, expected in zip(wrapper.get_weights(), values):
        np.testing.assert_array_equal(ours, expected)
    wrong = layers.Bidirectional(layers.GRU(2), weights=values[:-1])
    with pytest.raises(ValueError, match="expecting 3 weights"):
        wrong(rand(2, 3, 4))
    assert not wrong.built and not wrong.weights


def test_bidirectional_output_shapes_masks_and_states():
    wrapper = layers.Bidirectional(layers.LSTM(3, return_sequences=True, return_state=True), merge_mode=None)
    shapes = wrapper.compute_output_shape((None, 5, 4))
    assert shapes == ((None, 5, 3), (None, 5, 3), (None, 3), (None, 3), (None, 3), (None, 3))
    outputs = wrapper(rand(2, 5, 4))
    assert [tuple(t.shape) for t in outputs] == [(2, 5, 3), (2, 5, 3), (2, 3), (2, 3), (2, 3), (2, 3)]
    mask = torch.from_numpy(MASK[:2])
    assert wrapper.compute_mask(None, mask)[:2] == (mask, mask)
    assert wrapper.compute_mask(None, mask)[2:] == (None,) * 4
    concat = layers.Bidirectional(layers.GRU(3, return_sequences=True))
    assert concat.compute_output_shape((None, 5, 4)) == (None, 5, 6)
    assert concat.compute_mask(None, mask) is mask
    assert layers.Bidirectional(layers.GRU(3), merge_mode=None).compute_mask(None, mask) == (None, None)
    symbolic = layers.Bidirectional(layers.GRU(3, return_sequences=True))(layers.Input((5, 4)))
    assert tuple(symbolic.shape) == (None, 5, 6)


def test_bidirectional_stateful_carries_and_resets_both_directions():
    wrapper = layers.Bidirectional(layers.GRU(2, stateful=True))
    x = rand(2, 3, 4)
    first = to_numpy(wrapper(x))
    assert len(wrapper.states) == 2
    assert not np.allclose(to_numpy(wrapper(x)), first)
    wrapper.reset_state()
    np.testing.assert_allclose(to_numpy(wrapper(x)), first, rtol=1e-6)
    with pytest.raises(AttributeError, match="must be stateful"):
        layers.Bidirectional(layers.GRU(2)).reset_state()


def test_bidirectional_of_a_backwards_layer_flips_it(keras):
    """Keras 3.15.1 sets the copy's go_backwards to True, so a go_backwards=True layer raises there;
    here the copy reads the other way, as the docs ask of the two layers (and as Keras 2 did)."""
    with pytest.raises(ValueError, match="different `go_backwards`"):
        keras.layers.Bidirectional(keras.layers.GRU(2, go_backwards=True))
    wrapper = layers.Bidirectional(layers.GRU(2, go_backwards=True, return_sequences=True), merge_mode=None)
    assert (wrapper.forward_layer.go_backwards, wrapper.backward_layer.go_backwards) == (True, False)
    x = torch.from_numpy(rand(2, 4, 3))
    _, y_rev = wrapper(x)
    backward = layers.GRU(2, return_sequences=True)
    backward(x)
    backward.set_weights(wrapper.backward_layer.get_weights())
    torch.testing.assert_close(y_rev, torch.flip(backward(x), dims=(1,)))


def test_bidirectional_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"`layer`.*Received: layer=3"):
        layers.Bidirectional(3)
    with pytest.raises(ValueError, match=r"`backward_layer`.*Received: backward_layer='x'"):
        layers.Bidirectional(layers.GRU(2), backward_layer="x")
    with pytest.raises(ValueError, match=r"Invalid merge mode. Received: merge_mode='concatenate'"):
        layers.Bidirectional(layers.GRU(2), merge_mode="concatenate")
    with pytest.raises(ValueError, match="different `go_backwards`"):
        layers.Bidirectional(layers.GRU(2), backward_layer=layers.GRU(2))
    with pytest.raises(ValueError, match='same value for attribute "return_sequences"'):
        layers.Bidirectional(layers.GRU(2), backward_layer=layers.GRU(2, go_backwards=True, return_sequences=True))
    with pytest.raises(ValueError, match="recurrent layer with a `go_backwards`"):
        layers.Bidirectional(layers.Dense(2))
    with pytest.raises(TypeError, match="`weights`"):
        layers.Bidirectional(layers.GRU(2), weights="abc")
    with pytest.raises(ValueError, match="`initial_state`"):
        layers.Bidirectional(layers.GRU(2))(rand(2, 3, 4), initial_state=[rand(2, 2)])


SAVE_CASES.update({
    "bidirectional_lstm": (lambda L: L.Bidirectional(L.LSTM(3, recurrent_regularizer="l2",
                                                            kernel_constraint="max_norm")), (5, 4)),
    "bidirectional_gru_none": (lambda L: L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode="ave"), (5, 4)),
    "bidirectional_custom_backward": (lambda L: L.Bidirectional(
        L.LSTM(2, return_sequences=True), backward_layer=L.SimpleRNN(2, go_backwards=True, return_sequences=True)),
        (5, 3)),
})


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("settings", [{"return_sequences": True}, {"return_state": True},
                                      {"return_sequences": True, "return_state": True}])
@pytest.mark.parametrize("merge_mode", ["concat", None])
def test_bidirectional_fused_kernel_equals_the_two_layers(cell, settings, merge_mode):
    """The one-call bidirectional kernel gives the two-layer path's outputs, states and gradients."""
    def make(use_cudnn: Any) -> Any:
        torch.manual_seed(0)
        return layers.Bidirectional(getattr(layers, cell)(3, use_cudnn=use_cudnn, kernel_regularizer="l2",
                                                          **settings), merge_mode=merge_mode)

    fused_layer, loop_layer = make("auto"), make(False)
    x = rand(2, 5, 4, seed=4)
    fused_layer(x)
    loop_layer(x)
    loop_layer.set_weights(fused_layer.get_weights())
    assert fused_layer._fused_kernel(None, None, False) == cell.lower()
    assert loop_layer._fused_kernel(None, None, False) is None
    states = [rand(2, 3, seed=20 + i) for i in range(4 if cell == "LSTM" else 2)]
    for kwargs in ({}, {"initial_state": states}):
        fused_result = _run(fused_layer, fused_layer.trainable_weights, x, kwargs)
        loop_result = _run(loop_layer, loop_layer.trainable_weights, x, kwargs)
        for fused_values, loop_values in zip(fused_result, loop_result):
            assert len(fused_values) == len(loop_values)
            for a, b in zip(fused_values, loop_values):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bidirectional_takes_the_two_layers_where_the_kernel_differs():
    x = rand(2, 5, 4)
    assert layers.Bidirectional(layers.LSTM(2))._fused_kernel(None, None, False) is None  # not built yet
    cases = {
        "mask": (layers.Bidirectional(layers.LSTM(2)), {"mask": np.ones((2, 5), bool)}),
        "activity": (layers.Bidirectional(layers.LSTM(2, activity_regularizer="l1")), {}),
        "activation": (layers.Bidirectional(layers.GRU(2, activation="relu")), {}),
        "reset_before": (layers.Bidirectional(layers.GRU(2, reset_after=False)), {}),
        "dropout": (layers.Bidirectional(layers.GRU(2, dropout=0.2)), {}),
        "stateful": (layers.Bidirectional(layers.LSTM(2, stateful=True)), {}),
        "mixed": (layers.Bidirectional(layers.LSTM(2), backward_layer=layers.GRU(2, go_backwards=True)), {}),
    }
    for name, (wrapper, kwargs) in cases.items():
        wrapper(x)
        mask = kwargs.get("mask")
        assert wrapper._fused_kernel(mask, None, False) is None, name


def _masked_tagger(lib: Any) -> Any:
    """Embedding(mask_zero) -> Bidirectional(LSTM) -> Bidirectional(GRU) -> TimeDistributed(Dense): masks end to end."""
    inputs = lib.Input((6,), dtype="int32")
    h = lib.layers.Embedding(10, 4, mask_zero=True)(inputs)
    h = lib.layers.Bidirectional(lib.layers.LSTM(3, return_sequences=True, recurrent_regularizer="l2"))(h)
    h = lib.layers.Bidirectional(lib.layers.GRU(2, return_sequences=True), merge_mode="sum")(h)
    outputs = lib.layers.TimeDistributed(lib.layers.Dense(2, kernel_constraint="max_norm"))(h)
    return lib.Model(inputs, outputs)


def test_masked_sequence_model_matches_keras_in_predict_evaluate_and_fit(keras):
    keras.utils.set_random_seed(0)
    theirs, ours = _masked_tagger(keras), _masked_tagger(weightwise)
    ours.set_weights(theirs.get_weights())
    x = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9], [0, 1, 2, 3, 0, 0], [5, 0, 0, 0, 0, 0]])
    y = rand(4, 6, 2, seed=9) * 3
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), **TOL)
    for model, lib in ((theirs, keras), (ours, weightwise)):
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss="mse")
    # The loss skips masked steps and includes the recurrent penalties, on both sides.
    assert ours.evaluate(x, y, verbose=0) == pytest.approx(theirs.evaluate(x, y, verbose=0), rel=1e-5)
    theirs.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    ours.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5)
