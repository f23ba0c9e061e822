"""Embedding: rules, masks, Keras conformance, fit and files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy
from layer_conformance import TOL, compare_calls, file_round_trip, fit_both, twins

import weightwise
from weightwise import constraints, layers


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def indices(*shape: int, high: int = 7, low: int = 0, dtype: Any = np.int64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape).astype(dtype)


@pytest.mark.parametrize(("kwargs", "shape", "dtype"), [
    ({"input_dim": 7, "output_dim": 3}, (4, 5), np.int64),
    ({"input_dim": 7, "output_dim": 2, "embeddings_regularizer": "l2"}, (3,), np.int32),
    ({"input_dim": 7, "output_dim": 4, "embeddings_regularizer": {"class_name": "L1", "config": {"l1": 0.3}},
      "mask_zero": True}, (2, 3, 2), np.int16),
    ({"input_dim": 7, "output_dim": 3, "activity_regularizer": "l2"}, (4, 2), np.uint8),
    ({"input_dim": 7, "output_dim": 3}, (4, 2), np.int8),
])
def test_embedding_matches_keras(keras, kwargs, shape, dtype) -> None:
    ours, theirs = twins(keras, "Embedding", kwargs, shape)
    x = indices(*shape, dtype=dtype)
    compare_calls(ours, theirs, x, [{"training": True}, {}], float_inputs=False)
    assert ours(torch.tensor(x)).dtype == torch.float32


def test_negative_indices_count_from_the_end_as_in_keras(keras) -> None:
    ours, theirs = twins(keras, "Embedding", {"input_dim": 5, "output_dim": 2}, (3,))
    x = np.array([[-1, -5, 4]])
    np.testing.assert_allclose(to_numpy(ours(torch.tensor(x))), to_numpy(theirs(x)), **TOL)
    np.testing.assert_allclose(to_numpy(ours(torch.tensor(x))), ours.get_weights()[0][[4, 0, 4]][None], **TOL)


def test_mask_zero_matches_keras(keras) -> None:
    x = np.array([[3, 0, 1], [0, 0, 2]])
    for mask_zero in (True, False):
        ours, theirs = twins(keras, "Embedding", {"input_dim": 4, "output_dim": 2, "mask_zero": mask_zero}, (2, 3))
        assert ours.supports_masking == theirs.supports_masking == mask_zero
        mine, reference = ours.compute_mask(torch.tensor(x)), theirs.compute_mask(x)
        assert (mine is None) == (reference is None)
        if mine is not None:
            np.testing.assert_array_equal(to_numpy(mine), to_numpy(reference))
            assert mine.dtype == torch.bool


def test_embedding_layer_checker() -> None:
    layer = run_layer_test(layers.Embedding, {"input_dim": 6, "output_dim": 3}, (2, 4), expected_output_shape=(2, 4, 3),
                           expected_num_weights=1, input_dtype=np.int64)
    assert [w.name for w in layer.weights] == ["embeddings"]
    assert tuple(layer.embeddings.shape) == (6, 3)


def test_embedding_arguments_and_inputs() -> None:
    for bad in (3.7, 4.0, "3", None, True, 0, -1):
        with pytest.raises(ValueError, match="`input_dim` must be a positive integer"):
            layers.Embedding(bad, 2)
        with pytest.raises(ValueError, match="`output_dim` must be a positive integer"):
            layers.Embedding(2, bad)
    with pytest.raises(TypeError, match="`input_dim` must be a positive integer"):
        layers.Embedding.from_config({"input_dim": 3.7, "output_dim": 8})
    with pytest.raises(ValueError, match="lora_rank"):
        layers.Embedding(3, 2, lora_rank=2)
    with pytest.raises(ValueError, match="mask_zero"):
        layers.Embedding(3, 2, mask_zero=1)
    layer = layers.Embedding(3, 2)
    with pytest.raises(ValueError, match=r"expected indices in \[-3, 3\).*\[0, 3\]"):
        layer(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="expected indices"):
        layer(torch.tensor([[-4]]))
    # Floats are truncated to indices, as Keras casts them.
    np.testing.assert_allclose(to_numpy(layer(torch.tensor([[1.7]]))), layer.get_weights()[0][[1]][None])
    layer = layers.Embedding(3, 2, weights=np.ones((3, 2)))
    assert layer.built
    np.testing.assert_array_equal(layer.get_weights()[0], np.ones((3, 2)))
    with pytest.warns(UserWarning, match="input_length"):
        layers.Embedding(3, 2, input_length=5)


def test_one_fit_step_keeps_constrained_embeddings_in_bounds() -> None:
    model = weightwise.Sequential([
        weightwise.Input(shape=(4,), dtype="int64"),
        layers.Embedding(6, 3, embeddings_initializer="ones", embeddings_constraint=constraints.MaxNorm(0.5, axis=1)),
        layers.Flatten(),
        layers.Dense(1),
    ])
    model.compile(optimizer=weightwise.optimizers.SGD(1.0), loss="mse")
    model.fit(indices(8, 4, high=6), np.full((8, 1), 50.0, np.float32), batch_size=8, epochs=1, verbose=0)
    norms = np.linalg.norm(model.layers[0].get_weights()[0], axis=1)
    assert (norms <= 0.5 + 1e-6).all()


def _embedding_model(lib: Any) -> Any:
    return lib.Sequential([
        lib.Input(shape=(5,), dtype="int32"),
        lib.layers.Embedding(9, 4, embeddings_regularizer=lib.regularizers.L2(0.01),
                             embeddings_constraint=lib.constraints.MaxNorm(2.0, axis=1), name="emb"),
        lib.layers.Flatten(name="flat"),
        lib.layers.Dense(2, name="out"),
    ], name="emb_model")


def test_embedding_fit_matches_keras(keras) -> None:
    x, y = indices(12, 5, high=9, dtype=np.int32), np.random.default_rng(1).normal(size=(12, 2)).astype(np.float32)
    ours, theirs = fit_both(keras, _embedding_model, x, y, steps=3)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **TOL)


@pytest.mark.parametrize("writer", ["keras", "weightwise"])
def test_embedding_keras_file_round_trip(keras, tmp_path, writer) -> None:
    x, y = indices(8, 5, high=9, dtype=np.int32), np.random.default_rng(2).normal(size=(8, 2)).astype(np.float32)
    ours, _ = file_round_trip(keras, _embedding_model, x, y, tmp_path, writer)
    emb = ours.layers[0]
    assert isinstance(emb, layers.Embedding) and isinstance(emb.embeddings_constraint, constraints.MaxNorm)


def _masked_model(lib: Any, mask_zero: bool = True) -> Any:
    L = lib.layers
    return lib.Sequential([
        lib.Input(shape=(6,), dtype="int32"),
        L.Embedding(9, 4, mask_zero=mask_zero, name="emb"),
        L.BatchNormalization(momentum=0.5, name="bn"),  # masked moments
        L.LayerNormalization(name="ln"),
        L.PReLU(name="prelu"),
        L.GlobalAveragePooling1D(name="gap"),  # masked mean
        L.Dense(2, name="out"),
    ])


def test_embedding_mask_flows_through_the_normalization_and_activation_layers_as_in_keras(keras) -> None:
    x = indices(12, 6, high=9, dtype=np.int32)
    x[:, 4:] = 0  # padding
    y = np.random.default_rng(3).normal(size=(12, 2)).astype(np.float32)
    ours, theirs = fit_both(keras, _masked_model, x, y, steps=3)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **TOL)
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), **TOL)
    unmasked, _ = fit_both(keras, lambda lib: _masked_model(lib, mask_zero=False), x, y, steps=3)
    bn = 3  # moving_mean: the padding positions are left out of the statistics only with the mask
    assert not np.allclose(unmasked.get_weights()[bn], ours.get_weights()[bn])
