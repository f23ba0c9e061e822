"""The floor (``floor``): the model's bare forward and backward compute, compiled, and nothing else.

One step is ``torch.autograd.grad(logits.sum(), parameters)`` with the logits from
``torch.compile(model)`` (inductor, with its C++ wrapper on the CPU, the setting weightwise's
compiled step uses; inductor's default wrapper, with a note, if that fails): the forward layers,
then the gradient of every weight and bias (and, on the way, of every hidden activation) through the
backward graph AOTAutograd builds and inductor compiles. The model is the hand-written torch
peer's: same shapes, batch, data and initial weights. There is no loss function, no labels, no
penalty, no optimizer update and no constraint: every other peer does at least this work per
step, so its time over the floor's says how much more it spends.

The ``reg`` variant runs the very same step as ``plain`` (the rules are what the floor leaves
out); both are measured, so the two numbers also show the run's noise. On the ``lstm`` model
Dynamo does not trace ``nn.LSTM`` (``torch._dynamo.config.allow_rnn`` is off by default): the
recurrent layer runs torch's fused LSTM kernel and its backward between the compiled embedding
and head, as in the hand-written ``torch-compile`` peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.peers import Trial
from benchmarks.peers.torch_peer import build, compiled_trial, inputs
from benchmarks.specs import SEED, ModelSpec

REG_NOTE = "the reg variant runs the plain step: the floor has no penalties, optimizer or constraints"


def make_floor_step(model: torch.nn.Module, options: dict[str, Any]) -> Callable[[torch.Tensor, Any], Any]:
    """The step: compiled ``model(x).sum()``, then the gradients of every parameter (labels unused)."""
    params = [p for p in model.parameters() if p.requires_grad]

    def total(x: torch.Tensor) -> torch.Tensor:
        return model(x).sum()

    compiled = torch.compile(total, dynamic=False, **({"options": options} if options else {}))

    def step(x: torch.Tensor, _labels: Any = None) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(compiled(x), params)

    return step


def setup(peer: str, spec: ModelSpec, reg: bool, x: np.ndarray, y: np.ndarray, steps: int) -> Trial:
    def make(options: dict[str, Any]) -> Callable[[torch.Tensor, Any], Any]:
        torch.manual_seed(SEED)
        model = build(spec)
        model.train()
        return make_floor_step(model, options)

    trial = compiled_trial(make, [("inductor's C++ wrapper", {"cpp_wrapper": True}),
                                  ("inductor's default wrapper", {})],
                           inputs(x), torch.from_numpy(y), spec.batch, steps)
    if reg:
        trial.notes.append(REG_NOTE)
    return trial
