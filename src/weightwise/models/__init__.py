"""Models: ``Sequential``, functional ``Model(inputs, outputs)`` and subclassed ``Model``, with
Keras's ``compile``/``fit``/``evaluate``/``predict`` training loop, configs, JSON, cloning,
and ``.keras`` files."""

from weightwise import layers as _layers
from weightwise.models.cloning import clone_model, model_from_json
from weightwise.models.functional import Functional
from weightwise.models.model import Model
from weightwise.models.sequential import Sequential
from weightwise.saving import load_model, save_model
from weightwise.serialization import ObjectFamily

# The module names Keras 3 writes for its model classes, so that each side loads the other's configs.
_FAMILY = ObjectFamily(
    "model",
    "keras.models",
    [Model, Sequential, Functional],
    forms={
        Sequential: ("keras", None),
        Functional: ("keras.src.models.functional", "Functional"),
    },
)
_FAMILY.register_modules({"keras.src.models.sequential", "keras.src.models.model"})
# A model nested in another is stored among its layers.
_layers._FAMILY.accept_members(_FAMILY)

__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]
