"""What the rules of a model are doing: a table of every bound weight, as text and as data.

``weightwise.report(model)`` gives one row per weight with a rule (a regularizer, a
constraint or a weight decay) and one per output with an activity regularizer:

- **penalty**: the regularizer's value on the weight now (``float``), as the loss adds
  it (a frozen weight's penalty is shown, but the loss leaves it out);
- **decay**: the weight decay factor :func:`weightwise.decay` attached, or ``None``;
- **hits / units / largest norm**: what the constraint's last *recorded* projection found
  before it changed the weight (see :class:`weightwise.engine.ProjectionStats`): how many
  units were outside the bound, out of how many, and the largest unit norm.

Projections are recorded only for models switched on with ``weightwise.report.track(model)``
(:class:`weightwise.callbacks.RegularizationMonitor` switches it on itself), so a training
step pays nothing for reports nobody asked for; until then those columns show ``-``.

Rows are named the Keras way on Keras-style models (``dense.kernel``: the layer's name,
then the path below it) and by module path on torch models (``0.weight``).

>>> import torch
>>> import weightwise
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
>>> _ = weightwise.regularize(model, {"0.weight": "l2"})
>>> _ = weightwise.constrain(model, {"0.weight": weightwise.constraints.MaxNorm(1.0)})
>>> weightwise.report.track(model)
>>> with torch.no_grad():
...     _ = model[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.5]]))
>>> weightwise.apply_constraints(model)
>>> print(weightwise.report(model))
name      shape   trainable  regularizer  penalty  decay  constraint                    hits  units  largest norm
0.weight  (2, 2)  yes        L2(l2=0.01)  0.0125   -      MaxNorm(max_value=1.0, axis=1)  1     2      5
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from weightwise import binding, engine, factors, interop, ops
from weightwise.engine import track

__all__ = ["Report", "Row", "report", "track"]


@dataclass(frozen=True)
class Row:
    """One row of a :class:`Report`: a weight with its rules, or an output with an activity regularizer.

    ``kind`` is ``"weight"`` or ``"activity"``. ``layer`` is the name of the layer the row
    belongs to (the outermost Keras layer on its path, else the owning module's path).
    Values not known or not applicable are ``None``: the rules as their ``repr``, the
    penalty, the decay factor, and the constraint's last recorded projection (``hits``
    units outside the bound out of ``units``, the ``largest_norm`` before it). ``decay`` is
    the weight decay factor now and ``decay_mode`` its mode (``"decoupled"``,
    ``"independent"``, ``"l2"``).

    >>> row = Row("dense.kernel", "dense", "weight", (2, 3), True, "L2(l2=0.01)", 0.5, None, None, None, 1, 3, 2.5)
    >>> row.bound_rate
    0.3333333333333333
    """

    name: str
    layer: str
    kind: str
    shape: tuple[int, ...] | None
    trainable: bool | None
    regularizer: str | None
    penalty: float | None
    decay: float | None
    decay_mode: str | None
    constraint: str | None
    hits: int | None
    units: int | None
    largest_norm: float | None

    @property
    def bound_rate(self) -> float | None:
        """The fraction of units that hit the bound at the last recorded projection (``None`` without one)."""
        if self.hits is None or not self.units:
            return None
        return self.hits / self.units


_COLUMNS = ("name", "shape", "trainable", "regularizer", "penalty", "decay", "constraint", "hits", "units",
            "largest norm")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Report:
    """The rows of :func:`report`: printed, an aligned table; as data, :attr:`rows` or :meth:`to_dict`.

    >>> import torch
    >>> from weightwise import binding
    >>> linear = torch.nn.Linear(2, 1)
    >>> binding.bind(linear, "bias", regularizer="l1")
    >>> with torch.no_grad():
    ...     _ = linear.bias.fill_(-3.0)
    >>> table = report(linear)
    >>> len(table), round(table["bias"].penalty, 6)
    (1, 0.03)
    >>> table.to_dict()["bias"]["regularizer"]
    'L1(l1=0.01)'
    """

    def __init__(self, rows: list[Row]) -> None:
        self.rows: list[Row] = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __getitem__(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"The report has no row named {name!r}. Its rows are {[r.name for r in self.rows]}.")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain data: ``{row name: {column: value}}``, with Python numbers, strings, tuples and ``None``.

        ``pandas.DataFrame.from_dict(report.to_dict(), orient="index")`` makes it a frame.
        """
        out = {}
        for row in self.rows:
            fields = asdict(row)
            del fields["name"]
            fields["bound_rate"] = row.bound_rate
            out[row.name] = fields
        return out

    def __str__(self) -> str:
        table = [_COLUMNS] + [tuple(_cell(value) for value in (
            row.name, row.shape, row.trainable, row.regularizer, row.penalty,
            None if row.decay is None else f"{_cell(row.decay)} ({row.decay_mode})", row.constraint, row.hits,
            row.units, row.largest_norm)) for row in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)

    def __repr__(self) -> str:
        return str(self)


# -- names ------------------------------------------------------------------------------------------
def _keras_name(module: torch.nn.Module) -> str | None:
    """A Keras-style layer's ``name`` (a plain string attribute every weightwise layer has)."""
    name = module.__dict__.get("name")
    return name if isinstance(name, str) else None


def layer_names(model: torch.nn.Module) -> dict[str, tuple[str, str]]:
    """For each module path under ``model``: its display name and the name of the layer it belongs to.

    A module inside a Keras-style layer belongs to the outermost such layer on its path,
    and is named after it (its ``name``) followed by the path below it; any other module
    is its own layer, named by its path. ``model`` itself is ``""``, and its layer is its
    own name (or its class name).

    >>> import weightwise
    >>> model = weightwise.Sequential([weightwise.layers.Dense(2, name="hidden")])
    >>> layer_names(model)["0"]
    ('hidden', 'hidden')
    """
    root = binding.check_module(model, "model")
    names = {"": ("", _keras_name(root) or type(root).__name__)}
    tops: dict[str, tuple[str, str] | None] = {"": None}  # path -> (path, name) of its outermost Keras layer
    for path, module in root.named_modules():
        if not path:
            continue
        top = tops[path.rpartition(".")[0]]
        if top is None and _keras_name(module) is not None:
            top = (path, _keras_name(module))
        tops[path] = top
        names[path] = (top[1] + path[len(top[0]):], top[1]) if top else (path, path)
    return names


# -- rows -------------------------------------------------------------------------------------------
# Where weightwise.decay records, on each module owning a decayed parameter, ``{attr: [(factor, mode), ...]}``
# (``weightwise.decay.DECAYS_ATTR``; read by name, so that reports need not import the layers decay knows).
_DECAYS_ATTR = "_weight_decays"


def _decay_of(owner: torch.nn.Module, attr: str, param: torch.Tensor, optimizer: Any) -> tuple[float, str] | None:
    """The weight decay of ``owner``'s parameter ``attr`` now, and its mode(s); ``None`` if nothing decays it.

    The factors :func:`weightwise.decay` attached (schedules at the current step), plus a
    compiled model's optimizer ``weight_decay`` (decoupled, as Keras's) on the variables it
    does not exclude. Factors of one mode add up.
    """
    found = [(factors.factor_value(factor, "weight_decay"), mode) for factor, mode in (owner.__dict__.get(_DECAYS_ATTR) or {}).get(attr, [])]
    weight_decay = getattr(optimizer, "weight_decay", None)
    if isinstance(weight_decay, (int, float)) and not isinstance(weight_decay, bool) and weight_decay:
        use = getattr(optimizer, "_use_weight_decay", None)
        if use is None or use(param):
            found.append((float(weight_decay), "decoupled"))
    if not found:
        return None
    modes = list(dict.fromkeys(mode for _, mode in found))
    return float(sum(factor for factor, _ in found)), ", ".join(modes)


def _penalty(entry: binding.Bound) -> float | None:
    regularizer = entry.rule.regularizer
    if regularizer is None:
        return None
    with torch.no_grad():  # a sharded weight's penalty is its full one (a collective: every rank reports)
        return float(ops._plain(binding.checked_penalty(regularizer(entry.param), regularizer,
                                                        f"parameter {entry.name!r}")))


def _weight_row(entry: binding.Bound, display: str, layer: str, decay: tuple[float, str] | None) -> Row:
    rule = entry.rule
    stats = engine.last_projection(entry.owner, entry.attr) if rule.constraint is not None else None
    largest = None if stats is None or stats.largest is None else float(stats.largest)
    return Row(
        name=f"{display}.{entry.attr}" if display else entry.attr,
        layer=layer,
        kind="weight",
        shape=tuple(entry.param.shape),
        trainable=entry.param.requires_grad,
        regularizer=None if rule.regularizer is None else repr(rule.regularizer),
        penalty=_penalty(entry),
        decay=None if decay is None else decay[0],
        decay_mode=None if decay is None else decay[1],
        constraint=None if rule.constraint is None else repr(rule.constraint),
        hits=None if stats is None else int(stats.hits),
        units=None if stats is None else stats.units,
        largest_norm=largest,
    )


OUTPUT = " (output)"


def _activity_row(module: torch.nn.Module, display: str, layer: str) -> Row | None:
    """The row of ``module``'s activity regularizers, with the penalty of its last call (if any)."""
    rules = list(module.__dict__.get(interop.ACTIVITY_RULES_ATTR, []))
    if getattr(module, "activity_regularizer", None) is not None:
        rules.append(module.activity_regularizer)
    if not rules:
        return None
    # A layer's own slot (None) also holds its add_loss terms; a regularize_activity hook's slot holds
    # only the activity penalties of its last call.
    values = [entry.value() if isinstance(entry, binding.Activity) else entry
              for slot, entries in (module.__dict__.get(binding.CALL_LOSSES_ATTR) or {}).items()
              for entry in entries if isinstance(entry, binding.Activity) or slot is not None]
    penalty = float(sum(float(ops._plain(v.detach())) for v in values)) if values else None
    return Row(
        name=(display or layer) + OUTPUT, layer=layer, kind="activity", shape=None, trainable=None,
        regularizer=", ".join(repr(rule) for rule in rules), penalty=penalty, decay=None, decay_mode=None,
        constraint=None,
        hits=None, units=None, largest_norm=None,
    )


def report(model: torch.nn.Module) -> Report:
    """The rules of ``model`` at work: one :class:`Row` per weight with a rule (a regularizer,
    a constraint or a weight decay), and one per output with an activity regularizer, in
    module order.

    Each weight row gives the weight's rules, its current penalty, its decay factor and,
    when ``model`` is tracked (``weightwise.report.track(model)``), what its constraint's
    last projection found. Print the result for a table; use ``.rows`` or ``.to_dict()``
    for the numbers.

    >>> import weightwise
    >>> from weightwise import layers
    >>> model = weightwise.Sequential([layers.Input(shape=(2,)), layers.Dense(1, kernel_regularizer="l1",
    ...                                                                        name="out")])
    >>> with torch.no_grad():
    ...     _ = model.layers[0].kernel.fill_(2.0)
    >>> round(report(model)["out.kernel"].penalty, 6)
    0.04
    >>> report(3)
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `model`: expected a torch.nn.Module. Received: model=3
    """
    names = layer_names(model)
    bound = {id(entry.param): entry for entry in binding.bound(model)}
    optimizer = getattr(model, "optimizer", None)
    seen: set[int] = set()
    rows = []
    for path, module in model.named_modules():
        display, layer = names[path]
        for attr, param in module._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            decay = _decay_of(module, attr, param, optimizer)
            # A shared parameter is shown once, under the module whose binding rules it (binding.bound's choice).
            entry = bound.get(id(param)) or binding.Bound(f"{path}.{attr}" if path else attr, param, binding.Rule(),
                                                          module, attr)
            if entry.owner is not module:
                display, layer = names[entry.name.rpartition(".")[0]]
            if entry.rule.regularizer is not None or entry.rule.constraint is not None or decay is not None:
                rows.append(_weight_row(entry, display, layer, decay))
            display, layer = names[path]
        activity = _activity_row(module, display, layer)
        if activity is not None:
            rows.append(activity)
    return Report(rows)


# ``weightwise.report`` is this function; ``weightwise.report.track(model)`` switches recording on.
report.track = track  # type: ignore[attr-defined]
