"""Constraints: formulas against NumPy, axes, purity, validation, configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import run_class_serialization_test

from weightwise import backend, constraints, ops
from weightwise.constraints import Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm

RNG = np.random.default_rng(1)
EPS = 1e-7


def np_norms(w: np.ndarray, axis: int | list[int]) -> np.ndarray:
    axes = tuple(axis) if isinstance(axis, list) else axis
    return np.sqrt(np.square(w).sum(axis=axes, keepdims=True))


def np_max_norm(w: np.ndarray, max_value: float, axis: int | list[int]) -> np.ndarray:
    n = np_norms(w, axis)
    return w * (np.clip(n, 0, max_value) / (EPS + n))


def np_unit_norm(w: np.ndarray, axis: int | list[int]) -> np.ndarray:
    return w / (EPS + np_norms(w, axis))


def np_min_max_norm(w: np.ndarray, lo: float, hi: float, rate: float, axis: int | list[int]) -> np.ndarray:
    n = np_norms(w, axis)
    desired = rate * np.clip(n, lo, hi) + (1 - rate) * n
    return w * (desired / (EPS + n))


CASES = [
    ((6, 4), 0),
    ((6, 4), 1),
    ((6, 4), -1),
    ((6, 4), [0, 1]),
    ((3, 4, 8), [0, 1]),
    ((3, 3, 4, 8), [0, 1, 2]),
    ((2, 2, 2, 3, 4), [0, 1, 2, 3]),
]


@pytest.mark.parametrize("shape, axis", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_constraints_match_numpy(shape: tuple[int, ...], axis: int | list[int], dtype: type) -> None:
    w = (RNG.normal(size=shape) * 2).astype(dtype)
    ref = w.astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    pairs = [
        (MaxNorm(1.5, axis=axis), np_max_norm(ref, 1.5, axis)),
        (UnitNorm(axis=axis), np_unit_norm(ref, axis)),
        (MinMaxNorm(0.5, 1.0, 1.0, axis=axis), np_min_max_norm(ref, 0.5, 1.0, 1.0, axis)),
        (MinMaxNorm(2.0, 3.0, 0.3, axis=axis), np_min_max_norm(ref, 2.0, 3.0, 0.3, axis)),
    ]
    t = torch.from_numpy(w)
    for constraint, expected in pairs:
        out = constraint(t)
        assert out.shape == t.shape and out.dtype == t.dtype
        np.testing.assert_allclose(out.numpy(), expected, rtol=rtol, atol=1e-7, err_msg=repr(constraint))


def test_seed_conv2d_axis_constrains_each_filter() -> None:
    kernel = torch.from_numpy(RNG.normal(size=(3, 3, 4, 8)) * 3)
    out = MaxNorm(2.0, axis=[0, 1, 2])(kernel)
    per_filter = out.pow(2).sum(dim=(0, 1, 2)).sqrt()
    assert per_filter.shape == (8,)
    assert torch.all(per_filter <= 2.0 + 1e-6)


def test_dense_axis0_constrains_each_unit() -> None:
    kernel = torch.tensor([[3.0, 0.1], [4.0, 0.2]])
    out = MaxNorm(1.0, axis=0)(kernel)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.6, 0.8]))
    # The second unit's norm is within the bound, so it is unchanged up to epsilon.
    torch.testing.assert_close(out[:, 1], kernel[:, 1], rtol=1e-6, atol=0)


def test_nonneg_gives_positive_zero_and_keeps_nan() -> None:
    out = NonNeg()(torch.tensor([-0.0, -2.0, 0.0, 3.0, float("nan")]))
    assert out[:4].tolist() == [0.0, 0.0, 0.0, 3.0]
    assert not np.signbit(out[:4].numpy()).any()
    assert torch.isnan(out[4])
    assert NonNeg()(torch.tensor([-1, 2])).tolist() == [0, 2]


def test_zero_vectors_stay_zero_without_nan() -> None:
    w = torch.zeros(4, 3)
    for constraint in (MaxNorm(), UnitNorm(), MinMaxNorm(), MinMaxNorm(1.0, 2.0), NonNeg()):
        out = constraint(w)
        assert torch.equal(out, w), repr(constraint)


@pytest.mark.parametrize("constraint", [MaxNorm(1.0), UnitNorm(), MinMaxNorm(0.5, 1.0), NonNeg(), Constraint()], ids=repr)
def test_constraints_never_mutate_their_input(constraint: Constraint) -> None:
    w = torch.from_numpy(RNG.normal(size=(5, 4)) * 3)
    before = w.clone()
    constraint(w)
    assert torch.equal(w, before)


def test_half_precision_is_projected_in_float32_and_cast_back() -> None:
    w = torch.full((4, 1), 300.0, dtype=torch.float16)  # 300**2 overflows float16
    out = UnitNorm()(w)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.full((4, 1), 0.5), rtol=1e-3, atol=0)
    assert MaxNorm(1.0)(w.to(torch.bfloat16)).dtype == torch.bfloat16


def test_huge_and_tiny_vectors_keep_a_correct_norm() -> None:
    huge = torch.tensor([[3e30], [4e30]])
    torch.testing.assert_close(UnitNorm()(huge), torch.tensor([[0.6], [0.8]]))
    torch.testing.assert_close(MaxNorm(1.0)(huge), torch.tensor([[0.6], [0.8]]))
    torch.testing.assert_close(MinMaxNorm(1.0, 2.0, rate=0.5)(huge).isfinite(), torch.ones(2, 1, dtype=torch.bool))
    tiny = torch.tensor([[3e-30], [4e-30]])
    # A vector far inside the bound is left as it is.
    torch.testing.assert_close(MaxNorm(1.0)(tiny), tiny)


def test_epsilon_setting_is_used() -> None:
    w = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    old = backend.epsilon()
    try:
        backend.set_epsilon(0.5)
        assert UnitNorm()(w)[0, 0].item() == pytest.approx(1 / 1.5)
    finally:
        backend.set_epsilon(old)
    assert UnitNorm()(w)[0, 0].item() == pytest.approx(1 / (1 + 1e-7))


@pytest.mark.parametrize(
    "make, arg, value",
    [
        (lambda v: MaxNorm(max_value=v), "max_value", -1),
        (lambda v: MaxNorm(max_value=v), "max_value", float("nan")),
        (lambda v: MaxNorm(max_value=v), "max_value", True),
        (lambda v: MaxNorm(max_value=v), "max_value", "2"),
        (lambda v: MinMaxNorm(min_value=v), "min_value", -0.5),
        (lambda v: MinMaxNorm(max_value=v), "max_value", None),
        (lambda v: MinMaxNorm(rate=v), "rate", 1.5),
        (lambda v: MinMaxNorm(rate=v), "rate", -0.1),
        (lambda v: MinMaxNorm(rate=v), "rate", float("nan")),
        (lambda v: MinMaxNorm(rate=v), "rate", True),
        (lambda v: MaxNorm(axis=v), "axis", "0"),
        (lambda v: UnitNorm(axis=v), "axis", 1.0),
        (lambda v: UnitNorm(axis=v), "axis", [0, 0]),
        (lambda v: MinMaxNorm(axis=v), "axis", [0, True]),
    ],
)
def test_invalid_arguments_are_rejected_naming_them(make, arg: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        make(value)
    assert f"`{arg}`" in str(info.value)
    assert repr(value) in str(info.value)


def test_min_above_max_is_rejected_with_both_values() -> None:
    with pytest.raises(ValueError, match=r"min_value=2.0, max_value=1.0"):
        MinMaxNorm(min_value=2.0, max_value=1.0)


@pytest.mark.parametrize("axis", [2, -3, [0, 2], [0, -2]])
def test_axis_out_of_range_or_repeated_for_the_weight(axis: int | list[int]) -> None:
    with pytest.raises(ValueError, match=r"MaxNorm: `axis`="):
        MaxNorm(axis=axis)(torch.ones(3, 4))


def test_axis_none_uses_the_whole_tensor() -> None:
    w = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    torch.testing.assert_close(UnitNorm(axis=None)(w), w / (5 + 1e-7))


def test_seed_custom_constraints() -> None:
    class NonNegative(Constraint):
        def __call__(self, w):
            return w * ops.cast(ops.greater_equal(w, 0.0), dtype=w.dtype)

    weight = ops.convert_to_tensor((-1.0, 1.0))
    assert NonNegative()(weight).tolist() == [0.0, 1.0]

    class CenterAround(Constraint):
        def __init__(self, ref_value):
            self.ref_value = ref_value

        def __call__(self, w):
            mean = ops.mean(w)
            return w - mean + self.ref_value

        def get_config(self):
            return {"ref_value": self.ref_value}

    rebuilt = CenterAround.from_config(CenterAround(1.0).get_config())
    out = rebuilt(torch.tensor([1.0, 2.0, 6.0]))
    assert ops.mean(out).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "obj",
    [MaxNorm(3.0, axis=[0, 1, 2]), MaxNorm(), NonNeg(), UnitNorm(axis=1), MinMaxNorm(0.5, 2.0, 0.7, axis=[0, 1]), Constraint()],
    ids=repr,
)
def test_config_round_trips(obj: Constraint) -> None:
    rebuilt = run_class_serialization_test(obj, constraints)
    w = torch.from_numpy(RNG.normal(size=(3, 3, 4, 2)))
    assert torch.equal(rebuilt(w), obj(w))


def test_tuple_axis_is_stored_as_a_list() -> None:
    assert MaxNorm(axis=(0, 1)).get_config()["axis"] == [0, 1]


@pytest.mark.parametrize(
    "identifier, cls",
    [("max_norm", MaxNorm), ("MaxNorm", MaxNorm), ("non_neg", NonNeg), ("NonNeg", NonNeg), ("unit_norm", UnitNorm),
     ("UnitNorm", UnitNorm), ("min_max_norm", MinMaxNorm), ("MinMaxNorm", MinMaxNorm)],
)
def test_string_ids(identifier: str, cls: type) -> None:
    obj = constraints.get(identifier)
    assert type(obj) is cls
    assert obj.get_config() == cls().get_config()


def test_aliases_and_get() -> None:
    assert constraints.max_norm is MaxNorm and constraints.non_neg is NonNeg
    assert constraints.unit_norm is UnitNorm and constraints.min_max_norm is MinMaxNorm
    assert constraints.get(None) is None
    clip = lambda w: w.clamp(-1, 1)  # noqa: E731
    assert constraints.get(clip) is clip
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 123"):
        constraints.get(123)
    with pytest.raises(ValueError, match="Unknown constraint: 'l2'"):
        constraints.get("l2")
