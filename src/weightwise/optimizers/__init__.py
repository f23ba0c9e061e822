"""Keras-named optimizers that drive ``torch.optim``.

Each optimizer has the name, arguments, defaults and config of its Keras 3
counterpart, and runs the update of the matching ``torch.optim`` class (RMSprop
runs Keras's own update, in a ``torch.optim.Optimizer`` of multi-tensor
operations: torch's places epsilon elsewhere). What Keras does around the
update is done here, in Keras's order, on every :meth:`Optimizer.step`:

1. the learning rate is read from the schedule, if ``learning_rate`` is one
   (``schedule(iterations)``, with ``iterations`` counting from 0);
2. ``loss_scale_factor`` is divided out of the gradients;
3. gradients are clipped: ``clipvalue`` elementwise, ``clipnorm`` per
   parameter, ``global_clipnorm`` over all of them (Keras's formulas exactly);
4. weight decay is decoupled, as in Keras 3, for every optimizer that has
   ``weight_decay`` set: ``w -= learning_rate * weight_decay * w``, except on the
   variables left out by :meth:`Optimizer.exclude_from_weight_decay`;
5. the ``torch.optim`` step;
6. ``iterations += 1``.

Parameters whose ``.grad`` is ``None`` are left alone, as Keras leaves variables
without gradients. Unscaling and clipping happen in place on ``.grad``. Optimizers are created without parameters, as in Keras;
:meth:`Optimizer.build` hands them the parameters and creates
``torch_optimizer``. Keras's custom-loop calls work too:
:meth:`Optimizer.apply` ``(grads, variables)`` and
:meth:`Optimizer.apply_gradients` ``(zip(grads, variables))`` build on first
use, take the gradients given (leaving ``.grad`` alone), do the same steps, and
then apply the constraint bound to each updated variable, as Keras does.

>>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
>>> opt = get("sgd")
>>> opt.build([w])
>>> w.grad = torch.tensor([0.5, 0.5])
>>> opt.step()
True
>>> w.detach()
tensor([ 0.9950, -2.0050])
>>> opt.iterations
1

Where ``torch.optim`` computes something differently from Keras, the class
docstring says so and what is done about it; the test suite measures every
trajectory against Keras 3 (torch backend).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch

from weightwise.optimizers.adagrad import Adagrad
from weightwise.optimizers.adam import Adam
from weightwise.optimizers.adamw import AdamW
from weightwise.optimizers.base_optimizer import Optimizer
from weightwise.optimizers.learning_rate_schedule import (
    ExponentialDecay,
    LearningRateSchedule,
    schedules,
)
from weightwise.optimizers.loss_scale_optimizer import LossScaleOptimizer
from weightwise.optimizers.rmsprop import RMSprop
from weightwise.optimizers.sgd import SGD
from weightwise.optimizers.torch_optimizer import TorchOptimizer
from weightwise.serialization import ObjectFamily

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "ExponentialDecay",
    "LearningRateSchedule",
    "LossScaleOptimizer",
    "Optimizer",
    "RMSprop",
    "TorchOptimizer",
    "deserialize",
    "get",
    "schedules",
    "serialize",
]


_BUILTINS = [Optimizer, SGD, Adam, AdamW, RMSprop, Adagrad, LossScaleOptimizer]
# Keras resolves built-in optimizer names case-insensitively ('adam', 'Adam', 'ADAM').
_LOWER = {cls.__name__.lower(): cls for cls in _BUILTINS}

_FAMILY = ObjectFamily("optimizer", "keras.optimizers", _BUILTINS, extra_names=_LOWER)

# Keras on its torch backend serializes its optimizers under backend modules.
_KERAS_BACKEND_MODULE = re.compile(r"^keras\.src\.backend\.\w+\.optimizers(\.\w+)?$")


def serialize(optimizer: Any) -> dict[str, Any] | None:
    """Return the Keras 3 config dict of an optimizer.

    >>> serialize(SGD(momentum=0.9))["config"]["momentum"]
    0.9
    """
    return _FAMILY.serialize(optimizer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build an optimizer from a Keras 3 config dict (or a string id).

    Class names are case-insensitive for built-ins, as in Keras, and the
    configs Keras writes on its torch backend (module
    ``keras.src.backend.torch.optimizers.torch_sgd``) are read too.

    >>> deserialize({"class_name": "Adam", "config": {"learning_rate": 0.01}}).learning_rate
    0.01
    """
    if isinstance(config, Mapping):
        config = dict(config)
        class_name = config.get("class_name")
        if isinstance(class_name, str) and class_name.lower() in _LOWER:
            module = config.get("module")
            if isinstance(module, str) and _KERAS_BACKEND_MODULE.match(module):
                config["module"] = "keras.optimizers"
                if config.get("registered_name") == class_name:
                    config["registered_name"] = None
            config["class_name"] = _LOWER[class_name.lower()].__name__
        if config.get("class_name") == LossScaleOptimizer.__name__ and isinstance(config.get("config"), Mapping):
            # Its inner optimizer's config may name a Keras backend module that only this function reads.
            inner = config["config"].get("inner_optimizer")
            if isinstance(inner, (Mapping, str)):
                config["config"] = {**config["config"], "inner_optimizer": deserialize(inner, custom_objects)}
    elif isinstance(config, str) and config.lower() in _LOWER:
        config = _LOWER[config.lower()].__name__
    return _FAMILY.deserialize(config, custom_objects)


def get(identifier: Any) -> Optimizer | None:
    """Resolve an optimizer identifier to an :class:`Optimizer`.

    ``None`` stays ``None``; strings (``'sgd'``, ``'adam'``, ``'adamw'``,
    ``'rmsprop'``, ``'adagrad'``, class names, any case) and config dicts are
    deserialized; an :class:`Optimizer` passes through; a ``torch.optim.Optimizer``
    is wrapped in :class:`TorchOptimizer`. Anything else raises a ``ValueError``.

    >>> get("rmsprop")
    <RMSprop name='rm_sprop' learning_rate=0.001>
    >>> get("nadam")
    Traceback (most recent call last):
    ...
    ValueError: Unknown optimizer: 'nadam'. ...
    """
    if identifier is None:
        return None
    if isinstance(identifier, (str, Mapping)):
        obj = deserialize(identifier)
    elif isinstance(identifier, torch.optim.Optimizer):
        obj = TorchOptimizer(identifier)
    elif inspect.isclass(identifier) and issubclass(identifier, Optimizer):
        obj = identifier()
    else:
        obj = identifier
    if isinstance(obj, Optimizer):
        return obj
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Expected None, a string id, a config dict, "
        "an Optimizer or a torch.optim.Optimizer."
    )
