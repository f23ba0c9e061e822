"""The Layer base: Keras's layer contract on a ``torch.nn.Module``.

Subclasses write ``__init__``, an optional ``build(input_shape)`` that creates
weights with :meth:`Layer.add_weight`, and ``call(inputs, ...)``. Calling the
layer builds it on first use, runs ``call``, and records the activity penalty.
``forward`` is the Module hook that does this, so a layer works inside any torch
model; subclasses never override it.

Weight regularizers and constraints are bound through :mod:`weightwise.binding`,
the one mechanism shared with plain torch modules.
"""

from __future__ import annotations

import copy
import functools
import inspect
import numbers
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from weightwise import (
    backend,
    binding,
    constraints,
    dtype_policies,
    initializers,
    ops,
    regularizers,
)
from weightwise.arguments import echo, flag
from weightwise.layers.args import standardize_shape
from weightwise.layers.symbolic import (
    KerasTensor,
    call_symbolically,
    contains_symbolic,
    flatten,
    get_keras_mask,
    map_structure,
    record_function,
    set_keras_mask,
)
from weightwise.serialization import to_snake_case
from weightwise.variables import Variable, current_path, name_scope, unique_name

__all__ = ["InputSpec", "Layer", "WeightRule"]

# Config keys of Keras features we do not implement; accepted only while unset.
_KERAS_ONLY_KEYS = ("quantization_config", "lora_rank", "lora_alpha")
_CALL_STATE = threading.local()


@dataclass
class InputSpec:
    """What a built layer accepts: a rank (exact or minimum) and fixed sizes of some axes.

    >>> spec = InputSpec(min_ndim=2, axes={-1: 5})
    >>> spec.check("dense", (3, 5))
    >>> spec.check("dense", (3, 4))
    Traceback (most recent call last):
    ...
    ValueError: Input 0 of layer 'dense' is incompatible with the layer: expected axis -1 of input shape to have value 5, but received input with shape (3, 4)
    """

    ndim: int | None = None
    min_ndim: int | None = None
    axes: dict[int, int] = field(default_factory=dict)

    def check(self, layer_name: str, shape: Sequence[int], index: int = 0) -> None:
        """Raise a ``ValueError`` naming the layer if ``shape`` does not fit."""
        if self.ndim is not None and len(shape) == self.ndim and not self.axes:
            return
        shape = tuple(shape)
        if (self.ndim is None or len(shape) == self.ndim) and (self.min_ndim is None or len(shape) >= self.min_ndim) \
                and all(shape[axis] == size for axis, size in self.axes.items() if -len(shape) <= axis < len(shape)):
            return
        prefix = f"Input {index} of layer '{layer_name}' is incompatible with the layer: "
        if self.ndim is not None and len(shape) != self.ndim:
            raise ValueError(f"{prefix}expected ndim={self.ndim}, found ndim={len(shape)}. Full shape received: {shape}")
        if self.min_ndim is not None and len(shape) < self.min_ndim:
            raise ValueError(
                f"{prefix}expected min_ndim={self.min_ndim}, found ndim={len(shape)}. Full shape received: {shape}"
            )
        for axis, size in self.axes.items():
            if -len(shape) <= axis < len(shape) and shape[axis] != size:
                raise ValueError(
                    f"{prefix}expected axis {axis} of input shape to have value {size}, "
                    f"but received input with shape {shape}"
                )


class WeightRule:
    """A layer attribute such as ``kernel_regularizer`` that reads and writes a weight's bound rule.

    Before the weight exists the value waits on the layer; ``add_weight`` binds it.
    Afterwards, setting the attribute rebinds the weight at once, so a regularizer
    or constraint added to a built (or pretrained) layer takes effect; Keras
    silently ignores it.
    """

    def __init__(self, weight: str, kind: str) -> None:
        if kind not in ("regularizer", "constraint"):
            raise ValueError(f"kind must be 'regularizer' or 'constraint', got {kind!r}")
        self.weight = weight
        self.kind = kind
        self.attr = f"{weight}_{kind}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    def __get__(self, layer: Layer | None, owner: type) -> Any:
        if layer is None:
            return self
        if layer._parameters.get(self.weight) is not None:
            rule = binding.rule_of(layer, self.weight)
            return None if rule is None else getattr(rule, self.kind)
        return layer.__dict__.get("_pending_rules", {}).get(self.attr)

    def __set__(self, layer: Layer, value: Any) -> None:
        resolved = layer._resolve(self.attr, value, regularizers.get if self.kind == "regularizer" else constraints.get)
        if layer._parameters.get(self.weight) is not None:
            binding.bind(layer, self.weight, **{self.kind: resolved})
        else:
            layer.__dict__.setdefault("_pending_rules", {})[self.attr] = resolved


class _Undo:
    """What every module of a tree holds, recorded before a build or a first call so that a
    failure can put it back: a layer that raised while building stays unbuilt, with no weight
    added and no rule bound, as if it had never been called.

    Attributes are restored by identity, and the containers among them (the parameter,
    buffer and submodule dicts, the bound rules, ...) to their recorded contents.
    """

    def __init__(self, root: torch.nn.Module) -> None:
        self._saved = [(module, _record(module)) for module in root.modules()]

    def restore(self) -> None:
        for module, (attributes, contents, rules) in self._saved:
            for container, items in contents:
                container.clear()
                if isinstance(container, dict):
                    container.update(items)
                elif isinstance(container, list):
                    container.extend(items)
                else:
                    container.update(items)
            for rule, fields in rules:
                vars(rule).update(fields)
            module.__dict__.clear()
            module.__dict__.update(attributes)


def _record(module: torch.nn.Module) -> tuple[dict[str, Any], list[tuple[Any, Any]], list[tuple[Any, dict[str, Any]]]]:
    attributes = dict(module.__dict__)
    contents: list[tuple[Any, Any]] = []
    for value in attributes.values():
        if isinstance(value, dict):
            contents.append((value, list(value.items())))
        elif isinstance(value, (list, set)):
            contents.append((value, list(value)))
    bound = attributes.get(binding.RULES_ATTR) or {}
    rules = [(rule, dict(vars(rule))) for rule in bound.values()]
    return attributes, contents, rules


@contextmanager
def unchanged_on_error(module: torch.nn.Module) -> Iterator[None]:
    """Run the body; if it raises, put ``module`` and every module in it back as they were.

    >>> from weightwise.layers import Dense
    >>> layer = Dense(2)
    >>> try:
    ...     with unchanged_on_error(layer):
    ...         layer.build((None, 3))
    ...         raise RuntimeError("later step failed")
    ... except RuntimeError:
    ...     pass
    >>> layer.built, len(layer.weights)
    (False, 0)
    """
    undo = _Undo(module)
    try:
        yield
    except BaseException:
        undo.restore()
        raise


def _undo_on_error(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``build``: a build that raises leaves the layer tree as it was; one that returns marks it built.

    Keras marks a layer built after ``build`` too, so ``layer.build(shape)`` followed by a
    call does not build twice.
    """

    @functools.wraps(method)
    def build(self: Layer, *args: Any, **kwargs: Any) -> None:
        with unchanged_on_error(self), self._building_scope():
            method(self, *args, **kwargs)
        self.built = True
        given = args if args else tuple(kwargs.values())
        if len(given) == 1 and given[0] is not None:
            self.__dict__["_built_input_shape"] = given[0]

    build._undoes_failures = True  # type: ignore[attr-defined]
    return build


def _symbolic_compute_mask(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``compute_mask`` so that it takes symbolic tensors too.

    Written with :mod:`weightwise.ops` functions, it runs on them as it is and its ops become
    graph nodes (which Keras files hold); otherwise it runs on their example values, recorded
    as one :class:`~weightwise.layers.symbolic.GraphFunction` node.
    """

    @functools.wraps(method)
    def compute_mask(self: Layer, *args: Any, **kwargs: Any) -> Any:
        if not contains_symbolic((args, kwargs)):
            return method(self, *args, **kwargs)
        try:
            return method(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 -- a real error shows again in the run on example values
            return record_function(functools.partial(method, self), f"{self.name}_compute_mask", args, kwargs)

    compute_mask._takes_symbolic = True  # type: ignore[attr-defined]
    return compute_mask


def _training_flag(layer: Layer, value: Any) -> bool | None:
    """``training=`` of a call: ``None``, a bool (numpy's too), or a one-element bool tensor."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.numel() == 1 and not value.is_meta:
        return bool(value)
    raise ValueError(
        f"{type(layer).__name__} {layer.name!r}: invalid value for argument `training`: expected a bool or None. "
        f"Received: training={value!r}"
    )


def _is_numeric_nest(value: Any) -> bool:
    """Whether ``value`` is a number or a non-empty nested list of numbers (one tensor's worth)."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_numeric_nest(item) for item in value)
    if isinstance(value, np.generic):
        return value.dtype.kind in "biufc"
    return isinstance(value, numbers.Number)


def _shape_of(inputs: Any) -> Any:
    """The shapes of tensors (real or symbolic) in a nested structure."""
    if isinstance(inputs, (torch.Tensor, KerasTensor)):
        return tuple(inputs.shape)
    if isinstance(inputs, (list, tuple)):
        return [_shape_of(x) for x in inputs]
    if isinstance(inputs, dict):
        return {k: _shape_of(v) for k, v in inputs.items()}
    return None


def _activity_rule(value: Any) -> Any:
    """An activity regularizer resolved, refusing a proximal one (on an output it would do nothing)."""
    resolved = regularizers.get(value)
    regularizers._check_activity(resolved)
    return resolved


class Layer(torch.nn.Module):
    """Base class of every weightwise layer; a ``torch.nn.Module`` with Keras's layer API.

    Keyword arguments (all optional): ``name``, ``trainable``, ``dtype`` (a dtype, a policy
    name such as ``"mixed_bfloat16"``, or a :class:`~weightwise.dtype_policies.DTypePolicy`;
    the global policy by default), ``autocast``, ``activity_regularizer``, and
    ``input_shape`` / ``input_dim`` / ``batch_input_shape``, which build the layer at construction.

    Under a mixed policy (compute dtype unlike the variable dtype) the weights are created in
    the variable dtype (float32), and a call casts the floating inputs to the compute dtype,
    so the outputs come in it, as in Keras. The call also runs in Keras's autocast scope: the
    floating weights of the layer and of every layer in it are read in the compute dtype, and
    a sublayer of another policy opens its own scope. Gradients reach the float32 weights
    through the cast. ``autocast=False`` leaves the inputs as they are, and inside an outer
    scope the weights too (Keras's rule).

    Like Keras, a layer runs in inference mode unless told otherwise: a direct
    call has ``training=False``; ``layer.train()`` (torch) or ``training=True``
    (Keras) switch on training behaviour such as dropout.

    >>> class Scale(Layer):
    ...     def build(self, input_shape):
    ...         self.scale = self.add_weight(name="scale", shape=(input_shape[-1],),
    ...                                      initializer="ones", regularizer="l2")
    ...     def call(self, inputs):
    ...         return inputs * self.scale
    >>> layer = Scale(activity_regularizer="l1")
    >>> out = layer(ops.ones((2, 3)))
    >>> [round(loss.item(), 4) for loss in layer.losses]
    [0.03, 0.03]
    """

    # Whether ``call`` takes ``training`` (set per class, once).
    _call_takes_training = False
    # Whether floating inputs are cast to the compute dtype (Keras's flag; a functional model leaves
    # that to its layers, as Keras's does).
    _convert_input_args = True
    # Whether calls of the class need the mask machinery even for inputs without a mask: its ``call``
    # takes ``mask`` (or ``<argument>_mask``), or it overrides ``compute_mask`` (set per class, once).
    _handles_masks = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parameters = _call_signature(cls).parameters
        cls._call_takes_training = "training" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        cls._handles_masks = cls.compute_mask is not Layer.compute_mask or any(
            name == "mask" or name.endswith("_mask") for name in parameters)
        if "__init__" in cls.__dict__:
            cls.__init__ = _build_after_init(cls, cls.__dict__["__init__"])
        build = cls.__dict__.get("build")
        if callable(build) and not getattr(build, "_undoes_failures", False):
            cls.build = _undo_on_error(build)
        compute_mask = cls.__dict__.get("compute_mask")
        if callable(compute_mask) and not getattr(compute_mask, "_takes_symbolic", False):
            cls.compute_mask = _symbolic_compute_mask(compute_mask)

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        autocast: bool = True,
        activity_regularizer: Any = None,
        input_shape: Sequence[int | None] | None = None,
        input_dim: int | None = None,
        batch_input_shape: Sequence[int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            # A name is one step of its weights' paths ("model/dense/kernel"), so it cannot hold "/" (nor in Keras).
            raise ValueError(
                f"Invalid value for argument `name`: expected a non-empty str without '/'. Received: name={name!r}")
        if not isinstance(trainable, bool):
            raise ValueError(f"Invalid value for argument `trainable`: expected a bool. Received: trainable={trainable!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.__dict__["_autocast"] = flag(autocast, "autocast")
        self.dtype_policy = dtype
        self._trainable = trainable
        self._declared_trainable: dict[str, bool] = {}
        self.built = False
        self.input_spec: InputSpec | None = None
        self.activity_regularizer = activity_regularizer
        self._build_shape = _input_shape_argument(
            f"{type(self).__name__} layer {self.name!r}", input_shape, input_dim, batch_input_shape)
        # Keras's default: a layer called directly does not train.
        self.train(False)

    # -- identity and config -------------------------------------------------------------
    @property
    def path(self) -> str | None:
        """Where the layer sits, as its weights' paths start (``"model/dense"``); ``None`` until built."""
        return self.__dict__.get("_path")

    def _open_name_scope(self) -> Any:
        """The scope of this layer's weights; the parent path is the one of its first scope, as in Keras."""
        if self.__dict__.get("_parent_path") is None:
            self.__dict__["_parent_path"] = current_path()
        return name_scope(self.name, caller=self, override_parent=self.__dict__["_parent_path"])

    @contextmanager
    def _building_scope(self) -> Iterator[None]:
        """The name scope of a build, which records the layer's path; a build that raises records none."""
        saved = {key: self.__dict__[key] for key in ("_parent_path", "_path") if key in self.__dict__}
        try:
            with self._open_name_scope():
                self.__dict__["_path"] = current_path()
                yield
        except BaseException:
            self.__dict__.pop("_parent_path", None)
            self.__dict__.pop("_path", None)
            self.__dict__.update(saved)
            raise

    def _build_at_init(self) -> None:
        """Mark the layer built at construction when it has no ``build`` of its own (Keras's rule).

        A layer without weights calls this at the end of its ``__init__``, as Keras's
        stateless layers (activations, dropout, pooling) do.

        >>> class Double(Layer):
        ...     def __init__(self, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self._build_at_init()
        ...     def call(self, inputs):
        ...         return inputs * 2
        >>> Double().built
        True
        """
        if type(self).build is Layer.build:
            with self._building_scope():
                self.built = True

    @property
    def dtype_policy(self) -> dtype_policies.DTypePolicy:
        """The layer's :class:`~weightwise.dtype_policies.DTypePolicy`; settable (a policy, a name, a dtype).

        Setting it changes the dtype later calls compute in and later weights are created in;
        weights that exist keep their dtype, as in Keras.

        >>> from weightwise.layers import Dense
        >>> layer = Dense(2, dtype="mixed_bfloat16")
        >>> layer.dtype_policy, layer.dtype, layer.compute_dtype, layer.variable_dtype
        (<DTypePolicy "mixed_bfloat16">, 'float32', 'bfloat16', 'float32')
        """
        return self.__dict__["_dtype_policy"]

    @dtype_policy.setter
    def dtype_policy(self, value: Any) -> None:
        try:
            policy = dtype_policies.get(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: invalid value for argument `dtype`. {error}") \
                from error
        self.__dict__["_dtype_policy"] = policy
        # `_dtype` is what calls compute in (inputs, outputs, states); weights are created in `_variable_dtype`.
        self._dtype = backend.standardize_dtype(policy.compute_dtype)
        self._variable_dtype = backend.standardize_dtype(policy.variable_dtype)
        self._note_weight_casts()

    @property
    def autocast(self) -> bool:
        """Whether floating inputs are cast to the compute dtype, and (inside an outer autocast
        scope) the weights too; settable."""
        return self.__dict__["_autocast"]

    @autocast.setter
    def autocast(self, value: bool) -> None:
        self.__dict__["_autocast"] = flag(value, "autocast")

    def _note_weight_casts(self) -> None:
        # Decided once here, so that a call outside any autocast scope without a mixed policy pays
        # one attribute read for it.
        self.__dict__["_casts_weights"] = self._dtype.is_floating_point and self._dtype != self._variable_dtype

    @property
    def dtype(self) -> str:
        """The dtype of the layer's weights (Keras's alias of :attr:`variable_dtype`), as a string."""
        return self.variable_dtype

    @property
    def compute_dtype(self) -> str:
        """The dtype the layer computes in: floating inputs are cast to it (the policy's compute dtype)."""
        return str(self._dtype).replace("torch.", "")

    @property
    def variable_dtype(self) -> str:
        """The dtype the layer creates its weights in (the policy's variable dtype)."""
        return str(self._variable_dtype).replace("torch.", "")

    @property
    def input_dtype(self) -> str:
        """The dtype floating inputs are cast to: the :attr:`compute_dtype`, as in Keras."""
        return self.compute_dtype

    def _resolve(self, argument: str, value: Any, get: Callable[[Any], Any]) -> Any:
        """``get(value)``, with a failure naming this layer and the argument."""
        try:
            return get(value)
        except ValueError as error:
            raise ValueError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `{argument}`. {error}"
            ) from error

    @property
    def activity_regularizer(self) -> Any:
        """Penalty applied to each output of every call, divided by the batch size."""
        return self.__dict__.get("_activity_regularizer")

    @activity_regularizer.setter
    def activity_regularizer(self, value: Any) -> None:
        self.__dict__["_activity_regularizer"] = self._resolve("activity_regularizer", value, _activity_rule)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, in Keras's form (nested objects serialized)."""
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable,
                                  "dtype": dtype_policies.serialize(self.dtype_policy)}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Build a layer from :meth:`get_config` output, ours or Keras's.

        Keys Keras adds for features we do not have (quantization, LoRA) are accepted
        while unset, and refused with a clear error when set.
        """
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: invalid value for argument `config`: expected a dict. "
                            f"Received: config={config!r}")
        config = dict(config)
        for key in _KERAS_ONLY_KEYS:
            if config.get(key):
                raise ValueError(
                    f"{cls.__name__}.from_config: `{key}`={config[key]!r} is a Keras feature weightwise does not support."
                )
            config.pop(key, None)
        return cls(**config)

    # -- weights -------------------------------------------------------------------------
    def add_weight(
        self,
        name: str | None = None,
        shape: Sequence[int] = (),
        initializer: Any = None,
        regularizer: Any = None,
        constraint: Any = None,
        trainable: bool = True,
        dtype: Any = None,
        autocast: bool = True,
    ) -> Variable:
        """Create, register and return a weight (a :class:`weightwise.Variable`), with its rules bound.

        ``dtype`` defaults to the layer's :attr:`variable_dtype` (float32 under a mixed policy).
        With ``autocast=False`` a call under a mixed policy uses the weight as it is, not cast to
        the compute dtype (Keras's argument; normalization statistics use it).
        ``initializer`` defaults to ``glorot_uniform`` (``zeros`` for non-float dtypes). Every
        argument is checked, and the initial value drawn, before the layer changes; if binding
        the rules then fails, the weight is removed again, so a failed call adds nothing.

        >>> layer = Layer(name="holder")
        >>> layer.add_weight(name="scale", shape=(2,), initializer="ones").shape
        torch.Size([2])
        >>> layer.add_weight(name="bad", shape=(2.5,))
        Traceback (most recent call last):
        ...
        ValueError: Layer layer 'holder': invalid value for argument `shape`: expected a tuple of ints >= 0. Received: shape=(2.5,)
        """
        owner = f"{type(self).__name__} layer {self.name!r}"
        if name is None:
            name = f"variable_{len(self._declared_trainable)}"
        if not isinstance(name, str) or not name.isidentifier() or hasattr(type(self), name) \
                or name in self.__dict__ or name in self._parameters or name in self._buffers or name in self._modules:
            raise ValueError(
                f"{owner}: invalid value for argument `name`: expected a Python identifier not already used by "
                f"the layer. Received: name={name!r}"
            )
        if not isinstance(trainable, bool):
            raise TypeError(
                f"{owner}: invalid value for argument `trainable`: expected a bool. Received: trainable={trainable!r}"
            )
        shape = standardize_shape(shape, "shape", owner, allow_none=False)
        autocast = flag(autocast, "autocast", owner)
        dtype = self._variable_dtype if dtype is None else backend.standardize_dtype(_dtype_name(dtype))
        regularizer = self._resolve(f"regularizer of weight {name!r}", regularizer, regularizers.get)
        constraint = self._resolve(f"constraint of weight {name!r}", constraint, constraints.get)
        init = self._resolve("initializer", initializer if initializer is not None else
                             ("glorot_uniform" if dtype.is_floating_point else "zeros"), initializers.get)
        value = self._initial_value(init, name, shape, dtype)
        with self._open_name_scope():
            param = Variable.wrap(value, trainable and self._trainable, name)
        if not autocast:
            param.__dict__["_autocast"] = False
        self.register_parameter(name, param)
        self._declared_trainable[name] = trainable
        try:
            binding.bind(self, name, regularizer=regularizer, constraint=constraint)
        except BaseException:
            del self._parameters[name]
            del self._declared_trainable[name]
            binding.unbind(self, name)
            raise
        return param

    def _initial_value(self, init: Callable[..., Any], name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """``init(shape, dtype)`` checked: a tensor of that shape, in ``dtype``, owned by the weight alone."""
        owner = f"{type(self).__name__} layer {self.name!r}"
        with torch.no_grad():
            try:
                value = init(shape, dtype=dtype)
            except (MemoryError, RuntimeError) as error:
                # torch reports a failed allocation as a RuntimeError; the cause is the size asked for.
                if not isinstance(error, MemoryError) and "alloc" not in str(error):
                    raise
                raise ValueError(
                    f"{owner}: cannot allocate weight {name!r} of shape {shape} and dtype {dtype}. "
                    f"Received: shape={shape}"
                ) from error
        if not isinstance(value, torch.Tensor):
            try:
                value = ops.convert_to_tensor(value)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"{owner}: invalid value for argument `initializer`: it returned {value!r:.100} for weight "
                    f"{name!r}, not a tensor. Received: initializer={init!r}"
                ) from error
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{owner}: invalid value for argument `initializer`: it returned a tensor of shape "
                f"{tuple(value.shape)} for weight {name!r} of shape {shape}. Received: initializer={init!r}"
            )
        # A value from a user's initializer may be a tensor they keep using; the weight gets its own copy, as in Keras.
        fresh = getattr(init, "__module__", None) == initializers.__name__
        return value.detach().to(dtype=dtype, copy=not fresh)

    def register_parameter(self, name: str, param: torch.nn.Parameter | None) -> None:
        """Register ``param`` as torch does; a :class:`weightwise.Variable` is attached to this layer.

        Attaching binds the variable's own regularizer and constraint to its slot here. A
        plain Parameter that torch puts in place of a Variable (``load_state_dict(...,
        assign=True)``) becomes a Variable with the old one's name and path, so the Keras
        API of the weight survives.
        """
        previous = self.__dict__.get("_parameters", {}).get(name)
        if type(param) is torch.nn.Parameter and isinstance(previous, Variable):
            _restore_variable(param, dict(previous.__dict__))
        super().register_parameter(name, param)
        if isinstance(param, Variable):
            param._attach(self, name)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Layer:
        # torch's `.to()`, `.half()`, `.to_empty()` may replace a parameter by a plain Parameter
        # (a move to or from the meta device, or with swap_module_params_on_conversion); the
        # weight stays a Variable with its name and path.
        saved = {name: dict(p.__dict__) for name, p in self._parameters.items() if isinstance(p, Variable)}
        super()._apply(fn, recurse)
        for name, state in saved.items():
            param = self._parameters.get(name)
            if type(param) is torch.nn.Parameter:
                _restore_variable(param, state)
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # A copied or unpickled variable comes without its owner: this layer is it again.
        for name, param in self._parameters.items():
            if isinstance(param, Variable):
                param.__dict__.update(_owner=self, _slot=name, _rule=binding.Rule())
        if "_dtype_policy" not in self.__dict__ and "_dtype" in self.__dict__:
            # Pickled before layers had policies: the dtype it had is its policy.
            self.__dict__["_autocast"] = True
            self.dtype_policy = str(self._dtype).replace("torch.", "")

    def _own_weights(self) -> list[torch.nn.Parameter]:
        params = [(n, p) for n, p in self._parameters.items() if p is not None]
        declared = [p for n, p in params if self._declared_trainable.get(n, True)]
        return declared + [p for n, p in params if not self._declared_trainable.get(n, True)]

    @property
    def weights(self) -> list[torch.nn.Parameter]:
        """All weights in Keras order: this layer's trainable, its non-trainable, then sublayers'."""
        out, seen = [], set()
        for w in self._own_weights() + [w for child in self.children() for w in _weights_of(child)]:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    @property
    def trainable_weights(self) -> list[torch.nn.Parameter]:
        """Weights that train: those with ``requires_grad``, none when the layer is not trainable."""
        if not self._trainable:
            return []
        return [w for w in self.weights if w.requires_grad]

    @property
    def non_trainable_weights(self) -> list[torch.nn.Parameter]:
        """Weights that do not train: all of them when the layer is not trainable."""
        if not self._trainable:
            return self.weights
        return [w for w in self.weights if not w.requires_grad]

    @property
    def variables(self) -> list[torch.nn.Parameter]:
        """All the layer's state, as Keras lists it: here the same as :attr:`weights`.

        >>> from weightwise.layers import Dense
        >>> [v.path for v in Dense(2, input_dim=3, name="d").variables]
        ['d/kernel', 'd/bias']
        """
        return self.weights

    @property
    def trainable_variables(self) -> list[torch.nn.Parameter]:
        """The same as :attr:`trainable_weights`."""
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list[torch.nn.Parameter]:
        """The same as :attr:`non_trainable_weights`."""
        return self.non_trainable_weights

    @property
    def trainable(self) -> bool:
        """Whether the layer trains; setting it applies to every weight and sublayer."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"Invalid value for argument `trainable`: expected a bool. Received: trainable={value!r}")
        self._trainable = value
        for name, param in self._parameters.items():
            if param is not None and param.dtype.is_floating_point:
                param.requires_grad_(value and self._declared_trainable.get(name, True))
        for child in self.children():
            if isinstance(child, Layer):
                child.trainable = value
            else:
                child.requires_grad_(value)

    def get_weights(self) -> list[np.ndarray]:
        """The weights as numpy arrays, in :attr:`weights` order and Keras layouts."""
        return [ops.convert_to_numpy(w) for w in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight from numpy arrays (or tensors) in :attr:`weights` order.

        The list, and every entry's type, dtype and shape, are checked first; on any
        mismatch nothing changes. Entries are cast to each weight's dtype, as Keras does;
        complex values for a real weight, strings, bytes and other objects are refused.

        >>> from weightwise.layers import Dense
        >>> layer = Dense(2, input_dim=3, name="d")
        >>> layer.set_weights([np.ones((3, 2)), np.zeros(2, dtype=np.int64)])
        >>> layer.set_weights([np.ones((3, 2)), "abc"])
        Traceback (most recent call last):
        ...
        TypeError: Dense layer 'd': invalid value for argument `weights[1]` (weight 'bias'): expected an array of real numbers of shape (2,). Received: weights[1]='abc'
        """
        params = self.weights
        if not isinstance(weights, (list, tuple)):
            raise TypeError(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `weights`: expected a list of "
                f"arrays. Received: weights={echo(weights)}"
            )
        if len(weights) != len(params):
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(params)} weights. Received: weights of length "
                f"{len(weights)}"
            )
        names = {id(p): n for n, p in self.named_parameters()}
        values = [self._weight_value(index, value, param, names.get(id(param), "?"))
                  for index, (value, param) in enumerate(zip(weights, params))]
        with torch.no_grad():
            for param, value in zip(params, values):
                param.copy_(value.to(device=param.device, dtype=param.dtype))

    def _weight_value(self, index: int, value: Any, param: torch.Tensor, name: str) -> torch.Tensor:
        """Entry ``index`` of ``set_weights`` as a tensor fit for ``param``, or a clear error."""
        argument = f"weights[{index}]"
        kinds = "biufc" if param.is_complex() else "biuf"

        def refuse(error: type[Exception], received: str) -> Exception:
            expected = "complex" if param.is_complex() else "real"
            return error(
                f"{type(self).__name__} layer {self.name!r}: invalid value for argument `{argument}` (weight "
                f"{name!r}): expected an array of {expected} numbers of shape {tuple(param.shape)}. Received: {received}"
            )

        if isinstance(value, torch.Tensor):
            if value.is_meta or (value.is_complex() and "c" not in kinds):
                raise refuse(TypeError, f"{argument}={echo(value)}")
            tensor = value.detach()
        else:
            if value is None or isinstance(value, (str, bytes)):
                raise refuse(TypeError, f"{argument}={echo(value)}")
            try:
                array = np.asarray(value)
            except (TypeError, ValueError) as error:
                raise refuse(ValueError, f"{argument}={echo(value)} ({error})") from error
            if array.dtype.kind not in kinds:
                raise refuse(TypeError, f"{argument}={echo(array)}")
            tensor = ops.convert_to_tensor(array)
        if tuple(tensor.shape) != tuple(param.shape):
            raise ValueError(
                f"Layer {self.name} weight shape {tuple(param.shape)} is not compatible with provided "
                f"weight shape {tuple(tensor.shape)}. Received: {argument} of shape {tuple(tensor.shape)}"
            )
        return tensor

    def count_params(self) -> int:
        """Number of scalars in all weights; the layer must be built."""
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't built. "
                "You can build it manually via: `layer.build(input_shape)`."
            )
        return sum(w.numel() for w in self.weights)

    # -- losses --------------------------------------------------------------------------
    def add_loss(self, loss: Any) -> None:
        """Add a loss tensor to :attr:`losses`; cleared by the next outermost call."""
        if isinstance(loss, (str, bytes)) or loss is None:
            raise TypeError(f"Layer {self.name!r}: invalid value for argument `loss`: expected a tensor. Received: loss={loss!r}")
        binding.record_call_loss(self, ops.convert_to_tensor(loss))

    @property
    def losses(self) -> list[torch.Tensor]:
        """Scalar losses, computed afresh: ``add_loss`` and activity losses of the last call, and
        the penalties of trainable weights in this layer and its sublayers, each once.

        ``sum(layer.losses)`` equals :func:`weightwise.binding.regularization_loss` of the layer.
        """
        return binding.call_losses(self) + binding.penalties(self)

    # -- calling -------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Create the layer's weights for inputs of ``input_shape``; the default creates none."""

    def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """The layer's computation; subclasses override it. The default is the identity."""
        return inputs

    @property
    def supports_masking(self) -> bool:
        """Whether the layer passes on or computes a mask; settable. The default is whether the class
        overrides :meth:`compute_mask`, as in Keras."""
        value = self.__dict__.get("_supports_masking")
        return type(self).compute_mask is not Layer.compute_mask if value is None else value

    @supports_masking.setter
    def supports_masking(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(  # noqa: TRY004 -- a non-bool flag is a ValueError, as in weightwise.arguments
                f"Invalid value for argument `supports_masking`: expected a bool. Received: supports_masking={echo(value)}")
        self.__dict__["_supports_masking"] = bool(value)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        """The mask of the outputs; the default passes ``previous_mask`` on unchanged.

        >>> Layer().compute_mask(ops.ones((2, 3)), None) is None
        True
        """
        return previous_mask

    def compute_output_shape(self, input_shape: Any, *args: Any, **kwargs: Any) -> Any:
        """The output shape (``None`` for unknown sizes) for inputs of ``input_shape``.

        The default runs a copy of the layer on example inputs of that shape, so every layer
        has one and the layer itself is left as it was (unbuilt, if it was). A nested
        ``input_shape`` (a list of shapes) means several inputs.

        >>> from weightwise.layers import Dense
        >>> layer = Dense(4)
        >>> layer.compute_output_shape((None, 3)), layer.built
        ((None, 4), False)
        """
        specs = self._output_spec_by_example(_placeholders(input_shape, self._dtype), args, kwargs)
        return map_structure(lambda spec: spec.shape if isinstance(spec, KerasTensor) else spec, specs)

    def compute_output_spec(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """The output's :class:`~weightwise.layers.KerasTensor` (shape and dtype) for ``inputs``.

        ``inputs`` are symbolic tensors or real ones. A layer that defines
        :meth:`compute_output_shape` is asked for the shape; any other runs as a copy on
        example inputs. Nothing is recorded in a graph and the layer is left as it was.

        >>> from weightwise.layers import Dense, Input
        >>> Dense(4).compute_output_spec(Input(shape=(3,)))
        <KerasTensor shape=(None, 4), dtype=float32>
        """
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            shapes = self.compute_output_shape(_shape_of(inputs), *args, **kwargs)
            return _placeholders(shapes, self._dtype)
        symbolic = map_structure(
            lambda x: KerasTensor.placeholder(tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else x, inputs)
        return self._output_spec_by_example(symbolic, args, kwargs)

    def _output_spec_by_example(self, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run a copy of the layer on symbolic ``inputs``; the outputs' specs, with no graph behind them."""
        outputs = copy.deepcopy(self)(inputs, *args, **kwargs)
        return map_structure(
            lambda t: KerasTensor.placeholder(t.shape, backend.standardize_dtype(t.dtype))
            if isinstance(t, KerasTensor) else t, outputs)

    def _build_once(self, input_shape: Any) -> None:
        if not self.built:
            with self._building_scope():
                self.build(input_shape)
            self.built = True
            self.__dict__["_built_input_shape"] = input_shape

    def get_build_config(self) -> dict[str, Any] | None:
        """``{"input_shape": ...}`` of the shape the layer was built with, or ``None`` if unbuilt.

        Saved beside the config (as Keras does) so a loaded layer can create its weights
        before they are read back.

        >>> from weightwise.layers import Dense
        >>> layer = Dense(2)
        >>> _ = layer(ops.ones((3, 4)))
        >>> layer.get_build_config()
        {'input_shape': [3, 4]}
        """
        shape = self.__dict__.get("_built_input_shape")
        return None if shape is None or not self.built else {"input_shape": _shape_to_list(shape)}

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Build from :meth:`get_build_config` output (ours or Keras's).

        >>> from weightwise.layers import Dense
        >>> layer = Dense(2)
        >>> layer.build_from_config({"input_shape": [None, 4]})
        >>> tuple(layer.kernel.shape)
        (4, 2)
        """
        if not isinstance(config, dict):
            raise TypeError(f"Layer {self.name!r}: a build config must be a dict. Received: config={config!r}")
        if "input_shape" in config:
            shape = config["input_shape"]
        elif isinstance(config.get("shapes_dict"), dict) and len(config["shapes_dict"]) == 1:
            shape = next(iter(config["shapes_dict"].values()))
        else:
            raise ValueError(
                f"Layer {self.name!r}: cannot build from config {config!r}; expected an 'input_shape' entry. "
                "A layer built from several named inputs must override `build_from_config`."
            )
        if shape is not None:
            self._build_once(_shape_from_list(shape))

    def forward(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras's ``__call__`` steps: convert, check, build once, call, record activity losses.

        On symbolic inputs (from ``Input()``) the call is recorded as a graph node instead.
        A first call that raises (while building, checking or calling) leaves the layer, and
        every layer in it, as it was: unbuilt, with no weight added and no rule bound.
        """
        if "training" in kwargs:
            kwargs["training"] = _training_flag(self, kwargs["training"])
        if self.built:
            return self._forward(inputs, args, kwargs)
        # A first call builds: sublayers built inside it take their place in its weights' paths.
        with unchanged_on_error(self), self._open_name_scope():
            return self._forward(inputs, args, kwargs)

    def _forward(self, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if isinstance(inputs, torch.Tensor):
            # The common case, kept lean: per-layer Python overhead is what deep models pay for.
            masked = getattr(inputs, "_keras_mask", None) is not None
            if inputs.dtype != self._dtype and inputs.is_floating_point() and self.autocast and self._convert_input_args:
                inputs = _with_mask_of(inputs, inputs.to(self._dtype))
            if self.input_spec is not None:
                self.input_spec.check(self.name, inputs.shape)
            if not self.built:
                self._build_once(tuple(inputs.shape))
        else:
            if contains_symbolic(inputs):
                was_built = self.built
                outputs = call_symbolically(self, inputs, args, kwargs, binding.clear_call_losses)
                if not was_built and self.built:
                    # Built on example values; what it was built for is the symbolic shape (batch None).
                    self.__dict__["_built_input_shape"] = _shape_of(inputs)
                return outputs
            masked = any(get_keras_mask(leaf) is not None for leaf in flatten(inputs))
            inputs = self._convert_inputs(inputs)
            if self.input_spec is not None:
                if not isinstance(inputs, torch.Tensor):
                    raise ValueError(
                        f"Layer {self.name!r} expects 1 input tensor, but it received a {type(inputs).__name__} of "
                        f"{len(inputs)}. Received: inputs={inputs!r:.300}"
                    )
                self.input_spec.check(self.name, tuple(inputs.shape))
            if not self.built:
                self._build_once(_shape_of(inputs))
        depth = getattr(_CALL_STATE, "depth", 0)
        if depth == 0:
            binding.clear_call_losses(self)
        training = kwargs.pop("training", None)
        outer_training = getattr(_CALL_STATE, "training", None)
        if training is None:
            training = outer_training if outer_training is not None else self.training
        if self._call_takes_training:
            kwargs["training"] = training
        _CALL_STATE.depth, _CALL_STATE.training = depth + 1, training
        outer_scope = getattr(_CALL_STATE, "autocast", None)
        scope, restore = outer_scope, None
        if outer_scope is not None or self._casts_weights:
            scope = self._autocast_scope(outer_scope)
            if scope != outer_scope:
                restore = _cast_weights(self, scope)
                _CALL_STATE.autocast = scope
        try:
            if masked or self._handles_masks:
                outputs = self._call_with_masks(inputs, args, kwargs)
            else:
                outputs = self.call(inputs, *args, **kwargs)
        finally:
            _CALL_STATE.depth, _CALL_STATE.training = depth, outer_training
            if restore is not None:
                _CALL_STATE.autocast = outer_scope
                _restore_weights(restore)
        if self.activity_regularizer is not None:
            for output in flatten(outputs):
                if isinstance(output, torch.Tensor):
                    binding.record_call_loss(self, binding.Activity(self.activity_regularizer, output))
        return outputs

    def _autocast_scope(self, outer: torch.dtype | None) -> torch.dtype | None:
        """The dtype weights are read in during this layer's call, by Keras's rule.

        Inside an outer scope: none if the layer does not autocast or computes in a non-float
        dtype, else its compute dtype. Outside any: its compute dtype if its policy is mixed.
        """
        if outer is None:
            return self._dtype if self._casts_weights else None
        return self._dtype if self.autocast and self._dtype.is_floating_point else None

    def _call_with_masks(self, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``call`` with Keras's mask steps: masks in, as ``mask=``; the outputs' masks from ``compute_mask``.

        A ``call`` with a ``mask`` parameter, given one tensor argument (or a nest of them) and no
        mask, receives that argument's ``_keras_mask`` (a nest of masks for a nest of tensors); with
        several tensor arguments, a parameter ``<argument>_mask`` receives that argument's. After
        the call, a layer that supports masking sets ``compute_mask(inputs, previous_mask)`` as
        ``_keras_mask`` on outputs that have none, where ``previous_mask`` is the ``mask=`` of the call
        or else the first input's mask. A layer that does not support masking drops the mask, with
        Keras's warning.
        """
        try:
            bound = _bound_arguments(type(self), inputs, args, kwargs)
        except TypeError:
            return self.call(inputs, *args, **kwargs)  # the call's own error names what is wrong
        tensors = {name: value for name, value in bound.items() if _is_tensor_nest(value)}
        wanted = (("mask", next(iter(tensors.values()))),) if len(tensors) == 1 else \
            tuple((f"{name}_mask", value) for name, value in tensors.items())
        parameters = _call_info(type(self)).names
        for name, value in wanted:
            if name in parameters and bound.get(name) is None:
                kwargs[name] = map_structure(get_keras_mask, value)
        previous = kwargs.get("mask")
        if previous is None:
            previous = map_structure(get_keras_mask, inputs)
        outputs = self.call(inputs, *args, **kwargs)
        if self.supports_masking:
            flat = [t for t in flatten(outputs) if isinstance(t, torch.Tensor)]
            if not all(get_keras_mask(t) is not None for t in flat):
                masks = self.compute_mask(inputs, previous)
                if masks is not None:
                    for tensor, mask in zip(flatten(outputs), flatten(masks)):
                        if isinstance(tensor, torch.Tensor) and mask is not None and get_keras_mask(tensor) is None:
                            set_keras_mask(tensor, mask)
        elif any(mask is not None for mask in flatten(previous)):
            warnings.warn(
                f"Layer '{self.name}' (of type {type(self).__name__}) was passed an input with a mask attached to "
                "it. However, this layer does not support masking and will therefore destroy the mask "
                "information. Downstream layers will not see the mask.", stacklevel=4)
        return outputs

    def _convert_inputs(self, inputs: Any) -> Any:
        """Numpy and Python inputs become tensors; floating tensors take the layer dtype (Keras autocast).

        Lists, tuples and dicts keep their structure, except a nested list of numbers, which
        is one tensor. Anything else (``None``, strings, other objects) is a ``TypeError``.
        """
        if isinstance(inputs, (list, tuple)) and not _is_numeric_nest(inputs):
            return type(inputs)(self._convert_inputs(x) for x in inputs)
        if isinstance(inputs, dict):
            return {k: self._convert_inputs(v) for k, v in inputs.items()}
        tensor = self._check_leaf(inputs)
        if not isinstance(tensor, torch.Tensor):
            try:
                tensor = ops.convert_to_tensor(tensor)
            except (TypeError, ValueError) as error:
                raise self._not_a_tensor(inputs) from error
        if tensor.is_floating_point() and tensor.dtype != self._dtype and self.autocast and self._convert_input_args:
            tensor = _with_mask_of(tensor, tensor.to(self._dtype))
        return tensor

    def _check_leaf(self, value: Any) -> Any:
        """``value`` if it can be a tensor (a tensor, an array, a number, a list of numbers); else a TypeError."""
        if isinstance(value, torch.Tensor) or _is_numeric_nest(value) \
                or (isinstance(value, np.ndarray) and value.dtype.kind in "biufc"):
            return value
        raise self._not_a_tensor(value)

    def _not_a_tensor(self, value: Any) -> TypeError:
        return TypeError(
            f"Invalid value for argument `inputs` of layer {self.name!r} ({type(self).__name__}): expected tensors "
            f"(or arrays, numbers, or lists and dicts of them). Received: inputs={echo(value)} "
            f"(of type {type(value).__name__})"
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class _CallInfo(NamedTuple):
    """What binding arguments to ``cls.call`` needs, as plain tuples and sets."""

    owner: type
    signature: inspect.Signature  # without ``self``
    positional: tuple[str, ...]  # the parameters that take positional arguments, in order
    keywords: frozenset[str]  # the parameters that take a keyword argument by name
    names: tuple[str, ...]  # every parameter, in order
    var_positional: bool
    var_keyword: str | None


def _call_info(cls: type) -> _CallInfo:
    # Made when the class is (Layer.__init_subclass__) and kept on it with its owner (a subclass
    # inherits the attribute, not the information): torch.compile reads a constant, where a
    # functools cache would make it trace inspect.signature, which graph-breaks.
    cached = getattr(cls, "_weightwise_call_info", None)
    if cached is not None and cached.owner is cls:
        return cached
    signature = inspect.signature(cls.call)
    signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    kinds = inspect.Parameter
    params = list(signature.parameters.values())
    info = _CallInfo(
        owner=cls, signature=signature,
        positional=tuple(p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)),
        keywords=frozenset(p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)),
        names=tuple(p.name for p in params),
        var_positional=any(p.kind is kinds.VAR_POSITIONAL for p in params),
        var_keyword=next((p.name for p in params if p.kind is kinds.VAR_KEYWORD), None))
    type.__setattr__(cls, "_weightwise_call_info", info)
    return info


def _call_signature(cls: type) -> inspect.Signature:
    """The signature of ``cls.call`` without ``self``."""
    return _call_info(cls).signature


def _bound_arguments(cls: type, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``Signature.bind(inputs, *args, **kwargs).arguments`` for ``cls.call``; ``TypeError`` where it fails.

    Under torch.compile, a call that binds plainly (no ``*args`` overflow, no name given twice) is
    bound from the cached names: ``Signature.bind`` mutates a dict behind a mapping proxy, which
    graph-breaks. Anything else goes through ``Signature.bind`` and its checks.
    """
    info = _call_info(cls)
    values = (inputs, *args)
    if torch.compiler.is_compiling() and len(values) <= len(info.positional) \
            and (info.var_keyword is not None or all(k in info.keywords for k in kwargs)) \
            and not any(k in info.positional[:len(values)] for k in kwargs):
        found = dict(zip(info.positional, values))
        extra = {}
        for key, value in kwargs.items():
            if key in info.keywords:
                found[key] = value
            else:
                extra[key] = value
        if extra:
            found[info.var_keyword] = extra
        return {name: found[name] for name in info.names if name in found}
    return dict(info.signature.bind(inputs, *args, **kwargs).arguments)


def _is_tensor_nest(value: Any) -> bool:
    """Whether ``value`` is a tensor, or a non-empty nest of tensors and ``None`` (Keras's tensor arguments)."""
    if isinstance(value, (torch.Tensor, KerasTensor)):
        return True
    if isinstance(value, (list, tuple, dict)) and value:
        return all(x is None or isinstance(x, (torch.Tensor, KerasTensor)) for x in flatten(value))
    return False


def _with_mask_of(original: torch.Tensor, converted: torch.Tensor) -> torch.Tensor:
    """``converted`` (a cast of ``original``) carrying ``original``'s mask, as Keras keeps it through a cast."""
    mask = getattr(original, "_keras_mask", None)
    if mask is not None and converted is not original:
        converted._keras_mask = mask
    return converted


_ABSENT = object()


def _cast_weights(root: Layer, dtype: torch.dtype | None) -> list[tuple[Layer, str, Any]]:
    """Make ``self.<name>`` of every layer under ``root`` read its weight in ``dtype`` (as it is, for ``None``).

    ``layer.kernel`` reads a parameter through ``Module.__getattr__``, which the instance dict
    comes before: a cast copy put in the dict is what ``call`` sees, while the float32
    Parameter stays registered (for ``.grad``, the optimizer, the penalties and the
    constraints). Keras's torch backend casts the same way, at each read of a variable inside
    an autocast scope. Only floating weights whose ``autocast`` is on are cast, and never those
    created with ``trainable=False``: such state (moving statistics) may be updated in place by
    the call, which must reach the weight rather than a copy. Returns what was there before,
    for :func:`_restore_weights`.
    """
    saved: list[tuple[Layer, str, Any]] = []
    for layer in root.modules():
        if not isinstance(layer, Layer):
            continue
        declared, own = layer._declared_trainable, layer.__dict__
        for name, param in layer._parameters.items():
            if param is None or not param.is_floating_point() or not getattr(param, "autocast", True) \
                    or not declared.get(name, True):
                continue
            previous = own.get(name, _ABSENT)
            if dtype is None or param.dtype == dtype:
                if previous is _ABSENT:
                    continue
                del own[name]
            else:
                own[name] = param.to(dtype)
            saved.append((layer, name, previous))
    return saved


def _restore_weights(saved: list[tuple[Layer, str, Any]]) -> None:
    for layer, name, previous in reversed(saved):
        if previous is _ABSENT:
            layer.__dict__.pop(name, None)
        else:
            layer.__dict__[name] = previous


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(
        d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool)) for d in value)


def _placeholders(shapes: Any, dtype: torch.dtype) -> Any:
    """A symbolic tensor for each shape in ``shapes`` (one shape, or nested lists and dicts of them)."""
    if _is_shape(shapes):
        return KerasTensor.placeholder(tuple(shapes), dtype)
    if isinstance(shapes, (list, tuple)):
        return type(shapes)(_placeholders(shape, dtype) for shape in shapes)
    if isinstance(shapes, dict):
        return {key: _placeholders(shape, dtype) for key, shape in shapes.items()}
    raise ValueError(f"Invalid value for argument `input_shape`: expected a shape (a tuple of ints or None) or "
                     f"a list or dict of shapes. Received: input_shape={echo(shapes)}")


def _restore_variable(param: torch.nn.Parameter, state: dict[str, Any]) -> None:
    """Make ``param``, a plain Parameter torch put in a weight's place, that weight's Variable again."""
    param.__class__ = Variable
    param.__dict__.update(state)


def _shape_to_list(shape: Any) -> Any:
    """A shape (or nested shapes) as JSON-ready lists."""
    if isinstance(shape, (list, tuple)):
        return [_shape_to_list(d) for d in shape]
    if isinstance(shape, dict):
        return {k: _shape_to_list(v) for k, v in shape.items()}
    return None if shape is None else int(shape)


def _shape_from_list(shape: Any) -> Any:
    """The inverse: a flat list of sizes is a tuple shape; a list of lists stays a list of shapes."""
    if isinstance(shape, dict):
        return {k: _shape_from_list(v) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)):
        if all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
            return tuple(shape)
        return [_shape_from_list(d) for d in shape]
    raise ValueError(f"Invalid shape in a build config: expected a list of sizes. Received: {shape!r}")


def _weights_of(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    if isinstance(module, Layer):
        return module.weights
    return list(module.parameters())


def _build_after_init(cls: type, init: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``cls.__init__`` so that a layer given ``input_shape`` builds once fully constructed."""

    @functools.wraps(init)
    def __init__(self: Layer, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # Only the most-derived class's __init__ builds, after every __init__ has run.
        if type(self) is cls and getattr(self, "_build_shape", None) is not None and not self.built:
            self._build_once(self._build_shape)

    return __init__


def _input_shape_argument(
    owner: str,
    input_shape: Sequence[int | None] | None,
    input_dim: int | None,
    batch_input_shape: Sequence[int | None] | None,
) -> tuple[int | None, ...] | None:
    if batch_input_shape is not None:
        return standardize_shape(batch_input_shape, "batch_input_shape", owner)
    if input_dim is not None:
        if isinstance(input_dim, bool) or not isinstance(input_dim, numbers.Integral) or input_dim <= 0:
            raise ValueError(f"Invalid value for argument `input_dim`: expected a positive int. Received: input_dim={input_dim!r}")
        return standardize_shape((None, input_dim), "input_dim", owner)
    if input_shape is not None:
        if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
            input_shape = (input_shape,)
        return (None, *standardize_shape(input_shape, "input_shape", owner))
    return None


def _dtype_name(dtype: Any) -> Any:
    """A weight's ``dtype`` argument: a dtype, or a policy (or its config), whose variable dtype it means."""
    if isinstance(dtype, (dict, dtype_policies.DTypePolicy)):
        return dtype_policies.get(dtype).variable_dtype
    return dtype
