"""Every layer family under the mixed policies, against Keras 3.15.1 (torch backend, in this process).

Each layer is built in Keras under ``mixed_bfloat16`` or ``mixed_float16``, given random weights,
and its twin here gets the same weights. Compared: the outputs, their dtype, the weights' dtype
(float32), which weights are read uncast (Keras's ``autocast=False``), and the dtype in the config,
which each library reads back from the other's.

Tolerances: the outputs are the same torch ops on the same casts as Keras's, so they are compared
exactly, except in two places where the order of operations differs. The LSTM and GRU steps
(Bidirectional's too) group their gate arithmetic differently from Keras (they differ by an ulp in
float32 as well); a step rounds to the low precision, so they are compared to one bfloat16 ulp
(2**-7, relative and absolute). UnitNormalization sums the squares in float32 where Keras sums them in the low
precision (weightwise's ``ops.normalize`` does so for half precision everywhere): one ulp of the
compute dtype.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightwise as ww
from tests.helpers import keras_or_skip, to_numpy
from tests.test_mixed_precision import float32_policy_after  # noqa: F401 -- autouse: every test restores the policies
from weightwise import config

POLICIES = ["mixed_bfloat16", "mixed_float16"]
# The spacing of the compute dtype's numbers relative to the power of two below them: one ulp.
ULP = {"mixed_bfloat16": 2.0**-7, "mixed_float16": 2.0**-10}


@pytest.fixture
def keras():
    return keras_or_skip()


def both_policies(keras, policy):
    keras.config.set_dtype_policy(policy)
    config.set_dtype_policy(policy)


def floats(*shape):
    return ("float", shape)


def ints(high, *shape):
    return ("int", high, shape)


# name: (make(layers module), inputs (a list is one list argument), call kwargs, tolerance kind)
CASES = {
    "Dense": (lambda L: L.Dense(3, activation="tanh"), [floats(2, 5)], {}, None),
    "Conv1D": (lambda L: L.Conv1D(3, 2), [floats(2, 6, 4)], {}, None),
    "Conv2D-same": (lambda L: L.Conv2D(3, 3, padding="same"), [floats(2, 5, 5, 3)], {}, None),
    "Conv3D": (lambda L: L.Conv3D(2, 2), [floats(1, 4, 4, 4, 2)], {}, None),
    "Conv1D-causal": (lambda L: L.Conv1D(3, 3, padding="causal"), [floats(2, 6, 4)], {}, None),
    "Conv2DTranspose": (lambda L: L.Conv2DTranspose(3, 2, strides=2), [floats(2, 4, 4, 3)], {}, None),
    "Conv3DTranspose": (lambda L: L.Conv3DTranspose(2, 2), [floats(1, 3, 3, 3, 2)], {}, None),
    "SeparableConv1D": (lambda L: L.SeparableConv1D(3, 2), [floats(2, 6, 4)], {}, None),
    "SeparableConv2D": (lambda L: L.SeparableConv2D(3, 2, depth_multiplier=2), [floats(2, 5, 5, 3)], {}, None),
    "DepthwiseConv1D": (lambda L: L.DepthwiseConv1D(2), [floats(2, 6, 4)], {}, None),
    "DepthwiseConv2D": (lambda L: L.DepthwiseConv2D(2), [floats(2, 5, 5, 3)], {}, None),
    "Embedding": (lambda L: L.Embedding(10, 4), [ints(10, 2, 3)], {}, None),
    "EinsumDense": (lambda L: L.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d"),
                    [floats(2, 4, 5)], {}, None),
    "SimpleRNN": (lambda L: L.SimpleRNN(3), [floats(2, 4, 5)], {}, None),
    "LSTM": (lambda L: L.LSTM(3, return_sequences=True), [floats(2, 4, 5)], {}, "recurrent"),
    "GRU": (lambda L: L.GRU(3), [floats(2, 4, 5)], {}, "recurrent"),
    "ConvLSTM1D": (lambda L: L.ConvLSTM1D(2, 2), [floats(2, 3, 5, 3)], {}, None),
    "Bidirectional": (lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True)), [floats(2, 4, 5)], {},
                      "recurrent"),
    "TimeDistributed": (lambda L: L.TimeDistributed(L.Dense(3)), [floats(2, 4, 5)], {}, None),
    "BatchNormalization": (lambda L: L.BatchNormalization(), [floats(4, 5)], {}, None),
    "BatchNormalization-training": (lambda L: L.BatchNormalization(), [floats(4, 5)], {"training": True}, None),
    "LayerNormalization": (lambda L: L.LayerNormalization(), [floats(4, 5)], {}, None),
    "LayerNormalization-axes": (lambda L: L.LayerNormalization(axis=(1, 2)), [floats(2, 3, 4)], {}, None),
    "GroupNormalization": (lambda L: L.GroupNormalization(groups=2), [floats(2, 3, 4)], {}, None),
    "UnitNormalization": (lambda L: L.UnitNormalization(), [floats(4, 5)], {}, "ulp"),
    "MultiHeadAttention": (lambda L: L.MultiHeadAttention(2, 3), [floats(2, 4, 5), floats(2, 3, 5)], {}, None),
    "GroupQueryAttention": (lambda L: L.GroupQueryAttention(3, 4, 2), [floats(2, 4, 5), floats(2, 3, 5)], {}, None),
    "MaxPooling2D": (lambda L: L.MaxPooling2D(), [floats(2, 4, 4, 3)], {}, None),
    "AveragePooling1D": (lambda L: L.AveragePooling1D(2), [floats(2, 4, 3)], {}, None),
    "GlobalAveragePooling2D": (lambda L: L.GlobalAveragePooling2D(), [floats(2, 4, 4, 3)], {}, None),
    "Add": (lambda L: L.Add(), [[floats(2, 3), floats(2, 3)]], {}, None),
    "Average": (lambda L: L.Average(), [[floats(2, 3), floats(2, 3)]], {}, None),
    "Concatenate": (lambda L: L.Concatenate(), [[floats(2, 3), floats(2, 3)]], {}, None),
    "Dot": (lambda L: L.Dot(axes=1), [[floats(2, 3), floats(2, 3)]], {}, None),
    "Flatten": (lambda L: L.Flatten(), [floats(2, 3, 4)], {}, None),
    "Reshape": (lambda L: L.Reshape((12,)), [floats(2, 3, 4)], {}, None),
    "Permute": (lambda L: L.Permute((2, 1)), [floats(2, 3, 4)], {}, None),
    "ZeroPadding2D": (lambda L: L.ZeroPadding2D(1), [floats(2, 3, 3, 2)], {}, None),
    "UpSampling2D": (lambda L: L.UpSampling2D(), [floats(2, 3, 3, 2)], {}, None),
    "Activation": (lambda L: L.Activation("gelu"), [floats(2, 5)], {}, None),
    "Softmax": (lambda L: L.Softmax(), [floats(2, 5)], {}, None),
    "PReLU": (lambda L: L.PReLU(), [floats(2, 5)], {}, None),
    "Lambda": (lambda L: L.Lambda(lambda x: x * 2.0 + 1.0), [floats(2, 5)], {}, None),
    "GaussianNoise": (lambda L: L.GaussianNoise(0.3, seed=4), [floats(2, 5)], {"training": True}, None),
    "GaussianDropout": (lambda L: L.GaussianDropout(0.3, seed=5), [floats(2, 5)], {"training": True}, None),
    "AlphaDropout": (lambda L: L.AlphaDropout(0.3, seed=8), [floats(2, 5)], {"training": True}, None),
    "SpatialDropout1D": (lambda L: L.SpatialDropout1D(0.5, seed=3), [floats(2, 3, 5)], {"training": True}, None),
}


def make_inputs(specs, rng):
    out = []
    for spec in specs:
        if isinstance(spec, list):
            out.append(make_inputs(spec, rng))
        elif spec[0] == "float":
            out.append(rng.normal(size=spec[1]).astype(np.float32))
        else:
            out.append(rng.integers(0, spec[1], spec[2]))
    return out


def as_torch(args):
    return [as_torch(a) if isinstance(a, list) else torch.tensor(a) for a in args]


def random_weights(layer, seed=5):
    """Weights in [-1, 1] (statistics of a variance in [0.5, 1.5]): not exact in the low precision."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 1.5, size=tuple(w.shape)).astype(np.float32)
            if ("variance" in w.path or "stddev" in w.path) else
            rng.uniform(-1, 1, size=tuple(w.shape)).astype(np.float32) for w in layer.weights]


def first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", list(CASES))
def test_layer_families_compute_as_keras_under_mixed_policies(keras, name, policy) -> None:
    make, specs, call_kwargs, tolerance = CASES[name]
    both_policies(keras, policy)
    args = make_inputs(specs, np.random.default_rng(0))
    theirs, ours = make(keras.layers), make(ww.layers)
    theirs(*args)  # builds both, in inference mode: no draw is spent
    ours(*as_torch(args))
    weights = random_weights(theirs)
    theirs.set_weights(weights)
    ours.set_weights(weights)
    out_theirs, out_ours = first(theirs(*args, **call_kwargs)), first(ours(*as_torch(args), **call_kwargs))
    assert out_ours.dtype == out_theirs.dtype == getattr(torch, theirs.compute_dtype)
    assert [str(w.dtype).replace("torch.", "") for w in ours.weights] == [w.dtype for w in theirs.weights]
    assert all(w.dtype == torch.float32 for w in ours.weights)
    # Which weights the call reads uncast, and whether the layer casts its inputs: Keras's flags (but
    # Embedding's table, read uncast here: its looked-up rows are cast, not the whole table).
    reference = [w._autocast and not name.startswith("Embedding") for w in theirs.weights]
    assert [w.autocast for w in ours.weights] == reference
    assert ours.autocast == theirs.autocast
    a, b = to_numpy(out_ours).astype(np.float64), to_numpy(out_theirs).astype(np.float64)
    if tolerance is None:
        np.testing.assert_array_equal(a, b)
    elif tolerance == "ulp":
        np.testing.assert_allclose(a, b, rtol=ULP[policy], atol=0)
    else:
        np.testing.assert_allclose(a, b, rtol=ULP["mixed_bfloat16"], atol=ULP["mixed_bfloat16"])
    if call_kwargs.get("training") and theirs.weights:  # the moving statistics, updated in float32
        for w_ours, w_theirs in zip(ours.non_trainable_weights, theirs.non_trainable_weights):
            np.testing.assert_allclose(to_numpy(w_ours), to_numpy(w_theirs), rtol=1e-6)
    if name == "Lambda":  # a Python lambda is refused by both in safe mode; its config is the base's
        return
    # The policy in the config, and each library reading the other's.
    expected = keras.dtype_policies.serialize(keras.DTypePolicy(policy))
    assert ours.get_config()["dtype"] == expected
    config.set_dtype_policy("float32")
    keras.config.set_dtype_policy("float32")
    through_json = json.loads(json.dumps(keras.layers.serialize(theirs)))
    if not name.startswith("Spatial"):  # Keras's SpatialDropout config drops the policy (see below)
        assert ww.layers.deserialize(through_json).dtype_policy.name == policy
    ours_json = json.loads(json.dumps(ww.layers.serialize(ours)))
    if name == "GroupQueryAttention":  # Keras knows the class by its other name only
        ours_json["class_name"] = "GroupQueryAttention"
    assert keras.layers.deserialize(ours_json).dtype_policy.name == policy


@pytest.mark.parametrize("policy", POLICIES)
def test_input_is_floatx_under_a_mixed_policy(keras, policy) -> None:
    both_policies(keras, policy)
    ours, theirs = ww.Input(shape=(3,), name="x"), keras.Input(shape=(3,), name="x")
    assert ours.dtype == theirs.dtype == "float32"
    layer = ours.node.layer
    assert layer.get_config() == theirs._keras_history[0].get_config()
    # A dtype given is kept, as in Keras.
    assert ww.Input(shape=(3,), dtype="int32").dtype == keras.Input(shape=(3,), dtype="int32").dtype == "int32"
    assert ww.Input(shape=(3,), dtype="bfloat16").dtype == keras.Input(shape=(3,), dtype="bfloat16").dtype
    config.set_dtype_policy("float32")
    assert ww.layers.InputLayer.from_config(layer.get_config()).output.dtype == "float32"


def functional(lib):
    L = lib.layers
    inputs = lib.Input(shape=(4, 6), name="x")
    x = L.LayerNormalization(name="ln")(inputs)
    x = L.Conv1D(5, 2, padding="same", name="conv")(x)
    x = L.GroupNormalization(groups=5, name="gn")(x)
    x = L.MultiHeadAttention(2, 3, name="mha")(x, x)
    x = L.BatchNormalization(name="bn")(x)
    return lib.Model(inputs, L.Dense(3, name="out")(x), name="net")


@pytest.mark.parametrize("policy", POLICIES)
def test_a_functional_model_keeps_its_inputs_for_its_layers_as_keras(keras, policy, tmp_path) -> None:
    both_policies(keras, policy)
    theirs, ours = functional(keras), functional(ww)
    assert ours.inputs[0].dtype == theirs.inputs[0].dtype == "float32"
    assert ours._convert_input_args is theirs._convert_input_args is False
    weights = random_weights(theirs)
    theirs.set_weights(weights)
    ours.set_weights(weights)
    x = np.random.default_rng(3).normal(size=(2, 4, 6)).astype(np.float32)
    out_theirs, out_ours = theirs(x), ours(torch.tensor(x))
    assert out_ours.dtype == out_theirs.dtype == getattr(torch, policy.replace("mixed_", ""))
    np.testing.assert_array_equal(to_numpy(out_ours), to_numpy(out_theirs))
    # The whole model through a .keras file, both ways, with its policies and its outputs.
    config.set_dtype_policy("float32")
    keras.config.set_dtype_policy("float32")
    ours.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    assert {layer.name: layer.dtype_policy.name for layer in back.layers[1:]} == \
        {layer.name: layer.dtype_policy.name for layer in ours.layers[1:]}
    np.testing.assert_array_equal(to_numpy(back(x)), to_numpy(out_theirs))
    theirs.save(tmp_path / "theirs.keras")
    again = ww.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_array_equal(to_numpy(again(torch.tensor(x))), to_numpy(out_theirs))


def test_a_float32_input_reaches_layer_normalization_uncast(keras) -> None:
    """LayerNormalization and GroupNormalization normalize float32 inputs in float32 under a mixed
    policy (Keras's autocast=False): the result is not that of inputs rounded to bfloat16 first."""
    x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32) * 100 + 1000
    for name, kwargs in (("LayerNormalization", {}), ("GroupNormalization", {"groups": 2})):
        theirs = getattr(keras.layers, name)(dtype="mixed_bfloat16", **kwargs)
        ours = getattr(ww.layers, name)(dtype="mixed_bfloat16", **kwargs)
        out_theirs, out_ours = theirs(x), ours(torch.tensor(x))
        np.testing.assert_array_equal(to_numpy(out_ours), to_numpy(out_theirs))
        rounded_first = ours(torch.tensor(x).to(torch.bfloat16))
        assert not torch.equal(rounded_first, out_ours)


def test_embedding_keeps_float_indices_uncast(keras) -> None:
    """bfloat16 would round the index 257 to 256; Keras's Embedding does not cast its inputs."""
    theirs, ours = keras.layers.Embedding(300, 2, dtype="mixed_bfloat16"), ww.layers.Embedding(300, 2,
                                                                                               dtype="mixed_bfloat16")
    indices = np.array([[257.0, 3.0]], np.float32)
    theirs.build(indices.shape)
    ours.build(indices.shape)
    ours.set_weights(random_weights(theirs))
    theirs.set_weights(random_weights(theirs))
    out_theirs, out_ours = theirs(indices), ours(torch.tensor(indices))
    assert out_ours.dtype == out_theirs.dtype == torch.bfloat16
    np.testing.assert_array_equal(to_numpy(out_ours), to_numpy(out_theirs))
    np.testing.assert_array_equal(to_numpy(out_ours[0, 0]), to_numpy(ours.embeddings[257].to(torch.bfloat16)))


def test_spatial_dropout_config_keeps_a_mixed_policy(keras) -> None:
    ours = ww.layers.SpatialDropout2D(0.3, seed=1, dtype="mixed_float16")
    config_ = json.loads(json.dumps(ours.get_config()))
    assert config_["dtype"] == keras.dtype_policies.serialize(keras.DTypePolicy("mixed_float16"))
    assert ww.layers.SpatialDropout2D.from_config(config_).dtype_policy.name == "mixed_float16"
    assert keras.layers.SpatialDropout2D.from_config(config_).dtype_policy.name == "mixed_float16"
    # Keras writes the variable dtype alone, which loses the policy; read here as it reads it.
    theirs = keras.layers.SpatialDropout2D(0.3, seed=1, dtype="mixed_float16")
    assert ww.layers.SpatialDropout2D.from_config(theirs.get_config()).dtype_policy.name == \
        keras.layers.SpatialDropout2D.from_config(theirs.get_config()).dtype_policy.name == "float32"


@pytest.mark.parametrize("with_input", [True, False], ids=["Input", "no_Input"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["global", "per_layer"])
def test_a_sequential_model_casts_its_inputs_as_keras(keras, with_input, per_layer) -> None:
    """Keras's Sequential casts its inputs to its input layer's dtype: the Input's (float32), or,
    without one, the first layer's compute dtype; LayerNormalization then sees float32 or bfloat16."""
    x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32) * 100 + 1000
    outputs, dtypes, weights = [], [], None
    for lib in (keras, ww):
        kwargs = {"dtype": "mixed_bfloat16"} if per_layer else {}
        if not per_layer:
            lib.config.set_dtype_policy("mixed_bfloat16")
        stack = [lib.layers.LayerNormalization(**kwargs), lib.layers.Dense(2, **kwargs)]
        model = lib.Sequential(([lib.Input(shape=(8,))] if with_input else []) + stack)
        lib.config.set_dtype_policy("float32")
        inputs = x if lib is keras else torch.tensor(x)
        model(inputs)  # builds it
        weights = random_weights(model) if weights is None else weights
        model.set_weights(weights)
        outputs.append(to_numpy(model(inputs)))
        dtypes.append(model.input_dtype)
    assert dtypes[0] == dtypes[1] == ("float32" if with_input else "bfloat16")
    np.testing.assert_array_equal(outputs[1], outputs[0])
