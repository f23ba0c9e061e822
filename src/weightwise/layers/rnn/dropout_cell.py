"""Dropout masks of a recurrent cell: drawn once per sequence, reused at every step."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DropoutRNNCell"]


class DropoutRNNCell:
    """Mixin for cells with ``dropout`` and ``recurrent_dropout``: one mask per sequence, as in Keras.

    A cell mixing this in has ``dropout``, ``recurrent_dropout`` (floats in ``[0, 1]``) and
    ``seed`` (an int or ``None``). The first request of a call draws a mask of the step
    input's shape (``dropout_mask_count`` masks, one per gate, where the cell sets it);
    later steps get the same mask; the RNN layer resets the masks after each call. A kept
    entry is ``1 / (1 - rate)``, a dropped one 0.

    >>> class Cell(DropoutRNNCell):
    ...     dropout, recurrent_dropout, seed = 0.5, 0.0, 1
    >>> cell = Cell()
    >>> mask = cell.get_dropout_mask(torch.ones(2, 3))
    >>> cell.get_dropout_mask(torch.ones(2, 3)) is mask, sorted(set(mask.flatten().tolist())) <= [0.0, 2.0]
    (True, True)
    >>> cell.get_recurrent_dropout_mask(torch.ones(2, 3)) is None
    True
    """

    def _create_dropout_mask(self, step_input: torch.Tensor, rate: float) -> Any:
        count = getattr(self, "dropout_mask_count", None)
        masks = [self._draw_mask(step_input, rate) for _ in range(count or 1)]
        return masks if count is not None else masks[0]

    def _draw_mask(self, step_input: torch.Tensor, rate: float) -> torch.Tensor:
        if rate >= 1:
            return torch.zeros_like(step_input)
        seed = getattr(self, "seed", None)
        generator = self.__dict__.get("_mask_generator")
        if seed is not None and (generator is None or generator.device != step_input.device):
            # Seeded masks do not touch torch's global random state; torch seeds are 64-bit.
            generator = torch.Generator(device=step_input.device).manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
            self.__dict__["_mask_generator"] = generator
        keep = torch.rand(step_input.shape, generator=generator if seed is not None else None,
                          device=step_input.device) >= rate
        return keep.to(step_input.dtype) / (1 - rate)

    def get_dropout_mask(self, step_input: torch.Tensor) -> Any:
        """The input dropout mask of this call (drawn on first request); ``None`` when ``dropout`` is 0."""
        if self.__dict__.get("_dropout_mask") is None and self.dropout > 0:
            self.__dict__["_dropout_mask"] = self._create_dropout_mask(step_input, self.dropout)
        return self.__dict__.get("_dropout_mask")

    def get_recurrent_dropout_mask(self, step_input: torch.Tensor) -> Any:
        """The recurrent dropout mask of this call; ``None`` when ``recurrent_dropout`` is 0."""
        if self.__dict__.get("_recurrent_dropout_mask") is None and self.recurrent_dropout > 0:
            self.__dict__["_recurrent_dropout_mask"] = self._create_dropout_mask(step_input, self.recurrent_dropout)
        return self.__dict__.get("_recurrent_dropout_mask")

    def reset_dropout_mask(self) -> None:
        """Forget the input mask, so the next sequence draws its own."""
        self.__dict__["_dropout_mask"] = None

    def reset_recurrent_dropout_mask(self) -> None:
        """Forget the recurrent mask, so the next sequence draws its own."""
        self.__dict__["_recurrent_dropout_mask"] = None
