"""Keras's training API on a torch model: ``compile``, ``fit``, ``evaluate``, ``predict``.

One training step is Keras's:

1. ``loss = data_loss + sum(model.losses)`` (weight penalties and activity penalties);
2. ``loss.backward()``;
3. the optimizer step (with Keras's clipping and weight decay), then the proximal step
   of proximal regularizers (``ProximalL1``, ``GroupLasso``);
4. every bound constraint is applied, in place under ``no_grad``, to the parameters
   that received a gradient, so Parameter objects and optimizer state survive.

The logged ``loss`` and ``evaluate()`` include the penalties, as in Keras; the
penalty is also logged on its own as ``regularization_loss``.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, final

import numpy as np
import torch

from weightwise import binding, clock, compiled_step, engine
from weightwise import callbacks as callbacks_module
from weightwise import losses as losses_module
from weightwise import metrics as metrics_module
from weightwise import optimizers as optimizers_module
from weightwise.arguments import count, echo, flag, invalid, real
from weightwise.callbacks import _ranks
from weightwise.layers.symbolic import flatten, get_keras_mask, set_keras_mask
from weightwise.models import distributed
from weightwise.models.data import (
    Batch,
    Batches,
    make_batches,
    single_batch,
    split_for_validation,
    to_device,
)
from weightwise.serialization import serialize_keras_object

__all__ = ["Trainer"]


def _per_output(value: Any, names: list[str], what: str) -> list[Any]:
    """Spread a single value, a list (one entry per output), or a dict keyed by output name over the outputs."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names), key=repr)
        if unknown:
            raise ValueError(
                f"Invalid value for argument `{what}`: unknown output names {unknown}. The model's outputs are "
                f"{names}. Received: {what}={echo(value)}"
            )
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(
                f"Invalid value for argument `{what}`: it has {len(value)} entries but the model has {len(names)} "
                f"outputs ({names}). Received: {what}={echo(value)}"
            )
        return list(value)
    return [value] * len(names)


class _CompiledLosses:
    """The data loss of every output, weighted and summed."""

    def __init__(self, loss: Any, loss_weights: Any, names: list[str]) -> None:
        self.names = names
        spread = _per_output(loss, names, "loss")
        self.losses = []
        for entry, name in zip(spread, names):
            try:
                self.losses.append(losses_module.get(entry))
            except (ValueError, TypeError) as error:
                raise type(error)(f"Invalid value for argument `loss` (output {name!r}): {error}") from error
        if all(loss_fn is None for loss_fn in self.losses):
            raise invalid("loss", "a loss for at least one output", loss)
        weights = _per_output(loss_weights, names, "loss_weights") if loss_weights is not None else [None] * len(names)
        # A weight scales an output's loss: NaN, infinite or negative would train on nonsense.
        self.weights = [1.0 if w is None else real(w, "loss_weights", low=0) for w in weights]

    def __call__(self, y_true: list[Any], y_pred: list[Any], sample_weight: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        per_output = []
        total = None
        for loss_fn, weight, target, prediction in zip(self.losses, self.weights, y_true, y_pred):
            if loss_fn is None:
                per_output.append(None)
                continue
            value = loss_fn(target, prediction, sample_weight=sample_weight)
            per_output.append(value)
            total = weight * value if total is None else total + weight * value
        return total, per_output


def _compiled_parts(loss: Any, loss_weights: Any, metrics: Any, weighted_metrics: Any,
                    names: list[str]) -> dict[str, Any]:
    """What ``compile`` (or a late discovery of a subclassed model's outputs) sets: built, not set."""
    compiled_losses = _CompiledLosses(loss, loss_weights, names)
    objects: list[tuple[int, Any, bool, str]] = []
    for spec, weighted, what in ((metrics, False, "metrics"), (weighted_metrics, True, "weighted_metrics")):
        if spec is None:
            continue
        if isinstance(spec, (str, Mapping)) or callable(spec):
            spec = [spec] if not isinstance(spec, Mapping) or len(names) == 1 else spec
        per_output = _per_output(spec, names, what) if len(names) > 1 else [spec]
        for index, entries in enumerate(per_output):
            for entry in flatten(entries) if entries is not None else []:
                try:
                    metric = metrics_module.get(entry, loss=compiled_losses.losses[index])
                except (ValueError, TypeError) as error:
                    raise type(error)(f"Invalid value for argument `{what}`: {error}") from error
                # Logged under the output's name; the metric object itself is not renamed.
                logged = f"{names[index]}_{metric.name}" if len(names) > 1 else metric.name
                objects.append((index, metric, weighted, logged))
    return {
        "_compiled_losses": compiled_losses,
        "_loss_tracker": metrics_module.Mean(name="loss"),
        "_output_loss_trackers": [metrics_module.Mean(name=f"{n}_loss") for n in names] if len(names) > 1 else [],
        "_penalty_tracker": metrics_module.Mean(name="regularization_loss"),
        "_metric_objects": objects,
        "_compiled_names": names,
        "_outputs_seen": False,
    }


def _jit_flag(value: Any) -> bool:
    """``jit_compile`` as a bool: ``"auto"`` stays eager, as Keras's torch backend does."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "auto":
        return False
    raise invalid("jit_compile", "True, False or 'auto'", value)


class Trainer:
    """The training API mixed into :class:`weightwise.Model`."""

    compiled = False

    # -- compile ------------------------------------------------------------------------------
    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        loss_weights: Any = None,
        metrics: Any = None,
        weighted_metrics: Any = None,
        run_eagerly: bool = False,
        steps_per_execution: int = 1,
        jit_compile: Any = "auto",
        auto_scale_loss: bool = True,
        distribute: str | None = None,
    ) -> None:
        """Configure training: the optimizer, the loss (per output) and the metrics.

        ``optimizer`` is a name (``'sgd'``, ``'adam'``, ...), a weightwise optimizer or
        a ready ``torch.optim.Optimizer``; ``loss`` a name, a Loss or a function, or a
        list/dict of them for several outputs; ``loss_weights`` finite non-negative
        floats; ``metrics`` a list (or per-output list/dict). ``run_eagerly`` and
        ``auto_scale_loss`` are bools, ``steps_per_execution`` must be 1 (as on Keras's
        torch backend) and ``jit_compile`` is ``True``, ``False`` or ``"auto"`` (eager).

        ``distribute`` says how ``fit`` trains under ``torchrun`` (a ``torch.distributed``
        process group of several processes): ``"ddp"`` wraps the model in
        ``DistributedDataParallel``, ``"fsdp"`` shards it with FSDP2's ``fully_shard``;
        ``None`` (the default) takes it from the current ``weightwise.distribution``
        setting, else DDP. It has no effect in a single process.

        Everything is resolved and checked before anything is set: a compile that
        raises leaves the model exactly as it was (its optimizer, loss, metrics and
        compiled state), so the next ``fit`` trains with the previous configuration.

        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> model.compile(optimizer="adam", loss="mse", loss_weights=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid value for argument `loss_weights`: expected a finite float >= 0. Received: loss_weights=-1.0
        >>> type(model.optimizer).__name__
        'SGD'
        """
        if optimizer is None:
            raise invalid("optimizer", "a name such as 'sgd', an Optimizer or a torch.optim.Optimizer", None)
        run_eagerly = flag(run_eagerly, "run_eagerly")
        flag(auto_scale_loss, "auto_scale_loss")
        if count(steps_per_execution, "steps_per_execution", low=1) != 1:
            raise ValueError(
                "Invalid value for argument `steps_per_execution`: it must be 1 with the PyTorch backend, as in "
                f"Keras. Received: steps_per_execution={echo(steps_per_execution)}"
            )
        jit = _jit_flag(jit_compile)
        distribute = distributed.check_distribute(distribute)
        if jit and run_eagerly:
            warnings.warn("If `run_eagerly` is True, then `jit_compile` cannot also be True. Disabling `jit_compile`.",
                          stacklevel=2)
            jit = False
        if loss is None:
            raise invalid("loss", "a name such as 'mse', a Loss, or a function", None)
        try:
            new_optimizer = optimizers_module.get(optimizer)
        except (ValueError, TypeError) as error:
            raise type(error)(f"Invalid value for argument `optimizer`: {error}") from error
        if self.built:
            # An optimizer already built on other parameters would update those, not this model's.
            _check_optimizer_covers(new_optimizer, self.trainable_weights)
        parts = _compiled_parts(loss, loss_weights, metrics, weighted_metrics, self._output_names_or_default())
        # Nothing has changed so far; from here on nothing can fail.
        self.optimizer = new_optimizer
        self._loss_spec, self._loss_weights_spec = loss, loss_weights
        self._metrics_spec, self._weighted_metrics_spec = metrics, weighted_metrics
        self.jit_compile = jit
        self.run_eagerly = run_eagerly
        self._distribute = distribute
        for cached in ("_compiled_forward", "_fused_step", "_fused_step_warned", "_fused_step_blocker"):
            self.__dict__.pop(cached, None)
        for name, value in parts.items():
            setattr(self, name, value)
        self.compiled = True
        self.stop_training = False

    def get_compile_config(self) -> dict[str, Any] | None:
        """What ``compile`` was given, in Keras 3's form (``None`` if not compiled).

        Saved in ``.keras`` files so a loaded model is compiled again. A model compiled
        with a raw ``torch.optim`` optimizer has no such description and gives ``None``.

        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        >>> config = model.get_compile_config()
        >>> config["optimizer"]["class_name"], config["loss"], config["metrics"]
        ('SGD', 'mse', ['mae'])
        """
        if not self.compiled or isinstance(self.optimizer, optimizers_module.TorchOptimizer):
            return None
        config = {
            "optimizer": optimizers_module.serialize(self.optimizer),
            "loss": _serialize_spec(self._loss_spec),
            "loss_weights": self._loss_weights_spec,
            "metrics": _serialize_spec(self._metrics_spec),
            "weighted_metrics": _serialize_spec(self._weighted_metrics_spec),
            "run_eagerly": getattr(self, "run_eagerly", False),
            "steps_per_execution": 1,
            "jit_compile": self.jit_compile,
        }
        if getattr(self, "_distribute", None) is not None:
            # Only when set: Keras's compile takes no such argument, so its files stay Keras's.
            config["distribute"] = self._distribute
        return config

    def compile_from_config(self, config: Mapping[str, Any]) -> None:
        """Compile from :meth:`get_compile_config` output (ours or Keras's), then build the optimizer.

        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
        >>> model.compile_from_config({"optimizer": "adam", "loss": "mse"})
        >>> type(model.optimizer).__name__, model.optimizer.built
        ('Adam', True)
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"A compile config must be a dict. Received: config={echo(config)}")
        known = {"optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
                 "steps_per_execution", "jit_compile", "distribute"}
        unknown = sorted(set(config) - known, key=repr)
        if unknown:
            raise ValueError(f"Unknown keys in a compile config: {unknown}. Known keys: {sorted(known)}")
        steps_per_execution = count(config.get("steps_per_execution", 1), "steps_per_execution", low=1)
        if steps_per_execution != 1:
            # Saved by Keras on another backend: the PyTorch backend runs one step per execution.
            warnings.warn(
                f"The compile config asks for steps_per_execution={steps_per_execution}, which the PyTorch backend "
                "does not support (as in Keras); the model is compiled with steps_per_execution=1.",
                stacklevel=2,
            )
        self.compile(
            optimizer=optimizers_module.deserialize(config["optimizer"]) if "optimizer" in config else "rmsprop",
            loss=_deserialize_spec(config.get("loss"), losses_module.deserialize),
            loss_weights=config.get("loss_weights"),
            metrics=_deserialize_spec(config.get("metrics"), _deserialize_metric),
            weighted_metrics=_deserialize_spec(config.get("weighted_metrics"), _deserialize_metric),
            run_eagerly=config.get("run_eagerly", False),
            jit_compile=config.get("jit_compile", False),
            distribute=config.get("distribute"),
        )
        if self.built:
            self.optimizer.build(self.trainable_weights)

    def _output_names_or_default(self) -> list[str]:
        names = getattr(self, "output_names", None)
        return list(names) if names else ["output"]

    def _compile_for(self, names: list[str]) -> None:
        parts = _compiled_parts(self._loss_spec, self._loss_weights_spec, self._metrics_spec,
                                self._weighted_metrics_spec, names)
        for name, value in parts.items():
            setattr(self, name, value)

    def _assert_compiled(self, method: str) -> None:
        if not self.compiled:
            raise RuntimeError(
                f"You must call `compile()` before using the model: `{method}()` needs an optimizer and a loss. "
                "For example: model.compile(optimizer='sgd', loss='mse')"
            )

    # -- metrics ------------------------------------------------------------------------------
    def _logged(self) -> list[tuple[str, Any]]:
        """``(name, tracker or metric)`` in logging order: the loss, per-output losses, metrics, penalty."""
        if not self.compiled:
            return []
        out = [(self._loss_tracker.name, self._loss_tracker)]
        out += [(tracker.name, tracker) for tracker in self._output_loss_trackers]
        out += [(logged, metric) for _, metric, _, logged in self._metric_objects or []]
        if self._has_penalties():
            out.append((self._penalty_tracker.name, self._penalty_tracker))
        return out

    @property
    def metrics(self) -> list[Any]:
        """The loss trackers and compiled metrics, in logging order."""
        return [metric for _, metric in self._logged()]

    @property
    def metrics_names(self) -> list[str]:
        """Names of the values ``evaluate()`` returns as a list (Keras's: the loss, then the metrics).

        ``regularization_loss`` is logged (History, callbacks, ``return_dict=True``) but kept
        out of list returns, so ``loss, acc = model.evaluate(...)`` unpacks as in Keras.
        """
        return [name for name, metric in self._logged() if metric is not self._penalty_tracker]

    def _log_names(self) -> list[str] | None:
        """The names ``fit`` logs (without ``val_``), or ``None`` while the model's outputs are unknown
        (a model without ``output_names`` that has not taken a step since it was compiled)."""
        if not self.compiled or not (getattr(self, "output_names", None) or self._outputs_seen):
            return None
        return [name for name, _ in self._logged()]

    def reset_metrics(self) -> None:
        """Reset every metric and loss tracker."""
        for metric in self.metrics:
            metric.reset_state()

    def _has_penalties(self) -> bool:
        if any(b.rule.regularizer is not None for b in binding.bound(self)):
            return True
        return any(getattr(m, "activity_regularizer", None) is not None for m in self.modules())

    def _logs(self, local: bool = False, logged: list[tuple[str, Any]] | None = None) -> dict[str, float]:
        """The logged values (of ``logged``, by default ``_logged()``), read back to the host; under
        ``torchrun`` over every rank (a collective), unless ``local``."""
        if logged is None:
            logged = self._logged()
        if not local and distributed.is_distributed():
            return distributed.global_logs(logged)
        return {name: float(metric.result()) for name, metric in logged}

    def _batch_logger(self, local: bool = False) -> Any:
        """``logs()`` for batch callbacks: the values of :meth:`_logs`, with the list of what is logged
        kept while the bindings and the compiled trackers stay the same (finding whether the model
        has penalties walks every module)."""
        kept: list[Any] = [None, None, None]

        def logs() -> dict[str, float]:
            # A subclassed model's first step may compile new trackers; a bind or unbind changes the version.
            if kept[0] != binding.version() or kept[1] is not self._loss_tracker:
                kept[:] = [binding.version(), self._loss_tracker, self._logged()]
            return self._logs(local=local, logged=kept[2])
        return logs

    # -- one step -----------------------------------------------------------------------------
    def _device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def _split_outputs(self, y_true: Any, y_pred: Any) -> tuple[list[Any], list[Any]]:
        names = self._compiled_names
        preds = flatten(y_pred) if not isinstance(y_pred, Mapping) else [y_pred[n] for n in names]
        if len(preds) != len(names):
            # A subclassed model's output count is only known now.
            names = [f"output_{i + 1}" for i in range(len(preds))] if len(preds) > 1 else ["output"]
            self._compile_for(names)
        if y_true is None:
            raise invalid("y", "targets for the model's outputs (the data holds none)", None)
        if isinstance(y_true, Mapping):
            missing = sorted(set(names) - set(y_true))
            if missing:
                raise ValueError(
                    f"Invalid value for argument `y`: it is missing the outputs {missing}. The model's outputs are "
                    f"{names}. Received targets for: {sorted(y_true, key=repr)}"
                )
            targets = [y_true[n] for n in names]
        elif len(names) > 1:
            targets = flatten(y_true)
        elif isinstance(y_true, (list, tuple)):
            # One output: a list of several arrays would be stacked into one target of the wrong shape.
            targets = list(y_true)
        else:
            targets = [y_true]
        if len(targets) != len(preds):
            raise ValueError(
                f"Invalid value for argument `y`: the model has {len(preds)} outputs but `y` has {len(targets)} targets."
            )
        return targets, preds

    def _step(self, x: Any, y: Any, sample_weight: Any, training: bool, eager: bool = False) -> torch.Tensor:
        """Forward, losses, and (when training) backward, update and constraints; updates trackers."""
        device = self._device()
        x, y, sample_weight = to_device((x, y, sample_weight), device)
        fused = self._compiled_step() if training and not eager else None
        if fused is not None:
            if not fused.deciding:
                return self._run_compiled_step(fused, x, y, sample_weight)
            with fused.trial():
                return self._step(x, y, sample_weight, training, eager=True)
        plan = engine.plan_for(self)
        if training:
            clock.set_step(self.optimizer.iterations)  # scheduled factors read this model's step
        y_pred = self._forward_for_step(training)(x, training=training)
        targets, preds = self._split_outputs(y, y_pred)
        data_loss, per_output = self._compiled_losses(targets, preds, sample_weight)
        # Activity penalties, add_loss terms and custom regularizers go through autograd; the
        # built-in L1/L2 weight penalties get their exact gradient added by the engine.
        differentiable = data_loss + engine.call_loss(self).to(data_loss.device) \
            + plan.autograd_penalty().to(data_loss.device)
        grouped = plan.grouped_penalty_value().to(data_loss.device)  # before the update, as Keras logs it
        loss = differentiable.detach() + grouped
        penalty = loss - data_loss.detach()
        # The metrics see the predictions from before the update either way; updated first, a
        # metric that cannot read these targets raises before any weight has moved.
        self._update_metrics(targets, preds, sample_weight)
        # A loss that tracks no gradient is rare enough to pay for the weight list only then.
        if training and not differentiable.requires_grad and not self.trainable_weights:
            # Nothing to update (a pooling-only or frozen model): Keras still runs the step and logs the loss.
            warnings.warn("The model does not have any trainable weights.", stacklevel=3)
            if not self.optimizer.built:
                self.optimizer.build([])
        elif training:
            if not self.optimizer.built:
                self.optimizer.build(self.trainable_weights)
            self.optimizer.zero_grad()
            # Keras's loss_scale_factor: the optimizer unscales the gradients in step().
            self.optimizer.scale_loss(differentiable).backward()
            plan.add_penalty_gradients(scale=float(getattr(self.optimizer, "loss_scale_factor", None) or 1.0))
            # A step the optimizer skips (inf gradients under loss scaling, a micro-batch it only
            # accumulates) moved no weight, so nothing is projected.
            if self.optimizer.step() is not False:
                if plan.proximal:  # update, proximal step, projection
                    # Factors at the step of this update, as its penalty read them.
                    with clock.at_step(max(self.optimizer.iterations - 1, 0)):
                        plan.proximal_step(self.optimizer, only_with_grad=True)
                plan.project(only_with_grad=True)
        self._track_losses(x, loss, per_output, penalty)
        self._outputs_seen = True
        return loss

    def _update_metrics(self, targets: list[Any], preds: list[Any], sample_weight: Any) -> None:
        with torch.no_grad():
            for index, metric, weighted, _ in self._metric_objects or []:
                metric.update_state(targets[index], _detached(preds[index]),
                                    sample_weight=sample_weight if weighted else None)

    def _track_losses(self, x: Any, loss: torch.Tensor, per_output: list[Any], penalty: torch.Tensor) -> None:
        """The loss trackers, weighted by the batch size: the total, each output's and the penalty."""
        batch = _batch_size(x)
        self._loss_tracker.update_state(loss.detach(), sample_weight=batch)
        for tracker, value in zip(self._output_loss_trackers, per_output):
            if value is not None:
                tracker.update_state(value.detach(), sample_weight=batch)
        self._penalty_tracker.update_state(penalty.detach(), sample_weight=batch)

    def _compiled_step(self) -> compiled_step.CompiledStep | None:
        """With ``jit_compile=True``, the whole training step as one compiled program (made once), from
        the second step on: the first, eager, settles the outputs, the optimizer and every check.
        ``None`` where it does not apply; where it cannot, a warning says why, once per ``compile``."""
        if not self._outputs_seen or not self.optimizer.built or not self._fuses_steps() \
                or not any(p.requires_grad for p in self.optimizer.variables):
            return None  # with nothing to train, the eager step warns and logs the loss, as Keras does
        step = self.__dict__.get("_fused_step")
        if step is None:
            # Kept out of the module tree (a plain attribute), like the compiled forward.
            step = self.__dict__["_fused_step"] = compiled_step.CompiledStep(self, self._forward_loss, self.optimizer)
        return step

    def _fuses_steps(self) -> bool:
        """Whether training steps run as one compiled program: ``jit_compile=True``, one process, and
        nothing that :func:`~weightwise.compiled_step.fusion_blocker` names (warned once per ``compile``)."""
        if not getattr(self, "jit_compile", False) or distributed.is_distributed():
            return False
        # Asked again only when some binding changed: the answer walks every bound rule.
        key = (binding.version(), id(self.optimizer))
        cached = self.__dict__.get("_fused_step_blocker")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_fused_step_blocker"] = (key, compiled_step.fusion_blocker(self, self.optimizer))
        if cached[1] is not None and not self.__dict__.get("_fused_step_warned"):
            self.__dict__["_fused_step_warned"] = True
            warnings.warn(f"jit_compile=True compiles the forward pass only: {cached[1]}.", stacklevel=5)
        return cached[1] is None

    def _forward_loss(self, x: Any, y: Any, sample_weight: Any) -> tuple[torch.Tensor, Any]:
        y_pred = self(x, training=True)
        targets, preds = self._split_outputs(y, y_pred)
        data_loss, per_output = self._compiled_losses(targets, preds, sample_weight)
        return data_loss, ([None if v is None else v.detach() for v in per_output],
                           [_detached(p) for p in preds] if self._metric_objects else None)

    def _run_compiled_step(self, fused: compiled_step.CompiledStep, x: Any, y: Any, sample_weight: Any) -> torch.Tensor:
        loss, data_loss, (per_output, preds) = fused(x, y, sample_weight)
        if self._metric_objects:
            self._update_metrics(self._split_outputs(y, preds)[0], preds, sample_weight)
        self._track_losses(x, loss, per_output, loss - data_loss)
        return loss

    def _forward_for_step(self, training: bool = False) -> Any:
        """The model itself, or with ``jit_compile=True`` its ``torch.compile``d wrapper (made once);
        for a training step under ``torchrun``, its DDP wrapper."""
        if training:
            wrapped = distributed.training_forward(self)
            if wrapped is not None:
                return wrapped
        if not getattr(self, "jit_compile", False) or (training and self._fuses_steps()):
            return self  # steps before the whole-step program exists stay eager: one compile, not two
        compiled = self.__dict__.get("_compiled_forward")
        if compiled is None:
            # Kept out of the module tree (a plain attribute), so parameters are not registered twice.
            compiled = self.__dict__["_compiled_forward"] = torch.compile(self)
        return compiled

    def _prepare(self, batches: Batches) -> None:
        """Build the model on a first batch if needed, and check that a built optimizer trains its weights.

        An optimizer not built yet is built by the first training step, once that step's loss
        is known to compute: a first batch the loss refuses leaves the optimizer untouched.
        """
        if not self.built:
            first = next(iter(batches), None)
            if first is None:
                raise ValueError(f"Invalid value for argument `{batches.name}`: it holds no batch to build the model on.")
            with torch.no_grad():
                self(to_device(first[0], self._device()))
            binding.clear_call_losses(self)
        _check_optimizer_covers(self.optimizer, self.trainable_weights)

    def _check_training_data(self, batches: Batches, what: str) -> None:
        """Data that is known to be empty, or arrays without targets, are refused before anything runs."""
        if batches.known_empty():
            raise ValueError(
                f"Invalid value for argument `{batches.name}`: it holds no samples, so there is nothing to {what}. "
                f"Pass at least one sample."
            )
        if batches.from_arrays and batches.targets_missing():
            name = "y" if batches.name == "x" else batches.name
            raise invalid(name, f"targets `y` to {what} against", None)

    # -- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: Any = "auto",
        callbacks: Sequence[Any] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        class_weight: Mapping[int, float] | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> Any:
        """Train for ``epochs`` epochs; returns the ``History``.

        Data may be arrays or tensors (or lists/dicts of them for several inputs and
        outputs), a ``Dataset`` or a ``DataLoader`` yielding ``(x, y)`` or
        ``(x, y, sample_weight)``. A ``KeyboardInterrupt`` (Ctrl-C) stops after the
        current batch, leaving the model and the History consistent, then is re-raised.

        Every argument is checked, and array data converted, before anything changes:
        counts are ints (``epochs``, ``initial_epoch`` >= 0; ``batch_size``,
        ``steps_per_epoch``, ``validation_steps``, ``validation_batch_size``,
        ``validation_freq`` >= 1), ``shuffle`` is a bool, ``verbose`` is ``"auto"``,
        a bool, 0, 1 or 2, and data with no samples is a ``ValueError`` (Keras reports
        a loss of 0 for it). A failure in the first step (a loss that refuses the
        targets) leaves the weights, the optimizer and ``model.history`` as they were.

        >>> import numpy as np
        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> model.fit(np.zeros((0, 2)), np.zeros((0, 1)), verbose=0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid value for argument `x`: it holds no samples, so there is nothing to train on. ...
        """
        self._assert_compiled("fit")
        epochs = count(epochs, "epochs")
        initial_epoch = count(initial_epoch, "initial_epoch")
        validation_freq = count(validation_freq, "validation_freq", low=1)
        verbose = callbacks_module._verbose(verbose, (0, 1, 2, "auto"))
        shuffle = flag(shuffle, "shuffle")
        count(validation_steps, "validation_steps", low=1, allow_none=True)
        count(validation_batch_size, "validation_batch_size", low=1, allow_none=True)
        validation_split = real(validation_split, "validation_split", low=0, high=1, high_open=True)
        callbacks_module._check_callbacks(callbacks)
        self._check_learning_rate()
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = split_for_validation(x, y, sample_weight, validation_split)
        elif validation_split:
            split_for_validation(x, y, sample_weight, validation_split)  # validate the value only
        train = make_batches(x, y, sample_weight, batch_size, shuffle, class_weight, steps_per_epoch,
                             steps_name="steps_per_epoch", shard="train")
        self._check_training_data(train, "train on")
        val = self._validation_batches(validation_data, validation_batch_size or batch_size, validation_steps)
        if val is not None:
            self._check_training_data(val, "validate on")
        history_before = self.__dict__.get("history", _ABSENT)
        callback_list = callbacks_module.CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=self,
            verbose=verbose, epochs=epochs, steps=len(train) if train.has_length() else None,
        )
        self.stop_training = False
        was_training = self.training
        interrupted = _InterruptFlag()
        logs: dict[str, float] = {}
        steps_taken = 0
        try:
            self._prepare(train)
            distributed.prepare(self, training=True)
            self.train()
            callback_list.on_train_begin()
            with interrupted:
                for epoch in range(initial_epoch, epochs):
                    self.reset_metrics()
                    callback_list.on_epoch_begin(epoch)
                    # Read back only for a callback that reads batch logs (Keras's rule); the
                    # metrics accumulate on the device meanwhile. Under torchrun the logs are a
                    # collective, so all ranks read them if any rank's callbacks do.
                    batch_logs = self._batch_logger() \
                        if _ranks.any_rank(callback_list._reads_batch_logs("on_train_batch_end")) else None
                    steps_in_epoch = 0
                    for step, (bx, by, bsw) in enumerate(train):
                        callback_list.on_train_batch_begin(step)
                        self._step(bx, by, bsw, training=True)
                        steps_taken += 1
                        steps_in_epoch += 1
                        callback_list.on_train_batch_end(step, batch_logs() if batch_logs is not None else None)
                        if self.stop_training or interrupted.raised:
                            break
                    if steps_in_epoch == 0 and not interrupted.raised:
                        raise ValueError(
                            f"Invalid value for argument `x`: it yielded no batch in epoch {epoch + 1}, so there is "
                            "nothing to train on."
                        )
                    logs = self._logs()
                    if interrupted.raised:
                        break
                    if val is not None and (epoch + 1) % validation_freq == 0:
                        val_logs = self._evaluate_batches(val)
                        logs.update({f"val_{key}": value for key, value in val_logs.items()})
                        self.train()
                    callback_list.on_epoch_end(epoch, logs)
                    if self.stop_training:
                        break
                if interrupted.raised:
                    # Keep the History consistent up to the last completed batch.
                    callback_list.on_epoch_end(epoch, logs)
        except Exception:
            callback_list._abort()
            if steps_taken == 0:
                # Nothing was trained: the model keeps the History it had.
                if history_before is _ABSENT:
                    self.__dict__.pop("history", None)
                else:
                    self.history = history_before
            raise
        finally:
            self.train(was_training)
            distributed.release(self)
        if epochs > 0:  # as Keras: with use_ema the weights become their moving averages
            self.optimizer.finalize_variable_values(self.trainable_weights)
        callback_list.on_train_end(logs)
        if interrupted.raised:
            raise KeyboardInterrupt
        return self.history

    def _check_learning_rate(self) -> None:
        """Read the learning rate now: a schedule or callable that gives a non-number fails before any step."""
        _ = self.optimizer.learning_rate

    def _validation_batches(self, validation_data: Any, batch_size: int | None, steps: int | None) -> Batches | None:
        if validation_data is None:
            return None
        names = {"name": "validation_data", "steps_name": "validation_steps", "batch_size_name": "validation_batch_size"}
        if isinstance(validation_data, (tuple, list)):
            if not 2 <= len(validation_data) <= 3:
                raise ValueError(
                    "Invalid value for argument `validation_data`: expected `(x_val, y_val)` or "
                    "`(x_val, y_val, val_sample_weight)`, or a Dataset/DataLoader. Received a "
                    f"{type(validation_data).__name__} of length {len(validation_data)}."
                )
            vx, vy, vsw = (tuple(validation_data) + (None,))[:3]
            return make_batches(vx, vy, vsw, batch_size, False, None, steps, shard="eval", **names)
        return make_batches(validation_data, None, None, batch_size, False, None, steps, shard="eval", **names)

    # -- evaluate / predict ---------------------------------------------------------------------
    def _evaluate_batches(self, batches: Batches, callback_list: Any = None) -> dict[str, float]:
        self.reset_metrics()
        self.eval()
        steps = 0
        fillers = distributed.Fillers(self, batches)
        batch_logs = self._batch_logger(local=True) \
            if callback_list is not None and callback_list._reads_batch_logs("on_test_batch_end") else None
        with torch.no_grad():
            for step, (bx, by, bsw) in enumerate(batches):
                if by is None:
                    raise invalid("y" if batches.name == "x" else batches.name,
                                   "batches with targets `y` to evaluate against", None)
                if callback_list is not None:
                    callback_list.on_test_batch_begin(step)
                self._step(bx, by, bsw, training=False)
                steps += 1
                if callback_list is not None:
                    # Ranks may take different numbers of steps: each shows its own running values.
                    callback_list.on_test_batch_end(step, batch_logs() if batch_logs is not None else None)
            fillers.run(steps, bx if steps else None)
        if steps == 0 and not fillers.shared:
            raise ValueError(f"Invalid value for argument `{batches.name}`: it yielded no batch, so there is nothing "
                             "to evaluate.")
        return self._logs()

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: Any = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Sequence[Any] | None = None,
        return_dict: bool = False,
    ) -> Any:
        """The loss (penalties included) and metrics over the data, in inference mode.

        Returns a scalar without metrics, else a list ``[loss, *metrics]`` (or a dict).
        Data with no samples is a ``ValueError``, as are bad arguments, checked first.

        >>> import numpy as np
        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1, kernel_initializer="ones")])
        >>> model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        >>> model.evaluate(np.ones((4, 2)), np.zeros((4, 1)), verbose=0, return_dict=True)
        {'loss': 4.0, 'mae': 2.0}
        >>> model.evaluate(np.ones((4, 2)), np.zeros((4, 1)), verbose=0, return_dict="yes")
        Traceback (most recent call last):
        ...
        ValueError: Invalid value for argument `return_dict`: expected a bool (True or False). Received: return_dict='yes'
        """
        self._assert_compiled("evaluate")
        verbose = callbacks_module._verbose(verbose, (0, 1, 2, "auto"))
        return_dict = flag(return_dict, "return_dict")
        callbacks_module._check_callbacks(callbacks)
        batches = make_batches(x, y, sample_weight, batch_size, False, None, steps, shard="eval")
        self._check_training_data(batches, "evaluate")
        callback_list = callbacks_module.CallbackList(
            callbacks, add_progbar=verbose != 0, model=self,
            verbose=verbose, epochs=1, steps=len(batches) if batches.has_length() else None,
        )
        if not self.built:
            self._prepare(batches)
        distributed.prepare(self, training=False)
        was_training = self.training
        callback_list.on_test_begin()
        try:
            logs = self._evaluate_batches(batches, callback_list)
        except Exception:
            callback_list._abort()
            raise
        finally:
            self.train(was_training)
        callback_list.on_test_end(logs)
        return _returned(logs, return_dict)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto", steps: int | None = None,
                callbacks: Sequence[Any] | None = None) -> Any:
        """Outputs for ``x`` as numpy arrays (a list or dict of them for several outputs), in inference mode.

        Arrays with no samples give outputs with no rows (Keras's ``predict`` fails on them).

        >>> import numpy as np
        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(3)])
        >>> model.predict(np.zeros((0, 2)), verbose=0).shape
        (0, 3)
        """
        verbose = callbacks_module._verbose(verbose, (0, 1, 2, "auto"))
        callbacks_module._check_callbacks(callbacks)
        batches = make_batches(x, None, None, batch_size, False, None, steps, keep_empty=True, shard="eval")
        callback_list = callbacks_module.CallbackList(
            callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
            steps=len(batches) if batches.has_length() else None,
        )
        if self.built:
            distributed.prepare(self, training=False)
        was_training = self.training
        self.eval()
        collected: list[Any] = []
        fillers = distributed.Fillers(self, batches)
        callback_list.on_predict_begin()
        try:
            with torch.no_grad():
                for step, (bx, _, _) in enumerate(batches):
                    callback_list.on_predict_batch_begin(step)
                    collected.append(self(to_device(bx, self._device()), training=False))
                    callback_list.on_predict_batch_end(step, {"outputs": collected[-1]})
                fillers.run(len(collected), bx if collected else None)
        except Exception:
            callback_list._abort()
            raise
        finally:
            self.train(was_training)
            binding.clear_call_losses(self)
        callback_list.on_predict_end()
        if not collected:
            raise ValueError("Invalid value for argument `x`: it yielded no batch, so there is nothing to predict.")
        # Under torchrun each rank predicted its part of the data: every rank returns it all, in order.
        return distributed.gather_outputs(collected, batches.split, _concatenate)

    # -- single batches -------------------------------------------------------------------------
    def _single(self, x: Any, y: Any, sample_weight: Any, class_weight: Any, what: str) -> Batch:
        bx, by, bsw = single_batch(x, y, sample_weight, class_weight)
        if _batch_size(bx) == 0:
            raise ValueError(f"Invalid value for argument `x`: it holds no samples, so there is nothing to {what}.")
        if by is None:
            raise invalid("y", f"targets to {what} against", None)
        return bx, by, bsw

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: Mapping[int, float] | None = None, return_dict: bool = False) -> Any:
        """One training step on one batch; metrics accumulate until :meth:`reset_metrics`."""
        self._assert_compiled("train_on_batch")
        return_dict = flag(return_dict, "return_dict")
        bx, by, bsw = self._single(x, y, sample_weight, class_weight, "train on")
        self._check_learning_rate()
        self._prepare(make_batches(bx, by, bsw))
        distributed.prepare(self, training=True)
        was_training = self.training
        self.train()
        try:
            self._step(bx, by, bsw, training=True)
        finally:
            self.train(was_training)
            distributed.release(self)
        return _returned(self._logs(), return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """The loss and metrics of one batch, in inference mode; metrics accumulate."""
        self._assert_compiled("test_on_batch")
        return_dict = flag(return_dict, "return_dict")
        bx, by, bsw = self._single(x, y, sample_weight, None, "evaluate")
        if not self.built:
            self._prepare(make_batches(bx, by, bsw))
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self._step(bx, by, bsw, training=False)
        finally:
            self.train(was_training)
        return _returned(self._logs(), return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        """Outputs of one batch as numpy arrays."""
        bx, _, _ = single_batch(x, None, None, None)
        return self.predict(bx, batch_size=max(_batch_size(bx), 1), verbose=0)


_ABSENT = object()


def _check_optimizer_covers(optimizer: Any, weights: list[torch.Tensor]) -> None:
    """A built optimizer must update every trainable weight (a ``ValueError`` otherwise, from its ``build``).

    Weights frozen since it was built are fine: they get no gradient, so no update, as in Keras,
    where ``trainable = False`` takes effect at the next step without recompiling. Weights that
    became trainable since then need a new optimizer (recompile), as in Keras.
    """
    if not optimizer.built:
        return
    built_for = {id(p) for p in optimizer._params}
    if any(id(w) not in built_for for w in weights):
        optimizer.build(weights)


def _serialize_spec(spec: Any) -> Any:
    """A loss or metrics argument of ``compile`` in config form: names stay names, objects become configs."""
    if spec is None or isinstance(spec, (str, int, float, bool)):
        return spec
    if isinstance(spec, (list, tuple)):
        return [_serialize_spec(item) for item in spec]
    if isinstance(spec, Mapping):
        return {key: _serialize_spec(value) for key, value in spec.items()}
    return serialize_keras_object(spec)


def _deserialize_spec(spec: Any, deserialize: Any) -> Any:
    if isinstance(spec, list):
        return [_deserialize_spec(item, deserialize) for item in spec]
    if isinstance(spec, Mapping):
        if "class_name" in spec:
            return deserialize(spec)
        return {key: _deserialize_spec(value, deserialize) for key, value in spec.items()}
    return spec


def _deserialize_metric(config: Mapping[str, Any]) -> Any:
    # A metric may be stored as a loss function (compile(metrics=[keras.losses.mse])).
    try:
        return metrics_module.deserialize(config)
    except ValueError:
        return losses_module.deserialize(config)


def _detached(prediction: Any) -> Any:
    """``prediction`` cut from the graph, keeping its mask: metrics weight by it, as in Keras."""
    if not isinstance(prediction, torch.Tensor):
        return prediction
    mask = get_keras_mask(prediction)
    detached = prediction.detach()
    if mask is not None:
        set_keras_mask(detached, mask)
    return detached


def _batch_size(x: Any) -> int:
    leaves = [leaf for leaf in flatten(x) if isinstance(leaf, torch.Tensor)]
    return int(leaves[0].shape[0]) if leaves and leaves[0].dim() else 1


def _returned(logs: dict[str, float], return_dict: bool) -> Any:
    if return_dict:
        return logs
    values = [value for key, value in logs.items() if key != "regularization_loss"]
    return values[0] if len(values) == 1 else values


def _concatenate(outputs: list[Any]) -> Any:
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        joined = torch.cat([o.detach().cpu() for o in outputs])  # a new tensor: the array is no view of the model
        # numpy has no bfloat16; float32 holds every bfloat16 value exactly.
        return (joined.float() if joined.dtype == torch.bfloat16 else joined).numpy()
    if isinstance(first, Mapping):
        return {key: _concatenate([o[key] for o in outputs]) for key in first}
    return type(first)(_concatenate([o[i] for o in outputs]) for i in range(len(first)))


@final
class _InterruptFlag:
    """While active (main thread only), Ctrl-C sets ``raised`` instead of interrupting mid-step."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
