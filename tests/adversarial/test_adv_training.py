"""Adversarial cases for training: compile, fit/evaluate/predict, optimizers, losses, metrics, callbacks.

Each case ends in a correct result (checked against NumPy or a stated rule) or a clear error
that names the argument, echoes the value and leaves the model, its compile state and the
optimizer state exactly as they were (see harness.py). The named regression tests first
reproduce the bugs of issue 11 in this area.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from harness import clear_error, correct, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from weightwise import Sequential, callbacks, layers, losses, metrics, optimizers

X = np.random.default_rng(3).normal(size=(8, 3)).astype(np.float32)
Y = np.random.default_rng(4).normal(size=(8, 2)).astype(np.float32)
LABELS = np.array([0, 1, 1, 0, 1, 0, 0, 1])

HUGE = 10**400
BAD_REALS = [
    (float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf"), (HUGE, "1000000"),
    (True, "True"), ("0.1", "'0.1'"), ([0.1], "[0.1]"), (1j, "1j"), (object(), "object"),
]
FAST = settings(max_examples=25, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These tensors have a few elements: waking a second OpenMP thread costs more than the work
    # (5 ms per nll_loss on a busy 2-core machine, against 0.1 ms on one thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained(optimizer: object = "sgd", loss: str = "mse", metrics_: object = None, seed: int = 0) -> Sequential:
    """A small compiled model that has trained one epoch (so its optimizer holds state)."""
    torch.manual_seed(seed)
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics_)
    model.fit(X, LABELS if "sparse" in loss else Y, verbose=0, shuffle=False, batch_size=4)
    return model


def trajectory(model: Sequential) -> tuple[dict, list[np.ndarray]]:
    """Two more steps of training: the History and the weights they end at."""
    return model.fit(X, Y, batch_size=4, shuffle=False, verbose=0).history, model.get_weights()


_UNTOUCHED: list = []


@pytest.fixture(scope="module")
def shared() -> Sequential:
    """One trained model for the cases that must leave it unchanged (each case checks that it did)."""
    return trained()


@pytest.fixture(scope="module")
def shared_sparse() -> Sequential:
    return trained(loss="sparse_categorical_crossentropy")


def untouched_trajectory() -> tuple[dict, list[np.ndarray]]:
    """The trajectory of a twin that was never re-compiled (computed once)."""
    if not _UNTOUCHED:
        _UNTOUCHED.append(trajectory(trained(optimizers.SGD(0.05, momentum=0.9))))
    return _UNTOUCHED[0]


# --------------------------------------------------------------------------- §2: compile is all-or-nothing


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"loss": "nope"}, ("loss", "nope")),
        ({"loss": 42}, ("loss", "42")),
        ({"loss": None}, ("loss", "None")),
        ({"loss": ["mse", "mae"]}, ("loss", "'mae'")),
        ({"loss": {"nope": "mse"}}, ("loss", "nope")),
        ({"loss": "mse", "jit_compile": "x"}, ("jit_compile", "'x'")),
        ({"loss": "mse", "jit_compile": 1}, ("jit_compile", "1")),
        ({"loss": "mse", "jit_compile": None}, ("jit_compile", "None")),
        ({"loss": "mse", "metrics": ["nope"]}, ("metrics", "nope")),
        ({"loss": "mse", "metrics": [42]}, ("metrics", "42")),
        ({"loss": "mse", "metrics": [callbacks.History]}, ("metrics", "History")),
        ({"loss": "mse", "weighted_metrics": ["nope"]}, ("weighted_metrics", "nope")),
        ({"loss": "mse", "loss_weights": float("nan")}, ("loss_weights", "nan")),
        ({"loss": "mse", "loss_weights": -1.0}, ("loss_weights", "-1.0")),
        ({"loss": "mse", "loss_weights": float("inf")}, ("loss_weights", "inf")),
        ({"loss": "mse", "loss_weights": HUGE}, ("loss_weights", "10000")),
        ({"loss": "mse", "loss_weights": "1"}, ("loss_weights", "'1'")),
        ({"loss": "mse", "loss_weights": True}, ("loss_weights", "True")),
        ({"loss": "mse", "loss_weights": [1.0, 2.0]}, ("loss_weights", "[1.0, 2.0]")),
        ({"loss": "mse", "loss_weights": {"nope": 1.0}}, ("loss_weights", "nope")),
        ({"loss": "mse", "optimizer": "nadam"}, ("optimizer", "nadam")),
        ({"loss": "mse", "optimizer": 42}, ("optimizer", "42")),
        ({"loss": "mse", "optimizer": None}, ("optimizer", "None")),
        ({"loss": "mse", "optimizer": {"class_name": "Adam", "config": {"nope": 1}}}, ("optimizer", "nope")),
        ({"loss": "mse", "run_eagerly": "yes"}, ("run_eagerly", "'yes'")),
        ({"loss": "mse", "run_eagerly": None}, ("run_eagerly", "None")),
        ({"loss": "mse", "auto_scale_loss": 1}, ("auto_scale_loss", "1")),
        ({"loss": "mse", "steps_per_execution": 0}, ("steps_per_execution", "0")),
        ({"loss": "mse", "steps_per_execution": 2}, ("steps_per_execution", "2")),
        ({"loss": "mse", "steps_per_execution": 1.5}, ("steps_per_execution", "1.5")),
        ({"loss": "mse", "steps_per_execution": True}, ("steps_per_execution", "True")),
    ],
)
def test_failed_recompile_changes_nothing_and_fit_trains_as_before(kwargs: dict, fragments: tuple) -> None:
    # Issue 11 §2: a failed re-compile swapped in the new optimizer, and the next fit used it.
    model = trained(optimizers.SGD(0.05, momentum=0.9))
    kwargs = {"optimizer": "adam", **kwargs}
    clear_error(lambda: model.compile(**kwargs), *fragments, state=[model, model.optimizer])
    assert model.compiled and type(model.optimizer).__name__ == "SGD"
    history, weights = trajectory(model)
    expected_history, expected_weights = untouched_trajectory()
    assert history == expected_history
    for ours, theirs in zip(weights, expected_weights):
        np.testing.assert_array_equal(ours, theirs)


def test_compile_refuses_an_optimizer_built_for_other_parameters() -> None:
    model, other = trained(), trained(seed=1)
    foreign = other.optimizer
    clear_error(lambda: model.compile(optimizer=foreign, loss="mse"), "already built", state=[model, model.optimizer, foreign])


def test_a_failed_compile_of_a_fresh_model_leaves_it_uncompiled() -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    clear_error(lambda: model.compile(optimizer="adam", loss="mse", jit_compile="yes"), "jit_compile", state=[model])
    assert not model.compiled and "optimizer" not in vars(model)


def test_compile_from_config_runs_keras_multi_step_configs_one_step_at_a_time() -> None:
    model = trained()
    config = {**model.get_compile_config(), "steps_per_execution": 4}
    with pytest.warns(UserWarning, match="steps_per_execution=4"):
        model.compile_from_config(config)
    correct(lambda: model.get_compile_config()["steps_per_execution"], lambda r: r == 1)
    before = model.optimizer
    clear_error(lambda: model.compile_from_config({**config, "steps_per_execution": 0}), "steps_per_execution", "0",
                state=[model])
    clear_error(lambda: model.compile_from_config({**config, "steps_per_execution": 1, "run_eagerly": "no"}),
                "run_eagerly", "'no'",
                state=[model])
    assert model.optimizer is before


def test_run_eagerly_disables_jit_compile_as_keras_does() -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    with pytest.warns(UserWarning, match="Disabling `jit_compile`"):
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True, jit_compile=True)
    correct(lambda: (model.jit_compile, model.run_eagerly), lambda r: r == (False, True))


def test_multi_output_metric_objects_are_not_renamed() -> None:
    inputs = layers.Input(shape=(3,))
    model = __import__("weightwise").Model(inputs, [layers.Dense(1, name="a")(inputs), layers.Dense(1, name="b")(inputs)])
    shared = metrics.MeanAbsoluteError()
    model.compile(optimizer="sgd", loss="mse", metrics=[[shared], []])
    model.compile(optimizer="sgd", loss="mse", metrics=[[shared], []])
    correct(lambda: (shared.name, model.metrics_names), lambda r: r[0] == "mean_absolute_error"
            and "a_mean_absolute_error" in r[1])


# --------------------------------------------------------------------------- §3: no silent wrong answers


def empty_loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 3), torch.zeros(0, 2)))


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda m: m.fit(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32), verbose=0), ("x", "no samples")),
        (lambda m: m.fit(empty_loader(), verbose=0), ("x", "no samples")),
        (lambda m: m.fit(torch.utils.data.TensorDataset(torch.zeros(0, 3), torch.zeros(0, 2)), verbose=0), ("x",)),
        (lambda m: m.fit(iter([]), verbose=0), ("x", "no batch")),
        (lambda m: m.fit(X, Y, steps_per_epoch=0, verbose=0), ("steps_per_epoch", "0")),
        (lambda m: m.fit(X, Y, validation_data=(X[:0], Y[:0]), verbose=0), ("validation_data", "no samples")),
        (lambda m: m.fit(X[:0], Y[:0], validation_split=0.5, verbose=0), ("x", "no samples")),
        (lambda m: m.evaluate(np.zeros((0, 3)), np.zeros((0, 2)), verbose=0), ("x", "no samples")),
        (lambda m: m.evaluate(empty_loader(), verbose=0), ("x", "no samples")),
        (lambda m: m.evaluate(iter([]), verbose=0), ("x", "no batch")),
        (lambda m: m.evaluate(X, Y, steps=0, verbose=0), ("steps", "0")),
        (lambda m: m.train_on_batch(np.zeros((0, 3)), np.zeros((0, 2))), ("x", "no samples")),
        (lambda m: m.test_on_batch(np.zeros((0, 3)), np.zeros((0, 2))), ("x", "no samples")),
        (lambda m: m.predict(empty_loader(), verbose=0), ("x", "no batch")),
    ],
)
def test_empty_data_is_refused_not_reported_as_a_loss_of_zero(call, fragments: tuple, shared: Sequential) -> None:
    # Issue 11 §3: fit and evaluate on empty data reported a loss of 0.0.
    model = shared
    clear_error(lambda: call(model), *fragments, state=[model, model.optimizer])


def test_predict_on_no_samples_gives_outputs_with_no_rows() -> None:
    model = trained()
    correct(lambda: model.predict(np.zeros((0, 3), np.float32), verbose=0), lambda r: r.shape == (0, 2))
    correct(lambda: model.predict_on_batch(np.zeros((0, 3), np.float32)), lambda r: r.shape == (0, 2))


@pytest.mark.parametrize(
    ("class_weight", "fragments"),
    [
        ({-1: 5.0, 0: 1.0, 1: 1.0}, ("class_weight", "-1")),
        ({0: float("nan"), 1: 1.0}, ("class_weight[0]", "nan")),
        ({0: float("inf"), 1: 1.0}, ("class_weight[0]", "inf")),
        ({0: -2.0, 1: 1.0}, ("class_weight[0]", "-2.0")),
        ({0: HUGE, 1: 1.0}, ("class_weight[0]", "10000")),
        ({0: "1", 1: 1.0}, ("class_weight[0]", "'1'")),
        ({0: True, 1: 1.0}, ("class_weight[0]", "True")),
        ({0: None, 1: 1.0}, ("class_weight[0]", "None")),
        ({0.0: 1.0, 1: 1.0}, ("class_weight", "0.0")),
        ({"0": 1.0, 1: 1.0}, ("class_weight", "'0'")),
        ({True: 1.0, 0: 1.0}, ("class_weight", "True")),
        ({0: 1.0}, ("class_weight", "[1]")),
        ([1.0, 2.0], ("class_weight", "[1.0, 2.0]")),
        ("balanced", ("class_weight", "'balanced'")),
    ],
)
def test_class_weight_is_checked(class_weight: object, fragments: tuple, shared_sparse: Sequential) -> None:
    # Issue 11 §3: a negative key silently re-weighted another class; a NaN weight was accepted.
    model = shared_sparse
    clear_error(lambda: model.fit(X, LABELS, class_weight=class_weight, verbose=0), *fragments,
                state=[model, model.optimizer])


def test_class_weight_keys_beyond_one_hot_classes_are_refused() -> None:
    model = trained(loss="categorical_crossentropy")
    one_hot = np.eye(2, dtype=np.float32)[LABELS]
    clear_error(lambda: model.fit(X, one_hot, class_weight={0: 1.0, 1: 1.0, 5: 2.0}, verbose=0), "class_weight", "[5]",
                state=[model, model.optimizer])


def test_class_weight_with_a_loader_is_refused() -> None:
    model = trained()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)))
    clear_error(lambda: model.fit(loader, class_weight={0: 1.0}, verbose=0), "class_weight", state=[model])


def test_class_weight_matches_the_sample_weights_it_stands_for() -> None:
    model, twin = trained(loss="sparse_categorical_crossentropy"), trained(loss="sparse_categorical_crossentropy")
    weights = {0: 0.5, 1: 2.0}
    a = model.fit(X, LABELS, class_weight=weights, shuffle=False, verbose=0).history
    b = twin.fit(X, LABELS, sample_weight=np.array([weights[c] for c in LABELS]), shuffle=False, verbose=0).history
    correct(lambda: a, lambda r: r == b)


@given(st.dictionaries(st.integers(0, 1), st.floats(0, 100), min_size=2, max_size=2))
@FAST
def test_class_weight_property(class_weight: dict) -> None:
    from weightwise.models.data import class_weights_to_sample_weights

    correct(lambda: class_weights_to_sample_weights(torch.from_numpy(LABELS), class_weight),
            lambda r: np.allclose(r.numpy(), [class_weight[c] for c in LABELS], rtol=1e-6))


# Keras documents these ranges (SGD's momentum is "a float between [0, 1]"); an epsilon of 0 divides
# 0 by 0 where a gradient is 0, a beta of 1 divides by 1 - beta ** t = 0.
OPTIMIZER_ARGS = [
    (cls, name)
    for cls, names in [
        (optimizers.SGD, ["learning_rate", "momentum", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                          "ema_momentum", "loss_scale_factor"]),
        (optimizers.Adam, ["learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay", "clipnorm"]),
        (optimizers.AdamW, ["learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"]),
        (optimizers.RMSprop, ["learning_rate", "rho", "momentum", "epsilon", "clipvalue"]),
        (optimizers.Adagrad, ["learning_rate", "initial_accumulator_value", "epsilon", "global_clipnorm"]),
    ]
    for name in names
]


@pytest.mark.parametrize(("cls", "name"), OPTIMIZER_ARGS, ids=lambda v: getattr(v, "__name__", v))
def test_optimizer_numbers_refuse_non_numbers_nan_inf_and_huge(cls, name: str) -> None:
    for value, echo in BAD_REALS:
        clear_error(lambda value=value: cls(**{name: value}), name, echo)


OUT_OF_RANGE = [
    (optimizers.SGD, "momentum", -0.1), (optimizers.SGD, "momentum", 1.5), (optimizers.SGD, "learning_rate", -1e-3),
    (optimizers.SGD, "weight_decay", -1.0), (optimizers.SGD, "clipnorm", -1.0), (optimizers.SGD, "clipvalue", -1.0),
    (optimizers.SGD, "global_clipnorm", -1.0), (optimizers.SGD, "loss_scale_factor", 0.0),
    (optimizers.SGD, "loss_scale_factor", -2.0), (optimizers.SGD, "ema_momentum", 1.01),
    (optimizers.Adam, "epsilon", 0), (optimizers.Adam, "epsilon", 0.0), (optimizers.Adam, "epsilon", -1e-7),
    (optimizers.Adam, "epsilon", 1e-50), (optimizers.Adam, "beta_1", 1.0), (optimizers.Adam, "beta_2", 1.0),
    (optimizers.Adam, "beta_1", -0.1), (optimizers.AdamW, "epsilon", 0), (optimizers.AdamW, "weight_decay", -0.1),
    (optimizers.RMSprop, "epsilon", 0), (optimizers.RMSprop, "rho", 1.5), (optimizers.RMSprop, "rho", -0.5),
    (optimizers.RMSprop, "momentum", 2.0), (optimizers.Adagrad, "epsilon", 0),
    (optimizers.Adagrad, "initial_accumulator_value", -0.1),
]


@pytest.mark.parametrize(("cls", "name", "value"), OUT_OF_RANGE)
def test_optimizer_numbers_out_of_range_are_refused(cls, name: str, value: float) -> None:
    # Issue 11 §3: Adam(epsilon=0) was accepted (and divides 0 by 0 where a gradient is 0).
    clear_error(lambda: cls(**{name: value}), name, repr(value))


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.Adam, optimizers.RMSprop, optimizers.Adagrad])
@pytest.mark.parametrize(("name", "value"), [("nesterov", 1), ("amsgrad", "yes"), ("centered", None)])
def test_optimizer_flags_must_be_bools(cls, name: str, value: object) -> None:
    import inspect

    if name not in inspect.signature(cls).parameters:
        return
    clear_error(lambda: cls(**{name: value}), name, repr(value))


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"use_ema": "True"}, ("use_ema", "True")), ({"use_ema": 0}, ("use_ema", "0")),
        ({"ema_overwrite_frequency": 0}, ("ema_overwrite_frequency", "0")),
        ({"gradient_accumulation_steps": 1}, ("gradient_accumulation_steps", "1")),
        ({"name": 5}, ("name", "5")), ({"clipnorm": 1.0, "clipvalue": 1.0}, ("clipnorm", "clipvalue")),
        ({"learning_rate": torch.tensor([0.1, 0.2])}, ("learning_rate", "tensor")),
        ({"learning_rate": torch.tensor(1)}, ("learning_rate", "tensor(1)")),
        ({"learning_rate": torch.tensor(0.1, device="meta")}, ("learning_rate", "meta")),
        ({"learning_rate": np.array([0.1])}, ("learning_rate", "array")),
        ({"learning_rate": None}, ("learning_rate", "None")),
    ],
)
def test_optimizer_other_arguments(kwargs: dict, fragments: tuple) -> None:
    clear_error(lambda: optimizers.SGD(**kwargs), *fragments)


@pytest.mark.parametrize("value", [0.0, 1e-12, 1e308, np.float32(0.5), np.float64(0.5), torch.tensor(0.25), 3])
def test_optimizer_accepts_extreme_but_valid_learning_rates(value: object) -> None:
    correct(lambda: optimizers.SGD(learning_rate=value), lambda opt: opt.learning_rate == float(value)
            and optimizers.SGD.from_config(opt.get_config()).learning_rate == float(value))


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: optimizers.ExponentialDecay(HUGE, 10, 0.5), ("initial_learning_rate", "1000")),
        (lambda: optimizers.ExponentialDecay(-0.1, 10, 0.5), ("initial_learning_rate", "-0.1")),
        (lambda: optimizers.ExponentialDecay(0.1, 0, 0.5), ("decay_steps", "0")),
        (lambda: optimizers.ExponentialDecay(0.1, float("nan"), 0.5), ("decay_steps", "nan")),
        (lambda: optimizers.ExponentialDecay(0.1, float("inf"), 0.5), ("decay_steps", "inf")),
        (lambda: optimizers.ExponentialDecay(0.1, "10", 0.5), ("decay_steps", "'10'")),
        (lambda: optimizers.ExponentialDecay(0.1, True, 0.5), ("decay_steps", "True")),
        (lambda: optimizers.ExponentialDecay(0.1, 10, float("nan")), ("decay_rate", "nan")),
        (lambda: optimizers.ExponentialDecay(0.1, 10, -0.5), ("decay_rate", "-0.5")),
        (lambda: optimizers.ExponentialDecay(0.1, 10, 0.5, staircase="yes"), ("staircase", "'yes'")),
        (lambda: optimizers.ExponentialDecay(0.1, 10, 0.5, name=3), ("name", "3")),
        (lambda: optimizers.TorchOptimizer("sgd"), ("torch_optimizer", "'sgd'")),
        (lambda: optimizers.TorchOptimizer(None), ("torch_optimizer", "None")),
        (lambda: optimizers.get(torch.nn.Linear), ("optimizer", "Linear")),
        (lambda: optimizers.get(3.5), ("optimizer", "3.5")),
        (lambda: optimizers.get("adamm"), ("adamm",)),
        (lambda: optimizers.SGD().build("abc"), ("params", "'a'")),
        (lambda: optimizers.SGD().build(3), ("params", "3")),
        (lambda: optimizers.SGD().step(), ("build",)),
    ],
)
def test_other_optimizer_constructors_and_calls(make, fragments: tuple) -> None:
    clear_error(make, *fragments)


@pytest.mark.parametrize(
    "kwargs",
    [{"momentum": np.float64(0.5)}, {"momentum": np.float32(1.0)}, {"nesterov": np.bool_(True), "momentum": 0.5},
     {"weight_decay": 0.0}, {"clipnorm": 0.0}, {"clipvalue": 1e308}, {"global_clipnorm": np.int64(2)},
     {"loss_scale_factor": 1e-30}, {"ema_momentum": 0.0}, {"weight_decay": 1e308}],
)
def test_optimizer_accepts_numpy_scalars_and_extreme_valid_values(kwargs: dict) -> None:
    def round_trip(opt: optimizers.SGD) -> bool:
        config = opt.get_config()
        return all(type(config[k]) in (float, bool) and config[k] == v for k, v in kwargs.items()) \
            and optimizers.SGD.from_config(config).get_config() == config

    correct(lambda: optimizers.SGD(**kwargs), round_trip)


@given(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True),
       st.floats(1e-30, 1e10, allow_subnormal=False))
@FAST
def test_adam_accepts_its_documented_ranges(beta_1: float, beta_2: float, epsilon: float) -> None:
    correct(lambda: optimizers.Adam(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon),
            lambda opt: (opt.beta_1, opt.beta_2, opt.epsilon) == (beta_1, beta_2, epsilon))


@pytest.mark.parametrize(
    ("schedule", "echo"),
    [
        (lambda step: "x", "'x'"), (lambda step: None, "None"), (lambda step: float("nan"), "nan"),
        (lambda step: -0.1, "-0.1"), (lambda step: float("inf"), "inf"), (lambda step: HUGE, "1000"),
        (lambda: [0.1], "[0.1]"), (lambda step: torch.tensor([0.1, 0.2]), "tensor"), (lambda step: True, "True"),
        (lambda step: 1j, "1j"),
    ],
)
def test_learning_rate_callables_that_return_non_numbers_are_refused_before_training(schedule, echo: str) -> None:
    # Issue 11 §4: a learning-rate callable that returned a non-number crashed inside float().
    model = trained(optimizers.SGD(0.05))
    model.optimizer.learning_rate = schedule
    clear_error(lambda: model.fit(X, Y, verbose=0), "learning_rate", echo, state=[model, model.optimizer])
    clear_error(lambda: model.train_on_batch(X, Y), "learning_rate", echo, state=[model, model.optimizer])


def test_a_schedule_returning_a_numpy_or_tensor_scalar_trains() -> None:
    model = trained(optimizers.SGD(0.05))
    model.optimizer.learning_rate = lambda step: torch.tensor(0.01)
    twin = trained(optimizers.SGD(0.05))
    twin.optimizer.learning_rate = 0.01
    correct(lambda: model.fit(X, Y, shuffle=False, verbose=0).history,
            lambda h: h == twin.fit(X, Y, shuffle=False, verbose=0).history)


def test_optimizer_state_handed_out_is_a_copy() -> None:
    # Issue 11 §3: numpy views of live optimizer state trained along with it.
    model = trained(optimizers.Adam(0.1))
    store: dict = {}
    model.optimizer.save_own_variables(store)
    saved = {key: value.copy() for key, value in store.items()}
    for value in store.values():
        value[...] = 123  # writing to the store must not reach the optimizer
    fresh: dict = {}
    model.optimizer.save_own_variables(fresh)
    for key, value in saved.items():
        np.testing.assert_array_equal(fresh[key], value)
    model.fit(X, Y, verbose=0)
    correct(lambda: fresh, lambda f: all(np.array_equal(f[k], saved[k]) for k in saved))


def test_torch_optimizer_state_handed_out_is_a_copy() -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    model.compile(optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), loss="mse")
    model.fit(X, Y, verbose=0)
    store: dict = {}
    model.optimizer.save_own_variables(store)
    saved = {key: value.copy() for key, value in store.items()}
    model.fit(X, Y, verbose=0)
    correct(lambda: store, lambda s: all(np.array_equal(s[k], saved[k]) for k in saved))


# -- losses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: losses.Huber(delta=0), ("delta", "0")),
        (lambda: losses.Huber(delta=0.0), ("delta", "0.0")),
        (lambda: losses.Huber(delta=-1.0), ("delta", "-1.0")),
        (lambda: losses.Huber(delta=HUGE), ("delta", "1000")),
        (lambda: losses.Huber(delta=float("nan")), ("delta", "nan")),
        (lambda: losses.Huber(delta="1"), ("delta", "'1'")),
        (lambda: losses.Huber(delta=True), ("delta", "True")),
        (lambda: losses.BinaryCrossentropy(label_smoothing=1.5), ("label_smoothing", "1.5")),
        (lambda: losses.BinaryCrossentropy(label_smoothing=-0.1), ("label_smoothing", "-0.1")),
        (lambda: losses.BinaryCrossentropy(label_smoothing=HUGE), ("label_smoothing", "1000")),
        (lambda: losses.BinaryCrossentropy(label_smoothing=float("nan")), ("label_smoothing", "nan")),
        (lambda: losses.CategoricalCrossentropy(label_smoothing=2), ("label_smoothing", "2")),
        (lambda: losses.CategoricalCrossentropy(label_smoothing=None), ("label_smoothing", "None")),
        (lambda: losses.BinaryCrossentropy(from_logits=1), ("from_logits", "1")),
        (lambda: losses.CategoricalCrossentropy(from_logits="no"), ("from_logits", "'no'")),
        (lambda: losses.SparseCategoricalCrossentropy(from_logits=None), ("from_logits", "None")),
        (lambda: losses.BinaryCrossentropy(axis=1.0), ("axis", "1.0")),
        (lambda: losses.CategoricalCrossentropy(axis=None), ("axis", "None")),
        (lambda: losses.SparseCategoricalCrossentropy(axis=True), ("axis", "True")),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_class=1.5), ("ignore_class", "1.5")),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_class=HUGE), ("ignore_class", "1000")),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_class=True), ("ignore_class", "True")),
        (lambda: losses.MeanSquaredError(reduction="avg"), ("reduction", "'avg'")),
        (lambda: losses.MeanSquaredError(reduction=np.array([1, 2])), ("reduction", "array")),
        (lambda: losses.MeanSquaredError(reduction=1), ("reduction", "1")),
        (lambda: losses.MeanSquaredError(name=3), ("name", "3")),
        (lambda: losses.MeanSquaredError(dtype="int32"), ("dtype", "int32")),
        (lambda: losses.MeanAbsoluteError(dtype="bool"), ("dtype", "bool")),
        (lambda: losses.MeanAbsoluteError(dtype="nope"), ("dtype", "nope")),
        (lambda: losses.LossFunctionWrapper(3), ("fn", "3")),
        (lambda: losses.get(42), ("loss", "42")),
        (lambda: losses.get("nope"), ("nope",)),
        (lambda: losses.get(metrics.Mean), ("loss", "Mean")),
        (lambda: losses.huber([[0.0]], [[1.0]], delta=0), ("delta", "0")),
        (lambda: losses.binary_crossentropy([[0.0]], [[0.5]], label_smoothing=3), ("label_smoothing", "3")),
        (lambda: losses.binary_crossentropy([[0.0]], [[0.5]], axis=4), ("axis", "4")),
        (lambda: losses.categorical_crossentropy([[0.0, 1.0]], [[0.5, 0.5]], axis=-3), ("axis", "-3")),
        (lambda: losses.sparse_categorical_crossentropy([1], [[0.5, 0.5]], axis=7), ("axis", "7")),
        (lambda: losses.sparse_categorical_crossentropy([1], [[0.5, 0.5]], ignore_class=HUGE), ("ignore_class",)),
    ],
)
def test_loss_arguments(make, fragments: tuple) -> None:
    # Issue 11 §3: Huber(delta=0) was accepted (every loss 0), 10**400 raised OverflowError.
    clear_error(make, *fragments)


SPARSE = losses.SparseCategoricalCrossentropy()
BINARY = losses.BinaryCrossentropy()


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda: SPARSE([2], [[0.5, 0.5]]), ("y_true", "[2]")),
        (lambda: SPARSE([-1], [[0.5, 0.5]]), ("y_true", "[-1]")),
        (lambda: SPARSE([0.5], [[0.5, 0.5]]), ("y_true", "[0.5]")),
        (lambda: SPARSE([float("nan")], [[0.5, 0.5]]), ("y_true", "nan")),
        (lambda: SPARSE(np.array([10**12]), [[0.5, 0.5]]), ("y_true", "1000000000000")),
        (lambda: losses.SparseCategoricalCrossentropy(from_logits=True)([5, 0], [[1.0, 2.0], [0.0, 0.0]]),
         ("y_true", "[5]")),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_class=-1)([-2, -1], [[0.5, 0.5]] * 2), ("y_true", "[-2]")),
        (lambda: BINARY([[2.0]], [[0.5]]), ("y_true", "[2.0]")),
        (lambda: BINARY([[-0.5]], [[0.5]]), ("y_true", "[-0.5]")),
        (lambda: BINARY([[float("nan")]], [[0.5]]), ("y_true", "nan")),
        (lambda: losses.BinaryCrossentropy(from_logits=True)([[3.0]], [[0.5]]), ("y_true", "[3.0]")),
        (lambda: losses.MeanSquaredError()([[1.0, 2.0]], [[1.0, 2.0, 3.0]]), ("y_true", "(1, 2)", "(1, 3)")),
        (lambda: losses.MeanSquaredError()(["a"], [1.0]), ("y_true", "'a'")),
        (lambda: losses.MeanSquaredError()([1.0], "abc"), ("y_pred", "'abc'")),
        (lambda: losses.MeanSquaredError()([1.0], [object()]), ("y_pred", "object")),
        (lambda: losses.MeanSquaredError()([[1], [1, 2]], [1.0]), ("y_true", "[[1], [1, 2]]")),
        (lambda: losses.MeanSquaredError()([1.0], torch.tensor([1j])), ("y_pred", "complex")),
        (lambda: losses.MeanSquaredError()(X, X, sample_weight=["a"] * 8), ("sample_weight", "'a'")),
        (lambda: losses.MeanSquaredError()(X, X, sample_weight=np.ones((8, 5))), ("sample_weight", "(8, 5)")),
        (lambda: losses.MeanSquaredError()(X, X, sample_weight=np.ones(3)), ("sample_weight", "(3,)")),
        (lambda: losses.mean_absolute_error(np.ones((2, 3)), np.ones((4, 3))), ("y_true", "(2, 3)")),
        (lambda: losses.huber(np.ones((2, 3)), np.ones((2, 4))), ("y_pred", "(2, 4)")),
    ],
)
def test_loss_calls_refuse_bad_targets(call, fragments: tuple) -> None:
    # Issue 11 §4: out-of-range labels raised IndexError/RuntimeError from inside torch.
    clear_error(call, *fragments)


def numpy_losses(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    eps = 1e-7
    q = np.clip(p, eps, 1 - eps)
    return {
        "mse": float(np.mean((y - p) ** 2)),
        "mae": float(np.mean(np.abs(y - p))),
        "bce": float(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)))),
    }


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["mse", "mae", "bce"])
def test_losses_in_every_float_dtype_match_numpy(dtype: torch.dtype, name: str) -> None:
    y = np.array([[0.0, 1.0], [1.0, 1.0]])
    p = np.array([[0.25, 0.5], [0.75, 0.125]])  # exact in every float dtype
    loss = {"mse": losses.MeanSquaredError(), "mae": losses.MeanAbsoluteError(), "bce": losses.BinaryCrossentropy()}[name]
    tolerance = 1e-6 if dtype in (torch.float32, torch.float64) else 2e-3
    correct(lambda: loss(torch.tensor(y, dtype=dtype), torch.tensor(p, dtype=dtype)),
            lambda r: math.isclose(float(r), numpy_losses(y, p)[name], rel_tol=tolerance))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool], ids=str)
def test_integer_and_bool_targets_and_predictions_are_cast(dtype: torch.dtype) -> None:
    y = np.array([[0, 1], [1, 1]])
    p = np.array([[1, 1], [0, 1]])
    correct(lambda: losses.MeanSquaredError()(torch.tensor(y).to(dtype), torch.tensor(p).to(dtype)),
            lambda r: r.dtype == torch.float32 and float(r) == pytest.approx(0.5))
    correct(lambda: SPARSE(torch.tensor([0, 1]).to(dtype), torch.tensor([[0.25, 0.75], [0.5, 0.5]])),
            lambda r: math.isclose(float(r), -(math.log(0.25) + math.log(0.5)) / 2, rel_tol=1e-6))


@pytest.mark.parametrize(
    ("loss", "y", "p"),
    [
        (losses.MeanSquaredError(), np.zeros((0, 2)), np.zeros((0, 2))),
        (losses.MeanAbsoluteError(), np.zeros((0, 2)), np.zeros((0, 2))),
        (losses.BinaryCrossentropy(), np.zeros((0, 2)), np.zeros((0, 2))),
        (SPARSE, np.zeros((0,)), np.zeros((0, 2))),
    ],
)
def test_losses_of_no_samples_are_empty_as_in_keras(loss, y: np.ndarray, p: np.ndarray) -> None:
    # Keras 3 returns an empty tensor here (its reduction skips shape (0,)); so do we.
    correct(lambda: loss(y, p), lambda r: tuple(r.shape) == (0,))


def test_loss_on_meta_tensors_stays_meta() -> None:
    correct(lambda: losses.MeanSquaredError()(torch.ones(2, 3, device="meta"), torch.ones(2, 3, device="meta")),
            lambda r: r.is_meta and r.shape == ())


@given(st.lists(st.integers(-5, 8), min_size=1, max_size=6))
@FAST
def test_sparse_labels_property(labels: list) -> None:
    p = np.full((len(labels), 3), 1 / 3)
    if all(0 <= label < 3 for label in labels):
        correct(lambda: SPARSE(labels, p), lambda r: math.isclose(float(r), math.log(3), rel_tol=1e-6))
    else:
        clear_error(lambda: SPARSE(labels, p), "y_true", "[0, 3)")


@given(st.lists(st.floats(-2, 3, allow_nan=False), min_size=1, max_size=6))
@FAST
def test_binary_targets_property(targets: list) -> None:
    y, p = np.array([targets]), np.full((1, len(targets)), 0.25)
    if all(0 <= t <= 1 for t in targets):
        correct(lambda: BINARY(y, p), lambda r: math.isclose(float(r), numpy_losses(y, p)["bce"], rel_tol=1e-5))
    else:
        clear_error(lambda: BINARY(y, p), "y_true", "[0, 1]")


# -- metrics --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: metrics.BinaryAccuracy(threshold=2), ("threshold", "2")),
        (lambda: metrics.BinaryAccuracy(threshold=-0.1), ("threshold", "-0.1")),
        (lambda: metrics.BinaryAccuracy(threshold=float("nan")), ("threshold", "nan")),
        (lambda: metrics.BinaryAccuracy(threshold=HUGE), ("threshold", "1000")),
        (lambda: metrics.BinaryAccuracy(threshold="0.5"), ("threshold", "'0.5'")),
        (lambda: metrics.BinaryAccuracy(threshold=True), ("threshold", "True")),
        (lambda: metrics.BinaryAccuracy(threshold=None), ("threshold", "None")),
        (lambda: metrics.binary_accuracy([1], [0.5], threshold=1.5), ("threshold", "1.5")),
        (lambda: metrics.Mean(name=5), ("name", "5")),
        (lambda: metrics.Mean(dtype="int64"), ("dtype", "int64")),
        (lambda: metrics.Accuracy(dtype="nope"), ("dtype", "nope")),
        (lambda: metrics.MeanMetricWrapper(3), ("fn", "3")),
        (lambda: metrics.get(42), ("metric", "42")),
        (lambda: metrics.get("nope"), ("nope",)),
        (lambda: metrics.get(losses.MeanSquaredError), ("metric", "MeanSquaredError")),
    ],
)
def test_metric_arguments(make, fragments: tuple) -> None:
    # Issue 11 §3: a BinaryAccuracy threshold outside [0, 1] was accepted.
    clear_error(make, *fragments)


@pytest.mark.parametrize(
    ("metric", "args", "fragments"),
    [
        (metrics.Accuracy, (["a"], [1.0]), ("y_true", "'a'")),
        (metrics.BinaryAccuracy, ([1.0], ["b"]), ("y_pred", "'b'")),
        (metrics.CategoricalAccuracy, ([[0, 1]], [[0.1, 0.2, 0.7]]), ("y_true", "(1, 2)")),
        (metrics.CategoricalAccuracy, ([[0, 1]], 0.5), ("y_pred", "()")),
        (metrics.SparseCategoricalAccuracy, ([1, 0, 1], [[0.1, 0.9]] * 2), ("y_true", "(3,)")),
        (metrics.SparseCategoricalAccuracy, ([1], object()), ("y_pred", "object")),
        (metrics.Accuracy, ([1, 2], [1, 2, 3]), ("y_true", "(2,)")),
        (metrics.MeanSquaredError, ([[1.0, 2.0]], [[1.0, 2.0, 3.0]]), ("y_true", "(1, 2)")),
        (metrics.Mean, (["x"],), ("values", "'x'")),
        (metrics.Mean, (torch.tensor([1j]),), ("values", "complex")),
    ],
)
def test_metric_updates_refuse_bad_values(metric, args: tuple, fragments: tuple) -> None:
    instance = metric()
    clear_error(lambda: instance.update_state(*args), *fragments, state=[lambda: [v.clone() for v in instance.variables]])


def test_metric_update_with_misfit_sample_weight() -> None:
    mean = metrics.Mean()
    clear_error(lambda: mean.update_state(np.ones((4, 3)), sample_weight=np.ones((2, 3))), "sample_weight", "(2, 3)",
                state=[lambda: [v.clone() for v in mean.variables]])
    clear_error(lambda: mean.update_state([1.0, 2.0], sample_weight=["a", "b"]), "sample_weight", "'a'")


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: metrics.AutoAccuracy(name=3), ("name", "3")),
        (lambda: metrics.AutoAccuracy(dtype="int8"), ("dtype", "int8")),
        (lambda: metrics.CategoricalAccuracy(dtype="complex64"), ("dtype", "complex64")),
        (lambda: metrics.SparseCategoricalAccuracy(name=["a"]), ("name", "['a']")),
        (lambda: metrics.AutoAccuracy().update_state([1], "x"), ("y_pred", "'x'")),
        (lambda: metrics.Metric().add_variable((), name="not an identifier"), ("name", "'not an identifier'")),
        (lambda: metrics.Metric().add_variable((), initializer="ones", name="a"), ("initializer", "'ones'")),
    ],
)
def test_other_metric_constructors_and_calls(make, fragments: tuple) -> None:
    clear_error(make, *fragments)


@pytest.mark.parametrize(("cls", "name"), [(metrics.BinaryAccuracy, "binary_accuracy"), (metrics.Mean, "mean"),
                                           (metrics.AutoAccuracy, "auto_accuracy"), (metrics.Accuracy, "accuracy")])
def test_metric_name_none_is_the_snake_case_class_name(cls, name: str) -> None:
    correct(lambda: cls(name=None).name, lambda r: r == name)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0])
def test_binary_accuracy_at_the_ends_of_its_range(threshold: float) -> None:
    y, p = np.array([1, 0, 1, 0]), np.array([0.0, 0.3, 0.7, 1.0])
    expected = np.mean((p > threshold).astype(float) == y)
    correct(lambda: metrics.BinaryAccuracy(threshold=threshold)(y, p), lambda r: float(r) == pytest.approx(expected))


@pytest.mark.parametrize("dtype", [*DTYPES, torch.int32, torch.bool], ids=str)
def test_metrics_in_every_dtype_match_numpy(dtype: torch.dtype) -> None:
    y, p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    correct(lambda: metrics.MeanAbsoluteError()(y.to(dtype), p.to(dtype)), lambda r: float(r) == pytest.approx(0.25))
    correct(lambda: metrics.BinaryAccuracy()(y.to(dtype), p.to(dtype)), lambda r: float(r) == pytest.approx(0.75))


# -- callbacks ------------------------------------------------------------------------------------------

FLAG_ARGUMENTS = [
    (callbacks.ModelCheckpoint, "save_best_only", {"filepath": "w.weights.h5", "save_weights_only": True}),
    (callbacks.ModelCheckpoint, "save_weights_only", {"filepath": "w.keras"}),
    (callbacks.EarlyStopping, "restore_best_weights", {}),
    (callbacks.CSVLogger, "append", {"filename": "log.csv"}),
    (callbacks.TerminateOnNaN, "raise_error", {}),
]


@pytest.mark.parametrize(("cls", "name", "base"), FLAG_ARGUMENTS, ids=lambda v: getattr(v, "__name__", str(v))[:20])
def test_callback_flags_must_be_bools(cls, name: str, base: dict) -> None:
    # Issue 11 §3: these were read with bool(), so "False" meant True.
    for value, echo in [(1, "1"), ("False", "'False'"), (None, "None"), ([True], "[True]"),
                        (np.array([True, False]), "array"), (0.0, "0.0")]:
        clear_error(lambda value=value: cls(**base, **{name: value}), name, echo)
    for value in (True, False, np.bool_(True)):
        correct(lambda value=value: cls(**base, **{name: value}),
                lambda callback, value=value: getattr(callback, name) is bool(value))


VERBOSE_OWNERS = [
    lambda v: callbacks.EarlyStopping(verbose=v),
    lambda v: callbacks.ModelCheckpoint("w.keras", verbose=v),
    lambda v: callbacks.ReduceLROnPlateau(verbose=v),
    lambda v: callbacks.LearningRateScheduler(lambda epoch: 0.1, verbose=v),
]


@pytest.mark.parametrize("make", VERBOSE_OWNERS)
def test_callback_verbose_is_a_bool_or_a_level(make) -> None:
    for value, echo in [("1", "'1'"), (3, "3"), (-1, "-1"), (1.0, "1.0"), (None, "None"), ("auto", "'auto'")]:
        clear_error(lambda value=value: make(value), "verbose", echo)
    for value in (True, False, 0, 1, 2, np.int64(1), np.bool_(True)):
        correct(lambda value=value: make(value), lambda callback, value=value: callback.verbose == int(value))


def test_early_stopping_with_a_string_verbose_is_refused_up_front() -> None:
    # Issue 11 §3: EarlyStopping(verbose="1", restore_best_weights=True) crashed at the end of
    # training, and never restored the best weights.
    clear_error(lambda: callbacks.EarlyStopping(verbose="1", restore_best_weights=True), "verbose", "'1'")


@pytest.mark.parametrize("verbose", [True, 1, 2, np.int64(1)])
def test_early_stopping_restores_the_best_weights(verbose: object, capsys: pytest.CaptureFixture) -> None:
    model = trained(optimizers.SGD(0.0))
    best: list = []

    def remember(epoch: int, logs: dict) -> None:
        if epoch == 0:
            best.extend(model.get_weights())
            model.optimizer.learning_rate = 1.0  # from here on every epoch gets worse

    stopper = callbacks.EarlyStopping(monitor="loss", patience=1, verbose=verbose, restore_best_weights=True)
    model.fit(X, Y * 100, epochs=4, verbose=0, callbacks=[callbacks.LambdaCallback(on_epoch_end=remember), stopper])
    correct(lambda: model.get_weights(), lambda ws: all(np.array_equal(a, b) for a, b in zip(ws, best)))
    assert "Restoring model weights" in capsys.readouterr().out


COUNT_ARGUMENTS = [
    (lambda v: callbacks.EarlyStopping(patience=v), "patience"),
    (lambda v: callbacks.EarlyStopping(start_from_epoch=v), "start_from_epoch"),
    (lambda v: callbacks.ReduceLROnPlateau(patience=v), "patience"),
    (lambda v: callbacks.ReduceLROnPlateau(cooldown=v), "cooldown"),
]


@pytest.mark.parametrize(("make", "name"), COUNT_ARGUMENTS)
def test_callback_counts(make, name: str) -> None:
    for value, echo in [(-1, "-1"), (1.5, "1.5"), (True, "True"), ("2", "'2'"), (None, "None"), (float("inf"), "inf"),
                        (np.float64(2.0), "2.0")]:
        clear_error(lambda value=value: make(value), name, echo)


REAL_ARGUMENTS = [
    (lambda v: callbacks.EarlyStopping(min_delta=v), "min_delta"),
    (lambda v: callbacks.EarlyStopping(baseline=v), "baseline"),
    (lambda v: callbacks.ReduceLROnPlateau(min_delta=v), "min_delta"),
    (lambda v: callbacks.ReduceLROnPlateau(min_lr=v), "min_lr"),
    (lambda v: callbacks.ReduceLROnPlateau(factor=v), "factor"),
    (lambda v: callbacks.ModelCheckpoint("w.keras", initial_value_threshold=v), "initial_value_threshold"),
]


@pytest.mark.parametrize(("make", "name"), REAL_ARGUMENTS)
def test_callback_numbers(make, name: str) -> None:
    for value, echo in BAD_REALS[:7]:
        clear_error(lambda value=value: make(value), name, echo)


@pytest.mark.parametrize(
    ("filepath", "fragments"),
    [
        ("ckpt-{}.keras", ("filepath", "{}")),
        ("ckpt-{0}.keras", ("filepath", "{0}")),
        ("ckpt-{epoch.real}.keras", ("filepath", "{epoch.real}")),
        ("ckpt-{loss[0]}.keras", ("filepath", "{loss[0]}")),
        ("ckpt-{epoch:zz}.keras", ("filepath", "{epoch:zz}")),
        ("ckpt-{loss:d}.keras", ("filepath", "{loss:d}")),
        ("ckpt-{loss!x}.keras", ("filepath", "ckpt-{loss!x}")),
        ("ckpt-{epoch.keras", ("filepath", "ckpt-{epoch")),
        ("ckpt-epoch}.keras", ("filepath", "ckpt-epoch}")),
        ("ckpt-{loss:{width}}.keras", ("filepath", "{loss:{width}}")),
        (3, ("filepath", "3")),
        (None, ("filepath", "None")),
        (["w.keras"], ("filepath", "['w.keras']")),
    ],
)
def test_model_checkpoint_templates_are_checked_at_construction(filepath: object, fragments: tuple) -> None:
    # Issue 11 §4: a bad template failed only at the first save, with a KeyError or IndexError.
    clear_error(lambda: callbacks.ModelCheckpoint(filepath), *fragments)


def test_model_checkpoint_fields_the_model_does_not_log_are_refused_before_training(tmp_path) -> None:
    model = trained()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "w-{nope:.2f}.keras"))
    clear_error(lambda: model.fit(X, Y, verbose=0, callbacks=[checkpoint]), "filepath", "nope",
                state=[model, model.optimizer, str(tmp_path)])
    ok = callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch:02d}-{loss:.3f}-{val_loss:.3f}.weights.h5"),
                                   save_weights_only=True)
    correct(lambda: model.fit(X, Y, verbose=0, validation_data=(X, Y), callbacks=[ok]),
            lambda h: len(os.listdir(tmp_path)) == 1)


@pytest.mark.parametrize(
    ("entries", "echo"),
    [([3], "3"), (["early_stopping"], "'early_stopping'"), ([callbacks.EarlyStopping], "EarlyStopping"),
     ([object()], "object"), ([callbacks.History(), None], "None"), ("history", "'history'")],
)
def test_callback_lists_refuse_non_callbacks_before_anything_runs(entries: object, echo: str,
                                                                 shared: Sequential) -> None:
    model = shared
    clear_error(lambda: model.fit(X, Y, verbose=0, callbacks=entries), "callbacks", echo, state=[model, model.optimizer])
    clear_error(lambda: model.evaluate(X, Y, verbose=0, callbacks=entries), "callbacks", echo, state=[model])
    clear_error(lambda: model.predict(X, verbose=0, callbacks=entries), "callbacks", echo, state=[model])


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: callbacks.LearningRateScheduler(0.1), ("schedule", "0.1")),
        (lambda: callbacks.LambdaCallback(on_epoch_end=3), ("on_epoch_end", "3")),
        (lambda: callbacks.LambdaCallback(on_nothing=print), ("on_nothing",)),
        (lambda: callbacks.CSVLogger(3), ("filename", "3")),
        (lambda: callbacks.CSVLogger("log.csv", separator=""), ("separator", "''")),
        (lambda: callbacks.CSVLogger("log.csv", separator=1), ("separator", "1")),
        (lambda: callbacks.EarlyStopping(monitor=3), ("monitor", "3")),
        (lambda: callbacks.EarlyStopping(mode=None), ("mode", "None")),
        (lambda: callbacks.ModelCheckpoint("w.keras", save_freq=-3), ("save_freq", "-3")),
        (lambda: callbacks.ModelCheckpoint("w.keras", save_freq=2.5), ("save_freq", "2.5")),
    ],
)
def test_other_callback_arguments(make, fragments: tuple) -> None:
    clear_error(make, *fragments)


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: callbacks.CallbackList([callbacks.History, 3]), ("callbacks", "History")),
        (lambda: callbacks.CallbackList(add_progbar=True, verbose="loud"), ("verbose", "'loud'")),
        (lambda: callbacks.CallbackList(add_progbar=True, verbose=np.float32(1)), ("verbose", "1.0")),
        (lambda: callbacks.ProgbarLogger().set_params({"verbose": 7}), ("verbose", "7")),
        (lambda: callbacks.MonitorCallback(monitor=["loss"]), ("monitor", "['loss']")),
        (lambda: callbacks.MonitorCallback(mode="up"), ("mode", "'up'")),
        (lambda: callbacks.MonitorCallback(min_delta=HUGE), ("min_delta", "1000")),
        (lambda: callbacks.MonitorCallback(baseline=float("nan")), ("baseline", "nan")),
        (lambda: callbacks.ModelCheckpoint(b"w-{nope:q}.keras"), ("filepath", "{nope:q}")),
    ],
)
def test_other_callback_constructors(make, fragments: tuple) -> None:
    clear_error(make, *fragments)


@pytest.mark.parametrize(("returned", "echo"), [(float("nan"), "nan"), (-0.5, "-0.5"), (float("inf"), "inf"),
                                                 ("0.1", "'0.1'"), (None, "None"), (1, "1")])
def test_learning_rate_scheduler_refuses_bad_rates_before_touching_the_optimizer(returned: object, echo: str) -> None:
    model = trained()
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: returned)
    clear_error(lambda: model.fit(X, Y, verbose=0, callbacks=[scheduler]), "schedule", echo,
                state=[model.optimizer, *model.parameters()])


# --------------------------------------------------------------------------- fit/evaluate/predict arguments

FIT_CASES = [
    ({"epochs": -1}, ("epochs", "-1")), ({"epochs": 1.5}, ("epochs", "1.5")), ({"epochs": True}, ("epochs", "True")),
    ({"epochs": "2"}, ("epochs", "'2'")), ({"epochs": None}, ("epochs", "None")),
    ({"batch_size": 0}, ("batch_size", "0")), ({"batch_size": -4}, ("batch_size", "-4")),
    ({"batch_size": 2.0}, ("batch_size", "2.0")), ({"batch_size": True}, ("batch_size", "True")),
    ({"batch_size": "4"}, ("batch_size", "'4'")),
    ({"initial_epoch": -1}, ("initial_epoch", "-1")), ({"initial_epoch": 0.5}, ("initial_epoch", "0.5")),
    ({"validation_freq": 0}, ("validation_freq", "0")), ({"validation_freq": [1, 2]}, ("validation_freq", "[1, 2]")),
    ({"steps_per_epoch": -1}, ("steps_per_epoch", "-1")), ({"steps_per_epoch": 1.0}, ("steps_per_epoch", "1.0")),
    ({"validation_steps": 0}, ("validation_steps", "0")),
    ({"validation_batch_size": 0}, ("validation_batch_size", "0")),
    ({"verbose": 3}, ("verbose", "3")), ({"verbose": "1"}, ("verbose", "'1'")), ({"verbose": None}, ("verbose", "None")),
    ({"verbose": -1}, ("verbose", "-1")), ({"verbose": 1.0}, ("verbose", "1.0")),
    ({"shuffle": "no"}, ("shuffle", "'no'")), ({"shuffle": 1}, ("shuffle", "1")), ({"shuffle": None}, ("shuffle", "None")),
    ({"shuffle": "batch"}, ("shuffle", "'batch'")),
    ({"validation_split": 1.0}, ("validation_split", "1.0")), ({"validation_split": -0.1}, ("validation_split", "-0.1")),
    ({"validation_split": float("nan")}, ("validation_split", "nan")), ({"validation_split": "0.2"}, ("validation_split",)),
    ({"validation_split": 0.99}, ("validation_split", "0.99")),
    ({"validation_data": (X,)}, ("validation_data", "length 1")),
    ({"validation_data": (X, Y, None, None)}, ("validation_data", "length 4")),
    ({"validation_data": (X, Y[:3])}, ("samples",)),
    ({"validation_data": (X, np.array(["a"] * 8))}, ("validation_data", "'a'")),
    ({"validation_data": "abc"}, ("validation_data", "'abc'")),
    ({"validation_data": 5}, ("validation_data", "5")),
    ({"validation_data": (X, None)}, ("validation_data", "None")),
    ({"validation_data": {"x": X}}, ("validation_data",)),
    ({"sample_weight": np.array([1.0, np.nan] * 4)}, ("sample_weight", "nan")),
    ({"sample_weight": np.array([1.0, -1.0] * 4)}, ("sample_weight", "-1.0")),
    ({"sample_weight": np.array([1.0, np.inf] * 4)}, ("sample_weight", "inf")),
    ({"sample_weight": np.array(["a"] * 8)}, ("sample_weight", "'a'")),
    ({"sample_weight": np.ones(3)}, ("sample_weight", "[3]")),
    ({"sample_weight": np.float32(1.0)}, ("sample_weight", "0-d")),
    ({"sample_weight": np.ones((8, 5))}, ("sample_weight", "(8, 5)")),
    ({"sample_weight": [object()] * 8}, ("sample_weight", "object")),
    ({"sample_weight": torch.ones(8, dtype=torch.complex64)}, ("sample_weight", "complex")),
    ({"class_weight": {0: 1.0}}, ("class_weight",)),
    ({"callbacks": [42]}, ("callbacks", "42")),
]


@pytest.mark.parametrize(("kwargs", "fragments"), FIT_CASES, ids=lambda v: repr(v)[:40])
def test_fit_arguments_are_checked_before_anything_changes(kwargs: dict, fragments: tuple, shared: Sequential) -> None:
    model = shared
    clear_error(lambda: model.fit(X, Y, **kwargs), *fragments, state=[model, model.optimizer])


DATA_CASES = [
    (None, Y, ("x", "None")),
    ("abc", Y, ("x", "'abc'")),
    (np.array(["a"] * 8), Y, ("x", "'a'")),
    (np.array([object()] * 8), Y, ("x", "object")),
    ([[1.0], [1.0, 2.0]], Y, ("x",)),
    (np.float32(1.0), Y, ("x", "0-d")),
    (torch.ones(8, 3, device="meta"), Y, ("x", "meta")),
    (torch.ones(8, 3, dtype=torch.complex64), Y, ("x", "complex")),
    (X, None, ("y", "None")),
    (X, "abc", ("y", "'abc'")),
    (X, np.array([["a", "b"]] * 8), ("y", "'a'")),
    (X, np.array([object()] * 8), ("y", "object")),
    (X, Y[:3], ("samples", "[3]")),
    (X[:5], Y, ("samples", "[5]")),
    (X, np.ones((8, 3)), ("y_true", "(8, 3)")),
    (X, np.ones((8, 2, 2)), ("y_true", "(8, 2, 2)")),
    (X, np.ones((8, 2), dtype=np.complex64), ("y", "complex")),
    (X, torch.ones(8, 2, device="meta"), ("y", "meta")),
    (X, {"nope": Y}, ("y", "missing")),
    (X, [Y, Y], ("y", "2 targets")),
    ({"x": X}, Y, ()),
]


@pytest.mark.parametrize(("x", "y", "fragments"), DATA_CASES, ids=lambda v: repr(v)[:30])
@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_bad_data_gives_a_clear_error_and_changes_nothing(method: str, x: object, y: object, fragments: tuple,
                                                         shared: Sequential) -> None:
    model = shared
    kwargs = {"verbose": 0} if method in ("fit", "evaluate") else {}
    error = clear_error(lambda: getattr(model, method)(x, y, **kwargs), *fragments, state=[model, model.optimizer])
    assert "Traceback" not in str(error)


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda m: m.evaluate(X, Y, verbose=5), ("verbose", "5")),
        (lambda m: m.evaluate(X, Y, verbose=0, return_dict="yes"), ("return_dict", "'yes'")),
        (lambda m: m.evaluate(X, Y, verbose=0, batch_size=0), ("batch_size", "0")),
        (lambda m: m.evaluate(X, Y, verbose=0, steps=-1), ("steps", "-1")),
        (lambda m: m.evaluate(X, Y, verbose=0, sample_weight=np.full(8, np.nan)), ("sample_weight", "nan")),
        (lambda m: m.predict(X, verbose="2"), ("verbose", "'2'")),
        (lambda m: m.predict(X, verbose=0, batch_size=-1), ("batch_size", "-1")),
        (lambda m: m.predict(X, verbose=0, steps=0), ("steps", "0")),
        (lambda m: m.predict(None, verbose=0), ("x", "None")),
        (lambda m: m.predict("abc", verbose=0), ("x", "'abc'")),
        (lambda m: m.predict(torch.ones(2, 3, device="meta"), verbose=0), ("x", "meta")),
        (lambda m: m.predict_on_batch(np.array(["a", "b"])), ("x", "'a'")),
        (lambda m: m.predict_on_batch(None), ("x", "None")),
        (lambda m: m.train_on_batch(X, Y, return_dict=1), ("return_dict", "1")),
        (lambda m: m.train_on_batch(X, Y, class_weight={-2: 1.0}), ("class_weight", "-2")),
        (lambda m: m.train_on_batch(X, Y, sample_weight=-np.ones(8)), ("sample_weight", "-1.0")),
        (lambda m: m.train_on_batch(empty_loader(), Y), ("x",)),
        (lambda m: m.test_on_batch(X, Y, return_dict=None), ("return_dict", "None")),
        (lambda m: m.test_on_batch(X, Y, sample_weight=np.ones(7)), ("samples", "[7]")),
    ],
)
def test_evaluate_predict_and_single_batch_arguments(call, fragments: tuple, shared: Sequential) -> None:
    model = shared
    clear_error(lambda: call(model), *fragments, state=[model, model.optimizer])


def test_labels_out_of_range_in_fit_change_nothing() -> None:
    # Issue 11 §4: a label >= the number of classes failed inside torch (IndexError).
    model = trained(loss="sparse_categorical_crossentropy")
    for labels, echo in ((LABELS + 1, "[2"), (LABELS - 1, "[-1"), (LABELS + 0.5, "0.5")):
        clear_error(lambda labels=labels: model.fit(X, labels, verbose=0), "y_true", echo, state=[model, model.optimizer])


def test_binary_targets_out_of_range_in_fit_change_nothing() -> None:
    torch.manual_seed(0)
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(X, LABELS[:, None], verbose=0)
    clear_error(lambda: model.fit(X, LABELS[:, None] * 2.0, verbose=0), "y_true", "[2.0",
                state=[model, model.optimizer])


def test_a_metric_that_refuses_the_targets_raises_before_the_update() -> None:
    model = trained()
    model.compile(optimizer=model.optimizer, loss="mse", metrics=["sparse_categorical_accuracy"])
    clear_error(lambda: model.fit(X, Y, verbose=0), "y_true", "(8, 2)", state=[model, model.optimizer])


def test_a_fresh_optimizer_is_not_built_by_a_first_batch_the_loss_refuses() -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    clear_error(lambda: model.fit(X, LABELS + 5, verbose=0), "y_true", state=[model, model.optimizer])
    correct(lambda: model.optimizer.built, lambda built: built is False)


@pytest.mark.parametrize("verbose", ["auto", 0, 1, 2, True, False, np.int64(0)])
def test_every_accepted_verbose_trains(verbose: object, capsys: pytest.CaptureFixture) -> None:
    model = trained()
    correct(lambda: model.fit(X, Y, verbose=verbose, epochs=1).history, lambda h: len(h["loss"]) == 1)
    correct(lambda: model.evaluate(X, Y, verbose=verbose), lambda loss: math.isfinite(loss))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool],
                         ids=str)
def test_targets_and_weights_of_any_real_dtype_train(dtype: torch.dtype) -> None:
    model, twin = trained(), trained()
    y = torch.from_numpy((Y > 0).astype(np.float32))
    weights = torch.ones(8)
    ours = model.fit(X, y.to(dtype), sample_weight=weights.to(dtype), shuffle=False, verbose=0).history
    theirs = twin.fit(X, y.to(dtype).to(torch.float32), shuffle=False, verbose=0).history
    correct(lambda: ours, lambda h: h == theirs)


@given(st.integers(1, 10**30))
@settings(max_examples=10, deadline=None)
def test_any_positive_batch_size_trains_in_ceil_n_over_b_steps(batch_size: int) -> None:
    model = trained()
    seen: list = []
    counter = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    correct(lambda: model.fit(X, Y, batch_size=batch_size, verbose=0, callbacks=[counter]),
            lambda h: len(seen) == math.ceil(len(X) / batch_size))


def test_predict_in_bfloat16_gives_float32_arrays() -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, dtype="bfloat16")])
    correct(lambda: model.predict(X, verbose=0), lambda r: r.dtype == np.float32 and r.shape == (8, 2))


def test_python_lists_of_numbers_are_one_array() -> None:
    model, twin = trained(), trained()
    correct(lambda: model.fit(X.tolist(), Y.tolist(), shuffle=False, verbose=0).history,
            lambda h: h == twin.fit(X, Y, shuffle=False, verbose=0).history)


def test_huge_epochs_with_early_stop_and_zero_epochs() -> None:
    model = trained()
    before = snapshot(model)
    correct(lambda: model.fit(X, Y, epochs=0, verbose=0).history, lambda h: h == {})
    stop = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", True))
    correct(lambda: model.fit(X, Y, epochs=10**18, verbose=0, callbacks=[stop]).history, lambda h: len(h["loss"]) == 1)
    assert before != snapshot(model)


def test_a_generator_without_batches_after_the_first_epoch_is_refused() -> None:
    model = trained()
    batches = iter([(X, Y)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clear_error(lambda: model.fit(batches, epochs=2, verbose=0), "x", "epoch 2")


def test_loader_batches_are_checked_as_they_come() -> None:
    model = trained()
    bad = [(X, Y, np.full(8, -1.0))]
    clear_error(lambda: model.fit(bad.__iter__(), verbose=0), "sample_weight", "-1.0", state=[model, model.optimizer])
    strings = [(X, np.array([["a", "b"]] * 8))]
    clear_error(lambda: model.fit(strings.__iter__(), verbose=0), "y", "'a'", state=[model, model.optimizer])
    no_targets = [X]
    clear_error(lambda: model.fit(no_targets.__iter__(), verbose=0), "y", state=[model, model.optimizer])
    clear_error(lambda: model.evaluate(iter(no_targets), verbose=0), "y", state=[model, model.optimizer])


@pytest.mark.parametrize("store", [np.zeros(3), [0, 0, 0], (), "abc", torch.zeros(3), 5, None], ids=repr)
def test_save_own_variables_needs_a_keyed_store(store: Any) -> None:
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = optimizers.Adam()
    optimizer.build([w])
    clear_error(lambda: optimizer.save_own_variables(store), "`store`", state=[optimizer])


@pytest.mark.parametrize("value", [torch.ones(2), np.ones(2), "yes", 1], ids=repr)
def test_callback_list_flags_and_loss_names_refuse_what_has_no_single_truth(value: Any) -> None:
    clear_error(lambda: callbacks.CallbackList(add_history=value), "add_history")
    clear_error(lambda: callbacks.CallbackList(add_progbar=value), "add_progbar")
    if not isinstance(value, str):
        clear_error(lambda: losses.MeanSquaredError(name=value), "`name`")


@pytest.mark.parametrize("logs", ["loss", 5, [("loss", 1.0)], torch.ones(2), object()], ids=repr)
def test_get_monitor_value_needs_a_mapping(logs: Any) -> None:
    stopper = callbacks.EarlyStopping(monitor="loss")
    clear_error(lambda: stopper.get_monitor_value(logs), "`logs`", state=[lambda: vars(stopper)])
    assert correct(lambda: stopper.get_monitor_value({"loss": 0.5}), lambda v: v == 0.5) == 0.5
