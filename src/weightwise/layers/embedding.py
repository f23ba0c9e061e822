"""The Embedding layer: integer indices to rows of a trainable ``(input_dim, output_dim)`` matrix."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from weightwise import arguments, constraints, initializers, regularizers
from weightwise.layers.base import Layer, WeightRule

__all__ = ["Embedding"]


def _dimension(value: Any, name: str) -> int:
    """A positive int dimension, with Keras's message (numpy ints are accepted too)."""
    if not arguments.is_int(value) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={arguments.echo(value)} (of type {type(value).__name__}).")
    return int(value)


class Embedding(Layer):
    """Looks up rows of ``embeddings`` (``(input_dim, output_dim)``): ``output[..., :] = embeddings[index]``.

    Inputs are indices of any integer dtype (floats are truncated, as Keras casts them);
    a negative index counts from the end, as in Keras. An index outside
    ``[-input_dim, input_dim)`` is a ``ValueError``. With ``mask_zero=True`` index 0 is
    padding: :meth:`compute_mask` gives ``inputs != 0`` for the layers downstream.
    ``weights`` (the matrix, or a list holding it) sets the initial values and builds the
    layer at once. LoRA (``lora_rank``) and quantization are not supported.

    >>> from weightwise import ops
    >>> layer = Embedding(3, 2, mask_zero=True, weights=[[[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]]])
    >>> indices = ops.convert_to_tensor([[2, 1, 0]])
    >>> layer(indices).tolist()
    [[[3.0, 4.0], [1.0, 2.0], [0.0, 0.0]]]
    >>> layer.compute_mask(indices).tolist()
    [[True, True, False]]
    """

    embeddings_regularizer = WeightRule("embeddings", "regularizer")
    embeddings_constraint = WeightRule("embeddings", "constraint")

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        embeddings_constraint: Any = None,
        mask_zero: bool = False,
        weights: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        input_dim = _dimension(input_dim, "input_dim")
        output_dim = _dimension(output_dim, "output_dim")
        for name, value in (("lora_rank", lora_rank), ("lora_alpha", lora_alpha),
                            ("quantization_config", quantization_config)):
            if value is not None:
                raise ValueError(
                    f"Embedding: `{name}` is a Keras feature (LoRA or quantization) that weightwise does not support. "
                    f"Received: {name}={arguments.echo(value)}")
        if kwargs.pop("input_length", None) is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        super().__init__(**kwargs)
        owner = f"Embedding layer {self.name!r}"
        if not self._dtype.is_floating_point:
            raise arguments.invalid("dtype", "a float dtype", self.dtype, owner=owner)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = self._resolve("embeddings_initializer", embeddings_initializer, initializers.get)
        self.embeddings_regularizer = embeddings_regularizer
        self.embeddings_constraint = embeddings_constraint
        self.mask_zero = arguments.flag(mask_zero, "mask_zero", owner=owner)
        self.supports_masking = self.mask_zero
        # Float indices are not cast to a low-precision compute dtype first (Keras's autocast=False),
        # where bfloat16 would round 257 to 256.
        self.autocast = False
        self.lora_rank = None
        self.lora_alpha = None
        self.lora_enabled = False
        self.quantization_config = None
        if weights is not None:
            if not (isinstance(weights, list) and len(weights) == 1 and np.ndim(weights[0]) == 2):
                weights = [weights]
            self.build()
            self.set_weights(weights)

    def build(self, input_shape: Any = None) -> None:
        # Read uncast under a mixed policy: the looked-up rows are cast to the compute dtype, the same
        # values Keras gets from casting the whole table first, without copying the table at each call.
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                                          self.embeddings_regularizer, self.embeddings_constraint, autocast=False)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.is_complex():
            raise TypeError(
                f"Embedding layer {self.name!r}: invalid value for argument `inputs`: expected integer indices. "
                f"Received: inputs with dtype={inputs.dtype}")
        indices = inputs.long()
        expected = f"expected indices in [-{self.input_dim}, {self.input_dim}) (input_dim={self.input_dim})"
        outside = (indices < -self.input_dim) | (indices >= self.input_dim)
        if torch.compiler.is_compiling():
            # Reading the check back would break the compiled graph: the program asserts it instead.
            torch._assert_async(~outside.any(), f"Embedding layer {self.name!r}: invalid value for argument "
                                f"`inputs`: {expected}.")
        elif not indices.is_meta and indices.numel() and bool(outside.any()):
            raise ValueError(
                f"Embedding layer {self.name!r}: invalid value for argument `inputs`: {expected}. "
                f"Received: inputs with values in [{int(indices.min())}, {int(indices.max())}]")
        # Negative indices count from the end, as Keras's `take` does.
        indices = torch.where(indices < 0, indices + self.input_dim, indices)
        embeddings = self.embeddings.to("meta") if indices.is_meta else self.embeddings
        return F.embedding(indices, embeddings).to(self._dtype)

    def compute_mask(self, inputs: Any, mask: Any = None) -> torch.Tensor | None:
        if not self.mask_zero:
            return None
        return torch.as_tensor(inputs) != 0

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return (*input_shape, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero,
            "quantization_config": None,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Embedding:
        """Build the layer from its config; a bad value is a ``TypeError`` naming the class, as in Keras."""
        try:
            return super().from_config(config)
        except ValueError as error:
            raise TypeError(f"Error when deserializing class '{cls.__name__}' using config={config}.\n\n"
                            f"Exception encountered: {error}") from error
