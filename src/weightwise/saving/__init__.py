"""Saving and loading: Keras 3's ``.keras`` and ``.weights.h5`` files, and the
registration of custom objects, as ``keras.saving`` offers them.

>>> from weightwise import saving
>>> @saving.register_keras_serializable(package="MyPackage")
... def my_penalty(x):
...     return 1e-3 * (x * x).sum()
>>> saving.get_registered_name(my_penalty)
'MyPackage>my_penalty'
"""

from weightwise.saving.keras_file import (
    load_model,
    load_weights,
    save_model,
    save_weights,
)
from weightwise.serialization import (
    ObjectSharingScope,
    SafeModeScope,
    custom_object_scope,
    deserialize_keras_object,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
    serialize_keras_object,
)

CustomObjectScope = custom_object_scope

__all__ = [
    "CustomObjectScope",
    "ObjectSharingScope",
    "SafeModeScope",
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "load_weights",
    "register_keras_serializable",
    "save_model",
    "save_weights",
    "serialize_keras_object",
]
