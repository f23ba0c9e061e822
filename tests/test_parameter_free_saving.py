"""`.keras` files of models holding the parameter-free layers move between Keras 3 and weightwise, both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import keras_or_skip, to_numpy

import weightwise

RNG = np.random.default_rng(5)

# Each layer in a small model, with an input shape that suits it; a Dense after it checks the weights come across.
CASES = {
    "Permute": (lambda L: L.Permute((2, 1)), (3, 4)),
    "RepeatVector": (lambda L: L.RepeatVector(3), (4,)),
    "ZeroPadding1D": (lambda L: L.ZeroPadding1D((1, 2)), (3, 4)),
    "ZeroPadding2D": (lambda L: L.ZeroPadding2D(((1, 0), (2, 1)), data_format="channels_first"), (2, 3, 3)),
    "ZeroPadding3D": (lambda L: L.ZeroPadding3D(1), (2, 2, 2, 3)),
    "Cropping1D": (lambda L: L.Cropping1D((1, 2)), (5, 4)),
    "Cropping2D": (lambda L: L.Cropping2D(((1, 0), (0, 2))), (4, 4, 3)),
    "Cropping3D": (lambda L: L.Cropping3D(((1, 0), (0, 1), (1, 1)), data_format="channels_first"), (2, 3, 3, 4)),
    "UpSampling1D": (lambda L: L.UpSampling1D(3), (2, 4)),
    "UpSampling2D": (lambda L: L.UpSampling2D((2, 3), interpolation="bilinear"), (2, 3, 4)),
    "UpSampling3D": (lambda L: L.UpSampling3D((1, 2, 2), data_format="channels_first"), (2, 2, 2, 2)),
    "Identity": (lambda L: L.Identity(), (4,)),
    "UnitNormalization": (lambda L: L.UnitNormalization(axis=[1, 2]), (3, 4)),
    "Rescaling": (lambda L: L.Rescaling(np.array([0.5, 2.0, 1.0, 3.0]), offset=-1), (2, 4)),
    "SpatialDropout1D": (lambda L: L.SpatialDropout1D(0.3, seed=2), (5, 4)),
    "SpatialDropout2D": (lambda L: L.SpatialDropout2D(0.5, data_format="channels_first", seed=1), (3, 4, 4)),
    "SpatialDropout3D": (lambda L: L.SpatialDropout3D(0.2), (2, 3, 2, 4)),
    "GaussianNoise": (lambda L: L.GaussianNoise(0.2, seed=3), (4,)),
    "GaussianDropout": (lambda L: L.GaussianDropout(0.4), (4,)),
    "AlphaDropout": (lambda L: L.AlphaDropout(0.1, noise_shape=(None, 1, 4), seed=5), (3, 4)),
}


def _model(lib, name):
    make, shape = CASES[name]
    return lib.Sequential([lib.Input(shape=shape), make(lib.layers), lib.layers.Dense(2, name="head")])


def _same_config(ours, theirs) -> None:
    # After a trip through JSON, tuples are lists on both sides.
    mine, reference = json.loads(json.dumps(ours.get_config())), json.loads(json.dumps(theirs.get_config()))
    if type(ours).__name__.startswith("SpatialDropout"):
        # Keras's SpatialDropout writes its variable dtype, which drops a mixed policy; weightwise writes the
        # policy, as every layer does: the same policy here.
        assert weightwise.dtype_policies.get(mine.pop("dtype")) == weightwise.dtype_policies.get(reference.pop("dtype"))
    assert mine == reference


@pytest.mark.parametrize("name", list(CASES))
def test_keras_files_move_both_ways(tmp_path, name) -> None:
    keras = keras_or_skip()
    data = RNG.random((3, *CASES[name][1]), dtype=np.float32)

    theirs = _model(keras, name)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    assert type(ours.layers[0]).__name__ == name
    _same_config(ours.layers[0], theirs.layers[0])
    np.testing.assert_allclose(ours.predict(data, verbose=0), to_numpy(theirs.predict(data, verbose=0)),
                               rtol=1e-5, atol=1e-6)

    mine = _model(weightwise, name)
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    assert type(back.layers[0]).__name__ == name
    _same_config(mine.layers[0], back.layers[0])
    np.testing.assert_allclose(to_numpy(back.predict(data, verbose=0)), mine.predict(data, verbose=0),
                               rtol=1e-5, atol=1e-6)
