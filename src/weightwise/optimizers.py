"""Keras-named optimizers that drive ``torch.optim``.

Each optimizer has the name, arguments, defaults and config of its Keras 3
counterpart, and runs the update of the matching ``torch.optim`` class. What
Keras does around the update is done here, in Keras's order, on every
:meth:`Optimizer.step`:

1. the learning rate is read from the schedule, if ``learning_rate`` is one
   (``schedule(iterations)``, with ``iterations`` counting from 0);
2. ``loss_scale_factor`` is divided out of the gradients;
3. gradients are clipped: ``clipvalue`` elementwise, ``clipnorm`` per
   parameter, ``global_clipnorm`` over all of them (Keras's formulas exactly);
4. weight decay is decoupled, as in Keras 3, for every optimizer that has
   ``weight_decay`` set: ``w -= learning_rate * weight_decay * w``;
5. the ``torch.optim`` step;
6. ``iterations += 1``.

Parameters whose ``.grad`` is ``None`` are left alone, as Keras leaves variables
without gradients. Unscaling and clipping happen in place on ``.grad``. Optimizers are created without parameters, as in Keras;
:meth:`Optimizer.build` hands them the parameters and creates
``torch_optimizer``.

>>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
>>> opt = get("sgd")
>>> opt.build([w])
>>> w.grad = torch.tensor([0.5, 0.5])
>>> opt.step()
>>> w.detach()
tensor([ 0.9950, -2.0050])
>>> opt.iterations
1

Where ``torch.optim`` computes something differently from Keras, the class
docstring says so and what is done about it; the test suite measures every
trajectory against Keras 3 (torch backend).
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from weightwise.arguments import echo, finite_float, flag, invalid, real
from weightwise.optimizer_state import KerasStateMixin, _Slot
from weightwise.serialization import (
    ObjectFamily,
    deserialize_keras_object,
    serialize_keras_object,
    to_snake_case,
)

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "ExponentialDecay",
    "LearningRateSchedule",
    "Optimizer",
    "RMSprop",
    "TorchOptimizer",
    "deserialize",
    "get",
    "schedules",
    "serialize",
]


# -- validation ------------------------------------------------------------------------
def _epsilon(value: Any) -> float:
    # With epsilon 0 (or one float32 rounds to 0), a parameter whose gradient is 0 divides 0 by 0: NaN.
    epsilon = real(value, "epsilon", low=0, low_open=True)
    if np.float32(epsilon) == 0:
        raise invalid("epsilon", "a positive float that float32 does not round to 0", value)
    return epsilon


# -- learning rate schedules -----------------------------------------------------------
class LearningRateSchedule:
    """Base class of learning rate schedules: ``schedule(step) -> learning rate``.

    ``step`` is the optimizer's ``iterations`` before the update, so the first
    update uses ``schedule(0)``. Subclasses override ``__call__`` and
    ``get_config``; ``from_config`` rebuilds them as ``cls(**config)``.

    >>> class InverseTime(LearningRateSchedule):
    ...     def __init__(self, initial_learning_rate):
    ...         self.initial_learning_rate = initial_learning_rate
    ...     def __call__(self, step):
    ...         return self.initial_learning_rate / (step + 1)
    ...     def get_config(self):
    ...         return {"initial_learning_rate": self.initial_learning_rate}
    >>> InverseTime(0.1)(4)
    0.02
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`."
        )

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` in order to be serializable."
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LearningRateSchedule:
        """Rebuild a schedule from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        try:
            config = self.get_config()
        except NotImplementedError:
            return object.__repr__(self)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, as Keras's schedule.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``. The
    value is a Python float computed in double precision (Keras computes it in
    float32, so the two agree to about 1e-7 relative).

    Args:
        initial_learning_rate: non-negative float.
        decay_steps: positive number of steps.
        decay_rate: non-negative float.
        staircase: decay at discrete intervals.
        name: kept in the config, as in Keras.

    >>> schedule = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    >>> schedule(0), schedule(10), schedule(5)
    (0.1, 0.05, 0.07071067811865477)
    >>> ExponentialDecay(0.1, 10, 0.5, staircase=True)(15)
    0.05
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str = "ExponentialDecay",
    ) -> None:
        self.initial_learning_rate = real(initial_learning_rate, "initial_learning_rate", low=0)
        # Kept as given (an int stays an int in the config), but as a Python number.
        self.decay_steps = real(decay_steps, "decay_steps", low=0, low_open=True, keep_int=True)
        self.decay_rate = real(decay_rate, "decay_rate", low=0)
        self.staircase = flag(staircase, "staircase")
        if not isinstance(name, str):
            raise invalid("name", "a str", name)
        self.name = name

    def __call__(self, step: Any) -> float:
        progress = float(step) / self.decay_steps
        if self.staircase:
            progress = math.floor(progress)
        return self.initial_learning_rate * self.decay_rate**progress

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


_SCHEDULES = ObjectFamily(
    "learning rate schedule", "keras.optimizers.schedules", [LearningRateSchedule, ExponentialDecay]
)


class _Schedules:
    """``weightwise.optimizers.schedules``: the schedule classes and their serialize/deserialize.

    >>> schedules.serialize(schedules.ExponentialDecay(0.1, 10, 0.5))["class_name"]
    'ExponentialDecay'
    """

    LearningRateSchedule = LearningRateSchedule
    ExponentialDecay = ExponentialDecay

    @staticmethod
    def serialize(schedule: Any) -> Any:
        """Return the Keras 3 config dict of a schedule."""
        return _SCHEDULES.serialize(schedule)

    @staticmethod
    def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
        """Build a schedule from its Keras 3 config dict."""
        return _SCHEDULES.deserialize(config, custom_objects)


schedules = _Schedules()


def _validate_learning_rate(value: Any) -> Any:
    """A learning rate: a non-negative float, a schedule or a callable."""
    if isinstance(value, LearningRateSchedule) or (callable(value) and not isinstance(value, numbers.Real)):
        return value
    number = _rate(value)
    if number is None:
        raise invalid(
            "learning_rate", "a non-negative finite float, a LearningRateSchedule or a callable of the step count", value
        )
    return number


def _rate(value: Any) -> float | None:
    """A learning rate as a non-negative finite Python float (from a number, a numpy scalar or a
    one-element float tensor), or ``None`` if it is not one."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point() or value.is_meta:
            return None
        value = value.item()
    number = finite_float(value)
    return number if number is not None and number >= 0 else None


def _takes_no_step(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a zero-argument callable (Keras's form) rather than ``fn(step)``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL,):
            return False
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return False
    return True


def _evaluate_schedule(schedule: Callable[..., Any], step: int) -> float:
    value = (
        schedule() if not isinstance(schedule, LearningRateSchedule) and _takes_no_step(schedule) else schedule(step)
    )
    number = _rate(value)
    if number is None:
        raise ValueError(
            f"Invalid value for argument `learning_rate`: the schedule {echo(schedule)} gave {echo(value)} at "
            f"step {step}; expected a non-negative finite float (a number, a numpy scalar or a one-element float "
            "tensor)."
        )
    return number


# -- optimizers ------------------------------------------------------------------------
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
            raise ValueError(
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
            starts with ``w -= learning_rate * weight_decay * w``.
        clipnorm: clip each gradient to this L2 norm: ``g * clipnorm / max(norm(g), clipnorm)``.
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: scale all gradients together so their joint L2 norm
            is at most this value. At most one of the three clipping arguments.
        use_ema, ema_momentum, ema_overwrite_frequency, gradient_accumulation_steps:
            accepted so that Keras configs load; only their defaults are
            supported (a different value is a ``ValueError``).
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
        if use_ema is not False:
            raise ValueError(
                "Invalid value for argument `use_ema`: weightwise optimizers do not keep a moving average of "
                f"the weights; only use_ema=False is supported. Received: use_ema={use_ema!r}"
            )
        self.use_ema = False
        self.ema_momentum = real(ema_momentum, "ema_momentum", low=0, high=1)
        if ema_overwrite_frequency is not None:
            raise ValueError(
                "Invalid value for argument `ema_overwrite_frequency`: it only applies with use_ema=True, "
                f"which is not supported. Received: ema_overwrite_frequency={ema_overwrite_frequency!r}"
            )
        self.ema_overwrite_frequency = None
        self.loss_scale_factor = real(loss_scale_factor, "loss_scale_factor", low=0, low_open=True, allow_none=True)
        if gradient_accumulation_steps is not None:
            raise ValueError(
                "Invalid value for argument `gradient_accumulation_steps`: gradient accumulation is not "
                f"supported; only None is. Received: gradient_accumulation_steps={gradient_accumulation_steps!r}"
            )
        self.gradient_accumulation_steps = None
        if name is None:
            name = to_snake_case(type(self).__name__)
        if not isinstance(name, str):
            raise invalid("name", "a str", name)
        self.name = name
        self.iterations = 0
        self.built = False
        self.torch_optimizer: torch.optim.Optimizer | None = None
        self._params: list[torch.Tensor] = []
        self._last_step_lr: float | None = None

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
        self._params = params
        # torch refuses an empty parameter list; with nothing to train, step() does nothing.
        self.torch_optimizer = self.create_torch_optimizer(params) if params else None
        self.built = True

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
        return _evaluate_schedule(self._learning_rate, self.iterations)

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

        >>> SGD(loss_scale_factor=128.0).scale_loss(torch.tensor(0.5))
        tensor(64.)
        """
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def zero_grad(self) -> None:
        """Set the gradients of the parameters to ``None``."""
        if self.torch_optimizer is not None:
            self.torch_optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Apply one update from the parameters' ``.grad``, as Keras's ``apply`` does.

        Raises a ``ValueError`` when no parameter has a gradient, as Keras does;
        an optimizer built on no parameters does nothing.
        """
        if not self.built:
            raise ValueError(f"Optimizer {self.name!r} is not built: call `build(params)` before `step()`.")
        if self.torch_optimizer is None:
            return
        params = [p for p in self._params if p.grad is not None]
        if not params:
            raise ValueError("No gradients provided for any variable: every parameter's `.grad` is None.")
        lr = self.learning_rate
        with torch.no_grad():
            self._rescale_momentum(lr)
            self._set_torch_lr(lr)
            grads = [p.grad for p in params]
            if self.loss_scale_factor is not None:
                for g in grads:
                    g.div_(self.loss_scale_factor)
            self._clip_gradients(params, grads)
            self._apply_weight_decay(params, lr)
            self._prepare_torch_step(self.iterations + 1)
        self.torch_optimizer.step()
        self._last_step_lr = lr
        self.iterations += 1

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
            torch.nn.utils.clip_grad_value_(params, self.clipvalue)

    def _apply_weight_decay(self, params: list[torch.Tensor], lr: float) -> None:
        if self.weight_decay is None or self._torch_decays_weights():
            return
        factor = 1 - self.weight_decay * lr
        for p in params:
            p.mul_(factor)

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


class SGD(Optimizer):
    """Gradient descent with momentum, Keras's ``SGD`` on ``torch.optim.SGD``.

    Keras's update, with ``v`` the velocity (0 at first)::

        v = momentum * v - learning_rate * g
        w = w + v                                       # nesterov=False
        w = w + momentum * v - learning_rate * g        # nesterov=True

    ``torch.optim.SGD`` keeps ``b = momentum * b + g`` and does
    ``w -= learning_rate * b``; at a constant learning rate ``v = -learning_rate * b``
    and the two are the same update. When the learning rate changes (a
    schedule, or setting ``learning_rate``), Keras's velocity keeps the old
    rate folded in; torch's buffer is rescaled by ``old_lr / new_lr`` before
    the step so that the recurrences stay identical. The one case this cannot
    follow is a step at learning rate exactly 0 with momentum: Keras still
    moves the weights by ``momentum * v``, torch moves nothing.

    Saved state (:meth:`~Optimizer.save_own_variables`, Keras's layout):
    ``iterations``, the learning rate (a float rate only), then, with
    ``momentum > 0``, one velocity per parameter: Keras's ``v``, which is
    ``-lr * momentum_buffer`` with ``lr`` the last step's rate. Loading divides
    by the rate again and records it, so a learning rate changed since the last
    step is still rescaled as above. The change of units is exact when the rate
    is a power of two, else it costs one float rounding of the buffer: a
    save-load-resume then follows uninterrupted training to about 1e-7, not
    bit for bit (Keras's float32 variable cannot hold more).

    Args:
        learning_rate: float, schedule or callable; default 0.01.
        momentum: float in [0, 1]; default 0.
        nesterov: whether to use Nesterov momentum.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: see :class:`Optimizer`.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    >>> opt = SGD(learning_rate=0.1, momentum=0.9)
    >>> opt.build([w])
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -1.0])
    ...     opt.step()
    >>> w.detach()
    tensor([0.8550, 2.2900])
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
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
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )
        self.momentum = real(momentum, "momentum", low=0, high=1)
        self.nesterov = flag(nesterov, "nesterov")
        self._lr_free_momentum_state = "momentum_buffer" if self.momentum > 0 else None

    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            params,
            lr=self.learning_rate,
            momentum=self.momentum,
            # Keras ignores nesterov without momentum; torch refuses the combination.
            nesterov=self.nesterov and self.momentum > 0,
        )

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        # Keras's velocity is in weight units: -lr * torch's momentum_buffer.
        return [[_Slot("momentum", "momentum_buffer", lr_sign=-1.0)]] if self.momentum > 0 else []

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


class Adam(Optimizer):
    """Adam, Keras's ``Adam`` on ``torch.optim.Adam``, with Keras's epsilon exactly.

    Keras's update at step ``t`` (counting from 1), with ``m``, ``v`` the moments::

        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g ** 2
        lr_t = learning_rate * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        w = w - lr_t * m / (sqrt(v) + epsilon)

    ``torch.optim.Adam`` adds its ``eps`` to the bias-corrected root instead:
    ``w -= learning_rate / (1 - beta_1 ** t) * m / (sqrt(v) / sqrt(1 - beta_2 ** t) + eps)``.
    The two are the same update exactly when ``eps = epsilon / sqrt(1 - beta_2 ** t)``,
    so before each step the torch group's ``eps`` is set to that value; the
    trajectories then agree with Keras to float32 rounding. (A constant eps could
    not do this; without the adjustment the steps differ by a factor
    ``(sqrt(v) + epsilon) / (sqrt(v) + epsilon * sqrt(1 - beta_2 ** t))``, which
    matters only while ``sqrt(v)`` is within a few orders of magnitude of
    ``epsilon``.) ``amsgrad`` uses the running maximum of ``v`` in both.

    One corner differs: torch counts ``t`` per parameter, Keras counts the
    optimizer's steps. They agree unless a parameter misses gradients on some
    steps and then gets them again.

    Saved state (:meth:`~Optimizer.save_own_variables`, Keras's layout):
    ``iterations``, the learning rate (a float rate only), then for each
    parameter its ``momentum`` and ``velocity`` (torch's ``exp_avg`` and
    ``exp_avg_sq``, the same values), then with ``amsgrad`` one
    ``velocity_hat`` (``max_exp_avg_sq``) per parameter. Loading sets torch's
    per-parameter ``step`` to ``iterations``.

    Args:
        learning_rate: float, schedule or callable; default 0.001.
        beta_1: float in [0, 1); default 0.9.
        beta_2: float in [0, 1); default 0.999.
        epsilon: positive float (0 divides 0 by 0 where a gradient is 0); default 1e-7.
        amsgrad: whether to use the AMSGrad variant.
        weight_decay and the rest: see :class:`Optimizer` (decoupled, as in Keras).

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = Adam(learning_rate=0.1)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9000, -0.9000])
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
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
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )
        self.beta_1 = real(beta_1, "beta_1", low=0, high=1, high_open=True)
        self.beta_2 = real(beta_2, "beta_2", low=0, high=1, high_open=True)
        self.epsilon = _epsilon(epsilon)
        self.amsgrad = flag(amsgrad, "amsgrad")

    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            params, lr=self.learning_rate, betas=(self.beta_1, self.beta_2), eps=self.epsilon, amsgrad=self.amsgrad
        )

    _torch_keeps_step = True

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        blocks = [[_Slot("momentum", "exp_avg"), _Slot("velocity", "exp_avg_sq")]]
        if self.amsgrad:
            blocks.append([_Slot("velocity_hat", "max_exp_avg_sq")])
        return blocks

    def _prepare_torch_step(self, step: int) -> None:
        assert self.torch_optimizer is not None
        eps = self.epsilon / math.sqrt(1.0 - self.beta_2**step)
        for group in self.torch_optimizer.param_groups:
            group["eps"] = eps

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": self.amsgrad})
        return config


class AdamW(Adam):
    """Adam with decoupled weight decay, Keras's ``AdamW`` on ``torch.optim.AdamW``.

    Each step first decays ``w -= learning_rate * weight_decay * w``, then takes
    the :class:`Adam` step; ``torch.optim.AdamW`` decays in exactly that way and
    order, and the epsilon is adjusted as in :class:`Adam`, so the trajectory
    is Keras's to float32 rounding. The saved state is laid out as :class:`Adam`'s.

    Args:
        learning_rate: float, schedule or callable; default 0.001.
        weight_decay: non-negative float (not None); default 0.004.
        beta_1, beta_2, epsilon, amsgrad: as in :class:`Adam`.
        the rest: see :class:`Optimizer`.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = AdamW(learning_rate=0.1, weight_decay=0.5)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.8500, -0.8500])
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
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
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )

    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            params,
            lr=self.learning_rate,
            betas=(self.beta_1, self.beta_2),
            eps=self.epsilon,
            weight_decay=self.weight_decay,
            amsgrad=self.amsgrad,
        )

    def _torch_decays_weights(self) -> bool:
        return True


class RMSprop(Optimizer):
    """RMSprop, Keras's ``RMSprop`` on ``torch.optim.RMSprop``: epsilon sits elsewhere.

    Keras's update, with ``v`` the mean square (and ``a`` the mean gradient if ``centered``)::

        v = rho * v + (1 - rho) * g ** 2
        denominator = sqrt(v + epsilon)                 # sqrt(v - a ** 2 + epsilon) if centered
        increment = learning_rate * g / denominator
        w = w - increment                               # or, with momentum:
        b = momentum * b + increment; w = w - b

    ``torch.optim.RMSprop`` adds ``eps`` outside the root:
    ``denominator = sqrt(v) + epsilon``. weightwise passes ``epsilon`` through,
    so each step is Keras's times ``sqrt(v + epsilon) / (sqrt(v) + epsilon)``,
    about ``1 + epsilon / (2 v)``. With the default epsilon 1e-7 that is
    2e-7 at ``v = 0.1``, 4e-6 at ``v = 0.01``, 5e-4 at ``v = 1e-4``; once
    ``v`` nears ``epsilon`` (gradients of order 1e-3 and below) the two part
    ways: Keras's step is bounded by ``learning_rate * g / sqrt(epsilon)``,
    torch's stays of order ``learning_rate`` however small ``g`` is (a first
    step at ``|g| = 1e-4`` is 10x Keras's). No torch argument reproduces ``sqrt(v + epsilon)``,
    so this difference stays. The momentum buffer is rescaled on learning rate
    changes as in :class:`SGD`.

    Saved state (:meth:`~Optimizer.save_own_variables`, Keras's layout):
    ``iterations``, the learning rate (a float rate only), one ``velocity``
    (torch's ``square_avg``) per parameter, then with ``momentum > 0`` one
    ``momentum`` per parameter (Keras's is in weight units: ``lr *
    momentum_buffer``, with the last step's rate; the change of units costs one
    rounding unless the rate is a power of two, as in :class:`SGD`), then if
    ``centered`` one ``average_gradient`` (``grad_avg``) per parameter.

    Args:
        learning_rate: float, schedule or callable; default 0.001.
        rho: float in [0, 1]; default 0.9.
        momentum: float in [0, 1]; default 0.
        epsilon: positive float (0 divides 0 by 0 where a gradient is 0); default 1e-7.
        centered: normalize by the variance of the gradient instead of its mean square.
        the rest: see :class:`Optimizer`.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = RMSprop(learning_rate=0.01)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9684, -0.9684])
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
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
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )
        self.rho = real(rho, "rho", low=0, high=1)
        self.momentum = real(momentum, "momentum", low=0, high=1)
        self.epsilon = _epsilon(epsilon)
        self.centered = flag(centered, "centered")
        self._lr_free_momentum_state = "momentum_buffer" if self.momentum > 0 else None

    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(
            params,
            lr=self.learning_rate,
            alpha=self.rho,
            eps=self.epsilon,
            momentum=self.momentum,
            centered=self.centered,
        )

    _torch_keeps_step = True

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        blocks = [[_Slot("velocity", "square_avg")]]
        if self.momentum > 0:
            # Keras's momentum is in weight units: lr * torch's momentum_buffer.
            blocks.append([_Slot("momentum", "momentum_buffer", lr_sign=1.0)])
        if self.centered:
            blocks.append([_Slot("average_gradient", "grad_avg")])
        return blocks

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon, "centered": self.centered})
        return config


class Adagrad(Optimizer):
    """Adagrad, Keras's ``Adagrad`` on ``torch.optim.Adagrad``, with Keras's epsilon exactly.

    Keras's update, with the accumulator ``a`` starting at ``initial_accumulator_value``::

        a = a + g ** 2
        w = w - learning_rate * g / sqrt(a + epsilon)

    ``torch.optim.Adagrad`` divides by ``sqrt(a) + eps`` instead. Since ``a``
    only ever grows by ``g ** 2``, the torch accumulator is started at
    ``initial_accumulator_value + epsilon`` and given ``eps=0``: then
    ``sqrt(a_torch) = sqrt(a + epsilon)`` at every step, which is Keras's update
    to float32 rounding. (So ``torch_optimizer.state[p]["sum"]`` holds Keras's
    accumulator plus ``epsilon``.)

    Saved state (:meth:`~Optimizer.save_own_variables`, Keras's layout):
    ``iterations``, the learning rate (a float rate only), then one
    ``accumulator`` per parameter: torch's ``sum`` minus ``epsilon``.

    Args:
        learning_rate: float, schedule or callable; default 0.001.
        initial_accumulator_value: non-negative float; default 0.1.
        epsilon: positive float (0 divides 0 by 0 where a gradient is 0); default 1e-7.
        the rest: see :class:`Optimizer`.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = Adagrad(learning_rate=0.1, initial_accumulator_value=0.0)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9000, -0.9000])
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
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
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )
        self.initial_accumulator_value = real(initial_accumulator_value, "initial_accumulator_value", low=0)
        self.epsilon = _epsilon(epsilon)

    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adagrad(
            params,
            lr=self.learning_rate,
            initial_accumulator_value=self.initial_accumulator_value + self.epsilon,
            eps=0.0,
        )

    _torch_keeps_step = True

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        # torch's sum holds Keras's accumulator plus epsilon (see the class docstring).
        return [[_Slot("accumulator", "sum", offset=self.epsilon, initial=self.initial_accumulator_value)]]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon})
        return config


class TorchOptimizer(Optimizer):
    """A ready ``torch.optim.Optimizer`` behind the same interface as the Keras-named ones.

    :func:`get` wraps any ``torch.optim.Optimizer`` in it. ``step()`` is the torch
    step (the torch optimizer does its own weight decay; there is no clipping
    or schedule here) followed by ``iterations += 1``; ``learning_rate`` reads
    the first parameter group's ``lr`` and sets every group's. ``build(params)``
    only checks that the torch optimizer covers ``params``. It cannot be
    serialized: a config cannot hold the parameters a torch optimizer is made of.

    Its saved state (:meth:`~Optimizer.save_own_variables`) is in weightwise's
    own layout, not Keras's (Keras has no such optimizer): ``"0"`` is
    ``iterations`` (int32), then for each parameter in the order of the
    parameter groups, the values of its torch state in sorted key order
    (tensors as arrays, numbers such as a float ``step`` as 0-d arrays; a
    parameter with no state yet adds nothing). The learning rate is not stored:
    it lives in the torch optimizer's groups. Loading into an optimizer that has
    taken no step yet finds the keys of its state by a step with zero gradients
    on a throwaway copy of it.

    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = get(torch.optim.SGD([w], lr=0.5))
    >>> type(opt).__name__, opt.learning_rate
    ('TorchOptimizer', 0.5)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([1.0])
    >>> opt.step()
    >>> w.detach()
    tensor([0.5000])
    >>> with_momentum = get(torch.optim.SGD([w], lr=0.5, momentum=0.9))
    >>> with_momentum.step()
    >>> state = {}
    >>> with_momentum.save_own_variables(state)  # iterations, then w's momentum_buffer
    >>> state
    {'0': array(1, dtype=int32), '1': array([1.], dtype=float32)}
    """

    def __init__(self, torch_optimizer: torch.optim.Optimizer, name: str | None = None) -> None:
        if not isinstance(torch_optimizer, torch.optim.Optimizer):
            raise ValueError(
                "Invalid value for argument `torch_optimizer`: expected a torch.optim.Optimizer. "
                f"Received: torch_optimizer={torch_optimizer!r}"
            )
        super().__init__(learning_rate=0.0, name=name or to_snake_case(type(torch_optimizer).__name__))
        self.torch_optimizer = torch_optimizer
        self._params = [p for group in torch_optimizer.param_groups for p in group["params"]]
        self.built = True

    def build(self, params: Iterable[torch.Tensor]) -> None:
        """Check that the torch optimizer updates every one of ``params``."""
        covered = {id(p) for p in self._params}
        missing = [p for p in _parameter_list(params) if id(p) not in covered]
        if missing:
            shapes = [tuple(p.shape) for p in missing]
            raise ValueError(
                f"The torch optimizer {type(self.torch_optimizer).__name__} does not update {len(missing)} of the "
                f"parameters it is asked to train (shapes {shapes}). Create it over all of them, e.g. "
                "`torch.optim.SGD(model.parameters(), lr=...)`."
            )

    @property
    def learning_rate(self) -> float:
        assert self.torch_optimizer is not None
        return float(self.torch_optimizer.param_groups[0]["lr"])

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        value = _validate_learning_rate(value)
        if not isinstance(value, float):
            raise TypeError(
                "A wrapped torch optimizer takes a float learning rate; use a torch.optim.lr_scheduler "
                f"for schedules. Received: learning_rate={value!r}"
            )
        if self.torch_optimizer is not None:
            self._set_torch_lr(value)

    def _stores_learning_rate(self) -> bool:
        return False

    def step(self) -> None:
        """The torch optimizer's step, then ``iterations += 1``."""
        assert self.torch_optimizer is not None
        self.torch_optimizer.step()
        self.iterations += 1

    def get_config(self) -> dict[str, Any]:
        raise TypeError(
            f"A wrapped torch optimizer ({type(self.torch_optimizer).__name__}) cannot be serialized: "
            "its config would have to hold the parameters. Use a weightwise optimizer (e.g. 'adam') to save "
            "the optimizer config."
        )

    def __repr__(self) -> str:
        return f"<TorchOptimizer {type(self.torch_optimizer).__name__} name={self.name!r}>"


_BUILTINS = [Optimizer, SGD, Adam, AdamW, RMSprop, Adagrad]
# Keras resolves built-in optimizer names case-insensitively ('adam', 'Adam', 'ADAM').
_LOWER = {cls.__name__.lower(): cls for cls in _BUILTINS}

_FAMILY = ObjectFamily("optimizer", "keras.optimizers", _BUILTINS, extra_names=_LOWER)

# Keras on its torch backend serializes its optimizers under backend modules.
_KERAS_BACKEND_MODULE = re.compile(r"^keras\.src\.backend\.\w+\.optimizers(\.\w+)?$")


def serialize(optimizer: Any) -> dict[str, Any] | None:
    """Return the Keras 3 config dict of an optimizer.

    >>> serialize(SGD(momentum=0.9))["config"]["momentum"]
    0.9
    """
    return _FAMILY.serialize(optimizer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build an optimizer from a Keras 3 config dict (or a string id).

    Class names are case-insensitive for built-ins, as in Keras, and the
    configs Keras writes on its torch backend (module
    ``keras.src.backend.torch.optimizers.torch_sgd``) are read too.

    >>> deserialize({"class_name": "Adam", "config": {"learning_rate": 0.01}}).learning_rate
    0.01
    """
    if isinstance(config, Mapping):
        config = dict(config)
        class_name = config.get("class_name")
        if isinstance(class_name, str) and class_name.lower() in _LOWER:
            module = config.get("module")
            if isinstance(module, str) and _KERAS_BACKEND_MODULE.match(module):
                config["module"] = "keras.optimizers"
                if config.get("registered_name") == class_name:
                    config["registered_name"] = None
            config["class_name"] = _LOWER[class_name.lower()].__name__
    elif isinstance(config, str) and config.lower() in _LOWER:
        config = _LOWER[config.lower()].__name__
    return _FAMILY.deserialize(config, custom_objects)


def get(identifier: Any) -> Optimizer | None:
    """Resolve an optimizer identifier to an :class:`Optimizer`.

    ``None`` stays ``None``; strings (``'sgd'``, ``'adam'``, ``'adamw'``,
    ``'rmsprop'``, ``'adagrad'``, class names, any case) and config dicts are
    deserialized; an :class:`Optimizer` passes through; a ``torch.optim.Optimizer``
    is wrapped in :class:`TorchOptimizer`. Anything else raises a ``ValueError``.

    >>> get("rmsprop")
    <RMSprop name='rm_sprop' learning_rate=0.001>
    >>> get("nadam")
    Traceback (most recent call last):
    ...
    ValueError: Unknown optimizer: 'nadam'. ...
    """
    if identifier is None:
        return None
    if isinstance(identifier, (str, Mapping)):
        obj = deserialize(identifier)
    elif isinstance(identifier, torch.optim.Optimizer):
        obj = TorchOptimizer(identifier)
    elif inspect.isclass(identifier) and issubclass(identifier, Optimizer):
        obj = identifier()
    else:
        obj = identifier
    if isinstance(obj, Optimizer):
        return obj
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Expected None, a string id, a config dict, "
        "an Optimizer or a torch.optim.Optimizer."
    )
