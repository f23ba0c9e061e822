"""Property-based tests for the regularizers, the constraints and ``ops.norm``.

Every property is checked for ``float32`` and ``float64`` weights of rank 1-4
(sides 1..6), with random valid ``axis`` arguments (an int or a list of distinct
ints, sometimes written negatively). The references are written here in NumPy and
evaluated in ``float64`` with norms that cannot over- or underflow, so they stay
exact for huge and tiny weights.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weightwise import constraints, ops, regularizers

EPS = 1e-7  # weightwise.backend.epsilon(), the Keras fuzz factor

FLOATS = (np.float32, np.float64)
DTYPES = st.sampled_from(FLOATS)
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
# Relative tolerance of one computation in the dtype (a reduction over up to
# 6**4 = 1296 elements, a square root, a division): ~100 ulps for float32.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
# Absolute error a result in the subnormal range can carry: a few of its steps.
SUB = {dt: float(np.finfo(dt).smallest_subnormal) for dt in FLOATS}
# Absolute error of a mean |cosine| computed in the dtype (OrthogonalRegularizer / factor).
COS_ATOL = {np.float32: 1e-5, np.float64: 1e-12}

FAST = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- strategies


SIGNS = st.sampled_from([-1.0, 1.0])


def _cast(dtype: Any) -> Callable[[float], float]:
    """Round a Python float to ``dtype`` (so hypothesis.extra.numpy accepts it exactly)."""
    kind = np.dtype(dtype).type
    return lambda v: float(kind(v))


def wide(dtype: Any) -> st.SearchStrategy[float]:
    """Any finite float with |x| <= 1e6, subnormals and -0.0 included."""
    width = 32 if dtype == np.float32 else 64
    return st.one_of(st.just(-0.0), st.floats(-1e6, 1e6, width=width, allow_nan=False, allow_infinity=False))


def nonzero_magnitudes(dtype: Any, lo: float, hi: float) -> st.SearchStrategy[float]:
    """A float with lo <= |x| <= hi (rounded to dtype), of either sign."""
    cast = _cast(dtype)
    return st.builds(lambda s, m: cast(s * m), SIGNS, st.floats(lo, hi))


def magnitudes(dtype: Any, lo: float, hi: float) -> st.SearchStrategy[float]:
    """Zero, or a float with lo <= |x| <= hi (rounded to dtype), of either sign."""
    return st.one_of(st.just(0.0), nonzero_magnitudes(dtype, lo, hi))


def decades(dtype: Any, lo_exp: int, hi_exp: int) -> st.SearchStrategy[float]:
    """Zero, or m * 10**e with m in [1, 10) and e in [lo_exp, hi_exp] (rounded to dtype), of either sign.

    Drawing the exponent spreads the values evenly over the decades, which a plain
    bounded float strategy does not.
    """
    cast = _cast(dtype)
    nonzero = st.builds(
        lambda s, m, e: cast(s * m * 10.0**e),
        SIGNS,
        st.floats(1.0, 10.0, exclude_max=True),
        st.integers(lo_exp, hi_exp),
    )
    return st.one_of(st.just(0.0), nonzero)


def normal(dtype: Any) -> st.SearchStrategy[float]:
    """Zero or 1e-6 <= |x| <= 1e6: a normal weight range (non-zero norms far above epsilon)."""
    return magnitudes(dtype, 1e-6, 1e6)


def moderate(dtype: Any) -> st.SearchStrategy[float]:
    """Zero or 1e-3 <= |x| <= 1e3."""
    return magnitudes(dtype, 1e-3, 1e3)


EXTREME_DECADES = {
    # |x| from 1e-20 down past the smallest subnormal (float32: 1.4e-45; float64: 4.9e-324).
    "tiny": {np.float32: (-45, -20), np.float64: (-320, -20)},
    # |x| whose squares overflow the dtype: float32 1e18..1e31, float64 1e150..1e301.
    "huge": {np.float32: (18, 30), np.float64: (150, 300)},
}


def tiny(dtype: Any) -> st.SearchStrategy[float]:
    return decades(dtype, *EXTREME_DECADES["tiny"][dtype])


def huge(dtype: Any) -> st.SearchStrategy[float]:
    return decades(dtype, *EXTREME_DECADES["huge"][dtype])


def zeros(dtype: Any) -> st.SearchStrategy[float]:
    return st.sampled_from([0.0, -0.0])


REGIMES = ("zeros", "tiny", "huge")

SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)


@st.composite
def axis_for(draw: Any, rank: int) -> int | list[int]:
    """A valid ``axis`` for a tensor of this rank: an int, or a list of distinct dimensions.

    Each dimension may be written as its negative alias; the list is in random order.
    """
    dims = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    negative = draw(st.lists(st.booleans(), min_size=len(dims), max_size=len(dims)))
    written = [d - rank if neg else d for d, neg in zip(dims, negative)]
    if len(written) == 1 and draw(st.booleans()):
        return written[0]
    return written


@st.composite
def shape_and_axis(draw: Any, shapes: st.SearchStrategy[tuple[int, ...]] = SHAPES) -> tuple[tuple[int, ...], Any]:
    shape = draw(shapes)
    return shape, draw(axis_for(len(shape)))


@st.composite
def weights(draw: Any, elements: Callable[[Any], st.SearchStrategy[float]], shapes: Any = SHAPES) -> np.ndarray:
    """A float32 or float64 array of the given shapes with the given elements."""
    dtype = draw(DTYPES)
    return draw(hnp.arrays(dtype, draw(shapes), elements=elements(dtype)))


@st.composite
def weights_and_axis(draw: Any, elements: Callable[[Any], st.SearchStrategy[float]]) -> tuple[np.ndarray, Any]:
    dtype = draw(DTYPES)
    shape, axis = draw(shape_and_axis())
    return draw(hnp.arrays(dtype, shape, elements=elements(dtype))), axis


@st.composite
def extreme_arrays(
    draw: Any, dtype: Any, shape: tuple[int, ...], regime: str, span: tuple[int, int] | None = None
) -> np.ndarray:
    """All zeros, or tiny / huge values (with some zeros) clustered within 4 decades.

    Weights of one tensor share a scale, and clustering is what makes a whole
    vector's sum of squares over- or underflow; the top decade is drawn from
    ``span`` (default: the regime's range in EXTREME_DECADES).
    """
    if regime == "zeros":
        return draw(hnp.arrays(dtype, shape, elements=zeros(dtype)))
    lo, hi = span or EXTREME_DECADES[regime][dtype]
    top = draw(st.integers(lo, hi), label="top_decade")
    return draw(hnp.arrays(dtype, shape, elements=decades(dtype, max(lo, top - 3), top)), label="x")


MATRICES = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)
# Factors and norm bounds: 0 or a sane magnitude. (A factor below the float32 range,
# e.g. 1e-48, is rounded to 0 when it multiplies a float32 tensor; a max_value near
# 1e-38 makes Keras's desired / (eps + norm) subnormal and loses digits. Neither is
# a setting anyone trains with, and both are the Keras formulas' own rounding.)
FACTORS = st.one_of(st.just(0.0), st.floats(1e-6, 10.0))
BOUNDS = st.one_of(st.just(0.0), st.floats(1e-3, 100.0))


@st.composite
def regularizer_specs(draw: Any, rank: int) -> dict[str, Any]:
    """A regularizer as a plain dict (so hypothesis prints it): its class and arguments."""
    kinds = ["L1", "L2", "L1L2"] + (["OrthogonalRegularizer"] if rank == 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "L1":
        return {"kind": kind, "l1": draw(FACTORS)}
    if kind == "L2":
        return {"kind": kind, "l2": draw(FACTORS)}
    if kind == "L1L2":
        return {"kind": kind, "l1": draw(FACTORS), "l2": draw(FACTORS)}
    return {"kind": kind, "factor": draw(FACTORS), "mode": draw(st.sampled_from(["rows", "columns"]))}


@st.composite
def norm_constraint_specs(draw: Any, kinds: tuple[str, ...] = ("MaxNorm", "MinMaxNorm", "UnitNorm")) -> dict[str, Any]:
    """A norm constraint as a plain dict: MaxNorm, MinMaxNorm (min <= max, rate in [0, 1]) or UnitNorm."""
    kind = draw(st.sampled_from(kinds))
    if kind == "MaxNorm":
        return {"kind": kind, "max_value": draw(BOUNDS)}
    if kind == "MinMaxNorm":
        low, high = sorted([draw(BOUNDS), draw(BOUNDS)])
        return {"kind": kind, "min_value": low, "max_value": high, "rate": draw(st.floats(0.0, 1.0))}
    return {"kind": kind}


# --------------------------------------------------------------------------- helpers


def _args(spec: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key != "kind"}


def build_regularizer(spec: dict[str, Any]) -> Any:
    return getattr(regularizers, spec["kind"])(**_args(spec))


def build_constraint(spec: dict[str, Any], axis: Any) -> Any:
    return getattr(constraints, spec["kind"])(axis=axis, **_args(spec))


def with_factor_scaled(spec: dict[str, Any], k: float) -> dict[str, Any]:
    """The same regularizer with every penalty factor multiplied by ``k``."""
    return {key: (value * k if key in ("l1", "l2", "factor") else value) for key, value in spec.items()}


def homogeneous_parts(spec: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """Split a regularizer into terms of known degree of homogeneity in x."""
    if spec["kind"] == "L1L2":
        return [({"kind": "L1", "l1": spec["l1"]}, 1), ({"kind": "L2", "l2": spec["l2"]}, 2)]
    return [(spec, {"L1": 1, "L2": 2, "OrthogonalRegularizer": 0}[spec["kind"]])]


def tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, copy=True))


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def penalty(spec: dict[str, Any], x: np.ndarray) -> torch.Tensor:
    return build_regularizer(spec)(tensor(x))


def apply_constraint(constraint: Any, x: np.ndarray) -> np.ndarray:
    return as_numpy(constraint(tensor(x)))


def axes_tuple(axis: Any, rank: int) -> tuple[int, ...]:
    """``axis`` (None, an int, or a list) as sorted non-negative dimensions."""
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, int):
        axis = [axis]
    return tuple(sorted(a % rank for a in axis))


def numpy_norm(x: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """Euclidean norm over ``axis`` with ``np.linalg.norm`` in float64.

    The reduced axes are moved last and flattened so one ``np.linalg.norm(axis=-1)``
    serves any set of axes; each vector is divided by its largest magnitude first
    and multiplied back after, so float64 squares never over- or underflow.
    """
    x64 = np.asarray(x, dtype=np.float64)
    rank = x64.ndim
    axes = axes_tuple(axis, rank)
    rest = [d for d in range(rank) if d not in axes]
    flat = np.transpose(x64, rest + list(axes)).reshape([x64.shape[d] for d in rest] + [-1])
    scale = np.max(np.abs(flat), axis=-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    out = np.linalg.norm(flat / scale, axis=-1) * scale[..., 0]
    if keepdims:
        out = np.reshape(out, [1 if d in axes else x64.shape[d] for d in range(rank)])
    return out


def vector_norms(x: np.ndarray, axis: Any) -> np.ndarray:
    """Per-vector float64 norms, kept broadcastable against ``x``."""
    return numpy_norm(x, axis, keepdims=True)


def norm_atol(x: np.ndarray) -> float:
    """Absolute slack for a norm of values that may sit in the subnormal range."""
    return 4 * SUB[x.dtype.type] * np.sqrt(max(x.size, 1))


def max_norm_limit(max_value: float, x: np.ndarray) -> float:
    """Largest output norm MaxNorm may give: max_value, plus rounding, plus the smallest normal float."""
    return max_value * (1 + 1e-5) + float(np.finfo(x.dtype).tiny)


def eps_gain(n: np.ndarray) -> np.ndarray:
    """``n / (epsilon + n)``: how far the Keras formula falls short of the intended norm."""
    return n / (EPS + n)


def desired_norms(spec: dict[str, Any], n: np.ndarray) -> np.ndarray:
    """Keras's target norm for each vector, in float64."""
    if spec["kind"] == "MaxNorm":
        return np.clip(n, 0, spec["max_value"])
    if spec["kind"] == "MinMaxNorm":
        rate = spec["rate"]
        return rate * np.clip(n, spec["min_value"], spec["max_value"]) + (1 - rate) * n
    return np.ones_like(n)  # UnitNorm: w / (epsilon + norm)


def constraint_reference(spec: dict[str, Any], x: np.ndarray, axis: Any) -> np.ndarray:
    """Keras's ``w * desired(norm) / (epsilon + norm)`` in float64 with exact norms."""
    n = vector_norms(x, axis)
    return x.astype(np.float64) * (desired_norms(spec, n) / (EPS + n))


def normalize_rows_reference(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero.

    Written as ``v / max(norm, epsilon)``, which is Keras's ``normalize``
    (``v * min(1/norm, 1/epsilon)``): identical to unit normalization for every row
    whose norm is at least epsilon (all non-zero rows of the "normal" and "moderate"
    strategies), and it also says what happens to rows shorter than epsilon.
    """
    n = numpy_norm(v, 1, keepdims=True)
    return v / np.maximum(n, EPS)


def penalty_reference(spec: dict[str, Any], x: np.ndarray) -> float:
    """The penalty in float64.

    L1 = l1 * sum|x|, L2 = l2 * sum x^2, and orthogonal =
    factor * 0.5 * sum|offdiag(N Nᵀ)| / (n (n - 1) / 2) with N the rows (or columns)
    normalized to unit L2 norm, zero rows left zero; that is factor * mean |cosine|.
    """
    x64 = x.astype(np.float64)
    kind = spec["kind"]
    if kind == "L1":
        return spec["l1"] * np.sum(np.abs(x64))
    if kind == "L2":
        return spec["l2"] * np.sum(x64 * x64)
    if kind == "L1L2":
        return spec["l1"] * np.sum(np.abs(x64)) + spec["l2"] * np.sum(x64 * x64)
    vectors = x64 if spec["mode"] == "rows" else x64.T
    unit = normalize_rows_reference(vectors)
    product = unit @ unit.T
    size = product.shape[0]
    if size < 2:
        return 0.0
    off_diagonal = product * (1.0 - np.eye(size))
    return spec["factor"] * 0.5 * np.sum(np.abs(off_diagonal)) / (size * (size - 1) / 2)


def penalty_tolerance(spec: dict[str, Any], x: np.ndarray) -> tuple[float, float]:
    """(rtol, atol) for comparing a penalty computed in x's dtype with the float64 reference."""
    dtype = x.dtype.type
    if spec["kind"] == "OrthogonalRegularizer":
        return RTOL[dtype], spec["factor"] * COS_ATOL[dtype]
    # Squares and the final products may land in the subnormal range: one step each.
    total = sum(spec.get(k, 0.0) for k in ("l1", "l2"))
    return RTOL[dtype], 4 * (1 + total * max(x.size, 1)) * SUB[dtype]


def without_zero_rows_or_columns(x: np.ndarray) -> np.ndarray:
    """Put a 1 into every all-zero row and column of a matrix (they have no direction)."""
    x = x.copy()
    x[np.all(x == 0, axis=1), 0] = 1
    x[0, np.all(x == 0, axis=0)] = 1
    return x


def assert_zero_vectors_stay_zero(out: np.ndarray, x: np.ndarray, axis: Any) -> None:
    zero_in = vector_norms(x, axis) == 0
    zero_in = np.broadcast_to(zero_in, x.shape)
    assert np.all(out[zero_in] == 0), "a zero input vector did not stay zero"


def norm_rtol(x: np.ndarray, n_in: np.ndarray) -> np.ndarray:
    """RTOL, plus SUB / n for input norms n that are themselves subnormal (see relative_slack)."""
    dtype = x.dtype.type
    return RTOL[dtype] + np.where(n_in > 0, 4 * SUB[dtype] / np.where(n_in > 0, n_in, 1.0), 0.0)


def assert_norms_close(actual: np.ndarray, expected: np.ndarray, x: np.ndarray, n_in: np.ndarray, what: str) -> None:
    bad = ~(np.abs(actual - expected) <= norm_rtol(x, n_in) * np.abs(expected) + norm_atol(x))
    assert not np.any(bad), f"{what}: norms {actual[bad]} but expected {expected[bad]}"


def assert_norms_within(
    actual: np.ndarray, low: Any, high: Any, x: np.ndarray, n_in: np.ndarray, what: str
) -> None:
    rtol, atol = norm_rtol(x, n_in), norm_atol(x)
    below = actual < low * (1 - rtol) - atol
    above = actual > high * (1 + rtol) + atol
    bad = below | above
    assert not np.any(bad), (
        f"{what}: norms {actual[bad]} outside [{np.broadcast_to(low, actual.shape)[bad]}, "
        f"{np.broadcast_to(high, actual.shape)[bad]}]"
    )


def relative_slack(x: np.ndarray, axis: Any) -> np.ndarray:
    """Per-vector relative tolerance: RTOL, plus what a subnormal norm cannot resolve.

    A vector norm that is itself subnormal carries an absolute error of a subnormal
    step, i.e. a relative error of SUB / norm, whichever way it is computed; every
    output scaled by it inherits that.
    """
    dtype = x.dtype.type
    n = vector_norms(x, axis)
    extra = np.where(n > 0, 4 * SUB[dtype] / np.where(n > 0, n, 1.0), 0.0)
    return np.broadcast_to(RTOL[dtype] + extra, x.shape)


def assert_matches_reference(out: np.ndarray, reference: np.ndarray, x: np.ndarray, axis: Any, what: str) -> None:
    dtype = x.dtype.type
    error = np.abs(out.astype(np.float64) - reference)
    allowed = relative_slack(x, axis) * np.abs(reference) + 4 * SUB[dtype]
    bad = ~(error <= allowed)
    assert not np.any(bad), (
        f"{what}: {int(bad.sum())} of {x.size} elements differ from the exact Keras formula; "
        f"input {x[bad][:6]}, got {out[bad][:6]}, expected {reference[bad][:6]}"
    )


def assert_positive_multiple(out: np.ndarray, x: np.ndarray, axis: Any, reference: np.ndarray) -> None:
    """Each output vector is k * (its input vector) with k >= 0, and k > 0 where it should be.

    k may only be 0 where the exact result itself is too small for the dtype.
    """
    dtype = x.dtype.type
    x64, out64 = x.astype(np.float64), out.astype(np.float64)
    axes = axes_tuple(axis, x.ndim)
    # k = |out| / |x|, both divided by max|x| first so no norm here is subnormal.
    scale = np.max(np.abs(x64), axis=axes, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    n_in, n_out = vector_norms(x64 / scale, axis), vector_norms(out64 / scale, axis)
    k = np.where(n_in > 0, n_out / np.where(n_in > 0, n_in, 1.0), 0.0)
    error = np.abs(out64 - k * x64)
    allowed = relative_slack(x, axis) * np.abs(k * x64) + 4 * SUB[dtype]
    assert np.all(error <= allowed), f"direction changed: got {out.ravel()[:6]} for input {x.ravel()[:6]}"
    assert np.all(np.sign(out64) * np.sign(x64) >= 0), "an output element has the opposite sign of its input"
    should_survive = np.any(np.abs(reference) >= 2 * SUB[dtype], axis=axes, keepdims=True)
    survived = np.any(out != 0, axis=axes, keepdims=True)
    lost = should_survive & ~survived
    assert not np.any(lost), (
        f"{int(lost.sum())} vector(s) collapsed to zero although the exact result is representable; "
        f"input norms {n_in[lost]}, exact output norms {vector_norms(reference, axis)[lost]}"
    )


# --------------------------------------------------------------------------- 1. regularizers


@FAST
@given(data=st.data(), x=weights(wide))
def test_penalty_nonnegative_finite_scalar_of_input_dtype(data: Any, x: np.ndarray) -> None:
    if x.ndim != 2 and data.draw(st.booleans(), label="as_matrix"):
        x = x.reshape(x.shape[0], -1)
    spec = data.draw(regularizer_specs(x.ndim), label="spec")
    t = tensor(x)
    before = t.clone()
    result = build_regularizer(spec)(t)
    assert result.dtype == TORCH_DTYPE[x.dtype.type]
    assert result.shape == ()
    value = result.item()
    assert np.isfinite(value) and value >= 0
    assert as_numpy(t).tobytes() == as_numpy(before).tobytes(), "the regularizer modified its input"


@FAST
@given(data=st.data(), x=weights(moderate), c=st.floats(0.1, 10.0))
def test_penalty_homogeneity(data: Any, x: np.ndarray, c: float) -> None:
    """L1(c x) = c L1(x), L2(c x) = c^2 L2(x), orthogonal(c x) = orthogonal(x), for c > 0."""
    if x.ndim != 2 and data.draw(st.booleans(), label="as_matrix"):
        x = x.reshape(x.shape[0], -1)
    spec = data.draw(regularizer_specs(x.ndim), label="spec")
    if spec["kind"] == "OrthogonalRegularizer":
        x = without_zero_rows_or_columns(x)
    scaled = (x.astype(np.float64) * c).astype(x.dtype)
    got = penalty(spec, scaled).item()
    expected = sum(c**degree * penalty(part, x).item() for part, degree in homogeneous_parts(spec))
    rtol, atol = penalty_tolerance(spec, x)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@FAST
@given(data=st.data(), x=weights(wide), k=st.sampled_from([0.0, 0.5, 2.0, 3.0]))
def test_penalty_linear_in_factor(data: Any, x: np.ndarray, k: float) -> None:
    """L1(k a)(x) = k L1(a)(x), and likewise for every factor of every regularizer."""
    if x.ndim != 2 and data.draw(st.booleans(), label="as_matrix"):
        x = x.reshape(x.shape[0], -1)
    spec = data.draw(regularizer_specs(x.ndim), label="spec")
    got = penalty(with_factor_scaled(spec, k), x).item()
    expected = k * penalty(spec, x).item()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=4 * SUB[x.dtype.type] * max(k, 1.0))


@FAST
@given(x=weights(wide, shapes=MATRICES), factor=FACTORS, mode=st.sampled_from(["rows", "columns"]))
def test_orthogonal_penalty_within_zero_and_factor(x: np.ndarray, factor: float, mode: str) -> None:
    """The penalty is factor * mean |cosine| over distinct pairs, so it lies in [0, factor].

    Not [0, factor / 2]: ``factor * 0.5 * sum(|P * (1 - I)|) / (n (n - 1) / 2)`` sums
    both (i, j) and (j, i), which cancels the 0.5 (Keras 3 gives 1.0 for
    ``factor=1`` on ``ones((2, 2))``); see the parallel-rows test for the maximum.
    """
    value = regularizers.OrthogonalRegularizer(factor=factor, mode=mode)(tensor(x)).item()
    assert 0.0 <= value <= factor * (1 + RTOL[x.dtype.type]) + factor * COS_ATOL[x.dtype.type]


@FAST
@given(
    data=st.data(),
    dtype=DTYPES,
    n=st.integers(2, 6),
    factor=FACTORS,
    mode=st.sampled_from(["rows", "columns"]),
)
def test_orthogonal_penalty_is_factor_for_parallel_vectors(
    data: Any, dtype: Any, n: int, factor: float, mode: str
) -> None:
    """n >= 2 parallel (or anti-parallel) vectors: every |cosine| is 1, the penalty is factor."""
    direction = data.draw(hnp.arrays(np.float64, data.draw(st.integers(1, 6)), elements=moderate(np.float64)))
    assume(np.any(direction != 0))
    scales = np.array(data.draw(st.lists(nonzero_magnitudes(np.float64, 0.1, 10.0), min_size=n, max_size=n)))
    matrix = (scales[:, None] * direction[None, :]).astype(dtype)
    w = matrix if mode == "rows" else matrix.T
    value = regularizers.OrthogonalRegularizer(factor=factor, mode=mode)(tensor(w)).item()
    np.testing.assert_allclose(value, factor, rtol=RTOL[dtype] + COS_ATOL[dtype])


@FAST
@given(
    data=st.data(),
    dtype=DTYPES,
    n=st.integers(1, 6),
    extra=st.integers(0, 4),
    factor=FACTORS,
    mode=st.sampled_from(["rows", "columns"]),
)
def test_orthogonal_penalty_zero_for_orthogonal_vectors(
    data: Any, dtype: Any, n: int, extra: int, factor: float, mode: str
) -> None:
    """Scaled permutation matrices give exactly 0, scaled rotations give 0 up to rounding."""
    m = n + extra
    scales = np.array(data.draw(st.lists(nonzero_magnitudes(np.float64, 0.1, 10.0), min_size=n, max_size=n)))
    permutation = data.draw(st.permutations(range(m)), label="permutation")
    exact = np.zeros((n, m))
    exact[np.arange(n), permutation[:n]] = scales
    seed = data.draw(hnp.arrays(np.float64, (m, m), elements=st.floats(-1, 1)), label="qr_seed")
    q, _ = np.linalg.qr(seed + 3 * np.eye(m))  # orthonormal rows and columns, whatever the seed
    rotated = scales[:, None] * q[:n]
    regularizer = regularizers.OrthogonalRegularizer(factor=factor, mode=mode)
    for matrix, atol in ((exact, 0.0), (rotated, factor * COS_ATOL[dtype])):
        w = matrix if mode == "rows" else matrix.T
        value = regularizer(tensor(w.astype(dtype))).item()
        assert 0.0 <= value <= atol, f"penalty {value} for orthogonal vectors:\n{w}"


@FAST
@given(data=st.data(), x=weights(normal))
def test_penalty_matches_numpy_reference(data: Any, x: np.ndarray) -> None:
    if x.ndim != 2 and data.draw(st.booleans(), label="as_matrix"):
        x = x.reshape(x.shape[0], -1)
    spec = data.draw(regularizer_specs(x.ndim), label="spec")
    rtol, atol = penalty_tolerance(spec, x)
    np.testing.assert_allclose(penalty(spec, x).item(), penalty_reference(spec, x), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- 2. constraints


ALL_CONSTRAINTS = ("MaxNorm", "MinMaxNorm", "UnitNorm", "NonNeg")


@FAST
@given(data=st.data(), xa=weights_and_axis(wide), kind=st.sampled_from(ALL_CONSTRAINTS))
def test_constraint_keeps_shape_and_dtype_and_leaves_input_alone(data: Any, xa: Any, kind: str) -> None:
    x, axis = xa
    if kind == "NonNeg":
        constraint = constraints.NonNeg()
    else:
        constraint = build_constraint(data.draw(norm_constraint_specs((kind,)), label="spec"), axis)
    t = tensor(x)
    before = t.clone()
    out = constraint(t)
    assert out.shape == t.shape
    assert out.dtype == t.dtype
    assert as_numpy(t).tobytes() == as_numpy(before).tobytes(), "the constraint modified its input"


@FAST
@given(xa=weights_and_axis(wide), max_value=BOUNDS)
def test_max_norm_caps_every_norm(xa: Any, max_value: float) -> None:
    x, axis = xa
    out = apply_constraint(constraints.MaxNorm(max_value, axis=axis), x)
    n_out = vector_norms(out, axis)
    limit = max_norm_limit(max_value, x)
    assert np.all(n_out <= limit), f"norms {n_out[n_out > limit]} exceed max_value={max_value}"


@FAST
@given(data=st.data(), xa=weights_and_axis(wide))
def test_min_max_norm_rate_one_lands_in_bounds(data: Any, xa: Any) -> None:
    """With rate=1 every non-zero vector ends with norm clip(n, min, max) * n / (eps + n).

    The factor n / (eps + n) is Keras's epsilon fuzz (as for UnitNorm); it is 1 up
    to 1e-5 for every vector of norm >= 1e-2, where the bounds themselves must hold.
    Zero vectors have no direction and stay zero.
    """
    x, axis = xa
    spec = data.draw(norm_constraint_specs(("MinMaxNorm",)), label="spec")
    spec["rate"] = 1.0
    out = apply_constraint(build_constraint(spec, axis), x)
    n_in, n_out = vector_norms(x, axis), vector_norms(out, axis)
    nonzero = n_in > 0
    gain = eps_gain(n_in)
    lo, hi = spec["min_value"], spec["max_value"]
    assert_norms_within(
        n_out[nonzero], lo * gain[nonzero], hi * gain[nonzero], x, n_in[nonzero], "MinMaxNorm(rate=1)"
    )
    plain = n_in >= 1e-2
    assert_norms_within(
        n_out[plain], lo * (1 - 1e-5) * np.ones_like(n_out[plain]), hi * np.ones_like(n_out[plain]), x, n_in[plain],
        "MinMaxNorm bounds",
    )
    assert_zero_vectors_stay_zero(out, x, axis)


@FAST
@given(data=st.data(), xa=weights_and_axis(wide), rate=st.floats(0.0, 1.0, exclude_max=True))
def test_min_max_norm_partial_rate_moves_norm_part_way(data: Any, xa: Any, rate: float) -> None:
    """With rate < 1 the output norm is between the input norm and the clipped norm (times n/(eps+n))."""
    x, axis = xa
    spec = data.draw(norm_constraint_specs(("MinMaxNorm",)), label="spec")
    spec["rate"] = rate
    out = apply_constraint(build_constraint(spec, axis), x)
    n_in, n_out = vector_norms(x, axis), vector_norms(out, axis)
    clipped = np.clip(n_in, spec["min_value"], spec["max_value"])
    gain = eps_gain(n_in)
    low, high = np.minimum(n_in, clipped) * gain, np.maximum(n_in, clipped) * gain
    assert_norms_within(n_out, low, high, x, n_in, f"MinMaxNorm(rate={rate})")
    assert_zero_vectors_stay_zero(out, x, axis)


@FAST
@given(xa=weights_and_axis(wide))
def test_unit_norm_gives_unit_vectors(xa: Any) -> None:
    """Each vector gets norm n / (eps + n) (1 up to epsilon); zero vectors stay zero."""
    x, axis = xa
    out = apply_constraint(constraints.UnitNorm(axis=axis), x)
    n_in, n_out = vector_norms(x, axis), vector_norms(out, axis)
    assert_norms_close(n_out, eps_gain(n_in), x, n_in, "UnitNorm norms")
    plain = n_in >= 1e-2
    np.testing.assert_allclose(n_out[plain], 1.0, rtol=RTOL[x.dtype.type] + 1e-5)
    assert_zero_vectors_stay_zero(out, x, axis)


@FAST
@given(x=weights(lambda dt: st.one_of(wide(dt), st.just(-0.0))))
def test_non_neg_clips_negatives_to_positive_zero(x: np.ndarray) -> None:
    out = apply_constraint(constraints.NonNeg(), x)
    assert np.all(out >= 0)
    assert not np.any(np.signbit(out)), "NonNeg produced -0.0"
    positive = x > 0
    assert out[positive].tobytes() == x[positive].tobytes(), "positive entries changed"
    assert np.all(out[~positive] == 0)


@FAST
@given(data=st.data(), xa=weights_and_axis(moderate), kind=st.sampled_from(("MaxNorm", "UnitNorm", "NonNeg")))
def test_constraints_are_idempotent(data: Any, xa: Any, kind: str) -> None:
    """Applying MaxNorm, UnitNorm or NonNeg twice equals applying it once.

    The epsilon fuzz moves a second application by |w| * eps / (eps + norm) <= eps
    per element (MaxNorm). UnitNorm's first pass leaves norm n / (eps + n), short of 1
    by eps / n relative, and the second pass closes that gap: the two differ by
    eps / n relative (<= 1e-4 here, where non-zero norms are >= 1e-3), plus rounding.
    """
    x, axis = xa
    dtype = x.dtype.type
    if kind == "NonNeg":
        constraint = constraints.NonNeg()
    else:
        constraint = build_constraint(data.draw(norm_constraint_specs((kind,)), label="spec"), axis)
    once = apply_constraint(constraint, x)
    twice = apply_constraint(constraint, once)
    if kind == "NonNeg":
        assert twice.tobytes() == once.tobytes()
    elif kind == "MaxNorm":
        np.testing.assert_allclose(twice, once, rtol=RTOL[dtype], atol=1.5 * EPS)
    else:
        n = vector_norms(x, axis)
        slack = np.where(n > 0, EPS / np.where(n > 0, n, 1.0), 0.0)
        error = np.abs(twice.astype(np.float64) - once)
        allowed = (1e-5 + slack) * np.abs(once) + 4 * SUB[dtype]
        assert np.all(error <= allowed), f"UnitNorm twice != once: max error {np.max(error - allowed)} over"


@FAST
@given(data=st.data(), xa=weights_and_axis(normal))
def test_norm_constraints_match_keras_formula(data: Any, xa: Any) -> None:
    """MaxNorm: w*clip(n,0,max)/(eps+n); MinMaxNorm: w*(r*clip(n,lo,hi)+(1-r)*n)/(eps+n); UnitNorm: w/(eps+n)."""
    x, axis = xa
    spec = data.draw(norm_constraint_specs(), label="spec")
    out = apply_constraint(build_constraint(spec, axis), x)
    assert_matches_reference(out, constraint_reference(spec, x, axis), x, axis, str(spec))


# --------------------------------------------------------------------------- 3. robustness


REGULARIZER_HUGE_DECADES = {
    # Largest decade for which the true penalty (factor <= 10, <= 1296 elements, m < 10)
    # is representable: L1 needs 10 * 1296 * 10**(e+1) < max, L2 needs 10 * 1296 * 10**(2e+2) < max.
    # float32 (max 3.4e38): L1 up to 1e30, L2 up to 1e15.  float64 (max 1.8e308): L1 up to 1e300, L2 up to 1e150.
    "L1": {np.float32: 30, np.float64: 300},
    "L2": {np.float32: 15, np.float64: 150},
    "L1L2": {np.float32: 15, np.float64: 150},
    # Orthogonal penalties are scale-free: any finite magnitude.
    "OrthogonalRegularizer": {np.float32: 30, np.float64: 300},
}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("dtype", FLOATS)
@FAST
@given(data=st.data())
def test_penalties_finite_and_correct_on_extreme_inputs(data: Any, dtype: Any, regime: str) -> None:
    shape = data.draw(SHAPES, label="shape")
    if len(shape) != 2 and data.draw(st.booleans(), label="matrix"):
        shape = (shape[0], int(np.prod(shape[1:])))
    spec = data.draw(regularizer_specs(len(shape)), label="spec")
    span = None
    if regime == "huge":
        top = REGULARIZER_HUGE_DECADES[spec["kind"]][dtype]
        span = (top - 12, top)
    x = data.draw(extreme_arrays(dtype, shape, regime, span))
    result = penalty(spec, x)
    assert result.dtype == TORCH_DTYPE[dtype]
    value = result.item()
    assert np.isfinite(value) and value >= 0, f"penalty {value}"
    rtol, atol = penalty_tolerance(spec, x)
    np.testing.assert_allclose(value, penalty_reference(spec, x), rtol=rtol, atol=atol)


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("dtype", FLOATS)
@FAST
@given(data=st.data())
def test_constraints_finite_and_correct_on_extreme_inputs(data: Any, dtype: Any, regime: str) -> None:
    """All-zero, tiny (down to subnormals) and huge (squares overflow) weights.

    Beyond finiteness: the output equals the exact Keras formula, MaxNorm norms stay
    <= max_value, every vector keeps its direction (a non-negative multiple of the
    input, non-zero whenever the exact result is representable), UnitNorm norms are
    n / (eps + n) (so 1 for huge vectors), and NonNeg is max(w, +0).
    """
    shape, axis = data.draw(shape_and_axis(), label="shape_and_axis")
    x = data.draw(extreme_arrays(dtype, shape, regime))
    nonneg = constraints.NonNeg()(tensor(x))
    assert torch.isfinite(nonneg).all()
    assert as_numpy(nonneg).tobytes() == (np.maximum(x, 0) + dtype(0)).tobytes()

    spec = data.draw(norm_constraint_specs(), label="spec")
    out = apply_constraint(build_constraint(spec, axis), x)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert np.all(np.isfinite(out)), f"non-finite output for {spec}"
    reference = constraint_reference(spec, x, axis)
    assert_matches_reference(out, reference, x, axis, str(spec))
    assert_positive_multiple(out, x, axis, reference)
    assert_zero_vectors_stay_zero(out, x, axis)
    n_in, n_out = vector_norms(x, axis), vector_norms(out, axis)
    if spec["kind"] == "MaxNorm":
        assert np.all(n_out <= max_norm_limit(spec["max_value"], x)), f"norms {n_out.ravel()} > {spec}"
    if spec["kind"] == "UnitNorm":
        assert_norms_close(n_out, eps_gain(n_in), x, n_in, "UnitNorm norms")


EXTREME_3_4_CASES = [
    (np.float32, 1e30),
    (np.float32, 1e-24),  # squares underflow to 0, yet the exact MaxNorm output (~1e-40) is representable
    (np.float32, 1e-30),
    (np.float64, 1e30),
    (np.float64, 1e200),
    (np.float64, 1e-30),
    (np.float64, 1e-163),  # the float64 analogue of 1e-24 in float32
]


@pytest.mark.parametrize(("dtype", "scale"), EXTREME_3_4_CASES)
@pytest.mark.parametrize("kind", ["UnitNorm", "MaxNorm"])
def test_norm_constraints_on_huge_and_tiny_3_4_vector(dtype: Any, scale: float, kind: str) -> None:
    """(3, 4) * scale: UnitNorm gives (0.6, 0.8) * 5s/(eps + 5s); MaxNorm(1) the same for 5s >= 1."""
    x = np.array([[3.0 * scale], [4.0 * scale]], dtype=dtype)
    constraint = constraints.UnitNorm(axis=0) if kind == "UnitNorm" else constraints.MaxNorm(1.0, axis=0)
    out = apply_constraint(constraint, x)
    spec = {"kind": kind, "max_value": 1.0} if kind == "MaxNorm" else {"kind": kind}
    reference = constraint_reference(spec, x, 0)
    assert_matches_reference(out, reference, x, 0, f"{kind} on {x.ravel()}")
    assert_positive_multiple(out, x, 0, reference)
    if scale > 1:
        np.testing.assert_allclose(out.ravel(), [0.6, 0.8], rtol=RTOL[dtype])


# --------------------------------------------------------------------------- 4. ops.norm


NORM_REGIMES = ("wide", "tiny", "huge", "mixed")


@FAST
@given(
    data=st.data(),
    dtype=DTYPES,
    regime=st.sampled_from(NORM_REGIMES),
    keepdims=st.booleans(),
)
def test_norm_matches_numpy_linalg_norm(data: Any, dtype: Any, regime: str, keepdims: bool) -> None:
    shape = data.draw(SHAPES, label="shape")
    axis = data.draw(st.one_of(st.none(), axis_for(len(shape))), label="axis")
    if regime in ("tiny", "huge"):
        x = data.draw(extreme_arrays(dtype, shape, regime))
    else:
        mixed = st.one_of(tiny(dtype), wide(dtype), huge(dtype))
        x = data.draw(hnp.arrays(dtype, shape, elements=wide(dtype) if regime == "wide" else mixed), label="x")
    single = isinstance(axis, int) or (isinstance(axis, list) and len(axis) == 1)
    order = data.draw(st.sampled_from([None, 2]) if single else st.none(), label="ord")
    got = ops.norm(tensor(x), ord=order, axis=axis, keepdims=keepdims)
    expected = numpy_norm(x, axis, keepdims)
    assert got.dtype == TORCH_DTYPE[dtype]
    assert tuple(got.shape) == np.shape(expected)
    np.testing.assert_allclose(
        as_numpy(got).astype(np.float64), expected, rtol=RTOL[dtype], atol=2 * SUB[dtype], err_msg=f"{regime} {axis}"
    )


@FAST
@given(
    dtype=DTYPES,
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=4, max_side=6),
    position=st.floats(0.0, 1.0),
    keepdims=st.booleans(),
)
def test_norm_accurate_when_every_square_is_subnormal(
    dtype: Any, shape: tuple[int, ...], position: float, keepdims: bool
) -> None:
    """A constant tensor whose squares are each subnormal but sum to a normal float.

    The value v is log-uniform in [sqrt(tiny / size), sqrt(tiny)): every v**2 is below
    the smallest normal float (so it keeps only a few significant bits) while
    size * v**2 is not, which is the case where a rescue keyed on the size of the
    *sum* does not trigger. The norm must still be sqrt(size) * v.
    """
    tiny_normal = float(np.finfo(dtype).tiny)
    size = int(np.prod(shape))
    low, high = np.log(np.sqrt(tiny_normal / size)), np.log(np.sqrt(tiny_normal))
    v = dtype(np.exp(low + position * (high - low)))
    assume(v > 0 and float(v) ** 2 < tiny_normal and size * float(v) ** 2 >= tiny_normal)
    x = np.full(shape, v, dtype=dtype)
    got = as_numpy(ops.norm(tensor(x), keepdims=keepdims)).astype(np.float64)
    np.testing.assert_allclose(got, numpy_norm(x, None, keepdims), rtol=RTOL[dtype], atol=0)
