"""Adversarial cases for every file reader and writer: hostile, damaged and foreign files, and bad paths.

Readers: ``load_model``, ``load_weights`` (``.weights.h5`` and ``.keras``), ``weights_h5.read_weights``
and the torch-format ``load_torch_weights``. Writers: ``save_model``, ``save_weights``, ``Model.save``,
``Model.save_weights`` and ``save_torch_weights``. Each case ends in a correct result or a clear error
with the model, its optimizer and the files as they were.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random
import shutil
import stat
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from harness import CLEAR_ERRORS, assert_unchanged, clear_error, correct, snapshot

import weightwise
from weightwise import layers, saving
from weightwise.models import Sequential, load_model
from weightwise.saving import files, weights_h5
from weightwise.saving.torch_weights import load_torch_weights, save_torch_weights

KERNEL = "layers/dense/vars/0"  # the first Dense layer's kernel, shape (3, 2)
BIAS = "layers/dense/vars/1"


# -- models and files --------------------------------------------------------------------------------------------
def tiny(compiled: bool = False, optimizer: str = "adam", dtype: str | None = None) -> Sequential:
    """Two Dense layers; compiled, with one optimizer step taken so that there is optimizer state."""
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, dtype=dtype), layers.Dense(1, dtype=dtype)])
    if compiled:
        model.compile(optimizer=optimizer, loss="mse")
        model.optimizer.build(model.trainable_weights)
        for weight in model.trainable_weights:
            weight.grad = torch.full_like(weight, 0.5)
        model.optimizer.step()
        for weight in model.trainable_weights:
            weight.grad = None
    return model


def trained_file(tmp_path: Path, name: str = "m.weights.h5", compiled: bool = True) -> Path:
    torch.manual_seed(0)
    path = tmp_path / name
    tiny(compiled=compiled).save_weights(path)
    return path


def rewrite(path: Path, mutate) -> Path:
    with h5py.File(path, "a") as handle:
        mutate(handle)
    return path


def replace(handle: h5py.File, key: str, **kwargs) -> None:
    del handle[key]
    handle.create_dataset(key, **kwargs)


def as_keras(tmp_path: Path, weights: Path, name: str = "m.keras") -> Path:
    """A .keras archive holding ``weights`` and the config of ``tiny(compiled=True)``."""
    source = tmp_path / ("source-" + name)
    if not source.exists():
        tiny(compiled=True).save(source)
    with zipfile.ZipFile(source) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["model.weights.h5"] = weights.read_bytes()
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def weights_of(model: torch.nn.Module) -> list[torch.Tensor]:
    return [w.detach().clone() for w in model.weights]


def stored(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return np.asarray(handle[key][()])


def settle(call, check, *fragments: str, state=()):
    """A case whose outcome the input decides (a fuzzed file): a correct result, or a clear error with
    ``state`` unchanged."""
    state = list(state)
    before = snapshot(*state)
    try:
        result = call()
    except CLEAR_ERRORS:
        assert_unchanged(before, snapshot(*state))
        return clear_error(call, *fragments, state=state)
    return correct(lambda: result, check)


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def within(seconds: float, call) -> BaseException | None:
    """Run ``call`` in a daemon thread; fail if it has not returned within ``seconds`` (it would hang)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it blocks"
    return outcome[0]


# ============================================================================================================
# §1 Loading reads only what the file holds
# ============================================================================================================
SECRET = np.array([[11.0, 22.0], [33.0, 44.0], [55.0, 66.0]], dtype=np.float32)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET.tobytes() + b"private")
    return path


@pytest.fixture
def other_h5(tmp_path: Path) -> Path:
    """Another HDF5 file, holding data of the kernel's shape everywhere a link could point."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("data", data=SECRET)
        handle.create_dataset("layers/dense/vars/0", data=SECRET)
        handle.create_dataset("layers/dense/vars/1", data=SECRET[0])
    return path


def test_regression_external_storage_never_reaches_a_weight(tmp_path, secret) -> None:
    """A crafted .weights.h5 used to copy the bytes of a local file into a kernel."""
    path = rewrite(trained_file(tmp_path), lambda h: replace(
        h, KERNEL, shape=(3, 2), dtype="f4", external=[(str(secret), 0, SECRET.nbytes)]))
    model = tiny(compiled=True)
    error = clear_error(lambda: model.load_weights(path), str(path), KERNEL, "external storage",
                        state=[model, model.optimizer, path, secret])
    assert "Nothing was changed" in str(error)
    assert not any(torch.isin(w, torch.from_numpy(SECRET)).any() for w in model.weights)
    keras_path = as_keras(tmp_path, path)
    clear_error(lambda: load_model(keras_path), str(keras_path), KERNEL, "external storage", state=[keras_path])
    clear_error(lambda: tiny().load_weights(keras_path), KERNEL, "external storage", state=[keras_path])


HOSTILE_LINKS = {
    "external storage in the optimizer state": (
        lambda h, s, o: replace(h, "optimizer/vars/2", shape=(3, 2), dtype="f4", external=[(str(s), 0, 24)]),
        "optimizer/vars/2", "external storage"),
    "external storage in the torch state": (
        lambda h, s, o: replace(h, "optimizer/torch_state/0.exp_avg", shape=(3, 2), dtype="f4",
                                external=[(str(s), 0, 24)]),
        "optimizer/torch_state/0.exp_avg", "external storage"),
    "virtual dataset": (
        lambda h, s, o: (h.__delitem__(KERNEL), h.create_virtual_dataset(KERNEL, _virtual(o))),
        KERNEL, "virtual dataset"),
    "external link as a dataset": (
        lambda h, s, o: (h.__delitem__(KERNEL), h["layers/dense/vars"].__setitem__("0", h5py.ExternalLink(
            str(o), "/data"))),
        KERNEL, "external link"),
    "external link as a layer group": (
        lambda h, s, o: (h.__delitem__("layers/dense"), h["layers"].__setitem__("dense", h5py.ExternalLink(
            str(o), "/layers/dense"))),
        "layers/dense", "external link"),
    "external link as the optimizer group": (
        lambda h, s, o: (h.__delitem__("optimizer"), h.__setitem__("optimizer", h5py.ExternalLink(
            str(o), "/layers/dense"))),
        "optimizer", "external link"),
    "soft link to an external link": (
        lambda h, s, o: (h.__delitem__(KERNEL), h.__setitem__("outside", h5py.ExternalLink(str(o), "/data")),
                         h.__setitem__(KERNEL, h5py.SoftLink("/outside"))),
        KERNEL, "external link"),
    "dangling soft link": (
        lambda h, s, o: (h.__delitem__(KERNEL), h.__setitem__(KERNEL, h5py.SoftLink("/nowhere/at/all"))),
        KERNEL, "points to nothing"),
    "soft link loop": (
        lambda h, s, o: (h.__delitem__(KERNEL), h.__setitem__(KERNEL, h5py.SoftLink("/loop_a")),
                         h.__setitem__("loop_a", h5py.SoftLink("/loop_b")),
                         h.__setitem__("loop_b", h5py.SoftLink("/loop_a"))),
        KERNEL, "soft links (a loop)"),
    "plugin filter": (
        lambda h, s, o: replace(h, KERNEL, data=SECRET, compression=32123, allow_unknown_filter=True),
        KERNEL, "filters"),
}


def _virtual(other: Path) -> h5py.VirtualLayout:
    layout = h5py.VirtualLayout(shape=(3, 2), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(3, 2))
    return layout


@pytest.mark.parametrize("reader", ["load_weights", "load_model"])
@pytest.mark.parametrize("case", sorted(HOSTILE_LINKS))
def test_storage_outside_the_file_is_refused(tmp_path, secret, other_h5, case, reader) -> None:
    mutate, dataset, fragment = HOSTILE_LINKS[case]
    path = rewrite(trained_file(tmp_path), lambda h: mutate(h, secret, other_h5))
    if reader == "load_weights":
        model = tiny(compiled=True)
        clear_error(lambda: model.load_weights(path), str(path), dataset, fragment,
                    state=[model, model.optimizer, path, secret, other_h5])
    else:
        keras_path = as_keras(tmp_path, path)
        clear_error(lambda: load_model(keras_path), str(keras_path), dataset, fragment,
                    state=[keras_path, secret, other_h5])


def test_soft_links_inside_the_file_are_followed(tmp_path) -> None:
    """A soft link that stays in the file is an ordinary way to store a dataset: it loads."""
    def mutate(handle):
        handle.copy(handle["layers/dense"], "/stash/dense")
        del handle["layers/dense"]
        handle["layers/dense"] = h5py.SoftLink("/stash/dense")
        handle.move(BIAS.replace("dense", "dense_1"), "/stash/bias_1")
        handle["layers/dense_1/vars/1"] = h5py.SoftLink("/stash/bias_1")

    path = rewrite(trained_file(tmp_path), mutate)
    model = tiny()
    correct(lambda: model.load_weights(path), lambda _: np.array_equal(
        model.layers[0].kernel.detach().numpy(), stored(path, "stash/dense/vars/0")))


def test_regression_a_fifo_neither_hangs_nor_is_read(tmp_path) -> None:
    """load_model on a FIFO used to wait forever for a writer."""
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    fifo_h5 = tmp_path / "pipe.weights.h5"
    os.mkfifo(fifo_h5)
    model = tiny(compiled=True)
    calls = [
        (lambda: load_model(fifo), fifo), (lambda: model.load_weights(fifo), fifo),
        (lambda: model.load_weights(fifo_h5), fifo_h5), (lambda: saving.load_weights(model, fifo_h5), fifo_h5),
        (lambda: weights_h5.read_weights(model, str(fifo_h5), "pipe"), fifo_h5),
        (lambda: load_torch_weights(model, fifo), fifo),
    ]
    for call, path in calls:
        def case(call=call, path=path):
            clear_error(call, str(path), "FIFO", state=[model, model.optimizer, path])
        assert within(10, case) is None


@pytest.mark.parametrize("reader", ["load_model", "saving.load_weights", "read_weights", "torch"])
def test_regression_a_device_is_not_read(reader) -> None:
    """/dev/zero used to be read without bound."""
    model = tiny()
    call = {
        "load_model": lambda: load_model("/dev/zero"),
        "saving.load_weights": lambda: saving.load_weights(model, "/dev/zero"),
        "read_weights": lambda: weights_h5.read_weights(model, "/dev/zero", "zero"),
        "torch": lambda: load_torch_weights(model, "/dev/zero"),
    }[reader]
    argument = "source" if reader == "read_weights" else "filepath"
    assert within(10, lambda: clear_error(call, argument, "/dev/zero", "character device", state=[model])) is None


@pytest.mark.parametrize("where", [KERNEL, "optimizer/vars/2", "optimizer/torch_state/0.exp_avg"])
def test_regression_a_huge_declared_shape_is_refused_before_allocation(tmp_path, where) -> None:
    """A (10**6, 10**6) declaration is metadata only: the file stays tiny, and nothing is allocated."""
    path = rewrite(trained_file(tmp_path), lambda h: replace(
        h, where, shape=(10**6, 10**6), dtype="f4", chunks=(1, 1024), fillvalue=1.0))
    assert path.stat().st_size < 100_000
    model = tiny(compiled=True)
    started = time.perf_counter()
    clear_error(lambda: model.load_weights(path), str(path), where, "(1000000, 1000000)",
                state=[model, model.optimizer, path])
    assert time.perf_counter() - started < 5


def test_regression_deep_json_config_is_a_clear_value_error(tmp_path) -> None:
    """A config.json of 100000 nested lists used to end in a RecursionError."""
    keras_path = as_keras(tmp_path, trained_file(tmp_path))
    for deep in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000):
        _set_member(keras_path, "config.json", deep.encode())
        clear_error(lambda: load_model(keras_path), str(keras_path), "config.json", "nested more than 500",
                    state=[keras_path])


@pytest.mark.parametrize("depth", [0, 1, 10, 499])
def test_json_inside_the_depth_limit_parses(depth) -> None:
    text = "[" * depth + "]" * depth if depth else "{}"
    correct(lambda: files.parse_json(text, "config"), lambda result: result == json.loads(text))


def test_json_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"name": "[" * 2000 + '\\"{'})
    correct(lambda: files.parse_json(text, "config"), lambda result: result == json.loads(text))


def _set_member(path: Path, member: str, data: bytes | None) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    if data is None:
        members.pop(member, None)
    else:
        members[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


NOT_MODELS = {
    "a Dense layer": lambda: weightwise.serialization.serialize_keras_object(layers.Dense(2)),
    "a built Dense layer": lambda: weightwise.serialization.serialize_keras_object(_built_dense()),
    "a regularizer": lambda: weightwise.serialization.serialize_keras_object(weightwise.regularizers.L2(0.1)),
    "a constraint": lambda: weightwise.serialization.serialize_keras_object(weightwise.constraints.NonNeg()),
    "an optimizer": lambda: weightwise.serialization.serialize_keras_object(weightwise.optimizers.Adam()),
    "a tf.keras 2 layer": lambda: {"class_name": "Dense", "config": {"units": 2}},
}


def _built_dense() -> layers.Dense:
    layer = layers.Dense(2)
    layer.build((None, 3))
    return layer


@pytest.mark.parametrize("case", sorted(NOT_MODELS))
def test_regression_a_file_describing_a_layer_is_not_a_model(tmp_path, case) -> None:
    """load_model used to return a Dense layer from a .keras file whose config.json described one."""
    keras_path = as_keras(tmp_path, trained_file(tmp_path))
    config = NOT_MODELS[case]()
    _set_member(keras_path, "config.json", json.dumps(config).encode())
    clear_error(lambda: load_model(keras_path), str(keras_path), repr(config["class_name"]), "not a model",
                state=[keras_path])


@pytest.mark.parametrize("config", [[], [1, 2], "Sequential", 3, None, True])
def test_a_config_that_is_not_an_object_is_refused(tmp_path, config) -> None:
    keras_path = as_keras(tmp_path, trained_file(tmp_path))
    _set_member(keras_path, "config.json", json.dumps(config).encode())
    clear_error(lambda: load_model(keras_path), str(keras_path), "config.json", type(config).__name__,
                state=[keras_path])


# ============================================================================================================
# §2 load_weights: every dataset validated first, weights and optimizer state applied together
# ============================================================================================================
BAD_DTYPES = {
    "bytes": {"data": np.array([[b"ab", b"cd"]] * 3)},
    "vlen str": {"data": np.array([["a", "b"]] * 3, dtype=object), "dtype": h5py.string_dtype()},
    "compound": {"shape": (3, 2), "dtype": np.dtype([("a", "f4"), ("b", "i4")])},
    "subarray": {"shape": (3, 2), "dtype": np.dtype(("f4", (2,)))},
    "opaque": {"shape": (3, 2), "dtype": np.dtype("V4")},
    "reference": {"shape": (3, 2), "dtype": h5py.ref_dtype},
    "empty dataspace": {"data": h5py.Empty("f4")},
}


def _bad_dtype_at(where: str, spec: dict) -> dict:
    shapes = {KERNEL: (3, 2), "optimizer/vars/2": (3, 2), "optimizer/vars/0": (), "optimizer/torch_state/0.step": ()}
    shape = shapes[where]
    spec = dict(spec)
    if "data" in spec and not isinstance(spec["data"], h5py.Empty):
        spec["data"] = np.resize(spec["data"], shape)
        if spec.get("dtype") is not None:
            spec["data"] = spec["data"].astype(object)
    elif "shape" in spec:
        spec["shape"] = shape
    return spec


@pytest.mark.parametrize("where", [KERNEL, "optimizer/vars/0", "optimizer/vars/2", "optimizer/torch_state/0.step"])
@pytest.mark.parametrize("case", sorted(BAD_DTYPES))
def test_regression_a_non_numeric_dtype_anywhere_changes_nothing(tmp_path, case, where) -> None:
    """A bytes or compound dtype used to fail after the optimizer state had been restored."""
    spec = _bad_dtype_at(where, BAD_DTYPES[case])
    path = rewrite(trained_file(tmp_path), lambda h: replace(h, where, **spec))
    model = tiny(compiled=True, optimizer="sgd")  # a different state from the file's, so a change would show
    model.optimizer.iterations = 7
    clear_error(lambda: model.load_weights(path), str(path), where, state=[model, model.optimizer, path])
    assert model.optimizer.iterations == 7


def optimizer_state(optimizer):
    """What an optimizer holds, apart from the parameters it trains (which a load may change)."""
    torch_optimizer = optimizer.torch_optimizer
    return lambda: {
        "iterations": optimizer.iterations, "built": optimizer.built, "learning_rate": optimizer._learning_rate,
        "last_step_lr": optimizer._last_step_lr, "torch_optimizer": id(optimizer.torch_optimizer),
        "torch_state": None if torch_optimizer is None else torch_optimizer.state_dict(),
    }


def test_regression_an_optimizer_state_that_does_not_fit_changes_no_optimizer(tmp_path) -> None:
    """An SGD state file into an Adam optimizer: the weights load (as Keras), the optimizer stays as it was."""
    torch.manual_seed(0)
    source = tiny(compiled=True, optimizer="sgd")
    path = tmp_path / "sgd.weights.h5"
    source.save_weights(path)
    model = tiny(compiled=True, optimizer="adam")
    before = snapshot(optimizer_state(model.optimizer))
    with pytest.warns(UserWarning, match="optimizer state .* was not restored"):
        model.load_weights(path)
    assert_unchanged(before, snapshot(optimizer_state(model.optimizer)))
    for ours, theirs in zip(model.weights, source.weights):
        assert torch.equal(ours, theirs)


def test_an_unbuilt_optimizer_stays_unbuilt_when_the_state_does_not_fit(tmp_path) -> None:
    source = tiny(compiled=True, optimizer="sgd")
    path = tmp_path / "sgd.weights.h5"
    source.save_weights(path)
    model = tiny()
    model.compile(optimizer="adam", loss="mse")
    assert not model.optimizer.built
    before = snapshot(model.optimizer)
    with pytest.warns(UserWarning, match="was not restored"):
        model.load_weights(path)
    assert not model.optimizer.built and model.optimizer.torch_optimizer is None
    assert_unchanged(before, snapshot(model.optimizer))


def test_a_failure_while_applying_the_optimizer_state_changes_nothing(tmp_path, monkeypatch) -> None:
    path = trained_file(tmp_path)
    model = tiny(compiled=True)
    model.optimizer.iterations = 5

    def broken(self, state_dict):
        raise ValueError("Invalid value for argument `state_dict`: injected failure (state_dict=...)")

    monkeypatch.setattr(torch.optim.Optimizer, "load_state_dict", broken)
    clear_error(lambda: model.load_weights(path), "state_dict", "injected", state=[model, model.optimizer, path])
    assert model.optimizer.iterations == 5


def test_the_optimizer_state_is_undone_if_the_weights_then_cannot_be_written(tmp_path, monkeypatch) -> None:
    """The weights are written last, from tensors already converted; should that fail, the optimizer is undone."""
    path = trained_file(tmp_path)
    model = tiny(compiled=True, optimizer="adam")
    model.optimizer.iterations = 5

    def fail(self, *args, **kwargs):
        raise ValueError("Invalid value for argument `tensor`: injected failure (tensor=...)")

    monkeypatch.setattr(torch.Tensor, "copy_", fail)
    clear_error(lambda: model.load_weights(path), "tensor", "injected", state=[model, model.optimizer, path])
    assert model.optimizer.iterations == 5


def test_the_optimizer_state_and_weights_load_together(tmp_path) -> None:
    torch.manual_seed(0)
    source = tiny(compiled=True)
    path = tmp_path / "m.weights.h5"
    source.save_weights(path)
    model = tiny(compiled=True)
    model.optimizer.iterations = 9

    def check(_):
        assert model.optimizer.iterations == source.optimizer.iterations == 1
        assert all(torch.equal(a, b) for a, b in zip(model.weights, source.weights))
        ours, theirs = model.optimizer.torch_optimizer.state_dict(), source.optimizer.torch_optimizer.state_dict()
        for index, entries in theirs["state"].items():
            for key, value in entries.items():
                assert torch.equal(ours["state"][index][key], value), (index, key)

    with no_warnings():
        correct(lambda: model.load_weights(path), check)


# -- dtype rule: a stored dtype casts into a weight's when it keeps its kind and every value stays in range --------
SOURCE_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "complex64", "complex128"]
TARGETS = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
    "complex64": torch.complex64, "int64": torch.int64, "int8": torch.int8, "bool": torch.bool,
}
ACCEPTS = {"b": "b", "i": "biu", "u": "biu", "f": "biuf", "c": "biufc"}


def linear_of(dtype: torch.dtype) -> torch.nn.Module:
    """A plain torch module whose one weight has ``dtype`` (stored as ``vars/0``)."""
    module = torch.nn.Linear(3, 2, bias=False)
    module.weight = torch.nn.Parameter(torch.zeros(2, 3, dtype=dtype), requires_grad=dtype.is_floating_point)
    return module


def weight_file(path: Path, values: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("vars/0", data=values)
    return path


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("source", SOURCE_DTYPES)
def test_stored_dtypes_cast_only_within_their_kind(tmp_path, source, target) -> None:
    values = np.array([[0, 1, 1], [1, 0, 1]]).astype(source)
    module = linear_of(TARGETS[target])
    path = weight_file(tmp_path / "w.weights.h5", values)
    source_kind = np.dtype(source).kind
    target_kind = "b" if target == "bool" else "c" if "complex" in target else "f" if "float" in target else "i"
    if source_kind in ACCEPTS[target_kind]:
        correct(lambda: saving.load_weights(module, path), lambda _: torch.equal(
            module.weight.detach(), torch.from_numpy(values).to(TARGETS[target])))
    else:
        clear_error(lambda: saving.load_weights(module, path), "vars/0", source, str(TARGETS[target]),
                    state=[module, path])


@pytest.mark.parametrize(("source", "value", "target"), [
    ("float64", 1e300, torch.float32), ("float64", -1e39, torch.float32), ("float32", 1e5, torch.float16),
    ("float64", 1e39, torch.bfloat16), ("int64", 2**40, torch.int8), ("uint64", 2**63, torch.int64),
    ("int16", -1, torch.uint8), ("complex128", 1e300 + 1j, torch.complex64),
])
def test_values_beyond_the_weight_dtype_are_refused(tmp_path, source, value, target) -> None:
    values = np.zeros((2, 3), dtype=source)
    values[0, 0] = value
    module = linear_of(target)
    path = weight_file(tmp_path / "w.weights.h5", values)
    clear_error(lambda: saving.load_weights(module, path), "vars/0", str(target), state=[module, path])


@pytest.mark.parametrize("stored", [">f4", ">f8", ">i8", "<f2", ">u2"])
def test_big_endian_and_narrow_datasets_load(tmp_path, stored) -> None:
    """Files written on another machine may hold big-endian data; the values are what counts."""
    values = np.array([3.0, -1.0] if "u" not in stored else [3, 1], dtype=stored)
    path = rewrite(trained_file(tmp_path), lambda h: replace(h, BIAS, data=values))
    model = tiny()
    correct(lambda: model.load_weights(path), lambda _: model.layers[0].bias.tolist() == values.tolist())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3.4e38, 1e-45, -0.0])
def test_stored_special_floats_load_as_stored(tmp_path, value) -> None:
    """The file holds the value: NaN and infinities are stored weights like any other (as Keras loads them)."""
    path = rewrite(trained_file(tmp_path), lambda h: replace(h, BIAS, data=np.array([value, 1.0])))
    model = tiny()
    correct(lambda: model.load_weights(path), lambda _: np.array_equal(
        model.layers[0].bias.detach().numpy(), np.array([value, 1.0], dtype=np.float32), equal_nan=True))


# -- structure: numbered datasets under each layer's vars group ---------------------------------------------------
STRUCTURE = {
    "a non-numbered key": (lambda h: h["layers/dense/vars"].create_dataset("extra", data=1.0), "not numbered"),
    "a key numbered 01": (lambda h: h.move(BIAS, "layers/dense/vars/01"), "not numbered"),
    "a missing first key": (lambda h: h.__delitem__(KERNEL), "not numbered"),
    "a group where a dataset is due": (lambda h: (h.__delitem__(KERNEL), h.create_group(KERNEL)), "group"),
    "a dataset where the vars group is due": (
        lambda h: (h.__delitem__("layers/dense/vars"), h.create_dataset("layers/dense/vars", data=SECRET)),
        "not a group"),
    "a dataset where a layer group is due": (
        lambda h: (h.__delitem__("layers/dense"), h.create_dataset("layers/dense", data=SECRET)), "not a group"),
    "a missing layer": (lambda h: h.__delitem__("layers/dense_1"), "none in the file"),
    "no layers at all": (lambda h: h.__delitem__("layers"), "none in the file"),
    "an extra weight": (lambda h: h.create_dataset("layers/dense/vars/2", data=1.0), "expected shapes"),
    "a transposed kernel": (lambda h: replace(h, KERNEL, data=SECRET.T), "expected shapes"),
    "a scalar bias": (lambda h: replace(h, BIAS, data=1.0), "expected shapes"),
    "a non-numbered optimizer key": (lambda h: h["optimizer/vars"].create_dataset("x", data=1.0), "not numbered"),
    "an optimizer vars dataset": (
        lambda h: (h.__delitem__("optimizer/vars"), h.create_dataset("optimizer/vars", data=1.0)), "not a group"),
    "a group in the torch state": (lambda h: h.create_group("optimizer/torch_state/0.extra"), "group"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_a_file_of_the_wrong_structure_changes_nothing(tmp_path, case) -> None:
    mutate, fragment = STRUCTURE[case]
    path = rewrite(trained_file(tmp_path), mutate)
    model = tiny(compiled=True)
    clear_error(lambda: model.load_weights(path), str(path), fragment, state=[model, model.optimizer, path])


TORCH_STATE_MISFITS = {
    "an unknown parameter index": lambda h: h.move("optimizer/torch_state/0.exp_avg", "optimizer/torch_state/9.exp_avg"),
    "an unknown key": lambda h: h.move("optimizer/torch_state/0.exp_avg", "optimizer/torch_state/0.momentum"),
    "a name without index": lambda h: h.move("optimizer/torch_state/0.exp_avg", "optimizer/torch_state/exp_avg"),
    "a wrong shape": lambda h: replace(h, "optimizer/torch_state/0.exp_avg", data=np.zeros(6, np.float32)),
    "a complex value for a float state": lambda h: replace(h, "optimizer/torch_state/0.exp_avg",
                                                           data=np.zeros((3, 2), np.complex64)),
}


@pytest.mark.parametrize("case", sorted(TORCH_STATE_MISFITS))
def test_a_torch_state_that_does_not_fit_falls_back_to_keras_layout(tmp_path, case) -> None:
    """The torch state is a weightwise addition: if it does not fit, Keras's layout (also in the file) is used."""
    torch.manual_seed(0)
    source = tiny(compiled=True)
    path = tmp_path / "m.weights.h5"
    source.save_weights(path)
    rewrite(path, TORCH_STATE_MISFITS[case])
    model = tiny(compiled=True)
    with pytest.warns(UserWarning, match="Keras's layout is used instead"):
        model.load_weights(path)
    assert model.optimizer.iterations == 1
    assert all(torch.equal(a, b) for a, b in zip(model.weights, source.weights))


# ============================================================================================================
# Damaged and foreign files, for every reader
# ============================================================================================================
def _zip(members: dict[str, bytes]) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return stream.getvalue()


def _h5(build) -> bytes:
    stream = io.BytesIO()
    with h5py.File(stream, "w") as handle:
        build(handle)
    return stream.getvalue()


FOREIGN = {
    "zero-length": lambda good: b"",
    "text": lambda good: b"hello, this is not a model\n",
    "random bytes": lambda good: random.Random(0).randbytes(4096),
    "an empty zip": lambda good: _zip({}),
    "a zip of text": lambda good: _zip({"readme.txt": b"hello"}),
    "a zip with config only": lambda good: _zip({"config.json": zipfile.ZipFile(io.BytesIO(good)).read("config.json")}),
    "an h5 without groups": lambda good: _h5(lambda h: None),
    "an h5 of other groups": lambda good: _h5(lambda h: h.create_dataset("a/b", data=[1.0])),
    "a truncated archive (10%)": lambda good: good[: len(good) // 10],
    "a truncated archive (90%)": lambda good: good[: len(good) * 9 // 10],
    "a torch file": lambda good: _torch_bytes(),
    "a zip bomb header": lambda good: _bomb(),
}


def _torch_bytes() -> bytes:
    stream = io.BytesIO()
    torch.save({"w": torch.ones(2)}, stream)
    return stream.getvalue()


@functools.lru_cache(maxsize=1)
def _bomb() -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b"{" + b" " * (4 << 20) + b"}")
        archive.writestr("model.weights.h5", b"\0" * (4 << 20))
    data = bytearray(stream.getvalue())
    # Inflate the declared sizes in both headers: the members now claim 4 GiB each.
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(header, start)) >= 0:
            data[start + offset: start + offset + 4] = (4 << 30 - 1).to_bytes(4, "little")
            start += 4
    return bytes(data)


READERS = {
    "load_model": (".keras", lambda model, path: load_model(path)),
    "load_weights .keras": (".keras", lambda model, path: model.load_weights(path)),
    "load_weights .weights.h5": (".weights.h5", lambda model, path: model.load_weights(path)),
    "read_weights": (".weights.h5", lambda model, path: weights_h5.read_weights(model, str(path), str(path))),
    "read_weights bytes": (".weights.h5", lambda model, path: weights_h5.read_weights(
        model, path.read_bytes(), str(path))),
    "load_torch_weights": (".pt", lambda model, path: load_torch_weights(model, path)),
}


@pytest.fixture(scope="module")
def good_keras() -> bytes:
    directory = tempfile.mkdtemp()
    try:
        tiny(compiled=True).save(os.path.join(directory, "m.keras"))
        return Path(directory, "m.keras").read_bytes()
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_a_damaged_or_foreign_file_is_a_clear_error(tmp_path, good_keras, case, reader) -> None:
    suffix, read = READERS[reader]
    path = tmp_path / ("file" + suffix)
    path.write_bytes(FOREIGN[case](good_keras))
    model = tiny(compiled=True)
    clear_error(lambda: read(model, path), str(path), state=[model, model.optimizer, path])


PATH_READERS = sorted(set(READERS) - {"read_weights bytes"})


@pytest.mark.parametrize("reader", PATH_READERS)
def test_a_directory_is_not_a_file(tmp_path, reader) -> None:
    suffix, read = READERS[reader]
    path = tmp_path / ("folder" + suffix)
    path.mkdir()
    model = tiny()
    clear_error(lambda: read(model, path), str(path), "directory", state=[model, path],
                errors=(IsADirectoryError,))


@pytest.mark.parametrize("reader", PATH_READERS)
def test_a_missing_file_is_file_not_found(tmp_path, reader) -> None:
    suffix, read = READERS[reader]
    path = tmp_path / ("missing" + suffix)
    model = tiny()
    clear_error(lambda: read(model, path), str(path), state=[model, tmp_path], errors=(FileNotFoundError,))


BAD_SOURCES = [None, 5, 2.5, True, b"m.keras", bytearray(b"x"), "", ["m.keras"], {"path": "m.keras"}, object()]


@pytest.mark.parametrize("value", BAD_SOURCES, ids=repr)
@pytest.mark.parametrize("reader", ["load_model", "saving.load_weights", "load_torch_weights"])
def test_a_path_of_the_wrong_type_is_a_clear_error(value, reader) -> None:
    model = tiny()
    call = {"load_model": lambda: load_model(value), "saving.load_weights": lambda: saving.load_weights(model, value),
            "load_torch_weights": lambda: load_torch_weights(model, value)}[reader]
    clear_error(call, "filepath", repr(value)[:20], state=[model])


@pytest.mark.parametrize("value", [None, 5, 2.5, "", ["x"], object()], ids=repr)
def test_read_weights_source_of_the_wrong_type_is_a_clear_error(value) -> None:
    model = tiny()
    clear_error(lambda: weights_h5.read_weights(model, value, "label"), "source", state=[model])


@pytest.mark.parametrize("model", [None, 5, "model", torch.ones(2)], ids=repr)
@pytest.mark.parametrize("function", ["save_model", "save_weights", "load_weights", "read_weights",
                                      "save_torch_weights", "load_torch_weights"])
def test_a_model_that_is_not_a_module_is_a_clear_error(tmp_path, good_keras, model, function) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(good_keras)
    target = tmp_path / "new.weights.h5"
    call = {
        "save_model": lambda: saving.save_model(model, tmp_path / "new.keras"),
        "save_weights": lambda: saving.save_weights(model, target),
        "load_weights": lambda: saving.load_weights(model, path),
        "read_weights": lambda: weights_h5.read_weights(model, path.read_bytes(), "label"),
        "save_torch_weights": lambda: save_torch_weights(model, tmp_path / "new.pt"),
        "load_torch_weights": lambda: load_torch_weights(model, path),
    }[function]
    clear_error(call, "model", state=[path, target, tmp_path / "new.keras", tmp_path / "new.pt"])


# -- byte mutations: each ends in a correct load or a clear error, never anything else ---------------------------
def _mutated(data: bytes, seed: int) -> bytes:
    """``data`` with 1, 2 or 8 bytes set at random (seeded) positions."""
    rng = random.Random(seed)
    mutated = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 8])):
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    return bytes(mutated)


@pytest.fixture(scope="module")
def good_weights() -> bytes:
    torch.manual_seed(0)
    model = tiny(compiled=True)
    stream = io.BytesIO()
    weights_h5.write_weights(model, stream, optimizer=model.optimizer)
    return stream.getvalue()


def _matches_file(model: torch.nn.Module, data: bytes) -> bool:
    """The model's weights are what the (mutated) file holds, read independently with h5py."""
    with h5py.File(io.BytesIO(data), "r") as handle:
        for path, _, tensors in weights_h5.weight_entries(model):
            for index, tensor in enumerate(tensors):
                expected = torch.from_numpy(np.asarray(handle[f"{path}/vars/{index}"][()]).astype(np.float64))
                assert torch.equal(tensor.detach().to(torch.float64), expected.to(tensor.dtype).to(torch.float64))
    return True


@pytest.mark.parametrize("seed", range(32))
def test_mutated_weights_files_load_correctly_or_fail_clearly(tmp_path, good_weights, seed) -> None:
    data = _mutated(good_weights, seed)
    path = tmp_path / "m.weights.h5"
    path.write_bytes(data)
    model = tiny(compiled=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an optimizer state that no longer fits is a warning
        settle(lambda: model.load_weights(path), lambda _: _matches_file(model, data), str(path),
               state=[model, model.optimizer, path])


@pytest.mark.parametrize("seed", range(24))
def test_mutated_keras_files_load_correctly_or_fail_clearly(tmp_path, good_keras, seed) -> None:
    data = _mutated(good_keras, 100 + seed)
    path = tmp_path / "m.keras"
    path.write_bytes(data)

    def check(model):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _matches_file(model, archive.read("model.weights.h5"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settle(lambda: load_model(path), check, str(path), state=[path])


JUNK = [None, 5, -1, 10**30, 1e308, float("nan"), "x", [], {}, True, [None], {"a": 1}]


def _config_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _config_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _config_paths(value, (*prefix, index))


@pytest.mark.parametrize("seed", range(40))
def test_a_config_value_of_the_wrong_shape_loads_or_fails_clearly(tmp_path, good_keras, seed) -> None:
    """A value anywhere in config.json replaced by junk: a model (the training configuration may be dropped,
    with a warning), or a clear error naming the file; never an internal error from deep inside."""
    rng = random.Random(300 + seed)
    path = tmp_path / "m.keras"
    path.write_bytes(good_keras)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    where = rng.choice(list(_config_paths(config))[1:])
    node = config
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = rng.choice(JUNK)
    _set_member(path, "config.json", json.dumps(config).encode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settle(lambda: load_model(path), lambda model: isinstance(model, weightwise.Model), str(path), state=[path])


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.2, 0.5, 0.8, 0.99])
@pytest.mark.parametrize("kind", [".keras", ".weights.h5"])
def test_truncated_files_fail_clearly(tmp_path, good_keras, good_weights, fraction, kind) -> None:
    model = tiny(compiled=True)
    data = good_keras if kind == ".keras" else good_weights
    path = tmp_path / ("t" + kind)
    path.write_bytes(data[: int(len(data) * fraction)])
    read = load_model if kind == ".keras" else model.load_weights
    clear_error(lambda: read(path), str(path), state=[model, model.optimizer, path])


@pytest.mark.parametrize("seed", range(12))
def test_mutated_torch_files_load_correctly_or_fail_clearly(tmp_path, seed) -> None:
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    save_torch_weights(tiny(), path)
    path.write_bytes(_mutated(path.read_bytes(), 200 + seed))
    model = tiny()
    settle(lambda: load_torch_weights(model, path), lambda _: all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), torch.load(
            path, weights_only=True).values())), str(path), state=[model, path])


# ============================================================================================================
# Torch format
# ============================================================================================================
def test_torch_format_round_trips_and_checks_names_shapes_and_dtypes(tmp_path) -> None:
    torch.manual_seed(0)
    source = tiny()
    path = tmp_path / "m.pt"
    save_torch_weights(source, path)
    model = tiny()
    correct(lambda: load_torch_weights(model, path), lambda _: all(
        torch.equal(a, b) for a, b in zip(model.weights, source.weights)))
    for state, fragment in (
        ({"0.kernel": torch.ones(3, 2)}, "Missing"),
        ({**source.state_dict(), "extra": torch.ones(1)}, "extra"),
        ({**source.state_dict(), "0.kernel": torch.ones(2, 3)}, "expected shape (3, 2)"),
        ({**source.state_dict(), "0.kernel": torch.ones(3, 2, dtype=torch.complex64)}, "complex64"),
        ({**source.state_dict(), "0.kernel": torch.full((3, 2), 1e39, dtype=torch.float64)}, "overflow"),
        ({"0.kernel": "text"}, "state dict of tensors"),
        ([1, 2], "state dict of tensors"),
    ):
        torch.save(state, path)
        clear_error(lambda: load_torch_weights(model, path), str(path), fragment, state=[model, path])


def test_torch_legacy_format_is_refused(tmp_path) -> None:
    """torch's pre-zip format allocates each storage at its declared size before reading it."""
    path = tmp_path / "legacy.pt"
    torch.save(tiny().state_dict(), path, _use_new_zipfile_serialization=False)
    model = tiny()
    clear_error(lambda: load_torch_weights(model, path), str(path), "zip format", state=[model, path])


# ============================================================================================================
# §5 Files behave like files
# ============================================================================================================
WRITERS = {
    "Model.save": (".keras", lambda model, path, **kw: model.save(path, **kw)),
    "save_model": (".keras", lambda model, path, **kw: saving.save_model(model, path, **kw)),
    "save_weights": (".weights.h5", lambda model, path, **kw: saving.save_weights(model, path, **kw)),
    "Model.save_weights": (".weights.h5", lambda model, path, **kw: model.save_weights(path, **kw)),
    "Model.save_weights torch": (".pt", lambda model, path, **kw: model.save_weights(path, **kw)),
    "save_torch_weights": (".pt", lambda model, path, **kw: save_torch_weights(model, path, **kw)),
}


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_regression_a_new_file_gets_the_umask_mode(tmp_path, writer, mask) -> None:
    """New files used to be 0600, the temporary file's mode."""
    suffix, write = WRITERS[writer]
    path = tmp_path / ("new" + suffix)
    with umask(mask):
        correct(lambda: write(tiny(), path), lambda _: stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask)
    assert sorted(os.listdir(tmp_path)) == [path.name]


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640, 0o664, 0o604])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_overwritten_file_keeps_its_mode(tmp_path, writer, mode) -> None:
    suffix, write = WRITERS[writer]
    path = tmp_path / ("old" + suffix)
    path.write_bytes(b"old contents")
    path.chmod(mode)
    with umask(0o077):
        correct(lambda: write(tiny(), path), lambda _: stat.S_IMODE(path.stat().st_mode) == mode
                and path.read_bytes() != b"old contents")


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_regression_saving_to_a_symlink_writes_through_to_its_target(tmp_path, writer) -> None:
    """Saving used to replace the link with a regular file."""
    suffix, write = WRITERS[writer]
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / ("target" + suffix)
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / ("link" + suffix)
    link.symlink_to(Path("real") / target.name)
    correct(lambda: write(tiny(), link), lambda _: link.is_symlink() and os.readlink(link) == str(
        Path("real") / target.name) and target.read_bytes() != b"old" and stat.S_IMODE(target.stat().st_mode) == 0o640)
    assert sorted(os.listdir(tmp_path / "real")) == [target.name]
    dangling = tmp_path / ("dangling" + suffix)
    dangling.symlink_to(Path("real") / ("created" + suffix))
    correct(lambda: write(tiny(), dangling), lambda _: dangling.is_symlink()
            and (tmp_path / "real" / ("created" + suffix)).stat().st_size > 0)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_symlink_loop_is_a_clear_error(tmp_path, writer) -> None:
    suffix, write = WRITERS[writer]
    a, b = tmp_path / ("a" + suffix), tmp_path / ("b" + suffix)
    a.symlink_to(b.name)
    b.symlink_to(a.name)
    clear_error(lambda: write(tiny(), a), str(a), state=[a, b], errors=(OSError,))


@contextlib.contextmanager
def as_unprivileged():
    """Run as an ordinary user (nobody), so that permission bits apply even when the tests run as root."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.setegid(65534)
        os.seteuid(65534)
    except PermissionError:
        pytest.skip("running as root without the right to drop privileges: permission bits cannot be tested")
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user may work in (pytest's tmp_path is private to the user running the tests)."""
    directory = Path(tempfile.mkdtemp(prefix="weightwise-files-"))
    directory.chmod(0o777)
    yield directory
    for path in directory.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o777)
    shutil.rmtree(directory)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_regression_saving_over_a_read_only_file_is_a_permission_error(shared_dir, writer) -> None:
    """Saving used to replace a read-only file (the rename succeeds where a write would not)."""
    suffix, write = WRITERS[writer]
    path = shared_dir / ("readonly" + suffix)
    path.write_bytes(b"keep me")
    path.chmod(0o444)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    model = tiny()
    with as_unprivileged():
        clear_error(lambda: write(model, path), str(path), "read-only", state=[model, path],
                    errors=(PermissionError,))
    assert path.read_bytes() == b"keep me"


def test_root_overwrites_a_read_only_file_as_a_plain_write_does(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may write to a read-only file")
    path = tmp_path / "readonly.keras"
    path.write_bytes(b"old")
    path.chmod(0o444)
    correct(lambda: tiny().save(path), lambda _: path.read_bytes() != b"old"
            and stat.S_IMODE(path.stat().st_mode) == 0o444)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_regression_each_unusable_folder_has_its_own_error(shared_dir, writer) -> None:
    """A folder that cannot be searched used to be reported as missing."""
    suffix, write = WRITERS[writer]
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o777)
    (locked / "inner").mkdir(mode=0o777)
    readonly = shared_dir / "readonly"
    readonly.mkdir()
    locked.chmod(0o666)  # no search permission
    readonly.chmod(0o555)  # no write permission
    model = tiny()
    name = "m" + suffix
    cases = [
        (shared_dir / "missing" / name, FileNotFoundError, "does not exist"),
        (shared_dir / "missing" / "deeper" / name, FileNotFoundError, "does not exist"),
        (locked / "inner" / name, PermissionError, "cannot be searched"),
        (locked / name, PermissionError, "cannot be searched"),
        (readonly / name, PermissionError, "is not writable"),
    ]
    with as_unprivileged():
        for path, error, fragment in cases:
            clear_error(lambda path=path: write(model, path), str(path), fragment, repr(str(path.parent))[:20],
                        state=[model], errors=(error,))
    for path, _, _ in cases:
        assert not os.path.lexists(path)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_parent_that_is_a_file_is_not_a_directory(tmp_path, writer) -> None:
    suffix, write = WRITERS[writer]
    blocker = tmp_path / "file.txt"
    blocker.write_bytes(b"x")
    path = blocker / ("m" + suffix)
    model = tiny()
    clear_error(lambda: write(model, path), str(blocker), "not a folder", state=[model, blocker],
                errors=(NotADirectoryError,))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_existing_directory_or_fifo_is_not_replaced(tmp_path, writer) -> None:
    suffix, write = WRITERS[writer]
    folder = tmp_path / ("folder" + suffix)
    folder.mkdir()
    fifo = tmp_path / ("pipe" + suffix)
    os.mkfifo(fifo)
    model = tiny()
    clear_error(lambda: write(model, folder), str(folder), "directory", state=[model, folder],
                errors=(IsADirectoryError,))
    assert within(10, lambda: clear_error(lambda: write(model, fifo), str(fifo), "FIFO", state=[model, fifo])) is None


BAD_PATHS = [None, 5, 2.5, True, b"m.keras", "", ["m.keras"], "a\0b.keras"]


@pytest.mark.parametrize("value", BAD_PATHS, ids=repr)
@pytest.mark.parametrize("writer", ["save_model", "save_weights", "Model.save", "save_torch_weights"])
def test_a_bad_path_is_a_clear_error(tmp_path, writer, value) -> None:
    model = tiny()
    write = WRITERS[writer][1]
    clear_error(lambda: write(model, value), "filepath", repr(value)[:10], state=[model, tmp_path])


@pytest.mark.parametrize("value", ["yes", 1, 0, None, 1.0, "False"], ids=repr)
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_overwrite_must_be_a_bool(tmp_path, writer, value) -> None:
    suffix, write = WRITERS[writer]
    path = tmp_path / ("m" + suffix)
    path.write_bytes(b"old")
    model = tiny()
    clear_error(lambda: write(model, path, overwrite=value), "overwrite", repr(value), state=[model, path])


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_overwrite_false_keeps_an_existing_file_and_follows_a_dangling_link(tmp_path, writer) -> None:
    suffix, write = WRITERS[writer]
    path = tmp_path / ("m" + suffix)
    path.write_bytes(b"old")
    link = tmp_path / ("link" + suffix)
    link.symlink_to(path.name)
    model = tiny()
    for target in (path, link):
        clear_error(lambda target=target: write(model, target, overwrite=False), str(target), "overwrite=False",
                    state=[model, target, path], errors=(FileExistsError,))
    # As Keras (os.path.exists): a dangling link is no file yet, so the save creates its target.
    dangling = tmp_path / ("dangling" + suffix)
    dangling.symlink_to("created" + suffix)
    correct(lambda: write(model, dangling, overwrite=False), lambda _: dangling.is_symlink()
            and (tmp_path / ("created" + suffix)).is_file())


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_the_file_and_folder_as_they_were(tmp_path, writer, monkeypatch) -> None:
    suffix, write = WRITERS[writer]
    path = tmp_path / ("m" + suffix)
    path.write_bytes(b"old")
    path.chmod(0o640)
    model = tiny()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(ValueError("Invalid value for argument "
                                                                               "`fd`: disk full (fd=3)")))
    clear_error(lambda: write(model, path), "fd", "disk full", state=[model, path])


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".pt"])
def test_written_files_load_back(tmp_path, suffix) -> None:
    torch.manual_seed(0)
    model = tiny(compiled=True)
    path = tmp_path / ("m" + suffix)
    if suffix == ".keras":
        model.save(path)
        correct(lambda: load_model(path), lambda loaded: all(
            torch.equal(a, b) for a, b in zip(loaded.weights, model.weights)))
    else:
        model.save_weights(path)
        twin = tiny()
        correct(lambda: twin.load_weights(path), lambda _: all(
            torch.equal(a, b) for a, b in zip(twin.weights, model.weights)))


@pytest.mark.parametrize(("argument", "value"), [
    ("compile", "yes"), ("compile", 1), ("compile", None), ("safe_mode", "no"), ("safe_mode", 0),
    ("custom_objects", 5), ("custom_objects", ["Dense"]), ("custom_objects", "Dense"),
])
def test_load_model_arguments_are_checked(tmp_path, good_keras, argument, value) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(good_keras)
    clear_error(lambda: load_model(path, **{argument: value}), argument, repr(value), state=[path])


def test_streams_are_read_like_files(tmp_path, good_keras) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(good_keras)
    with path.open("rb") as stream:
        correct(lambda: load_model(stream), lambda model: isinstance(model, weightwise.Model))
    clear_error(lambda: load_model(io.BytesIO(b"not a zip")), "<stream>", "not a valid .keras file")
    weights = io.BytesIO()
    torch.manual_seed(0)
    source = tiny()
    weights_h5.write_weights(source, weights)
    weights.seek(0)
    model = tiny()
    correct(lambda: saving.load_weights(model, weights), lambda _: all(
        torch.equal(a, b) for a, b in zip(model.weights, source.weights)))
