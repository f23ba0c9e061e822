"""EinsumDense, MultiHeadAttention and GroupedQueryAttention against Keras 3.15.1.

Keras's weights are copied into ours; then outputs, attention scores, losses and the
gradients of a loss (outputs and penalties) with respect to every weight and input must
agree to 1e-5, in inference and training mode, over many configurations.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise
from weightwise import layers

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def rules(lib: Any) -> dict[str, Any]:
    """The same rule arguments, built from ``lib`` (``keras`` or ``weightwise``)."""
    return {
        "kernel_regularizer": lib.regularizers.L1L2(l1=0.01, l2=0.02),
        "bias_regularizer": lib.regularizers.L2(0.03),
        "activity_regularizer": lib.regularizers.L1(0.001),
    }


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def assert_same(ours: Any, theirs: Any, where: str = "config") -> None:
    """Equal after JSON; floats to float32 precision (Keras keeps rule factors as float32)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        assert set(ours) == set(theirs), (where, set(ours) ^ set(theirs))
        for key in ours:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-6), where
    else:
        assert ours == theirs, where


def assert_configs_agree(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    ours, theirs = as_json(ours), as_json(theirs)
    for config in (ours, theirs):
        config.pop("name")
    assert_same(ours, theirs)


def tensors(arrays: dict[str, Any]) -> dict[str, Any]:
    """Fresh torch tensors (floats require grad) for one side's call; masks stay arrays."""
    out = {}
    for name, value in arrays.items():
        if isinstance(value, np.ndarray) and value.dtype == np.float32:
            out[name] = torch.tensor(value, requires_grad=True)
        else:
            out[name] = value
    return out


def attach_masks(inputs: dict[str, Any], keras_masks: dict[str, np.ndarray]) -> None:
    """Put Keras masks on the input tensors, as an upstream Embedding(mask_zero=True) would."""
    for name, mask in keras_masks.items():
        inputs[name]._keras_mask = torch.tensor(mask)


def run(layer: Any, arrays: dict[str, Any], keras_masks: dict[str, np.ndarray], call_kwargs: dict[str, Any],
        weights: list[Any]) -> tuple[list[np.ndarray], list[float], list[np.ndarray]]:
    """Outputs, sorted losses, and gradients (weights, then float inputs) of one call."""
    inputs = tensors(arrays)
    attach_masks(inputs, keras_masks)
    outputs = layer(**inputs, **call_kwargs)
    outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
    losses = [loss for loss in layer.losses]
    total = sum((out.square().sum() for out in outputs if out is not None), torch.zeros(()))
    total = total + sum(losses, torch.zeros(()))
    leaves = weights + [t for t in inputs.values() if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return ([None if out is None else to_numpy(out) for out in outputs], sorted(float(to_numpy(x)) for x in losses),
            [np.zeros(tuple(leaf.shape)) if g is None else to_numpy(g) for leaf, g in zip(leaves, grads)])


def compare(keras: Any, name: str, kwargs: dict[str, Any], arrays: dict[str, Any], call_kwargs: dict[str, Any],
            keras_masks: dict[str, np.ndarray] | None = None, with_rules: bool = True,
            build: dict[str, Any] | None = None) -> Any:
    """Build both layers, copy Keras's weights, compare every number in both modes."""
    keras_masks = keras_masks or {}
    # Keras exports GroupedQueryAttention only as `keras.layers.GroupQueryAttention`.
    theirs = getattr(keras.layers, name.replace("Grouped", "Group"))(
        **kwargs, **(rules(keras) if with_rules else {}), name="attention")
    ours = getattr(layers, name)(**kwargs, **(rules(weightwise) if with_rules else {}), name="attention")
    first = {key: value for key, value in arrays.items() if isinstance(value, np.ndarray) and value.dtype == np.float32}
    if build is not None:
        theirs.build(**build)
        ours.build(**build)
    else:
        theirs(**first)
        ours(**first)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    assert_configs_agree(ours.get_config(), theirs.get_config())
    assert ours.get_build_config() == as_json(theirs.get_build_config())
    for training in (False, True):
        expected = run(theirs, arrays, keras_masks, {**call_kwargs, "training": training},
                       [w.value for w in theirs.weights])
        got = run(ours, arrays, keras_masks, {**call_kwargs, "training": training}, list(ours.weights))
        for mine, want in zip(got[0], expected[0]):
            assert (mine is None) == (want is None)
            if want is not None:
                np.testing.assert_allclose(mine, want, **TOL)
        assert len(got[0]) == len(expected[0])
        np.testing.assert_allclose(got[1], expected[1], **TOL)
        for mine, want in zip(got[2], expected[2]):
            np.testing.assert_allclose(mine, want, **TOL)
    return ours


EINSUM_CASES = [
    ("ab,bc->ac", 5, "c", (3, 4)),
    ("abc,cd->abd", (None, 6), "d", (2, 5, 4)),
    ("abc,cde->abde", (5, 3, 4), "be", (2, 5, 2)),
    ("abc,cde->abde", (5, 3, 4), "d", (2, 5, 2)),
    ("BFNH,NHD->BFD", (1, 4), "D", (2, 1, 2, 3)),
    ("...b,bc->...c", 6, "c", (2, 3, 7)),
    ("...c,cde->...de", (3, 4), "de", (2, 1, 2)),
    ("bc...,cde->bde...", (3, 4), "de", (2, 1, 2)),
    ("bc...,cd->bd...", (4,), None, (2, 1, 2, 3)),
    ("ibd,nd->ibn", (2, 2), None, (2, 2, 1)),
]


@pytest.mark.parametrize("equation, output_shape, bias_axes, input_shape", EINSUM_CASES)
@pytest.mark.parametrize("activation", [None, "tanh"])
def test_einsum_dense_matches_keras(keras, equation, output_shape, bias_axes, input_shape, activation) -> None:
    x = rand(*input_shape)
    kwargs = {"equation": equation, "output_shape": output_shape, "bias_axes": bias_axes, "activation": activation,
              "kernel_regularizer": None, "bias_regularizer": None}
    theirs = keras.layers.EinsumDense(**{**kwargs, **rules(keras)})
    ours = layers.EinsumDense(**{**kwargs, **rules(weightwise)})
    expected = theirs(x)
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    assert_configs_agree(ours.get_config(), theirs.get_config())
    # Where Keras leaves an output size None that the input carries over, ours gives that size.
    ours_shape = ours.compute_output_shape((None, *input_shape[1:]))
    keras_shape = theirs.compute_output_shape((None, *input_shape[1:]))
    assert len(ours_shape) == len(keras_shape) and ours_shape[0] is None
    assert all(k is None or k == o for k, o in zip(keras_shape, ours_shape))
    assert ours_shape[1:] == tuple(expected.shape[1:])
    for lib_layer, leaves in ((theirs, [w.value for w in theirs.weights]), (ours, list(ours.weights))):
        xt = torch.tensor(x, requires_grad=True)
        out = lib_layer(xt)
        loss = out.square().sum() + sum(lib_layer.losses)
        lib_layer.__dict__["_result"] = (to_numpy(out), sorted(float(to_numpy(v)) for v in lib_layer.losses),
                                         [to_numpy(g) for g in torch.autograd.grad(loss, [*leaves, xt])])
    mine, want = ours.__dict__["_result"], theirs.__dict__["_result"]
    np.testing.assert_allclose(mine[0], to_numpy(expected), **TOL)
    np.testing.assert_allclose(mine[0], want[0], **TOL)
    np.testing.assert_allclose(mine[1], want[1], **TOL)
    for a, b in zip(mine[2], want[2]):
        np.testing.assert_allclose(a, b, **TOL)


def test_einsum_dense_variance_scaling_uses_the_kernel_fans_as_keras(keras) -> None:
    # With a seed, Keras's initializer values are reproducible: ours must draw the same kernel.
    for init in ("GlorotUniform", "HeNormal", "LecunUniform"):
        theirs = keras.layers.EinsumDense("abc,cde->abde", (None, 3, 4),
                                          kernel_initializer=getattr(keras.initializers, init)(seed=3))
        ours = layers.EinsumDense("abc,cde->abde", (None, 3, 4),
                                  kernel_initializer=getattr(weightwise.initializers, init)(seed=3))
        theirs.build((None, 5, 8))
        ours.build((None, 5, 8))
        np.testing.assert_allclose(to_numpy(ours.kernel), to_numpy(theirs.kernel), rtol=1e-6, atol=1e-7)
        # The layer keeps the initializer it was given; only the drawn kernel uses the fans.
        assert ours.get_config()["kernel_initializer"]["config"]["input_axes"] is None


# -- MultiHeadAttention ----------------------------------------------------------------------------

def bool_mask(*shape: int, seed: int = 1) -> np.ndarray:
    mask = np.random.default_rng(seed).random(shape) > 0.3
    mask[..., 0] = True  # every row sees something
    return mask


def padding_mask(lengths: list[int], size: int) -> np.ndarray:
    return np.arange(size)[None, :] < np.array(lengths)[:, None]


MHA_CASES = [
    ("self", {"num_heads": 2, "key_dim": 3}, {"query": (2, 5, 8), "value": (2, 5, 8)}, {}, {}),
    ("cross_key", {"num_heads": 3, "key_dim": 2, "value_dim": 4},
     {"query": (2, 4, 6), "value": (2, 7, 5), "key": (2, 7, 3)}, {}, {}),
    ("no_bias_output_shape", {"num_heads": 2, "key_dim": 4, "use_bias": False, "output_shape": (3, 2)},
     {"query": (2, 4, 6), "value": (2, 5, 6)}, {}, {}),
    ("output_shape_int", {"num_heads": 2, "key_dim": 2, "output_shape": 7}, {"query": (2, 3, 6), "value": (2, 4, 6)},
     {}, {}),
    ("attention_mask", {"num_heads": 2, "key_dim": 3}, {"query": (2, 4, 6), "value": (2, 5, 6)},
     {"attention_mask": bool_mask(2, 4, 5)}, {}),
    ("attention_mask_2d_int", {"num_heads": 2, "key_dim": 3}, {"query": (2, 4, 6), "value": (2, 4, 6)},
     {"attention_mask": np.tril(np.ones((4, 4), dtype=np.int32))}, {}),
    ("scores", {"num_heads": 2, "key_dim": 3}, {"query": (2, 4, 6), "value": (2, 5, 6)},
     {"return_attention_scores": True, "attention_mask": bool_mask(2, 4, 5)}, {}),
    ("causal", {"num_heads": 2, "key_dim": 3}, {"query": (2, 5, 6), "value": (2, 5, 6)}, {"use_causal_mask": True}, {}),
    ("causal_scores", {"num_heads": 2, "key_dim": 3}, {"query": (2, 5, 6), "value": (2, 5, 6)},
     {"use_causal_mask": True, "return_attention_scores": True}, {}),
    ("causal_and_mask", {"num_heads": 2, "key_dim": 3}, {"query": (2, 5, 6), "value": (2, 5, 6)},
     {"use_causal_mask": True, "attention_mask": bool_mask(2, 5, 5)}, {}),
    ("keras_masks", {"num_heads": 2, "key_dim": 3}, {"query": (3, 5, 6), "value": (3, 4, 6)}, {},
     {"query": padding_mask([5, 3, 1], 5), "value": padding_mask([4, 2, 1], 4)}),
    ("keras_masks_scores_causal", {"num_heads": 2, "key_dim": 3}, {"query": (3, 4, 6), "value": (3, 4, 6)},
     {"return_attention_scores": True, "use_causal_mask": True},
     {"query": padding_mask([4, 2, 1], 4), "value": padding_mask([3, 4, 2], 4)}),
    ("key_mask", {"num_heads": 2, "key_dim": 3}, {"query": (2, 4, 6), "value": (2, 5, 6), "key": (2, 5, 3)}, {},
     {"key": padding_mask([5, 2], 5)}),
    ("axes_2d", {"num_heads": 2, "key_dim": 2, "attention_axes": (1, 2)},
     {"query": (2, 3, 4, 6), "value": (2, 3, 2, 6)}, {"return_attention_scores": True}, {}),
    ("axes_negative", {"num_heads": 2, "key_dim": 3, "attention_axes": -2},
     {"query": (2, 3, 4, 6), "value": (2, 3, 4, 6)}, {}, {}),
    ("axes_5d_mask", {"num_heads": 2, "key_dim": 2, "attention_axes": (2, 3)},
     {"query": (2, 5, 3, 4, 4), "value": (2, 5, 3, 2, 4)}, {"attention_mask": bool_mask(3, 4, 3, 2)}, {}),
    ("gate", {"num_heads": 2, "key_dim": 3, "use_gate": True}, {"query": (2, 4, 6), "value": (2, 5, 6)}, {}, {}),
    ("sliding_window", {"num_heads": 2, "key_dim": 3, "sliding_window": 2}, {"query": (2, 6, 6), "value": (2, 6, 6)},
     {"use_causal_mask": True}, {}),
    ("dropout_seeded", {"num_heads": 2, "key_dim": 3, "dropout": 0.3, "seed": 11},
     {"query": (2, 4, 6), "value": (2, 5, 6)}, {"attention_mask": bool_mask(2, 4, 5)}, {}),
    ("dropout_scores_causal", {"num_heads": 2, "key_dim": 3, "dropout": 0.5, "seed": 5},
     {"query": (2, 5, 6), "value": (2, 5, 6)}, {"return_attention_scores": True, "use_causal_mask": True}, {}),
]


@pytest.mark.parametrize("case, kwargs, shapes, call_kwargs, keras_masks", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multi_head_attention_matches_keras(keras, case, kwargs, shapes, call_kwargs, keras_masks) -> None:
    arrays = {name: rand(*shape, seed=index) for index, (name, shape) in enumerate(shapes.items())}
    compare(keras, "MultiHeadAttention", kwargs, {**arrays, **call_kwargs}, {}, keras_masks)


def test_multi_head_attention_built_from_shapes_matches_keras(keras) -> None:
    shapes = {"query_shape": (2, 4, 6), "value_shape": (2, 5, 3), "key_shape": (2, 5, 7)}
    arrays = {"query": rand(2, 4, 6), "value": rand(2, 5, 3, seed=1), "key": rand(2, 5, 7, seed=2)}
    compare(keras, "MultiHeadAttention", {"num_heads": 2, "key_dim": 3}, arrays, {}, build=shapes)


# -- GroupedQueryAttention -------------------------------------------------------------------------

GQA_CASES = [
    ("basic", {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2}, {"query": (2, 5, 6), "value": (2, 4, 6)},
     {}, {}),
    ("multi_query_scores", {"head_dim": 2, "num_query_heads": 3, "num_key_value_heads": 1},
     {"query": (2, 5, 6), "value": (2, 4, 5), "key": (2, 4, 3)}, {"return_attention_scores": True}, {}),
    ("mask_no_bias", {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 4, "use_bias": False},
     {"query": (2, 4, 6), "value": (2, 5, 6)}, {"attention_mask": bool_mask(2, 4, 5)}, {}),
    ("float_mask_scores", {"head_dim": 3, "num_query_heads": 2, "num_key_value_heads": 1},
     {"query": (2, 4, 6), "value": (2, 5, 6)},
     {"attention_mask": bool_mask(2, 4, 5).astype(np.float32) * 0.7, "return_attention_scores": True}, {}),
    ("causal", {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2},
     {"query": (2, 5, 6), "value": (2, 5, 6)}, {"use_causal_mask": True}, {}),
    ("keras_masks_causal_scores", {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2},
     {"query": (3, 4, 6), "value": (3, 4, 6)}, {"use_causal_mask": True, "return_attention_scores": True},
     {"query": padding_mask([4, 2, 1], 4), "value": padding_mask([3, 4, 2], 4)}),
    ("gate_window", {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2, "use_gate": True,
                     "sliding_window": 2}, {"query": (2, 5, 6), "value": (2, 5, 6)}, {}, {}),
    ("dropout_seeded", {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2, "dropout": 0.4, "seed": 3},
     {"query": (2, 5, 6), "value": (2, 4, 6)}, {"attention_mask": bool_mask(2, 5, 4)}, {}),
]


@pytest.mark.parametrize("case, kwargs, shapes, call_kwargs, keras_masks", GQA_CASES, ids=[c[0] for c in GQA_CASES])
def test_grouped_query_attention_matches_keras(keras, case, kwargs, shapes, call_kwargs, keras_masks) -> None:
    arrays = {name: rand(*shape, seed=index) for index, (name, shape) in enumerate(shapes.items())}
    compare(keras, "GroupedQueryAttention", kwargs, {**arrays, **call_kwargs}, {}, keras_masks)
