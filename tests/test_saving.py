"""Model configs, JSON, cloning, and .keras / .weights.h5 files, within weightwise.

Exchange with Keras 3 itself is in test_saving_keras.py.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

import weightwise
from weightwise import (
    Model,
    Sequential,
    callbacks,
    constraints,
    layers,
    regularizers,
    saving,
)
from weightwise.models import clone_model, load_model, model_from_json

RNG = np.random.default_rng(7)
X_IMG = RNG.random((16, 8, 8, 3), dtype=np.float32)
Y_IMG = RNG.random((16, 3), dtype=np.float32)


def conv_stack() -> Sequential:
    return Sequential([
        layers.Input(shape=(8, 8, 3)),
        layers.Conv2D(4, 3, kernel_regularizer=regularizers.L2(0.02), bias_regularizer="l1",
                      kernel_constraint=constraints.MaxNorm(1.5, axis=[0, 1, 2]), bias_constraint="non_neg"),
        layers.MaxPooling2D(),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(5, activation="relu", activity_regularizer=regularizers.L1L2(l1=0.01, l2=0.001),
                     kernel_constraint=constraints.UnitNorm(axis=0)),
        layers.Dense(3, kernel_constraint=constraints.MinMaxNorm(0.2, 0.9, rate=0.5)),
    ])


def branchy() -> Model:
    """Two inputs, a shared layer called twice, a nested Sequential, two outputs."""
    a, b = layers.Input(shape=(6,), name="a"), layers.Input(shape=(6,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared", kernel_regularizer="l2")
    inner = Sequential([layers.Dense(4, name="inner_dense", kernel_constraint="non_neg")], name="inner")
    joined = layers.Concatenate(name="join")([shared(a), shared(b), inner(a)])
    first = layers.Dense(1, name="first", bias_constraint=constraints.MaxNorm(0.3))(joined)
    second = layers.Dense(2, name="second", activation="softmax")(layers.Add(name="sum")([shared(a), shared(b)]))
    return Model({"a": a, "b": b}, {"first": first, "second": second}, name="branchy")


def branchy_inputs() -> dict[str, torch.Tensor]:
    return {"a": torch.tensor(RNG.random((5, 6), dtype=np.float32)), "b": torch.tensor(RNG.random((5, 6), dtype=np.float32))}


def rules_of(model: Model) -> list[tuple[str, str, object]]:
    """Every layer's regularizer and constraint configs, by layer name."""
    out = []
    for layer in _all_layers(model):
        for attr in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                     "bias_constraint"):
            value = getattr(layer, attr, None)
            out.append((layer.name, attr, None if value is None else weightwise.serialization.serialize_keras_object(value)))
    return out


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, Model):
            yield from _all_layers(layer)


def outputs(model: Model, x) -> list[np.ndarray]:
    with torch.no_grad():
        result = model(x)
    leaves = [result[k] for k in sorted(result)] if isinstance(result, dict) else [result]
    return [leaf.numpy() for leaf in leaves]


# ------------------------------------------------------------------------------------------ configs
def test_layer_build_config_round_trips_and_builds_the_same_weights() -> None:
    layer = layers.Conv2D(3, 2, kernel_regularizer="l2")
    layer(torch.zeros(2, 5, 5, 4))
    assert layer.get_build_config() == {"input_shape": [2, 5, 5, 4]}
    rebuilt = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert rebuilt.built and [tuple(w.shape) for w in rebuilt.weights] == [tuple(w.shape) for w in layer.weights]
    with pytest.raises(ValueError, match="input_shape"):
        layers.Dense(2).build_from_config({"something": 1})


def test_symbolic_build_records_an_unknown_batch_size() -> None:
    model = conv_stack()
    assert model.layers[0].get_build_config() == {"input_shape": [None, 8, 8, 3]}
    assert model.get_config()["build_input_shape"] == [None, 8, 8, 3]


def test_sequential_config_and_json_keep_architecture_and_rules() -> None:
    model = conv_stack()
    rebuilt = model_from_json(model.to_json())
    assert type(rebuilt) is Sequential and rebuilt.built
    assert [type(layer) for layer in rebuilt.layers] == [type(layer) for layer in model.layers]
    assert rules_of(rebuilt) == rules_of(model)
    assert rebuilt.get_config() == model.get_config()
    rebuilt.set_weights(model.get_weights())
    x = torch.tensor(X_IMG[:4])
    np.testing.assert_array_equal(outputs(rebuilt, x)[0], outputs(model, x)[0])


def test_sequential_without_input_layer_rebuilds_from_its_build_shape() -> None:
    model = Sequential([layers.Dense(3, kernel_regularizer="l1"), layers.Dense(1)])
    model(torch.zeros(2, 4))
    rebuilt = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert rebuilt.built and rebuilt.count_params() == model.count_params()


def test_functional_config_replays_the_graph_with_shared_and_nested_layers() -> None:
    model = branchy()
    config = json.loads(json.dumps(model.get_config()))
    shared = next(entry for entry in config["layers"] if entry["name"] == "shared")
    assert len(shared["inbound_nodes"]) == 4  # one entry per call: shared(a) and shared(b), twice each
    assert config["input_layers"] == {"a": ["a", 0, 0], "b": ["b", 0, 0]}
    rebuilt = type(model).from_config(config)
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    assert rules_of(rebuilt) == rules_of(model)
    rebuilt.set_weights(model.get_weights())
    x = branchy_inputs()
    for a, b in zip(outputs(rebuilt, x), outputs(model, x)):
        np.testing.assert_array_equal(a, b)


def test_a_functional_model_used_as_a_layer_round_trips() -> None:
    x = layers.Input(shape=(3,), name="x")
    inner = Model(x, layers.Dense(2, name="d", kernel_regularizer="l1")(x), name="inner_fn")
    outer_in = layers.Input(shape=(3,), name="outer_in")
    outer = Model(outer_in, layers.Dense(1, name="head")(inner(outer_in)), name="outer")
    config = json.loads(outer.to_json())["config"]
    inner_entry = next(entry for entry in config["layers"] if entry["name"] == "inner_fn")
    # Keras numbers a functional layer's calls from 1: node 0 is its own.
    assert inner_entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == ["outer_in", 0, 0]
    head = next(entry for entry in config["layers"] if entry["name"] == "head")
    assert head["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == ["inner_fn", 1, 0]
    rebuilt = model_from_json(outer.to_json())
    rebuilt.set_weights(outer.get_weights())
    data = torch.randn(4, 3)
    np.testing.assert_array_equal(outputs(rebuilt, data)[0], outputs(outer, data)[0])
    assert rules_of(rebuilt) == rules_of(outer)


class Unconfigurable(Model):
    def __init__(self, units):
        super().__init__()
        self.dense = layers.Dense(units)

    def call(self, inputs):
        return self.dense(inputs)


@saving.register_keras_serializable(package="SavingTests")
class Configurable(Model):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = layers.Dense(units, activation="relu", kernel_regularizer="l2", name="hidden")
        self.out = layers.Dense(1, kernel_constraint="non_neg", name="out")

    def call(self, inputs):
        return self.out(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_a_subclassed_model_without_get_config_says_what_to_implement(tmp_path) -> None:
    model = Unconfigurable(3)
    model(torch.zeros(1, 2))
    for attempt in (model.get_config, model.to_json, lambda: clone_model(model),
                    lambda: model.save(tmp_path / "m.keras")):
        with pytest.raises(NotImplementedError, match=r"Unconfigurable.*get_config"):
            attempt()
    assert not (tmp_path / "m.keras").exists()


def test_a_subclassed_model_with_get_config_saves_and_loads(tmp_path) -> None:
    model = Configurable(4, name="custom")
    model(torch.zeros(1, 3))
    path = tmp_path / "custom.keras"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is Configurable and loaded.units == 4 and loaded.name == "custom"
    assert loaded.hidden.kernel_regularizer.get_config() == {"l2": 0.01}
    x = torch.randn(6, 3)
    np.testing.assert_array_equal(outputs(loaded, x)[0], outputs(model, x)[0])
    clone = clone_model(model)
    assert type(clone) is Configurable and clone.built
    assert not torch.equal(clone.hidden.kernel, model.hidden.kernel)


def test_model_from_json_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        model_from_json("{not json")
    with pytest.raises(TypeError, match="json_string"):
        model_from_json(42)
    with pytest.raises(ValueError, match="not a model"):
        model_from_json(json.dumps(layers.serialize(layers.Dense(2))))
    with pytest.raises(ValueError, match="Unknown layer: 'NoSuchLayer'.*register_keras_serializable"):
        model_from_json(json.dumps({"module": "keras", "class_name": "Sequential", "config": {
            "name": "s", "layers": [{"module": "my.pkg", "class_name": "NoSuchLayer", "config": {}}]}}))


# ------------------------------------------------------------------------------------------ cloning
def test_clone_model_has_fresh_weights_and_the_same_rules() -> None:
    for model in (conv_stack(), branchy()):
        clone = clone_model(model)
        assert type(clone) is type(model) and clone is not model
        assert rules_of(clone) == rules_of(model)
        assert all(not torch.equal(a, b) for a, b in zip(clone.weights, model.weights) if a.numel() > 1 and b.abs().sum() > 0)
        assert {id(w) for w in clone.weights}.isdisjoint({id(w) for w in model.weights})
        clone.set_weights(model.get_weights())
        x = torch.tensor(X_IMG[:3]) if isinstance(model, Sequential) else branchy_inputs()
        for a, b in zip(outputs(clone, x), outputs(model, x)):
            np.testing.assert_array_equal(a, b)


def test_clone_model_regularizers_are_counted_in_losses() -> None:
    model = conv_stack()
    clone = clone_model(model)
    clone.set_weights(model.get_weights())
    x = torch.tensor(X_IMG[:4])
    model(x)
    clone(x)
    assert len(clone.losses) == len(model.losses)
    np.testing.assert_allclose(sum(clone.losses).item(), sum(model.losses).item(), rtol=1e-6)


def test_clone_function_and_input_tensors() -> None:
    model = conv_stack()
    seen = []

    def keep_dense(layer):
        seen.append(layer.name)
        return layer if isinstance(layer, layers.Dense) else layer.__class__.from_config(layer.get_config())

    clone = clone_model(model, clone_function=keep_dense)
    assert seen == [layer.name for layer in model.layers]
    assert clone.layers[-1] is model.layers[-1]  # shared, as returned
    new_input = layers.Input(shape=(6,), name="fresh")
    fn = branchy()
    with pytest.raises(ValueError, match="2 inputs"):
        clone_model(fn, input_tensors=[new_input])
    with pytest.raises(TypeError, match="clone_function"):
        clone_model(model, clone_function=3)
    with pytest.raises(TypeError, match="`model`"):
        clone_model(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="must return a layer"):
        clone_model(model, clone_function=lambda layer: None)


def test_clone_of_a_plain_torch_module_in_a_stack_is_reset_and_keeps_its_rules() -> None:
    linear = torch.nn.Linear(4, 3)
    weightwise.regularize(linear, {"weight": "l2"})
    model = Sequential([layers.Input(shape=(4,)), linear, layers.Dense(1)])
    clone = clone_model(model)
    cloned_linear = clone.layers[0]
    assert cloned_linear is not linear and not torch.equal(cloned_linear.weight, linear.weight)
    assert len(clone.losses) == len(model.losses) == 1


# ------------------------------------------------------------------------------------------ files
def trained(model_fn=conv_stack, optimizer="adam", epochs=1) -> Sequential:
    torch.manual_seed(0)
    model = model_fn()
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    model.fit(X_IMG, Y_IMG, batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return model


def test_keras_file_round_trip_restores_everything(tmp_path) -> None:
    model = trained()
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        metadata = json.loads(archive.read("metadata.json"))
        assert metadata["keras_version"].startswith("3.") and metadata["weightwise_version"] == weightwise.__version__
    loaded = load_model(path)
    assert rules_of(loaded) == rules_of(model)
    np.testing.assert_array_equal(loaded.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0))
    assert loaded.compiled and type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2
    state, expected = {}, {}
    loaded.optimizer.save_own_variables(state)
    model.optimizer.save_own_variables(expected)
    assert state.keys() == expected.keys()
    for key in state:
        np.testing.assert_array_equal(state[key], expected[key])
    np.testing.assert_allclose(loaded.evaluate(X_IMG, Y_IMG, verbose=0), model.evaluate(X_IMG, Y_IMG, verbose=0))
    uncompiled = load_model(path, compile=False)
    assert not uncompiled.compiled


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_training_resumed_from_a_checkpoint_follows_the_same_trajectory(tmp_path, optimizer) -> None:
    torch.manual_seed(0)
    model = conv_stack()
    model.compile(optimizer=optimizers_with_state(optimizer), loss="mse", metrics=["mae"])
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.keras"))
    model.fit(X_IMG, Y_IMG, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[checkpoint])
    # The same dropout masks on both paths from here on; everything else is the saved state.
    torch.manual_seed(1)
    model.fit(X_IMG, Y_IMG, batch_size=8, epochs=2, verbose=0, shuffle=False)

    resumed = load_model(tmp_path / "ckpt-2.keras")
    torch.manual_seed(1)
    resumed.fit(X_IMG, Y_IMG, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Without the optimizer state the trajectory would differ: the check above can fail.
    restarted = load_model(tmp_path / "ckpt-2.keras", compile=False)
    restarted.compile(optimizer=optimizers_with_state(optimizer), loss="mse", metrics=["mae"])
    torch.manual_seed(1)
    restarted.fit(X_IMG, Y_IMG, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert any(not np.array_equal(a, b) for a, b in zip(restarted.get_weights(), model.get_weights()))


def optimizers_with_state(name: str):
    return {"adam": weightwise.optimizers.Adam(0.01), "sgd": weightwise.optimizers.SGD(0.05, momentum=0.9),
            "rmsprop": weightwise.optimizers.RMSprop(0.01, momentum=0.5)}[name]


def test_weights_h5_round_trip_and_all_or_nothing(tmp_path) -> None:
    model = trained()
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    twin = conv_stack()
    twin.load_weights(path)
    for a, b in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    from_archive = conv_stack()
    model.save(tmp_path / "model.keras")
    from_archive.load_weights(tmp_path / "model.keras")
    for a, b in zip(from_archive.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)

    other = Sequential([layers.Input(shape=(8, 8, 3)), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)])
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"no weight was changed.*layer 'dense.*expected shapes \[\(144, 2\), \(2,\)\]"):
        other.load_weights(path)
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_torch_state_dict_still_works() -> None:
    model = trained()
    twin = conv_stack()
    twin.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(twin.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0))


def test_plain_torch_modules_travel_in_weights_files(tmp_path) -> None:
    def make():
        torch.manual_seed(len(os.listdir(tmp_path)))
        return Sequential([layers.Input(shape=(4,)), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3).eval(), layers.Dense(1)])

    model = make()
    model.save_weights(tmp_path / "mixed.weights.h5")
    twin = make()
    twin.load_weights(tmp_path / "mixed.weights.h5")
    for key, value in model.state_dict().items():
        assert torch.equal(twin.state_dict()[key], value), key
    with pytest.raises(TypeError, match="Linear.*get_config"):
        model.save(tmp_path / "mixed.keras")
    assert not (tmp_path / "mixed.keras").exists()


# ------------------------------------------------------------------------------------------ custom objects
@saving.register_keras_serializable(package="SavingTests")
class ScaledL1(regularizers.Regularizer):
    def __init__(self, scale=0.1):
        self.scale = scale

    def __call__(self, x):
        return self.scale * weightwise.ops.sum(weightwise.ops.abs(x))

    def get_config(self):
        return {"scale": self.scale}


class Unregistered(regularizers.Regularizer):
    def __call__(self, x):
        return weightwise.ops.sum(x)

    def get_config(self):
        return {}


def test_registered_custom_objects_load_by_name_and_unregistered_fail_clearly(tmp_path) -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_regularizer=ScaledL1(0.3))])
    model.save(tmp_path / "custom.keras")
    loaded = load_model(tmp_path / "custom.keras")
    assert isinstance(loaded.layers[0].kernel_regularizer, ScaledL1) and loaded.layers[0].kernel_regularizer.scale == 0.3
    np.testing.assert_allclose(sum(loaded.losses).item(), sum(model.losses).item(), rtol=1e-6)

    other = Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_regularizer=Unregistered())])
    other.save(tmp_path / "unregistered.keras")
    with pytest.raises(ValueError, match=r"Unknown regularizer: 'Unregistered'.*register_keras_serializable.*custom_objects"):
        load_model(tmp_path / "unregistered.keras")
    loaded = load_model(tmp_path / "unregistered.keras", custom_objects={"Unregistered": Unregistered})
    assert isinstance(loaded.layers[0].kernel_regularizer, Unregistered)


# ------------------------------------------------------------------------------------------ safety
def _rewrite(path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_a_lambda_in_a_file_is_refused_in_safe_mode_and_damaged_code_in_any(tmp_path) -> None:
    path = tmp_path / "lambda.keras"
    Sequential([layers.Input(shape=(2,)), layers.Dense(1)]).save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    config["config"]["layers"][1]["config"]["activation"] = {
        "module": "builtins", "class_name": "__lambda__", "registered_name": None,
        "config": {"value": "YmFk", "closure": None, "defaults": None}}
    _rewrite(path, "config.json", json.dumps(config).encode())
    with pytest.raises(ValueError, match="lambda.*arbitrary code execution"):
        load_model(path)
    with pytest.raises(ValueError, match="lambda: its bytecode is damaged"):
        load_model(path, safe_mode=False)
    with pytest.raises(TypeError, match="safe_mode"):
        load_model(path, safe_mode="yes")


def test_damaged_and_foreign_files_raise_clear_errors(tmp_path) -> None:
    good = tmp_path / "good.keras"
    conv_stack().save(good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(os.urandom(2048))
    text = tmp_path / "text.keras"
    text.write_text("hello")
    for path in (truncated, garbage, text):
        with pytest.raises(ValueError, match="not a valid .keras file"):
            load_model(path)

    flipped = tmp_path / "flipped.keras"
    weights_at = data.find(b"\x89HDF")
    corrupt = bytearray(data)
    corrupt[weights_at + 4000: weights_at + 4200] = os.urandom(200)
    flipped.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="damaged|not a readable HDF5|do not fit"):
        load_model(flipped)

    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(no_weights, "w") as archive:
        archive.writestr("config.json", zipfile.ZipFile(good).read("config.json"))
    with pytest.raises(ValueError, match="no 'model.weights.h5'"):
        load_model(no_weights)

    bad_json = tmp_path / "bad_json.keras"
    bad_json.write_bytes(data)
    _rewrite(bad_json, "config.json", b"{oops")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_model(bad_json)

    bad_h5 = tmp_path / "bad_h5.keras"
    bad_h5.write_bytes(data)
    _rewrite(bad_h5, "model.weights.h5", b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load_model(bad_h5)

    weights_only = tmp_path / "m.weights.h5"
    conv_stack().save_weights(weights_only)
    with pytest.raises(ValueError, match="weights only.*load_weights"):
        load_model(weights_only)
    legacy = tmp_path / "legacy.h5"
    legacy.write_bytes(b"")
    with pytest.raises(ValueError, match="legacy"):
        load_model(legacy)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.keras")
    truncated_weights = tmp_path / "cut.weights.h5"
    truncated_weights.write_bytes(weights_only.read_bytes()[:300])
    with pytest.raises(ValueError, match="not a readable HDF5"):
        conv_stack().load_weights(truncated_weights)


def test_an_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.keras"
    conv_stack().save(path)
    original = path.read_bytes()
    real_writestr = zipfile.ZipFile.writestr

    def crash_on_weights(self, name, data, *args, **kwargs):
        if getattr(name, "filename", name) == "model.weights.h5":
            real_writestr(self, name, data[: len(data) // 3], *args, **kwargs)
            raise KeyboardInterrupt("power cut")
        return real_writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash_on_weights)
    with pytest.raises(KeyboardInterrupt):
        trained().save(path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # no temporary file left behind
    load_model(path)

    weights = tmp_path / "w.weights.h5"
    conv_stack().save_weights(weights)
    before = weights.read_bytes()
    with pytest.raises(FileExistsError):
        conv_stack().save_weights(weights, overwrite=False)
    with pytest.raises(FileExistsError):
        conv_stack().save(path, overwrite=False)
    assert weights.read_bytes() == before and path.read_bytes() == original


def test_save_arguments_are_checked(tmp_path) -> None:
    model = conv_stack()
    with pytest.raises(ValueError, match=r"\.keras.*filepath="):
        model.save(tmp_path / "model.pt")
    with pytest.raises(TypeError, match="filepath"):
        saving.save_model(model, 3)
    with pytest.raises(TypeError, match="overwrite"):
        model.save(tmp_path / "m.keras", overwrite="yes")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        saving.save_weights(model, tmp_path / "w.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "m.keras")
    assert os.listdir(tmp_path) == []


def test_a_file_with_keras_state_only_resumes_within_float32_rounding(tmp_path) -> None:
    """Files from Keras carry only Keras's optimizer variables; momentum converts with one rounding."""
    import h5py

    torch.manual_seed(0)
    model = conv_stack()
    model.compile(optimizer=weightwise.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    model.fit(X_IMG, Y_IMG, batch_size=8, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        weights = archive.read("model.weights.h5")
    stripped = tmp_path / "stripped.h5"
    stripped.write_bytes(weights)
    with h5py.File(stripped, "a") as handle:
        assert "optimizer/torch_state" in handle
        del handle["optimizer/torch_state"]
    _rewrite(path, "model.weights.h5", stripped.read_bytes())
    resumed = load_model(path)
    torch.manual_seed(1)
    model.fit(X_IMG, Y_IMG, batch_size=8, epochs=2, verbose=0, shuffle=False)
    torch.manual_seed(1)
    resumed.fit(X_IMG, Y_IMG, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_multi_input_multi_output_model_round_trips_compiled(tmp_path) -> None:
    model = branchy()
    model.compile(optimizer="adam", loss={"first": "mse", "second": "sparse_categorical_crossentropy"},
                  loss_weights={"first": 1.0, "second": 0.5}, metrics={"second": ["accuracy"]})
    x = {"a": RNG.random((16, 6), dtype=np.float32), "b": RNG.random((16, 6), dtype=np.float32)}
    y = {"first": RNG.random((16, 1), dtype=np.float32), "second": RNG.integers(0, 2, (16,))}
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "branchy.keras")
    loaded = load_model(tmp_path / "branchy.keras")
    assert loaded.get_compile_config() == model.get_compile_config()
    for a, b in zip(outputs(loaded, {k: torch.tensor(v) for k, v in x.items()}),
                    outputs(model, {k: torch.tensor(v) for k, v in x.items()})):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


@saving.register_keras_serializable(package="SavingTests")
def gentle_tanh(x):
    return 0.5 * torch.tanh(x)


@saving.register_keras_serializable(package="SavingTests")
class Scale(layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones",
                                    regularizer=ScaledL1(0.05), constraint="non_neg")

    def call(self, inputs):
        return self.factor * inputs * self.gain

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_registered_custom_layers_and_functions_load_by_name(tmp_path) -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(4, activation=gentle_tanh), Scale(3.0, name="scale")])
    with torch.no_grad():
        model.get_layer("scale").gain.copy_(torch.tensor([0.5, 1.5, 2.0, 0.25]))
    model.save(tmp_path / "custom.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "custom.keras").read("config.json"))
    assert config["config"]["layers"][2]["registered_name"] == "SavingTests>Scale"
    loaded = load_model(tmp_path / "custom.keras")
    scale = loaded.get_layer("scale")
    assert type(scale) is Scale and scale.factor == 3.0 and loaded.layers[0].activation is gentle_tanh
    assert isinstance(weightwise.binding.rule_of(scale, "gain").regularizer, ScaledL1)
    x = torch.randn(5, 3)
    np.testing.assert_array_equal(outputs(loaded, x)[0], outputs(model, x)[0])
    np.testing.assert_allclose(sum(loaded.losses).item(), sum(model.losses).item(), rtol=1e-6)
