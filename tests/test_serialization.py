"""The one serialization mechanism: registration, scopes, custom objects, both config forms."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from weightwise import constraints, ops, regularizers, saving
from weightwise.regularizers import L2, Regularizer
from weightwise.serialization import ObjectFamily, to_snake_case


@saving.register_keras_serializable(package="Tests")
class Strength(Regularizer):
    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.strength * ops.sum(ops.square(x))

    def get_config(self) -> dict:
        return {"strength": self.strength}


@saving.register_keras_serializable(package="Tests", name="half_sum")
def half_sum(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * ops.sum(x)


class Unregistered(Regularizer):
    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.strength * ops.sum(x)

    def get_config(self) -> dict:
        return {"strength": self.strength}


def test_registered_class_serializes_with_its_registered_name_and_loads_by_it() -> None:
    config = regularizers.serialize(Strength(0.25))
    assert config == {
        "module": __name__,
        "class_name": "Strength",
        "config": {"strength": 0.25},
        "registered_name": "Tests>Strength",
    }
    rebuilt = regularizers.deserialize(json.loads(json.dumps(config)))
    assert type(rebuilt) is Strength and rebuilt.strength == 0.25
    assert type(regularizers.get("Tests>Strength")) is Strength


def test_registered_function_round_trips() -> None:
    config = regularizers.serialize(half_sum)
    assert config["class_name"] == "function"
    assert config["config"] == "Tests>half_sum"
    assert regularizers.deserialize(config) is half_sum
    assert regularizers.get("Tests>half_sum") is half_sum
    # Keras's own emitted form for registered functions.
    keras_form = {"module": "builtins", "class_name": "function", "config": "Tests>half_sum", "registered_name": "function"}
    assert regularizers.get(keras_form) is half_sum


def test_a_registered_subclass_of_a_builtin_is_not_mistaken_for_the_builtin() -> None:
    @saving.register_keras_serializable(package="Tests")
    class LoudL2(L2):
        pass

    config = regularizers.serialize(LoudL2(0.5))
    assert config["registered_name"] == "Tests>LoudL2"
    assert config["module"] != "keras.regularizers"
    assert type(regularizers.deserialize(config)) is LoudL2


def test_unregistered_custom_class_needs_custom_objects() -> None:
    config = regularizers.serialize(Unregistered(2.0))
    assert config["registered_name"] == "Unregistered"
    with pytest.raises(ValueError) as info:
        regularizers.deserialize(config)
    message = str(info.value)
    assert "'Unregistered'" in message and "register_keras_serializable" in message
    assert "custom_objects={'Unregistered': Unregistered}" in message
    rebuilt = regularizers.deserialize(config, custom_objects={"Unregistered": Unregistered})
    assert type(rebuilt) is Unregistered and rebuilt.strength == 2.0
    with saving.custom_object_scope({"Unregistered": Unregistered}):
        assert type(regularizers.get(config)) is Unregistered


def test_custom_object_scope_nests_and_pops() -> None:
    def a(x):
        return x.sum()

    def b(x):
        return x.sum()

    with saving.custom_object_scope({"f": a}):
        assert saving.get_registered_object("f") is a
        with saving.custom_object_scope({"f": b}):
            assert saving.get_registered_object("f") is b
        assert saving.get_registered_object("f") is a
    assert saving.get_registered_object("f") is None
    assert saving.CustomObjectScope is saving.custom_object_scope


def test_custom_object_scope_is_per_thread() -> None:
    def f(x):
        return x.sum()

    seen = []
    with saving.custom_object_scope({"thread_f": f}):
        worker = threading.Thread(target=lambda: seen.append(saving.get_registered_object("thread_f")))
        worker.start()
        worker.join()
    assert seen == [None]


def test_scope_is_closed_even_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError):
        with saving.custom_object_scope({"leak": object()}):
            raise RuntimeError("boom")
    assert saving.get_registered_object("leak") is None


def test_custom_objects_win_over_builtins() -> None:
    class L1:  # a user's own class that happens to share a Keras name
        def __init__(self, l1=0.0):
            self.l1 = l1

        def __call__(self, x):
            return x.sum()

        def get_config(self):
            return {"l1": self.l1}

    out = regularizers.deserialize({"class_name": "L1", "config": {"l1": 3.0}}, custom_objects={"L1": L1})
    assert type(out) is L1


def test_tf_keras_2_form_and_keras_3_form_both_load() -> None:
    assert regularizers.deserialize({"class_name": "L2", "config": {"l2": 0.1}}).get_config() == {"l2": 0.1}
    k3 = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.1}, "registered_name": None}
    assert regularizers.deserialize(k3).get_config() == {"l2": 0.1}
    ours = {"module": "weightwise.regularizers", "class_name": "L2", "config": {"l2": 0.1}, "registered_name": None}
    assert regularizers.deserialize(ours).get_config() == {"l2": 0.1}
    assert constraints.deserialize({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": 0}}).max_value == 3


def test_a_config_of_the_wrong_family_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown regularizer: 'MaxNorm'"):
        regularizers.deserialize(constraints.serialize(constraints.MaxNorm()))
    with pytest.raises(ValueError, match="Unknown constraint: 'L2'"):
        constraints.deserialize(regularizers.serialize(L2()))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"config": {}}, "no 'class_name' key"),
        ({"class_name": "L2", "config": [0.1]}, "'config' must be a dict"),
        ({"class_name": "L2", "config": {"l3": 0.1}}, "Could not build regularizer 'L2'"),
        (3, "expected a config dict or a string id"),
    ],
)
def test_malformed_configs_raise_clearly(bad: object, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        regularizers.deserialize(bad)


def test_bad_factor_in_a_config_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="l2=-1.0"):
        regularizers.deserialize({"class_name": "L2", "config": {"l2": -1.0}})


def test_lambdas_load_only_unsafely_and_objects_without_config_are_refused() -> None:
    with pytest.warns(UserWarning, match="lambda"):
        config = regularizers.serialize(lambda x: x.sum())
    with pytest.raises(ValueError, match="arbitrary code execution"):
        regularizers.deserialize(config)

    class NoConfig:
        def __call__(self, x):
            return x.sum()

    with pytest.raises(TypeError, match="no `get_config\\(\\)` method"):
        regularizers.serialize(NoConfig())
    assert regularizers.serialize(None) is None


def test_registration_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="package=''"):
        saving.register_keras_serializable(package="")
    with pytest.raises(ValueError, match="name=3"):
        saving.register_keras_serializable(name=3)

    class NoConfig:
        pass

    with pytest.raises(ValueError, match="no `get_config\\(\\)`"):
        saving.register_keras_serializable()(NoConfig)
    with pytest.raises(TypeError, match="Only classes and functions"):
        saving.register_keras_serializable()(3)


def test_generic_serialize_and_deserialize_pick_the_family_by_module() -> None:
    config = saving.serialize_keras_object(constraints.UnitNorm(axis=1))
    assert config["module"] == "keras.constraints"
    assert saving.deserialize_keras_object(config).get_config() == {"axis": 1}
    assert saving.deserialize_keras_object(regularizers.serialize(Strength(3.0))).strength == 3.0


def test_snake_case_matches_keras_ids() -> None:
    names = {"L1": "l1", "L2": "l2", "L1L2": "l1l2", "OrthogonalRegularizer": "orthogonal_regularizer",
             "MaxNorm": "max_norm", "NonNeg": "non_neg", "UnitNorm": "unit_norm", "MinMaxNorm": "min_max_norm"}
    assert {k: to_snake_case(k) for k in names} == names


def test_a_new_family_reuses_the_mechanism() -> None:
    class Doubler:
        def __init__(self, times: int = 2) -> None:
            self.times = times

        def __call__(self, x):
            return x * self.times

        def get_config(self):
            return {"times": self.times}

    family = ObjectFamily("doubler", "tests.doublers", [Doubler], aliases={"triple": lambda: Doubler(3)})
    assert family.get("triple").times == 3
    assert family.get("doubler").times == 2
    assert family.deserialize(family.serialize(Doubler(5))).times == 5


def test_builtin_functions_serialize_in_keras_form_and_load_back() -> None:
    from weightwise import losses

    config = saving.serialize_keras_object(losses.mean_squared_error)
    assert config == {"module": "builtins", "class_name": "function", "config": "mean_squared_error",
                      "registered_name": "function"}
    assert losses.deserialize(config)(torch.ones(2, 1), torch.zeros(2, 1)).tolist() == [1.0, 1.0]


def test_builtin_loss_functions_load_in_keras() -> None:
    from helpers import keras_or_skip

    from weightwise import losses

    keras = keras_or_skip()
    loaded = keras.losses.deserialize(losses.serialize(losses.mean_absolute_error))
    assert loaded is keras.losses.mean_absolute_error
