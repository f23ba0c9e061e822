"""The engine on FSDP2-sharded weights (DTensors), on 2 gloo ranks launched by the tests.

``fully_shard`` splits each parameter on dim 0 across the ranks. Penalties must be the full
penalty of the logical weight (every rank adds it once: FSDP2 averages the data gradients),
projections must act on the full logical weight (a norm over the sharded dimension is reduced
across the ranks), and every value handed back to a loop is an ordinary tensor. Each check is
against NumPy, or against the same rules on an unsharded copy of the model in this process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ranks import gloo, run_ranks
from torch import nn

from weightwise import (
    apply_constraints,
    apply_proximal,
    binding,
    constrain,
    decay,
    engine,
    lipschitz_bound,
    regularization_loss,
    regularize,
    regularize_activity,
    report,
)
from weightwise.constraints import MaxNorm, MinMaxNorm, NonNeg, SpectralNorm, UnitNorm
from weightwise.layers import Dense
from weightwise.regularizers import (
    L1,
    L1L2,
    L2,
    L2SP,
    GroupLasso,
    OrthogonalRegularizer,
    ProximalL1,
)

dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)
fsdp = pytest.importorskip("torch.distributed.fsdp")

STEPS = 3
BATCH = 8  # the global batch; each of the 2 ranks takes half
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole logical tensor, detached (a collective for a DTensor: every rank calls it)."""
    t = t.detach()
    return t.full_tensor() if hasattr(t, "full_tensor") else t.clone()


def _fill(model: nn.Module) -> nn.Module:
    """The same weights in every process, whatever the initializers draw."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.6)
    return model


def _quartic(w: torch.Tensor) -> torch.Tensor:
    return 0.05 * (w**4).sum()


# -- a hand-written loop ------------------------------------------------------------------------


class _Net(nn.Module):
    """Linear-Tanh-Linear, a Keras-layout Dense (kernel (in, out)) and a head; optionally a root weight."""

    def __init__(self, root_weight: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6))
        self.dense = Dense(4, activation="tanh")
        self.dense(torch.zeros(1, 6))  # builds the kernel (6, 4)
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(2)) if root_weight else None
        _fill(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.dense(self.body(x)))
        return out if self.scale is None else out * self.scale


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(STEPS, BATCH, 4, generator=g), torch.randn(STEPS, BATCH, 2, generator=g)


def _train(net: _Net, rows: slice) -> dict:
    """A plain torch loop: regularization_loss in the loss, constraints through the optimizer hook."""
    opt = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.5)
    penalties = {"body.0.weight": L1(0.01), "body.2.weight": L2(0.02), "dense.kernel": L1L2(0.01, 0.02),
                 "head.weight": _quartic, "body.0.bias": L2(0.02), "body.2.bias": ProximalL1(0.02)}
    limits = {"dense.kernel": MaxNorm(0.6, axis=0),  # Keras layout: each unit's column, across the shards
              "body.0.weight": MaxNorm(0.5),  # nn.Linear: axis=1, each row, within a shard
              "body.2.weight": MinMaxNorm(0.3, 0.5, axis=0),  # across the shards
              "head.weight": UnitNorm(), "head.bias": NonNeg()}
    if net.scale is not None:
        penalties["scale"], limits["scale"] = L2(0.02), NonNeg()
    regularize(net, penalties, optimizer=opt)  # the proximal step after each update, by the optimizer hook
    constrain(net, limits, optimizer=opt)
    regularize_activity(net.body[2], L2(0.01))
    plan_penalties, losses, weights = [], [], []
    for x, y in zip(*_data()):
        opt.zero_grad()
        out = net(x[rows])
        penalty = regularization_loss(net)
        assert type(penalty) is torch.Tensor  # an ordinary tensor, also under FSDP2
        loss = F.mse_loss(out, y[rows]) + penalty
        loss.backward()
        plan = engine.plan_for(net)
        value = plan.grouped_penalty_value() + plan.autograd_penalty()
        assert type(value) is torch.Tensor
        plan_penalties.append(float(value.detach()))
        losses.append(float(penalty))
        opt.step()
        weights.append({name: _full(p) for name, p in net.named_parameters()})
    return {"plan_penalties": plan_penalties, "losses": losses, "weights": weights}


def _loop_worker(rank: int, world_size: int, port: int, out: str, root_weight: bool) -> None:
    with gloo(rank, world_size, port):
        net = _Net(root_weight)
        for module in (net.body[0], net.body[2], net.dense, net.head, net):
            fsdp.fully_shard(module)
        assert all(hasattr(p, "device_mesh") for p in net.parameters())  # every weight is sharded
        half = BATCH // world_size
        torch.save(_train(net, slice(rank * half, (rank + 1) * half)), f"{out}/rank{rank}.pt")


def _check_constraints(weights: dict) -> None:
    eps = 1e-5
    assert torch.linalg.vector_norm(weights["dense.kernel"], dim=0).max() <= 0.6 + eps
    assert torch.linalg.vector_norm(weights["body.0.weight"], dim=1).max() <= 0.5 + eps
    norms = torch.linalg.vector_norm(weights["body.2.weight"], dim=0)
    assert norms.min() >= 0.3 - eps and norms.max() <= 0.5 + eps
    torch.testing.assert_close(torch.linalg.vector_norm(weights["head.weight"], dim=1), torch.ones(2), **TOL)
    assert weights["head.bias"].min() >= 0
    if "scale" in weights:
        assert weights["scale"].min() >= 0


@pytest.mark.parametrize("root_weight", [False, True], ids=["sharded-root", "root-owns-a-weight"])
def test_hand_loop_on_fully_sharded_model_equals_one_process_with_the_global_batch(tmp_path, root_weight):
    run_ranks(_loop_worker, str(tmp_path), root_weight, timeout=90)  # by design a few seconds of work
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = _train(_Net(root_weight), slice(None))

    for step, expected in enumerate(single["weights"]):
        for result in ranks:
            assert set(result["weights"][step]) == set(expected)
            for name, value in expected.items():
                torch.testing.assert_close(result["weights"][step][name], value, **TOL, msg=f"{name} at step {step}")
            _check_constraints(result["weights"][step])
        for name in expected:
            assert torch.equal(ranks[0]["weights"][step][name], ranks[1]["weights"][step][name])
    # The weight penalty is the full one on every rank; the activity penalty of each rank's half
    # of the batch averages (as the gradients do) to that of the global batch.
    for result in ranks:
        np.testing.assert_allclose(result["plan_penalties"], single["plan_penalties"], rtol=1e-5)
    np.testing.assert_allclose(np.mean([r["losses"] for r in ranks], axis=0), single["losses"], rtol=1e-5)
    # The column bound over the sharded dimension was reached (the projection acted), and training moved the weights.
    first = single["weights"][0]
    assert torch.linalg.vector_norm(first["dense.kernel"], dim=0).max() == pytest.approx(0.6, abs=1e-5)
    assert not torch.allclose(single["weights"][-1]["body.2.weight"], first["body.2.weight"])


# -- the engine pieces that fit uses --------------------------------------------------------------


def _pieces_model() -> nn.Sequential:
    torch.manual_seed(0)
    dense = Dense(4, name="dense")
    dense(torch.zeros(1, 6))  # kernel (6, 4), Keras's layout
    # a, c, e are sharded below; b, d stay plain tensors (the same numbers on every rank).
    return _fill(nn.Sequential(nn.Linear(4, 6), nn.Linear(4, 6), dense, nn.Linear(6, 3), nn.Linear(6, 5)))


def _clamp(w: torch.Tensor) -> torch.Tensor:
    return w.clamp(-0.1, 0.1)


def _whole(w: torch.Tensor) -> torch.Tensor:
    """A custom constraint that hands back an ordinary tensor of the full shape."""
    return (_full(w) * 0.5).to(torch.float32)


def _bind_pieces(model: nn.Sequential) -> None:
    a, b, c, d, e = model
    binding.bind(a, "weight", regularizer=L1L2(0.01, 0.02), constraint=MaxNorm(0.5, axis=0))
    binding.bind(b, "weight", regularizer=L1L2(0.01, 0.02), constraint=MaxNorm(0.5, axis=0))
    binding.bind(a, "bias", regularizer=_quartic, constraint=_clamp)
    binding.bind(b, "bias", regularizer=ProximalL1(0.1), constraint=NonNeg())
    binding.bind(c, "kernel", regularizer=L2SP(0.05), constraint=SpectralNorm(1.0, power_iterations=30))
    binding.bind(c, "bias", regularizer=ProximalL1(0.1), constraint=_whole)
    binding.bind(d, "weight", regularizer=OrthogonalRegularizer(0.1), constraint=UnitNorm(axis=1))
    binding.bind(d, "bias", regularizer=L2(0.02), constraint=NonNeg())
    binding.bind(e, "weight", regularizer=OrthogonalRegularizer(0.1, mode="columns"),
                 constraint=MinMaxNorm(0.2, 0.4, axis=0))
    binding.bind(e, "bias", regularizer=GroupLasso(0.1, axis=0), constraint=MaxNorm(0.3, axis=0))


def _pieces(model: nn.Sequential) -> dict:
    """What fit and hand loops call, in order; every result whole."""
    a, b, c, d, _ = model
    names = [n for n, _ in model.named_parameters()]
    found: dict = {}
    with torch.no_grad():  # L2SP decays toward the weights as bound; move them off that reference
        c.kernel.mul_(1.5)
    plan = engine.plan_for(model)
    value, other = plan.grouped_penalty_value(), plan.autograd_penalty()
    assert type(value) is torch.Tensor and type(other) is torch.Tensor
    found["grouped"], found["other"] = value, other
    loss = regularization_loss(model)
    assert type(loss) is torch.Tensor
    found["loss"] = loss.detach()
    (loss + torch.ones(()).sum()).backward()  # adds to an ordinary loss
    found["autograd_grads"] = {n: _full(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    # fit's path: data gradients (here zero), the analytic gradients of the grouped penalties, the update.
    for n, p in model.named_parameters():
        p.grad = None if n == "4.weight" else torch.zeros_like(p)  # 4.weight took no part: not projected
    plan.add_penalty_gradients(scale=2.0)
    found["analytic_grads"] = {n: _full(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # every bound is exceeded
    found["before"] = {n: _full(p) for n, p in model.named_parameters()}
    engine.track(model)
    plan = engine.plan_for(model)
    plan.project(only_with_grad=True)
    found["projected"] = {n: _full(p) for n, p in model.named_parameters()}
    found["stats"] = {}
    for n in names:
        owner, attr = model[int(n.split(".")[0])], n.split(".")[1]
        stats = engine.last_projection(owner, attr)
        if stats is not None:
            assert type(stats.hits) is torch.Tensor and (stats.largest is None or type(stats.largest) is torch.Tensor)
            found["stats"][n] = (int(stats.hits), stats.units, None if stats.largest is None else float(stats.largest))
    apply_proximal(model, lr=0.5)
    found["proximal"] = {n: _full(p) for n, p in model.named_parameters()}
    apply_constraints(model)
    found["constrained"] = {n: _full(p) for n, p in model.named_parameters()}
    found["report"] = {row.name: row.penalty for row in report(model).rows}
    found["lipschitz"] = lipschitz_bound(nn.Sequential(a, nn.ReLU(), d))
    # Activity penalties of sharded and plain outputs, grouped by factor.
    out = torch.arange(12.0).reshape(4, 3) - 5
    binding.record_call_loss(a, binding.Activity(L1L2(0.01, 0.02), _like_weight(out, a.weight)))
    binding.record_call_loss(b, binding.Activity(L1L2(0.01, 0.02), out * 2))
    activity = engine.call_loss(model)
    assert type(activity) is torch.Tensor
    found["activity"] = activity
    binding.clear_call_losses(model)
    # Decoupled weight decay on a mix of sharded and plain weights, by the optimizer hook.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    decay(model, {"*.weight": 0.1}, optimizer=opt)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    found["decayed"] = {n: _full(p) for n, p in model.named_parameters()}
    return found


def _like_weight(value: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if not hasattr(weight, "device_mesh"):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value, weight.device_mesh, weight.placements)


def _pieces_worker(rank: int, world_size: int, port: int, out: str) -> None:
    from torch.distributed.tensor import distribute_tensor

    with gloo(rank, world_size, port):
        model = _pieces_model()
        _bind_pieces(model)  # bound before sharding: the rules follow the slots to the sharded weights
        for index in (0, 2, 4):
            fsdp.fully_shard(model[index])
        kinds = {n: hasattr(p, "device_mesh") for n, p in model.named_parameters()}
        assert kinds == {"0.weight": True, "0.bias": True, "1.weight": False, "1.bias": False, "2.kernel": True,
                         "2.bias": True, "3.weight": False, "3.bias": False, "4.weight": True, "4.bias": True}
        result = _pieces(model)
        # What a projection of the local shard alone would give for the Keras-layout kernel (axis 0 is sharded).
        kernel = torch.arange(24.0).reshape(6, 4) / 10 - 1
        sharded = distribute_tensor(kernel, model[2].kernel.device_mesh, [_shard0()])
        rule = MaxNorm(1.0, axis=0)
        result["whole"] = _full(rule(sharded))
        result["local"] = _full(_gather(rule(sharded.to_local())))
        # A custom rule that makes a plain tensor beside a sharded weight fails clearly, changing nothing.
        result["errors"] = []
        binding.bind(model[0], "bias", regularizer=_plain_factory, constraint=_plain_factory)
        before = _full(model[0].bias)
        for call in (lambda: regularization_loss(model), lambda: apply_constraints(model)):
            with pytest.raises(TypeError) as error:
                call()
            result["errors"].append(str(error.value))
        assert torch.equal(_full(model[0].bias), before)
        torch.save(result, f"{out}/rank{rank}.pt")


def _plain_factory(w: torch.Tensor) -> torch.Tensor:
    return w * torch.ones(w.shape)


def _shard0():
    from torch.distributed.tensor import Shard

    return Shard(0)


def _gather(local: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts)


def _max_norm(w: np.ndarray, bound: float, axis: int) -> np.ndarray:
    norms = np.sqrt((w * w).sum(axis=axis, keepdims=True))
    return w * np.clip(norms, 0, bound) / (1e-7 + norms)


def test_engine_pieces_on_sharded_weights_equal_the_dense_computation(tmp_path):
    run_ranks(_pieces_worker, str(tmp_path), timeout=90)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    model = _pieces_model()
    _bind_pieces(model)
    dense = _pieces(model)

    def same(x, y, where):
        if isinstance(x, dict):
            assert set(x) == set(y), where
            for key in x:
                same(x[key], y[key], f"{where}[{key!r}]")
        elif isinstance(x, torch.Tensor):
            torch.testing.assert_close(x, y, **TOL, msg=where)
        elif isinstance(x, tuple):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y)):
                same(u, v, f"{where}[{i}]")
        elif isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-5, abs=1e-6), where
        else:
            assert x == y, where

    for result in ranks:
        for message in result.pop("errors"):
            assert message.startswith("The rule <function _plain_factory") and "parameter '0.bias'" in message
            assert "mixed torch.Tensor and DTensor" in message
        same(result, {**dense, "whole": result["whole"], "local": result["local"]}, "sharded")
        # Against NumPy, for the formulas the grouped paths compute.
        w = {n: t.double().numpy() for n, t in dense["before"].items()}
        start = {n: v / 3 for n, v in w.items()}  # the weights before they were tripled
        group = sum(0.01 * np.abs(start[n]).sum() + 0.02 * (start[n] ** 2).sum() for n in ("0.weight", "1.weight"))
        group += 0.02 * (start["3.bias"] ** 2).sum()
        assert float(result["grouped"]) == pytest.approx(group, rel=1e-5)
        for n in ("0.weight", "1.weight"):
            analytic = 2 * (2 * 0.02 * start[n] + 0.01 * np.sign(start[n]))
            np.testing.assert_allclose(result["analytic_grads"][n].numpy(), analytic, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(result["autograd_grads"][n].numpy(), analytic / 2, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(result["projected"][n].numpy(), _max_norm(w[n], 0.5, 0), rtol=1e-5, atol=1e-6)
        assert "4.weight" not in result["analytic_grads"]
        torch.testing.assert_close(result["projected"]["4.weight"], result["before"]["4.weight"])  # no gradient
        prox = result["proximal"]["1.bias"].double().numpy()
        before = result["projected"]["1.bias"].double().numpy()
        np.testing.assert_allclose(prox, np.sign(before) * np.maximum(np.abs(before) - 0.05, 0), atol=1e-7)
        assert result["stats"]["0.weight"][0] == 4 and result["stats"]["0.weight"][1] == 4
        values = np.arange(12.0).reshape(4, 3) - 5
        activity = sum((0.01 * np.abs(v).sum() + 0.02 * (v**2).sum()) / 4 for v in (values, 2 * values))
        assert float(result["activity"]) == pytest.approx(activity, rel=1e-6)
    # A projection of the local shard alone is wrong for a norm over the sharded dimension: the
    # engine's (whole) agrees with NumPy, the per-shard one does not, so the tests above can fail.
    kernel = (np.arange(24.0).reshape(6, 4) / 10 - 1)
    np.testing.assert_allclose(ranks[0]["whole"].numpy(), _max_norm(kernel, 1.0, 0), rtol=1e-5)
    assert np.abs(ranks[0]["local"].numpy() - _max_norm(kernel, 1.0, 0)).max() > 0.1
