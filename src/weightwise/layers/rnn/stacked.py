"""StackedRNNCells: several recurrent cells that act as one, each feeding the next."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from weightwise import arguments
from weightwise.layers.base import Layer
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["StackedRNNCells"]


def _nested(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _output_size(cell: Any) -> int:
    if getattr(cell, "output_size", None) is not None:
        return cell.output_size
    return cell.state_size[0] if _nested(cell.state_size) else cell.state_size


class StackedRNNCells(Layer):
    """Wraps a list of cells into one cell: each step runs them in order, the output of one the input of the next.

    Its ``state_size`` lists the cells' state sizes; its output is the last cell's.

    >>> from weightwise import ops
    >>> from weightwise.layers import RNN, LSTMCell, SimpleRNNCell
    >>> cells = StackedRNNCells([SimpleRNNCell(4), LSTMCell(2)])
    >>> cells.state_size, cells.output_size
    ([4, [2, 2]], 2)
    >>> tuple(RNN(cells)(ops.ones((3, 5, 6))).shape)
    (3, 2)
    """

    def __init__(self, cells: Sequence[Any], **kwargs: Any) -> None:
        if not _nested(cells) or not cells:
            raise ValueError(f"Invalid value for argument `cells`: expected a non-empty list of cells. "
                             f"Received: cells={arguments.echo(cells)}")
        for cell in cells:
            if "call" not in dir(cell):
                raise ValueError(f"All cells must have a `call` method. Received cell without a `call` method: {cell}")
            if "state_size" not in dir(cell):
                raise ValueError(f"All cells must have a `state_size` attribute. Received cell without a `state_size`: "
                                 f"{cell}")
        super().__init__(**kwargs)
        if all(isinstance(cell, torch.nn.Module) for cell in cells):
            # Saved under ``cells/<cell class>`` as Keras saves its list of cells.
            self.cells = torch.nn.ModuleList(cells)
        else:
            # Plain cells cannot sit in a ModuleList; the module cells among them are registered one by one.
            self.__dict__["cells"] = list(cells)
            for index, cell in enumerate(cells):
                if isinstance(cell, torch.nn.Module):
                    self.add_module(f"cell_{index}", cell)

    @Layer.trainable.setter
    def trainable(self, value: bool) -> None:
        Layer.trainable.fset(self, value)
        for cell in self.cells:
            if isinstance(cell, Layer):
                cell.trainable = value

    @property
    def state_size(self) -> list[Any]:
        """One entry per cell: its ``state_size``."""
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self) -> int:
        """The last cell's output size."""
        return _output_size(self.cells[-1])

    def get_initial_state(self, batch_size: int | None = None) -> list[Any]:
        """Each cell's initial state (its own ``get_initial_state``, or zeros)."""
        states: list[Any] = []
        for cell in self.cells:
            if getattr(cell, "get_initial_state", None) is not None:
                states.append(cell.get_initial_state(batch_size=batch_size))
            elif _nested(cell.state_size):
                states.append([torch.zeros((batch_size, size), dtype=self._dtype) for size in cell.state_size])
            else:
                states.append(torch.zeros((batch_size, cell.state_size), dtype=self._dtype))
        return states

    def build(self, input_shape: Any) -> None:
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell.build(input_shape)
                cell.built = True
            input_shape = (next(iter(input_shape)), _output_size(cell))

    def call(self, inputs: torch.Tensor, states: Sequence[Any], training: bool = False, **kwargs: Any) -> Any:
        new_states = []
        for cell, cell_states in zip(self.cells, states):
            was_list = _nested(cell_states)
            cell_states = list(cell_states) if was_list else [cell_states]
            takes_training = cell._call_takes_training if isinstance(cell, Layer) else False
            cell_kwargs = {**kwargs, "training": training} if takes_training else kwargs
            call = cell if callable(cell) else cell.call
            inputs, cell_states = call(inputs, cell_states, **cell_kwargs)
            if _nested(cell_states) and len(cell_states) == 1 and not was_list:
                cell_states = cell_states[0]
            new_states.append(cell_states)
        return inputs, new_states[0] if len(new_states) == 1 else new_states

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cells": [serialize_keras_object(cell) for cell in self.cells]}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Mapping[str, Any] | None = None) -> Layer:
        if not isinstance(config, dict) or not _nested(config.get("cells")):
            raise ValueError(f"{cls.__name__}.from_config: invalid value for argument `config`: expected a dict with "
                             f"a 'cells' list. Received: config={arguments.echo(config)}")
        cells = [deserialize_keras_object(c, custom_objects=custom_objects) if isinstance(c, dict) else c
                 for c in config["cells"]]
        return super().from_config({**config, "cells": cells})
