"""The generic serialize/deserialize of ``weightwise.serialization``, checked against Keras 3's
``serialization_lib`` run in-process on the same values."""

from __future__ import annotations

import base64
import json
import marshal
import types
import warnings

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip
from weightwise import (
    activations,
    constraints,
    layers,
    regularizers,
    saving,
    serialization,
)
from weightwise.serialization import (
    ObjectSharingScope,
    SafeModeScope,
    deserialize_keras_object,
    serialize_keras_object,
)


def json_roundtrip(value):
    return json.loads(json.dumps(value))


def builtin_functions():
    """Every built-in function weightwise serializes: those of the activation, loss and metric families."""
    found = sorted(
        ((module, obj.__name__, obj) for obj, module in serialization._BUILTIN_MODULE.items()
         if isinstance(obj, types.FunctionType)),
        key=lambda item: item[:2],
    )
    assert len(found) >= 40  # the families register their functions; an empty list would test nothing
    return found


BUILTIN_FUNCTIONS = builtin_functions()
WEIGHTWISE_ONLY_FUNCTIONS = {("metrics", "accuracy")}


@pytest.mark.parametrize(("module", "name", "function"), BUILTIN_FUNCTIONS, ids=[f"{m}.{n}" for m, n, _ in BUILTIN_FUNCTIONS])
def test_every_builtin_function_round_trips_in_keras_form(module, name, function) -> None:
    keras = keras_or_skip()
    from keras.src.saving import serialization_lib

    ours = serialize_keras_object(function)
    assert deserialize_keras_object(json_roundtrip(ours)) is function
    assert ours == {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}
    family = module.split(".")[-1]
    keras_function = getattr(getattr(keras, family), name, None)
    if keras_function is None:
        # weightwise's own function (Keras has the class Accuracy, no function `accuracy`): Keras cannot load it.
        assert (family, name) in WEIGHTWISE_ONLY_FUNCTIONS
        return
    assert ours == serialization_lib.serialize_keras_object(keras_function)
    # Keras reads our form back to its own function of that name.
    assert serialization_lib.deserialize_keras_object(json_roundtrip(ours)) is keras_function


def test_the_issue_example_relu() -> None:
    assert saving.deserialize_keras_object(saving.serialize_keras_object(activations.relu)) is activations.relu


def test_ops_used_as_functions_serialize_as_keras_does() -> None:
    keras = keras_or_skip()
    from keras.src.saving import serialization_lib

    checked = 0
    for name in weightwise.ops.__all__:
        ours_fn = getattr(weightwise.ops, name)
        theirs_fn = getattr(keras.ops, name, None)
        if not isinstance(ours_fn, types.FunctionType) or theirs_fn is None or ours_fn.__name__ != name:
            continue  # not a function, not in Keras, or our alias of another op (``abs`` is ``absolute``)
        ours = serialize_keras_object(ours_fn)
        assert ours == serialization_lib.serialize_keras_object(theirs_fn), name
        try:
            expected = serialization_lib.deserialize_keras_object(json_roundtrip(ours))
        except (TypeError, ValueError):
            # Keras cannot load an op stored by name alone unless it is also an activation, loss, ...
            with pytest.raises(ValueError, match="Unknown function"):
                deserialize_keras_object(ours)
        else:
            got = deserialize_keras_object(ours)
            assert got.__name__ == expected.__name__
        checked += 1
    assert checked >= 20


def test_functions_given_as_regularizers_constraints_and_initializers() -> None:
    @saving.register_keras_serializable(package="SerialLib")
    def tiny(x):
        return 1e-4 * x.abs().sum()

    dense = layers.Dense(2, kernel_regularizer=tiny, kernel_constraint=tiny, kernel_initializer=tiny)
    for key in ("kernel_regularizer", "kernel_constraint", "kernel_initializer"):
        config = serialize_keras_object(getattr(dense, key))
        assert config == {"module": "builtins", "class_name": "function", "config": "SerialLib>tiny",
                          "registered_name": "function"}
        assert deserialize_keras_object(config) is tiny
    restored = layers.Dense.from_config(json_roundtrip(dense.get_config()))
    assert restored.kernel_regularizer is tiny and restored.kernel_constraint is tiny


PLAIN_VALUES = [
    None, "hello", 3, 2.5, True, b"bytes",
    [1, "two", 3.0, None], (1, 2), {"a": 1, "b": [True, False]}, {"nested": {"t": (1, (2, 3))}},
    np.float32(1.5), np.int64(7), np.bool_(True), np.array(4.0),
    np.array([0, 1]), np.array([[0.5, 1.0]], dtype=np.float32), np.array([True, False]),
    slice(None, 20, 1), slice(1, np.array([0, 1]), None), Ellipsis,
    torch.tensor([1.0, 2.0]), torch.tensor([[1, 2]], dtype=torch.int32),
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=lambda v: type(v).__name__)
def test_plain_values_serialize_exactly_as_keras(value) -> None:
    keras_or_skip()
    from keras.src.saving import serialization_lib

    ours = serialize_keras_object(value)
    theirs = serialization_lib.serialize_keras_object(value)
    assert ours == theirs
    assert type(ours) is type(theirs)
    # Both read back what we wrote to the same value.
    back = deserialize_keras_object(json_roundtrip(ours))
    expected = serialization_lib.deserialize_keras_object(json_roundtrip(theirs))
    assert_same_value(back, expected)
    assert serialize_keras_object(back) == json_roundtrip(ours) or isinstance(value, tuple) or _has_tuple(value)


def _has_tuple(value):
    if isinstance(value, tuple):
        return True
    if isinstance(value, dict):
        return any(_has_tuple(v) for v in value.values())
    return False


def assert_same_value(ours, theirs):
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor) and ours.dtype == theirs.dtype and torch.equal(ours, theirs.cpu())
    elif isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    elif isinstance(theirs, slice):
        assert isinstance(ours, slice)
        for part in ("start", "stop", "step"):
            assert_same_value(getattr(ours, part), getattr(theirs, part))
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys()
        for key in theirs:
            assert_same_value(ours[key], theirs[key])
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same_value(a, b)
    else:
        assert type(ours) is type(theirs) and ours == theirs


def test_torch_dtypes_become_their_names() -> None:
    assert serialize_keras_object(torch.float16) == "float16"
    assert serialize_keras_object({"dtype": torch.bfloat16}) == {"dtype": "bfloat16"}


def test_bfloat16_tensors_keep_their_dtype() -> None:
    value = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    back = deserialize_keras_object(json_roundtrip(serialize_keras_object(value)))
    assert back.dtype == torch.bfloat16 and torch.equal(back, value)


def test_non_utf8_bytes_and_objects_without_config_are_refused() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        serialize_keras_object(b"\xff\xfe")
    with pytest.raises(TypeError, match="no `get_config\\(\\)` method"):
        serialize_keras_object(object())


def test_strings_naming_custom_objects_resolve() -> None:
    def custom(x):
        return x

    assert deserialize_keras_object("custom", custom_objects={"custom": custom}) is custom
    assert deserialize_keras_object("no such object") == "no such object"


# -- malformed configs: Keras's messages -------------------------------------------------
def test_malformed_configs_raise_keras_messages() -> None:
    with pytest.raises(TypeError, match="Expected 'config' to be a dict"):
        deserialize_keras_object({"class_name": "Dense", "config": [1, 2, 3]})
    with pytest.raises(TypeError, match="Expected 'config' to be a non-null str"):
        deserialize_keras_object({"class_name": "function", "config": ["not", "a", "string"]})
    with pytest.raises(TypeError, match="safe_mode"):
        deserialize_keras_object({}, safe_mode="no")
    with pytest.raises(TypeError, match="unexpected keyword"):
        deserialize_keras_object({}, colour="red")
    with pytest.raises(ValueError, match="Unknown function: 'nope'"):
        deserialize_keras_object({"module": "builtins", "class_name": "function", "config": "nope",
                                  "registered_name": "function"})


def test_tensorflow_typespecs_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="Expected 'config' to be a list or a tuple"):
        deserialize_keras_object({"class_name": "__typespec__", "config": "not a list"})
    with pytest.raises(ValueError, match="TensorFlow TypeSpec 'TensorSpec'"):
        deserialize_keras_object({"class_name": "__typespec__", "spec_name": "TensorSpec", "config": [[2], "float32"]})


def test_a_dict_without_class_name_and_config_is_plain() -> None:
    config = {"class_name": "L2", "value": {"module": "keras.constraints", "class_name": "NonNeg", "config": {}}}
    result = deserialize_keras_object(config)
    assert result["class_name"] == "L2" and isinstance(result["value"], constraints.NonNeg)


# -- registered names: Keras 3.15's check and Keras 3.6's form ---------------------------
@pytest.mark.parametrize("bad", ["builtins.eval", "subprocess.Popen", "not.a.real.name", "my_pkg>MyDense"])
def test_a_builtin_with_a_foreign_registered_name_is_refused(bad) -> None:
    keras_or_skip()
    from keras.src.saving import serialization_lib

    config = {"class_name": "Dense", "module": "keras.layers", "registered_name": bad, "config": {"units": 1}}
    with pytest.raises(ValueError, match="resolved to a Keras built-in"):
        serialization_lib.deserialize_keras_object(config)
    with pytest.raises(ValueError, match="resolved to a Keras built-in"):
        deserialize_keras_object(config)
    with pytest.raises(ValueError, match="resolved to a Keras built-in"):
        regularizers.deserialize({"class_name": "L2", "module": "keras.regularizers", "registered_name": bad,
                                  "config": {"l2": 0.1}})


@pytest.mark.parametrize("registered_name", [None, "", "Dense", "__missing__"])
def test_a_builtin_with_no_or_its_own_registered_name_loads(registered_name) -> None:
    config = {"class_name": "Dense", "module": "keras.layers", "config": {"units": 1}}
    if registered_name != "__missing__":
        config["registered_name"] = registered_name
    assert isinstance(deserialize_keras_object(config), layers.Dense)


def test_builtin_function_registered_names() -> None:
    with pytest.raises(ValueError, match="resolved to a Keras built-in"):
        deserialize_keras_object({"class_name": "function", "module": "builtins",
                                  "registered_name": "some_other_name", "config": "relu"})
    for registered_name in ("function", "relu", None):
        assert deserialize_keras_object({"class_name": "function", "module": "builtins",
                                         "registered_name": registered_name, "config": "relu"}) is activations.relu


def test_keras36_form_of_a_registered_function() -> None:
    @saving.register_keras_serializable(package="serial_lib_test")
    def registered_square(x):
        return x**2

    for name in ("registered_square", "serial_lib_test>registered_square"):
        config = {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}
        assert deserialize_keras_object(config) is registered_square
        assert activations.deserialize(config) is registered_square


def scale_layer(base: type) -> type:
    """A custom layer multiplying by ``factor``, on the Layer class ``base`` (ours or Keras's)."""

    class Scale(base):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    return Scale


def test_registered_custom_layer_round_trips_with_its_registered_name() -> None:
    Scale = saving.register_keras_serializable(package="SerialLib")(scale_layer(layers.Layer))
    config = serialize_keras_object(Scale(3.0))
    assert config["registered_name"] == "SerialLib>Scale"
    restored = deserialize_keras_object(json_roundtrip(config))
    assert isinstance(restored, Scale) and restored.factor == 3.0


def test_objects_in_a_custom_config_are_serialized_in_turn() -> None:
    class Holder:
        def __init__(self, rule, shape):
            self.rule, self.shape = rule, shape

        def get_config(self):
            return {"rule": self.rule, "shape": self.shape}

        @classmethod
        def from_config(cls, config):
            return cls(deserialize_keras_object(config["rule"]), tuple(config["shape"]))

    config = serialize_keras_object(Holder(regularizers.L2(0.5), np.array([2, 3])))
    assert config["config"]["rule"]["class_name"] == "L2"
    assert config["config"]["shape"]["class_name"] == "__numpy__"
    assert config["module"] == __name__ and config["registered_name"] == "Holder"


# -- lambdas and safe mode ---------------------------------------------------------------
def lambda_config():
    with pytest.warns(UserWarning, match="lambda"):
        return json_roundtrip(serialize_keras_object({"activation": lambda x: x**2 + 1}))


def test_lambdas_are_stored_as_keras_stores_them() -> None:
    keras_or_skip()
    from keras.src.saving import serialization_lib

    square = lambda x: x**2
    with pytest.warns(UserWarning, match="lambda"):
        ours = serialize_keras_object(square)
    with pytest.warns(UserWarning, match="lambda"):
        theirs = serialization_lib.serialize_keras_object(square)
    assert ours == theirs
    # Keras rebuilds our stored lambda, and we rebuild Keras's.
    assert serialization_lib.deserialize_keras_object(json_roundtrip(ours), safe_mode=False)(3) == 9
    assert deserialize_keras_object(json_roundtrip(theirs), safe_mode=False)(4) == 16


def test_lambdas_load_only_in_unsafe_mode() -> None:
    config = lambda_config()
    with pytest.raises(ValueError, match="arbitrary code execution"):
        deserialize_keras_object(config)
    assert deserialize_keras_object(config, safe_mode=False)["activation"](3) == 10


def test_a_lambda_with_defaults_and_closure_round_trips() -> None:
    offset = 5

    def make():
        return lambda x, scale=2: scale * x + offset

    with pytest.warns(UserWarning):
        config = json_roundtrip(serialize_keras_object(make()))
    assert deserialize_keras_object(config, safe_mode=False)(1) == 7


def test_safe_mode_scope_overrides_the_argument() -> None:
    config = lambda_config()
    with SafeModeScope(safe_mode=True), pytest.raises(ValueError, match="arbitrary code execution"):
        deserialize_keras_object(config, safe_mode=False)
    with SafeModeScope(safe_mode=False):
        assert deserialize_keras_object(config)["activation"](2) == 5
        # A family's own deserialize, as a layer's from_config calls it, sees the scope.
        assert activations.deserialize(config["activation"])(1) == 2
    with pytest.raises(TypeError, match="safe_mode"):
        SafeModeScope(safe_mode="yes")


def test_a_lambda_inside_a_layer_config_needs_unsafe_mode() -> None:
    with pytest.warns(UserWarning, match="lambda"):
        config = json_roundtrip(serialize_keras_object(layers.Dense(2, activation=lambda x: x * 3)))
    with pytest.raises(ValueError, match="arbitrary code execution"):
        deserialize_keras_object(config)
    dense = deserialize_keras_object(config, safe_mode=False)
    assert dense.activation(torch.tensor(2.0)) == 6


def test_enable_unsafe_deserialization_lifts_safe_mode() -> None:
    config = lambda_config()
    try:
        serialization.enable_unsafe_deserialization()
        assert serialization.in_safe_mode() is False
        assert deserialize_keras_object(config)["activation"](1) == 2
        with SafeModeScope(True), pytest.raises(ValueError, match="arbitrary code execution"):
            deserialize_keras_object(config)
    finally:
        serialization._restore_safe_default()
    assert serialization.in_safe_mode() is None


def test_the_global_switch_in_weightwise_config_is_followed(monkeypatch) -> None:
    """Where weightwise.config keeps the global safe-mode setting, serialization reads and sets it there."""
    state = {"safe": None}
    monkeypatch.setattr(weightwise.config, "in_safe_mode", lambda: state["safe"], raising=False)
    monkeypatch.setattr(weightwise.config, "set_safe_mode", lambda value: state.update(safe=value), raising=False)
    monkeypatch.setattr(weightwise.config, "enable_unsafe_deserialization", lambda: state.update(safe=False),
                        raising=False)
    config = lambda_config()
    with pytest.raises(ValueError, match="arbitrary code execution"):
        deserialize_keras_object(config)
    weightwise.config.enable_unsafe_deserialization()
    assert serialization.in_safe_mode() is False
    assert deserialize_keras_object(config)["activation"](1) == 2
    serialization._restore_safe_default()
    assert state["safe"] is None and serialization.in_safe_mode() is None
    serialization.enable_unsafe_deserialization()
    assert state["safe"] is False and not serialization._UNSAFE_EVERYWHERE
    serialization._restore_safe_default()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"value": ["bad!", None, None]}, "bytecode is damaged"),
        ({"value": ["YmFk", None, None]}, "bytecode is damaged"),
        ({"value": "code"}, "bytecode is damaged"),
        ({"value": 3}, "must be"),
        ({}, "must be"),
        ({"value": [base64.encodebytes(marshal.dumps(0)).decode(), None, None]}, "not code"),
    ],
)
def test_damaged_lambdas_raise_clearly_even_unsafe(value, match) -> None:
    with pytest.raises(ValueError, match=match):
        deserialize_keras_object({"class_name": "__lambda__", "config": value}, safe_mode=False)


def test_a_lambda_with_the_wrong_closure_is_refused() -> None:
    offset = 1
    with pytest.warns(UserWarning):
        config = json_roundtrip(serialize_keras_object(lambda x: x + offset))
    config["config"]["value"][2] = None
    with pytest.raises(ValueError, match="closure"):
        deserialize_keras_object(config, safe_mode=False)


# -- shared objects ----------------------------------------------------------------------
class SharedActivation:
    def __call__(self, x):
        return x**2

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


def test_object_sharing_scope_marks_and_restores_shared_objects() -> None:
    keras = keras_or_skip()
    from keras.src.saving import serialization_lib

    shared = SharedActivation()
    with ObjectSharingScope():
        ours = serialize_keras_object([shared, shared, SharedActivation()])
        restored = deserialize_keras_object(json_roundtrip(ours), custom_objects={"SharedActivation": SharedActivation})
    with serialization_lib.ObjectSharingScope():
        theirs = serialization_lib.serialize_keras_object([shared, shared, SharedActivation()])
    assert [("shared_object_id" in c) for c in ours] == [("shared_object_id" in c) for c in theirs] == [True, True, False]
    assert ours[0]["shared_object_id"] == ours[1]["shared_object_id"]
    assert {k: v for k, v in ours[2].items()} == {k: v for k, v in theirs[2].items()}
    assert restored[0] is restored[1] and restored[2] is not restored[0]
    # Outside a scope nothing is shared.
    assert "shared_object_id" not in serialize_keras_object([shared, shared])[1]
    assert keras is not None


def test_shared_objects_are_one_object_inside_layers_configs() -> None:
    rule = regularizers.L2(0.1)
    with ObjectSharingScope():
        configs = serialize_keras_object([layers.Dense(1, kernel_regularizer=rule), rule, rule])
        first, second, third = deserialize_keras_object(json_roundtrip(configs))
    assert second is third and isinstance(second, regularizers.L2)
    assert isinstance(first, layers.Dense)


def test_scripts_defined_classes_have_no_module() -> None:
    class Script:
        def get_config(self):
            return {}

    Script.__module__ = "__main__"
    assert serialize_keras_object(Script())["module"] is None


def test_warnings_are_not_raised_for_named_functions() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        serialize_keras_object(activations.gelu)
