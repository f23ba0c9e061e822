"""``pad_sequences``: a list of sequences of different lengths as one array, padded or cut.

>>> pad_sequences([[1, 2, 3], [4]], maxlen=2).tolist()
[[2, 3], [0, 4]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from weightwise.arguments import count, echo, invalid

__all__ = ["pad_sequences"]

_SIDES = ("pre", "post")


def pad_sequences(
    sequences: Any,
    maxlen: int | None = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """An array of shape ``(len(sequences), maxlen, *sample_shape)`` holding each sequence.

    ``maxlen`` defaults to the longest sequence. A longer sequence loses entries at its
    start (``truncating="pre"``) or end (``"post"``); a shorter one is filled with ``value``
    before (``padding="pre"``) or after (``"post"``) it. Every entry of every sequence has
    the same shape ``sample_shape`` (``()`` for numbers). A string ``value`` needs
    ``dtype=object`` or a string dtype.

    >>> pad_sequences([[1], [2, 3]], padding="post", value=-1).tolist()
    [[1, -1], [2, 3]]
    >>> pad_sequences([[1, 2]], truncating="middle")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `truncating`: expected one of ('pre', 'post'). Received: truncating='middle'
    """
    maxlen = count(maxlen, "maxlen", allow_none=True)
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in _SIDES:
            raise invalid(name, f"one of {_SIDES}", side)
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise invalid("sequences", "a list of sequences", sequences, error=TypeError)
    lengths, sample_shape = [], None
    for index, sequence in enumerate(sequences):
        if isinstance(sequence, (str, bytes)) or not hasattr(sequence, "__len__"):
            raise ValueError(f"Invalid value for argument `sequences`: entry {index} is not a sequence. "
                             f"Received: sequences[{index}]={echo(sequence)}")
        lengths.append(len(sequence))
        if sample_shape is None and len(sequence):
            sample_shape = np.asarray(sequence).shape[1:]
    sample_shape = sample_shape or ()
    text_dtype = dtype is object or np.issubdtype(np.dtype(dtype), np.str_) or np.issubdtype(np.dtype(dtype), np.bytes_)
    if isinstance(value, str) and not text_dtype:
        raise ValueError(f"Invalid value for argument `dtype`: a string `value` needs dtype=object (or a string "
                         f"dtype). Received: dtype={dtype!r}, value={value!r}")
    if maxlen is None:
        maxlen = max(lengths, default=0)
    padded = np.full((len(lengths), maxlen) + tuple(sample_shape), value, dtype=dtype)
    for index, sequence in enumerate(sequences):
        if not len(sequence) or maxlen == 0:
            continue
        kept = np.asarray(sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen], dtype=dtype)
        if kept.shape[1:] != tuple(sample_shape):
            raise ValueError(f"Invalid value for argument `sequences`: entry {index} has samples of shape "
                             f"{kept.shape[1:]}, the first non-empty one {tuple(sample_shape)}.")
        if padding == "post":
            padded[index, : len(kept)] = kept
        else:
            padded[index, -len(kept):] = kept
    return padded
