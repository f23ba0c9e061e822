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
- then, in weightwise's files only, the state that rules bound to those weights keep
  with them (an ``L2SP`` reference; see :func:`rule_state`), counted by the group's
  attribute ``rule_state``. A layer without such rules is stored exactly as Keras
  stores it. Loading matches the weights first; rule state loads when the file holds
  the same, takes its weight's loaded value when the file holds none, and is left
  unread when the model has no rules to keep it;
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
import math
import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch

from weightwise import binding
from weightwise.layers import Layer
from weightwise.ops import (
    convert_to_numpy,  # bfloat16 becomes float32; loading casts back to the weight's dtype
)
from weightwise.optimizers import TorchOptimizer
from weightwise.saving.files import open_regular
from weightwise.serialization import to_snake_case

__all__ = ["cast_to", "check_module", "read_weights", "rule_state", "slot_state", "weight_entries", "write_weights"]

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


def check_module(model: Any) -> torch.nn.Module:
    """``model``, or a ``TypeError`` naming the argument if it is not a ``torch.nn.Module``.

    >>> check_module("model.keras")
    Traceback (most recent call last):
    ...
    TypeError: Invalid type for argument `model`: expected a model (a torch.nn.Module). Received: model='model.keras'
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"Invalid type for argument `model`: expected a model (a torch.nn.Module). Received: model={model!r:.200}"
        )
    return model


def rule_state(layer: Layer) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """What the rules bound to ``layer``'s own weights keep with them, saved after those weights.

    A rule keeps such state (``L2SP``'s reference) by defining ``saved_tensors()``, which
    returns ``(name, tensor)`` pairs. Returned here as ``(name, tensor, weight)`` in the
    order of the weights, regularizer before constraint.

    >>> import torch
    >>> from weightwise import layers
    >>> from weightwise.regularizers import L2SP
    >>> dense = layers.Dense(2, kernel_regularizer=L2SP(), input_dim=3)
    >>> [(name, weight.name) for name, _, weight in rule_state(dense)]
    [('kernel_l2sp_reference', 'kernel')]
    """
    names = {id(p): n for n, p in layer._parameters.items() if p is not None}
    return [(name, tensor, weight) for weight in layer._own_weights()
            for name, tensor in slot_state(layer, names[id(weight)])]


def slot_state(module: torch.nn.Module, name: str) -> list[tuple[str, torch.Tensor]]:
    """The ``(name, tensor)`` pairs that the rules bound to ``module``'s weight ``name`` keep with it.

    >>> import torch
    >>> from weightwise.regularizers import L2SP
    >>> linear = torch.nn.Linear(2, 1)
    >>> binding.bind(linear, "weight", regularizer=L2SP())
    >>> [key for key, _ in slot_state(linear, "weight")], slot_state(linear, "bias")
    (['weight_l2sp_reference'], [])
    """
    rule = binding.rule_of(module, name)
    state = []
    for kind in (rule.regularizer, rule.constraint) if rule is not None else ():
        saved = getattr(kind, "saved_tensors", None)
        if callable(saved):
            state.extend(saved())
    return state


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
        entries.append((path, obj.name, list(obj._own_weights()) + [t for _, t, _ in rule_state(obj)]))
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
    belongs = _rule_state_owners(model)
    with h5py.File(target, "w") as handle:
        for path, name, tensors in weight_entries(model):
            group = handle.create_group(_join(path, "vars"))
            group.attrs["name"] = name
            stored = sum(id(t) in belongs for t in tensors)
            if stored:  # only then: other layers' groups stay exactly as Keras writes them
                group.attrs[_RULE_STATE] = stored
            for index, tensor in enumerate(tensors):
                group.create_dataset(str(index), data=convert_to_numpy(tensor))
        if optimizer is not None and getattr(optimizer, "built", False):
            _write_optimizer_state(handle, "optimizer/vars", optimizer)
            inner = getattr(optimizer, "inner_optimizer", None)
            if inner is not None and getattr(inner, "built", False):
                # Keras writes a wrapped optimizer's variables (LossScaleOptimizer's) again under its own path.
                _write_optimizer_state(handle, "optimizer/inner_optimizer/vars", inner)
            _write_torch_state(handle, optimizer)


def _write_optimizer_state(handle: h5py.File, path: str, optimizer: Any) -> None:
    state: dict[str, Any] = {}
    optimizer.save_own_variables(state)
    group = handle.create_group(path)
    group.attrs["name"] = optimizer.name
    for key, value in state.items():
        group.create_dataset(key, data=np.asarray(value))


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


def _undo_record(optimizer: Any) -> Any:
    """A function that puts ``optimizer`` (and its torch optimizer) back exactly as it is now.

    Loading replaces attributes, per-parameter state dicts and the tensors in them; it
    never changes a tensor in place, so keeping the objects and their contents is enough.
    """
    saved = dict(vars(optimizer))
    torch_optimizer = getattr(optimizer, "torch_optimizer", None)
    torch_saved = None
    if isinstance(torch_optimizer, torch.optim.Optimizer):
        torch_saved = (
            dict(vars(torch_optimizer)),
            [(param, entries, dict(entries)) for param, entries in torch_optimizer.state.items()],
            [(group, dict(group)) for group in torch_optimizer.param_groups],
        )

    def undo() -> None:
        vars(optimizer).clear()
        vars(optimizer).update(saved)
        if torch_saved is not None:
            attributes, states, groups = torch_saved
            vars(torch_optimizer).clear()
            vars(torch_optimizer).update(attributes)
            torch_optimizer.state.clear()
            for param, entries, contents in states:
                entries.clear()
                entries.update(contents)
                torch_optimizer.state[param] = entries
            for group, contents in groups:
                group.clear()
                group.update(contents)

    return undo


def _torch_state_skipped(label: str, why: str) -> str:
    return (f"{label!r}: the stored torch optimizer state does not fit this optimizer ({why}); the state converted "
            "from Keras's layout is used instead.")


def _apply_torch_state(arrays: dict[str, np.ndarray], optimizer: Any, label: str) -> list[str]:
    """Set the torch optimizer's state from ``optimizer/torch_state``; a layout that does not fit
    leaves the state converted from Keras's layout in place, with a warning."""
    torch_optimizer = getattr(optimizer, "torch_optimizer", None)
    if not arrays or torch_optimizer is None:
        return []
    current = torch_optimizer.state_dict()
    state = current["state"]
    updates: list[tuple[int, str, Any]] = []
    for name, value in arrays.items():
        index_text, _, key = name.partition(".")
        index = int(index_text) if index_text.isdecimal() and len(index_text) < 10 else -1
        if index not in state or key not in state[index]:
            return [_torch_state_skipped(label, f"{name!r} names no state of this optimizer")]
        present = state[index][key]
        expected = tuple(present.shape) if isinstance(present, torch.Tensor) else ()
        converted: Any = None
        if value.shape == expected:
            if isinstance(present, torch.Tensor):
                converted = cast_to(value, present)
            elif isinstance(present, (bool, int, float)) and _kind_name(value)[0] in _ACCEPTS[_kind_of(present)]:
                converted = type(present)(value.item())
        if converted is None or isinstance(converted, str):
            return [_torch_state_skipped(label, f"{name!r} has shape {value.shape} and dtype {value.dtype}, where the "
                                                f"optimizer's has shape {expected} ({type(present).__name__})")]
        updates.append((index, key, converted))
    # New dicts: the live state is replaced by load_state_dict, never edited in place.
    new_state = {index: dict(entries) for index, entries in state.items()}
    for index, key, value in updates:
        new_state[index][key] = value
    torch_optimizer.load_state_dict({"state": new_state, "param_groups": current["param_groups"]})
    return []


# -- reading: every object is checked from its metadata before any data is read -------------------
_MAX_SOFT_LINKS = 40
# HDF5's built-in filters and h5py's LZF; any other filter would make HDF5 load a plugin library.
_SAFE_FILTERS = frozenset({
    h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32, h5py.h5z.FILTER_SZIP,
    h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_SCALEOFFSET, h5py.h5z.FILTER_LZF,
})
# The stored kinds each kind of weight accepts: whatever casts without losing its kind (numpy kinds:
# b bool, i int, u unsigned, f float, c complex). Strings, bytes, objects and compounds never.
_ACCEPTS = {"b": "b", "i": "biu", "u": "biu", "f": "biuf", "c": "biufc"}


def _kind_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        dtype = value.dtype
        if dtype == torch.bool:
            return "b"
        if dtype.is_complex:
            return "c"
        if dtype.is_floating_point:
            return "f"
        return "u" if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else "i"
    return "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "f"


def _hostile(label: str, path: str, why: str) -> ValueError:
    return ValueError(f"{label!r}: dataset {path!r} {why}; refusing to read it. Nothing was changed.")


def _lookup(handle: h5py.File, path: str, label: str) -> Any:
    """The object at ``path``, reached through hard links and soft links inside the file only;
    ``None`` if there is none. External links and dangling or looping soft links are refused."""
    parts = [part for part in path.split("/") if part]
    node: Any = handle["/"]
    hops = 0
    while parts:
        part = parts.pop(0)
        if not isinstance(node, h5py.Group):
            raise ValueError(f"{label!r}: {path!r} passes through {node.name!r}, which is not a group.")  # noqa: TRY004
        link = node.get(part, getlink=True)
        if link is None:
            if hops:
                raise _hostile(label, path, "is reached through a soft link that points to nothing in the file")
            return None
        if isinstance(link, h5py.HardLink):
            node = node[part]
        elif isinstance(link, h5py.SoftLink):
            hops += 1
            if hops > _MAX_SOFT_LINKS:
                raise _hostile(label, path, f"is reached through more than {_MAX_SOFT_LINKS} soft links (a loop)")
            base = [] if link.path.startswith("/") else [p for p in node.name.split("/") if p]
            parts = base + [p for p in link.path.split("/") if p] + parts
            node = handle["/"]
        elif isinstance(link, h5py.ExternalLink):
            raise _hostile(label, path, f"is an external link to {link.path!r} in the file {link.filename!r}")
        else:
            raise _hostile(label, path, f"is reached through a link of an unknown kind ({type(link).__name__})")
    return node


def _checked_dataset(handle: h5py.File, path: str, label: str, kinds: str, limit: int | None = None) -> h5py.Dataset:
    """The dataset at ``path`` once its storage is known to be inside the file, its dtype one of
    ``kinds`` and, given a ``limit``, its size within it; nothing is read."""
    dataset = _lookup(handle, path, label)
    if not isinstance(dataset, h5py.Dataset):
        found = "missing (a damaged file)" if dataset is None else f"a {type(dataset).__name__.lower()}"
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r}: {path!r} must be a dataset of numbers, but is {found}."
        )
    if dataset.is_virtual:
        raise _hostile(label, path, "is a virtual dataset, whose data lives in other datasets or files")
    plist = dataset.id.get_create_plist()
    if plist.get_external_count():
        files = [plist.get_external(i)[0].decode(errors="replace") for i in range(plist.get_external_count())]
        raise _hostile(label, path, f"keeps its data outside the file (external storage in {files})")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(code not in _SAFE_FILTERS for code in filters):
        raise _hostile(label, path, f"uses HDF5 filters {filters}, some of which would load a plugin")
    if dataset.shape is None:
        raise _hostile(label, path, "has no dataspace (an empty, shapeless dataset)")
    dtype = dataset.dtype
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise _hostile(label, path, f"holds values of dtype {dtype}, not numbers")
    if limit is not None and math.prod(dataset.shape) > limit:
        raise _hostile(label, path, f"declares shape {dataset.shape}, more than any state of this model holds "
                                    f"({limit} values)")
    return dataset


def _numbered(handle: h5py.File, group_path: str, label: str) -> list[str] | None:
    """The paths ``group_path/0``, ``/1``, ... in order; ``None`` if there is no such group."""
    group = _lookup(handle, group_path, label)
    if group is None:
        return None
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{label!r}: {group_path!r} is not a group of weights.")  # noqa: TRY004
    # A damaged name may come back as bytes; it then matches no number.
    keys = sorted((str(k) for k in group), key=lambda k: (len(k), k))
    if keys != [str(i) for i in range(len(keys))]:
        raise ValueError(f"{label!r}: the weights under {group_path!r} are not numbered 0..n-1: {keys[:20]}.")
    return [f"{group_path}/{key}" for key in keys]


def _read(dataset: h5py.Dataset, path: str, label: str) -> np.ndarray:
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, OverflowError) as error:
        raise ValueError(f"{label!r} is damaged: reading {path!r} failed ({error}).") from error


def _numpy_kind(dtype: np.dtype) -> str:
    """The numpy kind of a plain numeric ``dtype`` that torch can hold, else ``"?"``."""
    plain = dtype.fields is None and dtype.subdtype is None and dtype.kind in "biufc"
    # Wider floats than float64 (long double) have no torch dtype.
    if not plain or (dtype.kind in "fc" and dtype.itemsize > (8 if dtype.kind == "f" else 16)):
        return "?"
    return dtype.kind


def _kind_name(value: np.ndarray | torch.Tensor) -> tuple[str, str]:
    """The numpy kind of ``value``'s dtype and the dtype's name."""
    if isinstance(value, torch.Tensor):
        return _kind_of(value), str(value.dtype).replace("torch.", "")
    return _numpy_kind(value.dtype), str(value.dtype)


def cast_to(value: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor | str:
    """``value`` as a tensor of ``like``'s dtype and device, or why it does not fit.

    A value casts when it keeps its kind (bool into anything, an int into an int or
    a float, a float into a float, anything numeric into a complex) and every value
    stays in range: an int within the integer dtype, a finite float finite.

    >>> cast_to(np.array([1.5], dtype=np.float64), torch.zeros(1))
    tensor([1.5000])
    >>> cast_to(np.array([1 + 2j]), torch.zeros(1))
    'complex128 does not cast to float32 without losing values'
    """
    kind, name = _kind_name(value)
    target = _kind_of(like)
    dtype = like.dtype
    if kind not in _ACCEPTS[target]:
        return f"{name} does not cast to {str(dtype).replace('torch.', '')} without losing values"
    if isinstance(value, torch.Tensor):
        source = value.detach().clone()
    else:  # torch reads native byte order only; HDF5 files may hold big-endian data
        source = torch.from_numpy(np.asarray(value).astype(value.dtype.newbyteorder("="), copy=False))
    if target in "iu":
        info = torch.iinfo(dtype)
        # numpy has min and max for every integer dtype, torch not for uint16..uint64.
        ints = value if isinstance(value, np.ndarray) else source.cpu().numpy()
        if ints.size and kind != "b" and (int(ints.min()) < info.min or int(ints.max()) > info.max):
            return f"values in [{ints.min()}, {ints.max()}] are beyond the range of {dtype}"
        return source.to(dtype=dtype, device=like.device)
    if target == "b":
        return source.to(device=like.device)
    result = source.to(dtype=dtype)
    if _may_overflow(source.dtype, dtype) and not bool(torch.isfinite(result).all()):
        overflow = torch.isfinite(source) & ~torch.isfinite(result)
        if bool(overflow.any()):
            return f"finite values up to {float(source[overflow].abs().max())!r} overflow {dtype}"
    return result.to(device=like.device)


def _may_overflow(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether some finite value of ``source`` is beyond the range of the float (or complex) ``target``."""
    if source == torch.bool:
        return False
    largest = (torch.finfo if source.is_floating_point or source.is_complex else torch.iinfo)(source).max
    return largest > torch.finfo(target).max


def _open(source: Any, label: str) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError, RuntimeError, KeyError, OverflowError) as error:
        raise ValueError(f"{label!r} is not a readable HDF5 weights file (truncated, corrupted or another format): "
                         f"{error}") from error


@dataclass
class _Plan:
    """What a load will write, gathered from the file and checked before anything changes."""

    weights: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (weight, its new value)
    optimizer: list[np.ndarray] | None = None  # Keras's layout; None: the optimizer is left alone
    torch_state: dict[str, np.ndarray] = field(default_factory=dict)


Read = tuple[h5py.Dataset, str]  # a checked dataset and its path


def _check_weights(model: torch.nn.Module, handle: h5py.File, label: str) -> list[tuple[torch.Tensor, Read]]:
    """Each weight of ``model`` and the dataset it loads from, checked from metadata alone."""
    problems: list[str] = []
    reads: list[tuple[torch.Tensor, Read]] = []
    belongs = _rule_state_owners(model)
    for path, name, tensors in weight_entries(model):
        paths = _numbered(handle, _join(path, "vars"), label)
        where = f"layer {name!r} (path {path or '/'!r})"
        if paths is None:
            if tensors:
                problems.append(f"layer {name!r} ({path or 'the model itself'}): {len(tensors)} weights expected, "
                                "none in the file")
            continue
        datasets = [_checked_dataset(handle, p, label, "biufc") for p in paths]
        expected = [tuple(t.shape) for t in tensors]
        found = [tuple(d.shape) for d in datasets]
        pairs = _matched(tensors, list(zip(datasets, paths)), belongs, _stored_state(handle, path, label, len(paths)))
        if pairs is None:
            differ = [repr(p) for p, e, f in zip(paths, expected, found) if e != f] if len(expected) == len(found) else []
            problems.append(f"{where}: expected shapes {expected}, file has {found}"
                            + (f" (in {', '.join(differ)})" if differ else ""))
            continue
        for tensor, dataset, dataset_path in pairs:
            if _numpy_kind(dataset.dtype) not in _ACCEPTS[_kind_of(tensor)]:
                problems.append(f"{where}: {dataset_path!r} holds {dataset.dtype}, which does not cast to the "
                                f"weight's {tensor.dtype}")
            else:
                reads.append((tensor, (dataset, dataset_path)))
    _refuse(model, label, problems)
    return reads


# The attribute of a layer's ``vars`` group that counts its last datasets holding rule state.
_RULE_STATE = "rule_state"


def _rule_state_owners(model: torch.nn.Module) -> dict[int, torch.Tensor]:
    """``id`` of each tensor of rule state under ``model`` (see :func:`rule_state`) -> its weight."""
    return {id(t): w for layer in model.modules() if isinstance(layer, Layer) for _, t, w in rule_state(layer)}


def _stored_state(handle: h5py.File, path: str, label: str, count: int) -> int:
    """How many of the ``count`` datasets of a layer's group hold rule state (0 in Keras's files)."""
    try:
        value = _lookup(handle, _join(path, "vars"), label).attrs.get(_RULE_STATE, 0)
    except (OSError, TypeError, KeyError, RuntimeError) as error:
        raise ValueError(f"{label!r} is damaged: the attributes of {_join(path, 'vars')!r} are unreadable "
                         f"({error}).") from error
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value <= count:
        shown = value.item() if isinstance(value, np.generic) else value
        raise ValueError(f"{label!r} is damaged: {_join(path, 'vars')!r} says {shown!r:.100} of its {count} "
                         "datasets hold rule state.")
    return int(value)


def _matched(tensors: list[torch.Tensor], stored: list[Read], belongs: dict[int, torch.Tensor],
             stored_state: int) -> list[tuple[torch.Tensor, h5py.Dataset, str]] | None:
    """The dataset each tensor of a layer loads from, or ``None`` when the file does not fit.

    The layer's weights must match the file's. Rule state (an ``L2SP`` reference) loads
    when the file holds the same; when the file holds none (pretrained weights, a Keras
    file), each takes its weight's loaded value; state the file holds for rules this
    model does not have is left unread.
    """
    own = [t for t in tensors if id(t) not in belongs]
    state = [t for t in tensors if id(t) in belongs]
    split = len(stored) - stored_state
    if [tuple(t.shape) for t in own] != [tuple(d.shape) for d, _ in stored[:split]]:
        return None
    pairs = [(t, d, p) for t, (d, p) in zip(own, stored)]
    if [tuple(t.shape) for t in state] == [tuple(d.shape) for d, _ in stored[split:]]:
        return pairs + [(t, d, p) for t, (d, p) in zip(state, stored[split:])]
    if stored_state == 0:
        loaded = {id(t): (d, p) for t, d, p in pairs}
        return pairs + [(t, *loaded[id(belongs[id(t)])]) for t in state]
    return pairs if not state else None


def _refuse(model: torch.nn.Module, label: str, problems: list[str]) -> None:
    if problems:
        raise ValueError(
            f"The weights in {label!r} do not fit model {getattr(model, 'name', type(model).__name__)!r}; "
            "no weight was changed. " + "; ".join(problems)
        )


def _check_optimizer(handle: h5py.File, label: str, limit: int) -> tuple[list[Read], dict[str, Read]] | None:
    """The datasets of the optimizer state (Keras's layout, and the torch state), checked from metadata alone."""
    paths = _numbered(handle, "optimizer/vars", label)
    if paths is None:
        return None
    variables = [(_checked_dataset(handle, p, label, "biuf", limit), p) for p in paths]
    torch_state: dict[str, Read] = {}
    group = _lookup(handle, _TORCH_STATE, label)
    if isinstance(group, h5py.Group):
        for name in sorted(map(str, group)):
            path = f"{_TORCH_STATE}/{name}"
            torch_state[name] = (_checked_dataset(handle, path, label, "biufc", limit), path)
    return variables, torch_state


def _plan(model: torch.nn.Module, handle: h5py.File, label: str, optimizer: Any) -> _Plan:
    """Everything the load will write: every dataset checked first, then read and converted."""
    weights = _check_weights(model, handle, label)
    state = None
    if optimizer is not None:
        limit = max((t.numel() for _, _, ts in weight_entries(model) for t in ts), default=1)
        state = _check_optimizer(handle, label, max(limit, 1))
    plan = _Plan()
    problems = []
    for tensor, (dataset, path) in weights:
        value = cast_to(_read(dataset, path, label), tensor)
        if isinstance(value, str):
            problems.append(f"{path!r}: {value}")
        else:
            plan.weights.append((tensor, value))
    _refuse(model, label, problems)
    if state is not None:
        variables, torch_state = state
        plan.optimizer = [_read(dataset, path, label) for dataset, path in variables]
        plan.torch_state = {name: _read(dataset, path, label) for name, (dataset, path) in torch_state.items()}
    return plan


def _opened(source: Any) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        return open_regular(source, "source")
    if not (hasattr(source, "read") and hasattr(source, "seek")):
        raise TypeError(
            "Invalid type for argument `source`: expected a path, the file's bytes or a seekable binary stream. "
            f"Received: source={source!r:.200}"
        )
    return source


def read_weights(model: torch.nn.Module, source: Any, label: str, optimizer: Any = None) -> list[str]:
    """Load weights written in Keras's layout into ``model``, and ``optimizer``'s state; all or nothing.

    ``source`` is a path, the file's bytes or a binary stream. Everything is checked
    before anything changes, and every dataset from its metadata before its data is
    read: it must keep its data inside the file (no external storage, virtual
    dataset, external link or dangling soft link), hold numbers, and have the shape
    of its weight (optimizer state: no more values than the model's largest weight).
    A stored dtype casts to the weight's when it does not lose its kind (float64
    into float32, int or bool into float; never complex into float or float into
    int) and every value stays in range. A problem raises a ``ValueError`` naming
    the layer or dataset and both sides.

    Then the optimizer state and the weights are set together: if the optimizer
    state does not fit the optimizer (another class or configuration), the
    optimizer is left exactly as it was and a warning is returned, as Keras
    warns. Returns the warnings.

    >>> import io
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> stream = io.BytesIO()
    >>> write_weights(model, stream)
    >>> twin = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> read_weights(twin, stream.getvalue(), "in memory")
    []
    >>> bool((twin.layers[0].kernel == model.layers[0].kernel).all())
    True
    """
    check_module(model)
    opened = _opened(source)
    try:
        with _open(opened, label) as handle:
            try:
                plan = _plan(model, handle, label, optimizer)
            except (OSError, RuntimeError, KeyError, OverflowError) as error:
                raise ValueError(f"{label!r} is damaged: {error}") from error
    finally:
        if opened is not source:
            opened.close()
    warnings: list[str] = []
    undo = _undo_record(optimizer) if plan.optimizer is not None else None
    try:
        if plan.optimizer is not None:
            warnings.extend(_restore_optimizer(model, optimizer, plan, label, undo))
        with torch.no_grad():
            for tensor, value in plan.weights:
                tensor.copy_(value)
    except BaseException:
        if undo is not None:
            undo()
        raise
    return warnings


def _restore_optimizer(model: torch.nn.Module, optimizer: Any, plan: _Plan, label: str, undo: Any) -> list[str]:
    try:
        if not optimizer.built:
            optimizer.build(model.trainable_weights)
        optimizer.load_own_variables({str(i): value for i, value in enumerate(plan.optimizer or [])})
    except (ValueError, TypeError) as error:
        # As Keras does: the weights load, the optimizer stays as it was, and the user is told.
        undo()
        return [f"The optimizer state in {label!r} was not restored: {error}"]
    return _apply_torch_state(plan.torch_state, optimizer, label)
