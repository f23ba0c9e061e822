"""Initializers: exact values vs NumPy, statistics vs the fan formulas, seeds, configs, and Keras conformance.

Random initializers are checked statistically against the mean, standard
deviation and limits computed here with NumPy from the fan formulas, on dense
``(256, 512)`` and conv ``(3, 3, 64, 128)`` kernels (73,728 values or more, so the
sample standard deviation is within about 0.3% of the truth and the 2% tolerance
is many standard errors wide). Against Keras: configs in both directions,
deterministic values exactly, and seeded random values exactly as well, since
both draw from a torch generator seeded the same way.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_class_serialization_test, to_numpy

from weightwise import backend, initializers
from weightwise.initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
    compute_fans,
)
from weightwise.serialization import register_keras_serializable

SHAPES = [(256, 512), (3, 3, 64, 128)]
TRUNC = 0.87962566103423978


def np_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Fans written out independently of the library: (in, out) or (*field, in, out)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    field = int(np.prod(shape[:-2]))
    return shape[-2] * field, shape[-1] * field


def np_n(shape: tuple[int, ...], mode: str) -> float:
    fan_in, fan_out = np_fans(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


def sample(init: Any, shape: tuple[int, ...], dtype: str = "float64") -> np.ndarray:
    out = init(shape, dtype=dtype)
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == shape
    return to_numpy(out).astype(np.float64)


def assert_uniform(w: np.ndarray, lo: float, hi: float) -> None:
    assert w.min() >= lo and w.max() <= hi
    span = hi - lo
    # The extremes of >70k uniform draws lie within 0.1% of the range of the bounds.
    assert w.min() < lo + 1e-3 * span and w.max() > hi - 1e-3 * span
    std = span / math.sqrt(12)
    assert abs(w.mean() - (lo + hi) / 2) < 6 * std / math.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.02)


def assert_truncated(w: np.ndarray, mean: float, stddev: float) -> None:
    """Normal(mean, stddev) truncated to mean +- 2 stddev: std is 0.8796 stddev."""
    assert np.all(np.abs(w - mean) <= 2 * stddev * (1 + 1e-6))
    # Nearly the whole interval is used: values come within 1% of both cut-offs.
    assert w.max() > mean + 1.98 * stddev and w.min() < mean - 1.98 * stddev
    assert abs(w.mean() - mean) < 6 * TRUNC * stddev / math.sqrt(w.size)
    assert w.std() == pytest.approx(TRUNC * stddev, rel=0.02)


def assert_normal(w: np.ndarray, mean: float, stddev: float) -> None:
    assert abs(w.mean() - mean) < 6 * stddev / math.sqrt(w.size)
    assert w.std() == pytest.approx(stddev, rel=0.02)
    # Untruncated: about 4.55% of the values lie beyond two standard deviations.
    beyond = np.mean(np.abs(w - mean) > 2 * stddev)
    assert 0.040 < beyond < 0.051


# --------------------------------------------------------------------------------------
# Deterministic initializers: exact values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (4,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "bool"])
def test_zeros_ones_constant_are_exact(shape: tuple[int, ...], dtype: str) -> None:
    for init, expected in [
        (Zeros(), np.zeros(shape, dtype=dtype)),
        (Ones(), np.ones(shape, dtype=dtype)),
        (Constant(1 if dtype == "bool" else 3), np.full(shape, 1 if dtype == "bool" else 3, dtype=dtype)),
    ]:
        out = init(shape, dtype=dtype)
        assert out.dtype == backend.standardize_dtype(dtype)
        np.testing.assert_array_equal(to_numpy(out), expected)


def test_constant_keeps_the_value_in_the_dtype() -> None:
    np.testing.assert_array_equal(to_numpy(Constant(0.1)((3,))), np.full(3, 0.1, dtype=np.float32))
    np.testing.assert_array_equal(to_numpy(Constant(0.1)((3,), dtype="float64")), np.full(3, 0.1))
    assert Constant(np.float32(2.5)).get_config() == {"value": 2.5}


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 2)])
@pytest.mark.parametrize("gain", [1.0, -0.5, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_identity_is_gain_times_eye(shape: tuple[int, int], gain: float, dtype: str) -> None:
    out = Identity(gain)(shape, dtype=dtype)
    assert out.dtype == backend.standardize_dtype(dtype)
    np.testing.assert_array_equal(to_numpy(out), gain * np.eye(*shape, dtype=dtype))


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2), ()])
def test_identity_needs_a_matrix(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"only be used for 2D matrices. Received: shape=.* of rank"):
        Identity()(shape)


def test_dtype_none_follows_floatx() -> None:
    backend.set_floatx("float64")
    try:
        for init in (Zeros(), Ones(), Constant(2.0), Identity(), GlorotUniform(seed=1), Orthogonal(seed=1)):
            assert init((4, 4)).dtype == torch.float64
    finally:
        backend.set_floatx("float32")
    assert GlorotUniform(seed=1)((4, 4)).dtype == torch.float32


# --------------------------------------------------------------------------------------
# Fans
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, fans",
    [
        ((), (1, 1)),
        ((7,), (7, 7)),
        ((256, 512), (256, 512)),
        ((5, 16, 32), (80, 160)),
        ((3, 3, 64, 128), (576, 1152)),
        ((2, 3, 3, 8, 4), (144, 72)),
    ],
)
def test_compute_fans_follows_the_keras_kernel_layouts(shape: tuple[int, ...], fans: tuple[int, int]) -> None:
    assert compute_fans(shape) == fans
    if len(shape) >= 2:
        assert compute_fans(shape) == np_fans(shape)


def test_compute_fans_with_explicit_axes() -> None:
    assert compute_fans((8, 4, 16), input_axes=[0], output_axes=[1, 2]) == (8, 64)
    assert compute_fans((8, 4, 16), input_axes=[-1], output_axes=[0]) == (16, 8)
    # One of the two alone is ignored, as in Keras.
    assert compute_fans((8, 4, 16), input_axes=[0]) == compute_fans((8, 4, 16))
    with pytest.raises(ValueError, match=r"`input_axes`.*out of range.*Received: input_axes=\[3\]"):
        compute_fans((8, 4, 16), input_axes=[3], output_axes=[0])


def test_explicit_axes_change_the_scale() -> None:
    shape = (16, 4, 64)
    w = sample(VarianceScaling(mode="fan_in", distribution="uniform", seed=2, input_axes=[0, 1], output_axes=[2]),
               shape)
    limit = math.sqrt(3.0 / 64)
    assert w.max() <= limit and w.max() > 0.99 * limit


# --------------------------------------------------------------------------------------
# Random initializers: statistics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_random_normal_statistics(shape: tuple[int, ...]) -> None:
    assert_normal(sample(RandomNormal(mean=0.5, stddev=0.2, seed=1), shape), 0.5, 0.2)
    assert_normal(sample(RandomNormal(seed=2), shape), 0.0, 0.05)


@pytest.mark.parametrize("shape", SHAPES)
def test_random_uniform_statistics(shape: tuple[int, ...]) -> None:
    assert_uniform(sample(RandomUniform(minval=-0.3, maxval=0.7, seed=1), shape), -0.3, 0.7)
    assert_uniform(sample(RandomUniform(seed=2), shape), -0.05, 0.05)


@pytest.mark.parametrize("shape", SHAPES)
def test_truncated_normal_statistics(shape: tuple[int, ...]) -> None:
    assert_truncated(sample(TruncatedNormal(mean=1.0, stddev=0.5, seed=1), shape), 1.0, 0.5)
    assert_truncated(sample(TruncatedNormal(seed=2), shape), 0.0, 0.05)


def test_truncated_normal_is_truly_truncated_where_keras_is_not() -> None:
    # Keras keeps the first of 4 draws inside (-2, 2); when none is (about 4 values in
    # a million) it keeps one outside. Those values are redrawn here.
    w = TruncatedNormal(mean=0.0, stddev=1.0, seed=5)((1000, 1000), dtype="float64")
    assert float(w.abs().max()) < 2.0


PRESETS = [
    (GlorotUniform, 1.0, "fan_avg", "uniform"),
    (GlorotNormal, 1.0, "fan_avg", "truncated_normal"),
    (HeUniform, 2.0, "fan_in", "uniform"),
    (HeNormal, 2.0, "fan_in", "truncated_normal"),
    (LecunUniform, 1.0, "fan_in", "uniform"),
    (LecunNormal, 1.0, "fan_in", "truncated_normal"),
]


def check_variance_scaling(w: np.ndarray, shape: tuple[int, ...], scale: float, mode: str, dist: str) -> None:
    variance = scale / max(1.0, np_n(shape, mode))
    if dist == "uniform":
        limit = math.sqrt(3 * variance)
        assert_uniform(w, -limit, limit)
    elif dist == "truncated_normal":
        # The pre-truncation stddev is corrected so the values' stddev is sqrt(variance).
        assert_truncated(w, 0.0, math.sqrt(variance) / TRUNC)
        assert w.std() == pytest.approx(math.sqrt(variance), rel=0.02)
    else:
        assert_normal(w, 0.0, math.sqrt(variance))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls, scale, mode, dist", PRESETS, ids=[p[0].__name__ for p in PRESETS])
def test_preset_statistics_follow_the_fan_formulas(cls: type, scale: float, mode: str, dist: str,
                                                   shape: tuple[int, ...]) -> None:
    check_variance_scaling(sample(cls(seed=3), shape), shape, scale, mode, dist)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("dist", ["uniform", "truncated_normal", "untruncated_normal"])
def test_variance_scaling_statistics(shape: tuple[int, ...], mode: str, dist: str) -> None:
    init = VarianceScaling(scale=0.7, mode=mode, distribution=dist, seed=4)
    check_variance_scaling(sample(init, shape), shape, 0.7, mode, dist)


@pytest.mark.parametrize(
    "cls, kwargs",
    [(RandomNormal, {}), (TruncatedNormal, {}), (RandomUniform, {}), (VarianceScaling, {}), (GlorotUniform, {}),
     (HeNormal, {}), (Orthogonal, {})],
)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_random_initializers_honour_float_dtypes(cls: type, kwargs: dict, dtype: str) -> None:
    out = cls(seed=1, **kwargs)((8, 6), dtype=dtype)
    assert out.dtype == backend.standardize_dtype(dtype)
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("cls", [RandomNormal, TruncatedNormal, RandomUniform, GlorotNormal, Orthogonal])
def test_random_initializers_refuse_integer_dtypes(cls: type) -> None:
    with pytest.raises(ValueError, match=r"`dtype`.*float dtype. Received: dtype='int32'"):
        cls(seed=1)((4, 4), dtype="int32")


def test_scalar_and_vector_shapes() -> None:
    assert RandomUniform(seed=1)(()).shape == ()
    assert TruncatedNormal(seed=1)(()).shape == ()
    w = GlorotUniform(seed=1)((10,))
    assert float(w.abs().max()) <= math.sqrt(6 / 20)


# --------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------

SEEDABLE = [RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling, GlorotUniform, GlorotNormal, HeNormal,
            HeUniform, LecunNormal, LecunUniform, Orthogonal]


@pytest.mark.parametrize("cls", SEEDABLE)
def test_int_seed_is_reproducible_and_distinct_seeds_differ(cls: type) -> None:
    shape = (32, 16)
    first = cls(seed=7)(shape)
    assert torch.equal(first, cls(seed=7)(shape))
    assert not torch.equal(first, cls(seed=8)(shape))


@pytest.mark.parametrize("cls", SEEDABLE)
def test_an_initializer_gives_the_same_values_on_every_call_as_in_keras(cls: type) -> None:
    for seed in (3, None):
        init = cls(seed=seed)
        assert torch.equal(init((20, 10)), init((20, 10)))


@pytest.mark.parametrize("cls", SEEDABLE)
def test_unseeded_initializers_differ_and_follow_torch_manual_seed(cls: type) -> None:
    assert not torch.equal(cls()((20, 10)), cls()((20, 10)))
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        a = cls()((20, 10))
        torch.manual_seed(1234)
        b = cls()((20, 10))
    assert torch.equal(a, b)


@pytest.mark.parametrize("cls", SEEDABLE)
def test_seeded_initializers_leave_the_global_rng_alone(cls: type) -> None:
    state = torch.get_rng_state()
    cls(seed=11)((64, 64))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, [1]])
def test_bad_seeds_are_rejected(seed: object) -> None:
    for cls in (RandomNormal, GlorotUniform, Orthogonal):
        with pytest.raises(ValueError, match=r"argument `seed`.*Received: seed="):
            cls(seed=seed)


def test_numpy_int_seed_is_accepted_as_an_int() -> None:
    assert GlorotUniform(seed=np.int64(5)).get_config()["seed"] == 5
    assert type(GlorotUniform(seed=np.int64(5)).get_config()["seed"]) is int


# --------------------------------------------------------------------------------------
# Orthogonal
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48), (3, 3, 16, 32), (2, 5, 40)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_gives_orthonormal_columns_or_rows(shape: tuple[int, ...], gain: float) -> None:
    w = Orthogonal(gain=gain, seed=3)(shape, dtype="float64")
    assert tuple(w.shape) == shape
    m = to_numpy(w).reshape(-1, shape[-1])
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_float32_and_half_are_orthonormal_too() -> None:
    w = to_numpy(Orthogonal(seed=0)((100, 50))).astype(np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(50), atol=1e-5)
    h = to_numpy(Orthogonal(seed=0)((10, 5), dtype="float16")).astype(np.float64)
    np.testing.assert_allclose(h.T @ h, np.eye(5), atol=5e-3)


def test_orthogonal_needs_two_dimensions() -> None:
    with pytest.raises(ValueError, match=r"at least two-dimensional. Received: shape=\(5,\) of rank 1."):
        Orthogonal()((5,))


# --------------------------------------------------------------------------------------
# Configs, string ids, get
# --------------------------------------------------------------------------------------

CONFIGURED = [
    Zeros(),
    Ones(),
    Constant(2.5),
    Constant(-3),
    Identity(gain=2.0),
    RandomNormal(mean=0.5, stddev=0.2, seed=1),
    RandomUniform(minval=-2.0, maxval=3.0, seed=2),
    TruncatedNormal(mean=-1.0, stddev=0.3, seed=3),
    VarianceScaling(scale=0.3, mode="fan_avg", distribution="untruncated_normal", seed=4),
    VarianceScaling(scale=2.0, mode="fan_out", distribution="uniform", input_axes=[0], output_axes=[1, 2]),
    GlorotUniform(seed=5),
    GlorotNormal(seed=6),
    HeNormal(seed=7),
    HeUniform(),
    LecunNormal(seed=8),
    LecunUniform(seed=9, input_axes=[0, 1], output_axes=[2]),
    Orthogonal(gain=1.5, seed=10),
]


@pytest.mark.parametrize("init", CONFIGURED, ids=repr)
def test_config_round_trips(init: Initializer) -> None:
    rebuilt = run_class_serialization_test(init, initializers)
    assert rebuilt.get_config() == init.get_config()
    if init.get_config().get("seed") is not None:
        assert torch.equal(rebuilt((6, 4, 3)), init((6, 4, 3)))


def test_configs_hold_the_constructor_arguments() -> None:
    assert RandomNormal(mean=0.5, stddev=0.2, seed=1).get_config() == {"seed": 1, "mean": 0.5, "stddev": 0.2}
    assert VarianceScaling(scale=0.3, distribution="normal").get_config() == {
        "seed": None, "scale": 0.3, "mode": "fan_in", "distribution": "truncated_normal",
        "input_axes": None, "output_axes": None,
    }
    assert GlorotUniform(input_axes=(0,), output_axes=(1,)).get_config()["input_axes"] == [0]
    assert Orthogonal(gain=2.0).get_config() == {"seed": None, "gain": 2.0}
    assert Zeros().get_config() == {}


def test_serialize_gives_the_keras_3_form() -> None:
    assert initializers.serialize(GlorotUniform()) == {
        "module": "keras.initializers",
        "class_name": "GlorotUniform",
        "config": {"seed": None, "input_axes": None, "output_axes": None},
        "registered_name": None,
    }
    assert initializers.serialize(None) is None


def test_a_seed_survives_json_and_gives_the_same_values() -> None:
    init = HeNormal(seed=42)
    again = initializers.deserialize(json.loads(json.dumps(initializers.serialize(init))))
    assert torch.equal(again((9, 7)), init((9, 7)))


STRING_IDS = {
    "zeros": Zeros, "Zeros": Zeros, "zero": Zeros,
    "ones": Ones, "Ones": Ones, "one": Ones,
    "constant": Constant, "Constant": Constant,
    "identity": Identity, "Identity": Identity, "IdentityInitializer": Identity,
    "random_normal": RandomNormal, "RandomNormal": RandomNormal, "normal": RandomNormal,
    "random_uniform": RandomUniform, "RandomUniform": RandomUniform, "uniform": RandomUniform,
    "truncated_normal": TruncatedNormal, "TruncatedNormal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "VarianceScaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "GlorotUniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "GlorotNormal": GlorotNormal,
    "he_normal": HeNormal, "HeNormal": HeNormal,
    "he_uniform": HeUniform, "HeUniform": HeUniform,
    "lecun_normal": LecunNormal, "LecunNormal": LecunNormal,
    "lecun_uniform": LecunUniform, "LecunUniform": LecunUniform,
    "orthogonal": Orthogonal, "Orthogonal": Orthogonal, "OrthogonalInitializer": Orthogonal,
}


@pytest.mark.parametrize("identifier, cls", list(STRING_IDS.items()))
def test_string_ids(identifier: str, cls: type) -> None:
    assert type(initializers.get(identifier)) is cls
    assert type(initializers.deserialize(identifier)) is cls
    assert type(initializers.get({"class_name": identifier, "config": {}})) is cls


def test_module_aliases_are_the_classes() -> None:
    assert initializers.glorot_uniform is GlorotUniform
    assert initializers.zeros is Zeros
    assert initializers.IdentityInitializer is Identity
    assert initializers.OrthogonalInitializer is Orthogonal
    assert initializers.variance_scaling is VarianceScaling


def test_get_passes_callables_and_instantiates_classes() -> None:
    init = HeUniform(seed=1)
    assert initializers.get(init) is init

    def plain(shape, dtype=None):
        return torch.full(tuple(shape), 7.0)

    assert initializers.get(plain) is plain
    assert type(initializers.get(Ones)) is Ones
    assert initializers.get(None) is None


def test_get_turns_a_tensor_into_an_initializer_for_its_shape() -> None:
    source = torch.arange(6.0).reshape(2, 3)
    init = initializers.get(source)
    out = init((2, 3), dtype="float64")
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(to_numpy(out), np.arange(6.0).reshape(2, 3))
    out[0, 0] = 100.0
    assert source[0, 0] == 0.0
    np.testing.assert_array_equal(to_numpy(initializers.get(np.ones((2,)))((2,))), np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match=r"Expected `shape` to be \(2, 3\).*Received shape=\(3, 2\)"):
        init((3, 2))


@pytest.mark.parametrize("identifier", [42, 1.5, ["zeros"], object()])
def test_get_rejects_uninterpretable_identifiers(identifier: object) -> None:
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        initializers.get(identifier)


def test_unknown_names_are_rejected_naming_them() -> None:
    with pytest.raises(ValueError, match=r"Unknown initializer: 'glorot_uniformm'"):
        initializers.get("glorot_uniformm")
    with pytest.raises(ValueError, match=r"Unknown initializer: 'Nope'"):
        initializers.deserialize({"class_name": "Nope", "config": {}})


def test_custom_initializers_register_and_round_trip() -> None:
    @register_keras_serializable(package="InitTests")
    class Halves(Initializer):
        def __init__(self, value: float = 0.5) -> None:
            self.value = value

        def __call__(self, shape, dtype=None):
            return torch.full(tuple(shape), self.value, dtype=backend.standardize_dtype(dtype))

        def get_config(self):
            return {"value": self.value}

    config = initializers.serialize(Halves(0.25))
    assert config["registered_name"] == "InitTests>Halves"
    rebuilt = initializers.deserialize(json.loads(json.dumps(config)))
    assert type(rebuilt) is Halves and rebuilt.value == 0.25
    assert initializers.get("InitTests>Halves")((2,)).tolist() == [0.5, 0.5]


def test_clone_copies_the_config() -> None:
    init = Orthogonal(gain=2.0, seed=3)
    twin = init.clone()
    assert twin is not init and twin.get_config() == init.get_config()
    assert torch.equal(twin((5, 5)), init((5, 5)))


def test_base_initializer_must_be_subclassed() -> None:
    with pytest.raises(NotImplementedError, match="must implement the `__call__\\(\\)` method"):
        Initializer()((2,))


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: RandomNormal(stddev=0.0), r"argument `stddev`.*positive.*Received: stddev=0.0"),
        (lambda: RandomNormal(stddev=-1), r"argument `stddev`.*Received: stddev=-1"),
        (lambda: RandomNormal(mean=float("nan")), r"argument `mean`.*Received: mean=nan"),
        (lambda: TruncatedNormal(stddev="0.1"), r"argument `stddev`.*Received: stddev='0.1'"),
        (lambda: RandomUniform(minval=1.0, maxval=0.5), r"`minval` and `maxval`.*Received: minval=1.0, maxval=0.5"),
        (lambda: RandomUniform(maxval=float("inf")), r"argument `maxval`.*Received: maxval=inf"),
        (lambda: VarianceScaling(scale=0), r"Argument `scale` must be positive float. Received: scale=0"),
        (lambda: VarianceScaling(scale=-2.0), r"Received: scale=-2.0"),
        (lambda: VarianceScaling(mode="fan_sum"), r"Invalid `mode` argument: 'fan_sum'. Please use one of"),
        (lambda: VarianceScaling(distribution="gaussian"), r"Invalid `distribution` argument: 'gaussian'"),
        (lambda: VarianceScaling(distribution=3), r"Invalid `distribution` argument: 3"),
        (lambda: VarianceScaling(input_axes="0"), r"argument `input_axes`.*Received: input_axes='0'"),
        (lambda: GlorotUniform(output_axes=[0.5]), r"argument `output_axes`.*Received: output_axes=\[0.5\]"),
        (lambda: Orthogonal(gain=None), r"argument `gain`.*Received: gain=None"),
        (lambda: Identity(gain="2"), r"argument `gain`.*Received: gain='2'"),
        (lambda: Constant([1.0, 2.0]), r"argument `value`.*scalar. Received: value=\[1.0, 2.0\]"),
    ],
)
def test_invalid_arguments_are_rejected_naming_them(make: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make()


def test_distribution_is_case_insensitive_and_normal_means_truncated() -> None:
    assert VarianceScaling(distribution="Uniform").distribution == "uniform"
    assert VarianceScaling(distribution="normal").distribution == "truncated_normal"


@pytest.mark.parametrize("shape", [5, (2, -1), (2.0, 3), "ab", None, (True, 2)])
def test_bad_shapes_are_rejected(shape: object) -> None:
    for init in (Zeros(), GlorotUniform(seed=1)):
        with pytest.raises(ValueError, match=r"argument `shape`.*Received: shape="):
            init(shape)


def test_shape_may_be_a_list_or_torch_size() -> None:
    assert GlorotUniform(seed=1)([3, 4]).shape == (3, 4)
    assert torch.equal(GlorotUniform(seed=1)(torch.Size([3, 4])), GlorotUniform(seed=1)((3, 4)))


# --------------------------------------------------------------------------------------
# Keras conformance
# --------------------------------------------------------------------------------------

KERAS_ARGS = [
    ("Zeros", {}),
    ("Ones", {}),
    ("Constant", {"value": 2.5}),
    ("Constant", {"value": -3}),
    ("RandomNormal", {"mean": 0.5, "stddev": 0.2, "seed": 1}),
    ("RandomUniform", {"minval": -2.0, "maxval": 3.0, "seed": 2}),
    ("TruncatedNormal", {"mean": -1.0, "stddev": 0.3, "seed": 3}),
    ("VarianceScaling", {"scale": 0.3, "mode": "fan_avg", "distribution": "untruncated_normal", "seed": 4}),
    ("VarianceScaling", {"scale": 2.0, "mode": "fan_out", "distribution": "uniform", "seed": 5}),
    ("VarianceScaling", {"scale": 1.5, "mode": "fan_in", "distribution": "truncated_normal", "seed": 6}),
    ("VarianceScaling", {"scale": 1.0, "distribution": "uniform", "input_axes": [0], "output_axes": [1, 2],
                         "seed": 7}),
    ("GlorotUniform", {"seed": 8}),
    ("GlorotNormal", {"seed": 9}),
    ("HeNormal", {"seed": 10}),
    ("HeUniform", {"seed": 11}),
    ("LecunNormal", {"seed": 12}),
    ("LecunUniform", {"seed": 13, "input_axes": [0, 1], "output_axes": [2]}),
    ("Orthogonal", {"gain": 1.5, "seed": 14}),
    ("Orthogonal", {}),
    ("GlorotUniform", {}),
]
KERAS_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(KERAS_ARGS)]


def keras_pair(keras: Any, name: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return getattr(initializers, name)(**kwargs), getattr(keras.initializers, name)(**kwargs)


def assert_same_config(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        if isinstance(value, float):
            assert theirs[key] == pytest.approx(value, rel=1e-7)
        else:
            assert theirs[key] == value


@pytest.mark.parametrize("name, kwargs", KERAS_ARGS, ids=KERAS_IDS)
def test_get_config_equals_keras(name: str, kwargs: dict[str, Any]) -> None:
    keras = keras_or_skip()
    ours, theirs = keras_pair(keras, name, kwargs)
    assert_same_config(ours.get_config(), theirs.get_config())
    assert initializers.serialize(ours) == json.loads(json.dumps(keras.initializers.serialize(theirs)))


@pytest.mark.parametrize("name, kwargs", KERAS_ARGS, ids=KERAS_IDS)
def test_configs_travel_both_ways(name: str, kwargs: dict[str, Any]) -> None:
    keras = keras_or_skip()
    ours, theirs = keras_pair(keras, name, kwargs)
    from_keras = initializers.deserialize(json.loads(json.dumps(keras.initializers.serialize(theirs))))
    assert type(from_keras) is type(ours)
    assert from_keras.get_config() == ours.get_config()
    to_keras = keras.initializers.deserialize(json.loads(json.dumps(initializers.serialize(ours))))
    assert type(to_keras).__name__ == name
    assert_same_config(ours.get_config(), to_keras.get_config())


SEEDED_CASES = [
    pytest.param(name, kwargs, shape, id=f"{case_id}-{'x'.join(map(str, shape))}")
    for case_id, (name, kwargs) in zip(KERAS_IDS, KERAS_ARGS)
    if "seed" in kwargs
    # Explicit axes are written for 3-D weights.
    for shape in ([(16, 4, 8)] if "input_axes" in kwargs else [(64, 32), (3, 3, 8, 16), (16, 4, 8)])
]


@pytest.mark.parametrize("name, kwargs, shape", SEEDED_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seeded_values_equal_keras(name: str, kwargs: dict[str, Any], shape: tuple[int, ...], dtype: str) -> None:
    keras = keras_or_skip()
    ours, theirs = keras_pair(keras, name, kwargs)
    mine = to_numpy(ours(shape, dtype=dtype))
    reference = to_numpy(theirs(shape, dtype=dtype))
    assert mine.dtype == reference.dtype
    truncation = truncated_at(ours, shape)
    if truncation is None:
        np.testing.assert_array_equal(mine, reference)
        return
    # Equal wherever Keras kept a value inside the truncation interval; where it did not
    # (a few in a million), weightwise redraws.
    mean, stddev = truncation
    outside = np.abs(reference - mean) >= 2 * stddev
    assert outside.mean() < 1e-3
    np.testing.assert_array_equal(mine[~outside], reference[~outside])
    assert np.all(np.abs(mine - mean) <= 2 * stddev * (1 + 1e-6))


def truncated_at(init: Any, shape: tuple[int, ...]) -> tuple[float, float] | None:
    """(mean, pre-truncation stddev) of a truncated-normal initializer, else None."""
    if isinstance(init, TruncatedNormal):
        return init.mean, init.stddev
    if isinstance(init, VarianceScaling) and init.distribution == "truncated_normal":
        fan_in, fan_out = compute_fans(shape, init.input_axes, init.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[init.mode]
        return 0.0, math.sqrt(init.scale / max(1.0, n)) / TRUNC
    return None


def test_truncated_values_equal_keras_except_where_keras_leaves_the_interval() -> None:
    keras = keras_or_skip()
    shape = (1000, 1000)
    mine = to_numpy(TruncatedNormal(mean=0.0, stddev=1.0, seed=5)(shape))
    reference = to_numpy(keras.initializers.TruncatedNormal(mean=0.0, stddev=1.0, seed=5)(shape))
    outside = np.abs(reference) >= 2.0
    assert 0 < outside.sum() < 30  # about 4.3 expected in a million
    np.testing.assert_array_equal(mine[~outside], reference[~outside])
    assert np.all(np.abs(mine[outside]) < 2.0)


@pytest.mark.parametrize("name", ["GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
                                  "LecunUniform", "RandomNormal", "TruncatedNormal", "RandomUniform"])
@pytest.mark.parametrize("shape", SHAPES)
def test_empirical_spread_matches_keras_across_seeds(name: str, shape: tuple[int, ...]) -> None:
    """Different seeds on each side: the same distribution, so the same spread."""
    keras = keras_or_skip()
    mine = to_numpy(getattr(initializers, name)(seed=101)(shape)).astype(np.float64)
    reference = to_numpy(getattr(keras.initializers, name)(seed=202)(shape)).astype(np.float64)
    assert mine.std() == pytest.approx(reference.std(), rel=0.02)
    if name != "RandomNormal":  # bounded: the largest values sit at the same limit
        assert np.abs(mine).max() == pytest.approx(np.abs(reference).max(), rel=0.02)


DETERMINISTIC_CASES = [
    pytest.param(name, kwargs, shape, dtype, id=f"{name}{kwargs.get('value', kwargs.get('gain', ''))}-{shape}-{dtype}")
    for name, kwargs in [("Zeros", {}), ("Ones", {}), ("Constant", {"value": 0.1}), ("Constant", {"value": -7}),
                         ("Identity", {"gain": 2.5})]
    for shape in [(4, 4), (3, 6), (6, 3)]
    # Keras returns a float tensor for an int Identity (its gain is a float); ours is int.
    for dtype in (["float32", "float64"] if name == "Identity" else ["float32", "float64", "int32"])
]


@pytest.mark.parametrize("name, kwargs, shape, dtype", DETERMINISTIC_CASES)
def test_deterministic_values_equal_keras(name: str, kwargs: dict[str, Any], shape: tuple[int, ...],
                                          dtype: str) -> None:
    keras = keras_or_skip()
    ours, theirs = keras_pair(keras, name, kwargs)
    mine, reference = ours(shape, dtype=dtype), theirs(shape, dtype=dtype)
    assert mine.dtype == reference.dtype
    np.testing.assert_array_equal(to_numpy(mine), to_numpy(reference))


def test_fans_equal_keras() -> None:
    keras_or_skip()
    from keras.src.initializers.random_initializers import compute_fans as keras_compute_fans

    for shape in [(), (7,), (256, 512), (5, 16, 32), (3, 3, 64, 128), (2, 3, 3, 8, 4)]:
        assert compute_fans(shape) == keras_compute_fans(shape)
    assert compute_fans((8, 4, 16), [0], [1, 2]) == keras_compute_fans((8, 4, 16), [0], [1, 2])


def test_keras_string_ids_resolve_to_the_same_classes() -> None:
    keras = keras_or_skip()
    functions = {"get", "serialize", "deserialize"}
    names = [n for n in dir(keras.initializers) if not n.startswith("_") and n not in functions]
    skipped = {"STFT", "STFTInitializer", "stft"}  # needs scipy; not provided
    for name in names:
        if name in skipped:
            continue
        assert hasattr(initializers, name), name
        keras_cls = getattr(keras.initializers, name)
        assert getattr(initializers, name).__name__ == keras_cls.__name__, name
    for identifier in [*STRING_IDS, "initializer"]:
        if identifier in {"constant", "Constant"}:
            continue  # Keras's Constant.from_config({}) fails; see TestDeliberateDifferences
        theirs = keras.initializers.get(identifier)
        assert type(initializers.get(identifier)).__name__ == type(theirs).__name__, identifier


@pytest.mark.parametrize(
    "make, call",
    [
        (lambda m: m.Identity(), lambda init: init((2, 2, 2))),
        (lambda m: m.Orthogonal(), lambda init: init((5,))),
        (lambda m: m.VarianceScaling(scale=0), None),
        (lambda m: m.VarianceScaling(scale=-1.5), None),
    ],
)
def test_error_messages_equal_keras_where_keras_has_one(make: Any, call: Any) -> None:
    keras = keras_or_skip()
    messages = []
    for module in (initializers, keras.initializers):
        with pytest.raises(ValueError) as info:
            obj = make(module)
            call(obj)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


class TestDeliberateDifferences:
    """Where weightwise differs from Keras on purpose; each test pins both sides."""

    def test_identity_config_keeps_the_gain(self) -> None:
        keras = keras_or_skip()
        assert keras.initializers.Identity(gain=2.0).get_config() == {}
        assert Identity(gain=2.0).get_config() == {"gain": 2.0}
        # A Keras config (which lost the gain) still loads, with the default gain.
        loaded = initializers.deserialize(keras.initializers.serialize(keras.initializers.Identity(gain=2.0)))
        assert loaded.get_config() == {"gain": 1.0}

    def test_identity_returns_the_requested_integer_dtype(self) -> None:
        keras = keras_or_skip()
        assert keras.initializers.Identity()((2, 2), dtype="int32").dtype == torch.float32
        out = Identity()((2, 2), dtype="int32")
        assert out.dtype == torch.int32
        np.testing.assert_array_equal(to_numpy(out), np.eye(2, dtype=np.int32))

    def test_constant_builds_from_its_string_id(self) -> None:
        keras = keras_or_skip()
        with pytest.raises(KeyError):
            keras.initializers.get("constant")
        assert initializers.get("constant").get_config() == {"value": 0.0}

    def test_negative_and_bool_seeds_are_refused(self) -> None:
        keras = keras_or_skip()
        keras.initializers.GlorotUniform(seed=-1)
        keras.initializers.GlorotUniform(seed=True)
        for seed in (-1, True):
            with pytest.raises(ValueError, match="seed"):
                GlorotUniform(seed=seed)

    def test_validation_keras_does_not_do(self) -> None:
        keras = keras_or_skip()
        keras.initializers.RandomNormal(stddev=-1.0)
        keras.initializers.RandomUniform(minval=1.0, maxval=0.0)
        with pytest.raises(ValueError):
            RandomNormal(stddev=-1.0)
        with pytest.raises(ValueError):
            RandomUniform(minval=1.0, maxval=0.0)
