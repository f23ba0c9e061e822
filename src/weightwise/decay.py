"""Weight decay by rule, for any torch model and any torch optimizer.

``decay(model, 0.01, optimizer=opt)`` decays what people mean by "weights": the
matrices and filters of linear, convolution, attention and recurrent layers. What is
left out is decided by module type and tensor rank, never by parameter name: biases,
every normalization layer's parameters, embedding tables, PReLU slopes and any
parameter of rank 0 or 1. ``handle.describe()`` shows what decays and what was left
out, and why. Selectors mapped to factors choose by hand instead, with the selectors
of :func:`weightwise.regularize`.

Before each ``optimizer.step()`` (a step pre-hook), each decayed parameter that has a
gradient is updated, with ``wd`` its factor and ``lr`` the learning rate of its
parameter group:

- ``"decoupled"``: ``w <- w - lr * wd * w``, as ``torch.optim.AdamW`` and Keras's
  ``weight_decay`` do;
- ``"independent"``: ``w <- w - wd * w``, not scaled by the learning rate;
- ``"l2"``: ``grad <- grad + wd * w``, the coupled decay of torch's ``weight_decay``
  argument (the gradient of ``wd / 2 * ||w||^2``).

>>> import torch
>>> import weightwise as ww
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
>>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
>>> handle = ww.decay(model, 0.01, optimizer=opt)  # as AdamW(weight_decay=0.01), on the two matrices only
>>> handle.matched
['0.weight', '2.weight']
>>> handle.left_out["1.weight"]
'normalization layer LayerNorm'
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from weightwise import binding, clock, factors, ops
from weightwise.arguments import echo
from weightwise.interop import (
    _RECURRENT_NAME,
    Handle,
    _check_strict,
    _describe_selector,
    _hits,
    _rule_items,
    _Target,
    _targets,
)
from weightwise.layers.activation_layers import PReLU
from weightwise.layers.core import KernelLayer
from weightwise.layers.depthwise_conv import DepthwiseBase
from weightwise.layers.embedding import Embedding
from weightwise.layers.identity import UnitNormalization
from weightwise.layers.normalization import GammaBetaLayer
from weightwise.layers.rnn.cell import RecurrentCell
from weightwise.optimizers import Optimizer

__all__ = ["DecayHandle", "decay", "decayable"]

MODES = ("decoupled", "independent", "l2")
# Where decay() records, on each module that owns a decayed parameter, the factor and mode of each
# handle that decays it: ``{attr: [(factor, mode), ...]}``, a plain attribute for reports to read.
DECAYS_ATTR = "_weight_decays"

# Module types whose parameters never decay (a bare factor leaves them out).
_NORMALIZATION: tuple[type, ...] = (
    torch.nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm, torch.nn.LocalResponseNorm, torch.nn.CrossMapLRN2d,
    GammaBetaLayer,  # BatchNormalization, LayerNormalization, GroupNormalization
    UnitNormalization,
)
_EMBEDDING: tuple[type, ...] = (torch.nn.Embedding, torch.nn.EmbeddingBag, Embedding)
_PRELU: tuple[type, ...] = (torch.nn.PReLU, PReLU)

# Known layers: which parameter slots are their weights and which their biases. A bias of rank 2
# (GRU's with reset_after, EinsumDense's over several axes, MultiheadAttention's bias_k) is still
# a bias. Any other slot falls to the rank rule.
_KNOWN: list[tuple[tuple[type, ...], tuple[str, ...], tuple[str, ...]]] = [
    ((torch.nn.Linear, torch.nn.Bilinear, torch.nn.modules.conv._ConvNd), ("weight",), ("bias",)),
    ((torch.nn.MultiheadAttention,), ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"),
     ("in_proj_bias", "bias_k", "bias_v")),
    ((torch.nn.RNNCellBase,), ("weight_ih", "weight_hh"), ("bias_ih", "bias_hh")),
    ((KernelLayer,), ("kernel",), ("bias",)),  # Dense, EinsumDense, Conv*, Conv*Transpose
    ((DepthwiseBase,), ("kernel", "depthwise_kernel", "pointwise_kernel"), ("bias",)),
    ((RecurrentCell,), ("kernel", "recurrent_kernel"), ("bias",)),  # SimpleRNN, LSTM, GRU, ConvLSTM cells
]


def _role(module: torch.nn.Module, attr: str) -> str | None:
    """``"weight"`` or ``"bias"`` for a slot of a known layer type, else ``None``."""
    if isinstance(module, torch.nn.RNNBase):
        match = _RECURRENT_NAME.fullmatch(attr)
        return None if match is None else match.group(1)
    for types, weights, biases in _KNOWN:
        if isinstance(module, types):
            if attr in weights:
                return "weight"
            if attr in biases:
                return "bias"
    return None


def _verdict(module: torch.nn.Module, attr: str, param: torch.Tensor) -> tuple[bool, str]:
    """Whether a bare factor decays ``module.attr``, and why, by module type and rank."""
    kind = type(module).__name__
    rank = param.dim()
    if isinstance(module, _NORMALIZATION):
        return False, f"normalization layer {kind}"
    if isinstance(module, _EMBEDDING):
        return False, f"embedding table of {kind}"
    if isinstance(module, _PRELU):
        return False, f"PReLU slope of {kind}"
    role = _role(module, attr)
    if role == "bias":
        return False, f"bias of {kind} (rank {rank})"
    if rank <= 1:
        return False, f"rank-{rank} parameter of {kind}"
    if role == "weight":
        return True, f"{attr} of {kind}"
    return True, f"rank-{rank} parameter of unknown type {kind}: decayed by rank"


def decayable(name: str, param: torch.Tensor, module: torch.nn.Module) -> bool:
    """The selector a bare factor uses: whether ``param`` (``module``'s ``name``) is a weight to decay.

    It decides by module type and tensor rank, never by name. Left out: every
    parameter of a normalization layer (torch's BatchNorm, InstanceNorm,
    LayerNorm, GroupNorm, RMSNorm, and weightwise's BatchNormalization,
    LayerNormalization, GroupNormalization), of an embedding (``nn.Embedding``,
    ``nn.EmbeddingBag``, weightwise's ``Embedding``) and of PReLU; the biases of
    known layers (of any rank); any parameter of rank 0 or 1. Decayed: the weights
    of linear, convolution, attention and recurrent layers (torch's and
    weightwise's kernels), and any other parameter of rank 2 or more.

    ``name`` may be the qualified name (selectors get that); only its last part, the
    slot on ``module``, is used. Use it in a rule mapping to decay the weights and
    something else: ``{decayable: 0.01, "head.bias": 0.001}``.

    >>> import torch
    >>> linear, norm = torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)
    >>> decayable("weight", linear.weight, linear), decayable("bias", linear.bias, linear)
    (True, False)
    >>> decayable("norm.weight", norm.weight, norm)
    False
    """
    return _verdict(module, name.rpartition(".")[2], param)[0]


@dataclass
class DecayHandle(Handle):
    """What one :func:`decay` call attached: what decays, with which factor, and what was left out and why.

    ``matched`` lists the decayed parameters' qualified names; ``factors`` maps each
    to its factor (a float or a schedule); ``left_out`` maps every other parameter
    of the module to the reason; ``mode`` is the decay's mode. ``remove()`` takes
    the hook off the optimizer (also as a context manager, on exit).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> handle = decay(model, 0.1, optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    >>> print(handle.describe())
    parameter  shape   decay            why
    0.weight   (2, 3)  0.1 (decoupled)  weight of Linear
    0.bias     (2,)    -                bias of Linear (rank 1)
    >>> handle.remove()
    """

    mode: str = "decoupled"
    factors: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    _rows: list[tuple[str, str, str, str]] = field(default_factory=list, repr=False)

    def describe(self) -> str:
        """A table, in the module's parameter order: name, shape, factor and mode (or ``-``), and why."""
        rows = [("parameter", "shape", "decay", "why"), *self._rows]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _factor_text(factor: Any) -> str:
    if clock.is_scheduled(factor):
        return f"schedule {getattr(factor, '__name__', None) or type(factor).__name__}"
    return f"{factor:g}"


def _checked_factor(value: Any, rule: str | None) -> Any:
    """``value`` as a decay factor: a float >= 0 or a schedule; in a rule, ``None`` too ("leave out")."""
    if value is None and rule is not None:
        return None
    return factors.factor(value, "rules", owner="" if rule is None else f"decay rule {rule}")


def _checked_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"Invalid value for argument `mode`: expected one of {MODES}. Received: mode={echo(mode)}"
        )
    return mode


def _torch_optimizer(optimizer: Any) -> tuple[torch.optim.Optimizer, Callable[[], int] | None]:
    """The torch optimizer to hook, and for a weightwise optimizer, the step its schedules are read at."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer, None
    if isinstance(optimizer, Optimizer):
        if not optimizer.built:
            raise ValueError(
                f"Invalid value for argument `optimizer`: the weightwise optimizer {optimizer.name!r} is not built "
                "yet, so the parameters it updates are not known. Build it first, e.g. "
                f"`optimizer.build(model.trainable_weights)`. Received: optimizer={echo(optimizer)}"
            )
        if optimizer.torch_optimizer is None:
            raise ValueError(
                f"Invalid value for argument `optimizer`: {optimizer.name!r} was built with no parameters, so it "
                f"updates nothing to decay. Received: optimizer={echo(optimizer)}"
            )
        # Its iterations before the update: the step its learning rate schedule reads too.
        return optimizer.torch_optimizer, lambda: optimizer.iterations
    raise TypeError(
        "Invalid value for argument `optimizer`: expected a torch.optim.Optimizer or a weightwise optimizer. "
        f"Received: optimizer={echo(optimizer)}"
    )


def _plan(module: torch.nn.Module, rules: Any, strict: bool) -> list[tuple[_Target, Any, str]]:
    """Per parameter of ``module``: its target, its factor (``None``: left out) and why."""
    targets = _targets(module)
    verdicts = {t.name: _verdict(t.owner, t.attr, t.param) for t in targets}
    if clock.is_scheduled(rules) or isinstance(rules, numbers.Number):
        factor = _checked_factor(rules, None)
        plan = []
        for t in targets:
            decays, why = verdicts[t.name]
            if decays and factor == 0:
                decays, why = False, f"factor 0 ({why})"
            plan.append((t, factor if decays else None, why))
        return plan
    if rules is None:
        raise TypeError("Invalid value for argument `rules`: expected a factor (a float >= 0 or a schedule) or a dict "
                        "of selectors to factors. Received: rules=None")
    items = [(selector, _checked_factor(value, _describe_selector(selector))) for selector, value in _rule_items(rules)]
    chosen: dict[str, tuple[Any, Any]] = {}
    for selector, factor in items:
        for t in _hits(selector, targets, module, "decay", strict):  # a later rule overrides an earlier one
            chosen[t.name] = (selector, factor)
    plan = []
    for t in targets:
        if t.name not in chosen:
            decays, why = verdicts[t.name]
            plan.append((t, None, "no rule selects it" + ("" if decays else f" ({why})")))
            continue
        selector, factor = chosen[t.name]
        if factor is None or factor == 0:
            plan.append((t, None, f"rule {_describe_selector(selector)} leaves it out"))
        else:
            plan.append((t, factor, f"rule {_describe_selector(selector)}"))
    return plan


class _StepDecay:
    """The step pre-hook: the decay of the parameters that have a gradient, in one foreach op per group.

    Parameters are grouped once by factor (and by tensor layout, for sharded ones); each step
    they are split by the optimizer's parameter group (whose ``lr`` applies), found through a
    map rebuilt only when the groups change.
    """

    def __init__(self, entries: list[tuple[torch.Tensor, Any]], mode: str, step: Callable[[], int]) -> None:
        buckets: dict[tuple[str, Any, Any], tuple[Any, list[torch.Tensor]]] = {}
        for param, factor in entries:
            key = ("schedule", id(factor)) if clock.is_scheduled(factor) else ("float", factor)
            # One foreach op takes tensors of one layout: plain, or DTensors of one mesh and placements.
            buckets.setdefault((*key, ops._layout(param)), (factor, []))[1].append(param)
        self.buckets = list(buckets.values())
        self.mode = mode
        self.step = step
        self._layout: tuple[tuple[int, int], ...] = ()
        self._group_of: dict[int, int] = {}

    def _groups(self, optimizer: torch.optim.Optimizer) -> dict[int, int]:
        layout = tuple((id(g), len(g["params"])) for g in optimizer.param_groups)
        if layout != self._layout:
            self._group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
            self._layout = layout
        return self._group_of

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        group_of = self._groups(optimizer)
        with torch.no_grad():
            for factor, params in self.buckets:
                if clock.is_scheduled(factor):
                    with clock.at_step(self.step()):
                        wd = factors.factor_value(factor, "rules")
                else:
                    wd = factor
                if not wd:
                    continue
                by_group: dict[int, list[torch.Tensor]] = {}
                for p in params:
                    index = group_of.get(id(p))
                    if p.grad is not None and index is not None:
                        by_group.setdefault(index, []).append(p)
                for index, held in by_group.items():
                    if self.mode == "l2":
                        torch._foreach_add_([p.grad for p in held], held, alpha=wd)
                    elif self.mode == "independent":
                        torch._foreach_mul_(held, 1 - wd)
                    else:  # as torch.optim.AdamW: param.mul_(1 - lr * weight_decay)
                        torch._foreach_mul_(held, 1 - optimizer.param_groups[index]["lr"] * wd)


def _record(target: _Target, factor: Any, mode: str) -> Callable[[], None]:
    entry = (factor, mode)
    record = target.owner.__dict__.setdefault(DECAYS_ATTR, {}).setdefault(target.attr, [])
    record.append(entry)

    def undo() -> None:
        decays = target.owner.__dict__.get(DECAYS_ATTR, {})
        kept = [e for e in decays.get(target.attr, []) if e is not entry]
        if kept:
            decays[target.attr] = kept
        else:
            decays.pop(target.attr, None)

    return undo


def decay(module: torch.nn.Module, rules: Any, *, optimizer: Any, mode: str = "decoupled",
          strict: bool = True) -> DecayHandle:
    """Decay ``module``'s weights at every step of ``optimizer``, chosen by type and rank or by rule.

    ``rules`` is either

    - a factor (a float ``>= 0`` or a schedule of the step): the weights that
      :func:`decayable` selects decay by it: linear, convolution, attention and
      recurrent matrices and filters, and any parameter of rank >= 2 of a module
      type not known here (``describe()`` says so); biases, normalization layers,
      embeddings, PReLU slopes and parameters of rank <= 1 are left out;
    - or selectors mapped to factors (a dict, or a list of pairs), with the
      selectors of :func:`weightwise.regularize`: names, globs, ``(type, attr)``
      pairs, predicates (``decayable`` is one). A later rule overrides an earlier
      one for the parameters both select; a factor of 0 or ``None`` leaves them out,
      so exclusions are written as rules. A rule that selects nothing is a
      ``ValueError`` unless ``strict=False``.

    Before each ``optimizer.step()``, every decayed parameter that has a gradient
    (as in ``torch.optim.AdamW``) is decayed, ``lr`` being its parameter group's
    learning rate at that step and ``wd`` its factor:

    - ``mode="decoupled"``: ``w <- w - lr * wd * w`` (AdamW's and Keras's rule, so
      ``torch.optim.Adam`` with ``decay(model, wd)`` is ``torch.optim.AdamW(weight_decay=wd)``
      on the decayed parameters);
    - ``mode="independent"``: ``w <- w - wd * w`` (not scaled by the learning rate);
    - ``mode="l2"``: ``grad <- grad + wd * w``, torch's coupled ``weight_decay``
      (the ``.grad`` keeps the added term after the step).

    A scheduled factor is evaluated at the step: for a torch optimizer, the step of
    :mod:`weightwise.clock`, which then follows the optimizer (its own count of
    steps taken, written after each); for a weightwise optimizer, its
    ``iterations`` before the update, as its learning rate schedule. ``optimizer`` is a ``torch.optim.Optimizer`` or a built
    weightwise optimizer (its ``torch_optimizer`` is hooked, after its clipping and
    its own ``weight_decay``). It must hold every trainable parameter that decays;
    a frozen one it does not hold is left out. Bad input (an unknown ``mode``, a
    negative factor, parameters the optimizer does not hold, something that is not
    an optimizer) is a ``ValueError`` or ``TypeError`` naming the argument, and
    nothing is attached. ``handle.remove()`` takes the decay off; calling
    ``decay`` again adds a second decay rather than replacing the first.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.5)
    >>> handle = decay(model, {"*.weight": 0.1, "2.*": 0}, optimizer=opt, mode="independent")
    >>> print(handle.describe())
    parameter  shape   decay              why
    0.weight   (2, 2)  0.1 (independent)  rule '*.weight'
    0.bias     (2,)    -                  no rule selects it (bias of Linear (rank 1))
    1.weight   (2,)    0.1 (independent)  rule '*.weight'
    1.bias     (2,)    -                  no rule selects it (normalization layer BatchNorm1d)
    2.weight   (1, 2)  -                  rule '2.*' leaves it out
    2.bias     (1,)    -                  rule '2.*' leaves it out
    >>> before = model[0].weight.detach().clone()
    >>> for p in model.parameters():
    ...     p.grad = torch.zeros_like(p)
    >>> opt.step()
    >>> torch.allclose(model[0].weight, 0.9 * before)
    True
    >>> handle.remove()
    """
    binding.check_module(module)
    mode = _checked_mode(mode)
    _check_strict(strict)
    torch_optimizer, own_step = _torch_optimizer(optimizer)
    plan = _plan(module, rules, strict)

    held = {id(p) for group in torch_optimizer.param_groups for p in group["params"]}
    missing = [t.name for t, factor, _ in plan if factor is not None and id(t.param) not in held
               and t.param.requires_grad]
    if missing:
        raise ValueError(
            f"Invalid value for argument `optimizer`: {type(torch_optimizer).__name__} does not update "
            f"{len(missing)} of the parameters to decay: {missing[:5]}{' ...' if len(missing) > 5 else ''}. Create "
            f"it over them (e.g. `model.parameters()`), or leave them out with a rule. Received: optimizer={echo(optimizer)}"
        )

    handle = DecayHandle(mode=mode)
    entries: list[tuple[torch.Tensor, Any]] = []
    for target, factor, why in plan:
        shape = str(tuple(target.param.shape))
        if factor is not None and id(target.param) not in held:
            factor, why = None, f"frozen and not held by the optimizer ({why})"
        if factor is None:
            handle.left_out[target.name] = why
            handle._rows.append((target.name, shape, "-", why))
            continue
        handle.matched.append(target.name)
        handle.factors[target.name] = factor
        handle._rows.append((target.name, shape, f"{_factor_text(factor)} ({mode})", why))
        entries.append((target.param, factor))
        handle._undo.append(_record(target, factor, mode))

    if entries:
        hook = torch_optimizer.register_step_pre_hook(_StepDecay(entries, mode, own_step or clock.step))
        handle._undo.insert(0, hook.remove)
        if own_step is None and any(clock.is_scheduled(factor) for _, factor in entries):
            clock.follow(torch_optimizer)
    return handle


# `weightwise.decay` is this function, so the default rule is reachable from it as a selector.
decay.decayable = decayable  # type: ignore[attr-defined]
