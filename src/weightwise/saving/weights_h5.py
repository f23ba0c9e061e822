"""Weights in Keras 3's HDF5 layout (``model.weights.h5``, ``*.weights.h5``), both ways.

Keras addresses each layer by where it sits, not by its name (names are generated
and differ between two builds of the same model):

- a Sequential or functional model's layers are under ``layers/<class>``, where
  ``<class>`` is the snake_case class name, made unique in order (``dense``,
  ``dense_1``, ...);
- a layer's sublayers are under their attribute names, visited in sorted order with
  private names last, and lists of layers under ``<attr>/<class>``;
- each layer's own weights are the datasets ``<path>/vars/0``, ``1``, ...: its
  trainable weights, then its non-trainable ones; the group carries the layer's name;
- the optimizer's state is under ``optimizer/vars``.

A plain ``torch.nn.Module`` inside a model is stored like a layer, its ``state_dict``
tensors numbered in order (a layout only weightwise reads back).

>>> import io
>>> from weightwise import layers, Sequential
>>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2), layers.Dense(1)])
>>> stream = io.BytesIO()
>>> write_weights(model, stream)
>>> [path for path, _, _ in weight_entries(model)]
['', 'layers/dense', 'layers/dense_1']
"""

from __future__ import annotations

import io
from typing import Any

import h5py
import numpy as np
import torch

from weightwise.layers import Layer
from weightwise.ops import (
    convert_to_numpy,  # bfloat16 becomes float32; loading casts back to the weight's dtype
)
from weightwise.optimizers import TorchOptimizer
from weightwise.serialization import to_snake_case

__all__ = ["read_weights", "weight_entries", "write_weights"]

Entry = tuple[str, str, list[torch.Tensor]]


def _name_key(name: str) -> str:
    # Keras visits private attributes last.
    return "~" + name if name.startswith("_") else name


def _unique(name: str, used: dict[str, int]) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t for t in module.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]


def weight_entries(model: torch.nn.Module) -> list[Entry]:
    """``(path, name, tensors)`` for every layer of ``model``, in Keras's order; shared layers once."""
    entries: list[Entry] = []
    visited: set[int] = set()

    def visit(obj: torch.nn.Module, path: str) -> None:
        if id(obj) in visited:
            return
        visited.add(id(obj))
        if not isinstance(obj, Layer):
            entries.append((path, type(obj).__name__, _module_tensors(obj)))
            return
        entries.append((path, obj.name, list(obj._own_weights())))
        children: list[tuple[str, Any]] = []
        if getattr(obj, "_layers_are_positional", False):
            children.append(("layers", list(obj.layers)))
        else:
            for attr in sorted(obj._modules, key=_name_key):
                child = obj._modules[attr]
                if child is None:
                    continue
                container = isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)) or (
                    type(child) is torch.nn.Sequential)
                children.append((attr, list(child.children()) if container else child))
        for attr, child in children:
            if isinstance(child, list):
                visit_container(child, _join(path, attr))
            else:
                visit(child, _join(path, attr))

    def visit_container(items: list[Any], path: str) -> None:
        used: dict[str, int] = {}
        for item in items:
            if isinstance(item, (torch.nn.ModuleList, torch.nn.ModuleDict)):
                visit_container(list(item.children()), _join(path, _unique("container", used)))
            else:
                visit(item, _join(path, _unique(to_snake_case(type(item).__name__), used)))

    visit(model, "")
    return entries


def write_weights(model: torch.nn.Module, target: Any, optimizer: Any = None) -> None:
    """Write the weights of ``model`` (and ``optimizer``'s state, if given and built) to ``target``.

    ``target`` is a path or a binary stream.
    """
    with h5py.File(target, "w") as handle:
        for path, name, tensors in weight_entries(model):
            group = handle.create_group(_join(path, "vars"))
            group.attrs["name"] = name
            for index, tensor in enumerate(tensors):
                group.create_dataset(str(index), data=convert_to_numpy(tensor))
        if optimizer is not None and getattr(optimizer, "built", False):
            state: dict[str, Any] = {}
            optimizer.save_own_variables(state)
            group = handle.create_group("optimizer/vars")
            group.attrs["name"] = optimizer.name
            for key, value in state.items():
                group.create_dataset(key, data=np.asarray(value))
            _write_torch_state(handle, optimizer)


# Keras's variable layout keeps momentum in weight units where torch keeps it in gradient units, and
# the conversion (times the learning rate, in float32) does not invert exactly. The torch state is
# also stored as it is, in a group Keras never reads, so that training resumed in weightwise
# continues bit for bit.
_TORCH_STATE = "optimizer/torch_state"


def _write_torch_state(handle: h5py.File, optimizer: Any) -> None:
    torch_optimizer = getattr(optimizer, "torch_optimizer", None)
    if torch_optimizer is None or isinstance(optimizer, TorchOptimizer):  # its own layout is torch's state already
        return
    group = handle.create_group(_TORCH_STATE)
    for index, param_state in torch_optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            data = convert_to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
            group.create_dataset(f"{index}.{key}", data=data)


def _read_torch_state(handle: h5py.File, optimizer: Any, label: str) -> list[str]:
    torch_optimizer = getattr(optimizer, "torch_optimizer", None)
    if _TORCH_STATE not in handle or torch_optimizer is None:
        return []
    stored = handle[_TORCH_STATE]
    current = torch_optimizer.state_dict()
    state = current["state"]
    updates: list[tuple[int, str, np.ndarray]] = []
    for name in stored:
        index_text, _, key = name.partition(".")
        value = np.asarray(stored[name][()])
        if not index_text.isdigit() or int(index_text) not in state or key not in state[int(index_text)]:
            return [f"{label!r}: the stored torch optimizer state does not fit this optimizer ({name!r}); "
                    "the state converted from Keras's layout is used instead."]
        present = state[int(index_text)][key]
        if isinstance(present, torch.Tensor) and tuple(present.shape) != value.shape:
            return [f"{label!r}: the stored torch optimizer state {name!r} has shape {value.shape}, expected "
                    f"{tuple(present.shape)}; the state converted from Keras's layout is used instead."]
        updates.append((int(index_text), key, value))
    for index, key, value in updates:
        present = state[index][key]
        if isinstance(present, torch.Tensor):
            state[index][key] = torch.as_tensor(np.array(value)).to(dtype=present.dtype)
        else:
            state[index][key] = type(present)(value.item()) if isinstance(present, (int, float)) else value.item()
    torch_optimizer.load_state_dict(current)
    return []


def _open(source: Any, label: str) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as error:
        raise ValueError(f"{label!r} is not a readable HDF5 weights file (truncated, corrupted or another format): "
                         f"{error}") from error


def _group_arrays(handle: h5py.File, path: str, label: str) -> list[np.ndarray] | None:
    group_path = _join(path, "vars")
    if group_path not in handle:
        return None
    group = handle[group_path]
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{label!r}: {group_path!r} is not a group of weights.")
    keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if any(not k.isdigit() for k in keys) or keys != [str(i) for i in range(len(keys))]:
        raise ValueError(f"{label!r}: the weights under {group_path!r} are not numbered 0..n-1: {keys}.")
    try:
        return [np.asarray(group[k][()]) for k in keys]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{label!r} is damaged: reading {group_path!r} failed ({error}).") from error


def read_weights(model: torch.nn.Module, source: Any, label: str, optimizer: Any = None) -> list[str]:
    """Load weights written in Keras's layout into ``model``; all or nothing.

    Every layer's weight count and shapes are checked before any weight changes; a
    mismatch raises a ``ValueError`` naming the layer, its path in the file, and
    both sides. Returns warnings (optimizer state that could not be restored).
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    warnings: list[str] = []
    with _open(source, label) as handle:
        assignments: list[tuple[torch.Tensor, np.ndarray]] = []
        problems: list[str] = []
        for path, name, tensors in weight_entries(model):
            arrays = _group_arrays(handle, path, label)
            if arrays is None:
                if tensors:
                    problems.append(f"layer {name!r} ({path or 'the model itself'}): {len(tensors)} weights expected, "
                                    "none in the file")
                continue
            expected = [tuple(t.shape) for t in tensors]
            found = [tuple(a.shape) for a in arrays]
            if expected != found:
                problems.append(f"layer {name!r} (path {path or '/'!r}): expected shapes {expected}, file has {found}")
                continue
            assignments.extend(zip(tensors, arrays))
        if problems:
            raise ValueError(
                f"The weights in {label!r} do not fit model {getattr(model, 'name', type(model).__name__)!r}; "
                "no weight was changed. " + "; ".join(problems)
            )
        if optimizer is not None and "optimizer/vars" in handle:
            state = _group_arrays(handle, "optimizer", label) or []
            try:
                if not optimizer.built:
                    optimizer.build(model.trainable_weights)
                optimizer.load_own_variables({str(i): value for i, value in enumerate(state)})
            except (ValueError, TypeError) as error:
                warnings.append(f"The optimizer state in {label!r} was not restored: {error}")
            else:
                warnings.extend(_read_torch_state(handle, optimizer, label))
    with torch.no_grad():
        for tensor, array in assignments:
            tensor.copy_(torch.as_tensor(np.array(array)).to(device=tensor.device, dtype=tensor.dtype))
    return warnings

