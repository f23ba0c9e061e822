"""``LossScaleOptimizer``: Keras's dynamic loss scaling around another optimizer, for float16 training."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from weightwise.arguments import count, echo, real
from weightwise.optimizer_state import _read_store
from weightwise.optimizers.base_optimizer import Optimizer
from weightwise.serialization import deserialize_keras_object, serialize_keras_object

__all__ = ["LossScaleOptimizer"]

# What Keras's LossScaleOptimizer accepted as base-optimizer arguments, at their defaults only
# (older Keras versions wrote them into its config).
_BASE_DEFAULTS = {
    "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
    "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}
# Its own entries in a saved state, before the inner optimizer's: iterations, learning rate, counter, scale.
_OWN_STATE = 4


class LossScaleOptimizer(Optimizer):
    """Dynamic loss scaling, as Keras's: a scaled loss keeps float16 gradients from underflowing.

    Multiply the loss by the current scale with :meth:`scale_loss` before ``backward()``
    (``fit`` does); then each update, from :meth:`step` or :meth:`apply`:

    - if every gradient is finite, the gradients are divided by the scale and
      ``inner_optimizer`` updates the weights (and, in :meth:`apply`, projects their
      constraints); after ``dynamic_growth_steps`` such updates in a row the scale doubles;
    - otherwise the update is skipped: no weight, no optimizer state, no constraint and no
      step count changes, the scale halves and the count of finite updates starts again.
      :meth:`step` returns ``False`` then, so ``fit`` projects nothing.

    ``iterations`` and ``learning_rate`` are the inner optimizer's, and :attr:`loss_scale_factor`
    is the current scale (the factor ``fit`` multiplies the analytic penalty gradients by,
    as :meth:`scale_loss` multiplies the loss). Keras's other optimizer arguments are refused,
    except at their defaults (set them on ``inner_optimizer``), and so is ``dynamic=False``.

    Args:
        inner_optimizer: the :class:`Optimizer` that updates the weights.
        initial_scale: the first scale, a positive float (Keras's default ``2**15``).
        dynamic_growth_steps: finite updates in a row after which the scale doubles (2000).
        name: defaults to ``"loss_scale_optimizer"``.

    >>> from weightwise.optimizers import SGD
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = LossScaleOptimizer(SGD(learning_rate=0.5), initial_scale=4.0, dynamic_growth_steps=2)
    >>> opt.scale_loss(torch.tensor(3.0))
    tensor(12.)
    >>> opt.apply([torch.tensor([float("inf")])], [w])  # skipped: the scale halves
    >>> w.detach(), opt.loss_scale_factor, opt.iterations
    (tensor([1.]), 2.0, 0)
    >>> opt.apply([torch.tensor([2.0])], [w])  # 2.0 / 2 = 1.0 is the gradient
    >>> w.detach(), opt.iterations
    (tensor([0.5000]), 1)
    """

    def __init__(
        self,
        inner_optimizer: Optimizer,
        initial_scale: float = 2.0**15,
        dynamic_growth_steps: int = 2000,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not kwargs.pop("dynamic", True):
            raise ValueError("LossScaleOptimizer no longer supports `dynamic=False`. Instead, simply set "
                             "`loss_scale_factor` directly on the `inner_optimizer`.")
        for argument, default in _BASE_DEFAULTS.items():
            if argument in kwargs and kwargs.pop(argument) != default:
                raise ValueError(f"LossScaleOptimizer does not support `{argument}`. Instead, set `{argument}` on "
                                 "the `inner_optimizer`.")
        if kwargs:
            raise ValueError(f"LossScaleOptimizer does not support arguments: `{'`, `'.join(kwargs)}`.")
        if not isinstance(inner_optimizer, Optimizer) or isinstance(inner_optimizer, LossScaleOptimizer):
            raise TypeError("Invalid value for argument `inner_optimizer`: expected a weightwise optimizer (not a "
                            f"LossScaleOptimizer). Received: inner_optimizer={echo(inner_optimizer)}")
        initial_scale = real(initial_scale, "initial_scale", low=0, low_open=True)
        if not np.isfinite(np.float32(initial_scale)) or np.float32(initial_scale) == 0:
            raise ValueError("Invalid value for argument `initial_scale`: expected a positive float that float32 "
                             f"holds. Received: initial_scale={initial_scale!r}")
        dynamic_growth_steps = count(dynamic_growth_steps, "dynamic_growth_steps", low=1)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.initial_scale = initial_scale
        self.dynamic_growth_steps = dynamic_growth_steps
        # The inner optimizer must not unscale again.
        inner_optimizer.loss_scale_factor = None
        self.step_counter = 0
        self.dynamic_scale: torch.Tensor | None = None

    # -- what the inner optimizer holds ----------------------------------------------------
    @property  # type: ignore[override]
    def iterations(self) -> int:
        """The inner optimizer's step count: a skipped update does not count."""
        inner = self.__dict__.get("inner_optimizer")
        return 0 if inner is None else inner.iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        inner = self.__dict__.get("inner_optimizer")
        if inner is not None:  # the base class's __init__ sets 0 before there is one
            inner.iterations = value

    @property
    def learning_rate(self) -> float:
        """The inner optimizer's learning rate; settable."""
        inner = self.__dict__.get("inner_optimizer")
        return 0.0 if inner is None else inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        inner = self.__dict__.get("inner_optimizer")
        if inner is not None:
            inner.learning_rate = value

    @property  # type: ignore[override]
    def loss_scale_factor(self) -> float | None:
        """The current loss scale, as a Python float (``initial_scale`` until built)."""
        if "initial_scale" not in self.__dict__:
            return None
        return self.initial_scale if self.dynamic_scale is None else float(self.dynamic_scale)

    @loss_scale_factor.setter
    def loss_scale_factor(self, value: Any) -> None:
        if value is not None:
            raise ValueError("LossScaleOptimizer does not support `loss_scale_factor`. Instead, set "
                             f"`loss_scale_factor` on the `inner_optimizer`. Received: loss_scale_factor={value!r}")

    # -- building and scaling -------------------------------------------------------------
    def build(self, params: Iterable[torch.Tensor]) -> None:
        """Build the inner optimizer over ``params``, and start the scale at ``initial_scale``."""
        self.inner_optimizer.build(params)
        if not self.built:
            self.dynamic_scale = torch.tensor(self.initial_scale, dtype=torch.float32)
            self.step_counter = 0
            self.built = True
        self._params = list(self.inner_optimizer._params)
        self.torch_optimizer = self.inner_optimizer.torch_optimizer

    def _fusion_blocker(self) -> str | None:
        return ("LossScaleOptimizer: dynamic loss scaling decides in Python, from whether every gradient is "
                "finite, to skip an update and to change the scale")

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` times the current scale (``initial_scale`` before the optimizer is built).

        >>> from weightwise.optimizers import SGD
        >>> LossScaleOptimizer(SGD(), initial_scale=8.0).scale_loss(torch.tensor(0.5))
        tensor(4.)
        """
        if self.dynamic_scale is None:
            return loss * self.initial_scale
        return loss * self.dynamic_scale.to(loss.device)

    def _finite(self, grads: list[torch.Tensor]) -> bool:
        device = grads[0].device
        return bool(torch.stack([torch.isfinite(g).all().to(device) for g in grads]).all())

    def _count_update(self, finite: bool) -> None:
        """Keras's rule: halve on a non-finite update, double after ``dynamic_growth_steps`` finite ones."""
        assert self.dynamic_scale is not None
        if not finite:
            self.step_counter = 0
            self.dynamic_scale.mul_(0.5)
        elif self.step_counter == self.dynamic_growth_steps - 1:
            self.step_counter = 0
            self.dynamic_scale.mul_(2.0)
        else:
            self.step_counter += 1

    # -- one update ------------------------------------------------------------------------
    def step(self) -> bool:
        """Unscale the ``.grad`` of the parameters and let the inner optimizer step, if all are finite.

        Returns whether the weights were updated: ``False`` for a skipped update (the scale
        halves; the gradients are left as they were) and whatever the inner optimizer's
        ``step()`` returns otherwise.
        """
        if not self.built:
            raise ValueError(f"Optimizer {self.name!r} is not built: call `build(params)` before `step()`.")
        grads = [p.grad for p in self._params if p.grad is not None]
        if not grads:
            return self.inner_optimizer.step()  # its own answer: nothing to train, or no gradient at all
        if not self._finite(grads):
            self._count_update(False)
            return False
        assert self.dynamic_scale is not None
        with torch.no_grad():
            for g in grads:
                g.div_(self.dynamic_scale.to(g.device))
        updated = self.inner_optimizer.step()
        self._count_update(True)
        return updated

    def apply(self, grads: Any, trainable_variables: Any = None) -> None:
        """Keras's ``apply`` with loss scaling: ``grads`` are gradients of the scaled loss.

        All finite: they are unscaled and the inner optimizer's ``apply`` updates the variables
        and projects their constraints. Otherwise nothing changes but the scale, which halves.
        Arguments are checked as :meth:`Optimizer.apply` checks them, before anything changes.
        """
        arguments = self._apply_arguments(grads, trainable_variables)
        if arguments is None:
            return
        variables, checked = arguments
        present = [g for g in checked if g is not None]
        if not self.built:
            self.build(variables)
        if not self._finite(present):
            self._count_update(False)
            return
        assert self.dynamic_scale is not None
        unscaled = [None if g is None else g / self.dynamic_scale.to(g.device) for g in checked]
        self.inner_optimizer.apply(unscaled, variables)
        self._count_update(True)

    def zero_grad(self) -> None:
        """Set the gradients of the parameters to ``None`` (the inner optimizer's)."""
        self.inner_optimizer.zero_grad()

    def finalize_variable_values(self, var_list: Any) -> None:
        """The inner optimizer's :meth:`~Optimizer.finalize_variable_values` (with ``use_ema``, the averages).

        ``fit`` calls it at the end of training, so a loss-scaled optimizer that
        averages the weights ends with the averages, as Keras's does.

        >>> import torch
        >>> from weightwise.optimizers import SGD, LossScaleOptimizer
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = LossScaleOptimizer(SGD(0.5, use_ema=True, ema_momentum=0.5), initial_scale=4.0)
        >>> opt.build([w])
        >>> for _ in range(2):  # w: 1.0 -> 0.5 -> 0.0; its average: 0.5, then 0.5 * 0.5 + 0.5 * 0.0
        ...     w.grad = torch.tensor([4.0])  # the gradient of the scaled loss: 1.0 unscaled
        ...     _ = opt.step()
        >>> opt.finalize_variable_values([w]); w.detach()
        tensor([0.2500])
        """
        self.inner_optimizer.finalize_variable_values(var_list)

    # -- state and config ------------------------------------------------------------------
    def save_own_variables(self, store: Any) -> None:
        """Keras's layout: its own ``iterations`` (0) and learning rate (0.0), ``step_counter``,
        ``dynamic_scale``, then the inner optimizer's entries, numbered on from there."""
        if not self.built:
            raise ValueError(f"The optimizer {self.name!r} is not built, so it has no state to save: call "
                             "`build(params)` before `save_own_variables(store)`.")
        inner: dict[str, Any] = {}
        self.inner_optimizer.save_own_variables(inner)
        assert self.dynamic_scale is not None
        own = [np.asarray(0, dtype=np.int32), np.asarray(0.0, dtype=np.float32),
               np.asarray(self.step_counter, dtype=np.int32), self.dynamic_scale.numpy().copy()]
        for index, value in enumerate(own + [inner[str(i)] for i in range(len(inner))]):
            store[str(index)] = value

    def load_own_variables(self, store: Any) -> None:
        """Read what :meth:`save_own_variables` (or Keras's LossScaleOptimizer) wrote; all checked first."""
        if not self.built:
            raise ValueError(f"The optimizer {self.name!r} is not built: call `build(params)` before "
                             "`load_own_variables(store)`.")
        arrays = _read_store(store, f"optimizer {self.name!r}")
        if len(arrays) < _OWN_STATE or any(np.shape(a) != () for a in arrays[:_OWN_STATE]):
            raise ValueError(f"Cannot load the state of optimizer {self.name!r}: a LossScaleOptimizer's state starts "
                             f"with {_OWN_STATE} scalars. Received {len(arrays)} entries. Nothing was changed.")
        counter, scale = int(arrays[2]), float(arrays[3])
        if counter < 0 or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"Cannot load the state of optimizer {self.name!r}: step_counter={counter} and "
                             f"dynamic_scale={scale} are not a loss scaling state. Nothing was changed.")
        self.inner_optimizer.load_own_variables({str(i): a for i, a in enumerate(arrays[_OWN_STATE:])})
        self.step_counter = counter
        self.dynamic_scale = torch.tensor(scale, dtype=torch.float32)

    def get_config(self) -> dict[str, Any]:
        """Keras's config: ``name``, the serialized ``inner_optimizer``, ``initial_scale``, ``dynamic_growth_steps``.

        >>> from weightwise.optimizers import SGD
        >>> sorted(LossScaleOptimizer(SGD()).get_config())
        ['dynamic_growth_steps', 'initial_scale', 'inner_optimizer', 'name']
        """
        return {"name": self.name, "inner_optimizer": serialize_keras_object(self.inner_optimizer),
                "initial_scale": self.initial_scale, "dynamic_growth_steps": self.dynamic_growth_steps}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None) -> LossScaleOptimizer:
        """Rebuild from :meth:`get_config` output, ours or Keras's (the inner optimizer deserialized)."""
        config = dict(config)
        inner = config.pop("inner_optimizer", None)
        if isinstance(inner, (Mapping, str)):
            inner = deserialize_keras_object(inner, custom_objects)
        return cls(inner, **config)

    def __repr__(self) -> str:
        return f"<LossScaleOptimizer name={self.name!r} inner_optimizer={self.inner_optimizer!r}>"
