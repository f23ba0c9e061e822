"""The Lambda layer: any function of the inputs, used as a layer.

A Python lambda is saved as its bytecode, in the form Keras's ``Lambda`` writes
(``{"class_name": "__lambda__", "config": {"code", "defaults", "closure"}}``), so configs
move between Keras and weightwise both ways. Loading that bytecode runs code, so a config
holding one is refused unless safe mode is off: ``safe_mode=False`` on the loading call,
a ``SafeModeScope(False)``, or ``weightwise.config.enable_unsafe_deserialization()``. A
named function is saved by name (register it to load it) and loads in safe mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from weightwise.arguments import echo
from weightwise.layers.args import standardize_shape
from weightwise.layers.base import Layer
from weightwise.serialization import (
    deserialize_keras_object,
    in_safe_mode,
    serialize_keras_object,
)

__all__ = ["Lambda"]

_LAMBDA = "__lambda__"


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)


def _standardize_output_shape(layer: Layer, value: Any) -> Any:
    """``output_shape`` as given: ``None``, a callable, a shape without the batch axis, or a list/tuple/dict of them."""
    if value is None or callable(value):
        return value
    owner = f"Lambda layer {layer.name!r}"
    if _is_shape(value):
        return standardize_shape(value, "output_shape", owner)
    if isinstance(value, Mapping):
        return {key: standardize_shape(shape, "output_shape", owner) for key, shape in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(standardize_shape(shape, "output_shape", owner) for shape in value)
    raise TypeError(f"{owner}: invalid value for argument `output_shape`: expected None, a shape, a structure of "
                    f"shapes or a callable. Received: output_shape={echo(value)}")


def _takes(function: Callable[..., Any], argument: str) -> bool:
    """Whether ``function`` names ``argument`` among its parameters (built-ins without a signature do not)."""
    try:
        return argument in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _function_to_config(function: Callable[..., Any]) -> Any:
    """A function's config: Keras's Lambda form for a Python lambda, the serialization module's form otherwise."""
    config = serialize_keras_object(function)
    inner = config.get("config") if isinstance(config, dict) and config.get("class_name") == _LAMBDA else None
    if isinstance(inner, dict) and "value" in inner:
        code, defaults, closure = inner["value"]
        return {"class_name": _LAMBDA, "config": {"code": code, "defaults": defaults, "closure": closure}}
    return config


def _function_from_config(config: Any, argument: str, custom_objects: Any, safe_mode: bool) -> Any:
    """The function a config describes; a Python lambda only outside safe mode."""
    if not (isinstance(config, Mapping) and config.get("class_name") == _LAMBDA):
        return deserialize_keras_object(config, custom_objects=custom_objects)
    if safe_mode:
        raise ValueError(
            f"Requested the deserialization of a `Lambda` layer whose `{argument}` is a Python lambda. This carries "
            "a potential risk of arbitrary code execution and thus it is disallowed by default. If you trust the "
            "source of the config, pass `safe_mode=False` to the loading function, or call "
            "`weightwise.config.enable_unsafe_deserialization()`."
        )
    inner = config.get("config")
    if isinstance(inner, Mapping) and "code" in inner:
        # Keras's Lambda form; the serialization module reads the general one.
        inner = {"value": [inner.get("code"), inner.get("defaults"), inner.get("closure")]}
    return deserialize_keras_object({"class_name": _LAMBDA, "config": inner}, custom_objects=custom_objects,
                                    safe_mode=False)


class Lambda(Layer):
    """Wraps ``function`` as a layer: ``output = function(inputs, **arguments)``.

    ``function`` gets the ``mask`` and ``training`` of the call when it names them.
    ``output_shape`` is the output's shape without the batch axis (or a function of the
    full input shape); left out, it is found by running the function. ``mask`` is the
    output mask: a fixed tensor, or a function ``mask(inputs, previous_mask)``.
    ``arguments`` are extra keyword arguments for ``function``.

    >>> from weightwise import ops
    >>> Lambda(lambda x: x ** 2)(ops.convert_to_tensor([[1.0, -3.0]]))
    tensor([[1., 9.]])
    >>> Lambda(ops.clip, arguments={"x_min": 0.0, "x_max": 1.0})(ops.convert_to_tensor([[-1.0, 2.0]]))
    tensor([[0., 1.]])
    """

    def __init__(
        self,
        function: Callable[..., Any],
        output_shape: Any = None,
        mask: Any = None,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda layer {self.name!r}: invalid value for argument `function`: expected a callable. "
                            f"Received: function={echo(function)}")
        if arguments is not None and not (isinstance(arguments, Mapping) and all(isinstance(k, str) for k in arguments)):
            raise TypeError(f"Lambda layer {self.name!r}: invalid value for argument `arguments`: expected a dict "
                            f"with str keys or None. Received: arguments={echo(arguments)}")
        self._output_shape = _standardize_output_shape(self, output_shape)
        self.function = function
        self.arguments = dict(arguments or {})
        self.mask = mask
        self.supports_masking = mask is not None
        self._fn_takes_mask = _takes(function, "mask")
        self._fn_takes_training = _takes(function, "training")

    def call(self, inputs: Any, mask: Any = None, training: bool | None = None) -> Any:
        kwargs = dict(self.arguments)
        if self._fn_takes_mask:
            kwargs["mask"] = mask
        if self._fn_takes_training:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        return self.mask(inputs, previous_mask) if callable(self.mask) else self.mask

    def compute_output_shape(self, input_shape: Any, *args: Any, **kwargs: Any) -> Any:
        """``output_shape`` after the batch size of ``input_shape``, or ``output_shape(input_shape)``."""
        if self._output_shape is None:
            return super().compute_output_shape(input_shape, *args, **kwargs)
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        first = input_shape
        while isinstance(first, (tuple, list, Mapping)) and not _is_shape(first):
            first = next(iter(first.values() if isinstance(first, Mapping) else first))
        batch = first[0] if first else None
        if _is_shape(self._output_shape):
            return (batch, *self._output_shape)
        if isinstance(self._output_shape, Mapping):
            return {key: (batch, *shape) for key, shape in self._output_shape.items()}
        return type(self._output_shape)((batch, *shape) for shape in self._output_shape)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {**super().get_config(), "function": _function_to_config(self.function)}
        if self._output_shape is not None:
            config["output_shape"] = (_function_to_config(self._output_shape) if callable(self._output_shape)
                                      else self._output_shape)
        if self.mask is not None:
            config["mask"] = _function_to_config(self.mask) if callable(self.mask) else serialize_keras_object(self.mask)
        config["arguments"] = serialize_keras_object(self.arguments)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Mapping[str, Any] | None = None,
                    safe_mode: bool | None = None) -> Lambda:
        """Rebuild the layer; a Python lambda in it loads only when safe mode is off.

        ``safe_mode=None`` takes the mode in force (a ``SafeModeScope``, or
        ``enable_unsafe_deserialization()``), and is safe when none is: a direct call
        never runs stored code by default.
        """
        if not isinstance(config, Mapping) or "function" not in config:
            raise ValueError(f"Lambda.from_config: invalid value for argument `config`: expected a dict with a "
                             f"'function' entry. Received: config={echo(config)}")
        safe = (in_safe_mode() if safe_mode is None else safe_mode) is not False
        config = dict(config)
        config["function"] = _function_from_config(config["function"], "function", custom_objects, safe)
        shape = config.get("output_shape")
        if isinstance(shape, Mapping) and "class_name" in shape:
            config["output_shape"] = _function_from_config(shape, "output_shape", custom_objects, safe)
        elif _is_shape(shape):
            config["output_shape"] = tuple(shape)
        mask = config.get("mask")
        if isinstance(mask, Mapping):
            config["mask"] = _function_from_config(mask, "mask", custom_objects, safe)
        if "arguments" in config:
            config["arguments"] = deserialize_keras_object(config["arguments"], custom_objects=custom_objects)
        return super().from_config(config)
