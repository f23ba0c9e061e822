"""One training step as one compiled program.

:func:`train_step` (and ``fit`` after ``compile(jit_compile=True)``) traces the whole step,
the forward pass, the data loss, every weight and activity penalty, the backward pass, the
optimizer's update (gradient unscaling, clipping, weight decay, the update itself) and the
constraint projections, into one graph that inductor compiles. Nothing in it reads a value
back to Python, so the step runs without host synchronisation; the losses come back as
tensors on the model's device.

Where a part cannot be traced as a whole (an optimizer without a fused update, gradient
accumulation, EMA, proximal regularizers, scheduled penalty factors, recorded projections),
:func:`fusion_blocker` names it, and the step runs eagerly instead, with a warning that says why.

The numbers are the eager step's: the same formulas, in the same dtypes; only the order of
floating-point operations may differ (about 1e-7 relative in float32).
"""

from __future__ import annotations

import itertools
import time
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from weightwise import binding, clock, engine
from weightwise import losses as losses_module
from weightwise import optimizers as optimizers_module
from weightwise.arguments import echo

__all__ = ["CompiledStep", "fusion_blocker", "train_step"]

# Eager steps timed per thread setting before the step is compiled (threads="auto").
_TRIAL_CALLS = 3


def _scheduled_rules(model: torch.nn.Module) -> list[str]:
    """The bound rules and activity regularizers whose factors follow a schedule."""
    found = []
    for entry in binding.bound(model):
        for rule in (entry.rule.regularizer, entry.rule.constraint):
            if rule is not None and engine._scheduled(rule):
                found.append(f"{type(rule).__name__} on {entry.name!r}")
    for name, module in model.named_modules():
        rule = getattr(module, "activity_regularizer", None)
        if rule is not None and engine._scheduled(rule):
            found.append(f"activity {type(rule).__name__} of {name or type(module).__name__!r}")
    return found


def fusion_blocker(model: torch.nn.Module, optimizer: Any) -> str | None:
    """Why one training step of ``model`` with ``optimizer`` cannot be compiled whole, or ``None``.

    >>> from weightwise import layers, Sequential, optimizers
    >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
    >>> fusion_blocker(model, optimizers.SGD()) is None
    True
    >>> fusion_blocker(model, optimizers.SGD(use_ema=True))
    'use_ema: the moving averages are updated outside the compiled step'
    """
    return _optimizer_blocker(optimizer) or _model_blocker(model)


def _optimizer_blocker(optimizer: Any) -> str | None:
    """The part of :func:`fusion_blocker` that depends on the optimizer only (cheap to ask)."""
    if not hasattr(optimizer, "_fusion_blocker"):
        return f"{type(optimizer).__name__} is not a weightwise optimizer"
    return optimizer._fusion_blocker()


def _model_blocker(model: torch.nn.Module) -> str | None:
    """The part of :func:`fusion_blocker` that depends on the model's bound rules only."""
    plan = engine.plan_for(model)
    if plan.proximal:
        return "proximal regularizers take their step after the update, outside the compiled step"
    if plan.tracked:
        return "projections are recorded (weightwise.report), which reads their norms in Python"
    scheduled = _scheduled_rules(model)
    if scheduled:
        return f"scheduled factors ({', '.join(scheduled[:3])}) would recompile the step at every change"
    return None


class CompiledStep:
    """A callable that takes one training step ``(x, y, sample_weight=None) -> loss``, compiled whole.

    ``forward_loss(x, y, sample_weight)`` returns ``(data_loss, extras)``: the weighted data
    loss as a scalar tensor and anything else the caller wants back (detached by the step).
    The step adds the model's call losses (activity penalties, ``add_loss``) and weight
    penalties, differentiates ``data_loss + penalties`` with respect to the trainable
    weights, updates them with ``optimizer`` and projects every bound constraint onto the
    weights that received a gradient. It returns ``(loss, data_loss, extras)``: the loss
    includes the penalties, as Keras logs it.

    ``threads="auto"`` times the first steps after compilation with torch's thread count and
    with one thread, and keeps the faster: a step of small matrices spends more time waking
    a second thread than computing. An int fixes the count; ``None`` leaves torch's.

    >>> import torch
    >>> from weightwise import layers, Sequential, optimizers
    >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
    >>> loss = lambda x, y, sample_weight: (((model(x) - y) ** 2).mean(), None)
    >>> step = CompiledStep(model, loss, optimizers.SGD(0.1), threads=1)
    >>> step.deciding, step.threads
    (False, 1)
    """

    def __init__(self, model: torch.nn.Module, forward_loss: Callable[..., tuple[torch.Tensor, Any]],
                 optimizer: Any, *, threads: int | str | None = "auto", cpp_wrapper: bool = True) -> None:
        if threads is not None and threads != "auto" and (not isinstance(threads, int) or isinstance(threads, bool)
                                                           or threads < 1):
            raise ValueError(f"Invalid value for argument `threads`: expected 'auto', None or an int >= 1. "
                             f"Received: threads={echo(threads)}")
        self.model = model
        self.optimizer = optimizer
        self._forward_loss = forward_loss
        self._threads = threads
        self._options = {"cpp_wrapper": True} if cpp_wrapper and _cpu_only(model) else {}
        self._compiled: Any = None
        self._signature: tuple[Any, ...] = ()
        self._lr: torch.Tensor | None = None
        self._timings: dict[int, list[float]] = {}
        self._chosen: int | None = threads if isinstance(threads, int) else None
        if not _cpu_only(model):
            # torch's thread count is the CPU's: an accelerator's step does not depend on it.
            self._threads, self._chosen = None, None

    # -- the traced program ----------------------------------------------------------------------
    def _program(self, x: Any, y: Any, sample_weight: Any, lr: torch.Tensor) -> tuple[Any, ...]:
        model, optimizer = self.model, self.optimizer
        plan = engine.plan_for(model)
        params = [p for p in optimizer._params if p.requires_grad]
        data_loss, extras = self._forward_loss(x, y, sample_weight)
        total = data_loss + engine.call_loss(model).to(data_loss.device) \
            + plan.differentiable_penalty().to(data_loss.device)
        # Kept, the recorded outputs would leave the program holding the graph that autograd frees.
        binding.clear_call_losses(model)
        grads = torch.autograd.grad(optimizer.scale_loss(total), params, allow_unused=True)
        with torch.no_grad():
            pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
            stepped = [p for p, _ in pairs]
            optimizer._fused_update(stepped, optimizer._fused_gradients(stepped, [g for _, g in pairs], lr), lr)
            among = None if len(stepped) == len(params) else {id(p) for p in stepped}
            plan.project(among=among)
        return total.detach(), data_loss.detach(), extras

    def _build(self) -> None:
        # A code object of its own: torch.compile caches programs per code object, and the guards
        # below do not tell two CompiledSteps apart (nor count against one shared recompile limit).
        template = CompiledStep._program
        code = template.__code__.replace(co_name=f"_program_{next(_PROGRAM_NUMBERS)}")
        function = types.FunctionType(code, template.__globals__, code.co_name)
        options = {**self._options, "guard_filter_fn": _guard_filter}
        self._compiled = torch.compile(types.MethodType(function, self), fullgraph=False, dynamic=False,
                                       options=options)
        self._signature = self._state()

    def _state(self) -> tuple[Any, ...]:
        """What the program was traced for, beyond its arguments: the bindings, the training mode, the
        weights' dtype and device, and which weights train. Cheap to read at every call, unlike
        torch's guards on every attribute the trace touched."""
        params = self.optimizer._params
        # model.to() changes every weight's dtype and device in place: the first one tells.
        first = (params[0].dtype, params[0].device) if params else None
        return (binding.version(), self.model.training, first, [p.requires_grad for p in params])

    # -- one call ----------------------------------------------------------------------------------
    def __call__(self, x: Any, y: Any, sample_weight: Any = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        optimizer = self.optimizer
        if not optimizer.built:
            optimizer.build([p for p in self.model.parameters() if p.requires_grad])
        if self._compiled is None or self._state() != self._signature:
            self._build()
            # Left by an eager call, they would make the first program differ from the next ones.
            binding.clear_call_losses(self.model)
        lr = optimizer._fused_begin()
        device = next(iter(optimizer._params)).device if optimizer._params else torch.device("cpu")
        if self._lr is None or self._lr.device != device:
            self._lr = torch.zeros((), dtype=torch.float32, device=device)
        self._lr.fill_(lr)
        with self._threads_set(self._chosen), torch._dynamo.config.patch(trace_autograd_ops=True):
            result = self._compiled(x, y, sample_weight, self._lr)
        optimizer._fused_end(lr)
        return result

    @property
    def deciding(self) -> bool:
        """Whether ``threads="auto"`` still times steps: run them eagerly inside :meth:`trial`."""
        if self._chosen is None and (self._threads is None or torch.get_num_threads() == 1):
            self._chosen = None if self._threads is None else 1
            self._threads = None
        return self._threads == "auto" and self._chosen is None

    @contextmanager
    def trial(self) -> Iterator[None]:
        """One eager step while deciding: alternately with torch's thread count and with one thread.

        The eager step makes the same calls on the same shapes as the compiled one, at a cost
        that follows the same thread count; a compile per setting would cost far more.
        """
        full = torch.get_num_threads()
        trials = sum(len(v) for v in self._timings.values())
        threads = full if trials % 2 == 0 else 1
        with self._threads_set(threads):
            start = time.perf_counter()
            yield
            self._timings.setdefault(threads, []).append(time.perf_counter() - start)
        if trials + 1 >= 2 * _TRIAL_CALLS:
            # Each setting's best time: the minimum is the least disturbed by other work on the machine.
            self._chosen = min(self._timings, key=lambda n: (min(self._timings[n]), -n))

    @staticmethod
    @contextmanager
    def _threads_set(threads: int | None) -> Iterator[None]:
        previous = torch.get_num_threads()
        if threads is None or threads == previous:
            yield
            return
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    @property
    def threads(self) -> int | None:
        """The thread count the step runs with, once chosen (``None``: torch's, as it is at each call)."""
        return self._chosen


_PROGRAM_NUMBERS = itertools.count()
_ARGUMENTS = ("x", "y", "sample_weight", "lr")


def _guard_filter(entries: list[Any]) -> list[bool]:
    """Keep torch's guards on the step's arguments (shapes, dtypes, None) and on global state (grad
    mode, thread count, ...); drop the thousands on the model's attributes, which
    :meth:`CompiledStep._state` replaces."""
    return [not entry.name or entry.name in _ARGUMENTS or entry.name.startswith(
        tuple(f"{a}{c}" for a in _ARGUMENTS for c in "[.")) for entry in entries]


def _cpu_only(model: torch.nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in model.parameters())


def _keras_loss(loss: Any) -> Callable[[Any, Any, Any], torch.Tensor]:
    """``loss`` as ``(y_true, y_pred, sample_weight) -> scalar``: a Keras loss or name, a torch
    loss module (called ``(y_pred, y_true)``, torch's order), or a function ``(y_true, y_pred)``."""
    if isinstance(loss, torch.nn.Module) and not isinstance(loss, losses_module.Loss):
        def torch_order(y_true: Any, y_pred: Any, sample_weight: Any) -> torch.Tensor:
            if sample_weight is not None:
                raise ValueError("A torch loss module takes no `sample_weight`; use a Keras loss to weight samples. "
                                 f"Received: sample_weight of shape {tuple(torch.as_tensor(sample_weight).shape)}")
            return loss(y_pred, y_true)
        return torch_order
    fn = losses_module.get(loss)
    if fn is None or not callable(fn):
        raise ValueError(f"Invalid value for argument `loss_fn`: expected a loss name, a Loss, a torch loss module "
                         f"or a function (y_true, y_pred). Received: loss_fn={echo(loss)}")
    if isinstance(fn, losses_module.Loss):
        return lambda y_true, y_pred, sample_weight: fn(y_true, y_pred, sample_weight=sample_weight)

    def function(y_true: Any, y_pred: Any, sample_weight: Any) -> torch.Tensor:
        if sample_weight is not None:
            raise ValueError("A loss function takes no `sample_weight`; use a Loss object to weight samples.")
        value = fn(y_true, y_pred)
        return value.mean() if isinstance(value, torch.Tensor) and value.dim() else value
    return function


def train_step(model: torch.nn.Module, loss_fn: Any, optimizer: Any, *, jit_compile: bool = True,
               threads: int | str | None = "auto") -> Callable[..., torch.Tensor]:
    """One training step of ``model``, as ``fit`` takes it, for a hand-written loop.

    ``step(x, y, sample_weight=None)`` runs ``model(x)``, the loss
    ``loss_fn(y, y_pred) + sum of the bound weight penalties + activity penalties``,
    the gradients, ``optimizer``'s update and every bound constraint's projection, and
    returns the loss (penalties included) as a detached tensor, without reading it back.
    With ``jit_compile=True`` (the default) all of it is one compiled program; where a
    part cannot be compiled whole (see :func:`fusion_blocker`) the step warns once and
    runs eagerly. ``loss_fn`` is a Keras loss or its name, a torch loss module
    (``nn.CrossEntropyLoss()``, called ``(y_pred, y)``) or a function ``(y, y_pred)``;
    ``optimizer`` is a weightwise optimizer or its name.

    >>> import torch
    >>> import weightwise as keras
    >>> model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1, kernel_regularizer="l2",
    ...                           kernel_constraint=keras.constraints.MaxNorm(1.0))])
    >>> step = keras.train_step(model, "mse", keras.optimizers.SGD(0.1), jit_compile=False)
    >>> loss = step(torch.ones(4, 3), torch.zeros(4, 1))
    >>> bool(model.layers[0].kernel.norm() <= 1.0 + 1e-6), loss.shape
    (True, torch.Size([]))
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Invalid value for argument `model`: expected a torch.nn.Module. Received: model={echo(model)}")
    if not isinstance(jit_compile, bool):
        raise TypeError(f"Invalid value for argument `jit_compile`: expected a bool. Received: jit_compile={echo(jit_compile)}")
    loss = _keras_loss(loss_fn)
    optimizer = optimizers_module.get(optimizer)
    if isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizers_module.get(optimizer)

    def forward_loss(x: Any, y: Any, sample_weight: Any) -> tuple[torch.Tensor, None]:
        return loss(y, model(x), sample_weight), None

    compiled: CompiledStep | None = None
    warned = False

    model_blocker: tuple[int, str | None] | None = None

    def blocker_now() -> str | None:
        # The optimizer's answer is cheap and may change at any step; the model's walks every bound
        # rule, so it is asked again only when some binding changed.
        nonlocal model_blocker
        if model_blocker is None or model_blocker[0] != binding.version():
            model_blocker = (binding.version(), _model_blocker(model))
        return _optimizer_blocker(optimizer) or model_blocker[1]

    def step(x: Any, y: Any, sample_weight: Any = None) -> torch.Tensor:
        nonlocal compiled, warned
        if not optimizer.built:
            optimizer.build([p for p in model.parameters() if p.requires_grad])
        blocker = blocker_now() if jit_compile else "jit_compile=False"
        if blocker is None:
            if compiled is None:
                compiled = CompiledStep(model, forward_loss, optimizer, threads=threads)
            if compiled.deciding:
                with compiled.trial():
                    return _eager_step(model, forward_loss, optimizer, x, y, sample_weight)
            return compiled(x, y, sample_weight)[0]
        if jit_compile and not warned:
            warnings.warn(f"train_step runs eagerly: {blocker}.", stacklevel=2)
            warned = True
        return _eager_step(model, forward_loss, optimizer, x, y, sample_weight)

    return step


def _eager_step(model: torch.nn.Module, forward_loss: Callable[..., tuple[torch.Tensor, Any]], optimizer: Any,
               x: Any, y: Any, sample_weight: Any = None) -> torch.Tensor:
    """The same step without compiling: backward, the engine's penalty gradients, the update, the
    proximal step and the projections, as ``fit`` takes them."""
    plan = engine.plan_for(model)
    clock.set_step(optimizer.iterations)
    data_loss, _ = forward_loss(x, y, sample_weight)
    differentiable = data_loss + engine.call_loss(model).to(data_loss.device) \
        + plan.autograd_penalty().to(data_loss.device)
    loss = differentiable.detach() + plan.grouped_penalty_value().to(data_loss.device)
    optimizer.zero_grad()
    optimizer.scale_loss(differentiable).backward()
    plan.add_penalty_gradients(scale=float(getattr(optimizer, "loss_scale_factor", None) or 1.0))
    if optimizer.step() is not False:
        if plan.proximal:
            with clock.at_step(max(optimizer.iterations - 1, 0)):
                plan.proximal_step(optimizer, only_with_grad=True)
        plan.project(only_with_grad=True)
    return loss
