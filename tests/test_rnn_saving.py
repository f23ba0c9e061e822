"""`.keras` files of models holding recurrent layers move both ways between Keras and weightwise."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import keras_or_skip, to_numpy

import weightwise

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 6, 4)).astype(np.float32)
Y = RNG.normal(size=(8, 1)).astype(np.float32)


def recurrent_model(lib):
    L = lib.layers
    inputs = L.Input(shape=(6, 4))
    x = L.SimpleRNN(5, return_sequences=True, recurrent_regularizer=lib.regularizers.L2(0.01))(inputs)
    x = L.GRU(4, return_sequences=True, reset_after=False, kernel_constraint=lib.constraints.MaxNorm(1.5))(x)
    x = L.GRU(4, return_sequences=True, go_backwards=True, bias_regularizer=lib.regularizers.L1(0.01))(x)
    x = L.RNN([L.LSTMCell(3), L.SimpleRNNCell(3)], return_sequences=True)(x)
    x = L.LSTM(3, recurrent_constraint=lib.constraints.UnitNorm(), kernel_regularizer="l2")(x)
    outputs = L.Dense(1)(x)
    return lib.Model(inputs, outputs)


def trained(lib):
    lib.utils.set_random_seed(0)
    model = recurrent_model(lib)
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss="mse")
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    return model


def assert_same(theirs, ours) -> None:
    np.testing.assert_allclose(np.asarray(ours.predict(X, verbose=0)), to_numpy(theirs.predict(X, verbose=0)),
                               rtol=1e-5, atol=1e-5)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, to_numpy(reference), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sorted(float(v.detach()) for v in ours.losses),
                               sorted(float(to_numpy(v)) for v in theirs.losses), rtol=1e-5)


@pytest.mark.parametrize("direction", ["keras_to_weightwise", "weightwise_to_keras"])
def test_recurrent_model_moves_both_ways(tmp_path, direction: str) -> None:
    keras = keras_or_skip()
    path = tmp_path / "model.keras"
    if direction == "keras_to_weightwise":
        theirs = trained(keras)
        theirs.save(path)
        ours = weightwise.models.load_model(path)
    else:
        ours = trained(weightwise)
        ours.save(path)
        theirs = keras.saving.load_model(path)
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    assert_same(theirs, ours)
