"""Keras-named tensor functions over torch, for writing regularizers and constraints.

Every function takes tensors, numpy arrays, Python scalars or (nested) sequences,
and returns ``torch.Tensor``. Argument names follow Keras (``axis``, ``keepdims``,
``dtype``), so a custom regularizer written against ``keras.ops`` runs unchanged.

Arguments a function cannot take (strings where numbers are due, an axis out of range,
shapes that do not broadcast, an op a dtype lacks) raise a ``ValueError`` or ``TypeError``
that names the argument and echoes what was received, never an error from inside torch.

>>> x = convert_to_tensor([[1.0, -2.0], [3.0, -4.0]])
>>> sum(absolute(x))
tensor(10.)
"""

from __future__ import annotations

import builtins
import functools
import inspect
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar, Union

import numpy as np
import torch

from weightwise import backend
from weightwise.arguments import INT64_MAX, count, echo, flag, invalid, is_int, real

__all__ = [
    "abs",
    "absolute",
    "add",
    "all",
    "any",
    "arange",
    "array",
    "cast",
    "clip",
    "concatenate",
    "convert_to_numpy",
    "convert_to_tensor",
    "divide",
    "divide_no_nan",
    "dot",
    "equal",
    "exp",
    "expand_dims",
    "eye",
    "full",
    "get_item",
    "greater",
    "greater_equal",
    "is_tensor",
    "less",
    "less_equal",
    "log",
    "logical_and",
    "logical_not",
    "logical_or",
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
    "relu",
    "reshape",
    "rsqrt",
    "shape",
    "sigmoid",
    "sign",
    "sqrt",
    "square",
    "squeeze",
    "std",
    "stop_gradient",
    "subtract",
    "sum",
    "tanh",
    "tile",
    "transpose",
    "tril",
    "triu",
    "true_divide",
    "var",
    "where",
    "zeros",
    "zeros_like",
]

TensorLike = Union[torch.Tensor, np.ndarray, float, int, bool, Sequence[Any]]
Axis = Union[int, Sequence[int], None]

F = TypeVar("F", bound=Callable[..., Any])

_BOOLS = (bool, np.bool_)


class SymbolicTensor:
    """Base class of the stand-ins for tensors while a functional graph is laid out
    (:class:`weightwise.layers.KerasTensor`).

    An ops function given one computes nothing: it hands its call to ``SymbolicTensor.tracer``,
    which ``weightwise.layers`` installs and which records the call as a graph node, as Keras
    records its operations. Tensors never meet this path: only a conversion that finds no
    tensor checks for a symbolic value.
    """

    __slots__ = ()
    # ``tracer(op, args, kwargs)`` records ``op(*args, **kwargs)``; set by weightwise.layers.symbolic.
    tracer: ClassVar[Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any] | None] = None


class SymbolicArgument(TypeError):
    """A symbolic tensor reached a function that cannot record it in a graph."""

    def __init__(self, value: Any) -> None:
        super().__init__(
            f"A symbolic tensor has no values, so it can only be passed to layers and to `weightwise.ops` functions "
            f"while a functional model is laid out (wrap other code in a layer). Received: {value!r}"
        )



# -- sharded tensors (torch.distributed.tensor.DTensor, as FSDP2 makes them) ----------------------
# A DTensor exists only once torch.distributed.tensor is imported, so the check never imports it:
# a process that shards nothing pays one dict lookup.


def _dtensor_type() -> type | None:
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def _layout(t: Any) -> Any:
    """What tensors must share, besides dtype and device, to go through one ``torch._foreach_*`` op:
    ``None`` for a plain tensor, ``(device_mesh, placements)`` for a DTensor."""
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(t, dtensor):
        return None
    return t.device_mesh, t.placements


def _plain(t: Any) -> Any:
    """``t`` as an ordinary tensor: the full logical value of a DTensor (differentiable, and the
    same on every rank), anything else unchanged. A loss or a record built from sharded weights
    goes through this, so that it adds to plain tensors and reads as a number."""
    dtensor = _dtensor_type()
    return t.full_tensor() if dtensor is not None and isinstance(t, dtensor) else t


def _like(value: Any, reference: torch.Tensor) -> Any:
    """``value`` (an ordinary tensor holding the same numbers on every rank) ready to meet
    ``reference`` in an op: itself, or, when ``reference`` is a DTensor, a DTensor on its device
    mesh, laid out as ``reference`` when it has its shape (each rank keeps its own shard) and
    replicated otherwise. No communication: every rank already holds the whole value."""
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(reference, dtensor) or not isinstance(value, torch.Tensor) \
            or isinstance(value, dtensor):
        return value
    from torch.distributed.tensor import Replicate, distribute_tensor

    mesh = reference.device_mesh
    value = value.to(reference.device)
    if value.shape == reference.shape:
        return distribute_tensor(value, mesh, reference.placements, src_data_rank=None)
    return dtensor.from_local(value, mesh, [Replicate()] * mesh.ndim, run_check=False)


def traceable(fn: F) -> F:
    """Let ``fn`` take symbolic tensors: a call given one is recorded in the functional graph.

    ``fn`` converts its tensor arguments with :func:`argument_tensor` (which notices a
    symbolic one); the recorded operation is Keras's class for ``fn``, from the table in
    :mod:`weightwise.layers.symbolic`. Tensors pay nothing: the recording happens only
    where the conversion raised.

    >>> from weightwise import activations, layers
    >>> gelu = traceable(activations.gelu)
    >>> y = gelu(layers.Input(shape=(3,)), approximate=True)
    >>> y.shape, y.node.layer.class_name, y.node.layer.config
    ((None, 3), 'Gelu', {'approximate': True})
    >>> gelu(ones((2,)), approximate=True).shape
    torch.Size([2])
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SymbolicArgument as error:
            return _record_symbolic(wrapper, args, kwargs, error)

    return wrapper  # type: ignore[return-value]


def _record_symbolic(op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                     error: SymbolicArgument) -> Any:
    """Record ``op(*args, **kwargs)``, whose arguments hold a symbolic tensor, in the graph being laid out."""
    if SymbolicTensor.tracer is None:
        raise error
    return SymbolicTensor.tracer(op, args, kwargs)


def _clear_errors(fn: F) -> F:
    """Turn what torch raises on arguments it cannot take into a ValueError or TypeError naming them.

    Shapes that do not broadcast, mixed devices or a size too large surface from deep inside torch
    as RuntimeError or IndexError, and a dtype an op lacks as NotImplementedError; the user sees
    which call got which arguments instead. Running out of memory is no argument error and passes.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SymbolicArgument as symbolic:
            # A KerasTensor among the arguments: record the call instead (the tensor path never gets here).
            return _record_symbolic(wrapper, args, kwargs, symbolic)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, IndexError, NotImplementedError) as error:
            try:
                arguments = signature.bind(*args, **kwargs).arguments
                received = ", ".join(f"{name}={echo(value)}" for name, value in arguments.items())
            except TypeError:
                received = ", ".join(echo(value) for value in args)
            kind = TypeError if isinstance(error, NotImplementedError) else ValueError
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise kind(f"Invalid arguments to `ops.{fn.__name__}`: {reason} Received: {received}") from error

    return wrapper  # type: ignore[return-value]


def _contains_tensor(x: Any) -> bool:
    if isinstance(x, (torch.Tensor, SymbolicTensor)):
        return True
    if isinstance(x, (list, tuple)):
        return builtins.any(_contains_tensor(item) for item in x)
    return False


@_clear_errors
def convert_to_tensor(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Convert ``x`` to a ``torch.Tensor``, optionally casting to ``dtype``.

    Python floats become :func:`weightwise.backend.floatx`, Python ints ``int32``
    (as in Keras); numpy arrays keep their dtype. A sequence of tensors, such as
    ``layer.losses``, is stacked. Anything that is not numbers (strings, ``None``,
    objects, ragged lists, ints beyond 64 bits) raises a ``TypeError`` or ``ValueError``.

    >>> convert_to_tensor([1.0, 2.0])
    tensor([1., 2.])
    >>> convert_to_tensor(3).dtype
    torch.int32
    >>> convert_to_tensor([convert_to_tensor(1.0), convert_to_tensor(2.0)])
    tensor([1., 2.])
    >>> convert_to_tensor("abc")
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `x`: cannot convert to a tensor; expected numbers, got str. Received: x='abc'
    """
    return argument_tensor(x, "x", dtype)


def argument_tensor(x: Any, name: str, dtype: Any = None, real: bool = False) -> torch.Tensor:
    """:func:`convert_to_tensor` of the argument ``name``, which an error names.

    What cannot be a tensor (strings, ``None``, objects, ragged nesting, ints beyond 64
    bits) is a ``TypeError``. With ``real``, so are complex values: losses, metrics and
    most activations have no meaning for them.

    >>> argument_tensor([1, 2], "inputs").dtype
    torch.int32
    >>> argument_tensor([[1.0], [2.0, 3.0]], "y_pred")
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `y_pred`: cannot convert to a tensor (...). Received: y_pred=[[1.0], [2.0, 3.0]]
    >>> argument_tensor(torch.tensor([1j]), "y_pred", real=True)
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `y_pred`: expected real numbers, not complex ones. Received: y_pred=tensor([0.+1.j]) of shape (1,) and dtype complex64
    """
    target = None if dtype is None else backend.standardize_dtype(dtype)
    tensor = x if isinstance(x, torch.Tensor) else _convert(x, name)
    if real and tensor.is_complex():
        raise TypeError(
            f"Invalid value for argument `{name}`: expected real numbers, not complex ones. Received: {name}={echo(x)}"
        )
    return tensor if target is None or tensor.dtype == target else tensor.to(target)


def _convert(x: Any, name: str) -> torch.Tensor:
    """A tensor of what is not one yet: a numpy value, a sequence of tensors, or (nested) Python numbers."""
    if isinstance(x, SymbolicTensor):
        raise SymbolicArgument(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return _from_numpy(np.array(x, copy=True), x, name)
    if isinstance(x, (list, tuple)) and _contains_tensor(x):
        items = [argument_tensor(item, name) for item in x]
        if len({(tuple(item.shape), item.device) for item in items}) > 1:
            raise TypeError(
                f"Invalid value for argument `{name}`: the tensors of a sequence must share one shape and device "
                f"to be stacked. Received: {name}=[{', '.join(echo(item) for item in items[:8])}]"
            )
        return torch.stack(items)
    try:
        probe = np.asarray(x)
    except (ValueError, OverflowError, TypeError) as error:  # ragged nesting, ints beyond every dtype
        raise TypeError(
            f"Invalid value for argument `{name}`: cannot convert to a tensor ({error}). Received: {name}={echo(x)}"
        ) from error
    if probe.dtype.kind in "iu" and probe.dtype.itemsize > 4 and _fits_int32(probe):
        probe = probe.astype(np.int32)
    tensor = _from_numpy(np.array(probe, order="C"), x, name)
    if tensor.is_floating_point():
        # A Python float is a double; one rounding to floatx, as Keras does.
        tensor = tensor.to(backend.standardize_dtype(None))
    return tensor


def _from_numpy(array: np.ndarray, original: Any, name: str) -> torch.Tensor:
    # Strings, bytes, objects (None, dicts, 10**400) and dates have no tensor form; nor has float128.
    try:
        if array.dtype.kind not in "biufc":
            raise TypeError
        return torch.from_numpy(array)
    except TypeError:
        got = type(original).__name__ if array.dtype.kind == "O" or not isinstance(original, np.ndarray) \
            else f"dtype {array.dtype}"
        raise TypeError(
            f"Invalid value for argument `{name}`: cannot convert to a tensor; expected numbers, got {got}. "
            f"Received: {name}={echo(original)}"
        ) from None


def _fits_int32(array: np.ndarray) -> bool:
    info = np.iinfo(np.int32)
    return array.size == 0 or (int(array.min()) >= info.min and int(array.max()) <= info.max)


@_clear_errors
def convert_to_numpy(x: TensorLike) -> np.ndarray:
    """Return ``x`` as a numpy array: a copy, detached and moved to the CPU.

    As in Keras, the array never shares memory with a tensor, so a snapshot such as
    ``w = layer.get_weights()`` does not change when the weights train on. A meta
    tensor has no values, and raises a ``ValueError``.

    >>> weight = ones((2,))
    >>> array = convert_to_numpy(weight)
    >>> _ = weight.add_(1.0)
    >>> array
    array([1., 1.], dtype=float32)
    """
    tensor = argument_tensor(x, "x")
    if tensor.is_meta:
        raise ValueError(
            f"Invalid value for argument `x`: a meta tensor holds no values to convert. Received: x={echo(tensor)}"
        )
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


@_clear_errors
def cast(x: TensorLike, dtype: Any) -> torch.Tensor:
    """Cast ``x`` to ``dtype`` (a string, numpy or torch dtype).

    >>> cast([1.7, -1.7], "int32")
    tensor([ 1, -1], dtype=torch.int32)
    """
    return argument_tensor(x, "x").to(backend.standardize_dtype(dtype))


@_clear_errors
def shape(x: TensorLike) -> tuple[int, ...]:
    """Return the shape of ``x`` as a tuple of ints.

    >>> shape(zeros((2, 3)))
    (2, 3)
    """
    return tuple(argument_tensor(x, "x").shape)


def _shape_arg(shape: Any, name: str = "shape", infer: bool = False) -> tuple[int, ...]:
    """A shape from an int or a sequence of ints, each ``>= 0`` (with ``infer``, one may be -1)."""
    single = is_int(shape)
    dims = (shape,) if single else shape
    if not isinstance(dims, (list, tuple, torch.Size)) or not builtins.all(
            is_int(d) and -1 <= d <= INT64_MAX for d in dims) \
            or builtins.sum(1 for d in dims if d == -1) > (1 if infer else 0):
        rule = "non-negative ints (one may be -1)" if infer else "non-negative ints"
        raise invalid(name, f"an int or a sequence of {rule}", shape)
    return tuple(int(d) for d in dims)


@_clear_errors
def ones(shape: int | Sequence[int], dtype: Any = None) -> torch.Tensor:
    """Return a tensor of ones, of ``dtype`` (default :func:`~weightwise.backend.floatx`).

    >>> ones((2, 2))
    tensor([[1., 1.],
            [1., 1.]])
    """
    return torch.ones(_shape_arg(shape), dtype=backend.standardize_dtype(dtype))


@_clear_errors
def full(shape: int | Sequence[int], fill_value: TensorLike, dtype: Any = None) -> torch.Tensor:
    """A tensor of ``shape`` filled with ``fill_value`` (broadcast), of ``dtype`` (default floatx), as Keras.

    >>> full((2, 2), 7)
    tensor([[7., 7.],
            [7., 7.]])
    """
    dims = _shape_arg(shape)
    value = argument_tensor(fill_value, "fill_value", backend.standardize_dtype(dtype))
    return value.expand(dims).clone()


def array(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Keras's ``ops.array``: :func:`convert_to_tensor` under NumPy's name.

    >>> array([[1, 2], [3, 4]], dtype="float32")
    tensor([[1., 2.],
            [3., 4.]])
    """
    return argument_tensor(x, "x", dtype)


@_clear_errors
def arange(start: Any, stop: Any = None, step: Any = None, dtype: Any = None) -> torch.Tensor:
    """``[start, start + step, ...)`` up to ``stop`` (one argument: ``[0, start)``), as Keras's ``ops.arange``.

    Without ``dtype``, Python ints give ``int32`` and any float gives
    :func:`~weightwise.backend.floatx`, as in Keras.

    >>> arange(4)
    tensor([0, 1, 2, 3], dtype=torch.int32)
    >>> arange(0, 1, 0.25)
    tensor([0.0000, 0.2500, 0.5000, 0.7500])
    """
    given = [v for v in (start, stop, step) if v is not None]
    if dtype is None:
        floating = builtins.any(isinstance(v, float) or (is_tensor(v) and v.is_floating_point()) for v in given)
        dtype = backend.floatx() if floating else "int32"
    if stop is None:
        start, stop = 0, start
    return torch.arange(start, stop, 1 if step is None else step, dtype=backend.standardize_dtype(dtype))


@_clear_errors
def zeros(shape: int | Sequence[int], dtype: Any = None) -> torch.Tensor:
    """Return a tensor of zeros, of ``dtype`` (default :func:`~weightwise.backend.floatx`).

    >>> zeros(3)
    tensor([0., 0., 0.])
    """
    return torch.zeros(_shape_arg(shape), dtype=backend.standardize_dtype(dtype))


@_clear_errors
def ones_like(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Return ones with the shape (and, unless given, the dtype) of ``x``.

    >>> ones_like(zeros((2,), dtype="float64"))
    tensor([1., 1.], dtype=torch.float64)
    """
    x = argument_tensor(x, "x")
    return torch.ones_like(x, dtype=None if dtype is None else backend.standardize_dtype(dtype))


@_clear_errors
def zeros_like(x: TensorLike, dtype: Any = None) -> torch.Tensor:
    """Return zeros with the shape (and, unless given, the dtype) of ``x``.

    >>> zeros_like([1.0, 2.0])
    tensor([0., 0.])
    """
    x = argument_tensor(x, "x")
    return torch.zeros_like(x, dtype=None if dtype is None else backend.standardize_dtype(dtype))


@_clear_errors
def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None) -> torch.Tensor:
    """Return an ``N x M`` matrix with ones on the ``k``-th diagonal.

    >>> eye(2)
    tensor([[1., 0.],
            [0., 1.]])
    >>> eye(2, 3, k=1)
    tensor([[0., 1., 0.],
            [0., 0., 1.]])
    """
    N = count(N, "N", high=INT64_MAX)
    M = N if M is None else count(M, "M", high=INT64_MAX)
    k = count(k, "k", low=-INT64_MAX, high=INT64_MAX)
    out = torch.ones((N, M), dtype=backend.standardize_dtype(dtype))
    return torch.triu(torch.tril(out, diagonal=k), diagonal=k)


@_clear_errors
def tile(x: TensorLike, repeats: int | Sequence[int]) -> torch.Tensor:
    """Repeat ``x`` ``repeats[i]`` times along axis ``i`` (numpy's ``tile``).

    With fewer repeats than axes, the leading axes repeat once; with more, ``x`` gains
    leading axes of size 1 first.

    >>> tile([[1.0, 2.0]], (2, 1))
    tensor([[1., 2.],
            [1., 2.]])
    """
    x = argument_tensor(x, "x")
    reps = [repeats] if is_int(repeats) else list(repeats) if isinstance(repeats, (list, tuple)) else None
    if reps is None or not builtins.all(is_int(r) and r >= 0 for r in reps):
        raise ValueError(f"Invalid value for argument `repeats`: expected an int >= 0 or a sequence of them. "
                         f"Received: repeats={echo(repeats)}")
    return torch.tile(x, tuple(int(r) for r in reps))


def _triangle(fn: Any, name: str, x: TensorLike, k: int) -> torch.Tensor:
    x = argument_tensor(x, "x")
    k = count(k, "k", low=-INT64_MAX, high=INT64_MAX)
    if x.dim() < 2:
        raise ValueError(f"`{name}` needs a tensor of rank 2 or more. Received: x of shape {tuple(x.shape)}")
    return fn(x, diagonal=k)


@_clear_errors
def tril(x: TensorLike, k: int = 0) -> torch.Tensor:
    """Keep the entries of the last two axes on and below the ``k``-th diagonal; zero the rest.

    ``out[..., i, j] = x[..., i, j]`` where ``j - i <= k``, else 0 (numpy's ``tril``).

    >>> tril([[1.0, 2.0], [3.0, 4.0]])
    tensor([[1., 0.],
            [3., 4.]])
    """
    return _triangle(torch.tril, "tril", x, k)


@_clear_errors
def triu(x: TensorLike, k: int = 0) -> torch.Tensor:
    """Keep the entries of the last two axes on and above the ``k``-th diagonal; zero the rest.

    ``out[..., i, j] = x[..., i, j]`` where ``j - i >= k``, else 0 (numpy's ``triu``).

    >>> triu([[1.0, 2.0], [3.0, 4.0]], k=1)
    tensor([[0., 2.],
            [0., 0.]])
    """
    return _triangle(torch.triu, "triu", x, k)


def _dims(axis: Any, rank: int, name: str = "axis") -> int | tuple[int, ...] | None:
    """``axis`` checked against a tensor of ``rank``: ``None``, an int, or a tuple of distinct ints.

    Negative axes count from the end; a 0-d tensor takes 0 and -1, as in torch.
    """
    if axis is None:
        return None
    single = is_int(axis)
    items = [axis] if single else axis
    bound = builtins.max(rank, 1)
    if not isinstance(items, (list, tuple)) or not builtins.all(
            is_int(a) and -bound <= a < bound for a in items):
        raise invalid(name, f"an int or a list of ints in [{-bound}, {bound}) for a tensor of rank {rank}", axis)
    if len({int(a) % bound for a in items}) != len(items):
        raise ValueError(f"Invalid value for argument `{name}`: it names one axis twice. Received: {name}={echo(axis)}")
    return int(axis) if single else tuple(int(a) for a in items)


@_clear_errors
def sum(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Sum of ``x`` over ``axis`` (all axes when ``None``, none when ``[]``, as in NumPy).

    A list of scalar tensors, such as ``layer.losses``, is summed too; an empty
    list sums to ``0.0``.

    >>> sum([[1.0, 2.0], [3.0, 4.0]], axis=0)
    tensor([4., 6.])
    >>> sum([convert_to_tensor(0.25), convert_to_tensor(5.0)])
    tensor(5.2500)
    """
    if isinstance(x, (list, tuple)) and len(x) == 0:
        return torch.zeros((), dtype=backend.standardize_dtype(None))
    x = argument_tensor(x, "x")
    keepdims = flag(keepdims, "keepdims")
    dims = _dims(axis, x.dim())
    if dims == ():
        return x.clone()
    if dims is None:
        out = torch.sum(x)
        return out.reshape((1,) * x.dim()) if keepdims else out
    return torch.sum(x, dim=dims, keepdim=keepdims)


@_clear_errors
def mean(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Mean of ``x`` over ``axis`` (all axes when ``None``); integers average as floats.

    >>> mean([1.0, 2.0, 6.0])
    tensor(3.)
    """
    x = _float(x)
    keepdims = flag(keepdims, "keepdims")
    dims = _dims(axis, x.dim())
    if dims == ():
        return x.clone()
    if dims is None:
        out = torch.mean(x)
        return out.reshape((1,) * x.dim()) if keepdims else out
    return torch.mean(x, dim=dims, keepdim=keepdims)


@_clear_errors
def var(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Population variance of ``x`` over ``axis`` (all axes when ``None``): ``mean((x - mean(x))**2)``.

    As numpy's and Keras's ``var``, it divides by the number of entries (no Bessel correction).

    >>> var([1.0, 2.0, 6.0])
    tensor(4.6667)
    """
    x = _float(x)
    keepdims = flag(keepdims, "keepdims")
    dims = _dims(axis, x.dim())
    if dims == ():
        return torch.zeros_like(x)
    out = torch.var(x, dim=dims, correction=0, keepdim=keepdims)
    return out


@_clear_errors
def std(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Population standard deviation of ``x`` over ``axis``: ``sqrt(var(x))``.

    >>> std([1.0, 3.0])
    tensor(1.)
    """
    x = _float(x)  # converts first, so a symbolic input records one Std operation
    return torch.sqrt(var(x, axis=axis, keepdims=keepdims))


def _extreme(fn: Any, what: str, x: TensorLike, axis: Axis, keepdims: bool) -> torch.Tensor:
    x = argument_tensor(x, "x")
    keepdims = flag(keepdims, "keepdims")
    dims = _dims(axis, x.dim())
    if dims == ():
        return x.clone()
    reduced = range(x.dim()) if dims is None else [dims] if isinstance(dims, int) else dims
    if x.numel() == 0 and builtins.any(x.shape[d] == 0 for d in reduced):
        # NumPy and Keras refuse too: an empty max has no value.
        raise ValueError(
            f"Invalid value for argument `x`: cannot compute the {what} over an empty axis. "
            f"Received: x={echo(x)}, axis={echo(axis)}"
        )
    return fn(x, dim=() if dims is None else dims, keepdim=keepdims)


@_clear_errors
def max(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Maximum of ``x`` over ``axis`` (all axes when ``None``); an empty axis has none and raises.

    >>> max([[1.0, 5.0], [3.0, 2.0]], axis=1)
    tensor([5., 3.])
    """
    return _extreme(torch.amax, "max", x, axis, keepdims)


@_clear_errors
def min(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Minimum of ``x`` over ``axis`` (all axes when ``None``); an empty axis has none and raises.

    >>> min([[1.0, 5.0], [3.0, 2.0]])
    tensor(1.)
    """
    return _extreme(torch.amin, "min", x, axis, keepdims)


@_clear_errors
def absolute(x: TensorLike) -> torch.Tensor:
    """Elementwise ``|x|`` (the magnitude, for complex ``x``; bools are their own).

    >>> absolute([-1.5, 2.0])
    tensor([1.5000, 2.0000])
    """
    x = argument_tensor(x, "x")
    return x.clone() if x.dtype == torch.bool else torch.abs(x)


abs = absolute


@_clear_errors
def square(x: TensorLike) -> torch.Tensor:
    """Elementwise ``x ** 2``.

    >>> square([-3.0, 2.0])
    tensor([9., 4.])
    """
    x = argument_tensor(x, "x")
    return x * x


def _float(x: TensorLike, name: str = "x") -> torch.Tensor:
    x = argument_tensor(x, name)
    return x if x.is_floating_point() or x.is_complex() else x.to(backend.standardize_dtype(None))


@_clear_errors
def sqrt(x: TensorLike) -> torch.Tensor:
    """Elementwise square root; integers are promoted to floats.

    >>> sqrt([4.0, 9.0])
    tensor([2., 3.])
    """
    return torch.sqrt(_float(x))


@_clear_errors
def rsqrt(x: TensorLike) -> torch.Tensor:
    """Elementwise ``1 / sqrt(x)``.

    >>> rsqrt([4.0])
    tensor([0.5000])
    """
    return torch.rsqrt(_float(x))


@_clear_errors
def exp(x: TensorLike) -> torch.Tensor:
    """Elementwise ``e ** x``.

    >>> exp([0.0])
    tensor([1.])
    """
    return torch.exp(_float(x))


@_clear_errors
def log(x: TensorLike) -> torch.Tensor:
    """Elementwise natural logarithm.

    >>> log([1.0])
    tensor([0.])
    """
    return torch.log(_float(x))


@_clear_errors
def sign(x: TensorLike) -> torch.Tensor:
    """Elementwise sign: -1, 0 or 1 (``z / |z|`` for complex ``z``, as NumPy 2 does).

    >>> sign([-2.0, 0.0, 3.0])
    tensor([-1.,  0.,  1.])
    """
    x = argument_tensor(x, "x")
    return torch.sgn(x) if x.is_complex() else torch.sign(x)


def _no_bool(x: torch.Tensor, name: str, what: str) -> None:
    if x.dtype == torch.bool:
        raise TypeError(f"Invalid value for argument `{name}`: {what} is not defined for bool tensors "
                        f"(use logical_not or logical_xor). Received: {name}={echo(x)}")


@_clear_errors
def negative(x: TensorLike) -> torch.Tensor:
    """Elementwise ``-x``.

    >>> negative([1.0, -2.0])
    tensor([-1.,  2.])
    """
    x = argument_tensor(x, "x")
    _no_bool(x, "x", "negation")
    return torch.neg(x)


def _operand(x: Any, name: str) -> torch.Tensor | float | int | bool:
    # Python scalars stay scalars so that torch treats them as weakly typed, as Keras does.
    return x if isinstance(x, (bool, int, float)) and not _huge(x) else argument_tensor(x, name)


def _huge(x: Any) -> bool:
    # An int torch cannot hold as a scalar goes through conversion, which names it.
    return isinstance(x, int) and not -(2**63) <= x < 2**64


def _binary(fn: Any, x1: Any, x2: Any) -> torch.Tensor:
    a, b = _operand(x1, "x1"), _operand(x2, "x2")
    if not isinstance(a, torch.Tensor):
        # A 0-d tensor from a Python scalar promotes like a weak scalar: an int tensor
        # meeting 0.5 becomes float, a float64 tensor stays float64.
        a = torch.as_tensor(a, device=b.device) if isinstance(b, torch.Tensor) else argument_tensor(a, "x1")
    return fn(a, b)


@_clear_errors
def clip(x: TensorLike, x_min: Any, x_max: Any) -> torch.Tensor:
    """Clip ``x`` elementwise to ``[x_min, x_max]``.

    >>> clip([-1.0, 0.5, 3.0], 0.0, 1.0)
    tensor([0.0000, 0.5000, 1.0000])
    """
    x = argument_tensor(x, "x")
    lo = x_min if isinstance(x_min, (int, float)) and not _huge(x_min) else argument_tensor(x_min, "x_min")
    hi = x_max if isinstance(x_max, (int, float)) and not _huge(x_max) else argument_tensor(x_max, "x_max")
    return torch.clamp(x, lo, hi)


@_clear_errors
def maximum(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise maximum, with broadcasting.

    >>> maximum([1.0, 4.0], 2.0)
    tensor([2., 4.])
    """
    return _binary(lambda a, b: torch.maximum(a, _as_tensor_like(b, a)), x1, x2)


@_clear_errors
def minimum(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise minimum, with broadcasting.

    >>> minimum([1.0, 4.0], 2.0)
    tensor([1., 2.])
    """
    return _binary(lambda a, b: torch.minimum(a, _as_tensor_like(b, a)), x1, x2)


def _as_tensor_like(value: Any, other: torch.Tensor) -> torch.Tensor:
    # torch.maximum/minimum take no Python scalars; a 0-d tensor keeps weak-scalar promotion.
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, device=other.device)


@_clear_errors
def greater(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 > x2``.

    >>> greater([1.0, 3.0], 2.0)
    tensor([False,  True])
    """
    return _binary(torch.gt, x1, x2)


@_clear_errors
def greater_equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 >= x2``.

    >>> greater_equal([1.0, 2.0], 2.0)
    tensor([False,  True])
    """
    return _binary(torch.ge, x1, x2)


@_clear_errors
def less(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 < x2``.

    >>> less([1.0, 3.0], 2.0)
    tensor([ True, False])
    """
    return _binary(torch.lt, x1, x2)


@_clear_errors
def less_equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 <= x2``.

    >>> less_equal([2.0, 3.0], 2.0)
    tensor([ True, False])
    """
    return _binary(torch.le, x1, x2)


@_clear_errors
def equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 == x2``.

    >>> equal([1.0, 2.0], 2.0)
    tensor([False,  True])
    """
    return _binary(torch.eq, x1, x2)


@_clear_errors
def not_equal(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 != x2``.

    >>> not_equal([1.0, 2.0], 2.0)
    tensor([ True, False])
    """
    return _binary(torch.ne, x1, x2)


@_clear_errors
def logical_and(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 and x2`` (non-zero is true), broadcast; a bool tensor.

    >>> logical_and([True, True], [True, False])
    tensor([ True, False])
    """
    return _binary(lambda a, b: torch.logical_and(torch.as_tensor(a), torch.as_tensor(b)), x1, x2)


@_clear_errors
def logical_or(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 or x2`` (non-zero is true), broadcast; a bool tensor.

    >>> logical_or([True, False], [False, False])
    tensor([ True, False])
    """
    return _binary(lambda a, b: torch.logical_or(torch.as_tensor(a), torch.as_tensor(b)), x1, x2)


@_clear_errors
def logical_not(x: TensorLike) -> torch.Tensor:
    """Elementwise ``not x`` (non-zero is true); a bool tensor.

    >>> logical_not([True, False])
    tensor([False,  True])
    """
    return torch.logical_not(argument_tensor(x, "x"))


def _truth(fn: Any, x: TensorLike, axis: Axis, keepdims: bool) -> torch.Tensor:
    x = argument_tensor(x, "x")
    keepdims = flag(keepdims, "keepdims")
    dims = _dims(axis, x.dim())
    x = x if x.dtype == torch.bool else x != 0
    if dims == ():
        return x.clone()
    if dims is None:
        out = fn(x)
        return out.reshape((1,) * x.dim()) if keepdims else out
    for dim in sorted([dims] if isinstance(dims, int) else dims, reverse=True):
        x = fn(x, dim=dim, keepdim=keepdims)
    return x


@_clear_errors
def any(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Whether any entry of ``x`` over ``axis`` (all axes when ``None``) is true (non-zero).

    >>> any([[False, True], [False, False]], axis=1)
    tensor([ True, False])
    """
    return _truth(torch.any, x, axis, keepdims)


@_clear_errors
def all(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Whether every entry of ``x`` over ``axis`` (all axes when ``None``) is true (non-zero).

    >>> all([[True, True], [False, True]], axis=0)
    tensor([False,  True])
    """
    return _truth(torch.all, x, axis, keepdims)


@_clear_errors
def where(condition: TensorLike, x1: Any = None, x2: Any = None) -> Any:
    """Pick ``x1`` where ``condition`` holds, else ``x2``.

    With only ``condition``, return the indices of its non-zero elements, one
    tensor per axis, as numpy's ``where`` does.

    >>> where([True, False], [1.0, 2.0], 0.0)
    tensor([1., 0.])
    >>> where([0, 3, 5])
    (tensor([1, 2]),)
    """
    cond = argument_tensor(condition, "condition")
    if x1 is None and x2 is None:
        return torch.nonzero(cond, as_tuple=True)
    if x1 is None or x2 is None:
        raise ValueError(f"`x1` and `x2` must be given together, or neither. Received: x1={x1!r}, x2={x2!r}")
    a, b = _operand(x1, "x1"), _operand(x2, "x2")
    return torch.where(cond.to(torch.bool), a, b)


@_clear_errors
def add(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 + x2``, with broadcasting.

    >>> add([1.0, 2.0], 1.0)
    tensor([2., 3.])
    """
    return _binary(torch.add, x1, x2)


@_clear_errors
def subtract(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 - x2``, with broadcasting.

    >>> subtract([1.0, 2.0], 1.0)
    tensor([0., 1.])
    """
    def sub(a: torch.Tensor, b: Any) -> torch.Tensor:
        if a.dtype == torch.bool and getattr(b, "dtype", None) in (torch.bool, None) and isinstance(b, (bool, torch.Tensor)):
            _no_bool(a, "x1", "subtraction of bools")
        return torch.sub(a, b)

    return _binary(sub, x1, x2)


@_clear_errors
def multiply(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 * x2``, with broadcasting.

    >>> multiply([1.0, 2.0], [3.0, 4.0])
    tensor([3., 8.])
    """
    return _binary(torch.mul, x1, x2)


@_clear_errors
def divide(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise true division ``x1 / x2``.

    >>> divide([1.0, 3.0], 2.0)
    tensor([0.5000, 1.5000])
    """
    return _binary(torch.true_divide, x1, x2)


@_clear_errors
def true_divide(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise true division ``x1 / x2`` (what ``/`` records on symbolic tensors, as in Keras).

    >>> true_divide([1.0, 3.0], 2.0)
    tensor([0.5000, 1.5000])
    """
    return _binary(torch.true_divide, x1, x2)


@_clear_errors
def divide_no_nan(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 / x2``, giving 0 wherever ``x2`` is 0.

    >>> divide_no_nan([1.0, 1.0], [2.0, 0.0])
    tensor([0.5000, 0.0000])
    """
    a, b = argument_tensor(x1, "x1"), argument_tensor(x2, "x2")
    dtype = torch.result_type(a, b)
    dtype = dtype if dtype.is_floating_point or dtype.is_complex else backend.standardize_dtype(None)
    a, b = a.to(dtype), b.to(dtype)
    safe = torch.where(b == 0, torch.ones_like(b), b)
    quotient = torch.true_divide(a, safe)
    return torch.where(b == 0, torch.zeros_like(quotient), quotient)


@_clear_errors
def power(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Elementwise ``x1 ** x2``.

    >>> power([2.0, 3.0], 2)
    tensor([4., 9.])
    """
    return _binary(torch.pow, x1, x2)


@_clear_errors
def matmul(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Matrix product with numpy's ``matmul`` semantics (batched over leading axes).

    >>> matmul([[1.0, 2.0]], [[3.0], [4.0]])
    tensor([[11.]])
    """
    return torch.matmul(argument_tensor(x1, "x1"), argument_tensor(x2, "x2"))


@_clear_errors
def dot(x1: TensorLike, x2: TensorLike) -> torch.Tensor:
    """Dot product with numpy's ``dot`` semantics.

    Scalars multiply; for N-D inputs this sums over the last axis of ``x1`` and
    the second-to-last of ``x2`` (the last, when ``x2`` is 1-D).

    >>> dot([1.0, 2.0], [3.0, 4.0])
    tensor(11.)
    >>> dot([[1.0, 0.0], [0.0, 2.0]], [1.0, 1.0])
    tensor([1., 2.])
    """
    a, b = argument_tensor(x1, "x1"), argument_tensor(x2, "x2")
    if a.dim() == 0 or b.dim() == 0:
        return a * b
    if b.dim() == 1:
        return torch.tensordot(a, b, dims=([-1], [0]))
    return torch.tensordot(a, b, dims=([-1], [-2]))


@_clear_errors
def transpose(x: TensorLike, axes: Sequence[int] | None = None) -> torch.Tensor:
    """Permute the axes of ``x``; by default reverse them, as numpy does.

    ``axes`` must name every axis once.

    >>> transpose([[1.0, 2.0]])
    tensor([[1.],
            [2.]])
    """
    x = argument_tensor(x, "x")
    if axes is None:
        return x.permute(tuple(reversed(range(x.dim()))))
    dims = _dims(axes, x.dim(), "axes")
    if isinstance(dims, int) or dims is None or len(dims) != x.dim():
        raise invalid("axes", f"a permutation of the {x.dim()} axes of `x`", axes)
    return x.permute(dims)


@_clear_errors
def reshape(x: TensorLike, newshape: int | Sequence[int]) -> torch.Tensor:
    """Reshape ``x``; one dimension may be ``-1``.

    >>> reshape([1.0, 2.0, 3.0, 4.0], (2, -1))
    tensor([[1., 2.],
            [3., 4.]])
    """
    return torch.reshape(argument_tensor(x, "x"), _shape_arg(newshape, "newshape", infer=True))


@_clear_errors
def expand_dims(x: TensorLike, axis: int | Sequence[int]) -> torch.Tensor:
    """Insert an axis of length 1 at ``axis`` (at each of several, given a list).

    >>> shape(expand_dims(zeros((2, 3)), 0))
    (1, 2, 3)
    >>> shape(expand_dims(zeros((2, 3)), [0, -1]))
    (1, 2, 3, 1)
    """
    x = argument_tensor(x, "x")
    added = 1 if isinstance(axis, numbers.Integral) else len(axis) if isinstance(axis, (list, tuple)) else 1
    dims = _dims(axis, x.dim() + added)
    rank = x.dim() + added
    for d in sorted(a % rank for a in ((dims,) if isinstance(dims, int) else dims or ())):
        x = torch.unsqueeze(x, d)
    return x


@_clear_errors
def squeeze(x: TensorLike, axis: Axis = None) -> torch.Tensor:
    """Remove axes of length 1 (all of them when ``axis`` is ``None``).

    An axis named explicitly must have length 1, as in NumPy.

    >>> shape(squeeze(zeros((1, 2, 1))))
    (2,)
    """
    x = argument_tensor(x, "x")
    dims = _dims(axis, x.dim())
    if dims is None:
        return torch.squeeze(x)
    dims = (dims,) if isinstance(dims, int) else dims
    if x.dim() and builtins.any(x.shape[d] != 1 for d in dims):
        raise ValueError(f"Invalid value for argument `axis`: an axis to squeeze must have length 1. "
                         f"Received: axis={echo(axis)} for x={echo(x)}")
    return torch.squeeze(x, dims) if dims else x


@_clear_errors
def stop_gradient(x: TensorLike) -> torch.Tensor:
    """Return ``x`` cut out of the autograd graph.

    >>> w = ones((2,)).requires_grad_()
    >>> stop_gradient(w * 2).requires_grad
    False
    """
    return argument_tensor(x, "x").detach()


def _sum_of_squares(x: torch.Tensor, dims: Any, keepdims: bool) -> torch.Tensor:
    """``sum(|x| ** 2)`` over ``dims``; for complex ``x`` the squared magnitude, a real tensor."""
    squares = x.real * x.real + x.imag * x.imag if x.is_complex() else x * x
    if dims is None:
        out = torch.sum(squares)
        return out.reshape((1,) * x.dim()) if keepdims else out
    return torch.sum(squares, dim=dims, keepdim=keepdims)


def _squares_out_of_range(squares: torch.Tensor) -> torch.Tensor:
    """Where a sum of squares cannot be trusted: overflowed, or so small that its terms were subnormal.

    Below ``tiny / eps`` the individual squares may have flushed to zero or kept only a
    few digits. Zero vectors land here too and come out 0 either way.
    """
    info = torch.finfo(squares.dtype)
    return torch.isinf(squares) | (squares < info.tiny / info.eps)


def _needs_rescue(x: torch.Tensor, out_of_range: torch.Tensor) -> bool:
    # A meta tensor has no values to look at, and a compiled program must not read one back: both
    # take the full path, which gives the in-range entries bit for bit.
    return x.is_meta or torch.compiler.is_compiling() or bool(out_of_range.any())


def _euclidean_norm(x: torch.Tensor, dims: Any, keepdims: bool) -> torch.Tensor:
    """``sqrt(sum(|x| ** 2))`` as Keras computes it, rescued where ``x ** 2`` leaves the float range.

    In range the result is bit-for-bit Keras's. Where the sum of squares overflows
    to inf, or is so small that its terms were subnormal, the norm is recomputed as
    ``m * ||x / m||`` with ``m = max|x|``, so huge or tiny weight vectors keep a correct,
    finite norm instead of inf or 0. A zero vector has norm 0 and gradient 0 (as
    :func:`torch.linalg.vector_norm` defines it), not Keras's NaN; an empty one has norm 0.
    """
    squares = _sum_of_squares(x, dims, keepdims)
    if x.numel() == 0:
        return torch.sqrt(squares)
    # The rescue costs a few extra ops, paid only by callers whose inputs need it; an
    # in-range tensor (the common case) is returned straight from the Keras formula.
    out_of_range = _squares_out_of_range(squares)
    if not _needs_rescue(x, out_of_range):
        return torch.sqrt(squares)
    # sqrt only where the sum is trusted: sqrt's gradient at 0 is inf, and inf * 0 is NaN even in
    # the branch torch.where discards.
    norms = torch.sqrt(torch.where(out_of_range, torch.ones_like(squares), squares))
    scale = torch.amax(torch.abs(x), dim=() if dims is None else dims, keepdim=True)
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rescued = torch.linalg.vector_norm(x / safe_scale, dim=dims, keepdim=True) * safe_scale
    # An infinite entry makes the norm infinite (x / inf would make it NaN); NaN stays NaN.
    rescued = torch.where(torch.isinf(scale), scale, rescued)
    if not keepdims:
        rescued = rescued.reshape(norms.shape)
    return torch.where(out_of_range, rescued, norms)


def _norm_axis(axis: Any, x: torch.Tensor) -> Any:
    dims = _dims(axis, x.dim())
    if dims == ():
        raise ValueError("Invalid value for argument `axis`: an empty list names no axis to take a norm over "
                         "(as in NumPy). Received: axis=[]")
    return dims


@_clear_errors
def norm(x: TensorLike, ord: Any = None, axis: Axis = None, keepdims: bool = False) -> torch.Tensor:
    """Vector or matrix norm of ``x`` (Keras ``ops.norm``).

    With ``ord=None`` (or 2 over a single axis) this is the Euclidean norm over
    ``axis`` (over every element when ``axis`` is ``None``), ``sqrt(sum(|x| ** 2))``,
    kept finite and correct for weights whose squares over- or underflow. Complex
    entries count by magnitude, as in NumPy. Other orders defer to :func:`torch.linalg.norm`.

    >>> norm([3.0, 4.0])
    tensor(5.)
    >>> norm([[3.0, 0.0], [4.0, 1.0]], axis=0)
    tensor([5., 1.])
    >>> norm([3e30, 4e30])
    tensor(5.0000e+30)
    """
    x = _float(x)
    keepdims = flag(keepdims, "keepdims")
    dims = _norm_axis(axis, x)
    if ord is not None and (isinstance(ord, _BOOLS) or not isinstance(ord, (numbers.Real, str))):
        raise invalid("ord", "None, a number, 'fro' or 'nuc'", ord)
    single_axis = isinstance(dims, int) or (isinstance(dims, tuple) and len(dims) == 1)
    if ord is None or (ord == 2 and single_axis):
        return _euclidean_norm(x, dims, keepdims)
    return torch.linalg.norm(x, ord=ord, dim=dims, keepdim=keepdims)


@_clear_errors
def normalize(x: TensorLike, axis: int = -1, order: int = 2, epsilon: float | None = None) -> torch.Tensor:
    """Scale ``x`` to unit norm along ``axis`` (Keras ``ops.normalize``).

    For ``order=2`` this is ``x * min(1 / ||x||, 1 / epsilon)``, so a zero vector
    stays zero, and its gradient is finite (``1 / epsilon``, the slope of that formula
    near 0) where Keras's is NaN. Other orders divide by ``max(||x||_order, epsilon)``.
    Half precision is computed in ``float32`` and returned in its own dtype.

    >>> normalize([[3.0, 4.0], [0.0, 0.0]], axis=1)
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]])
    """
    if isinstance(order, _BOOLS) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order!r}")
    epsilon = real(epsilon, "epsilon", low=0, low_open=True, allow_none=True)
    x = _float(x)
    dtype = x.dtype
    x = x.to(backend.rule_dtype(dtype))
    if x.dim() == 0:
        x = x.unsqueeze(0)
    dims = _norm_axis(axis, x)
    eps = backend.epsilon() if epsilon is None else epsilon
    if order == 2:
        squares = _sum_of_squares(x, dims, True)
        rescue = _squares_out_of_range(squares)
        inv_norm = torch.rsqrt(torch.where(rescue, torch.ones_like(squares), squares))
        # Rescue only where Keras's x * rsqrt(sum(x**2)) would go wrong from over/underflow; a zero
        # vector takes the cap 1 / eps directly, never through 1 / 0.
        if x.numel() and _needs_rescue(x, rescue):
            norms = _euclidean_norm(x, dims, True)
            positive = norms > 0
            rescued = torch.where(positive, 1.0 / torch.where(positive, norms, torch.ones_like(norms)),
                                  torch.full_like(norms, 1.0 / eps))
            inv_norm = torch.where(rescue, rescued, inv_norm)
        return (x * torch.clamp(inv_norm, max=1.0 / eps)).to(dtype)
    denom = torch.clamp(torch.linalg.vector_norm(x, ord=order, dim=dims, keepdim=True), min=eps)
    return (x / denom).to(dtype)


@_clear_errors
def concatenate(xs: Sequence[TensorLike], axis: int = 0) -> torch.Tensor:
    """Join a list of tensors along ``axis``; the other axes must agree.

    >>> concatenate([ones((1, 2)), zeros((1, 1))], axis=-1)
    tensor([[1., 1., 0.]])
    """
    if not isinstance(xs, (list, tuple)) or not xs:
        raise invalid("xs", "a non-empty list of tensors", xs)
    tensors = [argument_tensor(x, f"xs[{i}]") for i, x in enumerate(xs)]
    dim = _dims(axis, tensors[0].dim())
    if not isinstance(dim, int):
        raise invalid("axis", "an int", axis)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    return torch.cat([t.to(dtype) for t in tensors], dim=dim)


def _index(key: Any) -> Any:
    """An index of ints, slices, ``None`` and ``...``; a list of them counts as a tuple, as Keras's files store it."""
    items = key if isinstance(key, (list, tuple)) else (key,)
    for item in items:
        if not (item is None or item is Ellipsis or isinstance(item, slice) or is_int(item)):
            raise invalid("key", "ints, slices, None and Ellipsis", key)
    return tuple(items) if isinstance(key, (list, tuple)) else key


@_clear_errors
def get_item(x: TensorLike, key: Any) -> torch.Tensor:
    """``x[key]`` for a key of ints, slices, ``None`` (a new axis) and ``...``.

    >>> get_item([[1.0, 2.0], [3.0, 4.0]], (slice(None), 1))
    tensor([2., 4.])
    """
    return argument_tensor(x, "x")[_index(key)]


@_clear_errors
def relu(x: TensorLike) -> torch.Tensor:
    """Elementwise ``max(x, 0)``.

    >>> relu([-1.0, 2.0])
    tensor([0., 2.])
    """
    return torch.relu(_float(x))


@_clear_errors
def sigmoid(x: TensorLike) -> torch.Tensor:
    """Elementwise ``1 / (1 + exp(-x))``.

    >>> sigmoid([0.0])
    tensor([0.5000])
    """
    return torch.sigmoid(_float(x))


@_clear_errors
def tanh(x: TensorLike) -> torch.Tensor:
    """Elementwise hyperbolic tangent.

    >>> tanh([0.0])
    tensor([0.])
    """
    return torch.tanh(_float(x))
