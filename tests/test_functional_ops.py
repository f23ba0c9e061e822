"""Operators and ``ops`` on symbolic tensors inside functional models, checked against Keras 3.

The same graph is built in both libraries (one builder, given either module); configs,
predictions and ``.keras`` files are compared in both directions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip, to_numpy
from weightwise import ops
from weightwise.layers.symbolic import Operation

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
        if "ops" in entry["module"] or "activations" in entry["module"]:
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


# One op per model, over positive inputs of shape (batch, 3, 4), so every op of the table runs.
POSITIVE = (RNG.random((6, 3, 4)) + 0.5).astype(np.float32)
ONE_OP = {
    "add": lambda K, x: K.add(x, 1.5),
    "subtract": lambda K, x: K.subtract(2.0, x),
    "multiply": lambda K, x: K.multiply(x, x),
    "divide": lambda K, x: K.divide(x, 3.0),
    "true_divide": lambda K, x: K.true_divide(1.0, x),
    "divide_no_nan": lambda K, x: K.divide_no_nan(x, x - 1.0),
    "power": lambda K, x: K.power(x, 3),
    "matmul": lambda K, x: K.matmul(x, K.transpose(x, (0, 2, 1))),
    "dot": lambda K, x: K.dot(x[:, 0], x[0, 0]),
    "maximum": lambda K, x: K.maximum(x, 1.0),
    "minimum": lambda K, x: K.minimum(1.0, x),
    "greater": lambda K, x: K.cast(K.greater(x, 1.0), "float32"),
    "greater_equal": lambda K, x: K.cast(K.greater_equal(x, 1.0), "float32"),
    "less": lambda K, x: K.cast(K.less(x, 1.0), "float32"),
    "less_equal": lambda K, x: K.cast(K.less_equal(x, 1.0), "float32"),
    "equal": lambda K, x: K.cast(K.equal(x, x[:, :1]), "float32"),
    "not_equal": lambda K, x: K.cast(x != x[:, :1], "float32"),
    "where": lambda K, x: K.where(x > 1.0, x, -x),
    "negative": lambda K, x: K.negative(x),
    "absolute": lambda K, x: K.absolute(1.0 - x),
    "abs": lambda K, x: K.abs(1.0 - x),
    "square": lambda K, x: K.square(x),
    "sqrt": lambda K, x: K.sqrt(x),
    "rsqrt": lambda K, x: K.rsqrt(x),
    "exp": lambda K, x: K.exp(x),
    "log": lambda K, x: K.log(x),
    "sign": lambda K, x: K.sign(x - 1.0),
    "tanh": lambda K, x: K.tanh(x),
    "relu": lambda K, x: K.relu(x - 1.0),
    "sigmoid": lambda K, x: K.sigmoid(x),
    "clip": lambda K, x: K.clip(x, 0.8, 1.2),
    "sum": lambda K, x: K.sum(x, axis=(1, 2)),
    "mean": lambda K, x: K.mean(x, axis=-1, keepdims=True),
    "max": lambda K, x: K.max(x, axis=1),
    "min": lambda K, x: K.min(x, axis=2),
    "transpose": lambda K, x: K.transpose(x, (0, 2, 1)),
    "reshape": lambda K, x: K.reshape(x, (-1, 12)),
    "expand_dims": lambda K, x: K.expand_dims(x, 1),
    "squeeze": lambda K, x: K.squeeze(x[:, :1], axis=1),
    "concatenate": lambda K, x: K.concatenate([x, 2 * x], axis=1),
    "get_item": lambda K, x: x[:, -1, ::2],
    "ones_like": lambda K, x: K.ones_like(x) + x,
    "zeros_like": lambda K, x: K.zeros_like(x) - x,
    "stop_gradient": lambda K, x: K.stop_gradient(x),
    "cast": lambda K, x: K.cast(x, "float64"),
    "norm": lambda K, x: K.norm(x, axis=-1),
    "normalize": lambda K, x: K.normalize(x, axis=1),
    "logical_and": lambda K, x: K.cast(K.logical_and(x > 1.0, x < 1.5), "float32"),
    "logical_or": lambda K, x: K.cast(K.logical_or(x > 1.5, x < 0.9), "float32"),
    "logical_not": lambda K, x: K.cast(K.logical_not(x > 1.0), "float32"),
    "any": lambda K, x: K.cast(K.any(x > 1.5, axis=1), "float32"),
    "all": lambda K, x: K.cast(K.all(x > 0.5, axis=-1, keepdims=True), "float32"),
    "std": lambda K, x: K.std(x, axis=1),
    "var": lambda K, x: K.var(x, axis=(1, 2), keepdims=True),
    "tril": lambda K, x: K.tril(x, k=1),
    "triu": lambda K, x: K.triu(x, k=-1),
    "tile": lambda K, x: K.tile(x, (1, 2, 1)),
}


def one_op_model(lib, name):
    x = lib.Input(shape=(3, 4), name="x")
    return lib.Model(x, ONE_OP[name](lib.ops, x), name=f"m_{name}")


@pytest.mark.parametrize("name", sorted(ONE_OP))
def test_each_op_matches_keras_and_crosses_files(name, tmp_path):
    keras = keras_or_skip()
    ours, theirs = one_op_model(weightwise, name), one_op_model(keras, name)
    want = to_numpy(theirs.predict(POSITIVE, verbose=0))
    got = to_numpy(ours.predict(POSITIVE, verbose=0))
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert strip(canonical(json.loads(json.dumps(ours.get_config())))) == \
        strip(canonical(json.loads(json.dumps(theirs.get_config()))))
    ours.save(str(tmp_path / "ours.keras"))
    theirs.save(str(tmp_path / "theirs.keras"))
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(str(tmp_path / "ours.keras")).predict(POSITIVE, verbose=0)),
                               want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(weightwise.models.load_model(str(tmp_path / "theirs.keras")).predict(POSITIVE, verbose=0)),
                               want, rtol=1e-6, atol=1e-6)


def test_keras_activation_ops_load_here(tmp_path):
    keras = keras_or_skip()
    x = keras.Input(shape=(3, 4))
    y = keras.activations.relu(x - 1.0, negative_slope=0.1, max_value=0.6)
    model = keras.Model(x, keras.ops.softmax(y * 3.0, axis=1) + keras.ops.relu(y))
    model.save(str(tmp_path / "act.keras"))
    loaded = weightwise.models.load_model(str(tmp_path / "act.keras"))
    np.testing.assert_allclose(to_numpy(loaded.predict(POSITIVE, verbose=0)), to_numpy(model.predict(POSITIVE, verbose=0)),
                               rtol=1e-6, atol=1e-6)


def test_an_unknown_keras_op_is_refused_by_name(tmp_path):
    keras = keras_or_skip()
    x = keras.Input(shape=(4,))
    keras.Model(x, keras.ops.sin(x) + 1.0).save(str(tmp_path / "sin.keras"))
    with pytest.raises(ValueError, match=r"keras\.src\.ops\.numpy\.Sin.*does not implement"):
        weightwise.models.load_model(str(tmp_path / "sin.keras"))


def test_an_op_config_with_unknown_settings_is_refused():
    with pytest.raises(ValueError, match="setting bogus=1"):
        Operation.from_keras("keras.src.ops.numpy", "Mean", {"name": "mean", "axis": 1, "bogus": 1})
    with pytest.raises(TypeError, match="with a 'name'"):
        Operation.from_keras("keras.src.ops.numpy", "Mean", ["not", "a", "dict"])


def test_config_round_trip_clone_and_json_keep_the_ops():
    model = graph(weightwise)
    expected = to_numpy(model([torch.as_tensor(A), torch.as_tensor(B)]))
    rebuilt = [type(model).from_config(model.get_config()), weightwise.models.clone_model(model),
               weightwise.models.model_from_json(model.to_json())]
    for copy in rebuilt:
        assert [e["class_name"] for e in copy.get_config()["layers"]] == \
            [e["class_name"] for e in model.get_config()["layers"]]
        copy.set_weights(model.get_weights())
        np.testing.assert_allclose(to_numpy(copy([torch.as_tensor(A), torch.as_tensor(B)])), expected, rtol=1e-6)


def test_training_through_ops_matches_keras():
    keras = keras_or_skip()
    ours, theirs = graph(weightwise), graph(keras)
    same_weights(ours, theirs)
    target = RNG.standard_normal((5, 6)).astype(np.float32)
    for model, lib in ((ours, weightwise), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.001), loss="mse")
    got = ours.fit([A, B], target, batch_size=5, epochs=3, verbose=0, shuffle=False).history["loss"]
    want = theirs.fit([A, B], target, batch_size=5, epochs=3, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert len(set(got)) == 3  # it trained
    for layer in ours.layers:
        for mine, reference in zip(layer.get_weights(), theirs.get_layer(layer.name).get_weights()):
            np.testing.assert_allclose(to_numpy(mine), to_numpy(reference), rtol=1e-5, atol=1e-6)


def test_what_cannot_take_a_symbolic_tensor_says_so():
    x = weightwise.Input(shape=(4,))
    # Activations record Keras's operations now; one without an operation here says so.
    with pytest.raises(TypeError, match="symbolic tensor"):
        weightwise.activations.sparsemax(x)
    assert weightwise.activations.linear(x) is x
    with pytest.raises(TypeError, match=r"`ops\.convert_to_numpy` cannot take a symbolic tensor"):
        ops.convert_to_numpy(x)
    with pytest.raises(TypeError, match=r"argument `x_min` cannot be a symbolic tensor"):
        ops.clip(x, x, 1.0)
    with pytest.raises(TypeError, match="Python bool"):
        bool(x > 0)
    with pytest.raises(TypeError, match="cannot be iterated"):
        list(x)
    with pytest.raises(TypeError, match="cannot become a NumPy array"):
        np.asarray(x)
    assert ops.shape(x) == (None, 4)
    assert ops.convert_to_tensor(x) is x


def test_an_op_named_like_a_layer_gets_a_free_name():
    x = weightwise.Input(shape=(4,))
    y = weightwise.layers.Add(name="add")([x, x])
    model = weightwise.Model(x, ops.add(y, 1.0) + y)
    names = [entry["name"] for entry in model.get_config()["layers"]]
    assert len(names) == len(set(names)) and "add" in names


def test_tensors_stay_usable_as_dict_keys_and_list_members():
    x = weightwise.Input(shape=(4,))
    y = x + 1.0
    assert {x: 1, y: 2}[y] == 2
    assert y in [x, y] and x in [x]


KERAS_ACTIVATIONS = {
    "celu": {"alpha": 0.7}, "elu": {"alpha": 0.5}, "gelu": {"approximate": True}, "glu": {"axis": -1},
    "hard_shrink": {"threshold": 0.3}, "hard_sigmoid": {}, "hard_tanh": {}, "leaky_relu": {"negative_slope": 0.1},
    "log_sigmoid": {}, "log_softmax": {"axis": 1}, "relu": {"max_value": 0.4, "threshold": 0.1}, "relu6": {},
    "selu": {}, "sigmoid": {}, "silu": {}, "soft_shrink": {"threshold": 0.2}, "softmax": {"axis": 1},
    "softplus": {}, "softsign": {}, "sparse_plus": {}, "sparse_sigmoid": {}, "squareplus": {"b": 2},
    "tanh_shrink": {}, "threshold": {"threshold": 0.1, "default_value": -1.0}, "tanh": {}, "exponential": {},
}


@pytest.mark.parametrize("name", sorted(KERAS_ACTIVATIONS))
def test_keras_activation_calls_load_here_and_trace_back(name, tmp_path):
    keras = keras_or_skip()
    settings = KERAS_ACTIVATIONS[name]
    inputs = keras.Input(shape=(3, 4))
    model = keras.Model(inputs, getattr(keras.activations, name)(inputs * 2.0 - 2.0, **settings))
    model.save(str(tmp_path / "act.keras"))
    want = to_numpy(model.predict(POSITIVE, verbose=0))
    loaded = weightwise.models.load_model(str(tmp_path / "act.keras"))
    np.testing.assert_allclose(to_numpy(loaded.predict(POSITIVE, verbose=0)), want, rtol=1e-6, atol=1e-6)
    # The same call traced here (through ops.traceable) writes what Keras wrote.
    x = weightwise.Input(shape=(3, 4))
    ours = weightwise.Model(x, ops.traceable(getattr(weightwise.activations, name))(x * 2.0 - 2.0, **settings))
    assert strip(canonical(json.loads(json.dumps(ours.get_config()))))["layers"][1:] == \
        strip(canonical(json.loads(json.dumps(model.get_config()))))["layers"][1:]
    ours.save(str(tmp_path / "ours.keras"))
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(str(tmp_path / "ours.keras")).predict(POSITIVE, verbose=0)),
                               want, rtol=1e-6, atol=1e-6)


def test_array_constants_in_op_calls_cross_files(tmp_path):
    keras = keras_or_skip()
    scale = np.arange(4, dtype=np.float32)
    shift = torch.linspace(-1.0, 1.0, 4)
    x = weightwise.Input(shape=(3, 4))
    ours = weightwise.Model(x, (x * scale) + shift)
    ours.save(str(tmp_path / "ours.keras"))
    want = POSITIVE * scale + shift.numpy()
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(str(tmp_path / "ours.keras")).predict(POSITIVE, verbose=0)),
                               want, rtol=1e-6)
    k = keras.Input(shape=(3, 4))
    keras.Model(k, k * scale + keras.ops.convert_to_tensor(shift.numpy())).save(str(tmp_path / "theirs.keras"))
    np.testing.assert_allclose(to_numpy(weightwise.models.load_model(str(tmp_path / "theirs.keras")).predict(POSITIVE, verbose=0)),
                               want, rtol=1e-6)


def test_arrays_and_tensors_on_the_left_record_ops():
    x = weightwise.Input(shape=(4,))
    outputs = [np.full(4, 2.0, dtype=np.float32) * x, torch.ones(4) + x, np.float32(3.0) - x]
    assert [out.node.layer.class_name for out in outputs] == ["Multiply", "Add", "Subtract"]
    model = weightwise.Model(x, outputs)
    values = model(torch.ones(2, 4))
    assert [float(v[0, 0]) for v in values] == [2.0, 2.0, 2.0]


def test_summary_lists_ops_as_keras_does_but_layers_does_not():
    x = weightwise.Input(shape=(4,))
    model = weightwise.Model(x, ops.mean(weightwise.layers.Dense(3, name="d")(x) * 2, axis=1))
    lines = []
    model.summary(print_fn=lines.append)
    rows = [line.split()[:2] for line in lines if "(" in line and ")" in line and not line.startswith("Layer")]
    assert [row[1] for row in rows] == ["(InputLayer)", "(Dense)", "(Multiply)", "(Mean)"]
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense"]
    assert [op.name for op in model.operations][:2] == [layer.name for layer in model.layers]
    assert [getattr(op, "class_name", None) for op in model.operations][2:] == ["Multiply", "Mean"]
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer(rows[2][0])


def test_a_layer_called_on_a_tuple_saves_as_keras_writes_it(tmp_path):
    keras = keras_or_skip()
    a, b = weightwise.Input(shape=(4,), name="a"), weightwise.Input(shape=(4,), name="b")
    ours = weightwise.Model([a, b], weightwise.layers.Add(name="sum")((a, b)))
    ka, kb = keras.Input(shape=(4,), name="a"), keras.Input(shape=(4,), name="b")
    theirs = keras.Model([ka, kb], keras.layers.Add(name="sum")((ka, kb)))
    assert json.loads(json.dumps(ours.get_config()))["layers"][2]["inbound_nodes"] == \
        json.loads(json.dumps(theirs.get_config()))["layers"][2]["inbound_nodes"]
    ours.save(str(tmp_path / "tuple.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "tuple.keras"))
    np.testing.assert_allclose(to_numpy(loaded.predict([A, B], verbose=0)), A + B, rtol=1e-6)


def test_activation_functions_called_on_symbolic_tensors_record_keras_operations() -> None:
    import keras
    import numpy as np

    import weightwise
    from weightwise import activations

    x = weightwise.layers.Input(shape=(4,))
    model = weightwise.Model(x, activations.gelu(activations.relu(x), approximate=True))
    kx = keras.Input(shape=(4,))
    theirs = keras.Model(kx, keras.activations.gelu(keras.activations.relu(kx), approximate=True))
    data = np.linspace(-2, 2, 8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(model.predict(data, verbose=0), theirs.predict(data, verbose=0), atol=1e-6)
    assert [op.class_name for op in model.operations[1:]] == [type(op).__name__ for op in theirs.operations[1:]]
