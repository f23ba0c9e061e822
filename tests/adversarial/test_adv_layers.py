"""Adversarial cases for layers, models' layer-side API, activations and initializers.

Every case ends in a correct result (checked against NumPy, Keras or a stated rule) or a
clear error whose message names the argument and echoes the value, with the layer or
model exactly as it was (``state=[...]``). The named ``test_regression_*`` tests each
reproduce one bug of issue 11.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from harness import clear_error, correct
from hypothesis import given, settings
from hypothesis import strategies as st

from weightwise import activations, binding, initializers, layers
from weightwise.layers import (
    Activation,
    ActivityRegularization,
    Add,
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    Concatenate,
    Conv1D,
    Conv2D,
    Conv3D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    Input,
    InputLayer,
    Layer,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    Reshape,
)
from weightwise.models import Model, Sequential

HUGE = 10**400
NAN = float("nan")
INF = float("inf")
REAL_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32,
               torch.int64, torch.uint8, torch.bool]
ALL_DTYPES = [*REAL_DTYPES, torch.complex64]


def echo(value: Any) -> str:
    """The part of ``repr(value)`` a message must echo (long values are cut)."""
    return repr(value)[:30]


def ids(value: Any) -> str:
    return repr(value)[:40]


def seeded(seed: int = 0) -> dict[str, Any]:
    return {"kernel_initializer": initializers.GlorotUniform(seed=seed),
            "bias_initializer": initializers.RandomUniform(seed=seed + 1)}


def ramp(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Deterministic values 0, 1, 2, ... (mod 5) of ``shape``, distinct enough to catch mix-ups."""
    values = torch.arange(math.prod(shape), dtype=torch.float64).remainder(5).reshape(shape)
    return values.to(dtype)


# -- every layer, with a valid input of each rank -------------------------------------
SINGLE_INPUT_LAYERS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "Dense": (lambda: Dense(3, **seeded()), (2, 4)),
    "Conv1D": (lambda: Conv1D(2, 2, **seeded()), (2, 5, 3)),
    "Conv2D": (lambda: Conv2D(2, 2, **seeded()), (2, 4, 4, 3)),
    "Conv3D": (lambda: Conv3D(2, 2, **seeded()), (2, 3, 3, 3, 2)),
    "MaxPooling1D": (lambda: MaxPooling1D(2), (2, 4, 3)),
    "MaxPooling2D": (lambda: MaxPooling2D(2), (2, 4, 4, 3)),
    "MaxPooling3D": (lambda: MaxPooling3D(2), (2, 4, 4, 4, 2)),
    "AveragePooling1D": (lambda: AveragePooling1D(2), (2, 4, 3)),
    "AveragePooling2D": (lambda: AveragePooling2D(2), (2, 4, 4, 3)),
    "AveragePooling3D": (lambda: AveragePooling3D(2), (2, 4, 4, 4, 2)),
    "GlobalMaxPooling1D": (lambda: GlobalMaxPooling1D(), (2, 4, 3)),
    "GlobalMaxPooling2D": (lambda: GlobalMaxPooling2D(), (2, 4, 4, 3)),
    "GlobalMaxPooling3D": (lambda: GlobalMaxPooling3D(), (2, 3, 3, 3, 2)),
    "GlobalAveragePooling1D": (lambda: GlobalAveragePooling1D(), (2, 4, 3)),
    "GlobalAveragePooling2D": (lambda: GlobalAveragePooling2D(), (2, 4, 4, 3)),
    "GlobalAveragePooling3D": (lambda: GlobalAveragePooling3D(), (2, 3, 3, 3, 2)),
    "Flatten": (lambda: Flatten(), (2, 3, 4)),
    "Reshape": (lambda: Reshape((-1, 2)), (2, 3, 4)),
    "Activation": (lambda: Activation("relu"), (2, 3)),
    "Dropout": (lambda: Dropout(0.5, seed=1), (2, 3)),
}
WEIGHTED = ("Dense", "Conv1D", "Conv2D", "Conv3D")


# =====================================================================================
# Regression tests: one per bug of issue 11 in this area
# =====================================================================================
def test_regression_dense_on_1d_input_leaves_layer_unbuilt() -> None:
    """§2: Dense(3)(torch.ones(5)) raised, but had built the layer from the batch size."""
    layer = Dense(3)
    clear_error(lambda: layer(torch.ones(5)), "Input 0", "ndim=1", "(5,)", state=[layer])
    assert not layer.built and layer.weights == [] and binding.rule_of(layer, "kernel") is None
    assert layer(torch.ones(2, 4)).shape == (2, 3)  # and it still builds from a good call


def test_regression_failed_direct_build_leaves_layer_unbuilt() -> None:
    layer = Dense(3, kernel_regularizer="l2")
    clear_error(lambda: layer.build((5,)), "Input 0", "min_ndim=2", state=[layer])
    clear_error(lambda: layer.build((None, -4)), "input_shape", "(None, -4)", state=[layer])
    clear_error(lambda: layer.build("abc"), "input_shape", "'abc'", state=[layer])
    layer.build((None, 4))
    assert layer.built and len(layer.weights) == 2
    assert layer(torch.ones(1, 4)).shape == (1, 3)  # a direct build counts: no second build


class _Refused:
    """Stands for a rule that binding refuses (such as a norm axis beyond the weight's rank)."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w


@pytest.fixture
def bind_refuses_marked_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    real_bind = binding.bind

    def bind(module: torch.nn.Module, name: str, **rules: Any) -> None:
        if isinstance(rules.get("constraint"), _Refused):
            raise ValueError(  # noqa: TRY004 - binding's own error for a bad rule
                f"Invalid value for argument `axis`: out of range for weight {name!r}. Received: axis=4")
        real_bind(module, name, **rules)

    monkeypatch.setattr(binding, "bind", bind)


@pytest.mark.usefixtures("bind_refuses_marked_rules")
@pytest.mark.parametrize("make", [
    lambda: Dense(3, bias_constraint=_Refused()),
    lambda: Dense(3, kernel_constraint=_Refused()),
    lambda: Conv1D(2, 2, bias_constraint=_Refused()),
], ids=["dense-bias", "dense-kernel", "conv-bias"])
def test_regression_failed_bind_during_build_leaves_layer_unbuilt_and_unbound(make: Any) -> None:
    layer = make()
    x = torch.ones(2, 4) if isinstance(layer, Dense) else torch.ones(2, 4, 3)
    clear_error(lambda: layer(x), "axis", "4", state=[layer])
    assert not layer.built and list(layer.named_parameters()) == [] and binding.rule_of(layer, "kernel") is None


@pytest.mark.usefixtures("bind_refuses_marked_rules")
def test_regression_failed_bind_in_add_weight_removes_the_weight() -> None:
    layer = Layer(name="holder")
    layer.add_weight(name="kept", shape=(2,), regularizer="l2")
    clear_error(lambda: layer.add_weight(name="w", shape=(2,), constraint=_Refused()), "axis", "4", state=[layer])
    assert [n for n, _ in layer.named_parameters()] == ["kept"]


def test_regression_raising_initializer_leaves_layer_unbuilt() -> None:
    def boom(shape: Any, dtype: Any = None) -> torch.Tensor:
        raise ValueError(f"Invalid value for argument `shape`: refused. Received: shape={shape}")

    layer = Dense(3, kernel_regularizer="l1", bias_initializer=boom)
    clear_error(lambda: layer(torch.ones(2, 4)), "shape", "(3,)", state=[layer])
    assert not layer.built and binding.rule_of(layer, "kernel") is None


@pytest.mark.parametrize("name", list(SINGLE_INPUT_LAYERS))
def test_regression_every_layer_unchanged_by_a_failed_first_call(name: str) -> None:
    layer = SINGLE_INPUT_LAYERS[name][0]()
    # Stateless layers are built at construction, as in Keras; the others stay unbuilt.
    built_at_construction = layer.built
    bad = torch.ones(()) if name != "Activation" and name != "Dropout" else "x"
    clear_error(lambda: layer(bad), "Input 0" if isinstance(bad, torch.Tensor) else "inputs", state=[layer])
    assert layer.built == built_at_construction


def test_regression_sequential_failed_first_call_leaves_every_layer_unbuilt() -> None:
    first, second = Dense(4, kernel_regularizer="l2"), Reshape((5,))
    model = Sequential([first, second])
    clear_error(lambda: model(torch.ones(2, 3)), "target_shape", "(5,)", state=[model, first, second])
    assert not model.built and not first.built and first.weights == []
    model.pop()  # without the layer that failed, the model builds and runs
    assert model(torch.ones(2, 3)).shape == (2, 4)


def test_regression_sequential_constructor_with_failing_build_leaves_the_given_layers_unbuilt() -> None:
    dense = Dense(4)
    clear_error(lambda: Sequential([Input(shape=(3,)), dense, Reshape((5,))]), "target_shape", "(5,)", state=[dense])
    assert not dense.built


def test_regression_sequential_add_that_fails_to_build_changes_nothing() -> None:
    model = Sequential([Input(shape=(3,)), Dense(4)])
    clear_error(lambda: model.add(Reshape((5,))), "target_shape", "(5,)", state=[model])
    assert len(model.layers) == 1 and model.built


def test_regression_functional_model_unchanged_by_bad_calls() -> None:
    x = Input(shape=(3,))
    model = Model(x, Dense(2)(x))
    clear_error(lambda: model("abc"), "inputs", "'abc'", state=[model])
    clear_error(lambda: model(None), "inputs", "None", state=[model])
    clear_error(lambda: model(torch.ones(2, 4)), "Input 0", "(2, 4)", state=[model])


@pytest.mark.parametrize("kind", ["layer", "sequential", "functional", "subclassed"])
def test_regression_get_weights_returns_copies_that_restore_after_fit(kind: str) -> None:
    """§3: get_weights() shared memory with the weights, so the snapshot trained along."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    if kind == "layer":
        model: Any = Dense(2, input_dim=3)
    elif kind == "sequential":
        model = Sequential([Input(shape=(3,)), Dense(4, activation="relu"), Dense(2)])
    elif kind == "functional":
        inputs = Input(shape=(3,))
        model = Model(inputs, Dense(2)(Dense(4, activation="relu")(inputs)))
    else:
        class Net(Model):
            def __init__(self) -> None:
                super().__init__()
                self.hidden, self.out = Dense(4, activation="relu"), Dense(2)

            def call(self, inputs: torch.Tensor) -> torch.Tensor:
                return self.out(self.hidden(inputs))

        model = Net()
        model(x)
    saved = model.get_weights()
    copies = [w.copy() for w in saved]
    if kind == "layer":
        with torch.no_grad():
            for w in model.weights:
                w.add_(1.0)
    else:
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(saved, copies)), "the snapshot changed with the weights"
    assert not all(np.array_equal(a, b) for a, b in zip(saved, model.get_weights())), "nothing trained"
    model.set_weights(saved)
    correct(model.get_weights, lambda now: all(np.array_equal(a, b) for a, b in zip(now, copies)))


def test_regression_get_weights_copies_even_for_bfloat16() -> None:
    layer = Dense(2, input_dim=3, dtype="bfloat16")
    saved = layer.get_weights()
    with torch.no_grad():
        layer.kernel.add_(1.0)
    correct(lambda: saved[0], lambda w: not np.array_equal(w, layer.get_weights()[0]))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool])
def test_regression_dense_on_int_and_bool_inputs_casts_like_keras(dtype: torch.dtype) -> None:
    """§4: Dense on int or bool input failed inside torch; Keras computes it in float32."""
    layer = Dense(3, **seeded())
    x = ramp(4, 5, dtype=dtype)
    expected = x.to(torch.float32).numpy() @ ops_np(layer, x)[0] + ops_np(layer, x)[1]
    correct(lambda: layer(x), lambda out: out.dtype == torch.float32 and np.allclose(out.detach().numpy(), expected,
                                                                                      rtol=1e-6, atol=1e-6))


def ops_np(layer: Dense, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    if not layer.built:
        layer.build(tuple(x.shape))
    return layer.kernel.detach().numpy(), layer.bias.detach().numpy()


def test_regression_dense_on_numpy_int_input() -> None:
    layer = Dense(2, **seeded())
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    kernel, bias = ops_np(layer, torch.as_tensor(x))
    correct(lambda: layer(x), lambda out: np.allclose(out.detach().numpy(), x.astype(np.float32) @ kernel + bias))


def test_regression_dense_on_0d_input_is_keras_s_error() -> None:
    layer = Dense(3)
    clear_error(lambda: layer(torch.tensor(1.0)), "Input 0", "found ndim=0", "Full shape received: ()", state=[layer])
    clear_error(lambda: layer(1.0), "Input 0", "found ndim=0", state=[layer])


def test_regression_reshape_minus_one_on_an_empty_batch() -> None:
    correct(lambda: Reshape((-1, 3))(torch.ones(0, 6)), lambda out: out.shape == (0, 2, 3))
    correct(lambda: Reshape((-1, 3))(torch.ones(0, 0)), lambda out: out.shape == (0, 0, 3))
    correct(lambda: Reshape((0, 3))(torch.ones(2, 0)), lambda out: out.shape == (2, 0, 3))
    clear_error(lambda: Reshape((0, -1)), "target_shape", "(0, -1)")


def test_regression_concatenate_axis_out_of_range() -> None:
    layer = Concatenate(axis=5)
    clear_error(lambda: layer([torch.ones(2, 3), torch.ones(2, 3)]), "axis", "axis=5", state=[layer])
    clear_error(lambda: Concatenate()([torch.ones(()), torch.ones(())]), "axis", "rank 0")


def test_regression_pooling_over_zero_positions() -> None:
    for layer, x in [(MaxPooling2D(5), torch.ones(1, 3, 3, 2)), (AveragePooling1D(3), torch.ones(1, 2, 2)),
                     (MaxPooling1D(2, padding="same"), torch.ones(1, 0, 2))]:
        clear_error(lambda: layer(x), "pool_size", str(tuple(x.shape)), state=[layer])  # noqa: B023
    for layer in (GlobalMaxPooling1D(), GlobalAveragePooling1D()):
        clear_error(lambda: layer(torch.ones(1, 0, 2)), "inputs", "(1, 0, 2)", state=[layer])  # noqa: B023
    correct(lambda: MaxPooling2D(2)(torch.ones(0, 4, 4, 3)), lambda out: out.shape == (0, 2, 2, 3))


@pytest.mark.parametrize("value", ["yes", 1, 0, 2.0, [True], torch.tensor([True, False]), "False"], ids=ids)
def test_regression_training_flag_must_be_a_bool(value: Any) -> None:
    layer = Dropout(0.5)
    clear_error(lambda: layer(torch.ones(2, 3), training=value), "training", echo(value)[:6], state=[layer])


@pytest.mark.parametrize("value", [True, False, None, np.True_, torch.tensor(True)], ids=ids)
def test_training_flag_accepts_bools_none_and_bool_tensors(value: Any) -> None:
    layer = Dropout(0.999, seed=0)
    dropped = bool(value) if value is not None else False
    correct(lambda: layer(torch.ones(1, 200), training=value),
            lambda out: bool((out == 0).any()) == dropped)


# =====================================================================================
# Keras parity (the reference implementation)
# =====================================================================================
@pytest.fixture(scope="module")
def keras() -> Any:
    from helpers import keras_or_skip

    return keras_or_skip()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float64])
def test_dense_dtypes_match_keras(keras: Any, dtype: torch.dtype) -> None:
    ours = Dense(3, **seeded())
    theirs = keras.layers.Dense(3)
    x = ramp(2, 4, dtype=dtype)
    ours.build((None, 4))
    theirs.build((None, 4))
    theirs.set_weights(ours.get_weights())
    expected = theirs(x)
    correct(lambda: ours(x), lambda out: out.dtype == expected.dtype
            and np.allclose(out.detach().numpy(), expected.detach().cpu().numpy(), rtol=1e-6))


@pytest.mark.parametrize("make, shape", [
    (lambda L: L.Reshape((-1, 3)), (0, 6)),
    (lambda L: L.Reshape((0, 3)), (2, 0)),
    (lambda L: L.Flatten(), (0, 2, 3)),
    (lambda L: L.Flatten(), (3,)),
    (lambda L: L.GlobalMaxPooling1D(), (2, 3, 2)),
    (lambda L: L.MaxPooling1D(2), (0, 4, 2)),
    (lambda L: L.Dense(2, kernel_initializer="ones"), (0, 3)),
], ids=["reshape-empty", "reshape-zero", "flatten-empty", "flatten-1d", "gmp", "maxpool-empty", "dense-empty"])
def test_empty_and_edge_shapes_match_keras(keras: Any, make: Any, shape: tuple[int, ...]) -> None:
    x = ramp(*shape, dtype=torch.int64 if "gmp" in make.__code__.co_names else torch.float32)
    expected = make(keras.layers)(x)
    correct(lambda: make(layers)(x), lambda out: tuple(out.shape) == tuple(expected.shape)
            and out.dtype == expected.dtype and np.array_equal(out.detach().numpy(), expected.detach().cpu().numpy()))


def test_dropout_rate_one_gives_zeros_as_keras(keras: Any) -> None:
    expected = keras.layers.Dropout(1.0)(torch.ones(2, 3), training=True)
    correct(lambda: Dropout(1.0)(torch.ones(2, 3), training=True),
            lambda out: np.array_equal(out.numpy(), expected.cpu().numpy()))


# =====================================================================================
# Constructors: wrong types, NaN/inf, negatives, zero, huge values, bools, None, strings
# =====================================================================================
# (class, valid arguments, the argument under test, bad values for it)
CONSTRUCTOR_CASES: list[tuple[Any, dict[str, Any], str, list[Any]]] = []


def _add(cls: Any, base: dict[str, Any], argument: str, values: list[Any]) -> None:
    CONSTRUCTOR_CASES.append((cls, base, argument, values))


_add(Dense, {}, "units", [0, -1, 2.5, "3", None, True, HUGE, NAN, (), [3], 1e308, np.float64(3.0), np.bool_(True)])
for _cls in (Dense, Conv2D):
    _base = {"units": 2} if _cls is Dense else {"filters": 2, "kernel_size": 2}
    _add(_cls, _base, "activation", [3, "nope", 2.5])
    _add(_cls, _base, "use_bias", ["yes", 1, None])
    _add(_cls, _base, "kernel_initializer", [3, "nope", np.array(["a"])])
    _add(_cls, _base, "bias_initializer", ["nope"])
    _add(_cls, _base, "kernel_regularizer", ["nope"])
    _add(_cls, _base, "kernel_constraint", ["nope"])
    _add(_cls, _base, "name", [3, "", True])
    _add(_cls, _base, "trainable", ["yes", 1, None])
    _add(_cls, _base, "dtype", ["foo", "int32", 3, "bool", {"config": 3}])
    _add(_cls, _base, "input_shape", [(-1,), (2.5,), "ab", ((2,),), (HUGE,), (2**62, 4)])
    _add(_cls, _base, "input_dim", [0, -1, 2.5, True])
    _add(_cls, _base, "batch_input_shape", [(-1, 3), "x", (None, -2)])
for _cls, _rank in ((Conv1D, 1), (Conv2D, 2), (Conv3D, 3)):
    _add(_cls, {"kernel_size": 2}, "filters", [0, -1, 2.5, None, True, HUGE])
    _add(_cls, {"filters": 2}, "kernel_size", [0, -1, 2.5, "3", None, True, HUGE, (2,) * (_rank + 1), ()])
    _add(_cls, {"filters": 2, "kernel_size": 2}, "strides", [0, -2, 1.5, (1,) * (_rank + 1)])
    _add(_cls, {"filters": 2, "kernel_size": 2}, "padding", ["full", 3, None] + (["causal"] if _rank > 1 else []))
    _add(_cls, {"filters": 2, "kernel_size": 2}, "data_format", ["nhwc", 3])
    _add(_cls, {"filters": 2, "kernel_size": 2}, "dilation_rate", [0, -1, 2.5])
    _add(_cls, {"filters": 4, "kernel_size": 2}, "groups", [0, 3, True, -2])
for _cls in (MaxPooling1D, MaxPooling2D, MaxPooling3D, AveragePooling1D, AveragePooling2D, AveragePooling3D):
    _add(_cls, {}, "pool_size", [0, -1, 2.5, "2", None, True, HUGE, ()])
    _add(_cls, {"pool_size": 2}, "strides", [0, -1, True, 1.5])
    _add(_cls, {"pool_size": 2}, "padding", ["full", 3, "causal"])
    _add(_cls, {"pool_size": 2}, "data_format", ["x", 3])
for _cls in (GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, GlobalAveragePooling1D,
             GlobalAveragePooling2D, GlobalAveragePooling3D):
    _add(_cls, {}, "data_format", ["x", 3, True])
    _add(_cls, {}, "keepdims", ["yes", 1, None])
_add(Flatten, {}, "data_format", ["x", 3])
_add(Reshape, {}, "target_shape", [3, None, "ab", (-1, -1), (-2, 3), (0, -1), (2.5,), (True,), ((2,),), (HUGE,),
                                   (2**40, 2**40)])
_add(Activation, {}, "activation", [3, "nope", 2.5, [1]])
_add(Dropout, {}, "rate", [NAN, -0.1, 1.5, HUGE, "0.5", None, True, INF, -INF, 1e308, np.float64(NAN)])
_add(Dropout, {"rate": 0.5}, "noise_shape", ["ab", (-1,), (0,), (2.5,), 3, ((1,),)])
_add(Dropout, {"rate": 0.5}, "seed", [-1, 2.5, "0", True])
_add(ActivityRegularization, {}, "l1", [-1.0, NAN, "x", INF])
_add(ActivityRegularization, {}, "l2", [-1.0, NAN, "0.1"])
_add(InputLayer, {}, "shape", [(-1,), (2.5,), "ab", ((2,),), 3, (HUGE,), (True,), (2**62, 4)])
_add(InputLayer, {"shape": (3,)}, "batch_size", [-1, 2.5, True, "2"])
_add(InputLayer, {}, "batch_shape", [(None, -1), "ab", (2.5,)])
_add(InputLayer, {"shape": (3,)}, "sparse", [True, "yes"])
_add(InputLayer, {"shape": (3,)}, "ragged", [True, 1])
_add(InputLayer, {"shape": (3,)}, "optional", ["yes", None])
_add(InputLayer, {"shape": (3,)}, "dtype", ["foo", 3])
_add(InputLayer, {"shape": (3,)}, "name", [3, ""])
_add(Concatenate, {}, "axis", ["1", 1.5, None, True])


@pytest.mark.parametrize("cls, base, argument, values", CONSTRUCTOR_CASES,
                         ids=[f"{c.__name__}-{a}" for c, _, a, _ in CONSTRUCTOR_CASES])
def test_constructor_refuses(cls: Any, base: dict[str, Any], argument: str, values: list[Any]) -> None:
    for value in values:
        fragments = [argument]
        if not isinstance(value, (dict, np.ndarray)) and argument not in ("l1", "l2"):
            fragments.append(echo(value)[:12])
        clear_error(lambda: cls(**{**base, argument: value}), *fragments)  # noqa: B023


@pytest.mark.parametrize("call", [
    lambda: InputLayer(),
    lambda: InputLayer(shape=(3,), batch_shape=(None, 3)),
    lambda: Input(shape=None),
    lambda: Dense(2, unit=3),
    lambda: ActivityRegularization(activity_regularizer="l2"),
    lambda: Conv2D(2, 2, strides=2, dilation_rate=2),
    lambda: Conv1D(2, 2, rank=1),
], ids=["no-shape", "both-shapes", "Input-None", "unknown-kwarg", "own-activity", "strides-and-dilation", "rank-twice"])
def test_constructor_refuses_combinations(call: Any) -> None:
    clear_error(call)


@pytest.mark.parametrize("make, x, shape", [
    (lambda: Dense(np.int64(3)), torch.ones(2, 4), (2, 3)),
    (lambda: Conv2D(np.int32(2), np.int64(3), strides=(np.int64(1), 1)), torch.ones(1, 5, 5, 2), (1, 3, 3, 2)),
    (lambda: MaxPooling1D(np.int16(2)), torch.ones(1, 4, 2), (1, 2, 2)),
    (lambda: Reshape((np.int64(2), -1)), torch.ones(3, 6), (3, 2, 3)),
    (lambda: Dropout(np.float32(0.5), seed=np.int64(3)), torch.ones(2, 3), (2, 3)),
    (lambda: Concatenate(axis=np.int64(0)), [torch.ones(2, 3), torch.ones(1, 3)], (3, 3)),
    (lambda: Dense(2, input_dim=np.int64(4)), torch.ones(1, 4), (1, 2)),
], ids=["dense", "conv", "pool", "reshape", "dropout", "concatenate", "input_dim"])
def test_numpy_scalars_work_where_python_numbers_do(make: Any, x: Any, shape: tuple[int, ...]) -> None:
    correct(lambda: make()(x), lambda out: out.shape == shape)


def test_input_too_large_to_lay_out_is_refused_before_allocating() -> None:
    clear_error(lambda: Input(shape=(10**6, 10**6)), "shape", "(None, 1000000, 1000000)")


@pytest.mark.parametrize("kwargs, expected", [
    ({"shape": (0,)}, (None, 0)),
    ({"shape": (None,)}, (None, None)),
    ({"shape": ()}, (None,)),
    ({"shape": [np.int64(2), 3]}, (None, 2, 3)),
    ({"shape": (3,), "batch_size": 0}, (0, 3)),
    ({"batch_shape": (4, None, 2)}, (4, None, 2)),
], ids=ids)
def test_input_valid_edge_shapes(kwargs: dict[str, Any], expected: tuple[Any, ...]) -> None:
    correct(lambda: Input(**kwargs), lambda tensor: tensor.shape == expected)


# =====================================================================================
# Calls: wrong inputs, with the layer (built or not) unchanged
# =====================================================================================
# A value that can be no tensor, and the part of it the error must echo (the offending leaf).
NOT_TENSORS = [("abc", "'abc'"), (None, "None"), (object(), "object"), (b"x", "b'x'"), ([["a"]], "'a'"), ({1, 2}, "{1, 2}"),
               ([[1.0], [1.0, 2.0]], "[1.0, 2.0]"), (np.array(["a"]), "array(['a']")]


@pytest.mark.parametrize("name", list(SINGLE_INPUT_LAYERS))
def test_call_on_a_non_tensor_is_a_type_error(name: str) -> None:
    layer = SINGLE_INPUT_LAYERS[name][0]()
    for value, fragment in NOT_TENSORS if name == "Dense" else NOT_TENSORS[:2] + NOT_TENSORS[-2:]:
        clear_error(lambda: layer(value), "inputs", fragment, state=[layer], errors=(TypeError,))  # noqa: B023


@pytest.mark.parametrize("name", list(SINGLE_INPUT_LAYERS))
def test_single_input_layers_refuse_lists_and_dicts(name: str) -> None:
    make, shape = SINGLE_INPUT_LAYERS[name]
    layer = make()
    x = ramp(*shape)
    clear_error(lambda: layer([x, x]), "inputs", "list of 2", state=[layer])
    clear_error(lambda: layer({"a": x}), "inputs", "dict of 1", state=[layer])
    layer(x)  # built now: the same refusals leave the built layer unchanged too
    clear_error(lambda: layer([x]), "inputs", "list of 1", state=[layer])


@pytest.mark.parametrize("name", list(SINGLE_INPUT_LAYERS))
def test_built_layer_refuses_wrong_rank_unchanged(name: str) -> None:
    make, shape = SINGLE_INPUT_LAYERS[name]
    layer = make()
    layer(ramp(*shape))
    if name in ("Activation", "Dropout"):
        correct(lambda: layer(torch.ones(())), lambda out: out.shape == ())  # any rank, even 0-d
        return
    clear_error(lambda: layer(torch.ones(())), "Input 0", "()", state=[layer])


@pytest.mark.parametrize("name", [n for n in SINGLE_INPUT_LAYERS if n not in ("Activation", "Dropout")])
def test_call_on_a_complex_tensor(name: str) -> None:
    make, shape = SINGLE_INPUT_LAYERS[name]
    layer = make()
    x = ramp(*shape, dtype=torch.complex64)
    if name in ("Flatten", "Reshape"):  # pure rearrangements: the values pass through
        correct(lambda: layer(x), lambda out: out.dtype == torch.complex64 and torch.equal(out.flatten(), x.flatten()))
        return
    clear_error(lambda: layer(x), "inputs", "complex64", state=[layer], errors=(TypeError,))


@pytest.mark.parametrize("name", list(SINGLE_INPUT_LAYERS))
def test_call_on_a_meta_tensor(name: str) -> None:
    make, shape = SINGLE_INPUT_LAYERS[name]
    layer = make()
    x = torch.ones(shape, device="meta")
    reference = make()(ramp(*shape))
    correct(lambda: layer(x), lambda out: out.is_meta and out.shape == reference.shape and out.dtype == reference.dtype)
    if name in WEIGHTED:  # built by the meta call, with real weights, which still work on real inputs
        correct(lambda: layer(ramp(*shape)), lambda out: torch.equal(out, reference))


@pytest.mark.parametrize("name", list(SINGLE_INPUT_LAYERS))
def test_call_on_an_empty_batch(name: str) -> None:
    make, shape = SINGLE_INPUT_LAYERS[name]
    reference = make()(ramp(*shape))
    correct(lambda: make()(torch.ones((0, *shape[1:]))),
            lambda out: out.shape == (0, *reference.shape[1:]) and out.dtype == reference.dtype)


@pytest.mark.parametrize("name", ["Dense", "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
                                  "GlobalMaxPooling2D", "GlobalAveragePooling1D", "Flatten", "Reshape", "Activation",
                                  "Dropout"])
def test_every_dtype_into_a_float32_layer(name: str) -> None:
    """The stated rule: floats are cast to the layer's compute dtype (Keras autocast); Dense and
    Conv compute ints and bools in it; max pooling keeps ints (as Keras); complex is refused."""
    for dtype in ALL_DTYPES:
        _check_dtype(name, dtype)


def _check_dtype(name: str, dtype: torch.dtype) -> None:
    make, shape = SINGLE_INPUT_LAYERS[name]
    layer = make()
    x = ramp(*shape, dtype=dtype)
    if dtype == torch.complex64:
        if name in WEIGHTED or "Pooling" in name or name == "Activation":
            clear_error(lambda: layer(x), "x" if name == "Activation" else "inputs", "complex64", state=[layer],
                        errors=(TypeError,))
        else:
            correct(lambda: layer(x), lambda out: out.dtype == torch.complex64)
        return
    expected = make()(x.to(torch.float32))  # seeded: the same weights as `layer`
    keeps_ints = name in ("Flatten", "Reshape", "Dropout") or (
        name.startswith(("MaxPooling", "GlobalMaxPooling")) and dtype != torch.bool)
    expected_dtype = dtype if not dtype.is_floating_point and keeps_ints else torch.float32
    correct(lambda: layer(x), lambda out: out.dtype == expected_dtype
            and torch.allclose(out.to(torch.float32), expected, rtol=1e-6, atol=1e-6))


@pytest.mark.parametrize("inputs, fragments", [
    ("abc", ("inputs", "'abc'")),
    (None, ("inputs", "None")),
    ([], ("inputs", "[]")),
    ([torch.ones(2)], None),
    ([torch.ones(2, 3), torch.ones(2, 4)], ("input_shape", "(2, 4)")),
    ([torch.ones(2, 3), torch.ones(3, 3)], ("input_shape", "(3, 3)")),
    ([torch.ones(2, 3), torch.ones(2, 3, device="meta")], ("devices", "meta")),
    ([torch.ones(2, 3), "x"], ("inputs", "'x'")),
    ([torch.ones(2, 3), [torch.ones(2, 3)]], ("inputs", "not a list of tensors")),
    (torch.ones(2, 3), ("inputs", "not a list of tensors")),
], ids=ids)
@pytest.mark.parametrize("cls", [Add, Concatenate])
def test_merge_layers_on_bad_inputs(cls: Any, inputs: Any, fragments: Any) -> None:
    layer = cls()
    if fragments is None:
        correct(lambda: layer(inputs), lambda out: torch.equal(out, inputs[0]))
        return
    if cls is Concatenate and fragments[0] == "input_shape" and "(2, 4)" in fragments:
        correct(lambda: layer(inputs), lambda out: out.shape == (2, 7))  # only the concatenation axis differs
        return
    clear_error(lambda: layer(inputs), *fragments, state=[layer])


@pytest.mark.parametrize("dtypes", [(torch.int32, torch.float32), (torch.int64, torch.float64), (torch.bool, torch.int8),
                                    (torch.float16, torch.float16)], ids=str)
def test_merge_layers_promote_dtypes_like_numpy(dtypes: tuple[torch.dtype, torch.dtype]) -> None:
    a, b = ramp(2, 3, dtype=dtypes[0]), ramp(2, 3, dtype=dtypes[1])
    expected_sum = a.to(torch.float32) + b.to(torch.float32)
    correct(lambda: Add()([a, b]), lambda out: torch.allclose(out.to(torch.float32), expected_sum))
    correct(lambda: Concatenate()([a, b]), lambda out: out.shape == (2, 6)
            and torch.equal(out[:, 3:].to(torch.float32), b.to(torch.float32)))


def test_dropout_noise_shape_must_fit_the_inputs() -> None:
    layer = Dropout(0.5, noise_shape=(2, 5), seed=0)
    clear_error(lambda: layer(torch.ones(2, 3), training=True), "noise_shape", "(2, 5)", state=[layer])
    clear_error(lambda: Dropout(0.5, noise_shape=(None,))(torch.ones(2, 3), training=True), "noise_shape", "(None,)")
    correct(lambda: layer(torch.ones(2, 3)), lambda out: torch.equal(out, torch.ones(2, 3)))  # inference: identity
    out = Dropout(0.5, noise_shape=(None, 1), seed=0)(torch.ones(4, 6), training=True)
    correct(lambda: out, lambda o: all(len(set(row.tolist())) == 1 for row in o))


def test_dropout_huge_seed_is_reproducible() -> None:
    first = Dropout(0.5, seed=10**30)(torch.ones(1, 50), training=True)
    correct(lambda: Dropout(0.5, seed=10**30)(torch.ones(1, 50), training=True), lambda out: torch.equal(out, first))


def test_built_dense_refuses_another_feature_size_unchanged() -> None:
    layer = Dense(2, kernel_regularizer="l2", activity_regularizer="l1")
    layer(torch.ones(3, 4))
    clear_error(lambda: layer(torch.ones(3, 5)), "Input 0", "(3, 5)", state=[layer])


def test_conv_input_too_small_leaves_layer_unbuilt() -> None:
    layer = Conv2D(2, 5)
    clear_error(lambda: layer(torch.ones(1, 3, 3, 2)), "kernel_size", "(1, 3, 3, 2)", state=[layer])
    assert not layer.built
    clear_error(lambda: Conv2D(4, 1, groups=2)(torch.ones(1, 3, 3, 3)), "groups", "3 channels")


# =====================================================================================
# add_weight, set_weights, get_weights
# =====================================================================================
def _holder() -> Layer:
    layer = Layer(name="holder")
    layer.add_weight(name="existing", shape=(2,), regularizer="l2")
    return layer


@pytest.mark.parametrize("kwargs, argument", [
    ({"name": 3}, "name"), ({"name": ""}, "name"), ({"name": "a b"}, "name"), ({"name": "existing"}, "name"),
    ({"name": "name"}, "name"), ({"name": "forward"}, "name"), ({"name": "x.y"}, "name"),
    ({"shape": "ab"}, "shape"), ({"shape": (-1,)}, "shape"), ({"shape": (2.5,)}, "shape"), ({"shape": (None,)}, "shape"),
    ({"shape": ((2,),)}, "shape"), ({"shape": (HUGE,)}, "shape"), ({"shape": (2**62, 4)}, "shape"),
    ({"shape": True}, "shape"), ({"shape": 3}, "shape"), ({"shape": (True,)}, "shape"),
    ({"dtype": "foo"}, "dtype"), ({"dtype": 3}, "dtype"),
    ({"initializer": "nope"}, "initializer"), ({"initializer": 3}, "initializer"),
    ({"initializer": lambda shape, dtype=None: "abc"}, "initializer"),
    ({"initializer": lambda shape, dtype=None: torch.ones(3)}, "initializer"),
    ({"initializer": lambda shape, dtype=None: object()}, "initializer"),
    ({"trainable": "yes"}, "trainable"), ({"trainable": 1}, "trainable"),
    ({"regularizer": "nope"}, "regularizer"), ({"constraint": "nope"}, "constraint"),
    ({"dtype": "int32", "initializer": "glorot_uniform"}, "dtype"),
], ids=lambda v: ids(v) if isinstance(v, dict) else v)
def test_add_weight_refuses_unchanged(kwargs: dict[str, Any], argument: str) -> None:
    layer = _holder()
    clear_error(lambda: layer.add_weight(**{"name": "w", "shape": (2,), **kwargs}), argument, state=[layer])


def test_add_weight_huge_allocation_is_a_clear_error() -> None:
    layer = _holder()
    clear_error(lambda: layer.add_weight(name="w", shape=(2**50,), initializer="zeros", dtype="float64"),
                "shape", str(2**50), state=[layer])


def test_add_weight_copies_a_user_s_tensor() -> None:
    mine = torch.ones(2)
    layer = Layer()
    weight = layer.add_weight(name="w", shape=(2,), initializer=lambda shape, dtype=None: mine)
    with torch.no_grad():
        weight.add_(1.0)
    correct(lambda: mine, lambda t: torch.equal(t, torch.ones(2)))


@pytest.mark.parametrize("weights, fragments", [
    (None, ("weights", "None")), ("ab", ("weights", "'ab'")), (torch.ones(3, 2), ("weights", "tensor")),
    ({"kernel": 1}, ("weights", "kernel")), ([np.ones((3, 2))], ("weights", "length 1")),
    ([np.ones((3, 2))] * 3, ("weights", "length 3")),
    (["abc", np.ones(2)], ("weights[0]", "'abc'")), ([None, np.ones(2)], ("weights[0]", "None")),
    ([object(), np.ones(2)], ("weights[0]", "object")), ([[[1, 2], [1]], np.ones(2)], ("weights[0]", "[[1, 2], [1]]")),
    ([np.ones((3, 2), complex), np.ones(2)], ("weights[0]", "complex")),
    ([np.ones((3, 2), "S3"), np.ones(2)], ("weights[0]", "S3")),
    ([np.ones((3, 2), "U3"), np.ones(2)], ("weights[0]", "U3")),
    ([torch.ones(3, 2, device="meta"), np.ones(2)], ("weights[0]", "meta")),
    ([torch.ones(3, 2, dtype=torch.complex64), np.ones(2)], ("weights[0]", "complex64")),
    ([np.ones((2, 3)), np.ones(2)], ("weights[0]", "(2, 3)")), ([np.ones((3, 2)), np.ones(3)], ("weights[1]", "(3,)")),
    ([np.ones((3, 2)), 1.0], ("weights[1]", "()")), ([np.ones((3, 2)), np.ones(2), np.ones(2)], ("weights", "3")),
], ids=ids)
def test_set_weights_refuses_unchanged(weights: Any, fragments: tuple[str, ...]) -> None:
    layer = Dense(2, input_dim=3, kernel_regularizer="l2")
    clear_error(lambda: layer.set_weights(weights), *fragments, state=[layer])


@pytest.mark.parametrize("kernel", [
    np.full((3, 2), 2, np.int64), np.ones((3, 2), bool), np.full((3, 2), 0.5, np.float64), np.full((3, 2), 0.5, np.float16),
    torch.full((3, 2), 0.5, dtype=torch.float64), torch.full((3, 2), 2, dtype=torch.int8), [[1, 2], [3, 4], [5, 6]],
    np.full((3, 2), np.nan), ((0.0, 1.0),) * 3,
], ids=ids)
def test_set_weights_casts_to_each_weight_dtype(kernel: Any) -> None:
    layer = Dense(2, input_dim=3)
    expected = np.asarray(torch.as_tensor(np.asarray(kernel, dtype=np.float64)).to(torch.float32))
    layer.set_weights((kernel, np.zeros(2)))
    correct(lambda: layer.get_weights()[0], lambda w: w.dtype == np.float32
            and np.array_equal(w, expected, equal_nan=True))


def test_get_weights_of_an_unbuilt_layer_is_empty() -> None:
    layer = Dense(2)
    correct(layer.get_weights, lambda w: w == [])
    clear_error(lambda: layer.set_weights([np.ones((3, 2))]), "weights", "length 1", state=[layer])


# =====================================================================================
# Models: construction and calls
# =====================================================================================
@pytest.mark.parametrize("value, fragments", [
    (3, ("layers", "3")), ("abc", ("layers", "'abc'")), ({"a": 1}, ("layers", "'a'")),
    ([3], ("Sequential", "3")), ([None], ("Sequential", "None")), ([Dense(2), "x"], ("Sequential", "'x'")),
], ids=ids)
def test_sequential_refuses_bad_layers(value: Any, fragments: tuple[str, ...]) -> None:
    clear_error(lambda: Sequential(value), *fragments, errors=(TypeError,))


def test_sequential_add_refusals_change_nothing() -> None:
    model = Sequential([Input(shape=(3,)), Dense(2, name="only")])
    clear_error(lambda: model.add("x"), "Sequential", "'x'", state=[model])
    clear_error(lambda: model.add(Dense(1, name="only")), "name", "'only'", state=[model])
    clear_error(lambda: model.add(Input(shape=(3,))), "InputLayer", state=[model])
    clear_error(lambda: model.add(Dense(1), rebuild="yes"), "rebuild", "'yes'", state=[model])


@pytest.mark.parametrize("make", [
    lambda x: Model(3, 4), lambda x: Model(None, None), lambda x: Model([], []), lambda x: Model(x, "y"),
    lambda x: Model(x, Dense(2)), lambda x: Model(Input(shape=(2,)), Dense(2)(x)),
    lambda x: Model(x, Dense(2)(x), name=3), lambda x: Model(x, Dense(2)(x), trainable="yes"),
], ids=["ints", "nones", "empty", "str-output", "layer-output", "disconnected", "bad-name", "bad-trainable"])
def test_functional_model_refuses_bad_graphs(make: Any) -> None:
    clear_error(lambda: make(Input(shape=(3,))))


def test_model_call_refusals_change_nothing() -> None:
    a, b = Input(shape=(3,), name="a"), Input(shape=(2,), name="b")
    model = Model([a, b], Concatenate()([Dense(2)(a), b]))
    for bad, fragments in [((torch.ones(1, 3),), ("expects 2 inputs",)), ({"a": torch.ones(1, 3)}, ("inputs", "['a']")),
                           ([torch.ones(1, 3), "x"], ("inputs", "'x'")), ([torch.ones(1, 4), torch.ones(1, 2)], ("Input 0",))]:
        clear_error(lambda: model(bad), *fragments, state=[model])  # noqa: B023


@pytest.mark.parametrize("kwargs, fragments", [
    ({"index": True}, ("index", "True")), ({"index": 9}, ("index", "9")), ({"name": 3}, ("name", "3")),
    ({}, ("name", "index")), ({"name": "x", "index": 0}, ("name", "index")), ({"name": "missing"}, ("missing",)),
    ({"index": "0"}, ("index", "'0'")),
], ids=ids)
def test_get_layer_refusals(kwargs: dict[str, Any], fragments: tuple[str, ...]) -> None:
    model = Sequential([Input(shape=(3,)), Dense(2), Dense(1)])
    clear_error(lambda: model.get_layer(**kwargs), *fragments, state=[model])


@pytest.mark.parametrize("kwargs, argument", [({"line_length": 0}, "line_length"), ({"line_length": "80"}, "line_length"),
                                              ({"line_length": True}, "line_length"), ({"line_length": 10**400}, "line_length"),
                                              ({"print_fn": 3}, "print_fn")],
                         ids=ids)
def test_summary_refusals(kwargs: dict[str, Any], argument: str) -> None:
    model = Sequential([Input(shape=(3,)), Dense(2)])
    clear_error(lambda: model.summary(**kwargs), argument, state=[model])


def test_subclassed_model_with_a_failing_first_call_stays_unbuilt() -> None:
    class Net(Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.out = Dense(4, kernel_regularizer="l2"), Reshape((7,))

        def call(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.out(self.hidden(inputs))

    model = Net()
    clear_error(lambda: model(torch.ones(2, 3)), "target_shape", state=[model])
    assert not model.built and not model.hidden.built and model.losses == []


@pytest.mark.parametrize("filepath, error", [(3, TypeError), ("", TypeError), (None, TypeError)], ids=ids)
def test_weights_file_paths_are_checked(filepath: Any, error: type[Exception]) -> None:
    model = Sequential([Input(shape=(3,)), Dense(2)])
    clear_error(lambda: model.save_weights(filepath), "filepath", state=[model], errors=(error,))
    clear_error(lambda: model.load_weights(filepath), "filepath", state=[model], errors=(error,))


def test_load_weights_torch_format_refusals(tmp_path: Any) -> None:
    model = Sequential([Input(shape=(3,)), Dense(2)])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), tensor_file)
    complex_file = tmp_path / "complex.pt"
    torch.save({k: v.to(torch.complex64) for k, v in model.state_dict().items()}, complex_file)
    # The torch format is read by weightwise.saving.torch_weights: errors about a file's contents name the file.
    for path, fragment in [(garbage, "not a torch weights file"), (tensor_file, "state dict"),
                           (complex_file, "complex64 does not cast to float32")]:
        clear_error(lambda: model.load_weights(str(path)), repr(str(path)), fragment, state=[model])  # noqa: B023
    clear_error(lambda: model.load_weights(str(tmp_path)), "filepath", "is a directory", state=[model],
                errors=(IsADirectoryError,))


def _graph_config() -> dict[str, Any]:
    from weightwise.models.graph_config import functional_config

    x = Input(shape=(3,), name="x")
    return functional_config(Model(x, Dense(2, name="out")(x)))


def _history(config: dict[str, Any]) -> dict[str, Any]:
    return config["layers"][1]["inbound_nodes"][0]["args"][0]["config"]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda c: _history(c).__setitem__("keras_history", ["x", 0, 5]), "['x', 0, 5]"),
    (lambda c: _history(c).__setitem__("keras_history", ["x", -1, 0]), "['x', -1, 0]"),
    (lambda c: _history(c).__setitem__("keras_history", ["x", True, 0]), "['x', True, 0]"),
    (lambda c: _history(c).__setitem__("keras_history", ["x", 0, "a"]), "['x', 0, 'a']"),
    (lambda c: _history(c).pop("keras_history"), "keras_history"),
    (lambda c: c["layers"][1]["inbound_nodes"][0]["args"][0].__setitem__("config", 3), "keras_history"),
    (lambda c: c["layers"][1].__setitem__("inbound_nodes", ["abc"]), "inbound_nodes=['abc']"),
    (lambda c: c["layers"][1].__setitem__("inbound_nodes", 3), "inbound_nodes=3"),
    (lambda c: c["layers"][1]["inbound_nodes"][0].__setitem__("args", "abc"), "'args': 'abc'"),
    (lambda c: c["layers"][1]["inbound_nodes"][0].__setitem__("kwargs", [1]), "'kwargs': [1]"),
    (lambda c: c.__setitem__("output_layers", ["out", 0, 9]), "['out', 0, 9]"),
    (lambda c: c.__setitem__("output_layers", ["out", -1, 0]), "['out', -1, 0]"),
    (lambda c: c.__setitem__("input_layers", "x"), "'x'"),
    (lambda c: c.__setitem__("layers", {}), "'layers'"),
    (lambda c: c["layers"][1].__setitem__("name", "x"), "name='x'"),
    (lambda c: c.pop("output_layers"), "'output_layers'"),
], ids=[f"mutation{i}" for i in range(16)])
def test_functional_config_refusals(mutate: Any, fragment: str) -> None:
    from weightwise.models import Functional

    config = _graph_config()
    mutate(config)
    clear_error(lambda: Functional.from_config(config), fragment)


@pytest.mark.parametrize("cls", [Dense, Sequential, Model, Reshape], ids=lambda c: c.__name__)
def test_from_config_needs_a_dict(cls: Any) -> None:
    for config in (3, None, "abc", [("units", 2)]):
        clear_error(lambda: cls.from_config(config), "config", echo(config)[:6], errors=(TypeError,))  # noqa: B023


def test_build_from_config_refusals_leave_the_layer_unbuilt() -> None:
    layer = Dense(2)
    for config, fragments in [({"input_shape": [None, -3]}, ("input_shape", "-3")), ({"input_shape": "ab"}, ("'ab'",)),
                              ({"shape": [None, 3]}, ("input_shape",)), (3, ("config", "3"))]:
        clear_error(lambda: layer.build_from_config(config), *fragments, state=[layer])  # noqa: B023
    assert not layer.built


# =====================================================================================
# Activations
# =====================================================================================
@pytest.mark.parametrize("identifier", [3, 3.5, [], "nope", b"relu", (), True, np.float32(1.0)], ids=ids)
def test_activation_get_refuses(identifier: Any) -> None:
    clear_error(lambda: activations.get(identifier), echo(identifier)[:8])


ACTIVATION_NAMES = sorted(n for n in activations._FAMILY.builtins if n != "threshold")
COMPLEX_ACTIVATIONS = {"exponential", "linear", "sigmoid", "silu", "swish", "softsign", "squareplus", "tanh",
                       "tanh_shrink"}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_on_non_numbers(name: str) -> None:
    fn = activations.get(name)
    for value in ("abc", None, object(), [[1.0], [1.0, 2.0]]):
        clear_error(lambda: fn(value), "x", echo(value)[:5], errors=(TypeError,))  # noqa: B023


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_on_complex(name: str) -> None:
    fn = activations.get(name)
    z = torch.tensor([0.5 + 0.5j, -1.0 - 0.25j], dtype=torch.complex64)
    if name in COMPLEX_ACTIVATIONS:
        reference = {"exponential": np.exp, "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
                     "softsign": lambda v: v / (1 + np.abs(v))}.get(name)
        correct(lambda: fn(z), lambda out: out.dtype == torch.complex64 and (
            reference is None or np.allclose(out.numpy(), reference(z.numpy()), rtol=1e-5)))
        return
    clear_error(lambda: fn(z), "x", "complex64", errors=(TypeError,))


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_dtypes_empty_and_meta(name: str) -> None:
    """Every real dtype: floats keep theirs, ints and bools are computed in floatx; empty and
    meta tensors keep their shape."""
    fn = activations.get(name)
    correct(lambda: fn(torch.ones(0, 4)), lambda out: out.shape == (0, 4 if name != "glu" else 2))
    correct(lambda: fn(torch.ones(3, 4, device="meta")), lambda out: out.is_meta)
    for dtype in REAL_DTYPES:
        x = (ramp(2, 4, dtype=torch.float64) - (2 if dtype not in (torch.uint8, torch.bool) else 0)).to(dtype)
        floating = dtype if dtype.is_floating_point else torch.float32
        expected = fn(x.to(floating)) if name != "linear" else x
        correct(lambda: fn(x), lambda o: o.dtype == (dtype if name == "linear" else floating)  # noqa: B023
                and torch.equal(o, expected))  # noqa: B023


@pytest.mark.parametrize("call, argument", [
    (lambda x: activations.relu(x, negative_slope="a"), "negative_slope"),
    (lambda x: activations.relu(x, negative_slope=NAN), "negative_slope"),
    (lambda x: activations.relu(x, negative_slope=HUGE), "negative_slope"),
    (lambda x: activations.relu(x, max_value=NAN), "max_value"),
    (lambda x: activations.relu(x, threshold=True), "threshold"),
    (lambda x: activations.leaky_relu(x, negative_slope=INF), "negative_slope"),
    (lambda x: activations.elu(x, alpha=HUGE), "alpha"),
    (lambda x: activations.elu(x, alpha=None), "alpha"),
    (lambda x: activations.celu(x, alpha=0), "alpha"),
    (lambda x: activations.squareplus(x, b=-1), "b"),
    (lambda x: activations.squareplus(x, b=NAN), "b"),
    (lambda x: activations.soft_shrink(x, threshold=-1), "threshold"),
    (lambda x: activations.hard_shrink(x, threshold="0.5"), "threshold"),
    (lambda x: activations.gelu(x, approximate=1), "approximate"),
    (lambda x: activations.threshold(x, NAN, 0.0), "threshold"),
    (lambda x: activations.threshold(x, 0.0, INF), "default_value"),
    (lambda x: activations.softmax(x, axis=5), "axis"),
    (lambda x: activations.softmax(x, axis=1.5), "axis"),
    (lambda x: activations.softmax(x, axis=(0, 0)), "axis"),
    (lambda x: activations.softmax(x, axis=()), "axis"),
    (lambda x: activations.log_softmax(x, axis=(0, 9)), "axis"),
    (lambda x: activations.glu(x, axis=0), "axis"),
    (lambda x: activations.sparsemax(x, axis=True), "axis"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_activation_argument_refusals(call: Any, argument: str) -> None:
    x = ramp(3, 4)
    clear_error(lambda: call(x), argument, state=[x])


# =====================================================================================
# Initializers
# =====================================================================================
INITIALIZER_CONSTRUCTORS: list[tuple[Any, dict[str, Any], str]] = []
for _value in (-1, 0, NAN, INF, HUGE, "a", True, None):
    INITIALIZER_CONSTRUCTORS.append((initializers.RandomNormal, {"stddev": _value}, "stddev"))
    INITIALIZER_CONSTRUCTORS.append((initializers.VarianceScaling, {"scale": _value}, "scale"))
for _value in (NAN, INF, -HUGE, "a", None, True):
    INITIALIZER_CONSTRUCTORS += [(initializers.RandomUniform, {"minval": _value}, "minval"),
                                 (initializers.Orthogonal, {"gain": _value}, "gain"),
                                 *([(initializers.Constant, {"value": _value}, "value")] if _value is not True else [])]
for _value in (-1, 2.5, "0", True, [1]):
    for _cls in (initializers.RandomNormal, initializers.GlorotUniform):
        INITIALIZER_CONSTRUCTORS.append((_cls, {"seed": _value}, "seed"))
INITIALIZER_CONSTRUCTORS += [
    (initializers.TruncatedNormal, {"stddev": 0}, "stddev"), (initializers.RandomNormal, {"mean": HUGE}, "mean"),
    (initializers.Identity, {"gain": NAN}, "gain"), (initializers.HeNormal, {"seed": -1}, "seed"),
    (initializers.Orthogonal, {"seed": "0"}, "seed"),
    (initializers.RandomUniform, {"minval": 1.0, "maxval": 0.0}, "minval"),
    (initializers.VarianceScaling, {"mode": "fan_sum"}, "mode"),
    (initializers.VarianceScaling, {"mode": ["fan_in"]}, "mode"),
    (initializers.VarianceScaling, {"distribution": "gamma"}, "distribution"),
    (initializers.VarianceScaling, {"distribution": 3}, "distribution"),
    (initializers.VarianceScaling, {"input_axes": "a", "output_axes": [1]}, "input_axes"),
    (initializers.GlorotUniform, {"output_axes": [True]}, "output_axes"),
    (initializers.Constant, {"value": [1.0]}, "value"),
    (initializers.Constant, {"value": np.ones(2)}, "value"),
]


@pytest.mark.parametrize("cls, kwargs, argument", INITIALIZER_CONSTRUCTORS,
                         ids=[f"{c.__name__}-{ids(k)}" for c, k, _ in INITIALIZER_CONSTRUCTORS])
def test_initializer_constructor_refuses(cls: Any, kwargs: dict[str, Any], argument: str) -> None:
    clear_error(lambda: cls(**kwargs), argument)


ALL_INITIALIZERS = [initializers.Zeros(), initializers.Ones(), initializers.Constant(0.5), initializers.Identity(),
                    initializers.RandomNormal(seed=1), initializers.RandomUniform(seed=1),
                    initializers.TruncatedNormal(seed=1), initializers.VarianceScaling(seed=1),
                    initializers.GlorotUniform(seed=1), initializers.HeNormal(seed=1), initializers.LecunUniform(seed=1),
                    initializers.Orthogonal(seed=1)]


@pytest.mark.parametrize("init", ALL_INITIALIZERS, ids=lambda i: type(i).__name__)
def test_initializer_call_refuses_bad_shapes(init: Any) -> None:
    for shape in ("ab", (-1, 2), (2.5, 2), (None, 2), ((2,), 2), (HUGE, 2), (2**62, 4), 3, None, (True, 2)):
        clear_error(lambda: init(shape), "shape", echo(shape)[:6])  # noqa: B023


@pytest.mark.parametrize("init", ALL_INITIALIZERS, ids=lambda i: type(i).__name__)
def test_initializer_dtypes(init: Any) -> None:
    """Every dtype torch has: random initializers need a float one; constant ones take any."""
    deterministic = isinstance(init, (initializers.Zeros, initializers.Ones, initializers.Constant,
                                      initializers.Identity))
    for dtype in ("foo", 3, *(str(d).replace("torch.", "") for d in ALL_DTYPES)):
        if isinstance(dtype, str) and dtype != "foo" and (deterministic or dtype.startswith(("float", "bfloat"))):
            correct(lambda: init((2, 2), dtype=dtype),  # noqa: B023
                    lambda w: str(w.dtype) == f"torch.{dtype}" and w.shape == (2, 2))  # noqa: B023
        else:
            clear_error(lambda: init((2, 2), dtype=dtype), "dtype", echo(dtype))  # noqa: B023


@pytest.mark.parametrize("init", ALL_INITIALIZERS, ids=lambda i: type(i).__name__)
def test_initializer_empty_and_scalar_shapes(init: Any) -> None:
    for shape in ((0, 3), (3, 0), (0,), ()):
        if isinstance(init, (initializers.Identity, initializers.Orthogonal)) and len(shape) != 2:
            clear_error(lambda: init(shape), "shape", echo(shape))  # noqa: B023
        else:
            correct(lambda: init(shape), lambda w: w.shape == shape and bool(torch.isfinite(w).all()))  # noqa: B023


@pytest.mark.parametrize("call, fragments", [
    (lambda: initializers.RandomNormal(stddev=1e300)((4,)), ("stddev", "float32")),
    (lambda: initializers.RandomNormal(mean=1e308)((4,), dtype="float16"), ("mean", "float16")),
    (lambda: initializers.RandomUniform(minval=-1e300, maxval=1e300)((4,)), ("maxval", "float32")),
    (lambda: initializers.VarianceScaling(scale=1e300)((4, 4)), ("scale", "float32")),
    (lambda: initializers.Constant(1e300)((2,)), ("value", "float32")),
    (lambda: initializers.Constant(2**70)((2,), dtype="int64"), ("value", "int64")),
    (lambda: initializers.Orthogonal(gain=1e300)((3, 3)), ("gain", "float32")),
    (lambda: initializers.Identity(gain=1e39)((2, 2)), ("gain", "float32")),
    (lambda: initializers.Orthogonal()((3,)), ("shape", "(3,)")),
    (lambda: initializers.Identity()((2, 2, 2)), ("shape", "(2, 2, 2)")),
], ids=["normal", "normal-mean", "uniform", "variance", "constant", "constant-int", "orthogonal", "identity", "orthogonal-1d",
        "identity-3d"])
def test_initializer_values_never_overflow_to_inf(call: Any, fragments: tuple[str, ...]) -> None:
    clear_error(call, *fragments)


@pytest.mark.parametrize("identifier", [3, 2.5, "nope", [], (), True, np.array(["a"]), np.array([object()]),
                                        torch.ones(2, device="meta")], ids=ids)
def test_initializer_get_refuses(identifier: Any) -> None:
    clear_error(lambda: initializers.get(identifier))


def test_initializer_from_tensor_rules() -> None:
    init = initializers.get(torch.tensor([1.0 + 1.0j, 2.0]))
    clear_error(lambda: init((2,), dtype="float32"), "dtype", "float32")
    correct(lambda: init((2,), dtype="complex64"), lambda w: w.dtype == torch.complex64)
    clear_error(lambda: init((3,)), "shape", "(3,)")
    clear_error(lambda: initializers.RandomNormal.from_config([1]), "config", "[1]", errors=(TypeError,))


def test_initializer_huge_seed_uses_its_low_32_bits() -> None:
    """As Keras's torch backend: the generator takes the seed's low 32 bits."""
    seed = 10**30
    correct(lambda: initializers.RandomNormal(seed=seed)((5,)),
            lambda w: torch.equal(w, initializers.RandomNormal(seed=seed & 0xFFFFFFFF)((5,))))


# =====================================================================================
# Properties (hypothesis)
# =====================================================================================
@settings(max_examples=40, deadline=None)
@given(dims=st.lists(st.integers(0, 4), min_size=1, max_size=3), batch=st.integers(0, 3), flip=st.booleans(),
       use_minus_one=st.booleans())
def test_reshape_matches_numpy(dims: list[int], batch: int, flip: bool, use_minus_one: bool) -> None:
    target = list(reversed(dims)) if flip else list(dims)
    if use_minus_one and 0 not in target:
        target[0] = -1
    x = np.arange(batch * math.prod(dims), dtype=np.float32).reshape(batch, *dims)
    expected = x.reshape(batch, *[d if d != -1 else math.prod(dims) // math.prod(t for t in target if t != -1)
                                  for d in target])
    correct(lambda: Reshape(tuple(target))(torch.from_numpy(x)),
            lambda out: out.shape == expected.shape and np.array_equal(out.numpy(), expected))


_SHAPE_ENTRIES = st.one_of(st.integers(-3, 5), st.none(), st.floats(allow_nan=True), st.text(max_size=2),
                           st.booleans(), st.just(HUGE))


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(_SHAPE_ENTRIES, max_size=3))
def test_input_shape_is_valid_or_clearly_refused(shape: list[Any]) -> None:
    valid = all(d is None or (type(d) is int and 0 <= d <= 5) for d in shape)
    if valid:
        correct(lambda: Input(shape=tuple(shape)), lambda t: t.shape == (None, *shape))
    else:
        clear_error(lambda: Input(shape=tuple(shape)), "shape")


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_, np.float16, np.float64]),
       rows=st.integers(0, 3), values=st.integers(-100, 100))
def test_dense_on_numpy_arrays_of_any_dtype_matches_numpy(dtype: Any, rows: int, values: int) -> None:
    layer = Dense(2, **seeded())
    x = (np.arange(rows * 3).reshape(rows, 3) + values).astype(dtype)
    kernel, bias = ops_np(layer, torch.ones(1, 3))
    expected = x.astype(np.float32) @ kernel + bias
    correct(lambda: layer(x), lambda out: np.allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-4))


def test_regression_model_from_json_refuses_json_nested_too_deep() -> None:
    from weightwise.models import model_from_json

    clear_error(lambda: model_from_json("[" * 5000 + "]" * 5000), "json_string", "nested more than")
    clear_error(lambda: model_from_json("{nope"), "json_string", "not valid JSON")
