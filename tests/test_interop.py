"""weightwise.interop: Keras regularizers and constraints on plain torch models, attached by rule.

Three models (a ResNet-like CNN, a small Transformer encoder, a mix of weightwise
``Dense`` and ``nn.Linear``) are checked against hand-written penalties, gradients and
projections; then activity regularization, mixed precision (GradScaler), parameter
groups and schedulers, wrappers (torch.compile, DistributedDataParallel), state dicts,
deepcopy and the per-unit axis table.
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ranks import gloo, run_ranks
from torch import nn

from weightwise import binding, clock, constraints, layers
from weightwise.constraints import MaxNorm
from weightwise.interop import (
    Handle,
    apply_constraints,
    constrain,
    describe,
    per_unit_axis,
    regularization_loss,
    regularize,
    regularize_activity,
)
from weightwise.regularizers import L1, L2

TOL = {"rtol": 1e-5, "atol": 1e-6}


# --------------------------------------------------------------------------------------
# Models and helpers
# --------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class ResNetLike(nn.Module):
    def __init__(self, channels: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.block1 = Block(channels)
        self.block2 = Block(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        return self.head(torch.flatten(self.pool(x), 1))


# Written out by hand, independently of the library's matching.
RESNET_CONV_WEIGHTS = ["stem.0.weight", "block1.conv1.weight", "block1.conv2.weight",
                       "block2.conv1.weight", "block2.conv2.weight"]
RESNET_LINEAR_WEIGHTS = ["head.weight"]
RESNET_BN_WEIGHTS = ["stem.1.weight", "block1.bn1.weight", "block1.bn2.weight", "block2.bn1.weight", "block2.bn2.weight"]
RESNET_BIASES = ["stem.0.bias", "stem.1.bias", "block1.bn1.bias", "block1.bn2.bias", "block2.bn1.bias",
                 "block2.bn2.bias", "head.bias"]


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def resnet() -> ResNetLike:
    torch.manual_seed(0)
    return ResNetLike()


def transformer() -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer()


def mixed(dense_regularizer=None) -> nn.Sequential:
    """nn.Linear -> ReLU -> weightwise Dense (Keras kernel (in, out), own kernel_regularizer) -> nn.Linear."""
    torch.manual_seed(0)
    dense = layers.Dense(5, input_dim=6, kernel_regularizer=dense_regularizer)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), dense, nn.Linear(5, 2))


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def image_batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def sequence_batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 6, 16, generator=g), torch.randint(0, 3, (n,), generator=g)


def vector_batch(n: int = 8, features: int = 4, outputs: int = 3, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), 10 * torch.randn(n, outputs, generator=g)


def squares(model: nn.Module, names: list[str]) -> torch.Tensor:
    return sum(model.get_parameter(n).pow(2).sum() for n in names)


def absolutes(model: nn.Module, names: list[str]) -> torch.Tensor:
    return sum(model.get_parameter(n).abs().sum() for n in names)


def describe_rows(module: nn.Module) -> dict[str, list[str]]:
    """describe()'s table as {name: [shape, trainable, regularizer, constraint]}."""
    lines = describe(module).splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["parameter", "shape", "trainable", "regularizer", "constraint"]
    rows = {}
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == 5, line
        rows[cells[0]] = cells[1:]
    return rows


def snapshot(module: nn.Module) -> list[tuple]:
    """Everything bound under ``module``, by identity."""
    return [(b.name, id(b.param), id(b.rule.regularizer), id(b.rule.constraint)) for b in binding.bound(module)]


def grads_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(model: nn.Module, data_loss, penalty) -> None:
    """Gradients of data_loss + regularization_loss(model) == gradients of data_loss + penalty(model)."""
    model.zero_grad(set_to_none=True)
    (data_loss() + regularization_loss(model)).backward()
    ours = grads_of(model)
    model.zero_grad(set_to_none=True)
    (data_loss() + penalty()).backward()
    expected = grads_of(model)
    assert set(ours) == set(expected) == {n for n, _ in model.named_parameters()}
    for name in expected:
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)


def row_norms(w: torch.Tensor) -> torch.Tensor:
    return w.detach().norm(dim=1)


def filter_norms(w: torch.Tensor) -> torch.Tensor:
    return w.detach().flatten(1).norm(dim=1)


def record_before_projection(optimizer: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter], norm) -> list:
    """A step post-hook registered BEFORE constrain's: the norms the update produced, before projection."""
    seen: list[dict[str, float]] = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: seen.append(
        {n: norm(p).max().item() for n, p in params.items()}))
    return seen


# --------------------------------------------------------------------------------------
# 1a. ResNet-like CNN
# --------------------------------------------------------------------------------------
class TestResNetLike:
    @staticmethod
    def rules_by_type() -> dict:
        return {(nn.Conv2d, "weight"): L2(1e-4), (nn.Linear, "weight"): L2(1e-4)}

    def test_penalty_by_type_excludes_biases_and_batchnorm(self):
        model = resnet()
        handle = regularize(model, self.rules_by_type())
        expected_names = RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS
        assert sorted(handle.matched) == sorted(expected_names)
        torch.testing.assert_close(regularization_loss(model), 1e-4 * squares(model, expected_names), **TOL)
        rows = describe_rows(model)
        assert set(rows) == {n for n, _ in model.named_parameters()}
        for name in expected_names:
            assert rows[name][2] == "L2(l2=0.0001)", name
            assert rows[name][3] == "-"
        for name in RESNET_BN_WEIGHTS + RESNET_BIASES:
            assert rows[name][2:] == ["-", "-"], name
        assert rows["stem.0.weight"][:2] == ["(8, 3, 3, 3)", "yes"]

    def test_predicate_selects_the_same_weights(self):
        model = resnet()

        def matrix_like(name, param, module):
            return param.dim() > 1

        handle = regularize(model, {matrix_like: L2(1e-4)})
        assert sorted(handle.matched) == sorted(RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS)
        torch.testing.assert_close(
            regularization_loss(model), 1e-4 * squares(model, RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS), **TOL)
        handle.remove()
        lam = regularize(model, {lambda name, p, m: p.dim() > 1: "l2"})
        assert sorted(lam.matched) == sorted(RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS)

    def test_glob_also_matches_batchnorm_weights(self):
        """Why type selectors exist: '*.weight' catches BatchNorm's scale too."""
        model = resnet()
        handle = regularize(model, {"*.weight": L2(1e-4)})
        everything = RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS + RESNET_BN_WEIGHTS
        assert sorted(handle.matched) == sorted(everything)
        torch.testing.assert_close(regularization_loss(model), 1e-4 * squares(model, everything), **TOL)
        # BN weights start at 1: the glob penalizes them by exactly 1e-4 * their count.
        torch.testing.assert_close(
            regularization_loss(model) - 1e-4 * squares(model, RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS),
            torch.tensor(1e-4 * 8 * len(RESNET_BN_WEIGHTS)), **TOL)
        assert describe_rows(model)["block1.bn1.weight"][2] == "L2(l2=0.0001)"

    def test_gradients_equal_explicit_penalty(self):
        model = resnet().train()
        regularize(model, self.rules_by_type())
        x, y = image_batch()
        names = RESNET_CONV_WEIGHTS + RESNET_LINEAR_WEIGHTS
        assert_same_grads(model, lambda: F.cross_entropy(model(x), y), lambda: 1e-4 * squares(model, names))
        # And directly: the penalty adds exactly 2 * 1e-4 * w to the data gradient of a conv weight.
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        data_only = model.stem[0].weight.grad.clone()
        torch.testing.assert_close(data_only + 2e-4 * model.stem[0].weight.detach(),
                                   grads_after(model, lambda: F.cross_entropy(model(x), y) + regularization_loss(model),
                                               "stem.0.weight"), rtol=1e-5, atol=1e-7)

    def test_conv_max_norm_without_axis_bounds_each_filter(self):
        model = resnet().train()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        convs = {n: model.get_parameter(n) for n in RESNET_CONV_WEIGHTS}
        before = record_before_projection(opt, convs, filter_norms)
        handle = constrain(model, {(nn.Conv2d, "weight"): MaxNorm(0.3)}, optimizer=opt)
        assert sorted(handle.matched) == sorted(RESNET_CONV_WEIGHTS)
        for name in RESNET_CONV_WEIGHTS:
            owner, attr = name.rsplit(".", 1)
            bound = binding.rule_of(model.get_submodule(owner), attr).constraint
            assert isinstance(bound, MaxNorm) and bound.axis == [1, 2, 3] and bound.max_value == 0.3
        x, y = image_batch()
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            for name, w in convs.items():
                assert filter_norms(w).max() <= 0.3 + 1e-5, name
        # The constraint was active: updates pushed filters past the bound, and it cut them back.
        assert all(max(step.values()) > 0.3 for step in before)
        assert max(filter_norms(w).max().item() for w in convs.values()) == pytest.approx(0.3, rel=1e-3)
        rows = describe_rows(model)
        assert rows["block2.conv2.weight"][3] == "MaxNorm(max_value=0.3, axis=[1, 2, 3])"
        assert rows["block2.bn2.weight"][3] == "-"

    def test_remove_restores(self):
        model = resnet()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        reg = regularize(model, self.rules_by_type())
        con = constrain(model, {(nn.Conv2d, "weight"): MaxNorm(0.3)}, optimizer=opt)
        reg.remove()
        con.remove()
        assert regularization_loss(model).item() == 0.0
        assert list(binding.bound(model)) == []
        rows = describe_rows(model)
        assert all(row[2:] == ["-", "-"] for row in rows.values())
        x, y = image_batch()
        opt.zero_grad()
        F.cross_entropy(model.train()(x), y).backward()
        opt.step()
        assert max(filter_norms(model.get_parameter(n)).max().item() for n in RESNET_CONV_WEIGHTS) > 0.3
        reg.remove()
        con.remove()  # twice: harmless
        assert list(binding.bound(model)) == []


def grads_after(model: nn.Module, loss_fn, name: str) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss_fn().backward()
    return model.get_parameter(name).grad.clone()


# --------------------------------------------------------------------------------------
# 1b. Transformer encoder
# --------------------------------------------------------------------------------------
class TestTransformer:
    LINEAR1: ClassVar[list[str]] = ["encoder.layers.0.linear1.weight", "encoder.layers.1.linear1.weight"]
    IN_PROJ: ClassVar[list[str]] = ["encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.1.self_attn.in_proj_weight"]
    LINEAR2: ClassVar[list[str]] = ["encoder.layers.0.linear2.weight", "encoder.layers.1.linear2.weight"]

    def rules(self):
        return {"*.linear1.weight": L2(1e-3), "*.self_attn.in_proj_weight": L1(1e-4)}

    def test_penalty_and_describe(self):
        model = transformer()
        handle = regularize(model, self.rules())
        assert handle.matched == self.LINEAR1 + self.IN_PROJ
        expected = 1e-3 * squares(model, self.LINEAR1) + 1e-4 * absolutes(model, self.IN_PROJ)
        torch.testing.assert_close(regularization_loss(model), expected, **TOL)
        rows = describe_rows(model)
        for name in self.LINEAR1:
            assert rows[name][2] == "L2(l2=0.001)"
        for name in self.IN_PROJ:
            assert rows[name][2] == "L1(l1=0.0001)"
        for name in ["encoder.layers.0.linear1.bias", "encoder.layers.0.self_attn.in_proj_bias",
                     "encoder.layers.1.linear2.weight", "encoder.layers.1.norm1.weight", "head.weight"]:
            assert rows[name][2:] == ["-", "-"], name

    def test_gradients_equal_explicit_penalty(self):
        model = transformer().train()
        regularize(model, self.rules())
        x, y = sequence_batch()
        assert_same_grads(
            model, lambda: F.cross_entropy(model(x), y),
            lambda: 1e-3 * squares(model, self.LINEAR1) + 1e-4 * absolutes(model, self.IN_PROJ))

    def test_max_norm_on_linear2_rows_after_every_step(self):
        model = transformer().train()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        targets = {n: model.get_parameter(n) for n in self.LINEAR2}
        before = record_before_projection(opt, targets, row_norms)
        handle = constrain(model, {"*.linear2.weight": MaxNorm(0.5)}, optimizer=opt)
        assert sorted(handle.matched) == self.LINEAR2
        assert binding.rule_of(model.encoder.layers[0].linear2, "weight").constraint.axis == 1
        x, y = sequence_batch()
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            for name, w in targets.items():
                assert row_norms(w).max() <= 0.5 + 1e-5, name
        assert all(max(step.values()) > 0.5 for step in before)
        assert describe_rows(model)[self.LINEAR2[1]][3] == "MaxNorm(max_value=0.5, axis=1)"
        assert describe_rows(model)["encoder.layers.1.linear1.weight"][3] == "-"
        handle.remove()
        assert describe_rows(model)[self.LINEAR2[1]][3] == "-"


# --------------------------------------------------------------------------------------
# 1c. weightwise Dense (Keras layout) mixed with nn.Linear
# --------------------------------------------------------------------------------------
class TestMixedDenseAndLinear:
    LINEARS: ClassVar[list[str]] = ["0.weight", "3.weight"]

    def test_both_penalties_counted_once(self):
        model = mixed(dense_regularizer=L1(0.01))
        dense = model[2]
        assert tuple(dense.kernel.shape) == (6, 5)  # Keras layout (in, out)
        handle = regularize(model, {(nn.Linear, "weight"): L2(1e-3)})
        assert handle.matched == self.LINEARS
        expected = 0.01 * dense.kernel.abs().sum() + 1e-3 * squares(model, self.LINEARS)
        torch.testing.assert_close(regularization_loss(model), expected, **TOL)
        assert len(binding.penalties(model)) == 3
        rows = describe_rows(model)
        assert rows["2.kernel"][2] == "L1(l1=0.01)"
        assert rows["0.weight"][2] == rows["3.weight"][2] == "L2(l2=0.001)"
        assert rows["2.bias"][2:] == rows["0.bias"][2:] == ["-", "-"]
        x, y = vector_batch(outputs=2)
        assert_same_grads(model, lambda: F.mse_loss(model(x), y),
                          lambda: 0.01 * dense.kernel.abs().sum() + 1e-3 * squares(model, self.LINEARS))
        handle.remove()
        torch.testing.assert_close(regularization_loss(model), 0.01 * dense.kernel.abs().sum(), **TOL)
        assert dense.kernel_regularizer.get_config() == {"l1": 0.01}

    def test_rule_over_dense_own_regularizer_is_undone_by_remove(self):
        model = mixed(dense_regularizer=L1(0.01))
        own = model[2].kernel_regularizer
        handle = regularize(model, {(layers.Dense, "kernel"): L2(0.5)})
        assert handle.matched == ["2.kernel"]
        torch.testing.assert_close(regularization_loss(model), 0.5 * model[2].kernel.pow(2).sum(), **TOL)
        handle.remove()
        assert model[2].kernel_regularizer is own

    def test_one_norm_constraint_is_per_output_unit_in_both_layouts(self):
        model = mixed()
        shared = MaxNorm(0.4)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        handle = constrain(model, {(nn.Linear, "weight"): shared, (layers.Dense, "kernel"): shared}, optimizer=opt)
        assert sorted(handle.matched) == ["0.weight", "2.kernel", "3.weight"]
        assert not constraints.axis_was_given(shared)  # the user's object is not changed
        assert binding.rule_of(model[0], "weight").constraint.axis == 1
        assert binding.rule_of(model[2], "kernel").constraint.axis == 0  # Keras layout: Keras default
        x, y = vector_batch(outputs=2)
        for _ in range(3):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            assert row_norms(model[0].weight).max() <= 0.4 + 1e-5
            assert row_norms(model[3].weight).max() <= 0.4 + 1e-5
            assert model[2].kernel.detach().norm(dim=0).max() <= 0.4 + 1e-5  # per unit = per column
        assert model[2].kernel.detach().norm(dim=0).max().item() == pytest.approx(0.4, rel=1e-3)


# --------------------------------------------------------------------------------------
# Constraint axes, removal, user re-binding
# --------------------------------------------------------------------------------------
class TestConstrain:
    def test_linear_rows_bounded_after_every_step(self):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=2.0)
        weights = {"0.weight": model[0].weight, "2.weight": model[2].weight}
        before = record_before_projection(opt, weights, row_norms)
        constrain(model, {(nn.Linear, "weight"): MaxNorm(1.0)}, optimizer=opt)
        for linear in (model[0], model[2]):
            bound = binding.rule_of(linear, "weight").constraint
            assert isinstance(bound, MaxNorm) and bound.axis == 1 and bound.max_value == 1.0
        x, y = vector_batch()
        for _ in range(5):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            for name, w in weights.items():
                assert row_norms(w).max() <= 1.0 + 1e-5, name
        assert all(max(step.values()) > 1.0 for step in before)
        # Columns are not what is bounded: some column norm exceeds 1.
        assert model[0].weight.detach().norm(dim=0).max() > 1.0

    def test_explicit_axis_is_honoured(self):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=2.0)
        explicit = MaxNorm(1.0, axis=0)
        constrain(model, {"2.weight": explicit}, optimizer=opt)
        assert binding.rule_of(model[2], "weight").constraint is explicit
        x, y = vector_batch()
        for _ in range(5):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            assert model[2].weight.detach().norm(dim=0).max() <= 1.0 + 1e-5  # columns
        assert row_norms(model[2].weight).max() > 1.0  # rows are not bounded

    def test_string_id_and_keras_config(self):
        model = mlp()
        constrain(model, {"0.weight": "max_norm", "2.weight": {"class_name": "MaxNorm", "config": {"max_value": 1.5}}})
        assert binding.rule_of(model[0], "weight").constraint.get_config() == {"max_value": 2, "axis": 1}
        assert binding.rule_of(model[2], "weight").constraint.get_config() == {"max_value": 1.5, "axis": 1}

    def test_remove_stops_projection_and_restores_describe(self):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=2.0)
        handle = constrain(model, {(nn.Linear, "weight"): MaxNorm(0.2)}, optimizer=opt)
        assert describe_rows(model)["0.weight"][3] == "MaxNorm(max_value=0.2, axis=1)"
        handle.remove()
        assert describe_rows(model)["0.weight"][3] == "-"
        assert binding.rule_of(model[0], "weight") is None
        x, y = vector_batch()
        for _ in range(2):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
        assert row_norms(model[0].weight).max() > 0.2 and row_norms(model[2].weight).max() > 0.2
        handle.remove()  # twice: harmless
        assert list(binding.bound(model)) == []

    def test_remove_unhooks_the_optimizer(self):
        """After remove(), opt.step() projects nothing, even constraints bound by another call."""
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=2.0)
        # constrain() also counts the optimizer's steps for scheduled bounds (clock.follow), a hook that stays.
        clock.follow(opt)
        hooks_before = len(opt._optimizer_step_post_hooks)
        hooked = constrain(model, {"0.weight": MaxNorm(0.2)}, optimizer=opt)
        assert len(opt._optimizer_step_post_hooks) == hooks_before + 1
        constrain(model, {"2.weight": MaxNorm(0.2)})  # no optimizer: projected only by apply_constraints
        hooked.remove()
        assert len(opt._optimizer_step_post_hooks) == hooks_before
        x, y = vector_batch()
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
        assert row_norms(model[2].weight).max() > 0.2
        apply_constraints(model)
        assert row_norms(model[2].weight).max() <= 0.2 + 1e-6

    def test_handle_is_a_context_manager(self):
        model = mlp()
        with constrain(model, {"0.weight": MaxNorm(0.1)}) as handle:
            assert isinstance(handle, Handle) and handle.matched == ["0.weight"]
            apply_constraints(model)
            assert row_norms(model[0].weight).max() <= 0.1 + 1e-6
        assert binding.rule_of(model[0], "weight") is None

    def test_conv_transpose_per_output_channel(self):
        torch.manual_seed(0)
        deconv = nn.ConvTranspose2d(3, 4, 3)  # weight (in, out, kh, kw)
        constrain(deconv, {"weight": MaxNorm(0.05)})
        assert binding.rule_of(deconv, "weight").constraint.axis == [0, 2, 3]
        apply_constraints(deconv)
        per_out = deconv.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)
        assert per_out.shape == (4,)
        assert per_out.max() <= 0.05 + 1e-6
        assert per_out.min() == pytest.approx(0.05, rel=1e-3)


class TestRemoveLeavesOthersAlone:
    def test_user_rebinding_survives_remove(self):
        model = mlp()
        handle = regularize(model, {"0.weight": L2(0.1)})
        mine = L1(0.5)
        binding.bind(model[0], "weight", regularizer=mine)
        handle.remove()
        assert binding.rule_of(model[0], "weight").regularizer is mine
        handle.remove()
        assert binding.rule_of(model[0], "weight").regularizer is mine

    def test_user_rebinding_of_dense_attribute_survives_remove(self):
        model = mixed(dense_regularizer=L1(0.01))
        handle = regularize(model, {"2.kernel": L2(0.1)})
        model[2].kernel_regularizer = L2(0.7)
        handle.remove()
        assert model[2].kernel_regularizer.get_config() == {"l2": 0.7}

    def test_constraint_half_is_independent_of_regularizer_half(self):
        model = mlp()
        reg = regularize(model, {"0.weight": L2(0.1)})
        con = constrain(model, {"0.weight": MaxNorm(1.0)})
        reg.remove()
        rule = binding.rule_of(model[0], "weight")
        assert rule.regularizer is None and isinstance(rule.constraint, MaxNorm)
        con.remove()
        assert binding.rule_of(model[0], "weight") is None

    def test_removing_in_any_order_leaves_nothing(self):
        """Two handles on one parameter; removing both, in either order, must unbind it."""
        for order in ("oldest-first", "newest-first"):
            model = mlp()
            first = regularize(model, {"0.weight": L2(0.1)})
            second = regularize(model, {"0.weight": L1(0.1)})
            for handle in ((first, second) if order == "oldest-first" else (second, first)):
                handle.remove()
            assert binding.rule_of(model[0], "weight") is None, order
            assert regularization_loss(model).item() == 0.0, order


# --------------------------------------------------------------------------------------
# Errors: nothing is bound by a failing call
# --------------------------------------------------------------------------------------
class TestErrors:
    def model_with_a_rule(self) -> nn.Sequential:
        model = mlp()
        regularize(model, {"2.bias": L1(0.1)})
        return model

    def test_selector_matching_nothing(self):
        model = self.model_with_a_rule()
        before = snapshot(model)
        with pytest.raises(ValueError, match=r"'0\.weigth' matches no parameter.*Close matches: \['0\.weight'"):
            regularize(model, {"0.weight": L2(0.1), "0.weigth": L2(0.1)})
        assert snapshot(model) == before
        with pytest.raises(ValueError, match=r"\(Conv2d, 'weight'\) matches no parameter.*strict=False"):
            constrain(model, {(nn.Conv2d, "weight"): MaxNorm(1.0)})
        assert snapshot(model) == before
        handle = regularize(model, {"0.weight": L2(0.1), "0.weigth": L2(0.1)}, strict=False)
        assert handle.matched == ["0.weight"]
        assert regularize(model, {"*.kernel": "l2"}, strict=False).matched == []

    @pytest.mark.parametrize("selector", [42, ("0.weight",), (nn.Linear,), ("weight", nn.Linear), (int, "weight"),
                                          nn.Linear, "", None])
    def test_bad_selector_type(self, selector):
        model = self.model_with_a_rule()
        before = snapshot(model)
        with pytest.raises(TypeError, match="Invalid selector"):
            regularize(model, {"0.weight": L2(0.1), selector: L2(0.1)})
        assert snapshot(model) == before

    def test_bad_rules_container_and_module(self):
        model = self.model_with_a_rule()
        with pytest.raises(TypeError, match="`rules`"):
            regularize(model, "0.weight")
        with pytest.raises(TypeError, match="`rules`"):
            regularize(model, ["0.weight"])
        with pytest.raises(TypeError, match="torch.nn.Module"):
            regularize(object(), {"0.weight": "l2"})

    def test_unknown_id_names_the_rule_and_binds_nothing(self):
        model = self.model_with_a_rule()
        before = snapshot(model)
        with pytest.raises(ValueError, match=r"Rule '2\.weight'.*l3"):
            regularize(model, {"0.weight": L2(0.1), "2.weight": "l3"})
        assert snapshot(model) == before
        with pytest.raises(ValueError, match=r"Rule \(Linear, 'weight'\).*max_nrm"):
            constrain(model, [("0.weight", MaxNorm(1.0)), ((nn.Linear, "weight"), "max_nrm")])
        assert snapshot(model) == before

    def test_bad_optimizer_binds_nothing(self):
        model = self.model_with_a_rule()
        before = snapshot(model)
        with pytest.raises(TypeError, match="optimizer"):
            constrain(model, {"0.weight": MaxNorm(1.0)}, optimizer="sgd")
        assert snapshot(model) == before, "a constrain() call that raised left its constraint bound"


# --------------------------------------------------------------------------------------
# 2. Activity regularization
# --------------------------------------------------------------------------------------
class Pair(nn.Module):
    """Returns a tuple: two float tensors and an integer one (which is not penalized)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, x):
        h = self.linear(x)
        return h, h.sum(dim=1, keepdim=True), torch.arange(x.shape[0])


class TestActivity:
    def test_penalty_is_output_penalty_over_batch_size(self):
        model = mlp()
        handle = regularize_activity(model[0], L2(0.1))
        assert handle.matched == ["Linear"]
        x, _ = vector_batch(n=5)
        out = model[0](x)
        expected = 0.1 * out.pow(2).sum() / 5
        torch.testing.assert_close(regularization_loss(model), expected, **TOL)
        assert len(binding.call_losses(model)) == 1
        # Replaced, not accumulated.
        x2 = 3 * x[:2]
        model(x2)
        out2 = model[0](x2)
        torch.testing.assert_close(regularization_loss(model), 0.1 * out2.pow(2).sum() / 2, **TOL)
        assert len(binding.call_losses(model)) == 1

    def test_included_with_weight_penalties_and_in_gradients(self):
        model = mlp()
        regularize(model, {"2.weight": L2(0.01)})
        regularize_activity(model[1], L1(0.05))
        x, y = vector_batch()
        model(x)
        hidden = model[1](model[0](x))
        torch.testing.assert_close(
            regularization_loss(model), 0.05 * hidden.abs().sum() / 8 + 0.01 * model[2].weight.pow(2).sum(), **TOL)

        def data_and_ours():
            return F.mse_loss(model(x), y)

        model.zero_grad(set_to_none=True)
        (data_and_ours() + regularization_loss(model)).backward()
        ours = grads_of(model)
        model.zero_grad(set_to_none=True)
        h = model[1](model[0](x))
        (F.mse_loss(model[2](h), y) + 0.05 * h.abs().sum() / 8 + 0.01 * model[2].weight.pow(2).sum()).backward()
        for name, grad in grads_of(model).items():
            torch.testing.assert_close(ours[name], grad, rtol=1e-5, atol=1e-7, msg=name)

    def test_tuple_output(self):
        torch.manual_seed(0)
        module = Pair()
        regularize_activity(module, L2(0.2))
        x = torch.randn(6, 3)
        a, b, _ = module(x)
        assert len(binding.call_losses(module)) == 2  # the integer tensor is skipped
        expected = 0.2 * a.pow(2).sum() / 6 + 0.2 * b.pow(2).sum() / 6
        torch.testing.assert_close(regularization_loss(module), expected, **TOL)

    def test_remove_removes_hook_and_recorded_loss(self):
        model = mlp()
        handle = regularize_activity(model[0], "l2")
        assert describe_rows(model)["0 (output)"] == ["-", "-", "activity: L2(l2=0.01)", "-"]
        model(torch.ones(4, 4))
        assert regularization_loss(model).item() > 0
        handle.remove()
        assert binding.call_losses(model) == []
        assert regularization_loss(model).item() == 0.0
        model(torch.ones(4, 4))
        assert binding.call_losses(model) == []
        assert len(model[0]._forward_hooks) == 0
        assert "(output)" not in describe(model)
        handle.remove()  # twice: harmless

    def test_empty_batch_gives_zero(self):
        model = mlp()
        regularize_activity(model[0], L2(0.1))
        model(torch.zeros(0, 4))
        loss = regularization_loss(model)
        assert torch.isfinite(loss) and loss.item() == 0.0

    def test_rejects_bad_values(self):
        with pytest.raises(ValueError, match="None"):
            regularize_activity(nn.Linear(2, 2), None)
        with pytest.raises(ValueError, match="l3"):
            regularize_activity(nn.Linear(2, 2), "l3")
        with pytest.raises(TypeError, match="torch.nn.Module"):
            regularize_activity("not a module", "l2")

    def test_deepcopy_after_a_forward(self):
        """The common `best = copy.deepcopy(model)` snapshot after a training step."""
        model = mlp()
        regularize_activity(model[0], L2(0.1))
        x, _ = vector_batch()
        model(x)
        snapshot_copy = copy.deepcopy(model)
        torch.testing.assert_close(snapshot_copy(x), model(x))

    def test_deepcopy_keeps_losses_separate(self):
        model = mlp()
        regularize_activity(model[0], L2(0.1))
        twin = copy.deepcopy(model)  # before any forward
        x, _ = vector_batch()
        for _ in range(2):
            model(x)
            twin(2 * x)
        assert len(binding.call_losses(model)) == 1
        assert len(binding.call_losses(twin)) == 1
        torch.testing.assert_close(regularization_loss(model), 0.1 * model[0](x).pow(2).sum() / 8, **TOL)


# --------------------------------------------------------------------------------------
# 3. GradScaler, parameter groups, LR schedulers
# --------------------------------------------------------------------------------------
class TestMixedPrecisionAndSchedules:
    def test_grad_scaler_skipped_step_is_not_projected(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8, enabled=True)
        assert scaler.is_enabled()
        constrain(model, {(nn.Linear, "weight"): MaxNorm(1.0)}, optimizer=opt)
        with torch.no_grad():
            model[0].weight.fill_(3.0)  # row norms 6 > 1
        x, y = vector_batch(outputs=3)

        opt.zero_grad()
        scaler.scale(F.mse_loss(model(x), y)).backward()
        model[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        assert scaler.get_scale() < 2.0 ** 8  # the step was skipped
        assert torch.equal(model[0].weight.detach(), torch.full((3, 4), 3.0))  # not updated, not projected

        opt.zero_grad()
        scaler.scale(F.mse_loss(model(x), y)).backward()
        scaler.step(opt)
        scaler.update()
        assert row_norms(model[0].weight).max() <= 1.0 + 1e-5

    def test_parameter_groups_and_step_lr(self):
        model = mlp()
        opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 3.0},
                               {"params": model[2].parameters(), "lr": 0.5}])
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        weights = {"0.weight": model[0].weight, "2.weight": model[2].weight}
        before = record_before_projection(opt, weights, row_norms)
        constrain(model, {(nn.Linear, "weight"): MaxNorm(0.5)}, optimizer=opt)
        x, y = vector_batch()
        for _ in range(6):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            scheduler.step()
            for name, w in weights.items():
                assert row_norms(w).max() <= 0.5 + 1e-5, name
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([3.0 / 8, 0.5 / 8])
        assert all(step["0.weight"] > 0.5 for step in before)

    def test_only_parameters_the_optimizer_holds(self):
        model = mlp()
        opt = torch.optim.SGD(model[0].parameters(), lr=1.0)
        constrain(model, {(nn.Linear, "weight"): MaxNorm(0.1)}, optimizer=opt)
        x, y = vector_batch()
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        before = model[2].weight.detach().clone()
        opt.step()
        assert row_norms(model[0].weight).max() <= 0.1 + 1e-6
        assert torch.equal(model[2].weight.detach(), before)  # another optimizer's business
        opt.add_param_group({"params": model[2].parameters()})
        opt.step()
        assert row_norms(model[2].weight).max() <= 0.1 + 1e-6


# --------------------------------------------------------------------------------------
# 4. Only parameters that received a gradient are projected
# --------------------------------------------------------------------------------------
class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 3)

    def forward(self, x):
        return self.used(x)


def test_parameter_without_gradient_is_not_projected():
    torch.manual_seed(0)
    model = TwoHeads()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    constrain(model, {(nn.Linear, "weight"): MaxNorm(1.0)}, optimizer=opt)
    with torch.no_grad():
        model.used.weight.fill_(2.0)
        model.unused.weight.fill_(2.0)
    x, y = vector_batch()
    opt.zero_grad(set_to_none=True)
    F.mse_loss(model(x), y).backward()
    assert model.unused.weight.grad is None
    opt.step()
    assert row_norms(model.used.weight).max() <= 1.0 + 1e-5
    assert torch.equal(model.unused.weight.detach(), torch.full((3, 4), 2.0))
    apply_constraints(model)  # the explicit call projects everything bound
    assert row_norms(model.unused.weight).max() <= 1.0 + 1e-5


# --------------------------------------------------------------------------------------
# 5. Wrappers, state dicts, deepcopy
# --------------------------------------------------------------------------------------
def test_torch_compile_wrapper():
    model = mlp()
    compiled = torch.compile(model, backend="eager")
    handle = regularize(compiled, {"0.weight": L2(0.1)})  # no _orig_mod. prefix
    assert handle.matched == ["_orig_mod.0.weight"]
    assert binding.rule_of(model[0], "weight").regularizer.get_config() == {"l2": 0.1}
    prefixed = regularize(compiled, {"_orig_mod.2.weight": L1(0.01)})
    assert prefixed.matched == ["_orig_mod.2.weight"]
    expected = 0.1 * model[0].weight.pow(2).sum() + 0.01 * model[2].weight.abs().sum()
    torch.testing.assert_close(regularization_loss(compiled), regularization_loss(model), **TOL)
    torch.testing.assert_close(regularization_loss(compiled), expected, **TOL)
    assert describe_rows(compiled)["_orig_mod.0.weight"][2] == "L2(l2=0.1)"

    opt = torch.optim.SGD(compiled.parameters(), lr=2.0)
    constrain(compiled, {(nn.Linear, "weight"): MaxNorm(0.5)}, optimizer=opt)
    x, y = vector_batch()
    for _ in range(2):
        opt.zero_grad()
        (F.mse_loss(compiled(x), y) + regularization_loss(compiled)).backward()
        opt.step()
        assert row_norms(model[0].weight).max() <= 0.5 + 1e-5
        assert row_norms(model[2].weight).max() <= 0.5 + 1e-5
    handle.remove()
    prefixed.remove()
    assert regularization_loss(compiled).item() == 0.0


DDP_STEPS = 4


def _ddp_data(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + rank)
    return [(torch.randn(8, 4, generator=g), 5 * torch.randn(8, 2, generator=g)) for _ in range(DDP_STEPS)]


def _ddp_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One DDP rank."""
    from torch.nn.parallel import DistributedDataParallel

    with gloo(rank, world_size, port):
        model = _ddp_model()
        ddp = DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
        reg = regularize(ddp, {"0.weight": L2(1e-2)})  # no module. prefix
        con = constrain(ddp, {(nn.Linear, "weight"): MaxNorm(0.5)}, optimizer=opt)
        for x, y in _ddp_data(rank):
            opt.zero_grad()
            (F.mse_loss(ddp(x), y) + regularization_loss(ddp)).backward()
            opt.step()
        torch.save({"state": model.state_dict(), "matched": (reg.matched, con.matched),
                    "reg": regularization_loss(ddp).detach()}, Path(out_dir) / f"rank{rank}.pt")


def test_distributed_data_parallel_gloo(tmp_path):
    run_ranks(_ddp_worker, str(tmp_path), timeout=60)  # by design a few seconds: tiny model, four steps
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for result in results:
        assert result["matched"] == (["module.0.weight"], ["module.0.weight", "module.2.weight"])
    first, second = results[0]["state"], results[1]["state"]
    assert set(first) == set(second) == set(_ddp_model().state_dict())
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert row_norms(first["0.weight"]).max() <= 0.5 + 1e-5
    assert row_norms(first["2.weight"]).max() <= 0.5 + 1e-5
    torch.testing.assert_close(results[0]["reg"], 1e-2 * first["0.weight"].pow(2).sum(), **TOL)

    # The same training in one process: DDP averages the ranks' gradients.
    model = _ddp_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    regularize(model, {"0.weight": L2(1e-2)})
    constrain(model, {(nn.Linear, "weight"): MaxNorm(0.5)}, optimizer=opt)
    for (x0, y0), (x1, y1) in zip(_ddp_data(0), _ddp_data(1)):
        opt.zero_grad()
        ((F.mse_loss(model(x0), y0) + F.mse_loss(model(x1), y1)) / 2 + regularization_loss(model)).backward()
        opt.step()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(first[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(first["0.weight"], _ddp_model().state_dict()["0.weight"])  # it trained


def test_state_dict_is_unchanged_by_rules():
    plain = resnet()
    ruled = resnet()
    regularize(ruled, {(nn.Conv2d, "weight"): L2(1e-4)})
    constrain(ruled, {(nn.Linear, "weight"): MaxNorm(1.0)})
    regularize_activity(ruled.head, "l1")
    state = {k: v.clone() for k, v in ruled.state_dict().items()}
    assert list(state) == list(plain.state_dict())
    fresh = ResNetLike()
    fresh.load_state_dict(state)  # strict
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    # Loading into the ruled model keeps its bindings, on the same Parameter objects.
    head_weight = ruled.head.weight
    with torch.no_grad():
        changed = {k: v * 2 if v.is_floating_point() else v for k, v in state.items()}
    ruled.load_state_dict(changed)
    assert ruled.head.weight is head_weight
    assert binding.rule_of(ruled.head, "weight").constraint.axis == 1
    torch.testing.assert_close(regularization_loss(ruled), 1e-4 * squares(ruled, RESNET_CONV_WEIGHTS), **TOL)
    torch.testing.assert_close(regularization_loss(ruled),
                               4 * 1e-4 * sum(state[n].pow(2).sum() for n in RESNET_CONV_WEIGHTS), **TOL)


def test_deepcopy_keeps_rules_on_the_copy():
    model = resnet()
    regularize(model, {(nn.Conv2d, "weight"): L2(1e-4), (nn.Linear, "weight"): L2(1e-4)})
    constrain(model, {(nn.Linear, "weight"): MaxNorm(0.2)})
    twin = copy.deepcopy(model)
    torch.testing.assert_close(regularization_loss(twin), regularization_loss(model), **TOL)
    rule = binding.rule_of(twin.head, "weight")
    assert rule is not None and isinstance(rule.constraint, MaxNorm)
    twin_params = {id(p) for p in twin.parameters()}
    bound_twin = list(binding.bound(twin))
    assert [b.name for b in bound_twin] == [b.name for b in binding.bound(model)]
    assert all(id(b.param) in twin_params for b in bound_twin)
    assert next(b for b in bound_twin if b.name == "head.weight").param is twin.head.weight

    original_penalty = regularization_loss(model).detach().clone()
    with torch.no_grad():
        twin.head.weight.mul_(3.0)
    assert not torch.allclose(regularization_loss(twin), original_penalty)
    torch.testing.assert_close(regularization_loss(model), original_penalty)
    apply_constraints(twin)
    assert row_norms(twin.head.weight).max() <= 0.2 + 1e-6
    assert row_norms(model.head.weight).max() > 0.2  # the original is untouched


# --------------------------------------------------------------------------------------
# 6. per_unit_axis
# --------------------------------------------------------------------------------------
class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 2))


@pytest.mark.parametrize("module, name, expected", [
    (nn.Linear(3, 2), "weight", 1),
    (nn.Conv1d(2, 4, 3), "weight", [1, 2]),
    (nn.Conv2d(2, 4, 3), "weight", [1, 2, 3]),
    (nn.Conv3d(2, 4, 3), "weight", [1, 2, 3, 4]),
    (nn.ConvTranspose1d(2, 4, 3), "weight", [0, 2]),
    (nn.ConvTranspose2d(2, 4, 3), "weight", [0, 2, 3]),
    (nn.ConvTranspose3d(2, 4, 3), "weight", [0, 2, 3, 4]),
    (nn.Embedding(10, 4), "weight", 1),
    (nn.Bilinear(2, 3, 4), "weight", [1, 2]),
    (nn.Linear(3, 2), "bias", None),
    (nn.Conv2d(2, 4, 3), "bias", None),
    (nn.LayerNorm(4), "weight", []),
    (nn.LayerNorm(4), "eps", None),
    (Custom(), "weight", None),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v))
def test_per_unit_axis(module, name, expected):
    assert per_unit_axis(module, name) == expected
    if expected not in (None, []):  # [] is each entry on its own
        # Norms over that axis leave one value per output unit.
        weight = getattr(module, name)
        out_dim = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
        keep = torch.linalg.vector_norm(weight.detach(), dim=expected)
        assert keep.shape == (weight.shape[out_dim],)


def test_a_model_with_an_activity_rule_pickles_and_keeps_it():
    model = nn.Sequential(nn.Linear(3, 2))
    regularize_activity(model[0], L2(0.5))
    copy_ = pickle.loads(pickle.dumps(model))
    x = torch.ones(4, 3)
    out = copy_(x)
    # The copy's hook records the copy's penalty: 0.5 * sum(out²) / batch, as NumPy gives it.
    expected = 0.5 * (out.detach().numpy() ** 2).sum() / 4
    torch.testing.assert_close(regularization_loss(copy_), torch.tensor(expected, dtype=torch.float32))


def test_a_default_axis_rule_with_a_function_factor_binds_to_the_torch_layout():
    def cap(step):
        return 0.5 if step < 10 else 0.25

    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    constrain(layer, {"weight": MaxNorm(cap)})
    apply_constraints(layer)
    # Per output unit (rows of the torch layout), each row's norm capped at cap(step 0) = 0.5.
    np.testing.assert_allclose(np.linalg.norm(layer.weight.detach().numpy(), axis=1), 0.5, rtol=1e-5)
