"""Schedules: Keras's learning rate schedules, and schedules as regularizer factors and constraint bounds.

The schedule values are measured against Keras 3.15.1 in-process; the scheduled
factors and bounds against NumPy, step by step, in ``fit`` and in a hand torch loop.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import keras_or_skip

from weightwise import (
    binding,
    clock,
    constraints,
    engine,
    factors,
    layers,
    models,
    optimizers,
    regularizers,
    saving,
    schedules,
    serialization,
)
from weightwise.constraints import MaxNorm, MinMaxNorm
from weightwise.interop import constrain, regularization_loss, regularize
from weightwise.optimizers.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)
from weightwise.regularizers import L1, L1L2, L2, OrthogonalRegularizer


@pytest.fixture
def keras() -> Any:
    return keras_or_skip()


@pytest.fixture(autouse=True)
def _step_zero() -> Any:
    # The step is process-wide: each test starts from 0 and leaves it there.
    clock.set_step(0)
    yield
    clock.set_step(0)


# (class name, constructor arguments): every built-in schedule, with and without its options.
CASES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.6}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.6, "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [10, 20, 50], "values": [1.0, 0.5, 0.1, 0.01]}),
    ("PiecewiseConstantDecay", {"boundaries": [2.5, 7.5], "values": [0.3, 0.2, 0.1], "name": "steps"}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 30, "end_learning_rate": 0.001, "power": 0.5}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 30, "end_learning_rate": 0.001, "power": 2.0,
                         "cycle": True}),
    ("PolynomialDecay", {"initial_learning_rate": 0.0, "decay_steps": 40, "end_learning_rate": 1e-3}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.5, "staircase": True}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 50, "alpha": 0.1}),
    ("CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": 50, "alpha": 0.1, "warmup_target": 0.2,
                     "warmup_steps": 20}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 10, "warmup_target": 1.0, "warmup_steps": 0}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 10}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 10, "t_mul": 1.0, "m_mul": 0.8,
                             "alpha": 0.05}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 7, "t_mul": 1.5, "m_mul": 0.9}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 10, "t_mul": 3.0, "m_mul": 0.5,
                             "name": "sgdr"}),
]


def _scale(kwargs: dict[str, Any]) -> float:
    """The largest value a schedule takes, a unit for the absolute tolerance."""
    keys = ("initial_learning_rate", "warmup_target", "end_learning_rate")
    return max([abs(v) for k, v in kwargs.items() if k in keys and v is not None] + kwargs.get("values", []))


# --------------------------------------------------------------------------------------
# The schedules against Keras
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_schedule_values_match_keras_over_many_steps(keras: Any, name: str, kwargs: dict[str, Any]) -> None:
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    steps = range(400)
    got = np.array([ours(step) for step in steps])
    want = np.array([float(theirs(step)) for step in steps])
    # Keras computes in float32; ours is the float64 value. Near zero, float32 cancellation
    # (cos close to -1) loses digits that only the absolute tolerance covers.
    np.testing.assert_allclose(got, want, rtol=5e-6, atol=1e-6 * _scale(kwargs))
    assert all(isinstance(value, float) for value in got.tolist())


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_schedule_configs_match_keras_both_ways(keras: Any, name: str, kwargs: dict[str, Any]) -> None:
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    assert ours.get_config() == theirs.get_config()
    config = json.loads(json.dumps(schedules.serialize(ours)))
    assert config == json.loads(json.dumps(keras.optimizers.schedules.serialize(theirs)))
    from_ours = keras.optimizers.schedules.deserialize(config)
    from_keras = optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(theirs))
    assert type(from_keras) is type(ours) and from_keras.get_config() == ours.get_config()
    for step in (0, 3, 17, 60):
        assert from_keras(step) == ours(step)
        assert math.isclose(float(from_ours(step)), ours(step), rel_tol=5e-6, abs_tol=1e-7)


def test_schedules_take_tensor_steps_and_variables() -> None:
    schedule = PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    assert [schedule(torch.tensor(step)) for step in range(5)] == [0.4, 0.4, 0.5, 0.6, 0.7]
    # An integer step compares with the boundaries cast to integers, as Keras casts them to the step's dtype.
    fractional = PiecewiseConstantDecay([-0.5], [1.0, 2.0])  # an integer step sees the boundary 0
    assert fractional(0) == 1.0 and fractional(torch.tensor(0)) == 1.0
    assert fractional(0.0) == 2.0 and fractional(torch.tensor(0.0)) == 2.0
    assert CosineDecay(1.0, 10)(torch.tensor(5.0, dtype=torch.float64)) == pytest.approx(0.5)


def test_cosine_decay_restarts_is_exact_at_every_restart() -> None:
    def reference(step: int, period: float, t_mul: float, m_mul: float, alpha: float) -> float:
        # Keras's test reference (learning_rate_schedule_test.py), in float64: walk the periods one by one.
        factor = 1.0
        while step >= period:
            step -= period
            period *= t_mul
            factor *= m_mul
        return (1.0 - alpha) * factor * 0.5 * (1.0 + math.cos(math.pi * step / period)) + alpha

    for t_mul, m_mul, alpha in [(2.0, 0.9, 0.0), (1.5, 0.9, 0.1), (3.0, 1.0, 0.0), (1.0, 0.5, 0.2)]:
        schedule = CosineDecayRestarts(1.0, 7, t_mul=t_mul, m_mul=m_mul, alpha=alpha)
        worst = max(abs(schedule(step) - reference(step, 7, t_mul, m_mul, alpha)) for step in range(3000))
        assert worst < 1e-12


def test_fit_with_each_schedule_matches_keras(keras: Any) -> None:
    """Keras's own TestFitLRSchedulesFlow fit (excluded from the import-swap suite), with every schedule.

    SGD, whose update is the learning rate times the gradient, on small inputs, so that the
    learning rate of each step shows in the losses (Keras's own test uses Adam on inputs up to
    31, where float32 rounding alone moves the third epoch's loss by 5e-5 with a constant rate).
    """
    x = np.arange(32, dtype="float32").reshape((16, 2)) / 32
    for name, kwargs in CASES:
        histories = []
        for lib in (keras, None):
            source = keras.optimizers if lib else optimizers
            make = keras.layers if lib else layers
            sequential = keras.Sequential if lib else models.Sequential
            model = sequential([make.Input((2,)), make.Dense(2, kernel_initializer="ones", bias_initializer="ones")])
            model.compile(optimizer=source.SGD(learning_rate=getattr(source.schedules, name)(**kwargs)), loss="mse")
            history = model.fit(x, x, epochs=3, batch_size=4, shuffle=False, verbose=0)
            histories.append(history.history["loss"])
        np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5, err_msg=name)


def test_bad_schedule_arguments_raise_keras_errors_or_name_the_argument(keras: Any) -> None:
    with pytest.raises(ValueError, match=r"Argument `decay_steps` must be > 0\. Received: decay_steps=0"):
        PolynomialDecay(0.1, 0)
    with pytest.raises(ValueError, match=r"Argument `decay_steps` must be > 0"):
        keras.optimizers.schedules.PolynomialDecay(0.1, 0)
    with pytest.raises(ValueError, match=r"Argument `first_decay_steps` must be > 0\. Received: first_decay_steps=-1"):
        CosineDecayRestarts(0.1, -1)
    with pytest.raises(ValueError, match="The length of boundaries should be 1 less than the length of values"):
        PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    cases = [
        (lambda: PiecewiseConstantDecay([2, 1], [0.3, 0.2, 0.1]), "boundaries"),
        (lambda: PiecewiseConstantDecay([1], [0.1, -0.2]), "values"),
        (lambda: PiecewiseConstantDecay("ab", [0.1, 0.2, 0.3]), "boundaries"),
        (lambda: CosineDecay(0.1, 10, alpha=-0.5), "alpha"),
        (lambda: CosineDecay(0.1, 10, warmup_target=float("nan")), "warmup_target"),
        (lambda: CosineDecayRestarts(0.1, 10, t_mul=0.0), "t_mul"),
        (lambda: PolynomialDecay(0.1, 10, power=-1.0), "power"),
        (lambda: PolynomialDecay(0.1, 10, cycle="yes"), "cycle"),
        (lambda: InverseTimeDecay(0.1, "ten", 0.5), "decay_steps"),
        (lambda: ExponentialDecay(0.1, 10, 0.5, name=3), "name"),
    ]
    for make, argument in cases:
        with pytest.raises(ValueError, match=f"`{argument}`.*{argument}="):
            make()
    with pytest.raises(ValueError, match="t_mul=0.5 < 1 has periods that add up to 20 steps"):
        CosineDecayRestarts(0.1, 10, t_mul=0.5)(25)


def test_registered_custom_schedule_round_trips() -> None:
    @serialization.register_keras_serializable(package="ScheduleTest")
    class Halving(schedules.LearningRateSchedule):
        def __init__(self, start: float, every: int) -> None:
            self.start, self.every = start, every

        def __call__(self, step: Any) -> float:
            return self.start * 0.5 ** (int(step) // self.every)

        def get_config(self) -> dict[str, Any]:
            return {"start": self.start, "every": self.every}

    regularizer = L2(Halving(0.4, 3))
    config = json.loads(json.dumps(regularizers.serialize(regularizer)))
    assert config["config"]["l2"]["registered_name"] == "ScheduleTest>Halving"
    again = regularizers.deserialize(config)
    assert isinstance(again.l2, Halving) and again.l2.get_config() == {"start": 0.4, "every": 3}
    with clock.at_step(7):
        assert float(again(torch.ones(2))) == pytest.approx(2 * 0.1)
    optimizer = optimizers.deserialize(optimizers.serialize(optimizers.SGD(learning_rate=Halving(1.0, 2))))
    assert isinstance(optimizer._learning_rate, Halving)


def test_unregistered_custom_schedule_loads_with_custom_objects() -> None:
    class Steady(schedules.LearningRateSchedule):
        def __init__(self, value: float) -> None:
            self.value = value

        def __call__(self, step: Any) -> float:
            return self.value

        def get_config(self) -> dict[str, Any]:
            return {"value": self.value}

    config = json.loads(json.dumps(constraints.serialize(MaxNorm(Steady(1.5)))))
    with pytest.raises(ValueError, match="Unknown learning rate schedule: 'Steady'"):
        constraints.deserialize(config)
    again = constraints.deserialize(config, custom_objects={"Steady": Steady})
    assert isinstance(again.max_value, Steady) and again.max_value.value == 1.5
    with serialization.custom_object_scope({"Steady": Steady}):
        assert isinstance(constraints.deserialize(config).max_value, Steady)


# --------------------------------------------------------------------------------------
# Scheduled factors and bounds
# --------------------------------------------------------------------------------------
WARM = PolynomialDecay(0.0, 4, end_learning_rate=0.5, power=1.0)  # 0, 0.125, 0.25, 0.375, 0.5, 0.5, ...


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32"),
            rng.normal(size=(3, 2)).astype("float32"))


def _reference(x: np.ndarray, y: np.ndarray, w: np.ndarray, steps: int, lr: float, l2: Any,
               bound: Any = None) -> tuple[list[float], list[np.ndarray]]:
    """Full-batch SGD on mse + l2(k) * sum(w**2) in float64, the loss logged at each step, and the weights after it.

    ``w`` is a Keras kernel (inputs, units); with ``bound``, each unit's column is capped at
    ``bound(k + 1)`` after update ``k``.
    """
    w = w.astype("float64")
    losses, weights = [], []
    for k in range(steps):
        residual = x @ w - y
        factor = l2(k)
        losses.append(float(np.mean(residual**2) + factor * np.sum(w**2)))
        w = w - lr * (2 / residual.size * x.T @ residual + 2 * factor * w)
        if bound is not None:
            norms = np.linalg.norm(w, axis=0, keepdims=True)
            w = w * np.minimum(norms, bound(k + 1)) / (1e-7 + norms)
        weights.append(w)
    return losses, weights


def test_scheduled_l2_in_fit_uses_the_factor_of_each_iteration() -> None:
    x, y, w0 = _data()
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, use_bias=False, kernel_regularizer=L2(WARM))])
    model.layers[0].kernel.assign(w0)
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    plan = engine.plan_for(model)
    assert list(plan.l2) == [model.layers[0].kernel_regularizer.l2]  # grouped by its schedule, no autograd
    history = model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0)
    losses, weights = _reference(x, y, w0, 6, 0.1, WARM)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(model.layers[0].kernel.detach().numpy(), weights[-1], rtol=1e-5, atol=1e-6)
    # The factor changed: the constant factor of step 0 (none) gives another trajectory.
    plain, _ = _reference(x, y, w0, 6, 0.1, lambda step: 0.0)
    assert abs(plain[-1] - losses[-1]) > 1e-3
    # After 6 updates the penalty is evaluated at step 6, the step the next update would run at.
    assert clock.step() == 6
    assert float(model.losses[0].detach()) == pytest.approx(0.5 * float(np.sum(weights[-1] ** 2)), rel=1e-5)


@pytest.mark.parametrize("through", ["follow", "regularize"])
def test_scheduled_l2_in_a_hand_torch_loop(through: str) -> None:
    x, y, w0 = _data(1)
    linear = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w0.T))
    opt = torch.optim.SGD(linear.parameters(), lr=0.1)
    if through == "follow":
        regularize(linear, {"weight": L2(WARM)})
        clock.follow(opt)
    else:
        regularize(linear, {"weight": L2(WARM)}, optimizer=opt)  # counts the optimizer's steps itself
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    seen = []
    for _ in range(6):
        opt.zero_grad()
        loss = F.mse_loss(linear(xs), ys) + regularization_loss(linear)
        seen.append(loss.item())
        loss.backward()
        opt.step()
    losses, weights = _reference(x, y, w0, 6, 0.1, WARM)
    np.testing.assert_allclose(seen, losses, rtol=1e-5)
    np.testing.assert_allclose(linear.weight.detach().numpy().T, weights[-1], rtol=1e-5, atol=1e-6)


def test_scheduled_max_norm_projects_to_the_scheduled_bound_in_fit() -> None:
    x, y, w0 = _data(2)
    w0 = w0 * 10  # every unit starts far outside the bound
    bound = PiecewiseConstantDecay([2, 4], [3.0, 2.0, 1.0])
    model = models.Sequential([
        layers.Input((3,)),
        layers.Dense(2, use_bias=False, kernel_regularizer=L2(WARM), kernel_constraint=MaxNorm(bound)),
    ])
    model.layers[0].kernel.assign(w0)
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    plan = engine.plan_for(model)
    assert not plan.projections and len(plan.other_projections) == 1  # projected on its own, not batched
    norms = []
    for _ in range(6):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        norms.append(np.linalg.norm(model.layers[0].kernel.detach().numpy(), axis=0))
    # After update k the weights are projected at step k + 1, the step the next forward runs at: within
    # that bound always, and on it where the bound has just dropped below the norms (steps 1, 3 and 5).
    bounds = np.array([bound(k + 1) for k in range(6)])
    largest = np.max(norms, axis=1)
    assert (largest <= bounds * (1 + 1e-6)).all()
    np.testing.assert_allclose(largest[[0, 2, 4]], [3.0, 2.0, 1.0], rtol=1e-6)
    _, weights = _reference(x, y, w0, 6, 0.1, WARM, bound=bound)
    np.testing.assert_allclose(model.layers[0].kernel.detach().numpy(), weights[-1], rtol=1e-5, atol=1e-6)


def test_scheduled_max_norm_with_constrain_follows_a_torch_optimizer() -> None:
    x, y, w0 = _data(3)
    linear = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(10 * w0.T))
    bound = ExponentialDecay(4.0, decay_steps=1, decay_rate=0.5)
    opt = torch.optim.SGD(linear.parameters(), lr=0.1)
    constrain(linear, {"weight": MaxNorm(bound, axis=1)}, optimizer=opt)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for k in range(4):
        opt.zero_grad()
        F.mse_loss(linear(xs), ys).backward()
        opt.step()
        np.testing.assert_allclose(linear.weight.detach().norm(dim=1).max().item(), bound(k + 1), rtol=1e-5)
    assert clock.step() == 4


def test_scheduled_min_max_norm_and_orthogonal_factor() -> None:
    rate = PolynomialDecay(0.0, 10, end_learning_rate=1.0)
    constraint = MinMaxNorm(min_value=1.0, max_value=2.0, rate=rate, axis=0)
    w = torch.tensor([[6.0, 0.3], [8.0, 0.4]])
    with clock.at_step(5):  # rate 0.5: half way from each norm (10, 0.5) to its bound (2, 1)
        np.testing.assert_allclose(constraint(w).norm(dim=0).numpy(), [6.0, 0.75], rtol=1e-5)
    shrinking = MinMaxNorm(min_value=lambda step: 0.5 * step, max_value=2.0)
    with clock.at_step(6), pytest.raises(ValueError, match="min_value must not exceed max_value at step 6"):
        shrinking(w)
    orthogonal = OrthogonalRegularizer(factor=InverseTimeDecay(1.0, 1, 1.0))
    with clock.at_step(3):
        assert float(orthogonal(torch.ones(2, 2))) == pytest.approx(0.25)


def test_scheduled_activity_regularizer_and_l1l2() -> None:
    layer = layers.Dense(2, kernel_initializer="ones", activity_regularizer=L1L2(l1=WARM, l2=0.5))
    model = models.Sequential([layers.Input((3,)), layer])
    x = torch.ones(4, 3)
    with clock.at_step(2):
        model(x)
        value = float(sum(model.losses).detach())
    # Each output is 3; per sample, l1 * 6 + l2 * 18, averaged over the batch as Keras does.
    assert value == pytest.approx(0.25 * 6 + 0.5 * 18)


def test_unhashable_schedules_go_through_autograd() -> None:
    @dataclasses.dataclass
    class Ramp:
        per_step: float

        def __call__(self, step: int) -> float:
            return self.per_step * step

    linear = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    binding.bind(linear, "weight", regularizer=L2(Ramp(0.1)))
    plan = engine.plan_for(linear)
    assert not plan.l2 and len(plan.other_penalties) == 1
    with clock.at_step(3):
        assert float(regularization_loss(linear).detach()) == pytest.approx(0.3 * 2)


def test_one_schedule_shared_by_two_weights_is_one_group() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    shared = CosineDecay(0.1, 10)
    regularize(model, {"*.weight": L2(shared), "0.bias": L1(0.01)})
    plan = engine.plan_for(model)
    assert {key: len(slots) for key, slots in plan.l2.items()} == {shared: 2}
    assert {key: len(slots) for key, slots in plan.l1.items()} == {0.01: 1}
    with clock.at_step(5):
        expected = 0.05 * sum(float((p.detach() ** 2).sum()) for p in (model[0].weight, model[1].weight))
        expected += 0.01 * float(model[0].bias.detach().abs().sum())
        assert float(regularization_loss(model).detach()) == pytest.approx(expected, rel=1e-5)
        assert float(plan.grouped_penalty_value()) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------
# Configs and .keras files
# --------------------------------------------------------------------------------------
def test_scheduled_rules_round_trip_through_configs() -> None:
    rules = [
        L1(ExponentialDecay(0.1, 10, 0.5)),
        L2(PolynomialDecay(0.0, 100, end_learning_rate=1e-3)),
        L1L2(l1=0.01, l2=CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=5)),
        OrthogonalRegularizer(factor=InverseTimeDecay(0.1, 5, 0.5), mode="columns"),
        MaxNorm(PiecewiseConstantDecay([10], [3.0, 1.0]), axis=[0, 1]),
        MinMaxNorm(min_value=0.5, max_value=CosineDecayRestarts(2.0, 10), rate=PolynomialDecay(0.0, 10, 1.0)),
    ]
    for rule in rules:
        family = regularizers if isinstance(rule, regularizers.Regularizer) else constraints
        config = json.loads(json.dumps(family.serialize(rule)))
        again = family.deserialize(config)
        assert type(again) is type(rule) and again.get_config() == rule.get_config()
        assert repr(again) == repr(rule) and "Decay" in repr(rule)
        for key, value in vars(rule).items():
            if clock.is_scheduled(value):
                assert [getattr(again, key)(s) for s in (0, 7, 30)] == [value(s) for s in (0, 7, 30)]
    assert L2(0.1).get_config() == {"l2": 0.1}  # a float stays a float
    assert factors.factor_config(MaxNorm(2).max_value) == 2


def test_scheduled_rules_round_trip_through_a_keras_file(tmp_path: Any) -> None:
    model = models.Sequential([
        layers.Input((3,)),
        layers.Dense(4, kernel_regularizer=L2(PolynomialDecay(0.0, 8, end_learning_rate=1e-2)),
                     kernel_constraint=MaxNorm(CosineDecay(3.0, 20, alpha=0.5))),
        layers.Dense(1, bias_regularizer=L1(ExponentialDecay(0.1, 2, 0.5))),
    ])
    model.compile(optimizer=optimizers.SGD(learning_rate=InverseTimeDecay(0.1, 1, 0.5)), loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    path = tmp_path / "scheduled.keras"
    model.save(path)
    loaded = saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    dense = loaded.layers[0]
    assert isinstance(dense.kernel_regularizer.l2, PolynomialDecay)
    assert isinstance(dense.kernel_constraint.max_value, CosineDecay)
    with clock.at_step(4):
        np.testing.assert_allclose(float(sum(loaded.losses).detach()), float(sum(model.losses).detach()), rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


# --------------------------------------------------------------------------------------
# Bad factors and schedules
# --------------------------------------------------------------------------------------
def test_bad_factors_name_the_argument() -> None:
    for make, argument in [
        (lambda: L2("0.1"), "l2"),
        (lambda: L1(-1), "l1"),
        (lambda: L1L2(l2=[0.1]), "l2"),
        (lambda: OrthogonalRegularizer(factor=float("nan")), "factor"),
        (lambda: MaxNorm(max_value=None), "max_value"),
        (lambda: MinMaxNorm(rate=2.0), "rate"),
        (lambda: L2(PolynomialDecay), "l2"),  # the class, not a schedule
        (lambda: L1(lambda: 0.1), "l1"),  # Keras's zero-argument learning rate form takes no step
        (lambda: MaxNorm(lambda step, axis: 1.0), "max_value"),
    ]:
        with pytest.raises(ValueError, match=f"`{argument}`.*{argument}="):
            make()
    with pytest.raises(ValueError, match="Unknown learning rate schedule: 'NoSuchDecay'"):
        L2({"class_name": "NoSuchDecay", "config": {}})


def test_a_schedule_that_gives_a_bad_value_is_refused_where_it_is_evaluated() -> None:
    going_negative = L2(lambda step: 0.1 - 0.05 * step)
    weight = torch.ones(3)
    assert float(going_negative(weight)) == pytest.approx(0.3)
    with clock.at_step(3), pytest.raises(ValueError, match=r"`l2`: the schedule .* gave -0\.05.* at step 3; "
                                                          r"expected a finite float >= 0"):
        going_negative(weight)
    for bad in (lambda step: float("nan"), lambda step: "0.1", lambda step: torch.ones(2), lambda step: None):
        with pytest.raises(ValueError, match="`l1`: the schedule"):
            L1(bad)(weight)
    with clock.at_step(2), pytest.raises(ValueError, match="`rate`: the schedule .* gave 2.0 at step 2; "
                                                          r"expected a finite float in \[0, 1\]"):
        MinMaxNorm(rate=lambda step: float(step))(torch.ones(2, 2))
    # In fit, the same error comes from the grouped fast path, before any weight changes.
    model = models.Sequential([layers.Input((2,)), layers.Dense(1, kernel_regularizer=L2(lambda s: -1.0 * s))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((2, 2)), np.ones((2, 1)), epochs=1, verbose=0)  # step 0: factor 0
    before = model.layers[0].kernel.detach().clone()
    with pytest.raises(ValueError, match="`l2`: the schedule .* at step 1"):
        model.fit(np.ones((2, 2)), np.ones((2, 1)), epochs=1, verbose=0)
    assert torch.equal(model.layers[0].kernel.detach(), before)
