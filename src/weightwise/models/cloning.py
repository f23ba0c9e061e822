"""Models from configs: ``model_from_json`` and ``clone_model``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch

from weightwise.layers import InputLayer, Layer
from weightwise.models.functional import Functional
from weightwise.models.graph_config import functional_from_config
from weightwise.models.model import Model
from weightwise.models.sequential import Sequential
from weightwise.saving.files import parse_json
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["clone_model", "model_from_json"]


def model_from_json(json_string: str, custom_objects: Mapping[str, Any] | None = None) -> Model:
    """Build a model (with fresh weights) from :meth:`Model.to_json` output, ours or Keras's.

    Custom layers, regularizers and constraints are found by their registered name,
    or in ``custom_objects``.

    >>> from weightwise import layers, Sequential
    >>> original = Sequential([layers.Input(shape=(4,)), layers.Dense(2, kernel_regularizer="l1")])
    >>> rebuilt = model_from_json(original.to_json())
    >>> rebuilt.layers[0].kernel_regularizer, rebuilt.count_params()
    (L1(l1=0.01), 10)
    """
    if not isinstance(json_string, (str, bytes)):
        raise TypeError(f"`json_string` must be a str. Received: json_string={json_string!r}")
    config = parse_json(json_string, "`json_string`")
    model = deserialize_keras_object(config, custom_objects)
    if not isinstance(model, Model):
        raise ValueError(f"The JSON describes a {type(model).__name__}, not a model.")
    return model


def _fresh_copy(layer: Any) -> Any:
    """The default clone of one layer: rebuilt from its config, so with new weights and the same rules."""
    if isinstance(layer, Layer):
        return deserialize_keras_object(serialize_keras_object(layer) | {"build_config": None})
    # A plain torch module: a copy (its bound rules travel with it) with its parameters reset.
    duplicate = copy.deepcopy(layer)
    for module in duplicate.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return duplicate


def clone_model(
    model: Model,
    input_tensors: Any = None,
    clone_function: Callable[[Any], Any] | None = None,
) -> Model:
    """A new model of the same architecture, with freshly initialized weights.

    Every layer is rebuilt from its config, so the clone has the same regularizers
    and constraints but new weights; copy them with
    ``clone.set_weights(model.get_weights())``. ``clone_function(layer)`` may
    replace the default per-layer clone (return the layer itself to share it).
    ``input_tensors`` (an ``Input()`` tensor or list of them) replaces a Sequential
    or functional model's inputs. A subclassed model is rebuilt with
    ``from_config(get_config())``, which it must implement.

    >>> import torch
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_constraint="max_norm")])
    >>> clone = clone_model(model)
    >>> clone.layers[0].kernel_constraint.get_config() == model.layers[0].kernel_constraint.get_config()
    True
    >>> torch.equal(clone.layers[0].kernel, model.layers[0].kernel)
    False
    """
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be a weightwise Model. Received: model={model!r}")
    if clone_function is not None and not callable(clone_function):
        raise TypeError(f"`clone_function` must be callable. Received: clone_function={clone_function!r}")
    make = clone_function or _fresh_copy
    if isinstance(model, Sequential):
        return _clone_sequential(model, input_tensors, make)
    if isinstance(model, Functional) and type(model).get_config is Functional.get_config:
        return _clone_functional(model, input_tensors, make)
    if input_tensors is not None:
        raise ValueError("`input_tensors` only applies to Sequential and functional models.")
    config = model.get_config()  # a subclassed model without get_config explains what to write
    clone = type(model).from_config(config)
    shape = model.get_build_config()
    if shape is not None:
        clone.build_from_config(shape)
    return clone


def _clone_sequential(model: Sequential, input_tensors: Any, make: Callable[[Any], Any]) -> Sequential:
    layers = [_checked(make(layer), layer) for layer in model.layers]
    if input_tensors is not None:
        inputs = input_tensors if not isinstance(input_tensors, (list, tuple)) else list(input_tensors)
        if isinstance(inputs, list):
            if len(inputs) != 1:
                raise ValueError(f"A Sequential model takes one input tensor. Received: input_tensors={input_tensors!r}")
            inputs = inputs[0]
        layers.insert(0, inputs)
    elif model._input_layer is not None:
        layers.insert(0, InputLayer.from_config(model._input_layer.get_config()))
    clone = Sequential(layers, trainable=model.trainable, name=model.name)
    build = model.get_build_config()
    if not clone.built and build is not None:
        clone.build_from_config(build)
    return clone


def _clone_functional(model: Functional, input_tensors: Any, make: Callable[[Any], Any]) -> Functional:
    config = model.get_config()
    originals = {layer.name: layer for layer in model.layers}
    replacements: dict[str, Any] = {}
    if input_tensors is not None:
        given = list(input_tensors) if isinstance(input_tensors, (list, tuple)) else [input_tensors]
        if len(given) != len(model.inputs):
            raise ValueError(
                f"Model {model.name!r} has {len(model.inputs)} inputs, but {len(given)} `input_tensors` were given."
            )
        for tensor, original in zip(given, model.inputs):
            layer = getattr(getattr(tensor, "node", None), "layer", None)
            if not isinstance(layer, InputLayer):
                raise ValueError(f"`input_tensors` must come from Input(). Received: {tensor!r}")
            replacements[original.node.layer.name] = layer

    def make_layer(layer_config: dict[str, Any]) -> Any:
        name = layer_config["name"]
        if name in replacements:
            return replacements[name]
        original = originals[name]
        if isinstance(original, InputLayer):
            return InputLayer.from_config(original.get_config())
        return _checked(make(original), original)

    return functional_from_config(type(model), config, make_layer=make_layer)


def _checked(clone: Any, original: Any) -> Any:
    if not isinstance(clone, torch.nn.Module):
        raise TypeError(
            f"`clone_function` must return a layer; for {getattr(original, 'name', original)!r} it returned {clone!r}."
        )
    return clone
