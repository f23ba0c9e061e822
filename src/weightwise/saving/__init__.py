"""Registration of custom objects, as ``keras.saving`` offers it.

>>> from weightwise import saving
>>> @saving.register_keras_serializable(package="MyPackage")
... def my_penalty(x):
...     return 1e-3 * (x * x).sum()
>>> saving.get_registered_name(my_penalty)
'MyPackage>my_penalty'
"""

from weightwise.serialization import (
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
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
    "register_keras_serializable",
    "serialize_keras_object",
]
