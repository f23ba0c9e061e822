"""EinsumDense, MultiHeadAttention and GroupedQueryAttention: rules, configs, errors, training, files."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import binding, constraints, layers, regularizers
from weightwise.layers import EinsumDense, GroupedQueryAttention, MultiHeadAttention


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# -- EinsumDense -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, input_shape, output_shape, weights", [
    ({"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": "c"}, (3, 5), (3, 4), 2),
    ({"equation": "abc,cde->abde", "output_shape": (None, 3, 4), "bias_axes": "de"}, (2, 6, 5), (2, 6, 3, 4), 2),
    ({"equation": "...b,bc->...c", "output_shape": 4}, (2, 3, 5), (2, 3, 4), 1),
    ({"equation": "bc...,cde->bde...", "output_shape": (3, 4), "bias_axes": "d", "activation": "relu"}, (2, 1, 2),
     (2, 3, 4, 2), 2),
])
def test_einsum_dense_passes_the_layer_checker(kwargs, input_shape, output_shape, weights) -> None:
    layer = run_layer_test(EinsumDense, kwargs, input_shape, expected_output_shape=output_shape,
                           expected_num_weights=weights)
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel", "bias"][:weights]


@pytest.mark.parametrize("kwargs, message", [
    ({"equation": "ab,bc", "output_shape": 4}, "Invalid einsum equation 'ab,bc'"),
    ({"equation": 3, "output_shape": 4}, "Invalid einsum equation '3'"),
    ({"equation": "ab,bc->ac", "output_shape": 4.5}, "argument `output_shape`.*Received: output_shape=4.5"),
    ({"equation": "ab,bc->ac", "output_shape": -1}, "argument `output_shape`.*Received: output_shape=-1"),
    ({"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": "x"}, "Bias dimension 'x' was requested"),
    ({"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": 1}, "argument `bias_axes`.*Received: bias_axes=1"),
    ({"equation": "ab,bc->ac", "output_shape": 4, "lora_rank": 2}, "`lora_rank`.*weightwise does not support"),
])
def test_einsum_dense_refuses_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        EinsumDense(**kwargs)


def test_einsum_dense_refuses_bad_inputs_clearly_and_builds_nothing() -> None:
    layer = EinsumDense("abc,cd->abd", output_shape=(None, 4))
    with pytest.raises(ValueError, match="input spec 'abc' names 3 axes, the inputs have 2"):
        layer(torch.ones(2, 5))
    assert not layer.built and layer.weights == []
    with pytest.raises(ValueError, match="do not match at shared dimension 'b'"):
        EinsumDense("abc,cd->abd", output_shape=(7, 4)).build((None, 3, 5))
    layer(torch.ones(2, 3, 5))
    with pytest.raises(ValueError, match="expected axis 2 of input shape to have value 5"):
        layer(torch.ones(2, 3, 6))


def test_einsum_dense_output_shape_takes_sizes_the_input_carries() -> None:
    layer = EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d")
    assert layer.compute_output_shape((None, 3, 8)) == (None, 3, 4)
    assert tuple(layer(layers.Input(shape=(3, 8))).shape) == (None, 3, 4)


# -- attention layers: rules reach every projection -------------------------------------------------

ATTENTION = [
    (MultiHeadAttention, {"num_heads": 2, "key_dim": 3, "use_gate": True},
     ["query", "key", "gate", "value", "attention_output"]),
    (GroupedQueryAttention, {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2, "use_gate": True},
     ["query", "key", "gate", "value", "attention_output"]),
]


def given_rules() -> dict[str, Any]:
    return {"kernel_regularizer": regularizers.L2(0.01), "bias_regularizer": regularizers.L1(0.02),
            "kernel_constraint": constraints.MaxNorm(0.5), "bias_constraint": constraints.NonNeg(),
            "activity_regularizer": regularizers.L2(0.003)}


@pytest.mark.parametrize("cls, kwargs, projections", ATTENTION)
def test_every_rule_reaches_every_projection_as_the_same_object(cls, kwargs, projections) -> None:
    rules = given_rules()
    layer = cls(**kwargs, **rules)
    q, v = torch.from_numpy(rand(2, 4, 6)), torch.from_numpy(rand(2, 5, 6, seed=1))
    layer(q, v)
    subs = [m for m in layer.children() if isinstance(m, EinsumDense)]
    assert [m.name for m in subs] == projections
    for sub in subs:
        for arg in ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"):
            assert getattr(layer, arg) is rules[arg]
            weight, kind = arg.rsplit("_", 1)
            assert getattr(binding.rule_of(sub, weight), kind) is rules[arg], (sub.name, arg)
        assert sub.activity_regularizer is rules["activity_regularizer"]
    # Keras: multi-head attention leaves its own outputs alone; grouped-query attention regularizes them too.
    own = 0 if cls is MultiHeadAttention else 1
    assert (layer.activity_regularizer is rules["activity_regularizer"]) == bool(own)
    assert len(layer.losses) == 2 * len(subs) + len(subs) + own
    # The initializers are fresh copies: unseeded, every projection draws its own kernel.
    kernels = [to_numpy(m.kernel) for m in subs if m.kernel.shape == subs[0].kernel.shape]
    assert len(kernels) >= 2 and not np.allclose(kernels[0], kernels[1])


@pytest.mark.parametrize("cls, kwargs, projections", ATTENTION)
def test_a_rule_set_after_build_reaches_every_projection(cls, kwargs, projections) -> None:
    layer = cls(**kwargs)
    layer(torch.ones(1, 3, 6), torch.ones(1, 3, 6))
    assert len(layer.losses) == 0
    layer.kernel_regularizer = "l2"
    layer.bias_constraint = constraints.NonNeg()
    subs = [m for m in layer.children() if isinstance(m, EinsumDense)]
    assert len(layer.losses) == len(subs)
    assert all(isinstance(binding.rule_of(m, "bias").constraint, constraints.NonNeg) for m in subs)


@pytest.mark.parametrize("cls, kwargs, projections", ATTENTION)
def test_attention_config_round_trips_and_weights_restore_outputs(cls, kwargs, projections) -> None:
    layer = cls(**kwargs, **given_rules())
    q, v = torch.from_numpy(rand(2, 4, 6)), torch.from_numpy(rand(2, 5, 6, seed=1))
    out = layer(q, v)
    config = json.loads(json.dumps(layers.serialize(layer)))
    again = layers.deserialize(config)
    assert type(again) is cls and json.loads(json.dumps(again.get_config())) == config["config"]
    again.build_from_config(json.loads(json.dumps(layer.get_build_config())))
    assert [tuple(w.shape) for w in again.weights] == [tuple(w.shape) for w in layer.weights]
    again.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(again(q, v)), to_numpy(out), rtol=1e-6, atol=1e-6)
    assert layer.get_build_config() == {"shapes_dict": {"query_shape": [2, 4, 6], "value_shape": [2, 5, 6]}}
    with pytest.raises(ValueError, match="expecting"):
        layer.set_weights(layer.get_weights()[:-1])


@pytest.mark.parametrize("kwargs, message", [
    ({"num_heads": 0, "key_dim": 2}, "argument `num_heads`.*Received: num_heads=0"),
    ({"num_heads": True, "key_dim": 2}, "argument `num_heads`"),
    ({"num_heads": 2, "key_dim": 2.5}, "argument `key_dim`"),
    ({"num_heads": 2, "key_dim": 2, "value_dim": -1}, "argument `value_dim`"),
    ({"num_heads": 2, "key_dim": 2, "dropout": 1.5}, "argument `dropout`.*Received: dropout=1.5"),
    ({"num_heads": 2, "key_dim": 2, "output_shape": 8.0}, "Invalid `output_shape`: 8.0"),
    ({"num_heads": 2, "key_dim": 2, "attention_axes": "1"}, "`attention_axes` must be an int, list, or tuple"),
    ({"num_heads": 2, "key_dim": 2, "sliding_window": 0}, "`sliding_window` must be `None` or a positive"),
    ({"num_heads": 2, "key_dim": 2, "flash_attention": True, "dropout": 0.1}, "Dropout is not supported"),
    ({"num_heads": 2, "key_dim": 2, "use_bias": 1}, "argument `use_bias`"),
    ({"num_heads": 2, "key_dim": 2, "kernel_regularizer": "nope"}, "kernel_regularizer"),
])
def test_multi_head_attention_refuses_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"head_dim": 2, "num_query_heads": 3, "num_key_value_heads": 2}, "must be divisible"),
    ({"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 0}, "argument `num_key_value_heads`"),
    ({"head_dim": 0, "num_query_heads": 4, "num_key_value_heads": 2}, "argument `head_dim`"),
    ({"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2, "dropout": -0.1}, "argument `dropout`"),
])
def test_grouped_query_attention_refuses_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        GroupedQueryAttention(**kwargs)


def test_bad_calls_get_clear_errors_and_leave_the_layer_unbuilt() -> None:
    layer = MultiHeadAttention(2, 3)
    with pytest.raises(ValueError, match="`value` and `key`, except the last one, must be equal"):
        layer(torch.ones(1, 3, 4), torch.ones(1, 5, 4), torch.ones(1, 6, 4))
    assert not layer.built and layer.weights == []
    with pytest.raises(ValueError, match="attention_axes"):
        MultiHeadAttention(2, 3, attention_axes=3)(torch.ones(1, 3, 4), torch.ones(1, 3, 4))
    with pytest.raises(ValueError, match="argument `attention_mask`"):
        layer(torch.ones(1, 3, 4), torch.ones(1, 5, 4), attention_mask=torch.ones(1, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="argument `attention_mask`"):
        layer(torch.ones(1, 3, 4), torch.ones(1, 5, 4), attention_mask=torch.ones(1, 3, 4, dtype=torch.bool),
              return_attention_scores=True)
    with pytest.raises(ValueError, match="argument `use_causal_mask`"):
        layer(torch.ones(1, 3, 4), torch.ones(1, 5, 4), use_causal_mask="yes")
    with pytest.raises(TypeError, match="missing required argument `value`"):
        MultiHeadAttention(2, 3)(torch.ones(1, 3, 4))
    with pytest.raises(ValueError, match="Returning attention scores is not supported when flash attention"):
        MultiHeadAttention(2, 3, flash_attention=True)(torch.ones(1, 3, 4), torch.ones(1, 3, 4),
                                                       return_attention_scores=True)


def test_keras_masks_are_read_and_the_callers_tensors_keep_them() -> None:
    layer = MultiHeadAttention(2, 3)
    q, v = torch.from_numpy(rand(2, 4, 6)), torch.from_numpy(rand(2, 5, 6, seed=1))
    q_mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    v_mask = torch.tensor([[True, True, False, False, False], [True, True, True, True, False]])
    explicit = layer(q, v, query_mask=q_mask, value_mask=v_mask)
    q._keras_mask, v._keras_mask = q_mask, v_mask
    implicit = layer(q, v)
    np.testing.assert_array_equal(to_numpy(implicit), to_numpy(explicit))
    assert implicit._keras_mask is q_mask
    assert q._keras_mask is q_mask and v._keras_mask is v_mask
    unmasked = layer(torch.from_numpy(rand(2, 4, 6)), torch.from_numpy(rand(2, 5, 6, seed=1)))
    assert not np.allclose(to_numpy(unmasked), to_numpy(explicit))


def test_fused_and_explicit_paths_agree_where_keras_takes_either() -> None:
    layer = MultiHeadAttention(2, 4)
    q, v = torch.from_numpy(rand(2, 5, 6)), torch.from_numpy(rand(2, 7, 6, seed=1))
    mask = torch.from_numpy(np.random.default_rng(2).random((2, 5, 7)) > 0.4)
    mask[..., 0] = True
    fused = layer(q, v, attention_mask=mask)
    explicit, scores = layer(q, v, attention_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(fused), to_numpy(explicit), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(scores.sum(-1)), 1.0, rtol=1e-6)
    assert (to_numpy(scores)[~np.broadcast_to(to_numpy(mask)[:, None], scores.shape)] == 0).all()


def test_dropout_acts_only_in_training_and_a_seed_repeats_it() -> None:
    q, v = torch.from_numpy(rand(2, 5, 6)), torch.from_numpy(rand(2, 5, 6, seed=1))
    first, second = MultiHeadAttention(2, 3, dropout=0.5, seed=4), MultiHeadAttention(2, 3, dropout=0.5, seed=4)
    first(q, v)
    second(q, v)
    second.set_weights(first.get_weights())
    np.testing.assert_allclose(to_numpy(first(q, v)), to_numpy(first(q, v, training=False)))
    a, b = first(q, v, training=True), second(q, v, training=True)
    assert not np.allclose(to_numpy(a), to_numpy(first(q, v)))
    np.testing.assert_allclose(to_numpy(a), to_numpy(b))


# -- training: one fit step keeps every constrained weight within its bound --------------------------

class Encoder(weightwise.Model):
    def __init__(self, attention: Any) -> None:
        super().__init__()
        self.attention = attention
        self.head = EinsumDense("abc,cd->abd", output_shape=(None, 2), bias_axes="d",
                                kernel_constraint=constraints.MaxNorm(0.3, axis=0), bias_constraint="non_neg")

    def call(self, x: Any) -> Any:
        return self.head(self.attention(x, x, use_causal_mask=True))


@pytest.mark.parametrize("cls, kwargs, projections", ATTENTION)
def test_one_fit_step_keeps_constrained_weights_within_bounds(cls, kwargs, projections) -> None:
    attention = cls(**kwargs, kernel_constraint=constraints.MaxNorm(0.4, axis=0), bias_constraint="non_neg",
                    kernel_regularizer="l2")
    model = Encoder(attention)
    x, y = rand(8, 5, 6), rand(8, 5, 2, seed=1) * 10
    model.compile(optimizer=weightwise.optimizers.SGD(1.0), loss="mse")
    model(x)
    before = [to_numpy(w).copy() for w in model.weights]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.allclose(a, to_numpy(b)) for a, b in zip(before, model.weights))
    checked = 0
    for sub in [*attention.children(), model.head]:
        if not isinstance(sub, EinsumDense):
            continue
        bound = 0.4 if sub is not model.head else 0.3
        assert (np.sqrt((to_numpy(sub.kernel) ** 2).sum(axis=0)) <= bound + 1e-5).all(), sub.name
        assert (to_numpy(sub.bias) >= 0).all(), sub.name
        checked += 1
    assert checked == len(projections) + 1


# -- .keras files between Keras and weightwise --------------------------------------------------------

def attention_model(lib: Any) -> Any:
    L, R, C = lib.layers, lib.regularizers, lib.constraints
    tokens = lib.Input(shape=(5, 6), name="tokens")
    memory = lib.Input(shape=(7, 4), name="memory")
    attended = L.MultiHeadAttention(2, 3, value_dim=4, name="mha", kernel_regularizer=R.L2(0.01),
                                    bias_constraint=C.NonNeg(), kernel_constraint=C.MaxNorm(2.0))(
        tokens, memory, use_causal_mask=False)
    mixed = L.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d", name="proj",
                          kernel_regularizer=R.L1(0.001))(attended)
    return lib.Model([tokens, memory], mixed, name="attn")


def test_keras_file_with_attention_moves_both_ways(tmp_path) -> None:
    keras = keras_or_skip()
    x = [rand(3, 5, 6), rand(3, 7, 4, seed=1)]
    theirs = attention_model(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(to_numpy(ours.predict(x, verbose=0)), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-5)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert len(ours.losses) == len(theirs.losses)

    mine = attention_model(weightwise)
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(back.predict(x, verbose=0)), to_numpy(mine.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-5)
    assert back.get_layer("mha").get_config()["kernel_constraint"]["class_name"] == "MaxNorm"


@pytest.mark.parametrize("layer, shapes, expected", [
    (MultiHeadAttention(2, 3), [(None, 4, 6), (None, 7, 5)], [(None, 4, 6), (None, 2, 4, 7)]),
    (MultiHeadAttention(2, 3, output_shape=(2, 3), attention_axes=(1, 2)), [(None, 4, 5, 6), (None, 3, 2, 6)],
     [(None, 4, 5, 2, 3), (None, 2, 4, 5, 3, 2)]),
    (MultiHeadAttention(2, 3, attention_axes=2), [(None, 4, 5, 6), (None, 4, 2, 6)], [(None, 4, 5, 6), (None, 4, 2, 5, 2)]),
    (GroupedQueryAttention(2, 4, 2), [(None, 4, 6), (None, 7, 6)], [(None, 4, 6), (None, 4, 4, 7)]),
])
def test_output_specs_give_the_shapes_a_call_gives(layer, shapes, expected) -> None:
    specs = layer.compute_output_spec(*(layers.Input(batch_shape=s) for s in shapes), return_attention_scores=True)
    assert [spec.shape for spec in specs] == expected
    outputs = layer(*(torch.ones(*(2 if d is None else d for d in s)) for s in shapes), return_attention_scores=True)
    assert [tuple(o.shape)[1:] for o in outputs] == [e[1:] for e in expected]
    assert layer.compute_output_shape(*shapes) == expected[0]


def test_global_flash_attention_switch_sets_the_default_of_new_layers() -> None:
    keras = keras_or_skip()
    from keras.src.backend.common import global_state

    from weightwise import config

    try:
        for lib in (keras, weightwise):
            lib.config.disable_flash_attention()
            assert lib.config.is_flash_attention_enabled() is False
            layer = lib.layers.MultiHeadAttention(num_heads=2, key_dim=2)
            assert layer._flash_attention is False
            lib.config.enable_flash_attention()
            assert lib.config.is_flash_attention_enabled() is None
            assert lib.layers.MultiHeadAttention(num_heads=2, key_dim=2)._flash_attention is None
    finally:
        global_state.set_global_attribute("flash_attention", None)
        config.enable_flash_attention()
