"""The Layer base contract and the core, reshaping and merging layers, against NumPy and Keras."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

from weightwise import binding, constraints, layers, ops, regularizers
from weightwise.layers import (
    Activation,
    ActivityRegularization,
    Add,
    Concatenate,
    Dense,
    Dropout,
    Flatten,
    InputLayer,
    Layer,
    Reshape,
)

RNG = np.random.default_rng(3)


def rand(*shape: int) -> torch.Tensor:
    return torch.from_numpy(RNG.normal(size=shape).astype(np.float32))


# -- the seed documents ------------------------------------------------------------------


def test_seed_dense_losses_sum_to_5_25() -> None:
    layer = Dense(units=5, kernel_initializer="ones", kernel_regularizer=regularizers.L1(0.01),
                  activity_regularizer=regularizers.L2(0.01))
    layer(ops.ones(shape=(5, 5)) * 2.0)
    assert len(layer.losses) == 2
    assert ops.sum(layer.losses).item() == pytest.approx(5.25)


def test_seed_function_and_subclass_regularizers() -> None:
    def l1_reg(weight_matrix):
        return 0.01 * ops.sum(ops.absolute(weight_matrix))

    layer = Dense(5, input_dim=5, kernel_initializer="ones", kernel_regularizer=l1_reg)
    layer(ops.ones(shape=(5, 5)))
    assert [v.item() for v in layer.losses] == pytest.approx([0.25])

    class L2Regularizer(regularizers.Regularizer):
        def __init__(self, l2=0.0):
            self.l2 = l2

        def __call__(self, x):
            return self.l2 * ops.sum(ops.square(x))

        def get_config(self):
            return {"l2": float(self.l2)}

    layer = Dense(5, input_dim=5, kernel_initializer="ones", kernel_regularizer=L2Regularizer(l2=0.5))
    layer(ops.ones(shape=(5, 5)))
    assert [v.item() for v in layer.losses] == pytest.approx([12.5])


def test_seed_string_id_uses_documented_default() -> None:
    dense = Dense(3, kernel_regularizer="l1")
    assert isinstance(dense.kernel_regularizer, regularizers.L1) and dense.kernel_regularizer.l1 == 0.01
    dense = Dense(3, kernel_regularizer="l1_l2")
    assert dense.kernel_regularizer.get_config() == {"l1": 0.01, "l2": 0.01}


# -- the base contract -------------------------------------------------------------------


class Scale(Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones", regularizer="l2")
        self.offset = self.add_weight(name="offset", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs):
        return inputs * self.scale + self.offset


def test_custom_layer_builds_lazily_and_registers_parameters() -> None:
    layer = Scale()
    assert not layer.built and layer.weights == [] and layer.losses == []
    out = layer(ops.ones((2, 3)))
    assert layer.built and out.shape == (2, 3)
    assert [n for n, _ in layer.named_parameters()] == ["scale", "offset"]
    assert layer.trainable_weights == [layer.scale]
    assert layer.non_trainable_weights == [layer.offset]
    assert not layer.offset.requires_grad


def test_weight_penalties_are_present_right_after_build_and_recomputed_each_access() -> None:
    layer = Dense(2, input_dim=3, kernel_initializer="ones", kernel_regularizer=regularizers.L2(1.0))
    assert layer.built  # built from input_dim, without a call
    assert [v.item() for v in layer.losses] == [6.0]
    with torch.no_grad():
        layer.kernel.mul_(2.0)
    assert [v.item() for v in layer.losses] == [24.0]


def test_trainable_false_drops_weight_penalties_and_gradients() -> None:
    layer = Dense(2, input_dim=3, kernel_regularizer="l2", bias_regularizer="l1")
    assert len(layer.losses) == 2
    layer.trainable = False
    assert layer.losses == [] and layer.trainable_weights == []
    assert not layer.kernel.requires_grad
    layer.trainable = True
    assert len(layer.losses) == 2
    with pytest.raises(ValueError, match="trainable=1"):
        layer.trainable = 1


def test_rules_set_after_build_take_effect() -> None:
    layer = Dense(2, input_dim=3, kernel_initializer="ones")
    assert layer.losses == []
    layer.kernel_regularizer = regularizers.L1(0.5)
    assert binding.rule_of(layer, "kernel").regularizer is layer.kernel_regularizer
    assert [v.item() for v in layer.losses] == [3.0]
    layer.kernel_constraint = constraints.MaxNorm(1.0)
    binding.apply_constraints(layer)
    np.testing.assert_allclose(layer.kernel.detach().norm(dim=0).numpy(), [1.0, 1.0], rtol=1e-6)
    layer.kernel_regularizer = None
    assert layer.losses == []


def test_activity_regularizer_on_any_layer_settable_at_any_time() -> None:
    layer = Scale()
    layer(ops.ones((4, 3)))
    assert len(layer.losses) == 1  # only the weight penalty
    layer.activity_regularizer = regularizers.L1(1.0)
    layer(ops.ones((4, 3)))
    # L1 of a (4, 3) output of ones is 12, divided by the batch of 4.
    assert layer.losses[0].item() == pytest.approx(3.0)


def test_activity_penalty_is_replaced_on_each_outermost_call() -> None:
    layer = Dense(2, input_dim=2, kernel_initializer="ones", activity_regularizer=regularizers.L1(1.0))
    layer(ops.ones((1, 2)))
    layer(ops.ones((1, 2)) * 3)
    assert len(layer.losses) == 1
    assert layer.losses[0].item() == pytest.approx(12.0)


def test_activity_penalty_scalar_output_and_empty_batch() -> None:
    class ToScalar(Layer):
        def call(self, inputs):
            return inputs.sum()

    layer = ToScalar(activity_regularizer=regularizers.L1(1.0))
    layer(ops.ones((4, 3)))
    assert layer.losses[0].item() == 12.0  # scalars are not divided
    dense = Dense(2, input_dim=3, activity_regularizer="l2")
    dense(torch.zeros((0, 3)))
    assert dense.losses[0].item() == 0.0 and not torch.isnan(dense.losses[0])


def test_activity_penalty_applies_to_each_output_tensor() -> None:
    class Split(Layer):
        def call(self, inputs):
            return [inputs, inputs * 2]

    layer = Split(activity_regularizer=regularizers.L1(1.0))
    layer(ops.ones((2, 3)))
    assert [v.item() for v in layer.losses] == [3.0, 6.0]


class Block(Layer):
    def __init__(self, shared: Dense, **kwargs):
        super().__init__(**kwargs)
        self.first = shared
        self.second = shared
        self.head = Dense(1, kernel_regularizer=regularizers.L2(1.0), activity_regularizer=regularizers.L1(1.0))

    def call(self, inputs):
        return self.head(self.second(self.first(inputs)))


def test_nested_layers_count_each_weight_once_and_collect_activity_losses() -> None:
    shared = Dense(3, kernel_regularizer=regularizers.L1(1.0))
    block = Block(shared)
    block(ops.ones((2, 3)))
    # shared kernel once, head kernel once, head activity once.
    assert len(block.losses) == 3
    assert len(block.weights) == 4
    block(ops.ones((2, 3)))
    assert len(block.losses) == 3


def test_add_loss_is_cleared_by_the_next_outermost_call() -> None:
    class WithLoss(Layer):
        def call(self, inputs):
            self.add_loss(ops.sum(inputs))
            return inputs

    layer = WithLoss()
    layer(ops.ones((2, 2)))
    layer(ops.ones((2, 2)))
    assert [v.item() for v in layer.losses] == [4.0]


def test_training_flag_is_explicit_then_inherited_then_module_mode() -> None:
    seen = []

    class Probe(Layer):
        def call(self, inputs, training=False):
            seen.append(training)
            return inputs

    class Outer(Layer):
        def __init__(self):
            super().__init__()
            self.probe = Probe()

        def call(self, inputs):
            return self.probe(inputs)

    outer = Outer()
    outer(ops.ones(1))
    outer(ops.ones(1), training=True)
    outer.train()
    outer(ops.ones(1))
    assert seen == [False, True, True]


def test_layers_work_inside_plain_torch_models_and_survive_deepcopy() -> None:
    model = torch.nn.Sequential(Dense(4, input_dim=3, kernel_regularizer="l2"), torch.nn.ReLU(), Dense(1))
    out = model(rand(5, 3))
    assert out.shape == (5, 1)
    clone = copy.deepcopy(model)
    assert binding.rule_of(clone[0], "kernel").regularizer.get_config() == {"l2": 0.01}
    assert len(list(binding.bound(clone))) == 1


def test_auto_names_are_unique_per_class() -> None:
    first, second = Dense(1), Dense(1)
    assert first.name != second.name
    assert first.name.startswith("dense") and second.name.startswith("dense_")
    assert Flatten(name="mine").name == "mine"


def test_input_shape_and_dim_arguments_build_at_construction() -> None:
    assert Dense(2, input_shape=(4,)).kernel.shape == (4, 2)
    assert Dense(2, batch_input_shape=(None, 6)).kernel.shape == (6, 2)
    with pytest.raises(ValueError, match="input_dim=0"):
        Dense(2, input_dim=0)


def test_changed_input_dimension_after_build_is_refused() -> None:
    layer = Dense(2, input_dim=3)
    with pytest.raises(ValueError, match=r"layer 'dense.*' is incompatible.*axis -1.*value 3.*\(4, 5\)"):
        layer(ops.ones((4, 5)))
    with pytest.raises(ValueError, match="min_ndim=2"):
        layer(ops.ones((3,)))


@pytest.mark.parametrize(
    "kwargs, argument, shown",
    [
        ({"kernel_regularizer": "l3"}, "kernel_regularizer", "'l3'"),
        ({"bias_regularizer": 7}, "bias_regularizer", "7"),
        ({"kernel_constraint": 123}, "kernel_constraint", "123"),
        ({"bias_constraint": "l2"}, "bias_constraint", "'l2'"),
        ({"activity_regularizer": [1]}, "activity_regularizer", "[1]"),
        ({"activation": "relux"}, "activation", "relux"),
        ({"kernel_initializer": "glorot"}, "kernel_initializer", "glorot"),
    ],
)
def test_unknown_identifiers_name_the_layer_argument_and_value(kwargs, argument: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        Dense(2, name="probe", **kwargs)
    message = str(info.value)
    assert "Dense layer 'probe'" in message and f"`{argument}`" in message and shown in message


def test_bad_rule_set_after_build_changes_nothing() -> None:
    layer = Dense(2, input_dim=3, kernel_regularizer="l2")
    with pytest.raises(ValueError, match="kernel_regularizer"):
        layer.kernel_regularizer = "l3"
    assert isinstance(layer.kernel_regularizer, regularizers.L2)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(TypeError, match=r"Unrecognized keyword arguments passed to Dense: \{'unit': 3\}"):
        Dense(2, unit=3)
    with pytest.raises(ValueError, match="units=0"):
        Dense(0)
    with pytest.raises(ValueError, match="use_bias='no'"):
        Dense(2, use_bias="no")
    with pytest.raises(ValueError, match="count_params"):
        Dense(2).count_params()


def test_add_weight_refuses_clashing_names() -> None:
    class Twice(Layer):
        def build(self, input_shape):
            self.add_weight(name="w", shape=(1,))
            self.add_weight(name="w", shape=(1,))

    with pytest.raises(ValueError, match="'w'"):
        Twice()(ops.ones((1, 1)))


def test_get_and_set_weights_in_keras_order_and_layout() -> None:
    layer = Dense(3, input_dim=2)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (2, 3) and bias.shape == (3,)
    new_kernel = RNG.normal(size=(2, 3)).astype(np.float32)
    layer.set_weights([new_kernel, np.ones(3, np.float32)])
    x = RNG.normal(size=(4, 2)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(layer(x)), x @ new_kernel + 1.0, rtol=1e-6, atol=1e-6)


def test_dense_on_nd_inputs_and_activation_and_float64() -> None:
    layer = Dense(4, activation="relu", dtype="float64")
    x = RNG.normal(size=(2, 5, 3))
    out = layer(x)
    assert out.dtype == torch.float64 and out.shape == (2, 5, 4)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(out.detach().numpy(), np.maximum(x @ kernel + bias, 0.0), rtol=1e-12)


# -- every layer through the shared checker ------------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape",
    [
        (Dense, {"units": 3}, (4, 5), (4, 3)),
        (Dense, {"units": 3, "use_bias": False, "activation": "tanh"}, (2, 6, 5), (2, 6, 3)),
        (Activation, {"activation": "sigmoid"}, (3, 4), (3, 4)),
        (Dropout, {"rate": 0.3, "seed": 1}, (3, 4), (3, 4)),
        (ActivityRegularization, {"l1": 0.1, "l2": 0.2}, (3, 4), (3, 4)),
        (Flatten, {}, (2, 3, 4), (2, 12)),
        (Reshape, {"target_shape": (2, -1)}, (3, 8), (3, 2, 4)),
        (Concatenate, {"axis": 1}, [(2, 3), (2, 4)], (2, 7)),
        (Add, {}, [(2, 3), (2, 3), (2, 3)], (2, 3)),
        (InputLayer, {"shape": (3,)}, (2, 3), (2, 3)),
    ],
)
def test_every_layer_through_the_shared_checker(cls, kwargs, input_shape, output_shape) -> None:
    # ActivityRegularization builds its own activity regularizer from l1 and l2.
    exclude = ("activity_regularizer",) if cls is ActivityRegularization else ()
    run_layer_test(cls, kwargs, input_shape, expected_output_shape=output_shape, exclude=exclude)


# -- parameter-free layers -----------------------------------------------------------------


def test_dropout_trains_only_when_training_and_is_reproducible_with_a_seed() -> None:
    x = ops.ones((4, 1000))
    layer = Dropout(0.25, seed=3)
    assert torch.equal(layer(x), x)
    first = layer(x, training=True)
    kept = (first != 0).float().mean().item()
    assert 0.7 < kept < 0.8
    assert torch.allclose(first[first != 0], torch.tensor(1 / 0.75))
    assert torch.equal(Dropout(0.25, seed=3)(x, training=True), first)
    broadcast = Dropout(0.5, noise_shape=(None, 1), seed=0)(x, training=True)
    assert all(len(set(row.tolist())) == 1 for row in broadcast)
    with pytest.raises(ValueError, match="rate=1.5"):
        Dropout(1.5)


def test_activity_regularization_layer_penalty() -> None:
    layer = ActivityRegularization(l1=0.1, l2=0.2)
    x = rand(4, 3)
    out = layer(x)
    assert torch.equal(out, x)
    expected = (0.1 * x.abs().sum() + 0.2 * (x**2).sum()) / 4
    assert layer.losses[0].item() == pytest.approx(float(expected), rel=1e-6)
    assert "activity_regularizer" not in layer.get_config()
    with pytest.raises(TypeError, match="sets its own activity_regularizer"):
        ActivityRegularization(l1=0.1, activity_regularizer="l2")


def test_flatten_channels_first_orders_features_like_channels_last() -> None:
    x = rand(2, 3, 4, 5)  # channels_first: (batch, C, H, W)
    out = Flatten(data_format="channels_first")(x)
    np.testing.assert_array_equal(out.numpy(), np.transpose(x.numpy(), (0, 2, 3, 1)).reshape(2, -1))


def test_reshape_rejects_impossible_targets() -> None:
    with pytest.raises(ValueError, match=r"cannot reshape an input of shape \(3, 7\)"):
        Reshape((2, -1))(rand(3, 7))
    with pytest.raises(ValueError, match="target_shape"):
        Reshape((0, -1))  # with no values per sample, the -1 could be any size


def test_concatenate_and_add() -> None:
    a, b = rand(2, 3), rand(2, 4)
    np.testing.assert_array_equal(Concatenate()([a, b]).numpy(), np.concatenate([a.numpy(), b.numpy()], axis=-1))
    np.testing.assert_array_equal(Concatenate(axis=0)([a, a]).numpy(), np.concatenate([a.numpy()] * 2, axis=0))
    np.testing.assert_allclose(Add()([a, a, a]).numpy(), 3 * a.numpy())
    with pytest.raises(ValueError, match="matching shapes"):
        Concatenate(axis=0)([a, b])
    with pytest.raises(ValueError, match="incompatible shapes"):
        Add()([a, b])
    with pytest.raises(ValueError, match="list of inputs"):
        Add()(a)
    for layer in (Concatenate(axis=1), Add()):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_input_layer() -> None:
    layer = InputLayer(shape=(3,), name="inp")
    assert layer.batch_shape == (None, 3)
    assert layer.get_config()["batch_shape"] == (None, 3)
    x = rand(2, 3)
    assert torch.equal(layer(x), x)
    with pytest.raises(ValueError, match="`shape` or `batch_shape`"):
        InputLayer()


def test_layers_family_serialization() -> None:
    layer = Dense(3, kernel_regularizer=regularizers.L2(0.1), kernel_constraint=constraints.NonNeg(), name="d")
    config = layers.serialize(layer)
    assert config["module"] == "keras.layers" and config["class_name"] == "Dense"
    assert config["config"]["kernel_regularizer"]["config"] == {"l2": 0.1}
    rebuilt = layers.deserialize(json.loads(json.dumps(config)))
    assert isinstance(rebuilt.kernel_constraint, constraints.NonNeg)
    assert rebuilt.name == "d"


# -- Keras 3 conformance -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


def _keras_pair(keras, kwargs: dict, input_shape: tuple[int, ...]):
    k_layer = keras.layers.Dense(**kwargs)
    k_layer.build(input_shape)
    ours = Dense(**kwargs)
    ours.build(input_shape)
    ours.built = True
    ours.set_weights(k_layer.get_weights())
    return k_layer, ours


@pytest.mark.parametrize(
    "kwargs, input_shape",
    [
        ({"units": 4}, (3, 5)),
        ({"units": 3, "activation": "relu", "use_bias": False}, (2, 7, 5)),
        ({"units": 6, "activation": "tanh", "kernel_regularizer": "l2", "bias_regularizer": "l1",
          "activity_regularizer": "l2"}, (4, 3)),
        ({"units": 2, "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}},
          "activity_regularizer": "l1"}, (5, 2, 3, 4)),
    ],
)
def test_dense_outputs_and_losses_match_keras(keras, kwargs, input_shape) -> None:
    k_layer, ours = _keras_pair(keras, kwargs, input_shape)
    x = RNG.normal(size=input_shape).astype(np.float32)
    theirs = to_numpy(k_layer(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(to_numpy(ours(x)), theirs, rtol=1e-5, atol=1e-6)
    k_losses = sorted(float(to_numpy(v)) for v in k_layer.losses)
    our_losses = sorted(v.item() for v in ours.losses)
    assert len(our_losses) == len(k_losses)
    np.testing.assert_allclose(our_losses, k_losses, rtol=1e-5)


def test_seed_example_equals_keras(keras) -> None:
    kwargs = {"units": 5, "kernel_initializer": "ones", "kernel_regularizer": "l1", "activity_regularizer": "l2"}
    k_layer = keras.layers.Dense(**kwargs)
    k_layer(keras.ops.ones((5, 5)) * 2.0)
    ours = Dense(**kwargs)
    ours(ops.ones((5, 5)) * 2.0)
    assert ops.sum(ours.losses).item() == pytest.approx(float(to_numpy(keras.ops.sum(k_layer.losses))), rel=1e-6)


def _normalize(config: dict) -> dict:
    return json.loads(json.dumps(config))


def _assert_shared_keys_agree(ours: dict, theirs: dict) -> None:
    shared = set(ours) & set(theirs) - {"name"}
    for key in sorted(shared):
        a, b = ours[key], theirs[key]
        if isinstance(a, dict) and isinstance(b, dict) and "config" in a and "config" in b:
            assert a["class_name"] == b["class_name"], key
            for inner in set(a["config"]) & set(b["config"]):
                assert a["config"][inner] == pytest.approx(b["config"][inner]), (key, inner)
        else:
            assert a == b, key


@pytest.mark.parametrize(
    "cls_name, kwargs",
    [
        ("Dense", {"units": 3, "activation": "relu", "kernel_regularizer": "l2", "bias_constraint": "non_neg",
                   "activity_regularizer": "l1", "kernel_constraint": {"class_name": "MaxNorm",
                                                                       "config": {"max_value": 3, "axis": 0}}}),
        ("Dense", {"units": 1, "use_bias": False}),
        ("Activation", {"activation": "tanh"}),
        ("Dropout", {"rate": 0.2, "seed": 4}),
        ("ActivityRegularization", {"l1": 0.1, "l2": 0.3}),
        ("Flatten", {}),
        ("Reshape", {"target_shape": (2, 3)}),
        ("Concatenate", {"axis": 1}),
        ("Add", {}),
    ],
)
def test_configs_agree_with_keras_both_ways(keras, cls_name: str, kwargs: dict) -> None:
    theirs = getattr(keras.layers, cls_name)(**kwargs)
    ours = getattr(layers, cls_name)(**kwargs)
    _assert_shared_keys_agree(_normalize(ours.get_config()), _normalize(theirs.get_config()))
    from_keras = layers.deserialize(_normalize(keras.layers.serialize(theirs)))
    assert type(from_keras) is type(ours)
    _assert_shared_keys_agree(_normalize(from_keras.get_config()), _normalize(theirs.get_config()))
    to_keras = keras.layers.deserialize(_normalize(layers.serialize(ours)))
    assert type(to_keras).__name__ == cls_name
    _assert_shared_keys_agree(_normalize(ours.get_config()), _normalize(to_keras.get_config()))


def test_deepcopy_and_pickle_after_a_forward_pass_with_activity_losses() -> None:
    import pickle

    layer = Dense(3, input_dim=2, activity_regularizer="l2", kernel_regularizer="l1")
    layer(rand(4, 2))
    assert len(layer.losses) == 2
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        # Call losses belong to one forward pass: copies start without them, weight penalties stay.
        assert len(clone.losses) == 1
        clone(rand(4, 2))
        assert len(clone.losses) == 2 and len(layer.losses) == 2
