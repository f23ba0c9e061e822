"""Functional models: a graph of layer calls from ``Input()`` tensors to outputs, replayed on data."""

from __future__ import annotations

from typing import Any

import torch

from weightwise.layers import InputLayer, KerasTensor, Layer
from weightwise.layers.symbolic import (
    Node,
    Operation,
    flatten,
    map_structure,
    set_keras_mask,
)
from weightwise.models.graph_config import functional_config, functional_from_config
from weightwise.models.model import Model

__all__ = ["Functional"]


def _map_graph(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> tuple[list[Node], list[Any]]:
    """Nodes in execution order and operations (layers and ops) in Keras's order (by depth from the
    outputs, then first visit).

    Follows Keras's ``map_graph`` so that ``model.weights`` (and thus ``get_weights``)
    come out in the same order as a Keras model of the same graph.
    """
    finished: set[int] = set()
    in_progress: set[int] = set()
    ordered: list[Node] = []  # inputs -> outputs
    first_visit: dict[int, int] = {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor: KerasTensor) -> None:
        node = tensor.node
        if node is None:
            raise ValueError(f"{tensor} was not produced by a layer call or Input(); it cannot be part of a model.")
        if id(node) in finished:
            return
        is_input = isinstance(node.layer, InputLayer)
        if is_input and id(tensor) not in input_ids:
            raise ValueError(
                f"Graph disconnected: cannot obtain value for tensor {tensor} at layer {node.layer.name!r}. "
                "It comes from an Input() that is not among the model's inputs."
            )
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor} from layer {node.layer.name!r} is part of a cycle.")
        first_visit.setdefault(id(node.layer), len(first_visit))
        in_progress.add(id(node))
        if not is_input:
            for parent in node.input_tensors:
                visit(parent)
        in_progress.discard(id(node))
        finished.add(id(node))
        ordered.append(node)

    for output in outputs:
        visit(output)
    for tensor in inputs:
        if tensor.node is None or not isinstance(tensor.node.layer, InputLayer):
            raise ValueError(f"Model inputs must come from Input(). Received: {tensor}")
        if id(tensor.node) not in finished:  # an input no output depends on: kept, as Keras does
            first_visit.setdefault(id(tensor.node.layer), -1)
            finished.add(id(tensor.node))
            ordered.insert(0, tensor.node)

    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    layers_by_id: dict[int, Layer] = {}
    for node in reversed(ordered):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        layers_by_id[id(node.layer)] = node.layer
        for parent in node.input_tensors:
            parent_node = parent.node
            node_depth[id(parent_node)] = max(depth + 1, node_depth.get(id(parent_node), 0))
    layers = sorted(layers_by_id.values(), key=lambda layer: (-layer_depth[id(layer)], first_visit[id(layer)]))
    nodes = sorted(ordered, key=lambda node: -node_depth[id(node)])  # stable: keeps DFS order within a depth
    return nodes, layers


class Functional(Model, functional=True):
    """A model defined by ``Model(inputs, outputs)`` over symbolic tensors.

    Inputs and outputs may be single tensors, lists or dicts; multi-input,
    multi-output and shared layers all work.

    >>> from weightwise import layers, Model
    >>> features = layers.Input(shape=(4,), name="features")
    >>> hidden = layers.Dense(8, activation="relu", kernel_regularizer="l2")(features)
    >>> model = Model(features, layers.Dense(1)(hidden))
    >>> type(model).__name__, model(__import__("torch").ones(2, 4)).shape
    ('Functional', torch.Size([2, 1]))
    """

    # Saved weights address its layers as ``layers/<class>``, by position (see weightwise.saving).
    _layers_are_positional = True

    # Keras numbers a functional model's own node 0, so its calls as a layer start at 1.
    _node_offset = 1

    # Each layer casts its own inputs (Keras's functional models leave them uncast too): under a mixed
    # policy a model's float32 inputs reach a layer that keeps them, such as LayerNormalization, as float32.
    _convert_input_args = False

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        flat_inputs, flat_outputs = flatten(inputs), flatten(outputs)
        for role, tensors in (("inputs", flat_inputs), ("outputs", flat_outputs)):
            bad = [t for t in tensors if not isinstance(t, KerasTensor)]
            if bad or not tensors:
                raise ValueError(
                    f"All `{role}` of a functional Model must be symbolic tensors from Input() and layer calls. "
                    f"Received: {role}={bad or tensors!r}"
                )
        self._nodes, operations = _map_graph(flat_inputs, flat_outputs)
        _rename_colliding_operations(operations)
        names = [operation.name for operation in operations]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"All layer names should be unique. Duplicated: {duplicates}")
        # Layers and ops in Keras's order, for configs; ops hold no state and are no submodules.
        self.__dict__["_operations"] = operations
        # Registered by position in Keras's layer order: state_dict keys ("2.kernel") do not depend on
        # auto-generated layer names, so weights load into any model built from the same code.
        for index, layer in enumerate(op for op in operations if isinstance(op, torch.nn.Module)):
            self.add_module(str(index), layer)
        self._inputs_structure = inputs
        self._outputs_structure = outputs
        self.built = True

    def build(self, input_shape: Any = None) -> None:
        """Nothing to do: a functional model is built when it is made (``input_shape`` is ignored, as in Keras)."""

    @property
    def inputs(self) -> list[KerasTensor]:
        """The model's input tensors, flattened."""
        return flatten(self._inputs_structure)

    @property
    def outputs(self) -> list[KerasTensor]:
        """The model's output tensors, flattened."""
        return flatten(self._outputs_structure)

    @property
    def input_shape(self) -> Any:
        """The inputs' shapes: one shape for a single input, else a list (Keras's rule).

        >>> from weightwise import layers
        >>> x = layers.Input(shape=(3,))
        >>> model = Functional(x, layers.Dense(2)(x))
        >>> model.input_shape, model.output_shape
        ((None, 3), (None, 2))
        """
        shapes = [tensor.shape for tensor in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self) -> Any:
        """The outputs' shapes: one shape for a single output, else a list (Keras's rule)."""
        shapes = [tensor.shape for tensor in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def layers(self) -> list[Layer]:
        """Every layer of the graph in Keras's order, InputLayers included (as Keras does)."""
        return [operation for operation in self._operations if isinstance(operation, Layer)]

    @property
    def operations(self) -> list[Any]:
        """Every layer and op of the graph in Keras's order (``layers`` leaves the ops out, as Keras does)."""
        return list(self._operations)

    @property
    def output_names(self) -> list[str]:
        """The names of the layers producing the outputs (Keras uses them to key losses)."""
        return [t.node.layer.name for t in self.outputs]

    def _input_values(self, inputs: Any) -> dict[int, Any]:
        structure = self._inputs_structure
        if isinstance(structure, dict):
            if not isinstance(inputs, dict):
                raise ValueError(f"Model {self.name!r} expects a dict of inputs with keys {sorted(structure)}.")
            missing = sorted(set(structure) - set(inputs))
            if missing:
                raise ValueError(f"Model {self.name!r}: missing inputs {missing}. Received keys: {sorted(inputs)}")
            return {id(structure[key]): inputs[key] for key in structure}
        flat = self.inputs
        if isinstance(inputs, dict):
            by_name = {t.name: t for t in flat}
            if set(inputs) != set(by_name):
                raise ValueError(f"Model {self.name!r} expects inputs named {sorted(by_name)}. Received: {sorted(inputs)}")
            return {id(by_name[key]): value for key, value in inputs.items()}
        structured = isinstance(inputs, (list, tuple)) and all(hasattr(v, "shape") for v in inputs)
        values = list(inputs) if structured else [inputs]
        if len(values) != len(flat):
            raise ValueError(f"Model {self.name!r} expects {len(flat)} inputs, but received {len(values)}.")
        return {id(t): v for t, v in zip(flat, values)}

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        # ``training`` reaches every layer of the graph through the call state (see Layer.forward).
        # Masks travel on the tensors (``_keras_mask``); a ``mask`` given here goes onto the inputs, as in Keras.
        values = self._input_values(inputs)
        if mask is not None:
            for key, input_mask in self._input_masks(inputs, mask):
                value = values.get(key)
                if input_mask is not None and isinstance(value, torch.Tensor):
                    set_keras_mask(value, input_mask)
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            def value(t: Any) -> Any:
                return values[id(t)] if isinstance(t, KerasTensor) else t

            # Ops take symbolic tensors in any argument; layers only in the first (so the others map to themselves).
            args = map_structure(value, node.args) if node.args else ()
            kwargs = map_structure(value, node.kwargs) if node.kwargs else {}
            produced = node.layer(map_structure(value, node.inputs), *args, **kwargs)
            for symbolic, value in zip(flatten(node.outputs), flatten(produced)):
                values[id(symbolic)] = value
        return map_structure(lambda t: values[id(t)], self._outputs_structure)

    def _input_masks(self, inputs: Any, mask: Any) -> list[tuple[int, Any]]:
        """``(id of the input tensor, its mask)`` pairs: dict masks by key, as the inputs are matched; else in order."""
        if isinstance(mask, dict) and isinstance(inputs, dict):
            structure = self._inputs_structure
            by_key = structure if isinstance(structure, dict) else {t.name: t for t in self.inputs}
            return [(id(by_key[key]), value) for key, value in mask.items() if key in by_key]
        return [(id(tensor), value) for tensor, value in zip(self.inputs, flatten(mask))]

    def get_config(self) -> dict[str, Any]:
        """The graph in Keras 3's form: every layer with its calls, and the inputs and outputs.

        A subclass whose constructor is not ``(inputs, outputs, ...)`` (one that lays out its graph
        in ``__init__``) must write its own, returning its constructor's arguments: Keras would
        write ``name`` and ``trainable`` only, a file that loads wrongly or not at all.
        """
        if not _functional_like_constructor(type(self)):
            if type(self).get_config is Functional.get_config:
                raise self._get_config_missing()
            return Model.get_config(self)
        return functional_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Functional:
        """Rebuild the model from :meth:`get_config` output, ours or Keras's (fresh weights)."""
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: invalid value for argument `config`: expected a dict. "
                            f"Received: config={config!r}")
        if "layers" in config and "input_layers" in config:
            return functional_from_config(cls, config, custom_objects)
        return super().from_config(config)

    def _convert_inputs(self, inputs: Any) -> Any:
        # Each layer converts what it receives; dict and list inputs pass through intact, but a
        # value that can be no tensor is refused here, naming the model rather than a layer inside.
        for leaf in flatten(inputs):
            self._check_leaf(leaf)
        return inputs


def _rename_colliding_operations(operations: list[Any]) -> None:
    """Give an op whose automatic name (``add``) is also a layer's (``layers.Add``) the next free one (``add_1``).

    Layers and ops draw their names from separate counters; a model's config needs them distinct.
    """
    taken = {op.name for op in operations if not isinstance(op, Operation)}
    for op in operations:
        if isinstance(op, Operation):
            if op.name in taken:
                stem, index = op.name, 1
                while f"{stem}_{index}" in taken:
                    index += 1
                op.name = f"{stem}_{index}"
            taken.add(op.name)


def _functional_like_constructor(cls: type) -> bool:
    init = cls.__init__
    return init is Functional.__init__ or getattr(init, "__wrapped__", None) is Functional.__init__
