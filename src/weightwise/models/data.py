"""Turning what ``fit``/``evaluate``/``predict`` receive into batches of ``(x, y, sample_weight)``.

Arrays, tensors and nested lists/dicts of them are batched here (Keras's order,
shuffling and ``validation_split``); a ``Dataset`` gets a ``DataLoader``; a
``PyDataset`` gives its own batches (shuffled in order of batches, fetched ahead by its
workers, with ``on_epoch_begin``/``on_epoch_end`` around each pass); a ``DataLoader``
(or any iterable of batches) is used as it is.

Everything is checked as it is converted, before anything trains: every leaf must hold
real numbers (not strings, objects, complex values or a meta tensor) and have a batch
axis, all leaves the same number of samples, sample weights finite and non-negative,
and ``class_weight`` a dict of class indices to finite non-negative weights. Each
error names the argument (``x``, ``y``, ``sample_weight``, ``validation_data``, ...).
"""

from __future__ import annotations

import collections
import itertools
import math
import numbers
import random
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from weightwise import ops
from weightwise.arguments import count, echo, invalid, is_int, real
from weightwise.layers.symbolic import flatten, map_structure
from weightwise.utils.data_adapter_utils import unpack_x_y_sample_weight
from weightwise.utils.py_dataset import PyDataset

__all__ = ["Batches", "make_batches", "single_batch", "split_for_validation", "to_device"]

Batch = tuple[Any, Any, Any]

# The argument names a batch's three parts are reported under.
ROLES = ("x", "y", "sample_weight")


def _tensor(value: Any, name: str) -> torch.Tensor:
    tensor = ops.argument_tensor(value, name, real=True)
    if tensor.is_meta:
        raise ValueError(
            f"Invalid value for argument `{name}`: a meta tensor holds no values to train on. "
            f"Received: {name}={echo(value)}"
        )
    return tensor


def _tensors(structure: Any, name: str) -> Any:
    """Every leaf of ``structure`` as a tensor; nested lists of plain numbers are one array."""
    if structure is None:
        return None
    if isinstance(structure, (list, tuple)) and flatten(structure) and all(
        isinstance(leaf, (numbers.Number, np.generic, str, bytes)) or leaf is None for leaf in flatten(structure)
    ):
        return _tensor(structure, name)
    return map_structure(lambda value: _tensor(value, name), structure)


def _batch(x: Any, y: Any, sample_weight: Any, roles: tuple[str, str, str] = ROLES) -> Batch:
    return _tensors(x, roles[0]), _tensors(y, roles[1]), _tensors(sample_weight, roles[2])


def to_device(structure: Any, device: torch.device) -> Any:
    """Move every tensor in ``structure`` to ``device`` (non-blocking where possible)."""
    return map_structure(lambda t: t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t, structure)


def _num_samples(x: Any, y: Any, sample_weight: Any, roles: tuple[str, str, str] = ROLES) -> int:
    """The number of samples every leaf holds (its first axis), checked to agree."""
    sizes: dict[str, set[int]] = {}
    for role, value in zip(roles, (x, y, sample_weight)):
        for leaf in flatten(value) if value is not None else []:
            if leaf.dim() == 0:
                raise ValueError(
                    f"Invalid value for argument `{role}`: every array needs a batch axis (one entry per sample). "
                    f"Received a 0-d value: {role}={echo(leaf)}"
                )
            sizes.setdefault(role, set()).add(int(leaf.shape[0]))
    every = set().union(*sizes.values()) if sizes else set()
    if len(every) > 1:
        detail = ", ".join(f"{role} sizes: {sorted(s)}" for role, s in sizes.items())
        raise ValueError(
            f"Data cardinality is ambiguous: make sure all arrays contain the same number of samples. {detail}"
        )
    if not every:
        raise ValueError(f"Invalid value for argument `{roles[0]}`: it holds no arrays. Received: {roles[0]}={echo(x)}")
    return every.pop()


def _check_sample_weight(sample_weight: Any, name: str = "sample_weight") -> None:
    """Sample weights are finite and non-negative: a NaN weight makes the loss NaN, a negative one
    trains away from the data."""
    if sample_weight is None or sample_weight.numel() == 0:
        return
    weights = sample_weight.to(torch.float64)
    bad = ~(torch.isfinite(weights) & (weights >= 0))
    if bool(bad.any()):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected finite, non-negative weights. "
            f"Received: {name} with values {weights[bad].flatten()[:5].tolist()}"
        )


def _check_class_weight(class_weight: Any) -> dict[int, float]:
    """``class_weight`` as ``{class index: weight}``: int keys >= 0, finite non-negative weights."""
    if not isinstance(class_weight, Mapping):
        raise invalid("class_weight", "a dict of class index to weight", class_weight)
    table: dict[int, float] = {}
    for key, weight in class_weight.items():
        if not is_int(key) or key < 0:
            # A negative key would index the table from its end: another class's weight.
            raise ValueError(
                "Invalid value for argument `class_weight`: keys must be class indices (ints >= 0). "
                f"Received the key {echo(key)} in class_weight={echo(class_weight)}"
            )
        table[int(key)] = real(weight, f"class_weight[{int(key)}]", low=0)
    return table


def class_weights_to_sample_weights(y: Any, class_weight: Mapping[int, float]) -> torch.Tensor:
    """Per-sample weights ``class_weight[label]``.

    Labels are class indices (rounded, as Keras rounds them), or one-hot rows (their arg-max);
    every label present must have an entry, and with one-hot rows every key must be a class.

    >>> class_weights_to_sample_weights(torch.tensor([0, 1, 1]), {0: 1.0, 1: 3.0})
    tensor([1., 3., 3.])
    >>> class_weights_to_sample_weights(torch.tensor([0, 1]), {-1: 2.0, 0: 1.0, 1: 1.0})
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `class_weight`: keys must be class indices (ints >= 0). ...
    """
    table = _check_class_weight(class_weight)
    leaves = flatten(y)
    if len(leaves) != 1:
        raise ValueError(
            f"Invalid value for argument `class_weight`: it is only supported for models with a single output; "
            f"`y` has {len(leaves)} arrays. Received: class_weight={echo(class_weight)}"
        )
    labels = leaves[0]
    num_classes = None
    if labels.dim() > 1 and labels.shape[-1] > 1:
        num_classes = int(labels.shape[-1])
        labels = labels.argmax(dim=-1)
    labels = labels.reshape(labels.shape[0], -1)[:, 0]
    if labels.is_floating_point():
        if labels.numel() and not bool(torch.isfinite(labels).all()):
            raise ValueError("Invalid value for argument `y`: class labels must be finite to look up `class_weight`.")
        labels = torch.round(labels)
    labels = labels.long()
    beyond = sorted(key for key in table if num_classes is not None and key >= num_classes)
    if beyond:
        raise ValueError(
            f"Invalid value for argument `class_weight`: keys {beyond} are not classes of the one-hot targets, "
            f"which have {num_classes}. Received: class_weight={echo(class_weight)}"
        )
    missing = sorted(set(labels.unique().tolist()) - set(table))
    if missing:
        raise ValueError(
            f"Invalid value for argument `class_weight`: it has no entry for classes {missing} present in `y`. "
            f"Received: class_weight={echo(class_weight)}"
        )
    weights = torch.zeros(max(table) + 1 if table else 1, dtype=torch.float32)
    for key, weight in table.items():
        weights[key] = weight
    return weights[labels]


class Batches:
    """Re-iterable batches of ``(x, y, sample_weight)``; ``len()`` is the batches per epoch, if known.

    Batches from a loader are converted and checked as they come, under the argument
    name ``source`` (``x`` for ``fit``'s data, ``validation_data`` for validation).
    """

    def __init__(self, source: Any, steps: int | None, from_arrays: bool, name: str = "x") -> None:
        self._source = source
        self._steps = steps
        self.from_arrays = from_arrays
        self.name = name

    def __len__(self) -> int:
        if self._steps is not None:
            return self._steps
        return len(self._source)

    def __iter__(self) -> Iterator[Batch]:
        # islice stops before fetching a batch past `steps` (a PyDataset's fetch has effects).
        source = self._source if self._steps is None else itertools.islice(self._source, self._steps)
        for item in source:
            if self.from_arrays:
                yield item
                continue
            x, y, sw = _unpack(item)
            roles = (self.name,) * 3 if self.name != "x" else ROLES
            batch = _batch(x, y, sw, roles)
            _num_samples(*batch, roles)
            _check_sample_weight(batch[2], roles[2])
            yield batch

    def has_length(self) -> bool:
        if self._steps is not None:
            return True
        try:
            len(self._source)
        except TypeError:  # an iterable without a length, or an endless PyDataset
            return False
        return True

    def targets_missing(self) -> bool:
        """Whether these are arrays given without targets ``y`` (a loader's batches are checked as they come)."""
        return self.from_arrays and self._source.y is None

    def known_empty(self) -> bool:
        """Whether it is known, without iterating, that the data holds no batch at all."""
        if self.from_arrays:
            return self._source.n == 0
        try:
            return len(self._source) == 0
        except TypeError:  # an iterable (or IterableDataset loader) without a length
            return False


def _unpack(item: Any) -> Batch:
    if (isinstance(item, (tuple, list)) and 1 <= len(item) <= 3) or isinstance(item, (torch.Tensor, np.ndarray, Mapping)):
        return unpack_x_y_sample_weight(item)
    raise ValueError(
        "Each batch of a DataLoader or dataset must be `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`, with "
        f"tensors, arrays, or lists/dicts of them. Received an element of type {type(item).__name__}: {echo(item)}"
    )


class _ArrayBatches:
    def __init__(self, x: Any, y: Any, sample_weight: Any, batch_size: int, shuffle: bool, n: int,
                 keep_empty: bool = False) -> None:
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.keep_empty = keep_empty

    def __len__(self) -> int:
        return 1 if self.keep_empty and self.n == 0 else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        if self.keep_empty and self.n == 0:
            # predict on no samples: one empty batch, so the outputs have their shapes.
            yield self.x, self.y, self.sample_weight
            return
        order = torch.randperm(self.n) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]

            def take(structure: Any, index: Any = index) -> Any:
                return None if structure is None else map_structure(lambda t: t[index], structure)

            yield take(self.x), take(self.y), take(self.sample_weight)


def _as_is(item: Any) -> Any:
    return item


class _PyDatasetBatches:
    """The batches of a ``PyDataset``, one pass per iteration, fetched as its settings say.

    Each pass calls ``on_epoch_begin``, visits the batch indices (in a new order from
    Python's ``random`` when shuffling, as Keras does), and calls ``on_epoch_end`` when
    the pass ends, early or not. An endless dataset's pass goes on from the index where
    the last one stopped, as Keras's does. ``class_weight`` becomes each batch's sample weights.
    """

    def __init__(self, dataset: PyDataset, shuffle: bool, class_weight: dict[int, float] | None) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.class_weight = class_weight
        self._next_index = 0  # of an endless dataset: where the next pass starts

    def __len__(self) -> int:
        batches = self.dataset.num_batches
        if batches is None:
            raise TypeError("an endless PyDataset has no length")
        return count(batches, "num_batches", owner=type(self.dataset).__name__)

    def __iter__(self) -> Iterator[Any]:
        self.dataset.on_epoch_begin()
        try:
            endless = self.dataset.num_batches is None
            if endless:
                indices: Iterable[int] = itertools.count(self._next_index)
            else:
                indices = list(range(len(self)))
                if self.shuffle:
                    random.shuffle(indices)
            for item in self._fetch(indices):
                if endless:
                    self._next_index += 1
                yield self._weighted(item)
        finally:
            self.dataset.on_epoch_end()

    def _fetch(self, indices: Iterable[int]) -> Iterator[Any]:
        workers, queue = self.dataset.workers, self.dataset.max_queue_size
        if self.dataset.use_multiprocessing and workers > 0 and isinstance(indices, list):
            # torch's DataLoader runs the worker processes; batch_size=None hands each item over as it is.
            loader = torch.utils.data.DataLoader(
                _Indexed(self.dataset, indices), batch_size=None, num_workers=workers, collate_fn=_as_is,
                prefetch_factor=max(1, queue // workers),
            )
            yield from loader
        elif workers > 1 or self.dataset.use_multiprocessing:
            with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
                pending: collections.deque = collections.deque()
                for index in indices:
                    pending.append(pool.submit(self.dataset.__getitem__, index))
                    if len(pending) >= queue:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        else:
            for index in indices:
                yield self.dataset[index]

    def _weighted(self, item: Any) -> Any:
        if self.class_weight is None:
            return item
        x, y, sample_weight = _unpack(item)
        if sample_weight is not None:
            raise ValueError("Invalid value for argument `class_weight`: it cannot be used when the PyDataset's "
                             "batches carry their own sample weights. Received: class_weight="
                             f"{echo(self.class_weight)}")
        if y is None:
            raise invalid("class_weight", "None when the PyDataset's batches have no targets `y`", self.class_weight)
        y = _tensors(y, "y")
        return x, y, class_weights_to_sample_weights(y, self.class_weight)


class _Indexed(torch.utils.data.Dataset):
    """Item ``k`` is batch ``indices[k]`` of a PyDataset (for a DataLoader's worker processes)."""

    def __init__(self, dataset: PyDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        return self.dataset[self.indices[position]]


def _py_dataset_batches(x: PyDataset, y: Any, sample_weight: Any, batch_size: int | None, shuffle: bool,
                        class_weight: Any, steps: int | None, name: str, batch_size_name: str) -> Batches:
    """Batches of a PyDataset, after checking that nothing its batches decide was passed too."""
    if y is not None or sample_weight is not None:
        role = "y" if y is not None else "sample_weight"
        raise invalid(role, "None when `x` is a PyDataset (its batches hold the targets and sample weights)",
                      y if y is not None else sample_weight)
    if batch_size is not None and name == "x":
        # Keras ignores it; a batch size that silently does nothing is a trap.
        raise invalid(batch_size_name, "None when `x` is a PyDataset (its batches set the batch size)", batch_size)
    table = _check_class_weight(class_weight) if class_weight is not None else None
    return Batches(_PyDatasetBatches(x, shuffle, table), steps, from_arrays=False, name=name)


def _is_loader(x: Any) -> bool:
    return isinstance(x, (torch.utils.data.DataLoader, torch.utils.data.Dataset)) or (
        isinstance(x, Iterable) and not isinstance(x, (np.ndarray, torch.Tensor, list, tuple, Mapping, str, bytes))
    )


def _has_items(dataset: Any) -> bool:
    try:
        return len(dataset) > 0
    except TypeError:
        return True


def make_batches(
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    batch_size: int | None = None,
    shuffle: bool = False,
    class_weight: Mapping[int, float] | None = None,
    steps: int | None = None,
    *,
    steps_name: str = "steps",
    name: str = "x",
    batch_size_name: str = "batch_size",
    keep_empty: bool = False,
) -> Batches:
    """Batches for one pass over the data (arrays are re-shuffled on each iteration when asked).

    Every argument is checked first (errors name ``name`` for the data, ``steps_name``
    and ``batch_size_name`` for the counts). Arrays with no samples give no batches:
    the caller decides whether that is an error (``fit``, ``evaluate``) or not: with
    ``keep_empty`` (``predict``) they give one empty batch.

    >>> batches = make_batches(np.ones((5, 2)), np.zeros(5), batch_size=2)
    >>> len(batches), [tuple(bx.shape) for bx, _, _ in batches]
    (3, [(2, 2), (2, 2), (1, 2)])
    >>> make_batches(np.ones((5, 2)), np.array(["a"] * 5))
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `y`: cannot convert to a tensor; expected numbers, got dtype <U1. ...
    """
    count(batch_size, batch_size_name, low=1, allow_none=True)
    count(steps, steps_name, low=1, allow_none=True)
    roles = ROLES if name == "x" else (name,) * 3
    if x is None:
        raise ValueError(
            f"Invalid value for argument `{name}`: pass arrays, tensors, a Dataset or a DataLoader. Received: {name}=None"
        )
    if isinstance(x, PyDataset):
        return _py_dataset_batches(x, y, sample_weight, batch_size, shuffle, class_weight, steps, name,
                                   batch_size_name)
    if _is_loader(x):
        if y is not None or sample_weight is not None:
            raise ValueError("When `x` is a Dataset or DataLoader, `y` and `sample_weight` come from it; do not pass them.")
        if class_weight is not None:
            raise invalid("class_weight", "None with a Dataset or DataLoader (it needs array or tensor data)",
                           class_weight)
        if isinstance(x, torch.utils.data.Dataset) and not isinstance(x, torch.utils.data.IterableDataset):
            # torch's random sampler refuses an empty dataset; an unshuffled loader reports it as empty.
            x = torch.utils.data.DataLoader(x, batch_size=batch_size or 32, shuffle=shuffle and _has_items(x))
        return Batches(x, steps, from_arrays=False, name=name)
    x, y, sample_weight = _batch(x, y, sample_weight, roles)
    n = _num_samples(x, y, sample_weight, roles)
    _check_sample_weight(sample_weight, roles[2])
    if class_weight is not None:
        if y is None:
            raise invalid("class_weight", "None when there are no targets `y`", class_weight)
        weights = class_weights_to_sample_weights(y, class_weight)
        sample_weight = weights if sample_weight is None else sample_weight * weights
    arrays = _ArrayBatches(x, y, sample_weight, batch_size or 32, shuffle, n, keep_empty)
    return Batches(arrays, steps, from_arrays=True, name=name)


def single_batch(x: Any, y: Any, sample_weight: Any, class_weight: Mapping[int, float] | None) -> Batch:
    """``(x, y, sample_weight)`` as tensors for one batch, checked like a full dataset."""
    if x is None or _is_loader(x):
        raise invalid("x", "arrays or tensors for a single batch (not None, a Dataset or a DataLoader)", x)
    x, y, sample_weight = _batch(x, y, sample_weight)
    _num_samples(x, y, sample_weight)
    _check_sample_weight(sample_weight)
    if class_weight is not None:
        if y is None:
            raise invalid("class_weight", "None when there are no targets `y`", class_weight)
        weights = class_weights_to_sample_weights(y, class_weight)
        sample_weight = weights if sample_weight is None else sample_weight * weights
    return x, y, sample_weight


def split_for_validation(x: Any, y: Any, sample_weight: Any, validation_split: float) -> tuple[Any, Any]:
    """Keras's ``validation_split``: the last fraction of the samples, taken before any shuffling."""
    real(validation_split, "validation_split", low=0, high=1, high_open=True)
    if _is_loader(x):
        raise invalid("validation_split", "0 with a Dataset, DataLoader or PyDataset (pass `validation_data` instead)",
                       validation_split)
    x, y, sample_weight = _batch(x, y, sample_weight)
    n = _num_samples(x, y, sample_weight)
    if n == 0:
        raise ValueError("Invalid value for argument `x`: it holds no samples, so there is nothing to train on.")
    split_at = math.floor(n * (1.0 - validation_split))
    if split_at in (0, n):
        raise ValueError(
            f"Invalid value for argument `validation_split`: it leaves no samples on one side (of {n} samples). "
            f"Received: validation_split={validation_split!r}"
        )

    def part(structure: Any, index: slice) -> Any:
        return None if structure is None else map_structure(lambda t: t[index], structure)

    train = (part(x, slice(0, split_at)), part(y, slice(0, split_at)), part(sample_weight, slice(0, split_at)))
    val = (part(x, slice(split_at, None)), part(y, slice(split_at, None)), part(sample_weight, slice(split_at, None)))
    return train, val
