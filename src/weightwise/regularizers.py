"""Weight regularizers: penalties on a tensor that are added to the training loss.

A regularizer is any callable that takes a weight (or activity) tensor and returns
a scalar tensor. The built-ins compute exactly what Keras 3 computes. The penalty
has the input's dtype, except for half-precision inputs (``float16``,
``bfloat16``), which are reduced in ``float32`` and give a ``float32`` penalty:
a sum of squares overflows ``float16`` past 65504, and the loss it joins is
``float32`` anyway. Integer and bool inputs are penalized as :func:`~weightwise.backend.floatx`.
Complex inputs are penalized by magnitude (``|z|``, ``|z| ** 2``, as
:func:`torch.linalg.vector_norm` measures them) and give a real penalty.

Factors are kept as the Python floats given, so ``L1(0.01).get_config()`` is
``{"l1": 0.01}``, not Keras's ``0.009999999776482582``. A factor must be a finite
number ``>= 0`` (not a bool); ``None`` means the default. Anything else is a
``ValueError`` naming the argument (:func:`weightwise.arguments.real`).

A factor may also be a schedule of the training step (:mod:`weightwise.factors`): a
Keras learning rate schedule (``weightwise.optimizers.schedules``, registered custom
ones too) or any callable ``schedule(step) -> float``. It is evaluated at
:func:`weightwise.clock.step`, the optimizer's iteration count, each time the penalty is
computed, and must give a finite float ``>= 0`` there. In a config it is the schedule's
Keras config, so it saves and loads with the model. An L2 factor that warms up from 0
to 1e-3 over the first 1000 steps, then stays::

    L2(PolynomialDecay(0.0, 1000, end_learning_rate=1e-3, power=1.0))

>>> regularizer = L2(2.)
>>> tensor = ops.ones(shape=(5, 5))
>>> regularizer(tensor)
50.0
>>> L1(-1)
Traceback (most recent call last):
...
ValueError: Invalid value for argument `l1`: expected a finite float >= 0. Received: l1=-1
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from weightwise import backend, constraints, factors, ops
from weightwise.arguments import echo, flag, real
from weightwise.factors import Factor
from weightwise.serialization import ObjectFamily

__all__ = [
    "L1",
    "L1L2",
    "L2",
    "L2SP",
    "GroupLasso",
    "OrthogonalRegularizer",
    "ProximalL1",
    "Regularizer",
    "deserialize",
    "get",
    "group_lasso",
    "l1",
    "l1_l2",
    "l2",
    "orthogonal_regularizer",
    "proximal_l1",
    "serialize",
    "validate_float_arg",
]

def _penalty_input(x: Any, name: str = "x") -> torch.Tensor:
    """The tensor a penalty is computed on, in :func:`weightwise.backend.rule_dtype`."""
    x = ops.argument_tensor(x, name)
    return x.to(backend.rule_dtype(x.dtype))


def _abs_sum(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(torch.abs(x))


def _square_sum(x: torch.Tensor) -> torch.Tensor:
    # |z| ** 2 for complex z; x * x (Keras's own formula, bit for bit) for real x.
    return torch.sum(x.real * x.real + x.imag * x.imag) if x.is_complex() else torch.sum(x * x)


def _real_dtype(x: torch.Tensor) -> torch.dtype:
    return x.real.dtype if x.is_complex() else x.dtype


def check_weight(regularizer: Any, weight: torch.Tensor) -> None:
    """Raise if a built-in ``regularizer`` cannot penalize ``weight`` (checked when it is bound).

    Only :class:`OrthogonalRegularizer` has a condition: a rank-2 weight. Other
    regularizers, custom ones included, take any tensor.

    >>> check_weight(OrthogonalRegularizer(), ops.ones((3,)))
    Traceback (most recent call last):
    ...
    ValueError: Inputs to OrthogonalRegularizer must have rank 2. Received: inputs.shape=(3,)
    """
    if isinstance(regularizer, Regularizer):
        regularizer._check_weight(weight)


class Regularizer:
    """Base class for regularizers.

    Subclasses override ``__call__(x)``, which returns a scalar penalty, and
    ``get_config()``, which returns the constructor arguments; ``from_config``
    then rebuilds the regularizer as ``cls(**config)``. Any plain function of
    one tensor works as a regularizer too.

    >>> class L2Regularizer(Regularizer):
    ...   def __init__(self, l2=0.):
    ...     self.l2 = l2
    ...
    ...   def __call__(self, x):
    ...     return self.l2 * ops.sum(ops.square(x))
    ...
    ...   def get_config(self):
    ...     return {'l2': float(self.l2)}
    ...
    >>> L2Regularizer(l2=0.5)(ops.ones((5, 5)))
    tensor(12.5000)
    >>> L2Regularizer.from_config({'l2': 0.5}).l2
    0.5
    """

    def __call__(self, x: Any) -> torch.Tensor:
        """Return the penalty of ``x``; the base class penalizes nothing."""
        x = _penalty_input(x)
        return torch.zeros((), dtype=_real_dtype(x), device=x.device)

    def _check_weight(self, weight: torch.Tensor) -> None:
        """Raise a ``ValueError`` if this regularizer cannot penalize ``weight``; see :func:`check_weight`."""

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement get_config(); implement it, returning the "
            "constructor arguments, so the regularizer can be saved and cloned."
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Regularizer:
        """Rebuild a regularizer from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        try:
            return factors.rule_repr(self, self.get_config())
        except NotImplementedError:
            return object.__repr__(self)


class L1(Regularizer):
    """L1 penalty: ``loss = l1 * sum(|x|)``.

    Available by string as ``'l1'``, with the default ``l1=0.01``.

    Args:
        l1: non-negative float factor, or a schedule of the step; ``None`` means 0.01.

    >>> L1(0.5)(ops.convert_to_tensor([[1.0, -2.0], [0.0, 3.0]]))
    tensor(3.)
    >>> L1().get_config()
    {'l1': 0.01}
    """

    def __init__(self, l1: Factor | None = 0.01) -> None:
        self.l1 = 0.01 if l1 is None else factors.factor(l1, "l1")

    def __call__(self, x: Any) -> torch.Tensor:
        return factors.factor_value(self.l1, "l1") * _abs_sum(_penalty_input(x))

    def get_config(self) -> dict[str, Any]:
        return {"l1": factors.factor_config(self.l1)}


class L2(Regularizer):
    """L2 penalty: ``loss = l2 * sum(x ** 2)``, with no factor 1/2.

    Available by string as ``'l2'``, with the default ``l2=0.01``.

    The factor may be a schedule of the step (see the module docstring): below, a
    factor that warms up from 0 to 1e-3 over the first 100 steps, at step 50.

    Args:
        l2: non-negative float factor, or a schedule of the step; ``None`` means 0.01.

    >>> L2(0.1)(ops.convert_to_tensor([3.0, 4.0]))
    tensor(2.5000)
    >>> L2(0.1).get_config()
    {'l2': 0.1}
    >>> from weightwise import clock
    >>> from weightwise.optimizers.schedules import PolynomialDecay
    >>> warm = L2(PolynomialDecay(0.0, 100, end_learning_rate=1e-3, power=1.0))
    >>> with clock.at_step(50):
    ...     warm(ops.convert_to_tensor([3.0, 4.0]))
    tensor(0.0125)
    """

    def __init__(self, l2: Factor | None = 0.01) -> None:
        self.l2 = 0.01 if l2 is None else factors.factor(l2, "l2")

    def __call__(self, x: Any) -> torch.Tensor:
        return factors.factor_value(self.l2, "l2") * _square_sum(_penalty_input(x))

    def get_config(self) -> dict[str, Any]:
        return {"l2": factors.factor_config(self.l2)}


class L1L2(Regularizer):
    """L1 and L2 penalties together: ``loss = l1 * sum(|x|) + l2 * sum(x ** 2)``.

    A term whose factor is 0 is skipped. The class defaults are 0 (as in Keras);
    the string id ``'l1_l2'`` and the :func:`l1_l2` shortcut use 0.01 for both,
    as the Keras documentation promises.

    Args:
        l1: non-negative float L1 factor, or a schedule of the step; ``None`` means 0.
        l2: non-negative float L2 factor, or a schedule of the step; ``None`` means 0.

    >>> L1L2(l1=0.5, l2=0.1)(ops.convert_to_tensor([3.0, -4.0]))
    tensor(6.)
    >>> get('l1_l2').get_config()
    {'l1': 0.01, 'l2': 0.01}
    """

    def __init__(self, l1: Factor | None = 0.0, l2: Factor | None = 0.0) -> None:
        self.l1 = 0.0 if l1 is None else factors.factor(l1, "l1")
        self.l2 = 0.0 if l2 is None else factors.factor(l2, "l2")

    def __call__(self, x: Any) -> torch.Tensor:
        x = _penalty_input(x)
        l1, l2 = factors.factor_value(self.l1, "l1"), factors.factor_value(self.l2, "l2")
        penalty = torch.zeros((), dtype=_real_dtype(x), device=x.device)
        if l1 != 0.0:
            penalty = penalty + l1 * _abs_sum(x)
        if l2 != 0.0:
            penalty = penalty + l2 * _square_sum(x)
        return penalty

    def get_config(self) -> dict[str, Any]:
        return {"l1": factors.factor_config(self.l1), "l2": factors.factor_config(self.l2)}


class OrthogonalRegularizer(Regularizer):
    """Penalty that pushes the rows (or columns) of a matrix towards mutual orthogonality.

    With ``N`` the input's rows (``mode="rows"``) or columns (``mode="columns"``),
    each scaled to unit L2 norm, ``P = N Nᵀ`` and ``n`` the number of vectors::

        loss = factor * 0.5 * sum(|P * (1 - I)|) / (n * (n - 1) / 2)

    Each unordered pair appears twice in ``P``, so this is ``factor`` times the
    mean absolute cosine between distinct vectors, and lies in ``[0, factor]``.
    A single vector (or none) has no pairs and gives 0 (Keras gives NaN). A zero
    vector has no direction: it contributes no cosine, and its gradient is 0, not
    Keras's NaN. For complex inputs ``P = N Nᴴ`` and cosines count by magnitude.

    Args:
        factor: non-negative float factor, or a schedule of the step; default 0.01.
        mode: ``"rows"`` or ``"columns"``.

    >>> regularizer = OrthogonalRegularizer(factor=0.01)
    >>> regularizer(ops.eye(3))
    tensor(0.)
    >>> OrthogonalRegularizer(factor=1.0)(ops.ones((2, 2)))
    tensor(1.0000)
    """

    def __init__(self, factor: Factor = 0.01, mode: str = "rows") -> None:
        self.factor = 0.01 if factor is None else factors.factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise ValueError(
                'Invalid value for argument `mode`. Expected one of {"rows", "columns"}. '
                f"Received: mode={mode}"
            )
        self.mode = mode

    def _check_weight(self, weight: torch.Tensor) -> None:
        if weight.dim() != 2:
            raise ValueError(
                f"Inputs to OrthogonalRegularizer must have rank 2. Received: inputs.shape={tuple(weight.shape)}"
            )

    def __call__(self, inputs: Any) -> torch.Tensor:
        x = _penalty_input(inputs, "inputs")
        self._check_weight(x)
        vectors = x if self.mode == "rows" else x.T
        size = vectors.shape[0]
        if size < 2:
            # No pairs: 0, as a sum over no entries, so it stays in the autograd graph of ``inputs``.
            return torch.abs(x.reshape(-1)[:0]).sum()
        unit = ops.normalize(vectors, axis=1)
        product = torch.abs(unit @ unit.conj().T if unit.is_complex() else unit @ unit.T)
        off_diagonal = product * ops._like(1.0 - torch.eye(size, dtype=product.dtype, device=x.device), product)
        num_pairs = size * (size - 1.0) / 2.0
        return factors.factor_value(self.factor, "factor") * 0.5 * torch.sum(off_diagonal) / num_pairs

    def get_config(self) -> dict[str, Any]:
        return {"factor": factors.factor_config(self.factor), "mode": self.mode}


class L2SP(Regularizer):
    """Decay toward reference weights (L2-SP): ``loss = l2 * sum((w - w0) ** 2)``.

    The penalty of Li, Grandvalet and Davoine, "Explicit Inductive Bias for Transfer
    Learning with Convolutional Networks" (ICML 2018), for fine-tuning a pretrained model:
    rather than toward zero, as :class:`L2` does, each weight ``w`` is pulled toward its
    reference ``w0``, by the gradient ``2 * l2 * (w - w0)``.

    ``w0`` is captured when the rule is bound to a weight (a detached copy of the weight
    at that moment), or given as ``reference`` (a tensor or array of the weight's shape;
    another shape is a ``ValueError`` at bind time naming the parameter, and nothing is
    bound). One instance bound to several weights (``regularize(model, {"*.weight":
    L2SP(0.01)})``, or given to several layers) gives each weight its own reference: what
    is stored for each weight is a copy holding that weight's ``w0``.

    The reference is saved with the model's weights. It is a persistent buffer of the
    module that owns the weight, named ``<weight>_l2sp_reference`` (``weight_l2sp_reference``
    on ``torch.nn.Linear``, ``kernel_l2sp_reference`` on ``Dense``), so ``state_dict()``,
    ``load_state_dict``, ``.to(device)``, ``copy.deepcopy`` and pickling carry it; the
    ``.keras``, ``.weights.h5`` and ``.h5`` files store it after the layer's own weights
    (files of models without L2-SP are unchanged; a ``.keras`` file holding an L2SP does
    not load in Keras, which has no such class). A state dict or weights file saved
    without it (pretrained weights from a model without L2-SP, or from Keras) loads with
    the reference set to the loaded weights; weights saved with it load into a model
    without L2-SP, leaving it unread (``.weights.h5``). The reference does not follow
    ``get_weights``/``set_weights``, so ``EarlyStopping(restore_best_weights=True)`` leaves
    it in place. Unbinding the rule removes the buffer.

    ``reference`` is not part of the config: it lives with the weights, and a rule rebuilt
    from its config captures its reference when it is bound again (then loading the
    weights restores the saved one).

    Args:
        l2: non-negative float factor, or a schedule of the training step
            (:mod:`weightwise.factors`); ``None`` means 0.01.
        reference: the weights to decay toward, or ``None`` to capture them at bind time.

    >>> import torch
    >>> from weightwise import regularize, regularization_loss
    >>> model = torch.nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(0.5)
    >>> handle = regularize(model, {"weight": L2SP(0.5)})  # captures w0 = [[0.5, 0.5]]
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.5, -1.5]]))
    >>> regularization_loss(model)
    tensor(2.5000, grad_fn=<ViewBackward0>)
    >>> sorted(model.state_dict())
    ['bias', 'weight', 'weight_l2sp_reference']
    >>> L2SP(0.1, reference=[1.0, 2.0])(torch.tensor([2.0, 0.0]))
    tensor(0.5000)
    """

    def __init__(self, l2: Any = 0.01, reference: Any = None) -> None:
        self.l2 = 0.01 if l2 is None else factors.factor(l2, "l2")
        self._given = None if reference is None else _reference_tensor(reference)
        # Set on the copy that bound_to stores for one weight: the owning module and the weight's name.
        self._owner: torch.nn.Module | None = None
        self._slot = ""
        self._kept: torch.Tensor | None = None  # the reference while the copy is out of its slot

    @property
    def reference(self) -> torch.Tensor | None:
        """The weights decayed toward: the bound weight's buffer, or the ``reference`` given (else ``None``)."""
        if self._owner is not None:
            live = self._owner._buffers.get(self._buffer_name())
            if live is not None:
                return live
            return self._kept
        return self._given

    def _buffer_name(self) -> str:
        return f"{self._slot}_l2sp_reference"

    def _check_weight(self, weight: torch.Tensor) -> None:
        if self._given is not None:
            _check_reference(self._given, weight, "the weight")

    def bound_to(self, module: torch.nn.Module, name: str, param: torch.nn.Parameter) -> L2SP:
        """The rule stored for ``module``'s weight ``name``: a copy holding that weight's reference.

        Called by :func:`weightwise.binding.bind`. The reference (``reference``, or a
        detached copy of ``param``) becomes the persistent buffer ``<name>_l2sp_reference``
        of ``module``. A copy put back into the slot it left (a ``Handle.remove()`` that
        restores it) keeps the reference it had.

        >>> import torch
        >>> from weightwise import binding
        >>> linear = torch.nn.Linear(2, 1)
        >>> binding.bind(linear, "weight", regularizer=L2SP())
        >>> bool((linear.weight_l2sp_reference == linear.weight).all())
        True
        """
        buffer = f"{name}_l2sp_reference"
        if buffer not in module._buffers and hasattr(module, buffer):
            raise ValueError(
                f"L2SP cannot keep the reference of weight {name!r} of {type(module).__name__}: the module already "
                f"has an attribute {buffer!r}."
            )
        if self._owner is module and self._slot == name and self._kept is not None:
            rule, value = self, self._kept
        else:
            rule = L2SP(self.l2)
            rule._given = self._given
            source = param if self._given is None else self._given
            value = source.detach().to(device=param.device, dtype=param.dtype, copy=True)
        rule._owner, rule._slot, rule._kept = module, name, None
        module.register_buffer(buffer, value, persistent=True)
        module.register_load_state_dict_pre_hook(rule._reference_from_weight)
        return rule

    def unbound_from(self, module: torch.nn.Module, name: str) -> None:
        """Remove the reference buffer from ``module`` (kept in this copy, should it be bound there again).

        >>> import torch
        >>> from weightwise import binding
        >>> linear = torch.nn.Linear(2, 1)
        >>> binding.bind(linear, "weight", regularizer=L2SP())
        >>> binding.unbind(linear, "weight")
        >>> hasattr(linear, "weight_l2sp_reference")
        False
        """
        if self._owner is not module or self._slot != name:
            return
        self._kept = module._buffers.pop(self._buffer_name(), None)
        hooks = module._load_state_dict_pre_hooks
        for key in [k for k, hook in hooks.items() if getattr(hook, "hook", None) == self._reference_from_weight]:
            del hooks[key]

    def _reference_from_weight(self, module: torch.nn.Module, state_dict: dict[str, Any], prefix: str,
                               *args: Any) -> None:
        # A state dict saved without the reference (pretrained weights) sets it to the weights loaded.
        key, weight = prefix + self._buffer_name(), prefix + self._slot
        if key not in state_dict and isinstance(state_dict.get(weight), torch.Tensor):
            state_dict[key] = state_dict[weight].detach().clone()

    def saved_tensors(self) -> list[tuple[str, torch.Tensor]]:
        """The tensors saved with the bound weight in Keras-style files: ``(buffer name, reference)``.

        >>> L2SP().saved_tensors()
        []
        """
        live = self._owner._buffers.get(self._buffer_name()) if self._owner is not None else None
        return [] if live is None else [(self._buffer_name(), live)]

    def __call__(self, x: Any) -> torch.Tensor:
        x = _penalty_input(x)
        reference = self.reference
        if reference is None:
            raise ValueError(
                f"{self!r} has no reference weights to decay toward: bind it to a weight (it captures the weight "
                "then), or give `reference`."
            )
        _check_reference(reference, x, "the penalized tensor")
        # A reference captured before the weight was sharded meets the weight's shards (no communication).
        reference = ops._like(reference.to(dtype=x.dtype), x)
        return factors.factor_value(self.l2, "l2") * _square_sum(x - reference.to(device=x.device))

    def get_config(self) -> dict[str, Any]:
        return {"l2": factors.factor_config(self.l2)}


def _check_reference(reference: torch.Tensor, weight: torch.Tensor, what: str) -> None:
    if tuple(reference.shape) != tuple(weight.shape):
        raise ValueError(f"L2SP: the reference has shape {tuple(reference.shape)}, and {what} has shape "
                         f"{tuple(weight.shape)}; they must be equal.")
    if reference.is_complex() and not weight.is_complex():
        raise ValueError(f"L2SP: the reference is complex, and {what} is real.")


def _reference_tensor(reference: Any) -> torch.Tensor:
    """``reference`` as a detached tensor of its own (numbers only), at the precision given."""
    if isinstance(reference, (list, tuple)):
        # Python floats as float64, not floatx: the reference is cast to the weight's dtype at bind time.
        reference = np.asarray(reference)
    tensor = ops.argument_tensor(reference, "reference")
    if tensor.dtype == torch.bool:
        raise TypeError(f"Invalid value for argument `reference`: expected numbers, not bools. "
                        f"Received: reference={echo(reference)}")
    return tensor.detach().clone()


# -- proximal regularizers: exact zeros ----------------------------------------------------------


def _is_proximal(regularizer: Any) -> bool:
    """Whether ``regularizer`` acts by a proximal step after each update rather than by its gradient."""
    return isinstance(regularizer, ProximalL1) or (isinstance(regularizer, GroupLasso) and regularizer.proximal)


def _check_activity(regularizer: Any) -> None:
    """Refuse a proximal regularizer as an activity regularizer: there it would do nothing."""
    if _is_proximal(regularizer):
        raise ValueError(
            f"Invalid activity regularizer: {regularizer!r} acts on weights, by a proximal step after each "
            "optimizer update; on a layer's output its penalty has no gradient and would change nothing. "
            f"Use L1 (or GroupLasso(proximal=False)) for activity. Received: regularizer={regularizer!r}"
        )


def _learning_rate(lr: Any) -> float:
    # A torch optimizer may hold its learning rate as a one-element tensor.
    if isinstance(lr, torch.Tensor) and lr.numel() == 1 and lr.is_floating_point():
        return real(lr.item(), "lr", low=0)
    return real(lr, "lr", low=0)


def _shrink(x: torch.Tensor, norms: torch.Tensor, threshold: float) -> torch.Tensor:
    """Block soft-thresholding: ``x * max(0, 1 - threshold / norms)``, with norms broadcast over ``x``.

    A group whose norm is at most ``threshold`` becomes exactly ``+0.0`` (a zero group stays
    zero); a group holding NaN becomes all NaN, so a diverged weight stays visible (as the
    norm constraints do); an infinite norm keeps its group as it is.
    """
    # norms * 0 is 0 for a finite norm and NaN for a NaN one.
    scale = torch.where(norms > threshold, 1.0 - threshold / norms, norms * 0.0)
    return x * scale + 0.0  # -0.0 becomes +0.0


class ProximalL1(Regularizer):
    """L1 by proximal steps: weights that reach exactly zero.

    Its value is the L1 penalty ``l1 * sum(|x|)``, so it shows in ``layer.losses``, the
    logs and :func:`~weightwise.binding.regularization_loss`, but it has no gradient (the
    value is computed without an autograd graph). Instead, after each optimizer update
    with learning rate ``lr``, each bound weight is soft-thresholded::

        w <- sign(w) * max(|w| - lr * l1, 0)

    (computed as ``w - clip(w, -lr * l1, lr * l1)``, the same numbers, with ``+0.0`` for the
    zeros). This is the proximal gradient (ISTA) step of the L1 penalty: entries the data
    does not hold away from zero land on exactly ``0.0``, which plain :class:`L1` through
    the gradient never does. Complex weights shrink in magnitude, keeping their phase.

    The step runs in ``fit``, in ``Optimizer.apply``/``apply_gradients``, after every
    ``step()`` of a torch optimizer given to ``regularize(..., optimizer=opt)``, and
    wherever :func:`~weightwise.binding.apply_proximal` is called. ``lr`` is the learning
    rate of the weight's parameter group for the update just taken. Available by string
    as ``'proximal_l1'``.

    Args:
        l1: non-negative float factor, or a schedule of the step (see :mod:`weightwise.factors`);
            ``None`` means 0.01.

    >>> regularizer = ProximalL1(0.5)
    >>> w = ops.convert_to_tensor([0.3, -2.0, 1.0])
    >>> regularizer(w)
    tensor(1.6500)
    >>> regularizer.prox(w, lr=1.0)
    tensor([ 0.0000, -1.5000,  0.5000])
    """

    def __init__(self, l1: Any = 0.01) -> None:
        self.l1 = 0.01 if l1 is None else factors.factor(l1, "l1")

    def __call__(self, x: Any) -> torch.Tensor:
        with torch.no_grad():
            return factors.factor_value(self.l1, "l1") * _abs_sum(_penalty_input(x))

    def _check_weight(self, weight: torch.Tensor) -> None:
        constraints._check_float(weight, type(self).__name__)

    def prox(self, w: Any, lr: float) -> torch.Tensor:
        """The weight after the proximal step of an update with learning rate ``lr`` (``w`` is not changed).

        >>> ProximalL1(0.1).prox(ops.convert_to_tensor([0.05, -0.3]), lr=1.0)
        tensor([ 0.0000, -0.2000])
        """
        x = ops.argument_tensor(w, "w")
        self._check_weight(x)
        threshold = _learning_rate(lr) * factors.factor_value(self.l1, "l1")
        wide = x.to(backend.rule_dtype(x.dtype))
        if wide.is_complex():
            out = _shrink(wide, torch.abs(wide), threshold)
        else:
            out = wide - torch.clamp(wide, -threshold, threshold)
        return out.to(x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"l1": factors.factor_config(self.l1)}


class GroupLasso(Regularizer):
    """Group lasso: a penalty on the norm of each group of weights, which zeroes whole groups.

    The groups are the vectors a norm over ``axis`` runs along, as for the norm constraints
    (:class:`~weightwise.constraints.MaxNorm`): on a Dense kernel ``(input_dim, units)``,
    ``axis=0`` (the default) makes one group per output unit; on a Conv2D kernel
    ``(rows, cols, in, out)``, ``axis=[0, 1, 2]`` one group per filter; ``axis=None`` makes
    the whole weight one group and ``axis=[]`` each entry its own. With ``|g|`` the number
    of entries in a group::

        loss = factor * sum_g sqrt(|g|) * ||w_g||_2

    With ``proximal=True`` (the default) the value is logged but has no gradient; after
    each optimizer update with learning rate ``lr``, each group is block soft-thresholded::

        w_g <- w_g * max(0, 1 - lr * factor * sqrt(|g|) / ||w_g||_2)

    so a group whose norm falls below ``lr * factor * sqrt(|g|)`` becomes exactly zero (a
    zero group stays zero); it runs where :class:`ProximalL1`'s step runs. With
    ``proximal=False`` it is an ordinary penalty trained through its gradient
    ``factor * sqrt(|g|) * w_g / ||w_g||_2`` (0 for a zero group, never NaN), which makes
    groups small but not exactly zero.

    Bound by :func:`weightwise.regularize` to a plain torch layer with ``axis`` left at its
    default, the groups are the output units of the torch layout (``axis=1`` for
    ``nn.Linear``, ``[1, 2, 3]`` for ``nn.Conv2d``; see :func:`weightwise.interop.per_unit_axis`).
    Available by string as ``'group_lasso'``.

    Args:
        factor: non-negative float factor, or a schedule of the step (see :mod:`weightwise.factors`);
            default 0.01.
        axis: the axis or axes each group's norm runs over: an int, a list of ints, or ``None``.
        proximal: ``True`` for proximal steps (exact zeros), ``False`` for the gradient.

    >>> kernel = ops.convert_to_tensor([[3.0, 0.1], [4.0, 0.0]])  # (input_dim, units)
    >>> regularizer = GroupLasso(factor=0.5)
    >>> regularizer(kernel)  # 0.5 * sqrt(2) * (5.0 + 0.1)
    tensor(3.6062)
    >>> regularizer.prox(kernel, lr=0.2)  # the second unit is zeroed
    tensor([[2.9151, 0.0000],
            [3.8869, 0.0000]])
    """

    def __init__(self, factor: Any = 0.01, axis: Any = constraints.DEFAULT_AXIS, proximal: bool = True) -> None:
        self.factor = 0.01 if factor is None else factors.factor(factor, "factor")
        self.axis = constraints._validate_axis(axis)
        self.proximal = flag(proximal, "proximal")

    def _check_weight(self, weight: torch.Tensor) -> None:
        constraints._check_float(weight, type(self).__name__)
        constraints._check_axis_fits(self.axis, weight, type(self).__name__)

    def _norms(self, x: torch.Tensor, keepdims: bool) -> tuple[torch.Tensor, float]:
        """The norm of each group of ``x``, and ``sqrt(|g|)``."""
        if self.axis == []:
            return torch.abs(x), 1.0
        dims = range(x.dim()) if self.axis is None else [self.axis] if isinstance(self.axis, int) else self.axis
        size = math.prod(x.shape[d] for d in dims)
        return ops.norm(x, axis=self.axis, keepdims=keepdims), math.sqrt(size)

    def __call__(self, x: Any) -> torch.Tensor:
        x = _penalty_input(x)
        constraints._check_axis_fits(self.axis, x, type(self).__name__)
        with torch.no_grad() if self.proximal else contextlib.nullcontext():
            norms, root_size = self._norms(x, keepdims=False)
            return (factors.factor_value(self.factor, "factor") * root_size) * torch.sum(norms)

    def prox(self, w: Any, lr: float) -> torch.Tensor:
        """The weight after the proximal step of an update with learning rate ``lr`` (``w`` is not changed).

        >>> GroupLasso(0.5, axis=1).prox(ops.convert_to_tensor([[0.3, 0.4], [3.0, 4.0]]), lr=1.0)
        tensor([[0.0000, 0.0000],
                [2.5757, 3.4343]])
        """
        x = ops.argument_tensor(w, "w")
        self._check_weight(x)
        rate = _learning_rate(lr)
        wide = x.to(backend.rule_dtype(x.dtype))
        norms, root_size = self._norms(wide, keepdims=True)
        return _shrink(wide, norms, rate * factors.factor_value(self.factor, "factor") * root_size).to(x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"factor": factors.factor_config(self.factor), "axis": self.axis, "proximal": self.proximal}


l1 = L1
l2 = L2
orthogonal_regularizer = OrthogonalRegularizer
proximal_l1 = ProximalL1
group_lasso = GroupLasso


def l1_l2(l1: Factor | None = 0.01, l2: Factor | None = 0.01) -> L1L2:
    """Return an :class:`L1L2` regularizer, with both factors defaulting to 0.01.

    This follows the Keras documentation (and tf.keras), which promises 0.01 for
    ``'l1_l2'``; Keras 3 itself aliases the class, whose defaults are 0.

    >>> l1_l2().get_config()
    {'l1': 0.01, 'l2': 0.01}
    >>> l1_l2(l1=1e-5, l2=1e-4).get_config()
    {'l1': 1e-05, 'l2': 0.0001}
    """
    return L1L2(l1=l1, l2=l2)


_FAMILY = ObjectFamily(
    "regularizer",
    "keras.regularizers",
    [Regularizer, L1, L2, L1L2, OrthogonalRegularizer, L2SP, ProximalL1, GroupLasso],
    aliases={"l1_l2": l1_l2},
)


def validate_float_arg(value: Any, name: str) -> float:
    """``value`` as a Python float if it is a finite number ``>= 0``, for a custom regularizer's factor.

    Keras's check of the same name (``keras.src.regularizers.regularizers``), with the
    factor rule of the built-ins here: negative, NaN, infinite and non-numeric values
    raise a ``ValueError`` that names ``name``, and so do bools (Keras accepts ``True``).

    >>> validate_float_arg(1, "strength")
    1.0
    >>> validate_float_arg(-1, "strength")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `strength`: expected a non-negative float. Received: strength=-1
    """
    try:
        return real(value, name, low=0)
    except ValueError:
        # Keras's words, which code written against Keras looks for.
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a non-negative float. Received: {name}={echo(value)}"
        ) from None


def serialize(regularizer: Any) -> dict[str, Any] | None:
    """Return the Keras 3 config dict of a regularizer.

    >>> serialize(L2(0.1))
    {'module': 'keras.regularizers', 'class_name': 'L2', 'config': {'l2': 0.1}, 'registered_name': None}
    """
    return _FAMILY.serialize(regularizer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build a regularizer from a Keras 3 or tf.keras 2 config, or from a string id.

    >>> deserialize({"class_name": "L1", "config": {"l1": 0.3}})
    L1(l1=0.3)
    >>> deserialize("orthogonal_regularizer")
    OrthogonalRegularizer(factor=0.01, mode='rows')
    """
    return _FAMILY.deserialize(config, custom_objects)


def get(identifier: Any) -> Any:
    """Resolve a regularizer identifier: ``None``, a string id, a config dict or a callable.

    Strings are class names, their snake_case, registered names, or ``'l1_l2'``.
    Callables (regularizer instances, plain functions) pass through; a class
    deriving from :class:`Regularizer` is instantiated with its defaults. Anything
    else raises a ``ValueError``: another family's object (a constraint, a layer),
    any other class, or a name registered for another family's class.

    >>> get('l1')
    L1(l1=0.01)
    >>> get(None) is None
    True
    >>> from weightwise.constraints import NonNeg
    >>> get(NonNeg())
    Traceback (most recent call last):
    ...
    ValueError: Could not interpret regularizer identifier: NonNeg(): it is a constraint, not a regularizer.
    >>> get(42)
    Traceback (most recent call last):
    ...
    ValueError: Could not interpret regularizer identifier: 42. Expected None, a string id, a config dict, or a callable such as a regularizer instance.
    """
    return _FAMILY.get(identifier)
