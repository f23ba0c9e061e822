"""The same random data for every peer: float32 inputs and sparse integer labels, from a fixed seed."""

from __future__ import annotations

import numpy as np

from benchmarks.specs import NUM_CLASSES, SEED, ModelSpec


def make_data(spec: ModelSpec, steps: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``steps * batch`` samples: inputs ``(n, *input_shape)`` (channels_last; int64 token ids in
    ``[1, vocab)`` for a model with ``vocab``), labels ``(n,)`` int64."""
    rng = np.random.default_rng(seed)
    n = steps * spec.batch
    if spec.vocab:
        x = rng.integers(1, spec.vocab, size=(n, *spec.input_shape)).astype(np.int64)
    else:
        x = rng.standard_normal((n, *spec.input_shape), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, size=n).astype(np.int64)
    return x, y
