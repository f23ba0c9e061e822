"""The compiled training step against the eager one: same weights and logs over epochs, one graph.

``fit(jit_compile=True)`` runs its first step eagerly and every later one as one compiled program
(forward, losses, penalties, backward, clipping, the SGD update, projections). Each test here
trains two identical tiny models on the same batches, one with ``jit_compile=False`` and one
with ``jit_compile=True``, and asserts that the weights and every History entry agree to
``rtol=1e-5``: only the order of float32 operations may differ. Torch runs with one thread
(set by the ``one_thread`` fixture), so the compiled step engages from the second step on
instead of after the eager timing trials of ``threads="auto"``.

Models are kept tiny: compiling costs seconds for each distinct program.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo as dynamo
from torch import nn

import weightwise
from weightwise import Model, Sequential, constraints, layers, optimizers, regularizers
from weightwise.compiled_step import CompiledStep, fusion_blocker, train_step

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _weights(model: torch.nn.Module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def _assert_same(eager: tuple[list[np.ndarray], dict], jit: tuple[list[np.ndarray], dict]) -> None:
    assert len(eager[0]) == len(jit[0])
    for index, (a, b) in enumerate(zip(eager[0], jit[0])):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"state entry {index}")
    assert sorted(eager[1]) == sorted(jit[1])
    for key, values in eager[1].items():
        np.testing.assert_allclose(jit[1][key], values, rtol=RTOL, atol=ATOL, err_msg=key)


def _fit_both(build: Callable[[], Model], compile_kwargs: Callable[[], dict], x: Any, y: Any, *,
              epochs: int = 3, check_graphs: bool = True, **fit_kwargs: Any) -> CompiledStep:
    """Fit ``build()`` eagerly and compiled; compare; return the compiled step that ran.

    The compiled model trains one epoch, then the rest in a second ``fit``: the program count
    after the first epoch must not grow (no recompile) and no graph break may be recorded.
    """
    results = {}
    step = None
    for jit in (False, True):
        model = build()
        model.compile(jit_compile=jit, **compile_kwargs())
        fit = dict(batch_size=8, shuffle=False, verbose=0, **fit_kwargs)
        if jit:
            dynamo.reset()
            dynamo.utils.counters.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = model.fit(x, y, epochs=1, **fit).history
            graphs = dynamo.utils.counters["stats"]["unique_graphs"]
            rest = model.fit(x, y, epochs=epochs - 1, **fit).history
        # A fallback to the eager step would warn: here every model must compile whole.
        assert not [w for w in caught if "jit_compile" in str(w.message)], [str(w.message) for w in caught]
        history = {key: first[key] + rest[key] for key in first}
        if jit:
            step = model.__dict__.get("_fused_step")
            assert isinstance(step, CompiledStep), "fit(jit_compile=True) did not use the compiled step"
            if check_graphs:
                assert dict(dynamo.utils.counters["graph_break"]) == {}
                assert graphs > 0
                assert dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "the step recompiled"
        results[jit] = (_weights(model), history)
    _assert_same(results[False], results[True])
    return step


def _data(n: int = 40, features: int = 4, outputs: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype("float32"), rng.normal(size=(n, outputs)).astype("float32")


# -- Dense stacks: every built-in rule, custom rules, SGD's options -------------------------------
def _scaled_l1(weight: torch.Tensor) -> torch.Tensor:
    """A custom regularizer as a plain callable."""
    return 0.01 * torch.sum(torch.abs(weight) ** 1.5)


class _Halve(constraints.Constraint):
    """A custom constraint: entries above 0.5 are pulled halfway back."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w > 0.5, 0.5 + (w - 0.5) / 2, w)


def _dense_rules() -> Model:
    torch.manual_seed(0)
    return Sequential([
        layers.Input(shape=(4,)),
        layers.Dense(5, activation="relu", kernel_regularizer=regularizers.L1L2(l1=0.01, l2=0.02),
                     bias_regularizer="l2", activity_regularizer="l1", kernel_constraint=constraints.MaxNorm(0.8)),
        layers.Dense(4, activation="tanh", kernel_regularizer=_scaled_l1, bias_regularizer=regularizers.L1(0.01),
                     kernel_constraint=constraints.UnitNorm(), bias_constraint=constraints.NonNeg(),
                     activity_regularizer=regularizers.L2(0.01)),
        layers.Dense(3, kernel_regularizer=regularizers.OrthogonalRegularizer(0.05),
                     kernel_constraint=constraints.MinMaxNorm(0.2, 0.7, rate=0.5), bias_constraint=_Halve()),
        layers.Dense(1, kernel_constraint=constraints.NonNeg()),
    ])


def test_dense_rules_with_nesterov_clipnorm_and_sample_weight_match_eager() -> None:
    x, y = _data()
    _fit_both(_dense_rules, lambda: {"optimizer": optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0),
                                     "loss": "mse", "metrics": ["mae"]}, x, y,
              sample_weight=np.linspace(0.5, 1.5, len(x)).astype("float32"))


def test_spectral_norm_frozen_layer_schedule_clipvalue_decay_and_loss_scale_match_eager() -> None:
    def build() -> Model:
        torch.manual_seed(1)
        model = Sequential([
            layers.Input(shape=(4,)),
            layers.Dense(6, activation="relu", kernel_constraint=constraints.SpectralNorm(0.9), name="spectral"),
            layers.Dense(3, activation="relu", kernel_regularizer="l2", name="frozen"),
            layers.Dense(1, kernel_constraint=constraints.MaxNorm(1.0)),
        ])
        model.get_layer("frozen").trainable = False
        return model

    schedule = lambda: optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    x, y = _data(seed=1)
    _fit_both(build, lambda: {"optimizer": optimizers.SGD(schedule(), momentum=0.5, clipvalue=0.05, weight_decay=0.01,
                                                                    loss_scale_factor=64.0),
                                  "loss": "mse"}, x, y)


def test_two_outputs_with_loss_weights_metrics_and_global_clipnorm_match_eager() -> None:
    def build() -> Model:
        torch.manual_seed(2)
        inputs = layers.Input(shape=(4,))
        hidden = layers.Dense(4, activation="relu", kernel_regularizer="l2")(inputs)
        return Model(inputs, [layers.Dense(1, name="reg")(hidden),
                              layers.Dense(3, activation="softmax", name="cls")(hidden)])

    x, _ = _data(seed=2)
    rng = np.random.default_rng(2)
    y = {"reg": rng.normal(size=(len(x), 1)).astype("float32"),
         "cls": np.eye(3, dtype="float32")[rng.integers(0, 3, len(x))]}
    _fit_both(build, lambda: {"optimizer": optimizers.SGD(0.1, momentum=0.9, global_clipnorm=0.5),
                                  "loss": {"reg": "mse", "cls": "categorical_crossentropy"},
                                  "loss_weights": {"reg": 0.3, "cls": 1.5},
                                  "metrics": {"reg": ["mae"], "cls": ["accuracy"]}}, x, y)


# -- the benchmark-like families: convolution, recurrence, normalization -------------------------
def test_conv_pooling_flatten_with_batch_norm_and_class_weight_match_eager() -> None:
    def build() -> Model:
        torch.manual_seed(3)
        return Sequential([
            layers.Input(shape=(6, 6, 1)),
            layers.Conv2D(3, 3, activation="relu", kernel_regularizer="l2", kernel_constraint=constraints.MaxNorm(1.0)),
            layers.BatchNormalization(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ])

    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 32)
    _fit_both(build, lambda: {"optimizer": optimizers.SGD(0.05, momentum=0.9), "loss": "sparse_categorical_crossentropy",
                                  "metrics": ["accuracy"]}, x, y, class_weight={0: 1.0, 1: 2.0, 2: 0.5})


def test_embedding_lstm_matches_eager() -> None:
    def build() -> Model:
        torch.manual_seed(4)
        return Sequential([
            layers.Input(shape=(5,), dtype="int32"),
            layers.Embedding(7, 3, embeddings_regularizer="l2", embeddings_constraint=constraints.UnitNorm()),
            layers.LSTM(4, kernel_regularizer="l1", recurrent_constraint=constraints.MaxNorm(1.0)),
            layers.Dense(1),
        ])

    rng = np.random.default_rng(4)
    x = rng.integers(0, 7, (32, 5)).astype("int32")
    y = rng.normal(size=(32, 1)).astype("float32")
    _fit_both(build, lambda: {"optimizer": optimizers.SGD(0.1, momentum=0.9, clipnorm=1.0), "loss": "mse"}, x, y)


# -- weightwise.train_step on a plain torch model ------------------------------------------------
def _torch_model() -> nn.Sequential:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    weightwise.regularize(model, {"0.weight": regularizers.L1L2(0.01, 0.02), "2.weight": "l2",
                                  "2.bias": regularizers.L1(0.01)})
    weightwise.constrain(model, {"0.weight": constraints.MaxNorm(0.7, axis=1), "2.bias": constraints.NonNeg()})
    return model


def _hand_loop(model: nn.Module, loss: Callable, batches: list, lr: float, momentum: float) -> list[float]:
    """The same step written out with torch.optim.SGD and the public binding functions."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for x, y in batches:
        opt.zero_grad()
        value = loss(model(x), y) + weightwise.regularization_loss(model)
        value.backward()
        opt.step()
        weightwise.apply_constraints(model)
        losses.append(float(value.detach()))
    return losses


def _batches(classes: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(6)
    out = []
    for _ in range(12):
        x = torch.randn(8, 4, generator=g)
        y = torch.randint(0, 3, (8,), generator=g) if classes else torch.randn(8, 3, generator=g)
        out.append((x, y))
    return out


@pytest.mark.parametrize("kind", ["torch-cross-entropy", "keras-mse"])
def test_train_step_on_a_torch_model_matches_a_hand_loop(kind: str) -> None:
    classes = kind == "torch-cross-entropy"
    batches = _batches(classes)
    expected_model = _torch_model()
    torch_loss = nn.CrossEntropyLoss() if classes else nn.MSELoss()
    expected = _hand_loop(expected_model, torch_loss, batches, lr=0.05, momentum=0.9)

    model = _torch_model()
    dynamo.reset()
    dynamo.utils.counters.clear()
    step = train_step(model, nn.CrossEntropyLoss() if classes else "mse", optimizers.SGD(0.05, momentum=0.9))
    got = [float(step(x, y)) for x, y in batches]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    for name, value in expected_model.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name].numpy(), value.numpy(), rtol=RTOL, atol=ATOL, err_msg=name)
    assert dict(dynamo.utils.counters["graph_break"]) == {}
    assert dynamo.utils.counters["stats"]["unique_graphs"] > 0, "the step was not compiled"


def test_train_step_refuses_bad_arguments_by_name() -> None:
    model = _torch_model()
    with pytest.raises(TypeError, match="`model`.*Received: model="):
        train_step("not a model", "mse", optimizers.SGD())
    with pytest.raises(TypeError, match="`jit_compile`"):
        train_step(model, "mse", optimizers.SGD(), jit_compile="yes")
    with pytest.raises(ValueError, match="loss"):
        train_step(model, "no_such_loss", optimizers.SGD())
    with pytest.raises(ValueError, match="`threads`"):
        train_step(model, "mse", optimizers.SGD(), threads=0)(torch.ones(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="sample_weight"):
        train_step(model, nn.MSELoss(), optimizers.SGD())(torch.ones(2, 4), torch.zeros(2, 3), torch.ones(2))


@pytest.mark.parametrize("blocked", ["use_ema", "proximal"])
def test_a_blocked_step_warns_once_and_trains_eagerly_with_the_same_numbers(blocked: str) -> None:
    def setup() -> tuple[nn.Module, Any]:
        model = _torch_model()
        if blocked == "proximal":
            weightwise.regularize(model, {"2.weight": regularizers.ProximalL1(0.01)})
            return model, optimizers.SGD(0.05, momentum=0.9)
        return model, optimizers.SGD(0.05, momentum=0.9, use_ema=True)

    batches = _batches(False)
    model, optimizer = setup()
    reference, ref_optimizer = setup()
    assert fusion_blocker(model, optimizer) is not None
    step = train_step(model, "mse", optimizer)
    eager = train_step(reference, "mse", ref_optimizer, jit_compile=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [float(step(x, y)) for x, y in batches]
    runs_eagerly = [w for w in caught if "train_step runs eagerly" in str(w.message)]
    assert len(runs_eagerly) == 1
    expected = [float(eager(x, y)) for x, y in batches]
    assert got == expected
    for name, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy(), err_msg=name)
