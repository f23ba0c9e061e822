"""Layers that merge a list of inputs: Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate and Dot, with Keras's functional forms (``add([x, y])``, ...).

The elementwise layers broadcast as Keras does: sizes of 1 stretch, and an input of lower
rank gets axes of size 1 inserted after the batch axis. Inputs of different dtypes are
promoted as torch (and Keras) promote them; all inputs must be tensors on one device.

Masks merge as in Keras: the output mask of an elementwise merge is the OR of the inputs'
masks when every input has one (none otherwise); ``Multiply``, ``Maximum`` and ``Minimum``
also leave masked steps out of the operation. ``Concatenate`` concatenates the masks
(an input without one counts as unmasked); ``Dot`` gives no mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from weightwise import ops
from weightwise.arguments import echo, flag
from weightwise.layers.args import is_int
from weightwise.layers.base import Layer
from weightwise.layers.symbolic import get_keras_mask, set_keras_mask

__all__ = [
    "Add",
    "Average",
    "Concatenate",
    "Dot",
    "Maximum",
    "Minimum",
    "Multiply",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]


def _check_list(layer: Layer, inputs: Any) -> Sequence[torch.Tensor]:
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 1 or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ValueError(
            f"A merge layer ({type(layer).__name__} {layer.name!r}) should be called on a list of inputs. "
            f"Received: inputs={inputs!r:.300} (not a list of tensors)"
        )
    devices = {t.device for t in inputs}
    if len(devices) > 1:
        raise ValueError(
            f"A merge layer ({type(layer).__name__} {layer.name!r}) needs its inputs on one device. "
            f"Received: inputs on devices {sorted(str(d) for d in devices)}"
        )
    return inputs


def _check_mask_list(inputs: Any, mask: Any) -> None:
    """Keras's checks of ``compute_mask`` arguments of a merge layer."""
    # ValueError, not TypeError: Keras's type, which code catching it relies on.
    if not isinstance(mask, (tuple, list)):
        raise ValueError(f"`mask` should be a list. Received: mask={echo(mask)}")  # noqa: TRY004
    if not isinstance(inputs, (tuple, list)):
        raise ValueError(f"`inputs` should be a list. Received: inputs={echo(inputs)}")  # noqa: TRY004
    if len(mask) != len(inputs):
        raise ValueError(
            "The lists `inputs` and `mask` should have the same length. "
            f"Received: inputs={echo(inputs)} of length {len(inputs)}, and mask={echo(mask)} of length {len(mask)}"
        )


def _broadcast_shape(shape1: tuple[int | None, ...], shape2: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """The shape of an elementwise result (batch axes left out), as Keras's merge layers check it."""
    if len(shape1) < len(shape2):
        return _broadcast_shape(shape2, shape1)
    if not shape2:
        return shape1
    out = list(shape1[: len(shape1) - len(shape2)])
    for i, j in zip(shape1[len(shape1) - len(shape2):], shape2):
        if i is None or j is None:
            out.append(None)
            continue
        if i != j and 1 not in (i, j):
            raise ValueError(f"Inputs have incompatible shapes. Received shapes {shape1} and {shape2}")
        out.append(j if i == 1 else i)
    return tuple(out)


def _shape_list(layer: Layer, input_shape: Any) -> list[tuple[int | None, ...]]:
    """``input_shape`` of a merge layer's build: a list of shapes, or a ``ValueError`` as in Keras."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
            isinstance(shape, (list, tuple)) and all(d is None or is_int(d) for d in shape) for shape in input_shape):
        raise ValueError(f"A merge layer ({type(layer).__name__} {layer.name!r}) should be called on a list of inputs. "
                         f"Received: input_shape={echo(input_shape)} (not a list of tensors)")
    return [tuple(shape) for shape in input_shape]


class Merge(Layer):
    """The base of the elementwise merge layers: checks, broadcasting and the OR of the masks.

    Subclasses define ``_merge_function(inputs)`` over a list of tensors of equal rank.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        self._check_shapes(_shape_list(self, input_shape))

    def _check_shapes(self, shapes: list[tuple[int | None, ...]]) -> None:
        batch_sizes = {shape[0] for shape in shapes if shape} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(f"Cannot merge tensors with different batch sizes. Received: input_shape={shapes}")
        output = shapes[0][1:]
        try:
            for shape in shapes[1:]:
                output = _broadcast_shape(output, shape[1:])
        except ValueError as error:
            raise ValueError(f"{error}. Received: input_shape={shapes}") from None

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        tensors = list(_check_list(self, inputs))
        self._check_shapes([tuple(t.shape) for t in tensors])
        rank = max(t.dim() for t in tensors)
        # A lower-rank input gets axes of size 1 after the batch axis (a new tensor, so without a mask, as in Keras).
        tensors = [t if t.dim() == rank else t.reshape(t.shape[:1] + (1,) * (rank - t.dim()) + t.shape[1:])
                   for t in tensors]
        return self._merge_function(tensors)

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        if previous_mask is None:
            return None
        _check_mask_list(inputs, previous_mask)
        if any(m is None for m in previous_mask):
            return None
        masks = [ops.convert_to_tensor(m).bool() for m in previous_mask]
        output = masks[0]
        for mask in masks[1:]:
            output = torch.logical_or(output, mask)
        return output

    def _masked_op(self, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   inputs: list[torch.Tensor]) -> torch.Tensor:
        """Fold ``op`` over the inputs, a masked step of one input taking the other's value; the OR of the masks
        goes on the output when every input has one (Keras's Maximum and Minimum)."""
        output = output_mask = None
        for x in inputs:
            mask = get_keras_mask(x)
            if mask is not None:
                mask = mask.bool().unsqueeze(-1).expand(x.shape)
            if output is None:
                output, output_mask = x, mask
                continue
            if mask is not None:
                x = torch.where(mask, x, output)
            if output_mask is not None:
                output = torch.where(output_mask, output, x)
            output_mask = torch.logical_or(output_mask, mask) if mask is not None and output_mask is not None else None
            output = op(output, x)
        if output_mask is not None:
            output = _fresh(output, inputs)
            set_keras_mask(output, torch.any(output_mask, dim=-1))
        return output


def _fresh(output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """``output``, or a view of it when it is one of the inputs, so a mask set on it is not set on an input."""
    return output.view_as(output) if any(output is x for x in inputs) else output


class Add(Merge):
    """Adds a list of tensors elementwise (they broadcast as in Keras).

    >>> from weightwise import ops
    >>> Add()([ops.ones((2, 2)), ops.ones((2, 2))])
    tensor([[2., 2.],
            [2., 2.]])
    """

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output


class Subtract(Merge):
    """Subtracts the second of exactly two tensors from the first.

    >>> from weightwise import ops
    >>> Subtract()([ops.ones((1, 2)) * 3, ops.ones((1, 2))])
    tensor([[2., 2.]])
    """

    def _check_shapes(self, shapes: list[tuple[int, ...]]) -> None:
        if len(shapes) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. Received: input_shape={shapes}")
        super()._check_shapes(shapes)

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return inputs[0] - inputs[1]


class Multiply(Merge):
    """Multiplies a list of tensors elementwise.

    Where inputs carry masks, a masked step of an input counts as 1; when every input has a
    mask, steps masked in all of them come out as 0 and the output's mask is the OR.

    >>> from weightwise import ops
    >>> Multiply()([ops.ones((1, 2)) * 3, ops.ones((1, 2)) * 2])
    tensor([[6., 6.]])
    """

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        masks = [get_keras_mask(x) for x in inputs]
        every_masked = all(mask is not None for mask in masks)
        output = output_mask = None
        for x, mask in zip(inputs, masks):
            if mask is not None:
                mask = mask.bool().unsqueeze(-1).expand(x.shape)
                x = torch.where(mask, x, torch.ones((), dtype=x.dtype, device=x.device))
                if every_masked:
                    output_mask = mask if output_mask is None else torch.logical_or(output_mask, mask)
            output = x if output is None else output * x
        if every_masked:
            output = torch.where(output_mask, output, torch.zeros((), dtype=output.dtype, device=output.device))
            set_keras_mask(output, torch.any(output_mask, dim=-1))
        return output


class Average(Merge):
    """The elementwise mean of a list of tensors.

    >>> from weightwise import ops
    >>> Average()([ops.ones((1, 2)), ops.zeros((1, 2))])
    tensor([[0.5000, 0.5000]])
    """

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output / len(inputs)


class Maximum(Merge):
    """The elementwise maximum of a list of tensors; masked steps of an input are left out.

    >>> from weightwise import ops
    >>> Maximum()([ops.convert_to_tensor([[1.0, 5.0]]), ops.convert_to_tensor([[3.0, 2.0]])])
    tensor([[3., 5.]])
    """

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self._masked_op(torch.maximum, inputs)


class Minimum(Merge):
    """The elementwise minimum of a list of tensors; masked steps of an input are left out.

    >>> from weightwise import ops
    >>> Minimum()([ops.convert_to_tensor([[1.0, 5.0]]), ops.convert_to_tensor([[3.0, 2.0]])])
    tensor([[1., 2.]])
    """

    def _merge_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self._masked_op(torch.minimum, inputs)


class Concatenate(Merge):
    """Concatenates a list of tensors along ``axis`` (default: the last).

    Their shapes must match except along ``axis``. The output mask concatenates the inputs'
    masks (an input without a mask counts as unmasked), reduced over the last axis.

    >>> from weightwise import ops
    >>> Concatenate()([ops.ones((2, 3)), ops.zeros((2, 1))]).shape
    torch.Size([2, 4])
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not is_int(axis):
            raise ValueError(f"Invalid value for argument `axis`: expected an int. Received: axis={axis!r}")
        self.axis = int(axis)

    def _check_shapes(self, shapes: list[tuple[int | None, ...]]) -> None:
        rank = len(shapes[0])
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"Concatenate layer {self.name!r}: invalid value for argument `axis`: expected an axis of inputs of "
                f"rank {rank}, in [{-rank}, {rank}). Received: axis={self.axis}, input_shape={shapes}"
            )
        axis = self.axis % rank
        for shape in shapes:
            if len(shape) != rank or any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0]))
                                         if i != axis and a is not None and b is not None):
                raise ValueError(
                    "A `Concatenate` layer requires inputs with matching shapes except for the concatenation "
                    f"axis. Received: input_shape={shapes}"
                )

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        tensors = _check_list(self, inputs)
        self._check_shapes([tuple(t.shape) for t in tensors])
        return torch.cat(list(tensors), dim=self.axis)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        if previous_mask is None:
            return None
        _check_mask_list(inputs, previous_mask)
        if all(m is None for m in previous_mask):
            return None
        # Inputs are read only where a mask is missing or has fewer axes (Keras's rule, so masks alone give a tensor).
        masks = []
        for x, mask in zip(inputs, previous_mask):
            if mask is None:
                masks.append(torch.ones(tuple(x.shape), dtype=torch.bool, device=x.device))
                continue
            mask = ops.convert_to_tensor(mask).bool()
            masks.append(mask.unsqueeze(-1).expand(tuple(x.shape)) if mask.dim() < len(x.shape) else mask)
        return torch.any(torch.cat(masks, dim=self.axis), dim=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Dot(Merge):
    """The dot product of two tensors along ``axes``, sample by sample (Keras's ``batch_dot``).

    ``axes`` is one axis for both inputs or a pair ``(axis_of_first, axis_of_second)``; the
    batch axis cannot be one. With ``normalize=True`` each input is first L2-normalized
    along its axis, so the result is the cosine similarity. The result's shape is the first
    input's other axes followed by the second's (batch counted once); two inputs of rank 2
    give ``(batch, 1)``. The output has no mask.

    >>> from weightwise import ops
    >>> Dot(axes=1)([ops.convert_to_tensor([[1.0, 2.0]]), ops.convert_to_tensor([[3.0, 4.0]])])
    tensor([[11.]])
    """

    def __init__(self, axes: int | Sequence[int], normalize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not is_int(axes):
            if not isinstance(axes, (list, tuple)):
                raise TypeError(
                    f"Invalid type for argument `axes`: it should be a list or an int. Received: axes={echo(axes)}")
            if len(axes) != 2:
                raise ValueError(
                    f"Invalid format for argument `axes`: it should contain two elements. Received: axes={echo(axes)}")
            if not all(is_int(axis) for axis in axes):
                raise ValueError(
                    f"Invalid format for argument `axes`: list elements should be integers. Received: axes={echo(axes)}")
        self.axes = int(axes) if is_int(axes) else type(axes)(int(axis) for axis in axes)
        self.normalize = flag(normalize, "normalize", owner=f"Dot layer {self.name!r}")

    def _axes_for(self, shapes: list[tuple[int, ...]]) -> list[int]:
        wanted = [self.axes] * 2 if is_int(self.axes) else list(self.axes)
        axes = []
        for axis, shape in zip(wanted, shapes):
            if not -len(shape) <= axis < len(shape):
                raise ValueError(f"Dot layer {self.name!r}: invalid value for argument `axes`: axis {axis} does not "
                                 f"exist in an input of shape {shape}. Received: axes={self.axes!r}")
            axes.append(axis % len(shape))
        return axes

    def _check_shapes(self, shapes: list[tuple[int | None, ...]]) -> None:
        if len(shapes) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={shapes}")
        if any(len(shape) < 2 for shape in shapes):
            raise ValueError(f"Cannot do batch_dot on inputs with rank < 2. Received inputs with shapes {shapes[0]} "
                             f"and {shapes[1]}.")
        if None not in (shapes[0][0], shapes[1][0]) and shapes[0][0] != shapes[1][0]:
            raise ValueError(f"Cannot do batch_dot on inputs with different batch sizes. Received inputs with shapes "
                             f"{shapes[0]} and {shapes[1]}.")
        axes = self._axes_for(shapes)
        if 0 in axes:
            raise ValueError("Cannot perform batch_dot over axis 0. If your inputs are not batched, add a dummy batch "
                             f"dimension to your inputs using keras.ops.expand_dims(x, 0). Received: axes={self.axes!r}")
        sizes = (shapes[0][axes[0]], shapes[1][axes[1]])
        if None not in sizes and sizes[0] != sizes[1]:
            raise ValueError(
                f"Incompatible input shapes: axis values {sizes[0]} (at axis {axes[0]}) != {sizes[1]} (at axis "
                f"{axes[1]}). Full input shapes: {shapes[0]}, {shapes[1]}"
            )

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        tensors = _check_list(self, inputs)
        shapes = [tuple(t.shape) for t in tensors]
        self._check_shapes(shapes)
        axes = self._axes_for(shapes)
        x, y = tensors
        if self.normalize:
            x, y = ops.normalize(x, axis=axes[0]), ops.normalize(y, axis=axes[1])
        return _batch_dot(x, y, axes)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _batch_dot(x: torch.Tensor, y: torch.Tensor, axes: list[int]) -> torch.Tensor:
    """Per sample, contract axis ``axes[0]`` of ``x`` with ``axes[1]`` of ``y``: the result's axes are batch, the
    rest of ``x``'s, then the rest of ``y``'s; ``(batch, 1)`` when nothing is left."""
    x = torch.movedim(x, axes[0], -1)
    y = torch.movedim(y, axes[1], 1)
    x_rest, y_rest = x.shape[1:-1], y.shape[2:]
    batch = x.shape[0]
    result = torch.matmul(x.reshape(batch, -1, x.shape[-1]), y.reshape(batch, y.shape[1], -1))
    shape = (batch, *x_rest, *y_rest)
    return result.reshape(shape if len(shape) > 1 else (batch, 1))


def add(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Add(**kwargs)(inputs)``: the elementwise sum of the inputs.

    >>> from weightwise import ops
    >>> add([ops.ones((1, 2)), ops.ones((1, 2))])
    tensor([[2., 2.]])
    """
    return Add(**kwargs)(inputs)


def subtract(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Subtract(**kwargs)(inputs)``: the first of two inputs minus the second.

    >>> from weightwise import ops
    >>> subtract([ops.ones((1, 2)), ops.ones((1, 2))])
    tensor([[0., 0.]])
    """
    return Subtract(**kwargs)(inputs)


def multiply(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Multiply(**kwargs)(inputs)``: the elementwise product of the inputs.

    >>> from weightwise import ops
    >>> multiply([ops.ones((1, 2)) * 2, ops.ones((1, 2)) * 3])
    tensor([[6., 6.]])
    """
    return Multiply(**kwargs)(inputs)


def average(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Average(**kwargs)(inputs)``: the elementwise mean of the inputs.

    >>> from weightwise import ops
    >>> average([ops.ones((1, 2)), ops.zeros((1, 2))])
    tensor([[0.5000, 0.5000]])
    """
    return Average(**kwargs)(inputs)


def maximum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Maximum(**kwargs)(inputs)``: the elementwise maximum of the inputs.

    >>> from weightwise import ops
    >>> maximum([ops.ones((1, 2)), ops.zeros((1, 2))])
    tensor([[1., 1.]])
    """
    return Maximum(**kwargs)(inputs)


def minimum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Minimum(**kwargs)(inputs)``: the elementwise minimum of the inputs.

    >>> from weightwise import ops
    >>> minimum([ops.ones((1, 2)), ops.zeros((1, 2))])
    tensor([[0., 0.]])
    """
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: Sequence[Any], axis: int = -1, **kwargs: Any) -> Any:
    """``Concatenate(axis=axis, **kwargs)(inputs)``.

    >>> from weightwise import ops
    >>> concatenate([ops.ones((1, 2)), ops.zeros((1, 1))])
    tensor([[1., 1., 0.]])
    """
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs: Sequence[Any], axes: int | Sequence[int] = -1, **kwargs: Any) -> Any:
    """``Dot(axes=axes, **kwargs)(inputs)``: the per-sample dot product of two inputs.

    >>> from weightwise import ops
    >>> dot([ops.ones((1, 3)), ops.ones((1, 3))], axes=1)
    tensor([[3.]])
    """
    return Dot(axes=axes, **kwargs)(inputs)
