"""Symbolic tensors: what ``Input()`` returns and what a layer returns when called on one.

A :class:`KerasTensor` records where it came from (a :class:`Node`: the layer call
that produced it), which is all a functional model needs to replay the graph.

Shapes are inferred by running each layer on two small example batches, of batch
sizes 1 and 2 (and, for axes of unknown size, sizes 8 and 9). An output axis whose
size differs between the two runs is unknown (``None``). This needs no
shape-inference code per layer, and every layer gets built with real weights as
the graph is laid out, as in Keras.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["KerasTensor", "Node", "call_symbolically", "contains_symbolic", "map_structure"]

_EXAMPLE_SIZES = ((1, 8), (2, 9))  # (batch size, size of other unknown axes) of the two runs
# The most values an example input may hold (4 GiB of float32): a larger declared shape is
# refused before anything is allocated, rather than exhausting memory.
MAX_EXAMPLE_VALUES = 2**30
# Creation order of nodes: a layer's calls are numbered in this order in saved configs, as in Keras.
_NODE_SERIALS = itertools.count()


class KerasTensor:
    """A symbolic tensor with a shape (``None`` for unknown axes) and a dtype.

    >>> from weightwise.layers import Input, Dense
    >>> x = Input(shape=(3,), name="features")
    >>> x
    <KerasTensor shape=(None, 3), dtype=float32, name=features>
    >>> Dense(4)(x).shape
    (None, 4)
    """

    def __init__(self, shape: tuple[int | None, ...], dtype: torch.dtype, examples: tuple[torch.Tensor, torch.Tensor],
                 node: Node | None = None, index: int = 0, name: str | None = None) -> None:
        self.shape = tuple(shape)
        self._torch_dtype = dtype
        self._examples = examples
        self.node = node
        self.index = index
        self.name = name

    @property
    def dtype(self) -> str:
        return str(self._torch_dtype).replace("torch.", "")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @classmethod
    def placeholder(cls, batch_shape: tuple[int | None, ...], dtype: torch.dtype, name: str | None = None) -> KerasTensor:
        """A fresh input tensor of ``batch_shape``, with example values of zeros."""
        shapes = [tuple((batch if i == 0 else other) if d is None else d for i, d in enumerate(batch_shape))
                  for batch, other in _EXAMPLE_SIZES]
        if math.prod(shapes[-1]) > MAX_EXAMPLE_VALUES:
            raise ValueError(
                f"Invalid value for argument `shape`: an input of shape {tuple(batch_shape)} needs example values of "
                f"shape {shapes[-1]} to lay out a graph, more than {MAX_EXAMPLE_VALUES} values. "
                f"Received: shape={tuple(batch_shape)}"
            )
        examples = tuple(torch.zeros(shape, dtype=dtype) for shape in shapes)
        return cls(batch_shape, dtype, examples, name=name)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        name = f", name={self.name}" if self.name else ""
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}{name}>"

    def __bool__(self) -> bool:
        raise TypeError(
            "A symbolic KerasTensor has no value, so it cannot be used as a Python bool. "
            "Symbolic tensors only describe a model's graph; call the model on real data."
        )


@dataclass
class Node:
    """One layer call in a functional graph: the layer, its symbolic inputs and outputs."""

    layer: Any
    inputs: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outputs: Any = None
    input_tensors: list[KerasTensor] = field(default_factory=list)
    serial: int = field(default_factory=lambda: next(_NODE_SERIALS))


def map_structure(fn: Callable[[Any], Any], structure: Any) -> Any:
    """Apply ``fn`` to every leaf of nested lists, tuples and dicts, keeping the nesting."""
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_structure(fn, item) for item in structure)
    if isinstance(structure, dict):
        return {key: map_structure(fn, value) for key, value in structure.items()}
    return fn(structure)


def flatten(structure: Any) -> list[Any]:
    """The leaves of nested lists, tuples and dicts, in order."""
    leaves: list[Any] = []
    map_structure(leaves.append, structure)
    return leaves


def contains_symbolic(structure: Any) -> bool:
    """Whether any leaf of ``structure`` is a :class:`KerasTensor`."""
    return any(isinstance(leaf, KerasTensor) for leaf in flatten(structure))


def call_symbolically(layer: Any, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                      clear_losses: Callable[[Any], None]) -> Any:
    """Call ``layer`` on symbolic ``inputs``: run it on the example values, record a :class:`Node`."""
    if contains_symbolic((args, kwargs)):
        raise ValueError(
            f"Layer {getattr(layer, 'name', type(layer).__name__)!r}: symbolic tensors may only be passed as the "
            "first argument (`inputs`)."
        )
    runs = []
    with torch.no_grad():
        for which in range(len(_EXAMPLE_SIZES)):
            example = map_structure(lambda t: t._examples[which] if isinstance(t, KerasTensor) else t, inputs)
            runs.append(layer(example, *args, **kwargs))
    # Laying out the graph is not a training call: drop what the example runs recorded.
    clear_losses(layer)
    node = Node(layer, inputs, args, dict(kwargs), input_tensors=[t for t in flatten(inputs) if isinstance(t, KerasTensor)])
    counter = iter(range(1 << 30))

    def wrap(pair: _Pair) -> Any:
        first, second = pair.first, pair.second
        if not isinstance(first, torch.Tensor):
            return first
        shape = tuple(a if a == b else None for a, b in zip(first.shape, second.shape))
        return KerasTensor(shape, first.dtype, (first, second), node, next(counter))

    node.outputs = map_structure(wrap, _zip_structures(runs[0], runs[1]))
    return node.outputs


@dataclass
class _Pair:
    """A leaf of two zipped structures (kept out of map_structure's recursion into tuples)."""

    first: Any
    second: Any


def _zip_structures(first: Any, second: Any) -> Any:
    if isinstance(first, (list, tuple)):
        return type(first)(_zip_structures(a, b) for a, b in zip(first, second))
    if isinstance(first, dict):
        return {key: _zip_structures(first[key], second[key]) for key in first}
    return _Pair(first, second)
