"""``Sequential``: a plain stack of layers, each feeding the next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from weightwise import binding
from weightwise.layers import Input, InputLayer, KerasTensor, Layer
from weightwise.layers.base import _with_mask_of, unchanged_on_error
from weightwise.layers.symbolic import call_symbolically
from weightwise.models.model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """A linear stack of layers (any ``torch.nn.Module`` may be one of them).

    The model builds as soon as its input shape is known: from a leading
    ``Input``/``InputLayer``, from the first layer's ``input_shape``/``input_dim``, or
    on the first call. ``model.layers`` omits the ``InputLayer``, as in Keras.

    >>> from weightwise import layers
    >>> model = Sequential([layers.Input(shape=(4,)), layers.Dense(8, activation="relu"), layers.Dense(1)])
    >>> [layer.name for layer in model.layers] == [model.layers[0].name, model.layers[1].name]
    True
    >>> model.count_params()
    49
    """

    # Saved weights address its layers as ``layers/<class>``, by position (see weightwise.saving).
    _layers_are_positional = True
    # Floating inputs are cast to `input_dtype` in `call`, not to the model's own compute dtype.
    _convert_input_args = False

    def __init__(self, layers: Sequence[Any] | None = None, trainable: bool = True, name: str | None = None) -> None:
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise TypeError(f"Invalid value for argument `layers`: expected a list of layers. Received: layers={layers!r}")
        super().__init__(trainable=trainable, name=name)
        self.__dict__["_input_layer"] = None
        self._output_shapes: dict[int, tuple[int | None, ...]] = {}
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build_from_known_shape()

    @property
    def layers(self) -> list[Layer]:
        """The stacked layers, without the InputLayer."""
        return list(self.children())

    def add(self, layer: Any, rebuild: bool = True) -> None:
        """Append a layer (or an ``Input`` tensor / ``InputLayer``, which must come first).

        If the model knows its input shape, it is rebuilt with the new layer; should that
        fail, the model (and every layer in it) is left as it was, without the new layer.

        >>> from weightwise import layers
        >>> model = Sequential()
        >>> model.add(layers.Dense(2, input_dim=3))
        >>> model.built, model.count_params()
        (True, 8)
        """
        if not isinstance(rebuild, bool):
            raise TypeError(f"Invalid value for argument `rebuild`: expected a bool. Received: rebuild={rebuild!r}")
        with unchanged_on_error(self):
            self._add(layer, rebuild)

    def _add(self, layer: Any, rebuild: bool) -> None:
        if isinstance(layer, KerasTensor):
            if layer.node is None or not isinstance(layer.node.layer, InputLayer):
                raise ValueError(f"Sequential.add accepts Input() tensors only as symbolic inputs. Received: {layer}")
            layer = layer.node.layer
        if not isinstance(layer, torch.nn.Module):
            raise TypeError(
                f"Only instances of `weightwise.layers.Layer` (or any torch.nn.Module) can be added to a "
                f"Sequential model. Received: {layer!r} (of type {type(layer).__name__})"
            )
        if isinstance(layer, InputLayer):
            if self.layers or self._input_layer is not None:
                raise ValueError("An InputLayer (or Input) can only be the first layer of a Sequential model.")
            # Not a submodule: it has no weights, and keeping it out keeps state_dict keys positional.
            self.__dict__["_input_layer"] = layer
            if rebuild:
                self._maybe_build_from_known_shape()
            return
        name = getattr(layer, "name", None)
        if name is not None and name in [getattr(other, "name", None) for other in self.layers]:
            raise ValueError(
                f"All layers added to a Sequential model should have unique names. Name {name!r} is already the "
                "name of a layer in this model. Update the `name` argument to pass a unique name."
            )
        # Registered by position, as torch.nn.Sequential does, so state_dict keys ("0.kernel") do not
        # depend on auto-generated layer names and load into any identically built model.
        self.add_module(str(len(self._modules)), layer)
        if rebuild:
            self._maybe_build_from_known_shape()

    def pop(self) -> Layer:
        """Remove and return the last layer.

        >>> from weightwise import layers
        >>> model = Sequential([layers.Dense(2), layers.Dense(1)])
        >>> model.pop().units
        1
        """
        layers = self.layers
        if not layers:
            raise ValueError("There are no layers in the model.")
        last = layers[-1]
        del self._modules[str(len(self._modules) - 1)]
        self._output_shapes.pop(id(last), None)
        return last

    def _known_batch_shape(self) -> tuple[int | None, ...] | None:
        if self._input_layer is not None:
            return self._input_layer.batch_shape
        layers = self.layers
        return getattr(layers[0], "_build_shape", None) if layers else None

    def _maybe_build_from_known_shape(self) -> None:
        shape = self._known_batch_shape()
        if shape is not None and self.layers:
            self.built = False
            self._build_once(tuple(shape))

    def build(self, input_shape: Any = None) -> None:
        """Build every layer by passing a symbolic input of ``input_shape`` through the stack.

        ``input_shape`` may be left out when the model starts with an ``Input``.

        >>> from weightwise import layers
        >>> model = Sequential([layers.Dense(4), layers.Dense(1)])
        >>> model.build((None, 3))
        >>> model.count_params()
        21
        """
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError(
                    f"Sequential model {self.name!r}: `build()` needs the input shape, such as `build((None, 3))`, "
                    f"unless the model starts with an Input. Received: input_shape={input_shape!r}"
                )
            input_shape = self._input_layer.batch_shape
        if not isinstance(input_shape, (list, tuple)) or not input_shape:
            raise ValueError(f"Invalid value for argument `input_shape`: expected a shape with a batch axis, such as "
                             f"(None, 3). Received: input_shape={input_shape!r}")
        batch_shape = (None, *tuple(input_shape)[1:])
        x: Any = Input(batch_shape=batch_shape, dtype=self.dtype) if self._input_layer is None else self._input_layer.output
        graph_input = x
        for layer in self.layers:
            # A plain torch module does not know symbolic tensors; it is run on their example values.
            x = layer(x) if isinstance(layer, Layer) else call_symbolically(layer, x, (), {}, binding.clear_call_losses)
            if isinstance(x, KerasTensor):
                self._output_shapes[id(layer)] = x.shape
        # The symbolic graph of this stack, valid while the stack is the same (Keras's `inputs`/`outputs`).
        self.__dict__["_graph"] = (tuple(map(id, self.layers)), graph_input, x)

    def _graph_end(self, which: str) -> Any:
        graph = self.__dict__.get("_graph")
        if graph is None or graph[0] != tuple(map(id, self.layers)):
            raise AttributeError(f"Sequential model {self.name!r} has no defined {which} yet: build it first, by "
                                 f"starting it with an Input or calling `build(input_shape)`.")
        return graph[1] if which.startswith("input") else graph[2]

    @property
    def inputs(self) -> list[KerasTensor]:
        """The symbolic input of the built stack, in a list (Keras's ``Sequential.inputs``).

        >>> from weightwise import layers
        >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
        >>> model.inputs[0].shape, model.outputs[0].shape
        ((None, 3), (None, 2))
        """
        return [self._graph_end("inputs")]

    @property
    def outputs(self) -> list[KerasTensor]:
        """The symbolic output of the built stack, in a list (Keras's ``Sequential.outputs``)."""
        return [self._graph_end("outputs")]

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The built stack's input shape, batch axis ``None``.

        >>> from weightwise import layers
        >>> model = Sequential([layers.Dense(2)])
        >>> model.build((None, 5))
        >>> model.input_shape, model.output_shape
        ((None, 5), (None, 2))
        """
        return self._graph_end("input shape").shape

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        """The built stack's output shape, batch axis ``None``."""
        return self._graph_end("output shape").shape

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Build the stack for the saved input shape."""
        Layer.build_from_config(self, config)

    @property
    def input_dtype(self) -> str:
        """The dtype floating inputs are cast to, as Keras's Sequential casts them: the leading
        ``Input``'s (``floatx()`` unless it names one, whatever the policy), else the first layer's
        compute dtype.

        >>> from weightwise import layers
        >>> Sequential([layers.Input(shape=(2,)), layers.Dense(1, dtype="mixed_bfloat16")]).input_dtype
        'float32'
        >>> Sequential([layers.Dense(1, dtype="mixed_bfloat16")]).input_dtype
        'bfloat16'
        """
        return str(self._first_dtype()).replace("torch.", "")

    def _first_dtype(self) -> torch.dtype:
        if self._input_layer is not None:
            return self._input_layer._dtype
        first = next(iter(self._modules.values()), None)
        return first._dtype if isinstance(first, Layer) else self._dtype

    def call(self, inputs: Any) -> Any:
        if isinstance(inputs, torch.Tensor) and inputs.is_floating_point() and self.autocast:
            dtype = self._first_dtype()
            if inputs.dtype != dtype and dtype.is_floating_point:
                inputs = _with_mask_of(inputs, inputs.to(dtype))
        for layer in self.layers:
            inputs = layer(inputs)
        return inputs

    def get_config(self) -> dict[str, Any]:
        from weightwise import layers as layers_module

        config = super().get_config()
        config.pop("activity_regularizer", None)
        stack = [layers_module.serialize(layer) for layer in self.layers]
        if self._input_layer is not None:
            stack.insert(0, layers_module.serialize(self._input_layer))
        config = {"name": config["name"], "trainable": config["trainable"], "dtype": config["dtype"], "layers": stack}
        build = self.get_build_config()
        if build is not None:
            config["build_input_shape"] = build["input_shape"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Sequential:
        """Rebuild the stack from :meth:`get_config` output, ours or Keras's (fresh weights)."""
        from weightwise import layers as layers_module

        if not isinstance(config, dict):
            raise TypeError(f"Sequential.from_config: invalid value for argument `config`: expected a dict. "
                            f"Received: config={config!r}")
        if "name" not in config:
            # Keras's wording: its own serialization tests check it.
            raise ValueError("A Sequential model configuration must be a dictionary containing the 'name' and "
                             f"'layers' keys. Received: config={config}")
        stack = config.get("layers", [])
        if not isinstance(stack, list):
            raise ValueError(f"Invalid Sequential config: 'layers' must be a list. Received: {stack!r}")
        for entry in stack:
            if not isinstance(entry, dict) or "config" not in entry:
                raise ValueError(f"Expected a dictionary containing a 'config' key. Received: layer config={entry!r}")
        model = cls([layers_module.deserialize(c, custom_objects) for c in stack],
                    trainable=config.get("trainable", True), name=config.get("name"))
        shape = config.get("build_input_shape")
        if not model.built and isinstance(shape, (list, tuple)) and model.layers:
            model.build_from_config({"input_shape": shape})
        return model
