"""An upper bound on the Lipschitz constant of a sequential stack of layers.

A function ``f`` is ``L``-Lipschitz when ``||f(x) - f(y)|| <= L * ||x - y||`` for all inputs
(Euclidean norms of the whole tensors). A composition's constant is at most the product of
its parts', so :func:`lipschitz_bound` multiplies one bound per layer. It describes the model
at inference, as ``model.eval()`` runs a torch model and as Keras layers run by default:
dropout and noise layers are the identity and batch normalization uses its moving
statistics. Biases never change a bound.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.ReLU())
>>> with torch.no_grad():
...     _ = model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
>>> lipschitz_bound(model)
3.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from weightwise import activations, binding, layers, ops
from weightwise.arguments import echo
from weightwise.models import Sequential

__all__ = ["lipschitz_bound"]


def _spectral_norm(w: torch.Tensor, out_axis: int, group_axis: int, groups: int) -> float:
    """The largest spectral norm among the per-group blocks of a kernel, each seen as a matrix.

    ``group_axis`` is split into ``groups`` equal chunks (the blocks of a grouped layer); in each
    block ``out_axis`` becomes the columns and every other axis is flattened into the rows.
    """
    w = ops._plain(w.detach())  # a sharded kernel whole (a collective: every rank asks)
    w = w.to(torch.complex128 if w.is_complex() else torch.float64)
    rank = w.dim()
    out_axis, group_axis = out_axis % rank, group_axis % rank
    moved = torch.movedim(w, group_axis, 0)
    out_at = 0 if out_axis == group_axis else out_axis + (out_axis < group_axis)
    blocks = moved.unflatten(0, (groups, -1))
    out_at += 1
    matrices = torch.movedim(blocks, out_at, -1).reshape(groups, -1, blocks.shape[out_at])
    return float(torch.linalg.matrix_norm(matrices, ord=2).max())


def _overlap(kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...] | None = None) -> int:
    """The most windows (or kernel taps) one input entry can fall in: ``prod min(k, (k-1)*d // s + 1)``."""
    dilation = dilation or (1,) * len(kernel)
    return math.prod(min(k, (k - 1) * d // s + 1) for k, s, d in zip(kernel, strides, dilation))


def _conv(w: torch.Tensor, out_axis: int, group_axis: int, groups: int, kernel: tuple[int, ...],
          strides: tuple[int, ...], dilation: tuple[int, ...]) -> float:
    """``sqrt(c) * sigma``: sigma of the reshaped kernel (per group), c the most taps one input entry meets.

    Output position ``p`` is the matrix times the patch of inputs it sees, and each input
    entry lies in at most ``c`` patches, so ``||conv(x)||^2 <= sigma^2 * c * ||x||^2``.
    """
    return math.sqrt(_overlap(kernel, strides, dilation)) * _spectral_norm(w, out_axis, group_axis, groups)


def _transposed(w: torch.Tensor, out_axis: int, in_axis: int, group_axis: int, groups: int,
                kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]) -> float:
    """The smaller of two true bounds of a transposed convolution.

    It is the adjoint of the strided convolution that maps its outputs back to its inputs
    (same norm: the bound of that convolution), and it is also a stride-1 convolution of the
    zero-upsampled input, whose output units are the columns (each input tap met at most
    ``prod(kernel)`` times).
    """
    as_adjoint = _conv(w, in_axis, group_axis, groups, kernel, strides, dilation)
    upsampled = math.sqrt(math.prod(kernel)) * _spectral_norm(w, out_axis, group_axis, groups)
    return min(as_adjoint, upsampled)


def _average_pool(window: tuple[int, ...], strides: tuple[int, ...], full_windows: bool) -> float:
    """``sqrt(c / n)`` when every window divides by its size ``n``; ``sqrt(c)`` when it may divide by fewer."""
    overlap = _overlap(window, strides)
    return math.sqrt(overlap / math.prod(window)) if full_windows else math.sqrt(overlap)


# Keras activations by name: the largest slope each can have.
_ACTIVATION_SLOPES = {
    "linear": 1.0, "relu": 1.0, "relu6": 1.0, "leaky_relu": 1.0, "elu": 1.0, "celu": 1.0, "tanh": 1.0,
    "hard_tanh": 1.0, "softsign": 1.0, "softplus": 1.0, "sigmoid": 0.25, "hard_sigmoid": 1.0 / 6.0,
    "softmax": 0.5, "selu": 1.0507009873554805 * 1.6732632423543772,
}


def _activation(function: Any, where: str) -> float:
    if function is None:
        return 1.0
    name = activations.serialize(function)
    if isinstance(name, str) and name in _ACTIVATION_SLOPES:
        return _ACTIVATION_SLOPES[name]
    raise ValueError(f"lipschitz_bound does not know a bound for the activation {echo(name)} of {where}. "
                     f"Known activations: {sorted(_ACTIVATION_SLOPES)}.")


def _torch_tuple(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def _batch_norm(gamma: torch.Tensor | None, variance: torch.Tensor, epsilon: float) -> float:
    """``max |gamma| / sqrt(variance + epsilon)``: each channel is scaled by that factor."""
    scale = torch.rsqrt(ops._plain(variance.detach()).double() + epsilon)
    if gamma is not None:
        scale = ops._plain(gamma.detach()).double().abs() * scale
    return float(scale.max()) if scale.numel() else 1.0


# Layers of either kind that change no shape-dependent quantity: a constant, or a function of the layer.
_SHARED: list[tuple[tuple[type, ...], Callable[[Any], float]]] = [
    ((nn.ReLU, nn.ReLU6, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Softplus, nn.CELU, nn.Identity, nn.Flatten,
      nn.Unflatten, nn.modules.dropout._DropoutNd, layers.Dropout, layers.GaussianNoise, layers.GaussianDropout,
      layers.InputLayer, layers.Identity, layers.Flatten, layers.Reshape, layers.Permute, layers.GlobalPooling),
     lambda layer: 1.0),
    ((nn.LeakyReLU, layers.LeakyReLU), lambda layer: max(1.0, abs(layer.negative_slope))),
    ((nn.ELU, layers.ELU), lambda layer: max(1.0, layer.alpha)),
    ((nn.Softmax, layers.Softmax), lambda layer: 0.5),
    ((nn.Sigmoid,), lambda layer: 0.25),
    ((nn.Hardsigmoid,), lambda layer: 1.0 / 6.0),
]
_POOL_RANKS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}


def _pool_rank(module: nn.Module) -> int:
    return next(rank for kind, rank in _POOL_RANKS.items() if isinstance(module, kind))


def _torch_layer(module: nn.Module, where: str) -> float | None:
    """The bound of a torch layer, or ``None`` if it is not one this module knows."""
    conv = nn.modules.conv
    if isinstance(module, nn.Linear):
        return _spectral_norm(module.weight, 0, 0, 1)
    if isinstance(module, conv._ConvNd):
        if module.padding_mode != "zeros":
            raise ValueError(f"lipschitz_bound knows convolutions with zero padding only; {where} has "
                             f"padding_mode={module.padding_mode!r}, which repeats input entries.")
        rank = module.weight.dim() - 2
        geometry = (_torch_tuple(module.kernel_size, rank), _torch_tuple(module.stride, rank),
                    _torch_tuple(module.dilation, rank))
        if isinstance(module, conv._ConvTransposeNd):  # (in, out / groups, *k)
            return _transposed(module.weight, 1, 0, 0, module.groups, *geometry)
        return _conv(module.weight, 0, 0, module.groups, *geometry)  # (out, in / groups, *k)
    if isinstance(module, nn.PReLU):
        return max(1.0, float(module.weight.detach().abs().max()))
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.running_var is None:
            raise ValueError(f"lipschitz_bound needs the running statistics of {where} "
                             "(track_running_stats=False normalizes by each batch's own).")
        return _batch_norm(module.weight, module.running_var, module.eps)
    pooling = nn.modules.pooling
    if isinstance(module, pooling._MaxPoolNd):
        rank = _pool_rank(module)
        kernel = _torch_tuple(module.kernel_size, rank)
        return math.sqrt(_overlap(kernel, _torch_tuple(module.stride or module.kernel_size, rank),
                                  _torch_tuple(module.dilation, rank)))
    if isinstance(module, pooling._AvgPoolNd):
        rank = _pool_rank(module)
        kernel = _torch_tuple(module.kernel_size, rank)
        strides = _torch_tuple(module.stride or module.kernel_size, rank)
        if getattr(module, "divisor_override", None):
            return math.sqrt(_overlap(kernel, strides) * math.prod(kernel)) / module.divisor_override
        return _average_pool(kernel, strides, module.count_include_pad and not module.ceil_mode)
    if isinstance(module, (pooling._AdaptiveAvgPoolNd, pooling._AdaptiveMaxPoolNd)) \
            and all(size == 1 for size in _torch_tuple(module.output_size, 1)):
        return 1.0  # global pooling: a mean or a max of each channel
    return None


def _keras_layer(layer: layers.Layer, where: str) -> float | None:
    """The bound of a weightwise (Keras-style) layer, or ``None`` if it is not one this module knows."""
    if isinstance(layer, layers.Dense):
        return _spectral_norm(layer.kernel, -1, -1, 1) * _activation(layer.activation, where)
    if isinstance(layer, layers.ConvTranspose):  # (*k, out, in)
        return _transposed(layer.kernel, -2, -1, -1, 1, layer.kernel_size, layer.strides,
                           layer.dilation_rate) * _activation(layer.activation, where)
    if isinstance(layer, layers.Conv):  # (*k, in / groups, out)
        return _conv(layer.kernel, -1, -1, layer.groups, layer.kernel_size, layer.strides,
                     layer.dilation_rate) * _activation(layer.activation, where)
    if isinstance(layer, layers.Activation):
        return _activation(layer.activation, where)
    if isinstance(layer, layers.ReLU):
        if layer.threshold:
            raise ValueError(f"{where} jumps at its threshold={layer.threshold!r}: it has no Lipschitz bound.")
        return max(1.0, abs(layer.negative_slope))
    if isinstance(layer, layers.BatchNormalization):
        return _batch_norm(layer.gamma, layer.moving_variance, layer.epsilon)
    if isinstance(layer, layers.Pooling):
        if layer.pool_type == "max":
            return math.sqrt(_overlap(layer.pool_size, layer.strides))
        return _average_pool(layer.pool_size, layer.strides, layer.padding == "valid")
    return None


def _stack(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The layers of a sequential stack in order, nested stacks flattened, with their names."""
    if isinstance(model, Sequential):
        for layer in model.layers:
            yield from _stack(layer, f"{prefix}{layer.name}.")
    elif type(model) is nn.Sequential:
        for name, child in model.named_children():
            yield from _stack(child, f"{prefix}{name}.")
    else:
        yield prefix.rstrip(".") or (model.name if isinstance(model, layers.Layer) else type(model).__name__), model


def lipschitz_bound(model: nn.Module, *, per_layer: bool = False) -> float | list[tuple[str, float]]:
    """An upper bound on the Lipschitz constant of ``model``: the product of one bound per layer.

    ``model`` is a ``torch.nn.Sequential`` or a weightwise ``Sequential`` (nested ones are
    flattened), or one layer. With ``per_layer=True`` the result is the list of
    ``(name, bound)`` pairs whose product is the bound. Per layer:

    - ``nn.Linear`` / ``Dense``: the kernel's largest singular value ``sigma`` (exact,
      ``torch.linalg.matrix_norm(ord=2)``), times the bound of a Dense's ``activation``.
    - convolutions: ``sqrt(c) * sigma``, with ``sigma`` the largest singular value of the
      kernel reshaped to one column per output channel (Miyato et al., 2018; the largest
      over the blocks of a grouped convolution) and ``c = prod_i min(k_i, (k_i - 1) * d_i // s_i + 1)``
      the most windows one input entry falls in (``prod(kernel_size)`` at stride 1). This is a
      true bound of the convolution; ``sigma`` alone is not (a 3x3 kernel of ones has
      ``sigma = 3`` and a gain of 9 on a constant image). Transposed convolutions: the
      smaller of ``sqrt(c) * sigma`` of the adjoint view and ``sqrt(prod(kernel_size)) * sigma``.
      Only zero padding is known.
    - ReLU, ReLU6, LeakyReLU and ELU with slope or alpha at most 1 (else that value), CELU,
      Tanh, Hardtanh, Softsign, Softplus, Identity, Flatten, Reshape, Permute, Dropout and the
      noise layers, global pooling: 1. Sigmoid: 1/4. Hard sigmoid: 1/6. Softmax: 1/2. SELU: its
      ``scale * alpha``. PReLU: ``max(1, max |alpha|)``.
    - max pooling: ``sqrt(c)`` (1 when windows do not overlap); average pooling ``sqrt(c / n)``
      (``n`` the window size, at most 1), or ``sqrt(c)`` where a window may divide by fewer
      entries (Keras ``padding="same"``, torch ``count_include_pad=False`` or ``ceil_mode``).
    - batch normalization: ``max |gamma| / sqrt(moving_variance + epsilon)``.

    Anything else raises a ``ValueError`` naming the layer's position, name and type.

    >>> import weightwise as ww
    >>> model = ww.Sequential([ww.layers.Input(shape=(3,)), ww.layers.Dense(2, activation="sigmoid", name="out")])
    >>> with torch.no_grad():
    ...     _ = model.layers[0].kernel.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    >>> lipschitz_bound(model), lipschitz_bound(model, per_layer=True)
    (0.5, [('out', 0.5)])
    """
    binding.check_module(model, "model")
    if not isinstance(per_layer, bool):
        raise TypeError(f"Invalid value for argument `per_layer`: expected a bool. Received: per_layer={echo(per_layer)}")
    bounds = []
    for index, (name, layer) in enumerate(_stack(model)):
        where = f"layer {index} ({name!r}, {type(layer).__name__})"
        shared = next((bound_of for kinds, bound_of in _SHARED if isinstance(layer, kinds)), None)
        if shared is not None:
            bound = shared(layer)
        else:
            bound = (_keras_layer if isinstance(layer, layers.Layer) else _torch_layer)(layer, where)
        if bound is None:
            raise ValueError(f"lipschitz_bound does not know a bound for {where}. It knows linear, dense and "
                             "convolution layers, pointwise activations with bounded slope, pooling, batch "
                             "normalization, dropout and reshaping layers, in sequential stacks.")
        bounds.append((name, float(bound)))
    return bounds if per_layer else float(math.prod(bound for _, bound in bounds))
