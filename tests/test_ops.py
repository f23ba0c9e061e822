"""ops: Keras names and arguments over torch, checked against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightwise import backend, ops

RNG = np.random.default_rng(2)
A = RNG.normal(size=(3, 4)).astype(np.float32)
B = RNG.normal(size=(3, 4)).astype(np.float32)


def check(out: torch.Tensor, expected: np.ndarray, rtol: float = 1e-6) -> None:
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), expected, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize(
    "name, np_fn",
    [("absolute", np.abs), ("abs", np.abs), ("square", np.square), ("sign", np.sign), ("exp", np.exp),
     ("negative", np.negative)],
)
def test_unary_ops(name: str, np_fn) -> None:
    check(getattr(ops, name)(A), np_fn(A))


def test_sqrt_log_rsqrt_on_positive_inputs() -> None:
    pos = np.abs(A) + 0.1
    check(ops.sqrt(pos), np.sqrt(pos))
    check(ops.log(pos), np.log(pos))
    check(ops.rsqrt(pos), 1 / np.sqrt(pos), rtol=1e-5)
    assert ops.sqrt([4, 9]).dtype == torch.float32


@pytest.mark.parametrize(
    "name, np_fn",
    [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply), ("divide", np.divide),
     ("maximum", np.maximum), ("minimum", np.minimum), ("greater", np.greater), ("greater_equal", np.greater_equal),
     ("less", np.less), ("less_equal", np.less_equal), ("equal", np.equal), ("not_equal", np.not_equal)],
)
def test_binary_ops_with_arrays_and_scalars(name: str, np_fn) -> None:
    fn = getattr(ops, name)
    check(fn(A, B), np_fn(A, B))
    check(fn(A, 0.5), np_fn(A, np.float32(0.5)))
    check(fn(0.5, torch.from_numpy(B)), np_fn(np.float32(0.5), B))


def test_python_scalars_do_not_promote_tensors() -> None:
    x = torch.ones(2, dtype=torch.float64)
    assert ops.multiply(x, 0.5).dtype == torch.float64
    assert ops.add(torch.ones(2, dtype=torch.float16), 1.0).dtype == torch.float16
    assert ops.maximum(torch.ones(2, dtype=torch.float64), 0).dtype == torch.float64


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), [0]])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name, np_fn", [("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min)])
def test_reductions(name: str, np_fn, axis, keepdims: bool) -> None:
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    check(getattr(ops, name)(A, axis=axis, keepdims=keepdims), np_fn(A, axis=np_axis, keepdims=keepdims), rtol=1e-5)


def test_sum_of_a_list_of_scalar_tensors_as_in_layer_losses() -> None:
    losses = [torch.tensor(0.25), torch.tensor(5.0, requires_grad=True)]
    total = ops.sum(losses)
    assert total.item() == 5.25
    assert total.requires_grad
    assert ops.sum([]).item() == 0.0


def test_clip_where_and_divide_no_nan() -> None:
    check(ops.clip(A, -0.5, 0.5), np.clip(A, -0.5, 0.5))
    check(ops.where(A > 0, A, 0.0), np.where(A > 0, A, 0.0))
    (rows, cols) = ops.where(A > 0)
    np_rows, np_cols = np.where(A > 0)
    assert rows.tolist() == np_rows.tolist() and cols.tolist() == np_cols.tolist()
    with pytest.raises(ValueError, match="together"):
        ops.where(A > 0, A)
    out = ops.divide_no_nan([1.0, -2.0, 3.0], [2.0, 0.0, 0.0])
    assert out.tolist() == [0.5, 0.0, 0.0]
    assert ops.divide_no_nan([1, 2], [0, 4]).tolist() == [0.0, 0.5]


def test_matmul_dot_transpose_reshape() -> None:
    check(ops.matmul(A, B.T), A @ B.T, rtol=1e-5)
    check(ops.dot(A, B.T), np.dot(A, B.T), rtol=1e-5)
    c = RNG.normal(size=(2, 4, 5)).astype(np.float32)
    check(ops.dot(A, c), np.dot(A, c), rtol=1e-5)
    check(ops.dot(A, B[0]), np.dot(A, B[0]), rtol=1e-5)
    check(ops.dot(2.0, A), 2.0 * A)
    check(ops.transpose(c), np.transpose(c))
    check(ops.transpose(c, (1, 0, 2)), np.transpose(c, (1, 0, 2)))
    check(ops.reshape(A, (2, -1)), A.reshape(2, -1))
    assert ops.shape(ops.expand_dims(A, 1)) == (3, 1, 4)
    assert ops.shape(ops.squeeze(np.zeros((1, 3, 1)), axis=0)) == (3, 1)


def test_creation_ops_default_to_floatx() -> None:
    assert ops.ones((2, 3)).dtype == torch.float32
    assert ops.zeros(4).shape == (4,)
    check(ops.eye(3, 4, k=-1), np.eye(3, 4, k=-1, dtype=np.float32))
    assert ops.ones_like(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    assert ops.zeros_like(A, dtype="int32").dtype == torch.int32
    backend.set_floatx("float64")
    try:
        assert ops.ones(2).dtype == torch.float64
        assert ops.convert_to_tensor(1.5).dtype == torch.float64
    finally:
        backend.set_floatx("float32")


def test_convert_to_tensor_and_cast() -> None:
    assert ops.convert_to_tensor(1.0).dtype == torch.float32
    assert ops.convert_to_tensor(1).dtype == torch.int32
    assert ops.convert_to_tensor(2**40).dtype == torch.int64
    assert ops.convert_to_tensor(True).dtype == torch.bool
    assert ops.convert_to_tensor(np.ones(2, dtype=np.float64)).dtype == torch.float64
    t = torch.ones(2)
    assert ops.convert_to_tensor(t) is t
    assert ops.convert_to_tensor([[1, 2], [3, 4]], dtype="float64").dtype == torch.float64
    assert ops.cast([1.7, -1.7], "int32").tolist() == [1, -1]
    assert ops.cast(t, torch.float16).dtype == torch.float16
    assert ops.cast(t, np.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="dtype='float33'"):
        ops.cast(t, "float33")
    with pytest.raises(TypeError, match="cannot convert"):
        ops.convert_to_tensor({"a": 1})
    assert ops.is_tensor(t) and not ops.is_tensor(A)
    np.testing.assert_array_equal(ops.convert_to_numpy(torch.tensor([1.0, 2.0])), np.array([1.0, 2.0], np.float32))


def test_convert_to_tensor_copies_numpy_so_later_writes_do_not_leak() -> None:
    array = np.ones(3, dtype=np.float32)
    tensor = ops.convert_to_tensor(array)
    array[0] = 5.0
    assert tensor[0].item() == 1.0


def test_stop_gradient_cuts_the_graph() -> None:
    w = torch.ones(2, requires_grad=True)
    (ops.stop_gradient(w * 3) * w).sum().backward()
    assert w.grad.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("axis", [None, 0, 1, [0, 1]])
def test_norm_matches_numpy(axis) -> None:
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    expected = np.sqrt(np.square(A.astype(np.float64)).sum(axis=np_axis))
    check(ops.norm(A, axis=axis), expected, rtol=1e-6)
    check(ops.norm(A, ord=1, axis=0), np.linalg.norm(A, ord=1, axis=0), rtol=1e-6)


def test_norm_survives_over_and_underflow() -> None:
    assert ops.norm([3e30, 4e30]).item() == pytest.approx(5e30, rel=1e-6)
    assert ops.norm(np.array([3e-30, 4e-30], np.float32)).item() == pytest.approx(5e-30, rel=1e-5)
    assert ops.norm([0.0, 0.0]).item() == 0.0
    mixed = torch.tensor([[3e30, 1.0], [4e30, 0.0]])
    np.testing.assert_allclose(ops.norm(mixed, axis=0).numpy(), [5e30, 1.0], rtol=1e-6)


def test_normalize_matches_keras_formula() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]], np.float32)
    out = ops.normalize(x, axis=1)
    np.testing.assert_allclose(out.numpy(), [[0.6, 0.8], [0.0, 0.0], [1e-30 / 1e-7, 0.0]], rtol=1e-5)
    check(ops.normalize(A, axis=0, order=1), A / np.abs(A).sum(axis=0, keepdims=True))
    with pytest.raises(ValueError, match="order=0"):
        ops.normalize(A, order=0)


@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (2, 3, 5)])
def test_tril_and_triu_match_numpy(shape, k) -> None:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_array_equal(ops.tril(x, k=k).numpy(), np.tril(x, k=k))
    np.testing.assert_array_equal(ops.triu(x, k=k).numpy(), np.triu(x, k=k))


@pytest.mark.parametrize("fn", ["tril", "triu"])
def test_tril_and_triu_refuse_vectors_and_bad_k(fn) -> None:
    with pytest.raises(ValueError, match="rank 2"):
        getattr(ops, fn)([1.0, 2.0])
    with pytest.raises((TypeError, ValueError), match="k"):
        getattr(ops, fn)([[1.0]], k=0.5)


@pytest.mark.parametrize("repeats", [2, (2, 1), (1, 3), (2, 1, 2), [0, 1]])
def test_tile_matches_numpy(repeats) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(ops.tile(x, repeats).numpy(), np.tile(x, repeats))


def test_tile_refuses_negative_and_fractional_repeats() -> None:
    for bad in (-1, (1.5, 1), "2"):
        with pytest.raises(ValueError, match="repeats"):
            ops.tile([[1.0]], bad)


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_var_and_std_match_numpy(axis, keepdims) -> None:
    x = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(ops.var(x, axis=axis, keepdims=keepdims).numpy(),
                               np.var(x, axis=axis, keepdims=keepdims), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.std(x, axis=axis, keepdims=keepdims).numpy(),
                               np.std(x, axis=axis, keepdims=keepdims), rtol=1e-5, atol=1e-6)


def test_var_of_integers_is_float_and_bad_axis_is_refused() -> None:
    assert ops.var([1, 2, 3]).dtype == torch.float32
    with pytest.raises(ValueError, match="axis"):
        ops.std([[1.0]], axis=3)


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_any_and_all_match_numpy(axis, keepdims) -> None:
    x = np.array([[0, 1, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(ops.any(x, axis=axis, keepdims=keepdims).numpy(),
                                  np.any(x, axis=axis, keepdims=keepdims))
    np.testing.assert_array_equal(ops.all(x == 0, axis=axis, keepdims=keepdims).numpy(),
                                  np.all(x == 0, axis=axis, keepdims=keepdims))


def test_logical_ops_match_numpy_and_broadcast() -> None:
    a = np.array([[True, False, True]])
    b = np.array([[True], [False]])
    np.testing.assert_array_equal(ops.logical_and(a, b).numpy(), np.logical_and(a, b))
    np.testing.assert_array_equal(ops.logical_or(a, b).numpy(), np.logical_or(a, b))
    np.testing.assert_array_equal(ops.logical_not([0.0, 2.0]).numpy(), np.logical_not([0.0, 2.0]))
    assert ops.logical_or([1.0, 0.0], 0).dtype == torch.bool


def test_new_ops_record_keras_operations_in_a_functional_graph() -> None:
    from weightwise import layers

    x = layers.Input(shape=(3, 3))
    for fn, cls in [(lambda t: ops.any(t, axis=-1), "Any"), (lambda t: ops.tril(t), "Tril"),
                    (lambda t: ops.logical_or(t, t), "LogicalOr"), (lambda t: ops.std(t, axis=1), "Std"),
                    (lambda t: ops.tile(t, (1, 2, 1)), "Tile")]:
        assert fn(x).node.layer.class_name == cls
