"""Hand-written PyTorch: the loop a user writes without any library (``torch``), and under ``torch.compile``.

The reg variant adds the penalties naively, layer by layer, and projects every kernel onto
the max-norm ball by hand after ``optimizer.step()``, with Keras's formula
``w * clip(norm, 0, max) / (epsilon + norm)`` per output unit (Linear rows, Conv2d filters).
Weights start as in Keras (Glorot-uniform kernels, zero biases) so the numbers stay in the
same range as the Keras-style peers'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


class Recurrent(nn.Module):
    """``Embedding`` -> ``LSTM`` (batch first, last output) -> ``Linear``, initialized as Keras's layers are."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.embedding = nn.Embedding(spec.vocab, spec.embed_dim)
        self.lstm = nn.LSTM(spec.embed_dim, spec.lstm_units, batch_first=True)
        self.head = nn.Linear(spec.lstm_units, NUM_CLASSES)
        units = spec.lstm_units
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        nn.init.xavier_uniform_(self.lstm.weight_ih_l0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        with torch.no_grad():
            self.lstm.bias_ih_l0[units:2 * units] = 1.0  # Keras's unit_forget_bias
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.embedding(tokens))[0][:, -1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))


def build(spec: ModelSpec) -> nn.Module:
    """The model in torch's layouts: NCHW images, ``Linear`` weights ``(out, in)``; for token
    inputs, a :class:`Recurrent` model."""
    if spec.vocab:
        return Recurrent(spec)
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


def _max_norm_(w: torch.Tensor) -> None:
    norms = w.flatten(1).norm(dim=1).view(-1, *([1] * (w.dim() - 1)))
    w.mul_(norms.clamp(0.0, MAX_NORM) / (EPSILON + norms))


def make_recurrent_step(model: Recurrent, optimizer: torch.optim.Optimizer, reg: bool) -> Callable[[Any, Any], Any]:
    """The step of the token model. ``reg`` puts the hidden-layer rules on the LSTM: L2 on both weight
    matrices, L1 on both bias vectors (torch keeps two where Keras keeps one), L1 on its output, and
    max-norm per gate unit (rows of ``weight_ih``/``weight_hh``, columns of Keras's kernels) plus on the head."""
    lstm = model.lstm

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        hidden = model.features(xb)
        loss = F.cross_entropy(model.head(hidden), yb)
        if reg:
            loss = loss + ACTIVITY_L1 * hidden.abs().sum() / xb.shape[0]
            loss = loss + KERNEL_L2 * (lstm.weight_ih_l0.pow(2).sum() + lstm.weight_hh_l0.pow(2).sum())
            loss = loss + BIAS_L1 * (lstm.bias_ih_l0.abs().sum() + lstm.bias_hh_l0.abs().sum())
        loss.backward()
        optimizer.step()
        if reg:
            with torch.no_grad():
                for w in (lstm.weight_ih_l0, lstm.weight_hh_l0, model.head.weight):
                    _max_norm_(w)
        return loss.detach()

    return step


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, reg: bool) -> Callable[[Any, Any], Any]:
    if isinstance(model, Recurrent):
        return make_recurrent_step(model, optimizer, reg)
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
                    _max_norm_(layer.weight)
        return loss.detach()

    return step


def inputs(x: np.ndarray) -> torch.Tensor:
    """The inputs in torch's layout: images NCHW, everything else as it is."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x)


def compiled_trial(make: Callable[[Any], Callable[[Any, Any], Any]], settings: Sequence[tuple[str, Any]],
                   xs: torch.Tensor, ys: torch.Tensor, batch: int, steps: int) -> Trial:
    """A trial whose warm-up builds the step with ``make(setting)`` for the first of ``settings``
    (``(label, setting)`` pairs) that trains an epoch, and notes each one that failed.

    The step is built in the warm-up because that is where ``torch.compile`` compiles; an epoch
    calls it on ``steps`` consecutive batches. ``info["compile"]`` records the label used.
    """
    state: dict[str, Any] = {}

    def epoch() -> None:
        step = state["step"]
        for i in range(steps):
            step(xs[i * batch:(i + 1) * batch], ys[i * batch:(i + 1) * batch])

    trial = Trial(epoch=epoch, info={"torch_version": torch.__version__})

    def warmup() -> None:
        for index, (label, setting) in enumerate(settings):
            state["step"] = make(setting)
            try:
                epoch()
            except Exception as error:  # any compiler failure means: try the next setting
                if index + 1 == len(settings):
                    raise
                import torch._dynamo

                torch._dynamo.reset()
                trial.notes.append(f"{label} failed ({type(error).__name__}: {str(error).splitlines()[0][:160]}); "
                                   f"used {settings[index + 1][0]}")
                continue
            trial.info["compile"] = label
            return

    trial.warmup = warmup
    return trial


def setup(peer: str, spec: ModelSpec, reg: bool, x: np.ndarray, y: np.ndarray, steps: int) -> Trial:
    def make(backend: str | None) -> Callable[[Any, Any], Any]:
        torch.manual_seed(SEED)
        model = build(spec)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        step = make_step(model, optimizer, reg)
        return step if backend is None else torch.compile(step, backend=backend)

    # If inductor cannot build here, fall back to aot_eager, and say so.
    settings = ([("eager", None)] if peer == "torch" else
                [("backend='inductor'", "inductor"), ("backend='aot_eager'", "aot_eager")])
    return compiled_trial(make, settings, inputs(x), torch.from_numpy(y), spec.batch, steps)
