"""RMSprop against Keras 3 (torch backend) over long trajectories, and the case torch's epsilon gets wrong.

Keras divides by ``sqrt(v + epsilon)``; ``torch.optim.RMSprop`` by ``sqrt(v) + epsilon``.
weightwise runs Keras's update, so every variant must follow Keras to float32
rounding (1e-6) for hundreds of steps, also with gradients small enough that
``v`` is of the order of ``epsilon``, where torch's formula is far off.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip

from weightwise.optimizers import ExponentialDecay, RMSprop

SHAPES = ((4, 3), (3,), (2, 2, 5))
STEPS = 200
TOL = {"rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _data(steps: int, seed: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """float32 weights and gradients whose magnitudes span 1e-6 to 1 (log-uniform), signs mixed."""
    rng = np.random.default_rng(seed)
    inits = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [
        [(rng.choice([-1.0, 1.0], size=s) * 10.0 ** rng.uniform(-6, 0, size=s)).astype("float32") for s in SHAPES]
        for _ in range(steps)
    ]
    return inits, grads


def _ours(opt: RMSprop, inits: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in inits]
    opt.build(params)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


def _theirs(keras: Any, opt: Any, inits: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    variables = [keras.Variable(w.copy()) for w in inits]
    for step in grads:
        opt.apply([torch.tensor(g) for g in step], variables)
    return [np.asarray(v.numpy()) for v in variables]


def _torch_rmsprop(kwargs: dict[str, Any], lr: float, inits: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in inits]
    opt = torch.optim.RMSprop(params, lr=lr, alpha=kwargs.get("rho", 0.9), eps=1e-7,
                              momentum=kwargs.get("momentum", 0.0), centered=kwargs.get("centered", False))
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


CASES = [
    {},
    {"centered": True},
    {"momentum": 0.9},
    {"centered": True, "momentum": 0.5},
    {"rho": 0.5, "centered": True, "momentum": 0.3, "epsilon": 1e-4},
    {"weight_decay": 0.05},
    {"weight_decay": 0.05, "centered": True, "momentum": 0.9},
]


@pytest.mark.parametrize("kwargs", CASES, ids=str)
def test_200_steps_follow_keras(keras: Any, kwargs: dict[str, Any]) -> None:
    inits, grads = _data(STEPS, seed=3)
    lr = 1e-3
    ours = _ours(RMSprop(learning_rate=lr, **kwargs), inits, grads)
    theirs = _theirs(keras, keras.optimizers.RMSprop(learning_rate=lr, **kwargs), inits, grads)
    for a, b, w0 in zip(ours, theirs, inits):
        assert np.abs(b - w0).max() > 1e-2, "the weights hardly moved: the comparison would prove little"
        np.testing.assert_allclose(a, b, **TOL)
    if "weight_decay" not in kwargs and "epsilon" not in kwargs:
        # The same gradients through torch's own RMSprop end up visibly elsewhere: the test can tell them apart.
        torch_way = _torch_rmsprop(kwargs, lr, inits, grads)
        assert max(np.abs(t - b).max() for t, b in zip(torch_way, theirs)) > 1e-3


@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}, {"centered": True, "momentum": 0.5}], ids=str)
def test_200_steps_under_a_schedule_follow_keras(keras: Any, kwargs: dict[str, Any]) -> None:
    inits, grads = _data(STEPS, seed=4)
    schedule = {"initial_learning_rate": 0.01, "decay_steps": 20, "decay_rate": 0.5}
    ours = _ours(RMSprop(learning_rate=ExponentialDecay(**schedule), **kwargs), inits, grads)
    keras_opt = keras.optimizers.RMSprop(learning_rate=keras.optimizers.schedules.ExponentialDecay(**schedule), **kwargs)
    theirs = _theirs(keras, keras_opt, inits, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, **TOL)


def test_one_step_at_a_tiny_gradient_is_keras_step_not_torch_step(keras: Any) -> None:
    # The case: at |g| = 2e-5, torch's formula steps 49 times as far as Keras's.
    lr, rho, eps = 1e-3, 0.9, 1e-7
    g = np.full((3,), 2e-5, dtype="float32")
    ours = _ours(RMSprop(learning_rate=lr), [np.zeros(3, "float32")], [[g]])[0]
    theirs = _theirs(keras, keras.optimizers.RMSprop(learning_rate=lr), [np.zeros(3, "float32")], [[g]])[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    g64 = g.astype("float64")
    np.testing.assert_allclose(ours, -lr * g64 / np.sqrt((1 - rho) * g64**2 + eps), rtol=1e-6)
    torch_way = _torch_rmsprop({}, lr, [np.zeros(3, "float32")], [[g]])[0]
    assert 48 < torch_way[0] / theirs[0] < 50


def test_float64_is_the_numpy_formula() -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=6)
    grads = [rng.normal(size=6) * 10.0 ** rng.uniform(-5, 0, size=6) for _ in range(30)]
    lr, rho, momentum, eps = 2.0**-7, 0.8, 0.5, 1e-7
    opt = RMSprop(learning_rate=lr, rho=rho, momentum=momentum, epsilon=eps, centered=True)
    ours = _ours(opt, [w0], [[g] for g in grads])[0]
    w, v, a, m = w0.copy(), np.zeros(6), np.zeros(6), np.zeros(6)
    for g in grads:
        v = rho * v + (1 - rho) * g**2
        a = rho * a + (1 - rho) * g
        m = momentum * m + lr * g / np.sqrt(v - a**2 + eps)
        w = w - m
    np.testing.assert_allclose(ours, w, rtol=1e-12, atol=1e-14)


def test_state_dict_round_trips_and_training_continues_identically() -> None:
    inits, grads = _data(10, seed=5)
    make = lambda: RMSprop(learning_rate=0.01, momentum=0.9, centered=True)
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in inits]
    first = make()
    first.build(params)
    for step in grads[:5]:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        first.step()
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    second = make()
    second.build(copies)
    # Deep-copied, as torch.save would: torch's state_dict() hands out the live state tensors.
    second.torch_optimizer.load_state_dict(copy.deepcopy(first.torch_optimizer.state_dict()))
    second.iterations = first.iterations
    for step in grads[5:]:
        for ps in (params, copies):
            for p, g in zip(ps, step):
                p.grad = torch.tensor(g)
        first.step()
        second.step()
    for p, c in zip(params, copies):
        assert torch.equal(p, c)
