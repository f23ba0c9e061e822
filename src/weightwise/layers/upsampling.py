"""Up-sampling of the spatial axes: UpSampling1D/2D/3D.

Each repeats every step, row, column or slice ``size`` times (nearest neighbour). 2D also
interpolates, as Keras on torch does, with ``torch.nn.functional.interpolate``
(``align_corners=False``, no antialiasing): ``"bilinear"`` and ``"bicubic"``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from weightwise.layers.args import invalid, standardize_data_format, standardize_tuple
from weightwise.layers.base import InputSpec
from weightwise.layers.reshaping import StatelessLayer, positive_count

__all__ = ["UpSampling1D", "UpSampling2D", "UpSampling3D"]

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# Keras names these, and refuses them on its torch backend.
_LANCZOS = ("lanczos3", "lanczos5")


class _UpSampling(StatelessLayer):
    """Shared by the three: ``rank`` spatial axes, each repeated ``size[i]`` times."""

    rank = 0
    data_format = "channels_last"

    def _setup(self, size: Any, data_format: str | None) -> None:
        if self.rank > 1:
            self.data_format = standardize_data_format(self, data_format)
            self.size = standardize_tuple(self, size, self.rank, "size")
        else:
            self.size = positive_count(size, "size")
        self.input_spec = InputSpec(ndim=self.rank + 2)

    @property
    def _factors(self) -> tuple[int, ...]:
        return self.size if isinstance(self.size, tuple) else (self.size,)

    @property
    def _first_spatial_axis(self) -> int:
        return 2 if self.data_format == "channels_first" else 1

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        shape = list(input_shape)
        for i, factor in enumerate(self._factors):
            axis = self._first_spatial_axis + i
            shape[axis] = None if shape[axis] is None else shape[axis] * factor
        return tuple(shape)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        for i, factor in enumerate(self._factors):
            inputs = inputs.repeat_interleave(factor, dim=self._first_spatial_axis + i)
        return inputs


class UpSampling1D(_UpSampling):
    """Repeats each step of ``(batch, steps, features)`` inputs ``size`` times.

    >>> from weightwise import ops
    >>> UpSampling1D(size=2)(ops.convert_to_tensor([[[1.0], [2.0]]]))[0, :, 0].tolist()
    [1.0, 1.0, 2.0, 2.0]
    """

    rank = 1

    def __init__(self, size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup(size, None)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


class UpSampling2D(_UpSampling):
    """Scales images up by ``size = (rows, cols)``: each pixel repeated (``interpolation="nearest"``), or
    interpolated (``"bilinear"``, ``"bicubic"``) as Keras on torch does.

    >>> import torch
    >>> UpSampling2D(size=(1, 2))(torch.arange(4.0).reshape(1, 2, 2, 1))[0, :, :, 0].tolist()
    [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]]
    >>> UpSampling2D(interpolation="bilinear")(torch.ones((1, 2, 2, 3))).shape
    torch.Size([1, 4, 4, 3])
    """

    rank = 2

    def __init__(self, size: Any = (2, 2), data_format: str | None = None, interpolation: str = "nearest",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup(size, data_format)
        method = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if method in _LANCZOS:
            raise ValueError(f"UpSampling2D layer {self.name!r}: Lanczos interpolation is not supported on torch "
                             f"(as in Keras on torch). Received: interpolation={interpolation!r}")
        if method not in _INTERPOLATIONS:
            raise invalid(self, "interpolation", interpolation, "one of " + ", ".join(map(repr, _INTERPOLATIONS)))
        self.interpolation = method

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.interpolation == "nearest":
            return super().call(inputs)
        channels_last = self.data_format == "channels_last"
        images = inputs.permute(0, 3, 1, 2) if channels_last else inputs
        # Keras resizes in float32 (or float64), then rounds back to an integer dtype; bicubic overshoot
        # is clamped to the dtype's range (Keras clamps uint8 only; other integers would wrap around).
        working = images if images.dtype in (torch.float32, torch.float64) else images.to(torch.float32)
        size = (images.shape[2] * self.size[0], images.shape[3] * self.size[1])
        resized = F.interpolate(working, size=size, mode=self.interpolation, align_corners=False)
        if not images.dtype.is_floating_point:
            limits = torch.iinfo(images.dtype) if images.dtype != torch.bool else torch.iinfo(torch.uint8)
            resized = resized.round().clamp(limits.min, limits.max)
        resized = resized.to(images.dtype)
        return resized.permute(0, 2, 3, 1) if channels_last else resized

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}


class UpSampling3D(_UpSampling):
    """Scales volumes up by ``size = (d1, d2, d3)``, repeating each voxel.

    >>> from weightwise import ops
    >>> UpSampling3D(size=(1, 2, 3))(ops.ones((1, 2, 2, 2, 4))).shape
    torch.Size([1, 2, 4, 6, 4])
    """

    rank = 3

    def __init__(self, size: Any = (2, 2, 2), data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup(size, data_format)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "data_format": self.data_format}
