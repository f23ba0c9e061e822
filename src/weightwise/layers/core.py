"""Core layers: Dense and the kernel/bias machinery it shares with the convolutions,
plus Activation, Dropout, ActivityRegularization and InputLayer."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import activations, backend, constraints, initializers, regularizers
from weightwise.layers.args import (
    MAX_SIZE,
    invalid,
    is_int,
    positive_int,
    standardize_shape,
)
from weightwise.layers.base import InputSpec, Layer, WeightRule
from weightwise.layers.symbolic import KerasTensor, Node
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["Activation", "ActivityRegularization", "Dense", "Dropout", "Input", "InputLayer", "KernelLayer", "Wrapper"]


class KernelLayer(Layer):
    """A layer with a ``kernel``, an optional ``bias`` and an activation (Dense, the convolutions).

    It owns the Keras arguments every such layer takes (``activation``, ``use_bias``,
    ``kernel_initializer``, ``bias_initializer``, ``kernel_regularizer``,
    ``bias_regularizer``, ``kernel_constraint``, ``bias_constraint``) and binds them to
    the weights it creates. The four rule attributes stay live after build.

    Its dtype must be a float dtype. Integer and bool inputs are cast to it, which is the
    dtype Keras's result takes; complex inputs, and inputs on another device than the
    weights, are refused with a clear error. Meta inputs give a meta output of the right
    shape and dtype (nothing is computed), as in Keras.
    """

    kernel_regularizer = WeightRule("kernel", "regularizer")
    bias_regularizer = WeightRule("bias", "regularizer")
    kernel_constraint = WeightRule("kernel", "constraint")
    bias_constraint = WeightRule("bias", "constraint")

    def __init__(
        self,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not self._dtype.is_floating_point:
            raise invalid(self, "dtype", self.dtype, "a float dtype")
        if not isinstance(use_bias, bool):
            raise ValueError(f"{type(self).__name__}: invalid value for argument `use_bias`: expected a bool. Received: use_bias={use_bias!r}")
        self.activation = self._resolve("activation", activation, activations.get)
        self.use_bias = use_bias
        self.kernel_initializer = self._resolve("kernel_initializer", kernel_initializer, initializers.get)
        self.bias_initializer = self._resolve("bias_initializer", bias_initializer, initializers.get)
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel_constraint = kernel_constraint
        self.bias_constraint = bias_constraint

    def _kernel_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Integer and bool ``inputs`` in the layer dtype; complex ones refused."""
        if inputs.is_complex():
            raise TypeError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `inputs`: expected real "
                f"numbers. Received: inputs with dtype={inputs.dtype}"
            )
        return inputs.to(self._dtype)

    def _apply_kernel(self, op: Any, inputs: torch.Tensor, *weights: Any, **kwargs: Any) -> torch.Tensor:
        """``op(inputs, *weights, **kwargs)``. Inputs on another device than the weights get a clear
        error, checked only once torch has refused, so a call on the right device pays nothing."""
        if inputs.is_meta:
            # Shape inference, as Keras allows: the weights join the inputs on the meta device.
            weights = tuple(w.to("meta") if isinstance(w, torch.Tensor) else w for w in weights)
        try:
            return op(inputs, *weights, **kwargs)
        except RuntimeError as error:
            if inputs.device == self.kernel.device:
                raise
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `inputs`: the weights are on "
                f"device {self.kernel.device}, the inputs elsewhere. Received: inputs on device={inputs.device}"
            ) from error

    def _activate(self, outputs: torch.Tensor) -> torch.Tensor:
        # `layer.activation = None` after construction means linear, as in Keras.
        return outputs if self.activation is None else self.activation(outputs)

    def _add_kernel_and_bias(self, kernel_shape: Sequence[int], bias_size: int) -> None:
        self.kernel = self.add_weight(
            "kernel", kernel_shape, self.kernel_initializer, self.kernel_regularizer, self.kernel_constraint
        )
        if self.use_bias:
            self.bias = self.add_weight("bias", (bias_size,), self.bias_initializer, self.bias_regularizer, self.bias_constraint)
        else:
            self.bias = None

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class Dense(KernelLayer):
    """Densely connected layer: ``output = activation(inputs @ kernel + bias)``.

    The kernel has Keras's layout ``(input_dim, units)``; inputs of any rank >= 2 are
    multiplied along their last axis.

    >>> from weightwise import ops, regularizers
    >>> layer = Dense(units=5,
    ...               kernel_initializer='ones',
    ...               kernel_regularizer=regularizers.L1(0.01),
    ...               activity_regularizer=regularizers.L2(0.01))
    >>> tensor = ops.ones(shape=(5, 5)) * 2.0
    >>> out = layer(tensor)
    >>> # The kernel regularization term is 0.25
    >>> # The activity regularization term (after dividing by the batch size) is 5
    >>> print(ops.sum(layer.losses))  # 5.25 (= 5 + 0.25)
    tensor(5.2500, grad_fn=<SumBackward0>)
    """

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(activation=activation, use_bias=use_bias, **kwargs)
        self.units = positive_int(self, units, "units")
        self.input_spec = InputSpec(min_ndim=2)
        # A mask over the leading axes passes through unchanged, as in Keras.
        self.supports_masking = True

    def build(self, input_shape: Sequence[int | None]) -> None:
        input_shape = standardize_shape(input_shape, "input_shape", f"Dense layer {self.name!r}")
        # Checked before reading the last axis, so a wrong rank builds nothing (Keras's message).
        InputSpec(min_ndim=2).check(self.name, input_shape)
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"Dense layer {self.name!r}: the last dimension of the inputs must be known. Received: input_shape={input_shape}")
        self._add_kernel_and_bias((input_dim, self.units), self.units)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if not inputs.is_floating_point():
            inputs = self._kernel_inputs(inputs)
        return self._activate(self._apply_kernel(_dense, inputs, self.kernel, self.bias))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def _dense(inputs: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    outputs = torch.matmul(inputs, kernel)
    return outputs if bias is None else outputs + bias


class Activation(Layer):
    """Applies an activation function: ``output = activation(inputs)``.

    >>> from weightwise import ops
    >>> Activation("relu")(ops.convert_to_tensor([[-1.0, 2.0]]))
    tensor([[0., 2.]])
    """

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = self._resolve("activation", activation, activations.get)
        self.input_spec = InputSpec()
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.activation(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Dropout(Layer):
    """Zeroes inputs with probability ``rate`` while training, scaling the rest by ``1 / (1 - rate)``.

    Outside training it is the identity. ``noise_shape`` broadcasts one mask over
    axes of size 1 (``None`` entries take the input's size); an int ``seed`` makes
    the masks reproducible without touching torch's global random state. With
    ``rate=1`` every value is dropped: the output is zeros, not ``0 / 0``.

    >>> layer = Dropout(0.5, seed=0)
    >>> from weightwise import ops
    >>> layer(ops.ones((1, 4)))  # inference: unchanged
    tensor([[1., 1., 1., 1.]])
    >>> sorted(set(layer(ops.ones((1, 1000)), training=True).flatten().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, rate: float, noise_shape: Sequence[int | None] | None = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        rate = noise_fraction(rate, "rate")
        seed = noise_seed(seed)
        if noise_shape is not None:
            noise_shape = standardize_shape(noise_shape, "noise_shape", f"Dropout layer {self.name!r}")
            if 0 in noise_shape:
                raise invalid(self, "noise_shape", noise_shape, "positive ints or None")
        self.rate = rate
        self.noise_shape = noise_shape
        self.seed = seed
        self._generator: torch.Generator | None = None
        self.input_spec = InputSpec()
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        shape = tuple(inputs.shape) if self.noise_shape is None else self._mask_shape(inputs)
        if self.rate == 1:
            return torch.zeros_like(inputs, dtype=torch.result_type(inputs, 1.0))
        if self.seed is not None and (self._generator is None or self._generator.device != inputs.device):
            # torch seeds are 64-bit; a larger seed keeps its low 64 bits.
            self._generator = torch.Generator(device=inputs.device).manual_seed(self.seed & 0xFFFF_FFFF_FFFF_FFFF)
        keep = torch.rand(shape, generator=self._generator, device=inputs.device) >= self.rate
        return inputs * keep.to(inputs.dtype) / (1 - self.rate)

    def _mask_shape(self, inputs: torch.Tensor) -> tuple[int, ...]:
        """The mask's shape: ``noise_shape`` with ``None`` filled in, which must broadcast to the inputs."""
        noise_shape = self.noise_shape or ()
        if len(noise_shape) != inputs.dim() or any(
            size is not None and size not in (1, dim) for size, dim in zip(noise_shape, inputs.shape)
        ):
            raise ValueError(
                f"Dropout layer {self.name!r}: invalid value for argument `noise_shape`: it must have one entry per "
                f"input axis, each None, 1 or that axis's size; the inputs have shape {tuple(inputs.shape)}. "
                f"Received: noise_shape={self.noise_shape}"
            )
        return tuple(dim if size is None else size for size, dim in zip(noise_shape, inputs.shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape}


def noise_fraction(value: Any, argument: str) -> float:
    """``value`` as a noise layer's fraction (Dropout's ``rate``): a real number in ``[0, 1]``, not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"Invalid value received for argument `{argument}`. Expected a float value between 0 and 1. "
                         f"Received: {argument}={value!r}")
    return value if isinstance(value, (int, float)) else float(value)


def noise_seed(seed: Any) -> int | None:
    """``seed`` of a noise layer: ``None`` or an int ``>= 0``."""
    if seed is not None and not (is_int(seed) and seed >= 0):
        raise ValueError(f"Invalid value for argument `seed`: expected a non-negative int or None. Received: seed={seed!r}")
    return None if seed is None else int(seed)


class ActivityRegularization(Layer):
    """Identity layer that adds an activity penalty ``l1 * sum(|x|) + l2 * sum(x ** 2)``, divided by the batch size.

    >>> layer = ActivityRegularization(l1=0.1)
    >>> from weightwise import ops
    >>> _ = layer(ops.ones((2, 3)))
    >>> layer.losses
    [tensor(0.3000)]
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs: Any) -> None:
        if "activity_regularizer" in kwargs:
            raise TypeError(
                "ActivityRegularization sets its own activity_regularizer from `l1` and `l2`; "
                f"do not pass one. Received: activity_regularizer={kwargs['activity_regularizer']!r}"
            )
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1 = self.activity_regularizer.l1
        self.l2 = self.activity_regularizer.l2
        self.supports_masking = True
        self._build_at_init()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("activity_regularizer", None)
        return {**config, "l1": self.l1, "l2": self.l2}


class Wrapper(Layer):
    """Base class of layers that wrap another layer (``self.layer``) and change how it is applied.

    A subclass defines ``call``; the wrapped layer is built with the wrapper, and saved
    inside the wrapper's config under ``"layer"``.

    >>> class Twice(Wrapper):
    ...     def call(self, inputs):
    ...         return self.layer(self.layer(inputs))
    >>> from weightwise import ops
    >>> Twice(Dense(2, kernel_initializer="ones", use_bias=False))(ops.ones((1, 2))).tolist()
    [[4.0, 4.0]]
    """

    def __init__(self, layer: Layer, **kwargs: Any) -> None:
        if not isinstance(layer, Layer):
            raise ValueError(  # noqa: TRY004 -- Keras raises a ValueError here
                f"Invalid value for argument `layer` of {type(self).__name__}: expected a layer. "
                f"Received: layer={layer!r:.200}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape: Any = None) -> None:
        if not self.layer.built:
            self.layer._build_once(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layer": serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Layer:
        if not isinstance(config, dict) or "layer" not in config:
            raise ValueError(f"{cls.__name__}.from_config: invalid value for argument `config`: expected a dict with "
                             f"a 'layer' entry. Received: config={config!r:.200}")
        layer = deserialize_keras_object(config["layer"], custom_objects=custom_objects)
        return super().from_config({**config, "layer": layer})


class InputLayer(Layer):
    """The entry point of a model: an identity layer that records the input's shape and dtype.

    ``shape`` excludes the batch axis; ``batch_shape`` includes it.

    >>> layer = InputLayer(shape=(3,))
    >>> layer.batch_shape
    (None, 3)
    """

    def __init__(
        self,
        shape: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        sparse: bool | None = None,
        batch_shape: Sequence[int | None] | None = None,
        name: str | None = None,
        ragged: bool | None = None,
        optional: bool = False,
        **kwargs: Any,
    ) -> None:
        for flag, value in (("sparse", sparse), ("ragged", ragged)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"Invalid value for argument `{flag}`: expected a bool or None. Received: {flag}={value!r}")
            if value:
                raise ValueError(f"InputLayer: `{flag}=True` is not supported by weightwise. Received: {flag}=True")
        if not isinstance(optional, bool):
            raise TypeError(f"Invalid value for argument `optional`: expected a bool. Received: optional={optional!r}")
        if shape is not None and batch_shape is not None:
            raise ValueError(
                f"InputLayer: pass `shape` or `batch_shape`, not both. Received: shape={shape!r}, batch_shape={batch_shape!r}"
            )
        if shape is None and batch_shape is None:
            raise ValueError("InputLayer: `shape` or `batch_shape` is required. Received: shape=None, batch_shape=None")
        if batch_size is not None and not (is_int(batch_size) and 0 <= batch_size <= MAX_SIZE):
            raise ValueError(
                f"Invalid value for argument `batch_size`: expected an int >= 0 or None. Received: batch_size={batch_size!r}"
            )
        if batch_shape is not None:
            batch_shape = standardize_shape(batch_shape, "batch_shape", "InputLayer")
        else:
            batch_shape = (batch_size, *standardize_shape(shape, "shape", "InputLayer"))
            batch_shape = standardize_shape(batch_shape, "shape", "InputLayer")
        # Without a dtype the input is floatx(), as in Keras, whatever the global policy: under a mixed
        # policy the model's inputs stay float32 and each layer casts what it reads.
        super().__init__(name=name, dtype=backend.floatx() if dtype is None else dtype, **kwargs)
        self.batch_shape = batch_shape
        self.optional = optional
        self.built = True
        # The symbolic tensor this layer feeds into a functional graph.
        self.output = KerasTensor.placeholder(self.batch_shape, self._dtype, name=self.name)
        self.output.node = Node(self, None, (), {}, outputs=self.output)

    def get_config(self) -> dict[str, Any]:
        return {"batch_shape": self.batch_shape, "dtype": self.dtype, "sparse": False, "ragged": False,
                "name": self.name, "optional": self.optional}


def Input(
    shape: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    dtype: Any = None,
    batch_shape: Sequence[int | None] | None = None,
    name: str | None = None,
    optional: bool = False,
) -> KerasTensor:
    """A symbolic input of ``shape`` (batch axis excluded), the start of a functional model.

    >>> from weightwise.layers import Dense
    >>> inputs = Input(shape=(4,))
    >>> outputs = Dense(2, kernel_regularizer="l2")(inputs)
    >>> outputs.shape
    (None, 2)
    """
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name,
                       optional=optional)
    return layer.output
