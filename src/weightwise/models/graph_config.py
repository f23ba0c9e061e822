"""A functional model's graph in Keras 3's config form, both ways.

Each layer's config carries its ``name`` and ``inbound_nodes``: one entry per call
of the layer inside the model, holding the call's arguments with every symbolic
tensor written as ``{"class_name": "__keras_tensor__", "config": {"shape", "dtype",
"keras_history": [layer name, node index, tensor index]}}``. The model's
``input_layers`` and ``output_layers`` are such histories, nested as the model's
inputs and outputs are. Keras reads this form and writes it, so graphs travel in
both directions.

Calls of :mod:`weightwise.ops` (``x + y``, ``x[:, 1]``, ``ops.mean``) are entries of
the same list under Keras's operation classes (``"module": "keras.src.ops.numpy",
"class_name": "Add"``); their index keys hold ``__slice__`` and ``__ellipsis__``
entries, as Keras writes them. Loading builds only the operations of a fixed table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from weightwise import ops
from weightwise.layers import InputLayer, KerasTensor
from weightwise.layers.symbolic import (
    GraphFunction,
    Node,
    Operation,
    flatten,
    map_structure,
)
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["functional_config", "functional_from_config"]

_TENSOR = "__keras_tensor__"
_TUPLE = "__tuple__"  # read only: tf.keras's legacy files wrote tuples so
_SLICE = "__slice__"
_NUMPY = "__numpy__"
_TENSOR_VALUE = "__tensor__"
_ELLIPSIS = "__ellipsis__"
# Modules of Keras's operation classes: their entries are read as ops, never as layers.
_OPERATION_MODULES = ("keras.src.ops.", "keras.src.activations.")


def _node_offset(layer: Any) -> int:
    # A functional model used as a layer owns one node of its own before its calls (Keras's numbering).
    return int(getattr(layer, "_node_offset", 0))


def functional_config(model: Any) -> dict[str, Any]:
    """The Keras 3 config of a functional ``model``: its layers with their calls, inputs and outputs.

    >>> from weightwise import layers, Model
    >>> x = layers.Input(shape=(3,), name="x")
    >>> config = functional_config(Model(x, layers.Dense(2, name="out")(x), name="tiny"))
    >>> [(layer["name"], len(layer["inbound_nodes"])) for layer in config["layers"]]
    [('x', 0), ('out', 1)]
    >>> config["input_layers"], config["output_layers"]
    (['x', 0, 0], ['out', 0, 0])
    """
    nodes_of: dict[int, list[Node]] = {}
    for node in model._nodes:
        nodes_of.setdefault(id(node.layer), []).append(node)
    index: dict[int, int] = {}
    for nodes in nodes_of.values():
        for position, node in enumerate(sorted(nodes, key=lambda n: n.serial)):
            index[id(node)] = position + _node_offset(node.layer)

    def history(tensor: KerasTensor) -> list[Any]:
        return [tensor.node.layer.name, index[id(tensor.node)], tensor.index]

    def encode(value: Any) -> Any:
        if isinstance(value, KerasTensor):
            return {"class_name": _TENSOR,
                    "config": {"shape": list(value.shape), "dtype": value.dtype, "keras_history": history(value)}}
        if isinstance(value, (list, tuple)):  # Keras 3 writes tuples as lists, and reads no "__tuple__"
            return [encode(v) for v in value]
        if isinstance(value, dict):
            return {key: encode(v) for key, v in value.items()}
        # Slices, Ellipsis and array constants take Keras's special forms there.
        return serialize_keras_object(value)

    layer_configs = []
    for layer in model._operations:
        if isinstance(layer, Operation):
            entry = layer.serialize()
        elif isinstance(layer, GraphFunction):
            raise TypeError(
                f"Model {model.name!r} cannot be serialized: its graph takes {layer.name!r}, a mask worked out on "
                "example values (a symbolic tensor's `_keras_mask`, or a `compute_mask` not written with "
                "weightwise.ops), which no Keras file can hold. Pass the mask on through the layers instead, or "
                "write `compute_mask` with weightwise.ops functions."
            )
        elif hasattr(layer, "get_config"):
            entry = serialize_keras_object(layer)
        else:
            raise TypeError(
                f"Model {model.name!r} cannot be serialized: its layer {layer!r} (a {type(layer).__name__}) has no "
                "`get_config()`. Wrap it in a weightwise Layer that implements `get_config()`."
            )
        entry["name"] = layer.name
        calls = sorted(nodes_of.get(id(layer), []), key=lambda n: n.serial)
        entry["inbound_nodes"] = [
            {"args": encode([node.inputs, *node.args]), "kwargs": encode(node.kwargs)}
            for node in calls if node.input_tensors
        ]
        layer_configs.append(entry)
    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layer_configs,
        "input_layers": map_structure(history, model._inputs_structure),
        "output_layers": map_structure(history, model._outputs_structure),
    }


def _is_history(value: Any) -> bool:
    """Whether ``value`` is a ``[layer name, node index, tensor index]`` reference."""
    return isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str)


class _NotYetCreated(Exception):
    """A call's input comes from a layer call not replayed yet; retried on a later pass."""


def functional_from_config(
    cls: type,
    config: Mapping[str, Any],
    custom_objects: Mapping[str, Any] | None = None,
    make_layer: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """Rebuild a functional model of class ``cls`` from :func:`functional_config` output (ours or Keras's).

    Layers are created from their configs (or by ``make_layer(layer_config)``), then
    their calls are replayed in order, each as soon as its inputs exist, as Keras does.

    >>> from weightwise import layers, Model
    >>> from weightwise.models import Functional
    >>> x = layers.Input(shape=(3,), name="x")
    >>> original = Model(x, layers.Dense(2, kernel_regularizer="l2", name="out")(x))
    >>> copy = functional_from_config(Functional, functional_config(original))
    >>> copy.get_layer("out").kernel_regularizer
    L2(l2=0.01)
    """
    config = dict(config)
    for key in ("layers", "input_layers", "output_layers"):
        if key not in config:
            raise ValueError(
                f"Invalid functional model config: the {key!r} entry is missing. Received keys: {sorted(config)}"
            )
    layer_configs = config.pop("layers")
    input_layers, output_layers = config.pop("input_layers"), config.pop("output_layers")
    if not isinstance(layer_configs, list):
        raise ValueError(f"Invalid functional model config: 'layers' must be a list. Received: {layer_configs!r}")
    created: dict[str, Any] = {}
    produced: dict[str, list[Any]] = {}
    pending: dict[str, list[Any]] = {}
    operations: dict[str, Mapping[str, Any]] = {}
    for layer_config in layer_configs:
        if not isinstance(layer_config, Mapping) or not isinstance(layer_config.get("name"), str):
            raise ValueError(f"Invalid functional model config: each layer needs a 'name'. Received: {layer_config!r}")
        name = layer_config["name"]
        if name in created:
            raise ValueError(f"Invalid functional model config: two layers are named {name!r}. Received: name={name!r}")
        inbound = layer_config.get("inbound_nodes") or []
        if not isinstance(inbound, list) or not all(isinstance(node, (Mapping, list)) for node in inbound):
            raise ValueError(
                f"Invalid functional model config: layer {name!r} needs a list of calls in 'inbound_nodes'. "
                f"Received: inbound_nodes={inbound!r:.200}"
            )
        module = layer_config.get("module")
        pending[name] = list(inbound)
        if isinstance(module, str) and module.startswith(_OPERATION_MODULES):
            # Made once it is known to be needed: Keras writes the ops of its masks too (see below).
            operations[name] = layer_config
            created[name], produced[name] = None, []
            continue
        layer = make_layer(dict(layer_config)) if make_layer else deserialize_keras_object(layer_config, custom_objects)
        if not isinstance(layer, (torch.nn.Module, Operation)):
            raise TypeError(f"Layer {name!r} of the config deserialized to {layer!r}, which is not a layer.")
        created[name] = layer
        produced[name] = [layer.output] if isinstance(layer, InputLayer) else [None] * _node_offset(layer)
        pending[name] = [_without_propagated_masks(layer, node) for node in inbound]
    # Keras records the masks it passed on by itself (``mask=``, ``<argument>_mask=``) among a call's
    # arguments, with the ops that computed them. Masks travel on the tensors here, so those arguments
    # are left out, and so are the ops that nothing else needs.
    needed = _layers_needed(output_layers, pending)
    for name, layer_config in operations.items():
        if name in needed:
            created[name] = Operation.from_keras(
                layer_config.get("module"), layer_config.get("class_name"), layer_config.get("config"))
        else:
            del created[name], produced[name], pending[name]

    def tensor(history: Any) -> Any:
        if not _is_history(history):
            raise ValueError(f"Invalid tensor reference in a functional model config: {history!r}")
        layer_name, node_index, tensor_index = history
        if layer_name not in produced:
            raise ValueError(f"Invalid functional model config: it refers to an unknown layer {layer_name!r}.")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in (node_index, tensor_index)):
            raise ValueError(f"Invalid tensor reference in a functional model config: {history!r}")
        calls = produced[layer_name]
        if node_index >= len(calls) or calls[node_index] is None:
            raise _NotYetCreated(layer_name)
        tensors = flatten(calls[node_index])
        if tensor_index >= len(tensors):
            raise ValueError(
                f"Invalid tensor reference in a functional model config: {history!r}; that call of layer "
                f"{layer_name!r} has {len(tensors)} outputs."
            )
        return tensors[tensor_index]

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if isinstance(value, Mapping):
            if value.get("class_name") == _ELLIPSIS:
                return Ellipsis
            if value.get("class_name") == _SLICE:
                bounds = value.get("config")
                if not isinstance(bounds, Mapping) or not all(
                        b is None or (isinstance(b, int) and not isinstance(b, bool))
                        for b in (bounds.get("start"), bounds.get("stop"), bounds.get("step"))):
                    raise ValueError(f"Invalid functional model config: a slice needs int or null bounds. "
                                     f"Received: {value!r:.200}")
                return slice(bounds.get("start"), bounds.get("stop"), bounds.get("step"))
            if value.get("class_name") in (_NUMPY, _TENSOR_VALUE):
                return _array_constant(value)
            if value.get("class_name") in (_TENSOR, _TUPLE):
                config = value.get("config")
                key = "keras_history" if value["class_name"] == _TENSOR else "value"
                if not isinstance(config, Mapping) or key not in config:
                    raise ValueError(f"Invalid functional model config: {value['class_name']} without a {key!r}. "
                                     f"Received: {value!r:.200}")
                if value["class_name"] == _TENSOR:
                    return tensor(config[key])
                return tuple(decode(v) for v in config[key])
            if "class_name" in value:
                return deserialize_keras_object(value, custom_objects)
            return {key: decode(v) for key, v in value.items()}
        return value

    while any(pending.values()):
        progressed = False
        for name, calls in pending.items():
            while calls:
                node = calls[0]
                if isinstance(node, list):  # tf.keras 2 writes [[layer, node, tensor, kwargs], ...]
                    raise ValueError(
                        f"Layer {name!r}: this functional config is in tf.keras 2's legacy node format, "
                        "which is not supported. Re-save the model with Keras 3."
                    )
                if not isinstance(node.get("args", []), list) or not isinstance(node.get("kwargs", {}), Mapping):
                    raise TypeError(
                        f"Invalid functional model config: a call of layer {name!r} needs a list of 'args' and a dict "
                        f"of 'kwargs'. Received: {node!r:.200}"
                    )
                try:
                    args = decode(node.get("args", []))
                    kwargs = decode(node.get("kwargs", {}))
                except _NotYetCreated:
                    break
                if not args:
                    raise ValueError(f"Invalid functional model config: a call of layer {name!r} has no inputs.")
                kwargs = {key: value for key, value in kwargs.items() if not (key == "mask" and value is None)}
                produced[name].append(created[name](args[0], *args[1:], **kwargs))
                calls.pop(0)
                progressed = True
        if not progressed:
            stuck = sorted(name for name, calls in pending.items() if calls)
            raise ValueError(
                "Invalid functional model config: the graph has loops or calls whose inputs never appear. "
                f"Unresolved calls of layers: {stuck}"
            )

    def outputs_of(structure: Any) -> Any:
        if _is_history(structure):
            try:
                return tensor(structure)
            except _NotYetCreated:
                raise ValueError(f"Invalid functional model config: no layer call produces {structure!r}.") from None
        if isinstance(structure, Mapping):
            return {key: outputs_of(value) for key, value in structure.items()}
        if isinstance(structure, (list, tuple)):
            return [outputs_of(value) for value in structure]
        raise ValueError(f"Invalid functional model config: bad input/output reference {structure!r}.")

    inputs, outputs = outputs_of(input_layers), outputs_of(output_layers)
    return cls(inputs, outputs, **config)


def _references(value: Any) -> list[str]:
    """The names of the layers whose tensors a call's arguments (as written in a config) refer to."""
    if isinstance(value, list):
        return [name for item in value for name in _references(item)]
    if isinstance(value, Mapping):
        if value.get("class_name") == _TENSOR and isinstance(value.get("config"), Mapping):
            history = value["config"].get("keras_history")
            return [history[0]] if _is_history(history) else []
        return [name for item in value.values() for name in _references(item)]
    return []


def _layers_needed(output_layers: Any, pending: Mapping[str, list[Any]]) -> set[str]:
    """The layers the outputs depend on, through the calls' arguments."""
    needed: set[str] = set()
    stack = _references([{"class_name": _TENSOR, "config": {"keras_history": h}}
                         for h in _histories(output_layers)])
    while stack:
        name = stack.pop()
        if name in needed or name not in pending:
            continue
        needed.add(name)
        for node in pending[name]:
            if isinstance(node, Mapping):
                stack.extend(_references([node.get("args", []), node.get("kwargs", {})]))
    return needed


def _histories(structure: Any) -> Any:
    """The ``[layer, node, tensor]`` references of ``input_layers`` / ``output_layers``, as a list."""
    if _is_history(structure):
        return [list(structure)]
    if isinstance(structure, Mapping):
        return [h for value in structure.values() for h in _histories(value)]
    if isinstance(structure, (list, tuple)):
        return [h for value in structure for h in _histories(value)]
    return []


def _without_propagated_masks(layer: Any, node: Any) -> Any:
    """A call (as written in a config) without the masks Keras passes on by itself: ``mask`` when the call
    has one tensor argument, ``<argument>_mask`` for each tensor argument when it has several."""
    if not isinstance(node, Mapping) or not isinstance(node.get("kwargs"), Mapping) or not node["kwargs"] \
            or not isinstance(node.get("args", []), list):
        return node
    try:
        signature = inspect.signature(layer.call)
        named = {k: v for k, v in node["kwargs"].items() if k in signature.parameters and not k.endswith("mask")}
        bound = signature.bind_partial(*node.get("args", []), **named)
    except (TypeError, ValueError):
        return node
    tensors = [name for name, value in bound.arguments.items() if _references(value)]
    masks = {"mask"} if len(tensors) == 1 else {f"{name}_mask" for name in tensors}
    kwargs = {key: value for key, value in node["kwargs"].items() if key not in masks}
    return {**node, "kwargs": kwargs}


def _array_constant(value: Mapping[str, Any]) -> Any:
    """A ``__numpy__`` or ``__tensor__`` entry (an op's constant argument), built from numbers only."""
    config = value.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("dtype"), str) or "value" not in config:
        raise ValueError(f"Invalid functional model config: an array constant needs a 'value' and a 'dtype'. "
                         f"Received: {value!r:.200}")
    try:
        tensor = ops.convert_to_tensor(config["value"], dtype=config["dtype"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"Invalid functional model config: bad array constant ({error}). "
                         f"Received: {value!r:.200}") from error
    return tensor if value["class_name"] == _TENSOR_VALUE else ops.convert_to_numpy(tensor)
