"""``Adagrad`` on ``torch.optim.Adagrad``, with Keras's epsilon."""

from __future__ import annotations

from typing import Any

import torch

from weightwise.arguments import real
from weightwise.optimizer_state import _Slot
from weightwise.optimizers.base_optimizer import Optimizer, _epsilon


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

    The other arguments are :class:`Optimizer`'s.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = Adagrad(learning_rate=0.1, initial_accumulator_value=0.0)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    True
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

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        # torch.optim.Adagrad's update with eps=0 (its state exists from construction on).
        assert self.torch_optimizer is not None
        _adagrad_update(self.torch_optimizer.state, params, grads, lr)

    def _keras_slot_blocks(self) -> list[list[_Slot]]:
        # torch's sum holds Keras's accumulator plus epsilon (see the class docstring).
        return [[_Slot("accumulator", "sum", offset=self.epsilon, initial=self.initial_accumulator_value)]]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon})
        return config


def _adagrad_update(state: Any, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor,
                   eps: float = 0.0) -> None:
    """One ``torch.optim.Adagrad`` step (no ``lr_decay``) in multi-tensor operations, ``lr`` a 0-d tensor::

        sum = sum + g ** 2;  w = w - lr * g / (sqrt(sum) + eps)

    Each parameter's torch ``step`` grows by 1, as torch's does.
    """
    slots = [state[p] for p in params]
    torch._foreach_add_([slot["step"] for slot in slots], 1)
    sums = [slot["sum"] for slot in slots]
    torch._foreach_addcmul_(sums, grads, grads, 1)
    roots = torch._foreach_sqrt(sums)
    if eps:
        torch._foreach_add_(roots, eps)
    steps = torch._foreach_div(grads, roots)
    torch._foreach_mul_(steps, lr)
    torch._foreach_sub_(params, steps)
