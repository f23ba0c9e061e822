"""Weights in torch's own format (``torch.save(state_dict)``), what ``Model.save_weights`` writes
for a name that does not end in ``.weights.h5``.

Both directions follow the same rules as Keras's formats: the write is atomic and
behaves like a plain write (:mod:`weightwise.saving.files`); the read opens only a
regular file, unpickles nothing but tensors (``weights_only=True``), and checks every
entry's name, shape and dtype before any weight changes.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import torch

from weightwise.callbacks._ranks import written_by_rank_0
from weightwise.saving.files import (
    atomic_write,
    check_target,
    open_regular,
    stream_size,
)
from weightwise.saving.weights_h5 import cast_to, check_module, slot_state

__all__ = ["load_torch_weights", "save_torch_weights"]


def _check_archive(stream: Any, label: str) -> None:
    """Refuse anything but torch's zip format with members no larger than the file: torch allocates
    each tensor's storage at its declared size before reading it."""
    size = stream_size(stream) or 0
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise ValueError(
            f"{label!r} is not a torch weights file in torch's zip format (what `save_weights` writes for a name "
            f"not ending in `.weights.h5`); it is truncated, corrupted or of another format: {error}"
        ) from error
    for member in members:
        if member.file_size > size or member.compress_size > size:
            raise ValueError(
                f"{label!r} is damaged: member {member.filename!r} declares {member.file_size} bytes, more than the "
                f"whole file ({size} bytes)."
            )
    stream.seek(0)


def _with_rule_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state``, where it lacks the state a rule keeps with a weight (an L2SP reference, saved
    by pretrained weights from a model without L2SP), given that weight's value from ``state``."""
    filled = dict(state)
    for prefix, module in model.named_modules():
        for name in list(module._parameters):
            for key, _ in slot_state(module, name):
                key, weight = f"{prefix}.{key}" if prefix else key, f"{prefix}.{name}" if prefix else name
                if key not in filled and weight in filled:
                    filled[key] = filled[weight]
    return filled


@written_by_rank_0
def save_torch_weights(model: torch.nn.Module, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Write ``model.state_dict()`` to ``filepath`` with ``torch.save``, atomically.

    >>> import os, tempfile
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
    >>> save_torch_weights(model, path)
    >>> sorted(torch.load(path, weights_only=True))
    ['0.bias', '0.kernel']
    """
    path = check_target(filepath, overwrite)
    state = check_module(model).state_dict()
    with atomic_write(path) as stream:
        torch.save(state, stream)


def load_torch_weights(model: torch.nn.Module, filepath: str | os.PathLike[str]) -> None:
    """Load a state dict written by :func:`save_torch_weights` into ``model``; all or nothing.

    Every name must match (a file without the state a rule keeps with a weight, such as
    an ``L2SP`` reference, gives it that weight's value), and every tensor have its weight's shape and a dtype
    that casts to the weight's as :func:`~weightwise.saving.weights_h5.cast_to`
    says, else a ``ValueError`` lists each problem and no weight changes.

    >>> import os, tempfile
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
    >>> save_torch_weights(model, path)
    >>> twin = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> load_torch_weights(twin, path)
    >>> torch.equal(twin.layers[0].kernel, model.layers[0].kernel)
    True
    """
    check_module(model)
    with open_regular(filepath) as stream:
        label = os.fspath(filepath)
        _check_archive(stream, label)
        try:
            state = torch.load(stream, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError,
                KeyError, AttributeError, TypeError, IndexError) as error:
            raise ValueError(
                f"{label!r} is not a torch weights file (one written by `save_weights` with a name not ending in "
                f"`.weights.h5`); it is truncated, corrupted or of another format: {type(error).__name__}: "
                f"{str(error)[:300]}"
            ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{label!r} does not hold a state dict of tensors. Received: {type(state).__name__}")
    current = model.state_dict(keep_vars=True)
    state = _with_rule_state(model, state)
    missing, unexpected = sorted(set(current) - set(state)), sorted(map(str, set(state) - set(current)))
    problems = []
    values = {}
    for key, tensor in current.items():
        if key not in state:
            continue
        if tuple(state[key].shape) != tuple(tensor.shape):
            problems.append(f"{key!r}: expected shape {tuple(tensor.shape)}, file has {tuple(state[key].shape)}")
            continue
        value = cast_to(state[key], tensor)
        if isinstance(value, str):
            problems.append(f"{key!r}: {value}")
        else:
            values[key] = value
    if missing or unexpected or problems:
        raise ValueError(
            f"The weights in {label!r} do not fit model {getattr(model, 'name', type(model).__name__)!r}; no weight "
            f"was changed. Missing: {missing}; unexpected: {unexpected}; mismatches: {problems}"
        )
    with torch.no_grad():
        for key, value in values.items():
            current[key].copy_(value)
