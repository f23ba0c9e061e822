"""weightwise: Keras layer weight regularizers and constraints for PyTorch.

``import weightwise as keras`` gives Keras's names for the supported subset:

>>> import weightwise as keras
>>> keras.regularizers.L2(2.0)(keras.ops.ones((5, 5)))
tensor(50.)
>>> keras.constraints.NonNeg()(keras.ops.convert_to_tensor([-1.0, 1.0]))
tensor([0., 1.])
>>> layer = keras.layers.Dense(2, kernel_regularizer="l2")
>>> isinstance(layer, keras.Layer) and isinstance(layer, __import__("torch").nn.Module)
True
"""

from weightwise import (
    activations,
    backend,
    binding,
    callbacks,
    clock,
    compiled_step,
    config,
    constraints,
    distribution,
    dtype_policies,
    engine,  # noqa: F401  (registers the grouped fast path behind binding's public functions)
    initializers,
    interop,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    ops,
    optimizers,
    random,
    regularizers,
    saving,
    utils,
)
from weightwise.binding import apply_constraints, apply_proximal, regularization_loss
from weightwise.compiled_step import train_step
from weightwise.constraints import Constraint
from weightwise.decay import decay
from weightwise.dtype_policies import DTypePolicy, FloatDTypePolicy
from weightwise.initializers import Initializer
from weightwise.interop import constrain, describe, regularize, regularize_activity
from weightwise.layers import Input, InputSpec, Layer
from weightwise.lipschitz import lipschitz_bound
from weightwise.models import Model, Sequential
from weightwise.regularizers import Regularizer
from weightwise.report import report
from weightwise.variables import Variable

__version__ = "0.1.0"

__all__ = [
    "Constraint",
    "DTypePolicy",
    "FloatDTypePolicy",
    "Initializer",
    "Input",
    "InputSpec",
    "Layer",
    "Model",
    "Regularizer",
    "Sequential",
    "Variable",
    "activations",
    "apply_constraints",
    "apply_proximal",
    "backend",
    "binding",
    "callbacks",
    "clock",
    "compiled_step",
    "config",
    "constrain",
    "constraints",
    "decay",
    "describe",
    "distribution",
    "dtype_policies",
    "initializers",
    "interop",
    "layers",
    "lipschitz_bound",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
    "ops",
    "optimizers",
    "random",
    "regularization_loss",
    "regularize",
    "regularize_activity",
    "regularizers",
    "report",
    "saving",
    "train_step",
    "utils",
]
