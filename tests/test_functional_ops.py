"""Operators and ``ops`` on symbolic tensors inside functional models, checked against Keras 3.

The same graph is built in both libraries (one builder, given either module); configs,
predictions and ``.keras`` files are compared in both directions.
"""

from __future__ import annotations

import json

import numpy as np
import weightwise
from tests.helpers import keras_or_skip, to_numpy

RNG = np.random.default_rng(7)
A = RNG.standard_normal((5, 4)).astype(np.float32)
B = RNG.standard_normal((5, 4)).astype(np.float32)


def graph(lib):
    """A graph using each operator and a spread of ops, the way Keras scripts write them."""
    K, L = lib.ops, lib.layers
    a = lib.Input(shape=(4,), name="a")
    b = lib.Input(shape=(4,), name="b")
    x = L.Dense(4, name="d")(a)
    y = x + b
    y = y * 2
    y = 2 * y - b / 3.0
    y += x                       # augmented assignment falls back to +
    z = -y
    z = abs(z) ** 2
    w = z[:, 1:3]
    c = K.concatenate([w, x[:, None, 0][:, 0:1], x[..., 2:]], axis=-1)
    m = K.mean(x, axis=1, keepdims=True)
    r = K.reshape(c, (-1, 5, 1))
    t = K.transpose(r, (0, 2, 1))
    s = K.squeeze(t, axis=1)
    e = K.expand_dims(K.sum(s, axis=-1), axis=-1)
    mx = K.max(K.exp(-abs(s)), axis=1, keepdims=True)
    g = K.cast(s > 0.5, "float32") + K.relu(s - 1.0) + K.sigmoid(s) + K.tanh(s)
    h = g @ K.ones((5, 2)) if False else L.Dense(2, name="proj")(g)
    out = K.concatenate([h, m, e, mx, K.maximum(e, 0.0)], axis=-1)
    out = K.where(out < 100.0, out, K.zeros_like(out))
    return lib.Model([a, b], out, name="ops_model")


def same_weights(ours, theirs):
    for layer in ours.layers:
        if layer.weights:
            theirs.get_layer(layer.name).set_weights([to_numpy(w) for w in layer.get_weights()])


def strip(config):
    """A config without what legitimately differs: Keras's quantization key and dtype-policy spelling."""
    if isinstance(config, dict):
        return {k: strip(v) for k, v in config.items() if k not in ("quantization_config", "optional", "sparse",
                                                                    "ragged", "build_config")}
    if isinstance(config, list):
        return [strip(v) for v in config]
    return config


def test_operators_and_ops_run_and_match_keras():
    keras = keras_or_skip()
    ours, theirs = graph(weightwise), graph(keras)
    same_weights(ours, theirs)
    got = to_numpy(ours.predict([A, B], verbose=0))
    want = to_numpy(theirs.predict([A, B], verbose=0))
    assert got.shape == want.shape == (5, 6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def canonical(config):
    """The config with each op or layer name replaced by its position (the two libraries count names apart)."""
    names = {entry["name"]: f"#{index}" for index, entry in enumerate(config["layers"])}

    def rename(value):
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, list):  # a [layer name, node index, tensor index] history
            if len(value) == 3 and isinstance(value[0], str) and value[0] in names:
                return [names[value[0]], *value[1:]]
            return [rename(v) for v in value]
        return value

    layers = []
    for entry in config["layers"]:
        entry = dict(entry, name=names[entry["name"]], config=dict(entry["config"]))
        if "ops" in entry["module"]:
            entry["config"]["name"] = entry["name"]
        layers.append(rename(entry))
    return {**config, "layers": layers, "output_layers": rename(config["output_layers"]),
            "input_layers": rename(config["input_layers"])}


def test_config_is_keras_config():
    keras = keras_or_skip()
    mine = canonical(json.loads(json.dumps(graph(weightwise).get_config())))
    reference = canonical(json.loads(json.dumps(graph(keras).get_config())))
    ops_of = [strip(e) for e in mine["layers"] if "ops" in e["module"]]
    keras_ops_of = [strip(e) for e in reference["layers"] if "ops" in e["module"]]
    for entry in keras_ops_of:
        if entry["class_name"] in ("Max", "Min"):
            assert entry["config"].pop("initial") is None
    assert len(ops_of) > 30
    assert ops_of == keras_ops_of
    # Layers are wired as Keras wires them: same inbound arguments, histories included.
    assert [strip(e["inbound_nodes"]) for e in mine["layers"]] == [strip(e["inbound_nodes"]) for e in reference["layers"]]
    assert mine["output_layers"] == reference["output_layers"]
    assert mine["input_layers"] == reference["input_layers"]


def test_our_file_loads_in_keras(tmp_path):
    keras = keras_or_skip()
    ours = graph(weightwise)
    path = str(tmp_path / "ops.keras")
    ours.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded.predict([A, B], verbose=0)), to_numpy(ours.predict([A, B], verbose=0)),
                               rtol=1e-6, atol=1e-6)


def test_keras_file_loads_here(tmp_path):
    keras = keras_or_skip()
    theirs = graph(keras)
    path = str(tmp_path / "ops.keras")
    theirs.save(path)
    loaded = weightwise.models.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded.predict([A, B], verbose=0)),
                               to_numpy(theirs.predict([A, B], verbose=0)), rtol=1e-6, atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in theirs.layers]
