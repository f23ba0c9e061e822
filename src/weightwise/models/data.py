"""Turning what ``fit``/``evaluate``/``predict`` receive into batches of ``(x, y, sample_weight)``.

Arrays, tensors and nested lists/dicts of them are batched here (Keras's order,
shuffling and ``validation_split``); a ``Dataset`` gets a ``DataLoader``; a
``DataLoader`` (or any iterable of batches) is used as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from weightwise import ops
from weightwise.layers.symbolic import flatten, map_structure

__all__ = ["Batches", "make_batches", "single_batch", "split_for_validation", "to_device"]

Batch = tuple[Any, Any, Any]


def _tensor(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value
    return ops.convert_to_tensor(np.asarray(value))


def to_device(structure: Any, device: torch.device) -> Any:
    """Move every tensor in ``structure`` to ``device`` (non-blocking where possible)."""
    return map_structure(lambda t: t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t, structure)


def _num_samples(x: Any, y: Any, sample_weight: Any) -> int:
    sizes = {}
    for role, value in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for leaf in flatten(value) if value is not None else []:
            sizes.setdefault(role, set()).add(int(leaf.shape[0]) if leaf.dim() else 1)
    every = set().union(*sizes.values()) if sizes else set()
    if len(every) > 1:
        detail = ", ".join(f"{role} sizes: {sorted(s)}" for role, s in sizes.items())
        raise ValueError(
            f"Data cardinality is ambiguous: make sure all arrays contain the same number of samples. {detail}"
        )
    if not every:
        raise ValueError("No data: `x` is empty or None.")
    return every.pop()


def class_weights_to_sample_weights(y: Any, class_weight: Mapping[int, float]) -> torch.Tensor:
    """Per-sample weights ``class_weight[label]``; labels are class indices or one-hot rows (argmax)."""
    if not isinstance(class_weight, Mapping):
        raise ValueError(f"`class_weight` must be a dict of class index to weight. Received: class_weight={class_weight!r}")
    leaves = flatten(y)
    if len(leaves) != 1:
        raise ValueError("`class_weight` is only supported for models with a single output.")
    labels = leaves[0]
    if labels.dim() > 1 and labels.shape[-1] > 1:
        labels = labels.argmax(dim=-1)
    labels = labels.reshape(labels.shape[0], -1)[:, 0].long()
    missing = sorted(set(labels.unique().tolist()) - set(int(k) for k in class_weight))
    if missing:
        raise ValueError(f"`class_weight` has no entry for classes {missing} present in `y`.")
    table = torch.zeros(int(max(max(class_weight), labels.max().item())) + 1)
    for key, weight in class_weight.items():
        table[int(key)] = float(weight)
    return table[labels]


class Batches:
    """Re-iterable batches of ``(x, y, sample_weight)``; ``len()`` is the batches per epoch, if known."""

    def __init__(self, source: Any, steps: int | None, from_arrays: bool) -> None:
        self._source = source
        self._steps = steps
        self.from_arrays = from_arrays

    def __len__(self) -> int:
        if self._steps is not None:
            return self._steps
        return len(self._source)

    def __iter__(self) -> Iterator[Batch]:
        for index, item in enumerate(self._source):
            if self._steps is not None and index >= self._steps:
                return
            yield _unpack(item)

    def has_length(self) -> bool:
        return self._steps is not None or hasattr(self._source, "__len__")


def _unpack(item: Any) -> Batch:
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        x, y, sw = (tuple(item) + (None, None))[:3]
        return x, y, sw
    if isinstance(item, (torch.Tensor, np.ndarray, Mapping)):
        return item, None, None
    raise ValueError(
        "Each batch of a DataLoader or dataset must be `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`, with "
        f"tensors, arrays, or lists/dicts of them. Received an element of type {type(item).__name__}: {_short(item)}"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


class _ArrayBatches:
    def __init__(self, x: Any, y: Any, sample_weight: Any, batch_size: int, shuffle: bool) -> None:
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.n = _num_samples(x, y, sample_weight)
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(self.n) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]

            def take(structure: Any, index: Any = index) -> Any:
                return None if structure is None else map_structure(lambda t: t[index], structure)

            yield take(self.x), take(self.y), take(self.sample_weight)


def _is_loader(x: Any) -> bool:
    return isinstance(x, (torch.utils.data.DataLoader, torch.utils.data.Dataset)) or (
        isinstance(x, Iterable) and not isinstance(x, (np.ndarray, torch.Tensor, list, tuple, Mapping, str))
    )


def make_batches(
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    batch_size: int | None = None,
    shuffle: bool = False,
    class_weight: Mapping[int, float] | None = None,
    steps: int | None = None,
) -> Batches:
    """Batches for one pass over the data (arrays are re-shuffled on each iteration when asked)."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(f"Invalid value for argument `batch_size`: expected a positive int. Received: batch_size={batch_size!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        raise ValueError(f"Invalid value for argument `steps`: expected a positive int. Received: {steps!r}")
    if x is None:
        raise ValueError("`x` is required: pass arrays, tensors, a Dataset or a DataLoader.")
    if _is_loader(x):
        if y is not None or sample_weight is not None:
            raise ValueError("When `x` is a Dataset or DataLoader, `y` and `sample_weight` come from it; do not pass them.")
        if class_weight is not None:
            raise ValueError("`class_weight` is only supported with array or tensor data.")
        if isinstance(x, torch.utils.data.Dataset) and not isinstance(x, torch.utils.data.IterableDataset):
            x = torch.utils.data.DataLoader(x, batch_size=batch_size or 32, shuffle=shuffle)
        return Batches(x, steps, from_arrays=False)
    x = map_structure(_tensor, x)
    y = map_structure(_tensor, y) if y is not None else None
    sample_weight = _tensor(sample_weight)
    if class_weight is not None:
        if y is None:
            raise ValueError("`class_weight` needs targets `y`.")
        weights = class_weights_to_sample_weights(y, class_weight)
        sample_weight = weights if sample_weight is None else sample_weight * weights
    return Batches(_ArrayBatches(x, y, sample_weight, batch_size or 32, shuffle), steps, from_arrays=True)


def single_batch(x: Any, y: Any, sample_weight: Any, class_weight: Mapping[int, float] | None) -> Batch:
    """``(x, y, sample_weight)`` as tensors for one batch, checked like a full dataset."""
    if _is_loader(x):
        raise ValueError("A single batch must be arrays or tensors, not a Dataset or DataLoader.")
    x = map_structure(_tensor, x)
    y = map_structure(_tensor, y) if y is not None else None
    sample_weight = _tensor(sample_weight)
    _num_samples(x, y, sample_weight)
    if class_weight is not None:
        weights = class_weights_to_sample_weights(y, class_weight)
        sample_weight = weights if sample_weight is None else sample_weight * weights
    return x, y, sample_weight


def split_for_validation(x: Any, y: Any, sample_weight: Any, validation_split: float) -> tuple[Any, Any]:
    """Keras's ``validation_split``: the last fraction of the samples, taken before any shuffling."""
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ValueError(
            f"Invalid value for argument `validation_split`: expected a float in [0, 1). "
            f"Received: validation_split={validation_split!r}"
        )
    if _is_loader(x):
        raise ValueError("`validation_split` is only supported for arrays and tensors; pass `validation_data` instead.")
    x = map_structure(_tensor, x)
    y = map_structure(_tensor, y) if y is not None else None
    sample_weight = _tensor(sample_weight)
    n = _num_samples(x, y, sample_weight)
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at in (0, n):
        raise ValueError(f"`validation_split`={validation_split} leaves no samples on one side (of {n} samples).")

    def part(structure: Any, index: slice) -> Any:
        return None if structure is None else map_structure(lambda t: t[index], structure)

    train = (part(x, slice(0, split_at)), part(y, slice(0, split_at)), part(sample_weight, slice(0, split_at)))
    val = (part(x, slice(split_at, None)), part(y, slice(split_at, None)), part(sample_weight, slice(split_at, None)))
    return train, val
