"""compile/fit/evaluate/predict: Keras's numbers, constraints after every step, data sources, bad input."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from helpers import keras_or_skip

import weightwise
from weightwise import Sequential, binding, callbacks, layers, regularizers

RNG = np.random.default_rng(7)
X = RNG.normal(size=(48, 6)).astype(np.float32)
Y = (X @ RNG.normal(size=(6, 1)) + 0.1 * RNG.normal(size=(48, 1))).astype(np.float32)


def regularized_stack(lib, momentum: float = 0.0):
    """The same model in Keras or weightwise: every kind of regularizer and constraint."""
    reg, con = lib.regularizers, lib.constraints
    model = lib.Sequential([
        lib.Input(shape=(6,)),
        lib.layers.Dense(8, activation="relu", kernel_regularizer=reg.L2(1e-2), bias_regularizer=reg.L1(1e-2),
                         activity_regularizer=reg.L1(1e-3), kernel_constraint=con.MaxNorm(0.8)),
        lib.layers.Dense(4, activation="tanh", kernel_constraint=con.UnitNorm(), bias_constraint=con.NonNeg()),
        lib.layers.Dense(1, kernel_constraint=con.NonNeg(), kernel_regularizer=reg.L1L2(1e-3, 1e-3)),
    ])
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05, momentum=momentum), loss="mse", metrics=["mae"])
    return model


def regularized_graph(lib, momentum: float = 0.0):
    reg, con = lib.regularizers, lib.constraints
    inputs = lib.Input(shape=(6,), name="x")
    left = lib.layers.Dense(5, activation="relu", kernel_regularizer=reg.L2(1e-2), name="left",
                            kernel_constraint=con.MaxNorm(0.7))(inputs)
    right = lib.layers.Dense(3, activation="tanh", activity_regularizer=reg.L2(1e-3), name="right",
                             bias_constraint=con.NonNeg())(inputs)
    merged = lib.layers.Concatenate(name="merge")([left, right])
    outputs = lib.layers.Dense(1, kernel_constraint=con.UnitNorm(), bias_regularizer=reg.L1(1e-2), name="out")(merged)
    model = lib.Model(inputs, outputs)
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05, momentum=momentum), loss="mse")
    return model


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


@pytest.mark.parametrize("build", [regularized_stack, regularized_graph], ids=["sequential", "functional"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fit_matches_keras(keras, build, momentum: float) -> None:
    theirs, ours = build(keras, momentum), build(weightwise, momentum)
    ours.set_weights(theirs.get_weights())
    k_hist = theirs.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    w_hist = ours.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(w_hist.history["loss"], k_hist.history["loss"], rtol=1e-5)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.evaluate(X, Y, verbose=0), theirs.evaluate(X, Y, verbose=0), rtol=1e-5)
    if "mae" in k_hist.history:
        np.testing.assert_allclose(w_hist.history["mae"], k_hist.history["mae"], rtol=1e-5)


def test_constraints_hold_after_every_step() -> None:
    model = regularized_stack(weightwise)
    seen = []

    def check(batch, logs):
        first, second, last = model.layers
        seen.append(batch)
        assert torch.all(first.kernel.detach().norm(dim=0) <= 0.8 + 1e-5)
        np.testing.assert_allclose(second.kernel.detach().norm(dim=0).numpy(), 1.0, rtol=1e-5)
        assert torch.all(second.bias >= 0) and torch.all(last.kernel >= 0)

    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[callbacks.LambdaCallback(on_train_batch_end=check)])
    assert len(seen) == 12


def test_penalties_change_the_trained_weights_and_are_in_the_logged_loss() -> None:
    def train(kernel_regularizer):
        torch.manual_seed(0)
        model = Sequential([layers.Input(shape=(6,)), layers.Dense(1, kernel_regularizer=kernel_regularizer)])
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(X, Y, epochs=20, batch_size=16, verbose=0, shuffle=False)
        return model, history

    plain, plain_history = train(None)
    strong, strong_history = train(regularizers.L2(1.0))
    assert strong.layers[0].kernel.detach().norm() < 0.8 * plain.layers[0].kernel.detach().norm()
    assert "regularization_loss" in strong_history.history and "regularization_loss" not in plain_history.history
    assert strong_history.history["regularization_loss"][-1] > 0
    # evaluate() includes the penalty: it equals the data loss plus sum(model.losses).
    data_loss = float(np.mean((strong.predict(X, verbose=0) - Y) ** 2))
    penalty = binding.regularization_loss(strong).item()
    assert strong.evaluate(X, Y, verbose=0) == pytest.approx(data_loss + penalty, rel=1e-5)


def test_regularization_loss_equals_sum_of_model_losses() -> None:
    model = regularized_stack(weightwise)
    model(X[:4])
    total = binding.regularization_loss(model).item()
    assert total == pytest.approx(sum(v.item() for v in model.losses), rel=1e-6)
    assert weightwise.regularization_loss is binding.regularization_loss
    assert weightwise.apply_constraints is binding.apply_constraints


@pytest.mark.parametrize("kind", ["numpy", "tensor", "dataset", "dataloader"])
def test_fit_accepts_arrays_tensors_datasets_and_loaders(kind: str) -> None:
    torch.manual_seed(1)
    model = Sequential([layers.Input(shape=(6,)), layers.Dense(1)])
    model.compile(optimizer=weightwise.optimizers.SGD(0.05), loss="mse")
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
    dataset = torch.utils.data.TensorDataset(tx, ty)
    data = {
        "numpy": dict(x=X, y=Y, batch_size=16),
        "tensor": dict(x=tx, y=ty, batch_size=16),
        "dataset": dict(x=dataset, batch_size=16),
        "dataloader": dict(x=torch.utils.data.DataLoader(dataset, batch_size=16)),
    }[kind]
    before = model.evaluate(X, Y, verbose=0)
    history = model.fit(epochs=5, verbose=0, **data)
    assert len(history.history["loss"]) == 5
    assert model.evaluate(X, Y, verbose=0) < before


def test_validation_split_and_data_and_sample_and_class_weights() -> None:
    model = Sequential([layers.Input(shape=(6,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    labels = (X[:, 0] > 0).astype(np.int64)
    history = model.fit(X, labels, epochs=2, validation_split=0.25, verbose=0, class_weight={0: 1.0, 1: 2.0})
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    history = model.fit(X, labels, epochs=1, validation_data=(X[:8], labels[:8]), verbose=0,
                        sample_weight=np.ones(48, np.float32))
    assert "val_loss" in history.history
    loss, accuracy = model.evaluate(X, labels, verbose=0)
    assert 0 <= accuracy <= 1 and loss > 0


def test_predict_and_single_batch_methods() -> None:
    model = Sequential([layers.Input(shape=(6,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    predictions = model.predict(X, batch_size=10, verbose=0)
    assert isinstance(predictions, np.ndarray) and predictions.shape == (48, 1)
    np.testing.assert_allclose(model.predict_on_batch(X[:5]), predictions[:5], rtol=1e-6)
    loss, mae = model.train_on_batch(X[:16], Y[:16])
    assert loss > 0 and mae > 0
    logs = model.test_on_batch(X[:16], Y[:16], return_dict=True)
    assert set(logs) == {"loss", "mae"}


def test_training_mode_is_restored_after_fit() -> None:
    model = Sequential([layers.Input(shape=(6,)), layers.Dropout(0.5), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0)
    assert not model.training
    first, second = model.predict(X, verbose=0), model.predict(X, verbose=0)
    np.testing.assert_array_equal(first, second)


def test_early_stopping_ends_training() -> None:
    model = Sequential([layers.Input(shape=(6,)), layers.Dense(1)])
    model.compile(optimizer=weightwise.optimizers.SGD(0.0), loss="mse")
    history = model.fit(X, Y, epochs=10, verbose=0, validation_data=(X, Y),
                        callbacks=[callbacks.EarlyStopping(monitor="val_loss", patience=1)])
    assert len(history.history["loss"]) == 2


# -- bad input ---------------------------------------------------------------------------


def test_fit_before_compile_says_what_to_do() -> None:
    model = Sequential([layers.Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(X, Y)


@pytest.mark.parametrize(
    "compile_kwargs, match",
    [
        ({"optimizer": "sgdd", "loss": "mse"}, "sgdd"),
        ({"optimizer": "sgd", "loss": "msee"}, "msee"),
        ({"optimizer": "sgd", "loss": "mse", "metrics": ["acuracy"]}, "acuracy"),
    ],
)
def test_unknown_names_are_refused_at_compile(compile_kwargs, match: str) -> None:
    model = Sequential([layers.Dense(1)])
    with pytest.raises(ValueError, match=match):
        model.compile(**compile_kwargs)


def test_bad_data_is_refused_before_any_weight_changes() -> None:
    model = Sequential([layers.Input(shape=(6,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(X, Y[:10], verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(X, Y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        model.fit(torch.utils.data.DataLoader([{1, 2}, {3, 4}], batch_size=None), verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_ctrl_c_stops_after_the_current_batch_with_a_consistent_history() -> None:
    model = regularized_stack(weightwise)
    snapshots = []

    def interrupt(batch, logs):
        snapshots.append([w.copy() for w in model.get_weights()])
        if batch == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[callbacks.LambdaCallback(on_train_batch_end=interrupt)])
    assert len(snapshots) == 3  # no batch ran after the interrupted one
    for saved, now in zip(snapshots[-1], model.get_weights()):
        np.testing.assert_array_equal(saved, now)
    assert len(model.history.history["loss"]) == 1  # the partial epoch, up to the last completed batch
    assert model.evaluate(X, Y, verbose=0)[0] > 0  # still usable
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_save_and_load_weights_round_trip_and_checkpoint(tmp_path) -> None:
    model = regularized_stack(weightwise)
    path = tmp_path / "w-{epoch:02d}.pt"
    model.fit(X, Y, epochs=2, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(str(path), save_weights_only=True, monitor="loss")])
    assert (tmp_path / "w-01.pt").exists() and (tmp_path / "w-02.pt").exists()
    fresh = regularized_stack(weightwise)
    fresh.load_weights(tmp_path / "w-02.pt")
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = Sequential([layers.Input(shape=(6,)), layers.Dense(2)])
    before = other.get_weights()
    with pytest.raises(ValueError, match="no weight was changed"):
        other.load_weights(tmp_path / "w-02.pt")
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_evaluate_and_predict_drive_batch_callbacks() -> None:
    model = regularized_stack(weightwise)
    seen = {"test": 0, "predict": 0}
    counter = callbacks.LambdaCallback(
        on_test_batch_end=lambda batch, logs: seen.__setitem__("test", seen["test"] + 1),
        on_predict_batch_end=lambda batch, logs: seen.__setitem__("predict", seen["predict"] + 1),
    )
    model.evaluate(X, Y, batch_size=16, verbose=0, callbacks=[counter])
    model.predict(X, batch_size=16, verbose=0, callbacks=[counter])
    assert seen == {"test": 3, "predict": 3}


def two_in_two_out(lib):
    a, b = lib.Input(shape=(6,), name="a"), lib.Input(shape=(3,), name="b")
    shared = lib.layers.Dense(4, activation="tanh", name="shared", kernel_regularizer=lib.regularizers.L2(1e-2))
    joined = lib.layers.Concatenate(name="join")([shared(a), lib.layers.Dense(4, name="side")(b)])
    first = lib.layers.Dense(1, name="first", kernel_constraint=lib.constraints.MaxNorm(0.5))(joined)
    second = lib.layers.Dense(2, name="second", activation="softmax")(joined)
    model = lib.Model({"a": a, "b": b}, {"first": first, "second": second})
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05, momentum=0.5),
                  loss={"first": "mse", "second": "sparse_categorical_crossentropy"},
                  loss_weights={"first": 1.0, "second": 0.5})
    return model


def test_multi_input_multi_output_fit_matches_keras(keras) -> None:
    theirs, ours = two_in_two_out(keras), two_in_two_out(weightwise)
    ours.set_weights(theirs.get_weights())
    x = {"a": X, "b": X[:, :3] * 2}
    y = {"first": Y, "second": (X[:, 0] > 0).astype(np.int64)}
    k_hist = theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    w_hist = ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for key in ("loss", "first_loss", "second_loss"):
        np.testing.assert_allclose(w_hist.history[key], k_hist.history[key], rtol=1e-5, err_msg=key)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)
    predictions = ours.predict(x, verbose=0)
    assert set(predictions) == {"first", "second"} and predictions["second"].shape == (48, 2)
