"""Splitting a dataset in two, as ``keras.utils.split_dataset`` does, into torch datasets.

>>> import numpy as np
>>> left, right = split_dataset(np.arange(10), left_size=0.8)
>>> len(left), len(right), int(right[0])
(8, 2, 8)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Subset

from weightwise.arguments import count, echo, invalid, is_int

__all__ = ["split_dataset"]


def _leaf(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):
            array = None
        if array is None or array.dtype == object or array.dtype.kind in "USV":
            raise invalid("dataset", "arrays of numbers (or a tuple, list or dict of them)", value, error=TypeError)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dim() == 0:
        raise invalid("dataset", "arrays with one entry per sample (not scalars)", value)
    return tensor


def _tensors(structure: Any) -> Any:
    if isinstance(structure, Mapping):
        return {key: _tensors(value) for key, value in structure.items()}
    if isinstance(structure, (tuple, list)):
        return tuple(_tensors(value) for value in structure)
    return _leaf(structure)


def _leaves(structure: Any) -> list[torch.Tensor]:
    if isinstance(structure, dict):
        return [leaf for value in structure.values() for leaf in _leaves(value)]
    if isinstance(structure, tuple):
        return [leaf for value in structure for leaf in _leaves(value)]
    return [structure]


def _take(structure: Any, index: int) -> Any:
    if isinstance(structure, dict):
        return {key: _take(value, index) for key, value in structure.items()}
    if isinstance(structure, tuple):
        return tuple(_take(value, index) for value in structure)
    return structure[index]


class _Samples(Dataset):
    """Sample ``i`` of every array in a structure, in that structure (a list becomes a tuple)."""

    def __init__(self, structure: Any, length: int) -> None:
        self.structure = structure
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return _take(self.structure, index)


def _as_dataset(dataset: Any) -> Dataset:
    if isinstance(dataset, IterableDataset) or (isinstance(dataset, Dataset) and not hasattr(dataset, "__len__")):
        raise invalid("dataset", "a Dataset with a length (an IterableDataset cannot be split by index)", dataset,
                      error=TypeError)
    if isinstance(dataset, Dataset):
        return dataset
    if not isinstance(dataset, (np.ndarray, torch.Tensor, tuple, list, Mapping)):
        raise invalid("dataset", "a torch Dataset, an array, or a tuple, list or dict of arrays", dataset,
                      error=TypeError)
    structure = _tensors(dataset)
    sizes = {int(leaf.shape[0]) for leaf in _leaves(structure)}
    if len(sizes) != 1:
        raise ValueError(
            "Invalid value for argument `dataset`: every array must hold the same number of samples. "
            f"Received arrays with {sorted(sizes) or 'no'} samples: dataset={echo(dataset)}"
        )
    return _Samples(structure, sizes.pop())


def _size(value: Any, name: str, total: int) -> int | None:
    """A split size as a number of samples: an int in ``(0, total)`` or a float in ``(0, 1)``."""
    if value is None:
        return None
    if is_int(value):
        if not 0 < value < total:
            raise invalid(name, f"an int in [1, {total - 1}] for a dataset of {total} samples, or a float in (0, 1)",
                          value)
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not 0 < value < 1:
            raise invalid(name, f"a float in (0, 1) or an int in [1, {total - 1}]", value)
        return round(float(value) * total)
    raise invalid(name, "an int, a float or None", value, error=TypeError)


def split_dataset(
    dataset: Any,
    left_size: float | None = None,
    right_size: float | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    preferred_backend: str | None = None,
) -> tuple[Subset, Subset]:
    """Split ``dataset`` in two ``torch.utils.data.Subset`` s: the first ``left_size`` samples
    and the last ``right_size`` samples.

    ``dataset`` is a torch ``Dataset`` with a length, an array, or a tuple, list or dict of
    arrays with one entry per sample. Each item of a split is then a sample in that shape
    (a tensor, a tuple, a dict), so a ``DataLoader`` of a split, or the split itself, is
    what ``fit`` takes. A size is an int (a number of samples) or a float (a fraction,
    rounded to the nearest count); at least one is given, and a missing one is the rest.
    ``shuffle`` permutes the samples first, with ``torch.randperm`` seeded by ``seed``
    (torch's global generator when ``seed`` is None). Without ``shuffle`` the order is kept.

    >>> left, right = split_dataset((np.arange(6), np.arange(6) * 10), left_size=2, right_size=3)
    >>> [int(x) for x, _ in left], [int(y) for _, y in right]
    ([0, 1], [30, 40, 50])
    >>> split_dataset(np.arange(6), left_size=6)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `left_size`: expected an int in [1, 5] for a dataset of 6 samples, or a float in (0, 1). Received: left_size=6
    """
    if preferred_backend not in (None, "torch"):
        raise invalid("preferred_backend", "None or 'torch' (the only backend here)", preferred_backend)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise invalid("shuffle", "a bool (True or False)", shuffle)
    seed = count(seed, "seed", low=0, high=2**63 - 1, allow_none=True)
    samples = _as_dataset(dataset)
    total = len(samples)
    if left_size is None and right_size is None:
        raise ValueError("Invalid value for arguments `left_size` and `right_size`: at least one must be given. "
                         "Received: left_size=None, right_size=None")
    left = _size(left_size, "left_size", total)
    right = _size(right_size, "right_size", total)
    if isinstance(left_size, float) and isinstance(right_size, float) and left_size + right_size > 1:
        raise ValueError("Invalid value for arguments `left_size` and `right_size`: their sum must be at most 1. "
                         f"Received: left_size={left_size!r}, right_size={right_size!r}")
    left = total - right if left is None else left
    right = total - left if right is None else right
    if left + right > total or left == 0 or right == 0:
        raise ValueError(
            f"Invalid value for arguments `left_size` and `right_size`: with {total} samples they give splits of "
            f"{left} and {right} samples; each needs at least one, and together at most {total}. "
            f"Received: left_size={left_size!r}, right_size={right_size!r}"
        )
    if shuffle:
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        order = torch.randperm(total, generator=generator).tolist()
    else:
        order = list(range(total))
    return Subset(samples, order[:left]), Subset(samples, order[total - right:])
