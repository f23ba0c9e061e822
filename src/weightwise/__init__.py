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
    config,
    constraints,
    initializers,
    layers,
    ops,
    regularizers,
    saving,
)
from weightwise.constraints import Constraint
from weightwise.initializers import Initializer
from weightwise.layers import InputSpec, Layer
from weightwise.regularizers import Regularizer

__version__ = "0.1.0"

__all__ = [
    "Constraint",
    "Initializer",
    "InputSpec",
    "Layer",
    "Regularizer",
    "activations",
    "backend",
    "binding",
    "config",
    "constraints",
    "initializers",
    "layers",
    "ops",
    "regularizers",
    "saving",
]
