"""Activation functions: Keras 3's, by the same names, computing what Keras computes.

Each function takes a tensor (or anything :func:`weightwise.ops.convert_to_tensor`
takes) and returns a ``torch.Tensor`` of the same shape. They run on
``torch.nn.functional`` exactly as Keras's torch backend does, so results equal
Keras's. Integer and bool inputs are computed in :func:`weightwise.backend.floatx`;
:func:`linear` returns its input unchanged. Complex inputs are accepted by the
functions defined for them (``exponential``, ``linear``, ``sigmoid``, ``silu``,
``softsign``, ``squareplus``, ``tanh``, ``tanh_shrink``) and refused by the rest.
Inputs that are no numbers (``None``, strings) and numeric arguments that are not
finite are refused with an error naming the argument.

Like Keras, :func:`serialize` writes a built-in activation as its name, and
:func:`get` resolves names, configs and callables (``None`` means :func:`linear`).

>>> relu([-2.0, 0.5, 3.0])
tensor([0.0000, 0.5000, 3.0000])
>>> get("swish") is silu
True
>>> serialize(swish)
'silu'
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
import torch.nn.functional as tnn

from weightwise import backend, ops
from weightwise.arguments import count, flag, invalid, real
from weightwise.ops import TensorLike
from weightwise.serialization import ObjectFamily, serialize_keras_object

__all__ = [
    "celu",
    "deserialize",
    "elu",
    "exponential",
    "gelu",
    "get",
    "glu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "serialize",
    "sigmoid",
    "silu",
    "soft_shrink",
    "softmax",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "sparsemax",
    "squareplus",
    "swish",
    "tanh",
    "tanh_shrink",
    "threshold",
]

Axis = Union[int, Sequence[int], None]


def _input(x: TensorLike, real: bool = True) -> torch.Tensor:
    """``x`` as a float tensor: integers and bools become floatx, floats keep their dtype.

    Complex tensors pass only where ``real`` is False (the functions defined for them).
    """
    x = ops.argument_tensor(x, "x", real=real)
    return x if x.is_floating_point() or x.is_complex() else x.to(backend.standardize_dtype(None))


# -- rectifiers ------------------------------------------------------------------------
@ops.traceable
def relu(
    x: TensorLike, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
) -> torch.Tensor:
    """Rectified linear unit: ``max(x, 0)`` with the defaults.

    In general, with ``t = threshold``: ``f(x) = x`` for ``x > t`` (at most
    ``max_value``, and then also at least 0), else ``0``; minus
    ``negative_slope * relu(t - x)``. This is Keras's computation step by step,
    quirks included.

    Args:
        x: input tensor.
        negative_slope: slope below the threshold.
        max_value: saturation value, or None for no saturation.
        threshold: values at or below it are damped or set to zero.

    >>> x = [-10.0, -5.0, 0.0, 5.0, 10.0]
    >>> relu(x)
    tensor([ 0.,  0.,  0.,  5., 10.])
    >>> relu(x, negative_slope=0.5)
    tensor([-5.0000, -2.5000,  0.0000,  5.0000, 10.0000])
    >>> relu(x, max_value=5.0)
    tensor([0., 0., 0., 5., 5.])
    >>> relu(x, threshold=5.0)
    tensor([ 0.,  0.,  0.,  0., 10.])
    """
    if type(x) is torch.Tensor and x.is_floating_point() and negative_slope == 0.0 and max_value is None \
            and threshold == 0.0:
        return tnn.relu(x)  # the default call, on every hidden layer: skip the argument checks
    negative_slope = real(negative_slope, "negative_slope")
    threshold = real(threshold, "threshold")
    if max_value is not None:
        max_value = real(max_value, "max_value")
    x = _input(x)
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return tnn.leaky_relu(x, negative_slope=negative_slope)
        negative_part = tnn.relu(-x + threshold) if threshold != 0 else tnn.relu(-x)
    clip_max = max_value is not None
    if threshold != 0:
        x = torch.where(x > threshold, x, torch.zeros((), dtype=x.dtype, device=x.device))
    elif max_value == 6:
        x = tnn.relu6(x)
        clip_max = False
    else:
        x = tnn.relu(x)
    if clip_max:
        x = torch.clamp(x, 0.0, max_value)
    if negative_slope != 0.0:
        x = x - negative_slope * negative_part
    return x


@ops.traceable
def leaky_relu(x: TensorLike, negative_slope: float = 0.2) -> torch.Tensor:
    """Leaky ReLU: ``x`` for ``x >= 0``, ``negative_slope * x`` otherwise.

    >>> leaky_relu([-1.0, 0.0, 2.0])
    tensor([-0.2000,  0.0000,  2.0000])
    """
    return tnn.leaky_relu(_input(x), negative_slope=real(negative_slope, "negative_slope"))


@ops.traceable
def relu6(x: TensorLike) -> torch.Tensor:
    """ReLU capped at 6: ``min(max(x, 0), 6)``.

    >>> relu6([-3.0, 0.5, 8.0])
    tensor([0.0000, 0.5000, 6.0000])
    """
    return tnn.relu6(_input(x))


@ops.traceable
def elu(x: TensorLike, alpha: float = 1.0) -> torch.Tensor:
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    >>> elu([-1.0, 0.0, 1.0])
    tensor([-0.6321,  0.0000,  1.0000])
    """
    return tnn.elu(_input(x), real(alpha, "alpha"))


@ops.traceable
def selu(x: TensorLike) -> torch.Tensor:
    """Scaled ELU: ``scale * x`` for ``x > 0``, ``scale * alpha * (exp(x) - 1)`` otherwise.

    ``alpha = 1.67326324`` and ``scale = 1.05070098`` (Klambauer et al., 2017).

    >>> selu([-1.0, 0.0, 1.0])
    tensor([-1.1113,  0.0000,  1.0507])
    """
    return tnn.selu(_input(x))


@ops.traceable
def celu(x: TensorLike, alpha: float = 1.0) -> torch.Tensor:
    """Continuously differentiable ELU: ``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``.

    >>> celu([-1.0, 0.0, 1.0], alpha=2.0)
    tensor([-0.7869,  0.0000,  1.0000])
    """
    alpha = real(alpha, "alpha")
    if alpha == 0:
        raise invalid("alpha", "a nonzero float", alpha)
    return tnn.celu(_input(x), alpha=alpha)


@ops.traceable
def gelu(x: TensorLike, approximate: bool = False) -> torch.Tensor:
    """Gaussian error linear unit: ``x * P(X <= x)`` with ``X ~ N(0, 1)``.

    Exact: ``0.5 * x * (1 + erf(x / sqrt(2)))``. With ``approximate=True``:
    ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3)))``.

    >>> gelu([-1.0, 0.0, 1.0])
    tensor([-0.1587,  0.0000,  0.8413])
    >>> gelu([-1.0, 0.0, 1.0], approximate=True)
    tensor([-0.1588,  0.0000,  0.8412])
    """
    approximate = flag(approximate, "approximate")
    return tnn.gelu(_input(x), approximate="tanh" if approximate else "none")


@ops.traceable
def silu(x: TensorLike) -> torch.Tensor:
    """Sigmoid linear unit, also called swish: ``x * sigmoid(x)``.

    ``swish`` is the same function; both serialize as ``'silu'``, as in Keras.

    >>> silu([-1.0, 0.0, 1.0])
    tensor([-0.2689,  0.0000,  0.7311])
    """
    return tnn.silu(_input(x, real=False))


swish = silu


@ops.traceable
def hard_silu(x: TensorLike) -> torch.Tensor:
    """Hard SiLU (hard swish): ``x * relu6(x + 3) / 6``.

    ``hard_swish`` is the same function.

    >>> hard_silu([-4.0, 0.0, 1.0, 4.0])
    tensor([-0.0000, 0.0000, 0.6667, 4.0000])
    """
    return tnn.hardswish(_input(x))


hard_swish = hard_silu


@ops.traceable
def mish(x: TensorLike) -> torch.Tensor:
    """Mish: ``x * tanh(softplus(x))``.

    >>> mish([-1.0, 0.0, 1.0])
    tensor([-0.3034,  0.0000,  0.8651])
    """
    x = _input(x)
    return x * torch.tanh(tnn.softplus(x))


# -- squashing functions ---------------------------------------------------------------
@ops.traceable
def sigmoid(x: TensorLike) -> torch.Tensor:
    """Logistic sigmoid: ``1 / (1 + exp(-x))``.

    >>> sigmoid([-1.0, 0.0, 1.0])
    tensor([0.2689, 0.5000, 0.7311])
    """
    return tnn.sigmoid(_input(x, real=False))


@ops.traceable
def hard_sigmoid(x: TensorLike) -> torch.Tensor:
    """Hard sigmoid: ``0`` for ``x <= -3``, ``1`` for ``x >= 3``, ``x / 6 + 0.5`` between.

    This is Keras 3's definition (``relu6(x + 3) / 6``); tf.keras 2 used ``0.2 * x + 0.5``.

    >>> hard_sigmoid([-4.0, 0.0, 1.5, 4.0])
    tensor([0.0000, 0.5000, 0.7500, 1.0000])
    """
    return tnn.hardsigmoid(_input(x))


@ops.traceable
def sparse_sigmoid(x: TensorLike) -> torch.Tensor:
    """Sparse sigmoid: ``0`` for ``x <= -1``, ``1`` for ``x >= 1``, ``(x + 1) / 2`` between.

    >>> sparse_sigmoid([-2.0, 0.0, 0.5, 2.0])
    tensor([0.0000, 0.5000, 0.7500, 1.0000])
    """
    x = _input(x)
    zero = torch.tensor(0.0, device=x.device, dtype=x.dtype)
    one = torch.tensor(1.0, device=x.device, dtype=x.dtype)
    return torch.where(x <= -1, zero, torch.where(x >= 1, one, 0.5 * (x + 1)))


@ops.traceable
def log_sigmoid(x: TensorLike) -> torch.Tensor:
    """Log of the sigmoid: ``-softplus(-x)``, computed stably.

    >>> log_sigmoid([-1.0, 0.0, 1.0])
    tensor([-1.3133, -0.6931, -0.3133])
    """
    return tnn.logsigmoid(_input(x))


@ops.traceable
def tanh(x: TensorLike) -> torch.Tensor:
    """Hyperbolic tangent: ``(exp(x) - exp(-x)) / (exp(x) + exp(-x))``.

    >>> tanh([-1.0, 0.0, 1.0])
    tensor([-0.7616,  0.0000,  0.7616])
    """
    return torch.tanh(_input(x, real=False))


@ops.traceable
def hard_tanh(x: TensorLike) -> torch.Tensor:
    """Hard tanh: ``x`` clipped to ``[-1, 1]``.

    >>> hard_tanh([-2.0, 0.5, 2.0])
    tensor([-1.0000,  0.5000,  1.0000])
    """
    return tnn.hardtanh(_input(x), min_val=-1.0, max_val=1.0)


@ops.traceable
def softsign(x: TensorLike) -> torch.Tensor:
    """Softsign: ``x / (|x| + 1)``.

    >>> softsign([-1.0, 0.0, 3.0])
    tensor([-0.5000,  0.0000,  0.7500])
    """
    return tnn.softsign(_input(x, real=False))


# -- smooth rectifiers and other elementwise functions ---------------------------------
@ops.traceable
def softplus(x: TensorLike) -> torch.Tensor:
    """Softplus: ``log(exp(x) + 1)`` (``x`` itself above 20, as torch computes it).

    >>> softplus([-1.0, 0.0, 1.0])
    tensor([0.3133, 0.6931, 1.3133])
    """
    return tnn.softplus(_input(x))


@ops.traceable
def sparse_plus(x: TensorLike) -> torch.Tensor:
    """Sparse plus: ``0`` for ``x <= -1``, ``(x + 1) ** 2 / 4`` for ``-1 < x < 1``, ``x`` for ``x >= 1``.

    >>> sparse_plus([-2.0, 0.0, 2.0])
    tensor([0.0000, 0.2500, 2.0000])
    """
    x = _input(x)
    return torch.where(x <= -1, torch.zeros_like(x), torch.where(x < 1, (1 / 4) * (x + 1) ** 2, x))


@ops.traceable
def squareplus(x: TensorLike, b: float = 4) -> torch.Tensor:
    """Squareplus: ``(x + sqrt(x ** 2 + b)) / 2``.

    >>> squareplus([-1.0, 0.0, 1.0])
    tensor([0.6180, 1.0000, 1.6180])
    """
    b = real(b, "b", low=0)
    x = _input(x, real=False)
    return (x + torch.sqrt(x**2 + b)) / 2


@ops.traceable
def exponential(x: TensorLike) -> torch.Tensor:
    """Exponential: ``exp(x)``.

    >>> exponential([0.0, 1.0])
    tensor([1.0000, 2.7183])
    """
    return torch.exp(_input(x, real=False))


def linear(x: TensorLike) -> torch.Tensor:
    """Identity: ``f(x) = x``. A tensor, or a symbolic tensor of a functional model, is returned as it is.

    >>> linear([-1.0, 2.0])
    tensor([-1.,  2.])
    """
    if isinstance(x, ops.SymbolicTensor):
        return x  # Keras records no operation for the identity either.
    return ops.argument_tensor(x, "x")


@ops.traceable
def tanh_shrink(x: TensorLike) -> torch.Tensor:
    """Tanh shrink: ``x - tanh(x)``.

    >>> tanh_shrink([-1.0, 0.0, 1.0])
    tensor([-0.2384,  0.0000,  0.2384])
    """
    return tnn.tanhshrink(_input(x, real=False))


@ops.traceable
def hard_shrink(x: TensorLike, threshold: float = 0.5) -> torch.Tensor:
    """Hard shrink: ``x`` where ``|x| > threshold``, else ``0``.

    >>> hard_shrink([-1.0, 0.3, 1.0])
    tensor([-1.,  0.,  1.])
    """
    return tnn.hardshrink(_input(x), lambd=real(threshold, "threshold"))


@ops.traceable
def soft_shrink(x: TensorLike, threshold: float = 0.5) -> torch.Tensor:
    """Soft shrink: ``x - threshold`` above ``threshold``, ``x + threshold`` below ``-threshold``, else ``0``.

    >>> soft_shrink([-1.0, 0.3, 1.0])
    tensor([-0.5000,  0.0000,  0.5000])
    """
    return tnn.softshrink(_input(x), lambd=real(threshold, "threshold", low=0))


@ops.traceable
def threshold(x: TensorLike, threshold: float, default_value: float) -> torch.Tensor:
    """Threshold: ``x`` where ``x > threshold``, else ``default_value``.

    >>> threshold([-1.0, 0.5, 2.0], 1.0, 0.0)
    tensor([0., 0., 2.])
    """
    return tnn.threshold(
        _input(x), threshold=real(threshold, "threshold"), value=real(default_value, "default_value")
    )


# -- functions over an axis ------------------------------------------------------------
def _over_axis(fn: Callable[..., torch.Tensor], x: torch.Tensor, axis: Axis) -> torch.Tensor:
    """Apply ``fn(…, dim=-1)`` jointly over ``axis`` (an int, several ints, or every axis)."""
    dtype = x.dtype
    if dtype == torch.float16 and x.device.type == "cpu":
        x = x.float()  # as Keras: torch's CPU (log_)softmax is computed in float32 for float16
    if axis is None:
        out = fn(x.reshape(-1), dim=-1).reshape(x.shape)
    elif isinstance(axis, (tuple, list)):
        rank = x.dim()
        axes = [_canonical_axis(a, rank) for a in axis]
        if not axes or len(set(axes)) != len(axes):
            raise ValueError(
                f"Invalid value for argument `axis`: expected distinct axes, at least one. Received: axis={axis!r}"
            )
        keep = [v for v in range(rank) if v not in axes]
        order = [*keep, *axes]
        moved = x.permute(order)
        flat = moved.reshape(*[x.shape[v] for v in keep], -1)
        out = fn(flat, dim=-1).reshape(moved.shape)
        out = out.permute(sorted(range(rank), key=order.__getitem__))
    else:
        out = fn(x, dim=_canonical_axis(axis, max(x.dim(), 1)))
    return out.to(dtype)


def _canonical_axis(axis: Any, rank: int) -> int:
    return count(axis, "axis", low=-rank, high=rank - 1) % rank


def _warn_if_size_one(x: torch.Tensor, axis: Axis) -> None:
    if isinstance(axis, int) and -x.dim() <= axis < x.dim() and x.shape[axis] == 1:
        warnings.warn(
            f"You are using a softmax over axis {axis} of a tensor of shape {tuple(x.shape)}. This axis has size 1. "
            "The softmax operation will always return the value 1, which is likely not what you intended. "
            "Did you mean to use a sigmoid instead?",
            stacklevel=3,
        )


@ops.traceable
def softmax(x: TensorLike, axis: Axis = -1) -> torch.Tensor:
    """Softmax over ``axis``: ``exp(x) / sum(exp(x), axis)``, computed stably.

    ``axis`` may be an int, a tuple of ints (normalized jointly) or None (every
    axis). As in Keras, a softmax over an axis of size 1 warns.

    >>> softmax([[1.0, 2.0, 3.0]])
    tensor([[0.0900, 0.2447, 0.6652]])
    >>> softmax([[1.0, 1.0], [1.0, 1.0]], axis=(0, 1))
    tensor([[0.2500, 0.2500],
            [0.2500, 0.2500]])
    """
    x = _input(x)
    _warn_if_size_one(x, axis)
    return _over_axis(tnn.softmax, x, axis)


@ops.traceable
def log_softmax(x: TensorLike, axis: Axis = -1) -> torch.Tensor:
    """Log-softmax over ``axis``: ``x - max(x) - log(sum(exp(x - max(x)), axis))``.

    >>> log_softmax([-1.0, 0.0, 1.0])
    tensor([-2.4076, -1.4076, -0.4076])
    """
    return _over_axis(tnn.log_softmax, _input(x), axis)


@ops.traceable
def glu(x: TensorLike, axis: int = -1) -> torch.Tensor:
    """Gated linear unit: split ``x`` in halves ``a, b`` along ``axis``; ``a * sigmoid(b)``.

    >>> glu([1.0, 2.0, 0.0, 100.0])
    tensor([0.5000, 2.0000])
    """
    x = _input(x)
    dim = _canonical_axis(axis, max(x.dim(), 1))
    if x.dim() == 0 or x.shape[dim] % 2 != 0:
        raise ValueError(f"axis size must be divisible by 2. Received: x.shape={tuple(x.shape)} with axis={axis}")
    return tnn.glu(x, dim=dim)


@ops.traceable
def sparsemax(x: TensorLike, axis: int = -1) -> torch.Tensor:
    """Sparsemax: the Euclidean projection of ``x`` onto the probability simplex along ``axis``.

    ``max(x - tau, 0)``: with ``z`` the values sorted in decreasing order, ``k``
    the largest ``j`` with ``1 + j * z_j > z_1 + ... + z_j``, and
    ``tau = (z_1 + ... + z_k - 1) / k``. Each slice sums to 1 and, unlike
    softmax, small values get exact zeros (Martins & Astudillo, 2016).

    Keras 3.15 computes ``tau`` from the sum of the first ``k`` partial sums
    instead, which is right only when ``k == 1``; its results do not sum to 1
    otherwise. This follows the paper, and agrees with Keras whenever ``k == 1``.

    >>> sparsemax([1.0, 2.0, 5.0])
    tensor([0., 0., 1.])
    >>> sparsemax([0.5, 0.8, 0.1])
    tensor([0.3500, 0.6500, 0.0000])
    """
    logits = _input(x)
    axis = _canonical_axis(axis, max(logits.dim(), 1))
    if logits.dim() == 0:
        return torch.ones_like(logits)
    logits_sorted, _ = torch.sort(logits, dim=axis, descending=True)
    logits_cumsum = torch.cumsum(logits_sorted, dim=axis)
    r = torch.arange(1, logits.size(axis) + 1, device=logits.device, dtype=logits.dtype)
    r_shape = [1] * logits.dim()
    r_shape[axis] = -1
    r = r.view(r_shape)
    support = logits_sorted - (logits_cumsum - 1) / r > 0
    k = torch.sum(support, dim=axis, keepdim=True)
    # The support is a prefix of the sorted values: its sum is the k-th partial sum.
    in_support = torch.where(support, logits_sorted, torch.zeros_like(logits_sorted))
    support_sum = torch.sum(in_support, dim=axis, keepdim=True)
    tau = (support_sum - 1) / k
    return torch.clamp(logits - tau, min=0.0)


# -- get / serialize / deserialize -----------------------------------------------------
_FAMILY = ObjectFamily(
    "activation",
    "keras.activations",
    [
        celu,
        elu,
        exponential,
        gelu,
        glu,
        hard_shrink,
        hard_sigmoid,
        hard_silu,
        hard_tanh,
        leaky_relu,
        linear,
        log_sigmoid,
        log_softmax,
        mish,
        relu,
        relu6,
        selu,
        sigmoid,
        silu,
        soft_shrink,
        softmax,
        softplus,
        softsign,
        sparse_plus,
        sparse_sigmoid,
        sparsemax,
        squareplus,
        tanh,
        tanh_shrink,
        threshold,
    ],
    # Keras's aliases, found as strings and as function names in configs.
    extra_names={"swish": silu, "hard_swish": hard_silu},
)


def _builtin_name(activation: Any) -> str | None:
    """The canonical name of a built-in activation, or None for anything else."""
    name = getattr(activation, "__name__", None)
    if isinstance(name, str) and _FAMILY.builtins.get(name) is activation:
        return name
    return None


def serialize(activation: Any) -> str | dict[str, Any] | None:
    """Serialize an activation as Keras 3 does: a built-in becomes its name.

    Aliases serialize as the canonical name (``swish`` as ``'silu'``). Anything
    else (a registered function, an object with ``get_config``) gets the Keras 3
    config dict of :func:`weightwise.serialization.serialize_keras_object`.

    >>> serialize(relu)
    'relu'
    >>> serialize(hard_swish)
    'hard_silu'
    """
    if activation is None:
        return None
    name = _builtin_name(activation)
    if name is not None:
        return name
    return serialize_keras_object(activation)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build an activation from its name or from a Keras config dict.

    Reads the name strings Keras writes, and the function config dicts
    ``keras.saving.serialize_keras_object`` writes, for built-ins and for
    registered or ``custom_objects`` functions alike.

    >>> deserialize("gelu") is gelu
    True
    >>> deserialize({"module": "builtins", "class_name": "function", "config": "relu",
    ...              "registered_name": "function"}) is relu
    True
    """
    return _FAMILY.deserialize(config, custom_objects)


def get(identifier: Any) -> Callable[..., Any]:
    """Resolve an activation identifier: ``None``, a name, a config dict or a callable.

    ``None`` gives :func:`linear`, as in Keras. Callables (functions, objects,
    classes) are returned as they are. Anything else raises a ``ValueError``.

    >>> get(None) is linear
    True
    >>> get("relu")([-1.0, 1.0])
    tensor([0., 1.])
    >>> get(42)
    Traceback (most recent call last):
    ...
    ValueError: Could not interpret activation function identifier: 42. Expected None, a string id, a config dict, or a callable.
    """
    if identifier is None:
        return linear
    obj = deserialize(identifier) if isinstance(identifier, (str, Mapping)) else identifier
    if callable(obj):
        return obj
    raise ValueError(
        f"Could not interpret activation function identifier: {identifier!r}. "
        "Expected None, a string id, a config dict, or a callable."
    )

