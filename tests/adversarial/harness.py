"""The adversarial suite's single contract, shared by every case.

A case feeds the public API something hostile and must end in one of two outcomes:

- **a correct result**, checked by the case (against NumPy, Keras or a stated rule); or
- **a clear error**: a ``ValueError`` or ``TypeError`` (or the OS error a file operation
  owes, such as ``PermissionError``) whose message names the argument and echoes the
  value, with the state the case names (modules, optimizers, tensors, files) exactly
  as it was before the call.

Anything else (another exception, NaN, a silent wrong answer, a half-applied change)
fails the test. The suite's ``conftest.py`` tallies the outcomes and prints them.
"""

from __future__ import annotations

import copy
import math
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
import torch

OUTCOMES: Counter[str] = Counter()

CLEAR_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError)

# Attributes that legitimately change on any call (caches, last-call records), never user-visible state.
_VOLATILE = ("_engine_plan", "_call_losses", "_forward_plan", "_symbolic_cache")


def _module_state(module: torch.nn.Module) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for prefix, owner in module.named_modules(remove_duplicate=False):
        for kind in ("_parameters", "_buffers"):
            for name, tensor in getattr(owner, kind).items():
                key = f"{prefix}.{name}" if prefix else name
                if tensor is None:
                    state[f"{kind}:{key}"] = None
                    continue
                state[f"{kind}:{key}"] = (
                    id(tensor), tensor.detach().clone(), tensor.dtype, tensor.requires_grad,
                    None if tensor.grad is None else tensor.grad.detach().clone(),
                )
        attributes = {}
        for name, value in vars(owner).items():
            if name in ("_parameters", "_buffers", "_modules") or name.startswith(_VOLATILE):
                continue
            attributes[name] = _attribute(value)
        state[f"attrs:{prefix}"] = attributes
        state[f"modules:{prefix}"] = {name: id(child) for name, child in owner._modules.items()}
    return state


def _attribute(value: Any) -> Any:
    """A comparable stand-in: plain values by value, containers by their items, objects by identity."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, complex)):
        return value
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_attribute(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), _attribute(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), value.detach().clone())
    if isinstance(value, np.ndarray):
        return ("ndarray", id(value), value.copy())
    return ("object", id(value))


def _optimizer_state(optimizer: Any) -> Any:
    torch_optimizer = getattr(optimizer, "torch_optimizer", optimizer)
    parts: dict[str, Any] = {"attrs": {k: _attribute(v) for k, v in vars(optimizer).items()}}
    if isinstance(torch_optimizer, torch.optim.Optimizer):
        parts["torch"] = copy.deepcopy(torch_optimizer.state_dict())
    return parts


def _file_state(path: str) -> Any:
    if not os.path.lexists(path):
        return None
    info = os.lstat(path)
    state: dict[str, Any] = {"mode": stat.S_IMODE(info.st_mode), "type": stat.S_IFMT(info.st_mode)}
    if os.path.islink(path):
        state["link"] = os.readlink(path)
    if os.path.isfile(path):
        with open(path, "rb") as stream:
            state["bytes"] = stream.read()
    directory = os.path.dirname(os.path.abspath(path))
    state["siblings"] = sorted(os.listdir(directory)) if os.access(directory, os.R_OK | os.X_OK) else None
    return state


def snapshot(*objects: Any) -> list[Any]:
    """What each object holds, deeply copied: modules, optimizers, tensors, arrays, file paths, or a
    zero-argument callable that returns a comparable value."""
    states = []
    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            states.append(("module", _module_state(obj)))
        elif isinstance(obj, torch.optim.Optimizer) or hasattr(obj, "torch_optimizer"):
            states.append(("optimizer", _optimizer_state(obj)))
        elif isinstance(obj, torch.Tensor):
            states.append(("tensor", obj.detach().clone(), obj.dtype, obj.shape))
        elif isinstance(obj, np.ndarray):
            states.append(("ndarray", obj.copy()))
        elif isinstance(obj, (str, os.PathLike)):
            states.append(("file", _file_state(os.fspath(obj))))
        elif callable(obj):
            states.append(("value", copy.deepcopy(obj())))
        else:
            raise TypeError(f"snapshot cannot record {type(obj).__name__}")
    return states


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and a.device == b.device
                and (a.is_meta or bool(torch.equal(a, b) or torch.equal(torch.isnan(a), torch.isnan(b))
                                       and torch.equal(a.nan_to_num(), b.nan_to_num()))))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _differences(before: Any, after: Any, path: str = "") -> Iterable[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=repr):
            if key not in before or key not in after:
                yield f"{path}/{key}: {'added' if key in after else 'removed'}"
            elif not _equal(before[key], after[key]):
                yield from _differences(before[key], after[key], f"{path}/{key}")
    elif isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) and len(before) == len(after):
        for index, (x, y) in enumerate(zip(before, after)):
            if not _equal(x, y):
                yield from _differences(x, y, f"{path}[{index}]")
    else:
        yield f"{path}: {before!r:.200} -> {after!r:.200}"


def assert_unchanged(before: list[Any], after: list[Any]) -> None:
    """Fail naming every piece of state that differs."""
    if not _equal(before, after):
        raise AssertionError("state changed by a call that raised:\n  " + "\n  ".join(_differences(before, after)))


def clear_error(
    call: Callable[[], Any],
    *fragments: str,
    state: Iterable[Any] = (),
    errors: tuple[type[BaseException], ...] = CLEAR_ERRORS,
) -> BaseException:
    """Assert that ``call()`` raises one of ``errors`` whose message holds every fragment,
    and that every object in ``state`` is as it was. Returns the error.

    Fragments are the argument's name and the echoed value (case-sensitive substrings).
    """
    state = list(state)
    before = snapshot(*state)
    with pytest.raises(errors) as info:
        call()
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"{type(info.value).__name__} message lacks {missing}: {message}"
    assert_unchanged(before, snapshot(*state))
    OUTCOMES["clear error"] += 1
    return info.value


def correct(call: Callable[[], Any], check: Callable[[Any], Any]) -> Any:
    """Assert that ``call()`` returns a result that ``check`` accepts (``check`` asserts, or returns
    False to reject). Returns the result."""
    result = call()
    verdict = check(result)
    assert verdict is None or verdict is True, f"rejected result: {result!r:.300}"
    OUTCOMES["correct result"] += 1
    return result


def finite(x: Any) -> bool:
    """Whether every value of a tensor (and its gradient, if any) is finite."""
    x = torch.as_tensor(x)
    return bool(torch.isfinite(x).all())
