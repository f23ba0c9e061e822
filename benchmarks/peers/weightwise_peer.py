"""weightwise's own ``compile``/``fit``: eager (``weightwise``) and ``jit_compile=True`` (``weightwise-jit``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.peers import Trial, Unavailable
from benchmarks.peers.keras_style import build, compile_args, fit_epoch
from benchmarks.specs import SEED, ModelSpec


def setup(peer: str, spec: ModelSpec, reg: bool, x: np.ndarray, y: np.ndarray, steps: int) -> Trial:
    import weightwise

    torch.manual_seed(SEED)
    model = build(weightwise, spec, reg)
    jit = peer == "weightwise-jit"
    notes: list[str] = []
    try:
        model.compile(**compile_args(weightwise), jit_compile=jit)
    except (TypeError, ValueError, NotImplementedError) as error:
        if jit:
            raise Unavailable(f"compile(jit_compile=True) rejected: {type(error).__name__}: {error}") from error
        raise
    info: dict[str, Any] = {"weightwise_version": getattr(weightwise, "__version__", "?")}
    if jit:
        # compile() has always accepted (and ignored) Keras's jit_compile argument: record what the model says.
        attr = getattr(model, "jit_compile", None)
        info["model_jit_compile_attr"] = repr(attr)
        if attr is None:
            notes.append("compile() accepted jit_compile=True but the model has no jit_compile attribute; "
                         "it may be ignored")
    return Trial(epoch=lambda: fit_epoch(model, x, y, spec.batch), notes=notes, info=info)
