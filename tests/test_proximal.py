"""Proximal L1 and group lasso: formulas against NumPy, exact zeros in every training path, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import run_class_serialization_test

import weightwise as ww
from weightwise import (
    binding,
    clock,
    layers,
    models,
    optimizers,
    regularizers,
    schedules,
)
from weightwise.regularizers import GroupLasso, ProximalL1

RNG = np.random.default_rng(14)


# -- NumPy references -----------------------------------------------------------------------------
def np_soft_threshold(w: np.ndarray, t: float) -> np.ndarray:
    return np.sign(w) * np.maximum(np.abs(w) - t, 0.0)


def np_axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return (axis % ndim,) if isinstance(axis, int) else tuple(a % ndim for a in axis)


def np_group_norms(w: np.ndarray, axis) -> tuple[np.ndarray, int]:
    """Norm of each group (kept as broadcastable dims) and the group size."""
    axes = np_axes(axis, w.ndim)
    size = int(np.prod([w.shape[a] for a in axes])) if axes else 1
    return np.sqrt(np.sum(np.abs(w) ** 2, axis=axes, keepdims=True)), size


def np_group_lasso(w: np.ndarray, factor: float, axis) -> float:
    norms, size = np_group_norms(w, axis)
    return factor * math.sqrt(size) * norms.sum()


def np_group_prox(w: np.ndarray, t_unit: float, axis) -> np.ndarray:
    norms, size = np_group_norms(w, axis)
    t = t_unit * math.sqrt(size)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norms > t, 1.0 - t / norms, 0.0)
    return w * scale


def np_group_gradient(w: np.ndarray, factor: float, axis) -> np.ndarray:
    norms, size = np_group_norms(w, axis)
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(norms > 0, factor * math.sqrt(size) * w / safe, 0.0)


# -- formulas ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7,), (4, 5), (3, 3, 2, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_proximal_l1_value_and_step_match_numpy(shape, dtype) -> None:
    w = RNG.normal(size=shape).astype(dtype)
    reg = ProximalL1(0.3)
    tensor = torch.tensor(w, requires_grad=True)
    value = reg(tensor)
    assert value.grad_fn is None and not value.requires_grad  # its gradient is the proximal step, not autograd's
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value.item(), 0.3 * np.abs(w.astype(np.float64)).sum(), rtol=rtol)
    stepped = reg.prox(tensor.detach(), lr=1.5)
    assert stepped.dtype == tensor.dtype
    np.testing.assert_allclose(stepped.numpy(), np_soft_threshold(w, 1.5 * 0.3), rtol=rtol, atol=1e-7)
    zeros = np.abs(w) <= 0.45
    assert zeros.any() and (stepped.numpy()[zeros] == 0.0).all()
    assert not torch.signbit(stepped[torch.from_numpy(zeros)]).any()  # +0.0, never -0.0


AXES = [(0, (5, 3)), (1, (5, 3)), (-1, (5, 3)), (None, (4, 3)), ([], (4, 3)), ([0, 1, 2], (3, 3, 2, 4)),
        ([0, 2], (3, 4, 5)), (3, (3, 3, 2, 4))]


@pytest.mark.parametrize("axis,shape", AXES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_lasso_value_and_step_match_numpy(axis, shape, dtype) -> None:
    w = RNG.normal(size=shape).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for proximal in (True, False):
        reg = GroupLasso(0.2, axis=axis, proximal=proximal)
        value = reg(torch.tensor(w, requires_grad=True))
        assert value.requires_grad is (not proximal)
        np.testing.assert_allclose(value.item(), np_group_lasso(w.astype(np.float64), 0.2, axis), rtol=rtol)
    # A rate that zeroes about half of the groups and shrinks the others: the threshold per unit of
    # sqrt(|g|) lies halfway between two neighbouring groups' norms (no group sits on it).
    norms, size = np_group_norms(w.astype(np.float64), axis)
    unit_norms = np.sort(norms.ravel()) / math.sqrt(size)
    middle = len(unit_norms) // 2
    cut = unit_norms[0] / 2 if len(unit_norms) == 1 else (unit_norms[middle - 1] + unit_norms[middle]) / 2
    lr = cut / 0.2
    stepped = GroupLasso(0.2, axis=axis).prox(torch.from_numpy(w), lr=lr).numpy()
    np.testing.assert_allclose(stepped, np_group_prox(w.astype(np.float64), 0.2 * lr, axis), rtol=rtol, atol=1e-7)
    # Whole groups are exactly zero; no entry of the others is.
    zero = np.broadcast_to(norms <= cut * math.sqrt(size), w.shape)
    assert (stepped[zero] == 0.0).all() and (stepped[~zero] != 0.0).all()
    assert zero.any() or len(unit_norms) == 1


def test_group_lasso_defaults_and_the_docstring_kernel() -> None:
    reg = GroupLasso()
    assert reg.get_config() == {"factor": 0.01, "axis": 0, "proximal": True}
    kernel = np.array([[3.0, 0.1], [4.0, 0.0]])  # (input_dim, units): one group per unit
    np.testing.assert_allclose(GroupLasso(0.5)(torch.tensor(kernel)).item(), 0.5 * math.sqrt(2) * 5.1)
    stepped = GroupLasso(0.5).prox(torch.tensor(kernel), lr=0.2).numpy()
    np.testing.assert_allclose(stepped, np_group_prox(kernel, 0.1, 0), rtol=1e-12)
    assert (stepped[:, 1] == 0.0).all() and (stepped[:, 0] != 0.0).all()


def test_zero_groups_stay_zero_and_nan_stays_visible() -> None:
    w = torch.tensor([[0.0, 0.0], [0.0, 3.0], [float("nan"), 1.0]])
    out = GroupLasso(0.1, axis=1).prox(w, lr=1.0)
    assert torch.equal(out[0], torch.zeros(2)) and not torch.isnan(out[:2]).any()
    assert torch.isnan(out[2]).all()
    assert torch.isnan(ProximalL1(0.1).prox(torch.tensor([float("nan")]), lr=1.0)).all()
    # lr * factor = 0 changes nothing.
    w = torch.tensor([0.5, -0.25])
    assert torch.equal(ProximalL1(0.0).prox(w, lr=1.0), w)
    assert torch.equal(GroupLasso(0.5, axis=[]).prox(w, lr=0.0), w)


def test_complex_weights_shrink_in_magnitude_and_keep_their_phase() -> None:
    w = torch.tensor([3 + 4j, 0.1 - 0.1j, -2j], dtype=torch.complex64)
    out = ProximalL1(1.0).prox(w, lr=1.0)
    expected = np.array([3 + 4j, 0, -2j]) * np.maximum(0, 1 - 1.0 / np.maximum(np.abs(w.numpy()), 1e-30))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert out[1] == 0
    np.testing.assert_allclose(ProximalL1(0.5)(w).item(), 0.5 * np.abs(w.numpy()).sum(), rtol=1e-6)


def test_half_precision_steps_in_float32() -> None:
    w = torch.tensor([0.3, -0.01, 2.0], dtype=torch.float16)
    out = ProximalL1(0.1).prox(w, lr=1.0)
    assert out.dtype == torch.float16
    np.testing.assert_allclose(out.float().numpy(), np_soft_threshold(w.float().numpy().astype(np.float64), 0.1),
                               rtol=1e-3)
    assert ProximalL1(0.1)(w).dtype == torch.float32


@pytest.mark.parametrize("axis,shape", AXES)
def test_group_lasso_gradient_equals_numpy_and_is_finite_at_zero_groups(axis, shape) -> None:
    w = RNG.normal(size=shape)
    flat = w.reshape(-1)
    flat[: max(1, flat.size // 3)] = 0.0  # some groups (or entries) entirely zero
    if axis is None:
        w[...] = 0.0
    tensor = torch.tensor(w, requires_grad=True)
    GroupLasso(0.3, axis=axis, proximal=False)(tensor).backward()
    assert torch.isfinite(tensor.grad).all()
    np.testing.assert_allclose(tensor.grad.numpy(), np_group_gradient(w, 0.3, axis), rtol=1e-10, atol=1e-12)


def test_the_engine_step_equals_each_regularizer_own_step() -> None:
    model = torch.nn.ModuleDict({
        "a": torch.nn.Linear(6, 5), "b": torch.nn.Linear(5, 4).double(), "c": torch.nn.Linear(4, 3).half(),
        "d": torch.nn.Conv2d(2, 3, 3),
    })
    model["e"] = torch.nn.Linear(3, 2)
    model["e"].weight = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.complex64))
    rules = {"a.weight": ProximalL1(0.2), "a.bias": ProximalL1(0.2), "b.weight": ProximalL1(0.1),
             "c.weight": ProximalL1(0.3), "d.weight": GroupLasso(0.3), "b.bias": GroupLasso(0.5, axis=None),
             "e.weight": ProximalL1(0.4)}
    handle = ww.regularize(model, rules)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p * 3)
        model["d"].weight[0].mul_(0.01)  # a filter small enough to be zeroed
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    binding.apply_proximal(model, lr=0.5)
    for name, p in model.named_parameters():
        module, attr = name.split(".")
        rule = binding.rule_of(model[module], attr)
        expected = rule.regularizer.prox(before[name], lr=0.5) if rule else before[name]
        assert torch.equal(p.detach(), expected), name
    assert (model["a"].weight == 0).any() and (model["d"].weight.flatten(1).abs().sum(1) == 0).any()
    handle.remove()


# -- exact zeros in training ------------------------------------------------------------------------
N, D, SUPPORT = 200, 20, np.array([2, 7, 11, 16])


def sparse_regression() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    coef = np.zeros(D, np.float32)
    coef[SUPPORT] = [3.0, -2.0, 1.5, 2.5]
    y = (x @ coef + 0.1 * rng.normal(size=N)).astype(np.float32)
    return x, y[:, None]


def fit_dense(regularizer, epochs: int, x, y, lr: float = 0.05) -> tuple[models.Sequential, dict]:
    ww.utils.set_random_seed(0)
    model = models.Sequential([layers.Input((D,)), layers.Dense(1, kernel_regularizer=regularizer)])
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse")
    history = model.fit(x, y, batch_size=N, epochs=epochs, verbose=0)
    return model, history.history


def test_fit_takes_the_ista_step_numpy_takes() -> None:
    x, y = sparse_regression()
    ww.utils.set_random_seed(0)
    model = models.Sequential([layers.Input((D,)), layers.Dense(1, kernel_regularizer=ProximalL1(0.1))])
    kernel = model.layers[-1].kernel.detach().numpy().astype(np.float64).copy()
    bias = model.layers[-1].bias.detach().numpy().astype(np.float64).copy()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    history = model.fit(x, y, batch_size=N, epochs=5, verbose=0).history
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    losses = []
    for _ in range(5):
        residual = x64 @ kernel + bias - y64
        losses.append(np.mean(residual ** 2) + 0.1 * np.abs(kernel).sum())
        kernel = np_soft_threshold(kernel - 0.05 * 2.0 / N * x64.T @ residual, 0.05 * 0.1)
        bias = bias - 0.05 * 2.0 * residual.mean(axis=0)
    np.testing.assert_allclose(model.layers[-1].kernel.detach().numpy(), kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-5)  # the logged loss holds the L1 penalty


def test_fit_recovers_the_support_exactly_where_plain_l1_leaves_no_zero() -> None:
    x, y = sparse_regression()
    model, history = fit_dense(ProximalL1(0.1), 300, x, y)
    kernel = model.layers[-1].kernel.detach().numpy().ravel()
    np.testing.assert_array_equal(np.flatnonzero(kernel), SUPPORT)
    assert (kernel[np.setdiff1d(np.arange(D), SUPPORT)] == 0.0).all()
    np.testing.assert_allclose(kernel[SUPPORT], [3.0, -2.0, 1.5, 2.5], atol=0.1)
    np.testing.assert_allclose(history["regularization_loss"][-1], 0.1 * np.abs(kernel).sum(), rtol=1e-3)
    plain, _ = fit_dense(regularizers.L1(0.1), 300, x, y)
    assert (plain.layers[-1].kernel.detach().numpy() != 0.0).all()


def train_linear(rules, x, y, steps: int, lr: float = 0.05, optimizer_cls=torch.optim.SGD):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D, 1))
    opt = optimizer_cls(model.parameters(), lr=lr)
    handle = ww.regularize(model, rules, optimizer=opt)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xt), yt) + ww.regularization_loss(model)
        loss.backward()
        opt.step()
    return model, handle


def test_a_torch_loop_with_regularize_optimizer_recovers_the_support_exactly() -> None:
    x, y = sparse_regression()
    model, _ = train_linear({"0.weight": ProximalL1(0.1)}, x, y, 300)
    weight = model[0].weight.detach().numpy().ravel()
    np.testing.assert_array_equal(np.flatnonzero(weight), SUPPORT)
    plain, _ = train_linear({"0.weight": regularizers.L1(0.1)}, x, y, 300)
    assert (plain[0].weight.detach() != 0.0).all()


def test_a_handle_removed_stops_the_steps_and_two_handles_step_once() -> None:
    x, y = sparse_regression()
    model, handle = train_linear({"0.weight": ProximalL1(0.1)}, x, y, 1, lr=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = ww.regularize(model, {}, optimizer=opt)  # follows rules bound some other way
    second = ww.regularize(model, {}, optimizer=opt)
    with torch.no_grad():
        model[0].weight.copy_(torch.full((1, D), 1.0))
    model[0].weight.grad = torch.zeros(1, D)
    opt.step()  # two handles on the same model and optimizer: one step, 1.0 - 0.5 * 0.1
    np.testing.assert_allclose(model[0].weight.detach().numpy(), 0.95, rtol=1e-6)
    first.remove()
    opt.step()
    np.testing.assert_allclose(model[0].weight.detach().numpy(), 0.90, rtol=1e-6)
    second.remove()
    opt.step()
    np.testing.assert_allclose(model[0].weight.detach().numpy(), 0.90, rtol=1e-6)
    handle.remove()


def test_a_weight_takes_one_proximal_step_per_update_however_many_paths_ask() -> None:
    linear = torch.nn.Linear(2, 1, bias=False)
    model = torch.nn.Sequential(linear)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ww.regularize(model, {"0.weight": ProximalL1(0.1)}, optimizer=opt)
    ww.regularize(linear, {}, optimizer=opt)  # a module inside the one already followed
    with torch.no_grad():
        linear.weight.fill_(1.0)
    linear.weight.grad = torch.zeros(1, 2)
    opt.step()
    binding.apply_proximal(model, opt)  # the same update: nothing more
    np.testing.assert_allclose(linear.weight.detach().numpy(), 0.9, rtol=1e-6)
    binding.apply_proximal(model, lr=1.0)  # an explicit rate is an explicit step
    np.testing.assert_allclose(linear.weight.detach().numpy(), 0.8, rtol=1e-6)
    opt.step()
    np.testing.assert_allclose(linear.weight.detach().numpy(), 0.7, rtol=1e-6)


def test_fit_with_a_followed_torch_optimizer_steps_once() -> None:
    model = models.Sequential([layers.Input((2,)), layers.Dense(
        1, use_bias=False, kernel_initializer="ones", kernel_regularizer=ProximalL1(0.1))])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ww.regularize(model, {}, optimizer=opt)
    model.compile(optimizer=opt, loss="mse")
    model.fit(np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32), epochs=2, verbose=0)
    np.testing.assert_allclose(model.layers[-1].kernel.detach().numpy(), 0.8, rtol=1e-6)


def test_each_parameter_group_steps_with_its_own_learning_rate() -> None:
    linear = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD([{"params": [linear.weight], "lr": 0.1}, {"params": [linear.bias], "lr": 1.0}])
    ww.regularize(linear, {"weight": ProximalL1(0.5), "bias": ProximalL1(0.5)}, optimizer=opt)
    with torch.no_grad():
        linear.weight.fill_(1.0)
        linear.bias.fill_(1.0)
    linear.weight.grad = torch.zeros(2, 3)
    linear.bias.grad = torch.zeros(2)
    opt.step()
    np.testing.assert_allclose(linear.weight.detach().numpy(), 1.0 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(linear.bias.detach().numpy(), 1.0 - 1.0 * 0.5, rtol=1e-6)
    # A weight without a gradient was not updated, so it is not stepped either.
    linear.bias.grad = None
    opt.step()
    np.testing.assert_allclose(linear.bias.detach().numpy(), 0.5, rtol=1e-6)


def hidden_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    a, b = rng.normal(size=8), rng.normal(size=8)
    y = (np.tanh(x @ a / 3) + 0.5 * np.tanh(x @ b / 3)).astype(np.float32)[:, None]
    return x, y


def r_squared(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1 - np.mean((pred - y) ** 2) / np.var(y))


def test_group_lasso_zeroes_whole_units_of_a_dense_layer_in_fit() -> None:
    x, y = hidden_problem()
    zero_units = {}
    for name, reg in (("group lasso", GroupLasso(0.02)), ("none", None)):
        ww.utils.set_random_seed(0)
        model = models.Sequential([layers.Input((8,)), layers.Dense(16, activation="tanh", kernel_regularizer=reg),
                                   layers.Dense(1)])
        model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
        model.fit(x, y, batch_size=64, epochs=150, verbose=0)
        kernel = model.layers[0].kernel.detach().numpy()  # (in, units): a unit is a column
        zero_units[name] = int(np.all(kernel == 0.0, axis=0).sum())
        assert r_squared(model.predict(x, verbose=0), y) > 0.9
        if reg is not None:
            assert not np.all(kernel == 0.0)
            partly = (kernel == 0.0).any(axis=0) & ~(kernel == 0.0).all(axis=0)
            assert not partly.any()  # a unit is zeroed whole, or not at all
    assert zero_units["group lasso"] >= 8 and zero_units["none"] == 0


def test_group_lasso_zeroes_whole_rows_of_a_torch_linear_in_a_hand_loop() -> None:
    x, y = hidden_problem()
    results = {}
    for name, reg in (("group lasso", GroupLasso(0.02)), ("l2", regularizers.L2(0.001))):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        handle = ww.regularize(model, {"0.weight": reg}, optimizer=opt)
        if name == "group lasso":  # the default axis became torch's per-unit axis: rows of (out, in)
            assert binding.rule_of(model[0], "weight").regularizer.axis == 1
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(150):
            for start in range(0, 256, 64):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xt[start:start + 64]), yt[start:start + 64])
                (loss + ww.regularization_loss(model)).backward()
                opt.step()
        weight = model[0].weight.detach().numpy()
        results[name] = int(np.all(weight == 0.0, axis=1).sum())
        assert r_squared(model(xt).detach().numpy(), y) > 0.9
        handle.remove()
    assert results["group lasso"] >= 8 and results["l2"] == 0


# -- order: update, proximal step, projection ---------------------------------------------------------
def expected_after_one_step() -> np.ndarray:
    # w = [1, 1] - 0.1 * [-1, -1] = [1.1, 1.1]; soft-threshold by 0.1 * 3 -> [0.8, 0.8] (norm 1.13);
    # MaxNorm(1.0) -> 1 / (1e-7 + 1.1314) * [0.8, 0.8]. The reverse order would give [0.407, 0.407].
    w = np_soft_threshold(np.array([1.1, 1.1]), 0.3)
    return w * 1.0 / (1e-7 + np.linalg.norm(w))


def test_fit_steps_then_projects() -> None:
    model = models.Sequential([layers.Input((2,)), layers.Dense(
        1, use_bias=False, kernel_initializer="ones", kernel_regularizer=ProximalL1(3.0),
        kernel_constraint=ww.constraints.MaxNorm(1.0))])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mae")
    # mae gradient: sign(pred - y) * x / batch = -[1, 1] for x = [1, 1], y far above.
    model.fit(np.ones((1, 2), np.float32), np.full((1, 1), 100.0, np.float32), epochs=1, verbose=0)
    np.testing.assert_allclose(model.layers[-1].kernel.detach().numpy().ravel(), expected_after_one_step(), rtol=1e-6)


@pytest.mark.parametrize("call", ["apply", "apply_gradients"])
def test_optimizer_apply_steps_then_projects(call) -> None:
    layer = layers.Dense(1, use_bias=False, kernel_initializer="ones", kernel_regularizer=ProximalL1(3.0),
                         kernel_constraint=ww.constraints.MaxNorm(1.0))
    layer.build((None, 2))
    opt = optimizers.SGD(learning_rate=0.1)
    grad = -torch.ones(2, 1)
    if call == "apply":
        opt.apply([grad], [layer.kernel])
    else:
        opt.apply_gradients([(grad, layer.kernel)])
    np.testing.assert_allclose(layer.kernel.detach().numpy().ravel(), expected_after_one_step(), rtol=1e-6)


@pytest.mark.parametrize("constrain_first", [True, False])
def test_torch_hooks_step_then_project_in_either_registration_order(constrain_first) -> None:
    linear = torch.nn.Linear(2, 1, bias=False)
    opt = torch.optim.SGD(linear.parameters(), lr=0.1)
    steps = [lambda: ww.constrain(linear, {"weight": ww.constraints.MaxNorm(1.0, axis=1)}, optimizer=opt),
             lambda: ww.regularize(linear, {"weight": ProximalL1(3.0)}, optimizer=opt)]
    for attach in steps if constrain_first else steps[::-1]:
        attach()
    with torch.no_grad():
        linear.weight.fill_(1.0)
    linear.weight.grad = -torch.ones(1, 2)
    opt.step()
    np.testing.assert_allclose(linear.weight.detach().numpy().ravel(), expected_after_one_step(), rtol=1e-6)


def test_apply_steps_with_the_learning_rate_of_its_update() -> None:
    schedule = optimizers.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5)
    layer = layers.Dense(3, use_bias=False, kernel_initializer="ones", kernel_regularizer=ProximalL1(0.2))
    layer.build((None, 1))
    opt = optimizers.SGD(learning_rate=schedule)
    zero = torch.zeros(1, 3)
    opt.apply([zero], [layer.kernel])  # lr 0.5: 1 - 0.1
    opt.apply([zero], [layer.kernel])  # lr 0.25: 0.9 - 0.05
    np.testing.assert_allclose(layer.kernel.detach().numpy(), 0.85, rtol=1e-6)


def test_a_keras_model_in_a_torch_loop_is_followed_through_an_empty_rule_set() -> None:
    x, y = sparse_regression()
    ww.utils.set_random_seed(0)
    model = models.Sequential([layers.Input((D,)), layers.Dense(1, kernel_regularizer=ProximalL1(0.1))])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ww.regularize(model, {}, optimizer=opt)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        (torch.nn.functional.mse_loss(model(xt), yt) + sum(model.losses)).backward()
        opt.step()
    np.testing.assert_array_equal(np.flatnonzero(model.layers[-1].kernel.detach().numpy()), SUPPORT)


def test_frozen_and_gradientless_weights_are_left_alone() -> None:
    linear = torch.nn.Linear(2, 2)
    binding.bind(linear, "weight", regularizer=ProximalL1(1.0))
    binding.bind(linear, "bias", regularizer=ProximalL1(1.0))
    with torch.no_grad():
        linear.weight.fill_(0.5)
        linear.bias.fill_(0.5)
    linear.bias.requires_grad_(False)
    binding.apply_proximal(linear, lr=0.1, only_with_grad=True)  # no gradients yet
    assert (linear.weight == 0.5).all()
    binding.apply_proximal(linear, lr=0.1)
    np.testing.assert_allclose(linear.weight.detach().numpy(), 0.4)
    assert (linear.bias == 0.5).all()
    binding.apply_proximal(linear, lr=0.1, among={id(linear.bias)})
    np.testing.assert_allclose(linear.weight.detach().numpy(), 0.4)


def test_a_scheduled_factor_is_read_at_the_step_of_the_update() -> None:
    reg = ProximalL1(lambda step: 0.1 * (step + 1))
    linear = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(linear.parameters(), lr=1.0)
    clock.set_step(0)
    ww.regularize(linear, {"weight": reg}, optimizer=opt)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    for _ in range(3):
        linear.weight.grad = torch.zeros(1, 1)
        opt.step()
    # Steps 0, 1, 2 read 0.1, 0.2, 0.3.
    np.testing.assert_allclose(linear.weight.item(), 1.0 - 0.6, rtol=1e-6)
    with clock.at_step(4):
        np.testing.assert_allclose(reg(linear.weight).item(), 0.5 * 0.4, rtol=1e-6)


# -- where the penalty shows ------------------------------------------------------------------------
def test_the_penalty_shows_in_losses_and_regularization_loss_without_a_gradient() -> None:
    layer = layers.Dense(2, kernel_regularizer=ProximalL1(0.5), bias_regularizer=GroupLasso(0.25),
                         bias_initializer="ones")
    layer.build((None, 3))
    kernel, bias = layer.kernel.detach().numpy(), layer.bias.detach().numpy()
    expected = 0.5 * np.abs(kernel).sum() + 0.25 * math.sqrt(2) * np.linalg.norm(bias)
    losses = layer.losses
    assert len(losses) == 2 and not any(loss.requires_grad for loss in losses)
    np.testing.assert_allclose(sum(loss.item() for loss in losses), expected, rtol=1e-6)
    np.testing.assert_allclose(ww.regularization_loss(layer).item(), expected, rtol=1e-6)


# -- serialization ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reg", [ProximalL1(), ProximalL1(0.3), GroupLasso(), GroupLasso(0.1, axis=[0, 1, 2]),
                                 GroupLasso(0.2, axis=None, proximal=False), GroupLasso(axis=[])])
def test_configs_round_trip(reg) -> None:
    rebuilt = run_class_serialization_test(reg, regularizers)
    assert repr(rebuilt) == repr(reg)


def test_scheduled_factors_round_trip_and_are_read_at_the_fit_step() -> None:
    schedule = schedules.ExponentialDecay(0.4, decay_steps=1, decay_rate=0.5)
    for reg in (ProximalL1(schedule), GroupLasso(schedule, axis=1)):
        rebuilt = run_class_serialization_test(reg, regularizers)
        with clock.at_step(2):
            assert rebuilt(torch.ones(1, 1)).item() == pytest.approx(0.1)
    # fit: update k reads the factor at step k, as its penalty does: 1 - 0.4 - 0.2 - 0.1.
    model = models.Sequential([layers.Input((1,)), layers.Dense(
        1, use_bias=False, kernel_initializer="ones", kernel_regularizer=ProximalL1(schedule))])
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse")
    history = model.fit(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), epochs=3, verbose=0).history
    np.testing.assert_allclose(model.layers[-1].kernel.item(), 0.3, rtol=1e-6)
    np.testing.assert_allclose(history["regularization_loss"], [0.4 * 1.0, 0.2 * 0.6, 0.1 * 0.4], rtol=1e-6)


def test_a_schedule_that_goes_negative_is_a_clear_error() -> None:
    reg = ProximalL1(lambda step: -1.0)
    with pytest.raises(ValueError, match="`l1`: the schedule .* gave -1.0 at step"):
        reg.prox(torch.ones(2), lr=1.0)


def test_string_ids() -> None:
    assert repr(regularizers.get("proximal_l1")) == "ProximalL1(l1=0.01)"
    assert repr(regularizers.get("ProximalL1")) == "ProximalL1(l1=0.01)"
    assert repr(regularizers.get("group_lasso")) == "GroupLasso(factor=0.01, axis=0, proximal=True)"
    assert regularizers.serialize(GroupLasso(0.5, axis=1)) == {
        "module": "keras.regularizers", "class_name": "GroupLasso",
        "config": {"factor": 0.5, "axis": 1, "proximal": True}, "registered_name": None}


def test_a_keras_file_with_both_loads_back_and_keeps_training_to_zeros(tmp_path) -> None:
    x, y = sparse_regression()
    model, _ = fit_dense(ProximalL1(0.1), 20, x, y)
    hidden = models.Sequential([layers.Input((D,)), layers.Dense(4, kernel_regularizer=GroupLasso(0.05, axis=0)),
                                layers.Dense(1, kernel_regularizer=ProximalL1(0.1))])
    hidden.compile(optimizer="sgd", loss="mse")
    for saved in (model, hidden):
        path = tmp_path / "model.keras"
        saved.save(path)
        loaded = models.load_model(path)
        for ours, theirs in zip(saved.layers, loaded.layers):
            ours_rule, theirs_rule = ours.kernel_regularizer, theirs.kernel_regularizer
            assert type(theirs_rule) is type(ours_rule) and theirs_rule.get_config() == ours_rule.get_config()
            np.testing.assert_array_equal(theirs.kernel.detach().numpy(), ours.kernel.detach().numpy())
    loaded.fit(np.ones((4, D), np.float32), np.ones((4, 1), np.float32), epochs=1, verbose=0)


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,name,shown", [
    (lambda: ProximalL1(-1), "l1", "-1"),
    (lambda: ProximalL1(True), "l1", "True"),
    (lambda: ProximalL1(float("nan")), "l1", "nan"),
    (lambda: ProximalL1("0.1"), "l1", "'0.1'"),
    (lambda: GroupLasso(-0.5), "factor", "-0.5"),
    (lambda: GroupLasso(axis="rows"), "axis", "'rows'"),
    (lambda: GroupLasso(axis=[0, 0]), "axis", "[0, 0]"),
    (lambda: GroupLasso(proximal=1), "proximal", "1"),
    (lambda: ProximalL1().prox(torch.ones(2), lr=-0.1), "lr", "-0.1"),
    (lambda: binding.apply_proximal(torch.nn.Linear(1, 1), lr="fast"), "lr", "'fast'"),
    (lambda: binding.apply_proximal(torch.nn.Linear(1, 1), lr=float("inf")), "lr", "inf"),
])
def test_bad_arguments_are_value_errors_naming_them(make, name, shown) -> None:
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        make()
    assert f"{name}={shown}" in str(info.value)


def test_rules_that_cannot_act_on_a_weight_bind_nothing() -> None:
    linear = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="axis`=2 is out of range"):
        binding.bind(linear, "weight", regularizer=GroupLasso(axis=2))
    embedding = torch.nn.Module()
    embedding.table = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.int64), requires_grad=False)
    with pytest.raises(TypeError, match="ProximalL1 projects floating-point weights only"):
        binding.bind(embedding, "table", regularizer=ProximalL1())
    with pytest.raises(ValueError, match="out of range"):
        ww.regularize(linear, {"weight": GroupLasso(axis=[0, 5])})
    assert binding.rule_of(linear, "weight") is None and binding.rule_of(embedding, "table") is None
    with pytest.raises(TypeError, match="`optimizer`.*optimizer=5"):
        ww.regularize(linear, {"weight": ProximalL1()}, optimizer=5)
    assert binding.rule_of(linear, "weight") is None


def test_proximal_rules_are_refused_as_activity_regularizers() -> None:
    with pytest.raises(ValueError, match="acts on weights"):
        ww.regularize_activity(torch.nn.Linear(2, 2), ProximalL1())
    # A layer refuses one when it is made, before any call, and names the argument.
    with pytest.raises(ValueError, match="`activity_regularizer`.*acts on weights"):
        layers.Dense(2, activity_regularizer=ProximalL1())
    # As an ordinary penalty, group lasso may regularize activity.
    layer = layers.Dense(2, activity_regularizer=GroupLasso(0.1, axis=-1, proximal=False))
    layer(torch.ones(3, 2))
    assert layer.losses[0].requires_grad


def test_layout_aware_axes_on_torch_layers() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4, 3),
                                torch.nn.Linear(3, 2))
    ww.regularize(model, {"0.weight": GroupLasso(), "2.weight": GroupLasso(), "3.weight": GroupLasso(axis=0),
                          "0.bias": GroupLasso()})
    axes = {name: binding.rule_of(model[int(name[0])], name[2:]).regularizer.axis
            for name in ("0.weight", "2.weight", "3.weight", "0.bias")}
    assert axes == {"0.weight": [1, 2, 3], "2.weight": 1, "3.weight": 0, "0.bias": 0}
