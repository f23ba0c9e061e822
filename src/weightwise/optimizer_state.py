"""Saving and loading an optimizer's state in Keras 3's variable layout.

:class:`KerasStateMixin` holds ``save_own_variables`` and
``load_own_variables``, which :class:`weightwise.optimizers.Optimizer` inherits,
and the generic machinery behind them: reading and checking a store,
converting between Keras's variables and the torch optimizer's state, and
weightwise's own layout for optimizers Keras does not have. Each optimizer
class describes its own state through small hooks (``_keras_slot_blocks``,
``_stores_learning_rate``, ``_torch_keeps_step``, ...). This module knows no
optimizer class: :mod:`weightwise.optimizers` imports it, not the reverse.

The layout is Keras's: a store of arrays keyed ``"0"``, ``"1"``, ...

- ``"0"``: Keras's ``_iterations``, an int32 scalar (every call, micro-batches
  that only accumulate included: ``iterations`` times
  ``gradient_accumulation_steps`` plus the calls of the open window);
- ``"1"``: the learning rate, a float32 scalar, only for a float rate (Keras
  keeps no variable for a schedule or a callable);
- with ``use_ema``, each parameter's moving ``average``; then with
  ``gradient_accumulation_steps``, each parameter's ``gradient_accumulator``;
- then, for the Keras-named optimizers, Keras's per-variable slots, block by
  block and, within a block, parameter by parameter (Adam: each parameter's
  ``momentum`` and ``velocity``, then with ``amsgrad`` each ``velocity_hat``);
  for any other optimizer, weightwise's own layout: for each parameter, the
  values of its torch state in sorted key order.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from weightwise.ops import convert_to_numpy

__all__ = ["KerasStateMixin"]


# -- helpers ---------------------------------------------------------------------------
class _Slot(NamedTuple):
    """One of Keras's per-variable optimizer variables and where torch keeps its value.

    Keras's value is ``lr_sign * lr * torch_value`` where ``lr_sign`` is nonzero (a
    momentum that torch keeps in gradient units and Keras in weight units, ``lr``
    being the rate the torch buffer is expressed in), else ``torch_value - offset``.
    """

    name: str  # Keras's variable name suffix: ``{variable}_{name}``
    torch_key: str  # key in ``torch_optimizer.state[param]``
    lr_sign: float = 0.0
    offset: float = 0.0
    initial: float = 0.0  # Keras's initial value, written while torch has no state yet


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    # A copy: the store must not alias the live optimizer state.
    return convert_to_numpy(value).copy()


def _read_store(store: Any, owner: str) -> list[np.ndarray]:
    """The arrays ``store['0'], store['1'], ...`` of a Keras variable store, checked to be numbered from 0."""
    if not (hasattr(store, "keys") and hasattr(store, "__getitem__")):
        raise TypeError(
            "Invalid value for argument `store`: expected a mapping of '0', '1', ... to arrays (a dict, or the "
            f"store Keras's saving passes). Received: store={_short_repr(store)}"
        )
    # Keras's H5 stores have keys() and item access but are not iterable like a dict.
    keys = [str(key) for key in store.keys()]  # noqa: SIM118
    if sorted(keys) != sorted(str(i) for i in range(len(keys))):
        raise ValueError(
            f"Cannot load the state of {owner}: the store's keys must be '0', '1', ..., "
            f"'{len(keys) - 1}' as Keras writes them. Received keys: {sorted(keys)}. Nothing was changed."
        )
    arrays = []
    for i in range(len(keys)):
        array = np.array(store[str(i)])
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"Cannot load the state of {owner}: store['{i}'] must be a numeric array. Received an array of "
                f"dtype {array.dtype}: {_short_repr(array)}. Nothing was changed."
            )
        arrays.append(array)
    return arrays


def _read_iterations(array: np.ndarray, owner: str) -> int:
    value = array.item()
    if isinstance(value, bool) or not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(
            f"Cannot load the state of {owner}: store['0'] (iterations) must be a non-negative whole number. "
            f"Received: {value!r}. Nothing was changed."
        )
    return int(value)


def _layout_mismatch(owner: str, expected: str, arrays: list[np.ndarray]) -> ValueError:
    received = [tuple(array.shape) for array in arrays]
    return ValueError(
        f"Cannot load the state of {owner}: {expected}. The store holds {len(arrays)} entries, with shapes "
        f"{received}. Nothing was changed."
    )


def _state_shape(value: Any) -> tuple[int, ...]:
    """The shape an entry of a torch state is saved with: a tensor's, or ``()`` for a number."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def _torch_step(template: Any, group: Mapping[str, Any], param: torch.Tensor, value: int) -> torch.Tensor:
    """A per-parameter ``step`` tensor in the form the torch optimizer makes it."""
    if isinstance(template, torch.Tensor):
        return torch.tensor(float(value), dtype=template.dtype, device=template.device)
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    if group.get("fused"):
        return torch.tensor(float(value), dtype=torch.float32, device=param.device)
    if group.get("capturable"):
        return torch.tensor(float(value), dtype=scalar, device=param.device)
    return torch.tensor(float(value), dtype=scalar)


# -- the mixin -------------------------------------------------------------------------
class KerasStateMixin:
    """``save_own_variables`` and ``load_own_variables`` in Keras 3's variable layout.

    The base of :class:`weightwise.optimizers.Optimizer`, which provides what
    the mixin reads and sets: ``name``, ``built``, ``iterations``,
    ``torch_optimizer``, ``learning_rate`` (settable), ``_params``,
    ``_learning_rate``, ``_last_step_lr`` and :meth:`_rate_at`. A class
    describes its own state by overriding the hooks ``_keras_slot_blocks``,
    ``_stores_learning_rate`` and ``_torch_keeps_step``.

    >>> from weightwise.optimizers import Adam
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = Adam(learning_rate=0.5)
    >>> isinstance(opt, KerasStateMixin)
    True
    >>> opt.build([w])
    >>> w.grad = torch.tensor([0.5, 0.5])
    >>> opt.step()
    True
    >>> store = {}
    >>> opt.save_own_variables(store)  # iterations, learning_rate, w's momentum and velocity
    >>> sorted(store)
    ['0', '1', '2', '3']
    >>> twin_w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> twin = Adam(learning_rate=0.5)
    >>> twin.build([twin_w])
    >>> twin.load_own_variables(store)
    >>> twin.iterations, twin.torch_optimizer.state[twin_w]["exp_avg"]
    (1, tensor([0.0500, 0.0500]))
    """

    # What the host class provides (Optimizer sets them in __init__ and build).
    name: str
    built: bool
    iterations: int
    _iterations: int
    use_ema: bool
    gradient_accumulation_steps: int | None
    torch_optimizer: torch.optim.Optimizer | None
    learning_rate: float
    _params: list[torch.Tensor]
    _learning_rate: Any
    _last_step_lr: float | None

    def _rate_at(self, schedule: Any, step: int) -> float:
        """The learning rate the schedule or callable ``schedule`` gives at ``step``; the host class evaluates it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `_rate_at(schedule, step)`.")

    # Whether the torch optimizer keeps a per-parameter "step" (Keras counts `iterations` only).
    _torch_keeps_step: bool = False

    def _keras_slot_blocks(self) -> list[list[_Slot]] | None:
        """Keras's per-variable optimizer variables, in Keras's order.

        Each block lists the slots that Keras creates together, interleaved per
        model variable (Adam: ``[[momentum, velocity], [velocity_hat]]``). ``None``
        means this is not one of Keras's classes: the torch state is then saved
        in weightwise's own layout (see :meth:`save_own_variables`).
        """
        return None

    def _stores_learning_rate(self) -> bool:
        """Whether Keras keeps the learning rate in a variable: for a float rate, not a schedule or callable."""
        return isinstance(self._learning_rate, float)

    def _own_variables(self) -> list[tuple[str, str]]:
        """Keras's per-variable optimizer variables that the optimizer keeps itself, not torch, in Keras's order.

        Each is ``(Keras's name suffix, the attribute holding one tensor per
        parameter)``: the moving averages with ``use_ema``, then the gradient
        accumulators with ``gradient_accumulation_steps`` (Keras's ``build``
        creates them in that order, before the class's own slots).
        """
        own = []
        if getattr(self, "use_ema", False):
            own.append(("average", "_model_variables_moving_average"))
        if getattr(self, "gradient_accumulation_steps", None):
            own.append(("gradient_accumulator", "_accumulated_gradients"))
        return own

    def _updates_in(self, calls: int) -> int:
        """How many updates ``calls`` calls made (Keras's ``iterations`` from its ``_iterations``)."""
        steps = getattr(self, "gradient_accumulation_steps", None)
        return calls // steps if steps else calls

    def _describe(self) -> str:
        return f"optimizer {self.name!r} ({type(self).__name__})"

    def _momentum_lr(self) -> float:
        """The learning rate torch's lr-free momentum buffer is currently expressed in."""
        return self._last_step_lr or self.learning_rate

    def _keras_layout(self, blocks: list[list[_Slot]]) -> list[tuple[str, tuple[int, ...]]]:
        """``(label, shape)`` of every variable Keras's optimizer holds, in its order."""
        layout = self._head_layout()
        for block in blocks:
            for index, param in enumerate(self._params):
                for slot in block:
                    layout.append((f"{slot.name} of parameter {index}", tuple(param.shape)))
        return layout

    def _head_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(label, shape)`` of the entries before the torch state: the count, the rate, the own variables."""
        layout = [("iterations", ())]
        if self._stores_learning_rate():
            layout.append(("learning_rate", ()))
        for name, _ in self._own_variables():
            layout.extend((f"{name} of parameter {index}", tuple(p.shape)) for index, p in enumerate(self._params))
        return layout

    def _torch_state_values(self) -> list[np.ndarray]:
        """Weightwise's own layout: per parameter, its torch state's values in sorted key order."""
        values = []
        state = self.torch_optimizer.state if self.torch_optimizer is not None else {}
        for index, param in enumerate(self._torch_params()):
            entries = state.get(param, {})
            for key in sorted(entries, key=str):
                value = entries[key]
                if isinstance(value, torch.Tensor):
                    values.append(_to_numpy(value))
                elif isinstance(value, numbers.Number) and not isinstance(value, complex):
                    values.append(np.asarray(value))
                else:
                    raise TypeError(
                        f"Cannot save the state of {self._describe()}: the torch state {key!r} of parameter {index} "
                        f"is a {type(value).__name__} ({_short_repr(value)}); only tensors and numbers can be stored."
                    )
        return values

    def _torch_params(self) -> list[torch.Tensor]:
        """The parameters in the torch optimizer's order (its parameter groups, flattened)."""
        if self.torch_optimizer is None:
            return []
        return [p for group in self.torch_optimizer.param_groups for p in group["params"]]

    def save_own_variables(self, store: Any) -> None:
        """Write the optimizer's state into ``store`` as Keras 3 does: ``store["0"], store["1"], ...``.

        For SGD, Adam, AdamW, RMSprop and Adagrad the entries are exactly the
        variables Keras's optimizer of the same class and config holds at the
        same point of the same trajectory, in Keras's order and dtypes (as
        Keras writes them on its torch backend), so Keras can load them and go
        on training, as :meth:`load_own_variables` can with Keras's:

        - ``"0"``: ``iterations``, an int32 scalar;
        - ``"1"``: the learning rate, a float32 scalar, only when it is a float
          (Keras keeps no variable for a schedule or a callable);
        - then the per-parameter slot variables, in the dtype of each
          parameter; each class's docstring lists them. They are converted from
          the torch state: e.g. Keras's SGD velocity is ``-lr * momentum_buffer``
          with the rate of the last step. A slot with no torch state yet (no
          step taken) is written at Keras's initial value.

        Any other subclass (and :class:`~weightwise.optimizers.TorchOptimizer`)
        writes weightwise's own layout: ``iterations``, the learning rate as
        above, then for each parameter in order the values of its torch state
        in sorted key order (numbers as 0-d arrays; a parameter with no state
        yet adds nothing).

        Raises a ``ValueError`` if the optimizer is not built.

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = SGD(learning_rate=0.5, momentum=0.9)
        >>> opt.build([w])
        >>> w.grad = torch.tensor([0.5, 0.5])
        >>> opt.step()
        True
        >>> store = {}
        >>> opt.save_own_variables(store)
        >>> store
        {'0': array(1, dtype=int32), '1': array(0.5, dtype=float32), '2': array([-0.25, -0.25], dtype=float32)}
        """
        if not self.built:
            raise ValueError(
                f"The {self._describe()} is not built, so it has no state to save: call `build(params)` "
                "before `save_own_variables(store)`."
            )
        # Any object with string-keyed item assignment will do; an array or a list has __setitem__ but no such keys.
        if not hasattr(store, "__setitem__") or isinstance(store, (np.ndarray, torch.Tensor, list, tuple, str, bytes)):
            raise TypeError(
                "Invalid value for argument `store`: expected a mutable mapping (a dict, or the store Keras's "
                f"saving passes). Received: store={_short_repr(store)}"
            )
        values = [np.asarray(self._iterations, dtype=np.int32)]
        if self._stores_learning_rate():
            values.append(np.asarray(self._learning_rate, dtype=np.float32))
        for _, attribute in self._own_variables():
            values.extend(_to_numpy(tensor) for tensor in getattr(self, attribute))
        blocks = self._keras_slot_blocks()
        if blocks is None:
            values.extend(self._torch_state_values())
        else:
            for block in blocks:
                for param in self._params:
                    for slot in block:
                        values.append(self._keras_slot_value(param, slot))
        for index, value in enumerate(values):
            store[str(index)] = value

    def _keras_slot_value(self, param: torch.Tensor, slot: _Slot) -> np.ndarray:
        state = self.torch_optimizer.state.get(param, {}) if self.torch_optimizer is not None else {}
        value = state.get(slot.torch_key)
        with torch.no_grad():
            if not isinstance(value, torch.Tensor):
                return _to_numpy(torch.full_like(param, slot.initial))
            if slot.lr_sign:
                value = (value.to(torch.float64) * (slot.lr_sign * self._momentum_lr())).to(param.dtype)
            elif slot.offset:
                value = value - slot.offset
            return _to_numpy(value)

    def load_own_variables(self, store: Any) -> None:
        """Set the optimizer's state from ``store``, as written by :meth:`save_own_variables` or by Keras 3.

        The layout is the one :meth:`save_own_variables` writes for this
        optimizer, class and config (Keras's own, for the Keras-named classes).
        Everything is checked before anything changes: the number of entries
        and every shape must be what this built optimizer would write, else a
        ``ValueError`` names both and leaves the optimizer as it was.

        Then ``iterations``, the learning rate (when stored; a float rate that
        rounds to the stored float32 value is kept as it is), the torch state
        (with torch's per-parameter ``step`` set to ``iterations``) and the rate
        the momentum buffers are expressed in are set, so the next ``step()``
        continues the trajectory. Converting Keras's weight-unit momentum to
        torch's gradient units divides by the learning rate: with a rate that is
        not a power of two this is exact to one rounding, not bit for bit.

        The optimizer must be built first (``build(params)``, with the
        parameters in the order the state was saved), else ``ValueError``.

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([0.75, -2.25]))
        >>> opt = SGD(learning_rate=0.5, momentum=0.9)
        >>> opt.build([w])
        >>> opt.load_own_variables({"0": np.array(1), "1": np.array(0.5), "2": np.array([-0.25, -0.25])})
        >>> opt.iterations, opt.torch_optimizer.state[w]["momentum_buffer"]
        (1, tensor([0.5000, 0.5000]))
        """
        if not self.built:
            raise ValueError(
                f"The {self._describe()} is not built: build it first with `build(params)` (the parameters it "
                "trains, in the order the state was saved), then call `load_own_variables(store)`."
            )
        owner = self._describe()
        arrays = _read_store(store, owner)
        blocks = self._keras_slot_blocks()
        prefix = 2 if self._stores_learning_rate() else 1
        head = self._head_layout()
        if blocks is None:
            plan = self._plan_torch_state(arrays, head, owner)
        else:
            layout = self._keras_layout(blocks)
            bad = [
                f"store['{i}'] ({label}): expected shape {shape}, received {tuple(array.shape)}"
                for i, ((label, shape), array) in enumerate(zip(layout, arrays))
                if tuple(array.shape) != shape
            ]
            if len(arrays) != len(layout) or bad:
                raise _layout_mismatch(
                    owner,
                    f"it holds {len(layout)} variables in Keras's layout, "
                    + ", ".join(f"{label} {shape}" for label, shape in layout)
                    + (f"; mismatched: {'; '.join(bad)}" if bad and len(arrays) == len(layout) else ""),
                    arrays,
                )
        calls = _read_iterations(arrays[0], owner)
        updates = self._updates_in(calls)
        learning_rate = self._learning_rate
        if prefix == 2:
            stored = float(arrays[1].item())
            if not math.isfinite(stored) or stored < 0:
                raise ValueError(
                    f"Cannot load the state of {owner}: store['1'] (learning_rate) must be a non-negative finite "
                    f"float. Received: {stored!r}. Nothing was changed."
                )
            if np.float32(learning_rate) != np.float32(stored):
                learning_rate = stored
        # The rate torch's lr-free momentum is expressed in: the last update's, as uninterrupted training has
        # it. A schedule reads Keras's count of calls, and the last update was the last call of its window.
        if isinstance(learning_rate, float):
            current = last = learning_rate
        else:
            current = self._rate_at(learning_rate, calls)
            window = getattr(self, "gradient_accumulation_steps", None) or 1
            last = self._rate_at(learning_rate, updates * window - 1) if updates > 0 else current
        unit = last or current or 1.0

        own: dict[str, list[torch.Tensor]] = {}
        index = prefix
        with torch.no_grad():
            for _, attribute in self._own_variables():
                own[attribute] = [
                    torch.tensor(array, dtype=p.dtype, device=p.device)
                    for p, array in zip(self._params, arrays[index:index + len(self._params)])
                ]
                index += len(self._params)
        new_states: dict[torch.Tensor, dict[str, Any]] = {}
        if blocks is None:
            new_states = self._torch_states_from(plan, arrays, len(head))
        else:
            for block in blocks:
                for param in self._params:
                    for slot in block:
                        new_states.setdefault(param, {})[slot.torch_key] = self._torch_slot_value(
                            param, slot, arrays[index], unit
                        )
                        index += 1
            if self._torch_keeps_step and self.torch_optimizer is not None:
                groups = {id(p): group for group in self.torch_optimizer.param_groups for p in group["params"]}
                for param in self._params:
                    template = self.torch_optimizer.state.get(param, {}).get("step")
                    new_states.setdefault(param, {})["step"] = _torch_step(
                        template, groups[id(param)], param, updates
                    )

        # Nothing has changed so far; from here on nothing can fail. New lists, never edited in place.
        self._iterations = calls
        for attribute, tensors in own.items():
            setattr(self, attribute, tensors)
        if learning_rate is not self._learning_rate:
            self.learning_rate = learning_rate
        if self.torch_optimizer is not None:
            for param in self._torch_params():
                if new_states.get(param):
                    self.torch_optimizer.state[param] = new_states[param]
                else:
                    self.torch_optimizer.state.pop(param, None)
        self._last_step_lr = unit if updates > 0 else None

    def state_dict(self) -> dict[str, Any]:
        """The whole state in torch's form, for ``torch.save``; :meth:`load_state_dict` takes it back.

        A dict of ``"iterations"`` (Keras's count of calls, micro-batches that
        only accumulate included), ``"learning_rate"`` (a float rate; ``None``
        for a schedule or callable, which lives in the config), the moving
        averages and accumulated gradients (lists of tensors, empty when not
        used), ``"torch"`` (the torch optimizer's own ``state_dict()``, ``None``
        for an optimizer built on no parameters) and the bookkeeping that
        keeps torch's momentum and step counts Keras's. Tensors are copies.

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD(learning_rate=0.5, gradient_accumulation_steps=2)
        >>> opt.apply([torch.tensor([1.0])], [w])  # accumulated, not applied
        >>> state = opt.state_dict()
        >>> state["iterations"], state["accumulated_gradients"]
        (1, [tensor([1.])])
        """
        if not self.built:
            raise ValueError(f"The {self._describe()} is not built, so it has no state: call `build(params)` first.")
        with torch.no_grad():
            own = {attribute: [t.detach().clone() for t in getattr(self, attribute)]
                   for attribute in ("_model_variables_moving_average", "_accumulated_gradients")}
        return {
            "iterations": self._iterations,
            "learning_rate": self._learning_rate if self._stores_learning_rate() else None,
            "moving_averages": own["_model_variables_moving_average"],
            "accumulated_gradients": own["_accumulated_gradients"],
            "torch": copy.deepcopy(self.torch_optimizer.state_dict()) if self.torch_optimizer is not None else None,
            "last_step_lr": self._last_step_lr,
            "uneven_steps": getattr(self, "_uneven_steps", False),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Set the state from :meth:`state_dict` output of an optimizer of the same class, config and parameters.

        Everything is checked first (the keys, the number and shapes of the
        averages and accumulators, the torch state's groups): a mismatch is a
        ``ValueError`` and the optimizer stays as it was.

        >>> from weightwise.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD(learning_rate=0.5, gradient_accumulation_steps=2)
        >>> opt.apply([torch.tensor([1.0])], [w])
        >>> twin = SGD(learning_rate=0.5, gradient_accumulation_steps=2)
        >>> twin.build([w])
        >>> twin.load_state_dict(opt.state_dict())
        >>> twin.apply([torch.tensor([3.0])])  # updates with the mean of 1 and 3
        >>> w.detach()
        tensor([0.])
        """
        owner = self._describe()
        if not self.built:
            raise ValueError(f"The {owner} is not built: build it with its parameters, then load the state.")
        keys = {"iterations", "learning_rate", "moving_averages", "accumulated_gradients", "torch", "last_step_lr",
                "uneven_steps"}
        if not isinstance(state_dict, Mapping) or set(state_dict) != keys:
            raise ValueError(
                f"Cannot load the state of {owner}: expected the dict its state_dict() returns, with keys "
                f"{sorted(keys)}. Received: {_short_repr(state_dict)}"
            )
        calls = state_dict["iterations"]
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
            raise ValueError(f"Cannot load the state of {owner}: 'iterations' must be an int >= 0. Received: {calls!r}")
        learning_rate = state_dict["learning_rate"]
        if (learning_rate is None) == self._stores_learning_rate():
            raise ValueError(
                f"Cannot load the state of {owner}: 'learning_rate' is {learning_rate!r}, where this optimizer's rate "
                f"is {self._learning_rate!r}: a float rate is saved, a schedule or callable is not."
            )
        lists = {}
        for key, attribute in (("moving_averages", "_model_variables_moving_average"),
                               ("accumulated_gradients", "_accumulated_gradients")):
            current, given = getattr(self, attribute), state_dict[key]
            if not isinstance(given, (list, tuple)) or len(given) != len(current) or any(
                    not isinstance(t, torch.Tensor) or t.shape != c.shape for t, c in zip(given, current)):
                raise ValueError(
                    f"Cannot load the state of {owner}: {key!r} must hold {len(current)} tensors of shapes "
                    f"{[tuple(c.shape) for c in current]}. Received: {_short_repr(given)}"
                )
            lists[attribute] = [t.detach().to(dtype=c.dtype, device=c.device).clone() for t, c in zip(given, current)]
        torch_state = state_dict["torch"]
        if (torch_state is None) != (self.torch_optimizer is None):
            raise ValueError(f"Cannot load the state of {owner}: 'torch' does not match its torch optimizer.")
        if self.torch_optimizer is not None:
            self.torch_optimizer.load_state_dict(torch_state)  # torch checks the groups before changing anything
        self._iterations = calls
        if learning_rate is not None:
            self._learning_rate = float(learning_rate)
        for attribute, tensors in lists.items():
            setattr(self, attribute, tensors)
        self._last_step_lr = state_dict["last_step_lr"]
        self._uneven_steps = bool(state_dict["uneven_steps"])

    def _torch_slot_value(self, param: torch.Tensor, slot: _Slot, array: np.ndarray, unit: float) -> torch.Tensor:
        with torch.no_grad():
            if slot.lr_sign:
                value = torch.tensor(array, dtype=torch.float64) / (slot.lr_sign * unit)
                return value.to(dtype=param.dtype, device=param.device)
            value = torch.tensor(array, dtype=param.dtype, device=param.device)
            return value + slot.offset if slot.offset else value

    def _torch_state_templates(self, owner: str) -> list[list[tuple[str, Any]]]:
        """Per parameter, the ``(key, value)`` pairs of its torch state, sorted by key.

        A parameter with no state yet gets the state its torch optimizer makes on a
        first step, found by a step with zero gradients on a throwaway copy.
        """
        params = self._torch_params()
        state = self.torch_optimizer.state if self.torch_optimizer is not None else {}
        sources = {param: state.get(param) for param in params}
        if params and not all(sources.values()):
            try:
                shadow = copy.deepcopy(self.torch_optimizer)
                shadow_params = [p for group in shadow.param_groups for p in group["params"]]
                for p in shadow_params:
                    p.grad = torch.zeros_like(p)
                shadow.step()
            except Exception as error:  # any torch optimizer: report what went wrong, as a layout problem
                raise ValueError(
                    f"Cannot load the state of {owner}: the layout of the state of "
                    f"{type(self.torch_optimizer).__name__} could not be found by a trial step on a copy "
                    f"({type(error).__name__}: {error}). Take one step with it before loading."
                ) from error
            for param, copied in zip(params, shadow_params):
                if not sources[param]:
                    sources[param] = shadow.state.get(copied, {})
        return [[(key, sources[p][key]) for key in sorted(sources[p] or {}, key=str)] for p in params]

    def _plan_torch_state(
        self, arrays: list[np.ndarray], head: list[tuple[str, tuple[int, ...]]], owner: str
    ) -> list[list[tuple[str, Any]]]:
        """Match the store against weightwise's own layout: which parameters' states it holds.

        Each parameter's entries are either all there (a full state) or absent
        (no state yet). Returns, per parameter, the ``(key, template)`` pairs to
        load (empty: no state); raises if no or more than one reading fits.
        """
        params = self._torch_params()
        start = len(head)
        head_text = ", ".join(f"{label} {shape}" for label, shape in head)
        if len(arrays) < start or any(tuple(array.shape) != shape for array, (_, shape) in zip(arrays, head)):
            raise _layout_mismatch(owner, f"weightwise's layout starts with {start} entries ({head_text})", arrays)
        if len(arrays) == start:
            return [[] for _ in params]
        templates = self._torch_state_templates(owner)
        shapes = [tuple(array.shape) for array in arrays[start:]]
        count = len(shapes)

        def fits(i: int, j: int) -> bool:
            template = templates[i]
            if not template or j + len(template) > count:
                return False
            return all(shapes[j + k] == _state_shape(value) for k, (_, value) in enumerate(template))

        # readings[i][j]: how many ways (0, 1 or "2 or more") params[i:] can account for entries[j:].
        readings = [[0] * (count + 1) for _ in range(len(params) + 1)]
        readings[len(params)][count] = 1
        for i in reversed(range(len(params))):
            for j in range(count + 1):
                ways = readings[i + 1][j]
                if fits(i, j):
                    ways += readings[i + 1][j + len(templates[i])]
                readings[i][j] = min(ways, 2)
        per_param = [
            f"parameter {i}: " + (", ".join(f"{key} {_state_shape(value)}" for key, value in template) or "none")
            for i, template in enumerate(templates)
        ]
        expected = (
            f"weightwise's layout is {head_text}, then for each parameter either nothing (no state yet) or all of "
            "its torch state: " + "; ".join(per_param)
        )
        if readings[0][0] == 0:
            raise _layout_mismatch(owner, expected, arrays)
        if readings[0][0] > 1:
            raise _layout_mismatch(
                owner, expected + " — more than one assignment of the entries to the parameters fits", arrays
            )
        plan, j = [], 0
        for i in range(len(params)):
            if fits(i, j) and readings[i + 1][j + len(templates[i])]:
                plan.append(templates[i])
                j += len(templates[i])
            else:
                plan.append([])
        return plan

    def _torch_states_from(
        self, plan: list[list[tuple[str, Any]]], arrays: list[np.ndarray], start: int
    ) -> dict[torch.Tensor, dict[str, Any]]:
        states: dict[torch.Tensor, dict[str, Any]] = {}
        index = start
        for param, template in zip(self._torch_params(), plan):
            for key, value in template:
                array = arrays[index]
                index += 1
                if isinstance(value, torch.Tensor):
                    states.setdefault(param, {})[key] = torch.tensor(array, dtype=value.dtype, device=value.device)
                else:
                    states.setdefault(param, {})[key] = type(value)(array.item())
        return states
