"""Weight constraints: projections applied to a weight after each optimizer update.

A constraint is any callable that takes a tensor and returns a projected tensor
of the same shape and dtype. Constraints are pure: they never modify their input;
the training loop copies the result into the parameter.

Norms are taken over ``axis`` (an int or a list of ints). In a Keras ``Dense``
kernel ``(input_dim, units)``, ``axis=0`` constrains each unit's incoming weight
vector; in a ``Conv2D`` kernel ``(rows, cols, in, out)``, ``axis=[0, 1, 2]``
constrains each filter.

Half-precision weights are projected in ``float32`` and cast back. The norm
constraints need floating-point (or complex) weights and refuse integers and bools
with a ``TypeError``; complex weights are measured by magnitude, ``|z|``, and keep
their phase. ``NonNeg`` keeps the dtype of integer weights, leaves bools as they
are, and refuses complex weights (they have no sign). ``axis=[]`` takes the norm of
each single entry, its magnitude, as Keras's formula does.

The bounds of ``MaxNorm`` and ``MinMaxNorm`` (``max_value``, ``min_value``, ``rate``) may
be schedules of the training step (:mod:`weightwise.factors`), evaluated at
:func:`weightwise.clock.step` at each projection: ``MaxNorm(PolynomialDecay(10.0, 1000,
end_learning_rate=1.0))`` tightens the bound from 10 to 1 over 1000 steps. A config holds
the schedule's Keras config.

>>> class NonNegative(Constraint):
...
...  def __call__(self, w):
...    return w * ops.cast(ops.greater_equal(w, 0.), dtype=w.dtype)
>>> weight = ops.convert_to_tensor((-1.0, 1.0))
>>> NonNegative()(weight)
[0., 1.]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from weightwise import backend, clock, factors, ops
from weightwise.arguments import INT64_MAX, invalid, is_int
from weightwise.factors import Factor
from weightwise.serialization import ObjectFamily

__all__ = [
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "SpectralNorm",
    "UnitNorm",
    "deserialize",
    "get",
    "max_norm",
    "min_max_norm",
    "non_neg",
    "serialize",
    "spectral_norm",
    "unit_norm",
]

Axis = int | Sequence[int] | None


class _DefaultAxis(int):
    """A default ``axis`` (Keras's ``0`` for norms, ``-1`` for :class:`SpectralNorm`), marked as not chosen by the user.

    It is that int everywhere (math, configs, JSON); :func:`axis_was_given` tells it
    apart, so rules attached to torch layers can pick the axis of their layout.
    """

    def __repr__(self) -> str:
        return int.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_DefaultAxis, (int(self),))


DEFAULT_AXIS = _DefaultAxis(0)


def axis_was_given(constraint: Any) -> bool:
    """Whether a constraint's ``axis`` was chosen explicitly (not left at its default).

    >>> axis_was_given(MaxNorm(2.0)), axis_was_given(MaxNorm(2.0, axis=0))
    (False, True)
    """
    return type(getattr(constraint, "axis", None)) is not _DefaultAxis


def _is_int(value: Any) -> bool:
    return is_int(value) and abs(value) <= INT64_MAX


def _validate_axis(axis: Any) -> int | list[int] | None:
    """Check ``axis`` (an int, a sequence of distinct ints, or None) and return it JSON-ready."""
    if axis is None or type(axis) is _DefaultAxis:
        return axis
    if _is_int(axis):
        return int(axis)
    if isinstance(axis, (list, tuple)) and all(_is_int(a) for a in axis):
        if len(set(axis)) != len(axis):
            raise ValueError(f"Invalid value for argument `axis`: repeated axes. Received: axis={axis!r}")
        return [int(a) for a in axis]
    raise invalid("axis", "an int, a list of ints, or None", axis)


def _check_axis_fits(axis: int | list[int] | None, w: torch.Tensor, owner: str) -> None:
    axes = [] if axis is None else [axis] if isinstance(axis, int) else axis
    for a in axes:
        if not -w.dim() <= a < w.dim():
            raise ValueError(
                f"{owner}: `axis`={axis!r} is out of range for a weight of shape {tuple(w.shape)} "
                f"(rank {w.dim()})."
            )
    if len({a % max(w.dim(), 1) for a in axes}) != len(axes):
        raise ValueError(f"{owner}: `axis`={axis!r} names the same dimension twice for rank {w.dim()}.")


def _check_float(w: torch.Tensor, owner: str) -> None:
    # A projection of an integer weight would be truncated when copied back: MaxNorm would
    # turn [[30, -40]] into zeros.
    if not (w.is_floating_point() or w.is_complex()):
        raise TypeError(
            f"{owner} projects floating-point weights only; it cannot keep the dtype {str(w.dtype).replace('torch.', '')}. "
            f"Received: w of dtype {str(w.dtype).replace('torch.', '')} and shape {tuple(w.shape)}"
        )


def check_weight(constraint: Any, weight: torch.Tensor) -> None:
    """Raise if a built-in ``constraint`` cannot project ``weight`` (checked when it is bound).

    Norm constraints need a floating-point (or complex) weight with every ``axis`` in
    range (``TypeError``, ``ValueError``); ``NonNeg`` refuses complex weights. Custom
    constraints pass.

    >>> check_weight(MaxNorm(axis=4), ops.ones((2, 2)))
    Traceback (most recent call last):
    ...
    ValueError: MaxNorm: `axis`=4 is out of range for a weight of shape (2, 2) (rank 2).
    """
    if isinstance(constraint, Constraint):
        constraint._check_weight(weight)


class Constraint:
    """Base class for weight constraints.

    A constraint works like a stateless function: subclasses override
    ``__call__(w)`` to return a projected version of ``w`` (for example normalized
    or clipped), without modifying ``w``. ``get_config`` returns the constructor
    arguments and ``from_config`` rebuilds the constraint as ``cls(**config)``.

    >>> class CenterAround(Constraint):
    ...   \"\"\"Constrains weight tensors to be centered around `ref_value`.\"\"\"
    ...
    ...   def __init__(self, ref_value):
    ...     self.ref_value = ref_value
    ...
    ...   def __call__(self, w):
    ...     mean = ops.mean(w)
    ...     return w - mean + self.ref_value
    ...
    ...   def get_config(self):
    ...     return {'ref_value': self.ref_value}
    >>> constraint = CenterAround.from_config(CenterAround(2.0).get_config())
    >>> constraint(ops.convert_to_tensor([0.0, 1.0, 2.0]))
    tensor([1., 2., 3.])
    """

    def __call__(self, w: Any) -> torch.Tensor:
        """Return the projection of ``w``; the base class returns ``w`` unchanged."""
        return ops.argument_tensor(w, "w")

    def _check_weight(self, weight: torch.Tensor) -> None:
        """Raise if this constraint cannot project ``weight``; see :func:`check_weight`."""

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constraint:
        """Rebuild a constraint from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        return factors.rule_repr(self, self.get_config())


def _bound(value: float, dtype: torch.dtype) -> float:
    """A norm bound as a float the dtype holds: one beyond its range is no bound at all (inf).

    A Python int past 2**63, or a float past float32's range, is no torch scalar of that dtype.
    """
    value = float(value)
    return value if value <= torch.finfo(dtype).max else math.inf


class _NormConstraint(Constraint):
    """Shared machinery of the norm constraints: ``w * desired(norms) / (epsilon + norms)``.

    A vector of finite entries whose norm overflows the dtype (float32 entries near 3e38)
    is projected in float64, with norms in units of its largest entry ``s``:
    ``w * (desired / s) / (epsilon / s + norm / s)``, the same quantity, so it is capped or
    scaled as it should be instead of becoming 0 (Keras).
    A vector holding NaN or an infinite entry has no direction to keep: it comes out all NaN,
    so a diverged weight stays visible (Keras gives a mix of NaN and 0).
    """

    def __init__(self, axis: Axis) -> None:
        self.axis = _validate_axis(axis)

    def _check_weight(self, weight: torch.Tensor) -> None:
        _check_float(weight, type(self).__name__)
        _check_axis_fits(self.axis, weight, type(self).__name__)

    def _input(self, w: Any) -> tuple[torch.Tensor, torch.dtype]:
        """The weight to project, in :func:`weightwise.backend.rule_dtype`, and the dtype to return."""
        w = ops.argument_tensor(w, "w")
        self._check_weight(w)
        return w.to(backend.rule_dtype(w.dtype)), w.dtype

    def _norms(self, w: torch.Tensor) -> torch.Tensor:
        if self.axis == []:
            # The norm over no axes: each entry's own magnitude (Keras's sqrt(sum(w**2, axis=[]))).
            return torch.abs(w)
        return ops.norm(w, axis=self.axis, keepdims=True)

    def _desired(self, norms: torch.Tensor, scale: Any = 1.0) -> torch.Tensor:
        """The norm each vector should get, in units of ``scale`` (``norms`` are in those units too)."""
        raise NotImplementedError(f"{type(self).__name__} must define _desired(norms, scale)")

    def _project(self, x: torch.Tensor, norms: torch.Tensor, scale: Any = 1.0) -> torch.Tensor:
        """``x`` projected, given its ``norms`` in units of ``scale``.

        With scale 1.0 this is Keras's formula to the bit: eps / 1.0 and the bounds / 1.0 are exact.
        """
        return x * (self._desired(norms, scale) / (backend.epsilon() / scale + norms))

    def __call__(self, w: Any) -> torch.Tensor:
        x, dtype = self._input(w)
        norms = self._norms(x)
        out = self._project(x, norms)
        if x.is_meta or x.numel() == 0:
            return out.to(dtype)
        if torch.compiler.is_compiling():
            # ops.norm already rescued every finite vector, so an infinite norm means an infinite entry,
            # which the full path below turns into NaN: the same, without reading a value back.
            return torch.where(torch.isfinite(norms), out, torch.full_like(out, math.nan)).to(dtype)
        if bool(torch.isfinite(norms).all()):
            return out.to(dtype)
        wide = x.to(torch.complex128 if x.is_complex() else torch.float64)
        scale = torch.abs(wide) if self.axis == [] else torch.amax(
            torch.abs(wide), dim=() if self.axis is None else self.axis, keepdim=True)
        overflow = torch.isinf(norms) & torch.isfinite(scale)
        safe_scale = torch.where(overflow, scale, torch.ones_like(scale))
        rescued = self._project(wide, self._norms(wide / safe_scale), safe_scale)
        out = torch.where(overflow, rescued.to(x.dtype), out)
        return torch.where(torch.isfinite(scale), out, torch.full_like(out, math.nan)).to(dtype)


class MaxNorm(_NormConstraint):
    """Cap the norm of each weight vector: ``w * clip(norm, 0, max_value) / (epsilon + norm)``.

    Vectors within the bound keep their direction and (up to ``epsilon``) their length.

    Args:
        max_value: the largest allowed norm, ``>= 0``, or a schedule of the step.
        axis: axis or axes along which norms are taken. For a Dense kernel
            ``(input_dim, output_dim)``, ``axis=0`` constrains each weight vector of
            length ``input_dim``; for a ``channels_last`` Conv2D kernel
            ``(rows, cols, input_depth, output_depth)``, ``axis=[0, 1, 2]``
            constrains each filter.

    >>> MaxNorm(max_value=1.0)(ops.convert_to_tensor([[3.0], [4.0]]))
    tensor([[0.6000],
            [0.8000]])
    """

    def __init__(self, max_value: Factor = 2, axis: Axis = DEFAULT_AXIS) -> None:
        # inf is no bound; an int bound stays an int in the config. 10**400 has no float to project with.
        self.max_value = factors.factor(max_value, "max_value", allow_inf=True, keep_int=True)
        super().__init__(axis)

    def _desired(self, norms: torch.Tensor, scale: Any = 1.0) -> torch.Tensor:
        bound = _bound(factors.factor_value(self.max_value, "max_value", allow_inf=True), norms.dtype)
        return torch.clamp(norms, max=bound / scale) if isinstance(scale, torch.Tensor) else torch.clamp(norms, 0, bound)

    def get_config(self) -> dict[str, Any]:
        return {"max_value": factors.factor_config(self.max_value), "axis": self.axis}


class NonNeg(Constraint):
    """Zero out negative weights: ``max(w, 0)``, giving ``+0.0`` (never ``-0.0``).

    NaN stays NaN, so a diverged weight is not hidden. Integer weights keep their
    dtype; bool weights are never negative and come back unchanged. Complex weights
    have no sign and raise a ``TypeError``.

    >>> NonNeg()(ops.convert_to_tensor([-1.0, -0.0, 2.0]))
    tensor([0., 0., 2.])
    >>> NonNeg()(ops.convert_to_tensor([-3, 4]))
    tensor([0, 4], dtype=torch.int32)
    """

    def _check_weight(self, weight: torch.Tensor) -> None:
        if weight.is_complex():
            raise TypeError(
                f"NonNeg cannot constrain complex weights: they have no sign. "
                f"Received: w of dtype {str(weight.dtype).replace('torch.', '')} and shape {tuple(weight.shape)}"
            )

    def __call__(self, w: Any) -> torch.Tensor:
        w = ops.argument_tensor(w, "w")
        self._check_weight(w)
        if w.dtype == torch.bool:
            return w.clone()
        # Adding +0.0 turns the -0.0 that clamp keeps into +0.0 (IEEE: -0 + +0 = +0).
        return torch.clamp(w, min=0) + 0


class UnitNorm(_NormConstraint):
    """Scale each weight vector to unit norm: ``w / (epsilon + norm)``.

    A zero vector stays zero.

    Args:
        axis: axis or axes along which norms are taken (see :class:`MaxNorm`).

    >>> UnitNorm(axis=1)(ops.convert_to_tensor([[3.0, 4.0], [0.0, 0.0]]))
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]])
    """

    def __init__(self, axis: Axis = DEFAULT_AXIS) -> None:
        super().__init__(axis)

    def _project(self, x: torch.Tensor, norms: torch.Tensor, scale: Any = 1.0) -> torch.Tensor:
        return x / scale / (backend.epsilon() / scale + norms)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class MinMaxNorm(_NormConstraint):
    """Keep each weight vector's norm within ``[min_value, max_value]``.

    ``desired = rate * clip(norm, min_value, max_value) + (1 - rate) * norm``, then
    ``w * desired / (epsilon + norm)``. ``rate=1`` enforces the bounds strictly;
    a smaller rate moves the norm part of the way on each step.

    Each of ``min_value``, ``max_value`` and ``rate`` may be a schedule of the step;
    ``min_value <= max_value`` is then checked at each projection.

    Args:
        min_value: the smallest allowed norm, ``>= 0``.
        max_value: the largest allowed norm, ``>= min_value``.
        rate: enforcement rate in ``[0, 1]``.
        axis: axis or axes along which norms are taken (see :class:`MaxNorm`).

    >>> MinMaxNorm(min_value=1.0, max_value=2.0)(ops.convert_to_tensor([[0.3], [0.4]]))
    tensor([[0.6000],
            [0.8000]])
    """

    def __init__(
        self, min_value: Factor = 0.0, max_value: Factor = 1.0, rate: Factor = 1.0, axis: Axis = DEFAULT_AXIS
    ) -> None:
        self.min_value = factors.factor(min_value, "min_value", allow_inf=True, keep_int=True)
        self.max_value = factors.factor(max_value, "max_value", allow_inf=True, keep_int=True)
        if isinstance(self.min_value, (int, float)) and isinstance(self.max_value, (int, float)):
            _check_order(self.min_value, self.max_value, "")
        self.rate = factors.factor(rate, "rate", high=1, keep_int=True)
        super().__init__(axis)

    def _desired(self, norms: torch.Tensor, scale: Any = 1.0) -> torch.Tensor:
        min_value = factors.factor_value(self.min_value, "min_value", allow_inf=True)
        max_value = factors.factor_value(self.max_value, "max_value", allow_inf=True)
        rate = factors.factor_value(self.rate, "rate", high=1.0)
        if clock.is_scheduled(self.min_value) or clock.is_scheduled(self.max_value):
            _check_order(min_value, max_value, f" at step {clock.step()}")
        low, high = _bound(min_value, norms.dtype), _bound(max_value, norms.dtype)
        if isinstance(scale, torch.Tensor):
            clipped = torch.minimum(torch.maximum(norms, low / scale), high / scale)
        else:
            clipped = torch.clamp(norms, low, high)
        return rate * clipped + (1 - rate) * norms

    def get_config(self) -> dict[str, Any]:
        return {
            "min_value": factors.factor_config(self.min_value),
            "max_value": factors.factor_config(self.max_value),
            "rate": factors.factor_config(self.rate),
            "axis": self.axis,
        }


def _check_order(min_value: float, max_value: float, when: str) -> None:
    if min_value > max_value:
        raise ValueError(
            "Invalid values for arguments `min_value` and `max_value`: min_value must not exceed "
            f"max_value{when}. Received: min_value={min_value!r}, max_value={max_value!r}"
        )


# -- spectral norm -------------------------------------------------------------------------------

DEFAULT_LAST_AXIS = _DefaultAxis(-1)
# Extra power iterations when a weight's vector is new (first projection, new shape): the first
# estimate is then already close, instead of converging over the first few training steps.
_COLD_START_ITERATIONS = 15
# The start vector comes from its own generator, so binding a rule never moves the global random
# stream, and every process (every DDP rank) starts from the same vector.
_START_SEED = 0


def _matrix(w: torch.Tensor, axis: int) -> torch.Tensor:
    """``w`` as a matrix with one column per output unit: ``axis`` moved last, the rest flattened."""
    return torch.movedim(w, axis, -1).reshape(-1, w.shape[axis])


def _unit(x: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """``x / ||x||``, or ``fallback`` where ``x`` is zero or not finite (no host sync, no NaN)."""
    norm = torch.linalg.vector_norm(x)
    ok = torch.isfinite(norm) & (norm > 0)
    return torch.where(ok, x / torch.where(ok, norm, torch.ones_like(norm)), fallback)


class SpectralNorm(Constraint):
    """Cap the largest singular value of the weight: ``w * min(1, max_value / sigma)``.

    ``sigma`` is the spectral norm (largest singular value) of the weight seen as a matrix
    ``W`` with one column per output unit: ``axis`` (the output-unit axis) moved last and the
    other axes flattened, ``W = moveaxis(w, axis, -1).reshape(-1, units)``. On Keras layouts
    the output units are the last axis (Dense ``(in, out)``, Conv ``(*kernel, in, out)``), the
    default. ``constrain`` on plain torch layers picks their output axis when ``axis`` is left
    at its default (0 for ``nn.Linear`` and ``nn.ConvNd``, 1 for ``nn.ConvTransposeNd``). A
    Keras transposed-convolution kernel is ``(*kernel, out, in)``: the default takes its input
    channels as the columns, ``axis=-2`` its output channels; either matrix bounds the layer up
    to the same factor below.

    ``sigma`` is estimated by power iteration, ``v = W u / ||W u||``, ``u = Wᵀ v / ||Wᵀ v||``,
    ``sigma ≈ ||Wᵀ v||``, with the vector ``u`` (one entry per unit) kept in the rule and
    warm-started from the previous step, so ``power_iterations=1`` per step converges as
    training goes (Miyato et al., 2018). Binding makes a copy of the rule for each weight,
    holding that weight's ``u``. The first estimate for a weight runs 15 more iterations
    from a fixed pseudo-random start, the same in every process.

    What is bounded. The estimate never exceeds the true ``sigma``, so after a projection
    ``sigma(W) <= max_value * sigma / estimate``: at most ``max_value`` once the iteration has
    converged, above it while the weight turns faster than one iteration per step follows
    (large early updates); more ``power_iterations`` close that gap sooner. For a Dense
    kernel, ``sigma(W)`` is the layer's Lipschitz constant. For a convolution kernel it is
    the norm of the reshaped matrix, as in Miyato et al., not of the convolution: the
    convolution's Lipschitz constant can exceed it by up to ``sqrt(prod(kernel_size))`` (a
    3x3 kernel of ones has ``sigma(W) = 3`` and gain 9 on a constant image); see
    :func:`weightwise.lipschitz_bound` for a true bound.

    The forward pass is untouched (the weight itself is rescaled after the optimizer step),
    so ``torch.compile``, DDP and ``state_dict`` see an ordinary parameter. ``u`` is not in
    the ``state_dict``: a model loaded in a new process starts a fresh estimate. A weight
    holding NaN or inf comes back unchanged.

    Args:
        max_value: the largest allowed singular value, ``>= 0``, or a schedule of the step
            (read at each projection; see :mod:`weightwise.factors`).
        power_iterations: power-iteration steps per projection, ``>= 1``.
        axis: the axis of the output units (default: the last, Keras's layouts).

    >>> import torch
    >>> w = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    >>> SpectralNorm(max_value=1.5)(w)
    tensor([[1.5000, 0.0000],
            [0.0000, 0.5000]])
    >>> round(float(torch.linalg.matrix_norm(SpectralNorm(2.0)(10 * torch.eye(3)), ord=2)), 4)
    2.0
    """

    def __init__(self, max_value: float = 1.0, power_iterations: int = 1, axis: int = DEFAULT_LAST_AXIS) -> None:
        self.max_value = factors.factor(max_value, "max_value", allow_inf=True, keep_int=True)
        if not _is_int(power_iterations) or power_iterations < 1:
            raise invalid("power_iterations", "an int >= 1", power_iterations)
        self.power_iterations = int(power_iterations)
        if not _is_int(axis):
            raise invalid("axis", "an int (the axis of the output units)", axis)
        self.axis = axis if type(axis) is _DefaultAxis else int(axis)
        self._u: torch.Tensor | None = None

    def bound_to(self, module: torch.nn.Module, name: str, param: torch.Tensor) -> SpectralNorm:
        """A copy of this rule for one weight, with its own power-iteration vector."""
        clone = copy.copy(self)
        clone._u = None
        clone.__dict__.pop("_found", None)
        return clone

    def _check_weight(self, weight: torch.Tensor) -> None:
        _check_float(weight, type(self).__name__)
        _check_axis_fits(self.axis, weight, type(self).__name__)

    def estimate(self, w: Any) -> torch.Tensor:
        """Run the power iteration on ``w`` and return the estimate of its largest singular value.

        The vector ``u`` moves on (this is what each projection does first); ``w`` is not changed.

        >>> import torch
        >>> round(float(SpectralNorm().estimate(torch.diag(torch.tensor([1.0, 4.0, 2.0])))), 4)
        4.0
        """
        w = ops.argument_tensor(w, "w")
        self._check_weight(w)
        with torch.no_grad():
            return self._estimate(_matrix(w.detach().to(backend.rule_dtype(w.dtype)), self.axis))

    def _estimate(self, m: torch.Tensor) -> torch.Tensor:
        u, steps = self._u, self.power_iterations
        if u is not None and u.shape == (m.shape[1],) and u.is_complex() == m.is_complex():
            u = u.to(device=m.device, dtype=m.dtype)  # a weight moved to another device keeps its vector
        else:
            start = torch.randn(m.shape[1], generator=torch.Generator().manual_seed(_START_SEED), dtype=torch.float64)
            u = (start / torch.linalg.vector_norm(start)).to(device=m.device, dtype=m.dtype)
            steps += _COLD_START_ITERATIONS
        u = ops._like(u, m)  # replicated beside a sharded weight
        sigma = torch.zeros((), dtype=m.real.dtype if m.is_complex() else m.dtype, device=m.device)
        for _ in range(steps):
            mu = m @ u
            v = _unit(mu, torch.zeros_like(mu))
            back = m.mH @ v
            sigma = torch.linalg.vector_norm(back)
            u = _unit(back, u)  # a zero weight keeps the vector it had
        self._u = ops._plain(u)
        return sigma

    def __call__(self, w: Any) -> torch.Tensor:
        w = ops.argument_tensor(w, "w")
        self._check_weight(w)
        x = w.to(backend.rule_dtype(w.dtype))
        if x.numel() == 0 or x.is_meta:
            return x.clone().to(w.dtype)
        with torch.no_grad():
            sigma = self._estimate(_matrix(x.detach(), self.axis))
            bound = _bound(factors.factor_value(self.max_value, "max_value", allow_inf=True), sigma.dtype)
            over = torch.isfinite(sigma) & (sigma > bound)
            scale = torch.where(over, bound / torch.where(over, sigma, torch.ones_like(sigma)), torch.ones_like(sigma))
        self._found = (over, sigma)
        return (x * scale).to(w.dtype)

    def projection_stats(self, w: Any) -> tuple[torch.Tensor, int, torch.Tensor]:
        """What the projection of ``w`` finds, for reports: ``(hits, 1, sigma)``.

        The unit is the whole matrix: ``hits`` is 1 when the estimated ``sigma`` was above
        ``max_value`` (the weight was rescaled), else 0. Right after a projection this is what
        that projection found; otherwise the power iteration runs once more on ``w``.

        >>> import torch
        >>> rule = SpectralNorm(1.0, power_iterations=20)
        >>> hits, units, found = rule.projection_stats(3 * torch.eye(2))
        >>> int(hits), units, round(float(found), 4)
        (1, 1, 3.0)
        """
        found = self.__dict__.pop("_found", None)
        if found is None:
            self(w)
            found = self.__dict__.pop("_found")
        over, sigma = found
        return over.long(), 1, sigma

    def get_config(self) -> dict[str, Any]:
        return {"max_value": factors.factor_config(self.max_value), "power_iterations": self.power_iterations,
                "axis": self.axis}


max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm
spectral_norm = SpectralNorm

_FAMILY = ObjectFamily("constraint", "keras.constraints",
                       [Constraint, MaxNorm, NonNeg, UnitNorm, MinMaxNorm, SpectralNorm])


def serialize(constraint: Any) -> dict[str, Any] | None:
    """Return the Keras 3 config dict of a constraint.

    >>> serialize(MaxNorm(3.0, axis=[0, 1, 2]))
    {'module': 'keras.constraints', 'class_name': 'MaxNorm', 'config': {'max_value': 3.0, 'axis': [0, 1, 2]}, 'registered_name': None}
    """
    return _FAMILY.serialize(constraint)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build a constraint from a Keras 3 or tf.keras 2 config, or from a string id.

    >>> deserialize({"class_name": "UnitNorm", "config": {"axis": 1}})
    UnitNorm(axis=1)
    """
    return _FAMILY.deserialize(config, custom_objects)


def get(identifier: Any) -> Any:
    """Resolve a constraint identifier: ``None``, a string id, a config dict or a callable.

    >>> get('max_norm')
    MaxNorm(max_value=2, axis=0)
    >>> get('non_neg')
    NonNeg()
    """
    return _FAMILY.get(identifier)
