"""EinsumDense: a dense layer whose product is any ``torch.einsum`` equation.

The equation names the input's axes, the kernel's axes and the output's axes
(``"abc,cd->abd"``); an ellipsis stands for leading (``"...b,bc->...c"``) or trailing
(``"ab...,bc->ac..."``) axes the kernel does not touch. The kernel's shape, the bias's
shape and the output's shape follow from the equation, the input shape and the
``output_shape`` argument exactly as Keras derives them, so Keras's weights load unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import arguments, initializers, regularizers
from weightwise.layers.args import standardize_shape
from weightwise.layers.base import InputSpec
from weightwise.layers.core import KernelLayer

__all__ = ["EinsumDense"]

# The three forms of equation Keras accepts, with "..." written as "0": plain, leading ellipsis,
# trailing ellipsis (the trailing form needs two or more named input axes, as in Keras).
_FORMS = (
    (re.compile(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)"), False),
    (re.compile(r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)"), True),
    (re.compile(r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0"), False),
)


def _parse(equation: Any) -> tuple[str, str, str, bool]:
    """``(input spec, kernel spec, output spec, left elided)`` of an equation, or Keras's ValueError."""
    if isinstance(equation, str):
        flat = equation.replace("...", "0")
        for pattern, left_elided in _FORMS:
            match = pattern.fullmatch(flat)
            if match:
                return match.group(1), match.group(2), match.group(3), left_elided
    raise ValueError(
        f"Invalid einsum equation '{equation}'. Equations must be in the form "
        "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]...."
    )


def _analyze_einsum_string(
    equation: str, bias_axes: str | None, input_shape: Sequence[int | None], output_shape: Any
) -> tuple[list[Any], list[Any] | None, list[Any], list[int], list[int]]:
    """Keras's shape analysis of an EinsumDense equation.

    Returns ``(kernel_shape, bias_shape, full_output_shape, input_axes, output_axes)``:
    each kernel axis takes its size from the output (``output_shape``, with the batch axis
    and any elided axes put back) or else from the input; the bias covers the output axes
    from the first one named in ``bias_axes`` onwards, size 1 on those not named, plus a 1
    per axis elided at the end. ``input_axes`` / ``output_axes`` are the kernel axes that
    come from the input and the output (the fans of a variance-scaling initializer).

    >>> _analyze_einsum_string("abc,cde->abde", "be", (2, 7, 2), (7, 3, 4))
    ([2, 3, 4], [7, 1, 4], [2, 7, 3, 4], [0], [1, 2])
    """
    input_spec, weight_spec, output_spec, left_elided = _parse(equation)
    input_shape = list(input_shape)
    elided = len(input_shape) - len(input_spec)
    if elided < 0:
        raise ValueError(
            f"Invalid input shape for einsum equation '{equation}': the input spec '{input_spec}' names "
            f"{len(input_spec)} axes, the inputs have {len(input_shape)}. Received: input_shape={tuple(input_shape)}"
        )
    full_output = [output_shape] if isinstance(output_shape, int) else list(output_shape)
    full_output.insert(0, input_shape[0])
    if elided > 0 and left_elided:
        for i in range(1, elided):
            full_output.insert(1, input_shape[i])
    elif elided > 0:
        full_output.extend(input_shape[len(input_shape) - elided:])

    if left_elided:
        input_axis = {dim: i + elided - len(input_shape) for i, dim in enumerate(input_spec)}
        output_axis = {dim: i + elided for i, dim in enumerate(output_spec)}
    else:
        input_axis = {dim: i for i, dim in enumerate(input_spec)}
        output_axis = {dim: i for i, dim in enumerate(output_spec)}
    if max(output_axis.values(), default=-1) >= len(full_output):
        raise ValueError(
            f"Invalid value for argument `output_shape`: einsum equation '{equation}' has output spec "
            f"'{output_spec}', which needs more output axes than `output_shape` gives. Received: "
            f"output_shape={output_shape}"
        )

    for dim in input_spec:
        if dim in output_axis:
            size_in, size_out = input_shape[input_axis[dim]], full_output[output_axis[dim]]
            if size_out is not None and size_out != size_in:
                raise ValueError(
                    f"Input shape and output shape do not match at shared dimension '{dim}'. Input shape is "
                    f"{size_in}, and output shape is {size_out}."
                )
    for dim in output_spec:
        if dim not in input_spec and dim not in weight_spec:
            raise ValueError(
                f"Dimension '{dim}' was specified in the output '{output_spec}' but has no corresponding dim in the "
                f"input spec '{input_spec}' or weight spec '{weight_spec}'"
            )

    kernel_shape: list[Any] = []
    input_axes: list[int] = []
    output_axes: list[int] = []
    for i, dim in enumerate(weight_spec):
        if dim in output_axis:
            kernel_shape.append(full_output[output_axis[dim]])
            output_axes.append(i)
        elif dim in input_axis:
            kernel_shape.append(input_shape[input_axis[dim]])
            input_axes.append(i)
        else:
            raise ValueError(
                f"Weight dimension '{dim}' did not have a match in either the input spec '{input_spec}' or the "
                f"output spec '{output_spec}'. For this layer, the weight must be fully specified."
            )

    bias_shape = None
    if bias_axes is not None:
        offset = elided if left_elided else 0
        sizes = {dim: full_output[i + offset] for i, dim in enumerate(output_spec)}
        for dim in bias_axes:
            if dim not in output_spec:
                raise ValueError(f"Bias dimension '{dim}' was requested, but is not part of the output spec "
                                 f"'{output_spec}'")
        first = min(output_spec.find(dim) for dim in bias_axes) if bias_axes else len(output_spec)
        bias_shape = [sizes[dim] if dim in bias_axes else 1 for dim in output_spec[first:]]
        if not left_elided:
            bias_shape.extend([1] * elided)
    return kernel_shape, bias_shape, full_output, input_axes, output_axes


class EinsumDense(KernelLayer):
    """A dense layer computing ``activation(einsum(equation, inputs, kernel) + bias)``.

    ``output_shape`` gives the output's sizes after the batch axis and without elided
    axes (``None`` where the input decides); ``bias_axes`` names the output axes that get a
    bias (none by default). Shapes follow Keras: ``"abc,cde->abde"`` with
    ``output_shape=(None, 3, 4)`` on inputs ``(batch, 7, 2)`` has a ``(2, 3, 4)`` kernel,
    and ``bias_axes="e"`` gives a ``(4,)`` bias. A variance-scaling kernel initializer
    without ``input_axes`` / ``output_axes`` gets the kernel's input and output axes, as
    in Keras. LoRA and quantization are not part of weightwise: ``lora_rank`` and
    ``quantization_config`` are accepted only when unset.

    >>> from weightwise import ops
    >>> layer = EinsumDense("abc,cd->abd", output_shape=(None, 64), bias_axes="d")
    >>> layer(ops.ones((2, 32, 128))).shape
    torch.Size([2, 32, 64])
    >>> tuple(layer.kernel.shape), tuple(layer.bias.shape)
    ((128, 64), (64,))
    """

    def __init__(
        self,
        equation: str,
        output_shape: int | Sequence[int | None],
        activation: Any = None,
        bias_axes: str | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        gptq_unpacked_column_size: int | None = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("lora_rank", lora_rank), ("lora_alpha", lora_alpha),
                            ("gptq_unpacked_column_size", gptq_unpacked_column_size),
                            ("quantization_config", quantization_config)):
            if value is not None:
                raise ValueError(
                    f"EinsumDense: `{name}` is a Keras feature (LoRA or quantization) that weightwise does not "
                    f"support. Received: {name}={arguments.echo(value)}"
                )
        input_spec, _, output_spec, _ = _parse(equation)
        if arguments.is_int(output_shape):
            partial = (arguments.count(output_shape, "output_shape", owner="EinsumDense"),)
        elif isinstance(output_shape, (list, tuple)):
            partial = standardize_shape(output_shape, "output_shape", "EinsumDense")
        else:
            raise arguments.invalid("output_shape", "an int or a tuple of ints >= 0 or None", output_shape,
                                    owner="EinsumDense")
        if bias_axes is not None and not isinstance(bias_axes, str):
            raise arguments.invalid("bias_axes", "None or a str naming output axes", bias_axes, owner="EinsumDense")
        for dim in bias_axes or "":
            if dim not in output_spec:
                raise ValueError(f"Bias dimension '{dim}' was requested, but is not part of the output spec "
                                 f"'{output_spec}'")
        super().__init__(
            activation=activation, use_bias=bias_axes is not None, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
            **kwargs,
        )
        self.equation = equation
        self.partial_output_shape = partial
        self.bias_axes = bias_axes
        self._input_spec_letters = input_spec

    def build(self, input_shape: Sequence[int | None]) -> None:
        input_shape = standardize_shape(input_shape, "input_shape", f"EinsumDense layer {self.name!r}")
        kernel_shape, bias_shape, _, input_axes, output_axes = _analyze_einsum_string(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape)
        unknown = [d for d in kernel_shape + (bias_shape or []) if d is None]
        if unknown:
            raise ValueError(
                f"EinsumDense layer {self.name!r}: the kernel shape {tuple(kernel_shape)} (or the bias shape "
                f"{bias_shape}) has unknown sizes; give them in `output_shape` or in the inputs. Received: "
                f"input_shape={input_shape}, output_shape={self.partial_output_shape}"
            )
        init = self.kernel_initializer
        if isinstance(init, initializers.VarianceScaling) and (init.input_axes is None or init.output_axes is None):
            # Keras gives the initializer the kernel's fan axes, keeping the seed it drew.
            init = type(init).from_config({**init.get_config(), "seed": init.seed, "input_axes": input_axes,
                                           "output_axes": output_axes})
        self.kernel = self.add_weight("kernel", tuple(kernel_shape), init, self.kernel_regularizer,
                                      self.kernel_constraint)
        if bias_shape is not None:
            self.bias = self.add_weight("bias", tuple(bias_shape), self.bias_initializer, self.bias_regularizer,
                                        self.bias_constraint)
        else:
            self.bias = None
        self.input_spec = InputSpec(ndim=len(input_shape), axes=self._kernel_input_axes(input_shape, kernel_shape))

    def _kernel_input_axes(self, input_shape: tuple[int | None, ...], kernel_shape: list[int]) -> dict[int, int]:
        """The input axes the kernel contracts with, and their sizes (checked on every call)."""
        input_spec, weight_spec, output_spec, left_elided = _parse(self.equation)
        elided = len(input_shape) - len(input_spec)
        axes = {}
        for i, dim in enumerate(weight_spec):
            if dim in input_spec and dim not in output_spec:
                index = input_spec.index(dim)
                axes[index + elided - len(input_shape) if left_elided else index] = kernel_shape[i]
        return axes

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """The output's shape for inputs of ``input_shape``, built or not.

        >>> EinsumDense("ab,bc->ac", output_shape=7).compute_output_shape((None, 5))
        (None, 7)
        """
        input_shape = standardize_shape(input_shape, "input_shape", f"EinsumDense layer {self.name!r}")
        output = _analyze_einsum_string(self.equation, self.bias_axes, input_shape, self.partial_output_shape)[2]
        # An output axis left None that the equation carries over from the input has the input's size
        # (what the docs promise, and what a call gives); Keras's own answer leaves it None.
        input_spec, _, output_spec, left_elided = _parse(self.equation)
        elided = len(input_shape) - len(input_spec)
        for position, dim in enumerate(output_spec):
            if dim in input_spec:
                index = position + (elided if left_elided else 0)
                source = input_spec.index(dim) + (elided if left_elided else 0)
                if output[index] is None:
                    output[index] = input_shape[source]
        return tuple(output)

    def call(self, inputs: torch.Tensor, training: bool | None = None) -> torch.Tensor:
        if not inputs.is_floating_point():
            inputs = self._kernel_inputs(inputs)
        outputs = self._apply_kernel(torch.einsum, self.equation, inputs, self.kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self._activate(outputs)

    def _apply_kernel(self, op: Any, equation: str, inputs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        # torch.einsum takes the equation first; the inputs are the first tensor.
        return super()._apply_kernel(lambda x, k: op(equation, x, k), inputs, kernel)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("use_bias")
        return {**config, "output_shape": self.partial_output_shape, "equation": self.equation,
                "bias_axes": self.bias_axes, "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "quantization_config": None}

