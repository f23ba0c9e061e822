"""The fit-against-Keras conformance tests again, with ``compile(jit_compile=True)``.

Each test below is imported from its own module and runs unchanged, except that every
weightwise ``compile`` call is made with ``jit_compile=True`` and torch runs with one thread, so
that ``fit`` takes its compiled step from the second training step on (with several threads
the first steps after the eager one time the thread settings eagerly). Keras runs as before;
the original tolerances hold.

Chosen: the comparisons that train several steps with SGD (the optimizer whose update
compiles into the step; with the others ``fit`` warns that it cannot compile the whole step)
on models without random layers, plus a frozen model (no weights to update). Left out, with
the reason:
- Dropout, SpatialDropout, GaussianNoise and the other random layers: inductor draws its own
  random numbers, so a compiled step cannot reproduce the eager masks bit for bit; those tests
  compare against Keras through trends, not step by step, already.
- Tests that take a single fit step: the first step of ``fit`` is eager by design, so they would
  only pay a compile for nothing.
- Adam, RMSprop and the torch-optimizer paths: no fused update yet (the step is not compiled
  whole), covered once here (``test_functional_script_fit_evaluate_predict_match_keras``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from helpers import keras_or_skip
from test_compiled_step import one_thread
from test_functional_ops import test_training_through_ops_matches_keras
from test_keras_scripts import test_functional_script_fit_evaluate_predict_match_keras
from test_schedules import test_fit_with_each_schedule_matches_keras
from test_training import (
    regularized_graph,
    regularized_stack,
    test_multi_input_multi_output_fit_matches_keras,
)
from test_training import test_fit_matches_keras as fit_matches_keras
from test_training_frozen import test_frozen_model_fits_without_updates

from weightwise import compiled_step
from weightwise.models import training

__all__ = [
    "one_thread",
    "test_fit_with_each_schedule_matches_keras",
    "test_frozen_model_fits_without_updates",
    "test_functional_script_fit_evaluate_predict_match_keras",
    "test_multi_input_multi_output_fit_matches_keras",
    "test_training_through_ops_matches_keras",
]

# The tests whose fit must have run the compiled whole step (SGD, several steps, trainable weights).
COMPILED_WHOLE = {
    "test_fit_with_each_schedule_matches_keras",
    "test_multi_input_multi_output_fit_matches_keras",
    "test_training_through_ops_matches_keras",
}


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


@pytest.fixture(autouse=True)
def jit_compile(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    original = training.Trainer.compile

    def compile_jit(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["jit_compile"] = True
        return original(self, *args, **kwargs)

    calls = []
    step_call = compiled_step.CompiledStep.__call__

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return step_call(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "compile", compile_jit)
    monkeypatch.setattr(compiled_step.CompiledStep, "__call__", counted)
    # Each test compiles from a clean cache: a process that compiled many steps before could
    # otherwise reach dynamo's recompile limit and run the program uncompiled.
    torch._dynamo.reset()
    yield
    if request.node.originalname in COMPILED_WHOLE:
        assert calls, "fit did not run the compiled step"


# Two of the four eager cases, to keep the compile time down: each momentum path once, each model kind once.
@pytest.mark.parametrize(("build", "momentum"), [(regularized_stack, 0.0), (regularized_graph, 0.9)],
                         ids=["sequential-0.0", "functional-0.9"])
def test_fit_matches_keras(keras: Any, build: Any, momentum: float) -> None:
    fit_matches_keras(keras, build, momentum)
