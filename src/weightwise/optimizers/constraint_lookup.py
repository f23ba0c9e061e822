"""The constraints and proximal regularizers bound to bare parameters, for ``Optimizer.apply``.

Keras applies ``variable.constraint`` after each update of a variable. Here a
constraint is bound to a slot of the module that owns the parameter
(:mod:`weightwise.binding`), and ``apply`` receives the parameters alone. A layer's
weight (a :class:`weightwise.Variable`) knows its owner; the owners of other parameters
(plain torch modules with bound rules) are found once by a scan of the live modules that
carry bindings, cached until any binding changes (:func:`weightwise.binding.version`) or a
bound slot is given another parameter. The steps themselves are
:func:`weightwise.binding.apply_proximal` and :func:`weightwise.binding.apply_constraints`,
restricted to the parameters asked for.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterable
from typing import Any

import torch

from weightwise import binding, clock

__all__ = ["after_update"]

# id(param) -> (weakref to the param, weakref to its owning module, its name there).
_Entry = tuple["weakref.ref[torch.Tensor]", "weakref.ref[torch.nn.Module]", str]
_CACHE: dict[str, object] = {"version": None, "owners": {}}


def _scan() -> dict[int, _Entry]:
    owners: dict[int, _Entry] = {}
    for obj in gc.get_objects():
        if not issubclass(type(obj), torch.nn.Module):  # type(), not isinstance: never asks a proxy for its __class__
            continue
        rules = obj.__dict__.get(binding.RULES_ATTR)
        for name in rules or ():
            param = obj._parameters.get(name)
            if param is not None and id(param) not in owners:
                owners[id(param)] = (weakref.ref(param), weakref.ref(obj), name)
    return owners


def _stale(owners: dict[int, _Entry]) -> bool:
    """Whether a live module's bound slot now holds a parameter other than the one recorded."""
    for param_ref, module_ref, name in owners.values():
        module = module_ref()
        if module is not None and module._parameters.get(name) is not param_ref():
            return True
    return False


def _own_owner(param: torch.Tensor) -> tuple[torch.nn.Module, str] | None:
    """The module and slot a layer weight records as its home, if it is still there."""
    state = getattr(param, "__dict__", {})
    owner, slot = state.get("_owner"), state.get("_slot")
    if isinstance(owner, torch.nn.Module) and owner._parameters.get(slot) is param:
        return owner, slot
    return None


def _owners() -> dict[int, _Entry]:
    owners = _CACHE["owners"]
    assert isinstance(owners, dict)
    if _CACHE["version"] != binding.version() or _stale(owners):
        owners = _scan()
        _CACHE.update(version=binding.version(), owners=owners)
    return owners


def after_update(params: Iterable[torch.Tensor], lr: Any = None, step: int | None = None) -> None:
    """Finish the update of ``params`` in place: the proximal step, then the constraint, bound to each.

    ``lr`` is the learning rate of the update just taken, or the optimizer that took it (see
    :func:`weightwise.binding.apply_proximal`); with ``None`` only constraints are applied.
    Scheduled proximal factors are read at ``step`` (the step of the update, as its penalty
    was), or at :func:`weightwise.clock.step` when it is ``None``; constraints read the
    current step. Parameters with neither rule are left alone.

    >>> from weightwise.binding import bind
    >>> from weightwise.regularizers import ProximalL1
    >>> linear = torch.nn.Linear(2, 1)
    >>> bind(linear, "bias", regularizer=ProximalL1(0.5), constraint="non_neg")
    >>> with torch.no_grad():
    ...     _ = linear.bias.fill_(-2.0)
    >>> after_update([linear.weight, linear.bias], lr=1.0)  # -2.0 -> -1.5 -> 0.0
    >>> linear.bias.item()
    0.0
    """
    for module, among in _homes(params):
        if lr is not None:
            with clock.at_step(clock.step() if step is None else step):
                binding.apply_proximal(module, lr, among=among)
        binding.apply_constraints(module, among=among)


def _homes(params: Iterable[torch.Tensor]) -> list[tuple[torch.nn.Module, set[int]]]:
    """The modules that bind rules to ``params``, each with the ids of the ones it binds."""
    by_module: dict[int, tuple[torch.nn.Module, set[int]]] = {}
    strangers = []
    for param in params:
        home = _own_owner(param)
        if home is None:
            strangers.append(param)
        elif binding.rule_of(*home) is not None:
            by_module.setdefault(id(home[0]), (home[0], set()))[1].add(id(param))
    owners = _owners() if strangers else {}
    for param in strangers:
        entry = owners.get(id(param))
        if entry is None or entry[0]() is not param:
            continue
        module = entry[1]()
        if module is None:
            continue
        by_module.setdefault(id(module), (module, set()))[1].add(id(param))
    return list(by_module.values())
