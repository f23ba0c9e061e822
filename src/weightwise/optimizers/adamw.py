"""``AdamW``: Adam with decoupled weight decay, on ``torch.optim.AdamW``."""

from __future__ import annotations

from typing import Any

import torch

from weightwise.optimizers.adam import Adam


class AdamW(Adam):
    """Adam with decoupled weight decay, Keras's ``AdamW`` on ``torch.optim.AdamW``.

    Each step first decays ``w -= learning_rate * weight_decay * w``, then takes
    the :class:`Adam` step; ``torch.optim.AdamW`` decays in exactly that way and
    order, and the epsilon is adjusted as in :class:`Adam`, so the trajectory
    is Keras's to float32 rounding. The saved state is laid out as :class:`Adam`'s.

    Variables left out by :meth:`~Optimizer.exclude_from_weight_decay` sit in
    torch parameter groups with ``weight_decay=0``. The groups follow the order
    the optimizer was built with (one group per run of decayed or excluded
    variables), so torch's parameter order, which its ``state_dict`` and the
    saved torch state are indexed by, stays the variables' order.

    Args:
        learning_rate: float, schedule or callable; default 0.001.
        weight_decay: non-negative float (not None); default 0.004.

    ``beta_1``, ``beta_2``, ``epsilon`` and ``amsgrad`` are as in :class:`Adam`; the other
    arguments are :class:`Optimizer`'s.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = AdamW(learning_rate=0.1, weight_decay=0.5)
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.3, -2.0])
    >>> opt.step()
    True
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
            self._decay_groups(params),
            lr=self.learning_rate,
            betas=(self.beta_1, self.beta_2),
            eps=self.epsilon,
            weight_decay=self.weight_decay,
            amsgrad=self.amsgrad,
        )

    def _torch_decays_weights(self) -> bool:
        return True

    def _fused_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        # torch.optim.AdamW's order: the decoupled decay, then the Adam step.
        self._decay_weights(params, lr)
        super()._fused_update(params, grads, lr)

    def _decay_groups(self, params: list[torch.Tensor]) -> list[torch.Tensor] | list[dict[str, Any]]:
        """``params`` as they are, or in order-keeping groups where some are excluded from the decay."""
        if not self._decay_exclusion.excludes_any:
            return params
        groups: list[dict[str, Any]] = []
        for param in params:
            decays = self._decay_exclusion.decays(param)
            if not groups or groups[-1]["decays"] != decays:
                groups.append({"decays": decays, "params": []})
            groups[-1]["params"].append(param)
        return [
            {"params": group["params"]} if group["decays"] else {"params": group["params"], "weight_decay": 0.0}
            for group in groups
        ]
