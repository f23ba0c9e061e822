"""The Lightning callback against a hand-written loop that adds ``regularization_loss`` to its loss.

One process (with and without gradient accumulation, in bf16-mixed precision, under manual
optimization) and Lightning's DDP strategy on 2 gloo processes: the trained weights equal
those of the hand loop, and the logged penalty equals NumPy's.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.plugins.environments import TorchElasticEnvironment
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from ranks import gloo, run_ranks

from weightwise import (
    apply_constraints,
    binding,
    clock,
    constrain,
    layers,
    regularization_loss,
    regularize,
    regularize_activity,
)
from weightwise.callbacks import RegularizationMonitor
from weightwise.constraints import MaxNorm, NonNeg
from weightwise.integrations.lightning import Regularization
from weightwise.regularizers import L1, L1L2, L2, ProximalL1, Regularizer

LR = 0.1
BATCH = 4


class Quartic(Regularizer):
    """A custom penalty, ``0.01 * sum(w**4)``: it goes through autograd, not the engine's grouped path."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return 0.01 * x.pow(4).sum()

    def get_config(self) -> dict:
        return {}


class Net(LightningModule):
    """A torch MLP with rules bound by regularize/constrain/regularize_activity, then a Keras-style Dense."""

    def __init__(self, manual: bool = False, torch_rules: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6))
        self.head = layers.Dense(3, kernel_regularizer=L1L2(l1=0.01, l2=0.02), bias_regularizer=L2(0.05),
                                 activity_regularizer=L1(0.01), kernel_constraint=MaxNorm(0.5),
                                 bias_constraint=NonNeg())
        self.head.build((None, 6))
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.05, -0.02, 0.01]))  # a bias that NonNeg has to correct
        if torch_rules:
            regularize(self.mlp, {"0.weight": L2(0.03), "2.weight": Quartic(), "2.bias": L1(0.02)})
            constrain(self.mlp, {"0.weight": MaxNorm(0.8)})
        regularize_activity(self.mlp[0], L2(0.01))
        self.automatic_optimization = not manual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        # Under manual optimization the call losses are the module's own to add.
        self.manual_backward(loss + sum(binding.call_losses(self)))
        opt.step()
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)


class _Linear(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 2)

    def training_step(self, batch, batch_idx):
        return F.mse_loss(self.linear(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=generator), torch.randn(n, 3, generator=generator)


def _loader(x: torch.Tensor, y: torch.Tensor, batch: int = BATCH) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=False)


def _trainer(max_steps: int, callbacks: list, **kwargs) -> Trainer:
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*isinstance.*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
    return Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, **kwargs)


def _hand_loop(model: torch.nn.Module, batches: list, accumulate: int = 1, autocast: bool = False,
               clip: float | None = None) -> None:
    """The loop the callback must equal: loss + regularization_loss, backward, (clip,) step, project."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for i, (x, y) in enumerate(batches):
        if i % accumulate == 0:
            opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            data_loss = F.mse_loss(model(x), y)
        ((data_loss + regularization_loss(model)) / accumulate).backward()
        if (i + 1) % accumulate == 0:
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            apply_constraints(model)


def _assert_same_weights(trained: torch.nn.Module, reference: torch.nn.Module, tol: float) -> None:
    ours, theirs = dict(trained.named_parameters()), dict(reference.named_parameters())
    assert list(ours) == list(theirs)
    for name, value in ours.items():
        torch.testing.assert_close(value.detach(), theirs[name].detach(), rtol=tol, atol=tol, msg=name)
    assert not torch.equal(ours["mlp.0.weight"], Net().mlp[0].weight)  # it trained


@pytest.mark.parametrize(("accumulate", "clip"), [(1, None), (2, None), (2, 0.05)])
def test_one_process_equals_the_hand_loop(accumulate, clip):
    x, y = _data()
    steps = 4 // accumulate
    model = Net()
    # Clipping sees the penalties' gradients too, as it does in the hand loop.
    _trainer(steps, [Regularization()], accumulate_grad_batches=accumulate, gradient_clip_val=clip).fit(
        model, _loader(x, y))

    reference = Net()
    _hand_loop(reference, list(_loader(x, y)), accumulate, clip=clip)
    _assert_same_weights(model, reference, 1e-6)
    # The constraints hold after the last step.
    assert model.head.kernel.norm(dim=0).max() <= 0.5 + 1e-6
    assert model.mlp[0].weight.norm(dim=1).max() <= 0.8 + 1e-6
    assert (model.head.bias >= 0).all()


def test_a_short_last_window_still_counts_the_weight_penalties_once():
    x, y = _data(12)  # 3 batches: one update of 2 micro-batches, then one of 1
    model = Net()
    _trainer(-1, [Regularization()], max_epochs=1, accumulate_grad_batches=2).fit(model, _loader(x, y))

    reference = Net()
    opt = torch.optim.SGD(reference.parameters(), lr=LR, momentum=0.9)
    batches = list(_loader(x, y))
    for window in (batches[:2], batches[2:]):
        opt.zero_grad()
        for xb, yb in window:  # Lightning divides each micro-batch's loss by accumulate_grad_batches
            ((F.mse_loss(reference(xb), yb) + sum(binding.call_losses(reference))) / 2).backward()
        binding.total_penalty(reference).backward()  # the weight penalties, once per update
        opt.step()
        apply_constraints(reference)
    _assert_same_weights(model, reference, 1e-6)


def test_logged_penalty_equals_numpy():
    x, y = _data()
    model = Net()
    w = {name: p.detach().double().numpy().copy() for name, p in model.named_parameters()}
    trainer = _trainer(1, [Regularization()])
    trainer.fit(model, _loader(x, y))

    xb = x[:BATCH].double().numpy()
    hidden = xb @ w["mlp.0.weight"].T + w["mlp.0.bias"]
    features = np.tanh(hidden) @ w["mlp.2.weight"].T + w["mlp.2.bias"]
    out = features @ w["head.kernel"] + w["head.bias"]
    expected = (0.03 * (w["mlp.0.weight"] ** 2).sum() + 0.01 * (w["mlp.2.weight"] ** 4).sum()
                + 0.02 * np.abs(w["mlp.2.bias"]).sum()
                + 0.01 * np.abs(w["head.kernel"]).sum() + 0.02 * (w["head.kernel"] ** 2).sum()
                + 0.05 * (w["head.bias"] ** 2).sum()
                + 0.01 * (hidden ** 2).sum() / BATCH + 0.01 * np.abs(out).sum() / BATCH)
    logged = trainer.callback_metrics["regularization_loss"]
    assert logged.dtype == torch.float32
    np.testing.assert_allclose(float(logged), expected, rtol=1e-6)


def test_a_monitor_logs_each_layer_at_the_end_of_each_epoch():
    model = Net()
    trainer = _trainer(4, [Regularization(monitor=RegularizationMonitor())])
    trainer.fit(model, _loader(*_data()))
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    dense = model.head.name  # Keras-style layers are named by their Keras name
    assert set(metrics) == {"regularization_loss", "penalty/mlp.0", "penalty/mlp.2", f"penalty/{dense}",
                            "activity_penalty/mlp.0", f"activity_penalty/{dense}", "bound_rate/mlp.0.weight",
                            f"bound_rate/{dense}.kernel", f"bound_rate/{dense}.bias"}
    w = {name: p.detach().double().numpy() for name, p in model.named_parameters()}  # after the last step
    np.testing.assert_allclose(metrics["penalty/mlp.0"], 0.03 * (w["mlp.0.weight"] ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(metrics[f"penalty/{dense}"], 0.01 * np.abs(w["head.kernel"]).sum()
                               + 0.02 * (w["head.kernel"] ** 2).sum() + 0.05 * (w["head.bias"] ** 2).sum(), rtol=1e-6)
    assert all(0.0 <= metrics[key] <= 1.0 for key in metrics if key.startswith("bound_rate/"))  # recorded, not nan


def test_bf16_mixed_penalties_come_from_the_float32_weights():
    x, y = _data()
    model = Net()
    _trainer(2, [Regularization()], precision="bf16-mixed").fit(model, _loader(x, y))
    assert all(p.dtype == torch.float32 for p in model.parameters())

    reference = Net()
    _hand_loop(reference, list(_loader(x, y))[:2], autocast=True)
    _assert_same_weights(model, reference, 1e-6)


@pytest.mark.parametrize("scale", [1e4, 1.0])
def test_a_step_the_grad_scaler_skips_is_followed_by_no_projection(scale):
    class Big(_Linear):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)
            with torch.no_grad():
                self.linear.weight.copy_(torch.tensor([[3.0, 4.0]]))  # outside the bound before any step

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    model = Big()
    # float16 on the CPU: the GradScaler skips the step when the gradients overflow (inputs of 1e4).
    precision = MixedPrecision("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1.0))
    callback = Regularization(constraints={"linear.weight": MaxNorm(1.0, axis=1)})
    _trainer(1, [callback], plugins=[precision]).fit(model, _loader(torch.full((2, 2), scale), torch.zeros(2, 1), 2))
    norm = float(model.linear.weight.norm())
    if scale > 1:
        assert norm == 5.0  # skipped: neither updated nor projected
    else:
        assert norm == pytest.approx(1.0, abs=1e-6)


def test_manual_optimization_gets_the_weight_penalties_and_constraints():
    x, y = _data()
    model = Net(manual=True)
    _trainer(4, [Regularization()]).fit(model, _loader(x, y))

    reference = Net()
    _hand_loop(reference, list(_loader(x, y)))
    _assert_same_weights(model, reference, 1e-6)


def test_rules_given_to_the_callback_are_bound_for_the_fit_and_removed_after():
    x, y = _data()
    rules = {"mlp.0.weight": L2(0.03), "mlp.2.weight": Quartic(), "mlp.2.bias": L1(0.02)}
    callback = Regularization(rules, constraints={"mlp.0.weight": MaxNorm(0.8)})
    model = Net(torch_rules=False)  # the torch layers get their rules from the callback only
    _trainer(4, [callback]).fit(model, _loader(x, y))
    assert binding.rule_of(model.mlp[0], "weight") is None and binding.rule_of(model.mlp[2], "bias") is None
    assert binding.rule_of(model.head, "kernel") is not None  # the layer's own rules stay

    reference = Net()
    _hand_loop(reference, list(_loader(x, y)))
    _assert_same_weights(model, reference, 1e-6)


def test_a_fit_that_fails_takes_its_rules_back():
    class Failing(Net):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    model = Failing()
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(1, [Regularization({"mlp.0.bias": L1(0.5)})]).fit(model, _loader(*_data()))
    assert binding.rule_of(model.mlp[0], "bias") is None
    assert "training_step" not in model.__dict__


def test_proximal_step_follows_each_update():
    class Sparse(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 1, bias=False)
            with torch.no_grad():
                self.linear.weight.copy_(torch.tensor([[0.2, -2.0]]))

        def training_step(self, batch, batch_idx):
            return self.linear(batch[0]).sum() * 0.0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1.0)

    model = Sparse()
    _trainer(1, [Regularization({"linear.weight": ProximalL1(0.5)})]).fit(model, _loader(torch.ones(1, 2), torch.ones(1, 1)))
    torch.testing.assert_close(model.linear.weight.detach(), torch.tensor([[0.0, -1.5]]))  # soft-thresholded by lr * l1


def test_a_batch_whose_training_step_returns_none_moves_no_weight():
    class Skipping(Net):
        def training_step(self, batch, batch_idx):
            return None if batch_idx == 1 else super().training_step(batch, batch_idx)

    x, y = _data()
    model = Skipping()
    _trainer(4, [Regularization()]).fit(model, _loader(x, y))

    reference = Net()
    _hand_loop(reference, [batch for i, batch in enumerate(_loader(x, y)) if i != 1])
    _assert_same_weights(model, reference, 1e-6)


def test_scheduled_factors_follow_the_global_step():
    def factor(step):
        return 0.1 * (step + 1)

    def bound(step):
        return 1.0 / (step + 1)

    generator = torch.Generator().manual_seed(2)
    x, y = 3 * torch.randn(12, 3, generator=generator), 3 * torch.randn(12, 2, generator=generator)
    model = _Linear()
    callback = Regularization({"linear.weight": L2(factor)}, constraints={"linear.weight": MaxNorm(bound, axis=1)})
    _trainer(3, [callback]).fit(model, _loader(x, y))
    assert clock.step() == 3  # after update k the clock reads k + 1, as the next forward pass would

    reference = _Linear()
    regularize(reference, {"linear.weight": L2(factor)})
    constrain(reference, {"linear.weight": MaxNorm(bound, axis=1)})
    opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    for k, (xb, yb) in enumerate(_loader(x, y)):
        clock.set_step(k)  # penalty of update k at step k
        opt.zero_grad()
        (F.mse_loss(reference.linear(xb), yb) + regularization_loss(reference)).backward()
        opt.step()
        clock.set_step(k + 1)  # the projection after it at k + 1
        apply_constraints(reference)
    torch.testing.assert_close(model.linear.weight.detach(), reference.linear.weight.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.linear.bias.detach(), reference.linear.bias.detach(), rtol=1e-6, atol=1e-6)
    assert reference.linear.weight.norm(dim=1).max() <= 0.25 + 1e-6  # the bound at step 3 held


def test_a_layer_a_step_does_not_call_adds_no_old_activity_penalty():
    class Branchy(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.side = torch.nn.Linear(3, 2)
            self.main = torch.nn.Linear(3, 2)
            regularize_activity(self.side, L1(1.0))

        def training_step(self, batch, batch_idx):
            x, y = batch
            out = self.main(x) + (self.side(x) if batch_idx == 0 else 0.0)
            return F.mse_loss(out, y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = _trainer(2, [Regularization()])
    trainer.fit(Branchy(), _loader(torch.ones(8, 3), torch.ones(8, 2)))  # batch 0's graph is gone by batch 1
    assert float(trainer.callback_metrics["regularization_loss"]) == 0.0


def test_bad_arguments_are_refused_when_the_callback_is_made():
    with pytest.raises(ValueError, match="`regularizers`.*l3"):
        Regularization({"*.weight": "l3"})
    with pytest.raises(TypeError, match="`constraints`.*selector"):
        Regularization(constraints={3: MaxNorm(1.0)})
    with pytest.raises(ValueError, match="`log`.*Received: log='yes'"):
        Regularization(log="yes")
    with pytest.raises(TypeError, match="`monitor`.*Received: monitor='layer'"):
        Regularization(monitor="layer")


def test_rules_that_match_nothing_fail_before_training():
    model = Net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="matches no parameter"):
        _trainer(1, [Regularization({"mlp.9.weight": L2(0.1)})]).fit(model, _loader(*_data()))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_deepspeed_is_refused():
    callback = Regularization()
    trainer = type("T", (), {"strategy": object.__new__(DeepSpeedStrategy)})()
    with pytest.raises(ValueError, match="`strategy`.*DeepSpeedStrategy"):
        callback.setup(trainer, Net(), "fit")


# -- DDP on 2 processes ----------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    with gloo(rank, world_size, port):
        x, y = _data()
        results = {}
        for accumulate in (1, 2):
            model = Net()
            strategy = DDPStrategy(cluster_environment=TorchElasticEnvironment(), process_group_backend="gloo")
            trainer = _trainer(2 // accumulate, [Regularization()], devices=world_size, strategy=strategy,
                               accumulate_grad_batches=accumulate, use_distributed_sampler=False)
            # Each rank its own half of every global batch of 2 * BATCH samples.
            trainer.fit(model, _loader(x[rank::world_size], y[rank::world_size]))
            results[accumulate] = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.save(results, Path(out) / f"rank{rank}.pt")


def test_ddp_on_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    run_ranks(_ddp_worker, str(tmp_path), timeout=120)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    x, y = _data()
    for accumulate in (1, 2):
        reference = Net()
        # The global batches: samples 0..7 (rank 0's first batch holds 0, 2, 4, 6), then 8..15.
        _hand_loop(reference, list(_loader(x, y, 2 * BATCH)), accumulate)
        for weights in ranks:
            for name, p in reference.named_parameters():
                torch.testing.assert_close(weights[accumulate][name], p.detach(), rtol=1e-5, atol=1e-5,
                                           msg=f"{name} with accumulate_grad_batches={accumulate}")
