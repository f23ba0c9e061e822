"""The fast engine behind the binding seam: grouped penalties and batched projections.

Naively every regularized weight costs its own chain of small ops, both forwards and
backwards, and every constrained weight its own projection. This engine works in
groups instead:

- **Penalties.** Built-in ``L1``/``L2``/``L1L2`` penalties are grouped by factor. For a
  training step their gradient is added directly, ``2 * l2 * w`` and ``l1 * sign(w)``
  (exactly the gradients of ``l2 * sum(w**2)`` and ``l1 * sum(|w|)``), with
  ``torch._foreach_*`` ops, so they need no autograd graph at all; their value, for the
  logged loss, is computed without one. Other regularizers go through autograd as before.
- **Projections.** Built-in norm constraints are applied to all same-shape weights with
  the same settings at once, stacked, and written back with ``torch._foreach_copy_``;
  ``NonNeg`` is two in-place foreach ops.
- **Proximal steps.** ``ProximalL1`` and ``GroupLasso(proximal=True)`` have a value but no
  gradient; after each update :meth:`Plan.proximal_step` soft-thresholds their weights,
  all ``ProximalL1`` weights with one threshold together in ``torch._foreach_*`` ops.

- **Sharded weights.** Under FSDP2 (``fully_shard``) a weight is a DTensor holding one shard
  per rank. A foreach op takes one tensor layout, so each group is split by layout (plain
  tensors, or DTensors of one device mesh and placements) when the plan is built. Penalties
  are the full penalty of each logical weight, handed back as ordinary tensors (made whole
  once per device mesh); projections act on the full logical weight with DTensor ops, so a
  norm over the sharded dimension is reduced across the ranks, and each rank writes its own
  shard. Nothing reads a shard alone (``to_local``): that norm would be silently wrong.

- **Records.** For modules switched on with :func:`track`, each projection also records
  what it found (:func:`last_projection`): how many units were outside the bound and the
  largest unit norm, as device tensors, so the step never waits for them. Nothing is
  recorded, and no kernel added, when no planned weight is tracked.

The plan (which weights go in which group) is cached and rebuilt only when a binding
changes. Results equal the one-weight-at-a-time path up to float rounding, which
the tests check, for every dtype the rules take: half precision is reduced in
``float32`` and gives a ``float32`` penalty, as the direct call does (its gradients
land in the parameter's own dtype), and complex weights count by magnitude ``|z|``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from weightwise import backend, binding, clock, constraints, factors, ops, regularizers
from weightwise.arguments import echo, flag
from weightwise.factors import factor_value

__all__ = ["Plan", "ProjectionStats", "call_loss", "last_projection", "plan_for", "track"]


@dataclass
class _Slot:
    owner: torch.nn.Module
    attr: str
    param: torch.nn.Parameter
    name: str = ""
    layout: Any = None  # ops._layout(param): None for a plain tensor, (mesh, placements) for a DTensor

    def alive(self) -> bool:
        return self.owner._parameters.get(self.attr) is self.param


class _Group(list):
    """The slots of one penalty group, with ``parts``: the same slots split by tensor layout
    (plain tensors, or DTensors of one device mesh and placements), since one ``torch._foreach_*``
    op takes one layout. A plain model's group is its own single part."""

    parts: list[list[_Slot]]


def _split(slots: list[_Slot]) -> list[list[_Slot]]:
    by_layout: dict[Any, list[_Slot]] = {}
    for s in slots:
        by_layout.setdefault(s.layout, []).append(s)
    return [slots] if len(by_layout) == 1 else list(by_layout.values())


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    """The sum of penalty terms as a plain tensor: DTensor terms (from sharded weights) are summed per
    device mesh and made whole once each (one collective per mesh), the rest added as they are."""
    plain: list[torch.Tensor] = []
    sharded: dict[Any, list[torch.Tensor]] = {}
    for term in terms:
        layout = ops._layout(term)
        if layout is None:
            plain.append(term)
        else:
            sharded.setdefault(layout[0], []).append(term)
    plain += [binding._sum(group).full_tensor() for group in sharded.values()]
    return binding._sum(plain)


@dataclass
class Plan:
    """Bound weights of one module tree, grouped for the fast paths.

    >>> import torch
    >>> from weightwise import binding
    >>> linear = torch.nn.Linear(2, 1)
    >>> binding.bind(linear, "weight", regularizer="l2", constraint="non_neg")
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[3.0, -4.0]]))
    >>> plan = plan_for(linear)
    >>> plan.grouped_penalty_value()
    tensor(0.2500)
    >>> linear.weight.grad = torch.zeros(1, 2)
    >>> plan.add_penalty_gradients()
    >>> linear.weight.grad
    tensor([[ 0.0600, -0.0800]])
    >>> plan.project()
    >>> linear.weight.data
    tensor([[3., 0.]])
    """

    l1: dict[float, _Group] = field(default_factory=dict)
    l2: dict[float, _Group] = field(default_factory=dict)
    other_penalties: list[tuple[_Slot, Callable[[torch.Tensor], torch.Tensor]]] = field(default_factory=list)
    projections: dict[Any, tuple[Any, list[_Slot]]] = field(default_factory=dict)
    other_projections: list[tuple[_Slot, Callable[[torch.Tensor], torch.Tensor], str]] = field(default_factory=list)
    # Proximal regularizers (also in other_penalties, which gives their value without a gradient).
    proximal: list[tuple[_Slot, Any]] = field(default_factory=list)
    version: int = -1
    tracked: bool = False  # whether some planned weight's owner records its projections (see track())

    def alive(self) -> bool:
        """Whether every planned parameter is still the one its module holds."""
        slots = [s for group in (*self.l1.values(), *self.l2.values()) for s in group]
        slots += [s for s, _ in self.other_penalties] + [s for _, group in self.projections.values() for s in group]
        slots += [s for s, _, _ in self.other_projections]
        return all(s.alive() for s in slots)

    # -- penalties ---------------------------------------------------------------------------
    def grouped_penalty_value(self) -> torch.Tensor:
        """The value of the grouped L1/L2 penalties, computed without an autograd graph.

        Always a plain tensor: the penalty of sharded weights (DTensors) is their full penalty,
        the same on every rank.
        """
        terms = []
        with torch.no_grad():
            for factor, part in _parts(self.l1):
                params = _trainable(part)
                if params:
                    terms.append(factors.factor_value(factor, "l1") * _norm_sum(params, 1))
            for factor, part in _parts(self.l2):
                params = _trainable(part)
                if params:
                    # No graph here, so the squared 2-norm (no copy of the weights) is safe at w = 0.
                    terms.append(factors.factor_value(factor, "l2") * _norm_sum(params, 2, squared=True))
            return _total(terms)

    def _other_penalties(self) -> list[torch.Tensor]:
        return [binding.checked_penalty(_apply(reg, s), reg, f"parameter {s.name!r}")
                for s, reg in self.other_penalties if s.param.requires_grad]

    def autograd_penalty(self) -> torch.Tensor:
        """The penalties that need autograd (custom regularizers); a zero scalar when there are none.
        A plain tensor, also for sharded weights."""
        return _total(self._other_penalties())

    def add_penalty_gradients(self, scale: float = 1.0) -> None:
        """Add the exact gradients of the grouped L1/L2 penalties to ``.grad`` (times ``scale``).

        The gradient of a sharded weight (a DTensor) is its own shard of the full penalty's
        gradient, added to its sharded ``.grad`` (FSDP2 gives it the weight's placements).
        """
        with torch.no_grad():
            for groups, sign, name in ((self.l2, False, "l2"), (self.l1, True, "l1")):
                for factor, part in _parts(groups):
                    params = _trainable(part)
                    if not params:
                        continue
                    factor = factors.factor_value(factor, name)  # a schedule's value at this step
                    for p in params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                    grads = [p.grad for p in params]
                    if sign:
                        # The gradient of |z| is z / |z| (torch.sgn); for real weights that is sign(w).
                        signs = [torch.sgn(p) for p in params] if any(p.is_complex() for p in params) \
                            else torch._foreach_sign(params)
                        torch._foreach_add_(grads, signs, alpha=factor * scale)
                    else:
                        torch._foreach_add_(grads, params, alpha=2.0 * factor * scale)

    def differentiable_penalty(self) -> torch.Tensor:
        """The weight penalty as a differentiable scalar: one concatenation per group instead of a chain per weight.

        A plain tensor, also for sharded weights (DTensors): their full penalty, whose gradient
        reaches each rank's shards (``DTensor.full_tensor`` is differentiable).
        """
        terms = []
        for groups, square, name in ((self.l1, False, "l1"), (self.l2, True, "l2")):
            for factor, part in _parts(groups):
                params = _trainable(part)
                if params:
                    factor = factors.factor_value(factor, name)  # a schedule's value at this step
                    # Half precision in float32, as the direct call computes: a float16 square or
                    # sum overflows past 65504. The cast is differentiable; the gradient comes back
                    # in the parameter's dtype.
                    values = [p if p.dtype in _NATIVE else p.to(backend.rule_dtype(p.dtype)) for p in params]
                    if square:
                        # sum(|w|**2) as the L1 norm of w*w (of the real view, for complex w): its
                        # gradient 2w is exact, also at w = 0.
                        values = [torch.view_as_real(v) if v.is_complex() else v for v in values]
                        values = torch._foreach_mul(values, values)
                    terms.append(factor * torch.stack(_l1_norms(values)).sum())
        return _total(terms + self._other_penalties())

    # -- projections ---------------------------------------------------------------------------
    def project(self, only_with_grad: bool = False, among: Container[int] | None = None) -> None:
        """Apply every bound constraint in place; same-shape built-in ones in one batched projection.

        A sharded weight (a DTensor) is projected as the full logical weight: norms over its
        sharded dimension are reduced across ranks (DTensor ops), and each rank writes its shard.
        """

        def wanted(s: _Slot) -> bool:
            return (not only_with_grad or s.param.grad is not None) and (among is None or id(s.param) in among)

        updates: list[tuple[list[torch.Tensor], list[torch.Tensor], bool]] = []
        with torch.no_grad():
            for batched, slots in self.projections.values():
                params = [s.param for s in slots if wanted(s)]
                if not params:
                    continue
                sharded = slots[0].layout is not None  # a group shares one layout (it is in the key)
                if batched is None:  # NonNeg
                    if self.tracked:
                        _record_non_neg([s for s in slots if wanted(s)])
                    updates.append((params, [], sharded))
                    continue
                # A lone weight goes in as a view, without the copy that stacking makes.
                stacked = params[0].unsqueeze(0) if len(params) == 1 else torch.stack(params)
                if self.tracked:
                    _record_norms(batched, batched._norms(stacked), [s for s in slots if wanted(s)])
                projected = batched(stacked)
                updates.append((params, list(projected.unbind(0)), sharded))
            for slot, constraint, name in self.other_projections:
                if not wanted(slot):
                    continue
                projected = _apply(constraint, slot)
                if not isinstance(projected, torch.Tensor) or projected.shape != slot.param.shape:
                    shape = getattr(projected, "shape", type(projected).__name__)
                    raise ValueError(
                        f"Constraint {constraint!r} on parameter {name!r} returned {shape}, "
                        f"but the parameter has shape {tuple(slot.param.shape)}; no weight was changed."
                    )
                if slot.layout is not None and isinstance(projected, torch.Tensor) \
                        and projected.shape == slot.param.shape:
                    # A custom constraint that computed the whole projection as an ordinary tensor.
                    projected = ops._like(projected, slot.param)
                if self.tracked:
                    _record_other(slot, constraint, projected)
                updates.append(([slot.param], [projected], slot.layout is not None))
            for params, values, sharded in updates:
                if values:
                    _copy(params, values, sharded)
                else:
                    torch._foreach_clamp_min_(params, 0.0)
                    torch._foreach_add_(params, 0.0)  # -0.0 becomes +0.0, as NonNeg promises

    # -- proximal steps --------------------------------------------------------------------------
    def proximal_step(self, lr: Any, only_with_grad: bool = False, among: Container[int] | None = None) -> None:
        """Take the proximal step of every bound proximal regularizer, in place, after an update.

        ``lr`` is the learning rate of that update: a float for every weight, or the optimizer
        that took it (a ``torch.optim.Optimizer``, or a weightwise optimizer), whose parameter
        groups give each weight its own rate; weights it does not hold are left alone, and so
        are frozen ones, those without a gradient (``only_with_grad``) and, with ``among`` (a
        set of ``id(param)``), those outside it. Factors are read at :func:`weightwise.clock.step`.

        Given an optimizer, a weight takes at most one proximal step per step of it, however
        many paths ask (``fit`` after a followed torch optimizer's own hook, overlapping
        module trees). ``ProximalL1`` on float32/float64 weights is three ``torch._foreach_*``
        ops per threshold; the other steps are each regularizer's own ``prox``, the same numbers.
        """
        rates, optimizer = _learning_rates(lr)
        if not self.proximal:
            return
        done = _stepped_since_last_step(optimizer) if optimizer is not None else set()
        soft: dict[tuple[float, torch.dtype, Any], list[torch.Tensor]] = {}
        steps: list[tuple[torch.Tensor, Any, float, bool]] = []
        for slot, reg in self.proximal:
            p = slot.param
            rate = rates if isinstance(rates, float) else rates.get(id(p))
            if rate is None or id(p) in done or not p.requires_grad or (only_with_grad and p.grad is None) \
                    or (among is not None and id(p) not in among):
                continue
            if isinstance(reg, regularizers.ProximalL1) and p.dtype in (torch.float32, torch.float64):
                threshold = rate * factor_value(reg.l1, "l1")
                if threshold:
                    soft.setdefault((threshold, p.dtype, slot.layout), []).append(p)
            else:
                steps.append((p, reg, rate, slot.layout is not None))
        with torch.no_grad():
            # Everything is computed (and every factor checked) before the first weight changes.
            values = [reg.prox(p, rate) for p, reg, rate, _ in steps]
            for (threshold, _, _), params in soft.items():
                # w - clip(w, -t, t) is sign(w) * max(|w| - t, 0), with +0.0 where it is zero.
                clipped = torch._foreach_clamp_max(params, threshold)
                torch._foreach_clamp_min_(clipped, -threshold)
                torch._foreach_sub_(params, clipped)
            for sharded in (False, True):
                chosen = [(p, value) for (p, _, _, on), value in zip(steps, values) if on is sharded]
                if chosen:
                    _copy([p for p, _ in chosen], [value for _, value in chosen], sharded)
        if optimizer is not None:
            done.update(id(p) for params in soft.values() for p in params)
            done.update(id(p) for p, _, _, _ in steps)


def _learning_rates(lr: Any) -> tuple[float | dict[int, float], torch.optim.Optimizer | None]:
    """A proximal step's learning rate (one float, or each parameter's group rate by ``id``) and its optimizer."""
    optimizer = getattr(lr, "torch_optimizer", lr)  # a weightwise optimizer updates through its torch one
    if optimizer is None:
        return {}, None  # a weightwise optimizer built on no parameters
    if isinstance(optimizer, torch.optim.Optimizer):
        return {id(p): regularizers._learning_rate(group["lr"]) for group in optimizer.param_groups
                for p in group["params"]}, optimizer
    try:
        return regularizers._learning_rate(lr), None
    except ValueError:
        raise ValueError(
            "Invalid value for argument `lr`: expected a learning rate (a finite float >= 0) or the optimizer "
            f"that took the step (a torch.optim.Optimizer or a weightwise optimizer). Received: lr={echo(lr)}"
        ) from None


# Per torch optimizer, the weights that took their proximal step since its last step began.
_STEPPED: weakref.WeakKeyDictionary[torch.optim.Optimizer, set[int]] = weakref.WeakKeyDictionary()


def _stepped_since_last_step(optimizer: torch.optim.Optimizer) -> set[int]:
    stepped = _STEPPED.get(optimizer)
    if stepped is None:
        stepped = _STEPPED[optimizer] = set()
        # Cleared as each step begins; the hook holds the set, not the optimizer, so both can be collected.
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: stepped.clear())
    return stepped


def _apply(rule: Callable[[torch.Tensor], Any], slot: _Slot) -> Any:
    """``rule(slot.param)``; a rule that cannot take a sharded weight says so, naming the weight and the rule."""
    if slot.layout is None:
        return rule(slot.param)
    try:
        return rule(slot.param)
    except (RuntimeError, NotImplementedError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TypeError(
            f"The rule {rule!r} of parameter {slot.name!r} cannot act on it as sharded (a DTensor with placements "
            f"{slot.layout[1]}): {reason} A rule on sharded weights must use torch operations that DTensor supports, "
            "and make the tensors it needs from the weight (torch.ones_like(w)), not from plain factories."
        ) from error


def _trainable(slots: list[_Slot]) -> list[torch.nn.Parameter]:
    return [s.param for s in slots if s.param.requires_grad]


def _parts(groups: dict[Any, _Group]) -> Iterator[tuple[Any, list[_Slot]]]:
    """``(factor, slots)`` for each part of each group: slots that one ``torch._foreach_*`` op can take."""
    for factor, group in groups.items():
        for part in group.parts:
            yield factor, part


def _copy(params: list[torch.Tensor], values: list[torch.Tensor], sharded: bool) -> None:
    """Write ``values`` into ``params``: one ``torch._foreach_copy_``, or one ``copy_`` each for DTensors
    (DTensor has no sharding rule for the foreach copy)."""
    if not sharded:
        torch._foreach_copy_(params, values)
        return
    for param, value in zip(params, values):
        param.copy_(value)



_HALF = (torch.float16, torch.bfloat16)
# Dtypes the rules compute in as they are: no cast (and no dtype lookup) on the per-step path.
_NATIVE = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _l1_norms(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """``sum(|v|)`` of each tensor: one ``torch._foreach_norm`` eagerly; in a compiled program, plain
    reductions, which inductor fuses (it has no kernel of its own for ``_foreach_norm``)."""
    if torch.compiler.is_compiling():
        return [v.abs().sum() for v in values]
    return list(torch._foreach_norm(values, 1))


def _norm_sum(params: list[torch.Tensor], order: int, squared: bool = False) -> torch.Tensor:
    """Sum of the ``order``-norms (squared, if asked) of ``params``, half precision reduced in float32.

    ``torch._foreach_norm`` reduces in float32 when told to, so half-precision weights are
    not copied; other dtypes keep their own (complex norms are real).
    """
    half = [p for p in params if p.dtype in _HALF]
    rest = [p for p in params if p.dtype not in _HALF]
    norms = list(torch._foreach_norm(half, order, dtype=torch.float32)) if half else []
    norms += list(torch._foreach_norm(rest, order)) if rest else []
    stacked = torch.stack(norms)  # promotes mixed float32 / float64 norms, as the sum of the terms would
    return (stacked.square() if squared else stacked).sum()


def _groupable(rule: Any) -> bool:
    """Whether a rule's factors can key a group: numbers, or schedules that hash (one a dataclass made
    with ``eq=True`` does not)."""
    try:
        for value in vars(rule).values():
            hash(value)
    except TypeError:
        return False
    return True


def _scheduled(rule: Any) -> bool:
    """Whether a built-in rule has a scheduled factor or bound: its batched copy, built from its config, would
    rebuild the schedule, so it is projected on its own."""
    return any(clock.is_scheduled(value) for value in vars(rule).values())


def _batched(constraint: Any, rank: int) -> Any:
    """The same norm constraint for a stack of weights: every axis moved one place to the right."""
    axis = constraint.axis
    if axis is None:
        shifted: Any = list(range(1, rank + 1))
    elif isinstance(axis, int):
        shifted = axis + 1 if axis >= 0 else axis
    else:
        shifted = [a + 1 if a >= 0 else a for a in axis]
    return type(constraint).from_config({**constraint.get_config(), "axis": shifted})


def _build(module: torch.nn.Module) -> Plan:
    plan = Plan(version=binding.version())
    for entry in binding.bound(module):
        slot = _Slot(entry.owner, entry.attr, entry.param, entry.name, ops._layout(entry.param))
        reg, con = entry.rule.regularizer, entry.rule.constraint
        if reg is not None:
            kind = type(reg)
            if not _groupable(reg):
                plan.other_penalties.append((slot, reg))
            elif kind is regularizers.L1 and reg.l1:
                plan.l1.setdefault(reg.l1, _Group()).append(slot)
            elif kind is regularizers.L2 and reg.l2:
                plan.l2.setdefault(reg.l2, _Group()).append(slot)
            elif kind is regularizers.L1L2:
                if reg.l1:
                    plan.l1.setdefault(reg.l1, _Group()).append(slot)
                if reg.l2:
                    plan.l2.setdefault(reg.l2, _Group()).append(slot)
            elif kind not in (regularizers.L1, regularizers.L2):
                plan.other_penalties.append((slot, reg))
            if regularizers._is_proximal(reg):
                plan.proximal.append((slot, reg))
        if con is not None:
            p = entry.param
            if type(con) is constraints.NonNeg and p.is_floating_point():
                key: Any = ("nonneg", p.dtype, p.device, slot.layout)
                plan.projections.setdefault(key, (None, []))[1].append(slot)
            elif type(con) in (constraints.MaxNorm, constraints.UnitNorm, constraints.MinMaxNorm) and p.is_floating_point() \
                    and p.dtype not in _HALF and not _scheduled(con):
                config = tuple(sorted((k, repr(v)) for k, v in con.get_config().items()))
                key = (type(con), config, tuple(p.shape), p.dtype, p.device, slot.layout)
                if key not in plan.projections:
                    constraints._check_axis_fits(con.axis, p, type(con).__name__)
                    plan.projections[key] = (_batched(con, p.dim()), [])
                plan.projections[key][1].append(slot)
            else:
                plan.other_projections.append((slot, con, entry.name))
    for group in (*plan.l1.values(), *plan.l2.values()):
        group.parts = _split(group)
    return plan


def call_loss(module: torch.nn.Module) -> torch.Tensor:
    """The module tree's call losses as one differentiable scalar.

    Built-in L1/L2 activity penalties of float32/float64 outputs are computed in groups
    (one ``torch._foreach_norm`` per group instead of a chain of ops per output); the
    rest (``add_loss`` terms, custom regularizers) one by one.

    >>> import torch
    >>> from weightwise import binding
    >>> from weightwise.regularizers import L1
    >>> layer = torch.nn.Linear(2, 2)
    >>> binding.record_call_loss(layer, binding.Activity(L1(1.0), torch.ones(4, 3)))
    >>> call_loss(layer)
    tensor(3.)
    """
    groups: dict[tuple[str, float, int, Any], list[torch.Tensor]] = {}
    terms: list[torch.Tensor] = []
    for entry in binding.call_loss_entries(module):
        if not isinstance(entry, binding.Activity):
            terms.append(entry)
            continue
        reg, out = entry.regularizer, entry.output
        kind = type(reg)
        if out.dim() == 0 or out.dtype not in (torch.float32, torch.float64) or kind not in (
                regularizers.L1, regularizers.L2, regularizers.L1L2) or not _groupable(reg):
            terms.append(entry.value())  # half precision in float32, through the direct call
            continue
        batch = max(out.shape[0], 1)
        for name, factor in (("l1", getattr(reg, "l1", 0.0)), ("l2", getattr(reg, "l2", 0.0))):
            if factor:
                groups.setdefault((name, factor, batch, ops._layout(out)), []).append(out)
    for (name, factor, batch, _), outputs in groups.items():
        factor = factors.factor_value(factor, name)  # a schedule's value at this step
        values = torch._foreach_mul(outputs, outputs) if name == "l2" else outputs
        terms.append(factor * torch.stack(_l1_norms(values)).sum() / batch)
    return _total(terms)


_PLANS_ATTR = "_engine_plan"


def plan_for(module: torch.nn.Module) -> Plan:
    """The module's cached plan, rebuilt when any binding changed or a planned parameter was replaced.

    >>> import torch
    >>> from weightwise import binding
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> binding.bind(model[0], "weight", regularizer="l2")
    >>> binding.bind(model[1], "weight", regularizer="l2")
    >>> plan = plan_for(model)
    >>> {factor: len(slots) for factor, slots in plan.l2.items()}
    {0.01: 2}
    """
    plan = binding.check_module(module).__dict__.get(_PLANS_ATTR)
    if plan is None or plan.version != binding.version() or not plan.alive():
        plan = _build(module)
        plan.tracked = any(_RECORDS_ATTR in s.owner.__dict__
                           for s in [s for _, group in plan.projections.values() for s in group]
                           + [s for s, _, _ in plan.other_projections])
        module.__dict__[_PLANS_ATTR] = plan
    return plan


# -- projection records ------------------------------------------------------------------------
_RECORDS_ATTR = "_projection_records"
_NORM_TYPES = (constraints.MaxNorm, constraints.UnitNorm, constraints.MinMaxNorm)


class _Records(dict):
    """A module's projection records by parameter name; having one switches recording on.

    Records describe the last step, not the module's state: a copy or a pickle of the
    module keeps recording on but starts with none.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> _Records:
        return _Records()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Records, ())


@dataclass(frozen=True)
class ProjectionStats:
    """What the last recorded projection of one weight found, before it changed the weight.

    ``hits`` (a 0-d tensor) counts the units that were outside the constraint's bound, out
    of ``units``; ``largest`` (a 0-d tensor, or ``None``) is the largest unit norm. Units are
    what a norm constraint's ``axis`` groups, one norm each: a unit hits ``MaxNorm`` when its
    norm exceeds ``max_value``, ``MinMaxNorm`` when its norm is outside
    ``[min_value, max_value]`` (whatever the ``rate``), ``UnitNorm`` when its norm is not 1.
    For ``NonNeg`` a unit is one entry, a hit a negative entry, and ``largest`` the largest
    ``|w|``. A constraint of another kind may say what its units are by defining
    ``projection_stats(w) -> (hits, units, largest)``, called (only while its weight is
    tracked) after the constraint computed the projection, with the weight as it was
    before, not yet written; for one that does not, a unit is one entry and a
    hit an entry the projection changed (``largest`` is ``None``). The tensors stay on the weight's device: reading them
    (``int(stats.hits)``) waits for it, so read them in a report, not in the step.

    >>> ProjectionStats(torch.tensor(1), 4, torch.tensor(2.5))
    ProjectionStats(hits=tensor(1), units=4, largest=tensor(2.5000))
    """

    hits: torch.Tensor
    units: int
    largest: torch.Tensor | None


def track(module: torch.nn.Module, on: bool = True) -> None:
    """Record (``on=True``) or stop recording what the projections of the constrained weights
    of ``module`` and every module under it find (see :class:`ProjectionStats`).

    Recording adds a few small reductions to each projection of a tracked weight, all
    on the device. Untracked weights cost nothing: a plan with no tracked weight runs
    exactly the kernels it ran before.

    >>> import torch
    >>> from weightwise import binding
    >>> from weightwise.constraints import MaxNorm
    >>> linear = torch.nn.Linear(2, 2)
    >>> binding.bind(linear, "weight", constraint=MaxNorm(1.0, axis=1))
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))
    >>> track(linear)
    >>> plan_for(linear).project()
    >>> stats = last_projection(linear, "weight")
    >>> int(stats.hits), stats.units, float(stats.largest)
    (1, 2, 5.0)
    """
    binding.check_module(module)
    on = flag(on, "on")
    changed = False
    for owner in module.modules():
        if on and _RECORDS_ATTR not in owner.__dict__:
            owner.__dict__[_RECORDS_ATTR] = _Records()
            changed = True
        elif not on and owner.__dict__.pop(_RECORDS_ATTR, None) is not None:
            changed = True
    if changed:
        binding._changed()  # cached plans learn whether they are tracked when they are rebuilt


def last_projection(owner: torch.nn.Module, name: str) -> ProjectionStats | None:
    """What the last recorded projection of ``owner``'s parameter ``name`` found, or ``None``
    (not tracked, or not projected since tracking began).

    >>> import torch
    >>> last_projection(torch.nn.Linear(1, 1), "weight") is None
    True
    """
    binding.check_module(owner, "owner")
    return (owner.__dict__.get(_RECORDS_ATTR) or {}).get(name)


def _store(slot: _Slot, stats: ProjectionStats) -> None:
    records = slot.owner.__dict__.get(_RECORDS_ATTR)
    if records is not None:
        records[slot.attr] = stats


def _bounds(constraint: Any) -> tuple[float, float]:
    """The norms a unit may have, ``[low, high]``, at the current step (bounds may be scheduled)."""
    if type(constraint) is constraints.UnitNorm:
        return 1.0, 1.0
    low = factor_value(constraint.min_value, "min_value") if type(constraint) is constraints.MinMaxNorm else 0.0
    return float(low), float(factor_value(constraint.max_value, "max_value"))


def _record_norms(constraint: Any, norms: torch.Tensor, slots: list[_Slot]) -> None:
    """Record the unit ``norms`` of a stack of weights (one row per slot) against ``constraint``'s bounds."""
    low, high = _bounds(constraint)
    flat = ops._plain(norms).reshape(len(slots), -1)  # one norm per unit: small, whole on every rank
    outside = flat > high if low <= 0 else (flat < low) | (flat > high)
    hits = outside.sum(1)
    largest = flat.amax(1) if flat.shape[1] else None
    for i, slot in enumerate(slots):
        _store(slot, ProjectionStats(hits[i], flat.shape[1], None if largest is None else largest[i]))


def _record_non_neg(slots: list[_Slot]) -> None:
    for slot in slots:
        p = slot.param
        largest = ops._plain(p.abs().amax()) if p.numel() and p.dtype != torch.bool else None
        _store(slot, ProjectionStats(ops._plain(torch.count_nonzero(p < 0)), p.numel(), largest))


def _record_other(slot: _Slot, constraint: Any, projected: torch.Tensor) -> None:
    """Record the projection of a weight outside the batched groups (before it is written)."""
    if _RECORDS_ATTR not in slot.owner.__dict__:
        return
    p = slot.param
    if type(constraint) in _NORM_TYPES:  # half precision: norms in the dtype the constraint uses
        _record_norms(constraint, constraint._norms(constraint._input(p)[0]).unsqueeze(0), [slot])
    elif type(constraint) is constraints.NonNeg:
        _record_non_neg([slot])
    elif callable(getattr(constraint, "projection_stats", None)):
        hits, units, largest = constraint.projection_stats(p)
        _store(slot, ProjectionStats(ops._plain(hits), units, ops._plain(largest)))
    else:
        changed = (projected != p) & ~(torch.isnan(projected) & torch.isnan(p))  # NaN kept is no change
        _store(slot, ProjectionStats(ops._plain(torch.count_nonzero(changed)), p.numel(), None))


binding._install_planner(plan_for)
