"""``TorchOptimizer``: a ready ``torch.optim.Optimizer`` behind the Keras-named interface."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from weightwise import clock
from weightwise.optimizers.adagrad import _adagrad_update
from weightwise.optimizers.adam import _adam_state, _adam_update
from weightwise.optimizers.base_optimizer import Optimizer, _parameter_list
from weightwise.optimizers.learning_rate_schedule import _validate_learning_rate
from weightwise.optimizers.sgd import _sgd_state, _sgd_update
from weightwise.serialization import (
    to_snake_case,
)

# The torch optimizers whose update is written for a compiled step (exact classes: a subclass
# may change the update).
_FUSED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad)


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

    >>> from weightwise.optimizers import get
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = get(torch.optim.SGD([w], lr=0.5))
    >>> type(opt).__name__, opt.learning_rate
    ('TorchOptimizer', 0.5)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([1.0])
    >>> opt.step()
    True
    >>> w.detach()
    tensor([0.5000])
    >>> with_momentum = get(torch.optim.SGD([w], lr=0.5, momentum=0.9))
    >>> with_momentum.step()
    True
    >>> state = {}
    >>> with_momentum.save_own_variables(state)  # iterations, then w's momentum_buffer
    >>> state
    {'0': array(1, dtype=int32), '1': array([1.], dtype=float32)}
    """

    def __init__(self, torch_optimizer: torch.optim.Optimizer, name: str | None = None) -> None:
        if not isinstance(torch_optimizer, torch.optim.Optimizer):
            raise TypeError(
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

    def exclude_from_weight_decay(self, var_list: Iterable[torch.Tensor] | None = None,
                                  var_names: Iterable[str] | None = None) -> None:
        """Always a ``ValueError``: a wrapped torch optimizer is built when it is made, and decays by its groups.

        Leave parameters out of its decay with a parameter group that has
        ``weight_decay=0`` when creating it, or decay by rule with
        :func:`weightwise.decay` on a torch optimizer without ``weight_decay``.

        >>> from weightwise.optimizers import get
        >>> opt = get(torch.optim.AdamW([torch.nn.Parameter(torch.ones(1))]))
        >>> opt.exclude_from_weight_decay(var_names=["bias"])
        Traceback (most recent call last):
        ...
        ValueError: `exclude_from_weight_decay()` can only be configured before the optimizer is built. ...
        """
        raise ValueError(
            "`exclude_from_weight_decay()` can only be configured before the optimizer is built. A wrapped "
            f"torch optimizer ({type(self.torch_optimizer).__name__}) is built when it is made: give the parameters "
            "to leave out a parameter group with weight_decay=0, or decay by rule with weightwise.decay(...). "
            f"Received: var_list={var_list!r:.100}, var_names={var_names!r:.100}"
        )

    def _stores_learning_rate(self) -> bool:
        return False

    def step(self) -> bool:
        """The torch optimizer's step, then ``iterations += 1``; returns ``True`` (the weights were updated)."""
        assert self.torch_optimizer is not None
        self.torch_optimizer.step()
        self._iterations += 1
        clock.set_step(self.iterations)
        return True

    # -- one update inside a compiled step (weightwise.compiled_step) ---------------------
    def _fusion_blocker(self) -> str | None:
        """Why the wrapped optimizer's update cannot be traced: only torch's SGD, Adam, AdamW and
        Adagrad are written for it, with one setting for all parameters and torch's plain options."""
        assert self.torch_optimizer is not None
        kind = type(self.torch_optimizer)
        name = f"the wrapped torch optimizer {kind.__name__}"
        if kind not in _FUSED:
            return f"{name} has no update written for a compiled step (SGD, Adam, AdamW and Adagrad have)"
        groups = self.torch_optimizer.param_groups
        settings = [{k: v for k, v in group.items() if k != "params"} for group in groups]
        if any(setting != settings[0] for setting in settings[1:]):
            return f"{name} has parameter groups with different settings"
        group = settings[0]
        for option in ("maximize", "differentiable", "fused", "capturable"):
            if group.get(option):
                return f"{name} has {option}=True, which the compiled update does not follow"
        if any(isinstance(v, torch.Tensor) for v in group.values()) or any(
                isinstance(v, torch.Tensor) for v in group.get("betas", ())):
            return f"{name} holds a tensor hyperparameter"
        if kind is torch.optim.SGD and group["momentum"] and group["dampening"]:
            return f"{name} has momentum with dampening={group['dampening']} (its first step differs)"
        if kind is torch.optim.Adagrad and group["lr_decay"]:
            return f"{name} has lr_decay={group['lr_decay']}"
        if kind is not torch.optim.SGD:
            steps = {float(state["step"]) for state in self.torch_optimizer.state.values() if "step" in state}
            if len(steps) > 1:
                return f"{name} holds parameters at different step counts ({sorted(steps)[:3]})"
        if any(p.is_complex() for p in self._params):
            return f"{name} updates complex parameters"
        changed = self._changed_settings()
        if changed:
            return f"{name} changed {changed} since its update was compiled (the compiled update holds them fixed)"
        return None

    def _settings(self) -> dict[str, Any]:
        """The first group's settings but the rate, which the compiled update takes as a tensor."""
        assert self.torch_optimizer is not None
        return {key: value for key, value in self.torch_optimizer.param_groups[0].items() if key not in ("params", "lr")}

    def _changed_settings(self) -> str:
        """The settings changed since the fused update first read them (e.g. a scheduler cycling momentum)."""
        traced = self.__dict__.get("_fused_settings")
        if traced is None:
            return ""
        current = self._settings()
        return ", ".join(f"{key} from {traced[key]!r} to {current[key]!r}" for key in traced if current[key] != traced[key])

    def _fused_state(self) -> None:
        assert self.torch_optimizer is not None
        optimizer, group = self.torch_optimizer, self.torch_optimizer.param_groups[0]
        # The traced update reads a copy without the rate, which it takes as a tensor: read there, the
        # group's rate would be traced in as a constant. The other settings are traced in as they
        # are now: a change must not go unnoticed.
        changed = self._changed_settings()
        if changed:
            raise ValueError(
                f"The wrapped torch optimizer {type(optimizer).__name__} changed {changed} after its update was "
                "compiled into the training step, which holds them fixed. Keep them constant (only `lr` may "
                "change), or train with jit_compile=False.")
        if "_fused_settings" not in self.__dict__:
            self._fused_settings = self._settings()
        if isinstance(optimizer, torch.optim.SGD):
            if group["momentum"]:
                _sgd_state(optimizer, self._params)
        elif isinstance(optimizer, torch.optim.Adam):
            _adam_state(optimizer, self._params, group["amsgrad"])
            # torch counts steps per parameter; the blocker has checked that they agree.
            step = max(float(optimizer.state[p]["step"]) for p in self._params) + 1
            beta_1, beta_2 = group["betas"]
            self._fused_scalars(correction_1=1 - beta_1**step, root_correction_2=(1 - beta_2**step) ** 0.5)

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        assert self.torch_optimizer is not None
        optimizer, group = self.torch_optimizer, self._fused_settings
        decay = group["weight_decay"]
        if isinstance(optimizer, torch.optim.SGD):
            _sgd_update(optimizer.state, params, grads, lr, momentum=group["momentum"], nesterov=group["nesterov"],
                        weight_decay=decay)
            return
        if decay and isinstance(optimizer, torch.optim.Adam) and group.get("decoupled_weight_decay"):
            torch._foreach_mul_(params, 1 - lr * decay)
        elif decay:
            grads = torch._foreach_add(grads, params, alpha=decay)
        if isinstance(optimizer, torch.optim.Adagrad):
            _adagrad_update(optimizer.state, params, grads, lr, eps=group["eps"])
            return
        scalars = self.__dict__["_fused_values"]
        beta_1, beta_2 = group["betas"]
        _adam_update(optimizer.state, params, grads, lr=lr, beta_1=beta_1, beta_2=beta_2, amsgrad=group["amsgrad"],
                     correction_1=scalars["correction_1"], root_correction_2=scalars["root_correction_2"],
                     epsilon=group["eps"])

    def get_config(self) -> dict[str, Any]:
        raise TypeError(
            f"A wrapped torch optimizer ({type(self.torch_optimizer).__name__}) cannot be serialized: "
            "its config would have to hold the parameters. Use a weightwise optimizer (e.g. 'adam') to save "
            "the optimizer config."
        )

    def __repr__(self) -> str:
        return f"<TorchOptimizer {type(self.torch_optimizer).__name__} name={self.name!r}>"
