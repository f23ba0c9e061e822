"""Turning what ``fit``/``evaluate``/``predict`` receive into batches of ``(x, y, sample_weight)``.

Arrays, tensors and nested lists/dicts of them are batched here (Keras's order,
shuffling and ``validation_split``); a ``Dataset`` gets a ``DataLoader``; a
``PyDataset`` gives its own batches (shuffled in order of batches, fetched ahead by its
workers, with ``on_epoch_begin``/``on_epoch_end`` around each pass); a ``DataLoader``
(or any iterable of batches) is used as it is.

Under ``torchrun`` (a process group of ``W > 1`` ranks) each rank takes its own part of
every epoch, as ``DistributedSampler`` does: all ranks use the order rank 0 draws from
torch's global generator as one process would (``torch.randperm(n)`` for arrays, sent to
the other ranks; ``RandomSampler``'s seed for a dataset, from which every rank makes the
permutation), and rank ``r`` takes the positions ``r, r + W, r + 2W, ...`` of it. For training the order
is padded with its first samples to a multiple of ``W``, so every rank takes the same
number of steps; global step ``k`` then holds positions ``[k W b, (k + 1) W b)`` of the
order, which are the ``k``-th batch of a one-process run with batch ``W b`` from the same
global seed. Evaluation and prediction take every sample once, unpadded. Arrays and
map-style ``Dataset``s are split by sample, a ``DataLoader`` over one is rebuilt with that
sampler (keeping its batch size, collate function, workers, ...), a ``PyDataset`` by batch
index; any other iterable is taken as this rank's own part, and all ranks stop together
when the first one runs out.

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
from weightwise.callbacks._ranks import collective_device, world
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


def _epoch_seed(generator: torch.Generator | None = None) -> int:
    """A seed for one epoch's order, drawn as ``RandomSampler`` draws it; rank 0's under a process group."""
    seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
    if world()[1] > 1:
        shared = torch.tensor([seed], dtype=torch.int64, device=collective_device())
        torch.distributed.broadcast(shared, src=0)
        seed = int(shared.item())
    return seed


def rank_part(order: torch.Tensor, pad: bool) -> torch.Tensor:
    """This rank's positions of an epoch's ``order``: every ``W``-th from its rank; padded first when asked.

    >>> rank_part(torch.arange(5), pad=True)  # a single process takes everything
    tensor([0, 1, 2, 3, 4])
    """
    rank, size = world()
    if size == 1:
        return order
    if pad and len(order) % size:
        total = math.ceil(len(order) / size) * size
        order = order.repeat(math.ceil(total / len(order)))[:total]
    return order[rank::size]


def part_length(n: int, pad: bool) -> int:
    """How many of ``n`` items (samples, or a PyDataset's batches) this rank takes in one epoch."""
    rank, size = world()
    if pad:
        return math.ceil(n / size) if n else 0
    return len(range(rank, n, size))


def epoch_order(n: int, shuffle: bool, pad: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """This rank's sample indices for one epoch (all of them, in order or shuffled, in one process).

    >>> _ = torch.manual_seed(0)
    >>> epoch_order(6, shuffle=True, pad=True).sort().values
    tensor([0, 1, 2, 3, 4, 5])
    """
    if not shuffle:
        return rank_part(torch.arange(n), pad)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(generator)))
    return rank_part(order, pad)


def _array_order(n: int, shuffle: bool, pad: bool) -> torch.Tensor:
    """This rank's indices of arrays for one epoch: of ``torch.randperm(n)`` as rank 0 draws it when shuffling.

    That is the order ``fit`` has always drawn for arrays in one process, so a one-process
    run seeded as rank 0 is sees the same global order; rank 0 sends it to the others.
    """
    if not shuffle:
        return rank_part(torch.arange(n), pad)
    order = torch.randperm(n)
    if world()[1] > 1:
        shared = order.to(collective_device())
        torch.distributed.broadcast(shared, src=0)
        order = shared.cpu()
    return rank_part(order, pad)


class RankSampler(torch.utils.data.Sampler):
    """A sampler of this rank's samples of a map-style dataset, as :func:`epoch_order` gives them."""

    def __init__(self, n: int, shuffle: bool, pad: bool, generator: torch.Generator | None = None) -> None:
        self.n, self.shuffle, self.pad, self.generator = n, shuffle, pad, generator

    def __len__(self) -> int:
        return part_length(self.n, self.pad)

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.n, self.shuffle, self.pad, self.generator).tolist())


def _all_have(has: bool) -> bool:
    """Whether every rank has one more batch (each rank says whether it has)."""
    flag = torch.tensor([1 if has else 0], dtype=torch.int32, device=collective_device())
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


_END = object()


def _together(items: Iterable[Any]) -> Iterator[Any]:
    """The items of a rank's own iterable, ending on every rank as soon as one rank has run out."""
    iterator = iter(items)
    while True:
        item = next(iterator, _END)
        if not _all_have(item is not _END):
            return
        yield item



class Batches:
    """Re-iterable batches of ``(x, y, sample_weight)``; ``len()`` is the batches per epoch, if known.

    Batches from a loader are converted and checked as they come, under the argument
    name ``source`` (``x`` for ``fit``'s data, ``validation_data`` for validation).
    """

    def __init__(self, source: Any, steps: int | None, from_arrays: bool, name: str = "x",
                 together: bool = False) -> None:
        self._source = source
        self._steps = steps
        self.from_arrays = from_arrays
        self.name = name
        self._together = together  # a rank's own iterable under a process group: stop when any rank stops
        # Under a process group, what rank r holds: the samples or the batches r, r + W, ... (or None: the user's split).
        self.split: str | None = None

    def __len__(self) -> int:
        if self._steps is not None:
            return self._steps
        return len(self._source)

    def __iter__(self) -> Iterator[Batch]:
        # islice stops before fetching a batch past `steps` (a PyDataset's fetch has effects).
        source = self._source if self._steps is None else itertools.islice(self._source, self._steps)
        if self._together:
            source = _together(source)
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
                 keep_empty: bool = False, pad: bool = False) -> None:
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.keep_empty = keep_empty
        self.pad = pad  # under a process group: pad the order so every rank takes as many steps

    def __len__(self) -> int:
        part = part_length(self.n, self.pad)
        return 1 if self.keep_empty and part == 0 else math.ceil(part / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        if self.keep_empty and part_length(self.n, self.pad) == 0:
            # predict on no samples (or none for this rank): one empty batch, so the outputs have their shapes.
            none = torch.zeros(0, dtype=torch.long)
            yield tuple(None if part is None else map_structure(lambda t: t[none], part)
                        for part in (self.x, self.y, self.sample_weight))
            return
        # One process in order takes slices (views); otherwise this rank's indices of the epoch's order.
        order = _array_order(self.n, self.shuffle, self.pad) if self.shuffle or world()[1] > 1 else None
        for start in range(0, self.n if order is None else len(order), self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]

            def take(structure: Any, index: Any = index) -> Any:
                if isinstance(structure, torch.Tensor):  # the common case, without walking a structure
                    return structure[index]
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

    def __init__(self, dataset: PyDataset, shuffle: bool, class_weight: dict[int, float] | None,
                 pad: bool = False) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.class_weight = class_weight
        self.pad = pad  # under a process group: pad the batch order so every rank takes as many steps
        self._next_index = 0  # of an endless dataset: where the next pass starts

    def _num_batches(self) -> int:
        batches = self.dataset.num_batches
        if batches is None:
            raise TypeError("an endless PyDataset has no length")
        return count(batches, "num_batches", owner=type(self.dataset).__name__)

    def __len__(self) -> int:
        return part_length(self._num_batches(), self.pad)

    def __iter__(self) -> Iterator[Any]:
        self.dataset.on_epoch_begin()
        try:
            endless = self.dataset.num_batches is None
            rank, size = world()
            if endless:
                # Under a process group, pass k of rank r fetches the batches k W + r.
                indices: Iterable[int] = (i * size + rank for i in itertools.count(self._next_index))
            else:
                indices = list(range(self._num_batches()))
                if self.shuffle and size > 1:
                    random.Random(_epoch_seed()).shuffle(indices)
                elif self.shuffle:
                    random.shuffle(indices)
                if size > 1:
                    indices = rank_part(torch.tensor(indices, dtype=torch.long), self.pad).tolist()
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
                        class_weight: Any, steps: int | None, name: str, batch_size_name: str,
                        pad: bool = False) -> Batches:
    """Batches of a PyDataset, after checking that nothing its batches decide was passed too."""
    if y is not None or sample_weight is not None:
        role = "y" if y is not None else "sample_weight"
        raise invalid(role, "None when `x` is a PyDataset (its batches hold the targets and sample weights)",
                      y if y is not None else sample_weight)
    if batch_size is not None and name == "x":
        # Keras ignores it; a batch size that silently does nothing is a trap.
        raise invalid(batch_size_name, "None when `x` is a PyDataset (its batches set the batch size)", batch_size)
    table = _check_class_weight(class_weight) if class_weight is not None else None
    return Batches(_PyDatasetBatches(x, shuffle, table, pad), steps, from_arrays=False, name=name)


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
    shard: str | None = None,
) -> Batches:
    """Batches for one pass over the data (arrays are re-shuffled on each iteration when asked).

    Every argument is checked first (errors name ``name`` for the data, ``steps_name``
    and ``batch_size_name`` for the counts). Arrays with no samples give no batches:
    the caller decides whether that is an error (``fit``, ``evaluate``) or not: with
    ``keep_empty`` (``predict``) they give one empty batch. Under a process group,
    ``shard="train"`` gives this rank its padded part of each epoch and ``shard="eval"``
    its unpadded part (see the module docstring); ``None`` takes all the data.

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
    split = shard is not None and world()[1] > 1
    pad = split and shard == "train"
    if isinstance(x, PyDataset):
        batches = _py_dataset_batches(x, y, sample_weight, batch_size, shuffle, class_weight, steps, name,
                                      batch_size_name, pad)
        batches.split = "batches" if split else None
        return batches
    if _is_loader(x):
        if y is not None or sample_weight is not None:
            raise ValueError("When `x` is a Dataset or DataLoader, `y` and `sample_weight` come from it; do not pass them.")
        if class_weight is not None:
            raise invalid("class_weight", "None with a Dataset or DataLoader (it needs array or tensor data)",
                           class_weight)
        if isinstance(x, torch.utils.data.Dataset) and not isinstance(x, torch.utils.data.IterableDataset):
            if split:
                sampler = RankSampler(len(x), shuffle, pad)
                x = torch.utils.data.DataLoader(x, batch_size=batch_size or 32, sampler=sampler)
                return _split(Batches(x, steps, from_arrays=False, name=name), "samples")
            # torch's random sampler refuses an empty dataset; an unshuffled loader reports it as empty.
            x = torch.utils.data.DataLoader(x, batch_size=batch_size or 32, shuffle=shuffle and _has_items(x))
        if split:
            shared = _rank_loader(x, pad)
            if shared is not None:
                return _split(Batches(shared, steps, from_arrays=False, name=name), "samples")
            # A rank's own iterable (or a loader with its own DistributedSampler), as the user split it.
            together = not isinstance(getattr(x, "sampler", None), torch.utils.data.DistributedSampler)
            return Batches(x, steps, from_arrays=False, name=name, together=together)
        return Batches(x, steps, from_arrays=False, name=name)
    x, y, sample_weight = _batch(x, y, sample_weight, roles)
    n = _num_samples(x, y, sample_weight, roles)
    _check_sample_weight(sample_weight, roles[2])
    if class_weight is not None:
        if y is None:
            raise invalid("class_weight", "None when there are no targets `y`", class_weight)
        weights = class_weights_to_sample_weights(y, class_weight)
        sample_weight = weights if sample_weight is None else sample_weight * weights
    arrays = _ArrayBatches(x, y, sample_weight, batch_size or 32, shuffle, n, keep_empty, pad)
    return _split(Batches(arrays, steps, from_arrays=True, name=name), "samples" if split else None)


def _split(batches: Batches, split: str | None) -> Batches:
    batches.split = split
    return batches


def _rank_loader(loader: Any, pad: bool) -> torch.utils.data.DataLoader | None:
    """``loader`` rebuilt to give this rank's part of its map-style dataset, or ``None`` if it cannot be.

    Only a loader that batches with its own ``batch_size`` over the plain sequential or
    random sampler is rebuilt (shuffled if it shuffled), keeping everything else it was given.
    """
    data = torch.utils.data
    if not isinstance(loader, data.DataLoader) or isinstance(loader.dataset, data.IterableDataset):
        return None
    sampler = loader.sampler
    if loader.batch_size is None or type(sampler) not in (data.SequentialSampler, data.RandomSampler):
        return None
    shuffle = isinstance(sampler, data.RandomSampler)
    kept = {name: getattr(loader, name) for name in (
        "num_workers", "collate_fn", "pin_memory", "drop_last", "timeout", "worker_init_fn",
        "multiprocessing_context", "generator", "persistent_workers", "pin_memory_device",
    ) if hasattr(loader, name)}
    if loader.num_workers > 0:
        kept["prefetch_factor"] = loader.prefetch_factor
    generator = sampler.generator if shuffle else None
    return data.DataLoader(loader.dataset, batch_size=loader.batch_size,
                           sampler=RankSampler(len(loader.dataset), shuffle, pad, generator), **kept)


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
