"""The Masking layer: a mask from a padding value, for the layers after it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from weightwise import ops
from weightwise.arguments import echo, real
from weightwise.layers.base import Layer
from weightwise.layers.symbolic import set_keras_mask
from weightwise.serialization import deserialize_keras_object

__all__ = ["Masking"]


class Masking(Layer):
    """Masks the timesteps whose features all equal ``mask_value``.

    The mask of a step is ``any(inputs[..., step, :] != mask_value)`` (``True`` keeps the
    step); masked steps come out as zeros, and the layers after this one that support
    masking (RNNs, ``GlobalAveragePooling1D``, the merging layers, the loss in ``fit``)
    skip them. ``mask_value`` is a number, or an array that broadcasts over the features.

    >>> from weightwise import ops
    >>> x = ops.convert_to_tensor([[[0.0, 0.0], [1.0, 2.0], [0.0, 3.0]]])
    >>> y = Masking(mask_value=0.0)(x)
    >>> y._keras_mask
    tensor([[False,  True,  True]])
    """

    def __init__(self, mask_value: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Keras writes a tensor mask value as a serialized tensor.
        if isinstance(mask_value, Mapping) and mask_value.get("config"):
            mask_value = deserialize_keras_object(mask_value)
        self.mask_value = _mask_value(self, mask_value)
        self.supports_masking = True
        self._build_at_init()

    def _kept(self, inputs: torch.Tensor) -> torch.Tensor:
        value = self.mask_value
        if not isinstance(value, (int, float)):
            value = ops.convert_to_tensor(value).to(device=inputs.device)
        return torch.any(inputs != value, dim=-1)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> torch.Tensor:
        return self._kept(ops.convert_to_tensor(inputs))

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        kept = self._kept(inputs)
        outputs = torch.where(kept.unsqueeze(-1), inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device))
        # The mask comes with the outputs, so the base layer does not compute it twice.
        set_keras_mask(outputs, kept)
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}


def _mask_value(layer: Layer, value: Any) -> Any:
    """A number (NaN refused: it equals nothing, so it would mask nothing), or an array of real numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = ops.convert_to_numpy(value) if isinstance(value, torch.Tensor) else value
        if array.dtype.kind not in "biuf" or np.isnan(array.astype(float)).any():
            raise ValueError(f"Masking layer {layer.name!r}: invalid value for argument `mask_value`: expected real "
                             f"numbers other than NaN. Received: mask_value={echo(value)}")
        return value
    return real(value, "mask_value", allow_inf=True, keep_int=True, owner=f"Masking layer {layer.name!r}")
