"""Checking the arguments of ``Optimizer.apply``: gradients against the variables they update.

Everything is checked before anything changes, so a bad call leaves the
weights, the optimizer's state and its ``iterations`` as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from weightwise.arguments import echo

__all__ = ["check_gradients", "check_variables", "describe_variable", "split_pairs"]


def _sequence(value: Any, argument: str, expected: str) -> list[Any]:
    # A tensor, an array, a string or a mapping is iterable, but never a list of gradients or variables.
    if isinstance(value, (torch.Tensor, np.ndarray, str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"Invalid value for argument `{argument}`: expected {expected}. Received: {argument}={echo(value)}")
    return list(value)


def describe_variable(variable: torch.Tensor, index: int) -> str:
    """How messages name a variable: its Keras ``path`` or ``name`` when it has one, else its index and shape.

    >>> describe_variable(torch.nn.Parameter(torch.zeros(2, 3)), 0)
    'variable 0 of shape (2, 3)'
    """
    for attribute in ("path", "name"):
        label = getattr(variable, attribute, None)
        if isinstance(label, str) and label:
            return label
    return f"variable {index} of shape {tuple(variable.shape)}"


def check_variables(variables: Any, argument: str = "trainable_variables") -> list[torch.Tensor]:
    """``variables`` as a list of distinct floating-point leaf tensors (Parameters), else a named error.

    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> len(check_variables((w,)))
    1
    >>> check_variables([w, 3.0])
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `trainable_variables`: item 1 must be a torch.nn.Parameter (a floating-point leaf tensor). Received: 3.0
    """
    items = _sequence(variables, argument, "a list of torch.nn.Parameter (the variables to update)")
    seen: set[int] = set()
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor) or not item.is_leaf or not (item.is_floating_point() or item.is_complex()):
            raise TypeError(
                f"Invalid value for argument `{argument}`: item {index} must be a torch.nn.Parameter (a "
                f"floating-point leaf tensor). Received: {echo(item)}"
            )
        if id(item) in seen:
            raise ValueError(
                f"Invalid value for argument `{argument}`: item {index} ({describe_variable(item, index)}) appears "
                "more than once; each variable can take one gradient per update."
            )
        seen.add(id(item))
    return items


def check_gradients(grads: Any, variables: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """``grads`` checked one to one against ``variables``: ``None`` or a tensor (or array) of the variable's shape.

    Each gradient comes back detached, in its variable's dtype and on its device
    (the same tensor when it already is). A gradient that is not a tensor,
    or is not floating-point where its variable is, is a ``TypeError``; a
    count or shape that does not match is a ``ValueError``.

    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> check_gradients([torch.ones(2, dtype=torch.float64)], [w])[0].dtype
    torch.float32
    >>> check_gradients([torch.ones(3)], [w])
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `grads`: gradient 0 has shape (3,), but its variable (variable 0 of shape (2,)) has shape (2,). Received: grads[0]=tensor([1., 1., 1.]) of shape (3,) and dtype float32
    """
    items = _sequence(grads, "grads", "a list of gradient tensors (or None), one per variable")
    if len(items) != len(variables):
        raise ValueError(
            f"Invalid value for argument `grads`: expected one gradient per variable, {len(variables)} in all. "
            f"Received a list of {len(items)} gradients."
        )
    checked: list[torch.Tensor | None] = []
    for index, (grad, variable) in enumerate(zip(items, variables)):
        if grad is None:
            checked.append(None)
            continue
        if isinstance(grad, np.ndarray) and grad.dtype.kind in "fc":
            grad = torch.from_numpy(grad)
        name = describe_variable(variable, index)
        if not isinstance(grad, torch.Tensor) or not (grad.is_floating_point() or grad.is_complex()) \
                or (grad.is_complex() and not variable.is_complex()):
            kind = "complex or floating-point" if variable.is_complex() else "floating-point"
            raise TypeError(
                f"Invalid value for argument `grads`: gradient {index} (for {name}) must be a {kind} tensor or "
                f"None. Received: grads[{index}]={echo(grad)}"
            )
        if tuple(grad.shape) != tuple(variable.shape):
            raise ValueError(
                f"Invalid value for argument `grads`: gradient {index} has shape {tuple(grad.shape)}, but its "
                f"variable ({name}) has shape {tuple(variable.shape)}. Received: grads[{index}]={echo(grad)}"
            )
        checked.append(grad.detach().to(dtype=variable.dtype, device=variable.device))
    return checked


def split_pairs(grads_and_vars: Any) -> tuple[list[Any], list[Any]]:
    """``(grads, variables)`` from an iterable of ``(gradient, variable)`` pairs, such as ``zip(grads, vars)``.

    >>> split_pairs(zip([1, 2], ["a", "b"]))
    ([1, 2], ['a', 'b'])
    """
    items = _sequence(grads_and_vars, "grads_and_vars", "an iterable of (gradient, variable) pairs")
    grads, variables = [], []
    for index, pair in enumerate(items):
        if isinstance(pair, (torch.Tensor, np.ndarray, str, bytes)) or not isinstance(pair, Iterable) \
                or len(pair := tuple(pair)) != 2:
            raise TypeError(
                f"Invalid value for argument `grads_and_vars`: item {index} must be a (gradient, variable) pair. "
                f"Received: {echo(pair)}"
            )
        grads.append(pair[0])
        variables.append(pair[1])
    return grads, variables
