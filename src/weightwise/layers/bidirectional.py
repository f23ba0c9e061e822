"""Bidirectional: a recurrent layer run over the sequence both ways, the two outputs merged.

The forward and backward layers are new layers built from the given layer's config
(``forward_<name>``, and ``backward_<name>`` with ``go_backwards`` flipped), so they
carry its regularizers and constraints but none of its weights; their weights are
listed forward first, then backward, as in Keras.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from weightwise import ops
from weightwise.arguments import echo
from weightwise.layers.base import Layer, _call_signature
from weightwise.layers.rnn import GRU, LSTM, fused
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["Bidirectional"]

_MERGE_MODES = ("sum", "mul", "ave", "concat", None)
# What both directions must agree on (Keras's rule).
_COMMON_ATTRIBUTES = ("stateful", "return_sequences", "return_state")


def _renamed_copy(layer: Layer, prefix: str, **changes: Any) -> Layer:
    """A fresh layer from ``layer``'s config, named ``<prefix>_<name>`` (without doubling the prefix)."""
    config = serialize_keras_object(layer)
    name = layer.name[len(prefix) + 1:] if layer.name.startswith(f"{prefix}_") else layer.name
    config["config"] = {**config["config"], **changes, "name": f"{prefix}_{name}"}
    return deserialize_keras_object(config)


def _merge(merge_mode: str | None, y: torch.Tensor, y_rev: torch.Tensor) -> Any:
    if merge_mode == "concat":
        return torch.cat([y, y_rev], dim=-1)
    if merge_mode == "sum":
        return y + y_rev
    if merge_mode == "ave":
        return (y + y_rev) / 2
    if merge_mode == "mul":
        return y * y_rev
    return (y, y_rev)


class Bidirectional(Layer):
    """Run a recurrent ``layer`` forwards and a copy of it backwards over the sequence, and merge the outputs.

    ``merge_mode`` is ``"concat"`` (default, on the last axis), ``"sum"``, ``"ave"``,
    ``"mul"`` or ``None`` (a tuple of both outputs). With ``return_sequences`` the
    backward outputs are flipped back into the input's time order before merging. With
    ``return_state`` the forward states follow the output, then the backward ones. An
    ``initial_state`` list gives its first half to the forward layer and its second half
    to the backward one. ``backward_layer``, if given, is used as is (it must read the
    other way and agree on ``stateful``, ``return_sequences`` and ``return_state``).
    ``weights``, if given, are set after build: the first half into the forward layer,
    the second into the backward one.

    >>> from weightwise import ops
    >>> from weightwise.layers import LSTM
    >>> layer = Bidirectional(LSTM(3, return_sequences=True, recurrent_regularizer="l2", name="lstm"), name="bi")
    >>> tuple(layer(ops.ones((2, 5, 4))).shape)
    (2, 5, 6)
    >>> [w.path for w in layer.weights][:2], len(layer.losses)
    (['bi/forward_lstm/lstm_cell/kernel', 'bi/forward_lstm/lstm_cell/recurrent_kernel'], 2)
    """

    def __init__(
        self,
        layer: Layer,
        merge_mode: str | None = "concat",
        weights: Sequence[Any] | None = None,
        backward_layer: Layer | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(layer, Layer):
            raise ValueError(  # noqa: TRY004 -- Keras raises a ValueError here
                "Please initialize `Bidirectional` layer with a `keras.layers.Layer` instance. "
                f"Invalid value for argument `layer`. Received: layer={echo(layer)}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError(
                "`backward_layer` need to be a `keras.layers.Layer` instance. Invalid value for argument "
                f"`backward_layer`. Received: backward_layer={echo(backward_layer)}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(
                f"Invalid merge mode. Received: merge_mode={echo(merge_mode)}. Merge mode should be one of "
                '{"sum", "mul", "ave", "concat", None}')
        if weights is not None and not isinstance(weights, (list, tuple)):
            raise TypeError(f"Invalid value for argument `weights`: expected a list of arrays (the forward layer's, "
                            f"then the backward layer's). Received: weights={echo(weights)}")
        for attribute in ("go_backwards", *_COMMON_ATTRIBUTES):
            if not hasattr(layer, attribute):
                raise ValueError(f"Invalid value for argument `layer`: Bidirectional needs a recurrent layer with a "
                                 f"`{attribute}` attribute. Received: layer={echo(layer)}")
        forward = _renamed_copy(layer, "forward")
        backward = backward_layer if backward_layer is not None else \
            _renamed_copy(layer, "backward", go_backwards=not layer.go_backwards)
        _verify_pair(forward, backward)
        super().__init__(**kwargs)
        self.forward_layer = forward
        self.backward_layer = backward
        for direction in (forward, backward):
            if hasattr(layer, "use_cudnn"):  # not in the config, so carried over by hand (as Keras does)
                direction.use_cudnn = layer.use_cudnn
            if getattr(direction, "zero_output_for_mask", None) is not None:
                # Masked steps of the returned sequences are zeros, whatever the given layer says.
                direction.zero_output_for_mask = direction.return_sequences
        self.merge_mode = merge_mode
        self._initial_weights = list(weights) if weights else None
        self.stateful = layer.stateful
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.supports_masking = True
        self.input_spec = layer.input_spec

    # -- shapes, masks and states ------------------------------------------------------
    def compute_output_shape(self, sequences_shape: Any, initial_state_shape: Any = None) -> Any:
        output_shape = self.forward_layer.compute_output_shape(sequences_shape)
        state_shapes: tuple[Any, ...] = ()
        if self.return_state:
            output_shape, state_shapes = output_shape[0], tuple(output_shape[1:])
        if self.merge_mode == "concat":
            output_shape = (*output_shape[:-1], None if output_shape[-1] is None else output_shape[-1] * 2)
        outputs = (tuple(output_shape), tuple(output_shape)) if self.merge_mode is None else (tuple(output_shape),)
        if self.return_state:
            return outputs + state_shapes + state_shapes
        return outputs if self.merge_mode is None else outputs[0]

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The sequence mask passes on with ``return_sequences`` (to each output when not merged); states have none.

        Keras 3.15.1 fails here for a stateful layer with ``return_state``; this returns
        one ``None`` per state instead.
        """
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if self.return_sequences:
            output_mask: Any = (mask, mask) if self.merge_mode is None else mask
        else:
            output_mask = (None, None) if self.merge_mode is None else None
        if not self.return_state:
            return output_mask
        states = [*_state_sizes(self.forward_layer), *_state_sizes(self.backward_layer)]
        outputs = output_mask if self.merge_mode is None else (output_mask,)
        return (*outputs, *[None for _ in states])

    @property
    def states(self) -> tuple[Any, ...] | None:
        """The carried states of a stateful pair, forward then backward; ``None`` otherwise."""
        forward, backward = getattr(self.forward_layer, "states", None), getattr(self.backward_layer, "states", None)
        return tuple(forward) + tuple(backward) if forward and backward else None

    def reset_state(self) -> None:
        """Zero the carried states of both directions; only for a stateful layer."""
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def reset_states(self) -> None:
        """The same as :meth:`reset_state` (Keras's older name)."""
        self.reset_state()

    # -- weights and calling -----------------------------------------------------------
    def build(self, sequences_shape: Any, initial_state_shape: Any = None) -> None:
        for direction in (self.forward_layer, self.backward_layer):
            if not direction.built:
                direction._build_once(sequences_shape)
        if self._initial_weights is not None:
            half = len(self._initial_weights) // 2
            before = self.forward_layer.get_weights()
            self.forward_layer.set_weights(self._initial_weights[:half])
            try:
                self.backward_layer.set_weights(self._initial_weights[half:])
            except BaseException:
                self.forward_layer.set_weights(before)  # both or neither
                raise
            self._initial_weights = None

    def _can_attempt_fused_lstm(self, mask: Any, initial_state: Any = None) -> bool:
        """Keras's conditions for running both LSTM directions as one fused bidirectional kernel."""
        return self._can_attempt_fused(LSTM, 4, mask, initial_state)

    def _can_attempt_fused_gru(self, mask: Any, initial_state: Any = None) -> bool:
        """Keras's conditions for running both GRU directions as one fused kernel (``reset_after=True`` only)."""
        return self._can_attempt_fused(GRU, 2, mask, initial_state) and self.forward_layer.cell.reset_after \
            and self.backward_layer.cell.reset_after

    def _can_attempt_fused(self, kind: type, states: int, mask: Any, initial_state: Any) -> bool:
        if mask is not None or self.stateful or (initial_state is not None and len(initial_state) != states):
            return False
        forward, backward = self.forward_layer, self.backward_layer
        if not isinstance(forward, kind) or not isinstance(backward, kind):
            return False
        cells = (forward.cell, backward.cell)
        return all(layer.use_cudnn in (True, "auto") and layer.built for layer in (forward, backward)) \
            and not any(cell.dropout or cell.recurrent_dropout for cell in cells) \
            and cells[0].units == cells[1].units and all(cell.use_bias for cell in cells) \
            and cells[0].activation is cells[1].activation \
            and cells[0].recurrent_activation is cells[1].recurrent_activation

    def _fused_kernel(self, mask: Any, initial_state: Any, training: bool | None) -> str | None:
        """torch's bidirectional kernel for this call, where it computes exactly what the two layers would.

        Beyond Keras's conditions: the directions read forwards and backwards as built here,
        both fit torch's kernel (:func:`weightwise.layers.rnn.fused.fusable`) and neither has an
        activity regularizer (the fused call does not go through their ``__call__``).
        """
        forward, backward = self.forward_layer, self.backward_layer
        if not (self._can_attempt_fused_lstm(mask, initial_state) or self._can_attempt_fused_gru(mask, initial_state)):
            return None
        if type(forward) is not type(backward) or forward.go_backwards or not backward.go_backwards:
            return None
        if forward.activity_regularizer is not None or backward.activity_regularizer is not None:
            return None
        if not (fused.fusable(forward, None, bool(training)) and fused.fusable(backward, None, bool(training))):
            return None
        return forward.cell.fused_kernel()

    def _call_fused(self, kernel: str, sequences: torch.Tensor, initial_state: Any) -> Any:
        """Both directions in one call of torch's bidirectional kernel (cuDNN on GPU); outputs as :meth:`call`'s."""
        forward, backward = self.forward_layer, self.backward_layer
        units = forward.cell.units
        if initial_state is None:
            initial_state = [*forward.get_initial_state(sequences.shape[0]),
                             *backward.get_initial_state(sequences.shape[0])]
        initial = [torch.as_tensor(s).to(device=sequences.device, dtype=sequences.dtype) for s in initial_state]
        half = len(initial) // 2
        # torch stacks the directions' states on a leading axis: (2, batch, units).
        hidden = [torch.stack([initial[i], initial[half + i]]) for i in range(half)]
        params = [*fused._params(forward, kernel)[0], *fused._params(backward, kernel)[0]]
        arguments = (True, 1, 0.0, torch.is_grad_enabled(), True, True)
        if kernel == "lstm":
            outputs, h, c = torch._VF.lstm(sequences, (hidden[0], hidden[1]), params, *arguments)
            states = (h[0], c[0], h[1], c[1])
        else:
            outputs, h = torch._VF.gru(sequences, hidden[0], params, *arguments)
            states = (h[0], h[1])
        # The backward half is already in input time order; its last step is at time 0.
        y, y_rev = outputs[..., :units], outputs[..., units:]
        if not self.return_sequences:
            y, y_rev = y[:, -1], y_rev[:, 0]
        return self._outputs(y, y_rev, states)

    def call(self, sequences: torch.Tensor, initial_state: Any = None, mask: Any = None,
             training: bool | None = None) -> Any:
        kernel = self._fused_kernel(mask, initial_state, training)
        if kernel is not None and isinstance(sequences, torch.Tensor) and sequences.dim() == 3 \
                and sequences.is_floating_point():
            return self._call_fused(kernel, sequences, initial_state)
        kwargs: dict[str, Any] = {}
        if self.forward_layer._call_takes_training:
            kwargs["training"] = training
        if mask is not None and "mask" in _call_signature(type(self.forward_layer)).parameters:
            kwargs["mask"] = ops.convert_to_tensor(mask)
        forward_state = backward_state = None
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) % 2:
                raise ValueError(
                    f"Bidirectional layer {self.name!r}: invalid value for argument `initial_state`: expected a list "
                    "of the forward layer's states followed by the backward layer's. "
                    f"Received: initial_state={echo(initial_state)}")
            half = len(initial_state) // 2
            forward_state, backward_state = list(initial_state[:half]), list(initial_state[half:])
        y = self.forward_layer(sequences, initial_state=forward_state, **kwargs)
        y_rev = self.backward_layer(sequences, initial_state=backward_state, **kwargs)
        states: tuple[Any, ...] = ()
        if self.return_state:
            states = (*y[1:], *y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        y, y_rev = y.to(self._dtype), y_rev.to(self._dtype)
        if self.return_sequences:
            y_rev = torch.flip(y_rev, dims=(1,))
        return self._outputs(y, y_rev, states)

    def _outputs(self, y: torch.Tensor, y_rev: torch.Tensor, states: tuple[Any, ...]) -> Any:
        """The merged output (``y_rev`` in input time order), then the states with ``return_state``."""
        output = _merge(self.merge_mode, y, y_rev)
        if not self.return_state:
            return output
        return (*output, *states) if self.merge_mode is None else (output, *states)

    # -- config ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize_keras_object(self.forward_layer),
                "backward_layer": serialize_keras_object(self.backward_layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Mapping[str, Any] | None = None) -> Layer:
        if not isinstance(config, dict) or "layer" not in config:
            raise ValueError(f"{cls.__name__}.from_config: invalid value for argument `config`: expected a dict with "
                             f"a 'layer' entry. Received: config={echo(config)}")
        config = copy.deepcopy(config)
        config["layer"] = deserialize_keras_object(config["layer"], custom_objects=custom_objects)
        backward = config.pop("backward_layer", None)
        if backward is not None:
            config["backward_layer"] = deserialize_keras_object(backward, custom_objects=custom_objects)
        return super().from_config(config)


def _verify_pair(forward: Layer, backward: Layer) -> None:
    if forward.go_backwards == backward.go_backwards:
        raise ValueError(
            "Forward layer and backward layer should have different `go_backwards` value. Received: "
            f"forward_layer.go_backwards {forward.go_backwards}, backward_layer.go_backwards={backward.go_backwards}")
    for attribute in _COMMON_ATTRIBUTES:
        forward_value, backward_value = getattr(forward, attribute), getattr(backward, attribute, None)
        if forward_value != backward_value:
            raise ValueError(
                f'Forward layer and backward layer are expected to have the same value for attribute "{attribute}", '
                f'got "{forward_value}" for forward layer and "{backward_value}" for backward layer')


def _state_sizes(layer: Layer) -> list[Any]:
    sizes = getattr(layer, "state_size", None)
    if sizes is None:
        sizes = getattr(getattr(layer, "cell", None), "state_size", 1)
    return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
