"""Noise layers that act only while training: spatial dropout, Gaussian noise and dropout, alpha dropout.

Each one returns its input unchanged in inference mode. As in Keras, a layer with noise to
draw holds a :class:`weightwise.random.SeedGenerator` made from its ``seed`` (its
``seed_generator``) and draws through :mod:`weightwise.random` with Keras's torch calls, so
with an int seed, on the same device, the values are those Keras draws. ``seed=None`` seeds
the generator from Python's ``random`` (which ``utils.set_random_seed`` fixes), as in Keras.
The noise is drawn on the inputs' device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from weightwise import dtype_policies, random
from weightwise.layers.args import standardize_data_format
from weightwise.layers.base import InputSpec, Layer
from weightwise.layers.core import Dropout, noise_fraction, noise_seed

__all__ = ["AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout1D", "SpatialDropout2D",
           "SpatialDropout3D"]

# SELU's constants (Klambauer et al., 2017), from which AlphaDropout's dropped value is made.
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _seed_generator(layer: Layer, amount: float) -> None:
    """Give ``layer`` its ``seed_generator`` when it has noise to draw (``amount > 0``), as Keras does."""
    if amount > 0:
        layer.seed_generator = random.SeedGenerator(layer.seed)


def _noisy(inputs: torch.Tensor, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``draw()`` with the inputs' device as torch's default, so the noise is made beside the inputs.

    Meta inputs (shape inference) have no random state: the result is the inputs in the
    dtype a float noise gives them.
    """
    if inputs.is_meta:
        return inputs.to(torch.result_type(inputs, 1.0))
    with inputs.device:
        return draw()


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one keep-or-drop draw per sample and channel, shared by every
    position of that channel. Keras's constructor takes only ``rate``, ``seed``, ``name`` and
    ``dtype`` (and ``data_format`` in 2D and 3D), and its config holds just those."""

    rank = 0
    data_format = "channels_last"

    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        if self.rank > 1:
            self.data_format = standardize_data_format(self, data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        _seed_generator(self, self.rate)

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        ones = (1,) * self.rank
        shape = (inputs.shape[0], inputs.shape[1], *ones) if self.data_format == "channels_first" \
            else (inputs.shape[0], *ones, inputs.shape[-1])
        return _noisy(inputs, lambda: random.dropout(inputs, self.rate, noise_shape=shape, seed=self.seed_generator))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        # Keras writes `self.dtype` here, the variable dtype, which drops a mixed policy; the policy is
        # written as every other layer writes it, which Keras reads back too.
        config = {"rate": self.rate, "seed": self.seed, "name": self.name,
                  "dtype": dtype_policies.serialize(self.dtype_policy)}
        if self.rank > 1:
            config["data_format"] = self.data_format
        return config


class SpatialDropout1D(_SpatialDropout):
    """Dropout of whole channels of ``(batch, steps, channels)`` inputs, while training.

    Each channel of each sample is kept (and scaled by ``1 / (1 - rate)``) or zeroed at
    every step at once, which regularizes where neighbouring steps are strongly correlated.

    >>> from weightwise import ops
    >>> out = SpatialDropout1D(0.5, seed=1)(ops.ones((2, 3, 4)), training=True)
    >>> bool((out[:, 0, :] == out[:, 2, :]).all())
    True
    """

    rank = 1

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(rate, seed=seed, name=name, dtype=dtype)


class SpatialDropout2D(_SpatialDropout):
    """Dropout of whole 2D feature maps of ``(batch, rows, cols, channels)`` inputs (channels at axis 1
    with ``data_format="channels_first"``), while training.

    >>> from weightwise import ops
    >>> out = SpatialDropout2D(0.5, seed=1)(ops.ones((2, 3, 3, 4)), training=True)
    >>> bool((out[:, 0, 0, :] == out[:, 2, 1, :]).all())
    True
    """

    rank = 2


class SpatialDropout3D(_SpatialDropout):
    """Dropout of whole 3D feature maps of ``(batch, d1, d2, d3, channels)`` inputs (channels at axis 1
    with ``data_format="channels_first"``), while training.

    >>> from weightwise import ops
    >>> SpatialDropout3D(0.5)(ops.ones((1, 2, 2, 2, 3))).shape  # inference: unchanged
    torch.Size([1, 2, 2, 2, 3])
    """

    rank = 3


class _GaussianNoiseBase(Layer):
    """A layer that changes its input only while training, with normal noise; masks pass through."""

    def __init__(self, amount: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = noise_seed(seed)
        _seed_generator(self, amount)
        self.supports_masking = True
        self._build_at_init()

    def _normal(self, inputs: torch.Tensor, mean: float, stddev: float) -> torch.Tensor:
        return random.normal(tuple(inputs.shape), mean=mean, stddev=stddev, dtype=self.compute_dtype,
                             seed=self.seed_generator)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class GaussianNoise(_GaussianNoiseBase):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` (in ``[0, 1]``), while training.

    >>> from weightwise import ops
    >>> layer = GaussianNoise(0.1, seed=0)
    >>> layer(ops.ones((1, 3)))  # inference: unchanged
    tensor([[1., 1., 1.]])
    >>> noisy = layer(ops.ones((1000, 100)), training=True)
    >>> round(float(noisy.std()), 2)
    0.1
    """

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any) -> None:
        stddev = noise_fraction(stddev, "stddev")
        super().__init__(stddev, seed=seed, **kwargs)
        self.stddev = stddev

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.stddev == 0:
            return inputs
        return _noisy(inputs, lambda: inputs + self._normal(inputs, 0.0, self.stddev))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_GaussianNoiseBase):
    """Multiplies the input by Gaussian noise of mean 1 and standard deviation ``sqrt(rate / (1 - rate))``,
    while training.

    ``rate`` is in ``[0, 1)``: at 1 the noise's standard deviation would be infinite (Keras
    accepts 1, then fails with a ``ZeroDivisionError`` in the first training call).

    >>> from weightwise import ops
    >>> noisy = GaussianDropout(0.2, seed=0)(ops.ones((1000, 100)), training=True)
    >>> round(float(noisy.mean()), 1), round(float(noisy.std()), 1)  # sqrt(0.2 / 0.8) = 0.5
    (1.0, 0.5)
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        rate = noise_fraction(rate, "rate")
        if rate == 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float value between 0 and 1, "
                             "below 1 (the noise's standard deviation is sqrt(rate / (1 - rate))). Received: rate=1")
        super().__init__(rate, seed=seed, **kwargs)
        self.rate = rate

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        return _noisy(inputs, lambda: inputs * self._normal(inputs, 1.0, stddev))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class AlphaDropout(Dropout):
    """Dropout that keeps the mean and variance of its inputs, for self-normalizing (SELU) networks.

    While training, each value is kept with probability ``1 - rate`` or set to SELU's
    negative saturation ``alpha_p = -alpha * scale``; then ``a * x + b`` restores the mean
    and variance of standard-normal inputs, with ``a = ((1 - rate) * (1 + rate * alpha_p**2))
    ** -0.5`` and ``b = -a * alpha_p * rate``. ``noise_shape`` shares draws along axes of
    size 1, as in :class:`Dropout`. At ``rate=1`` every value is dropped and the output is
    zeros, the limit of the formula (Keras fails with a ``ZeroDivisionError``).

    >>> from weightwise import ops, random
    >>> x = random.normal((1000, 100), seed=0)
    >>> out = AlphaDropout(0.2, seed=1)(x, training=True)
    >>> abs(float(out.mean())) < 0.01, round(float(out.std()), 1)
    (True, 1.0)
    """

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(rate, noise_shape=noise_shape, seed=seed, **kwargs)
        _seed_generator(self, self.rate)

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        shape = self._mask_shape(inputs) if self.noise_shape is not None else tuple(inputs.shape)
        if self.rate == 1:
            return torch.zeros_like(inputs, dtype=torch.result_type(inputs, 1.0))
        alpha_p = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * self.rate

        def draw() -> torch.Tensor:
            keep = (random.uniform(shape, seed=self.seed_generator) >= self.rate).to(inputs.dtype)
            return a * (inputs * keep + alpha_p * (1 - keep)) + b

        return _noisy(inputs, draw)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape
