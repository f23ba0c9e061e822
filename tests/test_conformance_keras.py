"""Conformance of weightwise with Keras 3, the reference it reimplements.

Every built-in regularizer and constraint is run side by side with its
``keras.regularizers`` / ``keras.constraints`` counterpart on seeded random
inputs (float32 and float64, dense and conv-kernel shapes, zero vectors), and
the penalties, projections and penalty gradients are compared numerically.
Configs are exchanged in both directions (Keras -> weightwise and weightwise ->
Keras, directly and through JSON), including string ids, the tf.keras 2 config
form and custom objects registered under the same ``"package>name"`` on each
side.

The few places where weightwise deliberately differs from Keras are pinned in
``TestDeliberateDifferences``: each test asserts weightwise's behaviour *and*
Keras's differing behaviour, so the difference stays documented and a change on
either side is noticed.

Keras runs on its torch backend (see ``conftest.py``), so its tensors are torch
tensors; the whole module is skipped when Keras is not installed.
"""

from __future__ import annotations

import importlib
import json
import math
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise
from weightwise import constraints as ww_constraints
from weightwise import regularizers as ww_regularizers

# --------------------------------------------------------------------------------------
# Tolerances
# --------------------------------------------------------------------------------------

# Keras keeps the L1 and OrthogonalRegularizer factors as float32 tensors and casts
# them to the input dtype, so its float64 penalties carry a float32-rounded factor
# (relative error up to 2**-24, about 6e-8), while weightwise multiplies by the exact
# Python float. Likewise Keras's OrthogonalRegularizer normalizes float64 input with
# inverse norms rounded to float32 (its ``ops.minimum(inv_norm, 1 / epsilon)`` promotes
# float64 with a Python float to float32), while weightwise stays in float64. rtol=1e-6
# covers that rounding with room to spare and still catches any real difference in the
# formulas.
REGULARIZER_TOL = {
    np.float32: {"rtol": 1e-6, "atol": 1e-12},
    np.float64: {"rtol": 1e-6, "atol": 1e-15},
}
CONSTRAINT_TOL = {"rtol": 1e-6, "atol": 1e-7}
# Keras reports factors stored as float32 tensors rounded to float32 in configs.
CONFIG_REL = 1e-7

DTYPES = [np.float32, np.float64]
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

FAMILY_MODULES = {"regularizers": ww_regularizers, "constraints": ww_constraints}

CUSTOM_PACKAGE = "ConformanceTest"


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def keras() -> Any:
    """Keras 3, the reference; a missing Keras skips every test in this module."""
    return keras_or_skip()


def seed_for(*parts: Any) -> int:
    """A stable seed per test case, so every case sees different but reproducible data."""
    return zlib.crc32(repr(parts).encode())


def random_array(shape: tuple[int, ...], dtype: Any, *parts: Any) -> np.ndarray:
    """Seeded normal values; each slice along the last axis gets its own log-uniform
    scale, so norms land below, inside and above the constraint bounds."""
    rng = np.random.default_rng(seed_for(shape, np.dtype(dtype).name, *parts))
    x = rng.standard_normal(shape)
    if len(shape):
        x = x * 10.0 ** rng.uniform(-1.5, 0.8, size=shape[-1])
    return x.astype(dtype)


def nonzero_random_array(shape: tuple[int, ...], *parts: Any) -> np.ndarray:
    """Float64 values bounded away from 0 (gradients of |x| are ambiguous at 0)."""
    x = random_array(shape, np.float64, *parts)
    x = np.where(np.abs(x) < 1e-3, np.copysign(1e-3, x) + x, x)
    assert np.all(x != 0)
    return x


def axes_of(axis: int | list[int], ndim: int) -> set[int]:
    return {a % ndim for a in ([axis] if isinstance(axis, int) else axis)}


def zero_some_vectors(x: np.ndarray, axis: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Zero every third vector (slice over ``axis``); return the new array and the zeroed mask."""
    x = x.copy()
    kept = [d for d in range(x.ndim) if d not in axes_of(axis, x.ndim)]
    mask = np.zeros(x.shape, dtype=bool)
    if not kept:  # the whole tensor is a single vector
        mask[...] = True
    else:
        index = [slice(None)] * x.ndim
        index[kept[0]] = slice(0, None, 3)
        mask[tuple(index)] = True
    x[mask] = 0
    return x, mask


def keras_family(keras: Any, family: str) -> Any:
    return getattr(keras, family)


def build_pair(keras: Any, family: str, name: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The same class with the same arguments, from weightwise and from Keras."""
    ours = getattr(FAMILY_MODULES[family], name)(**kwargs)
    theirs = getattr(keras_family(keras, family), name)(**kwargs)
    return ours, theirs


def run_ours(obj: Any, x: np.ndarray) -> torch.Tensor:
    """Call a weightwise object on a torch copy of ``x`` and check it left its input alone."""
    tensor = torch.from_numpy(x.copy())
    out = obj(tensor)
    assert torch.equal(tensor, torch.from_numpy(x)), "the input tensor was modified"
    assert isinstance(out, torch.Tensor)
    return out


def run_keras(keras: Any, obj: Any, x: np.ndarray) -> Any:
    return obj(keras.ops.convert_to_tensor(x))


def assert_same_numbers(keras: Any, ours: Any, theirs: Any, x: np.ndarray, tol: dict[str, float]) -> None:
    ours_out = to_numpy(run_ours(ours, x))
    keras_out = to_numpy(run_keras(keras, theirs, x))
    assert ours_out.shape == keras_out.shape
    np.testing.assert_allclose(ours_out, keras_out, **tol)


def assert_configs_match(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Same keys and values; floats approximately, since Keras rounds some factors to float32."""
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        other = theirs[key]
        if isinstance(value, float) or isinstance(other, float):
            assert value == pytest.approx(other, rel=CONFIG_REL), key
        else:
            assert value == other, key


def serialized_forms(serialize: Any, obj: Any) -> list[Any]:
    """``serialize(obj)`` as is, and after a trip through JSON text."""
    config = serialize(obj)
    return [config, json.loads(json.dumps(config))]


def grad_of(penalty: Any, x: np.ndarray) -> np.ndarray:
    tensor = torch.tensor(x, requires_grad=True)
    penalty(tensor).backward()
    assert tensor.grad is not None
    return tensor.grad.numpy()


# --------------------------------------------------------------------------------------
# 1. Regularizer penalties
# --------------------------------------------------------------------------------------

ELEMENTWISE_REGULARIZERS = [
    ("L1", {}),
    ("L1", {"l1": 0.3}),
    ("L1", {"l1": 1e-5}),
    ("L2", {}),
    ("L2", {"l2": 0.1}),
    ("L2", {"l2": 2.0}),
    ("L1L2", {}),
    ("L1L2", {"l1": 0.01, "l2": 0.01}),
    ("L1L2", {"l1": 0.0, "l2": 0.1}),
    ("L1L2", {"l1": 0.1, "l2": 0.0}),
    ("L1L2", {"l1": 1e-5, "l2": 1e-4}),
]
ELEMENTWISE_SHAPES = [(), (6,), (5, 7), (3, 4, 8), (3, 3, 4, 8)]

ORTHOGONAL_FACTORS = [None, 0.1, 1.0]
ORTHOGONAL_SHAPES = [(2, 2), (4, 4), (7, 3), (3, 7), (8, 16), (16, 5)]


def check_regularizer(keras: Any, name: str, kwargs: dict[str, Any], x: np.ndarray) -> None:
    ours, theirs = build_pair(keras, "regularizers", name, kwargs)
    ours_out = run_ours(ours, x)
    keras_out = run_keras(keras, theirs, x)
    assert ours_out.shape == ()
    assert ours_out.dtype == TORCH_DTYPE[x.dtype.type]
    assert keras_out.dtype == TORCH_DTYPE[x.dtype.type]
    np.testing.assert_allclose(to_numpy(ours_out), to_numpy(keras_out), **REGULARIZER_TOL[x.dtype.type])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize(("name", "kwargs"), ELEMENTWISE_REGULARIZERS, ids=str)
def test_elementwise_regularizer_matches_keras(keras, name, kwargs, shape, dtype):
    x = random_array(shape, dtype, name, kwargs)
    check_regularizer(keras, name, kwargs, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", ORTHOGONAL_SHAPES, ids=str)
@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("factor", ORTHOGONAL_FACTORS, ids=str)
def test_orthogonal_regularizer_matches_keras(keras, factor, mode, shape, dtype):
    kwargs = {"mode": mode} if factor is None else {"factor": factor, "mode": mode}
    x = random_array(shape, dtype, "orthogonal", factor, mode)
    check_regularizer(keras, "OrthogonalRegularizer", kwargs, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_regularizer_of_orthogonal_matrix_is_zero_in_both(keras, mode, dtype):
    q, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((6, 6)))
    q = q.astype(dtype)
    ours, theirs = build_pair(keras, "regularizers", "OrthogonalRegularizer", {"factor": 1.0, "mode": mode})
    ours_value = abs(float(run_ours(ours, q)))
    keras_value = abs(float(to_numpy(run_keras(keras, theirs, q))))
    # Rounding noise only: float32 level, except for weightwise on float64 input. Keras
    # computes the inverse norms of float64 input in float32 (see the tolerance note).
    assert ours_value < (1e-12 if dtype is np.float64 else 1e-6)
    assert keras_value < 1e-6


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)], ids=str)
def test_orthogonal_regularizer_rejects_non_matrices_like_keras(keras, shape):
    ours, theirs = build_pair(keras, "regularizers", "OrthogonalRegularizer", {})
    x = random_array(shape, np.float32, "rank")
    with pytest.raises(ValueError, match="rank 2"):
        ours(torch.from_numpy(x))
    with pytest.raises(ValueError, match="rank 2"):
        run_keras(keras, theirs, x)


# --------------------------------------------------------------------------------------
# 2. Constraint projections
# --------------------------------------------------------------------------------------

NORM_CONSTRAINTS = [
    ("MaxNorm", {}),
    ("MaxNorm", {"max_value": 0.5}),
    ("MaxNorm", {"max_value": 1.0}),
    ("MaxNorm", {"max_value": 0.0}),
    ("MaxNorm", {"max_value": math.inf}),
    ("UnitNorm", {}),
    ("MinMaxNorm", {}),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 2.0, "rate": 0.5}),
    ("MinMaxNorm", {"min_value": 1.0, "max_value": 1.0}),
    ("MinMaxNorm", {"min_value": 0.8, "max_value": 1.2, "rate": 0.25}),
    ("MinMaxNorm", {"min_value": 0.2, "max_value": 3.0, "rate": 0.0}),
]
# (weight shape, axis): Dense kernels and biases, and Conv1D/2D/3D kernels per filter.
AXIS_CASES = [
    ((6,), 0),
    ((5, 7), 0),
    ((5, 7), 1),
    ((5, 7), -1),
    ((5, 7), [0, 1]),
    ((3, 4, 8), [0, 1]),
    ((3, 3, 4, 8), [0, 1, 2]),
    ((3, 3, 4, 8), -1),
    ((2, 2, 2, 3, 4), [0, 1, 2, 3]),
]


@pytest.mark.parametrize("zero_vectors", [False, True], ids=["dense", "zero_vectors"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("shape", "axis"), AXIS_CASES, ids=str)
@pytest.mark.parametrize(("name", "kwargs"), NORM_CONSTRAINTS, ids=str)
def test_norm_constraint_matches_keras(keras, name, kwargs, shape, axis, dtype, zero_vectors):
    ours, theirs = build_pair(keras, "constraints", name, {**kwargs, "axis": axis})
    x = random_array(shape, dtype, name, kwargs, axis)
    if zero_vectors:
        x, zeroed = zero_some_vectors(x, axis)

    ours_out = run_ours(ours, x)
    keras_out = run_keras(keras, theirs, x)
    assert tuple(ours_out.shape) == shape
    assert ours_out.dtype == TORCH_DTYPE[dtype]
    assert keras_out.dtype == TORCH_DTYPE[dtype]
    ours_np, keras_np = to_numpy(ours_out), to_numpy(keras_out)
    assert np.all(np.isfinite(ours_np))
    np.testing.assert_allclose(ours_np, keras_np, **CONSTRAINT_TOL)
    if zero_vectors:
        assert np.all(ours_np[zeroed] == 0)
        assert np.all(keras_np[zeroed] == 0)


@pytest.mark.parametrize("with_zeros", [False, True], ids=["dense", "with_zeros"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(6,), (5, 7), (3, 4, 8), (3, 3, 4, 8), (2, 2, 2, 3, 4)], ids=str)
def test_nonneg_matches_keras(keras, shape, dtype, with_zeros):
    ours, theirs = build_pair(keras, "constraints", "NonNeg", {})
    x = random_array(shape, dtype, "NonNeg")
    if with_zeros:
        x.reshape(-1)[::4] = 0.0
    ours_np = to_numpy(run_ours(ours, x))
    keras_out = run_keras(keras, theirs, x)
    assert ours_np.shape == shape
    assert ours_np.dtype == np.dtype(dtype)
    # Exact: NonNeg only clips, there is no arithmetic to round.
    np.testing.assert_array_equal(ours_np, np.maximum(x, 0))
    # Keras computes float64 input in float32 (see TestDeliberateDifferences), so
    # compare at float32 precision; for float32 input the results are identical.
    np.testing.assert_allclose(ours_np, to_numpy(keras_out), rtol=1e-7, atol=0)
    if dtype is np.float32:
        np.testing.assert_array_equal(ours_np, to_numpy(keras_out))


# --------------------------------------------------------------------------------------
# 3. Deliberate differences: weightwise's behaviour, and Keras's, both asserted
# --------------------------------------------------------------------------------------


class TestDeliberateDifferences:
    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    def test_nonneg_turns_negative_zero_into_positive_zero(self, keras, dtype):
        x = np.array([-0.0, -1.5, 0.0, 2.0], dtype=dtype)
        ours_np = to_numpy(run_ours(ww_constraints.NonNeg(), x))
        keras_np = to_numpy(run_keras(keras, keras.constraints.NonNeg(), x))
        np.testing.assert_array_equal(ours_np, [0.0, 0.0, 0.0, 2.0])
        assert not np.any(np.signbit(ours_np))
        # Keras keeps the sign of -0.0.
        assert np.signbit(keras_np[0])
        assert not np.any(np.signbit(keras_np[1:]))

    def test_nonneg_keeps_float64_where_keras_computes_in_float32(self, keras):
        # Keras's ops.maximum(w, 0) promotes (float64, int) to float32.
        x = np.array([1.0 + 2.0**-40, -1.0], dtype=np.float64)
        ours_out = run_ours(ww_constraints.NonNeg(), x)
        keras_out = run_keras(keras, keras.constraints.NonNeg(), x)
        assert ours_out.dtype == torch.float64
        assert to_numpy(ours_out)[0] == 1.0 + 2.0**-40
        assert keras_out.dtype == torch.float32
        assert to_numpy(keras_out)[0] == 1.0

    @pytest.mark.parametrize(("shape", "mode"), [((1, 4), "rows"), ((4, 1), "columns")], ids=str)
    def test_orthogonal_regularizer_of_a_single_vector_is_zero(self, keras, shape, mode):
        x = random_array(shape, np.float32, "single", mode)
        ours_out = run_ours(ww_regularizers.OrthogonalRegularizer(mode=mode), x)
        keras_out = run_keras(keras, keras.regularizers.OrthogonalRegularizer(mode=mode), x)
        assert float(ours_out) == 0.0
        assert math.isnan(float(to_numpy(keras_out)))

    @pytest.mark.parametrize(
        ("name", "kwargs", "key"),
        [("L1", {"l1": 0.01}, "l1"), ("OrthogonalRegularizer", {"factor": 0.01}, "factor")],
        ids=str,
    )
    def test_config_keeps_the_exact_factor(self, keras, name, kwargs, key):
        ours, theirs = build_pair(keras, "regularizers", name, kwargs)
        assert ours.get_config()[key] == 0.01
        assert theirs.get_config()[key] == 0.009999999776482582 == float(np.float32(0.01))
        assert theirs.get_config()[key] != 0.01

    def test_l1_l2_string_id_gives_the_documented_factors(self, keras):
        for ours in (ww_regularizers.get("l1_l2"), ww_regularizers.deserialize("l1_l2")):
            assert type(ours) is ww_regularizers.L1L2
            assert ours.get_config() == {"l1": 0.01, "l2": 0.01}
        with pytest.raises(ValueError):
            keras.regularizers.get("l1_l2")

    @pytest.mark.parametrize(
        ("name", "kwargs"),
        [("MaxNorm", {"max_value": -1}), ("MinMaxNorm", {"min_value": -1.0}), ("MinMaxNorm", {"min_value": 2.0})],
        ids=str,
    )
    def test_invalid_norm_bounds_raise(self, keras, name, kwargs):
        with pytest.raises(ValueError):
            getattr(ww_constraints, name)(**kwargs)
        # Keras stores whatever it is given.
        theirs = getattr(keras.constraints, name)(**kwargs)
        assert {k: theirs.get_config()[k] for k in kwargs} == kwargs


# --------------------------------------------------------------------------------------
# 4. Config exchange with Keras
# --------------------------------------------------------------------------------------

# (family, class name, non-default arguments, an input shape the object accepts)
CONFIG_CASES = [
    ("regularizers", "L1", {"l1": 0.3}, (5, 7)),
    ("regularizers", "L2", {"l2": 0.05}, (3, 3, 4, 8)),
    ("regularizers", "L1L2", {"l1": 0.02, "l2": 0.003}, (5, 7)),
    ("regularizers", "L1L2", {"l1": 0.0, "l2": 0.2}, (6,)),
    ("regularizers", "OrthogonalRegularizer", {"factor": 0.2, "mode": "columns"}, (7, 3)),
    ("regularizers", "OrthogonalRegularizer", {"factor": 0.3, "mode": "rows"}, (3, 7)),
    ("constraints", "Constraint", {}, (5, 7)),
    ("constraints", "MaxNorm", {"max_value": 1.5, "axis": [0, 1, 2]}, (3, 3, 4, 8)),
    ("constraints", "MaxNorm", {"max_value": 3, "axis": -1}, (5, 7)),
    ("constraints", "UnitNorm", {"axis": 1}, (5, 7)),
    ("constraints", "MinMaxNorm", {"min_value": 0.5, "max_value": 2.0, "rate": 0.5, "axis": [0, 1]}, (3, 4, 8)),
    ("constraints", "NonNeg", {}, (5, 7)),
]
CONFIG_IDS = [f"{name}-{kwargs}" for _, name, kwargs, _ in CONFIG_CASES]


def family_tolerance(family: str) -> dict[str, float]:
    return REGULARIZER_TOL[np.float32] if family == "regularizers" else CONSTRAINT_TOL


@pytest.mark.parametrize(("family", "name", "kwargs", "shape"), CONFIG_CASES, ids=CONFIG_IDS)
def test_keras_config_loads_in_weightwise(keras, family, name, kwargs, shape):
    ours_module, keras_module = FAMILY_MODULES[family], keras_family(keras, family)
    theirs = getattr(keras_module, name)(**kwargs)
    x = random_array(shape, np.float32, "keras->ours", name)
    for form in serialized_forms(keras_module.serialize, theirs):
        for load in (ours_module.deserialize, ours_module.get):
            ours = load(form)
            assert type(ours) is getattr(ours_module, name)
            assert_configs_match(ours.get_config(), theirs.get_config())
            assert_same_numbers(keras, ours, theirs, x, family_tolerance(family))


@pytest.mark.parametrize(("family", "name", "kwargs", "shape"), CONFIG_CASES, ids=CONFIG_IDS)
def test_weightwise_config_loads_in_keras(keras, family, name, kwargs, shape):
    ours_module, keras_module = FAMILY_MODULES[family], keras_family(keras, family)
    ours = getattr(ours_module, name)(**kwargs)
    x = random_array(shape, np.float32, "ours->keras", name)
    for form in serialized_forms(ours_module.serialize, ours):
        for load in (keras_module.deserialize, keras_module.get):
            theirs = load(form)
            assert type(theirs) is getattr(keras_module, name)
            assert_configs_match(ours.get_config(), theirs.get_config())
            assert_same_numbers(keras, ours, theirs, x, family_tolerance(family))


@pytest.mark.parametrize(("family", "name", "kwargs", "shape"), CONFIG_CASES, ids=CONFIG_IDS)
def test_serialized_form_matches_keras(keras, family, name, kwargs, shape):
    ours, theirs = build_pair(keras, family, name, kwargs)
    ours_form = FAMILY_MODULES[family].serialize(ours)
    keras_form = keras_family(keras, family).serialize(theirs)
    assert set(ours_form) == set(keras_form)
    for key in ("module", "class_name", "registered_name"):
        assert ours_form[key] == keras_form[key], key
    assert ours_form["config"].keys() == keras_form["config"].keys()
    assert_configs_match(ours_form["config"], keras_form["config"])


TF_KERAS_2_CONFIGS = [
    ("regularizers", {"class_name": "L2", "config": {"l2": 0.1}}, (5, 7)),
    ("regularizers", {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}}, (5, 7)),
    ("regularizers", {"class_name": "OrthogonalRegularizer", "config": {"factor": 0.5, "mode": "rows"}}, (4, 6)),
    ("constraints", {"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}}, (5, 7)),
    ("constraints", {"class_name": "UnitNorm", "config": {"axis": [0, 1, 2]}}, (3, 3, 4, 8)),
]


@pytest.mark.parametrize(("family", "config", "shape"), TF_KERAS_2_CONFIGS, ids=str)
def test_tf_keras_2_config_form_loads(keras, family, config, shape):
    ours = FAMILY_MODULES[family].deserialize(config)
    theirs = keras_family(keras, family).deserialize(config)
    assert type(ours).__name__ == config["class_name"]
    assert ours.get_config() == config["config"]
    assert_configs_match(ours.get_config(), theirs.get_config())
    x = random_array(shape, np.float32, "tf.keras 2", config["class_name"])
    assert_same_numbers(keras, ours, theirs, x, family_tolerance(family))


REGULARIZER_STRING_IDS = [
    "Regularizer",
    "regularizer",
    "L1",
    "l1",
    "L2",
    "l2",
    "L1L2",
    "l1l2",
    "OrthogonalRegularizer",
    "orthogonal_regularizer",
]
CONSTRAINT_STRING_IDS = [
    "Constraint",
    "constraint",
    "MaxNorm",
    "max_norm",
    "MinMaxNorm",
    "min_max_norm",
    "NonNeg",
    "non_neg",
    "UnitNorm",
    "unit_norm",
]
STRING_ID_CASES = [("regularizers", i) for i in REGULARIZER_STRING_IDS] + [
    ("constraints", i) for i in CONSTRAINT_STRING_IDS
]


@pytest.mark.parametrize(
    ("family", "ids"), [("regularizers", REGULARIZER_STRING_IDS), ("constraints", CONSTRAINT_STRING_IDS)]
)
def test_string_id_list_covers_every_keras_id(keras, family, ids):
    # Every id Keras's `get` accepts is a key of its ALL_OBJECTS_DICT.
    keras_ids = importlib.import_module(f"keras.src.{family}").ALL_OBJECTS_DICT
    assert set(ids) == set(keras_ids)


@pytest.mark.parametrize(("family", "identifier"), STRING_ID_CASES, ids=str)
def test_string_id_resolves_like_keras(keras, family, identifier):
    ours_module, keras_module = FAMILY_MODULES[family], keras_family(keras, family)
    theirs = keras_module.get(identifier)
    x = random_array((5, 7), np.float32, "string id", identifier)
    for ours in (ours_module.get(identifier), ours_module.deserialize(identifier)):
        assert type(ours).__name__ == type(theirs).__name__
        assert type(ours) is getattr(ours_module, type(theirs).__name__)
        if identifier.lower() == "regularizer":
            # The base class penalizes nothing and, in both, has no config.
            with pytest.raises(NotImplementedError):
                ours.get_config()
            with pytest.raises(NotImplementedError):
                theirs.get_config()
            assert float(run_ours(ours, x)) == 0.0
            assert float(run_keras(keras, theirs, x)) == 0.0
            continue
        assert_configs_match(ours.get_config(), theirs.get_config())
        assert_same_numbers(keras, ours, theirs, x, family_tolerance(family))


# --------------------------------------------------------------------------------------
# 5. Custom objects registered under the same name on both sides
# --------------------------------------------------------------------------------------


def define_weightwise_customs() -> dict[str, Any]:
    register = weightwise.saving.register_keras_serializable(package=CUSTOM_PACKAGE)

    @register
    class PowerPenalty(ww_regularizers.Regularizer):
        def __init__(self, factor: float = 0.01, power: int = 3) -> None:
            self.factor = factor
            self.power = power

        def __call__(self, x):
            return self.factor * torch.sum(torch.abs(x) ** self.power)

        def get_config(self):
            return {"factor": self.factor, "power": self.power}

    @register
    class ClipTo(ww_constraints.Constraint):
        def __init__(self, limit: float = 1.0) -> None:
            self.limit = limit

        def __call__(self, w):
            return torch.clamp(w, -self.limit, self.limit)

        def get_config(self):
            return {"limit": self.limit}

    @register
    def conformance_penalty(x):
        return 0.05 * torch.sum(torch.abs(x) ** 3)

    return {"PowerPenalty": PowerPenalty, "ClipTo": ClipTo, "conformance_penalty": conformance_penalty}


def define_keras_customs(keras: Any) -> dict[str, Any]:
    register = keras.saving.register_keras_serializable(package=CUSTOM_PACKAGE)
    ops = keras.ops

    @register
    class PowerPenalty(keras.regularizers.Regularizer):
        def __init__(self, factor: float = 0.01, power: int = 3) -> None:
            self.factor = factor
            self.power = power

        def __call__(self, x):
            return self.factor * ops.sum(ops.power(ops.absolute(x), self.power))

        def get_config(self):
            return {"factor": self.factor, "power": self.power}

    @register
    class ClipTo(keras.constraints.Constraint):
        def __init__(self, limit: float = 1.0) -> None:
            self.limit = limit

        def __call__(self, w):
            return ops.clip(w, -self.limit, self.limit)

        def get_config(self):
            return {"limit": self.limit}

    @register
    def conformance_penalty(x):
        return 0.05 * ops.sum(ops.power(ops.absolute(x), 3))

    return {"PowerPenalty": PowerPenalty, "ClipTo": ClipTo, "conformance_penalty": conformance_penalty}


@pytest.fixture(scope="module")
def customs(keras) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distinct weightwise and Keras objects linked only by their ``ConformanceTest>Name``."""
    return define_weightwise_customs(), define_keras_customs(keras)


CUSTOM_CLASS_CASES = [
    ("regularizers", "PowerPenalty", {"factor": 0.25, "power": 3}),
    ("constraints", "ClipTo", {"limit": 0.5}),
]


@pytest.mark.parametrize(("family", "name", "kwargs"), CUSTOM_CLASS_CASES, ids=str)
def test_registered_custom_class_travels_both_ways(keras, customs, family, name, kwargs):
    ours_classes, keras_classes = customs
    assert ours_classes[name] is not keras_classes[name]
    ours_module, keras_module = FAMILY_MODULES[family], keras_family(keras, family)
    ours, theirs = ours_classes[name](**kwargs), keras_classes[name](**kwargs)
    x = random_array((5, 7), np.float32, "custom", name)
    tol = family_tolerance(family)

    ours_form = ours_module.serialize(ours)
    keras_form = keras_module.serialize(theirs)
    assert ours_form["registered_name"] == keras_form["registered_name"] == f"{CUSTOM_PACKAGE}>{name}"
    assert ours_form["class_name"] == keras_form["class_name"] == name
    assert ours_form["config"] == keras_form["config"] == kwargs

    for form in serialized_forms(ours_module.serialize, ours):
        loaded = keras_module.deserialize(form)
        assert type(loaded) is keras_classes[name]
        assert loaded.get_config() == kwargs
        assert_same_numbers(keras, ours, loaded, x, tol)

    for form in serialized_forms(keras_module.serialize, theirs):
        loaded = ours_module.deserialize(form)
        assert type(loaded) is ours_classes[name]
        assert loaded.get_config() == kwargs
        assert_same_numbers(keras, loaded, theirs, x, tol)


def test_registered_function_regularizer_travels_both_ways(keras, customs):
    ours_fn = customs[0]["conformance_penalty"]
    keras_fn = customs[1]["conformance_penalty"]
    assert ours_fn is not keras_fn
    x = random_array((5, 7), np.float32, "custom function")
    tol = REGULARIZER_TOL[np.float32]

    for form in serialized_forms(ww_regularizers.serialize, ours_fn):
        assert form["class_name"] == "function"
        assert form["config"] == f"{CUSTOM_PACKAGE}>conformance_penalty"
        assert keras.regularizers.deserialize(form) is keras_fn

    for form in serialized_forms(keras.regularizers.serialize, keras_fn):
        loaded = ww_regularizers.deserialize(form)
        assert loaded is ours_fn
        assert ww_regularizers.get(form) is ours_fn
    assert_same_numbers(keras, ours_fn, keras_fn, x, tol)


# --------------------------------------------------------------------------------------
# 6. Gradients of the penalties
# --------------------------------------------------------------------------------------

GRADIENT_CASES = [
    ("L1", {"l1": 0.3}, (5, 7)),
    ("L1", {}, (3, 3, 4, 8)),
    ("L2", {"l2": 0.1}, (5, 7)),
    ("L2", {}, (3, 3, 4, 8)),
    ("L1L2", {"l1": 0.02, "l2": 0.003}, (5, 7)),
    ("L1L2", {"l1": 0.0, "l2": 0.2}, (3, 4, 8)),
    ("L1L2", {"l1": 0.2, "l2": 0.0}, (3, 4, 8)),
    ("OrthogonalRegularizer", {"factor": 0.5, "mode": "rows"}, (7, 3)),
    ("OrthogonalRegularizer", {"factor": 0.5, "mode": "rows"}, (3, 7)),
    ("OrthogonalRegularizer", {"factor": 0.1, "mode": "columns"}, (7, 3)),
    ("OrthogonalRegularizer", {"factor": 0.1, "mode": "columns"}, (3, 7)),
    ("OrthogonalRegularizer", {}, (5, 5)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), GRADIENT_CASES, ids=str)
def test_regularizer_gradient_matches_keras(keras, name, kwargs, shape):
    assert keras.backend.backend() == "torch", "gradient conformance needs KERAS_BACKEND=torch"
    ours, theirs = build_pair(keras, "regularizers", name, kwargs)
    x = nonzero_random_array(shape, "gradient", name, kwargs)
    ours_grad = grad_of(ours, x)
    keras_grad = grad_of(theirs, x)
    assert ours_grad.dtype == np.float64
    assert np.any(ours_grad != 0)
    # Keras's float32 factors, and for OrthogonalRegularizer its float32 inverse norms,
    # put float32-level noise on its float64 gradient; in the orthogonal penalty some
    # entries are sums that nearly cancel, so the noise is bounded relative to the
    # largest entry rather than to each entry.
    scale = float(np.abs(keras_grad).max())
    np.testing.assert_allclose(ours_grad, keras_grad, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"), [c for c in GRADIENT_CASES if c[0] == "OrthogonalRegularizer"], ids=str
)
def test_orthogonal_regularizer_gradient_is_float64_exact(name, kwargs, shape):
    # The Keras comparison above is loosened to float32 level because of Keras's
    # rounding; this pins weightwise's own float64 gradient against finite differences.
    x = torch.tensor(nonzero_random_array(shape, "gradcheck", kwargs), requires_grad=True)
    assert torch.autograd.gradcheck(ww_regularizers.OrthogonalRegularizer(**kwargs), (x,))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "kwargs"), NORM_CONSTRAINTS, ids=str)
def test_empty_axis_list_is_per_entry_like_keras(keras, name, kwargs, dtype):
    """``axis=[]``: each entry is its own vector, whose norm is its absolute value (Keras's formula)."""
    ours, theirs = build_pair(keras, "constraints", name, {**kwargs, "axis": []})
    x = random_array((4, 5), dtype, name, kwargs, "empty")
    ours_np, keras_np = to_numpy(run_ours(ours, x)), to_numpy(run_keras(keras, theirs, x))
    np.testing.assert_allclose(ours_np, keras_np, **CONSTRAINT_TOL)
    single = to_numpy(run_ours(ours, x[:1, :1]))
    np.testing.assert_allclose(ours_np[:1, :1], single, **CONSTRAINT_TOL)
