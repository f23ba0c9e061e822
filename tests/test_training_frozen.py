"""Training a model with nothing (or only part of it) to train, against Keras 3 on its torch backend.

Keras runs every step of ``fit`` on such a model, reports the loss and metrics, runs the
callbacks and validation, and updates nothing (warning that there are no trainable weights).
``trainable = False`` takes effect at the next step without recompiling; weights that become
trainable after the optimizer was built need a new optimizer, as in Keras.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import keras_or_skip, to_numpy

import weightwise

RNG = np.random.default_rng(12)
X_IMAGES = RNG.random((12, 4, 4, 1)).astype(np.float32)
Y_POOLED = RNG.random((12, 2, 2, 1)).astype(np.float32)
X = RNG.normal(size=(12, 3)).astype(np.float32)
Y = RNG.normal(size=(12, 2)).astype(np.float32)
NO_TRAINABLE = "The model does not have any trainable weights."


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


def pooling_model(lib):
    model = lib.Sequential([lib.Input(shape=(4, 4, 1)), lib.layers.MaxPooling2D(2)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def dense_stack(lib):
    return lib.Sequential([
        lib.Input(shape=(3,)),
        lib.layers.Dense(4, activation="tanh", kernel_initializer="glorot_uniform"),
        lib.layers.Dense(2),
    ])


def twins(keras, build=dense_stack):
    """The same model in Keras and in weightwise, with Keras's initial weights."""
    theirs, ours = build(keras), build(weightwise)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def quiet_fit(model, x, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.fit(x, y, verbose=0, shuffle=False, **kwargs)


def assert_same_weights(ours, theirs, rtol=1e-5, atol=1e-6):
    for mine, reference in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, reference, rtol=rtol, atol=atol)


def assert_unchanged(weights, before):
    for now, then in zip(weights, before, strict=True):
        np.testing.assert_array_equal(now, then)


def assert_trained_like_keras(ours, theirs, w_hist, k_hist):
    np.testing.assert_allclose(w_hist.history["loss"], k_hist.history["loss"], rtol=1e-5)
    assert_same_weights(ours, theirs)


def test_pooling_only_model_fits_and_reports_keras_history(keras) -> None:
    theirs, ours = pooling_model(keras), pooling_model(weightwise)
    k_hist = quiet_fit(theirs, X_IMAGES, Y_POOLED, epochs=2, batch_size=4, validation_split=0.25)
    with pytest.warns(UserWarning, match=NO_TRAINABLE):
        w_hist = ours.fit(X_IMAGES, Y_POOLED, epochs=2, batch_size=4, validation_split=0.25, verbose=0, shuffle=False)
    assert sorted(w_hist.history) == sorted(k_hist.history) == ["loss", "mae", "val_loss", "val_mae"]
    for key, values in k_hist.history.items():
        np.testing.assert_allclose(w_hist.history[key], values, rtol=1e-6)
    np.testing.assert_allclose(ours.evaluate(X_IMAGES, Y_POOLED, verbose=0),
                               theirs.evaluate(X_IMAGES, Y_POOLED, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(ours.predict(X_IMAGES, verbose=0), theirs.predict(X_IMAGES, verbose=0))
    assert int(ours.optimizer.iterations) == int(to_numpy(theirs.optimizer.iterations)) == 0


@pytest.mark.parametrize("when", ["before_compile", "after_compile"])
def test_frozen_model_fits_without_updates(keras, when: str) -> None:
    theirs, ours = twins(keras)
    for model in (theirs, ours):
        if when == "before_compile":
            model.trainable = False
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        if when == "after_compile":
            # Keras's torch trainer reads trainable_weights at every step: no recompile needed.
            model.trainable = False
    before = ours.get_weights()
    k_hist = quiet_fit(theirs, X, Y, epochs=2, batch_size=4)
    with pytest.warns(UserWarning, match=NO_TRAINABLE):
        w_hist = ours.fit(X, Y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    for key, values in k_hist.history.items():
        np.testing.assert_allclose(w_hist.history[key], values, rtol=1e-5)
    # An epoch of no updates: the same loss both epochs.
    assert w_hist.history["loss"][0] == w_hist.history["loss"][1]
    assert_unchanged(ours.get_weights(), before)
    assert_same_weights(ours, theirs)


def test_frozen_model_runs_callbacks_like_keras(keras) -> None:
    def record(lib, seen):
        class Recorder(lib.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                seen.append(("batch", batch, sorted(logs)))

            def on_epoch_end(self, epoch, logs=None):
                seen.append(("epoch", epoch, sorted(logs)))

        return Recorder()

    theirs, ours = twins(keras)
    seen: dict[str, list] = {"keras": [], "ours": []}
    for model, key, lib in ((theirs, "keras", keras), (ours, "ours", weightwise)):
        model.trainable = False
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        quiet_fit(model, X, Y, epochs=2, batch_size=6, validation_split=0.5, callbacks=[record(lib, seen[key])])
    assert seen["ours"] == seen["keras"]
    assert len(seen["ours"]) == 4


def test_train_on_batch_of_a_frozen_model(keras) -> None:
    theirs, ours = twins(keras)
    for model in (theirs, ours):
        model.trainable = False
        model.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = theirs.train_on_batch(X, Y)
        got = ours.train_on_batch(X, Y)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert_same_weights(ours, theirs)


def test_partly_frozen_model_trains_the_rest_like_keras(keras) -> None:
    theirs, ours = twins(keras)
    for model in (theirs, ours):
        model.layers[0].trainable = False
        model.compile(optimizer="adam", loss="mse")
    frozen = ours.layers[0].get_weights()
    k_hist = quiet_fit(theirs, X, Y, epochs=3, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # there is something to train: no warning
        w_hist = ours.fit(X, Y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    assert_unchanged(ours.layers[0].get_weights(), frozen)
    assert_trained_like_keras(ours, theirs, w_hist, k_hist)


def test_freezing_after_fit_takes_effect_without_recompiling(keras) -> None:
    theirs, ours = twins(keras)
    for model in (theirs, ours):
        model.compile(optimizer="adam", loss="mse")
        quiet_fit(model, X, Y, epochs=1, batch_size=4)
        model.layers[1].trainable = False
    frozen = ours.layers[1].get_weights()
    k_hist = quiet_fit(theirs, X, Y, epochs=2, batch_size=4)
    w_hist = quiet_fit(ours, X, Y, epochs=2, batch_size=4)
    assert_unchanged(ours.layers[1].get_weights(), frozen)
    assert_trained_like_keras(ours, theirs, w_hist, k_hist)


def test_unfreezing_after_fit_needs_a_new_optimizer_as_in_keras(keras) -> None:
    theirs, ours = twins(keras)
    for model in (theirs, ours):
        model.layers[0].trainable = False
        model.compile(optimizer="adam", loss="mse")
        quiet_fit(model, X, Y, epochs=1, batch_size=4)
        model.layers[0].trainable = True
    with pytest.raises(ValueError):
        quiet_fit(theirs, X, Y, epochs=1, batch_size=4)
    before = ours.get_weights()
    with pytest.raises(ValueError, match="already built"):
        quiet_fit(ours, X, Y, epochs=1, batch_size=4)
    assert_unchanged(ours.get_weights(), before)
    # Recompiling with a new optimizer trains every weight again.
    ours.compile(optimizer="adam", loss="mse")
    quiet_fit(ours, X, Y, epochs=1, batch_size=4)
    assert not np.array_equal(ours.layers[0].get_weights()[0], before[0])


def test_frozen_model_fit_with_a_torch_optimizer(keras) -> None:
    import torch

    model = dense_stack(weightwise)
    model.trainable = False
    model.compile(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), loss="mse")
    before = model.get_weights()
    with pytest.warns(UserWarning, match=NO_TRAINABLE):
        history = model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert_unchanged(model.get_weights(), before)
