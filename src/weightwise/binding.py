"""How a regularizer or constraint is bound to a parameter of any ``torch.nn.Module``.

A binding lives on the module that owns the parameter, in a plain dict
``module._weight_rules = {"weight": Rule(regularizer, constraint)}``, keyed by the
parameter's name there. It is therefore bound to the parameter slot, not to a
layer class: Keras-style layers and plain torch modules use the same mechanism,
and it survives ``copy.deepcopy``, pickling, ``.to()`` and ``load_state_dict``
(an attribute set on the ``Parameter`` itself would be lost by ``deepcopy``).

This module is the seam between rules and the training step: it lists the bound
pairs under a module, sums their penalties and applies their constraints.

>>> import torch
>>> from weightwise.regularizers import L2
>>> from weightwise.constraints import NonNeg
>>> linear = torch.nn.Linear(2, 1)
>>> bind(linear, "weight", regularizer=L2(0.5), constraint=NonNeg())
>>> with torch.no_grad():
...     _ = linear.weight.copy_(torch.tensor([[3.0, -4.0]]))
>>> total_penalty(linear)
tensor(12.5000, grad_fn=<MulBackward0>)
>>> apply_constraints(linear)
>>> linear.weight
Parameter containing:
tensor([[3., 0.]], requires_grad=True)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from weightwise import constraints, ops, regularizers
from weightwise.arguments import echo

__all__ = [
    "Activity",
    "Bound",
    "Rule",
    "activity_penalty",
    "apply_constraints",
    "apply_proximal",
    "bind",
    "bound",
    "call_loss_entries",
    "call_losses",
    "clear_call_losses",
    "penalties",
    "record_call_loss",
    "regularization_loss",
    "replace_call_losses",
    "rule_of",
    "total_penalty",
    "unbind",
    "validate",
    "version",
]

RULES_ATTR = "_weight_rules"
# Losses produced by a module's last call (activity penalties, add_loss), on any module.
CALL_LOSSES_ATTR = "_call_losses"
_UNSET: Any = object()


@dataclass
class Rule:
    """The regularizer and constraint bound to one parameter slot (either may be ``None``).

    >>> Rule(regularizer=None, constraint=None)
    Rule(regularizer=None, constraint=None)
    """

    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None
    constraint: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True)
class Bound:
    """One bound parameter: its qualified name under the queried module, the parameter, its rule,
    and the module that owns it under the name ``attr``.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> bind(model[0], "weight", constraint="unit_norm")
    >>> entry = next(bound(model))
    >>> entry.name, entry.param is model[0].weight, entry.rule.constraint
    ('0.weight', True, UnitNorm(axis=0))
    """

    name: str
    param: torch.nn.Parameter
    rule: Rule
    owner: torch.nn.Module = field(repr=False, default=None)  # type: ignore[assignment]
    attr: str = ""


_VERSION = 0


def version() -> int:
    """A counter that changes whenever any binding changes (the engine caches its plans on it).

    >>> import torch
    >>> before = version()
    >>> bind(torch.nn.Linear(1, 1), "weight", regularizer="l1")
    >>> version() > before
    True
    """
    return _VERSION


def _changed() -> None:
    global _VERSION
    _VERSION += 1


# The grouped fast path (``weightwise.engine``) sits above this seam: it registers its planner
# here when it is imported, so this module never imports it, not even lazily. ``import
# weightwise`` imports the engine, so the planner is in place before anything can be bound.
_PLANNER: Callable[[torch.nn.Module], Any] | None = None


def _install_planner(planner: Callable[[torch.nn.Module], Any]) -> None:
    """Register the function that returns a module's cached plan (``engine.plan_for``)."""
    global _PLANNER
    _PLANNER = planner


def _plan(module: torch.nn.Module) -> Any:
    if _PLANNER is None:
        raise RuntimeError("weightwise.engine was not imported; `import weightwise` imports it.")
    return _PLANNER(module)


def _rules(module: torch.nn.Module) -> dict[str, Rule]:
    return module.__dict__.get(RULES_ATTR) or {}


def check_module(module: Any, argument: str = "module") -> torch.nn.Module:
    """Return ``module`` if it is a ``torch.nn.Module``; otherwise raise a ``TypeError`` naming ``argument``.

    >>> check_module(5)
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `module`: expected a torch.nn.Module. Received: module=5
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"Invalid value for argument `{argument}`: expected a torch.nn.Module. "
                        f"Received: {argument}={echo(module)}")
    return module


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"Invalid value for argument `name`: expected a parameter name (str). Received: name={echo(name)}")
    return name


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def validate(param: torch.Tensor, *, regularizer: Any = None, constraint: Any = None, where: str = "the parameter") -> tuple[Any, Any]:
    """Resolve a regularizer and a constraint (through their families' ``get``) and check that each
    can act on ``param``: its rank for a norm constraint's ``axis`` and ``OrthogonalRegularizer``,
    its dtype for constraints that need floats. Returns the resolved pair; changes nothing.

    :func:`bind` runs this before it binds anything; a caller that binds several rules
    can run it on each first, so that a bad one binds none.

    >>> import torch
    >>> from weightwise.constraints import MaxNorm
    >>> validate(torch.ones(2, 2), constraint=MaxNorm(axis=4), where="parameter 'weight'")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `constraint`: MaxNorm(max_value=2, axis=4) cannot be bound to parameter 'weight' of shape (2, 2) and dtype float32: MaxNorm: `axis`=4 is out of range for a weight of shape (2, 2) (rank 2). Received: constraint=MaxNorm(max_value=2, axis=4)
    """
    resolved = []
    for kind, value, get, check in (
        ("regularizer", regularizer, regularizers.get, regularizers.check_weight),
        ("constraint", constraint, constraints.get, constraints.check_weight),
    ):
        if value is _UNSET:
            resolved.append(value)
            continue
        rule = get(value)
        if rule is not None:
            try:
                check(rule, param)
            except (TypeError, ValueError) as error:
                raise type(error)(
                    f"Invalid value for argument `{kind}`: {echo(rule)} cannot be bound to {where} of shape "
                    f"{tuple(param.shape)} and dtype {_dtype_name(param.dtype)}: {error} Received: {kind}={echo(rule)}"
                ) from error
        resolved.append(rule)
    return resolved[0], resolved[1]


def bind(
    module: torch.nn.Module,
    name: str,
    *,
    regularizer: Any = _UNSET,
    constraint: Any = _UNSET,
) -> None:
    """Bind a regularizer and/or constraint to ``module``'s parameter ``name``.

    Values go through :func:`weightwise.regularizers.get` and
    :func:`weightwise.constraints.get`, so string ids and configs work; ``None``
    clears that half of the rule, and an argument left out keeps what is bound.
    Both are resolved and checked against the parameter (see :func:`validate`) before
    anything is changed, so a bad value, such as a norm ``axis`` the weight does not
    have, binds nothing and fails here rather than at the next optimizer step.

    >>> import torch
    >>> linear = torch.nn.Linear(3, 2)
    >>> bind(linear, "weight", regularizer="l2")
    >>> rule_of(linear, "weight")
    Rule(regularizer=L2(l2=0.01), constraint=None)
    """
    check_module(module)
    _check_name(name)
    param = module._parameters.get(name)
    if param is None:
        known = sorted(n for n, p in module._parameters.items() if p is not None)
        raise ValueError(
            f"Invalid value for argument `name`: {type(module).__name__} has no parameter {name!r}. "
            f"Its parameters are {known}. Received: name={name!r}"
        )
    new_regularizer, new_constraint = validate(
        param, regularizer=regularizer, constraint=constraint, where=f"parameter {name!r} of {type(module).__name__}")
    rules = module.__dict__.get(RULES_ATTR)
    if rules is None:
        rules = {}
        # A plain attribute, visible in vars(module) and copied with the module.
        module.__dict__[RULES_ATTR] = rules
    rule = rules.setdefault(name, Rule())
    if new_regularizer is not _UNSET:
        rule.regularizer = _settle(rule.regularizer, new_regularizer, module, name, param)
    if new_constraint is not _UNSET:
        rule.constraint = _settle(rule.constraint, new_constraint, module, name, param)
    if rule.regularizer is None and rule.constraint is None:
        del rules[name]
    _changed()


def _settle(old: Any, new: Any, module: torch.nn.Module, name: str, param: torch.nn.Parameter) -> Any:
    """The rule to store for one slot: ``new`` itself, or the per-parameter copy it makes.

    A rule that keeps state for each weight it acts on (a reference copy of the weight, a
    power-iteration vector) defines ``bound_to(module, name, param)``, returning the rule
    to store for that slot; ``unbound_from(module, name)`` is called on a rule that leaves
    its slot, so it can drop what it stored there. Both run only after every check passed.
    """
    if old is new:
        return new
    if old is not None and hasattr(old, "unbound_from"):
        old.unbound_from(module, name)
    if new is not None and hasattr(new, "bound_to"):
        return new.bound_to(module, name, param)
    return new


def unbind(module: torch.nn.Module, name: str) -> None:
    """Remove whatever is bound to ``module``'s parameter ``name`` (nothing bound is fine).

    >>> import torch
    >>> linear = torch.nn.Linear(3, 2)
    >>> bind(linear, "bias", constraint="non_neg")
    >>> unbind(linear, "bias")
    >>> rule_of(linear, "bias") is None
    True
    """
    rule = _rules(check_module(module)).pop(_check_name(name), None)
    if rule is not None:
        for kind in (rule.regularizer, rule.constraint):
            if kind is not None and hasattr(kind, "unbound_from"):
                kind.unbound_from(module, name)
    _changed()


def rule_of(module: torch.nn.Module, name: str) -> Rule | None:
    """Return the :class:`Rule` bound to ``module``'s parameter ``name``, or ``None``.

    >>> import torch
    >>> rule_of(torch.nn.Linear(1, 1), "weight") is None
    True
    """
    return _rules(check_module(module)).get(_check_name(name))


def bound(module: torch.nn.Module) -> Iterator[Bound]:
    """Yield every bound parameter under ``module`` (itself included), each parameter once.

    A parameter shared by several modules is yielded once, with the rule of the
    first module that binds it, in ``named_modules()`` order.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> bind(model[1], "weight", regularizer="l1")
    >>> [b.name for b in bound(model)]
    ['1.weight']
    """
    seen: set[int] = set()
    for prefix, owner in check_module(module).named_modules():
        for name, rule in _rules(owner).items():
            param = owner._parameters.get(name)
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            yield Bound(f"{prefix}.{name}" if prefix else name, param, rule, owner, name)


def penalties(module: torch.nn.Module) -> list[torch.Tensor]:
    """The penalty of every bound, trainable (``requires_grad``) parameter under ``module``.

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> bind(linear, "bias", regularizer="l2")
    >>> len(penalties(linear))
    1
    >>> linear.bias.requires_grad_(False)
    Parameter containing:
    tensor([...])
    >>> penalties(linear)
    []
    """
    return [ops._plain(checked_penalty(b.rule.regularizer(b.param), b.rule.regularizer, f"parameter {b.name!r}"))
            for b in bound(module) if b.rule.regularizer is not None and b.param.requires_grad]


def checked_penalty(penalty: Any, regularizer: Any, where: str) -> torch.Tensor:
    """``penalty`` as a 0-d tensor, or a ``ValueError`` naming ``where`` and ``regularizer``.

    A penalty joins a sum of losses, so it must be one real number: a tensor with a single
    element, or a Python or numpy number. A regularizer that returns a matrix (a constraint
    passed where a regularizer belongs) would otherwise make the loss a matrix.

    >>> import torch
    >>> checked_penalty(torch.ones(2, 2), "custom", "parameter 'weight'")
    Traceback (most recent call last):
    ...
    ValueError: The regularizer 'custom' of parameter 'weight' returned a tensor of shape (2, 2); a penalty must be a scalar (a real tensor with one element).
    """
    if isinstance(penalty, numbers.Real) and not isinstance(penalty, bool):
        return torch.tensor(float(penalty))
    if isinstance(penalty, torch.Tensor) and penalty.numel() == 1 and not penalty.is_complex() \
            and penalty.dtype != torch.bool:
        return penalty.reshape(())
    got = (f"a tensor of shape {tuple(penalty.shape)}" + (f" and dtype {_dtype_name(penalty.dtype)}"
           if penalty.is_complex() or penalty.dtype == torch.bool else "")
           if isinstance(penalty, torch.Tensor) else f"{echo(penalty)} of type {type(penalty).__name__}")
    raise ValueError(f"The regularizer {echo(regularizer)} of {where} returned {got}; "
                     "a penalty must be a scalar (a real tensor with one element).")


class _CallLosses(dict):
    """A module's call losses by slot (``None`` for a layer's own, one slot per activity hook).

    They belong to one forward pass, not to the module's state: a deepcopy or a pickle
    of the module starts with none (copying them would copy autograd graphs).
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> _CallLosses:
        return _CallLosses()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_CallLosses, ())


def _call_loss_store(module: torch.nn.Module) -> _CallLosses:
    store = module.__dict__.get(CALL_LOSSES_ATTR)
    if store is None:
        store = module.__dict__[CALL_LOSSES_ATTR] = _CallLosses()
    return store


@dataclass(frozen=True)
class Activity:
    """An activity penalty not yet computed: ``activity_penalty(regularizer, output)`` on demand.

    Layers record these so that the engine can compute the penalties of many outputs
    together; :func:`call_losses` computes each one.

    >>> import torch
    >>> from weightwise.regularizers import L2
    >>> Activity(L2(0.5), torch.ones(2, 2)).value()
    tensor(1.)
    """

    regularizer: Callable[[torch.Tensor], torch.Tensor]
    output: torch.Tensor

    def value(self) -> torch.Tensor:
        """The penalty of the recorded output, divided by its batch size."""
        return activity_penalty(self.regularizer, self.output)


def record_call_loss(module: torch.nn.Module, loss: Any, slot: Any = None) -> None:
    """Keep ``loss`` (an activity penalty or an ``add_loss`` term) with ``module`` until its next call.

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> record_call_loss(linear, torch.tensor(0.5))
    >>> call_losses(linear)
    [tensor(0.5000)]
    """
    if not isinstance(loss, (torch.Tensor, Activity)):
        raise TypeError(f"Invalid value for argument `loss`: expected a tensor. Received: loss={echo(loss)}")
    _call_loss_store(check_module(module)).setdefault(slot, []).append(loss)


def replace_call_losses(module: torch.nn.Module, slot: Any, losses: list[torch.Tensor]) -> None:
    """Make ``losses`` the only call losses of ``module`` in ``slot`` (an empty list clears it).

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> replace_call_losses(linear, "hook", [torch.tensor(1.0)])
    >>> replace_call_losses(linear, "hook", [torch.tensor(2.0)])
    >>> call_losses(linear)
    [tensor(2.)]
    """
    store = _call_loss_store(check_module(module))
    if losses:
        store[slot] = list(losses)
    else:
        store.pop(slot, None)


def clear_call_losses(module: torch.nn.Module) -> None:
    """Forget the call losses of ``module`` and every module under it.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1))
    >>> record_call_loss(model[0], torch.tensor(0.5))
    >>> clear_call_losses(model)
    >>> call_losses(model)
    []
    """
    for owner in check_module(module).modules():
        store = owner.__dict__.get(CALL_LOSSES_ATTR)
        if store:
            store.clear()


def call_losses(module: torch.nn.Module) -> list[torch.Tensor]:
    """The call losses recorded by ``module`` and every module under it, in ``modules()`` order.

    >>> import torch
    >>> call_losses(torch.nn.Linear(2, 1))
    []
    """
    # Ordinary tensors: a loss of sharded (DTensor) outputs is made whole.
    return [ops._plain(entry.value() if isinstance(entry, Activity) else entry) for entry in call_loss_entries(module)]


def call_loss_entries(module: torch.nn.Module) -> list[Any]:
    """Like :func:`call_losses`, but activity penalties stay :class:`Activity` records (for the engine).

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> record_call_loss(linear, torch.tensor(1.0))
    >>> call_loss_entries(linear)
    [tensor(1.)]
    """
    return [
        entry
        for owner in check_module(module).modules()
        for entries in (owner.__dict__.get(CALL_LOSSES_ATTR) or {}).values()
        for entry in entries
    ]


def regularization_loss(module: torch.nn.Module) -> torch.Tensor:
    """Everything a model adds to its data loss: the call losses of the last forward pass
    (activity penalties, ``add_loss``) plus the penalties of bound trainable weights.

    This is the one call a hand-written training loop needs, the analogue of
    ``tf.losses.get_regularization_loss()``: ``loss = data_loss + regularization_loss(model)``.

    The result is always an ordinary tensor. Under FSDP2 (weights sharded as DTensors) it is the
    full penalty, the same on every rank, and its gradient reaches each rank's shards; since
    DDP and FSDP2 average the data gradients, every rank adds it once, as it is.

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> bind(linear, "bias", regularizer="l1")
    >>> with torch.no_grad():
    ...     _ = linear.bias.fill_(2.0)
    >>> regularization_loss(linear)
    tensor(0.0200, grad_fn=<MulBackward0>)
    """
    check_module(module)
    return _sum(call_losses(module) + [_plan(module).differentiable_penalty()])


def total_penalty(module: torch.nn.Module) -> torch.Tensor:
    """Sum of :func:`penalties`; a zero scalar when nothing is bound.

    >>> import torch
    >>> total_penalty(torch.nn.Linear(2, 1))
    tensor(0.)
    """
    return _plan(check_module(module)).differentiable_penalty()


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    """The sum of scalar losses (a zero scalar for none), keeping their device and dtype."""
    if not terms:
        return torch.zeros(())
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def activity_penalty(regularizer: Callable[[torch.Tensor], torch.Tensor], output: torch.Tensor) -> torch.Tensor:
    """Keras's activity penalty of one output: ``regularizer(output) / batch_size``.

    Scalars are not divided, and an empty batch gives its (zero) penalty rather than NaN.

    >>> import torch
    >>> from weightwise.regularizers import L1
    >>> activity_penalty(L1(1.0), torch.ones(4, 3))
    tensor(3.)
    """
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"Invalid value for argument `output`: expected a tensor. Received: output={echo(output)}")
    regularizers._check_activity(regularizer)
    penalty = checked_penalty(regularizer(output), regularizer, f"an output of shape {tuple(output.shape)}")
    if output.dim() == 0:
        return penalty
    return penalty / max(output.shape[0], 1)


def apply_constraints(module: torch.nn.Module, *, only_with_grad: bool = False,
                      among: Container[int] | None = None) -> None:
    """Project every constrained parameter under ``module`` in place, keeping the Parameter object.

    With ``only_with_grad=True``, parameters whose ``.grad`` is ``None`` (they took no
    part in the last backward pass) are left alone; with ``among`` (a set of ``id(param)``),
    so are parameters outside it, such as those another optimizer updates. All projections are computed and
    checked before any is written, so a constraint that returns the wrong shape or
    dtype changes no weight.

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> bind(linear, "bias", constraint="non_neg")
    >>> with torch.no_grad():
    ...     _ = linear.bias.fill_(-1.0)
    >>> apply_constraints(linear)
    >>> linear.bias.item()
    0.0
    """
    _plan(_check_selection(module, only_with_grad, among)).project(only_with_grad=bool(only_with_grad), among=among)


def _check_selection(module: Any, only_with_grad: Any, among: Any) -> torch.nn.Module:
    """Check the arguments that pick which parameters a step after an update acts on."""
    check_module(module)
    if not isinstance(only_with_grad, (bool, np.bool_)):
        raise TypeError(f"Invalid value for argument `only_with_grad`: expected a bool. "
                        f"Received: only_with_grad={echo(only_with_grad)}")
    if among is not None and not isinstance(among, Container):
        raise TypeError(f"Invalid value for argument `among`: expected a set of parameter ids or None. "
                        f"Received: among={echo(among)}")
    return module


def apply_proximal(module: torch.nn.Module, lr: Any, *, only_with_grad: bool = False,
                   among: Container[int] | None = None) -> None:
    """Take the proximal step of every proximal regularizer under ``module``, in place, after an update.

    :class:`~weightwise.regularizers.ProximalL1` and :class:`~weightwise.regularizers.GroupLasso`
    (``proximal=True``) act by this step instead of a gradient: call it after each
    optimizer step of a hand-written loop, before constraints are applied
    (:func:`apply_constraints`). ``fit``, ``Optimizer.apply`` and ``regularize(...,
    optimizer=opt)`` call it for you. Factors are read at :func:`weightwise.clock.step`.

    Args:
        module: the model (any ``torch.nn.Module``).
        lr: the learning rate of the update just taken: a float, or the optimizer that took
            it (a ``torch.optim.Optimizer`` or a weightwise optimizer), whose parameter groups
            give each weight its rate; weights it does not hold are left alone.
        only_with_grad: leave alone the weights whose ``.grad`` is ``None``.
        among: if given, a set of ``id(param)``: leave alone the weights outside it.

    Frozen weights (``requires_grad=False``) are never stepped. Given an optimizer, a weight
    takes at most one proximal step per step of it: after ``fit``'s, ``apply``'s or a
    ``regularize(..., optimizer=opt)`` hook's step, another call for the same update does nothing.

    >>> import torch
    >>> from weightwise.regularizers import ProximalL1
    >>> linear = torch.nn.Linear(3, 1, bias=False)
    >>> bind(linear, "weight", regularizer=ProximalL1(0.1))
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[0.05, -0.5, 2.0]]))
    >>> apply_proximal(linear, lr=1.0)
    >>> linear.weight.data
    tensor([[ 0.0000, -0.4000,  1.9000]])
    """
    _plan(_check_selection(module, only_with_grad, among)).proximal_step(
        lr, only_with_grad=bool(only_with_grad), among=among)
