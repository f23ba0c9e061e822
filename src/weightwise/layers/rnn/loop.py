"""The step loop of every recurrent layer, with Keras's mask semantics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["run_steps"]

Step = Callable[[torch.Tensor, list[Any]], tuple[torch.Tensor, list[Any]]]


def _select(keep: torch.Tensor, new: Any, old: Any) -> Any:
    """``new`` where ``keep`` (a ``(batch,)`` bool), else ``old``; over nested lists of tensors."""
    if isinstance(new, (list, tuple)):
        return [_select(keep, n, o) for n, o in zip(new, old)]
    return torch.where(keep.reshape(keep.shape + (1,) * (new.dim() - 1)), new, old)


def run_steps(
    step: Step,
    sequences: torch.Tensor,
    states: list[Any],
    mask: torch.Tensor | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    return_sequences: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
    """Run ``step(inputs_t, states) -> (output_t, states)`` over the time axis (axis 1) of ``sequences``.

    Returns ``(last_output, outputs, states)``; ``outputs`` is ``(batch, time, ...)`` with
    ``return_sequences``, else the last output with a time axis of 1. ``go_backwards`` runs
    from the last step to the first, and the outputs come in that order, as in Keras.

    A step masked out (``mask[b, t]`` False) keeps the states of the step before and
    outputs the previous step's output (zeros before the first step), or zeros with
    ``zero_output_for_mask``.

    >>> def cumulative(x, states):
    ...     total = states[0] + x
    ...     return total, [total]
    >>> x = torch.tensor([[[1.0], [2.0], [3.0]]])
    >>> last, outputs, states = run_steps(cumulative, x, [torch.zeros(1, 1)],
    ...                                   mask=torch.tensor([[True, False, True]]))
    >>> outputs.flatten().tolist(), states[0].item()
    ([1.0, 1.0, 4.0], 4.0)
    """
    steps = list(torch.unbind(sequences, dim=1))
    keeps = None if mask is None else list(torch.unbind(mask.to(torch.bool), dim=1))
    if go_backwards:
        steps.reverse()
        if keeps is not None:
            keeps.reverse()
    outputs: list[torch.Tensor] = []
    previous: torch.Tensor | None = None
    for index, inputs in enumerate(steps):
        output, new_states = step(inputs, states)
        if keeps is not None:
            keep = keeps[index]
            fallback = torch.zeros_like(output) if zero_output_for_mask or previous is None else previous
            output = _select(keep, output, fallback)
            new_states = _select(keep, new_states, states)
        states, previous = list(new_states), output
        if return_sequences:
            outputs.append(output)
    if previous is None:
        raise ValueError(f"Invalid value for argument `sequences`: expected at least one time step. "
                         f"Received: sequences of shape {tuple(sequences.shape)}")
    stacked = torch.stack(outputs, dim=1) if return_sequences else previous.unsqueeze(1)
    return previous, stacked, states
