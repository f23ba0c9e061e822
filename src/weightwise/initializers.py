"""Weight initializers: callables ``init(shape, dtype=None)`` that return a new tensor.

The built-ins are Keras 3's, with Keras's names, arguments, configs and math.
Kernel layouts are Keras's: a ``Dense`` kernel is ``(in, out)`` and a ``ConvND``
kernel ``(*kernel_size, in, out)``; :func:`compute_fans` reads the fans from them
as Keras does. ``dtype=None`` means :func:`weightwise.backend.floatx`.

Seeds work as in Keras 3: an initializer draws the same values on every call
with the same shape. With an int ``seed`` those values are reproducible and
equal to Keras's own (torch backend, same device); with ``seed=None`` a seed is
drawn once, at construction, from torch's global generator, so
``torch.manual_seed`` makes unseeded initializers reproducible too. Drawing
values never touches the global generator.

>>> init = GlorotUniform(seed=0)
>>> kernel = init((256, 128))
>>> kernel.shape, kernel.dtype
(torch.Size([256, 128]), torch.float32)
>>> bool(kernel.abs().max() <= (6 / (256 + 128)) ** 0.5)
True
>>> torch.equal(kernel, init((256, 128)))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from weightwise import backend
from weightwise.arguments import INT64_MAX, count, finite_float, invalid, is_int, real
from weightwise.serialization import ObjectFamily

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "IdentityInitializer",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "OrthogonalInitializer",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "constant",
    "deserialize",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "lecun_normal",
    "lecun_uniform",
    "ones",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "serialize",
    "truncated_normal",
    "variance_scaling",
    "zeros",
]

# The standard deviation of a standard normal truncated to (-2, 2), as Keras writes it.
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978

Shape = Sequence[int]

# torch sizes and element counts are int64.
_MAX_SIZE = INT64_MAX


# -- validation ------------------------------------------------------------------------
def _standardize_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints (that torch can index); anything else is a ``ValueError``."""
    if isinstance(shape, (torch.Size, tuple, list)):
        dims = []
        for dim in shape:
            if not is_int(dim) or not 0 <= dim <= _MAX_SIZE:
                break
            dims.append(int(dim))
        else:
            if math.prod(dims) <= _MAX_SIZE:
                return tuple(dims)
    raise ValueError(
        f"Invalid value for argument `shape`: expected a tuple or list of non-negative ints (at most {_MAX_SIZE} "
        f"values in all). Received: shape={shape!r}"
    )


def _float_dtype(dtype: Any) -> torch.dtype:
    """The float ``torch.dtype`` a random initializer draws in; ``None`` means floatx."""
    resolved = backend.standardize_dtype(dtype)
    if not resolved.is_floating_point:
        raise ValueError(
            f"Invalid value for argument `dtype`: random initializers need a float dtype. Received: dtype={dtype!r}"
        )
    return resolved


def _finite(values: torch.Tensor, initializer: Initializer) -> torch.Tensor:
    """``values``, unless the initializer's scale overflowed their dtype (the values would be inf or NaN)."""
    if values.is_floating_point() and not values.is_meta and not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"Invalid value for the arguments of {type(initializer).__name__}: its values overflow dtype "
            f"{values.dtype}. Received: {initializer!r}"
        )
    return values


def _validate_axes(axes: Any, name: str) -> list[int] | None:
    if axes is None:
        return None
    if isinstance(axes, (list, tuple)) and all(is_int(a) for a in axes):
        return [int(a) for a in axes]
    raise invalid(name, "None or a list of ints", axes)


# -- fans ------------------------------------------------------------------------------
def compute_fans(
    shape: Shape, input_axes: Sequence[int] | None = None, output_axes: Sequence[int] | None = None
) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight of ``shape``, as Keras computes them.

    A scalar has fans 1; a vector ``(n,)`` has ``n`` both ways; a matrix
    ``(in, out)`` has ``in`` and ``out``. For more axes the kernel is read as
    ``(*receptive_field, in, out)``, so ``fan_in = in * prod(receptive_field)``
    and ``fan_out = out * prod(receptive_field)``. When both ``input_axes`` and
    ``output_axes`` are given, the fans are the products of those axes instead
    (one of them alone is ignored, as in Keras).

    >>> compute_fans((256, 512))
    (256, 512)
    >>> compute_fans((3, 3, 64, 128))
    (576, 1152)
    >>> compute_fans((8, 4, 16), input_axes=[0], output_axes=[1, 2])
    (8, 64)
    """
    shape = _standardize_shape(shape)
    if input_axes is not None and output_axes is not None:
        fans = []
        for name, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
            fan = 1
            for axis in axes:
                if not -len(shape) <= axis < len(shape):
                    raise ValueError(
                        f"Invalid value for argument `{name}`: axis {axis} is out of range for a weight of "
                        f"shape {shape}. Received: {name}={list(axes)!r}"
                    )
                fan *= shape[axis]
            fans.append(fan)
        return fans[0], fans[1]
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


# -- sampling (Keras's torch backend, so that int seeds give Keras's values) -----------
def _device() -> torch.device:
    return torch.get_default_device()


def _generator(seed: int, device: torch.device) -> torch.Generator | None:
    if device.type == "meta":
        return None
    generator = torch.Generator(device=device)
    # Keras's torch backend seeds its generator with the seed's low 32 bits.
    generator.manual_seed(seed & 0xFFFFFFFF)
    return generator


def _normal(shape: tuple[int, ...], mean: float, stddev: float, dtype: torch.dtype, seed: int) -> torch.Tensor:
    device = _device()
    return torch.normal(mean, stddev, size=shape, generator=_generator(seed, device), dtype=dtype, device=device)


def _uniform(shape: tuple[int, ...], minval: float, maxval: float, dtype: torch.dtype, seed: int) -> torch.Tensor:
    device = _device()
    size = shape if shape else (1,)
    draw = torch.rand(size, generator=_generator(seed, device), dtype=dtype, device=device)
    out = (maxval - minval) * draw + minval
    return out if shape else out[0]


def _first_inside(candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of the last axis: the first candidate in (-2, 2), and whether there was one."""
    inside = (candidates > -2) & (candidates < 2)
    index = inside.max(-1, keepdim=True)[1]
    return candidates.gather(-1, index).squeeze(-1), inside.any(-1)


def _truncated_normal(
    shape: tuple[int, ...], mean: float, stddev: float, dtype: torch.dtype, seed: int
) -> torch.Tensor:
    # Keras draws four standard normals per value and keeps the first inside (-2, 2).
    # Where all four fall outside (about 4 values in a million) Keras keeps one that is
    # outside; here those values are redrawn, so every value is truly truncated.
    device = _device()
    generator = _generator(seed, device)
    candidates = torch.normal(0.0, 1.0, size=(*shape, 4), generator=generator, dtype=dtype, device=device)
    values, found = _first_inside(candidates)
    while not bool(found.all()):
        missing = ~found
        redraw = torch.normal(
            0.0, 1.0, size=(int(missing.sum()), 4), generator=generator, dtype=dtype, device=device
        )
        new_values, new_found = _first_inside(redraw)
        values[missing] = torch.where(new_found, new_values, values[missing])
        found[missing] = new_found
    return values.mul(stddev).add(mean)


# -- base classes ----------------------------------------------------------------------
class Initializer:
    """Base class for initializers.

    Subclasses implement ``__call__(shape, dtype=None)``, returning a tensor of
    that shape and dtype, and ``get_config()``, returning the constructor
    arguments; ``from_config`` then rebuilds the initializer as ``cls(**config)``.
    Any plain function ``f(shape, dtype=None)`` works as an initializer too.

    >>> class Halves(Initializer):
    ...     def __init__(self, value=0.5):
    ...         self.value = value
    ...     def __call__(self, shape, dtype=None):
    ...         return torch.full(tuple(shape), self.value, dtype=backend.standardize_dtype(dtype))
    ...     def get_config(self):
    ...         return {"value": self.value}
    >>> Halves()((2,))
    tensor([0.5000, 0.5000])
    >>> Halves.from_config({"value": 0.25}).value
    0.25
    """

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        """Return a new tensor of ``shape`` and ``dtype`` (``None``: floatx)."""
        raise NotImplementedError("Initializer subclasses must implement the `__call__()` method.")

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Initializer:
        """Rebuild an initializer from ``get_config()`` output: ``cls(**config)``."""
        if not isinstance(config, Mapping):
            raise TypeError(f"Invalid value for argument `config`: expected a dict. Received: config={config!r}")
        return cls(**config)

    def clone(self) -> Initializer:
        """A new initializer of the same class and config (an unseeded one draws a new seed)."""
        return self.__class__.from_config(self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _RandomInitializer(Initializer):
    """Holds the seed: ``seed`` is the int the values are drawn with, fixed at construction."""

    def __init__(self, seed: int | None = None) -> None:
        self._init_seed = count(seed, "seed", allow_none=True)
        if self._init_seed is None:
            # As Keras's make_default_seed, but from torch's global generator.
            self.seed = int(torch.randint(1, 10**9 + 1, (), device="cpu").item())
        else:
            self.seed = self._init_seed

    def get_config(self) -> dict[str, Any]:
        return {"seed": self._init_seed}


# -- constant initializers -------------------------------------------------------------
class Zeros(Initializer):
    """Initializer of zeros: ``w = 0``.

    Available by string as ``'zeros'`` (and ``'zero'``). Any dtype works.

    >>> Zeros()((2, 3))
    tensor([[0., 0., 0.],
            [0., 0., 0.]])
    >>> Zeros()((2,), dtype="int32")
    tensor([0, 0], dtype=torch.int32)
    """

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        return torch.zeros(_standardize_shape(shape), dtype=backend.standardize_dtype(dtype))


class Ones(Initializer):
    """Initializer of ones: ``w = 1``.

    Available by string as ``'ones'`` (and ``'one'``). Any dtype works.

    >>> Ones()((2, 2))
    tensor([[1., 1.],
            [1., 1.]])
    """

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        return torch.ones(_standardize_shape(shape), dtype=backend.standardize_dtype(dtype))


class Constant(Initializer):
    """Initializer of one constant: ``w = value``, cast to ``dtype``.

    Args:
        value: a finite Python (or numpy) scalar. A value the dtype cannot hold (``2**70``
            as ``int64``, ``1e300`` as ``float32``) is a ``ValueError`` when called.

    >>> Constant(3.5)((2, 2))
    tensor([[3.5000, 3.5000],
            [3.5000, 3.5000]])
    >>> Constant(2)((3,), dtype="int64")
    tensor([2, 2, 2])
    >>> Constant(0.1).get_config()
    {'value': 0.1}
    """

    def __init__(self, value: float = 0.0) -> None:
        if isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float)):
            value = value.item()
        # A bool is a value too (a bool or int tensor can be filled with it).
        if not isinstance(value, bool) and (not isinstance(value, (int, float)) or finite_float(value) is None):
            raise invalid("value", "a finite Python scalar", value)
        self.value = value

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        shape = _standardize_shape(shape)
        dtype = backend.standardize_dtype(dtype)
        try:
            value = torch.as_tensor(self.value, dtype=dtype)
        except (OverflowError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"Invalid value for argument `value`: {self.value!r} does not fit dtype {dtype}. Received: value={self.value!r}"
            ) from error
        # As Keras: cast(value, dtype) * ones(shape, dtype).
        return _finite(value * torch.ones(shape, dtype=dtype), self)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class Identity(Initializer):
    """Initializer of a scaled identity matrix: ``w = gain * I`` (2-D shapes only).

    A non-square shape gives ones on the main diagonal and zeros elsewhere.
    Also available as ``IdentityInitializer`` and by string as ``'identity'``.

    Args:
        gain: multiplicative factor applied to the identity matrix.

    >>> Identity(gain=2.0)((2, 3))
    tensor([[2., 0., 0.],
            [0., 2., 0.]])
    >>> Identity()((2, 2, 2))
    Traceback (most recent call last):
    ...
    ValueError: Identity matrix initializer can only be used for 2D matrices. Received: shape=(2, 2, 2) of rank 3.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = real(gain, "gain", keep_int=True)

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        shape = _standardize_shape(shape)
        if len(shape) != 2:
            raise ValueError(
                "Identity matrix initializer can only be used for 2D matrices. "
                f"Received: shape={shape} of rank {len(shape)}."
            )
        dtype = backend.standardize_dtype(dtype)
        return _finite((self.gain * torch.eye(*shape, dtype=dtype)).to(dtype), self)

    def get_config(self) -> dict[str, Any]:
        # Keras 3.15 returns {} here and so loses the gain; ours round-trips it.
        return {"gain": self.gain}


# -- random initializers ---------------------------------------------------------------
class RandomNormal(_RandomInitializer):
    """Initializer drawing from a normal distribution: ``w ~ N(mean, stddev²)``.

    Args:
        mean: mean of the values.
        stddev: standard deviation of the values, > 0.
        seed: None, or an int >= 0 that makes the values reproducible.

    >>> init = RandomNormal(mean=1.0, stddev=0.1, seed=3)
    >>> w = init((100, 100))
    >>> round(w.mean().item(), 1), round(w.std().item(), 2)
    (1.0, 0.1)
    >>> torch.equal(w, init((100, 100)))
    True
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = real(mean, "mean", keep_int=True)
        self.stddev = real(stddev, "stddev", low=0, low_open=True, keep_int=True)
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        return _finite(_normal(_standardize_shape(shape), self.mean, self.stddev, _float_dtype(dtype), self.seed), self)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(_RandomInitializer):
    """Initializer drawing from a normal distribution truncated at two standard deviations.

    ``w ~ N(mean, stddev²)`` conditioned on ``|w - mean| < 2 * stddev``; values
    outside are redrawn. The result's standard deviation is therefore
    ``0.8796 * stddev``.

    Args:
        mean: mean of the untruncated distribution.
        stddev: standard deviation of the untruncated distribution, > 0.
        seed: None, or an int >= 0 that makes the values reproducible.

    >>> w = TruncatedNormal(mean=0.0, stddev=1.0, seed=0)((200, 200))
    >>> bool(w.abs().max() < 2.0)
    True
    >>> round(w.std().item(), 2)
    0.88
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = real(mean, "mean", keep_int=True)
        self.stddev = real(stddev, "stddev", low=0, low_open=True, keep_int=True)
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        values = _truncated_normal(_standardize_shape(shape), self.mean, self.stddev, _float_dtype(dtype), self.seed)
        return _finite(values, self)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(_RandomInitializer):
    """Initializer drawing from a uniform distribution: ``w ~ U[minval, maxval)``.

    Computed as ``(maxval - minval) * u + minval`` with ``u ~ U[0, 1)``, as Keras does.

    Args:
        minval: lower bound of the range.
        maxval: upper bound of the range, >= ``minval``.
        seed: None, or an int >= 0 that makes the values reproducible.

    >>> w = RandomUniform(minval=-1.0, maxval=1.0, seed=7)((1000,))
    >>> bool(w.min() >= -1.0), bool(w.max() < 1.0)
    (True, True)
    >>> RandomUniform(1.0, 0.0)
    Traceback (most recent call last):
    ...
    ValueError: Invalid values for arguments `minval` and `maxval`: expected minval <= maxval. Received: minval=1.0, maxval=0.0
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        self.minval = real(minval, "minval", keep_int=True)
        self.maxval = real(maxval, "maxval", keep_int=True)
        if self.minval > self.maxval:
            raise ValueError(
                "Invalid values for arguments `minval` and `maxval`: expected minval <= maxval. "
                f"Received: minval={minval!r}, maxval={maxval!r}"
            )
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        values = _uniform(_standardize_shape(shape), self.minval, self.maxval, _float_dtype(dtype), self.seed)
        return _finite(values, self)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


_MODES = ("fan_avg", "fan_in", "fan_out")
_DISTRIBUTIONS = ("truncated_normal", "uniform", "untruncated_normal")


class VarianceScaling(_RandomInitializer):
    """Initializer whose scale adapts to the weight's fans.

    With ``n`` = ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2`` for
    ``mode`` ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"`` (from
    :func:`compute_fans`, at least 1):

    - ``"truncated_normal"``: a normal truncated at two standard deviations,
      with ``stddev = sqrt(scale / n) / 0.87962566103423978`` before truncation,
      so that the values' standard deviation is ``sqrt(scale / n)``;
    - ``"untruncated_normal"``: ``N(0, scale / n)``;
    - ``"uniform"``: ``U[-limit, limit)`` with ``limit = sqrt(3 * scale / n)``.

    ``distribution="normal"`` means ``"truncated_normal"``, as in Keras.

    Args:
        scale: positive scaling factor.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"``, ``"untruncated_normal"`` or ``"uniform"``.
        seed: None, or an int >= 0 that makes the values reproducible.

    ``input_axes`` and ``output_axes``, optional lists of axes whose sizes multiply to
    the fans, are used only when both are given.

    >>> init = VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform", seed=1)
    >>> w = init((3, 3, 64, 128))
    >>> limit = (3 * 2.0 / (3 * 3 * 64)) ** 0.5
    >>> bool(w.abs().max() <= limit)
    True
    >>> VarianceScaling(mode="fan_sum")
    Traceback (most recent call last):
    ...
    ValueError: Invalid `mode` argument: 'fan_sum'. Please use one of ['fan_avg', 'fan_in', 'fan_out'].
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        if finite_float(scale) is None or scale <= 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale!r}")
        if mode not in _MODES:
            raise ValueError(
                f"Invalid `mode` argument: {mode!r}. Please use one of {list(_MODES)}."
            )
        if isinstance(distribution, str):
            distribution = distribution.lower()
            if distribution == "normal":
                distribution = "truncated_normal"
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` argument: {distribution!r}. Please use one of {list(_DISTRIBUTIONS)}."
            )
        self.scale = real(scale, "scale", keep_int=True)
        self.mode = mode
        self.distribution = distribution
        self.input_axes = _validate_axes(input_axes, "input_axes")
        self.output_axes = _validate_axes(output_axes, "output_axes")
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        shape = _standardize_shape(shape)
        dtype = _float_dtype(dtype)
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        scale = self.scale
        if self.mode == "fan_in":
            scale /= max(1.0, fan_in)
        elif self.mode == "fan_out":
            scale /= max(1.0, fan_out)
        else:
            scale /= max(1.0, (fan_in + fan_out) / 2.0)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(scale) / TRUNCATED_NORMAL_STDDEV
            values = _truncated_normal(shape, 0.0, stddev, dtype, self.seed)
        elif self.distribution == "untruncated_normal":
            values = _normal(shape, 0.0, math.sqrt(scale), dtype, self.seed)
        else:
            limit = math.sqrt(3.0 * scale)
            values = _uniform(shape, -limit, limit, dtype, self.seed)
        return _finite(values, self)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling preset: its config is only the seed and the axes."""

    _SCALE = 1.0
    _MODE = "fan_in"
    _DISTRIBUTION = "truncated_normal"

    def __init__(
        self,
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            scale=self._SCALE,
            mode=self._MODE,
            distribution=self._DISTRIBUTION,
            seed=seed,
            input_axes=input_axes,
            output_axes=output_axes,
        )

    def get_config(self) -> dict[str, Any]:
        return {"seed": self._init_seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: ``U[-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    ``VarianceScaling(scale=1.0, mode="fan_avg", distribution="uniform")``; the
    default kernel initializer of Keras's ``Dense`` and ``Conv`` layers.

    >>> w = GlorotUniform(seed=0)((256, 512))
    >>> bool(w.abs().max() <= (6 / (256 + 512)) ** 0.5)
    True
    >>> GlorotUniform(seed=0).get_config()
    {'seed': 0, 'input_axes': None, 'output_axes': None}
    """

    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_avg", "uniform"


class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal: truncated normal with ``std = sqrt(2 / (fan_in + fan_out))``.

    ``VarianceScaling(scale=1.0, mode="fan_avg", distribution="truncated_normal")``.

    >>> w = GlorotNormal(seed=0)((256, 512))
    >>> round(w.std().item() / (2 / (256 + 512)) ** 0.5, 1)
    1.0
    """

    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_avg", "truncated_normal"


class LecunNormal(_FixedVarianceScaling):
    """LeCun normal: truncated normal with ``std = sqrt(1 / fan_in)``.

    ``VarianceScaling(scale=1.0, mode="fan_in", distribution="truncated_normal")``.

    >>> w = LecunNormal(seed=0)((400, 300))
    >>> round(w.std().item() / (1 / 400) ** 0.5, 1)
    1.0
    """

    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_in", "truncated_normal"


class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform: ``U[-limit, limit)`` with ``limit = sqrt(3 / fan_in)``.

    ``VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")``.

    >>> w = LecunUniform(seed=0)((300, 200))
    >>> bool(w.abs().max() <= (3 / 300) ** 0.5)
    True
    """

    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_in", "uniform"


class HeNormal(_FixedVarianceScaling):
    """He normal: truncated normal with ``std = sqrt(2 / fan_in)``.

    ``VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal")``.

    >>> w = HeNormal(seed=0)((3, 3, 64, 128))
    >>> round(w.std().item() / (2 / (3 * 3 * 64)) ** 0.5, 1)
    1.0
    """

    _SCALE, _MODE, _DISTRIBUTION = 2.0, "fan_in", "truncated_normal"


class HeUniform(_FixedVarianceScaling):
    """He uniform: ``U[-limit, limit)`` with ``limit = sqrt(6 / fan_in)``.

    ``VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform")``.

    >>> w = HeUniform(seed=0)((3, 3, 64, 128))
    >>> bool(w.abs().max() <= (6 / (3 * 3 * 64)) ** 0.5)
    True
    """

    _SCALE, _MODE, _DISTRIBUTION = 2.0, "fan_in", "uniform"


class Orthogonal(_RandomInitializer):
    """Initializer of a (semi-)orthogonal matrix, times ``gain``.

    The weight is viewed as a matrix ``(prod(shape[:-1]), shape[-1])``. A normal
    matrix ``A`` of shape ``(max(rows, cols), min(rows, cols))`` is factored as
    ``A = QR``; ``Q * sign(diag(R))`` (transposed when rows < cols) has orthonormal
    columns (rows), and ``w = gain * reshape(Q, shape)``. Also available as
    ``OrthogonalInitializer``.

    Args:
        gain: multiplicative factor applied to the orthogonal matrix.
        seed: None, or an int >= 0 that makes the values reproducible.

    >>> w = Orthogonal(seed=0)((5, 3))
    >>> torch.allclose(w.T @ w, torch.eye(3), atol=1e-6)
    True
    >>> Orthogonal()((4,))
    Traceback (most recent call last):
    ...
    ValueError: The tensor to initialize must be at least two-dimensional. Received: shape=(4,) of rank 1.
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain = real(gain, "gain", keep_int=True)
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: Any = None) -> torch.Tensor:
        shape = _standardize_shape(shape)
        if len(shape) < 2:
            raise ValueError(
                "The tensor to initialize must be at least two-dimensional. "
                f"Received: shape={shape} of rank {len(shape)}."
            )
        dtype = _float_dtype(dtype)
        num_rows = math.prod(shape[:-1])
        num_cols = shape[-1]
        flat_shape = (max(num_cols, num_rows), min(num_cols, num_rows))
        a = _normal(flat_shape, 0.0, 1.0, dtype, self.seed)
        if a.dtype in (torch.float16, torch.bfloat16):
            a = a.float()  # torch has no half-precision QR
        q, r = torch.linalg.qr(a, mode="reduced")
        q = q * torch.sign(torch.diag(r))
        if num_rows < num_cols:
            q = q.T
        return _finite((self.gain * torch.reshape(q, shape)).to(dtype), self)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": self.gain}


# -- Keras's lowercase and legacy names for the classes --------------------------------
constant = Constant
glorot_normal = GlorotNormal
glorot_uniform = GlorotUniform
he_normal = HeNormal
he_uniform = HeUniform
identity = Identity
IdentityInitializer = Identity
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
ones = Ones
orthogonal = Orthogonal
OrthogonalInitializer = Orthogonal
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
variance_scaling = VarianceScaling
zeros = Zeros


_FAMILY = ObjectFamily(
    "initializer",
    "keras.initializers",
    [
        Initializer,
        Constant,
        Identity,
        Ones,
        Zeros,
        GlorotNormal,
        GlorotUniform,
        HeNormal,
        HeUniform,
        LecunNormal,
        LecunUniform,
        Orthogonal,
        RandomNormal,
        RandomUniform,
        TruncatedNormal,
        VarianceScaling,
    ],
    # Keras's extra ids, usable as strings and as a config's class_name.
    extra_names={
        "IdentityInitializer": Identity,
        "OrthogonalInitializer": Orthogonal,
        "normal": RandomNormal,
        "one": Ones,
        "uniform": RandomUniform,
        "zero": Zeros,
    },
)


def serialize(initializer: Any) -> dict[str, Any] | None:
    """Return the Keras 3 config dict of an initializer.

    >>> serialize(GlorotUniform())
    {'module': 'keras.initializers', 'class_name': 'GlorotUniform', 'config': {'seed': None, 'input_axes': None, 'output_axes': None}, 'registered_name': None}
    """
    return _FAMILY.serialize(initializer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build an initializer from a Keras 3 or tf.keras 2 config, or from a string id.

    >>> deserialize({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.5, "seed": 1}})
    RandomNormal(seed=1, mean=0.0, stddev=0.5)
    >>> deserialize("he_uniform")
    HeUniform(seed=None, input_axes=None, output_axes=None)
    """
    return _FAMILY.deserialize(config, custom_objects)


def _from_tensor(value: Any) -> Callable[..., torch.Tensor]:
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            raise ValueError(f"Invalid value for argument `identifier`: a meta tensor has no values. Received: {value!r}")
        source = value.detach()
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise ValueError(
                f"Invalid value for argument `identifier`: an array initializer needs numbers. "
                f"Received: {value!r:.200} (dtype {array.dtype})"
            )
        source = torch.as_tensor(array)

    def initialize_fn(shape: Shape, dtype: Any = None) -> torch.Tensor:
        if _standardize_shape(shape) != tuple(source.shape):
            raise ValueError(
                f"Expected `shape` to be {tuple(source.shape)} for direct tensor as initializer. "
                f"Received shape={tuple(shape)}"
            )
        dtype = backend.standardize_dtype(dtype)
        if source.is_complex() and not dtype.is_complex:
            raise ValueError(
                f"Invalid value for argument `dtype`: a complex initializer tensor cannot become {dtype} without "
                f"losing its imaginary part. Received: dtype={dtype}"
            )
        return source.to(dtype, copy=True)

    return initialize_fn


def get(identifier: Any) -> Any:
    """Resolve an initializer identifier: ``None``, a string id, a config dict, a callable or a tensor.

    Strings are class names, their snake_case, Keras's aliases (``'zero'``,
    ``'one'``, ``'normal'``, ``'uniform'``) or registered names; a class is
    instantiated with its defaults; callables pass through. A tensor or numpy
    array gives an initializer returning a copy of it (for its own shape only).
    Anything else raises a ``ValueError``.

    >>> get("ones")((2,))
    tensor([1., 1.])
    >>> get("glorot_uniform")
    GlorotUniform(seed=None, input_axes=None, output_axes=None)
    >>> get(torch.tensor([1.0, 2.0]))((2,), dtype="float64")
    tensor([1., 2.], dtype=torch.float64)
    >>> get(None) is None
    True
    """
    if isinstance(identifier, (torch.Tensor, np.ndarray, np.generic)):
        return _from_tensor(identifier)
    return _FAMILY.get(identifier)

