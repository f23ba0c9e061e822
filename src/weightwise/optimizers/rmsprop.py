"""``RMSprop`` with Keras's update exactly, as a multi-tensor ``torch.optim.Optimizer``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from weightwise.arguments import flag, real
from weightwise.optimizer_state import _Slot
from weightwise.optimizers.base_optimizer import Optimizer, _epsilon


class KerasRMSpropStep(torch.optim.Optimizer):
    """The ``torch.optim.Optimizer`` that performs Keras's RMSprop update (see :class:`RMSprop`).

    Per parameter group, with ``lr``, ``rho``, ``momentum``, ``eps`` and
    ``centered``, on every parameter that has a ``.grad``, in multi-tensor
    (``torch._foreach_*``) operations::

        v = rho * v + (1 - rho) * g ** 2                   # state "square_avg"
        a = rho * a + (1 - rho) * g                        # state "grad_avg" (centered only)
        increment = lr * g / sqrt(v + eps)                 # sqrt(v + eps - a ** 2) if centered
        m = momentum * m + increment; w = w - m            # state "momentum_buffer" (momentum > 0)
        w = w - increment                                  # momentum == 0

    The momentum buffer is in weight units, with each step's ``lr`` folded in,
    as Keras keeps it. Complex parameters are updated through their real view,
    as ``torch.optim.RMSprop`` does.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = KerasRMSpropStep([w], lr=0.01, rho=0.9, momentum=0.0, eps=1e-7, centered=False)
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9684, -0.9684])
    """

    def __init__(self, params: Any, lr: float, rho: float, momentum: float, eps: float, centered: bool) -> None:
        defaults = {"lr": lr, "rho": rho, "momentum": momentum, "eps": eps, "centered": centered}
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The state of ``p``, its buffers made at 0 on first use."""
        state = self.state[p]
        names = ["square_avg"] + ["grad_avg"] * group["centered"] + ["momentum_buffer"] * (group["momentum"] > 0)
        for name in names:
            if name not in state:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _gather(self, group: dict[str, Any], params: list[torch.Tensor],
                grads: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """``params``, ``grads`` and their state buffers, as real views."""
        views: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])
        for p, g in zip(params, grads):
            state = self._state(p, group)
            real_view = torch.view_as_real if p.is_complex() else (lambda t: t)
            tensors = [p, g, state["square_avg"]]
            tensors += [state["grad_avg"]] if group["centered"] else [None]
            tensors += [state["momentum_buffer"]] if group["momentum"] > 0 else [None]
            for out, tensor in zip(views, tensors):
                if tensor is not None:
                    out.append(real_view(tensor))
        return views

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: float | torch.Tensor,
               group: dict[str, Any]) -> None:
        """One update of ``params`` by ``grads`` at rate ``lr``, with ``group``'s ``rho``, ``momentum``,
        ``eps`` and ``centered``.

        ``lr`` may be a 0-d tensor: the update then traces into a compiled program that a new
        rate does not recompile.
        """
        params, grads, squares, averages, momenta = self._gather(group, params, grads)
        if not params:
            return
        rho = group["rho"]
        torch._foreach_mul_(squares, rho)
        torch._foreach_add_(squares, torch._foreach_mul(grads, grads), alpha=1 - rho)
        denominators = torch._foreach_add(squares, group["eps"])
        if group["centered"]:
            torch._foreach_mul_(averages, rho)
            torch._foreach_add_(averages, grads, alpha=1 - rho)
            torch._foreach_add_(denominators, torch._foreach_mul(averages, averages), alpha=-1)
        torch._foreach_sqrt_(denominators)
        increments = torch._foreach_div(torch._foreach_mul(grads, lr), denominators)
        if group["momentum"] > 0:
            torch._foreach_mul_(momenta, group["momentum"])
            torch._foreach_add_(momenta, increments)
            torch._foreach_add_(params, momenta, alpha=-1)
        else:
            torch._foreach_add_(params, increments, alpha=-1)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a ``.grad``; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            self.update(params, [p.grad for p in params], group["lr"], group)
        return loss


class RMSprop(Optimizer):
    """RMSprop, Keras's ``RMSprop`` update exactly.

    Keras's update, with ``v`` the mean square (and ``a`` the mean gradient if ``centered``)::

        v = rho * v + (1 - rho) * g ** 2
        a = rho * a + (1 - rho) * g                     # centered only
        denominator = sqrt(v + epsilon)                 # sqrt(v - a ** 2 + epsilon) if centered
        increment = learning_rate * g / denominator
        w = w - increment
        # or, with momentum:
        b = momentum * b + increment; w = w - b

    ``epsilon`` sits inside the square root, as in Keras. (``torch.optim.RMSprop``
    adds it outside, ``sqrt(v) + eps``, which is not a rounding difference: with
    gradients near ``sqrt(epsilon)`` and below, a step at ``|g| = 2e-5`` is 49
    times Keras's.) The update runs in :class:`KerasRMSpropStep`, a
    ``torch.optim.Optimizer`` of multi-tensor operations; ``torch_optimizer`` is
    one, so ``state_dict()`` and ``load_state_dict()`` work as for any torch
    optimizer. Its momentum buffer is Keras's, in weight units with each step's
    learning rate folded in, so schedules need no correction.

    Saved state (:meth:`~Optimizer.save_own_variables`, Keras's layout):
    ``iterations``, the learning rate (a float rate only), one ``velocity``
    (torch state ``square_avg``) per parameter, then with ``momentum > 0`` one
    ``momentum`` (``momentum_buffer``) per parameter, then if ``centered`` one
    ``average_gradient`` (``grad_avg``) per parameter: the same values Keras holds.

    Args:
        learning_rate: float, schedule or callable; default 0.001.
        rho: float in [0, 1]; default 0.9.
        momentum: float in [0, 1]; default 0.
        epsilon: positive float (0 divides 0 by 0 where a gradient is 0); default 1e-7.
        centered: normalize by the variance of the gradient instead of its mean square.

    The other arguments are :class:`Optimizer`'s.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = RMSprop(learning_rate=0.01)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([2e-5, -2.0])
    >>> opt.step()
    True
    >>> w.detach() - torch.tensor([1.0, -1.0])  # 0.01 * g / sqrt(0.1 * g ** 2 + 1e-7)
    tensor([-0.0006,  0.0316])
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

    def create_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return KerasRMSpropStep(
            params,
            lr=self.learning_rate,
            rho=self.rho,
            momentum=self.momentum,
            eps=self.epsilon,
            centered=self.centered,
        )

    def _settings(self) -> dict[str, Any]:
        # Read from the optimizer, not the torch group: a traced read of the group would guard on its
        # learning rate, and recompile the step when the rate changes.
        return {"rho": self.rho, "momentum": self.momentum, "eps": self.epsilon, "centered": self.centered}

    def _fused_state(self) -> None:
        assert isinstance(self.torch_optimizer, KerasRMSpropStep)
        for p in self._params:
            self.torch_optimizer._state(p, self._settings())

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        assert isinstance(self.torch_optimizer, KerasRMSpropStep)
        self.torch_optimizer.update(params, grads, lr, self._settings())

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        blocks = [[_Slot("velocity", "square_avg")]]
        if self.momentum > 0:
            blocks.append([_Slot("momentum", "momentum_buffer")])
        if self.centered:
            blocks.append([_Slot("average_gradient", "grad_avg")])
        return blocks

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon, "centered": self.centered})
        return config
