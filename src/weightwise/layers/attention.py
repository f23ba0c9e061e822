"""Multi-head attention, with Keras's projections, masks and weight layouts.

:class:`MultiHeadAttention` projects ``query``, ``key`` and ``value`` with
:class:`~weightwise.layers.EinsumDense` sublayers named ``query``, ``key``, ``value``
(and ``gate`` with ``use_gate``), attends, and projects back with ``attention_output``,
so its weights are Keras's, in Keras's order and under Keras's paths
(``mha/query/kernel``, ...). The rule arguments (``kernel_regularizer``,
``bias_constraint``, ...) go to every projection: each gets the same rule object, and each
a fresh copy of the initializers, as in Keras. Setting a rule attribute on a built layer
rebinds it on every projection.

:class:`AttentionMixin` holds what grouped-query attention shares: the call adapter,
the build config from several shapes, the mask algebra, the masked softmax, the
attention dropout and the fused kernel (``torch.nn.functional.scaled_dot_product_attention``),
which runs where it gives Keras's numbers (no dropout, no scores returned, rank-4
projections), exactly where Keras runs it.
"""

from __future__ import annotations

import contextlib
import math
import string
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from weightwise import arguments, config, constraints, initializers, ops, random, regularizers
from weightwise.layers.args import standardize_shape
from weightwise.layers.base import Layer, unchanged_on_error
from weightwise.layers.einsum_dense import EinsumDense
from weightwise.layers.symbolic import KerasTensor, get_keras_mask, set_keras_mask

__all__ = ["AttentionMixin", "MultiHeadAttention"]

_RULES = ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")


class _ProjectionRule:
    """A rule argument of an attention layer (``kernel_regularizer``, ...): one object shared by every
    projection. Setting it on a built layer rebinds it on each projection at once."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.get = regularizers.get if name.endswith("regularizer") else constraints.get

    def __get__(self, layer: Any, owner: type) -> Any:
        if layer is None:
            return self
        return layer.__dict__.get("_projection_rules", {}).get(self.attr)

    def __set__(self, layer: Any, value: Any) -> None:
        resolved = layer._resolve(self.attr, value, self.get)
        layer.__dict__.setdefault("_projection_rules", {})[self.attr] = resolved
        for projection in layer._projections():
            setattr(projection, self.attr, resolved)


def _shape_of(value: Any) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    if hasattr(value, "shape"):
        return tuple(None if d is None else int(d) for d in value.shape)
    return tuple(np.shape(value))


def _unmasked(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without its Keras mask, for the projections (which take none); the caller's tensor
    keeps its mask, where Keras removes it."""
    return tensor.view_as(tensor) if get_keras_mask(tensor) is not None else tensor


def _call_flag(layer: Layer, value: Any, name: str) -> bool:
    # Keras's own tests pass `use_causal_mask=0`; ints 0 and 1 are taken as the bools they stand for.
    if isinstance(value, (bool, np.bool_)) or (arguments.is_int(value) and value in (0, 1)):
        return bool(value)
    raise arguments.invalid(name, "a bool", value, owner=f"{type(layer).__name__} layer {layer.name!r}")


def _large_negative(dtype: torch.dtype) -> float:
    # Keras's softmax fills masked scores with these; its fused path adds -0.7 * the dtype's rough max.
    return -3e4 if dtype == torch.float16 else -1e9


@contextlib.contextmanager
def _sdpa_backends(flash: bool | None) -> Iterator[None]:
    """torch's kernel choice for ``flash_attention``: only flash (True), anything but flash (False), or torch's pick."""
    if flash is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    chosen = [SDPBackend.FLASH_ATTENTION] if flash else [
        b for b in (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH)]
    with sdpa_kernel(backends=chosen):
        yield


class AttentionMixin:
    """What :class:`MultiHeadAttention` and :class:`~weightwise.layers.GroupedQueryAttention` share.

    - calls by keyword (``layer(query=q, value=v)``), built from every input's shape before the first call;
    - Keras's build config ``{"shapes_dict": {"query_shape": ..., "value_shape": ...}}``, both ways;
    - the mask algebra: query mask ``(B, T, 1)``, value and key masks ``(B, 1, S)``, the causal mask
      ``(1, T, S)`` (``row >= column``) and the sliding window ``|row - column| < w``, all and-ed;
    - the masked softmax (masked scores become ``-1e9`` before and ``0`` after), the attention
      dropout (Keras's dropout, drawn from a seed generator), and the fused kernel with
      Keras's additive mask (``0`` where allowed, ``-0.7 * 3.38953e38`` elsewhere).

    >>> from weightwise import ops
    >>> MultiHeadAttention(num_heads=2, key_dim=4)(query=ops.ones((1, 3, 8)), value=ops.ones((1, 5, 8))).shape
    torch.Size([1, 3, 8])
    """

    _SUBLAYERS: tuple[str, ...] = ()
    _bool_given_mask = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "query" in kwargs:
            args = (kwargs.pop("query"),)
        if self.built or not args:
            return super().__call__(*args, **kwargs)
        value = args[1] if len(args) > 1 else kwargs.get("value")
        key = args[2] if len(args) > 2 else kwargs.get("key")
        if value is None:
            raise TypeError(f"{type(self).__name__} layer {self.name!r}: missing required argument `value`. "
                            f"Call the layer as layer(query, value) or layer(query, value, key).")
        # Keras builds from the shapes of all the tensors a call gets; the base layer sees only the first.
        with unchanged_on_error(self):
            self.build(_shape_of(args[0]), _shape_of(value), _shape_of(key))
            return super().__call__(*args, **kwargs)

    def _projections(self) -> list[EinsumDense]:
        return [module for name in self._SUBLAYERS if (module := self._modules.get(name)) is not None]

    def _sublayer_kwargs(self) -> dict[str, Any]:
        """The arguments every projection gets: the same rule objects, fresh initializer copies, the dtype."""
        kernel_init, bias_init = self._initializers
        return {
            **{name: getattr(self, name) for name in _RULES},
            "activity_regularizer": self._projection_activity_regularizer,
            "kernel_initializer": type(kernel_init).from_config(kernel_init.get_config()),
            "bias_initializer": type(bias_init).from_config(bias_init.get_config()),
            "dtype": self.dtype_policy,
        }

    def _record_build_shapes(self, query_shape: Any, value_shape: Any, key_shape: Any) -> None:
        shapes = {"query_shape": query_shape, "value_shape": value_shape}
        if key_shape is not None:
            shapes["key_shape"] = key_shape
        self.__dict__["_build_shapes"] = {name: [None if d is None else int(d) for d in shape]
                                          for name, shape in shapes.items()}

    def get_build_config(self) -> dict[str, Any] | None:
        """Keras's ``{"shapes_dict": {"query_shape": ..., "value_shape": ...}}``; ``None`` before build."""
        shapes = self.__dict__.get("_build_shapes")
        return None if shapes is None or not self.built else {"shapes_dict": {k: list(v) for k, v in shapes.items()}}

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Build from :meth:`get_build_config` output, ours or Keras's (``shapes_dict`` of the call's shapes)."""
        if isinstance(config, dict) and isinstance(config.get("shapes_dict"), dict):
            if not self.built:
                self.build(**{name: None if shape is None else tuple(shape)
                              for name, shape in config["shapes_dict"].items()})
            return
        super().build_from_config(config)

    def _check_build_shapes(self, query_shape: Any, value_shape: Any, key_shape: Any) -> tuple[Any, Any, Any]:
        owner = f"{type(self).__name__} layer {self.name!r}"
        query_shape = standardize_shape(query_shape, "query_shape", owner)
        value_shape = standardize_shape(value_shape, "value_shape", owner)
        key_shape = value_shape if key_shape is None else standardize_shape(key_shape, "key_shape", owner)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        for name, shape in (("query_shape", query_shape), ("value_shape", value_shape), ("key_shape", key_shape)):
            if len(shape) < 3 or shape[-1] is None:
                raise arguments.invalid(name, "a shape (batch, ..., features) of rank 3 or more with a known last "
                                        "axis", shape, owner=owner)
        if len(query_shape) != len(value_shape):
            raise ValueError(f"{owner}: `query` and `value` must have the same rank. Received: "
                             f"query_shape={query_shape} and value_shape={value_shape}")
        return query_shape, value_shape, key_shape

    # -- call helpers ---------------------------------------------------------------------
    def _tensor(self, value: Any, like: torch.Tensor | None = None) -> Any:
        """A call argument as a tensor on the layer's device, floats in the layer's dtype."""
        if value is None:
            return None
        tensor = value if isinstance(value, torch.Tensor) else ops.convert_to_tensor(np.asarray(value))
        if tensor.is_floating_point() and tensor.dtype != self._dtype:
            tensor = tensor.to(self._dtype)
        if like is not None and tensor.device != like.device:
            tensor = tensor.to(like.device)
        return tensor

    def _mask(self, value: Any, like: torch.Tensor) -> torch.Tensor | None:
        """A mask argument as a tensor on ``like``'s device (its dtype kept: Keras casts where it needs)."""
        if value is None:
            return None
        tensor = value if isinstance(value, torch.Tensor) else ops.convert_to_tensor(np.asarray(value))
        return tensor.to(like.device)

    def _call_inputs(self, owner: type, query: torch.Tensor, value: Any, key: Any, query_mask: Any, value_mask: Any,
                     key_mask: Any, attention_mask: Any, use_causal_mask: Any) -> tuple[Any, Any, Any, Any, bool]:
        """A call's ``value``, ``key`` (``value`` if not given), query mask, attention mask, and whether
        causal masking is all there is.

        Each mask is the argument given, else the Keras mask its tensor carries. Causal masking
        alone runs torch's causal kernel rather than a ``(T, S)`` mask, unless a subclass computes
        attention its own way (it would then get no mask at all), as in Keras.
        """
        use_causal_mask = _call_flag(self, use_causal_mask, "use_causal_mask")
        query_mask = query_mask if query_mask is not None else get_keras_mask(query)
        value_mask = value_mask if value_mask is not None else get_keras_mask(value)
        if key is not None and key_mask is None:
            key_mask = get_keras_mask(key)
        value, key = self._tensor(value, query), self._tensor(key, query)
        key = value if key is None else key
        causal_only = (use_causal_mask and query_mask is None and value_mask is None and key_mask is None
                       and attention_mask is None and self._window is None
                       and type(self)._compute_attention is owner._compute_attention)
        if not causal_only:
            attention_mask = self._combine_masks(query, value, query_mask, value_mask, key_mask, attention_mask,
                                                 use_causal_mask)
        return value, key, query_mask, None if causal_only else attention_mask, causal_only

    def _combine_masks(self, query: torch.Tensor, value: torch.Tensor, query_mask: Any, value_mask: Any,
                       key_mask: Any, attention_mask: Any, use_causal_mask: bool) -> torch.Tensor | None:
        """Keras's attention mask ``(B, T, S)``: the given one and-ed with the automatic ones.

        Multi-head attention makes the given mask bool always; grouped-query attention only when
        there is an automatic mask to and it with (``_bool_given_mask``), as Keras's two layers do.
        """
        auto = None
        for mask, axis in ((query_mask, -1), (value_mask, -2), (key_mask, -2)):
            if mask is not None:
                mask = self._mask(mask, query).bool().unsqueeze(axis)
                auto = mask if auto is None else auto & mask
        if use_causal_mask:
            mask = self._compute_causal_mask(query, value)
            auto = mask if auto is None else auto & mask
        if self._window is not None:
            mask = self._compute_sliding_window_mask(query, value)
            auto = mask if auto is None else auto & mask
        attention_mask = self._mask(attention_mask, query)
        if attention_mask is not None and (self._bool_given_mask or auto is not None):
            attention_mask = attention_mask.bool()
        if auto is None:
            return attention_mask
        return auto if attention_mask is None else self._broadcast_and(attention_mask, auto)

    def _broadcast_and(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        try:
            return first & second
        except RuntimeError as error:
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `attention_mask`: it must "
                f"broadcast to (batch, query length, key length) = {tuple(second.shape)}. Received: attention_mask "
                f"of shape {tuple(first.shape)}"
            ) from error

    def _compute_causal_mask(self, query: Any, value: Any = None) -> torch.Tensor:
        """``(1, T, S)``: query position ``i`` sees key positions ``j <= i`` (T and S from axis 1).

        >>> MultiHeadAttention(2, 2)._compute_causal_mask(ops.ones((1, 3, 4))).int().tolist()
        [[[1, 0, 0], [1, 1, 0], [1, 1, 1]]]
        """
        query = self._tensor(query)
        q_len = query.shape[1]
        v_len = q_len if value is None else _shape_of(value)[1]
        rows = torch.arange(q_len, device=query.device).view(1, q_len, 1)
        return rows >= torch.arange(v_len, device=query.device).view(1, 1, v_len)

    def _compute_sliding_window_mask(self, query: Any, value: Any = None) -> torch.Tensor:
        """``(1, T, S)``: query position ``i`` sees key positions with ``|i - j| < sliding_window``."""
        query = self._tensor(query)
        q_len = query.shape[1]
        v_len = q_len if value is None else _shape_of(value)[1]
        rows = torch.arange(q_len, device=query.device).view(1, q_len, 1)
        return (rows - torch.arange(v_len, device=query.device).view(1, 1, v_len)).abs() < self._window

    def _expand_mask(self, mask: torch.Tensor, rank: int, axis: int) -> torch.Tensor:
        """Insert axes at ``axis`` (Keras's head axis position) until ``mask`` has ``rank`` axes."""
        for _ in range(rank - mask.dim()):
            mask = mask.unsqueeze(axis)
        return mask

    def _masked_softmax_over(self, scores: torch.Tensor, mask: torch.Tensor | None, axis: int,
                             norm_axes: tuple[int, ...]) -> torch.Tensor:
        """Keras's ``Softmax(axis=norm_axes)`` on ``scores`` with ``mask`` expanded at ``axis``."""
        if mask is not None:
            mask = self._expand_mask(mask, scores.dim(), axis)
            if mask.dim() > scores.dim() or any(m not in (1, s) for m, s in zip(mask.shape[::-1], scores.shape[::-1])):
                raise ValueError(
                    f"{type(self).__name__} layer {self.name!r}: invalid value for argument `attention_mask`: the "
                    f"mask must broadcast to the attention scores of shape {tuple(scores.shape)}. Received: a mask "
                    f"of shape {tuple(mask.shape)} after adding the head axis"
                )
            if mask.dtype != torch.bool:
                mask = mask > 0.5
            scores = torch.where(mask, scores, torch.tensor(_large_negative(scores.dtype), dtype=scores.dtype))
        dtype = scores.dtype
        if scores.device.type == "cpu" and dtype == torch.float16:
            scores = scores.float()  # as Keras on CPU: torch's float16 softmax lacks a CPU kernel
        if len(norm_axes) > 1:
            outputs = torch.exp(scores - torch.logsumexp(scores, dim=norm_axes, keepdim=True))
        else:
            outputs = torch.softmax(scores, dim=norm_axes[0])
        outputs = outputs.to(dtype)
        return outputs if mask is None else torch.where(mask, outputs, torch.zeros((), dtype=dtype))

    def _attention_dropout(self, scores: torch.Tensor, training: bool | None) -> torch.Tensor:
        """Keras's Dropout on the scores while training: drawn from the layer's seed generator."""
        if not training or self._dropout_rate == 0:
            return scores
        return random.dropout(scores, self._dropout_rate, seed=self._dropout_seed_generator)

    def _fused_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         mask: torch.Tensor | None, scale: float, is_causal: bool) -> torch.Tensor:
        """torch's ``scaled_dot_product_attention`` on ``(B, T, N, H)`` projections, as Keras's torch
        backend calls it: a bool mask becomes an additive one (so a fully masked row gives the mean
        of the values, as in Keras), and ``is_causal`` with a mask folds into it."""
        if query.is_meta:
            return torch.empty((*query.shape[:-1], value.shape[-1]), dtype=query.dtype, device="meta")
        if mask is not None:
            mask = mask.bool()
            if is_causal:
                mask = mask & torch.ones((query.shape[1], key.shape[1]), dtype=torch.bool, device=mask.device).tril()
            is_causal = False
            negative = torch.tensor(-0.7 * (65500.0 if query.dtype == torch.float16 else 3.38953e38), dtype=query.dtype)
            mask = torch.where(mask, torch.zeros((), dtype=query.dtype), negative.to(mask.device))
            scores_shape = (query.shape[0], query.shape[2], query.shape[1], key.shape[1])
            if mask.dim() > 4 or any(m not in (1, s) for m, s in zip(mask.shape[::-1], scores_shape[::-1])):
                raise ValueError(
                    f"{type(self).__name__} layer {self.name!r}: invalid value for argument `attention_mask`: the "
                    f"mask must broadcast to the attention scores of shape {scores_shape}. Received: a mask of "
                    f"shape {tuple(mask.shape)} after adding the head axis"
                )
            mask = mask.contiguous()
        q, k, v = (t.transpose(1, 2).contiguous() for t in (query, key, value))
        try:
            with _sdpa_backends(self._flash_attention):
                outputs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)
        except RuntimeError as error:
            if not self._flash_attention:
                raise
            raise RuntimeError(
                "Flash attention is not supported with the provided inputs. Please check the warnings for more "
                f"details. Received: query of shape {tuple(query.shape)} and dtype {query.dtype} on {query.device}"
            ) from error
        return outputs.transpose(1, 2)

    def _check_flash(self, return_attention_scores: bool) -> None:
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "Returning attention scores is not supported when flash attention is enabled. Please disable flash "
                "attention to access attention scores."
            )

    def compute_output_spec(self, query: Any, value: Any, key: Any = None, query_mask: Any = None,
                            value_mask: Any = None, key_mask: Any = None, attention_mask: Any = None,
                            return_attention_scores: bool = False, training: bool | None = None,
                            use_causal_mask: bool = False) -> Any:
        """The output's :class:`~weightwise.layers.KerasTensor` (and the scores', if asked) for these inputs.

        >>> from weightwise.layers import Input
        >>> MultiHeadAttention(2, 4).compute_output_spec(Input((3, 8)), Input((5, 8)), return_attention_scores=True)
        (<KerasTensor shape=(None, 3, 8), dtype=float32>, <KerasTensor shape=(None, 2, 3, 5), dtype=float32>)
        """
        shapes = [_shape_of(t) for t in (query, value, key)]
        output = KerasTensor.placeholder(tuple(self.compute_output_shape(*shapes)), self._dtype)
        if not return_attention_scores:
            return output
        return output, KerasTensor.placeholder(self._scores_shape(shapes[0], shapes[2] or shapes[1]), self._dtype)

    def _set_output_mask(self, outputs: torch.Tensor, query_mask: Any) -> None:
        if query_mask is not None and isinstance(outputs, torch.Tensor):
            set_keras_mask(outputs, query_mask)


def _attention_arguments(owner: str, dropout: Any, use_bias: Any, use_gate: Any, sliding_window: Any,
                         flash_attention: Any, seed: Any) -> tuple[float, bool, bool, int | None, bool | None, int | None]:
    """The arguments both attention layers take, checked (Keras's messages where Keras checks)."""
    if sliding_window is not None and (not arguments.is_int(sliding_window) or sliding_window <= 0):
        raise ValueError(f"`sliding_window` must be `None` or a positive integer. Received: sliding_window={sliding_window}")
    dropout = arguments.real(dropout, "dropout", low=0, high=1, owner=owner, keep_int=True)
    use_bias = arguments.flag(use_bias, "use_bias", owner=owner)
    use_gate = arguments.flag(use_gate, "use_gate", owner=owner)
    if flash_attention is not None:
        flash_attention = arguments.flag(flash_attention, "flash_attention", owner=owner)
    seed = arguments.count(seed, "seed", allow_none=True, owner=owner)
    if flash_attention and dropout > 0.0:
        raise ValueError(
            "Dropout is not supported when flash attention is enabled. Please set dropout to 0.0 to use flash attention."
        )
    return dropout, use_bias, use_gate, None if sliding_window is None else int(sliding_window), flash_attention, seed


def _letter(index: int) -> str:
    return string.ascii_lowercase[index]


def _projection_equation(free_dims: int, bound_dims: int, output_dims: int) -> tuple[str, str, int]:
    """Keras's projection equation: free axes pass through, bound axes contract with the kernel,
    output axes come from it (and carry the bias). Returns ``(equation, bias_axes, output rank)``.

    >>> _projection_equation(2, 1, 2)
    ('abc,cde->abde', 'de', 4)
    """
    free = "".join(_letter(i) for i in range(free_dims))
    bound = "".join(_letter(free_dims + i) for i in range(bound_dims))
    out = "".join(_letter(free_dims + bound_dims + i) for i in range(output_dims))
    return f"{free}{bound},{bound}{out}->{free}{out}", out, free_dims + output_dims


def _attention_equations(rank: int, attention_axes: tuple[int, ...]) -> tuple[str, str, int]:
    """Keras's score and combine equations for projections of ``rank`` attending over ``attention_axes``.

    Scores are ``(<batch axes>, heads, <query attention axes>, <key attention axes>)``.

    >>> _attention_equations(4, (1,))
    ('aecd,abcd->acbe', 'acbe,aecd->abcd', 4)
    """
    target = "".join(_letter(i) for i in range(rank))
    batch_axes = [i for i in range(rank) if i not in attention_axes and i != rank - 1]
    source, offset = "", rank
    for i in range(rank):
        if i in batch_axes or i == rank - 1:
            source += target[i]
        else:
            source += _letter(offset)
            offset += 1
    product = "".join([target[i] for i in batch_axes] + [target[i] for i in attention_axes]
                      + [source[i] for i in attention_axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


class MultiHeadAttention(AttentionMixin, Layer):
    """Multi-head attention (Vaswani et al., 2017): ``softmax(Q Kᵀ / sqrt(key_dim)) V`` per head.

    ``query`` ``(B, T, dim)``, ``value`` ``(B, S, dim)`` and ``key`` (defaults to ``value``)
    are projected to ``num_heads`` heads of ``key_dim`` (``value_dim`` for values); the heads'
    outputs are projected back to the query's last size (or ``output_shape``).
    ``attention_axes`` attends over several axes of higher-rank inputs. Masks: a bool
    ``attention_mask`` ``(B, T, S)`` (broadcast over heads), the inputs' Keras masks (or
    ``query_mask`` / ``value_mask`` / ``key_mask``), ``use_causal_mask`` and
    ``sliding_window`` combine with *and*. ``dropout`` drops attention probabilities
    while training. ``use_gate`` multiplies the heads' outputs by a sigmoid projection of
    the query before the output projection.

    Weights: ``query/kernel (dim, heads, key_dim)``, ``query/bias (heads, key_dim)``,
    then ``key``, (``gate``), ``value``, and ``attention_output/kernel (heads, value_dim, dim)``,
    ``attention_output/bias (dim,)``, Keras's order. The rule arguments reach every projection.

    >>> from weightwise import ops
    >>> layer = MultiHeadAttention(num_heads=2, key_dim=2, kernel_regularizer="l2")
    >>> target, source = ops.ones((4, 8, 16)), ops.ones((4, 4, 16))
    >>> output, scores = layer(target, source, return_attention_scores=True)
    >>> tuple(output.shape), tuple(scores.shape), len(layer.weights), len(layer.losses)
    ((4, 8, 16), (4, 2, 8, 4), 8, 4)
    """

    _SUBLAYERS = ("query_dense", "key_dense", "_gate_dense", "value_dense", "output_dense")

    kernel_regularizer = _ProjectionRule()
    bias_regularizer = _ProjectionRule()
    kernel_constraint = _ProjectionRule()
    bias_constraint = _ProjectionRule()

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: int | Sequence[int] | None = None,
        attention_axes: int | Sequence[int] | None = None,
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
        for name, value, allow_none in (("num_heads", num_heads, False), ("key_dim", key_dim, False),
                                        ("value_dim", value_dim, True)):
            if not (value is None and allow_none) and not (arguments.is_int(value) and value > 0):
                raise ValueError(f"Received an invalid value for argument `{name}`, expected a positive integer"
                                 f"{' or `None`' if allow_none else ''}. Received: {name}={value}")
        owner = "MultiHeadAttention"
        dropout, use_bias, use_gate, sliding_window, flash_attention, seed = _attention_arguments(
            owner, dropout, use_bias, use_gate, sliding_window, flash_attention, seed)
        if output_shape:
            if arguments.is_int(output_shape):
                output_shape = (int(output_shape),)
            elif isinstance(output_shape, (list, tuple)) and all(arguments.is_int(d) and d > 0 for d in output_shape):
                output_shape = tuple(int(d) for d in output_shape)
            else:
                raise ValueError(f"Invalid `output_shape`: {output_shape}. When specified, the `output_shape` should "
                                 "be of type tuple, list, or int.")
        else:
            output_shape = None
        if arguments.is_int(attention_axes):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not (
                isinstance(attention_axes, (list, tuple)) and all(arguments.is_int(a) for a in attention_axes)):
            raise ValueError(f"`attention_axes` must be an int, list, or tuple.Received: attention_axes={attention_axes}")
        super().__init__(**kwargs)
        self.supports_masking = True
        self._num_heads = int(num_heads)
        self._key_dim = int(key_dim)
        self._value_dim = int(value_dim) if value_dim else self._key_dim
        self._dropout = self._dropout_rate = dropout
        self._use_bias = use_bias
        self._use_gate = use_gate
        self._output_shape = output_shape
        self._attention_axes = attention_axes
        self._sliding_window = self._window = sliding_window
        # As in Keras, an unset flag takes the global default when the layer is made.
        self._flash_attention = config.is_flash_attention_enabled() if flash_attention is None else flash_attention
        self.seed = seed
        self._initializers = (self._resolve("kernel_initializer", kernel_initializer, initializers.get),
                              self._resolve("bias_initializer", bias_initializer, initializers.get))
        for name, value in zip(_RULES, (kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint)):
            setattr(self, name, value)
        # Keras gives the activity regularizer to the projections only, not to this layer's outputs.
        self._projection_activity_regularizer = self._resolve("activity_regularizer", activity_regularizer,
                                                              regularizers.get)
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self._key_dim))
        self._dropout_seed_generator = random.SeedGenerator(seed) if dropout > 0 else None

    @property
    def num_heads(self) -> int:
        """The number of attention heads."""
        return self._num_heads

    @property
    def key_dim(self) -> int:
        """The size of each head's queries and keys."""
        return self._key_dim

    @property
    def value_dim(self) -> int:
        """The size of each head's values."""
        return self._value_dim

    @property
    def dropout(self) -> float:
        """The dropout rate on the attention scores."""
        return self._dropout

    @property
    def use_bias(self) -> bool:
        """Whether the projections have biases."""
        return self._use_bias

    @property
    def attention_axes(self) -> Any:
        """The axes attention runs over (None: all but the batch and the last)."""
        return self._attention_axes

    @property
    def _query_dense(self) -> EinsumDense:
        return self._modules["query_dense"]

    @property
    def _key_dense(self) -> EinsumDense:
        return self._modules["key_dense"]

    @property
    def _value_dense(self) -> EinsumDense:
        return self._modules["value_dense"]

    @property
    def _output_dense(self) -> EinsumDense:
        return self._modules["output_dense"]

    def get_config(self) -> dict[str, Any]:
        kernel_init, bias_init = self._initializers
        return {
            **super().get_config(),
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "output_shape": self._output_shape,
            "attention_axes": self._attention_axes,
            "sliding_window": self._sliding_window,
            "kernel_initializer": initializers.serialize(kernel_init),
            "bias_initializer": initializers.serialize(bias_init),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self._projection_activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        }

    def build(self, query_shape: Sequence[int | None], value_shape: Sequence[int | None],
              key_shape: Sequence[int | None] | None = None) -> None:
        """Create the projections for inputs of these shapes (``key_shape`` defaults to ``value_shape``)."""
        given_key = key_shape
        query_shape, value_shape, key_shape = self._check_build_shapes(query_shape, value_shape, key_shape)
        rank = len(value_shape) + 1
        axes = tuple(range(1, rank - 2)) if self._attention_axes is None else tuple(
            a if a >= 0 else rank - 1 + a for a in self._attention_axes)
        if len(set(axes)) != len(axes) or any(not 1 <= a <= rank - 3 for a in axes):
            raise ValueError(
                f"MultiHeadAttention layer {self.name!r}: invalid value for argument `attention_axes`: expected "
                f"distinct axes of the inputs other than the batch and feature axes (1 to {rank - 3}, or negative). "
                f"Received: attention_axes={self._attention_axes} for inputs of rank {rank - 1}"
            )

        def projection(name: str, shape: tuple[Any, ...], last_dims: list[int], **extra: Any) -> EinsumDense:
            equation, bias_axes, out_rank = _projection_equation(len(shape) - 1, 1, 2)
            layer = EinsumDense(equation, output_shape=[None] * (out_rank - 3) + last_dims,
                                bias_axes=bias_axes if self._use_bias else None, name=name,
                                **self._sublayer_kwargs(), **extra)
            layer.build(shape)
            return layer

        self.query_dense = projection("query", query_shape, [self._num_heads, self._key_dim])
        self.key_dense = projection("key", key_shape, [self._num_heads, self._key_dim])
        if self._use_gate:
            self._gate_dense = projection("gate", query_shape, [self._num_heads, self._value_dim],
                                          activation="sigmoid")
        self.value_dense = projection("value", value_shape, [self._num_heads, self._value_dim])
        self._attention_axes = axes
        self._dot_product_equation, self._combine_equation, scores_rank = _attention_equations(rank, axes)
        self._norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
        output_shape = list(self._output_shape or [query_shape[-1]])
        equation, bias_axes, out_rank = _projection_equation(len(query_shape) - 1, 2, len(output_shape))
        self.output_dense = EinsumDense(
            equation, output_shape=[None] * (out_rank - 1 - len(output_shape)) + output_shape,
            bias_axes=bias_axes if self._use_bias else None, name="attention_output", **self._sublayer_kwargs())
        projected = list(self.query_dense.compute_output_shape(query_shape))
        projected[-1] = self._value_dim
        self.output_dense.build(tuple(projected))
        self._record_build_shapes(query_shape, value_shape, given_key)

    @property
    def _mask_axis(self) -> int:
        # Keras inserts the mask's missing axes just before the query attention axes (the head axis).
        return -len(self._attention_axes) * 2 - 1

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
        return_attention_scores = _call_flag(self, return_attention_scores, "return_attention_scores")
        value, key, query_mask, attention_mask, causal_only = self._call_inputs(
            MultiHeadAttention, query, value, key, query_mask, value_mask, key_mask, attention_mask, use_causal_mask)
        gate = self._gate_dense(_unmasked(query)) if self._use_gate else None
        projected_query = self.query_dense(_unmasked(query))
        projected_key = self.key_dense(_unmasked(key))
        projected_value = self.value_dense(_unmasked(value))
        extra = {"use_causal_mask": True} if causal_only else {}
        attention_output, attention_scores = self._compute_attention(
            projected_query, projected_key, projected_value, attention_mask, training, return_attention_scores,
            **extra)
        if gate is not None:
            attention_output = attention_output * gate
        attention_output = self.output_dense(attention_output)
        self._set_output_mask(attention_output, query_mask)
        if return_attention_scores:
            return attention_output, attention_scores
        return attention_output

    def _compute_attention(
        self,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any = None,
        training: bool | None = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention of projected ``query (B, T, N, key_dim)``, ``key``, ``value``; ``(output, scores)``.

        The fused kernel runs when it gives Keras's numbers: no dropout, no scores wanted, rank-4
        projections (scores are then ``None``). Otherwise the scores are computed explicitly:
        ``softmax(mask(einsum(key, query / sqrt(key_dim))))``, dropped out while training. A
        subclass may override this, as in Keras.
        """
        self._check_flash(return_attention_scores)
        query = self._tensor(query)
        key, value = self._tensor(key, query), self._tensor(value, query)
        attention_mask = self._mask(attention_mask, query)
        if not (self._dropout > 0.0 or return_attention_scores or query.dim() != 4):
            if attention_mask is not None:
                attention_mask = self._expand_mask(attention_mask, 4, self._mask_axis).bool()
            output = self._fused_attention(query, key, value, attention_mask, self._inverse_sqrt_key_dim,
                                           use_causal_mask)
            return output, None
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else self._broadcast_and(attention_mask.bool(), causal)
        query = query * torch.tensor(self._inverse_sqrt_key_dim, dtype=query.dtype)
        scores = torch.einsum(self._dot_product_equation, key, query)
        scores = self._masked_softmax_over(scores, attention_mask, self._mask_axis, self._norm_axes)
        output = torch.einsum(self._combine_equation, self._attention_dropout(scores, training), value)
        return output, scores

    def _scores_shape(self, query_shape: tuple[Any, ...], key_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        # (<query batch axes>, heads, <query attention axes>, <key attention axes>); Keras's own answer
        # repeats the query's length for the key's.
        rank = len(query_shape) + 1
        axes = tuple(range(1, rank - 2)) if self._attention_axes is None else tuple(
            a if a >= 0 else rank - 1 + a for a in self._attention_axes)
        batch = [query_shape[i] for i in range(rank - 2) if i not in axes]
        return (*batch, self._num_heads, *(query_shape[i] for i in axes), *(key_shape[i] for i in axes))

    def compute_output_shape(self, query_shape: Sequence[int | None], value_shape: Sequence[int | None],
                             key_shape: Sequence[int | None] | None = None) -> tuple[int | None, ...]:
        """The output's shape: the query's, with the last axis replaced by ``output_shape`` if given.

        >>> MultiHeadAttention(2, 2, output_shape=(3, 5)).compute_output_shape((None, 4, 8), (None, 6, 8))
        (None, 4, 3, 5)
        """
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        return query_shape[:-1] + self._output_shape if self._output_shape else query_shape
