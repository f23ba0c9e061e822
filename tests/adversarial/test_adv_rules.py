"""Adversarial cases for the rules and their seam: regularizers, constraints, ops, backend,
serialization, binding, the engine's fast paths and interop.

Every case ends in ``correct`` (checked against NumPy, Keras or a stated rule) or in
``clear_error`` (a ValueError/TypeError naming the argument and echoing the value, with the
state it names unchanged). The regressions of issue 11 each have a named test.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from typing import Any

import numpy as np
import pytest
import torch
from harness import clear_error, correct, finite, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import weightwise
from weightwise import (
    activations,
    backend,
    binding,
    constraints,
    engine,
    initializers,
    interop,
    layers,
    ops,
    regularizers,
    serialization,
)
from weightwise.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm
from weightwise.regularizers import L1, L1L2, L2, OrthogonalRegularizer

EPS = 1e-7
FLOATS = ["float16", "bfloat16", "float32", "float64"]
COMPLEX = ["complex64"]
INTS = ["int8", "int16", "int32", "int64", "uint8"]
ALL_DTYPES = FLOATS + COMPLEX + INTS + ["bool"]
TRAINABLE = FLOATS + COMPLEX  # the dtypes a Parameter can train in
FAST = settings(max_examples=25, deadline=None)


# -- references ---------------------------------------------------------------------------------
def sample(dtype: str, shape: tuple[int, ...] = (4, 3), seed: int = 0) -> torch.Tensor:
    """A fixed tensor of ``dtype`` with negatives, a zero and values of several sizes."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) * 3
    if values.size:
        values.flat[0] = 0.0
    if dtype == "bool":
        return torch.from_numpy(values > 0)
    if dtype in INTS:
        values = np.abs(values) if dtype == "uint8" else values
        return torch.from_numpy(np.round(values)).to(getattr(torch, dtype))
    if dtype in COMPLEX:
        imag = rng.normal(size=shape) * 2
        return torch.from_numpy(values + 1j * imag).to(getattr(torch, dtype))
    return torch.from_numpy(values).to(getattr(torch, dtype))


def np64(t: torch.Tensor) -> np.ndarray:
    """The exact values of ``t`` as float64 (complex128 for complex) NumPy."""
    t = t.detach().cpu()
    if t.is_complex():
        return t.to(torch.complex128).numpy()
    return t.to(torch.float64).numpy()


def rtol_of(dtype: str) -> float:
    return {"float16": 2e-3, "bfloat16": 1e-2}.get(dtype, 1e-5 if dtype != "float64" else 1e-12)


def np_vector_norms(x: np.ndarray, axis) -> np.ndarray:
    """Euclidean norms over ``axis`` (keepdims), exact also where the squares over- or underflow."""
    magnitude = np.abs(x)
    if magnitude.size == 0:
        return np.sqrt((magnitude ** 2).sum(axis=axis, keepdims=True))
    scale = magnitude.max(axis=axis, keepdims=True)
    safe = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(np.isfinite(scale), np.sqrt(((magnitude / safe) ** 2).sum(axis=axis, keepdims=True)) * safe, scale)


def np_l1(x: np.ndarray, factor: float) -> float:
    return factor * np.abs(x).sum()


def np_l2(x: np.ndarray, factor: float) -> float:
    return factor * (np.abs(x) ** 2).sum()


def np_orthogonal(x: np.ndarray, factor: float, mode: str) -> float:
    vectors = x if mode == "rows" else x.T
    count = vectors.shape[0]
    if count < 2:
        return 0.0
    norms = np_vector_norms(vectors, 1)
    # Keras's ops.normalize: x * min(1 / |x|, 1 / epsilon), so a vector shorter than epsilon has no direction.
    with np.errstate(divide="ignore"):
        unit = vectors * np.minimum(1 / norms, 1 / EPS)
    product = np.abs(unit @ unit.conj().T) * (1 - np.eye(count))
    return factor * 0.5 * product.sum() / (count * (count - 1) / 2)


def np_norms(w: np.ndarray, axis) -> np.ndarray:
    if axis == []:
        return np.abs(w)
    axes = None if axis is None else tuple(axis) if isinstance(axis, list) else axis
    return np_vector_norms(w, axes)


def np_constraint(constraint, w: np.ndarray) -> np.ndarray:
    if isinstance(constraint, NonNeg):
        return np.maximum(w, 0)
    n = np_norms(w, constraint.axis)
    if isinstance(constraint, UnitNorm):
        return w / (EPS + n)
    if isinstance(constraint, MaxNorm):
        return w * (np.clip(n, 0, constraint.max_value) / (EPS + n))
    desired = constraint.rate * np.clip(n, constraint.min_value, constraint.max_value) + (1 - constraint.rate) * n
    with np.errstate(invalid="ignore"):
        return w * (desired / (EPS + n))


def np_penalty(regularizer, x: np.ndarray) -> float:
    if isinstance(regularizer, L1L2):
        return np_l1(x, regularizer.l1) + np_l2(x, regularizer.l2)
    if isinstance(regularizer, L1):
        return np_l1(x, regularizer.l1)
    if isinstance(regularizer, L2):
        return np_l2(x, regularizer.l2)
    return np_orthogonal(x, regularizer.factor, regularizer.mode)


def close(expected, rtol: float = 1e-5, atol: float = 1e-7):
    def check(result) -> None:
        assert isinstance(result, torch.Tensor)
        np.testing.assert_allclose(np64(result), np.asarray(expected), rtol=rtol, atol=atol, equal_nan=True)
    return check


def holder(value: torch.Tensor, requires_grad: bool | None = None) -> torch.nn.Module:
    """A module whose one parameter ``weight`` holds ``value``."""
    module = torch.nn.Module()
    trainable = value.is_floating_point() or value.is_complex() if requires_grad is None else requires_grad
    module.weight = torch.nn.Parameter(value.clone(), requires_grad=trainable)
    return module


REGULARIZERS = [L1(0.3), L2(0.2), L1L2(0.1, 0.05), OrthogonalRegularizer(0.5, "rows"),
                OrthogonalRegularizer(0.5, "columns")]
NORMS = [MaxNorm(2.0, axis=0), UnitNorm(axis=1), MinMaxNorm(0.5, 1.5, rate=0.7, axis=[0, 1]), MaxNorm(1.0, axis=None)]
CONSTRAINTS = NORMS + [NonNeg()]


# ================================================================================================
# Issue 11 regressions, each by name
# ================================================================================================
def test_constrain_with_optimizer_refuses_an_axis_the_weight_lacks_and_binds_nothing() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hooks = dict(opt._optimizer_step_post_hooks)
    clear_error(lambda: interop.constrain(model, {"0.weight": MaxNorm(axis=4)}, optimizer=opt),
                "MaxNorm", "axis=4", "(2, 3)", state=[model, opt])
    assert dict(opt._optimizer_step_post_hooks) == hooks
    # Several rules, one bad: none is bound.
    clear_error(lambda: interop.constrain(model, {"0.weight": "unit_norm", "*.bias": MaxNorm(axis=1)}, optimizer=opt),
                "MaxNorm", "axis=1", "(2,)", state=[model, opt])
    assert binding.rule_of(model[0], "weight") is None and dict(opt._optimizer_step_post_hooks) == hooks
    # The step that would have failed half-way now just runs.
    model(torch.ones(1, 3)).sum().backward()
    opt.step()


def test_bind_refuses_an_axis_the_weight_lacks() -> None:
    linear = torch.nn.Linear(3, 2)
    binding.bind(linear, "weight", constraint="non_neg")
    clear_error(lambda: binding.bind(linear, "weight", regularizer="l2", constraint=MaxNorm(axis=4)),
                "MaxNorm", "axis=4", "(2, 3)", state=[linear])
    assert binding.rule_of(linear, "weight").constraint == NonNeg() or isinstance(
        binding.rule_of(linear, "weight").constraint, NonNeg)


def test_add_weight_refuses_an_axis_the_weight_lacks() -> None:
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), constraint=MaxNorm(axis=1))

        def call(self, inputs):
            return inputs * self.scale

    layer = Scale()
    clear_error(lambda: layer(torch.ones(2, 3)), "MaxNorm", "axis=1", "(3,)", state=[layer])
    assert not layer.built and "scale" not in layer._parameters


def test_dense_kernel_constraint_with_an_axis_the_kernel_lacks_fails_at_build() -> None:
    clear_error(lambda: layers.Dense(3, kernel_constraint=MaxNorm(axis=4), input_shape=(4,)),
                "MaxNorm", "axis=4", "(4, 3)")
    dense = layers.Dense(3, kernel_constraint=MaxNorm(axis=[0, 2]))
    clear_error(lambda: dense(torch.ones(2, 4)), "MaxNorm", "axis=[0, 2]", "(4, 3)", state=[dense])
    assert not dense.built and dense._parameters.get("kernel") is None


def test_rebinding_a_built_layer_refuses_an_axis_the_kernel_lacks() -> None:
    dense = layers.Dense(3, kernel_constraint="unit_norm")
    dense.build((None, 4))
    clear_error(lambda: setattr(dense, "kernel_constraint", MaxNorm(axis=4)), "MaxNorm", "axis=4", "(4, 3)",
                state=[dense])
    assert isinstance(dense.kernel_constraint, UnitNorm)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_penalty_of_300x300_ones_is_finite_on_every_path(dtype: str) -> None:
    weight = torch.ones(300, 300, dtype=getattr(torch, dtype))
    module = holder(weight)
    binding.bind(module, "weight", regularizer=L2(1e-4))
    direct = L2(1e-4)(module.weight)
    assert direct.dtype == torch.float32 and direct.item() == pytest.approx(9.0)
    plan = engine.plan_for(module)
    for path in (binding.regularization_loss, binding.total_penalty, lambda m: plan.grouped_penalty_value(),
                 lambda m: plan.differentiable_penalty()):
        correct(lambda path=path: path(module), lambda r: r.dtype == torch.float32 and r.item() == direct.item())
    module.weight.grad = None
    plan.add_penalty_gradients()
    correct(lambda: module.weight.grad,
            lambda g: g.dtype == weight.dtype and torch.equal(g, torch.full_like(g, 2e-4)))
    # Activity penalties of half outputs: the direct call in float32, through the engine too.
    layer = torch.nn.Linear(2, 2)
    binding.record_call_loss(layer, binding.Activity(L2(1e-4), torch.ones(300, 300, dtype=weight.dtype)))
    correct(lambda: engine.call_loss(layer), lambda r: r.item() == pytest.approx(9.0 / 300))


def test_orthogonal_gradient_is_finite_and_correct_with_a_zero_row_and_column() -> None:
    base = torch.tensor([[1.0, 2.0, 0.0, 3.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    for mode in ("rows", "columns"):
        x = base.clone().requires_grad_()
        regularizer = OrthogonalRegularizer(1.0, mode)
        value = regularizer(x)
        value.backward()
        correct(lambda value=value: value, close(np_orthogonal(np64(base), 1.0, mode), rtol=1e-12))
        # Central differences of the NumPy formula (a zero vector gives no cosine).
        expected = np.zeros(base.shape)
        for index in np.ndindex(*base.shape):
            step = np.zeros(base.shape)
            step[index] = 1e-6
            expected[index] = (np_orthogonal(np64(base) + step, 1.0, mode)
                               - np_orthogonal(np64(base) - step, 1.0, mode)) / 2e-6
        zero = (np64(base) == 0).all(axis=1 if mode == "rows" else 0)
        if mode == "rows":
            expected[zero, :] = 0.0  # the subgradient at a zero vector
        else:
            expected[:, zero] = 0.0
        correct(lambda x=x: x.grad, lambda g, e=expected: finite(g) and np.allclose(np64(g), e, atol=1e-6))


def test_complex_weights_count_by_magnitude_on_every_path() -> None:
    z = torch.tensor([[1 + 2j, 0j], [3 - 4j, -2j]], dtype=torch.complex64)
    for regularizer in (L1(0.5), L2(0.5), L1L2(0.5, 0.25)):
        expected = np_penalty(regularizer, np64(z))
        direct = correct(lambda r=regularizer: r(z), close(expected))
        assert direct.dtype == torch.float32
        module = holder(z)
        binding.bind(module, "weight", regularizer=regularizer)
        correct(lambda m=module: binding.regularization_loss(m), close(expected))
        correct(lambda m=module: engine.plan_for(m).grouped_penalty_value(), close(expected))
    for constraint in (MaxNorm(2.0, axis=1), UnitNorm(axis=0), MinMaxNorm(1.0, 2.0, axis=None)):
        correct(lambda c=constraint: c(z), close(np_constraint(constraint, np64(z))))


def test_nonneg_refuses_complex_weights() -> None:
    z = torch.tensor([1 + 2j, -1j])
    clear_error(lambda: NonNeg()(z), "NonNeg", "complex64")
    module = holder(z)
    clear_error(lambda: binding.bind(module, "weight", constraint="non_neg"), "NonNeg", "complex64",
                state=[module])


def test_max_norm_refuses_an_int64_weight_instead_of_zeroing_it() -> None:
    w = torch.tensor([[30, -40]])
    clear_error(lambda: MaxNorm(axis=1)(w), "MaxNorm", "int64")
    module = holder(w, requires_grad=False)
    clear_error(lambda: binding.bind(module, "weight", constraint=MaxNorm(axis=1)), "MaxNorm", "int64",
                state=[module])


def test_nonneg_keeps_bool_and_int_dtypes() -> None:
    correct(lambda: NonNeg()(torch.tensor([True, False])),
            lambda r: r.dtype == torch.bool and r.tolist() == [True, False])
    correct(lambda: NonNeg()(torch.tensor([-3, 4], dtype=torch.int16)),
            lambda r: r.dtype == torch.int16 and r.tolist() == [0, 4])
    module = holder(torch.tensor([-3, 4]), requires_grad=False)
    binding.bind(module, "weight", constraint="non_neg")
    binding.apply_constraints(module)
    correct(lambda: module.weight, lambda r: r.dtype == torch.int64 and r.tolist() == [0, 4])


# What Keras 3.15.1 (torch backend) returns for axis=[] on AXIS_EMPTY_W: its formula sums over no
# axes, so each entry is its own vector (keras.ops.norm(axis=[]) itself raises). Recorded here,
# because importing Keras would take half this file's time budget.
AXIS_EMPTY_W = np.array([[3.0, -4.0], [0.5, 2.0], [0.0, -0.25]], dtype=np.float32)
KERAS_AXIS_EMPTY = [
    (MaxNorm(1.0, axis=[]), [[1.0, -1.0], [0.49999988079071045, 1.0], [0.0, -0.24999991059303284]]),
    (UnitNorm(axis=[]), [[1.0, -1.0], [0.9999997615814209, 1.0], [0.0, -0.9999996423721313]]),
    (MinMaxNorm(0.5, 1.0, rate=0.5, axis=[]), [[2.0, -2.5], [0.49999988079071045, 1.5], [0.0, -0.37499988079071045]]),
]


@pytest.mark.parametrize("constraint, keras_result", KERAS_AXIS_EMPTY, ids=repr)
def test_norm_constraint_with_an_empty_axis_list_is_per_entry_as_in_keras(constraint, keras_result) -> None:
    w = torch.from_numpy(AXIS_EMPTY_W)
    correct(lambda: constraint(w), close(np.array(keras_result), rtol=1e-6))
    correct(lambda: constraint(w), close(np_constraint(constraint, AXIS_EMPTY_W.astype(np.float64))))
    module = holder(w)
    binding.bind(module, "weight", constraint=constraint)
    binding.apply_constraints(module)
    correct(lambda: module.weight, close(np.array(keras_result), rtol=1e-6))


def test_a_constraint_passed_as_a_regularizer_is_refused() -> None:
    clear_error(lambda: regularizers.get(MaxNorm()), "MaxNorm", "constraint, not a regularizer")
    linear = torch.nn.Linear(2, 2)
    clear_error(lambda: interop.regularize(linear, {"weight": NonNeg()}), "NonNeg", "regularizer", state=[linear])
    clear_error(lambda: binding.bind(linear, "weight", regularizer=UnitNorm()), "UnitNorm", state=[linear])
    clear_error(lambda: layers.Dense(2, kernel_regularizer=MaxNorm()), "kernel_regularizer", "MaxNorm")
    clear_error(lambda: constraints.get(L2()), "L2", "regularizer, not a constraint")


def test_regularizers_get_of_a_class_that_is_not_a_regularizer_is_refused() -> None:
    for family, kind in ((regularizers, "Regularizer"), (constraints, "Constraint"),
                         (initializers, "Initializer")):
        clear_error(lambda family=family: family.get(int), "int", kind)
    correct(lambda: regularizers.get(L2), lambda r: isinstance(r, L2))


def test_a_registered_layer_does_not_deserialize_as_a_regularizer() -> None:
    @serialization.register_keras_serializable(package="AdvRules")
    class Doubler(layers.Layer):
        def call(self, inputs):
            return 2 * inputs

    for config in ("AdvRules>Doubler",
                   {"module": "tests", "class_name": "Doubler", "config": {}, "registered_name": "AdvRules>Doubler"}):
        clear_error(lambda config=config: regularizers.deserialize(config), "Doubler", "layer, not a regularizer")
        clear_error(lambda config=config: constraints.get(config), "Doubler", "layer, not a constraint")


@pytest.mark.parametrize("returned", [torch.ones(2, 2), torch.ones(3), torch.tensor(1 + 1j), torch.tensor(True),
                                      "0.5", None], ids=repr)
def test_a_penalty_that_is_not_a_scalar_is_refused_naming_parameter_and_regularizer(returned) -> None:
    def bad_penalty(x):
        return returned

    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    binding.bind(model[0], "weight", regularizer=bad_penalty)
    for path in (binding.regularization_loss, binding.total_penalty, binding.penalties):
        clear_error(lambda path=path: path(model), "bad_penalty", "'0.weight'", state=[model])


# ================================================================================================
# Regularizers: every dtype, special values, 0-d, empty, meta, numpy inputs
# ================================================================================================
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("regularizer", REGULARIZERS, ids=repr)
def test_regularizer_of_every_dtype_matches_numpy(regularizer, dtype: str) -> None:
    x = sample(dtype)
    result = correct(lambda: regularizer(x), close(np_penalty(regularizer, np64(x)), rtol=1e-5))
    assert result.dim() == 0 and not result.is_complex()
    assert result.dtype == (torch.float64 if dtype == "float64" else torch.float32)


@pytest.mark.parametrize("dtype", TRAINABLE)
@pytest.mark.parametrize("regularizer", REGULARIZERS, ids=repr)
def test_fast_path_equals_direct_call_for_every_trainable_dtype(regularizer, dtype: str) -> None:
    module = holder(sample(dtype, seed=3))
    binding.bind(module, "weight", regularizer=regularizer)
    direct = regularizer(module.weight)
    for path in (binding.regularization_loss, binding.total_penalty):
        correct(lambda path=path: path(module),
                lambda r: r.dtype == direct.dtype and r.item() == pytest.approx(direct.item(), rel=1e-6))


@pytest.mark.parametrize("dtype", TRAINABLE)
@pytest.mark.parametrize("regularizer", [L1(0.3), L2(0.2), L1L2(0.1, 0.05)], ids=repr)
def test_analytic_gradients_equal_autograd_of_the_direct_call(regularizer, dtype: str) -> None:
    module = holder(sample(dtype, seed=4))
    binding.bind(module, "weight", regularizer=regularizer)
    regularizer(module.weight).backward()
    expected = module.weight.grad.clone()
    module.weight.grad = None
    engine.plan_for(module).add_penalty_gradients()
    correct(lambda: module.weight.grad,
            lambda g: g.dtype == module.weight.dtype and torch.allclose(g, expected, rtol=rtol_of(dtype), atol=1e-6))
    module.weight.grad = None
    engine.plan_for(module).differentiable_penalty().backward()
    correct(lambda: module.weight.grad, lambda g: torch.allclose(g, expected, rtol=rtol_of(dtype), atol=1e-6))
    correct(lambda: engine.plan_for(module).grouped_penalty_value(),
            lambda r: r.item() == pytest.approx(regularizer(module.weight).item(), rel=1e-6))


SPECIAL = {
    "nan": (torch.float32, [float("nan"), 1.0]),
    "inf": (torch.float32, [float("inf"), 1.0]),
    "-inf": (torch.float32, [float("-inf"), 1.0]),
    "negative": (torch.float32, [-2.0, -3.0]),
    "zero": (torch.float32, [0.0, -0.0]),
    "float32 max": (torch.float32, [3.0e38, 3.0e38]),
    "float64 huge": (torch.float64, [1e308, 1e308]),
    "float16 max": (torch.float16, [65504.0, 65504.0]),
    "subnormal": (torch.float32, [1e-45, 1e-44]),
    "float64 tiny": (torch.float64, [5e-324, 1e-320]),
}


@pytest.mark.parametrize("kind", list(SPECIAL))
@pytest.mark.parametrize("regularizer", [L1(0.5), L2(0.5), L1L2(0.5, 0.5)], ids=repr)
def test_regularizer_of_special_values_is_the_ieee_value(regularizer, kind: str) -> None:
    """NaN propagates; a sum past the dtype's range is inf, as NumPy computes it in that dtype."""
    dtype, values = SPECIAL[kind]
    x = torch.tensor(values, dtype=dtype)
    compute = np.float64 if dtype == torch.float64 else np.float32
    data = np64(x).astype(compute)
    expected = compute(0)
    with np.errstate(over="ignore"):
        if getattr(regularizer, "l1", 0):
            expected = expected + compute(regularizer.l1) * np.abs(data).sum(dtype=compute)
        if getattr(regularizer, "l2", 0):
            expected = expected + compute(regularizer.l2) * (data * data).sum(dtype=compute)
    correct(lambda: regularizer(x), close(expected, rtol=1e-6, atol=0))


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_of_nan_and_inf_vectors_is_nan(mode: str) -> None:
    """A vector without a direction (NaN, infinite) has no cosine: the penalty says so with NaN."""
    for bad in (float("nan"), float("inf")):
        x = torch.tensor([[bad, 1.0], [1.0, 2.0]])
        correct(lambda x=x: OrthogonalRegularizer(1.0, mode)(x), lambda r: math.isnan(r.item()))


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_orthogonal_of_huge_and_tiny_vectors_matches_numpy(mode: str, dtype: str) -> None:
    scale = 1e300 if dtype == "float64" else 1e37
    for factor in (scale, 1 / scale):
        x = torch.tensor([[3.0, 4.0], [1.0, -2.0], [0.5, 0.5]], dtype=getattr(torch, dtype)) * factor
        correct(lambda x=x: OrthogonalRegularizer(1.0, mode)(x), close(np_orthogonal(np64(x), 1.0, mode), rtol=1e-5))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (1, 5), (5, 1)])
@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_of_empty_or_single_vectors_is_zero(shape: tuple[int, ...], mode: str) -> None:
    x = torch.zeros(shape, requires_grad=True)
    value = correct(lambda: OrthogonalRegularizer(0.5, mode)(x), lambda r: r.item() == 0.0 and r.dim() == 0)
    value.backward()
    assert torch.equal(x.grad, torch.zeros(shape))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)])
def test_orthogonal_needs_rank_2(shape: tuple[int, ...]) -> None:
    clear_error(lambda: OrthogonalRegularizer()(torch.ones(shape)), "inputs.shape", str(shape))
    module = holder(torch.ones(shape))
    clear_error(lambda: binding.bind(module, "weight", regularizer=OrthogonalRegularizer()), "inputs.shape",
                "OrthogonalRegularizer", state=[module])


@pytest.mark.parametrize("regularizer", [L1(0.5), L2(0.5), L1L2(0.5, 0.5)], ids=repr)
@pytest.mark.parametrize("x, expected", [
    (torch.tensor(-3.0), {"l1": 3.0, "l2": 9.0}),
    (torch.zeros(0), {"l1": 0.0, "l2": 0.0}),
    (torch.zeros(0, 4), {"l1": 0.0, "l2": 0.0}),
    (np.float32(-2.0), {"l1": 2.0, "l2": 4.0}),
    (np.array([[1.0, -1.0]]), {"l1": 2.0, "l2": 2.0}),
    (np.int64(3), {"l1": 3.0, "l2": 9.0}),
    ([1, -2], {"l1": 3.0, "l2": 5.0}),
    (True, {"l1": 1.0, "l2": 1.0}),
], ids=["0-d", "empty", "empty2d", "np.float32", "np.array", "np.int64", "list", "bool"])
def test_regularizer_of_scalars_empties_and_numpy_values(regularizer, x, expected) -> None:
    value = getattr(regularizer, "l1", 0) * expected["l1"] + getattr(regularizer, "l2", 0) * expected["l2"]
    correct(lambda: regularizer(x), close(value))


@pytest.mark.parametrize("regularizer", REGULARIZERS, ids=repr)
def test_regularizer_of_a_meta_tensor_is_a_meta_scalar(regularizer) -> None:
    correct(lambda: regularizer(torch.empty(4, 3, device="meta")), lambda r: r.is_meta and r.shape == ())


@pytest.mark.parametrize("bad", ["abc", None, object(), {"a": 1}, [1, "a"], [[1], [1, 2]], 10**400, b"xy"], ids=repr)
@pytest.mark.parametrize("regularizer", [L1(), L2(), L1L2(0.1, 0.1), OrthogonalRegularizer(), regularizers.Regularizer()],
                         ids=repr)
def test_regularizer_of_a_non_tensor_is_refused(regularizer, bad) -> None:
    name = "inputs" if isinstance(regularizer, OrthogonalRegularizer) else "x"
    clear_error(lambda: regularizer(bad), name, repr(bad)[:20])


FACTOR_ARGS = [(L1, "l1"), (L2, "l2"), (L1L2, "l1"), (L1L2, "l2"), (OrthogonalRegularizer, "factor")]


@pytest.mark.parametrize("bad", [-1, -1e-9, float("nan"), float("inf"), float("-inf"), 10**400, -(10**400), True,
                                 "0.1", [0.1], torch.tensor(0.1), np.float64("nan"), 1j], ids=repr)
@pytest.mark.parametrize("cls, argument", FACTOR_ARGS, ids=lambda v: getattr(v, "__name__", v))
def test_bad_regularizer_factors_are_refused(cls, argument: str, bad) -> None:
    clear_error(lambda: cls(**{argument: bad}), argument, repr(bad)[:20])


@pytest.mark.parametrize("good, stored", [(0, 0.0), (1e308, 1e308), (np.float32(0.5), 0.5), (np.int64(2), 2.0),
                                          (10**300, 1e300)], ids=repr)
@pytest.mark.parametrize("cls, argument", FACTOR_ARGS, ids=lambda v: getattr(v, "__name__", v))
def test_regularizer_factors_that_are_numbers_are_kept_as_python_floats(cls, argument: str, good, stored) -> None:
    correct(lambda: cls(**{argument: good}).get_config()[argument],
            lambda r: type(r) is float and r == stored)


@pytest.mark.parametrize("mode", ["diag", "", None, 1, ["rows"], "Rows"], ids=repr)
def test_orthogonal_mode_must_be_rows_or_columns(mode) -> None:
    clear_error(lambda: OrthogonalRegularizer(mode=mode), "mode", str(mode))


# ================================================================================================
# Constraints: every dtype, the fast path, special values, empty, 0-d, meta
# ================================================================================================
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=repr)
def test_constraint_of_every_dtype_matches_numpy_or_is_refused(constraint, dtype: str) -> None:
    w = sample(dtype, seed=5)
    floating = dtype in FLOATS + COMPLEX
    if isinstance(constraint, NonNeg):
        if dtype in COMPLEX:
            clear_error(lambda: constraint(w), "NonNeg", dtype)
        elif dtype == "bool":
            correct(lambda: constraint(w), lambda r: r.dtype == torch.bool and torch.equal(r, w))
        else:
            correct(lambda: constraint(w), lambda r: r.dtype == w.dtype and np.array_equal(np64(r), np.maximum(np64(w), 0)))
        return
    if not floating:
        clear_error(lambda: constraint(w), type(constraint).__name__, dtype)
        return
    correct(lambda: constraint(w), lambda r: r.dtype == w.dtype and close(
        np_constraint(constraint, np64(w)), rtol=rtol_of(dtype), atol=rtol_of(dtype))(r))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=repr)
def test_apply_constraints_equals_the_direct_call_or_binding_is_refused(constraint, dtype: str) -> None:
    module = holder(sample(dtype, seed=6), requires_grad=False)
    expected_error = (isinstance(constraint, NonNeg) and dtype in COMPLEX) or (
        not isinstance(constraint, NonNeg) and dtype not in FLOATS + COMPLEX)
    if expected_error:
        clear_error(lambda: binding.bind(module, "weight", constraint=constraint), type(constraint).__name__, dtype,
                    state=[module])
        return
    expected = constraint(module.weight.detach())
    binding.bind(module, "weight", constraint=constraint)
    binding.apply_constraints(module)
    correct(lambda: module.weight.detach(), lambda r: r.dtype == expected.dtype and torch.allclose(
        r.to(torch.complex128 if r.is_complex() else torch.float64),
        expected.to(torch.complex128 if r.is_complex() else torch.float64), rtol=1e-6, atol=1e-7, equal_nan=True))


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("constraint", NORMS[:3], ids=repr)
def test_norm_constraint_turns_a_vector_with_nan_or_inf_into_nan_and_leaves_others_exact(constraint, kind) -> None:
    """A vector holding NaN or an infinite entry has no norm: it comes out NaN (visible), the rest exact."""
    w = sample("float64", (3, 4), seed=7)
    w[1, 2] = float(kind)
    vectors_axis = 0 if constraint.axis in (1, [1]) else 1  # the axis that indexes the vectors
    result = constraint(w)
    if constraint.axis == [0, 1]:
        correct(lambda: result, lambda r: bool(torch.isnan(r).all()))
        return
    bad = torch.zeros(w.shape, dtype=torch.bool)
    bad.select(vectors_axis, 1 if vectors_axis == 0 else 2)[:] = True
    clean = np64(w).copy()
    clean[~np.isfinite(clean)] = 0.0
    expected = np_constraint(constraint, clean)
    correct(lambda: result, lambda r: bool(torch.isnan(r[bad]).all()) and np.allclose(np64(r)[~bad.numpy()],
                                                                                      expected[~bad.numpy()]))


@pytest.mark.parametrize("kind", ["float32 max", "float64 huge", "float16 max", "subnormal", "float64 tiny", "zero",
                                  "negative"])
@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=repr)
def test_constraint_of_huge_tiny_and_zero_vectors_matches_numpy(constraint, kind: str) -> None:
    dtype, values = SPECIAL[kind]
    w = torch.tensor([values, [1.0, -0.5]], dtype=dtype)
    if constraint.get_config().get("axis") == 0:
        w = w.T.contiguous()
    expected = np_constraint(constraint, np64(w))
    # The float range of the result: a projection larger than it is inf, as NumPy's would be in that dtype.
    info = torch.finfo(dtype)
    with np.errstate(invalid="ignore"):
        expected = np.where(np.abs(expected) > info.max, np.sign(expected) * np.inf, expected)
    tol = rtol_of(str(dtype).replace("torch.", ""))
    correct(lambda: constraint(w), lambda r: r.dtype == dtype and np.allclose(np64(r), expected, rtol=tol,
                                                                              atol=float(info.tiny) * 4))


def test_nonneg_gives_positive_zero_and_keeps_nan() -> None:
    correct(lambda: NonNeg()(torch.tensor([-0.0, -1.0, float("nan"), float("-inf"), float("inf")])),
            lambda r: torch.equal(torch.signbit(r[:2]), torch.tensor([False, False]))
            and math.isnan(r[2].item()) and r[3].item() == 0.0 and r[4].item() == math.inf)


@pytest.mark.parametrize("shape, axis", [((0, 3), 0), ((0, 3), 1), ((3, 0), 0), ((3, 0), 1), ((0, 0), None),
                                         ((0,), 0), ((2, 0, 3), [0, 2]), ((0, 3), [])])
@pytest.mark.parametrize("cls", [MaxNorm, UnitNorm, MinMaxNorm])
def test_norm_constraint_of_an_empty_weight_is_empty_as_in_keras(cls, shape, axis) -> None:
    """Keras 3.15.1 returns an empty float32 result of the input's shape for every one of these."""
    result = correct(lambda: cls(axis=axis)(torch.zeros(shape)), lambda r: tuple(r.shape) == shape)
    assert result.dtype == torch.float32
    module = holder(torch.zeros(shape))
    binding.bind(module, "weight", constraint=cls(axis=axis))
    binding.apply_constraints(module)
    correct(lambda: module.weight, lambda r: tuple(r.shape) == shape)


@pytest.mark.parametrize("constraint, expected", [
    (MaxNorm(2.0, axis=None), 2.0 * -3.0 / (EPS + 3.0)),
    (UnitNorm(axis=None), -3.0 / (EPS + 3.0)),
    (MinMaxNorm(4.0, 5.0, axis=None), 4.0 * -3.0 / (EPS + 3.0)),
    (MaxNorm(2.0, axis=[]), 2.0 * -3.0 / (EPS + 3.0)),
    (NonNeg(), 0.0),
], ids=repr)
def test_constraint_of_a_0d_weight(constraint, expected) -> None:
    correct(lambda: constraint(torch.tensor(-3.0)), lambda r: r.shape == () and r.item() == pytest.approx(expected))


@pytest.mark.parametrize("axis", [0, -1, [0]])
def test_a_0d_weight_has_no_axis_0(axis) -> None:
    clear_error(lambda: MaxNorm(axis=axis)(torch.tensor(-3.0)), "axis", "rank 0")


@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=repr)
def test_constraint_of_a_meta_tensor_is_a_meta_tensor_of_its_shape(constraint) -> None:
    correct(lambda: constraint(torch.empty(4, 3, device="meta")), lambda r: r.is_meta and r.shape == (4, 3))


def test_fast_paths_on_meta_parameters_give_meta_results() -> None:
    module = holder(torch.empty(4, 3, device="meta"))
    binding.bind(module, "weight", regularizer=L1L2(0.1, 0.1), constraint=MaxNorm(axis=0))
    correct(lambda: binding.regularization_loss(module), lambda r: r.is_meta and r.shape == ())
    binding.apply_constraints(module)
    correct(lambda: module.weight, lambda r: r.is_meta and r.shape == (4, 3))


@pytest.mark.parametrize("w, expected", [
    (np.array([[3.0, 4.0]], dtype=np.float32), np.array([[0.6, 0.8]])),
    (np.float64(-2.0), np.array(-1.0)),
    ([[3.0], [4.0]], np.array([[0.6], [0.8]])),
], ids=["array", "np.float64", "list"])
def test_unit_norm_of_numpy_values(w, expected) -> None:
    correct(lambda: UnitNorm(axis=None)(w), close(expected, rtol=1e-5))


@pytest.mark.parametrize("bad", ["abc", None, object(), {"a": 1}, [1, "a"], [[1.0], [1.0, 2.0]], 10**400], ids=repr)
@pytest.mark.parametrize("constraint", CONSTRAINTS + [constraints.Constraint()], ids=repr)
def test_constraint_of_a_non_tensor_is_refused(constraint, bad) -> None:
    clear_error(lambda: constraint(bad), "w", repr(bad)[:20])


BOUND_ARGS = [(MaxNorm, "max_value"), (MinMaxNorm, "min_value"), (MinMaxNorm, "max_value"), (MinMaxNorm, "rate")]


@pytest.mark.parametrize("bad", [-1, float("nan"), 10**400, -(10**400), True, "1", [1.0], None, np.float64("nan"),
                                 torch.tensor(1.0), 1j], ids=repr)
@pytest.mark.parametrize("cls, argument", BOUND_ARGS, ids=lambda v: getattr(v, "__name__", v))
def test_bad_constraint_bounds_are_refused(cls, argument: str, bad) -> None:
    clear_error(lambda: cls(**{argument: bad}), argument, repr(bad)[:20])


@pytest.mark.parametrize("kwargs, fragments", [
    ({"min_value": 2.0, "max_value": 1.0}, ("min_value", "max_value", "2.0")),
    ({"rate": 1.5}, ("rate", "1.5")),
    ({"rate": -0.1}, ("rate", "-0.1")),
    ({"rate": float("inf")}, ("rate", "inf")),
], ids=repr)
def test_min_max_norm_bound_combinations(kwargs, fragments) -> None:
    clear_error(lambda: MinMaxNorm(**kwargs), *fragments)


@pytest.mark.parametrize("bad", ["0", 1.5, True, [0, 0], [0, "1"], (0, None), {"axis": 0}, 2**64, [[0]]], ids=repr)
@pytest.mark.parametrize("cls", [MaxNorm, UnitNorm, MinMaxNorm])
def test_bad_constraint_axes_are_refused(cls, bad) -> None:
    clear_error(lambda: cls(axis=bad), "axis", repr(bad)[:10])


@pytest.mark.parametrize("good, stored", [(np.int64(1), 1), ((0, 1), [0, 1]), ([], []), (None, None), (-1, -1)],
                         ids=repr)
def test_constraint_axes_are_stored_json_ready(good, stored) -> None:
    correct(lambda: json.loads(json.dumps(MaxNorm(axis=good).get_config()))["axis"], lambda r: r == stored)


@pytest.mark.parametrize("good", [float("inf"), 0, 10**300, np.float32(1.5), np.int64(3)], ids=repr)
def test_max_norm_bounds_that_are_numbers_are_accepted(good) -> None:
    correct(lambda: MaxNorm(good, axis=None)(torch.tensor([3.0, 4.0])),
            close(np_constraint(MaxNorm(float(good), axis=None), np.array([3.0, 4.0])), rtol=1e-6))


# ================================================================================================
# Hypothesis: the fast paths agree with the direct calls; projections keep their promises
# ================================================================================================
@FAST
@given(values=st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=12),
       l1=st.floats(0, 10), l2=st.floats(0, 10), half=st.sampled_from(["float16", "bfloat16", "float32"]))
def test_fast_penalty_equals_direct_for_any_weights(values, l1: float, l2: float, half: str) -> None:
    module = holder(torch.tensor(values, dtype=getattr(torch, half)))
    regularizer = L1L2(l1, l2)
    binding.bind(module, "weight", regularizer=regularizer)
    direct = regularizer(module.weight).item()
    correct(lambda: binding.regularization_loss(module),
            lambda r: finite(r) and r.item() == pytest.approx(direct, rel=1e-5, abs=1e-6))


@FAST
@given(values=st.lists(st.floats(-(2.0**120), 2.0**120, width=32), min_size=2, max_size=12),
       max_value=st.floats(0, 100))
def test_max_norm_caps_every_vector(values, max_value: float) -> None:
    w = torch.tensor(values).reshape(-1, 1) if len(values) % 2 else torch.tensor(values).reshape(2, -1)
    result = correct(lambda: MaxNorm(max_value, axis=0)(w), finite)
    norms = np.sqrt((np64(result) ** 2).sum(axis=0))
    assert (norms <= max_value * (1 + 1e-5) + 1e-6).all()


@FAST
@given(rows=st.integers(0, 4), cols=st.integers(0, 4), seed=st.integers(0, 100), mode=st.sampled_from(["rows", "columns"]))
def test_orthogonal_is_finite_with_zero_vectors_and_matches_numpy(rows: int, cols: int, seed: int, mode: str) -> None:
    x = sample("float64", (rows, cols), seed=seed)
    if rows and cols:
        x[seed % rows] = 0.0
    x.requires_grad_()
    value = correct(lambda: OrthogonalRegularizer(1.0, mode)(x), close(np_orthogonal(np64(x), 1.0, mode), rtol=1e-9))
    value.backward()
    assert x.grad is None or finite(x.grad)


# ================================================================================================
# Serialization: get/serialize/deserialize of every family with bad identifiers
# ================================================================================================
FAMILIES = [regularizers, constraints, initializers]
OTHERS = {regularizers: NonNeg(), constraints: L2(), initializers: L1()}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__.split(".")[-1])
@pytest.mark.parametrize("bad, fragment", [
    (42, "42"), (4.2, "4.2"), (True, "True"), ([1], "[1]"), ((), "()"), (object(), "object"), (int, "int"),
    (torch.nn.Linear, "Linear"), ("no_such_rule", "no_such_rule"), ("", "''"), (b"l2", "b'l2'"),
], ids=repr)
def test_get_refuses_what_is_not_of_its_family(family, bad, fragment: str) -> None:
    clear_error(lambda: family.get(bad), fragment)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__.split(".")[-1])
def test_get_refuses_an_object_of_another_family(family) -> None:
    other = OTHERS[family]
    clear_error(lambda: family.get(other), type(other).__name__, "not a")
    clear_error(lambda: family.get(type(other)), type(other).__name__)
    clear_error(lambda: family.get(layers.Dense(2)), "layer, not a")


@pytest.mark.parametrize("family", FAMILIES + [activations], ids=lambda f: f.__name__.split(".")[-1])
@pytest.mark.parametrize("config, fragments", [
    ({"class_name": 5, "config": {}}, ("class_name", "5")),
    ({"class_name": [1], "config": {}}, ("class_name", "[1]")),
    ({"class_name": None, "config": {}}, ("class_name", "None")),
    ({"class_name": "", "config": {}}, ("class_name", "''")),
    ({"class_name": "L2", "module": 7, "config": {}}, ("module", "7")),
    ({"class_name": "L2", "registered_name": ["x"], "config": {}}, ("registered_name", "['x']")),
    ({"config": {}}, ("class_name",)),
    ({"class_name": "__lambda__", "config": {"code": "x"}}, ("lambda",)),
    ({"class_name": "function", "config": 5, "module": "builtins"}, ("5",)),
    (5, ("config", "5")),
    ([], ("config", "[]")),
], ids=repr)
def test_deserialize_refuses_malformed_configs(family, config, fragments) -> None:
    clear_error(lambda: family.deserialize(config), *fragments)


@pytest.mark.parametrize("custom_objects", [5, [("L2", L2)], "L2", object()], ids=repr)
@pytest.mark.parametrize("call", [
    lambda co: regularizers.deserialize({"class_name": "L2", "config": {}}, custom_objects=co),
    lambda co: constraints.deserialize("non_neg", custom_objects=co),
    lambda co: serialization.deserialize_keras_object({"class_name": "L2", "module": "keras.regularizers",
                                                       "config": {}}, custom_objects=co),
    lambda co: serialization.get_registered_object("L2", custom_objects=co),
    lambda co: serialization.custom_object_scope(co).__enter__(),
], ids=["regularizers", "constraints", "deserialize_keras_object", "get_registered_object", "scope"])
def test_custom_objects_must_be_a_mapping(call, custom_objects) -> None:
    clear_error(lambda: call(custom_objects), "custom_objects", repr(custom_objects)[:10])


def nested(depth: int) -> dict:
    config: dict = {"class_name": "L2", "config": {"l2": 0.1}}
    for _ in range(depth):
        config = {"class_name": "L2", "config": {"l2": 0.1, "wrapped": config}}
    return config


@pytest.mark.parametrize("call", [regularizers.deserialize, constraints.deserialize, regularizers.get,
                                  serialization.deserialize_keras_object, layers.deserialize],
                         ids=lambda f: f"{f.__module__.split('.')[-1]}.{f.__name__}")
def test_configs_nested_deeper_than_100_levels_are_refused(call) -> None:
    clear_error(lambda: call(nested(60)), "100 levels", "config")
    looped: dict = {"class_name": "L2", "config": {}}
    looped["config"]["self"] = looped
    clear_error(lambda: call(looped), "100 levels")


def test_a_config_within_the_depth_limit_still_loads() -> None:
    shallow = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.5}, "registered_name": None}
    correct(lambda: regularizers.deserialize(shallow), lambda r: isinstance(r, L2) and r.l2 == 0.5)


def test_load_model_refuses_a_keras_file_whose_config_nests_too_deeply(tmp_path) -> None:
    model = weightwise.Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
    path = tmp_path / "deep.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for _ in range(60):  # a model nested in a model, each three levels deeper
        config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                  "config": {"name": f"s{_}", "layers": [config]}}
    members["config.json"] = json.dumps(config).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    clear_error(lambda: weightwise.models.load_model(path), "100 levels", state=[os.fspath(path)])


@pytest.mark.parametrize("package, name", [("", None), (5, None), ("P", ""), ("P", 3)], ids=repr)
def test_register_keras_serializable_checks_its_names(package, name) -> None:
    argument = "package" if package in ("", 5) else "name"
    clear_error(lambda: serialization.register_keras_serializable(package, name), argument)


# ================================================================================================
# Binding: bind, unbind, rule_of, and the seam's entry points
# ================================================================================================
@pytest.mark.parametrize("module", [5, None, "model", torch.ones(2), [torch.nn.Linear(1, 1)]], ids=repr)
@pytest.mark.parametrize("call", [
    lambda m: binding.bind(m, "weight", regularizer="l2"),
    lambda m: binding.unbind(m, "weight"),
    lambda m: binding.rule_of(m, "weight"),
    lambda m: list(binding.bound(m)),
    binding.penalties, binding.regularization_loss, binding.total_penalty, binding.apply_constraints,
    binding.call_losses, binding.clear_call_losses, binding.call_loss_entries,
    lambda m: binding.record_call_loss(m, torch.tensor(1.0)),
    lambda m: binding.replace_call_losses(m, "slot", []),
    interop.describe, lambda m: interop.regularize(m, {"weight": "l2"}),
    lambda m: interop.constrain(m, {"weight": "non_neg"}), lambda m: interop.regularize_activity(m, "l1"),
    lambda m: interop.per_unit_axis(m, "weight"), lambda m: engine.plan_for(m) if isinstance(m, torch.nn.Module) else
    binding.total_penalty(m),
], ids=["bind", "unbind", "rule_of", "bound", "penalties", "regularization_loss", "total_penalty",
        "apply_constraints", "call_losses", "clear_call_losses", "call_loss_entries", "record_call_loss",
        "replace_call_losses", "describe", "regularize", "constrain", "regularize_activity", "per_unit_axis",
        "plan_for"])
def test_seam_entry_points_refuse_what_is_not_a_module(call, module) -> None:
    clear_error(lambda: call(module), "module", repr(module)[:10])


@pytest.mark.parametrize("name", [5, None, ("weight",), ["weight"], b"weight"], ids=repr)
@pytest.mark.parametrize("call", [lambda m, n: binding.bind(m, n, regularizer="l2"), binding.unbind, binding.rule_of,
                                  interop.per_unit_axis], ids=["bind", "unbind", "rule_of", "per_unit_axis"])
def test_parameter_names_must_be_strings(call, name) -> None:
    linear = torch.nn.Linear(2, 2)
    clear_error(lambda: call(linear, name), "name", repr(name)[:8], state=[linear])


@pytest.mark.parametrize("name", ["weigth", "", "bias", "0.weight"], ids=repr)
def test_bind_names_only_parameters_the_module_has(name: str) -> None:
    linear = torch.nn.Linear(2, 2, bias=False)  # bias is registered as None
    clear_error(lambda: binding.bind(linear, name, regularizer="l2"), "name", repr(name), state=[linear])


@pytest.mark.parametrize("value, fragment", [("l3", "l3"), (5, "5"), ({"class_name": "Nope"}, "Nope"), (int, "int"),
                                             (NonNeg(), "NonNeg")], ids=repr)
def test_bind_with_a_bad_regularizer_changes_nothing(value, fragment: str) -> None:
    linear = torch.nn.Linear(2, 2)
    binding.bind(linear, "weight", regularizer="l1", constraint="non_neg")
    before = binding.rule_of(linear, "weight")
    clear_error(lambda: binding.bind(linear, "weight", regularizer=value, constraint="unit_norm"), fragment,
                state=[linear])
    assert binding.rule_of(linear, "weight") is before and isinstance(before.constraint, NonNeg)


def test_unbind_and_rule_of_of_an_unbound_parameter_are_harmless() -> None:
    linear = torch.nn.Linear(2, 2)
    correct(lambda: binding.rule_of(linear, "nothing"), lambda r: r is None)
    correct(lambda: binding.unbind(linear, "nothing"), lambda r: r is None)


@pytest.mark.parametrize("kwargs, fragments", [
    ({"only_with_grad": "yes"}, ("only_with_grad", "'yes'")),
    ({"only_with_grad": 1}, ("only_with_grad", "1")),
    ({"among": 5}, ("among", "5")),
], ids=repr)
def test_apply_constraints_checks_its_flags(kwargs, fragments) -> None:
    linear = torch.nn.Linear(2, 2)
    binding.bind(linear, "weight", constraint="non_neg")
    with torch.no_grad():
        linear.weight.fill_(-1.0)
    clear_error(lambda: binding.apply_constraints(linear, **kwargs), *fragments, state=[linear])


@pytest.mark.parametrize("loss", ["0.5", None, 0.5, [torch.tensor(1.0)]], ids=repr)
def test_record_call_loss_takes_tensors(loss) -> None:
    linear = torch.nn.Linear(2, 2)
    clear_error(lambda: binding.record_call_loss(linear, loss), "loss", repr(loss)[:6], state=[linear])


@pytest.mark.parametrize("output", ["x", None, [torch.ones(2)]], ids=repr)
def test_activity_penalty_takes_a_tensor(output) -> None:
    clear_error(lambda: binding.activity_penalty(L1(), output), "output", repr(output)[:6])


def test_activity_penalty_that_is_not_a_scalar_is_refused() -> None:
    clear_error(lambda: binding.activity_penalty(lambda x: x, torch.ones(2, 3)), "a penalty must be a scalar", "(2, 3)")


def test_a_custom_penalty_that_is_a_python_number_or_one_element_is_summed() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    binding.bind(model[0], "weight", regularizer=lambda x: 0.25)
    binding.bind(model[1], "weight", regularizer=lambda x: torch.ones(1, 1))
    correct(lambda: binding.regularization_loss(model), lambda r: r.shape == () and r.item() == 1.25)


# ================================================================================================
# Interop: modules, selectors, rules and flags
# ================================================================================================
def three_layers() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


@pytest.mark.parametrize("attach", [interop.regularize, interop.constrain], ids=["regularize", "constrain"])
@pytest.mark.parametrize("selector, fragments", [
    (lambda name: True, ("a predicate takes (name, param, module)",)),
    (lambda name, param: True, ("a predicate takes (name, param, module)",)),
    (5, ("selector", "5")),
    ("", ("selector", "''")),
    ((torch.nn.Linear,), ("selector",)),
    ((torch.nn.Linear, 5), ("selector", "5")),
    (("Linear", "weight"), ("selector", "'Linear'")),
    ((int, "weight"), ("selector", "int")),
    (torch.nn.Linear, ("selector", "Linear")),
    (None, ("selector", "None")),
], ids=repr)
def test_bad_selectors_are_refused_before_anything_is_bound(attach, selector, fragments) -> None:
    model = three_layers()
    value = "l2" if attach is interop.regularize else "non_neg"
    clear_error(lambda: attach(model, {"0.weight": value, selector: value}), *fragments, state=[model])
    assert list(binding.bound(model)) == []


@pytest.mark.parametrize("attach", [interop.regularize, interop.constrain], ids=["regularize", "constrain"])
def test_a_predicate_must_return_a_truth_value(attach) -> None:
    model = three_layers()
    value = "l2" if attach is interop.regularize else "non_neg"
    clear_error(lambda: attach(model, {lambda name, param, module: param: value}), "must return a bool", state=[model])


@pytest.mark.parametrize("attach", [interop.regularize, interop.constrain], ids=["regularize", "constrain"])
@pytest.mark.parametrize("rules, fragment", [
    ("*.weight", "rules"), (5, "rules"), (None, "rules"), (["*.weight"], "rules"), ([("a", "b", "c")], "rules"),
    (torch.ones(2), "rules"),
], ids=repr)
def test_rules_must_map_selectors_to_values(attach, rules, fragment: str) -> None:
    model = three_layers()
    clear_error(lambda: attach(model, rules), fragment, state=[model])


@pytest.mark.parametrize("strict", ["yes", 1, None, 0.0, np.bool_(True)], ids=repr)
@pytest.mark.parametrize("attach", [interop.regularize, interop.constrain], ids=["regularize", "constrain"])
def test_strict_must_be_a_bool(attach, strict) -> None:
    model = three_layers()
    value = "l2" if attach is interop.regularize else "non_neg"
    clear_error(lambda: attach(model, {"*.weight": value}, strict=strict), "strict", repr(strict), state=[model])


@pytest.mark.parametrize("optimizer", ["sgd", 5, torch.nn.Linear(1, 1)], ids=repr)
def test_constrain_optimizer_must_be_a_torch_optimizer(optimizer) -> None:
    model = three_layers()
    clear_error(lambda: interop.constrain(model, {"*.weight": "non_neg"}, optimizer=optimizer), "optimizer",
                state=[model])


@pytest.mark.parametrize("attach, value, fragment", [
    (interop.regularize, "l3", "l3"), (interop.regularize, MaxNorm(), "MaxNorm"),
    (interop.regularize, OrthogonalRegularizer(), "inputs.shape"),  # the biases are rank 1
    (interop.constrain, L2(), "L2"), (interop.constrain, "max_nrom", "max_nrom"),
    (interop.constrain, MaxNorm(axis=[1, 2]), "axis=[1, 2]"),
], ids=repr)
def test_a_rule_that_fits_no_matched_parameter_binds_none(attach, value, fragment: str) -> None:
    model = three_layers()
    good = "l2" if attach is interop.regularize else "non_neg"
    clear_error(lambda: attach(model, [("0.weight", good), ("*", value)]), fragment, state=[model])
    assert list(binding.bound(model)) == []


def test_strict_rule_matching_nothing_names_close_matches() -> None:
    model = three_layers()
    clear_error(lambda: interop.regularize(model, {"0.wieght": "l2"}), "'0.wieght'", "0.weight", state=[model])
    correct(lambda: interop.regularize(model, {"0.wieght": "l2"}, strict=False).matched, lambda r: r == [])


@pytest.mark.parametrize("regularizer, fragment", [(None, "None"), ("l3", "l3"), (NonNeg(), "NonNeg"), (7, "7")],
                         ids=repr)
def test_regularize_activity_refuses_what_is_not_a_regularizer(regularizer, fragment: str) -> None:
    layer = torch.nn.Linear(2, 2)
    hooks = dict(layer._forward_hooks)
    clear_error(lambda: interop.regularize_activity(layer, regularizer), "regularizer", fragment, state=[layer])
    assert dict(layer._forward_hooks) == hooks


def test_describe_lists_rules_of_a_plain_module() -> None:
    model = three_layers()
    interop.constrain(model, {"0.weight": MaxNorm(axis=[])})
    correct(lambda: interop.describe(model), lambda r: "MaxNorm(max_value=2, axis=[])" in r and "0.weight" in r)


def test_constrain_with_optimizer_projects_after_each_step_for_every_trainable_dtype() -> None:
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        model = torch.nn.Linear(3, 2).to(dtype)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        interop.constrain(model, {"weight": MaxNorm(1.0)}, optimizer=opt)
        (model(torch.ones(1, 3, dtype=dtype)).sum() * 100).backward()
        opt.step()
        correct(lambda m=model: m.weight, lambda w, dtype=dtype: w.dtype == dtype and bool(
            (w.float().norm(dim=1) <= 1.0 + 1e-2).all()))


# ================================================================================================
# ops: bad inputs name the argument; edge inputs give NumPy's answer
# ================================================================================================
X = torch.arange(6.0).reshape(2, 3)

OPS_ERRORS = [
    ("convert_to_tensor", ("abc",), {}, ("x", "'abc'")),
    ("convert_to_tensor", (None,), {}, ("x", "None")),
    ("convert_to_tensor", ([[1], [1, 2]],), {}, ("x", "[[1], [1, 2]]")),
    ("convert_to_tensor", (10**400,), {}, ("x", "1000")),
    ("convert_to_tensor", ([torch.ones(2), torch.ones(3)],), {}, ("x", "(3,)")),
    ("convert_to_tensor", (np.array(["a"]),), {}, ("x", "<U1")),
    ("convert_to_tensor", (1.0,), {"dtype": "float33"}, ("dtype", "float33")),
    ("convert_to_numpy", (torch.ones(2, device="meta"),), {}, ("x", "meta")),
    ("cast", (X, "nonsense"), {}, ("dtype", "nonsense")),
    ("ones", (-1,), {}, ("shape", "-1")),
    ("ones", ((2, 2.5),), {}, ("shape", "2.5")),
    ("ones", ("ab",), {}, ("shape", "'ab'")),
    ("zeros", (True,), {}, ("shape", "True")),
    ("zeros", ((10**400,),), {}, ("shape",)),
    ("eye", (-1,), {}, ("N", "-1")),
    ("eye", (2, "3"), {}, ("M", "'3'")),
    ("eye", (2, 2, 1.5), {}, ("k", "1.5")),
    ("sum", (X,), {"axis": 5}, ("axis", "5")),
    ("sum", (X,), {"axis": [0, 0]}, ("axis", "[0, 0]")),
    ("sum", (X,), {"axis": "a"}, ("axis", "'a'")),
    ("sum", (X,), {"keepdims": "yes"}, ("keepdims", "'yes'")),
    ("mean", (X,), {"axis": -3}, ("axis", "-3")),
    ("max", (torch.zeros(0, 3),), {}, ("x", "empty")),
    ("min", (torch.zeros(0, 3),), {"axis": 0}, ("x", "empty")),
    ("max", (torch.ones(2, dtype=torch.complex64),), {}, ("x", "complex64")),
    ("negative", (torch.ones(2, dtype=torch.bool),), {}, ("x", "bool")),
    ("subtract", (torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)), {}, ("x1", "bool")),
    ("add", (torch.ones(2), torch.ones(3)), {}, ("x1", "x2", "(3,)")),
    ("multiply", (torch.ones(2), "a"), {}, ("x2", "'a'")),
    ("divide", ("a", torch.ones(2)), {}, ("x1", "'a'")),
    ("power", (torch.tensor([2]), -1), {}, ("x1", "x2")),
    ("maximum", (torch.ones(2), torch.ones(2, device="meta")), {}, ("x2", "meta")),
    ("matmul", (torch.ones(2, 3), torch.ones(2, 3)), {}, ("x1", "x2", "(2, 3)")),
    ("dot", (torch.ones(2), torch.ones(3)), {}, ("x1", "x2")),
    ("clip", (X, "0", 1.0), {}, ("x_min", "'0'")),
    ("convert_to_tensor", (2**63,), {}, ("x", "9223372036854775808")),
    ("where", (torch.ones(2, dtype=torch.bool), torch.ones(2)), {}, ("x1", "x2")),
    ("where", ("a", 1.0, 2.0), {}, ("condition", "'a'")),
    ("transpose", (X, (0,)), {}, ("axes", "(0,)")),
    ("transpose", (X, (0, 0)), {}, ("axes", "(0, 0)")),
    ("transpose", (X, (0, 5)), {}, ("axes", "(0, 5)")),
    ("reshape", (X, (4,)), {}, ("newshape", "(4,)")),
    ("reshape", (X, (-1, -1)), {}, ("newshape", "(-1, -1)")),
    ("reshape", (X, (2.5,)), {}, ("newshape", "2.5")),
    ("expand_dims", (X, 5), {}, ("axis", "5")),
    ("squeeze", (X,), {"axis": 0}, ("axis", "0")),
    ("norm", (X,), {"axis": 4}, ("axis", "4")),
    ("norm", (X,), {"axis": []}, ("axis", "[]")),
    ("norm", (X,), {"ord": "bad"}, ("ord", "'bad'")),
    ("norm", (X,), {"ord": True}, ("ord", "True")),
    ("normalize", (X,), {"order": 0}, ("order", "0")),
    ("normalize", (X,), {"epsilon": -1.0}, ("epsilon", "-1.0")),
    ("normalize", (X,), {"epsilon": 10**400}, ("epsilon", "1000")),
    ("normalize", (X,), {"axis": 3}, ("axis", "3")),
    ("sqrt", ({"a": 1},), {}, ("x", "'a'")),
    ("log", (b"xy",), {}, ("x", "b'xy'")),
]


@pytest.mark.parametrize("name, args, kwargs, fragments", OPS_ERRORS,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(OPS_ERRORS)])
def test_ops_refuse_bad_arguments_by_name(name: str, args, kwargs, fragments) -> None:
    tensors = [a for a in args if isinstance(a, torch.Tensor) and not a.is_meta]
    clear_error(lambda: getattr(ops, name)(*args, **kwargs), *fragments, state=tensors)


OPS_RESULTS = [
    ("sum", (X,), {"axis": []}, np.arange(6.0).reshape(2, 3)),
    ("max", (X,), {"axis": ()}, np.arange(6.0).reshape(2, 3)),
    ("mean", (torch.tensor([1 + 1j, 3 + 3j]),), {}, np.array(2 + 2j)),
    ("sum", ([],), {}, np.array(0.0)),
    ("max", (torch.zeros(0, 3),), {"axis": 1}, np.zeros(0)),
    ("absolute", (torch.tensor([True, False]),), {}, np.array([True, False])),
    ("sign", (torch.tensor([3 + 4j, 0j]),), {}, np.array([0.6 + 0.8j, 0j])),
    ("norm", (torch.tensor([3 + 4j, 0j]),), {}, np.array(5.0)),
    ("norm", (torch.zeros(0, 3),), {"axis": 0}, np.zeros(3)),
    ("norm", (torch.zeros(3, 0),), {"axis": 1, "keepdims": True}, np.zeros((3, 1))),
    ("norm", (torch.tensor([3e38, 3e38]),), {}, np.array(np.inf)),  # 4.2e38 is past float32
    ("norm", (torch.tensor([3e38, float("-inf")]),), {}, np.array(np.inf)),
    ("norm", (torch.tensor([3e37, 4e37]),), {}, np.array(5e37)),
    ("norm", (torch.tensor([1e-45, 1e-45]),), {}, np.array(np.float32(np.sqrt(2) * 1.401298464324817e-45))),
    ("normalize", (torch.tensor([[60000.0, 60000.0]], dtype=torch.float16),), {}, np.full((1, 2), np.sqrt(0.5))),
    ("normalize", (torch.tensor([[3 + 4j, 0j]]),), {}, np.array([[0.6 + 0.8j, 0j]])),
    ("normalize", (torch.zeros(0, 3),), {}, np.zeros((0, 3))),
    ("divide_no_nan", (torch.tensor([1 + 1j]), torch.tensor([0j])), {}, np.array([0j])),
    ("expand_dims", (torch.ones(2),), {"axis": [0, -1]}, np.ones((1, 2, 1))),
    ("squeeze", (torch.ones(1, 2),), {"axis": 0}, np.ones(2)),
    ("ones", (np.int64(2),), {}, np.ones(2)),
    ("eye", (np.int64(2),), {"k": -1}, np.eye(2, k=-1)),
    ("convert_to_tensor", (np.float16(1.5),), {}, np.array(1.5)),
    ("where", ([0, 2],), {}, (np.array([1]),)),
]


@pytest.mark.parametrize("name, args, kwargs, expected", OPS_RESULTS,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(OPS_RESULTS)])
def test_ops_edge_inputs_give_numpy_answers(name: str, args, kwargs, expected) -> None:
    def check(result) -> None:
        if isinstance(expected, tuple):
            assert all(np.array_equal(np64(r), e) for r, e in zip(result, expected))
            return
        assert tuple(result.shape) == expected.shape
        np.testing.assert_allclose(np64(result), expected, rtol=2e-3, atol=1e-50)

    correct(lambda: getattr(ops, name)(*args, **kwargs), check)


def test_ops_meta_tensors_give_meta_results() -> None:
    meta = torch.empty(3, 4, device="meta")
    for result in (ops.norm(meta, axis=0), ops.normalize(meta), ops.sum(meta, axis=1), ops.max(meta)):
        correct(lambda r=result: r, lambda r: r.is_meta)


def test_ops_norm_and_normalize_have_finite_gradients_at_zero_vectors() -> None:
    x = torch.zeros(2, 3, requires_grad=True)
    ops.norm(x, axis=1).sum().backward()
    correct(lambda: x.grad, lambda g: torch.equal(g, torch.zeros(2, 3)))
    y = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    ops.normalize(y, axis=1).sum().backward()
    # Zero vector: the slope of x / eps, as Keras's formula has near 0; a unit vector: (I - u u^T) / |y|.
    expected = np.array([[1 / EPS, 1 / EPS], [(1 - 0.36 - 0.48) / 5, (1 - 0.48 - 0.64) / 5]])
    correct(lambda: y.grad, lambda g: finite(g) and np.allclose(np64(g), expected, rtol=1e-5))


@FAST
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_ops_norm_is_finite_and_correct_for_any_finite_float64(values) -> None:
    x = torch.tensor(values, dtype=torch.float64)
    largest = float(np.max(np.abs(values)))
    expected = largest * float(np.linalg.norm(np.asarray(values) / largest)) if largest > 0 else 0.0
    correct(lambda: ops.norm(x), lambda r: (math.isinf(expected) and math.isinf(r.item())) or r.item() == pytest.approx(
        expected, rel=1e-12, abs=1e-320))


# ================================================================================================
# backend: the global settings
# ================================================================================================
@pytest.mark.parametrize("value, fragment", [(10**400, "1000"), (0, "0"), (-1e-7, "-1e-07"), (float("nan"), "nan"),
                                             (float("inf"), "inf"), (True, "True"), ("1e-7", "'1e-7'"), (None, "None")],
                         ids=repr)
def test_set_epsilon_refuses_what_is_not_a_positive_finite_float(value, fragment: str) -> None:
    clear_error(lambda: backend.set_epsilon(value), "value", fragment, state=[backend.epsilon])


def test_set_epsilon_takes_numpy_floats() -> None:
    old = backend.epsilon()
    try:
        correct(lambda: (backend.set_epsilon(np.float32(1e-5)), backend.epsilon())[1],
                lambda r: type(r) is float and r == pytest.approx(1e-5))
    finally:
        backend.set_epsilon(old)


@pytest.mark.parametrize("value", ["float8", ["float32"], None, torch.float32, 32, "int32"], ids=repr)
def test_set_floatx_refuses_what_is_not_a_float_name(value) -> None:
    clear_error(lambda: backend.set_floatx(value), "value", repr(value)[:10], state=[backend.floatx])


@pytest.mark.parametrize("dtype", ["nonsense", 5, ["float32"], object()], ids=repr)
@pytest.mark.parametrize("call", [backend.standardize_dtype, backend.compute_dtype, backend.rule_dtype],
                         ids=lambda f: f.__name__)
def test_dtype_helpers_refuse_what_is_not_a_dtype(call, dtype) -> None:
    clear_error(lambda: call(dtype), "dtype", repr(dtype)[:8])


@pytest.mark.parametrize("dtype", ALL_DTYPES + ["complex128"])
def test_rule_dtype_is_where_rules_compute(dtype: str) -> None:
    expected = {"float16": "float32", "bfloat16": "float32", "float64": "float64", "complex64": "complex64",
                "complex128": "complex128"}.get(dtype, "float32")
    correct(lambda: backend.rule_dtype(dtype), lambda r: r == getattr(torch, expected))


# ================================================================================================
# Constraint results under snapshot: projections are pure
# ================================================================================================
@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=repr)
def test_projections_never_change_their_input(constraint) -> None:
    w = sample("float32", seed=9)
    before = snapshot(w)
    correct(lambda: constraint(w), lambda r: r is not w)
    assert before[0][1].equal(w)


def test_regularize_activity_penalizes_complex_outputs_by_magnitude() -> None:
    class Rotate(torch.nn.Module):
        def forward(self, x):
            return x * (1 + 1j), x.long()  # a complex output, and an integer one that is left alone

    module = Rotate()
    interop.regularize_activity(module, L2(1.0))
    module(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    correct(lambda: binding.regularization_loss(module), close((2 * (9 + 16 + 0 + 1)) / 2))


@pytest.mark.parametrize("value", [None, "abc", 5, 10**400, float("nan"), [1], {}, object(), torch.ones(2), b"x"],
                         ids=repr)
def test_get_registered_name_and_plan_for_name_their_argument(value: Any) -> None:
    from weightwise import engine, saving

    clear_error(lambda: saving.get_registered_name(value), "`obj`", "Received: obj=")
    clear_error(lambda: engine.plan_for(value), "`module`", "Received: module=")
