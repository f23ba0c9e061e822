"""Recurrent layers against Keras 3.15.1: configs, weight layouts and paths, outputs, states, losses, gradients."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise
from weightwise import layers

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def npy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else to_numpy(value)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def rules(lib: Any, name: str) -> dict[str, Any]:
    given = {
        "kernel_regularizer": lib.regularizers.L1L2(l1=0.01, l2=0.02),
        "recurrent_regularizer": lib.regularizers.L2(0.03),
        "bias_regularizer": lib.regularizers.L1(0.04),
        "activity_regularizer": lib.regularizers.L2(0.005),
    }
    if name == "SimpleRNN":
        # Keras 3.15's SimpleRNN drops its activity_regularizer; ours applies it (tested against NumPy below).
        del given["activity_regularizer"]
    return given


# A mask with a hole, a left-padded row, a right-padded row and a full row.
MASK = np.array([[True, False, True, True, False, True],
                 [False, False, True, True, True, True],
                 [True, True, True, False, False, False],
                 [True, True, True, True, True, True]])

LAYER_CASES = [
    ("SimpleRNN", {"units": 4}),
    ("SimpleRNN", {"units": 3, "return_sequences": True, "activation": "relu", "go_backwards": True}),
    ("SimpleRNN", {"units": 3, "use_bias": False, "return_state": True, "return_sequences": True}),
    ("LSTM", {"units": 4}),
    ("LSTM", {"units": 4, "return_sequences": True, "return_state": True}),
    ("LSTM", {"units": 3, "go_backwards": True, "return_sequences": True, "zero_output_for_mask": True}),
    ("LSTM", {"units": 3, "unit_forget_bias": False, "activation": "relu", "recurrent_activation": "hard_sigmoid",
              "return_state": True}),
    ("LSTM", {"units": 2, "use_bias": False, "go_backwards": True, "return_state": True}),
    ("GRU", {"units": 4}),
    ("GRU", {"units": 4, "reset_after": False, "return_sequences": True, "return_state": True}),
    ("GRU", {"units": 3, "go_backwards": True, "use_bias": False, "return_sequences": True}),
    ("GRU", {"units": 3, "reset_after": False, "activation": "relu", "zero_output_for_mask": True,
             "return_sequences": True}),
    ("GRU", {"units": 3, "go_backwards": True, "return_state": True}),
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items() if k != "units")


def as_list(outputs: Any) -> list[Any]:
    """The tensors of a (nested) output, flat."""
    if isinstance(outputs, (list, tuple)):
        return [t for item in outputs for t in as_list(item)]
    return [outputs]


def keras_pair(keras: Any, name: str, kwargs: dict[str, Any], x: np.ndarray, with_rules: bool = True) -> tuple[Any, Any]:
    """A Keras layer and ours, built on ``x``, ours holding the Keras layer's weights."""
    theirs = getattr(keras.layers, name)(**kwargs, **(rules(keras, name) if with_rules else {}))
    ours = getattr(layers, name)(**kwargs, **(rules(weightwise, name) if with_rules else {}))
    theirs(x)
    ours(torch.from_numpy(x))
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert paths(ours) == paths(theirs)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def paths(layer: Any) -> list[str]:
    """Weight paths under the layer's own name (whose counter depends on what ran before)."""
    assert all(w.path.startswith(layer.name + "/") for w in layer.weights)
    return [w.path[len(layer.name):] for w in layer.weights]


def loss_and_grads(outputs: Any, losses: list[Any], weights: list[torch.Tensor], probe: list[np.ndarray]
                   ) -> tuple[float, list[np.ndarray]]:
    """A scalar that depends on every output, plus the layer's losses, and its gradients to ``weights``."""
    total = sum((torch.as_tensor(out) * torch.from_numpy(p)).sum() for out, p in zip(as_list(outputs), probe))
    total = total + sum(losses)
    grads = torch.autograd.grad(total, weights, allow_unused=True)
    return float(total.detach()), [np.zeros(w.shape, np.float32) if g is None else g.detach().numpy()
                          for g, w in zip(grads, weights)]


def compare(keras: Any, theirs: Any, ours: Any, x: np.ndarray, **call: Any) -> None:
    keras_call = {k: (to_keras(keras, v)) for k, v in call.items()}
    ours_call = {k: to_torch(v) for k, v in call.items()}
    for training in (False, True):
        expected = as_list(theirs(x, training=training, **keras_call))
        got = as_list(ours(torch.from_numpy(x), training=training, **ours_call))
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(npy(a), npy(b), **TOL)
        probe = [rand(*tuple(e.shape), seed=7 + i) for i, e in enumerate(expected)]
        their_weights = [w.value for w in theirs.trainable_weights]
        their_loss, their_grads = loss_and_grads(expected, theirs.losses, their_weights, probe)
        our_loss, our_grads = loss_and_grads(got, ours.losses, ours.trainable_weights, probe)
        assert our_loss == pytest.approx(their_loss, rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(sorted(float(to_numpy(v)) for v in ours.losses),
                                   sorted(float(to_numpy(v)) for v in theirs.losses), **TOL)
        for a, b in zip(our_grads, their_grads):
            np.testing.assert_allclose(a, b, **TOL)


def to_keras(keras: Any, value: Any) -> Any:
    if isinstance(value, list):
        return [to_keras(keras, v) for v in value]
    return keras.ops.convert_to_tensor(value) if isinstance(value, np.ndarray) else value


def to_torch(value: Any) -> Any:
    if isinstance(value, list):
        return [to_torch(v) for v in value]
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


# Padded rows (right, left, none, all), which the fused kernels take by packing.
PADDED = np.array([[True, True, True, True, False, False],
                   [False, False, False, True, True, True],
                   [True, True, True, True, True, True],
                   [False, False, False, False, False, False]])


@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
@pytest.mark.parametrize("mask", [None, MASK, PADDED], ids=["unmasked", "masked", "padded"])
def test_layer_matches_keras(keras, case: tuple[str, dict[str, Any]], mask: np.ndarray | None) -> None:
    name, kwargs = case
    x = rand(4, 6, 5, seed=1)
    theirs, ours = keras_pair(keras, name, kwargs, x)
    compare(keras, theirs, ours, x, **({} if mask is None else {"mask": mask}))


@pytest.mark.parametrize("case", [c for c in LAYER_CASES if c[1].get("return_state")], ids=case_id)
def test_initial_state_matches_keras(keras, case: tuple[str, dict[str, Any]]) -> None:
    name, kwargs = case
    x = rand(4, 6, 5, seed=2)
    theirs, ours = keras_pair(keras, name, kwargs, x)
    states = [rand(4, kwargs["units"], seed=3 + i) for i in range(2 if name == "LSTM" else 1)]
    compare(keras, theirs, ours, x, initial_state=states)


CELL_CASES = [
    ("SimpleRNNCell", {"units": 3}),
    ("LSTMCell", {"units": 3, "unit_forget_bias": False}),
    ("GRUCell", {"units": 3}),
    ("GRUCell", {"units": 2, "reset_after": False}),
]


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("case", CELL_CASES, ids=lambda c: c[0] + str(c[1]))
def test_generic_rnn_over_each_cell_matches_keras(keras, case, zero_output_for_mask: bool) -> None:
    name, kwargs = case
    x = rand(4, 6, 5, seed=4)
    flags = {"return_sequences": True, "return_state": True, "zero_output_for_mask": zero_output_for_mask}
    theirs = keras.layers.RNN(getattr(keras.layers, name)(**kwargs, kernel_regularizer=keras.regularizers.L2(0.1),
                                                          name="cell"), **flags)
    ours = layers.RNN(getattr(layers, name)(**kwargs, kernel_regularizer=weightwise.regularizers.L2(0.1),
                                            name="cell"), **flags)
    theirs(x)
    ours(torch.from_numpy(x))
    assert paths(ours) == paths(theirs)
    ours.set_weights(theirs.get_weights())
    compare(keras, theirs, ours, x, mask=MASK)


def test_stacked_cells_match_keras(keras) -> None:
    x = rand(4, 6, 5, seed=5)

    def make(lib: Any) -> Any:
        cells = [lib.layers.SimpleRNNCell(4, name="a"),
                 lib.layers.LSTMCell(3, recurrent_regularizer=lib.regularizers.L2(0.1), name="b"),
                 lib.layers.GRUCell(2, name="c")]
        return lib.layers.RNN(lib.layers.StackedRNNCells(cells, name="stack"), return_sequences=True,
                              return_state=True, name="r")

    theirs, ours = make(keras), make(weightwise)
    theirs(x)
    ours(torch.from_numpy(x))
    assert paths(ours) == paths(theirs)
    assert ours.cell.state_size == theirs.cell.state_size
    ours.set_weights(theirs.get_weights())
    compare(keras, theirs, ours, x, mask=MASK)
    assert json.loads(json.dumps(ours.get_config())) == json.loads(json.dumps(theirs.get_config()))


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_stateful_carries_states_across_calls_like_keras(keras, name: str) -> None:
    x1, x2 = rand(3, 4, 5, seed=8), rand(3, 4, 5, seed=9)
    kwargs = {"units": 3, "stateful": True, "return_state": True}
    theirs, ours = keras_pair(keras, name, kwargs, x1, with_rules=False)
    theirs.reset_state()
    ours.reset_state()
    for x in (x1, x2):
        expected = as_list(theirs(x))
        got = as_list(ours(torch.from_numpy(x)))
        for a, b in zip(got, expected):
            np.testing.assert_allclose(npy(a), npy(b), **TOL)
    ours.reset_states()
    theirs.reset_states()
    np.testing.assert_allclose(to_numpy(as_list(ours(torch.from_numpy(x1)))[0]), to_numpy(as_list(theirs(x1))[0]),
                               **TOL)
    with pytest.raises(ValueError, match="batch size"):
        ours(torch.from_numpy(rand(2, 4, 5)))


def configs_of(lib: Any, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    layer = getattr(lib.layers, name)(**kwargs)
    return json.loads(json.dumps(layer.get_config()))


CONFIG_CASES = [
    ("SimpleRNN", {"units": 3, "name": "s", "seed": 4, "dropout": 0.25, "recurrent_dropout": 0.5}),
    ("LSTM", {"units": 3, "name": "l", "seed": 4, "unit_forget_bias": False, "stateful": True, "unroll": True}),
    ("GRU", {"units": 3, "name": "g", "reset_after": False, "go_backwards": True, "use_cudnn": False}),
    ("SimpleRNNCell", {"units": 3, "name": "c", "seed": 1}),
    ("LSTMCell", {"units": 3, "name": "c", "recurrent_activation": "relu"}),
    ("GRUCell", {"units": 3, "name": "c", "reset_after": False, "dropout": 0.1}),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("with_rules", [False, True])
def test_configs_are_keras_and_load_both_ways(keras, case, with_rules: bool) -> None:
    name, kwargs = case
    if with_rules:
        kwargs = {**kwargs, "kernel_constraint": "max_norm", "bias_regularizer": "l2"}
        if not name.endswith("Cell"):
            kwargs["activity_regularizer"] = "l1"
    ours, theirs = configs_of(weightwise, name, kwargs), configs_of(keras, name, kwargs)
    if name == "SimpleRNN" and with_rules:
        # Keras 3.15's SimpleRNN drops its activity_regularizer (so its config says None); ours keeps it.
        assert ours.pop("activity_regularizer")["class_name"] == "L1"
        assert theirs.pop("activity_regularizer") is None
    assert_same_value(ours, theirs, name)
    assert_same_value(configs_of_config(getattr(layers, name), theirs), theirs, name)
    assert_same_value(configs_of_config(getattr(keras.layers, name), ours), theirs, name)


def configs_of_config(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    again = json.loads(json.dumps(cls.from_config(config).get_config()))
    if "activity_regularizer" not in config:
        again.pop("activity_regularizer", None)
    return again


def assert_same_value(ours: Any, theirs: Any, where: str) -> None:
    """Equal after JSON; floats to float32 precision (Keras keeps rule factors as float32)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        assert set(ours) == set(theirs), (where, set(ours) ^ set(theirs))
        for key in ours:
            assert_same_value(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_value(a, b, f"{where}[{index}]")
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-6), where
    else:
        assert ours == theirs, where


def test_generic_rnn_config_matches_keras_and_round_trips(keras) -> None:
    ours = layers.RNN(layers.GRUCell(3, name="cell"), return_sequences=True, go_backwards=True, name="r")
    theirs = keras.layers.RNN(keras.layers.GRUCell(3, name="cell"), return_sequences=True, go_backwards=True, name="r")
    config = json.loads(json.dumps(ours.get_config()))
    assert config == json.loads(json.dumps(theirs.get_config()))
    again = layers.deserialize(json.loads(json.dumps(layers.serialize(ours))))
    assert type(again.cell) is layers.GRUCell and json.loads(json.dumps(again.get_config())) == config


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_compute_mask_and_output_shape_like_keras(keras, name: str) -> None:
    mask = torch.from_numpy(MASK)
    for flags in ({}, {"return_sequences": True}, {"return_state": True},
                  {"return_sequences": True, "return_state": True}):
        ours = getattr(layers, name)(3, **flags)
        theirs = getattr(keras.layers, name)(3, **flags)
        got, expected = ours.compute_mask(None, mask), theirs.compute_mask(None, mask)
        assert type(got) is type(expected)
        for a, b in zip(as_list(got), as_list(expected)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
        assert ours.compute_output_shape((None, 6, 5)) == theirs.compute_output_shape((None, 6, 5))


def test_simple_rnn_applies_its_activity_regularizer_which_keras_drops() -> None:
    x = torch.from_numpy(rand(4, 6, 5, seed=10))
    layer = layers.SimpleRNN(3, return_sequences=True, activity_regularizer=weightwise.regularizers.L2(0.5))
    out = layer(x)
    (activity,) = layer.losses
    np.testing.assert_allclose(float(activity.detach()), 0.5 * float(np.sum(out.detach().numpy() ** 2)) / 4, rtol=1e-6)
    assert layer.get_config()["activity_regularizer"]["class_name"] == "L2"


def seq2seq(lib: Any) -> Any:
    L = lib.layers
    encoder_inputs, decoder_inputs = L.Input(shape=(None, 5)), L.Input(shape=(None, 4))
    _, h, c = L.LSTM(8, return_state=True, name="encoder")(encoder_inputs)
    decoded = L.LSTM(8, return_sequences=True, name="decoder")(decoder_inputs, initial_state=[h, c])
    return lib.Model([encoder_inputs, decoder_inputs], L.Dense(3, name="head")(decoded))


def masked_classifier(lib: Any) -> Any:
    L = lib.layers
    return lib.Sequential([L.Input(shape=(7,), dtype="int32"), L.Embedding(20, 6, mask_zero=True),
                           L.GRU(5, return_sequences=True), L.SimpleRNN(4, go_backwards=True), L.Dense(2)])


@pytest.mark.parametrize("build", [seq2seq, masked_classifier], ids=["seq2seq", "embedding_mask"])
def test_functional_models_match_keras_and_move_both_ways(keras, tmp_path, build) -> None:
    if build is seq2seq:
        data = [rand(3, 6, 5, seed=11), rand(3, 4, 4, seed=12)]
    else:
        # Pre- and post-padded rows, and one with a hole: the mask reaches the RNNs from the Embedding.
        data = np.array([[0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 0, 0, 0, 0], [4, 0, 5, 6, 0, 7, 8]], dtype=np.int32)
    theirs, ours = build(keras), build(weightwise)
    ours.set_weights(theirs.get_weights())
    expected = to_numpy(theirs.predict(data, verbose=0))
    np.testing.assert_allclose(ours.predict(data, verbose=0), expected, **TOL)
    theirs.save(tmp_path / "theirs.keras")
    np.testing.assert_allclose(weightwise.models.load_model(tmp_path / "theirs.keras").predict(data, verbose=0),
                               expected, **TOL)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(tmp_path / "ours.keras").predict(data, verbose=0)),
                               expected, **TOL)
