"""Hand-written PyTorch: the loop a user writes without any library (``torch``), and under ``torch.compile``.

The reg variant adds the penalties naively, layer by layer, and projects every kernel onto
the max-norm ball by hand after ``optimizer.step()``, with Keras's formula
``w * clip(norm, 0, max) / (epsilon + norm)`` per output unit (Linear rows, Conv2d filters).
Weights start as in Keras (Glorot-uniform kernels, zero biases) so the numbers stay in the
same range as the Keras-style peers'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.peers import Trial
from benchmarks.specs import (
    ACTIVITY_L1,
    BIAS_L1,
    KERNEL_L2,
    LEARNING_RATE,
    MAX_NORM,
    NUM_CLASSES,
    SEED,
    ModelSpec,
)

EPSILON = 1e-7  # Keras's backend epsilon, in MaxNorm's denominator


def build(spec: ModelSpec) -> nn.Sequential:
    """The model in torch's layouts: NCHW images, ``Linear`` weights ``(out, in)``."""
    modules: list[nn.Module] = []
    if spec.conv_filters:
        height, width, channels = spec.input_shape
        for index, filters in enumerate(spec.conv_filters):
            modules += [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU()]
            channels = filters
            if index in spec.pool_after:
                modules.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
        modules.append(nn.Flatten())
        features = channels * height * width
    else:
        (features,) = spec.input_shape
    for units in spec.dense_units:
        modules += [nn.Linear(features, units), nn.ReLU()]
        features = units
    modules.append(nn.Linear(features, NUM_CLASSES))
    model = nn.Sequential(*modules)
    for module in model:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def make_step(model: nn.Sequential, optimizer: torch.optim.Optimizer, reg: bool) -> Callable[[Any, Any], Any]:
    weighted = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    hidden = weighted[:-1]

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = xb
        activity = xb.new_zeros(())
        for module in model:
            out = module(out)
            if reg and isinstance(module, nn.ReLU):
                activity = activity + out.abs().sum()
        loss = F.cross_entropy(out, yb)
        if reg:
            loss = loss + ACTIVITY_L1 * activity / xb.shape[0]
            for layer in hidden:
                loss = loss + KERNEL_L2 * layer.weight.pow(2).sum() + BIAS_L1 * layer.bias.abs().sum()
        loss.backward()
        optimizer.step()
        if reg:
            with torch.no_grad():
                for layer in weighted:
                    w = layer.weight
                    norms = w.flatten(1).norm(dim=1).view(-1, *([1] * (w.dim() - 1)))
                    w.mul_(norms.clamp(0.0, MAX_NORM) / (EPSILON + norms))
        return loss.detach()

    return step


def setup(peer: str, spec: ModelSpec, reg: bool, x: np.ndarray, y: np.ndarray, steps: int) -> Trial:
    xs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x)
    ys = torch.from_numpy(y)
    batch = spec.batch

    def make(backend: str | None) -> Callable[[Any, Any], Any]:
        torch.manual_seed(SEED)
        model = build(spec)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        step = make_step(model, optimizer, reg)
        return step if backend is None else torch.compile(step, backend=backend)

    state: dict[str, Any] = {}

    def epoch() -> None:
        step = state["step"]
        for i in range(steps):
            step(xs[i * batch:(i + 1) * batch], ys[i * batch:(i + 1) * batch])

    trial = Trial(epoch=epoch, info={"torch_version": torch.__version__})
    if peer == "torch":
        state["step"] = make(None)
        return trial

    def warmup() -> None:
        # The first epoch compiles. If inductor cannot build here, fall back to aot_eager and say so.
        state["step"] = make("inductor")
        try:
            epoch()
            trial.info["compile_backend"] = "inductor"
        except Exception as error:  # noqa: BLE001 - any inductor failure means: try the fallback
            import torch._dynamo

            torch._dynamo.reset()
            trial.notes.append(f"inductor failed ({type(error).__name__}: {str(error).splitlines()[0][:160]}); "
                               "used backend='aot_eager'")
            trial.info["compile_backend"] = "aot_eager"
            state["step"] = make("aot_eager")
            epoch()

    trial.warmup = warmup
    return trial
