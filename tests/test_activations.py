"""Activations: values vs NumPy formulas and vs Keras, arguments, and get/serialize/deserialize.

Keras runs the same ``torch.nn.functional`` calls on its torch backend, so the
Keras comparison asks for identical values, not approximate ones. The NumPy
references are computed in float64 from the textbook formulas.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

from weightwise import activations, backend
from weightwise.activations import linear, relu, softmax, sparsemax
from weightwise.serialization import custom_object_scope, register_keras_serializable

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
DTYPES = [np.float32, np.float64]
NP_TOL = {np.float32: {"rtol": 2e-6, "atol": 1e-6}, np.float64: {"rtol": 1e-9, "atol": 1e-12}}


def inputs(dtype: Any, shape: tuple[int, ...] = (6, 24), seed: int = 0) -> np.ndarray:
    """Normal values spread over magnitudes 1e-3 .. 1e3, plus the kinks of every function."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, size=shape)
    kinks = [0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, 0.5, -0.5, 20.0, -20.0, 25.0, 100.0, -100.0, 1e-7, -1e-7]
    flat = x.reshape(-1)
    flat[: len(kinks)] = kinks
    return flat.reshape(shape).astype(dtype)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def np_softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def np_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_sparsemax(x: np.ndarray) -> np.ndarray:
    """Projection of each row onto the probability simplex (Martins & Astudillo, 2016)."""
    out = np.empty_like(x)
    for i, row in enumerate(x.reshape(-1, x.shape[-1])):
        z = np.sort(row)[::-1]
        cumsum = np.cumsum(z)
        k = np.arange(1, len(z) + 1)
        support = 1 + k * z > cumsum
        k_max = k[support][-1]
        tau = (cumsum[k_max - 1] - 1) / k_max
        out.reshape(-1, x.shape[-1])[i] = np.maximum(row - tau, 0)
    return out


_erf = np.vectorize(math.erf)

NUMPY_FORMULAS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "relu6": lambda x: np.clip(x, 0, 6),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "celu": lambda x: np.maximum(0, x) + np.minimum(0, np.expm1(np.minimum(x, 0))),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x: x * np_sigmoid(x),
    "swish": lambda x: x * np_sigmoid(x),
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "mish": lambda x: x * np.tanh(np_softplus(x)),
    "sigmoid": np_sigmoid,
    "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
    "log_sigmoid": lambda x: -np.logaddexp(0.0, -x),
    "tanh": np.tanh,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "softplus": np_softplus,
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x < 1, (x + 1) ** 2 / 4, x)),
    "squareplus": lambda x: (x + np.sqrt(x**2 + 4)) / 2,
    "exponential": np.exp,
    "linear": lambda x: x,
    "tanh_shrink": lambda x: x - np.tanh(x),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)),
    "softmax": np_softmax,
    "log_softmax": np_log_softmax,
    "sparsemax": np_sparsemax,
}

# tanh_shrink cancels near 0: a few float32 ulps of tanh(x) remain.
EXTRA_ATOL = {"tanh_shrink": {np.float32: 1e-6, np.float64: 1e-15}}
# squareplus cancels for large negative x (x + sqrt(x**2 + b)), in Keras's formula as
# here: its error is a few ulps of |x|, not of the result.
ERROR_SCALES_WITH_X = {"squareplus"}


def assert_close(out: np.ndarray, expected: np.ndarray, x: np.ndarray, name: str, dtype: Any) -> None:
    if name in ERROR_SCALES_WITH_X:
        bound = 4 * np.finfo(dtype).eps * (np.abs(x.astype(np.float64)) + 1)
        assert np.all(np.abs(out.astype(np.float64) - expected) <= bound)
        return
    tol = dict(NP_TOL[dtype])
    tol["atol"] = max(tol["atol"], EXTRA_ATOL.get(name, {}).get(dtype, 0.0))
    np.testing.assert_allclose(out, expected.astype(dtype), **tol)


@pytest.mark.parametrize("name", sorted(NUMPY_FORMULAS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_numpy_formulas(name: str, dtype: Any) -> None:
    x = inputs(dtype)
    out = getattr(activations, name)(torch.from_numpy(x))
    assert out.dtype == torch.from_numpy(x).dtype
    assert out.shape == x.shape
    with np.errstate(over="ignore"):
        expected = NUMPY_FORMULAS[name](x.astype(np.float64))
        assert_close(to_numpy(out), expected, x, name, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_arguments_match_numpy_formulas(dtype: Any) -> None:
    x = inputs(dtype)
    t = torch.from_numpy(x)
    x64 = x.astype(np.float64)
    tol = NP_TOL[dtype]
    cases = [
        (relu(t, negative_slope=0.1), np.where(x64 >= 0, x64, 0.1 * x64)),
        (relu(t, max_value=2.5), np.clip(x64, 0, 2.5)),
        (relu(t, max_value=6), np.clip(x64, 0, 6)),
        (relu(t, threshold=1.5), np.where(x64 > 1.5, x64, 0)),
        (activations.leaky_relu(t, negative_slope=0.5), np.where(x64 >= 0, x64, 0.5 * x64)),
        (activations.elu(t, alpha=2.0), np.where(x64 > 0, x64, 2.0 * np.expm1(np.minimum(x64, 0)))),
        (activations.celu(t, alpha=2.0), np.maximum(0, x64) + np.minimum(0, 2.0 * np.expm1(np.minimum(x64, 0) / 2))),
        (activations.gelu(t, approximate=True),
         0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))),
        (activations.hard_shrink(t, threshold=2.0), np.where(np.abs(x64) > 2, x64, 0)),
        (activations.soft_shrink(t, threshold=2.0), np.where(x64 > 2, x64 - 2, np.where(x64 < -2, x64 + 2, 0))),
        (activations.threshold(t, 1.0, -5.0), np.where(x64 > 1.0, x64, -5.0)),
        (softmax(t, axis=0), np_softmax(x64, axis=0)),
        (activations.log_softmax(t, axis=0), np_log_softmax(x64, axis=0)),
        (softmax(t, axis=None), np_softmax(x64.reshape(-1)).reshape(x.shape)),
        (activations.glu(t), x64[:, :12] * np_sigmoid(x64[:, 12:])),
        (activations.glu(t, axis=0), x64[:3] * np_sigmoid(x64[3:])),
    ]
    for out, expected in cases:
        assert out.dtype == t.dtype
        with np.errstate(over="ignore"):
            np.testing.assert_allclose(to_numpy(out), expected.astype(dtype), **tol)
    assert_close(to_numpy(activations.squareplus(t, b=1.0)), (x64 + np.sqrt(x64**2 + 1)) / 2, x, "squareplus", dtype)


def test_softmax_over_several_axes_normalizes_them_jointly() -> None:
    x = inputs(np.float64, shape=(3, 4, 5))
    out = to_numpy(softmax(torch.from_numpy(x), axis=(0, 2)))
    np.testing.assert_allclose(out.sum(axis=(0, 2)), np.ones(4), rtol=1e-12)
    moved = np.moveaxis(x, 1, 0).reshape(4, -1)
    np.testing.assert_allclose(np.moveaxis(out, 1, 0).reshape(4, -1), np_softmax(moved), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(softmax(torch.from_numpy(x), axis=(-1, 0))), out, rtol=1e-15)


def test_softmax_over_a_size_one_axis_warns_as_keras() -> None:
    with pytest.warns(UserWarning, match="This axis has size 1"):
        out = softmax(torch.ones((3, 1)))
    assert torch.equal(out, torch.ones((3, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        softmax(torch.ones((3, 2)))


def test_sparsemax_is_a_distribution_with_exact_zeros() -> None:
    x = inputs(np.float64, shape=(20, 7), seed=3) / 100
    out = to_numpy(sparsemax(torch.from_numpy(x)))
    np.testing.assert_allclose(out.sum(axis=-1), np.ones(20), rtol=1e-12)
    assert np.all(out >= 0) and np.any(out == 0)
    np.testing.assert_allclose(out, np_sparsemax(x), rtol=1e-12, atol=1e-15)
    cols = to_numpy(sparsemax(torch.from_numpy(x.T.copy()), axis=0))
    np.testing.assert_allclose(cols, out.T, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_half_precision_softmax_is_computed_in_float32_and_cast_back(name: str) -> None:
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float16)
    out = getattr(activations, name)(x)
    assert out.dtype == torch.float16
    expected = getattr(activations, name)(x.float()).half()
    assert torch.equal(out, expected)


def test_integer_inputs_are_computed_in_floatx() -> None:
    ints = torch.tensor([-2, 0, 3], dtype=torch.int32)
    assert relu(ints).dtype == torch.float32
    assert activations.sigmoid(ints).dtype == torch.float32
    np.testing.assert_array_equal(to_numpy(relu(ints)), [0.0, 0.0, 3.0])
    backend.set_floatx("float64")
    try:
        assert activations.tanh([1, 2]).dtype == torch.float64
    finally:
        backend.set_floatx("float32")


def test_lists_and_arrays_are_accepted() -> None:
    assert torch.equal(relu([-1.0, 2.0]), torch.tensor([0.0, 2.0]))
    assert torch.equal(relu(np.array([-1.0, 2.0])), torch.tensor([0.0, 2.0], dtype=torch.float64))


def test_linear_returns_a_tensor_unchanged() -> None:
    t = torch.tensor([1.0, -2.0])
    assert linear(t) is t
    assert torch.equal(linear([1.0, -2.0]), t)


def test_gradients_flow() -> None:
    x = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    for name in ["relu", "gelu", "silu", "mish", "softmax", "elu", "sparsemax"]:
        x.grad = None
        getattr(activations, name)(x).sum().backward()
        assert x.grad is not None and bool(torch.isfinite(x.grad).all()), name


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: relu([1.0], negative_slope="0.1"), r"argument `negative_slope`.*Received: negative_slope='0.1'"),
        (lambda: relu([1.0], max_value="6"), r"argument `max_value`.*Received: max_value='6'"),
        (lambda: relu([1.0], threshold=None), r"argument `threshold`.*Received: threshold=None"),
        (lambda: activations.elu([1.0], alpha=None), r"argument `alpha`.*Received: alpha=None"),
        (lambda: activations.gelu([1.0], approximate="tanh"), r"argument `approximate`.*Received: approximate='tanh'"),
        (lambda: softmax([[1.0, 2.0]], axis=2), r"argument `axis`.*Received: axis=2"),
        (lambda: softmax([[1.0, 2.0]], axis=(0, 5)), r"argument `axis`.*Received: axis=5"),
        (lambda: activations.glu([1.0, 2.0, 3.0]), r"axis size must be divisible by 2. Received: x.shape=\(3,\)"),
        (lambda: activations.threshold([1.0], "a", 0.0), r"argument `threshold`.*Received: threshold='a'"),
    ],
)
def test_invalid_arguments_are_rejected_naming_them(call: Callable[[], Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


# --------------------------------------------------------------------------------------
# get / serialize / deserialize
# --------------------------------------------------------------------------------------

BUILTIN_NAMES = [n for n in activations.__all__ if n not in {"get", "serialize", "deserialize"}]
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_names_round_trip(name: str) -> None:
    fn = getattr(activations, name)
    canonical = ALIASES.get(name, name)
    assert fn.__name__ == canonical
    assert activations.get(name) is fn
    assert activations.deserialize(name) is fn
    assert activations.serialize(fn) == canonical
    assert activations.get(activations.serialize(fn)) is fn
    assert activations.get(fn) is fn


def test_aliases_are_the_same_functions() -> None:
    assert activations.swish is activations.silu
    assert activations.hard_swish is activations.hard_silu


def test_get_none_is_linear() -> None:
    assert activations.get(None) is linear


def test_get_passes_callables_through() -> None:
    class Scaled:
        def __call__(self, x: Any) -> Any:
            return 2 * x

    obj = Scaled()
    assert activations.get(obj) is obj
    assert activations.get(Scaled) is Scaled
    assert activations.get(torch.tanh) is torch.tanh


@pytest.mark.parametrize("identifier", [42, 1.5, ["relu"], object(), b"relu"])
def test_uninterpretable_identifiers_raise_naming_them(identifier: object) -> None:
    message = f"Could not interpret activation function identifier: {identifier!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        activations.get(identifier)


@pytest.mark.parametrize("identifier", ["rellu", "Relu", "swishh", {"class_name": "function", "config": "nope"}])
def test_unknown_names_raise_naming_them(identifier: Any) -> None:
    with pytest.raises(ValueError, match=r"Unknown activation: '(rellu|Relu|swishh|nope)'"):
        activations.get(identifier)


def test_function_config_dicts_deserialize() -> None:
    for module in ("builtins", "keras.activations", None):
        config = {"module": module, "class_name": "function", "config": "gelu", "registered_name": "function"}
        assert activations.deserialize(config) is activations.gelu
        assert activations.get(config) is activations.gelu
    assert activations.deserialize({"class_name": "relu", "config": None}) is relu


def test_registered_custom_activation_round_trips() -> None:
    @register_keras_serializable(package="ActivationTests")
    def doubled(x: Any) -> Any:
        return 2 * x

    config = activations.serialize(doubled)
    assert isinstance(config, dict)
    assert config["class_name"] == "function"
    assert config["config"] == "ActivationTests>doubled"
    assert activations.deserialize(json.loads(json.dumps(config))) is doubled
    assert activations.get("ActivationTests>doubled") is doubled
    # The form Keras writes for a registered function.
    keras_form = {"module": "builtins", "class_name": "function", "config": "ActivationTests>doubled",
                  "registered_name": "function"}
    assert activations.deserialize(keras_form) is doubled


def test_a_function_named_like_a_builtin_is_not_taken_for_it() -> None:
    def relu(x: Any) -> Any:  # noqa: F811 - shadows the built-in on purpose
        return x

    config = activations.serialize(relu)
    assert isinstance(config, dict) and config["config"] == "relu"


def test_custom_objects_shadow_builtins_when_deserializing() -> None:
    def my_relu(x: Any) -> Any:
        return x

    assert activations.deserialize("relu", custom_objects={"relu": my_relu}) is my_relu
    with custom_object_scope({"relu": my_relu}):
        assert activations.deserialize({"class_name": "function", "config": "relu"}) is my_relu
    assert activations.deserialize("relu") is relu


def test_lambdas_serialize_as_keras_does_and_load_only_unsafely() -> None:
    with pytest.warns(UserWarning, match="lambda"):
        config = activations.serialize(lambda x: x)
    assert config["class_name"] == "__lambda__"
    with pytest.raises(ValueError, match="arbitrary code execution"):
        activations.deserialize(config)
    assert activations.serialize(None) is None


# --------------------------------------------------------------------------------------
# Keras conformance
# --------------------------------------------------------------------------------------

KWARG_CASES: list[tuple[str, dict[str, Any]]] = [
    ("relu", {"negative_slope": 0.3}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"max_value": 2.5}),
    ("relu", {"threshold": 1.0}),
    ("relu", {"max_value": 2.5, "threshold": 1.0}),
    ("relu", {"negative_slope": 0.1, "threshold": -1.0, "max_value": 3.0}),
    ("relu", {"negative_slope": 0.2, "max_value": 4.0}),
    ("relu", {"threshold": -2.0}),
    ("leaky_relu", {"negative_slope": 0.01}),
    ("elu", {"alpha": 0.5}),
    ("celu", {"alpha": 3.0}),
    ("gelu", {"approximate": True}),
    ("softmax", {"axis": 0}),
    ("softmax", {"axis": None}),
    ("softmax", {"axis": (0, 1)}),
    ("log_softmax", {"axis": 0}),
    ("log_softmax", {"axis": None}),
    ("log_softmax", {"axis": (0, 1)}),
    ("glu", {"axis": 0}),
    ("hard_shrink", {"threshold": 2.0}),
    ("soft_shrink", {"threshold": 2.0}),
    ("squareplus", {"b": 1.0}),
    ("threshold", {"threshold": 0.5, "default_value": -1.0}),
]


def keras_activation(keras: Any, name: str) -> Callable[..., Any]:
    return getattr(keras.activations, name)


def assert_equal_to_keras(keras: Any, name: str, x: np.ndarray, **kwargs: Any) -> None:
    mine = getattr(activations, name)(torch.from_numpy(x), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = keras_activation(keras, name)(keras.ops.convert_to_tensor(x), **kwargs)
    assert mine.dtype == reference.dtype
    np.testing.assert_array_equal(to_numpy(mine), to_numpy(reference))


@pytest.mark.parametrize("name", [n for n in BUILTIN_NAMES if n not in {"threshold", "sparsemax"}])
@pytest.mark.parametrize("dtype", DTYPES)
def test_values_equal_keras(name: str, dtype: Any) -> None:
    keras = keras_or_skip()
    assert_equal_to_keras(keras, name, inputs(dtype))
    assert_equal_to_keras(keras, name, inputs(dtype, shape=(2, 3, 8), seed=1))


@pytest.mark.parametrize("name, kwargs", KWARG_CASES, ids=[f"{n}-{k}" for n, k in KWARG_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_values_with_arguments_equal_keras(name: str, kwargs: dict[str, Any], dtype: Any) -> None:
    keras = keras_or_skip()
    assert_equal_to_keras(keras, name, inputs(dtype), **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparsemax_equals_keras_when_one_value_takes_everything(dtype: Any) -> None:
    keras = keras_or_skip()
    x = inputs(dtype, shape=(6, 8)) / 1000
    x[:, 3] = 5.0  # one clear winner per row: support of size 1
    assert_equal_to_keras(keras, "sparsemax", x)


def test_keras_public_activations_all_exist_here() -> None:
    keras = keras_or_skip()
    names = {n for n in dir(keras.activations) if not n.startswith("_")}
    assert names == set(activations.__all__)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_serialized_form_equals_keras(name: str) -> None:
    keras = keras_or_skip()
    theirs = keras_activation(keras, name)
    ours = getattr(activations, name)
    assert activations.serialize(ours) == keras.activations.serialize(theirs)
    # What Keras writes, we read; what we write, Keras reads.
    assert activations.deserialize(keras.activations.serialize(theirs)) is ours
    assert activations.deserialize(keras.saving.serialize_keras_object(theirs)) is ours
    assert keras.activations.get(activations.serialize(ours)) is theirs
    assert activations.get(name) is ours and keras.activations.get(name) is theirs


def test_dense_layer_activation_configs_load() -> None:
    keras = keras_or_skip()
    for name in ["relu", "softmax", "swish", "linear"]:
        config = keras.layers.Dense(2, activation=name).get_config()["activation"]
        assert activations.get(config) is activations.get(name)
    assert keras.layers.Dense(2, activation=None).get_config()["activation"] == activations.serialize(linear)


class TestDeliberateDifferences:
    """Where weightwise differs from Keras on purpose; each test pins both sides."""

    def test_sparsemax_sums_to_one_where_keras_does_not(self) -> None:
        keras = keras_or_skip()
        x = np.array([0.5, 0.8, 0.1], dtype=np.float32)
        theirs = to_numpy(keras.activations.sparsemax(keras.ops.convert_to_tensor(x)))
        np.testing.assert_allclose(theirs, [0.0, 0.25, 0.0], atol=1e-7)
        np.testing.assert_allclose(to_numpy(sparsemax(x)), [0.35, 0.65, 0.0], atol=1e-7)

    def test_integer_inputs_become_float(self) -> None:
        keras = keras_or_skip()
        ints = np.array([-2, 3], dtype=np.int32)
        assert keras.activations.relu(keras.ops.convert_to_tensor(ints)).dtype == torch.int32
        assert relu(ints).dtype == torch.float32

    def test_a_function_config_naming_a_builtin_under_keras_activations(self) -> None:
        keras = keras_or_skip()
        config = {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": None}
        assert keras.activations.deserialize(config) is None
        assert activations.deserialize(config) is relu

    def test_bad_arguments_are_refused(self) -> None:
        keras = keras_or_skip()
        keras.activations.gelu(keras.ops.convert_to_tensor([1.0]), approximate="tanh")
        with pytest.raises(ValueError, match="approximate"):
            activations.gelu([1.0], approximate="tanh")
