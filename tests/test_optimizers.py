"""Optimizers: trajectories against Keras 3 (torch backend) and NumPy, the step contract, configs, errors.

Tolerances, and why:

- float64 with a learning rate exact in float32 (2**-6): SGD, Adam, AdamW, Adagrad
  reproduce Keras to 1e-12 — the formulas are the same, only rounding differs.
  (Keras keeps the learning rate in a float32 variable, so any other rate carries
  float32 rounding into float64 runs.)
- float32: 1e-6 relative / 1e-6 absolute on the weights (a few float32 ulps). Keras
  computes Adam's bias correction in float32 (``1 - float32(0.999)`` is 1.3e-5 off),
  so Adam's float32 steps differ from ours by up to ~1e-5 of a step: that is still
  within 1e-6 of weights of order 1.
- RMSprop: torch adds epsilon outside the square root; see ``TestRMSprop``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_class_serialization_test
from hypothesis import given, settings
from hypothesis import strategies as st

from weightwise import optimizers
from weightwise.optimizers import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    ExponentialDecay,
    LearningRateSchedule,
    Optimizer,
    RMSprop,
    TorchOptimizer,
)

SHAPES = ((3, 4), (5,), (2, 1, 3))
DYADIC_LR = 2.0**-6
F32 = {"rtol": 1e-6, "atol": 1e-6}
F64_EXACT = {"rtol": 1e-12, "atol": 1e-12}
# Keras computes Adam's step size lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) in float32, where
# 1 - float32(0.999) is 1.3e-5 off: each float32 step may differ by ~1e-5 of itself.
ADAM_F32 = {"rtol": 1e-5, "atol": 1e-5}
ADAM_STEP_RTOL = 3e-5


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _data(steps: int, dtype: str, grad_scale: float, seed: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    inits = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    grads = [[(rng.normal(size=s) * grad_scale).astype(dtype) for s in SHAPES] for _ in range(steps)]
    return inits, grads


def keras_trajectory(keras: Any, opt: Any, inits: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    variables = [keras.Variable(w.copy(), dtype=str(w.dtype)) for w in inits]
    for step in grads:
        opt.apply([torch.tensor(g) for g in step], variables)
    return [np.asarray(v.numpy()) for v in variables]


def ww_trajectory(opt: Optimizer, inits: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in inits]
    opt.build(params)
    for step in grads:
        opt.zero_grad()
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


def compare(
    keras: Any,
    name: str,
    kwargs: dict[str, Any],
    dtype: str = "float32",
    steps: int = 25,
    grad_scale: float = 1.0,
    seed: int = 0,
    keras_kwargs: dict[str, Any] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    inits, grads = _data(steps, dtype, grad_scale, seed)
    ours = ww_trajectory(getattr(optimizers, name)(**kwargs), inits, grads)
    theirs = keras_trajectory(keras, getattr(keras.optimizers, name)(**(keras_kwargs or kwargs)), inits, grads)
    return ours, theirs, inits


def assert_close(
    ours: list[np.ndarray],
    theirs: list[np.ndarray],
    inits: list[np.ndarray],
    tol: dict[str, float],
    step_rtol: float | None = None,
) -> None:
    """Weights close to Keras's; with ``step_rtol``, also the distance moved, relative to it."""
    for a, b, w0 in zip(ours, theirs, inits):
        assert a.dtype == b.dtype
        moved = np.abs(b - w0).max()
        assert moved > 0, "the weights did not move: the comparison would prove nothing"
        np.testing.assert_allclose(a, b, **tol)
        if step_rtol is not None:
            assert np.abs(a - b).max() <= step_rtol * moved


# --------------------------------------------------------------------------------------
# Trajectories against Keras
# --------------------------------------------------------------------------------------
SGD_CASES = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.5, "nesterov": True},
    {"momentum": 0.0, "nesterov": True},
    {"momentum": 1.0},
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_matches_keras(keras: Any, kwargs: dict[str, Any], dtype: str) -> None:
    lr = 0.1 if dtype == "float32" else DYADIC_LR
    ours, theirs, inits = compare(keras, "SGD", {"learning_rate": lr, **kwargs}, dtype=dtype)
    assert_close(
        ours, theirs, inits, F32 if dtype == "float32" else F64_EXACT, step_rtol=1e-6 if dtype == "float32" else 1e-12
    )


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", {}),
        ("Adam", {"amsgrad": True}),
        ("Adam", {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
        ("AdamW", {"weight_decay": 0.25}),
        ("AdamW", {"weight_decay": 0.25, "amsgrad": True}),
        ("Adagrad", {}),
        ("Adagrad", {"initial_accumulator_value": 0.0}),
        ("Adagrad", {"initial_accumulator_value": 0.0, "epsilon": 1e-2}),
    ],
    ids=str,
)
@pytest.mark.parametrize("grad_scale", [1.0, 1e-6])
def test_adam_adamw_adagrad_match_keras_exactly_in_float64(
    keras: Any, name: str, kwargs: dict[str, Any], grad_scale: float
) -> None:
    # 1 - lr * weight_decay = 1 - 2**-8 is exact in float32, where Keras computes it.
    ours, theirs, inits = compare(
        keras, name, {"learning_rate": DYADIC_LR, **kwargs}, dtype="float64", grad_scale=grad_scale
    )
    assert_close(ours, theirs, inits, F64_EXACT, step_rtol=1e-9)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", {}),
        ("Adam", {"amsgrad": True}),
        ("AdamW", {}),
        ("AdamW", {"weight_decay": 0.1}),
        ("Adagrad", {}),
        ("Adagrad", {"initial_accumulator_value": 0.0}),
    ],
    ids=str,
)
@pytest.mark.parametrize("grad_scale", [1.0, 1e-4])
def test_adam_adamw_adagrad_match_keras_in_float32(
    keras: Any, name: str, kwargs: dict[str, Any], grad_scale: float
) -> None:
    ours, theirs, inits = compare(keras, name, {"learning_rate": 0.01, **kwargs}, grad_scale=grad_scale)
    if name == "Adagrad":
        assert_close(ours, theirs, inits, F32)
    else:
        assert_close(ours, theirs, inits, ADAM_F32, step_rtol=ADAM_STEP_RTOL)


def test_adam_epsilon_adjustment_is_what_makes_it_keras(keras: Any) -> None:
    """Plain torch.optim.Adam with Keras's epsilon is measurably off while sqrt(v) ~ epsilon."""
    inits, grads = _data(10, "float64", 1e-7, seed=3)
    theirs = keras_trajectory(keras, keras.optimizers.Adam(learning_rate=DYADIC_LR), inits, grads)
    ours = ww_trajectory(Adam(learning_rate=DYADIC_LR), inits, grads)
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in inits]
    plain = torch.optim.Adam(params, lr=DYADIC_LR, eps=1e-7)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        plain.step()
    for a, b, p, w0 in zip(ours, theirs, params, inits):
        np.testing.assert_allclose(a, b, **F64_EXACT)
        moved_keras = np.abs(b - w0).max()
        moved_plain = np.abs(p.detach().numpy() - w0).max()
        assert abs(moved_plain - moved_keras) > 0.01 * moved_keras


def test_adagrad_epsilon_lives_in_the_torch_accumulator() -> None:
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = Adagrad(learning_rate=0.1, initial_accumulator_value=0.5, epsilon=1e-3)
    opt.build([w])
    w.grad = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    opt.step()
    accumulator = 0.5 + np.array([1.0, 4.0, 0.0])
    np.testing.assert_allclose(opt.torch_optimizer.state[w]["sum"].numpy(), accumulator + 1e-3, rtol=1e-15)
    expected = -0.1 * np.array([1.0, -2.0, 0.0]) / np.sqrt(accumulator + 1e-3)
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-15)


class TestRMSprop:
    """torch's denominator is sqrt(v) + eps; Keras's is sqrt(v + eps). The difference is pinned here."""

    @pytest.mark.parametrize(
        "kwargs", [{}, {"momentum": 0.9}, {"centered": True}, {"rho": 0.5, "centered": True, "momentum": 0.3}], ids=str
    )
    def test_matches_keras_where_gradients_dwarf_epsilon(self, keras: Any, kwargs: dict[str, Any]) -> None:
        rng = np.random.default_rng(5)
        inits = [rng.normal(size=s) for s in SHAPES]
        # |g| in [0.5, 2]: v >= (1 - rho) * 0.25, so eps / (2 v) < 2e-6 (the centered variance is larger than 0.05 too).
        grads = [[rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.5, 2.0, size=s) for s in SHAPES] for _ in range(20)]
        ours = ww_trajectory(RMSprop(learning_rate=DYADIC_LR, **kwargs), inits, grads)
        theirs = keras_trajectory(keras, keras.optimizers.RMSprop(learning_rate=DYADIC_LR, **kwargs), inits, grads)
        for a, b, w0 in zip(ours, theirs, inits):
            moved = np.abs(b - w0).max()
            assert moved > 0.01
            assert np.abs(a - b).max() <= 2e-5 * moved

    def test_tiny_gradients_differ_as_documented(self, keras: Any) -> None:
        g = np.array([1e-4, -1e-3, 1e-2, 1.0])
        rho, eps, lr = 0.9, 1e-7, DYADIC_LR
        theirs = keras_trajectory(keras, keras.optimizers.RMSprop(learning_rate=lr), [np.zeros(4)], [[g]])[0]
        ours = ww_trajectory(RMSprop(learning_rate=lr), [np.zeros(4)], [[g]])[0]
        v = (1 - rho) * g**2
        np.testing.assert_allclose(theirs, -lr * g / np.sqrt(v + eps), rtol=1e-12)  # Keras
        np.testing.assert_allclose(ours, -lr * g / (np.sqrt(v) + eps), rtol=1e-12)  # torch
        ratio = ours / theirs
        # Far apart for |g| = 1e-4 (about 10x), indistinguishable for |g| = 1.
        assert ratio[0] > 5
        assert abs(ratio[3] - 1) < 1e-6


def test_sgd_momentum_follows_keras_under_a_schedule(keras: Any) -> None:
    schedule = {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}
    for kwargs in ({"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}):
        ours, theirs, inits = compare(
            keras,
            "SGD",
            {"learning_rate": ExponentialDecay(**schedule), **kwargs},
            keras_kwargs={"learning_rate": keras.optimizers.schedules.ExponentialDecay(**schedule), **kwargs},
        )
        assert_close(ours, theirs, inits, F32)
    # Without rescaling its momentum buffer, plain torch SGD is far from Keras here.
    inits, grads = _data(25, "float32", 1.0, 0)
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in inits]
    plain = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for step, gs in enumerate(grads):
        plain.param_groups[0]["lr"] = ExponentialDecay(**schedule)(step)
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g)
        plain.step()
    assert np.abs(params[0].detach().numpy() - theirs[0]).max() > 0.1


def test_rmsprop_momentum_follows_keras_under_a_schedule(keras: Any) -> None:
    rng = np.random.default_rng(9)
    inits = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.5, 2.0, size=s) for s in SHAPES] for _ in range(20)]
    schedule = {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.3, "staircase": True}
    ours = ww_trajectory(RMSprop(learning_rate=ExponentialDecay(**schedule), momentum=0.9), inits, grads)
    keras_opt = keras.optimizers.RMSprop(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(**schedule), momentum=0.9
    )
    theirs = keras_trajectory(keras, keras_opt, inits, grads)
    for a, b, w0 in zip(ours, theirs, inits):
        moved = np.abs(b - w0).max()
        assert np.abs(a - b).max() <= 2e-5 * moved


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_weight_decay_is_keras_decoupled_decay(keras: Any, name: str) -> None:
    extra = {"momentum": 0.9} if name == "SGD" else {}
    ours, theirs, inits = compare(
        keras, name, {"learning_rate": 0.01, "weight_decay": 0.5, **extra}, grad_scale=1e-3 if name == "SGD" else 1.0
    )
    tol = {"SGD": F32, "Adagrad": F32, "Adam": ADAM_F32, "RMSprop": {"rtol": 2e-5, "atol": 2e-5}}[name]
    assert_close(ours, theirs, inits, tol)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"global_clipnorm": 0.7}, {"clipvalue": 0.2}], ids=str)
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_clipping_matches_keras(keras: Any, clip: dict[str, float], name: str) -> None:
    ours, theirs, inits = compare(keras, name, {"learning_rate": 0.05, **clip}, grad_scale=3.0)
    if name == "SGD":
        assert_close(ours, theirs, inits, F32, step_rtol=1e-6)
    else:
        assert_close(ours, theirs, inits, ADAM_F32, step_rtol=ADAM_STEP_RTOL)


def test_clipping_formulas_against_numpy() -> None:
    grads = [np.array([3.0, 4.0]), np.array([0.0, 0.0]), np.array([0.1, -0.1])]

    def clipped(**kwargs: float) -> list[np.ndarray]:
        params = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in grads]
        opt = SGD(learning_rate=1.0, **kwargs)
        opt.build(params)
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        return [-p.detach().numpy() for p in params]

    per_norm = clipped(clipnorm=1.0)
    np.testing.assert_allclose(per_norm[0], [0.6, 0.8], rtol=1e-15)
    np.testing.assert_allclose(per_norm[1], [0.0, 0.0])
    np.testing.assert_allclose(per_norm[2], [0.1, -0.1], rtol=1e-15)  # under the norm: unchanged
    global_norm = math.sqrt(25 + 0.02)
    np.testing.assert_allclose(
        np.concatenate(clipped(global_clipnorm=2.0)), np.concatenate(grads) * 2.0 / global_norm, rtol=1e-15
    )
    np.testing.assert_allclose(np.concatenate(clipped(global_clipnorm=10.0)), np.concatenate(grads), rtol=1e-15)
    np.testing.assert_allclose(np.concatenate(clipped(clipvalue=0.05)), [0.05, 0.05, 0, 0, 0.05, -0.05])


def test_loss_scale_factor_divides_gradients_as_keras(keras: Any) -> None:
    inits, grads = _data(5, "float32", 64.0, 1)
    ours = ww_trajectory(SGD(learning_rate=0.1, loss_scale_factor=64.0), inits, grads)
    theirs = keras_trajectory(keras, keras.optimizers.SGD(learning_rate=0.1, loss_scale_factor=64.0), inits, grads)
    assert_close(ours, theirs, inits, F32)
    assert SGD(loss_scale_factor=8.0).scale_loss(torch.tensor(2.0)).item() == 16.0
    assert SGD().scale_loss(torch.tensor(2.0)).item() == 2.0


@settings(max_examples=30, deadline=None)
@given(
    lr=st.floats(1e-4, 1.0),
    momentum=st.floats(0.0, 1.0),
    nesterov=st.booleans(),
    decay=st.one_of(st.none(), st.floats(0.0, 0.5)),
    seed=st.integers(0, 2**16),
)
def test_sgd_is_keras_formula_in_numpy(
    lr: float, momentum: float, nesterov: bool, decay: float | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=5)
    grads = rng.normal(size=(6, 5))
    w, v = w0.copy(), np.zeros(5)
    for g in grads:
        if decay is not None:
            w = w - w * decay * lr
        v = momentum * v - lr * g
        w = w + (momentum * v - lr * g if nesterov else v) if momentum > 0 else w - lr * g
    ours = ww_trajectory(
        SGD(learning_rate=lr, momentum=momentum, nesterov=nesterov, weight_decay=decay), [w0], [[g] for g in grads]
    )
    np.testing.assert_allclose(ours[0], w, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_matches_keras(keras: Any, staircase: bool) -> None:
    ours = ExponentialDecay(0.1, decay_steps=7, decay_rate=0.6, staircase=staircase)
    theirs = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=7, decay_rate=0.6, staircase=staircase)
    for step in [0, 1, 6, 7, 8, 50]:
        np.testing.assert_allclose(ours(step), float(theirs(step)), rtol=1e-6)
    assert ours(0) == 0.1 and isinstance(ours(3), float)


def test_schedule_drives_the_learning_rate_step_by_step() -> None:
    seen: list[int] = []

    def schedule(step: int) -> float:
        seen.append(step)
        return 0.5 / (step + 1)

    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = SGD(learning_rate=schedule)
    opt.build([w])
    for _ in range(3):
        w.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        assert opt.torch_optimizer.param_groups[0]["lr"] == 0.5 / opt.iterations
    np.testing.assert_allclose(w.item(), -(0.5 + 0.25 + 0.5 / 3), rtol=1e-15)
    assert {0, 1, 2} <= set(seen)
    assert opt.learning_rate == 0.5 / 4


def test_zero_argument_callable_is_called_as_keras_does() -> None:
    current = {"lr": 0.25}
    w = torch.nn.Parameter(torch.zeros(1))
    opt = SGD(learning_rate=lambda: current["lr"])
    opt.build([w])
    w.grad = torch.ones(1)
    opt.step()
    current["lr"] = 0.5
    w.grad = torch.ones(1)
    opt.step()
    assert w.item() == -0.75


def test_schedule_giving_a_negative_rate_is_an_error() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    opt = SGD(learning_rate=lambda step: -1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.build([w])


def test_learning_rate_schedule_base_and_config_round_trip(keras: Any) -> None:
    with pytest.raises(NotImplementedError, match="__call__"):
        LearningRateSchedule()(0)
    with pytest.raises(NotImplementedError, match="get_config"):
        LearningRateSchedule().get_config()
    schedule = ExponentialDecay(0.1, 10, 0.5, staircase=True, name="decay")
    config = optimizers.schedules.serialize(schedule)
    assert config["module"] == "keras.optimizers.schedules" and config["registered_name"] is None
    again = optimizers.schedules.deserialize(json.loads(json.dumps(config)))
    assert again.get_config() == schedule.get_config()
    keras_schedule = keras.optimizers.schedules.deserialize(config)
    assert keras_schedule.get_config() == schedule.get_config()
    from_keras = optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(keras_schedule))
    assert from_keras.get_config() == schedule.get_config()


# --------------------------------------------------------------------------------------
# The step contract
# --------------------------------------------------------------------------------------
def test_parameters_without_gradients_are_untouched_even_by_weight_decay() -> None:
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(2))
    for opt in (
        SGD(0.1, momentum=0.9, weight_decay=0.5),
        Adam(0.1, weight_decay=0.5),
        AdamW(0.1),
        RMSprop(0.1, weight_decay=0.5),
        Adagrad(0.1, weight_decay=0.5),
    ):
        with torch.no_grad():
            a.fill_(1.0)
            b.fill_(1.0)
        opt.build([a, b])
        opt.zero_grad()
        a.grad = torch.ones(2)
        opt.step()
        assert torch.equal(b.detach(), torch.ones(2)), type(opt).__name__
        assert not torch.equal(a.detach(), torch.ones(2)), type(opt).__name__


def test_step_without_any_gradient_is_an_error_as_in_keras() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = SGD()
    opt.build([w])
    with pytest.raises(ValueError, match="No gradients provided"):
        opt.step()
    assert opt.iterations == 0


def test_step_before_build_is_an_error_and_empty_build_is_a_no_op_step() -> None:
    with pytest.raises(ValueError, match="build"):
        Adam().step()
    opt = Adam()
    opt.build([])
    assert opt.built and opt.torch_optimizer is None
    opt.step()
    opt.zero_grad()
    assert opt.iterations == 0


def test_build_twice_with_the_same_parameters_is_a_no_op_and_others_an_error() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    v = torch.nn.Parameter(torch.ones(3))
    opt = Adam()
    assert not opt.built
    opt.build([w, v])
    torch_opt = opt.torch_optimizer
    assert opt.built and isinstance(torch_opt, torch.optim.Adam)
    opt.build(iter([v, w, w]))
    assert opt.torch_optimizer is torch_opt
    assert opt.variables == [w, v]
    with pytest.raises(ValueError, match="already built"):
        opt.build([w])
    with pytest.raises(ValueError, match="params"):
        Adam().build([w, "not a tensor"])


def test_iterations_zero_grad_and_learning_rate_property() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = RMSprop(learning_rate=0.01)
    assert opt.learning_rate == 0.01 and opt.iterations == 0
    opt.learning_rate = 0.02
    opt.build([w])
    assert opt.torch_optimizer.param_groups[0]["lr"] == 0.02
    w.grad = torch.ones(2)
    opt.step()
    opt.step()
    assert opt.iterations == 2
    opt.zero_grad()
    assert w.grad is None
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    assert all(group["lr"] == 0.5 for group in opt.torch_optimizer.param_groups)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -0.1


def test_learning_rate_of_a_schedule_is_not_settable_as_in_keras() -> None:
    opt = SGD(learning_rate=ExponentialDecay(0.1, 1, 0.5))
    assert opt.learning_rate == 0.1
    opt.iterations = 2
    assert opt.learning_rate == pytest.approx(0.025)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
    opt.learning_rate = ExponentialDecay(1.0, 1, 0.5)
    assert opt.learning_rate == pytest.approx(0.25)


def test_torch_optimizer_is_wrapped() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    v = torch.nn.Parameter(torch.tensor([1.0]))
    torch_opt = torch.optim.SGD([w], lr=0.5, weight_decay=0.1)
    opt = optimizers.get(torch_opt)
    assert isinstance(opt, TorchOptimizer) and isinstance(opt, Optimizer)
    assert opt.torch_optimizer is torch_opt and opt.built
    opt.build([w])
    with pytest.raises(ValueError, match="does not update 1"):
        opt.build([w, v])
    assert opt.learning_rate == 0.5
    opt.learning_rate = 0.25
    assert torch_opt.param_groups[0]["lr"] == 0.25
    w.grad = torch.tensor([1.0, 1.0])
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), [1.0 - 0.25 * 1.1, 2.0 - 0.25 * 1.2], rtol=1e-6)
    assert opt.iterations == 1
    opt.zero_grad()
    assert w.grad is None
    with pytest.raises(TypeError, match="cannot be serialized"):
        optimizers.serialize(opt)
    with pytest.raises(ValueError, match="torch_optimizer"):
        TorchOptimizer("sgd")


# --------------------------------------------------------------------------------------
# Configs, string ids, serialization with Keras
# --------------------------------------------------------------------------------------
ALL = [SGD, Adam, AdamW, RMSprop, Adagrad]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_config_keys_defaults_and_signature_are_keras(keras: Any, cls: type) -> None:
    import inspect

    ours = cls().get_config()
    theirs = getattr(keras.optimizers, cls.__name__)().get_config()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        if key == "name":
            assert value.startswith(ours["name"])  # Keras numbers repeated names: adam_1, adam_2, ...
        elif key == "learning_rate":
            assert ours[key] == pytest.approx(value, rel=1e-7)  # Keras reports its float32 variable
        else:
            assert ours[key] == value, key
    keras_params = inspect.signature(getattr(keras.optimizers, cls.__name__).__init__).parameters
    our_params = inspect.signature(cls.__init__).parameters
    assert [p for p in our_params if p != "self"] == [p for p in keras_params if p not in ("self", "kwargs")]


@pytest.mark.parametrize(
    "obj",
    [
        SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0, name="my_sgd"),
        Adam(0.002, beta_1=0.8, amsgrad=True, weight_decay=0.01, global_clipnorm=2.0),
        AdamW(0.003, weight_decay=0.1, clipvalue=0.5),
        RMSprop(0.01, rho=0.8, momentum=0.5, centered=True, loss_scale_factor=4.0),
        Adagrad(0.1, initial_accumulator_value=0.2, epsilon=1e-5),
        SGD(learning_rate=ExponentialDecay(0.1, 5, 0.9)),
    ],
    ids=lambda o: type(o).__name__,
)
def test_config_round_trips(keras: Any, obj: Optimizer) -> None:
    rebuilt = run_class_serialization_test(obj, optimizers)
    assert rebuilt.get_config() == obj.get_config()
    # weightwise -> Keras -> weightwise.
    config = json.loads(json.dumps(optimizers.serialize(obj)))
    keras_opt = keras.optimizers.deserialize(config)
    assert type(keras_opt).__name__ == type(obj).__name__
    back = optimizers.deserialize(keras.optimizers.serialize(keras_opt))
    assert type(back) is type(obj)
    for key, value in obj.get_config().items():
        if isinstance(value, float):
            assert back.get_config()[key] == pytest.approx(value, rel=1e-7), key
        else:
            assert back.get_config()[key] == value, key


def test_keras_torch_backend_configs_are_read(keras: Any) -> None:
    config = keras.optimizers.serialize(keras.optimizers.SGD(learning_rate=0.5, momentum=0.9))
    assert config["module"].startswith("keras.src.backend.torch")
    opt = optimizers.deserialize(config)
    assert isinstance(opt, SGD) and opt.momentum == 0.9 and opt.learning_rate == 0.5


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("sgd", SGD),
        ("adam", Adam),
        ("adamw", AdamW),
        ("rmsprop", RMSprop),
        ("adagrad", Adagrad),
        ("SGD", SGD),
        ("Adam", Adam),
        ("AdamW", AdamW),
        ("RMSprop", RMSprop),
        ("Adagrad", Adagrad),
        ("ADAM", Adam),
        ("RmsProp", RMSprop),
    ],
)
def test_string_ids(identifier: str, cls: type) -> None:
    opt = optimizers.get(identifier)
    assert type(opt) is cls
    assert opt.get_config() == cls().get_config()


def test_get_passes_instances_and_builds_classes() -> None:
    opt = Adam()
    assert optimizers.get(opt) is opt
    assert type(optimizers.get(Adagrad)) is Adagrad
    assert optimizers.get(None) is None
    assert type(optimizers.get({"class_name": "rmsprop", "config": {"rho": 0.5}})) is RMSprop


@pytest.mark.parametrize("identifier", ["nadam", "sgdd", 42, 0.1, [1]])
def test_unknown_identifiers_are_value_errors_naming_them(identifier: Any) -> None:
    with pytest.raises(ValueError, match=repr(identifier).replace("[", r"\[").replace("]", r"\]")):
        optimizers.get(identifier)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: SGD(learning_rate=-0.1), "learning_rate"),
        (lambda: SGD(learning_rate=float("nan")), "learning_rate"),
        (lambda: SGD(learning_rate="fast"), "learning_rate"),
        (lambda: SGD(momentum=1.5), "momentum"),
        (lambda: SGD(momentum=-0.1), "momentum"),
        (lambda: SGD(nesterov="yes"), "nesterov"),
        (lambda: Adam(beta_1=1.0), "beta_1"),
        (lambda: Adam(beta_2=-0.5), "beta_2"),
        (lambda: Adam(epsilon=-1e-7), "epsilon"),
        (lambda: Adam(amsgrad=1), "amsgrad"),
        (lambda: RMSprop(rho=1.5), "rho"),
        (lambda: RMSprop(momentum=2.0), "momentum"),
        (lambda: Adagrad(initial_accumulator_value=-0.1), "initial_accumulator_value"),
        (lambda: SGD(weight_decay=-0.1), "weight_decay"),
        (lambda: SGD(clipnorm=-1.0), "clipnorm"),
        (lambda: SGD(clipvalue=-1.0), "clipvalue"),
        (lambda: SGD(global_clipnorm=-1.0), "global_clipnorm"),
        (lambda: SGD(use_ema=True), "use_ema"),
        (lambda: SGD(ema_overwrite_frequency=5), "ema_overwrite_frequency"),
        (lambda: SGD(gradient_accumulation_steps=4), "gradient_accumulation_steps"),
        (lambda: SGD(loss_scale_factor=0.0), "loss_scale_factor"),
        (lambda: SGD(name=3), "name"),
        (lambda: AdamW(weight_decay=None), "weight_decay"),
        (lambda: ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5), "decay_steps"),
        (lambda: ExponentialDecay(-0.1, decay_steps=1, decay_rate=0.5), "initial_learning_rate"),
    ],
)
def test_bad_arguments_are_value_errors_naming_argument_and_value(make: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`.*{argument}="):
        make()


def test_only_one_clipping_argument(keras: Any) -> None:
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="Only one of"):
        keras.optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


def test_custom_optimizer_subclass() -> None:
    class Plain(Optimizer):
        def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
            return torch.optim.SGD(params, lr=self.learning_rate)

    with pytest.raises(NotImplementedError, match="create_torch_optimizer"):
        Optimizer(0.1).build([torch.nn.Parameter(torch.ones(1))])
    w = torch.nn.Parameter(torch.ones(1))
    opt = Plain(0.5, weight_decay=0.5)
    assert opt.name == "plain"
    opt.build([w])
    w.grad = torch.ones(1)
    opt.step()
    assert w.item() == pytest.approx((1 - 0.25) - 0.5)


def test_a_zero_learning_rate_step_with_momentum_neither_moves_nor_breaks_the_buffer() -> None:
    # Keras would still move by momentum * v at lr 0; torch cannot (documented). What must hold:
    # no division by zero, the weights stay put for that step, and training goes on finitely.
    w = torch.nn.Parameter(torch.ones(3))
    opt = SGD(learning_rate=lambda step: 0.0 if step == 1 else 0.1, momentum=0.9)
    opt.build([w])
    history = []
    for _ in range(4):
        w.grad = torch.ones(3)
        opt.step()
        history.append(w.detach().clone())
    assert torch.equal(history[0], history[1])
    assert torch.isfinite(history[-1]).all() and not torch.equal(history[2], history[1])
    assert torch.isfinite(opt.torch_optimizer.state[w]["momentum_buffer"]).all()
