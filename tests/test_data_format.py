"""The global image data format: every conv and pooling layer whose data_format is None takes it at construction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

from weightwise import backend, layers

# (class name, constructor arguments, channels-last input shape)
LAYERS = [
    ("Conv1D", {"filters": 2, "kernel_size": 2}, (2, 6, 3)),
    ("Conv2D", {"filters": 2, "kernel_size": 2}, (2, 5, 6, 3)),
    ("Conv3D", {"filters": 2, "kernel_size": 2}, (1, 4, 4, 5, 3)),
    ("MaxPooling1D", {}, (2, 6, 3)),
    ("MaxPooling2D", {}, (2, 4, 6, 3)),
    ("MaxPooling3D", {}, (1, 4, 4, 6, 3)),
    ("AveragePooling1D", {"pool_size": 2}, (2, 6, 3)),
    ("AveragePooling2D", {"pool_size": 2}, (2, 4, 6, 3)),
    ("AveragePooling3D", {"pool_size": 2}, (1, 4, 4, 6, 3)),
    ("GlobalAveragePooling1D", {}, (2, 6, 3)),
    ("GlobalAveragePooling2D", {}, (2, 4, 6, 3)),
    ("GlobalAveragePooling3D", {}, (1, 4, 4, 6, 3)),
    ("GlobalMaxPooling1D", {}, (2, 6, 3)),
    ("GlobalMaxPooling2D", {}, (2, 4, 6, 3)),
    ("GlobalMaxPooling3D", {}, (1, 4, 4, 6, 3)),
    ("Flatten", {}, (2, 4, 6, 3)),
]


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


@pytest.fixture
def channels_first(keras: Any) -> Iterator[None]:
    """Both libraries' global format set to channels_first for the test, then restored."""
    ours, theirs = backend.image_data_format(), keras.config.image_data_format()
    backend.set_image_data_format("channels_first")
    keras.config.set_image_data_format("channels_first")
    try:
        yield
    finally:
        backend.set_image_data_format(ours)
        keras.config.set_image_data_format(theirs)


@pytest.mark.parametrize(("name", "kwargs", "shape"), LAYERS, ids=[entry[0] for entry in LAYERS])
def test_global_channels_first_is_taken_at_construction_as_keras(keras: Any, channels_first: None, name: str,
                                                                kwargs: dict, shape: tuple) -> None:
    theirs = getattr(keras.layers, name)(**kwargs)
    ours = getattr(layers, name)(**kwargs)
    assert ours.data_format == theirs.data_format == "channels_first"
    assert ours.get_config()["data_format"] == "channels_first"
    x = np.random.default_rng(0).normal(size=(shape[0], shape[-1], *shape[1:-1])).astype(np.float32)
    theirs(x)
    ours(torch.from_numpy(x))
    ours.set_weights([np.asarray(keras.ops.convert_to_numpy(w)) for w in theirs.weights])
    np.testing.assert_allclose(to_numpy(ours(torch.from_numpy(x))), keras.ops.convert_to_numpy(theirs(x)),
                               rtol=1e-5, atol=1e-5)


def test_the_format_is_fixed_at_construction_not_at_call(channels_first: None) -> None:
    layer = layers.Conv2D(2, 3)
    backend.set_image_data_format("channels_last")
    assert layer.data_format == "channels_first"
    assert layer(torch.ones(1, 3, 5, 5)).shape == (1, 2, 3, 3)
    assert layers.Conv2D(2, 3).data_format == "channels_last"


def test_an_explicit_format_wins_and_is_lower_cased(channels_first: None) -> None:
    assert layers.MaxPooling2D(data_format="channels_last").data_format == "channels_last"
    assert layers.Conv1D(2, 2, data_format="Channels_Last").data_format == "channels_last"
    with pytest.raises(ValueError, match=r"`data_format`.*Received: data_format='NHWC'"):
        layers.Conv2D(2, 2, data_format="NHWC")


def test_a_saved_layer_keeps_its_format_whatever_the_global_one(channels_first: None) -> None:
    config = layers.Conv2D(2, 3).get_config()
    backend.set_image_data_format("channels_last")
    assert layers.Conv2D.from_config(config).data_format == "channels_first"
