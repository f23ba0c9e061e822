"""Recurrent layers on their own: the shared checker, rules on the cells' weights, training, masks, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import rule_arguments, run_layer_test

import weightwise
from weightwise import binding, constraints, layers, regularizers

WEIGHT_RULES = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
                "recurrent_constraint", "bias_constraint")
LAYERS = [layers.SimpleRNN, layers.LSTM, layers.GRU]
CELLS = [layers.SimpleRNNCell, layers.LSTMCell, layers.GRUCell]


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("flags", [{}, {"return_sequences": True}, {"go_backwards": True, "use_bias": False}])
def test_every_layer_through_the_shared_checker(cls: type, flags: dict[str, Any]) -> None:
    expected = (2, 4, 3) if flags.get("return_sequences") else (2, 3)
    run_layer_test(cls, {"units": 3, **flags}, (2, 4, 5), expected_output_shape=expected,
                   expected_num_weights=3 if flags.get("use_bias", True) else 2)


@pytest.mark.parametrize("cls", LAYERS + CELLS, ids=lambda c: c.__name__)
def test_every_rule_argument_reaches_the_cells_weight(cls: type) -> None:
    names = rule_arguments(cls)
    assert set(WEIGHT_RULES) <= set(names)
    given = {name: regularizers.L1(0.01 * (i + 1)) if name.endswith("_regularizer") else constraints.MaxNorm(i + 1.0)
             for i, name in enumerate(names)}
    layer = cls(3, **given)
    if cls in CELLS:
        layer.build((2, 5))
        cell = layer
    else:
        layer(rand(2, 4, 5))
        cell = layer.cell
    weight_of = {"kernel": "kernel", "recurrent": "recurrent_kernel", "bias": "bias"}
    for name, rule in given.items():
        assert getattr(layer, name) is rule, name
        if name == "activity_regularizer":
            continue
        part, kind = name.rsplit("_", 1)
        bound = binding.rule_of(cell, weight_of[part])
        assert getattr(bound, kind) is rule, name
    activity = 1 if "activity_regularizer" in given and cls not in CELLS else 0
    assert len(layer.losses) == 3 + activity


def test_setting_a_rule_on_the_built_layer_rebinds_the_cells_weight() -> None:
    layer = layers.LSTM(3)
    layer(rand(2, 4, 5))
    assert layer.losses == []
    layer.recurrent_regularizer = regularizers.L2(0.5)
    expected = 0.5 * float((layer.cell.recurrent_kernel.detach() ** 2).sum())
    assert [float(v.detach()) for v in layer.losses] == pytest.approx([expected])


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_one_fit_step_leaves_constrained_weights_within_bounds(cls: type) -> None:
    model = weightwise.Sequential([
        layers.Input((6, 4)),
        cls(5, kernel_constraint=constraints.MaxNorm(0.3), recurrent_constraint=constraints.UnitNorm(),
            bias_constraint=constraints.NonNeg(), recurrent_regularizer=regularizers.L2(0.01)),
        layers.Dense(1),
    ])
    model.compile(optimizer=weightwise.optimizers.SGD(1.0), loss="mse")
    x, y = rand(8, 6, 4, seed=1) * 5, rand(8, 1, seed=2) * 5
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    cell = model.layers[0].cell
    assert (cell.kernel.detach().norm(dim=0) <= 0.3 + 1e-6).all()
    np.testing.assert_allclose(cell.recurrent_kernel.detach().norm(dim=0).numpy(), 1.0, rtol=1e-5)
    assert (cell.bias.detach() >= 0).all()


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("rates", [(0.5, 0.0), (0.0, 0.5), (0.3, 0.4)])
def test_training_with_dropout_keeps_shapes_and_differs_from_inference(cls: type, rates: tuple[float, float]) -> None:
    layer = cls(4, dropout=rates[0], recurrent_dropout=rates[1], return_sequences=True, return_state=True, seed=3)
    x = rand(3, 5, 6)
    inference = layer(x)
    trained = layer(x, training=True)
    assert [tuple(t.shape) for t in trained] == [tuple(t.shape) for t in inference]
    assert not torch.allclose(trained[0], inference[0])
    # Masks are drawn per call: the cell holds none afterwards.
    assert layer.cell.get_dropout_mask.__self__.__dict__.get("_dropout_mask") is None
    torch.testing.assert_close(layer(x), inference)


def test_dropout_uses_one_mask_for_every_step() -> None:
    # With an identity-like recurrence, a dropped input feature is dropped at every step.
    cell = layers.SimpleRNNCell(1, dropout=0.5, seed=0, kernel_initializer="ones", recurrent_initializer="zeros",
                                use_bias=False, activation=None)
    layer = layers.RNN(cell, return_sequences=True)
    x = torch.ones(64, 5, 1)
    out = layer(x, training=True)[..., 0]
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert (out == out[:, :1]).all()


def test_mask_keeps_states_and_repeats_outputs() -> None:
    layer = layers.SimpleRNN(2, return_sequences=True, return_state=True)
    x = rand(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    outputs, state = layer(x, mask=mask)
    short, short_state = layer(x[:1, :2])
    torch.testing.assert_close(outputs[0, 2], outputs[0, 1])
    torch.testing.assert_close(state[0], short_state[0])
    torch.testing.assert_close(outputs[0, :2], short[0])


def test_fully_masked_sequence_gives_zeros_and_the_initial_state() -> None:
    layer = layers.GRU(2, return_state=True)
    out, state = layer(rand(1, 3, 2), mask=torch.zeros(1, 3, dtype=torch.bool))
    assert out.abs().sum() == 0 and state.abs().sum() == 0


def test_stateful_layer_needs_no_reset_to_continue_and_reset_zeroes() -> None:
    layer = layers.LSTM(3, stateful=True)
    x = rand(2, 6, 4)
    layer(x[:, :3])
    whole = layers.LSTM(3)
    whole(x)
    whole.set_weights(layer.get_weights())
    layer.reset_state()
    layer(x[:, :3])
    torch.testing.assert_close(layer(x[:, 3:]), whole(x))
    layer.reset_states()
    assert all(s.abs().sum() == 0 for s in layer.states)


def test_rnn_takes_any_keras_style_cell() -> None:
    class Accumulate:
        state_size = 2

        def call(self, inputs, states):
            total = states[0] + inputs
            return total, [total]

    out = layers.RNN(Accumulate(), return_sequences=True)(torch.ones(1, 3, 2))
    assert out[0, :, 0].tolist() == [1.0, 2.0, 3.0]


def test_lstm_and_gru_give_keras_bias_layouts() -> None:
    lstm = layers.LSTM(2)
    lstm(rand(1, 2, 3))
    assert lstm.cell.bias.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    for reset_after, shape in ((True, (2, 6)), (False, (6,))):
        gru = layers.GRU(2, reset_after=reset_after)
        gru(rand(1, 2, 3))
        assert tuple(gru.cell.bias.shape) == shape


@pytest.mark.parametrize("make, argument, shown", [
    (lambda: layers.LSTM(0), "units", "units=0"),
    (lambda: layers.GRU(3, dropout=1.5), "dropout", "dropout=1.5"),
    (lambda: layers.SimpleRNN(3, recurrent_dropout="x"), "recurrent_dropout", "recurrent_dropout='x'"),
    (lambda: layers.LSTM(3, use_cudnn="yes"), "use_cudnn", "use_cudnn='yes'"),
    (lambda: layers.GRU(3, return_sequences=1), "return_sequences", "return_sequences=1"),
    (lambda: layers.GRU(3, reset_after="no"), "reset_after", "reset_after='no'"),
    (lambda: layers.RNN(object()), "cell", "cell="),
    (lambda: layers.LSTMCell(3, seed=-1), "seed", "seed=-1"),
])
def test_bad_arguments_name_the_argument_and_value(make, argument: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert argument in str(info.value) and shown in str(info.value)


def test_bad_sequences_build_nothing() -> None:
    layer = layers.LSTM(3)
    with pytest.raises(ValueError, match="ndim=3"):
        layer(rand(2, 5))
    assert not layer.built and layer.weights == []


FUSED_CASES = [
    (layers.LSTM, {}), (layers.LSTM, {"go_backwards": True, "return_sequences": True, "use_bias": False}),
    (layers.LSTM, {"return_state": True, "unit_forget_bias": False}),
    (layers.GRU, {}), (layers.GRU, {"go_backwards": True, "return_sequences": True, "return_state": True}),
    (layers.GRU, {"use_bias": False, "return_state": True}),
    (layers.SimpleRNN, {"return_sequences": True}), (layers.SimpleRNN, {"activation": "relu", "return_state": True}),
    (layers.SimpleRNN, {"use_bias": False, "go_backwards": True}),
]


@pytest.mark.parametrize("cls, flags", FUSED_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_matches_the_step_loop(monkeypatch, cls: type, flags: dict[str, Any], dtype) -> None:
    from weightwise.layers.rnn import fused

    calls = []
    original = fused.run_fused
    monkeypatch.setattr("weightwise.layers.rnn.cell_rnn.run_fused",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    kwargs = {"kernel_regularizer": regularizers.L2(0.1), "recurrent_regularizer": regularizers.L1(0.1),
              "dtype": "float32" if dtype == torch.float32 else "float64", **flags}
    fast, loop = cls(4, **kwargs), cls(4, **kwargs)
    x = rand(3, 6, 5).to(dtype)
    fast(x)
    loop(x)
    loop.set_weights(fast.get_weights())
    loop.use_cudnn = False
    initial = [rand(3, 4, seed=i).to(dtype) for i in range(2 if cls is layers.LSTM else 1)]
    for call in ({}, {"initial_state": initial}, {"mask": torch.ones(3, 6, dtype=torch.bool)}):
        calls.clear()
        got, expected = fast(x, **call), loop(x, **call)
        assert calls == [1]
        got, expected = as_list(got), as_list(expected)
        tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, **tol)
        probe = [rand(*a.shape, seed=5 + i).to(dtype) for i, a in enumerate(got)]
        grads = [torch.autograd.grad(sum((t * p).sum() for t, p in zip(outs, probe)) + sum(layer.losses),
                                     layer.trainable_weights)
                 for outs, layer in ((got, fast), (expected, loop))]
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, **tol)


def as_list(value: Any) -> list[torch.Tensor]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@pytest.mark.parametrize("make, call", [
    (lambda: layers.LSTM(3, unroll=True), {}),
    (lambda: layers.LSTM(3, activation="relu"), {}),
    (lambda: layers.GRU(3, reset_after=False), {}),
    (lambda: layers.GRU(3, recurrent_dropout=0.5), {"training": True}),
    (lambda: layers.LSTM(3, dropout=0.5, implementation=1), {"training": True}),
    (lambda: layers.SimpleRNN(3, activation="sigmoid"), {}),
    (lambda: layers.LSTM(3), {"mask": torch.tensor([[True, False, True, True]] * 2)}),
    (lambda: layers.LSTM(3, use_cudnn=False), {}),
])
def test_configurations_the_fused_kernel_cannot_compute_take_the_loop(monkeypatch, make, call) -> None:
    monkeypatch.setattr("weightwise.layers.rnn.cell_rnn.run_fused", lambda *a, **k: pytest.fail("fused path taken"))
    assert make()(rand(2, 4, 5), **call).shape == (2, 3)


def test_use_cudnn_true_raises_where_keras_does() -> None:
    with pytest.raises(ValueError, match="use_cudnn=True"):
        layers.LSTM(3, use_cudnn=True)(rand(2, 4, 5), mask=torch.tensor([[True, False, True, True]] * 2))
    with pytest.raises(ValueError, match="use_cudnn=True"):
        layers.GRU(3, use_cudnn=True, reset_after=False)(rand(2, 4, 5))
    assert layers.LSTM(3, use_cudnn=True)(rand(2, 4, 5)).shape == (2, 3)


def test_fused_dropout_uses_the_cells_mask_for_every_step() -> None:
    layer = layers.GRU(3, dropout=0.5, seed=0, return_sequences=True)
    x = rand(4, 5, 6)
    trained = layer(x, training=True)
    loop = layers.GRU(3, dropout=0.5, seed=0, return_sequences=True, use_cudnn=False)
    loop(x)
    loop.set_weights(layer.get_weights())
    # The same seed draws the same single mask on both paths.
    torch.testing.assert_close(loop(x, training=True), trained)


def test_wrong_initial_states_and_empty_sequences_name_the_argument() -> None:
    layer = layers.LSTM(3)
    with pytest.raises(ValueError, match=r"`initial_state`: expected 2 state\(s\).*Received: 1 state"):
        layer(rand(2, 4, 5), initial_state=[rand(2, 3)])
    for cls in LAYERS:
        with pytest.raises(ValueError, match="at least one time step"):
            cls(3)(torch.zeros(2, 0, 5))


def test_a_cell_that_describes_its_own_states_runs_as_convlstm_does() -> None:
    # ConvLSTM's cell sets state_size to -1 and makes its two states in get_initial_state.
    class TwoStates(weightwise.Layer):
        state_size = -1

        def get_initial_state(self, batch_size=None):
            return [torch.zeros(batch_size, 2), torch.ones(batch_size, 2)]

        def call(self, inputs, states, training=False):
            h = states[0] + states[1] + inputs
            return h, [h, states[1]]

    out, _, c = layers.RNN(TwoStates(), return_state=True)(torch.zeros(1, 3, 2))
    assert out.tolist() == [[3.0, 3.0]] and c.tolist() == [[1.0, 1.0]]


# Right padding, left padding, a row kept whole, a row kept in the middle, a row with no kept step.
PADDED = torch.tensor([[True, True, True, False, False, False],
                       [False, False, True, True, True, True],
                       [True, True, True, True, True, True],
                       [False, True, True, True, False, False],
                       [False, False, False, False, False, False]])


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("flags", [
    {"return_sequences": True, "return_state": True},
    {"return_sequences": True, "go_backwards": True, "return_state": True},
    {"return_sequences": True, "zero_output_for_mask": True},
    {"go_backwards": True, "zero_output_for_mask": True, "return_state": True},
    {},
])
def test_padded_masks_run_packed_on_the_fused_kernel_like_the_loop(monkeypatch, cls: type, flags) -> None:
    calls = []
    from weightwise.layers.rnn import fused

    original = fused._run_masked
    monkeypatch.setattr(fused, "_run_masked", lambda *a, **k: calls.append(1) or original(*a, **k))
    fast, loop = cls(3, **flags), cls(3, **flags)
    x = rand(5, 6, 4)
    fast(x)
    loop(x)
    loop.set_weights(fast.get_weights())
    loop.use_cudnn = False
    initial = [rand(5, 3, seed=i) for i in range(2 if cls is layers.LSTM else 1)]
    got, expected = as_list(fast(x, mask=PADDED, initial_state=initial)), as_list(
        loop(x, mask=PADDED, initial_state=initial))
    assert calls == [1]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    probe = [rand(*a.shape, seed=9 + i) for i, a in enumerate(got)]
    grads = [torch.autograd.grad(sum((t * p).sum() for t, p in zip(outs, probe)), layer.trainable_weights)
             for outs, layer in ((got, fast), (expected, loop))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
