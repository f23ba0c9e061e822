"""callbacks.TensorBoard: the event files are read back and checked against History, the weights and Keras.

The expected tags and steps are the ones Keras 3.15.1's TensorBoard writes for the same
model on its torch backend. When tensorflow is installed (Keras's callback needs it),
``test_event_files_match_keras`` runs Keras's callback next to ours and compares the files
themselves; otherwise the literal sets below, recorded from that run, stand for it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weightwise import Sequential, backend, callbacks, layers
from weightwise.callbacks import TensorBoard

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="the optional `tensorboard` package is not installed")

HISTOGRAMS = {f"sequential/{path}/histogram" for path in (
    "dense/kernel", "dense/bias", "batch_normalization/gamma", "batch_normalization/beta",
    "batch_normalization/moving_mean", "batch_normalization/moving_variance", "dense_1/kernel", "dense_1/bias")}
# What Keras 3.15.1 writes for `_model()` with histogram_freq=1, validation data and metrics=["mae"].
KERAS_TRAIN_TAGS = {"keras", "epoch_loss", "epoch_mae", "epoch_learning_rate"} | HISTOGRAMS
KERAS_BATCH_TAGS = {"batch_loss", "batch_mae"}
KERAS_VALIDATION_TAGS = {"epoch_loss", "epoch_mae", "evaluation_loss_vs_iterations", "evaluation_mae_vs_iterations"}

X = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
Y = np.random.default_rng(1).normal(size=(20, 2)).astype("float32")
STEPS_PER_EPOCH = 3  # 20 samples in batches of 8


@pytest.fixture(autouse=True)
def _fresh_names():
    backend.clear_session()  # the model is `sequential` and its layers `dense`, `dense_1`, as the tags say


def _model() -> Sequential:
    model = Sequential([layers.Input((3,)), layers.Dense(4, activation="relu"), layers.BatchNormalization(),
                        layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return model


def _fit(model, board, epochs=2, extra=()):
    return model.fit(X, Y, batch_size=8, epochs=epochs, validation_data=(X[:10], Y[:10]), shuffle=False,
                     verbose=0, callbacks=[*extra, board])


def _events(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "histograms": 0, "tensors": 0, "images": 0}
    return EventAccumulator(str(directory), size_guidance=guidance, purge_orphaned_data=False).Reload()


def _scalars(events, tag):
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _tags(events):
    tags = events.Tags()
    return set(tags["scalars"]) | set(tags["histograms"]) | set(tags["tensors"]) | set(tags["images"])


# -- without tensorboard -----------------------------------------------------------------------
def test_import_weightwise_does_not_import_tensorboard() -> None:
    code = ("import sys, weightwise, weightwise.callbacks\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] == 'tensorboard' or m == 'torch.utils.tensorboard']\n"
            "print(loaded)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_without_tensorboard_the_callback_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"`tensorboard` package.*pip install tensorboard"):
        TensorBoard("logs")


def test_the_extra_the_error_names_exists_and_ci_installs_it() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("tensorboard") for requirement in extras["tensorboard"])
    assert any(requirement.startswith("tensorboard") for requirement in extras["test"])


# -- arguments ---------------------------------------------------------------------------------
def test_arguments_and_defaults_are_keras_s() -> None:
    import keras

    ours = inspect.signature(TensorBoard).parameters
    theirs = inspect.signature(keras.callbacks.TensorBoard).parameters
    assert list(ours) == list(theirs)
    assert {name: p.default for name, p in ours.items()} == {name: p.default for name, p in theirs.items()}


@needs_tensorboard
def test_update_freq_batch_is_one_as_in_keras(tmp_path) -> None:
    assert TensorBoard(tmp_path, update_freq="batch").update_freq == 1
    assert TensorBoard(tmp_path).update_freq == "epoch"
    assert TensorBoard(tmp_path, update_freq=np.int64(5)).update_freq == 5
    TensorBoard(tmp_path, profile_batch=False)  # 0 as Keras reads it


@needs_tensorboard
@pytest.mark.parametrize(("argument", "value"), [
    ("log_dir", 3), ("histogram_freq", -1), ("histogram_freq", 1.5), ("histogram_freq", True),
    ("write_graph", "yes"), ("write_images", 1), ("write_steps_per_second", None),
    ("update_freq", 0), ("update_freq", "epochs"), ("update_freq", 2.0), ("update_freq", True),
    ("profile_batch", 5), ("profile_batch", (2, 4)), ("profile_batch", "0"), ("profile_batch", None),
    ("profile_batch", True),
    ("embeddings_freq", 1), ("embeddings_freq", -1), ("embeddings_metadata", 3),
])
def test_bad_arguments_are_refused_naming_the_argument(tmp_path, argument, value) -> None:
    kwargs = {"log_dir": tmp_path, argument: value}
    with pytest.raises(ValueError, match=rf"`{argument}`.*Received: {argument}=") as error:
        TensorBoard(**kwargs)
    assert repr(value)[:20] in str(error.value)
    assert not any(tmp_path.iterdir()), "a refused callback wrote something"


def test_keras_also_refuses_profiling_on_torch() -> None:
    import keras

    with pytest.raises(ValueError, match="profile_batch=5"):
        keras.callbacks.TensorBoard(profile_batch=5)


# -- event files -------------------------------------------------------------------------------
@needs_tensorboard
def test_epoch_scalars_equal_history_at_epoch_steps(tmp_path) -> None:
    model = _model()
    history = _fit(model, TensorBoard(tmp_path, histogram_freq=1), epochs=3).history
    assert sorted(os.listdir(tmp_path)) == ["train", "validation"]
    train, validation = _events(tmp_path / "train"), _events(tmp_path / "validation")
    assert _tags(train) == KERAS_TRAIN_TAGS
    assert _tags(validation) == KERAS_VALIDATION_TAGS
    for name in ("loss", "mae"):
        assert _scalars(train, f"epoch_{name}") == [(e, np.float32(v)) for e, v in enumerate(history[name])]
        assert _scalars(validation, f"epoch_{name}") == [
            (e, np.float32(v)) for e, v in enumerate(history[f"val_{name}"])]
        # After each validation, at the optimizer's iteration count.
        assert _scalars(validation, f"evaluation_{name}_vs_iterations") == [
            (STEPS_PER_EPOCH * (e + 1), np.float32(v)) for e, v in enumerate(history[f"val_{name}"])]
    assert _scalars(train, "epoch_learning_rate") == [(e, np.float32(0.01)) for e in range(3)]


@needs_tensorboard
@pytest.mark.parametrize(("update_freq", "every"), [("batch", 1), (1, 1), (2, 2), (4, 4)])
def test_batch_scalars_every_n_batches_at_the_global_batch_count(tmp_path, update_freq, every) -> None:
    seen = []
    record = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    _fit(_model(), TensorBoard(tmp_path, update_freq=update_freq), epochs=2, extra=[record])
    train = _events(tmp_path / "train")
    assert KERAS_BATCH_TAGS <= _tags(train)
    for name in ("loss", "mae"):
        expected = [(step, np.float32(logs[name])) for step, logs in enumerate(seen, start=1) if step % every == 0]
        assert _scalars(train, f"batch_{name}") == expected
        # Every epoch, whatever the batch count (Keras drops those of epochs that end off a multiple of N).
        assert [step for step, _ in _scalars(train, f"epoch_{name}")] == [0, 1]
    assert len(seen) == 2 * STEPS_PER_EPOCH
    evaluation = _scalars(_events(tmp_path / "validation"), "evaluation_loss_vs_iterations")
    assert [step for step, _ in evaluation] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


@needs_tensorboard
def test_epoch_updates_write_no_batch_scalars(tmp_path) -> None:
    _fit(_model(), TensorBoard(tmp_path), epochs=1)
    assert not _tags(_events(tmp_path / "train")) & KERAS_BATCH_TAGS


@needs_tensorboard
def test_histograms_of_every_weight_every_histogram_freq_epochs(tmp_path) -> None:
    model = _model()
    snapshots = {}
    keep = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.__setitem__(
        epoch, {w.path: w.detach().double().numpy().copy() for layer in model.layers for w in layer.weights}))
    _fit(model, TensorBoard(tmp_path, histogram_freq=2), epochs=5, extra=[keep])
    train = _events(tmp_path / "train")
    assert set(train.Tags()["histograms"]) == HISTOGRAMS
    for path in snapshots[0]:
        events = train.Histograms(f"{path}/histogram")
        assert [event.step for event in events] == [0, 2, 4]
        for event in events:
            weight = snapshots[event.step][path]
            value = event.histogram_value
            assert value.num == weight.size
            assert value.min == pytest.approx(weight.min(), abs=0)
            assert value.max == pytest.approx(weight.max(), abs=0)
            assert value.sum == pytest.approx(weight.sum(), rel=1e-12, abs=1e-12)
            assert value.sum_squares == pytest.approx((weight ** 2).sum(), rel=1e-12, abs=1e-12)
            assert sum(value.bucket) == weight.size
            assert len(value.bucket) <= 31  # 30 buckets and an empty one on the left


@needs_tensorboard
def test_a_torch_module_inside_a_layer_gets_the_layer_path_and_its_parameter_names(tmp_path) -> None:
    import torch

    class Inner(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.linear = torch.nn.Linear(3, 2)

        def call(self, inputs):
            return self.linear(inputs)

    model = Sequential([layers.Input((3,)), Inner(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y[:, :1], epochs=1, verbose=0, callbacks=[TensorBoard(tmp_path, histogram_freq=1)])
    train = _events(tmp_path / "train")
    assert set(train.Tags()["histograms"]) == {
        "sequential/inner/linear/weight/histogram", "sequential/inner/linear/bias/histogram",
        "sequential/dense/kernel/histogram", "sequential/dense/bias/histogram"}
    (event,) = train.Histograms("sequential/inner/linear/weight/histogram")
    weight = model.layers[0].linear.weight.detach().double().numpy()
    assert (event.histogram_value.num, event.histogram_value.max) == (weight.size, weight.max())


@needs_tensorboard
def test_every_number_other_callbacks_put_in_the_logs_is_written(tmp_path) -> None:
    class Penalties(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["penalty/dense"] = 0.5 * (epoch + 1)
            logs["val_penalty/dense"] = 0.25
            logs["note"] = "text is no scalar"

    _fit(_model(), TensorBoard(tmp_path), epochs=2, extra=[Penalties()])
    train, validation = _events(tmp_path / "train"), _events(tmp_path / "validation")
    assert _scalars(train, "epoch_penalty/dense") == [(0, 0.5), (1, 1.0)]
    assert _scalars(validation, "epoch_penalty/dense") == [(0, 0.25), (1, 0.25)]
    assert "epoch_note" not in _tags(train)


@needs_tensorboard
def test_regularization_monitor_keys_are_written_as_history_has_them(tmp_path) -> None:
    from weightwise import constraints, regularizers

    model = Sequential([layers.Input((3,)), layers.Dense(4, kernel_regularizer=regularizers.L2(0.01),
                                                         kernel_constraint=constraints.MaxNorm(0.5)),
                        layers.Dense(2, bias_regularizer=regularizers.L1(0.1))])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[TensorBoard(tmp_path), callbacks.RegularizationMonitor()]).history
    keys = {"penalty/dense", "penalty/dense_1", "bound_rate/dense.kernel"}
    assert keys <= set(history)
    train = _events(tmp_path / "train")
    for key in keys:
        written = _scalars(train, f"epoch_{key}")
        assert [step for step, _ in written] == [0, 1]
        np.testing.assert_array_equal([value for _, value in written], np.float32(history[key]))


@needs_tensorboard
def test_evaluate_writes_the_evaluation_scalars_at_the_iteration(tmp_path) -> None:
    model = _model()
    _fit(model, TensorBoard(tmp_path / "fit"), epochs=1)
    board = TensorBoard(tmp_path / "eval")
    result = model.evaluate(X, Y, batch_size=8, verbose=0, callbacks=[board], return_dict=True)
    validation = _events(tmp_path / "eval" / "validation")
    assert _scalars(validation, "evaluation_loss_vs_iterations") == [(STEPS_PER_EPOCH, np.float32(result["loss"]))]
    assert _scalars(validation, "evaluation_mae_vs_iterations") == [(STEPS_PER_EPOCH, np.float32(result["mae"]))]


@needs_tensorboard
def test_write_graph_writes_the_model_config_that_tensorboard_draws(tmp_path) -> None:
    from tensorboard.plugins.graph import keras_util
    from tensorboard.util import tensor_util

    model = _model()
    _fit(model, TensorBoard(tmp_path), epochs=1)
    train = _events(tmp_path / "train")
    (event,) = train.Tensors("keras")
    assert event.step == 0
    assert train.SummaryMetadata("keras").plugin_data.plugin_name == "graph_keras_model"
    config = json.loads(tensor_util.make_ndarray(event.tensor_proto).item())
    assert config == json.loads(model.to_json())
    graph = keras_util.keras_model_to_graph_def(config)
    names = {node.name for node in graph.node}
    assert {"sequential/dense", "sequential/batch_normalization", "sequential/dense_1"} <= names


@needs_tensorboard
def test_write_graph_for_functional_models_and_not_for_subclassed_ones(tmp_path) -> None:
    from weightwise import Model

    inputs = layers.Input((3,))
    functional = Model(inputs, layers.Dense(2)(inputs))
    assert type(functional).__name__ == "Functional"

    class Subclassed(Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    for name, model in (("functional", functional), ("subclassed", Subclassed())):
        model.compile(optimizer="sgd", loss="mse")
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[TensorBoard(tmp_path / name)])
    (event,) = _events(tmp_path / "functional" / "train").Tensors("keras")
    assert json.loads(event.tensor_proto.string_val[0]) == json.loads(functional.to_json())
    assert "keras" not in _tags(_events(tmp_path / "subclassed" / "train"))


@needs_tensorboard
def test_no_graph_without_write_graph(tmp_path) -> None:
    _fit(_model(), TensorBoard(tmp_path, write_graph=False), epochs=1)
    assert "keras" not in _tags(_events(tmp_path / "train"))


@needs_tensorboard
def test_write_images_draws_kernels_and_biases_as_keras_shapes_them(tmp_path) -> None:
    _fit(_model(), TensorBoard(tmp_path, histogram_freq=1, write_images=True), epochs=1)
    train = _events(tmp_path / "train")
    kernel = train.Images("sequential/dense/kernel/image")[0]  # (3, 4): already wider than high
    assert (kernel.step, kernel.height, kernel.width) == (0, 3, 4)
    bias = train.Images("sequential/dense_1/bias/image")[0]  # (2,): one column
    assert (bias.height, bias.width) == (2, 1)
    tall = train.Images("sequential/dense_1/kernel/image")[0]  # (4, 2): transposed to (2, 4)
    assert (tall.height, tall.width) == (2, 4)


@needs_tensorboard
def test_steps_per_second(tmp_path) -> None:
    _fit(_model(), TensorBoard(tmp_path, write_steps_per_second=True, update_freq="batch"), epochs=2)
    train = _events(tmp_path / "train")
    epoch_rates = _scalars(train, "epoch_steps_per_second")
    batch_rates = _scalars(train, "batch_steps_per_second")
    assert [step for step, _ in epoch_rates] == [0, 1]
    assert [step for step, _ in batch_rates] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert all(rate > 0 for _, rate in epoch_rates + batch_rates)


@needs_tensorboard
def test_a_second_fit_counts_batches_from_one_again(tmp_path) -> None:
    model = _model()
    board = TensorBoard(tmp_path, update_freq="batch")
    _fit(model, board, epochs=1)
    _fit(model, board, epochs=1)
    steps = [step for step, _ in _scalars(_events(tmp_path / "train"), "batch_loss")]
    assert steps == [1, 2, 3, 1, 2, 3]


# -- against Keras itself ----------------------------------------------------------------------
@needs_tensorboard
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="Keras's TensorBoard writes through tensorflow, which is not installed")
@pytest.mark.parametrize("update_freq", ["epoch", "batch"])
def test_event_files_match_keras(tmp_path, update_freq) -> None:
    # Not update_freq=N > 1: there Keras drops the epoch summaries, histograms and evaluation scalars
    # written while its batch or test-batch count is no multiple of N (its recording condition stays
    # in force); we write them all, as its documentation describes.
    import keras
    from tensorboard.util import tensor_util

    keras.backend.clear_session()
    ours = _model()
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                               keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    theirs.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    theirs.set_weights([w.detach().numpy() for w in ours.weights])
    fit = {"batch_size": 8, "epochs": 2, "validation_data": (X[:10], Y[:10]), "shuffle": False, "verbose": 0}
    options = {"histogram_freq": 1, "update_freq": update_freq, "write_images": True}
    ours.fit(X, Y, callbacks=[TensorBoard(tmp_path / "ours", **options)], **fit)
    theirs.fit(X, Y, callbacks=[keras.callbacks.TensorBoard(str(tmp_path / "keras"), **options)], **fit)
    assert sorted(os.listdir(tmp_path / "ours")) == sorted(os.listdir(tmp_path / "keras")) == ["train", "validation"]
    for directory in ("train", "validation"):
        mine, reference = _events(tmp_path / "ours" / directory), _events(tmp_path / "keras" / directory)
        assert _tags(mine) == set(reference.Tags()["tensors"])  # Keras writes every summary as a tensor
        for tag in mine.Tags()["scalars"]:
            expected = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in reference.Tensors(tag)]
            got = _scalars(mine, tag)
            assert [step for step, _ in got] == [step for step, _ in expected], tag
            np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-5, err_msg=tag)
        for tag in mine.Tags()["histograms"]:
            for event, reference_event in zip(mine.Histograms(tag), reference.Tensors(tag), strict=True):
                buckets = tensor_util.make_ndarray(reference_event.tensor_proto)  # (30, 3): left, right, count
                assert event.step == reference_event.step
                assert event.histogram_value.num == buckets[:, 2].sum()
                np.testing.assert_allclose(event.histogram_value.min, buckets[0, 0], rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(event.histogram_value.max, buckets[-1, 1], rtol=1e-5, atol=1e-6)
        for tag in mine.Tags()["images"]:
            for event, reference_event in zip(mine.Images(tag), reference.Tensors(tag), strict=True):
                width, height = (int(v) for v in reference_event.tensor_proto.string_val[:2])  # then the PNGs
                assert (event.step, event.width, event.height) == (reference_event.step, width, height), tag
