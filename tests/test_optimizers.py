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
- RMSprop: Keras's update exactly; its long trajectories are in ``test_rmsprop_keras.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
        assert np.abs(a - b).max() <= 1e-6 * moved


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_weight_decay_is_keras_decoupled_decay(keras: Any, name: str) -> None:
    extra = {"momentum": 0.9} if name == "SGD" else {}
    ours, theirs, inits = compare(
        keras, name, {"learning_rate": 0.01, "weight_decay": 0.5, **extra}, grad_scale=1e-3 if name == "SGD" else 1.0
    )
    tol = {"SGD": F32, "Adagrad": F32, "Adam": ADAM_F32, "RMSprop": F32}[name]
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
    with pytest.raises(TypeError, match="params"):
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
    with pytest.raises(TypeError, match="torch_optimizer"):
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
        (lambda: SGD(use_ema="yes"), "use_ema"),
        (lambda: SGD(ema_overwrite_frequency=0), "ema_overwrite_frequency"),
        (lambda: SGD(ema_overwrite_frequency=2.0), "ema_overwrite_frequency"),
        (lambda: SGD(gradient_accumulation_steps=1), "gradient_accumulation_steps"),
        (lambda: SGD(gradient_accumulation_steps=2.5), "gradient_accumulation_steps"),
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


# --------------------------------------------------------------------------------------
# Optimizer state: save_own_variables / load_own_variables, in Keras's variable layout
# --------------------------------------------------------------------------------------
SCHEDULE = {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}
# (class name, kwargs, whether the learning rate is an ExponentialDecay(**SCHEDULE)).
STATE_CASES = [
    ("SGD", {}, False),
    ("SGD", {"momentum": 0.9}, False),
    ("SGD", {"momentum": 0.9, "nesterov": True}, False),
    ("SGD", {"momentum": 0.9}, True),
    ("Adam", {}, False),
    ("Adam", {"amsgrad": True}, False),
    ("Adam", {}, True),
    ("AdamW", {"weight_decay": 0.1}, False),
    ("AdamW", {"weight_decay": 0.1, "amsgrad": True}, False),
    ("RMSprop", {}, False),
    ("RMSprop", {"momentum": 0.9}, False),
    ("RMSprop", {"centered": True}, False),
    ("RMSprop", {"centered": True, "momentum": 0.5}, False),
    ("Adagrad", {}, False),
    ("Adagrad", {"initial_accumulator_value": 0.0, "epsilon": 1e-3}, False),
]
STATE_IDS = [f"{name}-{kwargs}{'-schedule' if schedule else ''}" for name, kwargs, schedule in STATE_CASES]
STATE_RTOL: dict[str, float] = {}


def _state_data(steps: int, seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """float32 weights and gradients with |g| in [0.5, 2]: well above every epsilon."""
    rng = np.random.default_rng(seed)
    inits = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [
        [(rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.5, 2.0, size=s)).astype("float32") for s in SHAPES]
        for _ in range(steps)
    ]
    return inits, grads


def _ours(name: str, kwargs: dict[str, Any], schedule: bool, lr: float = 0.01) -> Optimizer:
    learning_rate = ExponentialDecay(**SCHEDULE) if schedule else lr
    return getattr(optimizers, name)(learning_rate=learning_rate, **kwargs)


def _theirs(keras: Any, name: str, kwargs: dict[str, Any], schedule: bool, lr: float = 0.01) -> Any:
    learning_rate = keras.optimizers.schedules.ExponentialDecay(**SCHEDULE) if schedule else lr
    return getattr(keras.optimizers, name)(learning_rate=learning_rate, **kwargs)


def _params(weights: list[np.ndarray]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.tensor(np.array(w))) for w in weights]


def _ww_steps(opt: Optimizer, params: list[torch.Tensor], grads: list[list[np.ndarray]]) -> None:
    opt.build(params)  # a no-op when built on these already
    for step in grads:
        opt.zero_grad()
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()


def _keras_steps(opt: Any, variables: list[Any], grads: list[list[np.ndarray]]) -> None:
    for step in grads:
        opt.apply([torch.tensor(g) for g in step], variables)


def _weights(items: list[Any]) -> list[np.ndarray]:
    return [np.array(x.detach().numpy() if isinstance(x, torch.Tensor) else x.numpy()) for x in items]


@pytest.mark.parametrize("name, kwargs, schedule", STATE_CASES, ids=STATE_IDS)
def test_saved_state_is_what_keras_saves(keras: Any, name: str, kwargs: dict[str, Any], schedule: bool) -> None:
    inits, grads = _state_data(4)
    ours = _ours(name, kwargs, schedule)
    params = _params(inits)
    _ww_steps(ours, params, grads)
    theirs = _theirs(keras, name, kwargs, schedule)
    _keras_steps(theirs, [keras.Variable(w.copy()) for w in inits], grads)
    saved: dict[str, np.ndarray] = {}
    ours.save_own_variables(saved)
    expected: dict[str, np.ndarray] = {}
    theirs.save_own_variables(expected)
    assert list(saved) == list(expected)
    assert len(saved) == len(theirs.variables)
    assert len(params) > 0 and saved["0"] == 4
    for key, value in expected.items():
        assert isinstance(saved[key], np.ndarray), key
        assert saved[key].dtype == value.dtype and saved[key].shape == value.shape, key
        # Relative to each variable's scale: momenta summing gradients of both signs come near 0 here and there.
        rtol = STATE_RTOL.get(name, 1e-6)
        np.testing.assert_allclose(saved[key], value, rtol=rtol, atol=rtol * np.abs(value).max(), err_msg=key)


@pytest.mark.parametrize("name, kwargs, schedule", STATE_CASES, ids=STATE_IDS)
def test_state_crosses_to_and_from_keras_and_training_goes_on(
    keras: Any, name: str, kwargs: dict[str, Any], schedule: bool
) -> None:
    inits, grads = _state_data(9, seed=1)
    before, after = grads[:5], grads[5:]
    tol = F32 if name in ("SGD", "Adagrad") else ADAM_F32
    if name == "RMSprop":
        tol = F32

    # Keras -> weightwise: Keras trains, saves; a fresh weightwise optimizer on Keras's weights loads it.
    keras_opt = _theirs(keras, name, kwargs, schedule)
    variables = [keras.Variable(w.copy()) for w in inits]
    _keras_steps(keras_opt, variables, before)
    keras_state: dict[str, np.ndarray] = {}
    keras_opt.save_own_variables(keras_state)
    at_save = _weights(variables)
    ours = _ours(name, kwargs, schedule)
    params = _params(at_save)
    ours.build(params)
    ours.load_own_variables(keras_state)
    assert ours.iterations == 5
    _ww_steps(ours, params, after)
    _keras_steps(keras_opt, variables, after)
    assert_close(_weights(params), _weights(variables), at_save, tol)

    # weightwise -> Keras: weightwise trains, saves; a fresh Keras optimizer on our weights loads it.
    ours = _ours(name, kwargs, schedule)
    params = _params(inits)
    _ww_steps(ours, params, before)
    our_state: dict[str, np.ndarray] = {}
    ours.save_own_variables(our_state)
    at_save = _weights(params)
    keras_opt = _theirs(keras, name, kwargs, schedule)
    variables = [keras.Variable(w.copy()) for w in at_save]
    keras_opt.build(variables)
    keras_opt.load_own_variables(our_state)
    assert int(keras_opt.iterations.numpy()) == 5
    _keras_steps(keras_opt, variables, after)
    _ww_steps(ours, params, after)
    assert_close(_weights(params), _weights(variables), at_save, tol)


def _round_trip(make: Callable[[], Optimizer], steps_before: int = 4, steps_after: int = 4) -> tuple[Any, Any]:
    """Weights after uninterrupted training, and after save -> load into a fresh optimizer -> training."""
    inits, grads = _state_data(steps_before + steps_after, seed=2)
    uninterrupted = make()
    params = _params(inits)
    _ww_steps(uninterrupted, params, grads[:steps_before])
    store: dict[str, np.ndarray] = {}
    uninterrupted.save_own_variables(store)
    resumed = make()
    copies = _params(_weights(params))
    resumed.build(copies)
    resumed.load_own_variables(store)
    assert resumed.iterations == uninterrupted.iterations == steps_before
    _ww_steps(uninterrupted, params, grads[steps_before:])
    _ww_steps(resumed, copies, grads[steps_before:])
    return params, copies


@pytest.mark.parametrize("name, kwargs, schedule", STATE_CASES, ids=STATE_IDS)
def test_our_save_load_continues_exactly(name: str, kwargs: dict[str, Any], schedule: bool) -> None:
    # A power-of-two rate makes the momentum's change of units (times / divided by the rate) exact.
    params, copies = _round_trip(lambda: _ours(name, kwargs, schedule=False, lr=DYADIC_LR))
    for a, b in zip(params, copies):
        assert torch.equal(a, b)
    # Any other rate: exact where no rate is folded in; else within one rounding of the momentum.
    params, copies = _round_trip(lambda: _ours(name, kwargs, schedule, lr=0.01))
    folded = kwargs.get("momentum", 0) > 0
    for a, b in zip(params, copies):
        if folded:
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(a, b)


def test_a_learning_rate_set_between_steps_survives_save_and_load(keras: Any) -> None:
    # SGD with momentum: the velocity keeps the old rate folded in, the next step uses the new one.
    inits, grads = _state_data(8, seed=3)
    uninterrupted = SGD(learning_rate=2.0**-4, momentum=0.9)
    params = _params(inits)
    _ww_steps(uninterrupted, params, grads[:4])
    uninterrupted.learning_rate = 2.0**-6
    store: dict[str, np.ndarray] = {}
    uninterrupted.save_own_variables(store)
    assert store["1"] == 2.0**-6
    resumed = SGD(learning_rate=2.0**-4, momentum=0.9)
    copies = _params(_weights(params))
    resumed.build(copies)
    resumed.load_own_variables(store)
    assert resumed.learning_rate == 2.0**-6 and resumed.torch_optimizer.param_groups[0]["lr"] == 2.0**-6
    _ww_steps(uninterrupted, params, grads[4:])
    _ww_steps(resumed, copies, grads[4:])
    for a, b in zip(params, copies):
        assert torch.equal(a, b)

    # The same with Keras on the other side, both ways.
    keras_opt = keras.optimizers.SGD(learning_rate=2.0**-4, momentum=0.9)
    variables = [keras.Variable(w.copy()) for w in inits]
    _keras_steps(keras_opt, variables, grads[:4])
    keras_opt.learning_rate = 2.0**-6
    keras_state: dict[str, np.ndarray] = {}
    keras_opt.save_own_variables(keras_state)
    assert list(store) == list(keras_state)
    for key, value in keras_state.items():
        np.testing.assert_allclose(store[key], value, rtol=1e-6, atol=1e-9)
    at_save = _weights(variables)
    ours = SGD(learning_rate=2.0**-4, momentum=0.9)
    params = _params(at_save)
    ours.build(params)
    ours.load_own_variables(keras_state)
    _ww_steps(ours, params, grads[4:])
    _keras_steps(keras_opt, variables, grads[4:])
    assert_close(_weights(params), _weights(variables), at_save, F32, step_rtol=1e-6)


def _trained_adam() -> tuple[Adam, list[torch.nn.Parameter]]:
    inits, grads = _state_data(3)
    opt = Adam(learning_rate=0.01, amsgrad=True)
    params = _params(inits)
    _ww_steps(opt, params, grads)
    return opt, params


def _snapshot(opt: Optimizer, param: torch.Tensor) -> tuple[int, dict[str, torch.Tensor], float | None]:
    state = {key: value.clone() for key, value in opt.torch_optimizer.state[param].items()}
    return opt.iterations, state, opt._last_step_lr


def _assert_unchanged(opt: Optimizer, param: torch.Tensor, snapshot: tuple[Any, ...]) -> None:
    iterations, state, last_lr = snapshot
    assert opt.iterations == iterations and opt._last_step_lr == last_lr
    assert set(opt.torch_optimizer.state[param]) == set(state)
    for key, value in state.items():
        assert torch.equal(opt.torch_optimizer.state[param][key], value), key


def test_a_mismatched_store_is_refused_and_changes_nothing() -> None:
    source, source_params = _trained_adam()
    good: dict[str, np.ndarray] = {}
    source.save_own_variables(good)
    assert len(good) == 2 + 3 * len(SHAPES)
    opt, params = _trained_adam()
    _ww_steps(opt, params, _state_data(2, seed=7)[1])  # now differs from `good`
    snapshot = _snapshot(opt, params[0])

    fewer = {key: good[key] for key in list(good)[:-1]}
    with pytest.raises(ValueError, match=r"'adam' \(Adam\).*holds 11 variables.*holds 10 entries") as info:
        opt.load_own_variables(fewer)
    assert "velocity_hat of parameter 2 (2, 1, 3)" in str(info.value) and "Nothing was changed" in str(info.value)
    _assert_unchanged(opt, params[0], snapshot)

    reshaped = dict(good)
    reshaped["3"] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"store\['3'\] \(velocity of parameter 0\): expected shape \(3, 4\), received"):
        opt.load_own_variables(reshaped)
    _assert_unchanged(opt, params[0], snapshot)

    renumbered = {str(int(key) + 1): value for key, value in good.items()}
    with pytest.raises(ValueError, match="keys must be '0', '1'"):
        opt.load_own_variables(renumbered)
    negative = {**good, "0": np.array(-3, np.int32)}
    with pytest.raises(ValueError, match=r"iterations.*Received: -3"):
        opt.load_own_variables(negative)
    with pytest.raises(ValueError, match="learning_rate.*Received: nan"):
        opt.load_own_variables({**good, "1": np.array(np.nan, np.float32)})
    with pytest.raises(TypeError, match="`store`.*Received: store=3"):
        opt.load_own_variables(3)
    _assert_unchanged(opt, params[0], snapshot)

    # A schedule keeps no learning-rate variable, as in Keras: the float-rate store has one entry too many.
    scheduled = Adam(learning_rate=ExponentialDecay(0.01, 3, 0.5), amsgrad=True)
    scheduled.build(_params(_state_data(1)[0]))
    with pytest.raises(ValueError, match="holds 10 variables"):
        scheduled.load_own_variables(good)
    assert scheduled.iterations == 0 and not scheduled.torch_optimizer.state

    # The good store still loads, and replaces the state.
    opt.load_own_variables(good)
    assert opt.iterations == 3
    for p, q in zip(params, source_params):
        for key, value in source.torch_optimizer.state[q].items():
            assert torch.equal(opt.torch_optimizer.state[p][key], value), key


def test_unbuilt_optimizers_refuse_to_save_or_load() -> None:
    store: dict[str, np.ndarray] = {}
    with pytest.raises(ValueError, match=r"'adam' \(Adam\) is not built.*build\(params\)"):
        Adam().save_own_variables(store)
    with pytest.raises(ValueError, match=r"'sgd' \(SGD\) is not built.*build it first with `build\(params\)`"):
        SGD(momentum=0.9).load_own_variables({"0": np.array(0), "1": np.array(0.01)})
    assert store == {}


def test_state_before_any_step_is_keras_initial_values(keras: Any) -> None:
    inits, _ = _state_data(1)
    cases = [
        ("SGD", {"momentum": 0.5}),
        ("Adam", {"amsgrad": True}),
        ("RMSprop", {"momentum": 0.5, "centered": True}),
        ("Adagrad", {"initial_accumulator_value": 0.25}),
    ]
    for name, kwargs in cases:
        ours = getattr(optimizers, name)(**kwargs)
        ours.build(_params(inits))
        theirs = getattr(keras.optimizers, name)(**kwargs)
        theirs.build([keras.Variable(w.copy()) for w in inits])
        saved: dict[str, np.ndarray] = {}
        expected: dict[str, np.ndarray] = {}
        ours.save_own_variables(saved)
        theirs.save_own_variables(expected)
        assert list(saved) == list(expected), name
        for key, value in expected.items():
            assert saved[key].dtype == value.dtype, (name, key)
            np.testing.assert_allclose(saved[key], value, rtol=1e-6, err_msg=f"{name} {key}")


def test_an_empty_build_saves_and_loads_iterations_and_learning_rate() -> None:
    opt = SGD(learning_rate=0.25, momentum=0.9)
    opt.build([])
    store: dict[str, np.ndarray] = {}
    opt.save_own_variables(store)
    assert list(store) == ["0", "1"]
    other = SGD(learning_rate=0.5, momentum=0.9)
    other.build([])
    other.load_own_variables({"0": np.array(7, np.int32), "1": np.array(0.25, np.float32)})
    assert other.iterations == 7 and other.learning_rate == 0.25


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1),
        lambda ps: torch.optim.Adamax([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.02}], lr=0.01),
    ],
    ids=["Adam", "SGD", "Adamax-two-groups"],
)
def test_torch_optimizer_state_round_trip_continues_identically(make: Callable[[list[Any]], Any]) -> None:
    inits, grads = _state_data(7, seed=4)
    params = _params(inits)
    uninterrupted = optimizers.get(make(params))
    _ww_steps(uninterrupted, params, grads[:4])
    store: dict[str, np.ndarray] = {}
    uninterrupted.save_own_variables(store)
    state = uninterrupted.torch_optimizer.state
    expected = [uninterrupted.iterations] + [state[p][key] for p in params for key in sorted(state[p])]
    assert len(store) == len(expected) and store["0"].dtype == np.int32
    for i, value in enumerate(expected):
        np.testing.assert_array_equal(store[str(i)], value.numpy() if isinstance(value, torch.Tensor) else value)
    copies = _params(_weights(params))
    resumed = optimizers.get(make(copies))
    assert not resumed.torch_optimizer.state  # no step yet: the state's keys come from a trial step on a copy
    resumed.load_own_variables(store)
    assert all(torch.equal(copies[i], params[i]) for i in range(len(params)))  # the trial step touched nothing
    _ww_steps(uninterrupted, params, grads[4:])
    _ww_steps(resumed, copies, grads[4:])
    assert resumed.iterations == 7
    for a, b in zip(params, copies):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"'adam|'sgd|'adamax"):
        resumed.load_own_variables({**store, "1": np.zeros((9, 9), np.float32)})


def test_torch_optimizer_state_with_a_parameter_never_updated() -> None:
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = optimizers.get(torch.optim.Adam([a, b], lr=0.1))
    a.grad = torch.ones(3)
    opt.step()  # b has no gradient, hence no torch state
    store: dict[str, np.ndarray] = {}
    opt.save_own_variables(store)
    assert [store[k].shape for k in store] == [(), (3,), (3,), ()]
    a2, b2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    fresh = optimizers.get(torch.optim.Adam([a2, b2], lr=0.1))
    fresh.load_own_variables(store)
    assert set(fresh.torch_optimizer.state[a2]) == {"step", "exp_avg", "exp_avg_sq"}
    assert b2 not in fresh.torch_optimizer.state
    # Two parameters of one shape, one with state: the entries could be either's, so loading refuses.
    c, d = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    same = optimizers.get(torch.optim.Adam([c, d], lr=0.1))
    with pytest.raises(ValueError, match="more than one assignment"):
        same.load_own_variables(store)
    assert not same.torch_optimizer.state and same.iterations == 0


def test_a_custom_optimizer_subclass_saves_in_weightwise_layout() -> None:
    class Plain(Optimizer):
        def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
            return torch.optim.SGD(params, lr=self.learning_rate, momentum=0.5)

    params, copies = _round_trip(lambda: Plain(learning_rate=0.25))
    for a, b in zip(params, copies):
        assert torch.equal(a, b)
    opt = Plain(learning_rate=0.25)
    opt.build([torch.nn.Parameter(torch.ones(2))])
    store: dict[str, np.ndarray] = {}
    opt.save_own_variables(store)
    assert list(store) == ["0", "1"]  # iterations, learning rate; no torch state before a step
