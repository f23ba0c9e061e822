"""TimeDistributed: one layer applied to every time step of a sequence, with the same weights.

As in Keras, the wrapped layer's ``call`` runs once per step on ``inputs[:, t]`` (its
weights are shared across steps; its regularizers and constraints are the ones it was
built with, and the wrapper's ``losses`` and ``weights`` collect them), and the step
outputs are stacked on axis 1. Each step sees the batch of that step alone, so layers
that depend on the batch (``BatchNormalization`` in training) behave as in Keras.
"""

from __future__ import annotations

from typing import Any

import torch

from weightwise import ops
from weightwise.arguments import echo
from weightwise.layers.base import Layer, _call_signature
from weightwise.layers.core import Wrapper

__all__ = ["TimeDistributed"]


class TimeDistributed(Wrapper):
    """Apply ``layer`` to every temporal slice of the input (axis 1), with the same weights at each step.

    For inputs ``(batch, time, *features)``, output ``t`` is ``layer.call(inputs[:, t])``;
    the outputs are stacked on axis 1. ``training`` and the mask's step ``mask[:, t]``
    reach the wrapped layer when its ``call`` takes them. The mask itself passes through.

    >>> from weightwise import ops
    >>> from weightwise.layers import Dense
    >>> layer = TimeDistributed(Dense(2, kernel_initializer="ones", kernel_regularizer="l1", name="d"), name="td")
    >>> layer(ops.ones((4, 3, 5))).shape
    torch.Size([4, 3, 2])
    >>> [w.path for w in layer.weights], [round(loss.item(), 4) for loss in layer.losses]
    (['td/d/kernel', 'td/d/bias'], [0.1])
    """

    def __init__(self, layer: Layer, **kwargs: Any) -> None:
        if not isinstance(layer, Layer):
            raise ValueError(  # noqa: TRY004 -- Keras raises a ValueError here
                "Please initialize `TimeDistributed` layer with a `keras.layers.Layer` instance. "
                f"Invalid value for argument `layer`. Received: layer={echo(layer)}")
        super().__init__(layer, **kwargs)
        self.supports_masking = True

    def _child_input_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3 \
                or isinstance(input_shape[0], (tuple, list)):
            raise ValueError(
                f"`TimeDistributed` Layer should be passed an `input_shape` with at least 3 dimensions, "
                f"received: {input_shape}")
        return (input_shape[0], *input_shape[2:])

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        child = self.layer.compute_output_shape(self._child_input_shape(input_shape))
        return (child[0], input_shape[1], *child[1:])

    def build(self, input_shape: Any) -> None:
        super().build(self._child_input_shape(input_shape))

    def _step_masks(self, inputs: torch.Tensor, mask: Any) -> list[torch.Tensor] | None:
        if mask is None:
            return None
        mask = ops.convert_to_tensor(mask)
        if mask.dim() < 2:
            raise ValueError(
                "The `mask` passed to the `TimeDistributed` layer must be at least 2D (e.g., `(batch_size, "
                f"timesteps)`), but it has {mask.dim()} dimension(s) with shape {tuple(mask.shape)}.")
        if tuple(mask.shape[:2]) != tuple(inputs.shape[:2]):
            raise ValueError(
                f"The `mask` passed to the `TimeDistributed` layer has a shape {tuple(mask.shape)} that is "
                f"incompatible with the input shape {tuple(inputs.shape)}. The first two dimensions of the mask "
                "(batch size and timesteps) must match the input's first two dimensions. Expected mask shape "
                f"prefix: ({inputs.shape[0]}, {inputs.shape[1]}).")
        return list(mask.to(inputs.device).unbind(1))

    def call(self, inputs: torch.Tensor, training: bool | None = None, mask: Any = None) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 3:
            raise ValueError(
                f"`TimeDistributed` Layer should be passed an `input_shape` with at least 3 dimensions, "
                f"received: {echo(getattr(inputs, 'shape', inputs))}")
        masks = self._step_masks(inputs, mask)
        # Keras's test: a parameter named `mask` (a `**kwargs` call gets none).
        takes_mask = "mask" in _call_signature(type(self.layer)).parameters
        takes_training = self.layer._call_takes_training
        outputs = []
        for step, x in enumerate(inputs.unbind(1)):
            kwargs: dict[str, Any] = {}
            if takes_mask and masks is not None:
                kwargs["mask"] = masks[step]
            if takes_training:
                kwargs["training"] = training
            # The wrapped layer's `call`, not the layer: Keras runs no per-step activity penalty or input checks.
            outputs.append(self.layer.call(x, **kwargs))
        return torch.stack(outputs, dim=1)
