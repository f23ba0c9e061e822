"""Parameter-free layers that move values around (Permute, RepeatVector, padding, cropping, up-sampling) and
Identity, UnitNormalization and Rescaling: outputs, gradients, shapes and configs against Keras 3."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

from weightwise import layers

RNG = np.random.default_rng(0)

# (class name, constructor arguments, input shape): each compared with Keras.
CASES = [
    ("Permute", {"dims": (2, 1)}, (3, 4, 5)),
    ("Permute", {"dims": (3, 1, 2)}, (2, 3, 4, 5)),
    ("Permute", {"dims": [1, 3, 2, 4]}, (2, 3, 4, 5, 2)),
    ("Permute", {"dims": (1,)}, (3, 4)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_configs_flags_and_shapes_are_keras(keras, name, kwargs, shape) -> None:
    ours, theirs = getattr(layers, name)(name="x", **kwargs), getattr(keras.layers, name)(name="x", **kwargs)
    assert ours.get_config() == theirs.get_config()
    assert ours.supports_masking is theirs.supports_masking
    assert ours.built is theirs.built
    again = type(ours).from_config(_json(theirs.get_config()))
    assert again.get_config() == ours.get_config()
    for batch in (None, shape[0]):
        assert ours.compute_output_shape((batch, *shape[1:])) == theirs.compute_output_shape((batch, *shape[1:]))
    symbolic = ours(layers.Input(shape[1:]))
    assert symbolic.shape == theirs(keras.Input(shape[1:])).shape


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_outputs_and_gradients_are_keras(keras, name, kwargs, shape) -> None:
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    x = RNG.normal(size=shape).astype(np.float32)
    for training in (False, True):
        ours_x = torch.tensor(x, requires_grad=True)
        theirs_x = torch.tensor(x, requires_grad=True)
        ours_out = ours(ours_x, training=training)
        theirs_out = theirs(theirs_x, training=training)
        np.testing.assert_allclose(to_numpy(ours_out), to_numpy(theirs_out), rtol=1e-6, atol=1e-6)
        weights = torch.from_numpy(RNG.normal(size=tuple(ours_out.shape)).astype(np.float32))
        (ours_out * weights).sum().backward()
        (theirs_out * weights).sum().backward()
        np.testing.assert_allclose(to_numpy(ours_x.grad), to_numpy(theirs_x.grad), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=IDS)
def test_layer_checker(name, kwargs, shape) -> None:
    run_layer_test(getattr(layers, name), kwargs, shape, expected_num_weights=0)


def test_permute_is_a_transpose_after_the_batch_axis() -> None:
    x = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(to_numpy(layers.Permute((3, 1, 2))(x)), np.transpose(to_numpy(x), (0, 3, 1, 2)))
    assert layers.Permute((2, 1))(layers.Input(batch_shape=(None, 3, 5))).shape == (None, 5, 3)


@pytest.mark.parametrize(("dims", "error"), [
    ((0, 1, 2), ValueError),
    ((1, 4, 2), ValueError),
    ((1, 1), ValueError),
    ((True, 2), ValueError),
    ((1.0, 2), ValueError),
    (3, TypeError),
    ("12", TypeError),
])
def test_permute_refuses_what_is_not_a_permutation(dims, error) -> None:
    with pytest.raises(error, match=r"Invalid permutation argument `dims`.*Received: dims="):
        layers.Permute(dims)


def test_permute_checks_the_input_rank() -> None:
    with pytest.raises(ValueError, match="expected ndim=3"):
        layers.Permute((2, 1))(torch.ones(2, 3, 4, 5))
