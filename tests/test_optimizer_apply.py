"""``Optimizer.apply`` and ``apply_gradients`` as Keras 3 has them, checked against Keras 3 (torch backend).

Keras's custom-loop guides call ``optimizer.apply(grads, model.trainable_weights)``:
the first call builds the optimizer, each call counts one iteration, ``None``
gradients are skipped, and every updated variable's constraint is applied after
the update. The same Dense weights and gradients go through weightwise and
Keras, and the weights must agree to 1e-6.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip

import weightwise
from weightwise import binding, optimizers
from weightwise.optimizers import SGD, Adam, ExponentialDecay, TorchOptimizer

TOL = {"rtol": 1e-6, "atol": 1e-6}
STEPS = 6
OPTIMIZERS = [
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5}),
    ("Adam", {"learning_rate": 0.01}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"learning_rate": 0.05, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"learning_rate": 0.2}),
]
# (our constraint, Keras's, by its class name): applied to the kernel.
CONSTRAINTS = ["MaxNorm", "NonNeg"]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _constraint(module: Any, name: str) -> Any:
    return module.constraints.MaxNorm(max_value=0.6, axis=0) if name == "MaxNorm" else module.constraints.NonNeg()


def _dense_pair(keras: Any, constraint: str) -> tuple[Any, Any]:
    """A weightwise and a Keras Dense(4) on 3 inputs with the same weights, the kernel constrained."""
    ours = weightwise.layers.Dense(4, kernel_constraint=_constraint(weightwise, constraint))
    ours(torch.zeros(1, 3))
    theirs = keras.layers.Dense(4, kernel_constraint=_constraint(keras, constraint))
    theirs.build((None, 3))
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def _grads(steps: int, seed: int = 1) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[(rng.normal(size=(3, 4)) * 2).astype("float32"), rng.normal(size=(4,)).astype("float32")]
            for _ in range(steps)]


def _numpy(weights: list[Any]) -> list[np.ndarray]:
    return [np.array(w.detach().numpy() if isinstance(w, torch.Tensor) else w.numpy()) for w in weights]


@pytest.mark.parametrize("constraint", CONSTRAINTS)
@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[f"{n}-{k}" for n, k in OPTIMIZERS])
def test_apply_and_apply_gradients_follow_keras_with_a_constrained_kernel(
    keras: Any, name: str, kwargs: dict[str, Any], constraint: str
) -> None:
    ours, theirs = _dense_pair(keras, constraint)
    our_opt = getattr(optimizers, name)(**kwargs)
    keras_opt = getattr(keras.optimizers, name)(**kwargs)
    grads = _grads(STEPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the step with a None gradient warns, on both sides
        for step, (g_kernel, g_bias) in enumerate(grads):
            our_grads = [torch.tensor(g_kernel), torch.tensor(g_bias)]
            keras_grads = [torch.tensor(g_kernel), torch.tensor(g_bias)]
            if step == 3:  # the bias gets no gradient: skipped, as Keras skips it
                our_grads[1] = keras_grads[1] = None
            if step % 3 == 0:
                our_opt.apply(our_grads, ours.trainable_weights)
                keras_opt.apply(keras_grads, theirs.trainable_weights)
            elif step % 3 == 1:
                assert our_opt.apply_gradients(zip(our_grads, ours.trainable_weights)) == step + 1
                keras_opt.apply_gradients(zip(keras_grads, theirs.trainable_weights))
            else:
                our_opt.apply(our_grads)  # after the build, the variables may be left out
                keras_opt.apply(keras_grads)
    assert our_opt.iterations == int(keras_opt.iterations.numpy()) == STEPS
    mine, reference = _numpy(ours.trainable_weights), _numpy(theirs.trainable_weights)
    initial = _dense_pair(keras, constraint)[1].get_weights()
    for a, b, w0 in zip(mine, reference, initial):
        assert np.abs(b - w0).max() > 1e-2, "the weights did not move: the comparison would prove nothing"
        np.testing.assert_allclose(a, b, **TOL)
    # The kernel started outside the constraint's set, so the constraint must have acted.
    kernel, start = mine[0], initial[0]
    if constraint == "NonNeg":
        assert (start < 0).any() and (kernel >= 0).all()
    else:
        assert np.sqrt((start**2).sum(axis=0)).max() > 0.6
        assert np.sqrt((kernel**2).sum(axis=0)).max() <= 0.6 + 1e-6
    # The optimizer state is Keras's too.
    saved: dict[str, np.ndarray] = {}
    our_opt.save_own_variables(saved)
    expected: dict[str, np.ndarray] = {}
    keras_opt.save_own_variables(expected)
    assert list(saved) == list(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(saved[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_the_guide_loop_trains_a_model_as_keras_does(keras: Any) -> None:
    """The calls of Keras's "custom training loop in PyTorch" guide, on a small model, against Keras."""
    def build(module: Any) -> Any:
        return module.Sequential([
            module.Input(shape=(5,)),
            module.layers.Dense(6, activation="relu", kernel_constraint=module.constraints.MaxNorm(1.0)),
            module.layers.Dense(3, bias_constraint=module.constraints.NonNeg()),
        ])

    ours, theirs = build(weightwise), build(keras)
    ours.set_weights(theirs.get_weights())
    rng = np.random.default_rng(2)
    batches = [(rng.normal(size=(8, 5)).astype("float32"), rng.integers(0, 3, size=8)) for _ in range(10)]
    loss_fn = torch.nn.CrossEntropyLoss()
    for model, optimizer, grad_of in (
        (ours, weightwise.optimizers.Adam(learning_rate=1e-2), lambda v: v.grad),
        (theirs, keras.optimizers.Adam(learning_rate=1e-2), lambda v: v.value.grad),
    ):
        for x, y in batches:
            logits = model(torch.tensor(x))
            loss = loss_fn(logits, torch.tensor(y))
            model.zero_grad()
            loss.backward()
            trainable_weights = [v for v in model.trainable_weights]
            gradients = [grad_of(v) for v in trainable_weights]
            with torch.no_grad():
                optimizer.apply(gradients, trainable_weights)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, **TOL)
    assert np.sqrt((ours.get_weights()[0] ** 2).sum(axis=0)).max() <= 1.0 + 1e-6


# --------------------------------------------------------------------------------------------
# The contract: building, counting, schedules, gradients untouched, constraints where updated
# --------------------------------------------------------------------------------------------
def test_first_apply_builds_then_counts_and_the_schedule_advances() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = SGD(learning_rate=ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5))
    assert not opt.built
    opt.apply([torch.ones(2)], [w])
    assert opt.built and opt.variables == [w] and opt.iterations == 1
    assert torch.equal(w.detach(), torch.full((2,), 0.5))  # lr 0.5 at step 0
    opt.apply([torch.ones(2)], [w])
    assert opt.iterations == 2 and opt.learning_rate == 0.125
    assert torch.equal(w.detach(), torch.full((2,), 0.25))  # lr 0.25 at step 1
    opt.apply([])  # nothing to apply: not counted, as in Keras
    assert opt.iterations == 2


def test_gradients_passed_in_and_the_grad_attributes_are_left_as_they_were() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    own = torch.full((3,), 7.0)
    a.grad = own
    grads = [torch.full((3,), 10.0), torch.full((2,), 10.0)]
    opt = SGD(learning_rate=1.0, clipnorm=1.0, loss_scale_factor=2.0)
    opt.apply(grads, [a, b])
    assert torch.equal(grads[0], torch.full((3,), 10.0)) and torch.equal(grads[1], torch.full((2,), 10.0))
    assert a.grad is own and torch.equal(own, torch.full((3,), 7.0)) and b.grad is None
    # Unscaled (5 each), then clipped to norm 1, as Keras does.
    np.testing.assert_allclose(a.detach().numpy(), -np.full(3, 1 / np.sqrt(3)), rtol=1e-6)


def test_constraints_apply_only_to_variables_that_got_a_gradient() -> None:
    layer = weightwise.layers.Dense(2, kernel_constraint="non_neg", bias_constraint="non_neg")
    layer(torch.zeros(1, 2))
    with torch.no_grad():
        layer.kernel.fill_(-1.0)
        layer.bias.fill_(-1.0)
    opt = SGD(learning_rate=0.1)
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        opt.apply([torch.zeros(2, 2), None], layer.trainable_weights)
    assert torch.equal(layer.kernel.detach(), torch.zeros(2, 2))
    assert torch.equal(layer.bias.detach(), torch.full((2,), -1.0))


def test_constraints_bound_on_plain_torch_modules_are_found() -> None:
    linear = torch.nn.Linear(3, 2)
    binding.bind(linear, "weight", constraint="max_norm")
    with torch.no_grad():
        linear.weight.fill_(5.0)
    Adam(learning_rate=1e-3).apply([torch.ones(2, 3), torch.ones(2)], [linear.weight, linear.bias])
    assert linear.weight.detach().norm(dim=0).max() <= 2.0 + 1e-6  # max_norm: 2, over axis 0 by default
    # A new Parameter put into the bound slot is found too, without any new binding.
    linear.weight = torch.nn.Parameter(torch.full((2, 3), 5.0))
    Adam(learning_rate=1e-3).apply([torch.ones(2, 3)], [linear.weight])
    assert linear.weight.detach().norm(dim=0).max() <= 2.0 + 1e-6


def test_a_wrapped_torch_optimizer_applies_too() -> None:
    linear = torch.nn.Linear(2, 1)
    binding.bind(linear, "bias", constraint="non_neg")
    opt = optimizers.get(torch.optim.SGD(linear.parameters(), lr=1.0))
    assert isinstance(opt, TorchOptimizer)
    before = linear.weight.detach().clone()
    opt.apply([torch.ones(1, 2), torch.full((1,), 100.0)], [linear.weight, linear.bias])
    assert torch.equal(linear.weight.detach(), before - 1) and linear.bias.item() == 0.0 and opt.iterations == 1


def test_state_dict_round_trips_after_apply() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Adam(learning_rate=0.1)
    for _ in range(3):
        opt.apply([w.detach() * 2], [w])
    twin_w = torch.nn.Parameter(w.detach().clone())
    twin = Adam(learning_rate=0.1)
    twin.build([twin_w])
    twin.torch_optimizer.load_state_dict(copy.deepcopy(opt.torch_optimizer.state_dict()))
    store: dict[str, np.ndarray] = {}
    opt.save_own_variables(store)
    twin.load_own_variables(store)
    opt.apply([w.detach() * 2])
    twin.apply([twin_w.detach() * 2])
    assert torch.equal(w, twin_w) and twin.iterations == opt.iterations == 4


# --------------------------------------------------------------------------------------------
# Bad calls: a named error, and nothing changed
# --------------------------------------------------------------------------------------------
def _built() -> tuple[Adam, list[torch.nn.Parameter]]:
    params = [torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(3))]
    opt = Adam(learning_rate=0.1)
    opt.apply([torch.ones(2, 2), torch.ones(3)], params)
    return opt, params


BAD_CALLS = [
    (lambda opt, ps: opt.apply([torch.ones(2, 2)], ps), ValueError, "grads"),
    (lambda opt, ps: opt.apply([torch.ones(2, 2), torch.ones(3), torch.ones(1)]), ValueError, "grads"),
    (lambda opt, ps: opt.apply([torch.ones(2, 3), torch.ones(3)], ps), ValueError, "shape"),
    (lambda opt, ps: opt.apply([[1.0, 2.0], torch.ones(3)], ps), TypeError, "grads"),
    (lambda opt, ps: opt.apply([torch.ones(2, 2, dtype=torch.int64), torch.ones(3)], ps), TypeError, "grads"),
    (lambda opt, ps: opt.apply(torch.ones(2), ps), TypeError, "grads"),
    (lambda opt, ps: opt.apply([torch.ones(2, 2), torch.ones(3)], [ps[0], "w"]), TypeError, "trainable_variables"),
    (lambda opt, ps: opt.apply([torch.ones(2, 2), torch.ones(2, 2)], [ps[0], ps[0]]), ValueError, "more than once"),
    (lambda opt, ps: opt.apply([torch.ones(4)], [torch.nn.Parameter(torch.ones(4))]), ValueError, "unknown"),
    (lambda opt, ps: opt.apply([None, None], ps), ValueError, "No gradients"),
    (lambda opt, ps: opt.apply_gradients([(torch.ones(2, 2),)]), TypeError, "grads_and_vars"),
    (lambda opt, ps: opt.apply_gradients(5), TypeError, "grads_and_vars"),
]


@pytest.mark.parametrize("call, error, words", BAD_CALLS, ids=[f"{e.__name__}-{w}-{i}" for i, (_, e, w) in
                                                               enumerate(BAD_CALLS)])
def test_bad_calls_raise_a_named_error_and_change_nothing(call: Any, error: type, words: str) -> None:
    opt, params = _built()
    weights = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.torch_optimizer.state_dict())
    with pytest.raises(error, match=words):
        call(opt, params)
    assert opt.iterations == 1
    assert all(torch.equal(p, w) for p, w in zip(params, weights))
    after = opt.torch_optimizer.state_dict()
    for key, entry in state["state"].items():
        assert all(torch.equal(entry[k], after["state"][key][k]) for k in entry)


def test_a_bad_first_call_does_not_build() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = SGD()
    with pytest.raises(ValueError, match="shape"):
        opt.apply([torch.ones(3)], [w])
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply([None], [w])
    assert not opt.built and opt.iterations == 0 and torch.equal(w.detach(), torch.ones(2))
    with pytest.raises(ValueError, match="not built"):
        opt.apply([torch.ones(2)])
