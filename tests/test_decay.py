"""``weightwise.decay``: weight decay by rule, checked against torch's AdamW, Adam, SGD and NumPy.

The references: ``torch.optim.AdamW(weight_decay=wd)`` for the decoupled mode (with
hand-built decay / no-decay parameter groups where the model has biases and
normalization layers), ``torch.optim.Adam(weight_decay=wd)`` and ``torch.optim.SGD(weight_decay=wd)``
for the coupled ``"l2"`` mode, and NumPy for ``"independent"`` and for schedules.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import numpy as np
import pytest
import torch

import weightwise
from weightwise import clock, layers, optimizers
from weightwise.decay import DECAYS_ATTR, DecayHandle, decay, decayable

# Both sides run the same float32 operations in the same order (the decay is torch.optim.AdamW's own
# ``param.mul_(1 - lr * weight_decay)``, the l2 term torch's ``grad.add(param, alpha=weight_decay)``), so
# the weights agree bit for bit (measured: 0.0 after 200 steps); the issue asks for 1e-6.
ATOL = 0.0
STEPS = 60


def mlp(bias: bool) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16, bias=bias), torch.nn.Tanh(), torch.nn.Linear(16, 16, bias=bias), torch.nn.ReLU(),
        torch.nn.Linear(16, 3, bias=bias),
    )


def cnn(bias: bool) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, bias=bias), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1, bias=bias),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3, bias=bias),
    )


def with_norms() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3),
    )


def batches(model: torch.nn.Module, steps: int = STEPS, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shape = (8, 6) if isinstance(model[0], torch.nn.Linear) else (8, 2, 6, 6)
    return [(torch.randn(shape, generator=generator), torch.randn(8, 3, generator=generator)) for _ in range(steps)]


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, data: list[Any], scheduler: Any = None) -> None:
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def twins(make: Any, *args: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    model = make(*args)
    return model, copy.deepcopy(model)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, initial: torch.nn.Module) -> None:
    for (name, p), q, p0 in zip(a.named_parameters(), b.parameters(), initial.parameters()):
        assert (q - p0).abs().max() > 1e-3, f"{name} did not move: the comparison would prove nothing"
        torch.testing.assert_close(p, q, atol=ATOL, rtol=0, msg=name)


def step_lr(opt: torch.optim.Optimizer) -> Any:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=15, gamma=0.3)


def train_both(ours: torch.nn.Module, opt: Any, reference: torch.nn.Module, reference_opt: Any,
               initial: torch.nn.Module, schedule: bool = False) -> None:
    """The same batches (and lr schedule) for both; then the same weights, and every weight moved."""
    data = batches(ours)
    train(ours, opt, data, step_lr(opt) if schedule else None)
    train(reference, reference_opt, data, step_lr(reference_opt) if schedule else None)
    assert_same_weights(ours, reference, initial)


# -- decoupled: torch's AdamW ----------------------------------------------------------------
@pytest.mark.parametrize("make", [mlp, cnn])
@pytest.mark.parametrize("schedule", [False, True], ids=["constant-lr", "step-lr"])
def test_adam_with_decay_is_adamw(make: Any, schedule: bool) -> None:
    ours, reference = twins(make, False)
    initial = copy.deepcopy(ours)
    opt = torch.optim.Adam(ours.parameters(), lr=0.01)
    handle = decay(ours, 0.1, optimizer=opt)
    assert handle.matched == [name for name, _ in ours.named_parameters()]  # every parameter is a weight here
    adamw = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1)
    train_both(ours, opt, reference, adamw, initial, schedule)


def test_the_decay_changes_the_result() -> None:
    """Without decay() the weights end elsewhere: the equalities in this file can fail."""
    ours, plain = twins(mlp, False)
    opt = torch.optim.Adam(ours.parameters(), lr=0.01)
    decay(ours, 0.1, optimizer=opt)
    data = batches(ours)
    train(ours, opt, data)
    train(plain, torch.optim.Adam(plain.parameters(), lr=0.01), data)
    assert all((p - q).abs().max() > 1e-3 for p, q in zip(ours.parameters(), plain.parameters()))


@pytest.mark.parametrize("schedule", [False, True], ids=["constant-lr", "step-lr"])
def test_biases_and_norms_left_out_is_adamw_with_hand_built_groups(schedule: bool) -> None:
    ours, reference = twins(with_norms)
    initial = copy.deepcopy(ours)
    opt = torch.optim.Adam(ours.parameters(), lr=0.01)
    handle = decay(ours, 0.1, optimizer=opt)
    assert handle.matched == ["0.weight", "4.weight", "6.weight"]
    # What people write by hand today: a decay group and a no-decay group.
    matrices = [reference[0].weight, reference[4].weight, reference[6].weight]
    others = [p for p in reference.parameters() if all(p is not m for m in matrices)]
    adamw = torch.optim.AdamW([{"params": matrices}, {"params": others, "weight_decay": 0.0}], lr=0.01, weight_decay=0.1)
    train_both(ours, opt, reference, adamw, initial, schedule)


def test_each_parameter_group_decays_with_its_own_lr() -> None:
    ours, reference = twins(mlp, True)
    initial = copy.deepcopy(ours)

    def groups(m: torch.nn.Module) -> list[dict[str, Any]]:
        return [{"params": m[0].parameters(), "lr": 0.02}, {"params": [*m[2].parameters(), *m[4].parameters()]}]

    opt = torch.optim.Adam(groups(ours), lr=0.005)
    decay(ours, 0.2, optimizer=opt)
    adamw = torch.optim.AdamW(
        [{**g, "weight_decay": 0.2} for g in groups(reference)], lr=0.005,
    )
    for group in list(adamw.param_groups):  # biases by hand: a group of their own, per lr
        biases = [p for p in group["params"] if p.dim() == 1]
        group["params"] = [p for p in group["params"] if p.dim() > 1]
        adamw.add_param_group({"params": biases, "lr": group["lr"], "weight_decay": 0.0})
    train_both(ours, opt, reference, adamw, initial)


def test_only_parameters_with_a_gradient_decay() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    decay(model, 0.1, optimizer=opt)
    before = [p.detach().clone() for p in model.parameters()]
    model[0].weight.grad = torch.zeros(2, 2)
    opt.step()
    torch.testing.assert_close(model[0].weight.detach(), before[0] * (1 - 0.5 * 0.1))
    torch.testing.assert_close(model[1].weight.detach(), before[1], rtol=0, atol=0)


# -- l2: torch's coupled weight_decay ----------------------------------------------------------
@pytest.mark.parametrize(("kind", "kwargs"), [
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (torch.optim.SGD, {"lr": 0.05}),
], ids=["Adam", "SGD-momentum", "SGD"])
def test_l2_mode_is_torch_weight_decay(kind: type, kwargs: dict[str, Any]) -> None:
    ours, reference = twins(mlp, False)
    initial = copy.deepcopy(ours)
    opt = kind(ours.parameters(), **kwargs)
    decay(ours, 0.05, optimizer=opt, mode="l2")
    train_both(ours, opt, reference, kind(reference.parameters(), weight_decay=0.05, **kwargs), initial)


# -- independent: NumPy ------------------------------------------------------------------------
def test_independent_mode_against_numpy() -> None:
    """SGD with a changing lr: ``w <- (1 - wd) w - lr g``, the decay not scaled by lr."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4))
    grads = rng.normal(size=(20, 3, 4))
    lrs = [0.1 if k < 10 else 0.01 for k in range(20)]
    param = torch.nn.Parameter(torch.tensor(w0))
    holder = torch.nn.Module()
    holder.weight = param
    opt = torch.optim.SGD([param], lr=0.1)
    handle = decay(holder, {"weight": 0.05}, optimizer=opt, mode="independent")
    assert handle.factors == {"weight": 0.05}
    expected = w0.copy()
    for lr, g in zip(lrs, grads):
        for group in opt.param_groups:
            group["lr"] = lr
        param.grad = torch.tensor(g)
        opt.step()
        expected = (1 - 0.05) * expected - lr * g
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_scheduled_factor_follows_the_torch_optimizer_steps() -> None:
    """A schedule is evaluated at the torch optimizer's own step count (0 for the first step)."""
    schedule = optimizers.schedules.ExponentialDecay(0.2, decay_steps=3, decay_rate=0.5)
    param = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    holder = torch.nn.Module()
    holder.weight = param
    opt = torch.optim.SGD([param], lr=0.5)
    decay(holder, schedule, optimizer=opt)
    clock.set_step(0)
    expected = 1.0
    for step in range(8):
        param.grad = torch.zeros_like(param)
        opt.step()
        assert clock.step() == step + 1
        expected *= 1 - 0.5 * 0.2 * 0.5 ** (step / 3)
    np.testing.assert_allclose(param.detach().numpy(), np.full((2, 2), expected), rtol=1e-12)


def test_scheduled_factor_with_a_weightwise_optimizer_reads_its_iterations() -> None:
    clock.set_step(50)  # another loop's step: a weightwise optimizer's own iterations count instead
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False))
    opt = optimizers.SGD(learning_rate=0.5)
    opt.build(list(model.parameters()))
    decay(model, lambda step: 0.1 * (step + 1), optimizer=opt, mode="independent")
    w = model[0].weight.detach().clone()
    for step in range(4):
        model[0].weight.grad = torch.zeros(3, 3)
        opt.step()
        w = w * (1 - 0.1 * (step + 1))
    torch.testing.assert_close(model[0].weight.detach(), w)


# -- what a bare factor decays: by module type and rank ----------------------------------------
class Custom(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.matrix = torch.nn.Parameter(torch.ones(3, 3))
        self.vector = torch.nn.Parameter(torch.ones(3))
        self.scalar = torch.nn.Parameter(torch.ones(()))


def zoo() -> torch.nn.Module:
    nn = torch.nn
    return nn.ModuleDict({
        "linear": nn.Linear(4, 4), "bilinear": nn.Bilinear(2, 3, 4), "conv": nn.Conv1d(2, 3, 3),
        "deconv": nn.ConvTranspose2d(2, 3, 3), "bn": nn.BatchNorm1d(3), "inorm": nn.InstanceNorm2d(3, affine=True),
        "ln": nn.LayerNorm(3), "gn": nn.GroupNorm(1, 3), "rms": nn.RMSNorm(3), "emb": nn.Embedding(5, 3),
        "bag": nn.EmbeddingBag(5, 3), "prelu": nn.PReLU(), "mha": nn.MultiheadAttention(4, 2, add_bias_kv=True),
        "lstm": nn.LSTM(3, 2, bidirectional=True), "gru_cell": nn.GRUCell(3, 2), "custom": Custom(),
    })


def test_bare_factor_decays_weights_by_type_and_rank() -> None:
    model = zoo()
    handle = decay(model, 0.01, optimizer=torch.optim.AdamW(model.parameters(), weight_decay=0.0))
    assert handle.matched == [
        "linear.weight", "bilinear.weight", "conv.weight", "deconv.weight", "mha.in_proj_weight",
        "mha.out_proj.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l0_reverse",
        "lstm.weight_hh_l0_reverse", "gru_cell.weight_ih", "gru_cell.weight_hh", "custom.matrix",
    ]
    assert handle.left_out == {
        "linear.bias": "bias of Linear (rank 1)",
        "bilinear.bias": "bias of Bilinear (rank 1)",
        "conv.bias": "bias of Conv1d (rank 1)",
        "deconv.bias": "bias of ConvTranspose2d (rank 1)",
        "bn.weight": "normalization layer BatchNorm1d",
        "bn.bias": "normalization layer BatchNorm1d",
        "inorm.weight": "normalization layer InstanceNorm2d",
        "inorm.bias": "normalization layer InstanceNorm2d",
        "ln.weight": "normalization layer LayerNorm",
        "ln.bias": "normalization layer LayerNorm",
        "gn.weight": "normalization layer GroupNorm",
        "gn.bias": "normalization layer GroupNorm",
        "rms.weight": "normalization layer RMSNorm",
        "emb.weight": "embedding table of Embedding",
        "bag.weight": "embedding table of EmbeddingBag",
        "prelu.weight": "PReLU slope of PReLU",
        "mha.in_proj_bias": "bias of MultiheadAttention (rank 1)",
        "mha.bias_k": "bias of MultiheadAttention (rank 3)",
        "mha.bias_v": "bias of MultiheadAttention (rank 3)",
        "mha.out_proj.bias": "bias of NonDynamicallyQuantizableLinear (rank 1)",
        "lstm.bias_ih_l0": "bias of LSTM (rank 1)",
        "lstm.bias_hh_l0": "bias of LSTM (rank 1)",
        "lstm.bias_ih_l0_reverse": "bias of LSTM (rank 1)",
        "lstm.bias_hh_l0_reverse": "bias of LSTM (rank 1)",
        "gru_cell.bias_ih": "bias of GRUCell (rank 1)",
        "gru_cell.bias_hh": "bias of GRUCell (rank 1)",
        "custom.vector": "rank-1 parameter of Custom",
        "custom.scalar": "rank-0 parameter of Custom",
    }
    text = handle.describe()
    assert re.search(r"custom.matrix +\(3, 3\) +0.01 \(decoupled\) +rank-2 parameter of unknown type Custom: "
                     r"decayed by rank", text)
    assert text.splitlines()[0].split() == ["parameter", "shape", "decay", "why"]
    assert "0.01 (decoupled)" in text


def test_names_never_decide() -> None:
    """A parameter called "bias" of rank 2 in an unknown module decays; a matrix in a LayerNorm does not."""
    odd = torch.nn.Module()
    odd.bias = torch.nn.Parameter(torch.ones(2, 2))
    norm = torch.nn.LayerNorm((2, 2))  # its weight is a matrix
    model = torch.nn.ModuleDict({"odd": odd, "norm": norm})
    handle = decay(model, 0.01, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert handle.matched == ["odd.bias"]
    assert handle.left_out["norm.weight"] == "normalization layer LayerNorm"


def keras_style_models() -> list[tuple[str, Any, Any, list[str]]]:
    torch.manual_seed(0)
    sequence = weightwise.Sequential([
        layers.Input(shape=(5,), dtype="int64"), layers.Embedding(10, 4), layers.LSTM(6), layers.Dense(3),
    ])
    image = weightwise.Sequential([
        layers.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3), layers.BatchNormalization(),
        layers.DepthwiseConv2D(3), layers.Flatten(), layers.Dense(3),
    ])
    generator = torch.Generator().manual_seed(1)
    tokens = [torch.randint(0, 10, (8, 5), generator=generator) for _ in range(STEPS)]
    images = [torch.randn(8, 6, 6, 2, generator=generator) for _ in range(STEPS)]
    return [
        ("sequence", sequence, tokens, ["1.cell.kernel", "1.cell.recurrent_kernel", "2.kernel"]),
        ("image", image, images, ["0.kernel", "2.kernel", "4.kernel"]),
    ]


@pytest.mark.parametrize("case", range(2), ids=["embedding-lstm-dense", "conv-batchnorm-depthwise-dense"])
def test_keras_style_model_trained_by_a_torch_loop(case: int) -> None:
    name, model, inputs, kernels = keras_style_models()[case]
    reference = copy.deepcopy(model)
    initial = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    handle = decay(model, 0.1, optimizer=opt)
    assert handle.matched == kernels
    reasons = set(handle.left_out.values())
    if name == "sequence":
        assert reasons == {"embedding table of Embedding", "bias of LSTMCell (rank 1)", "bias of Dense (rank 1)"}
    else:
        assert reasons == {"bias of Conv2D (rank 1)", "normalization layer BatchNormalization",
                           "bias of DepthwiseConv2D (rank 1)", "bias of Dense (rank 1)"}
    named = dict(reference.named_parameters())
    matrices = [named[k] for k in kernels]
    others = [p for k, p in named.items() if k not in kernels and p.requires_grad]
    adamw = torch.optim.AdamW([{"params": matrices}, {"params": others, "weight_decay": 0.0}], lr=0.01, weight_decay=0.1)
    for net, optimizer in ((model, opt), (reference, adamw)):
        net.train()
        for x in inputs:
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for (key, p), q, p0 in zip(model.named_parameters(), reference.parameters(), initial.parameters()):
        if p.requires_grad:
            assert (q - p0).abs().max() > 1e-3, key
        torch.testing.assert_close(p, q, atol=ATOL, rtol=0, msg=key)


def test_weightwise_adam_with_decay_is_weightwise_adamw_with_exclusions() -> None:
    """The two ways of leaving biases and norms out: decay() by type, exclude_from_weight_decay() by name."""
    _, model, inputs, _ = keras_style_models()[1]
    reference = copy.deepcopy(model)
    opt = optimizers.Adam(learning_rate=0.01)
    opt.build(model.trainable_weights)
    decay(model, 0.1, optimizer=opt)
    adamw = optimizers.AdamW(learning_rate=0.01, weight_decay=0.1)
    adamw.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    adamw.build(reference.trainable_weights)
    for net, optimizer in ((model, opt), (reference, adamw)):
        for x in inputs[:20]:
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for (key, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=ATOL, rtol=0, msg=key)


def test_keras_style_attention_and_gru() -> None:
    """EinsumDense biases of rank 2 and GRU's rank-2 bias are biases; kernels decay."""
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=3)
    attention(torch.ones(1, 4, 6), torch.ones(1, 4, 6))
    gru = layers.GRU(3)
    gru(torch.ones(1, 2, 4))
    model = torch.nn.ModuleDict({"attention": attention, "gru": gru})
    handle = decay(model, 0.01, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert all(name.endswith("kernel") for name in handle.matched)
    assert len(handle.matched) == 4 + 2
    assert handle.left_out["gru.cell.bias"] == "bias of GRUCell (rank 2)"
    assert any(why == "bias of EinsumDense (rank 2)" for why in handle.left_out.values())


# -- rules -------------------------------------------------------------------------------------
def test_rules_select_later_rules_override_and_zero_or_none_leave_out() -> None:
    model = with_norms()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = decay(model, [(decayable, 0.01), ("6.*", 0.5), ((torch.nn.Conv2d, "weight"), None), ("5.weight", 0.02)],
                   optimizer=opt)
    assert handle.factors == {"4.weight": 0.01, "5.weight": 0.02, "6.weight": 0.5, "6.bias": 0.5}
    assert handle.left_out["0.weight"] == "rule (Conv2d, 'weight') leaves it out"
    assert handle.left_out["0.bias"] == "no rule selects it (bias of Conv2d (rank 1))"
    assert handle.left_out["1.weight"] == "no rule selects it (normalization layer BatchNorm2d)"


def test_describe_a_schedule() -> None:
    model = mlp(False)
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    handle = decay(model, {"0.weight": schedule, "2.weight": 0.5}, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   mode="l2")
    lines = handle.describe().splitlines()
    assert "schedule ExponentialDecay (l2)" in lines[1] and "0.5 (l2)" in lines[2]


def test_remove_stops_the_decay_and_the_record() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    with decay(model, 0.5, optimizer=opt) as handle:
        assert isinstance(handle, DecayHandle)
        assert model[0].__dict__[DECAYS_ATTR] == {"weight": [(0.5, "decoupled")]}
        model[0].weight.grad = torch.zeros(2, 2)
        before = model[0].weight.detach().clone()
        opt.step()
        torch.testing.assert_close(model[0].weight.detach(), 0.5 * before)
    assert model[0].__dict__[DECAYS_ATTR] == {}
    assert not opt._optimizer_step_pre_hooks
    before = model[0].weight.detach().clone()
    opt.step()
    torch.testing.assert_close(model[0].weight.detach(), before, rtol=0, atol=0)
    handle.remove()  # twice is harmless


def test_two_calls_add_up() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    decay(model, 0.1, optimizer=opt)
    decay(model, 0.2, optimizer=opt, mode="independent")
    before = model[0].weight.detach().clone()
    model[0].weight.grad = torch.zeros(2, 2)
    opt.step()
    torch.testing.assert_close(model[0].weight.detach(), before * 0.9 * 0.8)


def test_frozen_parameters_the_optimizer_does_not_hold_are_left_out() -> None:
    model = mlp(True)
    model[0].weight.requires_grad_(False)
    opt = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), weight_decay=0.0)
    handle = decay(model, 0.01, optimizer=opt)
    assert handle.matched == ["2.weight", "4.weight"]
    assert handle.left_out["0.weight"] == "frozen and not held by the optimizer (weight of Linear)"


# -- bad input: a named error, and nothing attached ----------------------------------------------
def bad_cases() -> list[tuple[dict[str, Any], type, str]]:
    return [
        ({"mode": "adamw"}, ValueError, r"`mode`: expected one of \('decoupled', 'independent', 'l2'\). Received: mode='adamw'"),
        ({"rules": -0.1}, ValueError, r"`rules`: expected a finite float >= 0. Received: rules=-0.1"),
        ({"rules": float("nan")}, ValueError, r"`rules`.*Received: rules=nan"),
        ({"rules": True}, ValueError, r"`rules`.*Received: rules=True"),
        ({"rules": None}, TypeError, r"`rules`.*Received: rules=None"),
        ({"rules": {"*.weight": -1}}, ValueError, r"^decay rule '\*.weight': invalid value for argument `rules`.*rules=-1"),
        ({"rules": {"*.weight": "0.1"}}, ValueError, r"^decay rule '\*.weight': .*Received: rules='0.1'"),
        ({"rules": {"*.weight": torch.nn.Linear}}, ValueError, r"not a class"),
        ({"rules": {"*.wieght": 0.1}}, ValueError, r"The decay rule '\*.wieght' matches no parameter"),
        ({"rules": {3: 0.1}}, TypeError, r"Invalid selector"),
        ({"optimizer": "adam"}, TypeError, r"`optimizer`: expected a torch.optim.Optimizer.*Received: optimizer='adam'"),
        ({"optimizer": optimizers.Adam()}, ValueError, r"`optimizer`: the weightwise optimizer 'adam' is not built"),
        ({"optimizer": "missing"}, ValueError, r"`optimizer`: SGD does not update 1 of the parameters to decay: \['2.weight'\]"),
        ({"strict": "yes"}, TypeError, r"`strict`: expected a bool"),
    ]


@pytest.mark.parametrize(("kwargs", "error", "pattern"), bad_cases(), ids=lambda c: str(c)[:40])
def test_bad_input_is_named_and_attaches_nothing(kwargs: dict[str, Any], error: type, pattern: str) -> None:
    model = mlp(True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    if kwargs.get("optimizer") == "missing":  # an optimizer over the first layer only
        kwargs = {"optimizer": torch.optim.SGD([*model[0].parameters()], lr=0.1), "rules": {"2.weight": 0.1}}
    arguments = {"rules": 0.1, "optimizer": opt, **kwargs}
    with pytest.raises(error, match=pattern):
        decay(model, **arguments)
    target = arguments["optimizer"]
    if isinstance(target, torch.optim.Optimizer):
        assert not target._optimizer_step_pre_hooks
    assert not opt._optimizer_step_pre_hooks
    assert all(DECAYS_ATTR not in m.__dict__ for m in model.modules())


def test_a_module_that_is_not_one() -> None:
    with pytest.raises(TypeError, match="module"):
        decay("model", 0.1, optimizer=torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1))


def test_a_schedule_that_goes_negative_is_named_at_the_step() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    decay(model, lambda step: 0.1 - step, optimizer=opt)
    clock.set_step(0)  # the clock of this loop, which the followed optimizer writes from now on
    model[0].weight.grad = torch.zeros(2, 2)
    opt.step()
    with pytest.raises(ValueError, match=r"`rules`: the schedule .* gave -0.9 at step 1"):
        opt.step()


def test_factor_zero_decays_nothing() -> None:
    model = mlp(True)
    handle = decay(model, 0, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert handle.matched == []
    assert handle.left_out["0.weight"] == "factor 0 (weight of Linear)"


def test_math_of_the_modes_in_one_step() -> None:
    """One SGD step from w = 1 with gradient g = 1, lr = 0.5, wd = 0.1, by hand."""
    results = {}
    for mode in ("decoupled", "independent", "l2"):
        param = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
        holder = torch.nn.Module()
        holder.weight = param
        opt = torch.optim.SGD([param], lr=0.5)
        decay(holder, 0.1, optimizer=opt, mode=mode)
        param.grad = torch.ones(2, 2, dtype=torch.float64)
        opt.step()
        results[mode] = param.detach()[0, 0].item()
    assert math.isclose(results["decoupled"], (1 - 0.5 * 0.1) - 0.5)
    assert math.isclose(results["independent"], (1 - 0.1) - 0.5)
    assert math.isclose(results["l2"], 1 - 0.5 * (1 + 0.1))


def test_fit_with_decay_is_fit_with_adamw_and_exclusions() -> None:
    """In ``fit``: weightwise Adam plus decay() ends where AdamW with exclude_from_weight_decay() does."""
    _, model, inputs, _ = keras_style_models()[1]
    reference = copy.deepcopy(model)
    x = torch.cat(inputs[:4]).numpy()
    y = np.random.default_rng(0).normal(size=(len(x), 3)).astype("float32")
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="mse")
    model.optimizer.build(model.trainable_weights)
    decay(model, 0.1, optimizer=model.optimizer)
    adamw = optimizers.AdamW(learning_rate=0.01, weight_decay=0.1)
    adamw.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    reference.compile(optimizer=adamw, loss="mse")
    for net in (model, reference):
        net.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for (key, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=ATOL, rtol=0, msg=key)


def test_a_step_the_grad_scaler_skips_decays_nothing() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    decay(model, 0.1, optimizer=opt)
    scaler = torch.amp.GradScaler("cpu")
    before = model[0].weight.detach().clone()
    scaler.scale(model(torch.full((1, 2), float("inf"))).sum()).backward()  # an overflow: inf gradients
    scaler.step(opt)
    torch.testing.assert_close(model[0].weight.detach(), before, rtol=0, atol=0)
    opt.zero_grad()
    scaler.update()
    scaler.scale(model(torch.zeros(1, 2)).sum()).backward()  # a finite step: the decay happens
    scaler.step(opt)
    torch.testing.assert_close(model[0].weight.detach(), before * (1 - 0.5 * 0.1))


def test_the_default_rule_is_reachable_from_the_function_as_a_selector() -> None:
    import weightwise

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = weightwise.decay(model, {weightwise.decay.decayable: 0.1, "2.*": 0}, optimizer=opt)
    assert handle.matched == ["0.weight"]
