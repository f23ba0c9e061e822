"""Symbolic tensors: what ``Input()`` returns and what a layer returns when called on one.

A :class:`KerasTensor` records where it came from (a :class:`Node`: the layer call
that produced it), which is all a functional model needs to replay the graph.
Operators on it (``x + y``, ``x[:, 1]``, ...) and :mod:`weightwise.ops` functions
given one record an :class:`Operation` node, as Keras records its operations, under
Keras's class names so that graphs travel to and from Keras's files.

Shapes are inferred by running each layer on two small example batches, of batch
sizes 1 and 2 (and, for axes of unknown size, sizes 8 and 9). An output axis whose
size differs between the two runs is unknown (``None``). This needs no
shape-inference code per layer, and every layer gets built with real weights as
the graph is laid out, as in Keras.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from weightwise import activations, backend, ops
from weightwise.serialization import to_snake_case
from weightwise.variables import unique_name

__all__ = [
    "KerasTensor",
    "Node",
    "Operation",
    "call_symbolically",
    "GraphFunction",
    "contains_symbolic",
    "get_keras_mask",
    "map_structure",
    "record_function",
    "set_keras_mask",
]

_EXAMPLE_SIZES = ((1, 8), (2, 9))  # (batch size, size of other unknown axes) of the two runs
# The most values an example input may hold (4 GiB of float32): a larger declared shape is
# refused before anything is allocated, rather than exhausting memory.
MAX_EXAMPLE_VALUES = 2**30
# Creation order of nodes: a layer's calls are numbered in this order in saved configs, as in Keras.
_NODE_SERIALS = itertools.count()


def _example_values(batch_shape: tuple[Any, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sets of zeros of ``batch_shape``, each unknown axis given a different size in each."""
    shapes = [tuple((batch if i == 0 else other) if d is None else d for i, d in enumerate(batch_shape))
              for batch, other in _EXAMPLE_SIZES]
    if math.prod(shapes[-1]) > MAX_EXAMPLE_VALUES:
        raise ValueError(
            f"Invalid value for argument `shape`: an input of shape {tuple(batch_shape)} needs example values of "
            f"shape {shapes[-1]} to lay out a graph, more than {MAX_EXAMPLE_VALUES} values. "
            f"Received: shape={tuple(batch_shape)}"
        )
    return tuple(torch.zeros(shape, dtype=dtype) for shape in shapes)  # type: ignore[return-value]


class KerasTensor(ops.SymbolicTensor):
    """A symbolic tensor with a shape (``None`` for unknown axes) and a dtype.

    Python operators and :mod:`weightwise.ops` functions on it record graph nodes.

    >>> from weightwise.layers import Input, Dense
    >>> x = Input(shape=(3,), name="features")
    >>> x
    <KerasTensor shape=(None, 3), dtype=float32, name=features>
    >>> Dense(4)(x).shape
    (None, 4)
    >>> (2 * x[:, 1:] - 1).shape
    (None, 2)
    """

    def __init__(self, shape: Any, dtype: Any = "float32", sparse: bool = False, ragged: bool = False,
                 record_history: bool = True, name: str | None = None, *,
                 examples: tuple[torch.Tensor, torch.Tensor] | None = None, node: Node | None = None,
                 index: int = 0) -> None:
        # Keras's signature, so ``KerasTensor((None, 3))`` made by hand works as a free input.
        if sparse or ragged:
            raise ValueError(f"weightwise has no sparse or ragged tensors. Received: sparse={sparse!r}, "
                             f"ragged={ragged!r}")
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else backend.standardize_dtype(dtype)
        if examples is None:
            examples = _example_values(tuple(shape), torch_dtype)
        self.shape = tuple(shape)
        self._torch_dtype = torch_dtype
        self._examples = examples
        self.node = node
        self.index = index
        self.name = name

    @property
    def dtype(self) -> str:
        """The dtype's name, as Keras writes it (``"float32"``)."""
        return str(self._torch_dtype).replace("torch.", "")

    @property
    def ndim(self) -> int:
        """The rank: how many axes the shape has."""
        return len(self.shape)

    @classmethod
    def placeholder(cls, batch_shape: tuple[int | None, ...], dtype: torch.dtype, name: str | None = None) -> KerasTensor:
        """A fresh input tensor of ``batch_shape``, with example values of zeros."""
        return cls(batch_shape, dtype, name=name)

    @property
    def _keras_mask(self) -> KerasTensor | None:
        """The mask of the tensor (a symbolic bool tensor), or ``None``; read and set as on a torch tensor.

        It is what the layer that made the tensor computed as its mask on the example values,
        and a tensor of the graph: a model may take it as an output, a layer as an argument.
        """
        first, second = (getattr(example, "_keras_mask", None) for example in self._examples)
        if first is None or second is None:
            return None
        cached = self.__dict__.get("_mask_tensor")
        if cached is None or cached._examples[0] is not first or cached._examples[1] is not second:
            cached = self.__dict__["_mask_tensor"] = record_function(get_keras_mask, "keras_mask", (self,), {})
        return cached

    @_keras_mask.setter
    def _keras_mask(self, mask: Any) -> None:
        if mask is not None and not isinstance(mask, KerasTensor):
            raise TypeError(f"The mask of a symbolic tensor must be a symbolic tensor or None. Received: mask={mask!r}")
        for which, example in enumerate(self._examples):
            example._keras_mask = None if mask is None else mask._examples[which]

    def __repr__(self) -> str:
        name = f", name={self.name}" if self.name else ""
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}{name}>"

    def __bool__(self) -> bool:
        raise TypeError(
            "A symbolic KerasTensor has no value, so it cannot be used as a Python bool. "
            "Symbolic tensors only describe a model's graph; call the model on real data."
        )

    # Keras's operators, each recorded as the op Keras records. ``==`` stays identity (as in Keras),
    # so tensors can be looked up in lists and dicts.
    def __add__(self, other: Any) -> Any:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> Any:
        return ops.add(other, self)

    def __sub__(self, other: Any) -> Any:
        return ops.subtract(self, other)

    def __rsub__(self, other: Any) -> Any:
        return ops.subtract(other, self)

    def __mul__(self, other: Any) -> Any:
        return ops.multiply(self, other)

    def __rmul__(self, other: Any) -> Any:
        return ops.multiply(other, self)

    def __matmul__(self, other: Any) -> Any:
        return ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return ops.matmul(other, self)

    def __truediv__(self, other: Any) -> Any:
        return ops.true_divide(self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return ops.true_divide(other, self)

    def __pow__(self, other: Any) -> Any:
        return ops.power(self, other)

    def __rpow__(self, other: Any) -> Any:
        return ops.power(other, self)

    def __neg__(self) -> Any:
        return ops.negative(self)

    def __abs__(self) -> Any:
        return ops.absolute(self)

    def __lt__(self, other: Any) -> Any:
        return ops.less(self, other)

    def __le__(self, other: Any) -> Any:
        return ops.less_equal(self, other)

    def __gt__(self, other: Any) -> Any:
        return ops.greater(self, other)

    def __ge__(self, other: Any) -> Any:
        return ops.greater_equal(self, other)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        return ops.not_equal(self, other)

    __hash__ = object.__hash__
    # NumPy defers to the operators here (``array * x`` records a Multiply) instead of looping over x.
    __array_ufunc__ = None

    def __getitem__(self, key: Any) -> Any:
        return ops.get_item(self, key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise TypeError(f"A symbolic tensor has no values, so it cannot become a NumPy array. Received: {self!r}")

    def __iter__(self) -> Any:
        raise TypeError(f"A symbolic tensor cannot be iterated over; index it instead (x[:, 0]). Received: {self!r}")


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


def get_keras_mask(tensor: Any) -> Any:
    """The mask carried by ``tensor`` (its ``_keras_mask``), or ``None``; ``None`` for anything not a tensor.

    >>> import torch
    >>> x = torch.ones(2, 3)
    >>> get_keras_mask(x) is None
    True
    >>> set_keras_mask(x, torch.tensor([[True, True, False]] * 2))
    >>> get_keras_mask(x).tolist()
    [[True, True, False], [True, True, False]]
    """
    return getattr(tensor, "_keras_mask", None) if isinstance(tensor, (torch.Tensor, KerasTensor)) else None


def set_keras_mask(tensor: Any, mask: Any) -> None:
    """Attach ``mask`` to ``tensor`` as its ``_keras_mask`` (``None`` clears it), where Keras's torch backend keeps it.

    >>> import torch
    >>> x = torch.ones(2)
    >>> set_keras_mask(x, torch.tensor([True, False]))
    >>> x._keras_mask
    tensor([ True, False])
    """
    tensor._keras_mask = mask


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


class GraphFunction:
    """A function of tensors recorded in a functional graph, which no Keras file can hold: the mask a
    tensor carries (``x._keras_mask``) and a layer's ``compute_mask`` worked out on example values.

    A model holding one runs as usual; saving it raises a ``TypeError`` that says so.
    """

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = unique_name(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<GraphFunction {self.name}>"


def record_function(fn: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` on symbolic tensors: run on their example values, recorded as a graph node.

    >>> from weightwise.layers import Input
    >>> x = Input(shape=(3,))
    >>> record_function(lambda t: t > 0, "positive", (x,), {})
    <KerasTensor shape=(None, 3), dtype=bool>
    """
    return _record(GraphFunction(fn, name), args[0], args[1:], kwargs)


def call_symbolically(layer: Any, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                      clear_losses: Callable[[Any], None]) -> Any:
    """Call ``layer`` on symbolic ``inputs`` (and symbolic tensors among the other arguments, such as
    ``mask=``): run it on the example values, record a :class:`Node`."""
    outputs = _record(layer, inputs, args, kwargs)
    # Laying out the graph is not a training call: drop what the example runs recorded.
    clear_losses(layer)
    return outputs


def _record(callee: Any, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``callee(inputs, *args, **kwargs)`` on the example values of its symbolic tensors; record the call."""
    runs = []
    with torch.no_grad():
        for which in range(len(_EXAMPLE_SIZES)):
            def example(t: Any, which: int = which) -> Any:
                return t._examples[which] if isinstance(t, KerasTensor) else t

            runs.append(callee(map_structure(example, inputs), *map_structure(example, args),
                               **map_structure(example, kwargs)))
    node = Node(callee, inputs, tuple(args), dict(kwargs),
                input_tensors=[t for t in flatten((inputs, args, kwargs)) if isinstance(t, KerasTensor)])
    counter = iter(range(1 << 30))

    def wrap(pair: _Pair) -> Any:
        first, second = pair.first, pair.second
        if not isinstance(first, torch.Tensor):
            return first
        shape = tuple(a if a == b else None for a, b in zip(first.shape, second.shape))
        return KerasTensor(shape, first.dtype, examples=(first, second), node=node, index=next(counter))

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


# -- operations -------------------------------------------------------------------------------
# Keras's operation classes and the functions that compute them here: (function, Keras module,
# Keras class, how many leading parameters are the call's inputs). The other parameters are the
# operation's config, as Keras's constructors take them.
_NUMPY, _NN = "keras.src.ops.numpy", "keras.src.ops.nn"
_KERAS_OPERATIONS: list[tuple[Callable[..., Any], str, str, int]] = [
    *((fn, _NUMPY, cls, 2) for fn, cls in [
        (ops.add, "Add"), (ops.subtract, "Subtract"), (ops.multiply, "Multiply"), (ops.divide, "Divide"),
        (ops.true_divide, "TrueDivide"), (ops.divide_no_nan, "DivideNoNan"), (ops.power, "Power"),
        (ops.matmul, "Matmul"), (ops.dot, "Dot"), (ops.maximum, "Maximum"), (ops.minimum, "Minimum"),
        (ops.greater, "Greater"), (ops.greater_equal, "GreaterEqual"), (ops.less, "Less"),
        (ops.less_equal, "LessEqual"), (ops.equal, "Equal"), (ops.not_equal, "NotEqual"), (ops.get_item, "GetItem"),
        (ops.logical_and, "LogicalAnd"), (ops.logical_or, "LogicalOr"),
    ]),
    *((fn, _NUMPY, cls, 1) for fn, cls in [
        (ops.negative, "Negative"), (ops.absolute, "Absolute"), (ops.square, "Square"), (ops.sqrt, "Sqrt"),
        (ops.exp, "Exp"), (ops.log, "Log"), (ops.sign, "Sign"), (ops.tanh, "Tanh"), (ops.clip, "Clip"),
        (ops.sum, "Sum"), (ops.mean, "Mean"), (ops.max, "Max"), (ops.min, "Min"), (ops.transpose, "Transpose"),
        (ops.reshape, "Reshape"), (ops.expand_dims, "ExpandDims"), (ops.squeeze, "Squeeze"),
        (ops.concatenate, "Concatenate"), (ops.ones_like, "OnesLike"), (ops.zeros_like, "ZerosLike"),
        (ops.logical_not, "LogicalNot"), (ops.any, "Any"), (ops.all, "All"), (ops.std, "Std"), (ops.var, "Var"),
        (ops.tril, "Tril"), (ops.triu, "Triu"), (ops.tile, "Tile"),
    ]),
    (ops.where, _NUMPY, "Where", 3),
    (ops.rsqrt, "keras.src.ops.math", "Rsqrt", 1),
    (ops.relu, _NN, "Relu", 1),
    (ops.sigmoid, _NN, "Sigmoid", 1),
    (ops.normalize, _NN, "Normalize", 1),
    (ops.stop_gradient, "keras.src.ops.core", "StopGradient", 1),
    (ops.cast, "keras.src.ops.core", "Cast", 1),
    (ops.norm, "keras.src.ops.linalg", "Norm", 1),
    # What Keras's activation functions record (``keras.activations.gelu(x)`` is ``nn.Gelu``), so
    # Keras's files holding them load. Where an op shares the class (Sigmoid, Tanh, Exp), it loads as the op.
    (activations.relu, "keras.src.activations.activations", "ReLU", 1),
    *((fn, _NN, cls, 1) for fn, cls in [
        (activations.celu, "Celu"), (activations.elu, "Elu"), (activations.gelu, "Gelu"), (activations.glu, "Glu"),
        (activations.hard_shrink, "HardShrink"), (activations.hard_sigmoid, "HardSigmoid"),
        (activations.hard_tanh, "HardTanh"), (activations.leaky_relu, "LeakyRelu"),
        (activations.log_sigmoid, "LogSigmoid"), (activations.log_softmax, "LogSoftmax"), (activations.relu6, "Relu6"),
        (activations.selu, "Selu"), (activations.silu, "Silu"), (activations.soft_shrink, "SoftShrink"),
        (activations.softmax, "Softmax"), (activations.softplus, "Softplus"), (activations.softsign, "Softsign"),
        (activations.sparse_plus, "SparsePlus"), (activations.sparse_sigmoid, "SparseSigmoid"),
        (activations.squareplus, "Squareplus"), (activations.tanh_shrink, "TanhShrink"),
        (activations.threshold, "Threshold"), (activations.sigmoid, "Sigmoid"),
    ]),
    (activations.tanh, _NUMPY, "Tanh", 1),
    (activations.exponential, _NUMPY, "Exp", 1),
]
_BY_FUNCTION = {fn: (module, cls, n) for fn, module, cls, n in _KERAS_OPERATIONS}
# A class shared by an activation and an op (``Sigmoid``, ``Tanh``, ``Exp``) loads as the op.
_BY_CLASS = {(module, cls): (fn, n) for fn, module, cls, n in reversed(_KERAS_OPERATIONS)}
# Config entries Keras writes that have no counterpart here: written and accepted at their default only.
_KERAS_ONLY_SETTINGS = {"Max": {"initial": None}, "Min": {"initial": None}}


class Operation:
    """One ``weightwise.ops`` call in a functional graph: the function and its non-tensor arguments.

    ``x + y`` on symbolic tensors, or ``ops.mean(x, axis=1)``, makes one. It stores as
    Keras's operation of the same name (``{"module": "keras.src.ops.numpy", "class_name":
    "Mean", "config": {"name": "mean", "axis": 1, "keepdims": False}}``), and Keras's
    operations load as one; only the operations in a fixed table exist, so loading runs no code.

    >>> from weightwise.layers import Input
    >>> y = ops.mean(Input(shape=(3, 4)), axis=1)
    >>> y.shape, y.node.layer.class_name, y.node.layer.config
    ((None, 4), 'Mean', {'axis': 1, 'keepdims': False})
    >>> y.node.layer(ops.ones((2, 3, 4))).shape
    torch.Size([2, 4])
    """

    def __init__(self, fn: Callable[..., Any], config: Mapping[str, Any] | None = None, name: str | None = None) -> None:
        fn = _table_function(fn)
        if fn not in _BY_FUNCTION:
            raise TypeError(f"`{getattr(fn, '__name__', fn)}` cannot be recorded in a functional graph: Keras has no "
                            f"operation for it. Received: fn={fn!r}")
        self.fn = fn
        self.keras_module, self.class_name, self.tensor_arguments = _BY_FUNCTION[fn]
        self.config = dict(config or {})
        if name is None:
            name = unique_name(to_snake_case(self.class_name))
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if contains_symbolic((args, kwargs)):
            if not args:
                raise ValueError(f"Operation {self.name!r} needs its inputs as positional arguments.")
            return _record(self, args[0], args[1:], kwargs)
        return self.fn(*args, **kwargs, **self.config)

    def __repr__(self) -> str:
        return f"<Operation {self.class_name} name={self.name}>"

    def get_config(self) -> dict[str, Any]:
        """``{"name": ..., **non-tensor arguments}``, as Keras's operation of the same class."""
        return {"name": self.name, **self.config, **_KERAS_ONLY_SETTINGS.get(self.class_name, {})}

    def serialize(self) -> dict[str, Any]:
        """The entry Keras writes for this operation in a functional config."""
        return {"module": self.keras_module, "class_name": self.class_name, "config": _jsonable(self.get_config()),
                "registered_name": self.class_name}

    @classmethod
    def from_keras(cls, module: Any, class_name: Any, config: Any) -> Operation:
        """The operation Keras saved as ``module.class_name`` with ``config``; an unknown one is refused by name."""
        found = _BY_CLASS.get((module, class_name))
        if found is None:
            raise ValueError(
                f"The functional config uses the Keras operation `{module}.{class_name}`, which weightwise does not "
                f"implement. Supported operations: {sorted(c for _, c in _BY_CLASS)}. "
                f"Received: module={module!r}, class_name={class_name!r}"
            )
        fn, tensors = found
        if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
            raise TypeError(f"Invalid config of the Keras operation {class_name!r}: expected a dict with a 'name'. "
                             f"Received: config={config!r:.200}")
        settings = {key: value for key, value in config.items() if key != "name"}
        accepted = list(inspect.signature(fn).parameters)[tensors:]
        defaults = _KERAS_ONLY_SETTINGS.get(class_name, {})
        for key in list(settings):
            if key in defaults and settings[key] == defaults[key]:
                del settings[key]
            elif key not in accepted:
                raise ValueError(f"The Keras operation {class_name!r} has the setting {key}={settings[key]!r}, "
                                 f"which weightwise does not support. Received: config={dict(config)!r:.200}")
        return cls(fn, settings, name=config["name"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    return value


def _table_function(fn: Any) -> Any:
    """``fn``, or the function it wraps (``ops.traceable``) where only that one is in the table."""
    return fn if fn in _BY_FUNCTION else getattr(fn, "__wrapped__", fn)


def _trace(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Record ``fn(*args, **kwargs)`` (an ops function given a symbolic tensor) as an :class:`Operation`."""
    if fn is ops.shape:
        return args[0].shape if args and isinstance(args[0], KerasTensor) else kwargs["x"].shape
    if fn is ops.convert_to_tensor and args and isinstance(args[0], KerasTensor) and len(args) + len(kwargs) == 1:
        return args[0]
    fn = _table_function(fn)
    if fn not in _BY_FUNCTION:
        received = next(leaf for leaf in flatten((args, kwargs)) if isinstance(leaf, KerasTensor))
        raise TypeError(f"`ops.{fn.__name__}` cannot take a symbolic tensor: it has no operation in a functional "
                        f"graph. Received: {received!r}")
    _, class_name, tensors = _BY_FUNCTION[fn]
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"Invalid arguments to `ops.{fn.__name__}`: {error}") from None
    bound.apply_defaults()
    values = list(bound.arguments.items())
    inputs = [value for _, value in values[:tensors]]
    config = dict(values[tensors:])
    symbolic = [name for name, value in config.items() if contains_symbolic(value)]
    if symbolic:
        raise TypeError(f"`ops.{fn.__name__}`: argument `{symbolic[0]}` cannot be a symbolic tensor in a functional "
                        f"graph (Keras's {class_name} takes it as a constant). Received: {symbolic[0]}={config[symbolic[0]]!r}")
    return Operation(fn, config)(*inputs)


ops.SymbolicTensor.tracer = _trace
