"""Every API that three public Keras scripts call, called the way they call it, against Keras 3.

The scripts are Keras's ``examples/demo_mnist_convnet.py`` (a Sequential convnet trained with
``fit``), ``examples/demo_functional.py`` (a residual functional model with metric objects) and
``guides/writing_a_custom_training_loop_in_torch.py`` (hand-written loops with a torch optimizer,
then with a Keras optimizer, loss and metrics). Sizes here are small so each test runs in seconds;
the data is offline stand-in data with the scripts' structure. Where we have no such API yet the
test is a strict xfail naming what is missing, so it turns into a failure the day that lands.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise
from weightwise import Model, layers, losses, metrics, optimizers

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


def digits(n: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like stand-in: uint8 images of one blob pattern per class, shifted and noised, and labels."""
    patterns = np.random.default_rng(0).random((NUM_CLASSES, side, side)) > 0.7
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.uint8)
    images = patterns[labels] * rng.uniform(150, 255, (n, 1, 1)) + rng.normal(0, 20, (n, side, side))
    shifts = rng.integers(-1, 2, n)
    images = np.stack([np.roll(image, shift, axis=1) for image, shift in zip(images, shifts)])
    return np.clip(images, 0, 255).astype(np.uint8), labels


def one_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    return np.eye(num_classes or int(labels.max()) + 1, dtype=np.float32)[labels]


def copy_weights(source, target) -> None:
    target.set_weights([to_numpy(w) for w in source.get_weights()])


# -- examples/demo_mnist_convnet.py ---------------------------------------------------------
def test_to_categorical_as_the_scripts_call_it(keras) -> None:
    from weightwise.utils import to_categorical  # the convnet script's import

    labels = np.array([3, 0, 9, 3], dtype=np.uint8)
    np.testing.assert_array_equal(to_categorical(labels, NUM_CLASSES), keras.utils.to_categorical(labels, NUM_CLASSES))
    # The guide calls it through the module and without num_classes.
    np.testing.assert_array_equal(weightwise.utils.to_categorical(labels), keras.utils.to_categorical(labels))


def convnet(lib, input_shape):
    lay = lib.layers
    return lib.Sequential(
        [
            lay.Input(shape=input_shape),
            lay.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            lay.MaxPooling2D(pool_size=(2, 2)),
            lay.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            lay.MaxPooling2D(pool_size=(2, 2)),
            lay.Flatten(),
            lay.Dropout(0.5),
            lay.Dense(NUM_CLASSES, activation="softmax"),
        ]
    )


def convnet_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = digits(n, 10, seed)
    x = np.expand_dims(images.astype("float32") / 255, -1)  # the script's scaling and channel axis
    return x, one_hot(labels, NUM_CLASSES)


def test_convnet_script_model_matches_keras(keras, capsys) -> None:
    input_shape = (10, 10, 1)
    theirs, ours = convnet(keras, input_shape), convnet(weightwise, input_shape)
    ours.summary()
    assert "Total params" in capsys.readouterr().out
    assert ours.count_params() == theirs.count_params()
    assert [tuple(w.shape) for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    for model in (theirs, ours):
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    copy_weights(theirs, ours)
    x_test, y_test = convnet_data(64, seed=2)
    score, expected = ours.evaluate(x_test, y_test, verbose=0), theirs.evaluate(x_test, y_test, verbose=0)
    assert isinstance(score, list) and len(score) == 2  # score[0] is the loss, score[1] the accuracy
    np.testing.assert_allclose(score, expected, rtol=1e-5)


def test_convnet_script_fit_trains_like_keras(keras) -> None:
    """The script's fit call (validation_split, default shuffle, Dropout): same logs as Keras, and learning.

    Dropout masks differ between the libraries, so the numbers are compared through the trend, not
    step by step; the full-size comparison of accuracies is a run of the script itself.
    """
    input_shape = (10, 10, 1)
    x_train, y_train = convnet_data(160, seed=1)
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    histories = {}
    for name, lib in (("keras", keras), ("ours", weightwise)):
        model = convnet(lib, input_shape)
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        histories[name] = model.fit(x_train, y_train, batch_size=32, epochs=3, validation_split=0.1, verbose=0).history
    assert sorted(histories["ours"]) == sorted(histories["keras"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for history in histories.values():
        assert all(len(values) == 3 for values in history.values())
        assert history["loss"][-1] < history["loss"][0]
    # Same architecture, initializers and optimizer: the first epoch's mean loss starts near ln(10) in both.
    assert histories["ours"]["loss"][0] == pytest.approx(histories["keras"]["loss"][0], rel=0.1)


# -- examples/demo_functional.py ------------------------------------------------------------
def test_functional_script_disables_traceback_filtering() -> None:
    weightwise.config.disable_traceback_filtering()


def test_functional_script_residual_by_augmented_add(keras) -> None:
    def build(lib):
        inputs = lib.layers.Input((10,))
        x = lib.layers.Dense(8, activation="relu")(inputs)
        residual = x
        x = lib.layers.Dense(8, activation="relu")(x)
        x += residual
        return lib.Model(inputs, lib.layers.Dense(4)(x))

    theirs, ours = build(keras), build(weightwise)
    copy_weights(theirs, ours)
    x = np.random.default_rng(0).random((5, 10))
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def residual_model(lib, width: int = 16):
    """demo_functional's graph, with the residual sums written as Add layers (x += residual is tested above)."""
    inputs = lib.layers.Input((20,))
    x = lib.layers.Dense(width, activation="relu")(inputs)
    residual = x
    x = lib.layers.Dense(width, activation="relu")(x)
    x = lib.layers.Dense(width, activation="relu")(x)
    x = lib.layers.Add()([x, residual])
    x = lib.layers.Dense(width, activation="relu")(x)
    residual = x
    x = lib.layers.Dense(width, activation="relu")(x)
    x = lib.layers.Dense(width, activation="relu")(x)
    x = lib.layers.Add()([x, residual])
    outputs = lib.layers.Dense(4)(x)
    return lib.Model(inputs, outputs)


def compile_like_the_script(model, lib) -> None:
    model.compile(
        optimizer=lib.optimizers.Adam(learning_rate=0.001),
        loss=lib.losses.MeanSquaredError(),
        metrics=[
            lib.metrics.CategoricalAccuracy(name="acc"),
            lib.metrics.MeanSquaredError(name="mse"),
        ],
    )


def test_functional_script_fit_evaluate_predict_match_keras(keras, capsys) -> None:
    # The script's own imports: `from keras import Model, layers, losses, metrics, optimizers`.
    assert (Model, layers, losses, metrics, optimizers) == (
        weightwise.Model, weightwise.layers, weightwise.losses, weightwise.metrics, weightwise.optimizers)
    theirs, ours = residual_model(keras), residual_model(weightwise)
    ours.summary()
    assert "Total params" in capsys.readouterr().out
    copy_weights(theirs, ours)
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 20)), rng.random((200, 4))  # float64, as np.random.random gives
    compile_like_the_script(theirs, keras)
    compile_like_the_script(ours, weightwise)
    # The script shuffles; unshuffled, both libraries see the same batches.
    k_hist = theirs.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, shuffle=False, verbose=0)
    w_hist = ours.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, shuffle=False, verbose=0)
    assert sorted(w_hist.history) == sorted(k_hist.history) == ["acc", "loss", "mse", "val_acc", "val_loss", "val_mse"]
    for key, values in k_hist.history.items():
        np.testing.assert_allclose(w_hist.history[key], values, rtol=1e-4, atol=1e-6, err_msg=key)
    scores, expected = ours.evaluate(x, y, return_dict=True, verbose=0), theirs.evaluate(x, y, return_dict=True, verbose=0)
    assert sorted(scores) == sorted(expected)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    pred = ours.predict(x, verbose=0)
    assert pred.shape == (200, 4)
    np.testing.assert_allclose(pred, theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


# -- guides/writing_a_custom_training_loop_in_torch.py --------------------------------------
def get_model(lib, features: int = 16):
    """The guide's model, narrower."""
    inputs = lib.Input(shape=(features,), name="digits")
    x1 = lib.layers.Dense(12, activation="relu")(inputs)
    x2 = lib.layers.Dense(12, activation="relu")(x1)
    outputs = lib.layers.Dense(NUM_CLASSES, name="predictions")(x2)
    return lib.Model(inputs=inputs, outputs=outputs)


def guide_loaders(n: int = 96, batch_size: int = 16):
    images, labels = digits(n + 32, 4, seed=3)
    x = np.reshape(images, (-1, 16)).astype("float32")
    y = one_hot(labels, NUM_CLASSES)
    x_val, y_val, x_train, y_train = x[-32:], y[-32:], x[:-32], y[:-32]
    train = torch.utils.data.TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
    val = torch.utils.data.TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val))
    # The guide shuffles the training batches; here both libraries must see the same order.
    return (torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=False),
            torch.utils.data.DataLoader(val, batch_size=batch_size, shuffle=False))


def twin_models(keras):
    theirs, ours = get_model(keras), get_model(weightwise)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    copy_weights(theirs, ours)
    return theirs, ours


def assert_same_weights(ours, theirs) -> None:
    for mine, reference in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, to_numpy(reference), rtol=1e-4, atol=1e-5)


def test_guide_loop_with_torch_optimizer_and_torch_loss(keras) -> None:
    train_dataloader, _ = guide_loaders()
    theirs, ours = twin_models(keras)
    logged = []
    for model in (theirs, ours):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        logged.append([])
        for _ in range(2):
            for step, (inputs, targets) in enumerate(train_dataloader):
                logits = model(inputs)
                loss = loss_fn(logits, targets)
                model.zero_grad()
                loss.backward()
                optimizer.step()
                if step % 2 == 0:
                    logged[-1].append(float(loss.detach().numpy()))
    np.testing.assert_allclose(logged[1], logged[0], rtol=1e-5)
    assert_same_weights(ours, theirs)


def keras_optimizer_loop(model, lib, train_dataloader, val_dataloader, epochs: int = 2, gradients_of=None):
    """The guide's loop with a Keras optimizer, loss and metrics; returns the accuracies it prints."""
    optimizer = lib.optimizers.Adam(learning_rate=1e-3)
    loss_fn = lib.losses.CategoricalCrossentropy(from_logits=True)
    train_acc_metric = lib.metrics.CategoricalAccuracy()
    val_acc_metric = lib.metrics.CategoricalAccuracy()
    printed = []
    for _ in range(epochs):
        for inputs, targets in train_dataloader:
            logits = model(inputs)
            loss = loss_fn(targets, logits)
            if model.losses:
                loss = loss + torch.sum(*model.losses)
            model.zero_grad()
            trainable_weights = [v for v in model.trainable_weights]
            loss.backward()
            gradients = gradients_of(trainable_weights)
            with torch.no_grad():
                optimizer.apply(gradients, trainable_weights)
            train_acc_metric.update_state(targets, logits)
        printed.append(float(train_acc_metric.result()))
        train_acc_metric.reset_state()
        for x_batch_val, y_batch_val in val_dataloader:
            val_logits = model(x_batch_val, training=False)
            val_acc_metric.update_state(y_batch_val, val_logits)
        printed.append(float(val_acc_metric.result()))
        val_acc_metric.reset_state()
    return printed


def test_guide_optimizer_apply_with_grads_from_dot_grad(keras) -> None:
    """The guide's Keras-optimizer loop, reading each gradient as ``v.grad`` (our weights are Parameters)."""
    loaders = guide_loaders()
    theirs, ours = twin_models(keras)
    expected = keras_optimizer_loop(theirs, keras, *loaders, gradients_of=lambda ws: [v.value.grad for v in ws])
    got = keras_optimizer_loop(ours, weightwise, *loaders, gradients_of=lambda ws: [v.grad for v in ws])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert_same_weights(ours, theirs)


def test_guide_keras_optimizer_loop_unchanged(keras) -> None:
    """The guide's loop exactly: gradients read as ``v.value.grad``."""
    loaders = guide_loaders()
    theirs, ours = twin_models(keras)
    expected = keras_optimizer_loop(theirs, keras, *loaders, gradients_of=lambda ws: [v.value.grad for v in ws])
    got = keras_optimizer_loop(ours, weightwise, *loaders, gradients_of=lambda ws: [v.value.grad for v in ws])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert_same_weights(ours, theirs)


def test_optimizer_apply_gradients_of_zipped_pairs(keras) -> None:
    train_dataloader, _ = guide_loaders()
    theirs, ours = twin_models(keras)
    for model, lib in ((theirs, keras), (ours, weightwise)):
        optimizer = lib.optimizers.Adam(learning_rate=1e-2)
        loss_fn = lib.losses.CategoricalCrossentropy(from_logits=True)
        for inputs, targets in train_dataloader:
            loss = loss_fn(targets, model(inputs))
            model.zero_grad()
            loss.backward()
            weights = model.trainable_weights
            grads = [getattr(v, "value", v).grad for v in weights]
            with torch.no_grad():
                optimizer.apply_gradients(zip(grads, weights))
    assert_same_weights(ours, theirs)


def test_trainable_weight_value_grad(keras) -> None:
    _, ours = twin_models(keras)
    inputs, targets = next(iter(guide_loaders()[0]))
    ours.zero_grad()
    losses.CategoricalCrossentropy(from_logits=True)(targets, ours(inputs)).backward()
    for weight in ours.trainable_weights:
        assert weight.value.grad is weight.grad


def test_guide_metrics_over_the_validation_loader(keras) -> None:
    """``model(x, training=False)``, then the metric's update_state / result / reset_state per epoch."""
    _, val_dataloader = guide_loaders()
    theirs, ours = twin_models(keras)
    accuracies = []
    for model, lib in ((theirs, keras), (ours, weightwise)):
        val_acc_metric = lib.metrics.CategoricalAccuracy()
        printed = []
        for _ in range(2):
            for x_batch_val, y_batch_val in val_dataloader:
                val_acc_metric.update_state(y_batch_val, model(x_batch_val, training=False))
            printed.append(f"Validation acc: {float(val_acc_metric.result()):.4f}")
            val_acc_metric.reset_state()
        accuracies.append(printed)
    assert accuracies[1] == accuracies[0]


def activity_layer_class(lib):
    class ActivityRegularizationLayer(lib.layers.Layer):
        def call(self, inputs):
            self.add_loss(1e-2 * torch.sum(inputs))
            return inputs

    return ActivityRegularizationLayer


def activity_model(lib):
    inputs = lib.Input(shape=(16,), name="digits")
    x = lib.layers.Dense(12, activation="relu")(inputs)
    x = activity_layer_class(lib)()(x)
    x = lib.layers.Dense(12, activation="relu")(x)
    outputs = lib.layers.Dense(NUM_CLASSES, name="predictions")(x)
    return lib.Model(inputs=inputs, outputs=outputs)


def test_guide_add_loss_layer_and_model_losses(keras) -> None:
    train_dataloader, _ = guide_loaders()
    theirs, ours = activity_model(keras), activity_model(weightwise)
    copy_weights(theirs, ours)
    inputs, targets = next(iter(train_dataloader))
    totals = []
    for model, lib in ((theirs, keras), (ours, weightwise)):
        loss_fn = lib.losses.CategoricalCrossentropy(from_logits=True)
        logits = model(inputs)
        loss = loss_fn(targets, logits)
        assert len(model.losses) == 1
        loss = loss + torch.sum(*model.losses)
        model.zero_grad()
        loss.backward()
        totals.append((float(loss.detach().numpy()), [to_numpy(getattr(v, "value", v).grad).copy()
                                                       for v in model.trainable_weights]))
    assert totals[1][0] == pytest.approx(totals[0][0], rel=1e-5)
    for mine, reference in zip(totals[1][1], totals[0][1], strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-6)


# -- idioms those scripts' readers use next ---------------------------------------------------
@pytest.mark.parametrize("cls_name", ["Dense", "Conv1D", "Conv2D"])
def test_activation_set_to_none_after_construction_is_linear(keras, cls_name: str) -> None:
    shape = {"Dense": (3, 4), "Conv1D": (3, 5, 4), "Conv2D": (3, 5, 5, 4)}[cls_name]
    args = (2,) if cls_name == "Dense" else (2, 3)
    x = -np.abs(np.random.default_rng(0).normal(size=shape)).astype(np.float32)
    theirs = getattr(keras.layers, cls_name)(*args, activation="relu")
    ours = getattr(weightwise.layers, cls_name)(*args, activation="relu")
    theirs(x)
    ours(x)
    copy_weights(theirs, ours)
    theirs.activation = None
    ours.activation = None
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)
