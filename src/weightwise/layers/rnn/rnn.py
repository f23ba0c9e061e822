"""The generic recurrent layer: runs a cell over the time axis of its inputs."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from weightwise import arguments
from weightwise.layers.base import Layer
from weightwise.layers.rnn.dropout_cell import DropoutRNNCell
from weightwise.layers.rnn.loop import run_steps
from weightwise.layers.rnn.stacked import StackedRNNCells
from weightwise.layers.symbolic import flatten
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["RNN"]

_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask")


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _map(fn: Any, structure: Any) -> Any:
    if _is_nested(structure):
        return [_map(fn, item) for item in structure]
    return fn(structure)


def _takes_training(cell: Any) -> bool:
    if isinstance(cell, Layer):
        return cell._call_takes_training
    try:
        parameters = inspect.signature(cell.call).parameters
    except (TypeError, ValueError):
        return False
    return "training" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _check_cell(cell: Any, argument: str) -> None:
    if "call" not in dir(cell):
        raise ValueError(f"Invalid value for argument `{argument}`: a cell must have a `call` method. "
                         f"Received: {argument}={arguments.echo(cell)}")
    if "state_size" not in dir(cell):
        raise ValueError(f"Invalid value for argument `{argument}`: a cell must have a `state_size` attribute (an int, "
                         f"or a list of ints, one per state). Received: {argument}={arguments.echo(cell)}")


class RNN(Layer):
    """Base class of recurrent layers: applies ``cell`` at each time step of ``(batch, time, features)`` inputs.

    A cell is any object with ``state_size`` (an int, or one int per state) and
    ``call(inputs_t, states, training=False) -> (output_t, new_states)``; ``output_size``
    and ``get_initial_state(batch_size)`` are optional (zero states otherwise). A list
    of cells becomes a :class:`StackedRNNCells`.

    The output is the last step's output, the whole sequence with ``return_sequences``,
    followed by the final states with ``return_state``. ``go_backwards`` reads the
    sequence from its end (and returns the outputs in that order). ``stateful`` carries
    the final states of one call into the next (the batch size must stay the same;
    ``reset_state()`` zeroes them). A ``mask`` (``(batch, time)`` bools) skips steps:
    states carry over, and the output repeats the previous one (or is zero with
    ``zero_output_for_mask``). ``unroll`` is accepted; torch runs the same loop either way.

    >>> from weightwise import ops
    >>> from weightwise.layers import SimpleRNNCell
    >>> layer = RNN(SimpleRNNCell(4), return_sequences=True, return_state=True)
    >>> outputs, state = layer(ops.ones((2, 5, 3)))
    >>> tuple(outputs.shape), tuple(state.shape)
    ((2, 5, 4), (2, 4))
    """

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        _check_cell(cell, "cell")
        state_size = getattr(cell, "state_size", None)
        if not (arguments.is_int(state_size) or (_is_nested(state_size) and state_size)):
            raise ValueError("Invalid value for argument `cell`: its `state_size` must be an int, or a list of ints "
                             f"(one per state). Received: state_size={arguments.echo(state_size)}")
        given = dict(zip(_FLAGS, (return_sequences, return_state, go_backwards, stateful, unroll,
                                  zero_output_for_mask)))
        flags = {name: arguments.flag(value, name, owner=type(self).__name__) for name, value in given.items()}
        super().__init__(**kwargs)
        self.cell = cell
        for name, value in flags.items():
            setattr(self, name, value)
        self.supports_masking = True
        self.input_spec = None
        self.states: list[Any] | None = None
        self._expected_batch_size: int | None = None
        self.single_state = arguments.is_int(state_size)
        self.state_size = [int(state_size)] if self.single_state else list(state_size)

    # -- shapes and masks --------------------------------------------------------------
    def compute_output_shape(self, sequences_shape: Any, initial_state_shape: Any = None) -> Any:
        batch_size, length = sequences_shape[0], sequences_shape[1]
        states_shape = [(batch_size, size) if arguments.is_int(size) else [(batch_size, s) for s in size]
                        for size in self.state_size]
        output_size = getattr(self.cell, "output_size", None)
        if output_size is None:
            output_size = self.state_size[0]
        if not arguments.is_int(output_size):
            raise ValueError(f"The cell's `output_size` must be an int. Received: output_size={output_size!r}")
        output_shape = (batch_size, length, output_size) if self.return_sequences else (batch_size, output_size)
        return (output_shape, *states_shape) if self.return_state else output_shape

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The sequence mask passes on with ``return_sequences``; states have none."""
        while _is_nested(mask):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None for _ in self.state_size]
        return output_mask

    # -- weights and states ------------------------------------------------------------
    def build(self, sequences_shape: Any, initial_state_shape: Any = None) -> None:
        sequences_shape = tuple(sequences_shape)
        if len(sequences_shape) < 3:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: inputs must be (batch, time, features...). "
                             f"Received: sequences_shape={sequences_shape}")
        step_shape = (sequences_shape[0], *sequences_shape[2:])
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell.build(step_shape)
            self.cell.built = True
        if self.stateful:
            if self.states is not None:
                self.reset_state()
            else:
                if sequences_shape[0] is None:
                    raise ValueError("When using `stateful=True` in a RNN, the batch size must be static. Found "
                                     f"dynamic batch size: sequence.shape={sequences_shape}")
                self.states = [_map(torch.Tensor.detach, s) for s in self.get_initial_state(sequences_shape[0])]
                self._expected_batch_size = int(sequences_shape[0])

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Build from a build config; Keras's ``shapes_dict`` of a call given ``initial_state`` too is read
        for its ``sequences_shape`` (the states have no weights)."""
        shapes = config.get("shapes_dict") if isinstance(config, dict) else None
        if isinstance(shapes, dict) and "sequences_shape" in shapes:
            config = {"input_shape": shapes["sequences_shape"]}
        super().build_from_config(config)

    def get_initial_state(self, batch_size: int) -> list[Any]:
        """The states a call starts from when none is given: the cell's, or zeros."""
        get_initial_state = getattr(self.cell, "get_initial_state", None)
        if get_initial_state is None:
            return [torch.zeros((batch_size, size), dtype=self._dtype) for size in self.state_size]
        states = get_initial_state(batch_size=batch_size)
        return list(states) if _is_nested(states) else [states]

    def reset_state(self) -> None:
        """Zero the carried states of a ``stateful`` layer."""
        if self.states is not None:
            self.states = _map(torch.zeros_like, self.states)

    def reset_states(self) -> None:
        """The same as :meth:`reset_state` (Keras's older name)."""
        self.reset_state()

    # -- calling -----------------------------------------------------------------------
    def inner_loop(self, sequences: torch.Tensor, initial_state: list[Any], mask: torch.Tensor | None,
                   training: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
        """Run the cell over the sequence: ``(last_output, outputs, final_states)``."""
        cell = self.cell
        kwargs = {"training": training} if _takes_training(cell) else {}
        call = cell if callable(cell) else cell.call

        def step(inputs: torch.Tensor, states: list[Any]) -> tuple[torch.Tensor, list[Any]]:
            output, new_states = call(inputs, states, **kwargs)
            return output, list(new_states) if _is_nested(new_states) else [new_states]

        return run_steps(step, sequences, initial_state, mask=mask, go_backwards=self.go_backwards,
                         zero_output_for_mask=self.zero_output_for_mask, return_sequences=self.return_sequences)

    def call(self, sequences: torch.Tensor, initial_state: Any = None, mask: Any = None, training: bool = False) -> Any:
        if not isinstance(sequences, torch.Tensor) or sequences.dim() < 3:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: invalid value for argument `sequences`: "
                             f"expected a tensor of shape (batch, time, features). "
                             f"Received: sequences={arguments.echo(sequences)}")
        batch_size = sequences.shape[0]
        if self.stateful and self._expected_batch_size is not None and batch_size != self._expected_batch_size:
            raise ValueError("If an RNN is stateful, the batch size of the input sequences must be the same as the "
                             f"batch size of the initial state. \n- Expected batch size: {self._expected_batch_size}"
                             f"\n- Received batch size: {batch_size}")
        if initial_state is None:
            initial_state = self.states if self.stateful and self.states is not None \
                else self.get_initial_state(batch_size=batch_size)
        initial_state = list(initial_state) if _is_nested(initial_state) else [initial_state]
        # Cells with a custom state_size (ConvLSTM's is -1) describe their states themselves.
        sized = all(arguments.is_int(size) and size > 0 for size in flatten(self.state_size))
        if sized and len(initial_state) != len(self.state_size):
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: invalid value for argument `initial_state`: "
                             f"expected {len(self.state_size)} state(s), for state sizes {self.state_size}. "
                             f"Received: {len(initial_state)} state(s)")
        if sequences.shape[1] == 0:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: invalid value for argument `sequences`: a "
                             f"recurrent layer needs at least one time step. Received: sequences of shape "
                             f"{tuple(sequences.shape)}")
        initial_state = _map(lambda s: torch.as_tensor(s).to(device=sequences.device, dtype=sequences.dtype)
                             if sequences.is_floating_point() else torch.as_tensor(s).to(sequences.device),
                             initial_state)
        if not sequences.is_floating_point():
            sequences = sequences.to(self._dtype)
        while _is_nested(mask):
            mask = mask[0] if mask else None
        if mask is not None:
            mask = torch.as_tensor(mask, device=sequences.device).to(torch.bool)
        try:
            last_output, outputs, states = self.inner_loop(sequences, initial_state, mask, training=training)
        finally:
            _reset_dropout_masks(self.cell)
        if self.stateful:
            # The next call starts from these values; gradients stop at the call boundary, as in Keras.
            self.states = _map(torch.Tensor.detach, states)
        output = outputs if self.return_sequences else last_output
        return (output, *states) if self.return_state else output

    # -- config ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **{name: getattr(self, name) for name in _FLAGS},
                "cell": serialize_keras_object(self.cell)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Mapping[str, Any] | None = None) -> Layer:
        if not isinstance(config, dict) or "cell" not in config:
            raise ValueError(f"{cls.__name__}.from_config: invalid value for argument `config`: expected a dict with "
                             f"a 'cell' entry. Received: config={arguments.echo(config)}")
        cell = config["cell"]
        if isinstance(cell, dict):
            cell = deserialize_keras_object(cell, custom_objects=custom_objects)
        return super().from_config({**config, "cell": cell})


def _reset_dropout_masks(cell: Any) -> None:
    if isinstance(cell, DropoutRNNCell):
        cell.reset_dropout_mask()
        cell.reset_recurrent_dropout_mask()
    for inner in getattr(cell, "cells", None) or ():
        _reset_dropout_masks(inner)
