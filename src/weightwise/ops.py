"""Keras-named tensor functions over torch, for writing regularizers and constraints.

Every function takes tensors, numpy arrays, Python scalars or (nested) sequences,
and returns ``torch.Tensor``. Argument names follow Keras (``axis``, ``keepdims``,
``dtype``), so a custom regularizer written against ``keras.ops`` runs unchanged.

>>> x = convert_to_tensor([[1.0, -2.0], [3.0, -4.0]])
>>> sum(absolute(x))
tensor(10.)
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

from weightwise import backend

__all__ = [
    "abs",
    "absolute",
    "add",
    "cast",
    "clip",
    "convert_to_numpy",
    "convert_to_tensor",
    "divide",
    "divide_no_nan",
    "dot",
    "equal",
    "exp",
    "expand_dims",
    "eye",
    "greater",
    "greater_equal",
    "is_tensor",
    "less",
    "less_equal",
    "log",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "multiply",
    "negative",
    "norm",
    "normalize",
    "not_equal",
    "ones",
    "ones_like",
    "power",
    "reshape",
    "rsqrt",
    "shape",
    "sign",
    "sqrt",
    "square",
    "squeeze",
    "stop_gradient",
    "subtract",
    "sum",
    "transpose",
    "where",
    "zeros",
    "zeros_like",
]

TensorLike = Union[torch.Tensor, np.ndarray, float, int, bool, Sequence[Any]]
Axis = Union[int, Sequence[int], None]


def _contains_tensor(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return True
    if isinstance(x, (list, tuple)):
        return builtins.any(_contains_tensor(item) for item in x)
    return False


def convert_to_tensor(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Convert ``x`` to a ``torch.Tensor``, optionally casting to ``dtype``.

    Python floats become :func:`weightwise.backend.floatx`, Python ints ``int32``
    (as in Keras); numpy arrays keep their dtype. A sequence of tensors, such as
    ``layer.losses``, is stacked.

    >>> convert_to_tensor([1.0, 2.0])
    tensor([1., 2.])
    >>> convert_to_tensor(3).dtype
    torch.int32
    >>> convert_to_tensor([convert_to_tensor(1.0), convert_to_tensor(2.0)])
    tensor([1., 2.])
    """
    target = None if dtype is None else backend.standardize_dtype(dtype)
    if isinstance(x, torch.Tensor):
        return x if target is None or x.dtype == target else x.to(target)
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        tensor = torch.from_numpy(np.array(x, copy=True))
    elif isinstance(x, (list, tuple)) and _contains_tensor(x):
        tensor = torch.stack([convert_to_tensor(item) for item in x])
    else:
        probe = np.asarray(x)
        if probe.dtype == object:
            raise TypeError(f"Invalid value for argument `x`: cannot convert to a tensor. Received: x={x!r}")
        if probe.dtype.kind in "iu" and probe.dtype.itemsize > 4 and _fits_int32(probe):
            probe = probe.astype(np.int32)
        tensor = torch.from_numpy(np.array(probe, order="C"))
        if tensor.is_floating_point():
            # A Python float is a double; one rounding to floatx, as Keras does.
            tensor = tensor.to(backend.standardize_dtype(None))
    return tensor if target is None else tensor.to(target)


def _fits_int32(array: np.ndarray) -> bool:
    info = np.iinfo(np.int32)
    return array.size == 0 or (int(array.min()) >= info.min and int(array.max()) <= info.max)


def convert_to_numpy(x: TensorLike) -> np.ndarray:
    """Return ``x`` as a numpy array: a copy, detached and moved to the CPU.

    As in Keras, the array never shares memory with a tensor, so a snapshot such as
    ``w = layer.get_weights()`` does not change when the weights train on.

    >>> weight = ones((2,))
    >>> array = convert_to_numpy(weight)
    >>> _ = weight.add_(1.0)
    >>> array
    array([1., 1.], dtype=float32)
    """
    tensor = convert_to_tensor(x)
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    array = tensor.detach().cpu().numpy()
    # .cpu() copies only from another device; on the CPU, .numpy() is a view.
    return array.copy() if tensor.device.type == "cpu" else array


def is_tensor(x: Any) -> bool:
    """Return whether ``x`` is a ``torch.Tensor``.

    >>> is_tensor(ones(()))
    True
    >>> is_tensor(1.0)
    False
    """
    return isinstance(x, torch.Tensor)


def cast(x: TensorLike, dtype: Any) -> torch.Tensor:
    """Cast ``x`` to ``dtype`` (a string, numpy or torch dtype).

    >>> cast([1.7, -1.7], "int32")
    tensor([ 1, -1], dtype=torch.int32)
    """
    return convert_to_tensor(x).to(backend.standardize_dtype(dtype))


def shape(x: TensorLike) -> tuple[int, ...]:
    """Return the shape of ``x`` as a tuple of ints.

    >>> shape(zeros((2, 3)))
    (2, 3)
    """
    return tuple(convert_to_tensor(x).shape)


def _shape_arg(shape: int | Sequence[int]) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)


def ones(shape: int | Sequence[int], dtype: Any = None) -> torch.Tensor:
    """Return a tensor of ones, of ``dtype`` (default :func:`~weightwise.backend.floatx`).

    >>> ones((2, 2))
    tensor([[1., 1.],
            [1., 1.]])
    """
    return torch.ones(_shape_arg(shape), dtype=backend.standardize_dtype(dtype))


def zeros(shape: int | Sequence[int], dtype: Any = None) -> torch.Tensor:
    """Return a tensor of zeros, of ``dtype`` (default :func:`~weightwise.backend.floatx`).

    >>> zeros(3)
    tensor([0., 0., 0.])
    """
    return torch.zeros(_shape_arg(shape), dtype=backend.standardize_dtype(dtype))


def ones_like(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Return ones with the shape (and, unless given, the dtype) of ``x``.

    >>> ones_like(zeros((2,), dtype="float64"))
    tensor([1., 1.], dtype=torch.float64)
    """
    x = convert_to_tensor(x)
    return torch.ones_like(x, dtype=None if dtype is None else backend.standardize_dtype(dtype))


def zeros_like(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Return zeros with the shape (and, unless given, the dtype) of ``x``.

    >>> zeros_like([1.0, 2.0])
    tensor([0., 0.])
    """
    x = convert_to_tensor(x)
    return torch.zeros_like(x, dtype=None if dtype is None else backend.standardize_dtype(dtype))


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None) -> torch.Tensor:
    """Return an ``N x M`` matrix with ones on the ``k``-th diagonal.

    >>> eye(2)
    tensor([[1., 0.],
            [0., 1.]])
    >>> eye(2, 3, k=1)
    tensor([[0., 1., 0.],
            [0., 0., 1.]])
    """
    M = N if M is None else M
    out = torch.ones((N, M), dtype=backend.standardize_dtype(dtype))
    return torch.triu(torch.tril(out, diagonal=k), diagonal=k)


def _dims(axis: Axis) -> int | tuple[int, ...] | None:
    if axis is None or isinstance(axis, int):
        return axis
    return tuple(int(a) for a in axis)


def sum(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Sum of ``x`` over ``axis`` (all axes when ``None``).

    A list of scalar tensors, such as ``layer.losses``, is summed too; an empty
    list sums to ``0.0``.

    >>> sum([[1.0, 2.0], [3.0, 4.0]], axis=0)
    tensor([4., 6.])
    >>> sum([convert_to_tensor(0.25), convert_to_tensor(5.0)])
    tensor(5.2500)
    """
    if isinstance(x, (list, tuple)) and len(x) == 0:
        return torch.zeros((), dtype=backend.standardize_dtype(None))
    x = convert_to_tensor(x)
    dims = _dims(axis)
    if dims is None:
        out = torch.sum(x)
        return out.reshape((1,) * x.dim()) if keepdims else out
    return torch.sum(x, dim=dims, keepdim=keepdims)


def mean(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Mean of ``x`` over ``axis`` (all axes when ``None``); integers average as floats.

    >>> mean([1.0, 2.0, 6.0])
    tensor(3.)
    """
    x = convert_to_tensor(x)
    if not x.is_floating_point():
        x = x.to(backend.standardize_dtype(None))
    dims = _dims(axis)
    if dims is None:
        out = torch.mean(x)
        return out.reshape((1,) * x.dim()) if keepdims else out
    return torch.mean(x, dim=dims, keepdim=keepdims)


def max(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Maximum of ``x`` over ``axis`` (all axes when ``None``).

    >>> max([[1.0, 5.0], [3.0, 2.0]], axis=1)
    tensor([5., 3.])
    """
    x = convert_to_tensor(x)
    dims = _dims(axis)
    return torch.amax(x, dim=() if dims is None else dims, keepdim=keepdims)


def min(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Minimum of ``x`` over ``axis`` (all axes when ``None``).

    >>> min([[1.0, 5.0], [3.0, 2.0]])
    tensor(1.)
    """
    x = convert_to_tensor(x)
    dims = _dims(axis)
    return torch.amin(x, dim=() if dims is None else dims, keepdim=keepdims)


def absolute(x: TensorLike) -> torch.Tensor:
    """Elementwise ``|x|``.

    >>> absolute([-1.5, 2.0])
    tensor([1.5000, 2.0000])
    """
    return torch.abs(convert_to_tensor(x))


abs = absolute


def square(x: TensorLike) -> torch.Tensor:
    """Elementwise ``x ** 2``.

    >>> square([-3.0, 2.0])
    tensor([9., 4.])
    """
    x = convert_to_tensor(x)
    return x * x


def _float(x: TensorLike) -> torch.Tensor:
    x = convert_to_tensor(x)
    return x if x.is_floating_point() or x.is_complex() else x.to(backend.standardize_dtype(None))


def sqrt(x: TensorLike) -> torch.Tensor:
    """Elementwise square root; integers are promoted to floats.

    >>> sqrt([4.0, 9.0])
    tensor([2., 3.])
    """
    return torch.sqrt(_float(x))


def rsqrt(x: TensorLike) -> torch.Tensor:
    """Elementwise ``1 / sqrt(x)``.

    >>> rsqrt([4.0])
    tensor([0.5000])
    """
    return torch.rsqrt(_float(x))


def exp(x: TensorLike) -> torch.Tensor:
    """Elementwise ``e ** x``.

    >>> exp([0.0])
    tensor([1.])
    """
    return torch.exp(_float(x))


def log(x: TensorLike) -> torch.Tensor:
    """Elementwise natural logarithm.

    >>> log([1.0])
    tensor([0.])
    """
    return torch.log(_float(x))


def sign(x: TensorLike) -> torch.Tensor:
    """Elementwise sign: -1, 0 or 1.

    >>> sign([-2.0, 0.0, 3.0])
    tensor([-1.,  0.,  1.])
    """
    return torch.sign(convert_to_tensor(x))


def negative(x: TensorLike) -> torch.Tensor:
    """Elementwise ``-x``.

    >>> negative([1.0, -2.0])
    tensor([-1.,  2.])
    """
    return torch.neg(convert_to_tensor(x))


def _operand(x: Any) -> torch.Tensor | float | int | bool:
    # Python scalars stay scalars so that torch treats them as weakly typed, as Keras does.
    return x if isinstance(x, (bool, int, float)) else convert_to_tensor(x)


def _binary(fn: Any, x1: Any, x2: Any) -> torch.Tensor:
    a, b = _operand(x1), _operand(x2)
    if not isinstance(a, torch.Tensor):
        # A 0-d tensor from a Python scalar promotes like a weak scalar: an int tensor
        # meeting 0.5 becomes float, a float64 tensor stays float64.
        a = torch.as_tensor(a, device=b.device) if isinstance(b, torch.Tensor) else convert_to_tensor(a)
    return fn(a, b)


def clip(x: TensorLike, x_min: Any, x_max: Any) -> torch.Tensor:
    """Clip ``x`` elementwise to ``[x_min, x_max]``.

    >>> clip([-1.0, 0.5, 3.0], 0.0, 1.0)
    tensor([0.0000, 0.5000, 1.0000])
    """
    x = convert_to_tensor(x)
    lo = x_min if isinstance(x_min, (int, float)) else convert_to_tensor(x_min)
    hi = x_max if isinstance(x_max, (int, float)) else convert_to_tensor(x_max)
    return torch.clamp(x, lo, hi)


def maximum(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise maximum, with broadcasting.

    >>> maximum([1.0, 4.0], 2.0)
    tensor([2., 4.])
    """
    return _binary(lambda a, b: torch.maximum(a, _as_tensor_like(b, a)), x1, x2)


def minimum(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise minimum, with broadcasting.

    >>> minimum([1.0, 4.0], 2.0)
    tensor([1., 2.])
    """
    return _binary(lambda a, b: torch.minimum(a, _as_tensor_like(b, a)), x1, x2)


def _as_tensor_like(value: Any, other: torch.Tensor) -> torch.Tensor:
    # torch.maximum/minimum take no Python scalars; a 0-d tensor keeps weak-scalar promotion.
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, device=other.device)


def greater(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 > x2``.

    >>> greater([1.0, 3.0], 2.0)
    tensor([False,  True])
    """
    return _binary(torch.gt, x1, x2)


def greater_equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 >= x2``.

    >>> greater_equal([1.0, 2.0], 2.0)
    tensor([False,  True])
    """
    return _binary(torch.ge, x1, x2)


def less(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 < x2``.

    >>> less([1.0, 3.0], 2.0)
    tensor([ True, False])
    """
    return _binary(torch.lt, x1, x2)


def less_equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 <= x2``.

    >>> less_equal([2.0, 3.0], 2.0)
    tensor([ True, False])
    """
    return _binary(torch.le, x1, x2)


def equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 == x2``.

    >>> equal([1.0, 2.0], 2.0)
    tensor([False,  True])
    """
    return _binary(torch.eq, x1, x2)


def not_equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 != x2``.

    >>> not_equal([1.0, 2.0], 2.0)
    tensor([ True, False])
    """
    return _binary(torch.ne, x1, x2)


def where(condition: TensorLike, x1: Any = None, x2: Any = None) -> Any:
    """Pick ``x1`` where ``condition`` holds, else ``x2``.

    With only ``condition``, return the indices of its non-zero elements, one
    tensor per axis, as numpy's ``where`` does.

    >>> where([True, False], [1.0, 2.0], 0.0)
    tensor([1., 0.])
    >>> where([0, 3, 5])
    (tensor([1, 2]),)
    """
    cond = convert_to_tensor(condition)
    if x1 is None and x2 is None:
        return torch.nonzero(cond, as_tuple=True)
    if x1 is None or x2 is None:
        raise ValueError(f"`x1` and `x2` must be given together, or neither. Received: x1={x1!r}, x2={x2!r}")
    a, b = _operand(x1), _operand(x2)
    return torch.where(cond.to(torch.bool), a, b)


def add(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 + x2``, with broadcasting.

    >>> add([1.0, 2.0], 1.0)
    tensor([2., 3.])
    """
    return _binary(torch.add, x1, x2)


def subtract(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 - x2``, with broadcasting.

    >>> subtract([1.0, 2.0], 1.0)
    tensor([0., 1.])
    """
    return _binary(torch.sub, x1, x2)


def multiply(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 * x2``, with broadcasting.

    >>> multiply([1.0, 2.0], [3.0, 4.0])
    tensor([3., 8.])
    """
    return _binary(torch.mul, x1, x2)


def divide(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise true division ``x1 / x2``.

    >>> divide([1.0, 3.0], 2.0)
    tensor([0.5000, 1.5000])
    """
    return _binary(torch.true_divide, x1, x2)


def divide_no_nan(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 / x2``, giving 0 wherever ``x2`` is 0.

    >>> divide_no_nan([1.0, 1.0], [2.0, 0.0])
    tensor([0.5000, 0.0000])
    """
    a, b = convert_to_tensor(x1), convert_to_tensor(x2)
    dtype = torch.result_type(a, b)
    dtype = dtype if dtype.is_floating_point else backend.standardize_dtype(None)
    a, b = a.to(dtype), b.to(dtype)
    safe = torch.where(b == 0, torch.ones_like(b), b)
    quotient = torch.true_divide(a, safe)
    return torch.where(b == 0, torch.zeros_like(quotient), quotient)


def power(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 ** x2``.

    >>> power([2.0, 3.0], 2)
    tensor([4., 9.])
    """
    return _binary(torch.pow, x1, x2)


def matmul(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Matrix product with numpy's ``matmul`` semantics (batched over leading axes).

    >>> matmul([[1.0, 2.0]], [[3.0], [4.0]])
    tensor([[11.]])
    """
    return torch.matmul(convert_to_tensor(x1), convert_to_tensor(x2))


def dot(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Dot product with numpy's ``dot`` semantics.

    Scalars multiply; for N-D inputs this sums over the last axis of ``x1`` and
    the second-to-last of ``x2`` (the last, when ``x2`` is 1-D).

    >>> dot([1.0, 2.0], [3.0, 4.0])
    tensor(11.)
    >>> dot([[1.0, 0.0], [0.0, 2.0]], [1.0, 1.0])
    tensor([1., 2.])
    """
    a, b = convert_to_tensor(x1), convert_to_tensor(x2)
    if a.dim() == 0 or b.dim() == 0:
        return a * b
    if b.dim() == 1:
        return torch.tensordot(a, b, dims=([-1], [0]))
    return torch.tensordot(a, b, dims=([-1], [-2]))


def transpose(x: TensorLike, axes: Sequence[int] | None = None) -> torch.Tensor:
    """Permute the axes of ``x``; by default reverse them, as numpy does.

    >>> transpose([[1.0, 2.0]])
    tensor([[1.],
            [2.]])
    """
    x = convert_to_tensor(x)
    order = tuple(reversed(range(x.dim()))) if axes is None else tuple(axes)
    return x.permute(order)


def reshape(x: TensorLike, newshape: int | Sequence[int]) -> torch.Tensor:
    """Reshape ``x``; one dimension may be ``-1``.

    >>> reshape([1.0, 2.0, 3.0, 4.0], (2, -1))
    tensor([[1., 2.],
            [3., 4.]])
    """
    return torch.reshape(convert_to_tensor(x), _shape_arg(newshape))


def expand_dims(x: TensorLike, axis: int) -> torch.Tensor:
    """Insert an axis of length 1 at ``axis``.

    >>> shape(expand_dims(zeros((2, 3)), 0))
    (1, 2, 3)
    """
    return torch.unsqueeze(convert_to_tensor(x), axis)


def squeeze(x: TensorLike, axis: Axis = None) -> torch.Tensor:
    """Remove axes of length 1 (all of them when ``axis`` is ``None``).

    >>> shape(squeeze(zeros((1, 2, 1))))
    (2,)
    """
    x = convert_to_tensor(x)
    return torch.squeeze(x) if axis is None else torch.squeeze(x, _dims(axis))


def stop_gradient(x: TensorLike) -> torch.Tensor:
    """Return ``x`` cut out of the autograd graph.

    >>> w = ones((2,)).requires_grad_()
    >>> stop_gradient(w * 2).requires_grad
    False
    """
    return convert_to_tensor(x).detach()


def _sum_of_squares(x: torch.Tensor, dims: Any, keepdims: bool) -> torch.Tensor:
    if dims is None:
        out = torch.sum(x * x)
        return out.reshape((1,) * x.dim()) if keepdims else out
    return torch.sum(x * x, dim=dims, keepdim=keepdims)


def _squares_out_of_range(squares: torch.Tensor) -> torch.Tensor:
    """Where a sum of squares cannot be trusted: overflowed, or so small that its terms were subnormal.

    Below ``tiny / eps`` the individual squares may have flushed to zero or kept only a
    few digits. Zero vectors land here too and come out 0 either way.
    """
    info = torch.finfo(squares.dtype)
    return torch.isinf(squares) | (squares < info.tiny / info.eps)


def _euclidean_norm(x: torch.Tensor, dims: Any, keepdims: bool) -> torch.Tensor:
    """``sqrt(sum(x ** 2))`` as Keras computes it, rescued where ``x ** 2`` leaves the float range.

    In range the result is bit-for-bit Keras's. Where the sum of squares overflows
    to inf, or is so small that its terms were subnormal, the norm is recomputed as
    ``m * sqrt(sum((x / m) ** 2))`` with ``m = max|x|``, so huge or tiny weight vectors
    keep a correct, finite norm instead of inf or 0.
    """
    squares = _sum_of_squares(x, dims, keepdims)
    norms = torch.sqrt(squares)
    # The rescue costs a few extra ops, paid only by callers whose inputs need it; an
    # in-range tensor (the common case) is returned straight from the Keras formula.
    out_of_range = _squares_out_of_range(squares)
    if not bool(out_of_range.any()):
        return norms
    scale = torch.amax(torch.abs(x), dim=() if dims is None else dims, keepdim=True)
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rescued = torch.sqrt(_sum_of_squares(x / safe_scale, dims, True)) * safe_scale
    if not keepdims:
        rescued = rescued.reshape(norms.shape)
    return torch.where(out_of_range, rescued, norms)


def norm(x: TensorLike, ord: Any = None, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Vector or matrix norm of ``x`` (Keras ``ops.norm``).

    With ``ord=None`` (or 2 over a single axis) this is the Euclidean norm over
    ``axis`` (over every element when ``axis`` is ``None``), ``sqrt(sum(x ** 2))``,
    kept finite and correct for weights whose squares over- or underflow. Other
    orders defer to :func:`torch.linalg.norm`.

    >>> norm([3.0, 4.0])
    tensor(5.)
    >>> norm([[3.0, 0.0], [4.0, 1.0]], axis=0)
    tensor([5., 1.])
    >>> norm([3e30, 4e30])
    tensor(5.0000e+30)
    """
    x = _float(x)
    dims = _dims(axis)
    single_axis = isinstance(dims, int) or (isinstance(dims, tuple) and len(dims) == 1)
    if ord is None or (ord == 2 and single_axis):
        return _euclidean_norm(x, dims, keepdims)
    return torch.linalg.norm(x, ord=ord, dim=dims, keepdim=keepdims)


def normalize(x: TensorLike, axis: int = -1, order: int = 2, epsilon: float | None = None) -> torch.Tensor:
    """Scale ``x`` to unit norm along ``axis`` (Keras ``ops.normalize``).

    For ``order=2`` this is ``x * min(1 / ||x||, 1 / epsilon)``, so a zero vector
    stays zero; other orders divide by ``max(||x||_order, epsilon)``.

    >>> normalize([[3.0, 4.0], [0.0, 0.0]], axis=1)
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]])
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order!r}")
    x = _float(x)
    if x.dim() == 0:
        x = x.unsqueeze(0)
    eps = backend.epsilon() if epsilon is None else epsilon
    if order == 2:
        squares = _sum_of_squares(x, axis, True)
        inv_norm = torch.rsqrt(squares)
        # Rescue only where Keras's x * rsqrt(sum(x**2)) would go wrong from over/underflow.
        rescue = _squares_out_of_range(squares)
        if bool(rescue.any()):
            inv_norm = torch.where(rescue, 1.0 / _euclidean_norm(x, axis, True), inv_norm)
        return x * torch.clamp(inv_norm, max=1.0 / eps)
    denom = torch.clamp(torch.linalg.vector_norm(x, ord=order, dim=axis, keepdim=True), min=eps)
    return x / denom
