"""Parameter-free layers that move values around (Permute, RepeatVector, padding, cropping, up-sampling) and
Identity, UnitNormalization and Rescaling: outputs, gradients, shapes and configs against Keras 3."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import layers

RNG = np.random.default_rng(0)

# (class name, constructor arguments, input shape): each compared with Keras.
CASES = [
    ("Permute", {"dims": (2, 1)}, (3, 4, 5)),
    ("Permute", {"dims": (3, 1, 2)}, (2, 3, 4, 5)),
    ("Permute", {"dims": [1, 3, 2, 4]}, (2, 3, 4, 5, 2)),
    ("Permute", {"dims": (1,)}, (3, 4)),
    ("RepeatVector", {"n": 3}, (2, 5)),
    ("RepeatVector", {"n": 1}, (4, 1)),
    ("ZeroPadding1D", {}, (2, 4, 3)),
    ("ZeroPadding1D", {"padding": (0, 3), "data_format": "channels_first"}, (2, 3, 4)),
    ("ZeroPadding2D", {}, (2, 3, 4, 2)),
    ("ZeroPadding2D", {"padding": ((1, 2), (0, 3)), "data_format": "channels_first"}, (2, 2, 3, 4)),
    ("ZeroPadding2D", {"padding": (2, 1)}, (1, 3, 4, 2)),
    ("ZeroPadding3D", {}, (1, 2, 3, 2, 2)),
    ("ZeroPadding3D", {"padding": (1, 0, 2), "data_format": "channels_first"}, (1, 2, 2, 3, 2)),
    ("ZeroPadding3D", {"padding": 2}, (1, 2, 2, 2, 1)),
    ("Cropping1D", {}, (2, 5, 3)),
    ("Cropping1D", {"cropping": (0, 3)}, (2, 5, 3)),
    ("Cropping2D", {}, (2, 3, 4, 2)),
    ("Cropping2D", {"cropping": ((1, 2), (0, 1)), "data_format": "channels_first"}, (2, 2, 5, 4)),
    ("Cropping2D", {"cropping": 1}, (1, 4, 5, 2)),
    ("Cropping3D", {}, (1, 3, 4, 5, 2)),
    ("Cropping3D", {"cropping": ((0, 1), (2, 0), (1, 1)), "data_format": "channels_first"}, (1, 2, 3, 4, 5)),
    ("UpSampling1D", {}, (2, 3, 4)),
    ("UpSampling1D", {"size": 3}, (2, 2, 1)),
    ("UpSampling2D", {}, (2, 3, 4, 2)),
    ("UpSampling2D", {"size": (1, 3), "data_format": "channels_first"}, (2, 2, 3, 4)),
    ("UpSampling2D", {"size": (2, 3), "interpolation": "bilinear"}, (2, 3, 4, 2)),
    ("UpSampling2D", {"size": 3, "interpolation": "Bilinear", "data_format": "channels_first"}, (2, 2, 3, 4)),
    ("UpSampling2D", {"size": (2, 2), "interpolation": "bicubic"}, (1, 4, 3, 2)),
    ("UpSampling3D", {}, (1, 2, 3, 2, 2)),
    ("UpSampling3D", {"size": (1, 2, 3), "data_format": "channels_first"}, (1, 2, 2, 3, 2)),
    ("Identity", {}, (2, 3)),
    ("UnitNormalization", {}, (3, 4)),
    ("UnitNormalization", {"axis": (1, 2)}, (2, 3, 4)),
    ("UnitNormalization", {"axis": [0, -1]}, (2, 3, 4)),
    ("UnitNormalization", {"axis": 1}, (2, 3, 4)),
    ("Rescaling", {"scale": 1 / 255, "offset": 0.5}, (2, 3)),
    ("Rescaling", {"scale": 2, "offset": -1}, (2, 3, 4)),
    ("Rescaling", {"scale": [0.5, 1.0, 2.0]}, (2, 4, 3)),
    ("Rescaling", {"scale": np.array([0.5, 2.0]), "offset": np.array(1.0)}, (2, 3, 2)),
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
        # Keras's UpSampling1D alone answers with a list; ours is a tuple, as every other layer's.
        wanted = tuple(theirs.compute_output_shape((batch, *shape[1:])))
        assert ours.compute_output_shape((batch, *shape[1:])) == wanted
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


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: layers.RepeatVector("3"), TypeError, "Expected an integer value for `n`"),
    (lambda: layers.RepeatVector(True), TypeError, "Expected an integer value for `n`"),
    (lambda: layers.RepeatVector(0), ValueError, "`n` should be a positive integer"),
    (lambda: layers.UpSampling1D(2.5), TypeError, "Expected an integer value for `size`"),
    (lambda: layers.UpSampling1D(-2), ValueError, "`size` should be a positive integer"),
    (lambda: layers.UpSampling2D((2, 0)), ValueError, "The `size` argument must be a tuple of 2 integers"),
    (lambda: layers.UpSampling3D((2, 2)), ValueError, "The `size` argument must be a tuple of 3 integers"),
    (lambda: layers.UpSampling2D(interpolation="lanczos3"), ValueError, "Lanczos"),
    (lambda: layers.UpSampling2D(interpolation="cubic"), ValueError, "interpolation"),
    (lambda: layers.UpSampling2D(interpolation=None), ValueError, "interpolation"),
    (lambda: layers.UpSampling3D(data_format="NHWC"), ValueError, "data_format"),
    (lambda: layers.ZeroPadding1D((1,)), ValueError, "The `padding` argument must be a tuple of 2 integers"),
    (lambda: layers.ZeroPadding1D(-1), ValueError, r"values \{-1\} that do not satisfy `value >= 0`"),
    (lambda: layers.ZeroPadding1D("1"), ValueError, "padding"),
    (lambda: layers.ZeroPadding2D((1, 2, 3)), ValueError, "`padding` should have two elements"),
    (lambda: layers.ZeroPadding2D(((1, 2), (3, -4))), ValueError, "2nd entry of padding"),
    (lambda: layers.ZeroPadding2D(((1, 2), "3")), ValueError, "2nd entry of padding"),
    (lambda: layers.ZeroPadding2D(-1), ValueError, "`padding` cannot be negative"),
    (lambda: layers.ZeroPadding2D(1.5), ValueError, "`padding` should be either an int"),
    (lambda: layers.ZeroPadding3D((1, 2)), ValueError, "`padding` should have 3 elements"),
    (lambda: layers.ZeroPadding3D(((1, 2), (3, 4), (5, True))), ValueError, "3rd entry of padding"),
    (lambda: layers.Cropping1D((1, 2, 3)), ValueError, "The `cropping` argument must be a tuple of 2 integers"),
    (lambda: layers.Cropping2D(-1), ValueError, "`cropping` cannot be negative"),
    (lambda: layers.Cropping2D(((1, 2), (3, 4, 5))), ValueError, "2nd entry of cropping"),
    (lambda: layers.Cropping3D("1"), ValueError, "cropping"),
    (lambda: layers.Cropping3D(((1, 2), (3, 4), (5, -6))), ValueError, "3rd entry of cropping"),
    (lambda: layers.UnitNormalization(axis={"axis": -1}), TypeError, "expected an int or a list/tuple of ints"),
    (lambda: layers.UnitNormalization(axis=[1, 1.5]), TypeError, "expected an int or a list/tuple of ints"),
    (lambda: layers.UnitNormalization(axis=True), TypeError, "expected an int or a list/tuple of ints"),
    (lambda: layers.Rescaling("0.5"), ValueError, "scale"),
    (lambda: layers.Rescaling(None), ValueError, "scale"),
    (lambda: layers.Rescaling(True), ValueError, "scale"),
    (lambda: layers.Rescaling(1.0, offset=[1, "a"]), ValueError, "offset"),
])
def test_bad_arguments_are_refused_naming_them(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(("layer", "shape", "message"), [
    (lambda: layers.Cropping1D((3, 3)), (3, 5, 7), "`cropping` parameter of `Cropping1D` layer must be smaller than"),
    (lambda: layers.Cropping2D(((4, 5), (0, 0))), (3, 8, 9, 5), "Values in `cropping` argument should be smaller"),
    (lambda: layers.Cropping2D(((0, 0), (7, 3)), data_format="channels_first"), (3, 5, 8, 9),
     "Values in `cropping` argument should be smaller"),
    (lambda: layers.Cropping3D(((1, 1), (1, 1), (14, 1))), (3, 7, 9, 13, 5), "Values in `cropping` argument"),
])
def test_cropping_everything_is_refused_in_calls_and_shapes(layer, shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        layer()(torch.ones(shape))
    with pytest.raises(ValueError, match=message):
        layer().compute_output_shape(shape)
    with pytest.raises(ValueError, match=message):
        layer()(layers.Input(batch_shape=shape))


@pytest.mark.parametrize(("layer", "shape"), [
    (lambda: layers.RepeatVector(2), (2, 3, 4)),
    (lambda: layers.ZeroPadding2D(), (2, 3, 4)),
    (lambda: layers.Cropping3D(), (2, 3, 4, 5)),
    (lambda: layers.UpSampling1D(), (2, 3)),
])
def test_the_input_rank_is_checked(layer, shape) -> None:
    with pytest.raises(ValueError, match="expected ndim"):
        layer()(torch.ones(shape))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", ["int32", "uint8", "float64"])
def test_up_sampling_keeps_the_input_dtype_as_keras(keras, interpolation, dtype) -> None:
    x = RNG.integers(0, 200, size=(2, 3, 4, 2)).astype(dtype)
    ours = layers.UpSampling2D((2, 3), interpolation=interpolation, dtype="float64")(torch.from_numpy(x))
    theirs = keras.layers.UpSampling2D((2, 3), interpolation=interpolation, dtype="float64")(x)
    assert str(ours.dtype).removeprefix("torch.") == keras.backend.standardize_dtype(theirs.dtype)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float64"])
def test_rescaling_outputs_floats_from_any_input(keras, dtype) -> None:
    x = RNG.integers(0, 255, size=(3, 4)).astype(dtype)
    ours = layers.Rescaling(1 / 255, offset=-0.5)(torch.from_numpy(x))
    theirs = keras.layers.Rescaling(1 / 255, offset=-0.5)(x)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6, atol=1e-6)


def test_rescaling_a_vector_scale_meets_the_channels_under_channels_first(keras) -> None:
    from weightwise import backend

    x = RNG.random((2, 3, 4, 5)).astype(np.float32) * 255
    scale = [1 / 255, 1.5 / 255, 2 / 255]
    for lib in (backend, keras.backend):
        lib.set_image_data_format("channels_first")
    try:
        ours = layers.Rescaling(scale, offset=0.5)(torch.from_numpy(x))
        theirs = keras.layers.Rescaling(scale, offset=0.5)(x)
        with_offsets = layers.Rescaling(scale, offset=[1.0, 2.0, 3.0])(torch.from_numpy(x))
    finally:
        for lib in (backend, keras.backend):
            lib.set_image_data_format("channels_last")
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6, atol=1e-6)
    # A per-channel offset meets the channels axis too (Keras reshapes only the scale).
    expected = x * np.array(scale, np.float32)[:, None, None] + np.array([1.0, 2.0, 3.0], np.float32)[:, None, None]
    np.testing.assert_allclose(to_numpy(with_offsets), expected, rtol=1e-6)


def test_unit_normalization_leaves_a_zero_vector_zero_with_a_finite_gradient() -> None:
    x = torch.zeros(2, 3, requires_grad=True)
    out = layers.UnitNormalization()(x)
    out.sum().backward()
    assert bool((out == 0).all()) and bool(torch.isfinite(x.grad).all())


def test_unit_normalization_refuses_an_axis_beyond_the_input() -> None:
    with pytest.raises(ValueError, match="out of bounds"):
        layers.UnitNormalization(axis=2)(torch.ones(2, 3))
    with pytest.raises(ValueError, match="out of bounds"):
        layers.UnitNormalization(axis=[1, -3]).compute_output_shape((2, 3))


def test_identity_passes_any_structure_through() -> None:
    x, y = torch.ones(2), torch.zeros(3)
    assert layers.Identity()([x, y])[1] is y
    assert layers.Identity().compute_output_shape((None, 4)) == (None, 4)


def test_layers_keras_leaves_unbuilt_are_built_by_build() -> None:
    for layer in (layers.Permute((2, 1)), layers.RepeatVector(2), layers.ZeroPadding1D(), layers.Cropping2D(),
                  layers.UpSampling3D(), layers.Rescaling(2.0), layers.Flatten()):
        assert not layer.built
        layer.build((None, 3, 4))
        assert layer.built


@pytest.mark.parametrize("layer", [layers.Identity(), layers.UnitNormalization(), layers.Rescaling(0.5)])
def test_element_wise_layers_pass_masks_through(layer) -> None:
    mask = torch.tensor([[True, False, True]])
    assert layer.supports_masking and layer.compute_mask(torch.ones(1, 3, 2), mask) is mask


MASK_CASES = {
    "GaussianNoise": lambda L: L.GaussianNoise(0.1), "GaussianDropout": lambda L: L.GaussianDropout(0.1),
    "SpatialDropout1D": lambda L: L.SpatialDropout1D(0.3), "AlphaDropout": lambda L: L.AlphaDropout(0.2),
    "Identity": lambda L: L.Identity(), "UnitNormalization": lambda L: L.UnitNormalization(),
    "Rescaling": lambda L: L.Rescaling(2.0), "Permute": lambda L: L.Permute((2, 1)),
    "Cropping1D": lambda L: L.Cropping1D((1, 1)), "ZeroPadding1D": lambda L: L.ZeroPadding1D(),
    "UpSampling1D": lambda L: L.UpSampling1D(),
}


@pytest.mark.parametrize("name", list(MASK_CASES))
def test_an_embedding_mask_is_kept_or_dropped_as_in_keras(keras, name) -> None:
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    seen = []
    for lib, x in ((keras, ids), (weightwise, torch.from_numpy(ids))):
        embedded = lib.layers.Embedding(5, 3, mask_zero=True)(x)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = MASK_CASES[name](lib.layers)(embedded, training=True)
        mask = getattr(out, "_keras_mask", None)
        # A layer that does not support masking drops the mask with a warning that says so.
        seen.append((None if mask is None else to_numpy(mask).tolist(), any("mask" in str(w.message) for w in caught)))
    assert seen[0] == seen[1]


DTYPE_CASES = [
    ("GaussianNoise", {"stddev": 0.1, "seed": 1}), ("GaussianDropout", {"rate": 0.1, "seed": 1}),
    ("AlphaDropout", {"rate": 0.2, "seed": 1}), ("SpatialDropout1D", {"rate": 0.5, "seed": 1}),
    ("UnitNormalization", {}), ("Rescaling", {"scale": 0.5}), ("Identity", {}), ("Permute", {"dims": (2, 1)}),
    ("ZeroPadding1D", {}), ("Cropping1D", {}), ("UpSampling1D", {}), ("RepeatVector", {"n": 2}),
]


@pytest.mark.parametrize(("name", "kwargs"), DTYPE_CASES, ids=[name for name, _ in DTYPE_CASES])
@pytest.mark.parametrize("layer_dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [False, True])
def test_integer_inputs_and_float64_layers_give_keras_dtypes_and_values(keras, name, kwargs, layer_dtype,
                                                                        training) -> None:
    x = np.arange(24).reshape((4, 6) if name == "RepeatVector" else (2, 3, 4)).astype("int32")
    theirs = getattr(keras.layers, name)(dtype=layer_dtype, **kwargs)(x, training=training)
    ours = getattr(layers, name)(dtype=layer_dtype, **kwargs)(torch.from_numpy(x), training=training)
    assert to_numpy(ours).dtype == to_numpy(theirs).dtype
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6, atol=1e-6)
