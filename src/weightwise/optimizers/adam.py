"""``Adam`` on ``torch.optim.Adam``, with Keras's epsilon."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.optimizer import _get_scalar_dtype

from weightwise.arguments import flag, real
from weightwise.optimizer_state import _Slot
from weightwise.optimizers.base_optimizer import Optimizer, _epsilon


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

    torch counts ``t`` per parameter, Keras counts the optimizer's steps
    (``iterations``). Once a step leaves a parameter without a gradient, each
    parameter's torch ``step`` is set to ``iterations`` before every update, so
    the bias correction stays Keras's. One corner remains: a parameter whose
    very first gradient comes after some steps starts its count at 1 (its
    moments, like Keras's, start at 0).

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

    ``weight_decay`` (decoupled, as in Keras) and the other arguments are :class:`Optimizer`'s.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = Adam(learning_rate=0.1)
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

    def _fused_state(self) -> None:
        assert self.torch_optimizer is not None
        _adam_state(self.torch_optimizer, self._params, self.amsgrad)
        step = self.iterations + 1
        self._prepare_torch_step(step)
        # The same Python numbers as the eager step's (torch's bias corrections, Keras's epsilon),
        # carried as tensors: they change at every step.
        self._fused_scalars(correction_1=1 - self.beta_1**step, root_correction_2=(1 - self.beta_2**step) ** 0.5,
                            epsilon=self.torch_optimizer.param_groups[0]["eps"])

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        assert self.torch_optimizer is not None
        if len(params) < len(self._params):
            # A parameter without a gradient keeps its torch step count: eager steps must align the counts.
            self._uneven_steps = True
        scalars = self.__dict__["_fused_values"]
        _adam_update(self.torch_optimizer.state, params, grads, lr=lr, beta_1=self.beta_1, beta_2=self.beta_2,
                    amsgrad=self.amsgrad, correction_1=scalars["correction_1"],
                    root_correction_2=scalars["root_correction_2"], epsilon=scalars["epsilon"])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": self.amsgrad})
        return config


def _adam_state(torch_optimizer: torch.optim.Optimizer, params: list[torch.Tensor], amsgrad: bool) -> None:
    """Create the state ``torch.optim.Adam``'s first step would (step count and moments at 0) where missing."""
    with torch.no_grad():
        for p in params:
            state = torch_optimizer.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if amsgrad:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _adam_update(state: Any, params: list[torch.Tensor], grads: list[torch.Tensor], *, lr: torch.Tensor,
                beta_1: float, beta_2: float, amsgrad: bool, correction_1: torch.Tensor,
                root_correction_2: torch.Tensor, epsilon: torch.Tensor | float) -> None:
    """One Adam step of ``params`` in multi-tensor operations, in ``torch.optim.Adam``'s order.

    With ``m``, ``v`` the torch state ``exp_avg``, ``exp_avg_sq`` (``v`` replaced by its running
    maximum ``max_exp_avg_sq`` with ``amsgrad``)::

        m = m + (1 - beta_1) * (g - m);  v = beta_2 * v + (1 - beta_2) * g ** 2
        w = w - lr / correction_1 * m / (sqrt(v) / root_correction_2 + epsilon)

    The per-step scalars are tensors, so the update traces into one program that a new
    learning rate or step count does not recompile; each parameter's torch ``step`` grows by 1.
    """
    slots = [state[p] for p in params]
    torch._foreach_add_([slot["step"] for slot in slots], 1)
    averages = [slot["exp_avg"] for slot in slots]
    squares = [slot["exp_avg_sq"] for slot in slots]
    torch._foreach_lerp_(averages, grads, 1 - beta_1)
    torch._foreach_mul_(squares, beta_2)
    torch._foreach_addcmul_(squares, grads, grads, 1 - beta_2)
    if amsgrad:
        maxima = [slot["max_exp_avg_sq"] for slot in slots]
        torch._foreach_maximum_(maxima, squares)
        squares = maxima
    roots = torch._foreach_sqrt(squares)
    torch._foreach_div_(roots, root_correction_2)
    # A list, not one 0-d tensor: dynamo reads a lone tensor operand of an in-place add back to Python.
    torch._foreach_add_(roots, [epsilon] * len(roots))
    steps = torch._foreach_div(averages, roots)
    torch._foreach_mul_(steps, lr / correction_1)
    torch._foreach_sub_(params, steps)
