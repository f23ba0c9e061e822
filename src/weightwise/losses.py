"""Keras 3 losses on torch tensors: per-sample functions and reducing ``Loss`` objects.

The functions (``mean_squared_error``, ``binary_crossentropy``, ...) return the
loss of each sample, reduced over the last axis as Keras's do, and compute what
Keras 3 computes on its torch backend: probabilities are clipped to
``[epsilon, 1 - epsilon]`` (``epsilon`` = :func:`weightwise.backend.epsilon`,
1e-7) before a logarithm, categorical predictions are divided by their sum,
logits go through torch's fused ``log_softmax`` / ``binary_cross_entropy_with_logits``.

A :class:`Loss` object calls its function and reduces the result with Keras's
rules (``reduction="sum_over_batch_size"``: the weighted sum divided by the
number of loss values, not by the sum of the weights):

>>> y_true = ops.convert_to_tensor([[0.0, 1.0], [0.0, 0.0]])
>>> y_pred = ops.convert_to_tensor([[1.0, 1.0], [1.0, 0.0]])
>>> mean_squared_error(y_true, y_pred)
tensor([0.5000, 0.5000])
>>> MeanSquaredError()(y_true, y_pred, sample_weight=[0.7, 0.3])
tensor(0.2500)

Dtypes: ``y_true`` is cast to ``y_pred``'s dtype (class indices stay integers
for the sparse loss). A ``Loss`` object computes in its ``dtype`` if given;
otherwise in ``y_pred``'s float dtype, with half precision widened to
``float32``. Keras's default is ``float32`` for every input (its ``floatx``),
so the one difference is that ``float64`` predictions stay ``float64`` here.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from weightwise import backend, ops
from weightwise.arguments import INT64_MAX, count, flag, invalid, is_int, real
from weightwise.serialization import ObjectFamily, serialize_keras_object, to_snake_case

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "KLDivergence",
    "Loss",
    "LossFunctionWrapper",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "huber",
    "kl_divergence",
    "mae",
    "mean_absolute_error",
    "mean_squared_error",
    "mse",
    "reduce_weighted_values",
    "serialize",
    "sparse_categorical_crossentropy",
    "squeeze_or_expand_to_same_rank",
]

REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


# -- shared helpers (Keras's keras/src/losses/loss.py) ----------------------------------
def squeeze_or_expand_to_same_rank(
    x1: torch.Tensor, x2: torch.Tensor, expand_rank_1: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make ranks equal when they differ by one and the longer has a last axis of 1, as Keras does.

    >>> a, b = squeeze_or_expand_to_same_rank(ops.zeros((4, 1)), ops.zeros((4,)))
    >>> tuple(a.shape), tuple(b.shape)
    ((4, 1), (4, 1))
    >>> a, b = squeeze_or_expand_to_same_rank(ops.zeros((4, 3, 1)), ops.zeros((4, 3)))
    >>> tuple(a.shape), tuple(b.shape)
    ((4, 3), (4, 3))
    """
    rank1, rank2 = x1.dim(), x2.dim()
    if rank1 == rank2:
        return x1, x2
    if rank1 == rank2 + 1 and x1.shape[-1] == 1:
        if rank2 == 1 and expand_rank_1:
            x2 = x2.unsqueeze(-1)
        else:
            x1 = x1.squeeze(-1)
    if rank2 == rank1 + 1 and x2.shape[-1] == 1:
        if rank1 == 1 and expand_rank_1:
            x1 = x1.unsqueeze(-1)
        else:
            x2 = x2.squeeze(-1)
    return x1, x2


def _standardize_reduction(reduction: Any) -> str | None:
    if (reduction is not None and not isinstance(reduction, str)) or reduction not in REDUCTIONS:
        raise ValueError(
            f"Invalid value for argument `reduction`. Expected one of {set(REDUCTIONS)}. "
            f"Received: reduction={reduction!r}"
        )
    return reduction


def _apply_mask(
    sample_weight: torch.Tensor | None, mask: torch.Tensor | None, dtype: torch.dtype, reduction: str | None
) -> torch.Tensor | None:
    if mask is None:
        return sample_weight
    if reduction in ("mean", "sum_over_batch_size"):
        # Valid entries weigh total/valid, so the mean runs over valid entries only.
        total = torch.tensor(float(mask.numel()), dtype=dtype, device=mask.device)
        valid = torch.sum(mask.to(dtype))
        weight = ops.divide_no_nan(total, valid)
        float_mask = torch.where(mask.bool(), weight, torch.zeros((), dtype=dtype, device=mask.device))
    else:
        float_mask = mask.to(dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight.to(dtype))
    if 0 < sample_weight.dim() < float_mask.dim():
        # One weight per sample weighs all its steps, as the docs promise; Keras's torch backend fails to
        # broadcast a (batch,) weight against a (batch, steps) mask, or silently pairs the wrong axes when
        # steps == batch.
        sample_weight = sample_weight.reshape(sample_weight.shape + (1,) * (float_mask.dim() - sample_weight.dim()))
    # Never in place: Keras's `*=` here rescales the caller's weights, so the weighted metrics that read
    # them next count the masked mean's total/valid factor too; ours see the weights they were given.
    return sample_weight * float_mask


def reduce_weighted_values(
    values: Any,
    sample_weight: Any = None,
    mask: Any = None,
    reduction: str | None = "sum_over_batch_size",
    dtype: Any = None,
) -> torch.Tensor:
    """Weight per-sample losses and reduce them exactly as Keras 3 does.

    - ``"sum"``: ``sum(values * sample_weight)``;
    - ``"sum_over_batch_size"`` / ``"mean"``: that sum divided by the number
      of loss values (not by the sum of the weights), 0 if there are none;
    - ``"mean_with_sample_weight"``: divided by ``sum(sample_weight)`` instead;
    - ``None`` / ``"none"``: the weighted values, unreduced (so is a scalar).

    ``sample_weight`` of rank one less or more than ``values`` (with a last
    axis of 1) is squeezed or expanded to match, then broadcast.

    >>> reduce_weighted_values(ops.convert_to_tensor([1.0, 3.0]), sample_weight=[1.0, 0.0])
    tensor(0.5000)
    >>> reduce_weighted_values(ops.convert_to_tensor([1.0, 3.0]), [1.0, 0.0], reduction="mean_with_sample_weight")
    tensor(1.)
    """
    reduction = _standardize_reduction(reduction)
    values = ops.convert_to_tensor(values)
    target = backend.standardize_dtype(dtype) if dtype is not None else _float_dtype(values.dtype)
    values = values.to(target)
    if sample_weight is not None:
        sample_weight = ops.argument_tensor(sample_weight, "sample_weight", real=True)
        sample_weight = sample_weight.to(dtype=target, device=values.device)
    if mask is not None:
        mask = ops.convert_to_tensor(mask).to(device=values.device)
    sample_weight = _apply_mask(sample_weight, mask, target, reduction)
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        _check_weights_fit(values, sample_weight)
        values = values * sample_weight
    if reduction is None or reduction == "none" or tuple(values.shape) in ((), (0,)):
        return values
    loss = torch.sum(values)
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = torch.sum(sample_weight).to(loss.dtype)
            loss = ops.divide_no_nan(loss, divisor)
        elif values.numel():
            # A Python count: a tensor made here would be a new constant in every compiled step.
            loss = loss / values.numel()
        else:
            loss = loss * 0
    return loss


def _check_weights_fit(values: torch.Tensor, sample_weight: torch.Tensor) -> None:
    """Sample weights must broadcast to the values' shape (a scalar value may take any weights, as in Keras)."""
    try:
        shape = torch.broadcast_shapes(values.shape, sample_weight.shape)
    except RuntimeError:
        shape = None
    if shape is None or (values.dim() > 0 and shape != values.shape):
        raise ValueError(
            "Invalid value for argument `sample_weight`: its shape must broadcast to the shape of the loss "
            f"values. Received: sample_weight.shape={tuple(sample_weight.shape)} for loss values of shape "
            f"{tuple(values.shape)}"
        )


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss is computed in for predictions of ``dtype``: half widened, ints floatx."""
    return backend.compute_dtype(dtype)


def _prediction(y_pred: Any) -> torch.Tensor:
    y_pred = ops.argument_tensor(y_pred, "y_pred", real=True)
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(backend.standardize_dtype(None))
    return y_pred


def _target(y_true: Any, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    y_true = ops.argument_tensor(y_true, "y_true", real=True)
    return y_true.to(dtype=like.dtype if dtype is None else dtype, device=like.device)


def _validate_axis(axis: Any, rank: int | None = None) -> int:
    """An int axis; with ``rank``, one that exists in a tensor of that rank."""
    if not is_int(axis):
        raise invalid("axis", "an int", axis)
    if rank is not None and not -max(rank, 1) <= axis < max(rank, 1):
        raise ValueError(
            f"Invalid value for argument `axis`: out of range for predictions of rank {rank}. Received: axis={axis}"
        )
    return int(axis)


def _validate_label_smoothing(value: Any) -> float:
    return real(value, "label_smoothing", low=0, high=1)


def _validate_delta(value: Any) -> float:
    # delta = 0 makes every Huber loss 0 (and its gradient 0): nothing would train.
    return real(value, "delta", low=0, low_open=True)


def _same_shape_or_broadcast(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    rule: str = "Arguments `y_true` and `y_pred` must have the same shape (or shapes that broadcast)",
    shown: tuple[Any, Any] | None = None,
) -> None:
    """A ``ValueError`` stating ``rule`` when the two shapes do not broadcast (``shown``: the shapes to report)."""
    try:
        torch.broadcast_shapes(y_true.shape, y_pred.shape)
    except RuntimeError:
        true_shape, pred_shape = shown or (y_true.shape, y_pred.shape)
        raise ValueError(
            f"{rule}. Received: y_true.shape={tuple(true_shape)}, y_pred.shape={tuple(pred_shape)}"
        ) from None


def _validate_ignore_class(value: Any) -> int | None:
    # A label tensor is compared with it, so it must fit in int64.
    return count(value, "ignore_class", low=-INT64_MAX, high=INT64_MAX, allow_none=True)


def _check_class_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Sparse labels are class indices: whole numbers in ``[0, num_classes)``."""
    if labels.is_meta or labels.numel() == 0 or torch.compiler.is_compiling():
        return
    whole = labels == labels.round() if labels.is_floating_point() else torch.ones_like(labels, dtype=torch.bool)
    inside = whole & (labels >= 0) & (labels < num_classes)
    if not bool(inside.all()):
        bad = labels[~inside].flatten()[:5].tolist()
        raise ValueError(
            f"Invalid value for argument `y_true`: class labels must be whole numbers in [0, {num_classes}) "
            f"for predictions of {num_classes} classes. Received labels outside it: {bad}"
        )


def _check_binary_targets(y_true: torch.Tensor) -> None:
    """Binary cross-entropy targets are probabilities: anything outside [0, 1] (or NaN) is refused.

    torch raises an internal error for such targets without logits and returns a meaningless
    number with logits; Keras does the same on its torch backend.
    """
    if y_true.is_meta or y_true.numel() == 0:
        return
    inside = (y_true >= 0) & (y_true <= 1)
    if torch.compiler.is_compiling():
        # Reading the check back would break the compiled graph: the program asserts it instead.
        torch._assert_async(inside.all(), "Invalid value for argument `y_true`: binary cross-entropy targets "
                            "must be in [0, 1].")
        return
    if not bool(inside.all()):
        bad = y_true[~inside].flatten()[:5].tolist()
        raise ValueError(
            "Invalid value for argument `y_true`: binary cross-entropy targets must be in [0, 1]. "
            f"Received values outside it: {bad}"
        )


# -- per-sample functions ---------------------------------------------------------------
def _regression_pair(y_true: Any, y_pred: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and predictions as tensors of the same rank whose shapes broadcast, as the
    elementwise losses need (a shape mismatch is a ``ValueError`` naming both shapes)."""
    y_pred = _prediction(y_pred)
    y_true = _target(y_true, y_pred)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    _same_shape_or_broadcast(y_true, y_pred)
    return y_true, y_pred


def mean_squared_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    """Mean squared error per sample: ``mean(square(y_true - y_pred), axis=-1)``.

    Also available as ``mse``.

    >>> mean_squared_error([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
    tensor([0.5000, 0.5000])
    """
    y_true, y_pred = _regression_pair(y_true, y_pred)
    return torch.mean(torch.square(y_true - y_pred), dim=-1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    """Mean absolute error per sample: ``mean(abs(y_true - y_pred), axis=-1)``.

    Also available as ``mae``.

    >>> mean_absolute_error([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
    tensor([0.5000, 0.5000])
    """
    y_true, y_pred = _regression_pair(y_true, y_pred)
    return torch.mean(torch.abs(y_true - y_pred), dim=-1)


mse = mean_squared_error
mae = mean_absolute_error


def kl_divergence(y_true: Any, y_pred: Any) -> torch.Tensor:
    """Kullback-Leibler divergence per sample, both sides clipped to ``[epsilon, 1]`` as Keras does::

        loss = sum(y_true * log(y_true / y_pred), axis=-1)

    >>> kl_divergence([[0.0, 1.0]], [[0.4, 0.6]])
    tensor([0.5108])
    """
    y_true, y_pred = _regression_pair(y_true, y_pred)
    eps = backend.epsilon()
    y_true = torch.clamp(y_true, eps, 1)
    y_pred = torch.clamp(y_pred, eps, 1)
    return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> torch.Tensor:
    """Huber loss per sample, with ``x = y_pred - y_true``::

        loss = mean(where(|x| <= delta, 0.5 * x ** 2, delta * |x| - 0.5 * delta ** 2), axis=-1)

    ``delta`` must be a positive finite float (at 0 every loss and gradient would be 0).

    >>> huber([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    tensor([0.1800, 0.1300])
    """
    delta = _validate_delta(delta)
    y_true, y_pred = _regression_pair(y_true, y_pred)
    delta_t = torch.tensor(delta, dtype=y_pred.dtype, device=y_pred.device)
    error = y_pred - y_true
    abs_error = torch.abs(error)
    half = torch.tensor(0.5, dtype=y_pred.dtype, device=y_pred.device)
    return torch.mean(
        torch.where(
            abs_error <= delta_t, half * torch.square(error), delta_t * abs_error - half * torch.square(delta_t)
        ),
        dim=-1,
    )


def binary_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> torch.Tensor:
    """Binary cross-entropy per sample, averaged over ``axis``.

    With probabilities ``p`` clipped to ``[epsilon, 1 - epsilon]``::

        loss = mean(-(y * log(p) + (1 - y) * log(1 - p)), axis=axis)

    ``from_logits=True`` takes logits (torch's ``binary_cross_entropy_with_logits``).
    ``label_smoothing`` moves the targets towards 0.5: ``y * (1 - s) + 0.5 * s``.
    ``y_true`` and ``y_pred`` must have the same shape, and every target must lie in
    ``[0, 1]`` (a ``ValueError`` otherwise, with or without logits: Keras's torch backend
    raises an internal error without logits and returns a meaningless number with them).

    >>> binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    tensor([0.9163, 0.7136])
    >>> binary_crossentropy([[2.0]], [[0.5]])
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `y_true`: binary cross-entropy targets must be in [0, 1]. ...
    """
    from_logits = flag(from_logits, "from_logits")
    label_smoothing = _validate_label_smoothing(label_smoothing)
    y_pred = _prediction(y_pred)
    axis = _validate_axis(axis, y_pred.dim())
    y_true = _target(y_true, y_pred)
    _check_binary_targets(y_true)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "Arguments `target` and `output` must have the same shape. "
            f"Received: target.shape={tuple(y_true.shape)}, output.shape={tuple(y_pred.shape)}"
        )
    if from_logits:
        elementwise = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    else:
        eps = backend.epsilon()
        elementwise = F.binary_cross_entropy(torch.clip(y_pred, eps, 1.0 - eps), y_true, reduction="none")
    return torch.mean(elementwise, dim=axis)


def categorical_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> torch.Tensor:
    """Categorical cross-entropy per sample, over the class ``axis``, from one-hot targets.

    Probabilities are first divided by their sum over ``axis``, then clipped to
    ``[epsilon, 1 - epsilon]``; logits go through ``log_softmax``::

        loss = -sum(y * log(p), axis=axis)

    ``label_smoothing`` spreads ``s`` over the classes: ``y * (1 - s) + s / num_classes``,
    with ``num_classes`` the size of the last axis (as in Keras).

    >>> categorical_crossentropy([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    tensor([0.0513, 2.3026])
    """
    from_logits = flag(from_logits, "from_logits")
    label_smoothing = _validate_label_smoothing(label_smoothing)
    y_pred = _prediction(y_pred)
    axis = _validate_axis(axis, y_pred.dim())
    y_true = _target(y_true, y_pred)
    if y_pred.dim() >= 1 and y_pred.shape[-1] == 1:
        warnings.warn(
            "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) with "
            f"num_classes > 1. Received: y_pred.shape={tuple(y_pred.shape)}. Consider using "
            "'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning,
            stacklevel=2,
        )
    if label_smoothing:
        num_classes = float(y_true.shape[-1])
        y_true = y_true * (1.0 - label_smoothing) + (label_smoothing / num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "Arguments `target` and `output` must have the same shape. "
            f"Received: target.shape={tuple(y_true.shape)}, output.shape={tuple(y_pred.shape)}"
        )
    if y_true.dim() < 1:
        raise ValueError(
            "Arguments `target` and `output` must be at least rank 1. "
            f"Received: target.shape={tuple(y_true.shape)}, output.shape={tuple(y_pred.shape)}"
        )
    if from_logits:
        log_prob = F.log_softmax(y_pred, dim=axis)
    else:
        eps = backend.epsilon()
        output = y_pred / torch.sum(y_pred, dim=axis, keepdim=True)
        log_prob = torch.log(torch.clip(output, eps, 1.0 - eps))
    return -torch.sum(y_true * log_prob, dim=axis)


def sparse_categorical_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, ignore_class: int | None = None, axis: int = -1
) -> torch.Tensor:
    """Categorical cross-entropy per sample from integer class indices.

    ``y_true`` holds class indices, of ``y_pred``'s shape without the class
    ``axis`` (a trailing axis of size 1 is squeezed). Probabilities are
    normalized and clipped as in :func:`categorical_crossentropy`. Entries whose
    class is ``ignore_class`` get loss 0 and are left out of a ``Loss`` object's
    mean, as in Keras.

    >>> sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    tensor([0.0513, 2.3026])

    Every label other than ``ignore_class`` must be a whole number in ``[0, num_classes)``;
    anything else is a ``ValueError`` (torch raises an internal error, or reads a negative
    label as a class counted from the end):

    >>> sparse_categorical_crossentropy([3], [[0.2, 0.8]])
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `y_true`: class labels must be whole numbers in [0, 2) ...
    """
    from_logits = flag(from_logits, "from_logits")
    ignore_class = _validate_ignore_class(ignore_class)
    y_pred = _prediction(y_pred)
    if y_pred.dim() < 1:
        raise ValueError(f"Argument `output` must be at least rank 1. Received: output.shape={tuple(y_pred.shape)}")
    axis = _validate_axis(axis, y_pred.dim())
    y_true = ops.argument_tensor(y_true, "y_true", real=True).to(device=y_pred.device)
    if y_true.dim() == y_pred.dim() and y_true.dim() > 0 and y_true.shape[axis] == 1:
        y_true = y_true.squeeze(axis)
    expected = list(y_pred.shape)
    del expected[axis]
    if list(y_true.shape) != expected:
        raise ValueError(
            "Arguments `target` and `output` must have the same shape up until the last dimension: "
            f"target.shape={tuple(y_true.shape)}, output.shape={tuple(y_pred.shape)}"
        )
    valid_mask = None
    if ignore_class is not None:
        result_shape = tuple(expected)
        valid_mask = y_true != ignore_class
        y_true = torch.where(valid_mask, y_true, torch.zeros_like(y_true))
        y_pred = torch.where(
            valid_mask.unsqueeze(axis), y_pred, torch.zeros((), dtype=y_pred.dtype, device=y_pred.device)
        )
    _check_class_labels(y_true, y_pred.shape[axis])
    target = y_true.long()
    output = y_pred
    squeeze = output.dim() == 1
    if squeeze:
        output, target = output.unsqueeze(0), target.unsqueeze(0)
    else:
        class_axis = axis % output.dim()
        if class_axis != 1:
            output = output.movedim(class_axis, 1)
    if from_logits:
        result = F.cross_entropy(output, target, reduction="none")
    else:
        eps = backend.epsilon()
        output = output / torch.sum(output, dim=1, keepdim=True)
        result = F.nll_loss(torch.log(torch.clip(output, eps, 1.0 - eps)), target, reduction="none")
    if squeeze:
        result = result.squeeze(0)
    if valid_mask is not None:
        valid_mask = valid_mask.reshape(result_shape)
        result = torch.where(valid_mask, result, torch.zeros((), dtype=result.dtype, device=result.device))
        # Keras carries the mask on the tensor; a Loss object reads it when reducing.
        result._keras_mask = valid_mask
    return result


# -- Loss objects -----------------------------------------------------------------------
class Loss:
    """Base class of losses: ``loss(y_true, y_pred, sample_weight=None) -> scalar``.

    Subclasses implement ``call(y_true, y_pred)``, returning per-sample losses;
    ``__call__`` converts the inputs, calls it and reduces with
    :func:`reduce_weighted_values`.

    Args:
        name: the loss's name; defaults to the snake_case class name.
        reduction: ``"sum_over_batch_size"`` (default), ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or ``None``.
        dtype: the dtype to compute in; ``None`` means ``y_pred``'s float dtype
            (half precision widened to ``float32``).

    >>> class MeanCubicError(Loss):
    ...     def call(self, y_true, y_pred):
    ...         return ops.mean(ops.absolute(y_true - y_pred) ** 3, axis=-1)
    >>> MeanCubicError()([[0.0, 0.0]], [[1.0, 2.0]])
    tensor(4.5000)
    >>> MeanCubicError().get_config()
    {'name': 'mean_cubic_error', 'reduction': 'sum_over_batch_size'}
    """

    def __init__(
        self, name: str | None = None, reduction: str | None = "sum_over_batch_size", dtype: Any = None
    ) -> None:
        if name is None:
            name = to_snake_case(type(self).__name__)
        if not isinstance(name, str):
            raise invalid("name", "a str", name)
        self.name = name
        self.reduction = _standardize_reduction(reduction)
        self._dtype = None if dtype is None else backend.standardize_dtype(dtype)
        if self._dtype is not None and not self._dtype.is_floating_point:
            # An integer loss would truncate every value (an int32 MSE of 0.5 is 0).
            raise invalid("dtype", "a float dtype or None", dtype)

    @property
    def dtype(self) -> str | None:
        """The dtype set at construction (as a string), or ``None`` for ``y_pred``'s."""
        return None if self._dtype is None else str(self._dtype).replace("torch.", "")

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        in_mask = getattr(y_pred, "_keras_mask", None)
        y_pred = ops.argument_tensor(y_pred, "y_pred", real=True)
        dtype = self._dtype or _float_dtype(y_pred.dtype)
        y_pred = y_pred.to(dtype)
        y_true = ops.argument_tensor(y_true, "y_true", real=True).to(device=y_pred.device)
        if y_true.is_floating_point() or y_true.dtype == torch.bool:
            y_true = y_true.to(dtype)
        losses = self.call(y_true, y_pred)
        out_mask = getattr(losses, "_keras_mask", None)
        if in_mask is not None and out_mask is not None:
            mask = in_mask.bool() & out_mask.bool()
        else:
            mask = in_mask if in_mask is not None else out_mask
        return reduce_weighted_values(
            losses, sample_weight=sample_weight, mask=mask, reduction=self.reduction, dtype=dtype
        )

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """Return the per-sample losses; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `call(y_true, y_pred)`.")

    def get_config(self) -> dict[str, Any]:
        """``name`` and ``reduction`` (and ``dtype`` when one was set)."""
        config: dict[str, Any] = {"name": self.name, "reduction": self.reduction}
        if self._dtype is not None:
            config["dtype"] = self.dtype
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Loss:
        """Rebuild a loss from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        try:
            config = self.get_config()
        except (NotImplementedError, TypeError, ValueError):
            return object.__repr__(self)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items() if not isinstance(v, dict))
        return f"{type(self).__name__}({args})"


class LossFunctionWrapper(Loss):
    """A :class:`Loss` around a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    Before calling ``fn``, ``y_true`` and ``y_pred`` of ranks that differ by
    one (with a last axis of 1) are squeezed or expanded to the same rank.

    >>> wrapped = LossFunctionWrapper(huber, name="huber", delta=0.5)
    >>> wrapped([[0.0, 0.0]], [[1.0, 0.2]])
    tensor(0.1975)
    >>> wrapped.get_config()
    {'name': 'huber', 'reduction': 'sum_over_batch_size', 'fn': {'module': 'builtins', 'class_name': 'function', 'config': 'huber', 'registered_name': 'function'}, 'delta': 0.5}
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if not callable(fn):
            raise invalid("fn", "a callable", fn)
        super().__init__(name="loss_function_wrapper" if name is None else name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["fn"] = serialize_keras_object(self.fn)
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Loss:
        config = dict(config)
        if "fn" in config:
            config["fn"] = _FAMILY.deserialize(_keras_module_to_public(config["fn"]))
        return cls(**config)


class MeanSquaredError(LossFunctionWrapper):
    """Mean of squares of errors: ``mean(square(y_true - y_pred))``.

    >>> MeanSquaredError()([1.0, 0.0, 1.0], [0.9, 0.1, 0.8])
    tensor(0.0200)
    """

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "mean_squared_error", dtype: Any = None
    ) -> None:
        super().__init__(mean_squared_error, name=name, reduction=reduction, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return Loss.get_config(self)


class KLDivergence(LossFunctionWrapper):
    """Mean of :func:`kl_divergence` over the batch.

    >>> KLDivergence()([[0.0, 1.0], [1.0, 0.0]], [[0.4, 0.6], [0.4, 0.6]])
    tensor(0.7136)
    """

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "kl_divergence", dtype: Any = None
    ) -> None:
        super().__init__(kl_divergence, name=name, reduction=reduction, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return Loss.get_config(self)


class MeanAbsoluteError(LossFunctionWrapper):
    """Mean of absolute errors: ``mean(abs(y_true - y_pred))``.

    >>> MeanAbsoluteError()([1.0, 0.3, 1.0], [1.9, 0.3, 1.8])
    tensor(0.5667)
    """

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "mean_absolute_error", dtype: Any = None
    ) -> None:
        super().__init__(mean_absolute_error, name=name, reduction=reduction, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return Loss.get_config(self)


class Huber(LossFunctionWrapper):
    """Huber loss, quadratic for errors up to ``delta`` and linear beyond (see :func:`huber`).

    Unlike Keras's, its config keeps ``delta`` (Keras 3 drops it, so a Keras
    ``Huber(delta=2.0)`` comes back from its config with ``delta=1.0``).

    >>> Huber(delta=1.0)([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    tensor(0.1550)
    """

    def __init__(
        self,
        delta: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "huber_loss",
        dtype: Any = None,
    ) -> None:
        delta = _validate_delta(delta)
        super().__init__(huber, name=name, reduction=reduction, dtype=dtype, delta=delta)
        self.delta = delta

    def get_config(self) -> dict[str, Any]:
        config = Loss.get_config(self)
        config["delta"] = self.delta
        return config


class _Crossentropy(LossFunctionWrapper):
    """What the binary and categorical cross-entropy losses share: arguments, checks, config."""

    def __init__(self, fn: Callable[..., Any], from_logits: bool, label_smoothing: float, axis: int,
                 reduction: str | None, name: str, dtype: Any) -> None:
        self.from_logits = flag(from_logits, "from_logits")
        self.label_smoothing = _validate_label_smoothing(label_smoothing)
        self.axis = _validate_axis(axis)
        super().__init__(fn, name=name, reduction=reduction, dtype=dtype, from_logits=self.from_logits,
                         label_smoothing=self.label_smoothing, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        config = Loss.get_config(self)
        config.update({"from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis})
        return config


class BinaryCrossentropy(_Crossentropy):
    """Binary cross-entropy between labels in [0, 1] and predicted probabilities or logits.

    See :func:`binary_crossentropy` for the formula.

    >>> BinaryCrossentropy()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    tensor(0.8149)
    >>> BinaryCrossentropy(from_logits=True)([[0.0, 1.0]], [[-18.6, 0.51]])
    tensor(0.2352)
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(binary_crossentropy, from_logits, label_smoothing, axis, reduction, name, dtype)


class CategoricalCrossentropy(_Crossentropy):
    """Categorical cross-entropy between one-hot labels and predicted probabilities or logits.

    See :func:`categorical_crossentropy` for the formula.

    >>> CategoricalCrossentropy()([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    tensor(1.1769)
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(categorical_crossentropy, from_logits, label_smoothing, axis, reduction, name, dtype)


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Categorical cross-entropy between integer class labels and predicted probabilities or logits.

    See :func:`sparse_categorical_crossentropy`. With ``ignore_class``, the
    default reduction averages over the entries of the other classes only.
    Unlike Keras's, its config keeps ``axis``.

    >>> SparseCategoricalCrossentropy()([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    tensor(1.1769)
    >>> SparseCategoricalCrossentropy(ignore_class=2)([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    tensor(0.0513)
    """

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        self.from_logits = flag(from_logits, "from_logits")
        self.ignore_class = _validate_ignore_class(ignore_class)
        self.axis = _validate_axis(axis)
        super().__init__(
            sparse_categorical_crossentropy,
            name=name,
            reduction=reduction,
            dtype=dtype,
            from_logits=self.from_logits,
            ignore_class=self.ignore_class,
            axis=self.axis,
        )

    def get_config(self) -> dict[str, Any]:
        config = Loss.get_config(self)
        config.update({"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis})
        return config


# Classes first, then functions: a snake_case id names the function ('huber'), as in Keras.
_FAMILY = ObjectFamily(
    "loss",
    "keras.losses",
    [
        Loss,
        LossFunctionWrapper,
        MeanSquaredError,
        MeanAbsoluteError,
        Huber,
        KLDivergence,
        BinaryCrossentropy,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
        mean_squared_error,
        mean_absolute_error,
        huber,
        kl_divergence,
        binary_crossentropy,
        categorical_crossentropy,
        sparse_categorical_crossentropy,
    ],
    extra_names={
        "mse": mean_squared_error,
        "MSE": mean_squared_error,
        "mae": mean_absolute_error,
        "MAE": mean_absolute_error,
        "bce": binary_crossentropy,
        "kld": kl_divergence,
        "KLD": kl_divergence,
        "BCE": binary_crossentropy,
    },
)

# Keras writes LossFunctionWrapper under its private module, registered by class name.
_KERAS_PRIVATE_MODULE = re.compile(r"^keras\.src\.losses(\.\w+)?$")


def _keras_module_to_public(config: Any) -> Any:
    module = config.get("module") if isinstance(config, Mapping) else None
    if isinstance(module, str) and _KERAS_PRIVATE_MODULE.match(module):
        config = dict(config)
        config["module"] = "keras.losses"
        if config.get("registered_name") == config.get("class_name"):
            config["registered_name"] = None
    return config


def serialize(loss: Any) -> Any:
    """Return the Keras 3 config dict of a loss object or function.

    >>> serialize(BinaryCrossentropy(from_logits=True))["config"]["from_logits"]
    True
    """
    return _FAMILY.serialize(loss)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build a loss object (or return a loss function) from a Keras config dict or a string id.

    >>> deserialize({"class_name": "Huber", "config": {"delta": 2.0}}).delta
    2.0
    >>> deserialize("mse") is mean_squared_error
    True
    """
    return _FAMILY.deserialize(_keras_module_to_public(config), custom_objects)


def _function_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return to_snake_case(name)


def get(identifier: Any) -> Loss | None:
    """Resolve a loss identifier to a :class:`Loss` object, as Keras's ``compile`` does.

    - ``None`` stays ``None``; a :class:`Loss` passes through; a ``Loss`` class is instantiated;
    - a string naming a loss class (``'MeanSquaredError'``) gives an instance;
      one naming a function (``'mse'``, ``'mean_squared_error'``, ``'huber'``,
      ``'binary_crossentropy'``, ...) gives a :class:`LossFunctionWrapper`
      named as written;
    - a config dict is deserialized (a function config is wrapped);
    - any other callable ``fn(y_true, y_pred) -> per-sample losses`` is wrapped,
      named after the function.

    Anything else raises a ``ValueError``.

    >>> get("mse")
    LossFunctionWrapper(name='mse', reduction='sum_over_batch_size')
    >>> get("BinaryCrossentropy")
    BinaryCrossentropy(name='binary_crossentropy', reduction='sum_over_batch_size', from_logits=False, label_smoothing=0.0, axis=-1)
    >>> get(42)
    Traceback (most recent call last):
    ...
    ValueError: Could not interpret loss identifier: 42. ...
    """
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, (str, Mapping)):
        obj = deserialize(identifier)
        name = identifier if isinstance(identifier, str) else None
    else:
        obj, name = identifier, None
    if inspect.isclass(obj):
        if issubclass(obj, Loss):
            return obj()
        raise ValueError(f"Could not interpret loss identifier: {identifier!r}. The class is not a Loss.")
    if isinstance(obj, Loss):
        return obj
    if callable(obj):
        return LossFunctionWrapper(obj, name=name or _function_name(obj))
    raise ValueError(
        f"Could not interpret loss identifier: {identifier!r}. Expected None, a string id, a config dict, "
        "a Loss or a function fn(y_true, y_pred) returning per-sample losses."
    )
