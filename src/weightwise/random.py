"""Keras's ``keras.random``: random tensors drawn from a seed, under Keras's names and arguments.

``seed`` is an int, ``None`` or a :class:`SeedGenerator`, as in Keras:

- an int gives the same values on every call (the functions are stateless);
- a ``SeedGenerator`` gives new values on each call, reproducibly from its own seed;
- ``None`` draws from a global ``SeedGenerator``, which
  :func:`weightwise.utils.set_random_seed` resets.

A seed becomes a ``torch.Generator`` seeded exactly as Keras's torch backend seeds one, and
the values are drawn with the same torch calls, so on the same device an int seed or a
``SeedGenerator`` gives the numbers Keras gives on torch. Tensors are made on torch's
default device (``torch.get_default_device()``).

>>> from weightwise import random
>>> bool((random.normal((2, 3), seed=1) == random.normal((2, 3), seed=1)).all())
True
>>> gen = random.SeedGenerator(7)
>>> bool((random.uniform((3,), seed=gen) == random.uniform((3,), seed=gen)).all())
False
"""

from __future__ import annotations

import itertools
import numbers
import random as python_random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from weightwise import backend, ops
from weightwise.arguments import count, echo, invalid, is_int, real

__all__ = [
    "SeedGenerator",
    "beta",
    "binomial",
    "categorical",
    "dropout",
    "gamma",
    "normal",
    "randint",
    "shuffle",
    "truncated_normal",
    "uniform",
]

_UINT32 = 0xFFFFFFFF
_NAMES = itertools.count()
_GLOBAL_GENERATOR: SeedGenerator | None = None


class SeedGenerator:
    """A random state: each :meth:`next` gives a new seed, the sequence fixed by ``seed``.

    The state is the pair ``[seed, counter]``; each draw returns it and adds 1 to the
    counter. ``seed=None`` picks a seed from Python's ``random`` module (so
    ``set_random_seed`` fixes it too). ``get_config()`` gives ``{"seed", "name"}``.

    >>> gen = SeedGenerator(42)
    >>> gen.next().tolist(), gen.next().tolist()
    ([42, 0], [42, 1])
    >>> SeedGenerator.from_config(gen.get_config()).next().tolist()
    [42, 0]
    """

    def __init__(self, seed: int | None = None, name: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("backend", None)  # Keras's choice of backend module: there is only torch here.
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments to SeedGenerator: {sorted(kwargs)}")
        if seed is not None and not is_int(seed):
            raise invalid("seed", "an int or None", seed, error=TypeError)
        if name is not None and not isinstance(name, str):
            raise invalid("name", "a str or None", name, error=TypeError)
        index = next(_NAMES)
        self.name = name or ("seed_generator" if index == 0 else f"seed_generator_{index}")
        self._initial_seed = None if seed is None else int(seed)
        first = python_random.randint(1, int(1e9)) if seed is None else int(seed)
        self._state = [first, 0]

    @property
    def state(self) -> torch.Tensor:
        """The current ``[seed, counter]`` pair, as an int64 tensor."""
        return torch.tensor(self._state, dtype=torch.int64)

    def next(self, ordered: bool = True) -> torch.Tensor:
        """The current state; then the counter advances by 1 (``ordered``) or the pair is scrambled."""
        current = self.state
        if ordered:
            self._state[1] += 1
        else:
            # Keras's unordered step: near-unique seeds below 933199, one per call, computed
            # in the int32 its state is kept in (the product wraps around).
            self._state = [_int32((value + 1) * 5387) % 933199 for value in self._state]
        return current

    def get_config(self) -> dict[str, Any]:
        """The seed the generator started from, and its name."""
        return {"seed": self._initial_seed, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SeedGenerator:
        """A generator that starts again from the saved seed: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<SeedGenerator name={self.name!r} seed={self._initial_seed!r}>"


Seed = int | SeedGenerator | None


def _int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def reset_global_seed_generator() -> None:
    """Forget the global generator: the next unseeded draw makes a new one from Python's ``random``."""
    global _GLOBAL_GENERATOR
    _GLOBAL_GENERATOR = None


def _draw_seed(seed: Seed) -> int:
    """The 32-bit seed of one draw: Keras's ``(first + second) & 0xFFFFFFFF`` of the drawn pair."""
    global _GLOBAL_GENERATOR
    if isinstance(seed, SeedGenerator):
        first, second = seed.next().tolist()
    elif is_int(seed):
        first, second = int(seed), 0
    elif seed is None:
        if _GLOBAL_GENERATOR is None:
            _GLOBAL_GENERATOR = SeedGenerator()
        first, second = _GLOBAL_GENERATOR.next(ordered=False).tolist()
    else:
        raise invalid("seed", "an int, None or a SeedGenerator", seed, error=TypeError)
    return (first + second) & _UINT32


def _device() -> torch.device:
    return torch.get_default_device()


def _generator(seed: Seed, device: torch.device | None = None) -> torch.Generator:
    return torch.Generator(device=device or _device()).manual_seed(_draw_seed(seed))


def _shape(shape: Any) -> tuple[int, ...]:
    if is_int(shape):
        shape = (shape,)
    if not isinstance(shape, (Sequence, torch.Size)) or isinstance(shape, str):
        raise invalid("shape", "a tuple of ints >= 0", shape, error=TypeError)
    if not all(is_int(dim) and dim >= 0 for dim in shape):
        raise invalid("shape", "a tuple of ints >= 0", shape)
    return tuple(int(dim) for dim in shape)


def _dtype(dtype: Any, kind: str, function: str) -> torch.dtype:
    resolved = backend.standardize_dtype(dtype)
    ok = resolved.is_floating_point if kind == "float" else not (resolved.is_floating_point or resolved.is_complex
                                                                or resolved == torch.bool)
    if not ok:
        raise ValueError(
            f"Invalid value for argument `dtype`: `{function}` requires {'a floating point' if kind == 'float' else 'an integer'} "
            f"dtype. Received: dtype={echo(dtype)}"
        )
    return resolved


def normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = None, seed: Seed = None) -> torch.Tensor:
    """Samples of the normal distribution ``N(mean, stddev**2)``; ``dtype`` a float type (default floatx).

    >>> normal((2, 2), seed=0).shape
    torch.Size([2, 2])
    >>> normal((2,), stddev=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `stddev`: expected a finite float >= 0. Received: stddev=-1.0
    """
    shape = _shape(shape)
    mean = real(mean, "mean")
    stddev = real(stddev, "stddev", low=0)
    dtype = _dtype(dtype, "float", "normal")
    return torch.normal(mean, stddev, size=shape, generator=_generator(seed), dtype=dtype, device=_device())


def uniform(shape: Any, minval: float = 0.0, maxval: float = 1.0, dtype: Any = None, seed: Seed = None) -> torch.Tensor:
    """Samples of the uniform distribution on ``[minval, maxval)``: ``(maxval - minval) * U + minval``.

    >>> x = uniform((1000,), minval=2.0, maxval=3.0, seed=0)
    >>> bool(((x >= 2.0) & (x < 3.0)).all())
    True
    """
    shape = _shape(shape)
    minval = real(minval, "minval")
    maxval = real(maxval, "maxval")
    if not minval < maxval:
        raise ValueError(f"Invalid value for argument `maxval`: expected a float > minval={minval!r}. "
                         f"Received: maxval={maxval!r}")
    dtype = _dtype(dtype, "float", "uniform")
    # Keras draws one value for a scalar shape (torch.rand of () is not seeded the same way).
    drawn = torch.rand(size=shape or (1,), generator=_generator(seed), dtype=dtype, device=_device())
    values = (maxval - minval) * drawn + minval
    return values[0] if not shape else values


def randint(shape: Any, minval: int, maxval: int, dtype: Any = "int32", seed: Seed = None) -> torch.Tensor:
    """Random integers in ``[minval, maxval)``, of an integer ``dtype`` (default ``int32``).

    >>> x = randint((1000,), 0, 3, seed=0)
    >>> sorted(x.unique().tolist()), x.dtype
    ([0, 1, 2], torch.int32)
    """
    shape = _shape(shape)
    minval = count(minval, "minval", low=None)
    maxval = count(maxval, "maxval", low=minval + 1)
    dtype = _dtype(dtype, "int", "randint")
    return torch.randint(minval, maxval, size=shape, generator=_generator(seed), dtype=dtype, device=_device())


def truncated_normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
                     seed: Seed = None) -> torch.Tensor:
    """Normal samples, each within 2 standard deviations of ``mean`` (values beyond are drawn again).

    Each value is the first of four standard normal draws inside ``(-2, 2)``, then scaled
    (Keras's torch backend). Where none of the four is inside, Keras keeps one outside;
    here such a value is drawn again until it is inside, as the Keras docs promise.

    >>> x = truncated_normal((10000,), mean=1.0, stddev=0.5, seed=0)
    >>> bool(((x > 0.0) & (x < 2.0)).all())
    True
    """
    shape = _shape(shape)
    mean = real(mean, "mean")
    stddev = real(stddev, "stddev", low=0)
    dtype = _dtype(dtype, "float", "truncated_normal")
    generator = _generator(seed)
    draws = torch.normal(0.0, 1.0, size=shape + (4,), generator=generator, dtype=dtype, device=_device())
    inside = (draws > -2) & (draws < 2)
    values = draws.gather(-1, inside.max(-1, keepdim=True)[1]).squeeze(-1)
    missing = ~inside.any(-1)
    while bool(missing.any()):
        fresh = torch.normal(0.0, 1.0, size=(int(missing.sum()),), generator=generator, dtype=dtype, device=_device())
        values[missing] = fresh
        missing[missing.clone()] = (fresh <= -2) | (fresh >= 2)
    return values * stddev + mean


def dropout(inputs: Any, rate: float, noise_shape: Sequence[int | None] | None = None, seed: Seed = None) -> torch.Tensor:
    """Zero each entry with probability ``rate`` and scale the rest by ``1 / (1 - rate)``.

    ``noise_shape`` (entries ``None`` take the input's size) shares one draw along the axes
    where it is 1. With ``seed=None`` (or an unseeded ``SeedGenerator``) and no
    ``noise_shape`` this is ``torch.nn.functional.dropout``, drawing from torch's global RNG.

    >>> x = dropout(torch.ones(4, 1000), 0.5, noise_shape=(None, 1), seed=0)
    >>> sorted(set(x[:, 0].tolist()) | set(x[:, -1].tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    inputs = ops.argument_tensor(inputs, "inputs")
    rate = real(rate, "rate", low=0, high=1)
    if noise_shape is not None:
        if not isinstance(noise_shape, (Sequence, torch.Size)) or len(noise_shape) != inputs.dim() or not all(
            (dim is None or (is_int(dim) and (dim == 1 or dim == size)))
            for dim, size in zip(noise_shape, inputs.shape)
        ):
            raise invalid("noise_shape", f"{inputs.dim()} entries, each None, 1 or the size of its input axis "
                          f"(inputs.shape={tuple(inputs.shape)})", noise_shape)
        noise_shape = tuple(size if dim is None else int(dim) for dim, size in zip(noise_shape, inputs.shape))
    if rate == 1.0:
        return torch.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    unseeded = seed is None or (isinstance(seed, SeedGenerator) and seed._initial_seed is None)
    if unseeded and noise_shape is None:
        return torch.nn.functional.dropout(inputs, p=rate, training=True)
    keep = 1.0 - rate
    probabilities = torch.full(noise_shape or tuple(inputs.shape), keep, device=inputs.device)
    mask = torch.bernoulli(probabilities, generator=_generator(seed, inputs.device)).bool().broadcast_to(inputs.shape)
    return torch.where(mask, inputs / keep, torch.zeros_like(inputs))


def shuffle(x: Any, axis: int = 0, seed: Seed = None) -> torch.Tensor:
    """``x`` with its entries along ``axis`` in a random order (each slice along the axes before
    ``axis`` in its own order, as Keras's torch backend does).

    >>> shuffle(torch.arange(5), seed=0).sort().values.tolist()
    [0, 1, 2, 3, 4]
    """
    x = ops.argument_tensor(x, "x")
    if not is_int(axis) or not -x.dim() <= axis < x.dim():
        raise invalid("axis", f"an int in [{-x.dim()}, {x.dim() - 1}] for x of rank {x.dim()}", axis)
    axis = int(axis) % x.dim()
    keys = torch.rand(x.shape[: axis + 1], generator=_generator(seed, x.device), device=x.device)
    order = keys.argsort(axis)
    order = order.reshape(order.shape + (1,) * (x.dim() - axis - 1)).expand(x.shape)
    return x.gather(axis, order)


def categorical(logits: Any, num_samples: int, dtype: Any = "int32", seed: Seed = None) -> torch.Tensor:
    """``num_samples`` class indices per row of the 2-D ``logits`` (unnormalized log-probabilities).

    >>> categorical(torch.tensor([[0.0, 100.0]]), 3, seed=0).tolist()
    [[1, 1, 1]]
    """
    logits = ops.argument_tensor(logits, "logits", real=True)
    if logits.dim() != 2:
        raise ValueError(
            "Invalid value for argument `logits`: expected a 2-D tensor of shape (batch_size, num_classes). "
            f"Received: logits={echo(logits)}"
        )
    num_samples = count(num_samples, "num_samples", low=1)
    dtype = _dtype(dtype, "int", "categorical")
    probabilities = torch.softmax(logits.to(backend.compute_dtype(logits.dtype)), dim=-1)
    return torch.multinomial(probabilities, num_samples, replacement=True, generator=_generator(seed, logits.device)).to(dtype)


def _with_seed(seed: Seed, draw: Any) -> torch.Tensor:
    """Run ``draw`` on torch's CPU generator seeded from ``seed``, then put that generator back.

    ``torch.distributions`` samplers take no generator; Keras seeds the global one the same way.
    """
    value = _draw_seed(seed)
    device = _device()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(value)
        return draw()


def _broadcast(value: Any, name: str, shape: tuple[int, ...], low: float | None = None,
               high: float | None = None, low_open: bool = False) -> torch.Tensor:
    if isinstance(value, numbers.Real):
        real(value, name, low=low, high=high, low_open=low_open)
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value,
                             dtype=torch.float32, device=_device())
    try:
        return torch.broadcast_to(tensor, shape)
    except RuntimeError:
        raise invalid(name, f"a number or an array broadcastable to shape={shape}", value) from None


def gamma(shape: Any, alpha: Any, dtype: Any = None, seed: Seed = None) -> torch.Tensor:
    """Samples of the Gamma distribution with concentration ``alpha`` (> 0) and rate 1.

    >>> float(gamma((20000,), alpha=3.0, seed=0).mean().round())
    3.0
    """
    shape = _shape(shape)
    alpha = _broadcast(alpha, "alpha", shape, low=0, low_open=True)
    dtype = _dtype(dtype, "float", "gamma")
    return _with_seed(seed, lambda: torch.distributions.Gamma(alpha, torch.ones_like(alpha)).sample()).to(dtype)


def binomial(shape: Any, counts: Any, probabilities: Any, dtype: Any = None, seed: Seed = None) -> torch.Tensor:
    """Samples of the binomial distribution: successes in ``counts`` trials of probability ``probabilities``.

    >>> float(binomial((20000,), counts=10, probabilities=0.3, seed=0).mean().round())
    3.0
    """
    shape = _shape(shape)
    counts = _broadcast(counts, "counts", shape, low=0)
    probabilities = _broadcast(probabilities, "probabilities", shape, low=0, high=1)
    dtype = _dtype(dtype, "float", "binomial")
    return _with_seed(seed, lambda: torch.distributions.Binomial(counts, probs=probabilities).sample()).to(dtype)


def beta(shape: Any, alpha: Any, beta: Any, dtype: Any = None, seed: Seed = None) -> torch.Tensor:
    """Samples of the Beta distribution with concentrations ``alpha`` and ``beta`` (both > 0).

    >>> x = beta((20000,), alpha=2.0, beta=2.0, seed=0)
    >>> bool(((x > 0) & (x < 1)).all()), round(float(x.mean()), 1)
    (True, 0.5)
    """
    shape = _shape(shape)
    concentration1 = _broadcast(alpha, "alpha", shape, low=0, low_open=True)
    concentration0 = _broadcast(beta, "beta", shape, low=0, low_open=True)
    dtype = _dtype(dtype, "float", "beta")
    return _with_seed(seed, lambda: torch.distributions.Beta(concentration1, concentration0).sample()).to(dtype)
