"""Regularizers: formulas against NumPy, argument validation, dtypes, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import run_class_serialization_test

from weightwise import ops, regularizers
from weightwise.regularizers import L1, L1L2, L2, OrthogonalRegularizer, Regularizer

RNG = np.random.default_rng(0)


def np_l1(x: np.ndarray, factor: float) -> float:
    return factor * np.abs(x).sum()


def np_l2(x: np.ndarray, factor: float) -> float:
    return factor * np.square(x).sum()


def np_orthogonal(x: np.ndarray, factor: float, mode: str) -> float:
    vectors = x if mode == "rows" else x.T
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    product = unit @ unit.T
    n = product.shape[0]
    off = np.abs(product * (1 - np.eye(n))).sum()
    return factor * 0.5 * off / (n * (n - 1) / 2)


SHAPES = [(7,), (4, 5), (3, 3, 4, 8)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l1_l2_l1l2_match_numpy(shape: tuple[int, ...], dtype: type) -> None:
    x = RNG.normal(size=shape).astype(dtype)
    t = torch.from_numpy(x)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(L1(0.3)(t).item(), np_l1(x.astype(np.float64), 0.3), rtol=rtol)
    np.testing.assert_allclose(L2(0.1)(t).item(), np_l2(x.astype(np.float64), 0.1), rtol=rtol)
    both = L1L2(l1=0.3, l2=0.1)(t).item()
    np.testing.assert_allclose(both, np_l1(x.astype(np.float64), 0.3) + np_l2(x.astype(np.float64), 0.1), rtol=rtol)
    for reg in (L1(0.3), L2(0.1), L1L2(0.3, 0.1)):
        out = reg(t)
        assert out.shape == ()
        assert out.dtype == t.dtype


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("shape", [(2, 2), (5, 3), (3, 7), (6, 6)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal_matches_numpy(mode: str, shape: tuple[int, int], dtype: type) -> None:
    x = RNG.normal(size=shape).astype(dtype)
    out = OrthogonalRegularizer(factor=0.2, mode=mode)(torch.from_numpy(x))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.item(), np_orthogonal(x.astype(np.float64), 0.2, mode), rtol=rtol)
    assert out.dtype == torch.from_numpy(x).dtype


def test_orthogonal_zero_for_orthogonal_rows_and_zero_rows_are_ignored() -> None:
    x = torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert OrthogonalRegularizer(1.0)(x).item() == 0.0


def test_orthogonal_single_vector_is_finite_zero() -> None:
    for shape, mode in [((1, 4), "rows"), ((4, 1), "columns"), ((1, 1), "rows")]:
        out = OrthogonalRegularizer(mode=mode)(torch.ones(shape))
        assert torch.isfinite(out) and out.item() == 0.0


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2), ()])
def test_orthogonal_rejects_non_matrices_in_keras_words(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"Inputs to OrthogonalRegularizer must have rank 2. Received: inputs.shape="):
        OrthogonalRegularizer()(torch.ones(shape))


def test_orthogonal_rejects_bad_mode_in_keras_words() -> None:
    with pytest.raises(ValueError) as info:
        OrthogonalRegularizer(mode="diag")
    assert str(info.value) == (
        'Invalid value for argument `mode`. Expected one of {"rows", "columns"}. Received: mode=diag'
    )


def test_seed_direct_call_and_l1l2_skips_zero_terms() -> None:
    assert L2(2.0)(ops.ones(shape=(5, 5))).item() == 50.0
    # A zero factor skips its term: only 0.5 * 2**2 remains.
    assert L1L2(l1=0.0, l2=0.5)(torch.tensor([2.0])).item() == 2.0
    assert L1L2()(torch.tensor([5.0])).item() == 0.0


@pytest.mark.parametrize("cls, arg", [(L1, "l1"), (L2, "l2"), (L1L2, "l1"), (L1L2, "l2"), (OrthogonalRegularizer, "factor")])
@pytest.mark.parametrize("bad", [-0.1, -1, float("nan"), float("inf"), -float("inf"), True, False, "0.1", [0.1], 1j])
def test_invalid_factors_are_rejected_naming_argument_and_value(cls: type, arg: str, bad: object) -> None:
    with pytest.raises(ValueError) as info:
        cls(**{arg: bad})
    message = str(info.value)
    assert f"`{arg}`" in message
    assert f"{arg}={bad!r}" in message


@pytest.mark.parametrize("cls, arg, default", [(L1, "l1", 0.01), (L2, "l2", 0.01), (L1L2, "l1", 0.0), (L1L2, "l2", 0.0)])
def test_none_means_default(cls: type, arg: str, default: float) -> None:
    assert getattr(cls(**{arg: None}), arg) == default


def test_factors_are_stored_as_the_python_floats_given() -> None:
    assert L1(0.01).get_config() == {"l1": 0.01}
    assert L2(1e-4).get_config() == {"l2": 1e-4}
    assert L1L2(l1=1e-5, l2=1e-4).get_config() == {"l1": 1e-5, "l2": 1e-4}
    assert OrthogonalRegularizer().get_config() == {"factor": 0.01, "mode": "rows"}
    assert type(L1(1).l1) is float
    assert type(L2(np.float32(0.5)).l2) is float


def test_half_precision_accumulates_in_float32() -> None:
    # 300 ** 2 * 4 overflows float16 (max 65504); the float32 penalty does not.
    x = torch.full((4,), 300.0, dtype=torch.float16)
    out = L2(1.0)(x)
    assert out.dtype == torch.float32
    assert out.item() == 360000.0
    assert L1(1.0)(x.to(torch.bfloat16)).dtype == torch.float32


def test_integer_and_numpy_and_list_inputs() -> None:
    assert L1(0.5)(np.array([1, -2, 3])).item() == 3.0
    assert L2(1.0)([1.0, 2.0]).item() == 5.0
    assert L1(1.0)(torch.tensor([1, -1])).dtype == torch.float32


def test_gradients_match_analytic_forms() -> None:
    x = torch.tensor([[0.5, -2.0], [3.0, -0.25]], dtype=torch.float64, requires_grad=True)
    (L1L2(l1=0.3, l2=0.1)(x)).backward()
    expected = 0.3 * torch.sign(x.detach()) + 0.2 * x.detach()
    torch.testing.assert_close(x.grad, expected)


def test_base_regularizer_is_zero_and_has_no_config() -> None:
    assert Regularizer()(torch.ones(3)).item() == 0.0
    with pytest.raises(NotImplementedError, match="get_config"):
        Regularizer().get_config()


def test_subclass_without_get_config_cannot_be_serialized_but_still_works() -> None:
    class MyRegularizer(Regularizer):
        def __init__(self, strength: float) -> None:
            self.strength = strength

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return self.strength * ops.sum(ops.square(x))

    reg = MyRegularizer(0.5)
    assert reg(torch.ones(2)).item() == 1.0
    with pytest.raises(NotImplementedError, match="MyRegularizer does not implement get_config"):
        regularizers.serialize(reg)


@pytest.mark.parametrize(
    "obj",
    [L1(0.3), L2(0.1), L1L2(l1=1e-5, l2=1e-4), L1L2(), OrthogonalRegularizer(0.2, "columns"), OrthogonalRegularizer()],
    ids=repr,
)
def test_config_round_trips(obj: Regularizer) -> None:
    rebuilt = run_class_serialization_test(obj, regularizers)
    x = torch.from_numpy(RNG.normal(size=(4, 3)))
    assert rebuilt(x).item() == obj(x).item()


@pytest.mark.parametrize(
    "identifier, cls, config",
    [
        ("l1", L1, {"l1": 0.01}),
        ("L1", L1, {"l1": 0.01}),
        ("l2", L2, {"l2": 0.01}),
        ("L2", L2, {"l2": 0.01}),
        ("l1_l2", L1L2, {"l1": 0.01, "l2": 0.01}),
        ("l1l2", L1L2, {"l1": 0.0, "l2": 0.0}),
        ("L1L2", L1L2, {"l1": 0.0, "l2": 0.0}),
        ("orthogonal_regularizer", OrthogonalRegularizer, {"factor": 0.01, "mode": "rows"}),
        ("OrthogonalRegularizer", OrthogonalRegularizer, {"factor": 0.01, "mode": "rows"}),
    ],
)
def test_string_ids(identifier: str, cls: type, config: dict) -> None:
    obj = regularizers.get(identifier)
    assert type(obj) is cls
    assert obj.get_config() == config


def test_get_passes_callables_through_and_instantiates_classes() -> None:
    def my_regularizer(x: torch.Tensor) -> torch.Tensor:
        return 1e-3 * ops.sum(ops.square(x))

    assert regularizers.get(my_regularizer) is my_regularizer
    reg = L2(0.5)
    assert regularizers.get(reg) is reg
    assert type(regularizers.get(L1)) is L1
    assert regularizers.get(None) is None


@pytest.mark.parametrize("bad", [42, 1.5, True, ["l1"], object()])
def test_get_rejects_non_identifiers(bad: object) -> None:
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier"):
        regularizers.get(bad)


def test_unknown_string_names_it_and_says_how_to_register() -> None:
    with pytest.raises(ValueError) as info:
        regularizers.get("l3")
    message = str(info.value)
    assert "'l3'" in message
    assert "register_keras_serializable" in message
    assert "custom_objects" in message


def test_l1_l2_shortcut_defaults_follow_the_docs() -> None:
    assert regularizers.l1_l2().get_config() == {"l1": 0.01, "l2": 0.01}
    assert regularizers.l1 is L1 and regularizers.l2 is L2
    assert regularizers.orthogonal_regularizer is OrthogonalRegularizer


def test_penalty_keeps_device_and_is_a_scalar_tensor() -> None:
    x = torch.ones(3, 3)
    for reg in (L1(), L2(), L1L2(0.1, 0.1), OrthogonalRegularizer()):
        out = reg(x)
        assert isinstance(out, torch.Tensor) and out.device == x.device and out.dim() == 0
        assert math.isfinite(out.item())
