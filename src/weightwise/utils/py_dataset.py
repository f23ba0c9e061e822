"""``PyDataset`` (also ``Sequence``): a dataset of whole batches, written as Python code.

A subclass implements ``__len__`` (the number of batches) and ``__getitem__(index)``,
returning batch ``index`` as ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``.
``fit``, ``evaluate`` and ``predict`` take it as ``x``; the batch size is the dataset's.

>>> import numpy as np
>>> class Squares(PyDataset):
...     def __len__(self):
...         return 3
...     def __getitem__(self, index):
...         x = np.arange(4.0).reshape(2, 2) + index
...         return x, x ** 2
>>> len(Squares()), Squares()[1][1].tolist()
(3, [[1.0, 4.0], [9.0, 16.0]])
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

from weightwise.arguments import count, flag

__all__ = ["PyDataset", "Sequence"]

_DEFAULTS = {"_workers": 1, "_use_multiprocessing": False, "_max_queue_size": 10}


class PyDataset:
    """Base class of a dataset that yields whole batches from Python code.

    ``workers`` (int >= 0), ``use_multiprocessing`` (bool) and ``max_queue_size``
    (int >= 1) say how batches are prepared while the model trains: with ``workers > 1``
    that many threads fetch batches ahead, in order, at most ``max_queue_size`` ahead;
    with ``use_multiprocessing`` that many worker processes do (a torch ``DataLoader``),
    and the dataset must then be safe to copy into a process. Batches always arrive in
    order. ``on_epoch_begin`` and ``on_epoch_end`` are called around each pass over the
    data; with ``fit(shuffle=True)`` each pass visits the batches in a new random order.
    ``num_batches`` is ``len(self)``; a dataset without ``__len__`` may define it as
    ``None`` for an endless dataset (then pass ``steps_per_epoch``).

    >>> class Ones(PyDataset):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...     def __len__(self):
    ...         return 2
    ...     def __getitem__(self, index):
    ...         return [[1.0]], [[index]]
    >>> data = Ones(workers=2)
    >>> data.workers, data.num_batches, [batch[1] for batch in data]
    (2, 2, [[[0]], [[1]]])
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10) -> None:
        self._workers = count(workers, "workers", low=0)
        self._use_multiprocessing = flag(use_multiprocessing, "use_multiprocessing")
        self._max_queue_size = count(max_queue_size, "max_queue_size", low=1)

    def _setting(self, name: str) -> Any:
        if name not in self.__dict__:
            # A subclass whose __init__ does not call super().__init__(): Keras's defaults.
            warnings.warn(
                f"Your `{type(self).__name__}` should call `super().__init__(**kwargs)` in its constructor; "
                "`workers`, `use_multiprocessing` and `max_queue_size` take their defaults.",
                stacklevel=3,
            )
            self.__dict__.update({key: value for key, value in _DEFAULTS.items() if key not in self.__dict__})
        return self.__dict__[name]

    @property
    def workers(self) -> int:
        """How many workers read batches ahead (0 reads them in the main process)."""
        return self._setting("_workers")

    @workers.setter
    def workers(self, value: int) -> None:
        self._workers = count(value, "workers", low=0)

    @property
    def use_multiprocessing(self) -> bool:
        """Whether the workers are processes rather than threads."""
        return self._setting("_use_multiprocessing")

    @use_multiprocessing.setter
    def use_multiprocessing(self, value: bool) -> None:
        self._use_multiprocessing = flag(value, "use_multiprocessing")

    @property
    def max_queue_size(self) -> int:
        """How many batches the workers may hold ready."""
        return self._setting("_max_queue_size")

    @max_queue_size.setter
    def max_queue_size(self, value: int) -> None:
        self._max_queue_size = count(value, "max_queue_size", low=1)

    def __getitem__(self, index: int) -> Any:
        """Batch ``index``: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement `__getitem__(self, index)`.")

    @property
    def num_batches(self) -> int | None:
        """The number of batches in a pass: ``len(self)``; ``None`` for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError(f"{type(self).__name__} must implement `__len__` or the `num_batches` property.")

    def __iter__(self) -> Iterator[Any]:
        batches = self.num_batches
        for index in range(batches) if batches is not None else itertools.count():
            yield self[index]

    def on_epoch_begin(self) -> None:
        """Called before each pass over the data."""

    def on_epoch_end(self) -> None:
        """Called after each pass over the data (to reshuffle samples, for instance)."""


Sequence = PyDataset
