"""Keras regularizers and constraints on any ``torch.nn.Module``, attached by rule.

A rule maps a *selector* to a regularizer or constraint (an object, a string id or a
config). Selectors pick parameters by:

- exact qualified name: ``"fc.weight"``;
- glob over qualified names: ``"*.weight"``, ``"encoder.*.bias"``;
- module type and attribute: ``(torch.nn.Linear, "weight")``;
- predicate: ``lambda name, param, module: ...``.

Names are matched without the prefixes that wrappers add (``module.`` of
``DistributedDataParallel``, ``_orig_mod.`` of ``torch.compile``), so the same rules
work on the wrapped and the bare model. Everything binds through
:mod:`weightwise.binding`, the mechanism weightwise layers use too.

>>> import torch
>>> import weightwise as ww
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> handle = ww.regularize(model, {(torch.nn.Linear, "weight"): ww.regularizers.L2(1e-4)})
>>> handle.matched
['0.weight', '2.weight']
>>> loss = model(torch.ones(3, 4)).sum() + ww.regularization_loss(model)
>>> handle.remove()
>>> ww.regularization_loss(model)
tensor(0.)
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import inspect
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import torch

from weightwise import binding, clock, constraints, regularizers

__all__ = ["Handle", "apply_constraints", "apply_proximal", "constrain", "describe", "per_unit_axis",
           "regularization_loss", "regularize", "regularize_activity"]

regularization_loss = binding.regularization_loss
apply_constraints = binding.apply_constraints
apply_proximal = binding.apply_proximal

# The activity regularizers attached to a module by regularize_activity, for describe().
ACTIVITY_RULES_ATTR = "_activity_rules"
# Per parameter slot, the rules that handles stacked on it (see _stack).
RULE_STACKS_ATTR = "_rule_stacks"
Selector = Any


# Parameters that hold one entry per unit (biases, normalization scales and offsets, PReLU
# slopes): per unit is each entry on its own, Keras's ``axis=[]``.
_ELEMENTWISE: list[tuple[tuple[type, ...], tuple[str, ...]]] = [
    ((torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm),
     ("weight", "bias")),
    ((torch.nn.PReLU,), ("weight",)),
    ((torch.nn.MultiheadAttention,), ("in_proj_bias",)),
]
# Matrices whose rows are units (torch's ``(out, in)``): the norm runs over axis 1.
_ROWS: list[tuple[tuple[type, ...], tuple[str, ...]]] = [
    ((torch.nn.Linear, torch.nn.Embedding), ("weight",)),
    ((torch.nn.MultiheadAttention,), ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")),
]
# nn.RNN/LSTM/GRU parameter names: weight_ih_l0, weight_hh_l1_reverse, weight_hr_l0 (LSTM projection), bias_ih_l0.
_RECURRENT_NAME = re.compile(r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?")


def _in_table(table: list[tuple[tuple[type, ...], tuple[str, ...]]], module: torch.nn.Module, name: str) -> bool:
    return any(isinstance(module, types) and name in names for types, names in table)


def per_unit_axis(module: torch.nn.Module, name: str) -> int | list[int] | None:
    """The ``axis`` that makes a norm constraint act per output unit on a torch layer's parameter.

    Keras kernels are ``(in, out)`` and Keras norms run over ``axis=0``; torch lays
    weights out the other way round, so a per-unit norm of a torch ``(out, in)`` matrix
    runs over axis 1. The rules, by module:

    - ``nn.Linear``, ``nn.Embedding``, ``nn.MultiheadAttention``'s ``in_proj_weight`` and
      ``q/k/v_proj_weight`` (and its ``out_proj``, an ``nn.Linear``): ``1``, each row.
    - ``nn.RNN``/``nn.LSTM``/``nn.GRU``: ``weight_ih_l*``, ``weight_hh_l*``, ``weight_hr_l*``
      (with ``_reverse``): ``1``, each gate row, as Keras's ``axis=0`` on ``kernel`` and
      ``recurrent_kernel``; ``bias_ih_l*``, ``bias_hh_l*``: ``[]``, each entry.
    - ``nn.ConvNd``: ``[1, ..., n+1]``; ``nn.ConvTransposeNd`` (``(in, out, *k)``): ``[0, 2, ..., n+1]``,
      the input and kernel axes of each output channel.
    - ``nn.BatchNorm*``/``nn.InstanceNorm*``, ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.RMSNorm``
      (``weight``, ``bias``), ``nn.PReLU`` and ``in_proj_bias``: ``[]``, each entry on its own.
    - ``nn.Bilinear``: ``[1, 2]``.

    ``None`` means the layout is not known. A grouped transposed convolution raises a
    ``ValueError``: no axis of its layout holds exactly one output channel.

    >>> import torch
    >>> per_unit_axis(torch.nn.Linear(3, 2), "weight"), per_unit_axis(torch.nn.Conv2d(3, 8, 3), "weight")
    (1, [1, 2, 3])
    >>> per_unit_axis(torch.nn.LSTM(3, 4), "weight_hh_l0"), per_unit_axis(torch.nn.BatchNorm1d(4), "weight")
    (1, [])
    """
    binding.check_module(module)
    if not isinstance(name, str):
        raise TypeError(f"Invalid value for argument `name`: expected a parameter name (str). Received: name={name!r}")
    if isinstance(module, torch.nn.RNNBase):
        match = _RECURRENT_NAME.fullmatch(name)
        return None if match is None else (1 if match.group(1) == "weight" else [])
    if _in_table(_ELEMENTWISE, module, name):
        return []
    if _in_table(_ROWS, module, name):
        return 1
    if name != "weight":
        return None
    if isinstance(module, torch.nn.Bilinear):
        return [1, 2]
    if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
        if module.groups != 1:
            raise ValueError(
                f"A per-output-channel norm of {type(module).__name__} with groups={module.groups} is not an axis "
                f"of its weight {tuple(module.weight.shape)} (each channel's inputs are one group's rows): "
                f"pass the constraint an explicit `axis`. Received: module={module!r}"
            )
        return [0, *range(2, module.weight.dim())]
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return list(range(1, module.weight.dim()))
    return None


def _canonical(name: str) -> str:
    parts = name.split(".")
    return ".".join(p for p in parts if p not in ("_orig_mod",)) if "_orig_mod" in parts else name


def _names_for_matching(qualified: str, root: torch.nn.Module) -> set[str]:
    names = {qualified, _canonical(qualified)}
    if isinstance(root, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        names |= {n[len("module."):] for n in list(names) if n.startswith("module.")}
    return names


@dataclass
class _Target:
    name: str
    owner: torch.nn.Module
    attr: str
    param: torch.nn.Parameter


def _targets(root: torch.nn.Module) -> list[_Target]:
    out, seen = [], set()
    for prefix, owner in root.named_modules():
        for attr, param in owner.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            out.append(_Target(f"{prefix}.{attr}" if prefix else attr, owner, attr, param))
    return out


def _describe_selector(selector: Selector) -> str:
    if isinstance(selector, tuple):
        return f"({selector[0].__name__}, {selector[1]!r})"
    return getattr(selector, "__name__", None) and f"<predicate {selector.__name__}>" or repr(selector)


def _matches(selector: Selector, target: _Target, root: torch.nn.Module) -> bool:
    if isinstance(selector, str):
        names = _names_for_matching(target.name, root)
        if any(ch in selector for ch in "*?["):
            return any(fnmatch.fnmatchcase(n, selector) for n in names)
        return selector in names
    if isinstance(selector, tuple):
        return isinstance(target.owner, selector[0]) and target.attr == selector[1]
    verdict = selector(target.name, target.param, target.owner)
    try:
        return bool(verdict)
    except (RuntimeError, TypeError, ValueError) as error:  # a tensor of many values has no truth value
        raise TypeError(
            f"Invalid selector {_describe_selector(selector)}: a predicate must return a bool; for "
            f"{target.name!r} it returned {verdict!r:.200}. Received: selector={selector!r}"
        ) from error


_SELECTOR_KINDS = (
    "expected a parameter name, a glob such as '*.weight', a (module type, attribute) pair such as "
    "(torch.nn.Linear, 'weight'), or a predicate that takes (name, param, module) and returns a bool"
)


def _check_selector(selector: Selector) -> None:
    if isinstance(selector, str) and selector:
        return
    if isinstance(selector, tuple) and len(selector) == 2 and isinstance(selector[0], type) \
            and issubclass(selector[0], torch.nn.Module) and isinstance(selector[1], str):
        return
    if callable(selector) and not isinstance(selector, type):
        if not _takes_three(selector):
            raise TypeError(
                f"Invalid selector: a predicate takes (name, param, module); {_describe_selector(selector)} "
                f"cannot be called with those three arguments. Received: selector={selector!r}"
            )
        return
    raise TypeError(f"Invalid selector: {_SELECTOR_KINDS}. Received: selector={selector!r}")


def _takes_three(predicate: Callable[..., Any]) -> bool:
    try:
        inspect.signature(predicate).bind("name", None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): let the call decide
        return True
    return True


def _rule_items(rules: Any) -> list[tuple[Selector, Any]]:
    if isinstance(rules, Mapping):
        items = list(rules.items())
    elif isinstance(rules, Iterable) and not isinstance(rules, (str, bytes, torch.Tensor)):
        items = list(rules)
        if not all(isinstance(item, tuple) and len(item) == 2 for item in items):
            raise TypeError(f"Invalid value for argument `rules`: expected a dict or a list of (selector, value) "
                            f"pairs. Received: rules={rules!r:.300}")
    else:
        raise TypeError(f"Invalid value for argument `rules`: expected a dict or a list of (selector, value) pairs. "
                        f"Received: rules={rules!r:.300}")
    for selector, _ in items:
        _check_selector(selector)
    return items


@dataclass
class Handle:
    """What one :func:`regularize`, :func:`constrain` or :func:`regularize_activity` call added.

    ``matched`` lists the qualified parameter (or module) names; ``remove()`` undoes
    exactly this call's changes, leaving later changes by others in place. A handle is
    also a context manager that removes on exit.

    >>> import torch
    >>> linear = torch.nn.Linear(2, 2)
    >>> with regularize(linear, {"weight": "l1"}) as handle:
    ...     handle.matched, len(binding.penalties(linear))
    (['weight'], 1)
    >>> binding.penalties(linear)
    []
    """

    matched: list[str] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def remove(self) -> None:
        """Undo this call's bindings and hooks (calling it twice is harmless)."""
        while self._undo:
            self._undo.pop()()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _check_strict(strict: Any) -> bool:
    if not isinstance(strict, bool):
        raise TypeError(f"Invalid value for argument `strict`: expected a bool. Received: strict={strict!r}")
    return strict


def _hits(selector: Selector, targets: list[_Target], module: torch.nn.Module, kind: str, strict: bool) -> list[_Target]:
    """The targets ``selector`` picks; with ``strict``, none is a ``ValueError`` listing close matches."""
    hits = [t for t in targets if _matches(selector, t, module)]
    if not hits and strict:
        names = [t.name for t in targets]
        close = difflib.get_close_matches(selector, names, n=5, cutoff=0.3) if isinstance(selector, str) else []
        raise ValueError(
            f"The {kind} rule {_describe_selector(selector)} matches no parameter of {type(module).__name__}. "
            f"Close matches: {close or names[:8]}. Pass strict=False to allow rules that match nothing."
        )
    return hits


def _attach(module: torch.nn.Module, rules: Any, kind: str, strict: bool,
            prepare: Callable[[Any, _Target], Any]) -> Handle:
    binding.check_module(module)
    _check_strict(strict)
    get = regularizers.get if kind == "regularizer" else constraints.get
    items = []
    for selector, value in _rule_items(rules):
        try:
            resolved = get(value)
        except ValueError as error:
            raise ValueError(f"Rule {_describe_selector(selector)}: {error}") from error
        items.append((selector, resolved))
    targets = _targets(module)
    plan: list[tuple[_Target, Any]] = []
    for selector, resolved in items:
        plan.extend((t, resolved) for t in _hits(selector, targets, module, kind, strict))
    # Every rule is checked against every parameter it matched (a norm axis the weight lacks, a
    # dtype a constraint cannot keep) before the first is bound, so a bad one binds none.
    prepared = []
    for target, resolved in plan:
        value = prepare(resolved, target)
        binding.validate(target.param, **{kind: value}, where=f"parameter {target.name!r}")
        prepared.append((target, value))
    handle = Handle()
    for target, value in prepared:
        token = object()
        _push(target, kind, token, value)
        handle.matched.append(target.name)
        handle._undo.append(lambda target=target, token=token: _pop(target, kind, token))
    return handle


def _stack(target: _Target, kind: str) -> dict[str, Any]:
    """The handles' entries on one parameter slot: what was bound before them, and theirs in order.

    Kept on the owning module (a plain attribute), so removing handles in any order
    restores exactly what the remaining ones, or the original binding, call for.
    """
    stacks = target.owner.__dict__.setdefault(RULE_STACKS_ATTR, {})
    key = (target.attr, kind)
    if key not in stacks:
        stacks[key] = {"base": _current(target, kind), "entries": []}
    return stacks[key]


def _current(target: _Target, kind: str) -> Any:
    rule = binding.rule_of(target.owner, target.attr)
    return getattr(rule, kind) if rule is not None else None


def _push(target: _Target, kind: str, token: object, value: Any) -> None:
    entries = _stack(target, kind)["entries"]  # records what was bound before, first
    binding.bind(target.owner, target.attr, **{kind: value})
    # What is stored may be the rule's own copy for this parameter (see binding's ``bound_to``).
    entries.append((token, _current(target, kind)))


def _pop(target: _Target, kind: str, token: object) -> None:
    stacks = target.owner.__dict__.get(RULE_STACKS_ATTR, {})
    stack = stacks.get((target.attr, kind))
    if stack is None or not any(t is token for t, _ in stack["entries"]):
        return  # already removed
    ours_in_place = _current(target, kind) is stack["entries"][-1][1]
    stack["entries"] = [(t, v) for t, v in stack["entries"] if t is not token]
    if ours_in_place:  # a binding someone made after the handles is left alone
        below = stack["entries"][-1][1] if stack["entries"] else stack["base"]
        binding.bind(target.owner, target.attr, **{kind: below})
    if not stack["entries"]:
        del stacks[(target.attr, kind)]


def regularize(module: torch.nn.Module, rules: Any, *, strict: bool = True,
               optimizer: torch.optim.Optimizer | None = None) -> Handle:
    """Bind regularizers to the parameters of ``module`` that the rules select.

    ``rules`` maps selectors to regularizers (objects, string ids or configs). A rule
    that matches nothing raises a ``ValueError`` with close matches, unless
    ``strict=False``. Penalties join :func:`regularization_loss`. A
    :class:`~weightwise.regularizers.GroupLasso` without an explicit ``axis`` on a known
    torch layer groups by output unit (see :func:`per_unit_axis`), as norm constraints do.

    With ``optimizer``, every ``optimizer.step()`` is followed by the proximal step of the
    proximal regularizers (:class:`~weightwise.regularizers.ProximalL1`, ``GroupLasso``)
    bound under ``module``, on the weights it holds that received a gradient, with each
    weight's group learning rate (see :func:`weightwise.binding.apply_proximal`), before any
    projection that :func:`constrain` adds; scheduled factors follow its step count
    (:func:`weightwise.clock.follow`). ``regularize(model, {}, optimizer=opt)`` does this
    for rules bound some other way (Keras-style layers). Without it, call
    :func:`apply_proximal` after each step.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    >>> regularize(model, {"*.weight": "l2"}).matched
    ['0.weight', '1.weight']
    >>> regularize(model, {"0.weigth": "l2"})
    Traceback (most recent call last):
    ...
    ValueError: The regularizer rule '0.weigth' matches no parameter of Sequential. Close matches: ['0.weight', '1.weight', '0.bias']. Pass strict=False to allow rules that match nothing.

    Exact zeros in a hand loop: each ``opt.step()`` soft-thresholds by ``lr * l1``.

    >>> linear = torch.nn.Linear(2, 1, bias=False)
    >>> opt = torch.optim.SGD(linear.parameters(), lr=1.0)
    >>> _ = regularize(linear, {"weight": regularizers.ProximalL1(0.5)}, optimizer=opt)
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[0.2, -2.0]]))
    >>> linear.weight.grad = torch.zeros(1, 2)
    >>> opt.step()
    >>> linear.weight.data
    tensor([[ 0.0000, -1.5000]])
    """
    _check_optimizer(optimizer)
    handle = _attach(module, rules, "regularizer", strict, _layout_aware)
    if optimizer is not None:
        clock.follow(optimizer)
        handle._undo.insert(0, _ProximalSteps.of(optimizer).follow(module))
    return handle


def _output_axis(module: torch.nn.Module, name: str) -> int | None:
    """The axis of a torch layer's parameter that holds its output units: the one a per-unit norm keeps.

    ``0`` for ``nn.Linear`` and ``nn.ConvNd`` (``(out, in, *k)``), ``1`` for ``nn.ConvTransposeNd``
    (``(in, out, *k)``); ``None`` where :func:`per_unit_axis` does not know the layout.
    """
    if isinstance(module, torch.nn.modules.conv._ConvTransposeNd) and name == "weight":
        return 1  # each group's block (in / groups, out / groups, *k) also has its outputs on axis 1
    axes = per_unit_axis(module, name)
    if axes is None:
        return None
    rank = module._parameters[name].dim()
    reduced = {a % rank for a in ([axes] if isinstance(axes, int) else axes)}
    kept = [a for a in range(rank) if a not in reduced]
    return kept[0] if len(kept) == 1 else None


# Rules whose ``axis`` means "the axes of one unit", as Keras lays its kernels out.
_PER_UNIT_RULES = (constraints._NormConstraint, regularizers.GroupLasso)


def _layout_aware(rule: Any, target: _Target) -> Any:
    """A rule left at its default axis gets the axis of the torch layout.

    Norm constraints and group lasso get the per-unit axis (the axes a unit's norm runs
    over), ``SpectralNorm`` the output-unit axis (the one its matrix view keeps as columns).
    """
    if isinstance(rule, _PER_UNIT_RULES):
        axis = None if constraints.axis_was_given(rule) else per_unit_axis(target.owner, target.attr)
    elif isinstance(rule, constraints.SpectralNorm):
        axis = None if constraints.axis_was_given(rule) else _output_axis(target.owner, target.attr)
    else:
        return rule
    if axis is None:
        return rule
    # A copy with only the axis changed: a rebuild from the config would lose a factor given as a
    # plain function, which no config can name.
    clone = copy.copy(rule)
    clone.axis = axis if isinstance(rule, constraints.SpectralNorm) else constraints._validate_axis(axis)
    return clone


def _check_optimizer(optimizer: Any) -> None:
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"Invalid value for argument `optimizer`: expected a torch.optim.Optimizer. Received: optimizer={optimizer!r}"
        )


class _ProximalSteps:
    """The one step post hook of a torch optimizer that takes the proximal steps after its updates.

    One per optimizer, whatever the number of ``regularize(..., optimizer=opt)`` calls; a
    weight under several followed modules is stepped once per update. The hook goes first
    among the optimizer's post hooks: the proximal step comes before the projections of
    :func:`constrain` (update, proximal step, projection) and before
    :func:`weightwise.clock.follow` advances the step, so a scheduled factor is read at the
    step of the update it follows, as its penalty was.
    """

    _BY_OPTIMIZER: ClassVar[weakref.WeakKeyDictionary[torch.optim.Optimizer, _ProximalSteps]] = \
        weakref.WeakKeyDictionary()

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.modules: dict[int, list[Any]] = {}  # id(module) -> [module, handles following it]
        hook = optimizer.register_step_post_hook(self)
        # torch has no public way to put a hook first; its hooks live in this ordered dict.
        optimizer._optimizer_step_post_hooks.move_to_end(hook.id, last=False)  # type: ignore[attr-defined]

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> _ProximalSteps:
        steps = cls._BY_OPTIMIZER.get(optimizer)
        if steps is None:
            steps = cls._BY_OPTIMIZER[optimizer] = cls(optimizer)
        return steps

    def follow(self, module: torch.nn.Module) -> Callable[[], None]:
        """Follow ``module``; returns the undo that stops following it (for this handle)."""
        entry = self.modules.setdefault(id(module), [module, 0])
        entry[1] += 1

        def undo() -> None:
            entry[1] -= 1
            if entry[1] == 0 and self.modules.get(id(module)) is entry:
                del self.modules[id(module)]

        return undo

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # Only weights this optimizer holds, once each (see engine.Plan.proximal_step), with a gradient.
        for module, _ in list(self.modules.values()):
            binding.apply_proximal(module, optimizer, only_with_grad=True)


def constrain(module: torch.nn.Module, rules: Any, *, strict: bool = True,
              optimizer: torch.optim.Optimizer | None = None) -> Handle:
    """Bind constraints to the parameters of ``module`` that the rules select.

    A norm constraint without an explicit ``axis`` on a known torch layer acts per
    output unit (``axis=1`` for ``nn.Linear``, ``[1, 2, 3]`` for ``nn.Conv2d``; see :func:`per_unit_axis`), as
    Keras's does on its own layers, and a ``SpectralNorm`` without one takes the layer's output
    axis as its matrix columns (``0`` for ``nn.Linear`` and ``nn.Conv2d``, ``1`` for
    ``nn.ConvTranspose2d``); an explicit ``axis`` is always honoured.

    With ``optimizer``, every ``optimizer.step()`` is followed by the projection of the
    constrained parameters it holds that received a gradient. A step that
    ``torch.amp.GradScaler`` skips is not followed by one. Without it, call
    :func:`apply_constraints` after each step. The optimizer's steps are also counted
    (:func:`weightwise.clock.follow`), so a scheduled bound (``MaxNorm(schedule)``) is
    evaluated after update ``k`` (counting from 0) at step ``k + 1``, the step the next
    forward pass runs at, as in ``fit``.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> opt = torch.optim.SGD(model.parameters(), lr=1.0)
    >>> handle = constrain(model, {"0.weight": "max_norm"}, optimizer=opt)
    >>> binding.rule_of(model[0], "weight").constraint
    MaxNorm(max_value=2, axis=1)
    >>> model(torch.ones(1, 3)).sum().mul(100).backward()
    >>> opt.step()
    >>> bool((model[0].weight.norm(dim=1) <= 2 + 1e-6).all())
    True
    """
    _check_optimizer(optimizer)
    handle = _attach(module, rules, "constraint", strict, _layout_aware)
    if optimizer is not None:
        # Counted first, so a scheduled bound projects at the step the next forward pass reads, as in fit.
        clock.follow(optimizer)
        hook = optimizer.register_step_post_hook(_project_after_step(module))
        handle._undo.insert(0, hook.remove)
    return handle


def _project_after_step(module: torch.nn.Module) -> Callable[..., None]:
    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # Only what this optimizer holds (parameter groups may change), and only what got a gradient.
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        binding.apply_constraints(module, only_with_grad=True, among=held)

    return hook


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    if isinstance(output, Mapping):
        return [t for item in output.values() for t in _tensors(item)]
    return []


class _ActivityHook:
    """The forward hook of :func:`regularize_activity`; a class rather than a closure, so that a
    model carrying it pickles (``torch.save(model)``, spawned processes)."""

    def __init__(self, regularizer: Any, slot: object) -> None:
        self.regularizer = regularizer
        self.slot = slot

    def __call__(self, mod: torch.nn.Module, inputs: Any, output: Any) -> None:
        # Each forward replaces this hook's penalties; a deepcopy's hook writes to the copy.
        # Integer outputs (indices, masks) carry no activity to penalize; complex ones count by |z|.
        penalties = [binding.activity_penalty(self.regularizer, t) for t in _tensors(output)
                     if t.is_floating_point() or t.is_complex()]
        binding.replace_call_losses(mod, self.slot, penalties)


def regularize_activity(module: torch.nn.Module, regularizer: Any) -> Handle:
    """Penalize ``module``'s output with ``regularizer``, divided by the batch size (Keras's activity rule).

    A forward hook records the penalty of each output tensor; each forward replaces the
    previous one. :func:`regularization_loss` includes it.

    >>> import torch
    >>> layer = torch.nn.Linear(2, 3)
    >>> handle = regularize_activity(layer, "l1")
    >>> _ = layer(torch.ones(4, 2))
    >>> len(binding.call_losses(layer))
    1
    """
    binding.check_module(module)
    resolved = regularizers.get(regularizer)
    if resolved is None:
        raise ValueError("Invalid value for argument `regularizer`: None penalizes nothing. Received: regularizer=None")
    regularizers._check_activity(resolved)
    slot = object()  # this call's slot among the module's call losses
    removable = module.register_forward_hook(_ActivityHook(resolved, slot))
    # A plain, visible record of the rule, for describe().
    module.__dict__.setdefault(ACTIVITY_RULES_ATTR, []).append(resolved)

    def undo() -> None:
        removable.remove()
        binding.replace_call_losses(module, slot, [])
        rules = module.__dict__.get(ACTIVITY_RULES_ATTR, [])
        rules[:] = [r for r in rules if r is not resolved]

    return Handle(matched=[type(module).__name__], _undo=[undo])


def describe(module: torch.nn.Module) -> str:
    """A table of every parameter with its shape and its bound regularizer and constraint.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> _ = regularize(model, {"0.weight": "l2"})
    >>> print(describe(model))
    parameter  shape   trainable  regularizer   constraint
    0.weight   (2, 3)  yes        L2(l2=0.01)   -
    0.bias     (2,)    yes        -             -
    """
    rows = [("parameter", "shape", "trainable", "regularizer", "constraint")]
    for target in _targets(binding.check_module(module)):
        rule = binding.rule_of(target.owner, target.attr)
        rows.append((
            target.name,
            str(tuple(target.param.shape)),
            "yes" if target.param.requires_grad else "no",
            repr(rule.regularizer) if rule is not None and rule.regularizer is not None else "-",
            repr(rule.constraint) if rule is not None and rule.constraint is not None else "-",
        ))
    for prefix, owner in module.named_modules():
        activity = list(owner.__dict__.get(ACTIVITY_RULES_ATTR, []))
        if getattr(owner, "activity_regularizer", None) is not None:
            activity.append(owner.activity_regularizer)
        for rule in activity:
            rows.append((f"{prefix or '(model)'} (output)", "-", "-", f"activity: {rule!r}", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
