"""The fast engine equals the one-weight-at-a-time path: penalties, their gradients, projections."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from weightwise import binding, constraints, engine, layers, regularizers

RNG = np.random.default_rng(11)


def tiny_penalty(x: torch.Tensor) -> torch.Tensor:
    return 1e-3 * (x**4).sum()


def center(w: torch.Tensor) -> torch.Tensor:
    return w - w.mean()


def mixed_model() -> torch.nn.Module:
    """Same-shape weights (batched), odd shapes, every built-in rule, and custom ones."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(6, 6) for _ in range(4)], torch.nn.Conv2d(2, 3, 3),
                                torch.nn.Linear(5, 2))
    rules = [
        (model[0], "weight", regularizers.L2(1e-2), constraints.MaxNorm(0.5, axis=1)),
        (model[1], "weight", regularizers.L2(1e-2), constraints.MaxNorm(0.5, axis=1)),
        (model[2], "weight", regularizers.L1L2(1e-3, 2e-2), constraints.UnitNorm(axis=0)),
        (model[3], "weight", regularizers.L1(5e-3), constraints.MinMaxNorm(0.2, 0.6, rate=0.7, axis=[0, 1])),
        (model[0], "bias", regularizers.L1(5e-3), constraints.NonNeg()),
        (model[1], "bias", tiny_penalty, constraints.NonNeg()),
        (model[4], "weight", regularizers.L2(3e-2), constraints.MaxNorm(0.4, axis=[1, 2, 3])),
        (model[5], "weight", regularizers.OrthogonalRegularizer(0.1), center),
    ]
    rng = np.random.default_rng(11)  # every call builds the very same model
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape))).float() * 2)
    for owner, attr, reg, con in rules:
        binding.bind(owner, attr, regularizer=reg, constraint=con)
    return model


def naive_penalty(model: torch.nn.Module) -> torch.Tensor:
    return binding._sum(binding.penalties(model))


def test_penalty_value_and_differentiable_penalty_equal_the_naive_sum() -> None:
    model = mixed_model()
    plan = engine.plan_for(model)
    expected = naive_penalty(model).item()
    assert (plan.grouped_penalty_value() + plan.autograd_penalty()).item() == pytest.approx(expected, rel=1e-6)
    assert plan.differentiable_penalty().item() == pytest.approx(expected, rel=1e-6)
    assert binding.regularization_loss(model).item() == pytest.approx(expected, rel=1e-6)


def test_analytic_gradients_equal_autograd_of_the_naive_penalty() -> None:
    model = mixed_model()
    naive_penalty(model).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    plan = engine.plan_for(model)
    plan.autograd_penalty().backward()
    plan.add_penalty_gradients()
    got = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7, msg=name)
    model.zero_grad(set_to_none=True)
    plan.differentiable_penalty().backward()
    for name, p in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-6, atol=1e-7, msg=name)


def test_batched_projections_equal_one_at_a_time() -> None:
    fast, naive = mixed_model(), mixed_model()
    engine.plan_for(fast).project()
    with torch.no_grad():
        for entry in binding.bound(naive):
            if entry.rule.constraint is not None:
                entry.param.copy_(entry.rule.constraint(entry.param))
    for (name, a), (_, b) in zip(fast.named_parameters(), naive.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
        assert not torch.signbit(a[a == 0]).any(), name  # NonNeg's +0.0 survives the foreach path
    plan = engine.plan_for(fast)
    assert sum(len(group) for _, group in plan.projections.values()) == 7  # everything but the custom one


def test_projection_respects_only_with_grad_and_among() -> None:
    model = mixed_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model[0].weight.grad = torch.zeros_like(model[0].weight)
    engine.plan_for(model).project(only_with_grad=True)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"0.weight"}
    engine.plan_for(model).project(among={id(model[1].weight)})
    assert not torch.equal(model[1].weight, before["1.weight"])
    assert torch.equal(model[2].weight, before["2.weight"])


def test_plan_follows_binding_changes_parameter_swaps_and_trainability() -> None:
    model = mixed_model()
    first = engine.plan_for(model)
    assert engine.plan_for(model) is first  # cached
    binding.bind(model[5], "bias", regularizer=regularizers.L2(1.0))
    second = engine.plan_for(model)
    assert second is not first and any(s.param is model[5].bias for s in second.l2[1.0])
    model[5].bias = torch.nn.Parameter(torch.ones(2))
    third = engine.plan_for(model)
    assert third is not second and any(s.param is model[5].bias for s in third.l2[1.0])
    model[5].bias.requires_grad_(False)  # non-trainable weights carry no penalty, in both paths
    total = (third.grouped_penalty_value() + third.autograd_penalty()).item()
    assert total == pytest.approx(naive_penalty(model).item(), rel=1e-6)


def test_deepcopy_plans_follow_the_copy() -> None:
    model = mixed_model()
    engine.plan_for(model)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone[0].weight.mul_(10)
    engine.plan_for(clone).project()
    assert (clone[0].weight.norm(dim=1) <= 0.5 + 1e-6).all()
    assert not (model[0].weight.norm(dim=1) <= 0.5 + 1e-6).all()


def test_fit_fast_path_equals_a_naive_training_step() -> None:
    import weightwise

    def build():
        torch.manual_seed(3)
        model = weightwise.Sequential([layers.Input(shape=(6,))] + [
            layers.Dense(6, activation="tanh", kernel_regularizer=regularizers.L2(1e-2),
                         bias_regularizer=regularizers.L1(1e-2), kernel_constraint=constraints.MaxNorm(0.9),
                         activity_regularizer=regularizers.L1(1e-3)) for _ in range(3)
        ] + [layers.Dense(1, kernel_regularizer=tiny_penalty, bias_constraint=constraints.NonNeg())])
        model.compile(optimizer=weightwise.optimizers.SGD(0.1, momentum=0.5), loss="mse")
        return model

    x = torch.from_numpy(RNG.normal(size=(32, 6)).astype(np.float32))
    y = torch.from_numpy(RNG.normal(size=(32, 1)).astype(np.float32))
    fast = build()
    history = fast.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    naive = build()
    opt = torch.optim.SGD(naive.parameters(), lr=0.1, momentum=0.5)
    losses = []
    for start in range(0, 32, 8):
        opt.zero_grad()
        out = naive(x[start:start + 8], training=True)
        loss = torch.nn.functional.mse_loss(out, y[start:start + 8]) + sum(naive.losses)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for entry in binding.bound(naive):
                if entry.rule.constraint is not None:
                    entry.param.copy_(entry.rule.constraint(entry.param))
        losses.append(loss.item())
    assert history.history["loss"][0] == pytest.approx(float(np.mean(losses)), rel=1e-5)
    for a, b in zip(fast.get_weights(), naive.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_grouped_activity_penalties_equal_the_per_output_ones() -> None:
    import weightwise

    model = weightwise.Sequential([layers.Input(shape=(5,))] + [
        layers.Dense(5, activation="relu", activity_regularizer=reg)
        for reg in (regularizers.L1(1e-2), regularizers.L2(1e-2), regularizers.L1L2(1e-3, 1e-2), tiny_penalty,
                    regularizers.L1(1e-2))
    ])
    x = torch.from_numpy(RNG.normal(size=(7, 5)).astype(np.float32))
    model(x)
    naive = binding._sum(binding.call_losses(model))
    grouped = engine.call_loss(model)
    assert grouped.item() == pytest.approx(naive.item(), rel=1e-6)
    grads_naive = torch.autograd.grad(naive, list(model.parameters()), retain_graph=True)
    grads_grouped = torch.autograd.grad(grouped, list(model.parameters()))
    for a, b in zip(grads_grouped, grads_naive):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_jit_compile_trains_like_eager_without_recompiling() -> None:
    import torch._dynamo as dynamo

    import weightwise

    def build(jit: bool):
        torch.manual_seed(5)
        model = weightwise.Sequential([layers.Input(shape=(4,))] + [
            layers.Dense(4, activation="relu", kernel_regularizer=regularizers.L2(1e-2),
                         activity_regularizer=regularizers.L1(1e-3), kernel_constraint=constraints.MaxNorm(0.8))
            for _ in range(2)] + [layers.Dense(1)])
        model.compile(optimizer=weightwise.optimizers.SGD(0.1), loss="mse", jit_compile=jit)
        return model

    x = torch.from_numpy(RNG.normal(size=(48, 4)).astype(np.float32))
    y = torch.from_numpy(RNG.normal(size=(48, 1)).astype(np.float32))
    eager, jitted = build(False), build(True)
    dynamo.reset()
    dynamo.utils.counters.clear()
    eager_history = eager.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    # The first steps run eagerly (one to settle, and with threads="auto" six to time): compiled by epoch 2.
    jit_history = jitted.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    compiled_after_one_epoch = dynamo.utils.counters["stats"]["unique_graphs"]
    jit_history2 = jitted.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert dynamo.utils.counters["stats"]["unique_graphs"] == compiled_after_one_epoch  # no recompiles
    losses = jit_history.history["loss"] + jit_history2.history["loss"]
    np.testing.assert_allclose(losses, eager_history.history["loss"], rtol=1e-5)
    for a, b in zip(jitted.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert set(jitted.state_dict()) == set(eager.state_dict())
    with pytest.raises(ValueError, match="jit_compile"):
        eager.compile(optimizer="sgd", loss="mse", jit_compile="xla")
