"""Models: ``Sequential``, functional ``Model(inputs, outputs)`` and subclassed ``Model``, with
Keras's ``compile``/``fit``/``evaluate``/``predict`` training loop."""

from weightwise.models.functional import Functional
from weightwise.models.model import Model
from weightwise.models.sequential import Sequential

__all__ = ["Functional", "Model", "Sequential"]
