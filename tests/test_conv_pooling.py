"""Convolution and pooling layers: rule binding, the seed examples, and Keras 3 conformance."""

from __future__ import annotations

import inspect
import itertools
import json
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

from weightwise import binding, constraints, layers, regularizers
from weightwise.layers import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    Conv,
    Conv1D,
    Conv2D,
    Conv3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    GlobalPooling,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    Pooling,
)

CONVS = {1: Conv1D, 2: Conv2D, 3: Conv3D}
POOLS = [MaxPooling1D, MaxPooling2D, MaxPooling3D, AveragePooling1D, AveragePooling2D, AveragePooling3D]
GLOBAL_POOLS = [
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
]
RANK = {cls: int(cls.__name__[-2]) for cls in POOLS + GLOBAL_POOLS + list(CONVS.values())}


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def json_normalized(value: Any) -> Any:
    return json.loads(json.dumps(value))


def assert_same_value(ours: Any, theirs: Any, where: str) -> None:
    """Equal after JSON; floats to float32 precision (Keras keeps some factors as float32 tensors)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        assert set(ours) == set(theirs), (where, set(ours) ^ set(theirs))
        for key in ours:
            assert_same_value(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_value(a, b, f"{where}[{index}]")
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-6), where
    else:
        assert ours == theirs, where


def assert_configs_agree(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Same keys, and equal values after JSON (tuples and lists alike); names are per instance."""
    assert set(ours) == set(theirs), (set(ours) ^ set(theirs))
    for key in ours:
        if key != "name":
            assert_same_value(json_normalized(ours[key]), json_normalized(theirs[key]), key)


# -- the shared layer checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape",
    [
        (Conv1D, {"filters": 4, "kernel_size": 3}, (2, 9, 3), (2, 7, 4)),
        (Conv1D, {"filters": 4, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, (2, 9, 3), (2, 9, 4)),
        (Conv2D, {"filters": 4, "kernel_size": 3, "padding": "same"}, (2, 6, 7, 3), (2, 6, 7, 4)),
        (Conv2D, {"filters": 4, "kernel_size": 3, "use_bias": False}, (2, 6, 7, 3), (2, 4, 5, 4)),
        (Conv2D, {"filters": 4, "kernel_size": 2, "strides": 2, "data_format": "channels_first", "groups": 2},
         (2, 4, 7, 6), (2, 4, 3, 3)),
        (Conv3D, {"filters": 2, "kernel_size": (1, 2, 3)}, (1, 4, 5, 6, 3), (1, 4, 4, 4, 2)),
        (Conv, {"rank": 2, "filters": 3, "kernel_size": 3}, (1, 5, 5, 2), (1, 3, 3, 3)),
        (MaxPooling1D, {}, (2, 9, 3), (2, 4, 3)),
        (MaxPooling2D, {"padding": "same"}, (2, 5, 7, 3), (2, 3, 4, 3)),
        (MaxPooling3D, {"pool_size": 2, "strides": 1}, (1, 3, 4, 5, 2), (1, 2, 3, 4, 2)),
        (AveragePooling1D, {"pool_size": 3, "padding": "same"}, (2, 8, 3), (2, 3, 3)),
        (AveragePooling2D, {"pool_size": 2, "data_format": "channels_first"}, (2, 3, 6, 4), (2, 3, 3, 2)),
        (AveragePooling3D, {"pool_size": (1, 2, 2)}, (1, 3, 4, 4, 2), (1, 3, 2, 2, 2)),
        (Pooling, {"rank": 1, "pool_type": "max", "pool_size": 2}, (2, 6, 3), (2, 3, 3)),
        (GlobalAveragePooling1D, {}, (2, 5, 3), (2, 3)),
        (GlobalAveragePooling2D, {"keepdims": True}, (2, 5, 4, 3), (2, 1, 1, 3)),
        (GlobalAveragePooling3D, {"data_format": "channels_first"}, (2, 3, 4, 4, 4), (2, 3)),
        (GlobalMaxPooling1D, {"data_format": "channels_first", "keepdims": True}, (2, 3, 5), (2, 3, 1)),
        (GlobalMaxPooling2D, {}, (2, 5, 4, 3), (2, 3)),
        (GlobalMaxPooling3D, {}, (2, 4, 4, 4, 3), (2, 3)),
        (GlobalPooling, {"rank": 2, "pool_type": "average"}, (2, 4, 4, 3), (2, 3)),
    ],
)
def test_every_layer_through_the_shared_checker(cls, kwargs, input_shape, output_shape) -> None:
    run_layer_test(cls, kwargs, input_shape, expected_output_shape=output_shape)


# -- regularizers and constraints reach their parameters ----------------------------------------


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_every_rule_argument_reaches_its_parameter(rank: int) -> None:
    cls = CONVS[rank]
    rules = {
        "kernel_regularizer": regularizers.L1(0.01),
        "bias_regularizer": regularizers.L2(0.02),
        "activity_regularizer": regularizers.L1L2(0.001, 0.002),
        "kernel_constraint": constraints.MaxNorm(2.0, axis=list(range(rank + 1))),
        "bias_constraint": constraints.NonNeg(),
    }
    layer = cls(4, 3, **rules)
    assert not layer.built and layer.kernel_regularizer is rules["kernel_regularizer"]
    layer(rand(2, *(5,) * rank, 3))
    for arg, obj in rules.items():
        assert getattr(layer, arg) is obj, arg
        if arg != "activity_regularizer":
            weight, kind = arg.rsplit("_", 1)
            assert getattr(binding.rule_of(layer, weight), kind) is obj, arg
    assert len(layer.losses) == 3  # kernel, bias, activity

    # Rules set after build rebind the parameter at once.
    new_constraint, new_regularizer = constraints.UnitNorm(axis=0), regularizers.L2(0.5)
    layer.kernel_constraint = new_constraint
    layer.bias_regularizer = new_regularizer
    assert binding.rule_of(layer, "kernel").constraint is new_constraint
    assert binding.rule_of(layer, "bias").regularizer is new_regularizer
    layer.kernel_regularizer = None
    layer.bias_regularizer = None
    assert binding.rule_of(layer, "kernel").regularizer is None
    assert len(layer.losses) == 1  # only the activity penalty of the last call


def test_seed_max_norm_constraint_bounds_each_conv2d_filter() -> None:
    layer = Conv2D(8, 3, kernel_constraint=constraints.MaxNorm(2.0, axis=[0, 1, 2]))
    layer(rand(1, 6, 6, 5))
    with torch.no_grad():
        layer.kernel.copy_(torch.from_numpy(rand(3, 3, 5, 8, seed=1) * 10.0))
    assert (layer.kernel.detach().square().sum(dim=(0, 1, 2)).sqrt() > 2.0).all()
    kernel = layer.kernel
    binding.apply_constraints(layer)
    assert layer.kernel is kernel  # projected in place
    norms = layer.kernel.detach().square().sum(dim=(0, 1, 2)).sqrt()
    assert norms.shape == (8,)
    assert (norms <= 2.0 + 1e-5).all()
    np.testing.assert_allclose(to_numpy(norms), 2.0, rtol=1e-5)


@pytest.mark.parametrize(
    "data_format, shape", [("channels_last", (10, 32, 32, 3)), ("channels_first", (10, 3, 32, 32))]
)
def test_seed_qa_weight_decay_gradient_equals_explicit_l2(data_format: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = Conv2D(16, 3, use_bias=False, data_format=data_format, kernel_regularizer=regularizers.L2(1e-4))
    x = torch.from_numpy(rand(*shape))
    loss = conv(x).sum() + sum(conv.losses)
    (ours,) = torch.autograd.grad(loss, [conv.kernel])
    explicit = conv(x).sum() + 1e-4 * (conv.kernel**2).sum()
    (expected,) = torch.autograd.grad(explicit, [conv.kernel])
    assert [p for p in conv.parameters()] == [conv.kernel]
    torch.testing.assert_close(ours, expected)
    # The penalty's own gradient is 2 * 1e-4 * kernel.
    (penalty_grad,) = torch.autograd.grad(sum(conv.losses), [conv.kernel])
    torch.testing.assert_close(penalty_grad, 2e-4 * conv.kernel.detach())


def test_conv_and_pooling_train_inside_a_torch_model() -> None:
    model = torch.nn.Sequential(
        Conv2D(4, 3, padding="same", activation="relu", kernel_regularizer="l2",
               kernel_constraint=constraints.MaxNorm(1.0, axis=[0, 1, 2]), input_shape=(8, 8, 3)),
        MaxPooling2D(),
        GlobalAveragePooling2D(),
    )
    x = torch.from_numpy(rand(2, 8, 8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(x).sum() + binding.total_penalty(model)
    loss.backward()
    optimizer.step()
    binding.apply_constraints(model)
    kernel = model[0].kernel.detach()
    assert (kernel.square().sum(dim=(0, 1, 2)).sqrt() <= 1.0 + 1e-5).all()
    assert model(x).shape == (2, 4)


# -- Keras conformance: numbers --------------------------------------------------------------------


def rule_kwargs(lib: Any) -> dict[str, Any]:
    """The same regularizers, built from ``lib`` (``keras`` or ``weightwise``)."""
    return {
        "kernel_regularizer": lib.regularizers.L1L2(l1=0.01, l2=0.02),
        "bias_regularizer": lib.regularizers.L2(0.03),
        "activity_regularizer": lib.regularizers.L1(0.001),
    }


CONV_CASES = [
    (1, {"filters": 4, "kernel_size": 3}, (2, 10, 3)),
    (1, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 11, 3)),
    (1, {"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same", "activation": "tanh"}, (2, 10, 3)),
    (1, {"filters": 4, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, (2, 10, 3)),
    (1, {"filters": 2, "kernel_size": 3, "padding": "causal", "strides": 2, "data_format": "channels_first"},
     (2, 3, 9)),
    (1, {"filters": 4, "kernel_size": 2, "padding": "same", "data_format": "channels_first"}, (2, 3, 9)),
    (1, {"filters": 4, "kernel_size": 3, "groups": 2, "activation": "relu"}, (2, 9, 4)),
    (1, {"filters": 3, "kernel_size": 3, "dilation_rate": 3, "padding": "same"}, (2, 12, 2)),
    (2, {"filters": 4, "kernel_size": 3}, (2, 8, 8, 3)),
    (2, {"filters": 4, "kernel_size": (2, 3), "strides": (2, 1), "padding": "same"}, (2, 7, 9, 3)),
    (2, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "data_format": "channels_first"},
     (2, 3, 9, 8)),
    (2, {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same", "activation": "sigmoid"}, (2, 9, 9, 3)),
    (2, {"filters": 6, "kernel_size": 3, "groups": 2, "activation": "relu"}, (2, 6, 6, 4)),
    (2, {"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same"}, (2, 10, 11, 2)),
    (2, {"filters": 4, "kernel_size": 2, "groups": 2, "dilation_rate": (1, 2), "data_format": "channels_first"},
     (2, 4, 7, 7)),
    (2, {"filters": 5, "kernel_size": 1, "use_bias": False, "activation": "elu"}, (2, 4, 4, 3)),
    (3, {"filters": 2, "kernel_size": 3}, (2, 5, 5, 5, 3)),
    (3, {"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same", "data_format": "channels_first"},
     (1, 3, 5, 6, 7)),
    (3, {"filters": 3, "kernel_size": 3, "groups": 3, "dilation_rate": 2, "padding": "same"}, (1, 7, 6, 7, 3)),
]


@pytest.mark.parametrize("rank, kwargs, input_shape", CONV_CASES)
def test_conv_matches_keras(keras, rank: int, kwargs: dict[str, Any], input_shape: tuple[int, ...]) -> None:
    import weightwise

    x = rand(*input_shape, seed=len(CONV_CASES))
    theirs = getattr(keras.layers, CONVS[rank].__name__)(**kwargs, **rule_kwargs(keras))
    expected = to_numpy(theirs(x))
    ours = CONVS[rank](**kwargs, **rule_kwargs(weightwise))
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        sorted(float(to_numpy(loss)) for loss in ours.losses), sorted(float(to_numpy(loss)) for loss in theirs.losses),
        rtol=1e-5, atol=1e-6,
    )
    assert len(ours.losses) == (3 if ours.use_bias else 2)
    assert_configs_agree(ours.get_config(), theirs.get_config())


@st.composite
def conv_settings(draw: Any) -> tuple[int, dict[str, Any], tuple[int, ...]]:
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilated = draw(st.booleans())
    strides = tuple(1 if dilated else draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) if dilated else 1 for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same", "causal"] if rank == 1 else ["valid", "same"]))
    groups = draw(st.sampled_from([1, 2]))
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    spatial = tuple(draw(st.integers((k - 1) * d + 1, (k - 1) * d + 6)) for k, d in zip(kernel, dilation))
    channels = 2 * draw(st.integers(1, 2))
    kwargs = {"filters": groups * draw(st.integers(1, 2)), "kernel_size": kernel, "strides": strides,
              "dilation_rate": dilation, "padding": padding, "groups": groups, "data_format": data_format}
    shape = (2, channels, *spatial) if data_format == "channels_first" else (2, *spatial, channels)
    return rank, kwargs, shape


@settings(max_examples=40, deadline=None)
@given(case=conv_settings())
def test_random_convolutions_match_keras(case: tuple[int, dict[str, Any], tuple[int, ...]]) -> None:
    keras = keras_or_skip()
    rank, kwargs, input_shape = case
    x = rand(*input_shape, seed=sum(input_shape))
    theirs = getattr(keras.layers, CONVS[rank].__name__)(**kwargs)
    expected = to_numpy(theirs(x))
    ours = CONVS[rank](**kwargs)
    ours(x)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5)


def same_pads(size: int, pool: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding, written out independently of the library."""
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return total // 2, total - total // 2


def reference_pool(x: np.ndarray, mode: str, pool: tuple[int, ...], strides: tuple[int, ...], padding: str,
                   data_format: str, replicate: bool = False) -> np.ndarray:
    """TensorFlow's pooling, by loops: padded positions never count (Keras's JAX/NumPy/TF backends agree).

    ``replicate=True`` models Keras 3.15.1's torch backend instead: where "same" padding
    is asymmetric it pads by repeating the edge values, which then count in averages.
    """
    if data_format == "channels_last":
        x = np.moveaxis(x, -1, 1)
    spatial = x.shape[2:]
    pads = [same_pads(n, k, s) if padding == "same" else (0, 0) for n, k, s in zip(spatial, pool, strides)]
    fill = -np.inf if mode == "max" else np.nan
    if replicate and any(a != b for a, b in pads):
        padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads], mode="edge")
    else:
        padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads], constant_values=fill)
    out_shape = [(n + a + b - k) // s + 1 for n, (a, b), k, s in zip(spatial, pads, pool, strides)]
    out = np.empty(x.shape[:2] + tuple(out_shape))
    axes = tuple(range(2, 2 + len(pool)))
    for index in itertools.product(*(range(n) for n in out_shape)):
        window = padded[(slice(None), slice(None), *(slice(i * s, i * s + k) for i, s, k in zip(index, strides, pool)))]
        value = window.max(axis=axes) if mode == "max" else np.nanmean(window, axis=axes)
        out[(slice(None), slice(None), *index)] = value
    return np.moveaxis(out, 1, -1) if data_format == "channels_last" else out


POOL_SETTINGS = [
    ({}, 7),  # defaults (valid); odd size drops the last position
    ({"pool_size": 3, "strides": 2, "padding": "same"}, 8),  # asymmetric: the extra pad goes after
    ({"pool_size": 3, "strides": 2, "padding": "same"}, 7),  # symmetric
    ({"pool_size": 2, "strides": 1, "padding": "same"}, 5),
    ({"pool_size": 4, "strides": 1, "padding": "same"}, 5),  # pad (1, 2)
    ({"pool_size": 3, "strides": 1, "padding": "same", "data_format": "channels_first"}, 5),
    ({"pool_size": 2, "strides": 3, "padding": "valid", "data_format": "channels_first"}, 8),
    ({"pool_size": 3, "strides": 3, "padding": "same", "data_format": "channels_first"}, 7),  # pad (0, 2)
]


def _pool_case(cls: type, settings: dict[str, Any], size: int) -> tuple[dict[str, Any], tuple[int, ...]]:
    rank = RANK[cls]
    kwargs = dict(settings)
    if "pool_size" not in kwargs and cls.__name__.startswith("Average"):
        kwargs["pool_size"] = 2  # AveragePooling has no default pool size, as in Keras
    sizes = tuple(size + i for i in range(rank))  # different sizes per axis
    channels_first = kwargs.get("data_format") == "channels_first"
    return kwargs, ((2, 3, *sizes) if channels_first else (2, *sizes, 3))


def _asymmetric(kwargs: dict[str, Any], input_shape: tuple[int, ...], rank: int) -> bool:
    if kwargs.get("padding") != "same":
        return False
    pool = kwargs["pool_size"]
    stride = kwargs.get("strides") or pool
    spatial = input_shape[2:] if kwargs.get("data_format") == "channels_first" else input_shape[1:-1]
    return any(a != b for a, b in (same_pads(n, pool, stride) for n in spatial))


@pytest.mark.parametrize("cls", POOLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("settings, size", POOL_SETTINGS)
def test_pooling_matches_keras_and_tensorflow_semantics(keras, cls: type, settings: dict[str, Any], size: int) -> None:
    kwargs, input_shape = _pool_case(cls, settings, size)
    rank = RANK[cls]
    x = rand(*input_shape, seed=size)
    ours = cls(**kwargs)
    out = to_numpy(ours(x))
    theirs = getattr(keras.layers, cls.__name__)(**kwargs)
    keras_out = to_numpy(theirs(x))
    assert out.shape == keras_out.shape
    assert_configs_agree(ours.get_config(), theirs.get_config())

    mode = "max" if cls.__name__.startswith("Max") else "average"
    pool = (kwargs.get("pool_size", 2),) * rank
    strides = (kwargs.get("strides") or pool[0],) * rank
    args = (mode, pool, strides, kwargs.get("padding", "valid"), kwargs.get("data_format", "channels_last"))
    np.testing.assert_allclose(out, reference_pool(x, *args), rtol=1e-5, atol=1e-6)
    if mode == "average" and _asymmetric(kwargs, input_shape, rank):
        # Keras 3.15.1's torch backend pads asymmetric "same" average pooling by
        # replicating the edge, so edge values count twice (fixed upstream by
        # keras-team/keras#23233); its JAX and NumPy backends and tf.keras exclude
        # padded positions, as we do. Pin down exactly what that backend computes.
        # (With a pool of 2 the repeated value is the only real one, so both agree.)
        np.testing.assert_allclose(keras_out, reference_pool(x, *args, replicate=True), rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(out, keras_out, rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    rank=st.integers(1, 3),
    mode=st.sampled_from(["max", "average"]),
    pool=st.integers(1, 4),
    stride=st.integers(1, 4),
    padding=st.sampled_from(["valid", "same"]),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    extra=st.lists(st.integers(0, 5), min_size=3, max_size=3),
)
def test_random_pooling_matches_tensorflow_semantics(rank, mode, pool, stride, padding, data_format, extra) -> None:
    spatial = tuple(pool + e for e in extra[:rank])
    shape = (2, 2, *spatial) if data_format == "channels_first" else (2, *spatial, 2)
    x = rand(*shape, seed=sum(shape))
    layer = Pooling(rank, mode, pool, strides=stride, padding=padding, data_format=data_format)
    expected = reference_pool(x, mode, (pool,) * rank, (stride,) * rank, padding, data_format)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_average_same_padding_excludes_padded_positions() -> None:
    x = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    # Pool 4, stride 1 pads one position before and two after; windows average real values only.
    out = AveragePooling1D(4, strides=1, padding="same")(x)
    np.testing.assert_allclose(to_numpy(out).ravel(), [1.0, 1.5, 2.5, 3.0, 3.5])
    out = MaxPooling1D(4, strides=1, padding="same")(-x)
    np.testing.assert_allclose(to_numpy(out).ravel(), [0.0, 0.0, -1.0, -2.0, -3.0])


@pytest.mark.parametrize("cls", GLOBAL_POOLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_matches_keras(keras, cls: type, data_format: str, keepdims: bool) -> None:
    rank = RANK[cls]
    sizes = tuple(3 + i for i in range(rank))
    x = rand(*((2, 4, *sizes) if data_format == "channels_first" else (2, *sizes, 4)))
    ours = cls(data_format=data_format, keepdims=keepdims)
    theirs = getattr(keras.layers, cls.__name__)(data_format=data_format, keepdims=keepdims)
    expected = to_numpy(theirs(x))
    out = to_numpy(ours(x))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert_configs_agree(ours.get_config(), theirs.get_config())


# -- Keras conformance: configs, signatures, deserialization -----------------------------------------


@pytest.mark.parametrize("cls", list(CONVS.values()) + POOLS + GLOBAL_POOLS, ids=lambda c: c.__name__)
def test_signature_matches_keras(keras, cls: type) -> None:
    ours = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(getattr(keras.layers, cls.__name__).__init__).parameters
    assert list(ours) == list(theirs)
    for name, parameter in ours.items():
        assert parameter.default == theirs[name].default, name
        assert parameter.kind == theirs[name].kind, name


def test_conv_config_has_exactly_keras_keys_and_normalized_tuples(keras) -> None:
    ours = Conv2D(4, 3, name="c").get_config()
    theirs = keras.layers.Conv2D(4, 3, name="c").get_config()
    assert list(ours) == list(theirs)
    assert ours["kernel_size"] == (3, 3) and ours["strides"] == (1, 1) and ours["dilation_rate"] == (1, 1)
    assert ours["activity_regularizer"] is None
    assert_configs_agree(ours, theirs)
    assert Conv1D(2, 3, padding="CAUSAL").get_config()["padding"] == "causal"


KERAS_DESERIALIZE_CASES = [
    ("Conv1D", {"filters": 3, "kernel_size": 3, "padding": "causal", "activation": "relu"}, (2, 7, 2)),
    ("Conv2D", {"filters": 4, "kernel_size": (3, 2), "strides": 2, "padding": "same",
                "data_format": "channels_first", "kernel_regularizer": "l2",
                "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2.0, "axis": [0, 1, 2]}}},
     (2, 3, 7, 8)),
    ("Conv3D", {"filters": 2, "kernel_size": 2, "groups": 2, "bias_regularizer": "l1", "activity_regularizer": "l2"},
     (1, 4, 4, 4, 4)),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 7, 7, 3)),
    ("AveragePooling1D", {"pool_size": 2, "data_format": "channels_first"}, (2, 3, 6)),
    ("AveragePooling3D", {"pool_size": 2, "padding": "same"}, (1, 4, 4, 4, 2)),
    ("GlobalMaxPooling3D", {"keepdims": True}, (2, 3, 3, 3, 2)),
    ("GlobalAveragePooling1D", {"data_format": "channels_first"}, (2, 3, 5)),
]


@pytest.mark.parametrize("class_name, kwargs, input_shape", KERAS_DESERIALIZE_CASES)
def test_keras_config_deserializes_into_a_working_equivalent(keras, class_name, kwargs, input_shape) -> None:
    theirs = getattr(keras.layers, class_name)(**kwargs)
    x = rand(*input_shape, seed=7)
    expected = to_numpy(theirs(x))
    for config in (keras.layers.serialize(theirs), json_normalized(keras.layers.serialize(theirs))):
        ours = layers.deserialize(config)
        assert type(ours).__name__ == class_name
        assert_configs_agree(ours.get_config(), theirs.get_config())
        ours(x)
        ours.set_weights(theirs.get_weights())
        np.testing.assert_allclose(to_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5)
        assert len(ours.losses) == len(theirs.losses)
        np.testing.assert_allclose(
            sorted(float(to_numpy(v)) for v in ours.losses),
            sorted(float(to_numpy(v)) for v in theirs.losses),
            rtol=1e-5,
        )
        # And our own config goes back into Keras.
        rebuilt = keras.layers.deserialize(json_normalized(layers.serialize(ours)))
        assert_configs_agree(ours.get_config(), rebuilt.get_config())


def test_keras_weights_load_with_the_same_layout(keras) -> None:
    theirs = keras.layers.Conv2D(5, (3, 2), groups=1)
    theirs.build((None, 6, 6, 4))
    ours = Conv2D(5, (3, 2), input_shape=(6, 6, 4))
    assert ours.built and tuple(ours.kernel.shape) == (3, 2, 4, 5) == tuple(theirs.kernel.shape)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_array_equal(ours.get_weights()[0], theirs.get_weights()[0])


# -- bad arguments and bad inputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "build, argument, shown",
    [
        (lambda: Conv2D(4, 3, padding="causal"), "padding", "'causal'"),
        (lambda: Conv1D(4, 3, padding="full"), "padding", "'full'"),
        (lambda: Conv2D(4, 3, padding=2), "padding", "padding=2"),
        (lambda: Conv2D(4, 3, data_format="NHWC"), "data_format", "'NHWC'"),
        (lambda: Conv2D(4, 3, groups=3), "groups", "groups=3"),
        (lambda: Conv2D(4, 3, groups=0), "groups", "groups=0"),
        (lambda: Conv2D(4, 3, strides=0), "strides", "strides=0"),
        (lambda: Conv2D(4, 3, strides=(1, 2, 3)), "strides", "(1, 2, 3)"),
        (lambda: Conv2D(4, 3, strides=2, dilation_rate=2), "strides", "dilation_rate=(2, 2)"),
        (lambda: Conv2D(4, (3, 0)), "kernel_size", "(3, 0)"),
        (lambda: Conv3D(4, 2.5), "kernel_size", "2.5"),
        (lambda: Conv2D(0, 3), "filters", "filters=0"),
        (lambda: Conv2D("4", 3), "filters", "'4'"),
        (lambda: Conv(4, 2, 3), "rank", "rank=4"),
        (lambda: MaxPooling2D(padding="full"), "padding", "'full'"),
        (lambda: MaxPooling2D(data_format="NCHW"), "data_format", "'NCHW'"),
        (lambda: AveragePooling1D(0), "pool_size", "pool_size=0"),
        (lambda: AveragePooling2D(2, strides=(1, 0)), "strides", "(1, 0)"),
        (lambda: Pooling(2, "min", 2), "pool_type", "'min'"),
        (lambda: GlobalMaxPooling2D(data_format="x"), "data_format", "'x'"),
        (lambda: GlobalAveragePooling1D(keepdims=1), "keepdims", "keepdims=1"),
    ],
)
def test_bad_arguments_name_the_layer_argument_and_value(build, argument: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    assert f"`{argument}`" in message and shown in message and "layer" in message


def test_wrong_rank_first_input_builds_nothing() -> None:
    layer = Conv2D(4, 3, name="conv_rank")
    with pytest.raises(ValueError, match=r"'conv_rank'.*expected ndim=4, found ndim=3.*\(2, 5, 5\)"):
        layer(rand(2, 5, 5))
    assert not layer.built and layer.weights == []
    assert layer(rand(2, 5, 5, 3)).shape == (2, 3, 3, 4)


def test_groups_not_dividing_input_channels_builds_nothing() -> None:
    layer = Conv2D(4, 3, groups=2, name="conv_groups")
    with pytest.raises(ValueError, match=r"'conv_groups'.*groups=2.*3 channels"):
        layer(rand(2, 5, 5, 3))
    assert not layer.built and layer.weights == []


def test_input_too_small_for_the_kernel_or_pool() -> None:
    with pytest.raises(ValueError, match="too small"):
        Conv2D(4, 3, name="conv_small")(rand(2, 2, 5, 3))
    layer = Conv1D(2, 3)
    layer(rand(1, 5, 1))
    with pytest.raises(ValueError, match="too small"):
        layer(rand(1, 2, 1))
    with pytest.raises(ValueError, match="too small"):
        MaxPooling2D(3)(rand(1, 2, 5, 1))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_bad_inputs_after_build_change_no_weights(data_format: str) -> None:
    layer = Conv2D(4, 3, data_format=data_format, name=f"conv_{data_format}")
    good = (2, 6, 6, 3) if data_format == "channels_last" else (2, 3, 6, 6)
    layer(rand(*good))
    before = layer.get_weights()
    axis = -1 if data_format == "channels_last" else 1
    changed = list(good)
    changed[axis] = 5
    shown = re.escape(str(tuple(changed)))
    with pytest.raises(ValueError, match=rf"'conv_{data_format}'.*axis {axis}.*value 3.*{shown}"):
        layer(rand(*changed))
    with pytest.raises(ValueError, match=rf"'conv_{data_format}'.*expected ndim=4, found ndim=5"):
        layer(rand(2, 6, 6, 3, 1))
    for old, new in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("cls", POOLS + GLOBAL_POOLS, ids=lambda c: c.__name__)
def test_pooling_wrong_rank_input(cls: type) -> None:
    rank = RANK[cls]
    layer = cls(2) if cls.__name__.startswith("Average") else cls()
    with pytest.raises(ValueError, match=rf"'{layer.name}'.*expected ndim={rank + 2}, found ndim={rank + 3}"):
        layer(rand(*(2,) * (rank + 3)))


def test_integer_inputs_are_convolved_in_the_layer_dtype() -> None:
    layer = Conv1D(1, 2, kernel_initializer="ones")
    out = layer(torch.arange(4).reshape(1, 4, 1))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(out).ravel(), [1.0, 3.0, 5.0])


def test_causal_output_depends_only_on_the_past() -> None:
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = torch.from_numpy(rand(1, 12, 2)).requires_grad_(True)
    out = layer(x)
    (grad,) = torch.autograd.grad(out[0, 5].sum(), [x])
    assert grad[0, 6:].abs().sum() == 0
    assert grad[0, :6].abs().sum() > 0


def test_general_classes_round_trip_their_rank() -> None:
    conv = Conv(3, 2, 2)
    assert conv.get_config()["rank"] == 3
    again = layers.deserialize(json_normalized(layers.serialize(conv)))
    assert type(again) is Conv and again.rank == 3 and again.kernel_size == (2, 2, 2)
    pool = Pooling(2, "average", 3, padding="same")
    again = layers.deserialize(json_normalized(layers.serialize(pool)))
    assert (again.rank, again.pool_type, again.pool_size) == (2, "average", (3, 3))
    assert "rank" not in Conv2D(1, 1).get_config() and "pool_type" not in MaxPooling1D().get_config()
    glob = GlobalPooling(3, "max", keepdims=True)
    assert layers.deserialize(layers.serialize(glob)).get_config() == glob.get_config()


def test_same_padding_output_sizes_agree_with_ceil() -> None:
    for size, kernel, stride in itertools.product(range(1, 9), range(1, 5), range(1, 4)):
        layer = Conv1D(1, kernel, strides=stride, padding="same")
        assert layer(rand(1, size, 1)).shape[1] == math.ceil(size / stride), (size, kernel, stride)
        pool = MaxPooling1D(kernel, strides=stride, padding="same")
        assert pool(rand(1, size, 1)).shape[1] == math.ceil(size / stride), (size, kernel, stride)
