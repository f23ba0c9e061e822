"""Gradient accumulation and weight averaging (``gradient_accumulation_steps``, ``use_ema``), as Keras 3.15.1.

Each trajectory is measured against Keras itself (torch backend, in-process): the
optimizers through ``apply``, and ``fit`` with kernel, bias and activity regularizers
and a MaxNorm constraint. Accumulating ``N`` micro-batches of ``b`` samples equals one
update on their ``N * b`` concatenation, penalties included: the weights do not move
inside a window, so each micro-batch's weight penalty gradient is the same and the
mean counts it once, and an activity penalty divided by ``b`` in each micro-batch
averages to the same sum divided by ``N * b``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip, to_numpy
from weightwise import constraints, layers, models, optimizers, regularizers

OPTIMIZERS = [
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {"weight_decay": 0.1}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {"clipnorm": 0.3}),
]
SETTINGS = [
    {"gradient_accumulation_steps": 3},
    {"use_ema": True, "ema_momentum": 0.8},
    {"use_ema": True, "ema_momentum": 0.8, "ema_overwrite_frequency": 2},
    {"use_ema": True, "ema_overwrite_frequency": 1, "gradient_accumulation_steps": 2},
    {"use_ema": True, "ema_momentum": 0.7, "ema_overwrite_frequency": 3, "gradient_accumulation_steps": 2},
]
SHAPES = [(3, 2), (2,)]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _pair(keras: Any, name: str, kwargs: dict[str, Any], setting: dict[str, Any]) -> tuple[Any, Any]:
    """The Keras optimizer and ours, with the same arguments and an exponentially decaying rate."""
    schedule = {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.7}
    theirs = getattr(keras.optimizers, name)(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(**schedule), **kwargs, **setting)
    ours = getattr(optimizers, name)(learning_rate=optimizers.ExponentialDecay(**schedule), **kwargs, **setting)
    return theirs, ours


def _assert_same_state(theirs: Any, ours: Any, their_vars: list[Any], our_vars: list[Any]) -> None:
    assert ours._iterations == int(to_numpy(theirs._iterations))
    assert ours.iterations == int(to_numpy(theirs.iterations))
    for a, b in zip(their_vars, our_vars):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-5, atol=1e-5)
    if ours.use_ema:
        for a, b in zip(theirs._model_variables_moving_average, ours._model_variables_moving_average):
            np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-5, atol=1e-5)
    if ours.gradient_accumulation_steps:
        for a, b in zip(theirs._accumulated_gradients, ours._accumulated_gradients):
            np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZERS, ids=lambda v: v if isinstance(v, str) else "")
def test_apply_follows_keras_step_by_step(keras: Any, name: str, kwargs: dict, setting: dict) -> None:
    rng = np.random.default_rng(0)
    theirs, ours = _pair(keras, name, kwargs, setting)
    start = [rng.normal(size=shape).astype("float32") for shape in SHAPES]
    their_vars = [keras.Variable(x) for x in start]
    our_vars = [torch.nn.Parameter(torch.tensor(x)) for x in start]
    for _ in range(13):
        grads = [rng.normal(size=shape).astype("float32") for shape in SHAPES]
        theirs.apply([keras.ops.convert_to_tensor(g) for g in grads], their_vars)
        ours.apply([torch.tensor(g) for g in grads], our_vars)
        _assert_same_state(theirs, ours, their_vars, our_vars)
    # The saved variables are Keras's, in its order: iteration, learning rate (none for a schedule),
    # averages, accumulators, then the class's own slots.
    store: dict[str, Any] = {}
    ours.save_own_variables(store)
    assert len(store) == len(theirs.variables)
    for index, variable in enumerate(theirs.variables):
        np.testing.assert_allclose(store[str(index)], to_numpy(variable), rtol=1e-5, atol=1e-5)
    # EMA: the end of training writes the averages into the weights.
    theirs.finalize_variable_values(their_vars)
    ours.finalize_variable_values(our_vars)
    _assert_same_state(theirs, ours, their_vars, our_vars)


@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZERS, ids=lambda v: v if isinstance(v, str) else "")
def test_step_with_accumulation_is_the_step_on_the_mean_gradient(name: str, kwargs: dict) -> None:
    # Keras's own test_gradient_accumulation_with_weigth_decay, against NumPy's mean, for every class.
    rng = np.random.default_rng(1)
    plain = getattr(optimizers, name)(learning_rate=0.05, **kwargs)
    accumulating = getattr(optimizers, name)(learning_rate=0.05, gradient_accumulation_steps=3, **kwargs)
    w1, w3 = (torch.nn.Parameter(torch.tensor([[0.9], [0.5]])) for _ in range(2))
    plain.build([w1])
    accumulating.build([w3])
    for _ in range(8):
        grads = rng.random((3, 2, 1)).astype("float32")
        w1.grad = torch.tensor(grads.mean(axis=0))
        assert plain.step() is True
        for index in range(3):
            w3.grad = torch.tensor(grads[index])
            assert accumulating.step() is (index == 2)  # only the last micro-batch updates
    np.testing.assert_allclose(to_numpy(w3), to_numpy(w1), rtol=1e-6, atol=1e-6)
    assert accumulating.iterations == plain.iterations == 8 and accumulating._iterations == 24


# -- fit ---------------------------------------------------------------------------------
def _regularized_model(lib: Any) -> Any:
    """Two Dense layers with L1/L2 kernel and bias penalties, activity penalties and a MaxNorm kernel."""
    make = lib.layers if lib else layers
    rules = lib.regularizers if lib else regularizers
    limits = lib.constraints if lib else constraints
    sequential = lib.Sequential if lib else models.Sequential
    model = sequential([
        make.Input((5,)),
        make.Dense(4, activation="tanh", kernel_regularizer=rules.L1L2(l1=0.01, l2=0.02),
                   bias_regularizer=rules.L2(0.03), activity_regularizer=rules.L1(0.01),
                   kernel_constraint=limits.MaxNorm(0.6)),
        make.Dense(2, kernel_regularizer=rules.L1(0.02), bias_regularizer=rules.L1L2(l1=0.01, l2=0.01),
                   activity_regularizer=rules.L2(0.02)),
    ])
    rng = np.random.default_rng(2)
    # Inside the MaxNorm ball at the start: Keras projects after every call, micro-batches included,
    # which leaves a weight inside the ball as it is (up to its epsilon).
    model.set_weights([rng.uniform(-0.2, 0.2, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 5)).astype("float32")
    return x, (x[:, :2] * 2.0 - x[:, 2:4]).astype("float32")


def _fit(lib: Any, make_optimizer: Any, batch_size: int, epochs: int = 3) -> tuple[list[np.ndarray], dict, Any]:
    x, y = _data()
    model = _regularized_model(lib)
    model.compile(optimizer=make_optimizer(), loss="mse")
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return [to_numpy(w) for w in model.get_weights()], history.history, model


def test_fit_accumulating_4_micro_batches_equals_one_step_on_their_concatenation() -> None:
    accumulated, acc_history, model = _fit(
        None, lambda: optimizers.SGD(learning_rate=0.1, momentum=0.5, gradient_accumulation_steps=4), batch_size=2)
    whole, whole_history, _ = _fit(None, lambda: optimizers.SGD(learning_rate=0.1, momentum=0.5), batch_size=8)
    for a, b in zip(accumulated, whole):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # The logged loss is each micro-batch's (penalties included), at weights that stay put in a window.
    np.testing.assert_allclose(acc_history["loss"], whole_history["loss"], rtol=1e-6)
    assert model.optimizer.iterations == 3 * 4 and model.optimizer._iterations == 3 * 16
    # The MaxNorm constraint was reached: some kernel column sits on its bound.
    norms = np.linalg.norm(accumulated[0], axis=0)
    assert norms.max() == pytest.approx(0.6, abs=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("SGD", {"learning_rate": 0.1, "momentum": 0.5}), ("Adam", {"learning_rate": 0.05}),
     ("RMSprop", {"learning_rate": 0.01, "weight_decay": 0.1})],
)
@pytest.mark.parametrize("setting", [
    {"gradient_accumulation_steps": 4},
    {"use_ema": True, "ema_momentum": 0.9},
    {"use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 3, "gradient_accumulation_steps": 2},
], ids=["accumulate", "ema", "both"])
def test_fit_follows_keras(keras: Any, name: str, kwargs: dict, setting: dict) -> None:
    theirs, their_history, their_model = _fit(
        keras, lambda: getattr(keras.optimizers, name)(**kwargs, **setting), batch_size=2)
    ours, our_history, our_model = _fit(None, lambda: getattr(optimizers, name)(**kwargs, **setting), batch_size=2)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert set(their_history) <= set(our_history)  # weightwise logs regularization_loss besides
    for key in their_history:
        np.testing.assert_allclose(our_history[key], their_history[key], rtol=1e-5, atol=1e-6)
    assert our_model.optimizer._iterations == int(to_numpy(their_model.optimizer._iterations))


def test_constraints_wait_for_the_update() -> None:
    # Keras projects after every apply call, micro-batches included; its docs promise the projection
    # "after each gradient update", and only that keeps accumulation equal to the concatenated step:
    # a weight outside the constraint stays as it is until the update.
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, kernel_constraint=constraints.NonNeg())])
    model.set_weights([np.full((3, 2), -1.0, "float32"), np.zeros(2, "float32")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1, gradient_accumulation_steps=2), loss="mse")
    x, y = np.ones((1, 3), "float32"), np.zeros((1, 2), "float32")
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(to_numpy(model.layers[0].kernel), np.full((3, 2), -1.0))
    model.train_on_batch(x, y)
    assert to_numpy(model.layers[0].kernel).min() == 0.0
    kernel = model.layers[0].kernel
    opt = optimizers.SGD(learning_rate=0.1, gradient_accumulation_steps=2)
    with torch.no_grad():
        kernel.fill_(-1.0)
    opt.apply([torch.ones(3, 2)], [kernel])
    assert to_numpy(kernel).max() == -1.0  # accumulated only: not projected
    opt.apply([torch.ones(3, 2)], [kernel])
    assert to_numpy(kernel).min() == 0.0


# -- hand-written loops ----------------------------------------------------------------------
def _torch_net() -> torch.nn.Module:
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    weightwise.regularize(net, {"0.weight": regularizers.L1L2(l1=0.01, l2=0.02), "0.bias": regularizers.L2(0.03),
                                "2.weight": regularizers.L1(0.02)})
    weightwise.regularize_activity(net[0], regularizers.L1(0.01))
    weightwise.constrain(net, {"0.weight": constraints.MaxNorm(0.6, axis=1)})
    return net


def _hand_loop(micro_batches: int, optimizer: str) -> list[np.ndarray]:
    x, y = _data()
    net = _torch_net()
    if optimizer == "torch":
        opt: Any = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.5)
        divide = micro_batches  # the user averages: data loss and penalty both divided by N
    else:
        opt = optimizers.SGD(learning_rate=0.3, momentum=0.5, gradient_accumulation_steps=micro_batches)
        opt.build(list(net.parameters()))
        divide = 1  # the optimizer averages the N micro-batches' gradients itself
    for xs, ys in zip(np.split(x, 4), np.split(y, 4)):  # 4 updates of 8 samples
        if optimizer == "torch":
            opt.zero_grad()
        for xm, ym in zip(np.split(xs, micro_batches), np.split(ys, micro_batches)):
            if optimizer != "torch":
                opt.zero_grad()
            out = net(torch.tensor(xm))
            loss = torch.nn.functional.mse_loss(out, torch.tensor(ym)) + weightwise.regularization_loss(net)
            (loss / divide).backward()
            if optimizer != "torch" and opt.step():
                weightwise.apply_constraints(net)
        if optimizer == "torch":
            opt.step()
            weightwise.apply_constraints(net)
    return [to_numpy(p) for p in net.parameters()]


@pytest.mark.parametrize("optimizer", ["torch", "weightwise"])
def test_hand_loop_with_accumulation_and_regularization_loss_equals_the_concatenated_step(optimizer: str) -> None:
    whole = _hand_loop(1, "torch")
    for a, b in zip(_hand_loop(4, optimizer), whole):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert np.linalg.norm(whole[0], axis=1).max() == pytest.approx(0.6, abs=1e-5)  # the constraint engaged


# -- saving and loading -----------------------------------------------------------------------
@pytest.mark.parametrize("form", ["keras_store", "state_dict"])
@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZERS, ids=lambda v: v if isinstance(v, str) else "")
def test_save_and_load_mid_accumulation_with_ema_resume_exactly(name: str, kwargs: dict, form: str) -> None:
    rng = np.random.default_rng(5)
    setting = {"use_ema": True, "ema_momentum": 0.8, "ema_overwrite_frequency": 2, "gradient_accumulation_steps": 3}
    grads = [[rng.normal(size=shape).astype("float32") for shape in SHAPES] for _ in range(14)]
    start = [rng.normal(size=shape).astype("float32") for shape in SHAPES]

    def make() -> tuple[Any, list[torch.nn.Parameter]]:
        opt = getattr(optimizers, name)(learning_rate=optimizers.ExponentialDecay(0.1, 2, 0.7), **kwargs, **setting)
        return opt, [torch.nn.Parameter(torch.tensor(x)) for x in start]

    straight, straight_vars = make()
    for g in grads:
        straight.apply([torch.tensor(x) for x in g], straight_vars)
    first, first_vars = make()
    for g in grads[:7]:  # mid-window: 7 calls, 2 updates and one micro-batch accumulated
        first.apply([torch.tensor(x) for x in g], first_vars)
    assert first.iterations == 2 and first._iterations == 7
    resumed, resumed_vars = make()
    with torch.no_grad():
        for target, source in zip(resumed_vars, first_vars):
            target.copy_(source)
    resumed.build(resumed_vars)
    if form == "keras_store":
        store: dict[str, Any] = {}
        first.save_own_variables(store)
        resumed.load_own_variables(store)
    else:
        buffer = io.BytesIO()
        torch.save(first.state_dict(), buffer)
        buffer.seek(0)
        resumed.load_state_dict(torch.load(buffer))
    assert (resumed.iterations, resumed._iterations) == (2, 7)
    for g in grads[7:]:
        resumed.apply([torch.tensor(x) for x in g], resumed_vars)
    # Keras's layout keeps SGD's momentum in weight units: converting back costs one rounding.
    tolerance = 1e-6 if form == "keras_store" else 0.0
    for a, b in zip(resumed_vars, straight_vars):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=tolerance, atol=tolerance / 10)
    for a, b in zip(resumed._model_variables_moving_average, straight._model_variables_moving_average):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=tolerance, atol=tolerance / 10)


def test_a_wrong_layout_is_refused_and_changes_nothing() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = optimizers.SGD(use_ema=True, gradient_accumulation_steps=2)
    opt.build([w])
    store = {"0": np.array(3), "1": np.array(0.01), "2": np.ones(2)}  # the accumulator is missing
    with pytest.raises(ValueError, match="gradient_accumulator of parameter 0"):
        opt.load_own_variables(store)
    assert opt._iterations == 0


def test_state_dict_refuses_a_mismatch_and_changes_nothing() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = optimizers.Adam(use_ema=True, gradient_accumulation_steps=2)
    opt.apply([torch.ones(2)], [w])
    state = opt.state_dict()
    other = optimizers.Adam(use_ema=True)  # no accumulation: no accumulators to take
    other.build([w])
    with pytest.raises(ValueError, match="'accumulated_gradients' must hold 0 tensors"):
        other.load_state_dict(state)
    assert other._iterations == 0 and other.torch_optimizer.state == {}
    with pytest.raises(ValueError, match="'iterations' must be an int"):
        opt.load_state_dict({**state, "iterations": -1})


def test_keras_file_exchange_mid_accumulation(keras: Any, tmp_path: Any) -> None:
    # A .keras file Keras writes mid-window loads here and training goes on as Keras's does, and back.
    x, y = _data()

    def make(lib: Any) -> Any:
        model = _regularized_model(lib)
        source = lib.optimizers if lib else optimizers
        model.compile(optimizer=source.Adam(learning_rate=0.05, use_ema=True, ema_overwrite_frequency=2,
                                            gradient_accumulation_steps=3), loss="mse")
        return model

    their_model = make(keras)
    their_model.fit(x[:10], y[:10], batch_size=2, shuffle=False, verbose=0)  # 5 calls: 1 update, 2 accumulated
    path = str(tmp_path / "mid.keras")
    their_model.save(path)
    ours = weightwise.saving.load_model(path)
    assert (ours.optimizer.iterations, ours.optimizer._iterations) == (1, 5)
    np.testing.assert_allclose(to_numpy(ours.optimizer._accumulated_gradients[0]),
                               to_numpy(their_model.optimizer._accumulated_gradients[0]), rtol=1e-6)
    back_path = str(tmp_path / "back.keras")
    ours.save(back_path)
    back = keras.saving.load_model(back_path)
    for model in (their_model, ours, back):
        model.fit(x[10:], y[10:], batch_size=2, shuffle=False, verbose=0)
    for a, b, c in zip(their_model.get_weights(), ours.get_weights(), back.get_weights()):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(to_numpy(c), to_numpy(a), rtol=1e-5, atol=1e-5)


# -- arguments and config -----------------------------------------------------------------
def test_config_keeps_keras_arguments_and_round_trips(keras: Any) -> None:
    ours = optimizers.Adam(use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=4, gradient_accumulation_steps=3)
    theirs = keras.optimizers.Adam(use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=4,
                                   gradient_accumulation_steps=3)
    config = ours.get_config()
    their_config = theirs.get_config()
    for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency", "gradient_accumulation_steps"):
        assert config[key] == their_config[key]
    assert list(config) == [k for k in their_config if k in config]
    assert optimizers.Adam.from_config(their_config).get_config()["gradient_accumulation_steps"] == 3


@pytest.mark.parametrize(("argument", "value"), [
    ("gradient_accumulation_steps", 1), ("gradient_accumulation_steps", 0), ("gradient_accumulation_steps", 2.0),
    ("gradient_accumulation_steps", True), ("ema_overwrite_frequency", 0), ("ema_overwrite_frequency", 1.5),
    ("ema_momentum", 1.5), ("ema_momentum", -0.1), ("use_ema", 1),
])
def test_bad_values_name_the_argument(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`.*{argument}={value!r}"):
        optimizers.SGD(**{argument: value})


def test_finalize_refuses_unknown_variables_and_waits_for_a_step() -> None:
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = optimizers.SGD(use_ema=True)
    opt.build([w])
    opt.finalize_variable_values([w])  # no step yet: no average to write (Keras writes its zeros)
    assert w.item() == 2.0
    with pytest.raises(ValueError, match="unknown to optimizer"):
        opt.finalize_variable_values([torch.nn.Parameter(torch.zeros(1))])
