"""``SGD``: gradient descent with momentum, on ``torch.optim.SGD``."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.sgd import sgd as _torch_sgd

from weightwise.arguments import flag, real
from weightwise.optimizer_state import _Slot
from weightwise.optimizers.base_optimizer import Optimizer


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

    ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``,
    ``ema_momentum``, ``ema_overwrite_frequency``, ``loss_scale_factor``,
    ``gradient_accumulation_steps`` and ``name`` are :class:`Optimizer`'s.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    >>> opt = SGD(learning_rate=0.1, momentum=0.9)
    >>> opt.build([w])
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -1.0])
    ...     _ = opt.step()
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

    def _fused_state(self) -> None:
        if self.momentum > 0 and self.torch_optimizer is not None:
            _sgd_state(self.torch_optimizer, self._params)

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        assert self.torch_optimizer is not None
        _sgd_update(self.torch_optimizer.state, params, grads, lr, momentum=self.momentum, nesterov=self.nesterov)

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        # Keras's velocity is in weight units: -lr * torch's momentum_buffer.
        return [[_Slot("momentum", "momentum_buffer", lr_sign=-1.0)]] if self.momentum > 0 else []

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


def _sgd_state(torch_optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Create the momentum buffers at 0 where missing: with no dampening, torch's first step sets
    the buffer to the gradient, which ``momentum * 0 + g`` is too."""
    for p in params:
        state = torch_optimizer.state[p]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _sgd_update(state: Any, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor, *,
               momentum: float, nesterov: bool, weight_decay: float = 0.0) -> None:
    """``torch.optim.SGD``'s update (no dampening) through its functional form, ``lr`` a 0-d tensor."""
    buffers = [state[p]["momentum_buffer"] for p in params] if momentum > 0 else [None] * len(params)
    _torch_sgd(params, grads, buffers, foreach=True, lr=lr, momentum=momentum, dampening=0.0,
               nesterov=nesterov and momentum > 0, maximize=False, weight_decay=weight_decay)
