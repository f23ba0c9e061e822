"""``Variable``: a ``torch.nn.Parameter`` that also speaks Keras's ``keras.Variable`` API.

Layers create their weights as Variables (``Layer.add_weight``), and ``Variable(...)``
makes one outside a layer, as ``keras.Variable`` does. A Variable *is* a Parameter, so
``state_dict``, torch optimizers, DDP, ``torch.compile``, ``copy.deepcopy`` and pickling
treat it as one; on top it has Keras's ``assign``, ``assign_add``, ``assign_sub``,
``value``, ``numpy()``, ``trainable``, ``name``, ``path``, ``regularizer`` and
``constraint``.

Deliberate differences from Keras, each for torch's sake:

- ``shape`` is a ``torch.Size``, a tuple, so it equals Keras's tuple of ints.
- ``dtype`` stays a ``torch.dtype`` (``torch.float32``, not ``"float32"``): torch reads
  ``param.dtype`` everywhere (optimizers, autocast, ``.to``) and a string there would
  break it. ``weightwise.backend.standardize_dtype`` accepts both forms.
- ``trainable`` is ``requires_grad``. Integer and bool variables cannot have gradients
  in torch, so they are never trainable.
- The result of any op on a Variable is a plain tensor, as Keras's ops return tensors.

The regularizer and constraint of a layer's weight live in :mod:`weightwise.binding`,
keyed by the layer and the weight's name; a Variable reads and writes them there, so
``layer.kernel.constraint = MaxNorm()`` and ``layer.kernel_constraint = MaxNorm()`` are
the same act. A Variable outside a layer keeps its own; assigning it to a layer
attribute binds them there.

>>> import numpy as np
>>> v = Variable(np.ones((2, 2), dtype="float32"), name="scale")
>>> _ = v.assign(np.full((2, 2), 3.0))
>>> _ = v.assign_sub(1.0)
>>> v.numpy()
array([[2., 2.],
       [2., 2.]], dtype=float32)
>>> v.name, v.path, v.shape == (2, 2), v.trainable
('scale', 'scale', True, True)
"""

from __future__ import annotations

import copy
import numbers
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import torch

from weightwise import backend, binding, initializers, ops
from weightwise.arguments import echo

__all__ = ["Variable", "current_path", "name_scope", "unique_name"]

_SCOPES = threading.local()
# Keras's aggregation and synchronization choices; torch has no use for them, they are kept as set.
_AGGREGATIONS = ("none", "mean", "sum", "only_first_replica")
_SYNCHRONIZATIONS = ("none", "on_read", "on_write", "auto")


def unique_name(prefix: str) -> str:
    """``prefix`` the first time, then ``prefix_1``, ``prefix_2``, ... (Keras's automatic names).

    >>> unique_name("doc_example"), unique_name("doc_example")
    ('doc_example', 'doc_example_1')
    """
    uid = backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


def _scope_stack() -> list[tuple[str, Any, str | None]]:
    stack = getattr(_SCOPES, "stack", None)
    if stack is None:
        stack = _SCOPES.stack = []
    return stack


@contextmanager
def name_scope(name: str, caller: Any = None, override_parent: str | None = None) -> Iterator[None]:
    """Open a scope named ``name``: variables created inside get the path ``scope/.../name``.

    A scope whose ``caller`` opens it again directly inside itself is not entered twice,
    and ``override_parent`` replaces the path of the scopes around it (a layer keeps
    the parent path of its first call), as in Keras.

    >>> with name_scope("block"):
    ...     with name_scope("dense"):
    ...         current_path()
    'block/dense'
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"Invalid value for argument `name`: expected a non-empty str without '/'. Received: name={echo(name)}")
    stack = _scope_stack()
    if caller is not None and stack and stack[-1][1] is caller and stack[-1][0] == name:
        yield
        return
    stack.append((name, caller, override_parent))
    try:
        yield
    finally:
        stack.pop()


def current_path() -> str:
    """The path of the scopes open now, joined by ``/`` (``""`` outside any scope).

    >>> current_path()
    ''
    """
    parts: list[str] = []
    for name, _, override_parent in _scope_stack():
        if override_parent is not None:
            parts = [part for part in override_parent.split("/") if part]
        parts.append(name)
    return "/".join(parts)


def _check_name(name: Any) -> str:
    if name is None:
        return unique_name("variable")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"Invalid value for argument `name`: expected a non-empty str without '/'. Received: name={echo(name)}")
    return name


def _choice(value: Any, argument: str, allowed: tuple[str, ...]) -> str:
    if value is None:
        return "none"
    if value not in allowed:
        raise ValueError(f"Invalid value for argument `{argument}`. Expected one of {allowed} or None. "
                         f"Received: {argument}={echo(value)}")
    return value


def _initial_value(initializer: Any, shape: Any, dtype: Any) -> torch.Tensor:
    """The first value of a new Variable: ``initializer(shape, dtype)``, or the value given, as its own tensor."""
    if isinstance(initializer, str) or callable(initializer):
        initializer = initializers.get(initializer)
        if shape is None:
            raise ValueError("When creating a Variable from an initializer, the `shape` argument should be specified. "
                             f"Received: initializer={echo(initializer)} and shape=None")
        shape = _full_shape(shape)
        resolved = backend.standardize_dtype(dtype)
        with torch.no_grad():
            value = initializer(shape, dtype=resolved)
        value = ops.convert_to_tensor(value)
        if tuple(value.shape) != shape:
            raise ValueError(f"Invalid value for argument `initializer`: it returned a tensor of shape "
                             f"{tuple(value.shape)} for a Variable of shape {shape}. Received: initializer={echo(initializer)}")
        return value.detach().to(resolved)
    value = ops.argument_tensor(initializer, "initializer").detach()
    if shape is not None and tuple(value.shape) != _full_shape(shape):
        raise ValueError(f"Invalid value for argument `shape`: the initial value has shape {tuple(value.shape)}. "
                         f"Received: shape={echo(shape)}")
    # The variable owns its storage: assigning to it never writes into the caller's array or tensor.
    return value.to(value.dtype if dtype is None else backend.standardize_dtype(dtype), copy=True)


def _full_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of ints >= 0 (a variable's shape is fully known), or a ``ValueError``."""
    dims = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else None
    if dims is None or not all(isinstance(d, (numbers.Integral, np.integer)) and not isinstance(d, bool) and d >= 0
                               for d in dims):
        raise ValueError("Invalid value for argument `shape`: a variable's shape must be fully defined, a tuple of "
                         f"ints >= 0. Received: shape={echo(shape)}")
    return tuple(int(d) for d in dims)


def _differentiable(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _rebuild_variable(data: torch.Tensor, requires_grad: bool, state: dict[str, Any]) -> Variable:
    """Unpickle a :class:`Variable` (the target of its ``__reduce_ex__``)."""
    variable = torch.Tensor._make_subclass(Variable, data, requires_grad)
    variable.__dict__.update(state)
    return variable


class Variable(torch.nn.Parameter):
    """A weight: a ``torch.nn.Parameter`` with Keras's ``keras.Variable`` API.

    ``Variable(initializer, shape=None, dtype=None, trainable=True, autocast=True,
    aggregation="none", synchronization="auto", name=None)`` as in Keras: ``initializer``
    is a value (array, tensor, number, nested list) or an initializer (a name such as
    ``"zeros"``, or a callable of ``(shape, dtype)``, which needs ``shape``). ``dtype``
    defaults to the value's dtype, or ``floatx()`` for an initializer. A value is copied,
    so assigning to the variable never writes into it. torch's own form
    ``Variable(tensor, requires_grad)`` works too, so torch code that rebuilds a
    parameter as ``type(p)(data, p.requires_grad)`` keeps the class.

    ``assign``, ``assign_add`` and ``assign_sub`` write in place, without gradient, so
    the Parameter object, and optimizer state keyed on it, survive. Like Keras they
    return the value assigned (a tensor), and refuse a value of another shape with a
    ``ValueError`` naming the variable.

    >>> v = Variable("ones", shape=(3,), name="bias")
    >>> isinstance(v, torch.nn.Parameter), v.dtype
    (True, torch.float32)
    >>> _ = v.assign_add([1.0, 2.0, 3.0])
    >>> v.numpy()
    array([2., 3., 4.], dtype=float32)
    >>> v.assign([1.0, 2.0])
    Traceback (most recent call last):
    ...
    ValueError: The shape of the target variable and the shape of the target value in `variable.assign(value)` must match. variable.shape=(3,), Received: value.shape=(2,) (value=[1.0, 2.0]). Target variable: bias
    """

    def __new__(
        cls,
        initializer: Any = None,
        shape: Any = None,
        dtype: Any = None,
        trainable: bool = True,
        autocast: bool = True,
        aggregation: str | None = "none",
        synchronization: str | None = "auto",
        name: str | None = None,
        **kwargs: Any,
    ) -> Self:
        if isinstance(shape, bool):
            # torch's positional form Parameter(data, requires_grad): Keras never takes a bool shape.
            trainable, shape = shape, None
        if kwargs.keys() - {"requires_grad"}:
            raise TypeError(f"Unrecognized keyword arguments passed to Variable: {kwargs}")
        trainable = kwargs.get("requires_grad", trainable)
        if not isinstance(trainable, (bool, np.bool_)):
            raise ValueError(  # noqa: TRY004 -- a non-bool flag is a ValueError, as in weightwise.arguments
                f"Invalid value for argument `trainable`: expected a bool. Received: trainable={echo(trainable)}")
        if initializer is None:
            initializer = torch.empty(0) if shape is None else "zeros"
        name = _check_name(name)
        aggregation = _choice(aggregation, "aggregation", _AGGREGATIONS)
        synchronization = _choice(synchronization, "synchronization", _SYNCHRONIZATIONS)
        variable = cls.wrap(_initial_value(initializer, shape, dtype), bool(trainable), name)
        variable.__dict__.update(_autocast=bool(autocast), _aggregation=aggregation, _synchronization=synchronization)
        return variable

    @classmethod
    def wrap(cls, value: torch.Tensor, trainable: bool = True, name: str | None = None) -> Variable:
        """A Variable whose storage is ``value`` itself (no copy), named ``name`` in the current scope.

        It is trainable when ``trainable`` and ``value`` is of a float or complex dtype.

        >>> data = torch.zeros(2)
        >>> v = Variable.wrap(data, name="w")
        >>> _ = v.assign([1.0, 2.0])
        >>> data
        tensor([1., 2.])
        """
        name = _check_name(name)
        variable = torch.Tensor._make_subclass(cls, value.detach(), trainable and _differentiable(value.dtype))
        scope = current_path()
        variable.__dict__.update(_name=name, _path=f"{scope}/{name}" if scope else name, _owner=None, _slot=None,
                                 _rule=binding.Rule())
        return variable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Everything is done in __new__; Tensor's own __init__ takes no arguments.
        pass

    # -- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The variable's name (``"kernel"``)."""
        return self.__dict__.get("_name", "variable")

    @property
    def path(self) -> str:
        """Where the variable sits: the scopes it was created in and its name (``"dense/kernel"``)."""
        return self.__dict__.get("_path", self.name)

    @property
    def aggregation(self) -> str:
        """How a distributed variable is aggregated; kept as given (torch's DDP averages gradients)."""
        return self.__dict__.get("_aggregation", "none")

    @property
    def synchronization(self) -> str:
        """How a distributed variable is synchronized; kept as given."""
        return self.__dict__.get("_synchronization", "auto")

    @property
    def autocast(self) -> bool:
        """Whether a layer may cast the variable to its compute dtype when reading it."""
        return self.__dict__.get("_autocast", True)

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        shape = tuple(self.shape)
        dtype = str(self.dtype).replace("torch.", "")
        if self.is_meta:
            return f"<Variable path={self.path}, shape={shape}, dtype={dtype}>"
        return f"<Variable path={self.path}, shape={shape}, dtype={dtype}, value={self.numpy()}>"

    # -- value -------------------------------------------------------------------------
    @property
    def value(self) -> torch.Tensor:
        """The variable itself, as a torch tensor: ``v.value.grad`` is its gradient after ``backward()``.

        Keras's torch backend returns the underlying Parameter here too, and its custom-loop guide
        reads ``v.value.grad``.
        """
        return self

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The value as a numpy array, a copy (bfloat16 as float32), as Keras's ``numpy()``."""
        return ops.convert_to_numpy(self)

    def __float__(self) -> float:
        return float(self.detach())

    def __int__(self) -> int:
        return int(self.detach())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def _checked(self, value: Any, method: str) -> torch.Tensor:
        """``value`` as a tensor on this variable's device; a clear error when no tensor can be made of it."""
        try:
            tensor = value.detach() if isinstance(value, torch.Tensor) else ops.argument_tensor(value, "value")
        except (TypeError, ValueError) as error:
            raise type(error)(f"Variable {self.path!r}: invalid value for argument `value` of `{method}`: expected "
                              f"numbers of shape {tuple(self.shape)}. Received: value={echo(value)}") from error
        if tensor.is_complex() and not self.is_complex():
            raise TypeError(f"Variable {self.path!r} of dtype {self.dtype}: invalid value for argument `value` of "
                            f"`{method}`: complex values have no real dtype. Received: value={echo(value)}")
        return tensor.to(self.device)

    def _shape_error(self, shape: tuple[int, ...], value: Any, method: str) -> ValueError:
        return ValueError(
            f"The shape of the target variable and the shape of the target value in `variable.{method}(value)` must "
            f"match. variable.shape={tuple(self.shape)}, Received: value.shape={shape} (value={echo(value)}). "
            f"Target variable: {self.path}"
        )

    def assign(self, value: Any) -> torch.Tensor:
        """Set the value in place (cast to the variable's dtype); returns the value assigned.

        >>> v = Variable([0.0, 0.0])
        >>> v.assign([1.0, 2.0])
        tensor([1., 2.])
        """
        tensor = self._checked(value, "assign").to(self.dtype)
        if tuple(tensor.shape) != tuple(self.shape):
            raise self._shape_error(tuple(tensor.shape), value, "assign")
        with torch.no_grad():
            self.copy_(tensor)
        return tensor

    def _update(self, value: Any, method: str, sign: int) -> torch.Tensor:
        tensor = self._checked(value, method)
        try:
            fits = torch.broadcast_shapes(tensor.shape, self.shape) == self.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise self._shape_error(tuple(tensor.shape), value, method)
        with torch.no_grad():
            if tensor.dtype == self.dtype:
                self.add_(tensor, alpha=sign)
            else:
                # Keras adds in the promoted dtype and casts the sum back.
                self.copy_(torch.add(self, tensor, alpha=sign).to(self.dtype))
            return self.detach().clone()

    def assign_add(self, value: Any) -> torch.Tensor:
        """Add ``value`` (broadcast to the variable's shape) in place; returns the new value.

        >>> v = Variable([1.0, 2.0])
        >>> v.assign_add(1.0)
        tensor([2., 3.])
        """
        return self._update(value, "assign_add", 1)

    def assign_sub(self, value: Any) -> torch.Tensor:
        """Subtract ``value`` (broadcast to the variable's shape) in place; returns the new value.

        >>> v = Variable([1.0, 2.0])
        >>> v.assign_sub([1.0, 1.0])
        tensor([0., 1.])
        """
        return self._update(value, "assign_sub", -1)

    # -- training ------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """Whether the optimizer updates the variable: its ``requires_grad``."""
        return self.requires_grad

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(  # noqa: TRY004 -- a non-bool flag is a ValueError, as in weightwise.arguments
                f"Invalid value for argument `trainable`: expected a bool. Received: trainable={echo(value)}")
        if value and not _differentiable(self.dtype):
            raise ValueError(f"Variable {self.path!r} of dtype {str(self.dtype).replace('torch.', '')} cannot be "
                             f"trainable: only float and complex tensors have gradients. Received: trainable={value!r}")
        self.requires_grad_(bool(value))

    def _bound_rule(self) -> binding.Rule | None:
        """The binding this variable's rules live in, when a module owns it; else ``None``."""
        owner, slot = self.__dict__.get("_owner"), self.__dict__.get("_slot")
        if owner is not None and owner._parameters.get(slot) is self:
            return binding.rule_of(owner, slot) or binding.Rule()
        return None

    def _rules(self) -> binding.Rule:
        bound = self._bound_rule()
        return bound if bound is not None else self.__dict__.setdefault("_rule", binding.Rule())

    def _set_rule(self, kind: str, value: Any) -> None:
        try:
            if self._bound_rule() is not None:
                binding.bind(self.__dict__["_owner"], self.__dict__["_slot"], **{kind: value})
                return
            resolved = binding.validate(self, **{kind: value}, where=f"variable {self.path!r}")
        except (TypeError, ValueError) as error:
            raise type(error)(f"Variable {self.path!r}: invalid value for attribute `{kind}`. {error}") from error
        setattr(self._rules(), kind, resolved[0] if kind == "regularizer" else resolved[1])

    @property
    def regularizer(self) -> Any:
        """The penalty on this variable, added to its layer's losses; settable (a string id, an object, None)."""
        return self._rules().regularizer

    @regularizer.setter
    def regularizer(self, value: Any) -> None:
        self._set_rule("regularizer", value)

    @property
    def constraint(self) -> Any:
        """The projection applied after each optimizer update; settable (a string id, an object, None)."""
        return self._rules().constraint

    @constraint.setter
    def constraint(self, value: Any) -> None:
        self._set_rule("constraint", value)

    # -- the module that owns it ---------------------------------------------------------
    def _attach(self, owner: torch.nn.Module, slot: str) -> None:
        """Make ``owner``'s parameter ``slot`` the home of this variable's rules (binding them there)."""
        current = self.__dict__.get("_owner")
        if current is not None and current is not owner and current._parameters.get(self.__dict__["_slot"]) is self:
            return  # shared with another module (tied weights): its rules stay with the first owner
        own = self.__dict__.get("_rule") or binding.Rule()
        self.__dict__.update(_owner=owner, _slot=slot, _rule=binding.Rule())
        if own.regularizer is not None or own.constraint is not None:
            binding.bind(owner, slot, regularizer=own.regularizer, constraint=own.constraint)

    def _detached_state(self, memo: dict[int, Any] | None) -> dict[str, Any]:
        """The attributes a copy carries: its rules become its own, since the copy has no owner yet."""
        state = {key: value for key, value in self.__dict__.items() if key not in ("_owner", "_slot", "_rule")}
        rules = self._rules()
        state["_rule"] = binding.Rule(rules.regularizer, rules.constraint) if memo is None else \
            copy.deepcopy(binding.Rule(rules.regularizer, rules.constraint), memo)
        state.update(_owner=None, _slot=None)
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> Variable:
        if id(self) in memo:
            return memo[id(self)]
        result = torch.Tensor._make_subclass(type(self), self.data.clone(memory_format=torch.preserve_format),
                                             self.requires_grad)
        memo[id(self)] = result
        result.__dict__.update(self._detached_state(memo))
        return result

    def __reduce_ex__(self, proto: Any) -> tuple[Any, ...]:
        # The owner is not pickled with the variable; a layer re-attaches its variables when it is unpickled.
        return _rebuild_variable, (self.data, self.requires_grad, self._detached_state(None))

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state)

