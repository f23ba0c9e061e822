"""Files and configs moving between Keras 3 and weightwise, in both directions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip, to_numpy

RNG = np.random.default_rng(3)
X = RNG.random((16, 8, 8, 3), dtype=np.float32)
Y = RNG.random((16, 3), dtype=np.float32)
RULES = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint")


def sequential(lib):
    L, R, C = lib.layers, lib.regularizers, lib.constraints
    return lib.Sequential([
        lib.Input(shape=(8, 8, 3)),
        L.Conv2D(4, 3, name="conv", kernel_regularizer=R.L2(0.02), bias_regularizer=R.L1(0.01),
                 kernel_constraint=C.MaxNorm(1.5, axis=[0, 1, 2]), bias_constraint=C.NonNeg()),
        L.MaxPooling2D(name="pool"),
        L.Dropout(0.25, name="drop"),
        L.Flatten(name="flat"),
        L.Dense(5, activation="relu", name="hidden", activity_regularizer=R.L1L2(l1=0.01, l2=0.001),
                kernel_constraint=C.UnitNorm(axis=0)),
        L.Dense(3, name="out", kernel_constraint=C.MinMaxNorm(0.2, 0.9, rate=0.5)),
    ], name="seq")


def functional(lib):
    L, R, C = lib.layers, lib.regularizers, lib.constraints
    image = lib.Input(shape=(8, 8, 3), name="image")
    conv = L.Conv2D(4, 3, padding="same", name="conv", kernel_regularizer=R.L1L2(0.001, 0.01),
                    bias_constraint=C.NonNeg())(image)
    left = L.Flatten(name="flat")(L.AveragePooling2D(2, name="avg")(conv))
    right = L.Dense(6, name="side", bias_regularizer=R.L2(0.05),
                    kernel_constraint=C.MaxNorm(2.0))(L.GlobalMaxPooling2D(name="gmax")(conv))
    joined = L.Dropout(0.1, name="drop")(L.Concatenate(name="join")([left, right]))
    out = L.Dense(3, name="out", activity_regularizer=R.L2(0.01), kernel_constraint=C.UnitNorm(axis=0),
                  bias_constraint=C.MinMaxNorm(0.0, 0.5))(joined)
    return lib.Model(image, out, name="fn")


BUILDERS = {"sequential": sequential, "functional": functional}


def trained_keras(keras, kind):
    keras.utils.set_random_seed(0)
    model = BUILDERS[kind](keras)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return model


def trained_ours(kind):
    torch.manual_seed(0)
    model = BUILDERS[kind](weightwise)
    model.compile(optimizer=weightwise.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return model


def at_float32(config):
    """A config with its floats at float32 precision: Keras stores factors as float32 (0.01 reads back as
    0.009999999776482582), where weightwise keeps the float given; the two agree at float32."""
    if isinstance(config, dict):
        return {key: at_float32(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [at_float32(value) for value in config]
    if isinstance(config, float):
        return float(np.float32(config))
    return config


def assert_same_models(keras, theirs, ours) -> None:
    """Predictions to 1e-5, the same rules with the same configs, the same penalties."""
    np.testing.assert_allclose(ours.predict(X, verbose=0), to_numpy(theirs.predict(X, verbose=0)), rtol=1e-5, atol=1e-5)
    their_layers = {layer.name: layer for layer in theirs.layers}
    assert sorted(their_layers) == sorted(layer.name for layer in ours.layers)
    compared = 0
    for layer in ours.layers:
        for rule in RULES:
            mine, reference = getattr(layer, rule, None), getattr(their_layers[layer.name], rule, None)
            assert (mine is None) == (reference is None), (layer.name, rule)
            if mine is not None:
                assert at_float32(weightwise.serialization.serialize_keras_object(mine)) == at_float32(
                    keras.saving.serialize_keras_object(reference)), (layer.name, rule)
                compared += 1
    assert compared >= 6
    # Penalties: weight penalties and the activity penalty of one call on the same batch.
    theirs(X[:4])
    ours(torch.tensor(X[:4]))
    np.testing.assert_allclose(sorted(float(to_numpy(v)) for v in theirs.losses),
                               sorted(v.item() for v in ours.losses), rtol=1e-5)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_keras_writes_and_weightwise_loads(tmp_path, kind) -> None:
    keras = keras_or_skip()
    theirs = trained_keras(keras, kind)
    path = tmp_path / f"{kind}.keras"
    theirs.save(path)
    ours = weightwise.models.load_model(path)
    assert type(ours).__name__ == type(theirs).__name__
    assert_same_models(keras, theirs, ours)
    # The training configuration and the optimizer state came across too.
    assert ours.compiled and type(ours.optimizer).__name__ == "Adam" and ours.optimizer.iterations == 2
    state = {}
    ours.optimizer.save_own_variables(state)
    reference = [to_numpy(v) for v in theirs.optimizer.variables]
    assert len(state) == len(reference)
    for index, value in enumerate(reference):
        np.testing.assert_allclose(state[str(index)], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_weightwise_writes_and_keras_loads(tmp_path, kind) -> None:
    keras = keras_or_skip()
    ours = trained_ours(kind)
    path = tmp_path / f"{kind}.keras"
    ours.save(path)
    theirs = keras.saving.load_model(path)
    assert type(theirs).__name__ == type(ours).__name__
    assert_same_models(keras, theirs, ours)
    assert int(to_numpy(theirs.optimizer.iterations)) == 2
    state = {}
    ours.optimizer.save_own_variables(state)
    for index, variable in enumerate(theirs.optimizer.variables):
        np.testing.assert_allclose(to_numpy(variable), state[str(index)], rtol=1e-6, atol=1e-7)


def dense_model(lib):
    L, R, C = lib.layers, lib.regularizers, lib.constraints
    return lib.Sequential([lib.Input(shape=(6,)),
                           L.Dense(8, activation="tanh", kernel_regularizer=R.L2(0.01), kernel_constraint=C.MaxNorm(1.0)),
                           L.Dense(2, bias_constraint=C.NonNeg())])


def test_training_continues_on_the_same_trajectory_across_the_exchange(tmp_path) -> None:
    keras = keras_or_skip()
    x, y = RNG.random((32, 6), dtype=np.float32), RNG.random((32, 2), dtype=np.float32)
    keras.utils.set_random_seed(0)
    theirs = dense_model(keras)
    theirs.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    theirs.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    # Both continue; then each hands its model to the other side, which continues again.
    theirs.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    ours.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    back.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    theirs.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(back.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-6)


def test_weights_files_move_both_ways(tmp_path) -> None:
    keras = keras_or_skip()
    theirs = trained_keras(keras, "functional")
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours = functional(weightwise)
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(X, verbose=0), to_numpy(theirs.predict(X, verbose=0)), rtol=1e-5, atol=1e-5)

    mine = trained_ours("sequential")
    mine.save_weights(tmp_path / "ours.weights.h5")
    target = sequential(keras)
    target.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(to_numpy(target.predict(X, verbose=0)), mine.predict(X, verbose=0), rtol=1e-5, atol=1e-5)


def test_json_configs_move_both_ways() -> None:
    keras = keras_or_skip()
    for kind, build in BUILDERS.items():
        theirs = build(keras)
        ours = weightwise.models.model_from_json(theirs.to_json())
        ours.set_weights([to_numpy(w) for w in theirs.get_weights()])
        assert_same_models(keras, theirs, ours)
        mine = build(weightwise)
        back = keras.models.model_from_json(mine.to_json())
        back.set_weights(mine.get_weights())
        assert_same_models(keras, back, mine)
        assert json.loads(back.to_json())["config"]["layers"][1]["config"]["kernel_constraint"] == \
            json.loads(mine.to_json())["config"]["layers"][1]["config"]["kernel_constraint"], kind


def test_a_custom_registered_regularizer_survives_both_directions(tmp_path) -> None:
    keras = keras_or_skip()

    @keras.saving.register_keras_serializable(package="Exchange")
    class ScaledAbs(keras.regularizers.Regularizer):
        def __init__(self, scale=0.1):
            self.scale = scale

        def __call__(self, x):
            return self.scale * keras.ops.sum(keras.ops.abs(x))

        def get_config(self):
            return {"scale": self.scale}

    @weightwise.saving.register_keras_serializable(package="Exchange", name="ScaledAbs")
    class OurScaledAbs(weightwise.regularizers.Regularizer):
        def __init__(self, scale=0.1):
            self.scale = scale

        def __call__(self, x):
            return self.scale * weightwise.ops.sum(weightwise.ops.abs(x))

        def get_config(self):
            return {"scale": self.scale}

    def model(lib, regularizer):
        return lib.Sequential([lib.Input(shape=(4,)), lib.layers.Dense(3, kernel_regularizer=regularizer, name="d")])

    theirs = model(keras, ScaledAbs(0.25))
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    assert isinstance(ours.layers[0].kernel_regularizer, OurScaledAbs) and ours.layers[0].kernel_regularizer.scale == 0.25
    np.testing.assert_allclose(ours.losses[0].item(), float(to_numpy(theirs.losses[0])), rtol=1e-6)

    mine = model(weightwise, OurScaledAbs(0.5))
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    assert isinstance(back.layers[0].kernel_regularizer, ScaledAbs) and back.layers[0].kernel_regularizer.scale == 0.5
    np.testing.assert_allclose(float(to_numpy(back.losses[0])), mine.losses[0].item(), rtol=1e-6)


def test_an_unregistered_keras_object_fails_naming_it(tmp_path) -> None:
    keras = keras_or_skip()

    @keras.saving.register_keras_serializable(package="OnlyInKeras")
    class Halver(keras.constraints.Constraint):
        def __call__(self, w):
            return w / 2

    keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1, kernel_constraint=Halver())]).save(
        tmp_path / "halver.keras")
    with pytest.raises(ValueError, match=r"Unknown constraint: 'OnlyInKeras>Halver'.*register_keras_serializable"):
        weightwise.models.load_model(tmp_path / "halver.keras")


def nested(lib):
    L, R, C = lib.layers, lib.regularizers, lib.constraints
    block = lib.Sequential([L.Dense(5, activation="relu", kernel_regularizer=R.L2(0.01), name="block_dense"),
                            L.Dense(4, kernel_constraint=C.NonNeg(), name="block_out")], name="block")
    x = lib.Input(shape=(6,), name="x")
    y = L.Dense(2, name="head", bias_regularizer=R.L1(0.02))(L.Add(name="merge")([block(x), block(x)]))
    return lib.Model(x, y, name="outer")


def test_nested_models_move_both_ways(tmp_path) -> None:
    keras = keras_or_skip()
    data = RNG.random((4, 6), dtype=np.float32)
    keras.utils.set_random_seed(0)
    theirs = nested(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    np.testing.assert_allclose(ours.predict(data, verbose=0), to_numpy(theirs.predict(data, verbose=0)), rtol=1e-5,
                               atol=1e-6)
    assert ours.get_layer("block").layers[1].kernel_constraint.get_config() == {}
    mine = nested(weightwise)
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(back.predict(data, verbose=0)), mine.predict(data, verbose=0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(sorted(float(to_numpy(v)) for v in back.losses), sorted(v.item() for v in mine.losses),
                               rtol=1e-5)


# Every layer kind weightwise has, each in a small model, with an input shape that suits it.
LAYER_CASES = {
    "Dense": (lambda L: L.Dense(3, kernel_regularizer="l1", bias_constraint="non_neg"), (5,)),
    "Conv1D": (lambda L: L.Conv1D(3, 2, padding="causal", kernel_constraint="unit_norm"), (7, 2)),
    "Conv2D": (lambda L: L.Conv2D(3, 2, strides=2, data_format="channels_first"), (2, 6, 6)),
    "Conv3D": (lambda L: L.Conv3D(2, 2, dilation_rate=1, bias_regularizer="l2"), (4, 4, 4, 2)),
    "MaxPooling1D": (lambda L: L.MaxPooling1D(2), (6, 2)),
    "MaxPooling2D": (lambda L: L.MaxPooling2D(2, padding="same"), (5, 5, 2)),
    "MaxPooling3D": (lambda L: L.MaxPooling3D(2), (4, 4, 4, 1)),
    "AveragePooling1D": (lambda L: L.AveragePooling1D(2), (6, 2)),
    "AveragePooling2D": (lambda L: L.AveragePooling2D(2), (4, 4, 2)),
    "AveragePooling3D": (lambda L: L.AveragePooling3D(2), (4, 4, 4, 1)),
    "GlobalAveragePooling1D": (lambda L: L.GlobalAveragePooling1D(), (6, 2)),
    "GlobalAveragePooling2D": (lambda L: L.GlobalAveragePooling2D(keepdims=True), (4, 4, 2)),
    "GlobalAveragePooling3D": (lambda L: L.GlobalAveragePooling3D(), (3, 3, 3, 2)),
    "GlobalMaxPooling1D": (lambda L: L.GlobalMaxPooling1D(), (6, 2)),
    "GlobalMaxPooling2D": (lambda L: L.GlobalMaxPooling2D(), (4, 4, 2)),
    "GlobalMaxPooling3D": (lambda L: L.GlobalMaxPooling3D(), (3, 3, 3, 2)),
    "Flatten": (lambda L: L.Flatten(), (3, 2)),
    "Reshape": (lambda L: L.Reshape((2, 3)), (6,)),
    "Activation": (lambda L: L.Activation("tanh"), (4,)),
    "Dropout": (lambda L: L.Dropout(0.5, seed=1), (4,)),
    "ActivityRegularization": (lambda L: L.ActivityRegularization(l1=0.01, l2=0.02), (4,)),
}


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_every_layer_kind_moves_both_ways(tmp_path, name) -> None:
    keras = keras_or_skip()
    make, shape = LAYER_CASES[name]
    data = RNG.random((3, *shape), dtype=np.float32)

    def model(lib):
        return lib.Sequential([lib.Input(shape=shape), make(lib.layers), lib.layers.Activation("linear")])

    keras.utils.set_random_seed(0)
    theirs = model(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    assert type(ours.layers[0]).__name__ == name
    np.testing.assert_allclose(ours.predict(data, verbose=0), to_numpy(theirs.predict(data, verbose=0)), rtol=1e-5,
                               atol=1e-6)
    mine = model(weightwise)
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    assert type(back.layers[0]).__name__ == name
    np.testing.assert_allclose(to_numpy(back.predict(data, verbose=0)), mine.predict(data, verbose=0), rtol=1e-5,
                               atol=1e-6)
    assert at_float32(back.layers[0].get_config()) == at_float32(mine.layers[0].get_config()) | {
        key: value for key, value in back.layers[0].get_config().items() if key not in mine.layers[0].get_config()}
