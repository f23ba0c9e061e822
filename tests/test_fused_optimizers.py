"""The optimizer update written for a compiled step (``_fused_*``) against the eager ``step()``.

The eager ``step()`` of each optimizer is checked against Keras in tests/test_optimizers.py;
here the fused path, run by hand outside a compiler with the same gradients, must follow it
step for step, leave the same torch state behind (so the two can be switched mid-training),
and, compiled in ``train_step``, trace once and never recompile, a schedule included.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import keras_or_skip

import weightwise as keras
from weightwise import compiled_step
from weightwise.optimizers import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    LossScaleOptimizer,
    RMSprop,
    get,
)
from weightwise.optimizers.schedules import ExponentialDecay
from weightwise.variables import Variable

SHAPES = [(3, 4), (4,), (2, 2)]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [Variable(torch.randn(shape, generator=generator), name=name)
            for shape, name in zip(SHAPES, ["kernel", "bias", "gamma"])]


def _gradients(steps: int) -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    # Some gradients near sqrt(epsilon) and below, where the placement of epsilon matters.
    scales = [1.0, 1e-4, 3.0]
    return [[torch.randn(shape, generator=generator) * scale for shape, scale in zip(SHAPES, scales)]
            for _ in range(steps)]


def _eager_step(opt, params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


def _fused_step(opt, params, grads) -> None:
    lr = opt._fused_begin()
    rate = torch.tensor(lr, dtype=torch.float32)
    with torch.no_grad():
        opt._fused_update(params, opt._fused_gradients(params, [g.clone() for g in grads], rate), rate)
    opt._fused_end(lr)


def _schedule():
    return ExponentialDecay(0.05, decay_steps=1, decay_rate=0.7)


CASES = {
    "sgd_momentum_schedule": lambda: SGD(_schedule(), momentum=0.9, nesterov=True, weight_decay=0.1),
    "adam": lambda: Adam(0.05),
    "adam_amsgrad_clip_decay": lambda: Adam(0.05, amsgrad=True, clipnorm=0.5, weight_decay=0.2),
    "adam_schedule_global_clip": lambda: Adam(_schedule(), beta_1=0.8, beta_2=0.9, global_clipnorm=1.0),
    "adam_loss_scale": lambda: Adam(0.05, epsilon=1e-3, loss_scale_factor=8.0),
    "adamw": lambda: AdamW(0.05, weight_decay=0.3),
    "adamw_amsgrad_schedule": lambda: AdamW(_schedule(), weight_decay=0.3, amsgrad=True, clipvalue=0.5),
    "rmsprop": lambda: RMSprop(0.05),
    "rmsprop_momentum_centered_schedule": lambda: RMSprop(_schedule(), rho=0.8, momentum=0.7, centered=True),
    "rmsprop_momentum_decay": lambda: RMSprop(0.05, momentum=0.5, weight_decay=0.1),
    "adagrad": lambda: Adagrad(0.05),
    "adagrad_schedule_clip": lambda: Adagrad(_schedule(), initial_accumulator_value=0.0, clipnorm=1.0),
}


def _state(opt) -> list[torch.Tensor]:
    out = []
    for p in opt._params:
        for key, value in sorted(opt.torch_optimizer.state[p].items()):
            out.append(torch.as_tensor(value, dtype=torch.float32))
    return out


def _compare(make, params_of, steps=5, switch_at=None):
    """``steps`` updates eagerly and by the fused path (eager again from ``switch_at``); params and state."""
    grads = _gradients(steps)
    eager, fused = make(), make()
    eager_params, fused_params = params_of(eager), params_of(fused)
    for i, g in enumerate(grads):
        _eager_step(eager, eager_params, g)
        if switch_at is not None and i >= switch_at:
            _eager_step(fused, fused_params, g)
        else:
            _fused_step(fused, fused_params, g)
        for a, b in zip(eager_params, fused_params):
            torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-6)
    assert fused.iterations == eager.iterations == steps
    state_eager, state_fused = _state(eager), _state(fused)
    assert len(state_eager) == len(state_fused)
    for a, b in zip(state_eager, state_fused):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def _built(factory):
    def make():
        opt = factory()
        opt._test_params = _params()
        opt.build(opt._test_params)
        return opt
    return make


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_update_follows_the_eager_step(name):
    make = _built(CASES[name])
    assert make()._fusion_blocker() is None
    _compare(make, lambda opt: opt._test_params)


@pytest.mark.parametrize("name", ["adam_amsgrad_clip_decay", "rmsprop_momentum_centered_schedule", "adagrad",
                                  "sgd_momentum_schedule"])
def test_switching_from_the_fused_update_to_the_eager_step_continues(name):
    _compare(_built(CASES[name]), lambda opt: opt._test_params, steps=6, switch_at=3)


def test_adamw_leaves_excluded_variables_undecayed():
    def make():
        opt = AdamW(0.05, weight_decay=0.5)
        opt.exclude_from_weight_decay(var_names=["bias"])
        opt._test_params = _params()
        opt.build(opt._test_params)
        return opt
    _compare(make, lambda opt: opt._test_params)


def test_adam_fused_update_with_a_parameter_left_out_keeps_keras_step_count():
    # A step where one parameter has no gradient, then full steps: eager aligns torch's counts
    # to Keras's `iterations`, and so must the fused path.
    grads = _gradients(4)
    eager, fused = _built(CASES["adam"])(), _built(CASES["adam"])()
    for i, g in enumerate(grads):
        keep = slice(0, 2) if i == 1 else slice(0, 3)
        _eager_step(eager, eager._test_params[keep], g[keep])
        for p in eager._test_params:
            p.grad = None
        _fused_step(fused, fused._test_params[keep], g[keep])
    for a, b in zip(eager._test_params, fused._test_params):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-6)
    assert fused._uneven_steps
    for a, b in zip(_state(eager), _state(fused)):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


TORCH_CASES = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum_nesterov_decay": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                              weight_decay=0.01),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1, amsgrad=True),
    "adam_decoupled": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.8, 0.9), eps=1e-6),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.05, initial_accumulator_value=0.2, eps=1e-8,
                                              weight_decay=0.1),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_wrapped_torch_optimizer_fused_update_follows_its_step(name):
    def make():
        params = _params()
        opt = get(TORCH_CASES[name](params))
        opt._test_params = params
        return opt
    assert make()._fusion_blocker() is None
    _compare(make, lambda opt: opt._test_params)


@pytest.mark.parametrize("factory, expected", [
    (lambda ps: torch.optim.RMSprop(ps), "RMSprop"),
    (lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True), "maximize"),
    (lambda ps: torch.optim.Adam(ps, differentiable=True), "differentiable"),
    (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5), "dampening"),
    (lambda ps: torch.optim.Adagrad(ps, lr_decay=0.1), "lr_decay"),
    (lambda ps: torch.optim.SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.5}], lr=0.1), "parameter groups"),
])
def test_wrapped_torch_optimizer_blockers_name_the_reason(factory, expected):
    assert expected in get(factory(_params()))._fusion_blocker()


def test_wrapped_torch_optimizer_settings_changed_after_compiling_are_not_ignored():
    params = _params()
    opt = get(torch.optim.SGD(params, lr=0.1, momentum=0.9))
    _fused_step(opt, params, _gradients(1)[0])
    opt.torch_optimizer.param_groups[0]["lr"] = 0.05  # the rate may change: it is a tensor in the update
    assert opt._fusion_blocker() is None
    opt.torch_optimizer.param_groups[0]["momentum"] = 0.8  # as a scheduler cycling momentum does
    assert "momentum from 0.9 to 0.8" in opt._fusion_blocker()
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="momentum from 0.9 to 0.8"):
        _fused_step(opt, params, _gradients(1)[0])
    assert all(torch.equal(a, b) for a, b in zip(before, params)) and opt.iterations == 1


def test_loss_scale_optimizer_reports_a_blocker():
    opt = LossScaleOptimizer(Adam())
    opt.build(_params())
    blocker = opt._fusion_blocker()
    assert "LossScaleOptimizer" in blocker and "finite" in blocker


# -- compiled, one tiny model per optimizer -------------------------------------------------------
def _tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(1)])


COMPILED = {
    "adam": lambda: Adam(_schedule(), amsgrad=True),
    "adamw": lambda: AdamW(0.05, weight_decay=0.2),
    "rmsprop": lambda: RMSprop(_schedule(), momentum=0.5, centered=True),
    "adagrad": lambda: Adagrad(0.05),
    "torch_adam": lambda: "torch_adam",
}


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_compiled_train_step_matches_eager_without_recompiling(name):
    counters = torch._dynamo.utils.counters
    torch._dynamo.reset()
    counters.clear()
    compiled_model, eager_model = _tiny_model(0), _tiny_model(0)
    if name == "torch_adam":
        compiled_opt = torch.optim.Adam(compiled_model.parameters(), lr=0.05)
        eager_opt = torch.optim.Adam(eager_model.parameters(), lr=0.05)
    else:
        compiled_opt, eager_opt = COMPILED[name](), COMPILED[name]()
    compiled = compiled_step.train_step(compiled_model, "mse", compiled_opt, threads=1)
    eager = compiled_step.train_step(eager_model, "mse", eager_opt, jit_compile=False)
    generator = torch.Generator().manual_seed(2)
    graphs = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(10):
            x, y = torch.randn(8, 3, generator=generator), torch.randn(8, 1, generator=generator)
            if name == "torch_adam":  # a rate changed by hand every step, as a torch scheduler does
                for opt in (compiled_opt, eager_opt):
                    opt.param_groups[0]["lr"] = 0.05 * 0.8**i
            loss_c, loss_e = compiled(x, y), eager(x, y)
            torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-5)
            if i == 0:
                graphs = counters["stats"]["unique_graphs"]
            assert counters["stats"]["unique_graphs"] == graphs, f"recompiled at step {i}"
    assert not [w for w in caught if "runs eagerly" in str(w.message)]  # no fallback to the eager step
    assert graphs >= 1 and not counters["graph_break"]
    for a, b in zip(eager_model.parameters(), compiled_model.parameters()):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-5)


KERAS_CASES = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    "Adam": {"amsgrad": True, "beta_2": 0.9, "clipnorm": 0.5},
    "AdamW": {"weight_decay": 0.3},
    "RMSprop": {"momentum": 0.7, "centered": True, "rho": 0.8},
    "Adagrad": {"initial_accumulator_value": 0.05},
}


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_fused_update_follows_keras_under_a_schedule(name):
    keras_ref = keras_or_skip()
    kwargs = KERAS_CASES[name]
    theirs = getattr(keras_ref.optimizers, name)(
        learning_rate=keras_ref.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.7), **kwargs)
    ours = _built(lambda: getattr(keras.optimizers, name)(learning_rate=_schedule(), **kwargs))()
    variables = [keras_ref.Variable(p.detach().numpy().copy()) for p in ours._test_params]
    for grads in _gradients(6):
        _fused_step(ours, ours._test_params, grads)
        theirs.apply([g.clone() for g in grads], variables)
    for p, v in zip(ours._test_params, variables):
        np.testing.assert_allclose(p.detach().numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
