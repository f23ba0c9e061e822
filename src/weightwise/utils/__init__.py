"""Keras's ``keras.utils``: what scripts import around their models.

- labels and arrays: :func:`to_categorical`, :func:`normalize`, :func:`pad_sequences`;
- reproducibility: :func:`set_random_seed`;
- data: :class:`PyDataset` (and ``Sequence``), :func:`split_dataset`,
  :func:`pack_x_y_sample_weight`, :func:`unpack_x_y_sample_weight`;
- files: :func:`get_file` (from the cache only; nothing is downloaded);
- the serialization registry, as ``keras.utils`` re-exports it.

>>> from weightwise import utils
>>> utils.to_categorical([1, 0], num_classes=2).tolist()
[[0.0, 1.0], [1.0, 0.0]]
"""

from weightwise.backend import clear_session
from weightwise.serialization import (
    custom_object_scope,
    deserialize_keras_object,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
    serialize_keras_object,
)
from weightwise.utils.data_adapter_utils import (
    pack_x_y_sample_weight,
    unpack_x_y_sample_weight,
)
from weightwise.utils.dataset_utils import split_dataset
from weightwise.utils.file_utils import get_file
from weightwise.utils.model_visualization import model_to_dot, plot_model
from weightwise.utils.numerical_utils import normalize, to_categorical
from weightwise.utils.py_dataset import PyDataset, Sequence
from weightwise.utils.rng_utils import set_random_seed
from weightwise.utils.sequence_utils import pad_sequences

# Keras exports the scope under both names.
CustomObjectScope = custom_object_scope

__all__ = [
    "CustomObjectScope",
    "PyDataset",
    "Sequence",
    "clear_session",
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_file",
    "get_registered_name",
    "get_registered_object",
    "model_to_dot",
    "normalize",
    "pack_x_y_sample_weight",
    "pad_sequences",
    "plot_model",
    "register_keras_serializable",
    "serialize_keras_object",
    "set_random_seed",
    "split_dataset",
    "to_categorical",
    "unpack_x_y_sample_weight",
]
