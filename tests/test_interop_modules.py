"""Per-unit norm axes of the torch modules that match Keras's recurrent, attention, normalization,
PReLU and transposed-convolution layers, checked against Keras 3's own constraints.

Each case takes a torch parameter to the layout of the Keras layer's weight (transpose, gate
reorder, reshape, written here by hand), applies Keras's constraint there, and compares with
what ``constrain`` + ``apply_constraints`` did to the torch parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from helpers import keras_or_skip
from torch import nn

from weightwise import binding, constraints
from weightwise.interop import apply_constraints, constrain, describe, per_unit_axis

H, E, HEADS = 3, 6, 2


def _gru_gates(t: torch.Tensor, dim: int) -> torch.Tensor:
    """torch's GRU gate blocks (r, z, n) in Keras's order (z, r, h)."""
    r, z, n = t.chunk(3, dim=dim)
    return torch.cat([z, r, n], dim=dim)


def _matrix(gru: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch recurrent (gates*units, in) matrix as Keras's kernel / recurrent_kernel (in, gates*units)."""
    return lambda w: _gru_gates(w.T, 1) if gru else w.T


def _vector(gru: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda b: _gru_gates(b, 0) if gru else b


def _projection(part: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """One third of in_proj_weight (3E, E) as Keras's EinsumDense kernel (E, heads, key_dim)."""
    return lambda w: w.chunk(3, dim=0)[part].T.reshape(E, HEADS, E // HEADS)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


# (id, module factory, parameter, torch -> Keras layout, Keras's axis: "default" or the axis to pass)
CASES = [
    ("lstm_kernel", lambda: nn.LSTM(4, H), "weight_ih_l0", _matrix(), "default"),
    ("lstm_recurrent", lambda: nn.LSTM(4, H), "weight_hh_l0", _matrix(), "default"),
    ("lstm_layer1_reverse", lambda: nn.LSTM(4, H, num_layers=2, bidirectional=True), "weight_ih_l1_reverse",
     _matrix(), "default"),
    ("lstm_bias", lambda: nn.LSTM(4, H), "bias_ih_l0", _vector(), []),
    ("gru_kernel", lambda: nn.GRU(4, H), "weight_ih_l0", _matrix(gru=True), "default"),
    ("gru_recurrent_reverse", lambda: nn.GRU(4, H, bidirectional=True), "weight_hh_l0_reverse", _matrix(gru=True),
     "default"),
    ("gru_bias", lambda: nn.GRU(4, H), "bias_hh_l0", _vector(gru=True), []),
    ("rnn_kernel", lambda: nn.RNN(4, H), "weight_ih_l0", _matrix(), "default"),
    ("rnn_recurrent", lambda: nn.RNN(4, H), "weight_hh_l0", _matrix(), "default"),
    ("rnn_bias", lambda: nn.RNN(4, H), "bias_hh_l0", _vector(), []),
    ("mha_query", lambda: nn.MultiheadAttention(E, HEADS), "in_proj_weight", _projection(0), "default"),
    ("mha_key", lambda: nn.MultiheadAttention(E, HEADS), "in_proj_weight", _projection(1), "default"),
    ("mha_value", lambda: nn.MultiheadAttention(E, HEADS), "in_proj_weight", _projection(2), "default"),
    ("mha_key_kdim", lambda: nn.MultiheadAttention(E, HEADS, kdim=5, vdim=4), "k_proj_weight",
     lambda w: w.T.reshape(5, HEADS, E // HEADS), "default"),
    ("mha_output", lambda: nn.MultiheadAttention(E, HEADS), "out_proj.weight",
     lambda w: w.T.reshape(HEADS, E // HEADS, E), [0, 1]),
    ("batchnorm_gamma", lambda: nn.BatchNorm2d(5), "weight", _identity, []),
    ("batchnorm_beta", lambda: nn.BatchNorm1d(5), "bias", _identity, []),
    ("layernorm_gamma", lambda: nn.LayerNorm((2, 5)), "weight", _identity, []),
    ("groupnorm_gamma", lambda: nn.GroupNorm(2, 4), "weight", _identity, []),
    # Keras's PReLU(shared_axes=[1, 2]) on images: alpha (1, 1, C), whose axis 0 has one entry.
    ("prelu_alpha", lambda: nn.PReLU(4), "weight", lambda a: a.reshape(1, 1, 4), "default"),
    ("conv1d_transpose", lambda: nn.ConvTranspose1d(3, 4, 2), "weight", lambda w: w.permute(2, 1, 0), [0, 2]),
    ("conv2d_transpose", lambda: nn.ConvTranspose2d(3, 4, (2, 3)), "weight", lambda w: w.permute(2, 3, 1, 0),
     [0, 1, 3]),
    ("conv3d_transpose", lambda: nn.ConvTranspose3d(2, 3, 2), "weight", lambda w: w.permute(2, 3, 4, 1, 0),
     [0, 1, 2, 4]),
]

RULES = [
    ("max_norm", lambda: constraints.MaxNorm(0.5), lambda k, kw: k.constraints.MaxNorm(0.5, **kw)),
    ("unit_norm", lambda: constraints.UnitNorm(), lambda k, kw: k.constraints.UnitNorm(**kw)),
    ("min_max_norm", lambda: constraints.MinMaxNorm(0.4, 0.6, rate=0.7),
     lambda k, kw: k.constraints.MinMaxNorm(0.4, 0.6, rate=0.7, **kw)),
]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _spread(param: torch.Tensor, seed: int) -> None:
    """Entries of both signs and magnitudes, so some unit norms sit below, inside and above the bounds."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        param.copy_(torch.randn(param.shape, generator=g) * torch.rand(param.shape, generator=g) * 1.5)


@pytest.mark.parametrize("rule_id, ours, theirs", RULES, ids=[r[0] for r in RULES])
@pytest.mark.parametrize("case_id, factory, name, to_keras, keras_axis", CASES, ids=[c[0] for c in CASES])
def test_constrain_matches_keras_on_the_keras_layout(keras, case_id, factory, name, to_keras, keras_axis, rule_id,
                                                     ours, theirs):
    torch.manual_seed(0)
    module = factory()
    param = module.get_parameter(name)
    _spread(param, seed=len(case_id))
    before = param.detach().clone()
    handle = constrain(module, {name: ours()})
    assert handle.matched == [name]
    apply_constraints(module)
    keras_rule = theirs(keras, {} if keras_axis == "default" else {"axis": keras_axis})
    expected = keras.ops.convert_to_numpy(keras_rule(to_keras(before)))
    got = to_keras(param.detach()).numpy()
    assert not torch.allclose(param.detach(), before)  # the rule did something
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), rtol=1e-6, atol=1e-6)


EXPECTED_AXES = {
    (nn.LSTM, "weight_ih_l0"): 1, (nn.LSTM, "weight_hh_l2_reverse"): 1, (nn.LSTM, "weight_hr_l0"): 1,
    (nn.LSTM, "bias_ih_l0"): [], (nn.GRU, "bias_hh_l1_reverse"): [], (nn.RNN, "weight_hh_l0"): 1,
    (nn.LSTM, "weight_ih"): None, (nn.GRU, "all_weights"): None,
    (nn.MultiheadAttention, "in_proj_weight"): 1, (nn.MultiheadAttention, "q_proj_weight"): 1,
    (nn.MultiheadAttention, "v_proj_weight"): 1, (nn.MultiheadAttention, "in_proj_bias"): [],
    (nn.MultiheadAttention, "bias_k"): None,
    (nn.BatchNorm3d, "weight"): [], (nn.InstanceNorm2d, "bias"): [], (nn.LayerNorm, "bias"): [],
    (nn.GroupNorm, "weight"): [], (nn.RMSNorm, "weight"): [], (nn.BatchNorm1d, "running_mean"): None,
    (nn.PReLU, "weight"): [],
}
FACTORIES = {
    nn.LSTM: lambda: nn.LSTM(2, 3), nn.GRU: lambda: nn.GRU(2, 3), nn.RNN: lambda: nn.RNN(2, 3),
    nn.MultiheadAttention: lambda: nn.MultiheadAttention(4, 2), nn.BatchNorm3d: lambda: nn.BatchNorm3d(3),
    nn.InstanceNorm2d: lambda: nn.InstanceNorm2d(3, affine=True), nn.LayerNorm: lambda: nn.LayerNorm(3),
    nn.GroupNorm: lambda: nn.GroupNorm(1, 3), nn.RMSNorm: lambda: nn.RMSNorm(3),
    nn.BatchNorm1d: lambda: nn.BatchNorm1d(3), nn.PReLU: lambda: nn.PReLU(3),
}


@pytest.mark.parametrize("kind, name", list(EXPECTED_AXES), ids=[f"{k.__name__}-{n}" for k, n in EXPECTED_AXES])
def test_per_unit_axis_table(kind, name):
    assert per_unit_axis(FACTORIES[kind](), name) == EXPECTED_AXES[(kind, name)]


def test_mha_out_proj_is_a_linear_row():
    attention = nn.MultiheadAttention(4, 2)
    assert per_unit_axis(attention.out_proj, "weight") == 1


def test_grouped_transposed_convolution_asks_for_an_axis_and_binds_nothing():
    model = nn.Sequential(nn.Linear(2, 2), nn.ConvTranspose2d(4, 6, 3, groups=2))
    with pytest.raises(ValueError, match=r"groups=2 .*explicit `axis`"):
        constrain(model, {"0.weight": "max_norm", "1.weight": "max_norm"})
    assert list(binding.bound(model)) == []
    handle = constrain(model, {"1.weight": constraints.MaxNorm(1.0, axis=[1, 2, 3])})
    assert handle.matched == ["1.weight"]


def test_describe_shows_the_axis_used():
    model = nn.ModuleDict({"rnn": nn.GRU(3, 4), "norm": nn.LayerNorm(4), "attention": nn.MultiheadAttention(4, 2)})
    constrain(model, {"rnn.weight_hh_l0": "max_norm", "norm.weight": "unit_norm",
                      "attention.in_proj_weight": constraints.MinMaxNorm(0.1, 0.5)})
    table = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[-1] for line in describe(model).splitlines()}
    assert table["rnn.weight_hh_l0"] == "MaxNorm(max_value=2, axis=1)"
    assert table["norm.weight"] == "UnitNorm(axis=[])"
    assert table["attention.in_proj_weight"] == "MinMaxNorm(min_value=0.1, max_value=0.5, rate=1.0, axis=1)"
    assert table["rnn.bias_ih_l0"] == "-"


class Mixed(nn.Module):
    """One of each module, chained so every parameter gets a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(3, 4, 2)
        self.norm = nn.BatchNorm1d(4)
        self.act = nn.PReLU(4)
        self.lstm = nn.LSTM(4, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(8, 4, batch_first=True)
        self.rnn = nn.RNN(4, 4, batch_first=True)
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
        self.layer_norm = nn.LayerNorm(4)
        self.group_norm = nn.GroupNorm(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.up(x))).transpose(1, 2)  # (batch, time, 4)
        h = self.rnn(self.gru(self.lstm(h)[0])[0])[0]
        h = self.layer_norm(h + self.attention(h, h, h)[0])
        return self.group_norm(h.transpose(1, 2)).sum(dim=(1, 2))


def _unit_norms(param: torch.Tensor, axis: int | list[int]) -> torch.Tensor:
    w = param.detach()
    return w.abs() if axis == [] else torch.linalg.vector_norm(w, dim=axis)


def test_training_keeps_every_unit_within_its_bound():
    torch.manual_seed(0)
    model = Mixed()
    bound = 0.3
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    # Predicate selector: every parameter whose module has a known per-unit axis.
    handle = constrain(model, {lambda name, param, module: per_unit_axis(module, name.rsplit(".", 1)[-1]) is not None:
                               constraints.MaxNorm(bound)}, optimizer=optimizer)
    owners = dict(model.named_modules())
    axes = {}
    for name in handle.matched:
        owner, _, attr = name.rpartition(".")
        axes[name] = per_unit_axis(owners[owner], attr)
    # Linear and convolution biases keep Keras's default axis (they have no per-unit entry in the table).
    assert {n for n, _ in model.named_parameters()} - set(axes) == {"up.bias", "attention.out_proj.bias"}
    exceeded = []
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, target = torch.randn(5, 3, 6, generator=g), 10 * torch.randn(5, generator=g)
        optimizer.zero_grad()
        loss = (model(x) - target).pow(2).mean()
        loss.backward()
        with torch.no_grad():  # what the update alone would give, before the projection
            exceeded.append(max(
                _unit_norms(p - 0.5 * p.grad, axes[n]).max().item() for n, p in model.named_parameters() if n in axes))
        optimizer.step()
        for name, axis in axes.items():
            param = model.get_parameter(name)
            assert _unit_norms(param, axis).max().item() <= bound + 1e-6, name
    assert max(exceeded) > bound  # the bound was binding
