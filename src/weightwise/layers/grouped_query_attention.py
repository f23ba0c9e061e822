"""Grouped-query attention (Ainslie et al., 2023), with Keras's projections and weight layouts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import arguments, config, constraints, initializers, random, regularizers
from weightwise.layers.attention import (
    _RULES,
    AttentionMixin,
    _attention_arguments,
    _call_flag,
    _ProjectionRule,
    _unmasked,
)
from weightwise.layers.base import Layer
from weightwise.layers.einsum_dense import EinsumDense

__all__ = ["GroupedQueryAttention"]


class GroupedQueryAttention(AttentionMixin, Layer):
    """Attention with ``num_query_heads`` query heads sharing ``num_key_value_heads`` key/value heads.

    Each key/value head serves ``num_query_heads // num_key_value_heads`` consecutive query
    heads (``num_key_value_heads=1`` is multi-query attention; equal counts are multi-head
    attention). Scores are ``softmax(Q Kᵀ / sqrt(head_dim))``; masks combine as in
    :class:`~weightwise.layers.MultiHeadAttention`, and the output has the query's shape.

    Weights, Keras's order: ``query/kernel (dim, q_heads, head_dim)``, ``query/bias (q_heads, head_dim)``,
    ``key`` and ``value`` ``(dim, kv_heads, head_dim)`` / ``(kv_heads, head_dim)`` (``gate`` after
    ``key`` with ``use_gate``), ``attention_output/kernel (q_heads, head_dim, dim)``,
    ``attention_output/bias (dim,)``. The rule arguments reach every projection; the activity
    regularizer reaches the projections and this layer's outputs, as in Keras.

    >>> from weightwise import ops
    >>> layer = GroupedQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    >>> output, scores = layer(ops.ones((2, 5, 8)), ops.ones((2, 3, 8)), return_attention_scores=True)
    >>> tuple(output.shape), tuple(scores.shape), [tuple(w.shape) for w in layer.weights[:4]]
    ((2, 5, 8), (2, 4, 5, 3), [(8, 4, 4), (4, 4), (8, 2, 4), (2, 4)])
    """

    _bool_given_mask = False
    _SUBLAYERS = ("_query_dense", "_key_dense", "_gate_dense", "_value_dense", "_output_dense")

    kernel_regularizer = _ProjectionRule()
    bias_regularizer = _ProjectionRule()
    kernel_constraint = _ProjectionRule()
    bias_constraint = _ProjectionRule()

    def __init__(
        self,
        head_dim: int,
        num_query_heads: int,
        num_key_value_heads: int,
        dropout: float = 0.0,
        use_bias: bool = True,
        sliding_window: int | None = None,
        flash_attention: bool | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        use_gate: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        owner = "GroupedQueryAttention"
        for name, value in (("head_dim", head_dim), ("num_query_heads", num_query_heads),
                            ("num_key_value_heads", num_key_value_heads)):
            arguments.count(value, name, low=1, owner=owner)
        if num_query_heads % num_key_value_heads != 0:
            raise ValueError("`num_query_heads` must be divisible by `num_key_value_heads`. Received: "
                             f"num_query_heads={num_query_heads}, num_key_value_heads={num_key_value_heads}")
        dropout, use_bias, use_gate, sliding_window, flash_attention, seed = _attention_arguments(
            owner, dropout, use_bias, use_gate, sliding_window, flash_attention, seed)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.supports_masking = True
        self.head_dim = int(head_dim)
        self.num_query_heads = int(num_query_heads)
        self.num_key_value_heads = int(num_key_value_heads)
        self.num_repeats = self.num_query_heads // self.num_key_value_heads
        self.dropout = self._dropout_rate = dropout
        self.use_bias = use_bias
        self.use_gate = use_gate
        self.sliding_window = self._window = sliding_window
        # As in Keras, an unset flag takes the global default when the layer is made.
        self._flash_attention = config.is_flash_attention_enabled() if flash_attention is None else flash_attention
        self.seed = seed
        self._initializers = (self._resolve("kernel_initializer", kernel_initializer, initializers.get),
                              self._resolve("bias_initializer", bias_initializer, initializers.get))
        for name, value in zip(_RULES, (kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint)):
            setattr(self, name, value)
        self._inverse_sqrt_head_dim = 1.0 / math.sqrt(float(self.head_dim))
        self._return_attention_scores = False
        self._dropout_seed_generator = random.SeedGenerator(seed) if dropout > 0 else None

    @property
    def _projection_activity_regularizer(self) -> Any:
        # Keras passes this layer's own activity regularizer on to the projections.
        return self.activity_regularizer

    @property
    def kernel_initializer(self) -> Any:
        """The initializer of every projection's kernel."""
        return self._initializers[0]

    @property
    def bias_initializer(self) -> Any:
        """The initializer of every projection's bias."""
        return self._initializers[1]

    def build(self, query_shape: Sequence[int | None], value_shape: Sequence[int | None],
              key_shape: Sequence[int | None] | None = None) -> None:
        """Create the projections for inputs of these shapes (``key_shape`` defaults to ``value_shape``)."""
        given_key = key_shape
        query_shape, value_shape, key_shape = self._check_build_shapes(query_shape, value_shape, key_shape)
        if len(query_shape) != 3:
            raise arguments.invalid("query_shape", "a shape (batch, length, features) of rank 3", query_shape,
                                    owner=f"GroupedQueryAttention layer {self.name!r}")
        self.feature_dim = query_shape[-1]
        heads_bias = "uh" if self.use_bias else None
        kv_bias = "vh" if self.use_bias else None

        def projection(equation: str, heads: int, bias_axes: str | None, name: str, shape: Any,
                       **extra: Any) -> EinsumDense:
            layer = EinsumDense(equation, output_shape=(None, heads, self.head_dim), bias_axes=bias_axes, name=name,
                                **self._sublayer_kwargs(), **extra)
            layer.build(shape)
            return layer

        self._query_dense = projection("bqm,muh->bquh", self.num_query_heads, heads_bias, "query", query_shape)
        self._key_dense = projection("bkm,mvh->bkvh", self.num_key_value_heads, kv_bias, "key", key_shape)
        if self.use_gate:
            self._gate_dense = projection("bqm,muh->bquh", self.num_query_heads, heads_bias, "gate", query_shape,
                                          activation="sigmoid")
        self._value_dense = projection("bkm,mvh->bkvh", self.num_key_value_heads, kv_bias, "value", value_shape)
        self._dot_product_equation = "bquh,bkuh->buqk"
        self._combine_equation = "buqk,bkuh->bquh"
        self._output_dense = EinsumDense("bquh,uhm->bqm", output_shape=(None, self.feature_dim),
                                         bias_axes="m" if self.use_bias else None, name="attention_output",
                                         **self._sublayer_kwargs())
        self._output_dense.build((None, None, self.num_query_heads, self.head_dim))
        self._record_build_shapes(query_shape, value_shape, given_key)

    def call(
        self,
        query: torch.Tensor,
        value: Any,
        key: Any = None,
        query_mask: Any = None,
        value_mask: Any = None,
        key_mask: Any = None,
        attention_mask: Any = None,
        return_attention_scores: bool = False,
        training: bool | None = None,
        use_causal_mask: bool = False,
    ) -> Any:
        self._return_attention_scores = _call_flag(self, return_attention_scores, "return_attention_scores")
        value, key, query_mask, attention_mask, causal_only = self._call_inputs(
            GroupedQueryAttention, query, value, key, query_mask, value_mask, key_mask, attention_mask,
            use_causal_mask)
        gate = self._gate_dense(_unmasked(query)) if self.use_gate else None
        projected_query = self._query_dense(_unmasked(query))
        # Each key/value head serves `num_repeats` consecutive query heads.
        projected_key = torch.repeat_interleave(self._key_dense(_unmasked(key)), self.num_repeats, dim=2)
        projected_value = torch.repeat_interleave(self._value_dense(_unmasked(value)), self.num_repeats, dim=2)
        extra = {"use_causal_mask": True} if causal_only else {}
        output, scores = self._compute_attention(projected_query, projected_key, projected_value,
                                                 attention_mask=attention_mask, training=training, **extra)
        output = self._output_dense(output * gate if gate is not None else output)
        self._set_output_mask(output, query_mask)
        if self._return_attention_scores:
            return output, scores
        return output

    def _compute_attention(
        self,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any = None,
        training: bool | None = None,
        use_causal_mask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention of projected ``query (B, T, heads, head_dim)`` and repeated ``key`` / ``value``.

        As in Keras, whether scores are wanted comes from the last call (``_return_attention_scores``).
        """
        self._check_flash(self._return_attention_scores)
        query = self._tensor(query)
        key, value = self._tensor(key, query), self._tensor(value, query)
        attention_mask = self._mask(attention_mask, query)
        if not (self.dropout > 0.0 or self._return_attention_scores or query.dim() != 4):
            if attention_mask is not None:
                attention_mask = self._expand_mask(attention_mask, 4, -3).bool()
            return self._fused_attention(query, key, value, attention_mask, self._inverse_sqrt_head_dim,
                                         use_causal_mask), None
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else self._broadcast_and(attention_mask.bool(), causal)
        query = query * torch.tensor(self._inverse_sqrt_head_dim, dtype=query.dtype)
        scores = torch.einsum(self._dot_product_equation, query, key)
        scores = self._masked_softmax_over(scores, attention_mask, -3, (-1,))
        output = torch.einsum(self._combine_equation, self._attention_dropout(scores, training), value)
        return output, scores

    def _scores_shape(self, query_shape: tuple[Any, ...], key_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (query_shape[0], self.num_query_heads, query_shape[1], key_shape[1])

    def compute_output_shape(self, query_shape: Sequence[int | None], value_shape: Sequence[int | None],
                             key_shape: Sequence[int | None] | None = None) -> Any:
        """The output's shape, the query's; the query's and value's last sizes must agree, as in Keras.

        >>> GroupedQueryAttention(4, 4, 2).compute_output_shape((None, 5, 8), (None, 3, 8))
        (None, 5, 8)
        """
        key_shape = value_shape if key_shape is None else key_shape
        if query_shape[-1] != value_shape[-1]:
            raise ValueError(
                "The last dimension of `query_shape` and `value_shape` must be equal, but are "
                f"{query_shape[-1]}, {value_shape[-1]}. Received: query_shape={query_shape}, value_shape={value_shape}"
            )
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        return query_shape

    def get_config(self) -> dict[str, Any]:
        kernel_init, bias_init = self._initializers
        return {
            **super().get_config(),
            "head_dim": self.head_dim,
            "num_query_heads": self.num_query_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "use_bias": self.use_bias,
            "use_gate": self.use_gate,
            "sliding_window": self.sliding_window,
            "dropout": self.dropout,
            "kernel_initializer": initializers.serialize(kernel_init),
            "bias_initializer": initializers.serialize(bias_init),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        }
