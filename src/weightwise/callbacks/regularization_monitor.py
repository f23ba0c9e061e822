"""``RegularizationMonitor``: each layer's penalty and each constraint's binding rate, in the logs."""

from __future__ import annotations

import math
from typing import Any

import torch

from weightwise import binding
from weightwise.arguments import echo
from weightwise.callbacks.callback import Callback
from weightwise.report import OUTPUT, report, track

_PER = ("layer", "parameter")


class RegularizationMonitor(Callback):
    """Adds the model's penalties and constraint binding rates to the logs at the end of each epoch,
    so ``History``, ``CSVLogger`` and ``TensorBoard`` record them with the metrics.

    Keys, each preceded by ``prefix``:

    - ``penalty/<layer>``: the weight penalty the layer adds to the loss now (the sum over
      its trainable weights with a regularizer; a layer whose regularized weights are all
      frozen logs 0). With ``per="parameter"``, one key per weight: ``penalty/<layer>.<weight>``.
    - ``activity_penalty/<layer>``: the activity penalty of the layer's last call.
    - ``bound_rate/<layer>.<weight>``: for each constrained weight, the fraction of its units
      that were outside the bound at its last projection (see
      :class:`weightwise.engine.ProjectionStats`); ``nan`` until it has been projected.

    Layers are named by their Keras ``name`` on Keras-style models (``dense``,
    ``dense.kernel``) and by module path on torch models (``0``, ``0.weight``). Each layer
    or weight with a rule has its key from the first epoch on, so a ``CSVLogger`` gets
    them all. The monitor runs before the other callbacks wherever it stands in the
    list, so every one of them sees its keys.

    The monitor switches on projection recording for its model (``weightwise.report.track``);
    recording stays on after training, so ``weightwise.report(model)`` shows the last
    projection. In a hand-written loop, give it the model once and call :meth:`logs`:

    >>> import torch
    >>> import weightwise
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> _ = weightwise.regularize(model, {"0.weight": weightwise.regularizers.L2(0.5)})
    >>> _ = weightwise.constrain(model, {"0.weight": weightwise.constraints.MaxNorm(1.0)})
    >>> monitor = RegularizationMonitor()
    >>> monitor.set_model(model)
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.5]]))
    >>> weightwise.apply_constraints(model)
    >>> {key: round(value, 4) for key, value in monitor.logs().items()}
    {'penalty/0': 0.625, 'bound_rate/0.weight': 0.5}

    Args:
        per: ``"layer"`` (one penalty per layer) or ``"parameter"`` (one per weight).
        prefix: a string put before every key, such as ``"reg/"``.
    """

    # CallbackList runs callbacks that add to the logs before the others.
    _writes_logs = True

    def __init__(self, per: str = "layer", prefix: str = "") -> None:
        super().__init__()
        if per not in _PER:
            raise ValueError(f"Invalid value for argument `per`: expected one of {_PER}. Received: per={echo(per)}")
        if not isinstance(prefix, str):
            raise TypeError(f"Invalid value for argument `prefix`: expected a str. Received: prefix={echo(prefix)}")
        self.per = per
        self.prefix = prefix

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if isinstance(self.model, torch.nn.Module):
            track(self.model)

    def logs(self, model: torch.nn.Module | None = None) -> dict[str, float]:
        """The monitor's keys and values for ``model`` (by default the one given to ``set_model``) now.

        Recording is switched on for ``model`` if it was not, so its rates are ``nan``
        until its next projection.
        """
        model = self.model if model is None else model
        binding.check_module(model, "model")
        track(model)
        out: dict[str, float] = {}
        for row in report(model):
            if row.kind == "activity":
                key = row.layer if self.per == "layer" else row.name[: -len(OUTPUT)]
                name = f"{self.prefix}activity_penalty/{key}"
                out[name] = out.get(name, 0.0) + (math.nan if row.penalty is None else row.penalty)
                continue
            if row.regularizer is not None:
                name = f"{self.prefix}penalty/{row.layer if self.per == 'layer' else row.name}"
                out[name] = out.get(name, 0.0) + (row.penalty if row.trainable and row.penalty is not None else 0.0)
            if row.constraint is not None:
                rate = row.bound_rate
                out[f"{self.prefix}bound_rate/{row.name}"] = math.nan if rate is None else rate
        return out

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(self.logs())
