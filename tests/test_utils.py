"""weightwise.utils against keras.utils (Keras 3.15.1, torch backend)."""

from __future__ import annotations

import hashlib
import io
import random as python_random
import re
import socket
import tarfile
import warnings

import numpy as np
import pytest
import torch
from helpers import keras_or_skip

import weightwise
from weightwise import serialization, utils

# ---------------------------------------------------------------------------------------------
# to_categorical, normalize


@pytest.mark.parametrize(("labels", "num_classes"), [
    ([0, 1, 2, 3], None),
    ([0, 1, 2, 3], 6),
    (np.array([[1], [0], [2]]), None),
    (np.array([[1, 0], [2, 2]]), 4),
    (np.array([[[1]], [[0]]]), 3),
    (np.array([2.0, 0.0]), None),
    (np.array([1], dtype=np.uint8), 2),
    (np.array(2), 3),
])
def test_to_categorical_matches_keras(labels, num_classes) -> None:
    keras = keras_or_skip()
    ours = utils.to_categorical(labels, num_classes)
    theirs = keras.utils.to_categorical(labels, num_classes)
    assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype == np.float64
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("labels", [torch.tensor([0, 2, 1]), torch.tensor([[1], [0]])])
def test_to_categorical_of_a_tensor_is_a_float32_tensor_with_kerass_values(labels) -> None:
    # Keras's torch backend gives int64 here; its other backends and its docs give floats.
    keras = keras_or_skip()
    ours = utils.to_categorical(labels, 3)
    theirs = keras.utils.to_categorical(labels, 3)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32
    assert torch.equal(ours, theirs.cpu().float())


@pytest.mark.parametrize(("labels", "num_classes", "error", "text"), [
    ([0, 3], 3, ValueError, "x=[0, 3]"),
    ([-1, 0], None, ValueError, "x=[-1, 0]"),
    ([0.5, 1.0], None, ValueError, "x=[0.5, 1.0]"),
    (["a"], None, TypeError, "x=['a']"),
    ([0, 1], 0, ValueError, "num_classes=0"),
    ([0, 1], 2.0, ValueError, "num_classes=2.0"),
    ([], None, ValueError, "num_classes=None"),
])
def test_to_categorical_refuses_what_is_not_a_class_index(labels, num_classes, error, text) -> None:
    with pytest.raises(error, match=re.escape(text)):
        utils.to_categorical(labels, num_classes)


@pytest.mark.parametrize(("axis", "order"), [(-1, 2), (1, 1), (-1, 3), (2, 2), (1, np.inf)])
def test_normalize_of_an_array_matches_keras(axis, order) -> None:
    keras = keras_or_skip()
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    x[0, 0] = 0.0
    ours = utils.normalize(x, axis=axis, order=order)
    np.testing.assert_allclose(ours, keras.utils.normalize(x, axis=axis, order=order), rtol=1e-12)
    assert isinstance(ours, np.ndarray)


def test_normalize_along_axis_0_divides_by_the_norms_along_axis_0() -> None:
    # Keras's numpy branch turns axis=0 into -1 when it divides (its `axis or -1`); the docs say axis 0.
    x = np.array([[3.0, 1.0, 0.0], [4.0, 1.0, 0.0]])
    expected = x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-300)
    expected[:, 2] = 0.0
    np.testing.assert_allclose(utils.normalize(x, axis=0), expected)


def test_normalize_of_a_tensor_matches_keras() -> None:
    keras = keras_or_skip()
    x = torch.tensor([[3.0, 4.0], [1.0, -1.0]])
    for order in (1, 2):
        torch.testing.assert_close(utils.normalize(x, order=order), keras.utils.normalize(x, order=order).cpu())


@pytest.mark.parametrize(("kwargs", "text"), [({"axis": 3}, "axis=3"), ({"order": 0}, "order=0"),
                                              ({"order": "fro"}, "order='fro'")])
def test_normalize_names_bad_arguments(kwargs, text) -> None:
    with pytest.raises(ValueError, match=re.escape(text)):
        utils.normalize(np.ones((2, 3)), **kwargs)


SEQUENCES = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]


@pytest.mark.parametrize("kwargs", [{}, {"maxlen": 2}, {"maxlen": 6, "padding": "post"},
                                    {"maxlen": 3, "truncating": "post", "value": -1},
                                    {"dtype": "float32", "value": 0.5}, {"maxlen": 4, "padding": "post",
                                                                         "truncating": "post"}])
def test_pad_sequences_matches_keras(kwargs) -> None:
    keras = keras_or_skip()
    ours = utils.pad_sequences(SEQUENCES, **kwargs)
    theirs = keras.utils.pad_sequences(SEQUENCES, **kwargs)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_pad_sequences_of_vectors_and_strings_match_keras() -> None:
    keras = keras_or_skip()
    vectors = [np.ones((2, 3)), np.zeros((4, 3))]
    np.testing.assert_array_equal(utils.pad_sequences(vectors, maxlen=3, dtype="float32"),
                                  keras.utils.pad_sequences(vectors, maxlen=3, dtype="float32"))
    words = [["a", "b"], ["c"]]
    np.testing.assert_array_equal(utils.pad_sequences(words, dtype=object, value="<pad>"),
                                  keras.utils.pad_sequences(words, dtype=object, value="<pad>"))


@pytest.mark.parametrize(("args", "kwargs", "error", "text"), [
    ((SEQUENCES,), {"padding": "both"}, ValueError, "padding='both'"),
    ((SEQUENCES,), {"maxlen": -1}, ValueError, "maxlen=-1"),
    ((5,), {}, TypeError, "sequences=5"),
    (([[1], 2],), {}, ValueError, "sequences[1]=2"),
    (([[1]],), {"value": "x"}, ValueError, "value='x'"),
    (([[[1, 2]], [[1]]],), {}, ValueError, "entry 1"),
])
def test_pad_sequences_names_bad_arguments(args, kwargs, error, text) -> None:
    with pytest.raises(error, match=re.escape(text)):
        utils.pad_sequences(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# set_random_seed


def test_set_random_seed_seeds_python_numpy_torch_and_our_random() -> None:
    def draws() -> tuple:
        return (python_random.random(), np.random.rand(), float(torch.rand(())),
                float(weightwise.random.uniform(())))

    utils.set_random_seed(123)
    first = draws()
    utils.set_random_seed(123)
    assert draws() == first
    utils.set_random_seed(124)
    assert draws() != first


def test_set_random_seed_draws_what_keras_draws() -> None:
    keras = keras_or_skip()
    keras.utils.set_random_seed(5)
    theirs = (python_random.random(), np.random.rand(), float(torch.rand(())), float(keras.random.uniform(())))
    utils.set_random_seed(5)
    assert (python_random.random(), np.random.rand(), float(torch.rand(())),
            float(weightwise.random.uniform(()))) == theirs


@pytest.mark.parametrize("bad", [-1, 2**32, 1.0, "1", True, None])
def test_set_random_seed_refuses_what_numpy_cannot_take(bad) -> None:
    with pytest.raises(ValueError, match=re.escape(f"seed={bad!r}")):
        utils.set_random_seed(bad)


# ---------------------------------------------------------------------------------------------
# PyDataset in fit / evaluate / predict

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 3)).astype("float32")
Y = (X @ np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]], dtype="float32")).astype("float32")
LABELS = np.array([0, 1, 2, 1] * 6)
WEIGHTS = RNG.uniform(0.5, 2.0, size=24).astype("float32")


def dataset_class(base, batch: int = 6, form: str = "xy", endless: bool = False):
    class Batches(base.utils.PyDataset):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.begins = self.ends = 0

        def __getitem__(self, index):
            index = index % (len(X) // batch)
            part = slice(index * batch, (index + 1) * batch)
            if form == "x":
                return X[part]
            if form == "xyw":
                return X[part], Y[part], WEIGHTS[part]
            if form == "labels":
                return X[part], LABELS[part]
            return X[part], Y[part]

        def on_epoch_begin(self) -> None:
            self.begins += 1

        def on_epoch_end(self) -> None:
            self.ends += 1

    if endless:
        Batches.num_batches = property(lambda self: None)
    else:
        Batches.__len__ = lambda self: len(X) // batch
    return Batches


def twin_models(keras, units: int = 2, loss: str = "mse"):
    """The same small model in Keras and here, from the same initial weights."""
    theirs = keras.Sequential([keras.layers.Input((3,)), keras.layers.Dense(units, activation="tanh")])
    ours = weightwise.Sequential([weightwise.layers.Input((3,)), weightwise.layers.Dense(units, activation="tanh")])
    ours.set_weights(theirs.get_weights())
    for model, module in ((theirs, keras), (ours, weightwise)):
        model.compile(optimizer=module.optimizers.SGD(0.1, momentum=0.5), loss=loss)
    return theirs, ours


def assert_same_weights(theirs, ours) -> None:
    for a, b in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["xy", "xyw"])
def test_fit_on_a_py_dataset_trains_to_kerass_weights(form) -> None:
    keras = keras_or_skip()
    theirs, ours = twin_models(keras)
    keras_history = theirs.fit(dataset_class(keras, form=form)(), epochs=3, shuffle=False, verbose=0)
    our_data = dataset_class(weightwise, form=form)()
    history = ours.fit(our_data, epochs=3, shuffle=False, verbose=0)
    assert_same_weights(theirs, ours)
    np.testing.assert_allclose(history.history["loss"], keras_history.history["loss"], rtol=1e-5)
    assert our_data.begins == our_data.ends == 3
    ours_eval = ours.evaluate(dataset_class(weightwise, form=form)(), verbose=0)
    assert ours_eval == pytest.approx(theirs.evaluate(dataset_class(keras, form=form)(), verbose=0), rel=1e-5)


def test_fit_shuffles_the_order_of_batches_with_pythons_random_each_epoch() -> None:
    # Keras draws the order with Python's random.shuffle too, but first spends one shuffle on
    # fetching a batch to inspect: the same seed gives its epochs the next orders in the sequence.
    seen: list[int] = []

    class Recording(dataset_class(weightwise)):
        def __getitem__(self, index):
            seen.append(index)
            return super().__getitem__(index)

    _, ours = twin_models(keras_or_skip())
    python_random.seed(4)
    ours.fit(Recording(), epochs=3, verbose=0)
    python_random.seed(4)
    expected = []
    for _ in range(3):
        order = list(range(4))
        python_random.shuffle(order)
        expected += order
    assert seen == expected and seen[:4] != seen[4:8]


def test_class_weight_with_a_py_dataset_matches_keras() -> None:
    keras = keras_or_skip()
    theirs, ours = twin_models(keras, units=3, loss="sparse_categorical_crossentropy")
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    theirs.fit(dataset_class(keras, form="labels")(), epochs=2, shuffle=False, verbose=0, class_weight=weights)
    ours.fit(dataset_class(weightwise, form="labels")(), epochs=2, shuffle=False, verbose=0, class_weight=weights)
    assert_same_weights(theirs, ours)


@pytest.mark.parametrize("settings", [{"workers": 3}, {"workers": 2, "max_queue_size": 1},
                                      {"workers": 2, "use_multiprocessing": True}])
def test_workers_fetch_the_same_batches_in_the_same_order(settings) -> None:
    keras = keras_or_skip()
    theirs, ours = twin_models(keras)
    theirs.fit(dataset_class(keras)(), epochs=2, shuffle=False, verbose=0)
    data = dataset_class(weightwise)(**settings)
    ours.fit(data, epochs=2, shuffle=False, verbose=0)
    assert_same_weights(theirs, ours)
    if not settings.get("use_multiprocessing"):
        assert data.begins == data.ends == 2


def test_predict_and_validation_data_take_a_py_dataset() -> None:
    keras = keras_or_skip()
    theirs, ours = twin_models(keras)
    np.testing.assert_allclose(ours.predict(dataset_class(weightwise, form="x")(), verbose=0),
                               theirs.predict(dataset_class(keras, form="x")(), verbose=0), rtol=1e-5, atol=1e-6)
    history = ours.fit(X, Y, epochs=1, verbose=0, validation_data=dataset_class(weightwise)())
    assert "val_loss" in history.history


def test_an_endless_py_dataset_runs_for_steps_per_epoch() -> None:
    keras = keras_or_skip()
    theirs, ours = twin_models(keras)
    theirs.fit(dataset_class(keras, endless=True)(), epochs=2, steps_per_epoch=3, shuffle=False, verbose=0)
    data = dataset_class(weightwise, endless=True)()
    ours.fit(data, epochs=2, steps_per_epoch=3, shuffle=False, verbose=0)
    assert_same_weights(theirs, ours)
    assert data.ends == 2


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"batch_size": 8}, "batch_size=8"),
    ({"y": Y}, "`y`"),
    ({"sample_weight": WEIGHTS}, "`sample_weight`"),
    ({"validation_split": 0.2}, "validation_split=0.2"),
    ({"class_weight": {-1: 1.0}}, "class_weight"),
])
def test_fit_refuses_what_a_py_dataset_decides_itself(kwargs, text) -> None:
    _, ours = twin_models(keras_or_skip())
    before = [w.copy() for w in ours.get_weights()]
    with pytest.raises(ValueError, match=re.escape(text)):
        ours.fit(dataset_class(weightwise)(), epochs=1, verbose=0, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(before, ours.get_weights()))


def test_class_weight_with_batches_that_carry_sample_weights_is_refused() -> None:
    _, ours = twin_models(keras_or_skip())
    with pytest.raises(ValueError, match="class_weight"):
        ours.fit(dataset_class(weightwise, form="xyw")(), epochs=1, verbose=0, class_weight={0: 1.0})


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_in_getitem_reaches_fit_and_the_epoch_still_ends(workers) -> None:
    class Failing(dataset_class(weightwise)):
        def __getitem__(self, index):
            if index == 2:
                raise KeyError("batch 2 is missing")
            return super().__getitem__(index)

    _, ours = twin_models(keras_or_skip())
    data = Failing(workers=workers)
    with pytest.raises(KeyError, match="batch 2 is missing"):
        ours.fit(data, epochs=1, shuffle=False, verbose=0)
    assert data.begins == data.ends == 1


@pytest.mark.parametrize("batch", ["text", (X[:2], Y[:2], WEIGHTS[:2], WEIGHTS[:2])])
def test_a_batch_of_another_form_is_a_clear_error(batch) -> None:
    class Odd(utils.PyDataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index):
            return batch

    _, ours = twin_models(keras_or_skip())
    with pytest.raises(ValueError, match="`x`, `\\(x,\\)`, `\\(x, y\\)`"):
        ours.fit(Odd(), epochs=1, verbose=0)


def test_py_dataset_settings_and_alias() -> None:
    assert utils.Sequence is utils.PyDataset
    data = dataset_class(weightwise)(workers=4, use_multiprocessing=True, max_queue_size=3)
    assert (data.workers, data.use_multiprocessing, data.max_queue_size) == (4, True, 3)
    assert data.num_batches == 4 and len(list(data)) == 4
    for kwargs, text in (({"workers": -1}, "workers=-1"), ({"use_multiprocessing": 1}, "use_multiprocessing=1"),
                         ({"max_queue_size": 0}, "max_queue_size=0")):
        with pytest.raises(ValueError, match=re.escape(text)):
            utils.PyDataset(**kwargs)


def test_a_subclass_that_skips_super_init_gets_defaults_and_a_warning() -> None:
    class NoSuper(utils.PyDataset):
        def __init__(self) -> None:
            pass

        def __len__(self) -> int:
            return 1

    with pytest.warns(UserWarning, match="super"):
        assert NoSuper().workers == 1
    with pytest.raises(NotImplementedError, match="__getitem__"):
        NoSuper()[0]


# ---------------------------------------------------------------------------------------------
# split_dataset

SIZES = [(0.8, None), (None, 0.25), (3, None), (None, 7), (0.5, 0.5), (4, 6), (0.3, 0.7), (0.33, None),
         (0.125, None)]


@pytest.mark.parametrize(("left", "right"), SIZES)
def test_split_sizes_match_keras(left, right) -> None:
    keras = keras_or_skip()
    ours = utils.split_dataset(np.arange(10), left_size=left, right_size=right)
    theirs = keras.utils.split_dataset(np.arange(10), left_size=left, right_size=right)
    assert (len(ours[0]), len(ours[1])) == (len(theirs[0]), len(theirs[1]))


def test_a_seeded_shuffle_takes_the_samples_keras_takes() -> None:
    keras = keras_or_skip()
    x = np.arange(50)
    ours = utils.split_dataset(x, left_size=0.7, shuffle=True, seed=9)
    theirs = keras.utils.split_dataset(x, left_size=0.7, shuffle=True, seed=9)
    assert [int(v) for v in ours[0]] == [int(v[0]) for v in theirs[0]]
    assert [int(v) for v in ours[1]] == [int(v[0]) for v in theirs[1]]


def test_without_shuffle_the_order_is_kept_and_the_sides_are_the_two_ends() -> None:
    left, right = utils.split_dataset(np.arange(10), left_size=3, right_size=4)
    assert [int(v) for v in left] == [0, 1, 2] and [int(v) for v in right] == [6, 7, 8, 9]


def test_split_keeps_the_structure_of_each_sample_and_fit_takes_the_splits() -> None:
    left, right = utils.split_dataset((X, Y), left_size=18)
    x0, _ = left[0]
    assert isinstance(left, torch.utils.data.Subset)
    np.testing.assert_array_equal(x0.numpy(), X[0])
    np.testing.assert_array_equal(right[0][1].numpy(), Y[18])
    named = utils.split_dataset({"a": X, "b": LABELS}, right_size=0.25)[1][0]
    assert set(named) == {"a", "b"} and int(named["b"]) == LABELS[18]
    tensors = utils.split_dataset(torch.utils.data.TensorDataset(torch.from_numpy(X)), left_size=0.5)
    assert torch.equal(tensors[1][0][0], torch.from_numpy(X[12]))
    model = weightwise.Sequential([weightwise.layers.Input((3,)), weightwise.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(left, epochs=1, batch_size=6, verbose=0, validation_data=right)
    assert set(history.history) == {"loss", "val_loss"}


@pytest.mark.parametrize(("args", "kwargs", "error", "text"), [
    ((np.arange(10),), {}, ValueError, "left_size=None, right_size=None"),
    ((np.arange(10),), {"left_size": 10}, ValueError, "left_size=10"),
    ((np.arange(10),), {"left_size": 0}, ValueError, "left_size=0"),
    ((np.arange(10),), {"left_size": 1.0}, ValueError, "left_size=1.0"),
    ((np.arange(10),), {"left_size": "3"}, TypeError, "left_size='3'"),
    ((np.arange(10),), {"left_size": 0.6, "right_size": 0.6}, ValueError, "right_size=0.6"),
    ((np.arange(10),), {"left_size": 6, "right_size": 6}, ValueError, "right_size=6"),
    ((np.arange(10),), {"left_size": 0.01}, ValueError, "splits of 0 and 10"),
    (((np.arange(10), np.arange(9)),), {"left_size": 2}, ValueError, "[9, 10]"),
    (("abc",), {"left_size": 1}, TypeError, "dataset='abc'"),
    ((np.arange(10),), {"left_size": 2, "shuffle": 1}, ValueError, "shuffle=1"),
    ((np.arange(10),), {"left_size": 2, "seed": -1}, ValueError, "seed=-1"),
    ((np.arange(10),), {"left_size": 2, "preferred_backend": "tensorflow"}, ValueError, "preferred_backend="),
])
def test_split_dataset_names_bad_arguments(args, kwargs, error, text) -> None:
    with pytest.raises(error, match=re.escape(text)):
        utils.split_dataset(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# pack / unpack, re-exports, plot_model


@pytest.mark.parametrize("data", [("x",), ("x", "y"), ("x", "y", "w"), ["x", "y"], "x", {"a": 1}])
def test_unpack_matches_keras(data) -> None:
    keras = keras_or_skip()
    assert utils.unpack_x_y_sample_weight(data) == keras.utils.unpack_x_y_sample_weight(data)


@pytest.mark.parametrize("parts", [("x",), (["x", "y"],), ("x", "y"), ("x", "y", "w"), ("x", None, "w")])
def test_pack_matches_keras(parts) -> None:
    keras = keras_or_skip()
    assert utils.pack_x_y_sample_weight(*parts) == keras.utils.pack_x_y_sample_weight(*parts)


def test_unpack_refuses_four_parts() -> None:
    with pytest.raises(ValueError, match="length 4"):
        utils.unpack_x_y_sample_weight((1, 2, 3, 4))


def test_registry_names_are_the_serialization_ones_and_keras_has_them_all() -> None:
    keras = keras_or_skip()
    for name in ("custom_object_scope", "get_custom_objects", "register_keras_serializable",
                 "serialize_keras_object", "deserialize_keras_object", "get_registered_name",
                 "get_registered_object"):
        assert getattr(utils, name) is getattr(serialization, name)
    assert utils.CustomObjectScope is utils.custom_object_scope
    assert set(utils.__all__) <= set(dir(keras.utils))


def test_plot_model_says_what_to_use_instead() -> None:
    model = weightwise.Sequential([weightwise.layers.Input((3,)), weightwise.layers.Dense(2)])
    with pytest.raises(ImportError, match="summary"):
        utils.plot_model(model, to_file="model.png", show_shapes=True)
    with pytest.raises(ImportError, match="model_to_dot"):
        utils.model_to_dot(model)


# ---------------------------------------------------------------------------------------------
# get_file: the cache only, never the network


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("get_file opened a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_a_cached_file_is_returned_where_keras_caches_it(tmp_path, monkeypatch, no_network) -> None:
    (tmp_path / "datasets").mkdir()
    cached = tmp_path / "datasets" / "mnist.npz"
    cached.write_bytes(b"data")
    url = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
    assert utils.get_file(origin=url, cache_dir=str(tmp_path)) == str(cached)
    assert utils.get_file("mnist.npz", url, cache_dir=tmp_path) == str(cached)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert utils.get_file(origin=url) == str(cached)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x")
    assert utils.get_file("a.txt", "https://h/a.txt", cache_subdir="other") == str(tmp_path / "other" / "a.txt")


def test_a_missing_file_is_an_offline_error_naming_the_url_and_the_path(tmp_path, no_network) -> None:
    url = "https://example.com/data/imdb.npz"
    with pytest.raises(FileNotFoundError) as raised:
        utils.get_file(origin=url, cache_dir=tmp_path)
    message = str(raised.value)
    assert url in message and str(tmp_path / "datasets" / "imdb.npz") in message and "does not download" in message
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "imdb.npz").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="force_download"):
        utils.get_file(origin=url, cache_dir=tmp_path, force_download=True)


def test_the_hash_of_a_cached_file_is_checked(tmp_path, no_network) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "f.bin").write_bytes(b"payload")
    url = "https://example.com/f.bin"
    sha, md5 = hashlib.sha256(b"payload").hexdigest(), hashlib.md5(b"payload").hexdigest()
    for kwargs in ({"file_hash": sha}, {"file_hash": md5}, {"md5_hash": md5}, {"file_hash": sha, "hash_algorithm": "sha256"}):
        assert utils.get_file(origin=url, cache_dir=tmp_path, **kwargs).endswith("f.bin")
    with pytest.raises(ValueError, match=re.escape(url)):
        utils.get_file(origin=url, cache_dir=tmp_path, file_hash="0" * 64)
    with pytest.raises(ValueError, match="hash_algorithm='sha1'"):
        utils.get_file(origin=url, cache_dir=tmp_path, file_hash=md5, hash_algorithm="sha1")


def test_a_cached_archive_is_extracted_where_keras_extracts_it(tmp_path, no_network) -> None:
    keras = keras_or_skip()
    (tmp_path / "datasets").mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("inner/hello.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "datasets" / "pack.tar.gz").write_bytes(buffer.getvalue())
    url = "https://example.com/pack.tar.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.utils.get_file("pack.tar.gz", url, extract=True, cache_dir=str(tmp_path))
    ours = utils.get_file("pack.tar.gz", url, extract=True, cache_dir=str(tmp_path))
    assert ours == theirs and (tmp_path / "datasets" / "pack_extracted" / "inner" / "hello.txt").read_text() == "hi"


@pytest.mark.parametrize(("kwargs", "text"), [({}, "origin=None"), ({"origin": "https://h/x", "fname": "a/b"}, "fname='a/b'"),
                                              ({"origin": "https://h/"}, "fname=None")])
def test_get_file_names_bad_arguments(tmp_path, kwargs, text) -> None:
    with pytest.raises(ValueError, match=re.escape(text)):
        utils.get_file(cache_dir=tmp_path, **kwargs)
