"""PyTorch Lightning: the weightwise rules of a ``LightningModule``, applied by one callback.

``Trainer(callbacks=[Regularization()])`` trains any ``LightningModule`` whose modules carry
rules (bound by :func:`weightwise.regularize`, :func:`weightwise.constrain`,
:func:`weightwise.regularize_activity`, or Keras-style layers built with
``kernel_regularizer=`` and the like) as a hand-written loop would that adds
:func:`weightwise.regularization_loss` to its loss and projects the constraints after each
step, and as ``fit`` does:

- **Weight penalties** (built-in ``L1``/``L2`` by their exact gradient ``l1 * sign(w)`` and
  ``2 * l2 * w``, any other regularizer through autograd) join the gradient once per
  optimizer step, in ``on_before_optimizer_step``: after backward, after DDP has averaged the
  data gradients (so every rank adds the full penalty, and 2 ranks with batch b equal 1
  process with batch 2b), after loss scaling is undone, before gradient clipping. With
  ``accumulate_grad_batches=k`` the penalty counts once per update, whatever the number of
  micro-batches (a short last window of an epoch included). They are computed from the
  weights themselves, float32 under ``precision="bf16-mixed"``. An update whose
  ``training_step`` returned ``None`` for every micro-batch (Lightning skips it) gets none.
- **Activity penalties and ``add_loss`` terms** depend on the batch, so they join the loss
  that ``training_step`` returns (computed outside autocast), and Lightning treats them as
  it treats that loss (divided by ``k`` under accumulation). Each ``training_step`` starts
  with no call losses, so a layer it does not call adds nothing.
- **Constraints and proximal steps** follow every step that the optimizer actually takes
  (a step hook on the torch optimizer): a micro-batch that only accumulates, a step that
  the ``GradScaler`` skips and a step that an ``optimizer_step`` override leaves out are
  followed by none. Only weights the optimizer holds that received a gradient are projected.
- **Scheduled factors** read :mod:`weightwise.clock`, set from ``trainer.global_step``: the
  penalties of update ``k`` and its proximal step at ``k``, the projection after it at
  ``k + 1`` (as ``fit`` does).
- **Logging**: ``regularization_loss`` (the weight penalties before the update plus the
  activity penalties of the batch) is logged with ``pl_module.log`` after each training batch;
  with ``monitor=RegularizationMonitor()``, each layer's penalty and each constrained
  weight's bound rate at the end of each training epoch.

Under manual optimization (``automatic_optimization = False``) the weight penalties,
constraints and logging work the same, per ``optimizer.step()`` and for the weights that
optimizer holds; the call losses are the module's own to add to what it backpropagates
(``sum(weightwise.binding.call_losses(self))``).

Strategies: a single device and ``"ddp"``; the rules given to the callback are bound in
each process when the fit starts. DeepSpeed and
Lightning's FSDP keep gradients and weights in flat buffers of their own, which penalty
gradients and projections cannot reach, so they are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from weightwise import binding, clock, engine, interop
from weightwise.arguments import echo, flag
from weightwise.callbacks import RegularizationMonitor

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
except ImportError as error:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError(
        "weightwise.integrations.lightning needs PyTorch Lightning (the `lightning` package). "
        "Install it with: pip install 'weightwise[lightning]'"
    ) from error

__all__ = ["Regularization"]

LOG_NAME = "regularization_loss"
_UNSUPPORTED = (DeepSpeedStrategy, FSDPStrategy)


class Regularization(Callback):
    """A Lightning callback that trains a ``LightningModule`` with the weightwise rules bound to it.

    Penalties enter the training (weight penalties by their gradient once per optimizer step,
    activity penalties through the loss ``training_step`` returns), constraints are
    projected after every step the optimizer takes, and ``regularization_loss`` is logged;
    see :mod:`weightwise.integrations.lightning` for where each happens.

    Args:
        regularizers: optional rules to bind for the fit, ``{selector: regularizer}`` as
            :func:`weightwise.regularize` takes them (names, globs, ``(type, attr)``,
            predicates); bound when the fit starts and removed when it ends.
        constraints: the same for constraints (:func:`weightwise.constrain`).
        strict: a rule that matches no parameter is a ``ValueError`` (``False`` allows it).
        log: log ``regularization_loss`` after each training batch.
        prog_bar: show it in the progress bar too.
        sync_dist: average it over the processes (the activity part differs per rank).
        monitor: a :class:`weightwise.callbacks.RegularizationMonitor` whose keys (each layer's
            penalty, each constrained weight's bound rate) are logged at the end of each
            training epoch.

    Rules given here are checked when the callback is made; rules bound some other way
    (on the modules, or by Keras-style layers) are used as they are.

    >>> import torch
    >>> from lightning.pytorch import LightningModule, Trainer
    >>> from weightwise.constraints import NonNeg
    >>> from weightwise.regularizers import L2
    >>> class Model(LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = torch.nn.Linear(2, 1)
    ...     def training_step(self, batch, batch_idx):
    ...         x, y = batch
    ...         return torch.nn.functional.mse_loss(self.linear(x), y)
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2), -torch.ones(4, 1)))
    >>> trainer = Trainer(max_steps=2, callbacks=[Regularization({"*.weight": L2(1e-4)}, constraints={"*.weight": NonNeg()})],
    ...                   logger=False, enable_checkpointing=False, enable_progress_bar=False,
    ...                   enable_model_summary=False)
    >>> model = Model()
    >>> trainer.fit(model, data)
    >>> bool((model.linear.weight >= 0).all()), "regularization_loss" in trainer.callback_metrics
    (True, True)
    """

    def __init__(self, regularizers: Any = None, *, constraints: Any = None, strict: bool = True,
                 log: bool = True, prog_bar: bool = False, sync_dist: bool = False,
                 monitor: RegularizationMonitor | None = None) -> None:
        super().__init__()
        self.strict = flag(strict, "strict")
        self.log = flag(log, "log")
        self.prog_bar = flag(prog_bar, "prog_bar")
        self.sync_dist = flag(sync_dist, "sync_dist")
        if monitor is not None and not isinstance(monitor, RegularizationMonitor):
            raise TypeError(f"Invalid value for argument `monitor`: expected a RegularizationMonitor or None. "
                            f"Received: monitor={echo(monitor)}")
        self.monitor = monitor
        self.regularizers = _checked_rules(regularizers, "regularizers", interop.regularize)
        self.constraints = _checked_rules(constraints, "constraints", interop.constrain)
        self._handles: list[interop.Handle] = []
        self._undo: list[Callable[[], None]] = []
        self._had_loss = False  # whether a training_step of the update being accumulated returned a loss
        self._weight_penalty: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"Regularization(regularizers={self.regularizers!r}, constraints={self.constraints!r})"

    # -- lifetime ------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and isinstance(trainer.strategy, _UNSUPPORTED):
            raise ValueError(
                f"Invalid value for argument `strategy`: Regularization cannot reach the gradients and weights "
                f"that {type(trainer.strategy).__name__} keeps in flat buffers of its own. Use a single device or "
                f"strategy='ddp'. Received: strategy={type(trainer.strategy).__name__}"
            )

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        optimizers = list(trainer.optimizers)
        for optimizer in optimizers:
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(
                    "Regularization projects constraints after each step of a torch.optim.Optimizer; "
                    f"configure_optimizers returned {echo(optimizer)}."
                )
        handles: list[interop.Handle] = []
        try:  # both rule sets are checked against the model before the fit goes on; a bad one binds none
            for rules, attach in ((self.regularizers, interop.regularize), (self.constraints, interop.constrain)):
                if rules:
                    handles.append(attach(pl_module, rules, strict=self.strict))
        except Exception:
            for handle in handles:
                handle.remove()
            raise
        self._handles = handles
        if self.monitor is not None:
            engine.track(pl_module)  # bound rates need the projections recorded from the first step on
        self._undo = [optimizer.register_step_post_hook(self._after_step(trainer, pl_module)).remove
                      for optimizer in optimizers]
        if pl_module.automatic_optimization:
            self._undo.append(_add_to_loss(pl_module, self))
        self._had_loss = False

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        """Take back everything the fit added: the step hooks, the loss wrapper, the rules bound here."""
        while self._undo:
            self._undo.pop()()
        while self._handles:
            self._handles.pop().remove()

    # -- each batch ----------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        clock.set_step(trainer.global_step)  # the update this batch contributes to
        if self.log:
            plan = engine.plan_for(pl_module)
            with torch.no_grad():
                self._weight_penalty = plan.grouped_penalty_value() + plan.autograd_penalty()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.log or self._weight_penalty is None:
            return
        with torch.no_grad():
            activity = engine.call_loss(pl_module)
        value = self._weight_penalty.float() + activity.float().to(self._weight_penalty.device)
        self._weight_penalty = None
        pl_module.log(LOG_NAME, value, prog_bar=self.prog_bar, sync_dist=self.sync_dist)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.monitor is not None:
            pl_module.log_dict(self.monitor.logs(pl_module), sync_dist=self.sync_dist)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if pl_module.automatic_optimization:
            if not self._had_loss:
                return  # every training_step of this update returned None: Lightning skips it, and so do we
            self._had_loss = False
        _add_penalty_gradients(pl_module, optimizer)

    def _after_step(self, trainer: Trainer, module: torch.nn.Module) -> Callable[..., None]:
        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            held = _held(optimizer)
            step = trainer.global_step  # counts this update only once the hook has run
            with clock.at_step(step):  # the proximal step reads the factors its update's penalty read
                binding.apply_proximal(module, optimizer, only_with_grad=True, among=held)
            clock.set_step(step + 1)  # the step the next forward pass runs at, as in fit
            binding.apply_constraints(module, only_with_grad=True, among=held)

        return hook

    def _loss_with_call_losses(self, module: torch.nn.Module, output: Any) -> Any:
        """``training_step``'s output with the module's call losses added to its loss (``None`` stays ``None``)."""
        loss = output.get("loss") if isinstance(output, Mapping) else output
        if not isinstance(loss, torch.Tensor):
            return output  # no loss: Lightning skips the batch (or reports the output it does not take)
        self._had_loss = True
        if not binding.call_loss_entries(module):
            return output
        with torch.autocast(loss.device.type, enabled=False):  # penalties in the outputs' own precision
            loss = loss + engine.call_loss(module).to(loss.device)
        return {**output, "loss": loss} if isinstance(output, Mapping) else loss


def _add_penalty_gradients(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Add the gradient of the weight penalties under ``module`` to the ``.grad`` of the weights ``optimizer`` holds."""
    plan = engine.plan_for(module)
    held = _held(optimizer)
    grouped = _unique(s.param for slots in (*plan.l1.values(), *plan.l2.values()) for s in slots
                      if s.param.requires_grad)
    # Weights another optimizer trains keep their gradients as they are.
    kept = [(p, None if p.grad is None else p.grad.clone()) for p in grouped if id(p) not in held]
    plan.add_penalty_gradients()
    for p, grad in kept:
        if grad is None:
            p.grad = None
        else:
            p.grad.copy_(grad)
    others = _unique(s.param for s, _ in plan.other_penalties if s.param.requires_grad and id(s.param) in held)
    if not others:
        return
    penalty = plan.autograd_penalty()
    if not penalty.requires_grad:
        return  # proximal regularizers only: they act by their step after the update
    # autograd.grad leaves .grad alone and runs no accumulation hook (DDP's reducer hooks on it).
    for p, grad in zip(others, torch.autograd.grad(penalty, others, allow_unused=True)):
        if grad is not None:
            p.grad = grad if p.grad is None else p.grad.add_(grad)


def _add_to_loss(module: LightningModule, callback: Regularization) -> Callable[[], None]:
    """Make ``module.training_step`` return its loss plus the call losses of its forward passes; returns the undo.

    The wrapper is an instance attribute, as Lightning's own forward redirection is, so it
    is what every strategy calls (DDP through its wrapper's forward).
    """
    own = module.__dict__.get("training_step")
    step = module.training_step

    def training_step(*args: Any, **kwargs: Any) -> Any:
        binding.clear_call_losses(module)  # a layer this step does not call must not bring an old batch's penalty
        return callback._loss_with_call_losses(module, step(*args, **kwargs))

    module.training_step = training_step  # type: ignore[method-assign]

    def undo() -> None:
        if own is None:
            module.__dict__.pop("training_step", None)
        else:
            module.training_step = own  # type: ignore[method-assign]

    return undo


def _held(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _unique(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for p in params:
        seen.setdefault(id(p), p)
    return list(seen.values())


def _checked_rules(rules: Any, name: str, attach: Callable[..., interop.Handle]) -> Any:
    """``rules`` as given, once ``attach`` has checked every selector and value of it (on an empty module)."""
    if rules is None:
        return None
    if not isinstance(rules, (Mapping, str, bytes, torch.Tensor)) and isinstance(rules, Iterable):
        rules = list(rules)  # a generator is read once here, and bound from the list at each fit
    try:
        attach(torch.nn.Module(), rules, strict=False)
    except (TypeError, ValueError) as error:
        raise type(error)(f"Invalid value for argument `{name}`: {error}") from error
    return rules
