"""Keras 3's ``fit``: torch backend eager (``keras-torch``), torch.compile (``keras-torch-jit``), JAX/XLA (``keras-jax``).

The backend is chosen by the parent through ``KERAS_BACKEND`` before this module is imported.
"""

from __future__ import annotations

import numpy as np

from benchmarks.peers import Trial, Unavailable
from benchmarks.peers.keras_style import build, compile_args, fit_epoch
from benchmarks.specs import SEED, ModelSpec

_BACKEND = {"keras-torch": "torch", "keras-torch-jit": "torch", "keras-jax": "jax"}


def setup(peer: str, spec: ModelSpec, reg: bool, x: np.ndarray, y: np.ndarray, steps: int) -> Trial:
    import keras

    backend = keras.backend.backend()
    if backend != _BACKEND[peer]:
        raise Unavailable(f"{peer} needs KERAS_BACKEND={_BACKEND[peer]}, keras runs on {backend}")
    keras.utils.set_random_seed(SEED)
    model = build(keras, spec, reg)
    jit = peer != "keras-torch"
    model.compile(**compile_args(keras), jit_compile=jit)
    info = {"keras_version": keras.__version__, "keras_backend": backend, "jit_compile": bool(model.jit_compile)}
    notes = [] if bool(model.jit_compile) == jit else [f"keras set jit_compile={model.jit_compile}"]
    return Trial(epoch=lambda: fit_epoch(model, x, y, spec.batch), notes=notes, info=info)
