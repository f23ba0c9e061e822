"""BatchNormalization: batch statistics in training, moving statistics in inference, as Keras."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from weightwise import arguments, backend, initializers
from weightwise.layers.args import invalid, is_int
from weightwise.layers.base import InputSpec
from weightwise.layers.normalization import GammaBetaLayer, as_mask, moments

__all__ = ["BatchNormalization"]

_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def _channel_shape(inputs: torch.Tensor, axis: int) -> list[int]:
    """The shape that puts a per-channel vector on ``axis`` and broadcasts it over the rest."""
    shape = [1] * inputs.dim()
    shape[axis] = inputs.shape[axis]
    return shape


def _clone_initializer(initializer: Any) -> Any:
    """A fresh copy of an initializer from its config, so a second draw is independent (as Keras does)."""
    if isinstance(initializer, initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer

class BatchNormalization(GammaBetaLayer):
    """Normalizes each channel (the ``axis`` feature) with batch statistics in training, moving ones otherwise.

    Training (``training=True`` and the layer trainable):
    ``gamma * (x - mean(x)) / sqrt(var(x) + epsilon) + beta``, with the biased batch
    variance ``mean(x**2) - mean(x)**2`` over every axis but ``axis``; afterwards
    ``moving = moving * momentum + batch * (1 - momentum)`` for the mean and the variance.
    Inference, and any call of a frozen layer (``trainable=False``, Keras's rule):
    the same formula with ``moving_mean`` and ``moving_variance``.

    A ``mask`` (one axis fewer than the inputs, ``True`` where an entry counts) limits the
    batch statistics to the unmasked entries. With ``renorm=True``, Batch Renormalization
    corrects the batch statistics towards moving ones (``renorm_clipping`` keys ``rmax``,
    ``rmin``, ``dmax``; ``renorm_momentum``), and adds three non-trainable weights.

    >>> from weightwise import ops
    >>> layer = BatchNormalization(momentum=0.5)
    >>> out = layer(ops.convert_to_tensor([[1.0], [3.0]]), training=True)
    >>> [round(v, 3) for v in out.flatten().tolist()]  # (x - 2) / sqrt(1 + 0.001)
    [-1.0, 1.0]
    >>> layer.moving_mean.tolist(), layer.moving_variance.tolist()
    ([1.0], [1.0])
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: dict[str, float] | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(center=center, scale=scale, beta_initializer=beta_initializer,
                         gamma_initializer=gamma_initializer, beta_regularizer=beta_regularizer,
                         gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                         gamma_constraint=gamma_constraint, **kwargs)
        owner = self._owner()
        if not is_int(axis):
            raise invalid(self, "axis", axis, "an int")
        self.axis = int(axis)
        if arguments.flag(synchronized, "synchronized", owner=owner):
            raise ValueError("Argument synchronized=True is only supported with the TensorFlow backend.")
        self.synchronized = False
        self.momentum = arguments.real(momentum, "momentum", low=0, high=1, owner=owner)
        self.epsilon = arguments.real(epsilon, "epsilon", low=0, owner=owner)
        self.moving_mean_initializer = self._resolve("moving_mean_initializer", moving_mean_initializer, initializers.get)
        self.moving_variance_initializer = self._resolve(
            "moving_variance_initializer", moving_variance_initializer, initializers.get)
        self.renorm = arguments.flag(renorm, "renorm", owner=owner)
        if self.renorm:
            renorm_clipping = _renorm_clipping(renorm_clipping or {})
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = arguments.real(renorm_momentum, "renorm_momentum", low=0, high=1, owner=owner)
        self.moving_mean = self.moving_variance = None

    def build(self, input_shape: Sequence[int | None]) -> None:
        (axis,) = self._check_axes(input_shape, [self.axis])
        shape = self._known_sizes(input_shape, [axis])
        self._add_gamma_beta(shape, self.scale, self.center)
        for name in ("moving_mean", "moving_variance"):
            self.__dict__.pop(name, None)
        # Statistics are read uncast too (Keras's autocast=False), and updated in float32.
        self.moving_mean = self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False,
                                           autocast=False)
        self.moving_variance = self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                                               trainable=False, autocast=False)
        if self.renorm:
            def stddev_initializer(shape: Sequence[int], dtype: Any = None) -> torch.Tensor:
                return torch.sqrt(_clone_initializer(self.moving_variance_initializer)(shape, dtype=dtype))

            self.moving_stddev = self.add_weight("moving_stddev", shape, stddev_initializer, trainable=False,
                                                 autocast=False)
            self.renorm_mean = self.add_weight("renorm_mean", shape, _clone_initializer(self.moving_mean_initializer),
                                               trainable=False, autocast=False)
            self.renorm_stddev = self.add_weight("renorm_stddev", shape, stddev_initializer, trainable=False,
                                                 autocast=False)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: shape[0]})
        self._reduction_axes = [i for i in range(len(input_shape)) if i != axis]

    def call(self, inputs: torch.Tensor, training: bool | None = None, mask: Any = None) -> torch.Tensor:
        mask = as_mask(self, mask, inputs)
        if mask is not None and mask.dim() != inputs.dim() - 1:
            raise ValueError(
                "The mask provided should be one dimension less than the inputs. Received: "
                f"mask.shape={tuple(mask.shape)}, inputs.shape={tuple(inputs.shape)}")
        inputs = inputs.to(torch.promote_types(inputs.dtype, torch.float32))
        gamma = None if self.gamma is None else self.gamma.to(inputs.dtype)
        beta = None if self.beta is None else self.beta.to(inputs.dtype)
        if training and self.trainable:
            mean, variance = self._moments(inputs, mask)
            if self.renorm:
                gamma, beta = self._renorm(mean, variance, gamma, beta)
            else:
                self._update(self.moving_mean, mean, self.momentum)
                self._update(self.moving_variance, variance, self.momentum)
        else:
            mean, variance = self.moving_mean.to(inputs.dtype), self.moving_variance.to(inputs.dtype)
        outputs = _normalize(inputs, mean, variance, gamma, beta, self.epsilon, self._channel_axis(inputs))
        return outputs.to(self._dtype)

    def _channel_axis(self, inputs: torch.Tensor) -> int:
        return self.axis % inputs.dim()

    def _moments(self, inputs: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and biased variance over the reduction axes (unmasked entries only)."""
        axes = self._reduction_axes
        if mask is None:
            mean, variance = moments(inputs, axes)
        else:
            keep = mask.unsqueeze(-1).expand(inputs.shape)
            # backend.epsilon() keeps a fully masked batch finite (statistics of zero), as in Keras.
            count = keep.to(inputs.dtype).sum(dim=axes, keepdim=True) + backend.epsilon()
            zero = inputs.new_zeros(())
            mean = torch.where(keep, inputs, zero).sum(dim=axes, keepdim=True) / count
            variance = torch.where(keep, inputs - mean, zero).square().sum(dim=axes, keepdim=True) / count
        return mean.reshape(-1), variance.reshape(-1)

    @staticmethod
    def _update(weight: torch.Tensor, value: torch.Tensor, momentum: float) -> None:
        with torch.no_grad():
            weight.copy_(weight.to(value.dtype) * momentum + value.detach() * (1.0 - momentum))

    def _renorm(
        self, mean: torch.Tensor, variance: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch Renormalization: fold the correction ``(r, d)`` into gamma and beta, then update the statistics.

        ``r = stddev / renorm_stddev`` and ``d = (mean - renorm_mean) / renorm_stddev``, clipped and
        without gradient; ``(x_hat * r + d) * gamma + beta``.
        """
        with torch.no_grad():
            stddev = torch.sqrt(variance.detach() + self.epsilon)
            renorm_stddev = torch.clamp(self.renorm_stddev.to(mean.dtype), min=math.sqrt(self.epsilon))
            r = stddev / renorm_stddev
            d = (mean.detach() - self.renorm_mean.to(mean.dtype)) / renorm_stddev
            clipping = self.renorm_clipping
            if clipping.get("rmin") is not None:
                r = torch.clamp(r, min=clipping["rmin"])
            if clipping.get("rmax") is not None:
                r = torch.clamp(r, max=clipping["rmax"])
            if clipping.get("dmax") is not None:
                d = torch.clamp(d, -clipping["dmax"], clipping["dmax"])
            self._update(self.renorm_mean, mean, self.renorm_momentum)
            self._update(self.renorm_stddev, stddev, self.renorm_momentum)
            self._update(self.moving_mean, mean, self.momentum)
            self._update(self.moving_stddev, stddev, self.momentum)
            self.moving_variance.copy_(torch.relu(self.moving_stddev.square() - self.epsilon))
        effective_gamma = r if gamma is None else r * gamma
        effective_beta = d if gamma is None else d * gamma
        if beta is not None:
            effective_beta = effective_beta + beta
        return effective_gamma, effective_beta

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            **self._gamma_beta_config(),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        }


def _renorm_clipping(clipping: Any) -> dict[str, float]:
    """``renorm_clipping`` checked: only Keras's keys, ``rmin <= rmax``, ``dmax >= 0`` (Keras's messages)."""
    if not isinstance(clipping, dict):
        raise arguments.invalid("renorm_clipping", "a dict with keys among 'rmax', 'rmin', 'dmax'", clipping)
    if set(clipping) - set(_CLIPPING_KEYS):
        raise ValueError(
            f"Received invalid keys for `renorm_clipping` argument: {clipping}. Supported values: {list(_CLIPPING_KEYS)}.")
    for key, value in clipping.items():
        arguments.real(value, f"renorm_clipping[{key!r}]", allow_none=True, allow_inf=True)
    rmax, rmin, dmax = (clipping.get(key) for key in _CLIPPING_KEYS)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(
            f"rmax should be greater than rmin in the `renorm_clipping` argument. Received: rmax={rmax}, rmin={rmin}.")
    if dmax is not None and dmax < 0:
        raise ValueError(f"dmax should be non-negative in the `renorm_clipping` argument. Received: dmax={dmax}.")
    return dict(clipping)


def _normalize(
    inputs: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor, gamma: torch.Tensor | None,
    beta: torch.Tensor | None, epsilon: float, axis: int,
) -> torch.Tensor:
    """``(inputs - mean) * (gamma / sqrt(variance + epsilon)) + beta``, the vectors on ``axis``."""
    shape = _channel_shape(inputs, axis)
    factor = torch.rsqrt(variance.reshape(shape) + epsilon)
    if gamma is not None:
        factor = factor * gamma.reshape(shape)
    outputs = (inputs - mean.reshape(shape)) * factor
    return outputs if beta is None else outputs + beta.reshape(shape)
