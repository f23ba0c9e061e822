"""The optimizer base class: Keras's steps around a ``torch.optim`` update, and argument checks."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from weightwise import clock
from weightwise.arguments import count, flag, invalid, real
from weightwise.optimizer_state import KerasStateMixin
from weightwise.optimizers.constraint_lookup import after_update
from weightwise.optimizers.decay_exclusion import DecayExclusion
from weightwise.optimizers.gradients import (
    check_gradients,
    check_variables,
    describe_variable,
    split_pairs,
)
from weightwise.optimizers.learning_rate_schedule import (
    _SCHEDULES,
    LearningRateSchedule,
    _evaluate_schedule,
    _validate_learning_rate,
)
from weightwise.serialization import (
    deserialize_keras_object,
    serialize_keras_object,
    to_snake_case,
)


def _epsilon(value: Any) -> float:
    # With epsilon 0 (or one float32 rounds to 0), a parameter whose gradient is 0 divides 0 by 0: NaN.
    epsilon = real(value, "epsilon", low=0, low_open=True)
    if np.float32(epsilon) == 0:
        raise invalid("epsilon", "a positive float that float32 does not round to 0", value)
    return epsilon


def _parameter_list(params: Any) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    try:
        items = list(params)
    except TypeError:
        raise ValueError(
            f"Invalid value for argument `params`: expected a list of torch.nn.Parameter. Received: params={params!r}"
        ) from None
    unique: list[torch.Tensor] = []
    seen: set[int] = set()
    for item in items:
        if not isinstance(item, torch.Tensor):
            raise TypeError(
                "Invalid value for argument `params`: every item must be a torch.nn.Parameter (or a leaf tensor). "
                f"Received an item of type {type(item).__name__}: {item!r}"
            )
        if id(item) not in seen:
            seen.add(id(item))
            unique.append(item)
    return unique


class Optimizer(KerasStateMixin):
    """Base class: Keras's optimizer around a ``torch.optim`` optimizer.

    A subclass implements :meth:`create_torch_optimizer` (and ``get_config``
    for its own arguments); the base class does the learning rate schedule,
    gradient clipping, decoupled weight decay and the step count, as Keras 3's
    ``BaseOptimizer`` does. Saving and loading the state in Keras's layout
    (``save_own_variables``, ``load_own_variables``) comes from
    :class:`~weightwise.optimizer_state.KerasStateMixin`.

    Args:
        learning_rate: a non-negative float, a :class:`LearningRateSchedule`,
            or any callable ``schedule(step) -> float`` (a callable taking no
            argument, Keras's form, is called with none).
        weight_decay: ``None`` or a non-negative float; if set, every update
            starts with ``w -= learning_rate * weight_decay * w``, on every
            variable but those left out by :meth:`exclude_from_weight_decay`.
        clipnorm: clip each gradient to this L2 norm: ``g * clipnorm / max(norm(g), clipnorm)``.
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: scale all gradients together so their joint L2 norm
            is at most this value. At most one of the three clipping arguments.
        use_ema: keep an exponential moving average of every parameter, as
            Keras: after each call, ``average = ema_momentum * average +
            (1 - ema_momentum) * weight`` (the plain weight while ``iterations``
            is 0). :meth:`finalize_variable_values` (called by ``fit`` at the
            end) writes the averages into the weights.
        ema_momentum: a float in [0, 1]; default 0.99.
        ema_overwrite_frequency: ``None`` or an int >= 1: with ``use_ema``,
            overwrite the weights with their averages whenever
            ``(iterations + 1) % ema_overwrite_frequency == 0``, read before the
            call's count is added (with accumulation, ``iterations`` counts
            updates, so this holds for every call of the window).
        gradient_accumulation_steps: ``None`` or an int >= 2: update every
            ``N``-th call with the mean of the ``N`` calls' gradients, which the
            optimizer keeps (see :meth:`step`); ``iterations`` counts updates,
            and a learning rate schedule reads every call (Keras's
            ``_iterations``).
        loss_scale_factor: ``None`` or a positive float; gradients are divided
            by it before clipping. Multiply the loss by it with :meth:`scale_loss`.
        name: defaults to the snake_case class name (Keras adds ``_1``, ``_2``
            to repeated names; weightwise does not).

    >>> class Plain(Optimizer):
    ...     def create_torch_optimizer(self, params):
    ...         return torch.optim.SGD(params, lr=self.learning_rate)
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = Plain(learning_rate=0.5, clipvalue=0.1)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([1.0, -0.05])
    >>> opt.step()
    True
    >>> w.detach()
    tensor([0.9500, 1.0250])
    """

    # The torch state buffer, if any, that holds momentum in units of gradient (torch's
    # convention) where Keras folds each step's learning rate into it (see SGD).
    _lr_free_momentum_state: str | None = None

    def __init__(
        self,
        learning_rate: Any,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
    ) -> None:
        self._learning_rate = _validate_learning_rate(learning_rate)
        self.weight_decay = real(weight_decay, "weight_decay", low=0, allow_none=True)
        self.clipnorm = real(clipnorm, "clipnorm", low=0, allow_none=True)
        self.clipvalue = real(clipvalue, "clipvalue", low=0, allow_none=True)
        self.global_clipnorm = real(global_clipnorm, "global_clipnorm", low=0, allow_none=True)
        if sum(arg is not None for arg in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.use_ema = flag(use_ema, "use_ema")
        self.ema_momentum = real(ema_momentum, "ema_momentum", low=0, high=1)
        self.ema_overwrite_frequency = count(ema_overwrite_frequency, "ema_overwrite_frequency", low=1,
                                             allow_none=True)
        self.loss_scale_factor = real(loss_scale_factor, "loss_scale_factor", low=0, low_open=True, allow_none=True)
        self.gradient_accumulation_steps = count(gradient_accumulation_steps, "gradient_accumulation_steps", low=2,
                                                 allow_none=True)
        if name is None:
            name = to_snake_case(type(self).__name__)
        if not isinstance(name, str):
            raise invalid("name", "a str", name)
        self.name = name
        # Keras's `_iterations`: every step() and apply() call, micro-batches that only accumulate
        # included; `iterations` counts the updates (see the property).
        self._iterations = 0
        self.built = False
        self.torch_optimizer: torch.optim.Optimizer | None = None
        self._params: list[torch.Tensor] = []
        self._last_step_lr: float | None = None
        # Keras's optimizer variables of the same names, one tensor per parameter, made by build():
        # the gradients summed since the last update, and the moving average of each parameter.
        self._accumulated_gradients: list[torch.Tensor] = []
        self._model_variables_moving_average: list[torch.Tensor] = []
        # Set once a step leaves some parameter without a gradient: from then on torch's per-parameter
        # step counts are set to Keras's single count before each update (see _align_torch_steps).
        self._uneven_steps = False
        # What exclude_from_weight_decay() left out; not part of the config, as in Keras.
        self._decay_exclusion = DecayExclusion()

    # -- the torch optimizer -----------------------------------------------------------
    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """Return the ``torch.optim.Optimizer`` over ``params`` that performs the update."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `create_torch_optimizer(params)`, returning the "
            "torch.optim.Optimizer that updates `params`."
        )

    def build(self, params: Iterable[torch.Tensor]) -> None:
        """Create ``torch_optimizer`` over ``params``; again with the same parameters, do nothing.

        Building with a different set of parameters is a ``ValueError``: create a
        new optimizer instead, as in Keras. An empty list is allowed (a model
        with nothing to train); ``step()`` then does nothing.
        """
        params = _parameter_list(params)
        if self.built:
            if {id(p) for p in params} == {id(p) for p in self._params}:
                return
            raise ValueError(
                f"Optimizer {self.name!r} was already built for {len(self._params)} parameters and cannot be "
                f"rebuilt for a different set of {len(params)}. Create a new optimizer for new parameters."
            )
        # torch refuses an empty parameter list; with nothing to train, step() does nothing.
        torch_optimizer = self.create_torch_optimizer(params) if params else None
        with torch.no_grad():
            # Keras's zeros; the first averaging step overwrites the average with the weights.
            averages = [torch.zeros_like(p) for p in params] if self.use_ema else []
            accumulators = [torch.zeros_like(p) for p in params] if self.gradient_accumulation_steps else []
        self._params = params
        self.torch_optimizer = torch_optimizer
        self._model_variables_moving_average = averages
        self._accumulated_gradients = accumulators
        self.built = True

    @property
    def iterations(self) -> int:
        """The number of updates taken, Keras's ``iterations``.

        Without accumulation, one per :meth:`step` or :meth:`apply` call. With
        ``gradient_accumulation_steps = N``, Keras counts every call in
        ``_iterations`` and ``iterations`` is ``_iterations // N``: the count of
        updates. Setting it sets the number of updates and keeps the position
        within the accumulation window.
        """
        steps = self.gradient_accumulation_steps
        return self._iterations // steps if steps else self._iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        value = count(value, "iterations")
        steps = self.gradient_accumulation_steps
        self._iterations = value * steps + self._iterations % steps if steps else value

    @property
    def variables(self) -> list[torch.Tensor]:
        """The parameters this optimizer was built with."""
        return list(self._params)

    # -- learning rate -----------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update, as a Python float.

        Setting a float updates every parameter group of ``torch_optimizer``.
        Setting a float on an optimizer built with a :class:`LearningRateSchedule`
        is a ``TypeError``, as in Keras; a new schedule or callable may be set.
        """
        if isinstance(self._learning_rate, float):
            return self._learning_rate
        # As Keras, a schedule reads every call, micro-batches that only accumulate included.
        return _evaluate_schedule(self._learning_rate, self._iterations)

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        value = _validate_learning_rate(value)
        if isinstance(value, float) and isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` "
                "constructor argument, hence its learning rate is not settable. If you need the learning rate "
                "to be settable, you should instantiate the optimizer with a float `learning_rate` argument."
            )
        self._learning_rate = value
        if isinstance(value, float) and self.torch_optimizer is not None:
            self._set_torch_lr(value)

    def _set_torch_lr(self, lr: float) -> None:
        assert self.torch_optimizer is not None
        for group in self.torch_optimizer.param_groups:
            group["lr"] = lr

    # -- one update --------------------------------------------------------------------
    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Multiply ``loss`` by ``loss_scale_factor`` (if set) before ``backward()``.

        >>> from weightwise.optimizers import SGD
        >>> SGD(loss_scale_factor=128.0).scale_loss(torch.tensor(0.5))
        tensor(64.)
        """
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def zero_grad(self) -> None:
        """Set the gradients of the parameters to ``None``."""
        if self.torch_optimizer is not None:
            self.torch_optimizer.zero_grad(set_to_none=True)

    def step(self) -> bool:
        """Apply one update from the parameters' ``.grad``, as Keras's ``apply`` does.

        Returns whether the weights were updated by the gradients: ``fit``
        projects the constraints only after an update. With
        ``gradient_accumulation_steps = N``, a call whose count
        ``_iterations + 1`` is not a multiple of ``N`` only adds the (unscaled)
        gradients to the optimizer's accumulators and returns ``False``; every
        ``N``-th call updates with ``(gradient + accumulated) / N``, the mean
        over the ``N`` micro-batches, then clips, decays and steps, and resets
        the accumulators. The gradients live in the optimizer, not in
        ``.grad``, so zeroing ``.grad`` between micro-batches is right. With
        ``use_ema``, every call then averages each parameter into its moving
        average (Keras's ``ema_momentum``, and the plain weights while
        ``iterations`` is 0), and overwrites the parameters with the averages
        when ``(iterations + 1) % ema_overwrite_frequency == 0``; an overwrite
        on a call that only accumulates is followed by the constraints bound to
        the parameters (there is no update for the caller to finish).

        Raises a ``ValueError`` when no parameter has a gradient, as Keras does;
        an optimizer built on no parameters does nothing.
        """
        if not self.built:
            raise ValueError(f"Optimizer {self.name!r} is not built: call `build(params)` before `step()`.")
        if self.torch_optimizer is None:
            return False
        params = [p for p in self._params if p.grad is not None]
        if not params:
            raise ValueError("No gradients provided for any variable: every parameter's `.grad` is None.")
        lr = self.learning_rate
        with torch.no_grad():
            grads = [p.grad for p in params]
            if self.loss_scale_factor is not None:
                for g in grads:
                    g.div_(self.loss_scale_factor)
            update = self._accumulate(params, grads)
            if update:
                self._rescale_momentum(lr)
                self._set_torch_lr(lr)
                self._clip_gradients(params, grads)
                self._apply_weight_decay(params, lr)
                self._prepare_torch_step(self.iterations + 1)
                if self._torch_keeps_step and len(params) < len(self._params):
                    self._uneven_steps = True
                if self._uneven_steps:
                    self._align_torch_steps(params)
        if update:
            self.torch_optimizer.step()
            self._last_step_lr = lr
        if self._update_model_variables_moving_average() and not update:
            # An overwrite inside an accumulation window moves the weights with no update for fit or
            # apply to finish: project them here, as Keras does after every call (no proximal step:
            # no gradient step was taken).
            after_update(self._params)
        self._iterations += 1
        clock.set_step(self.iterations)
        return update

    # -- one update inside a compiled step (weightwise.compiled_step) ---------------------
    def _fusion_blocker(self) -> str | None:
        """Why this optimizer's update cannot be traced into one compiled step, or ``None``."""
        if type(self)._fused_update is Optimizer._fused_update:
            return f"{type(self).__name__} has no update written for a compiled step"
        if self.gradient_accumulation_steps:
            return "gradient_accumulation_steps: micro-batches decide in Python whether to update"
        if self.use_ema:
            return "use_ema: the moving averages are updated outside the compiled step"
        if self.built and self.torch_optimizer is None:
            return "the optimizer has no parameters to update"
        return None

    def _fused_begin(self) -> float:
        """The Python half of a compiled update, before it: the learning rate, and the state it reads."""
        lr = self.learning_rate
        self._rescale_momentum(lr)
        self._set_torch_lr(lr)
        clock.set_step(self.iterations)
        if self.weight_decay is not None:
            # Fill the exclusion's cache here: filled inside the traced update, it would change a
            # guarded dict and recompile the next step.
            for p in self._params:
                self._decay_exclusion.decays(p)
        with torch.no_grad():
            self._fused_state()
            if self._uneven_steps:
                # As step() does: torch's per-parameter counts start this update from Keras's count.
                self._align_torch_steps(self._params)
        return lr

    def _fused_state(self) -> None:
        """Create the torch optimizer's state tensors that the fused update reads (as its first step would)."""

    def _fused_scalars(self, **values: float) -> dict[str, torch.Tensor]:
        """Fill the 0-d float32 tensors, one per name, that carry this step's scalars into the fused update.

        The tensors are made once, on the parameters' device, and refilled in place at every
        step: a Python float that changed would recompile the traced program at every step.
        """
        device = self._params[0].device
        store: dict[str, torch.Tensor] = self.__dict__.setdefault("_fused_values", {})
        for key, value in values.items():
            tensor = store.get(key)
            if tensor is None or tensor.device != device:
                tensor = store[key] = torch.zeros((), dtype=torch.float32, device=device)
            tensor.fill_(value)
        return store

    def _fused_gradients(self, params: list[torch.Tensor], grads: list[torch.Tensor],
                         lr: torch.Tensor) -> list[torch.Tensor]:
        """Tensor ops only: unscale, clip and decay as :meth:`step` does; returns the gradients to apply."""
        if self.loss_scale_factor is not None:
            grads = torch._foreach_div(grads, self.loss_scale_factor)
        self._clip_gradients(params, grads)
        self._apply_weight_decay(params, lr)
        return grads

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        """The update itself, traceable: ``lr`` is a 0-d tensor so a changing rate does not recompile."""
        raise NotImplementedError

    def _fused_end(self, lr: float) -> None:
        """The Python half of a compiled update, after it: the counts :meth:`step` keeps."""
        self._last_step_lr = lr
        self._iterations += 1
        clock.set_step(self.iterations)

    def _accumulate(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> bool:
        """Keras's accumulation: whether this call updates; if so, ``grads`` become the mean over the window."""
        steps = self.gradient_accumulation_steps
        if not steps:
            return True
        index = {id(p): i for i, p in enumerate(self._params)}
        accumulators = [self._accumulated_gradients[index[id(p)]] for p in params]
        # One tensor at a time: foreach ops refuse a list that mixes DTensors and plain tensors.
        if (self._iterations + 1) % steps:
            for accumulator, g in zip(accumulators, grads):
                accumulator.add_(g)
            return False
        for g, accumulator in zip(grads, accumulators):
            g.add_(accumulator).div_(steps)
        # All of them, as Keras: one that missed this micro-batch's gradient starts afresh too.
        for accumulator in self._accumulated_gradients:
            accumulator.zero_()
        return True

    def _update_model_variables_moving_average(self) -> bool:
        """Keras's EMA step over every parameter, then the overwrite when its frequency says so.

        Returns whether the parameters were overwritten with their averages.
        """
        if not self.use_ema:
            return False
        first = self.iterations == 0
        with torch.no_grad():
            for param, average in zip(self._params, self._model_variables_moving_average):
                # Keras's arithmetic, in the parameter's dtype: m * average + (1 - m) * weight.
                momentum = torch.tensor(0.0 if first else self.ema_momentum, dtype=param.dtype)
                keep, take = momentum.item(), (1 - momentum).item()
                average.mul_(keep).add_(param.detach() * take)
            frequency = self.ema_overwrite_frequency
            if frequency and (self.iterations + 1) % frequency == 0:
                for param, average in zip(self._params, self._model_variables_moving_average):
                    param.copy_(average)
                return True
        return False

    def finalize_variable_values(self, var_list: Iterable[torch.Tensor]) -> None:
        """With ``use_ema``, overwrite each of ``var_list`` with its moving average; else do nothing.

        ``fit`` calls it at the end of training, as Keras's does. Every
        variable must be one the optimizer was built with (a ``ValueError``
        naming those that are not, and nothing changes). Before the first step
        there is no average yet, and nothing changes (Keras would write its
        zero-initialized averages into the weights).

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
        >>> opt.apply([torch.tensor([1.0])], [w])  # w: 0, average: 0 (the first one is the weights)
        >>> opt.apply([torch.tensor([1.0])], [w])  # w: -1, average: 0.5 * 0 + 0.5 * -1
        >>> opt.finalize_variable_values([w])
        >>> w.detach()
        tensor([-0.5000])
        """
        variables = check_variables(var_list, "var_list")
        if not self.use_ema:
            return
        index = {id(p): i for i, p in enumerate(self._params)}
        unknown = [describe_variable(v, i) for i, v in enumerate(variables) if id(v) not in index]
        if unknown:
            raise ValueError(
                f"Invalid value for argument `var_list`: {unknown} are unknown to optimizer {self.name!r}, which "
                f"keeps the moving averages of the {len(self._params)} variables it was built with."
            )
        if self._iterations == 0:
            return
        with torch.no_grad():
            for variable in variables:
                variable.copy_(self._model_variables_moving_average[index[id(variable)]])

    def apply(self, grads: Any, trainable_variables: Any = None) -> None:
        """Update ``trainable_variables`` with ``grads``, one gradient per variable, as Keras's ``apply``.

        The first call with ``trainable_variables`` builds the optimizer for
        them; later calls may pass any of those variables, or leave
        ``trainable_variables`` out to mean all of them, in build order. A
        ``None`` gradient leaves its variable alone (with a warning naming it,
        as Keras); all ``None`` is a ``ValueError``; an empty ``grads`` does
        nothing. Then, as :meth:`step` does, in Keras's order: the
        learning-rate schedule, ``loss_scale_factor``, clipping, weight decay,
        the update, ``iterations += 1``; then the proximal step of a proximal
        regularizer (``ProximalL1``, ``GroupLasso``) bound to an updated variable,
        with this update's learning rate; and last the constraint bound to each
        updated variable (:mod:`weightwise.binding`) is applied, as Keras
        applies ``variable.constraint``. The gradients passed in are not changed
        and the variables' ``.grad`` are left as they were.

        Every argument is checked before anything changes: a count, shape or
        variable the optimizer was not built for is a ``ValueError``, something
        that is not a tensor is a ``TypeError``, and the optimizer stays as it was.

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> opt = SGD(learning_rate=0.5)
        >>> opt.apply([torch.tensor([1.0, -1.0])], [w])
        >>> w.detach(), opt.iterations
        (tensor([0.5000, 2.5000]), 1)
        >>> opt.apply([torch.ones(2)])  # the variables it was built with
        >>> w.detach()
        tensor([0., 2.])
        """
        arguments = self._apply_arguments(grads, trainable_variables)
        if arguments is None:
            return  # as Keras: nothing to apply, not even a step counted
        variables, checked = arguments
        pairs = [(v, g) for v, g in zip(variables, checked) if g is not None]
        missing = [describe_variable(v, i) for i, (v, g) in enumerate(zip(variables, checked)) if g is None]
        if not self.built:
            self.build(variables)
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss.", stacklevel=2)
        # step() reads .grad and unscales and clips it in place: give it the gradients (copies where it
        # would change them), and hand every variable its own .grad back afterwards.
        in_place = self.loss_scale_factor is not None or any(
            (self.clipnorm, self.clipvalue, self.global_clipnorm, self.gradient_accumulation_steps))
        held = [(p, p.grad) for p in self._params]
        try:
            for p in self._params:
                p.grad = None
            for variable, grad in pairs:
                variable.grad = grad.clone() if in_place else grad
            updated = self.step()
        finally:
            for p, grad in held:
                p.grad = grad
        # Update, proximal step (its factors at the step of this update), projection; a micro-batch
        # that only accumulates moved no weight.
        if updated:
            after_update((variable for variable, _ in pairs), self, step=max(self.iterations - 1, 0))

    def _apply_arguments(self, grads: Any, trainable_variables: Any) -> tuple[list[torch.Tensor], list[Any]] | None:
        """``apply``'s arguments checked, before anything changes: ``(variables, gradients)``, or
        ``None`` when there is nothing to apply. At least one gradient is not ``None``."""
        if isinstance(grads, (list, tuple)) and not grads:
            return None
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"Optimizer {self.name!r} is not built: when passing `grads` without `trainable_variables`, "
                    "build it first with `optimizer.build(trainable_variables)`, or pass them."
                )
            variables = list(self._params)
        else:
            variables = check_variables(trainable_variables)
        checked = check_gradients(grads, variables)
        if not checked:
            return None
        if self.built:
            known = {id(p) for p in self._params}
            unknown = [describe_variable(v, i) for i, v in enumerate(variables) if id(v) not in known]
            if unknown:
                raise ValueError(
                    f"Invalid value for argument `trainable_variables`: {unknown} are unknown to optimizer "
                    f"{self.name!r}, which can only update the {len(self._params)} variables it was built with. "
                    "Create a new optimizer for new variables."
                )
        if all(g is None for g in checked):
            raise ValueError("No gradients provided for any variable: every gradient in `grads` is None.")
        return variables, checked

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Any]]) -> int:
        """Keras's ``apply_gradients``: :meth:`apply` on ``(gradient, variable)`` pairs; returns Keras's count.

        The count is Keras's ``_iterations``: every call, micro-batches that
        only accumulate included (``iterations`` without accumulation).

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> SGD(learning_rate=0.5).apply_gradients(zip([torch.tensor([2.0])], [w]))
        1
        >>> w.detach()
        tensor([0.])
        """
        grads, variables = split_pairs(grads_and_vars)
        if variables:
            self.apply(grads, variables)
        return self._iterations

    def _align_torch_steps(self, params: list[torch.Tensor]) -> None:
        # torch counts steps per parameter, Keras once for the optimizer (`iterations`): a parameter
        # that missed gradients would otherwise get a smaller step count, and another bias correction.
        assert self.torch_optimizer is not None
        for p in params:
            state = self.torch_optimizer.state.get(p)
            step = state.get("step") if state else None
            if isinstance(step, torch.Tensor):
                step.fill_(self.iterations)
            elif step is not None:
                state["step"] = type(step)(self.iterations)

    def _clip_gradients(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if self.clipnorm and self.clipnorm > 0:
            for g in grads:
                l2sum = torch.sum(torch.square(g))
                l2norm = torch.where(l2sum > 0, torch.sqrt(torch.where(l2sum > 0, l2sum, 1.0)), l2sum)
                g.mul_(self.clipnorm).div_(torch.clamp(l2norm, min=self.clipnorm))
        elif self.global_clipnorm and self.global_clipnorm > 0:
            dtype = grads[0].dtype
            for g in grads[1:]:
                dtype = torch.promote_types(dtype, g.dtype)
            squared = torch.stack([torch.sum(torch.square(g)).to(dtype) for g in grads])
            norm = torch.sqrt(torch.sum(squared))
            clip = self.global_clipnorm
            scale = clip * torch.minimum(1.0 / norm, torch.tensor(1.0 / clip, dtype=dtype, device=norm.device)) + (norm - norm)
            for g in grads:
                g.mul_(scale.to(g.dtype))
        elif self.clipvalue and self.clipvalue > 0:
            torch._foreach_clamp_min_(grads, -self.clipvalue)
            torch._foreach_clamp_max_(grads, self.clipvalue)

    # -- weight decay -----------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list: Iterable[torch.Tensor] | None = None,
                                  var_names: Iterable[str] | None = None) -> None:
        """Leave some variables out of ``weight_decay``, as Keras's ``exclude_from_weight_decay``.

        A variable is left out when it is one of ``var_list`` (by identity) or
        when any of ``var_names``, a regular expression, is found
        (``re.search``) in its ``name``: ``"kernel"``, ``"bias"``, ``"gamma"``,
        ``"embeddings"`` for a layer's weights, not its path. A plain
        ``torch.nn.Parameter`` has no name (torch's ``Parameter.name`` is
        ``None``): only ``var_list`` leaves it out (or use
        :func:`weightwise.decay`, which decides by module type and rank). Each
        call replaces what the previous one set; with no arguments every
        variable decays again.

        It must be called before the optimizer is built (by ``build``, the
        first ``fit`` step or the first ``apply``); afterwards it is a
        ``ValueError``, as Keras documents. The exclusions are not part of
        ``get_config``, as in Keras: set them again on an optimizer rebuilt
        from a config. Every variable of ``var_list`` must be a tensor and
        every one of ``var_names`` a string that compiles as a regular
        expression, else a ``TypeError`` or ``ValueError``, and nothing changes.

        With ``weight_decay`` set, the others decay as before each step:
        ``w -= learning_rate * weight_decay * w``.

        >>> from weightwise.optimizers import SGD
        >>> from weightwise.variables import Variable
        >>> kernel, bias = Variable(torch.ones(2, 2), name="kernel"), Variable(torch.ones(2), name="bias")
        >>> opt = SGD(learning_rate=0.5, weight_decay=0.2)
        >>> opt.exclude_from_weight_decay(var_names=["bias"])
        >>> opt.build([kernel, bias])
        >>> kernel.grad, bias.grad = torch.zeros(2, 2), torch.zeros(2)
        >>> opt.step()
        True
        >>> kernel[0].detach(), bias.detach()  # 1 - 0.5 * 0.2, and 1
        (tensor([0.9000, 0.9000]), tensor([1., 1.]))
        """
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer is built.")
        self._decay_exclusion = DecayExclusion(var_list, var_names)

    def _use_weight_decay(self, variable: torch.Tensor) -> bool:
        """Whether ``weight_decay`` applies to ``variable`` (Keras's ``_use_weight_decay``)."""
        return self._decay_exclusion.decays(variable)

    def _apply_weight_decay(self, params: list[torch.Tensor], lr: float | torch.Tensor) -> None:
        if self.weight_decay is None or self._torch_decays_weights():
            return
        self._decay_weights(params, lr)

    def _decay_weights(self, params: list[torch.Tensor], lr: float | torch.Tensor) -> None:
        """``w *= 1 - lr * weight_decay`` for the variables of ``params`` that decay (Keras's and AdamW's rule)."""
        assert self.weight_decay is not None
        decayed = [p for p in params if self._decay_exclusion.decays(p)]
        if decayed:
            torch._foreach_mul_(decayed, 1 - self.weight_decay * lr)

    def _torch_decays_weights(self) -> bool:
        """Whether the torch optimizer applies the decoupled decay itself (AdamW)."""
        return False

    def _prepare_torch_step(self, step: int) -> None:
        """Hook run just before the torch step number ``step`` (counting from 1)."""

    def _rescale_momentum(self, lr: float) -> None:
        # torch keeps momentum in gradient units and multiplies by the current lr;
        # Keras keeps it in weight units, with each step's lr folded in. Rescaling
        # torch's buffer when the lr changes makes the two recurrences identical.
        key = self._lr_free_momentum_state
        previous = self._last_step_lr
        if key is None or not previous or not lr or lr == previous or self.torch_optimizer is None:
            return
        ratio = previous / lr
        for p in self._params:
            buffer = self.torch_optimizer.state.get(p, {}).get(key)
            if isinstance(buffer, torch.Tensor):
                buffer.mul_(ratio)

    # -- state (KerasStateMixin's hook) ------------------------------------------------
    def _rate_at(self, schedule: Any, step: int) -> float:
        """The learning rate the schedule or callable ``schedule`` gives at ``step``."""
        return _evaluate_schedule(schedule, step)

    # -- config ------------------------------------------------------------------------
    def _learning_rate_config(self) -> Any:
        if isinstance(self._learning_rate, float):
            return self._learning_rate
        if isinstance(self._learning_rate, LearningRateSchedule):
            return _SCHEDULES.serialize(self._learning_rate)
        return serialize_keras_object(self._learning_rate)

    def get_config(self) -> dict[str, Any]:
        """The Keras 3 config: the same keys, in Keras's order."""
        return {
            "name": self.name,
            "learning_rate": self._learning_rate_config(),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None) -> Optimizer:
        """Rebuild an optimizer from ``get_config()`` output (a schedule config is deserialized)."""
        config = dict(config)
        learning_rate = config.get("learning_rate")
        if isinstance(learning_rate, Mapping):
            if learning_rate.get("class_name") == "function":
                config["learning_rate"] = deserialize_keras_object(learning_rate, custom_objects)
            else:
                config["learning_rate"] = _SCHEDULES.deserialize(learning_rate, custom_objects)
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self._learning_rate!r}>"
