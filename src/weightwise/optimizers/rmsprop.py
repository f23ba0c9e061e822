"""``RMSprop`` on ``torch.optim.RMSprop``."""

from __future__ import annotations

from typing import Any

import torch

from weightwise.arguments import flag, real
from weightwise.optimizer_state import _Slot
from weightwise.optimizers.base_optimizer import Optimizer, _epsilon


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
