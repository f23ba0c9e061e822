"""EEGNet (Lawhern et al. 2018, https://arxiv.org/abs/1611.08024), written as Keras users copy it,
runs after ``import weightwise as keras`` and agrees with Keras 3.15.1 from the same weights.

The model is built from the published architecture: a temporal Conv2D, a depthwise spatial
filter with a max-norm constraint, a separable convolution, batch normalization, ELU,
average pooling, dropout (plain or spatial) and a max-norm Dense head. As in copies ported
from the channels-first original, a Permute puts the feature maps first before Flatten.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

CHANS, SAMPLES, CLASSES = 8, 64, 3


def EEGNet(keras: Any, nb_classes: int = CLASSES, Chans: int = CHANS, Samples: int = SAMPLES,
           dropoutRate: float = 0.5, kernLength: int = 32, F1: int = 4, D: int = 2, F2: int = 8,
           norm_rate: float = 0.25, dropoutType: str = "Dropout") -> Any:
    """EEGNet as the published code writes it, against whichever ``keras`` module is given."""
    layers, max_norm = keras.layers, keras.constraints.max_norm
    if dropoutType == "SpatialDropout2D":
        dropout = layers.SpatialDropout2D
    elif dropoutType == "Dropout":
        dropout = layers.Dropout
    else:
        raise ValueError("dropoutType must be one of SpatialDropout2D or Dropout, passed as a string.")

    input1 = keras.Input(shape=(Chans, Samples, 1))

    block1 = layers.Conv2D(F1, (1, kernLength), padding="same", use_bias=False)(input1)
    block1 = layers.BatchNormalization()(block1)
    block1 = layers.DepthwiseConv2D((Chans, 1), use_bias=False, depth_multiplier=D,
                                    depthwise_constraint=max_norm(1.0))(block1)
    block1 = layers.BatchNormalization()(block1)
    block1 = layers.Activation("elu")(block1)
    block1 = layers.AveragePooling2D((1, 4))(block1)
    block1 = dropout(dropoutRate)(block1)

    block2 = layers.SeparableConv2D(F2, (1, 16), use_bias=False, padding="same")(block1)
    block2 = layers.BatchNormalization()(block2)
    block2 = layers.Activation("elu")(block2)
    block2 = layers.AveragePooling2D((1, 8))(block2)
    block2 = dropout(dropoutRate)(block2)
    block2 = layers.Permute((3, 1, 2))(block2)

    flatten = layers.Flatten(name="flatten")(block2)
    dense = layers.Dense(nb_classes, name="dense", kernel_constraint=max_norm(norm_rate))(flatten)
    softmax = layers.Activation("softmax", name="softmax")(dense)
    return keras.Model(inputs=input1, outputs=softmax)


def data(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, CHANS, SAMPLES, 1)).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, size=n)]
    return x, y


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def twins(keras: Any, **kwargs: Any) -> tuple[Any, Any]:
    """The Keras model and ours, ours holding Keras's initial weights."""
    import weightwise

    keras.utils.set_random_seed(0)
    theirs = EEGNet(keras, **kwargs)
    ours = EEGNet(weightwise, **kwargs)
    ours.set_weights([to_numpy(w) for w in theirs.weights])
    return theirs, ours


def test_builds_the_keras_way_with_keras_layouts(keras) -> None:
    import weightwise as keras_alias  # the one-line change a Keras script makes

    model = EEGNet(keras_alias)
    assert tuple(model.outputs[0].shape) == (None, CLASSES)
    reference = EEGNet(keras)
    assert [(w.name, tuple(w.shape)) for w in model.weights] == [(w.name, tuple(w.shape)) for w in reference.weights]
    assert model.count_params() == reference.count_params()
    depthwise = next(layer for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D")
    assert tuple(depthwise.kernel.shape) == (CHANS, 1, 4, 2)
    assert depthwise.depthwise_constraint.max_value == 1.0 and depthwise.depthwise_constraint.axis == 0


@pytest.mark.parametrize("dropout_type", ["Dropout", "SpatialDropout2D"])
def test_forward_matches_keras_from_the_same_weights(keras, dropout_type: str) -> None:
    theirs, ours = twins(keras, dropoutType=dropout_type)
    x, _ = data()
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)
    # Training mode without dropout: batch statistics in the normalizations.
    theirs_zero, ours_zero = twins(keras, dropoutRate=0.0, dropoutType=dropout_type)
    np.testing.assert_allclose(to_numpy(ours_zero(torch.from_numpy(x), training=True)),
                               to_numpy(theirs_zero(x, training=True)), rtol=1e-5, atol=1e-6)


def test_fit_steps_match_keras_and_keep_the_constraints(keras) -> None:
    import weightwise

    theirs, ours = twins(keras, dropoutRate=0.0)
    # Kernels outside their max-norm bounds, so the constraints act in the compared steps.
    theirs.set_weights([to_numpy(w) * (4.0 if len(w.shape) > 1 else 1.0) for w in theirs.weights])
    ours.set_weights([to_numpy(w) for w in theirs.weights])
    assert ours.get_layer("dense").kernel.detach().norm(dim=0).min() > 0.25
    x, y = data(32)
    for model, lib in ((theirs, keras), (ours, weightwise)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="categorical_crossentropy",
                      metrics=["accuracy"])
    histories = []
    for steps in (1, 3):
        histories = [model.fit(x, y, batch_size=32, epochs=steps, verbose=0, shuffle=False) for model in (theirs, ours)]
        # Every weight, the normalizations' moving statistics included.
        tolerance = 1e-5 if steps == 1 else 1e-4
        for (name, mine), reference in zip(((w.path, w) for w in ours.weights), theirs.weights):
            np.testing.assert_allclose(to_numpy(mine), to_numpy(reference), rtol=tolerance, atol=tolerance,
                                       err_msg=name)
    np.testing.assert_allclose(histories[1].history["loss"], histories[0].history["loss"], rtol=1e-4)
    assert_constraints_hold(ours)


def assert_constraints_hold(model: Any) -> None:
    depthwise = next(layer for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D")
    dense = model.get_layer("dense")
    # max_norm's default axis=0: the norm over the Chans axis of each (input map, multiplier) pair.
    assert depthwise.kernel.detach().norm(dim=0).max() <= 1.0 + 1e-6
    assert dense.kernel.detach().norm(dim=0).max() <= 0.25 + 1e-6


def test_trains_with_spatial_dropout_and_the_constraints_hold(keras) -> None:
    import weightwise as keras_alias

    keras_alias.utils.set_random_seed(1)
    model = EEGNet(keras_alias, dropoutRate=0.25, dropoutType="SpatialDropout2D")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = data(48, seed=2)
    with torch.no_grad():  # start both constrained kernels well outside their bounds
        for layer in model.layers:
            if type(layer).__name__ == "DepthwiseConv2D":
                layer.kernel.mul_(10.0)
        model.get_layer("dense").kernel.mul_(10.0)
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert_constraints_hold(model)
    # The projections are tight: after an update the largest norm sits on its bound.
    dense_norms = model.get_layer("dense").kernel.detach().norm(dim=0)
    np.testing.assert_allclose(dense_norms.max().item(), 0.25, rtol=1e-5)
