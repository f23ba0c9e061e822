"""Keras's masks: how layers receive, compute and pass them on, in layers, functional models,
Sequential, and the losses and metrics of fit. Keras 3.15.1 (torch backend) is the reference."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip, run_layer_test, to_numpy
from weightwise import layers
from weightwise.layers import base

RNG = np.random.default_rng(13)


def zero_mask_layer(lib: Any) -> Any:
    """A layer whose output mask is "the step is not all zeros" (its compute_mask), written for either library."""
    if lib is weightwise:
        def any_nonzero(x: Any) -> Any:
            return torch.any(torch.as_tensor(x) != 0, dim=-1)
    else:
        def any_nonzero(x: Any) -> Any:
            return lib.ops.any(lib.ops.not_equal(x, 0), axis=-1)

    class ZeroMask(lib.layers.Layer):
        def call(self, inputs):
            return inputs * 1.0

        def compute_mask(self, inputs, previous_mask=None):
            return any_nonzero(inputs)

    return ZeroMask


def consumer_layer(lib: Any) -> Any:
    """A layer that records the mask its call receives and passes it on."""

    class Consumer(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True
            self.seen = []

        def call(self, inputs, mask=None):
            self.seen.append(mask)
            return inputs + 1.0

    return Consumer


def sequences(batch: int = 4, steps: int = 5, features: int = 3) -> np.ndarray:
    x = RNG.normal(size=(batch, steps, features)).astype("float32")
    x[0, 3:] = 0
    x[1, 1] = 0
    x[-1] = 0
    return x


def mask_of(tensor: Any) -> Any:
    mask = getattr(tensor, "_keras_mask", None)
    return None if mask is None else to_numpy(mask)


def with_mask(x: np.ndarray, mask: np.ndarray | None) -> torch.Tensor:
    tensor = torch.tensor(x)
    if mask is not None:
        tensor._keras_mask = torch.tensor(mask)
    return tensor


# -- the base layer --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda L: L.Dense(2), lambda L: L.Activation("tanh"), lambda L: L.Dropout(0.3),
    lambda L: L.ActivityRegularization(0.1), lambda L: L.Flatten(), lambda L: L.Reshape((15,)),
    lambda L: L.Conv1D(2, 2), lambda L: L.MaxPooling1D(2), lambda L: L.GlobalAveragePooling1D(),
    lambda L: L.GlobalMaxPooling1D(), lambda L: L.Lambda(lambda t: t * 2),
])
def test_existing_layers_pass_on_or_drop_the_mask_as_keras(make: Any) -> None:
    keras = keras_or_skip()
    x = sequences()
    mask = np.any(x != 0, axis=-1)
    theirs, ours = make(keras.layers), make(layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(with_mask(x, mask))
        if theirs.weights:
            ours.build((4, 5, 3))
            ours.set_weights(theirs.get_weights())
        got = ours(with_mask(x, mask))
    assert ours.supports_masking == theirs.supports_masking
    # A sample with every step masked has no mean: Keras's GlobalAveragePooling1D gives NaN, ours 0.
    np.testing.assert_allclose(to_numpy(got), np.nan_to_num(to_numpy(expected)), atol=1e-6)
    wanted = mask_of(expected)
    assert (mask_of(got) is None) == (wanted is None)
    if wanted is not None:
        np.testing.assert_array_equal(mask_of(got), wanted)


def test_a_layer_that_computes_a_mask_sets_it_and_layers_after_it_receive_it() -> None:
    keras = keras_or_skip()
    x = sequences()
    results = {}
    for lib in (keras, weightwise):
        producer, consumer = zero_mask_layer(lib)(), consumer_layer(lib)()
        out = consumer(producer(torch.tensor(x)))
        results[lib] = (to_numpy(consumer.seen[0]), mask_of(out))
    np.testing.assert_array_equal(results[weightwise][0], results[keras][0])
    np.testing.assert_array_equal(results[weightwise][1], results[keras][1])
    np.testing.assert_array_equal(results[weightwise][0], np.any(x != 0, axis=-1))


def test_an_explicit_mask_argument_wins_and_becomes_the_previous_mask() -> None:
    keras = keras_or_skip()
    x = sequences()
    given = RNG.uniform(size=(4, 5)) > 0.5
    for lib in (keras, weightwise):
        consumer = consumer_layer(lib)()
        out = consumer(with_mask(x, np.ones((4, 5), bool)), mask=torch.tensor(given))
        np.testing.assert_array_equal(to_numpy(consumer.seen[0]), given)
        np.testing.assert_array_equal(mask_of(out), given)


@pytest.mark.filterwarnings("ignore:.*does not support masking")
def test_nested_inputs_give_a_nest_of_masks_and_several_tensor_arguments_their_own() -> None:
    keras = keras_or_skip()
    x = sequences()
    mask = np.any(x != 0, axis=-1)
    seen = {}
    for lib in (keras, weightwise):
        class Pair(lib.layers.Layer):
            def call(self, inputs, mask=None, _lib=lib):
                seen[_lib, "nested"] = mask
                return inputs[0]

        class TwoArgs(lib.layers.Layer):
            def call(self, query, value, query_mask=None, value_mask=None, _lib=lib):
                seen[_lib, "query"], seen[_lib, "value"] = query_mask, value_mask
                return query

        Pair()([with_mask(x, mask), torch.tensor(x)])
        TwoArgs()(torch.tensor(x), with_mask(x, mask))
    for lib in (keras, weightwise):
        nested = seen[lib, "nested"]
        assert isinstance(nested, list) and nested[1] is None
        np.testing.assert_array_equal(to_numpy(nested[0]), mask)
        assert seen[lib, "query"] is None
        np.testing.assert_array_equal(to_numpy(seen[lib, "value"]), mask)


def test_a_layer_without_masking_support_drops_the_mask_with_keras_warning() -> None:
    consumer = consumer_layer(weightwise)()
    consumer.supports_masking = False
    x = sequences()
    with pytest.warns(UserWarning, match="does not support masking"):
        out = consumer(with_mask(x, np.any(x != 0, axis=-1)))
    assert consumer.seen[0] is not None  # the call still gets it
    assert mask_of(out) is None


def test_a_call_without_masks_does_not_enter_the_mask_machinery(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not layers.Dense._handles_masks and not layers.Flatten._handles_masks
    assert layers.GlobalAveragePooling1D._handles_masks and layers.Masking._handles_masks

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the mask path ran for a call without masks")

    monkeypatch.setattr(base.Layer, "_call_with_masks", refuse)
    dense = layers.Dense(2)
    assert dense(torch.ones(3, 4)).shape == (3, 2)


def test_a_cast_keeps_the_mask() -> None:
    x = with_mask(sequences().astype(np.float64), np.ones((4, 5), bool))
    out = layers.Activation("linear")(x)
    assert out.dtype == torch.float32 and mask_of(out) is not None


# -- models ----------------------------------------------------------------------------------------
def functional_model(lib: Any) -> tuple[Any, Any]:
    inputs = lib.layers.Input((5, 3))
    masked = zero_mask_layer(lib)()(inputs)
    hidden = lib.layers.Dense(4, activation="tanh")(masked)
    consumer = consumer_layer(lib)()
    pooled = lib.layers.GlobalAveragePooling1D()(consumer(hidden))
    return lib.Model(inputs, [consumer(hidden), pooled]), consumer


def test_functional_models_propagate_masks_as_keras() -> None:
    keras = keras_or_skip()
    x = sequences()
    theirs, their_consumer = functional_model(keras)
    ours, our_consumer = functional_model(weightwise)
    ours.set_weights(theirs.get_weights())
    expected, got = theirs(torch.tensor(x)), ours(torch.tensor(x))
    for want, have in zip(expected, got):  # an all-masked sample's mean: NaN in Keras, 0 here
        np.testing.assert_allclose(to_numpy(have), np.nan_to_num(to_numpy(want)), atol=1e-6)
    np.testing.assert_array_equal(mask_of(got[0]), mask_of(expected[0]))
    assert mask_of(got[1]) is None and mask_of(expected[1]) is None
    np.testing.assert_array_equal(to_numpy(our_consumer.seen[-1]), to_numpy(their_consumer.seen[-1]))
    # The symbolic tensors carry masks of Keras's shape.
    assert ours.outputs[0]._keras_mask.shape == theirs.outputs[0]._keras_mask.shape == (None, 5)
    assert ours.outputs[0]._keras_mask.dtype == "bool"


@pytest.mark.filterwarnings("ignore:.*does not support masking")
def test_a_functional_model_call_takes_mask_for_its_inputs() -> None:
    keras = keras_or_skip()
    x = sequences()
    given = RNG.uniform(size=(4, 5)) > 0.4
    for lib in (keras, weightwise):
        inputs = lib.layers.Input((5, 3))
        consumer = consumer_layer(lib)()
        model = lib.Model(inputs, consumer(inputs))
        out = model(torch.tensor(x), mask=torch.tensor(given))
        np.testing.assert_array_equal(to_numpy(consumer.seen[-1]), given)
        np.testing.assert_array_equal(mask_of(out), given)


def test_sequential_passes_masks_between_its_layers() -> None:
    keras = keras_or_skip()
    x = sequences()
    for lib in (keras, weightwise):
        consumer = consumer_layer(lib)()
        model = lib.Sequential([lib.layers.Input((5, 3)), lib.layers.Masking(0.0), lib.layers.Dense(2), consumer])
        out = model(torch.tensor(x))
        np.testing.assert_array_equal(to_numpy(consumer.seen[-1]), np.any(x != 0, axis=-1))
        np.testing.assert_array_equal(mask_of(out), np.any(x != 0, axis=-1))


def test_a_symbolic_mask_is_a_tensor_of_the_graph_that_cannot_be_saved(tmp_path: Any) -> None:
    keras = keras_or_skip()
    x1 = np.array([[[0, 0], [1, 2], [0, 0], [3, 4]]], "float32")
    x2 = np.array([[[0, 0], [0, 0], [1, 2], [3, 4]]], "float32")
    results = []
    for lib in (keras, weightwise):
        a, b = lib.layers.Input((4, 2)), lib.layers.Input((4, 2))
        joined = lib.layers.Concatenate(axis=1)([lib.layers.Masking()(a), b])
        model = lib.Model([a, b], joined._keras_mask)
        results.append(to_numpy(model([torch.tensor(x1), torch.tensor(x2)])))
    np.testing.assert_array_equal(results[1], results[0])
    with pytest.raises(TypeError, match="mask worked out on example values"):
        model.save(str(tmp_path / "mask.keras"))


def test_a_symbolic_mask_may_be_passed_as_mask_argument() -> None:
    keras = keras_or_skip()
    x = sequences()
    for lib in (keras, weightwise):
        inputs = lib.layers.Input((5, 3))
        masking = lib.layers.Masking()
        mask = masking.compute_mask(inputs)
        consumer = consumer_layer(lib)()
        model = lib.Model(inputs, consumer(lib.layers.Dense(2)(inputs), mask=mask))
        model(torch.tensor(x))
        np.testing.assert_array_equal(to_numpy(consumer.seen[-1]), np.any(x != 0, axis=-1))


# -- losses and metrics in fit ---------------------------------------------------------------------
def fit_model(lib: Any) -> Any:
    inputs = lib.layers.Input((5, 3))
    hidden = lib.layers.Dense(4, activation="tanh")(zero_mask_layer(lib)()(inputs))
    return lib.Model(inputs, lib.layers.Dense(2)(hidden))


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
@pytest.mark.parametrize("temporal_weights", [False, True])
def test_fit_and_evaluate_leave_masked_steps_out_of_loss_and_metrics_as_keras(loss: str, temporal_weights: bool) -> None:
    keras = keras_or_skip()
    x = sequences(8)
    y = RNG.normal(size=(8, 5, 2)).astype("float32")
    sample_weight = RNG.uniform(size=(8, 5)).astype("float32") if temporal_weights else None
    theirs, ours = fit_model(keras), fit_model(weightwise)
    ours.set_weights(theirs.get_weights())
    histories = []
    for model in (theirs, ours):
        model.compile(optimizer=model is theirs and keras.optimizers.SGD(0.1) or weightwise.optimizers.SGD(0.1),
                      loss=loss, metrics=["mae", "mse"])
        histories.append(model.fit(x, y, batch_size=3, epochs=3, verbose=0, shuffle=False,
                                   sample_weight=sample_weight).history)
    for key in ("loss", "mae", "mse"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-5, atol=1e-6)
    for want, got in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)
    expected = theirs.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    got = ours.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5)


def masked_mse_by_hand(y: np.ndarray, pred: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """The loss of one batch (mean over the valid steps of weight * error) and the weighted metric."""
    errors = ((pred - y) ** 2).mean(axis=-1)
    loss = (errors * weights * mask).sum() / mask.sum()
    metric = (errors * weights * mask).mean(axis=1).sum() / (weights * mask).mean(axis=1).sum()
    return float(loss), float(metric)


@pytest.mark.parametrize("weights_shape", [(6,), (6, 5)])
def test_sample_weights_combine_with_the_mask_as_documented(weights_shape: tuple[int, ...]) -> None:
    # Per-sample weights of shape (batch,) weigh every step (Keras's torch backend fails to broadcast them
    # against the mask), and weighted metrics see the weights given (Keras rescales them in place).
    x = sequences(6)
    y = RNG.normal(size=(6, 5, 2)).astype("float32")
    weights = RNG.uniform(size=weights_shape).astype("float32")
    model = fit_model(weightwise)
    model.compile(optimizer="sgd", loss="mse", weighted_metrics=["mse"])
    pred = to_numpy(model(torch.tensor(x)))
    mask = np.any(x != 0, axis=-1)
    full = np.broadcast_to(weights.reshape(6, -1), (6, 5))
    loss, metric = masked_mse_by_hand(y, pred, mask, full)
    logs = model.test_on_batch(x, y, sample_weight=weights, return_dict=True)
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(logs["mse"], metric, rtol=1e-5)
    # A metric over the whole set does not depend on how it is batched:
    result = model.evaluate(x, y, sample_weight=weights, batch_size=2, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["mse"], metric, rtol=1e-5)


# -- the Masking layer -----------------------------------------------------------------------------
@pytest.mark.parametrize("mask_value", [0.0, 1, -2.5])
def test_masking_matches_keras(mask_value: float) -> None:
    keras = keras_or_skip()
    x = RNG.integers(-3, 3, size=(3, 6, 2)).astype("float32")
    x[0, 2] = mask_value
    x[2, :] = mask_value
    theirs, ours = keras.layers.Masking(mask_value=mask_value), layers.Masking(mask_value=mask_value)
    expected, got = theirs(torch.tensor(x)), ours(torch.tensor(x))
    np.testing.assert_array_equal(to_numpy(got), to_numpy(expected))
    np.testing.assert_array_equal(mask_of(got), mask_of(expected))
    np.testing.assert_array_equal(to_numpy(ours.compute_mask(x)), to_numpy(theirs.compute_mask(x)))
    assert ours.get_config() == theirs.get_config() | {"name": ours.name}
    assert ours.built and theirs.built


def test_masking_passes_the_layer_checker_and_refuses_bad_values() -> None:
    run_layer_test(layers.Masking, {"mask_value": 0.5}, (2, 4, 3), expected_output_shape=(2, 4, 3))
    for bad in (float("nan"), "zero", None, [1.0, "a"]):
        with pytest.raises(ValueError, match="mask_value"):
            layers.Masking(mask_value=bad)
    per_feature = layers.Masking(mask_value=np.array([0.0, 1.0]))
    out = per_feature(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]))
    assert mask_of(out).tolist() == [[False, True]]


# -- merging layers --------------------------------------------------------------------------------
MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]


def merge_inputs(masks: tuple[bool, bool]) -> list[np.ndarray]:
    x1 = RNG.integers(-3, 4, size=(2, 4, 3)).astype("float32")
    x2 = RNG.integers(-3, 4, size=(2, 4, 3)).astype("float32")
    x1[0, 1] = 0
    x2[1, 2] = 0
    x2[0, 1] = 0
    return [x1, x2], masks


@pytest.mark.parametrize("name", MERGES)
@pytest.mark.parametrize("masks", [(False, False), (True, False), (False, True), (True, True)])
def test_merging_layers_merge_values_and_masks_as_keras(name: str, masks: tuple[bool, bool]) -> None:
    keras = keras_or_skip()
    (x1, x2), _ = merge_inputs(masks)
    results = []
    for lib in (keras, weightwise):
        masking = lib.layers.Masking()
        inputs = [masking(torch.tensor(x)) if masked else torch.tensor(x) for x, masked in zip((x1, x2), masks)]
        kwargs = {"axis": 1} if name == "Concatenate" else {}
        results.append(getattr(lib.layers, name)(**kwargs)(inputs))
    np.testing.assert_allclose(to_numpy(results[1]), to_numpy(results[0]), atol=1e-6)
    want, got = mask_of(results[0]), mask_of(results[1])
    assert (got is None) == (want is None)
    if want is not None:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("name", "shapes"), [
    ("Add", [(2, 3, 4), (2, 1, 4)]), ("Multiply", [(2, 3, 4), (2, 4)]), ("Maximum", [(2, 3), (2, 1)]),
    ("Average", [(2, 5), (2, 5), (2, 5)]), ("Subtract", [(2, 2, 3), (2, 3)]), ("Minimum", [(3, 2, 1), (3, 1, 4)]),
])
def test_elementwise_merges_broadcast_as_keras(name: str, shapes: list[tuple[int, ...]]) -> None:
    keras = keras_or_skip()
    inputs = [RNG.normal(size=shape).astype("float32") for shape in shapes]
    expected = getattr(keras.layers, name)()([torch.tensor(x) for x in inputs])
    got = getattr(layers, name)()([torch.tensor(x) for x in inputs])
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-6)
    symbolic = [layers.Input(batch_shape=(None, *shape[1:])) for shape in shapes]
    keras_symbolic = [keras.layers.Input(batch_shape=(None, *shape[1:])) for shape in shapes]
    assert getattr(layers, name)()(symbolic).shape == getattr(keras.layers, name)()(keras_symbolic).shape


@pytest.mark.parametrize(("axes", "normalize", "shapes"), [
    (1, False, [(3, 4), (3, 4)]), (-1, True, [(3, 4), (3, 4)]), ((2, 2), False, [(3, 5, 4), (3, 6, 4)]),
    ((1, 2), True, [(3, 4, 5), (3, 2, 4)]), (-1, False, [(2, 3, 4), (2, 4)]), ((2, 1), False, [(2, 3, 4), (2, 4, 2, 5)]),
    ((-2, -1), False, [(1, 3, 2), (1, 1, 2, 3)]),
])
def test_dot_matches_keras(axes: Any, normalize: bool, shapes: list[tuple[int, ...]]) -> None:
    keras = keras_or_skip()
    x = [RNG.normal(size=shape).astype("float32") for shape in shapes]
    expected = keras.layers.Dot(axes=axes, normalize=normalize)([torch.tensor(v) for v in x])
    layer = layers.Dot(axes=axes, normalize=normalize)
    got = layer([torch.tensor(v) for v in x])
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-5)
    theirs = keras.layers.Dot(axes=axes, normalize=normalize)
    assert layer.get_config() == theirs.get_config() | {"name": layer.name}
    symbolic = layer([layers.Input(batch_shape=(None, *s[1:])) for s in shapes])
    assert symbolic.shape == tuple(expected.shape[:0]) + (None, *tuple(expected.shape)[1:])


@pytest.mark.parametrize("name", [*MERGES, "Dot"])
def test_merging_layers_pass_the_layer_checker_and_configs_match_keras(name: str) -> None:
    keras = keras_or_skip()
    kwargs = {"axes": 2} if name == "Dot" else {"axis": 1} if name == "Concatenate" else {}
    shapes = [(2, 3, 4), (2, 3, 4)]
    run_layer_test(getattr(layers, name), kwargs, shapes)
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    assert ours.get_config() == theirs.get_config() | {"name": ours.name}
    assert ours.supports_masking == theirs.supports_masking is True
    assert ours.built == theirs.built is False


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot"])
def test_functional_forms_match_keras(name: str) -> None:
    keras = keras_or_skip()
    x = [RNG.normal(size=(2, 3)).astype("float32") for _ in range(2)]
    kwargs = {"axes": 1} if name == "dot" else {}
    expected = getattr(keras.layers, name)([torch.tensor(v) for v in x], **kwargs)
    got = getattr(layers, name)([torch.tensor(v) for v in x], **kwargs)
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-6)


@pytest.mark.parametrize(("make", "inputs", "match"), [
    (lambda: layers.Subtract(), [(2, 3)] * 3, "exactly 2 inputs"),
    (lambda: layers.Add(), [(2, 3), (2, 4)], "incompatible shapes"),
    (lambda: layers.Add(), [(2, 3), (3, 3)], "different batch sizes"),
    (lambda: layers.Concatenate(), [(2, 3, 1), (2, 4, 1)], "matching shapes except for the concatenation axis"),
    (lambda: layers.Dot(axes=1), [(2, 3), (2, 4)], "Incompatible input shapes"),
    (lambda: layers.Dot(axes=0), [(2, 3), (2, 3)], "over axis 0"),
    (lambda: layers.Dot(axes=1), [(2, 3)] * 3, "list of 2 inputs"),
    (lambda: layers.Dot(axes=3), [(2, 3), (2, 3)], "axis 3 does not exist"),
])
def test_merging_layers_refuse_bad_inputs_clearly(make: Any, inputs: list[tuple[int, ...]], match: str) -> None:
    layer = make()
    with pytest.raises(ValueError, match=match):
        layer([torch.ones(shape) for shape in inputs])
    assert not layer.built


def test_dot_and_merge_masks_refuse_bad_arguments() -> None:
    with pytest.raises(TypeError, match="axes"):
        layers.Dot(axes="1")
    with pytest.raises(ValueError, match="two elements"):
        layers.Dot(axes=(1, 2, 3))
    with pytest.raises(ValueError, match="should be integers"):
        layers.Dot(axes=(1, 1.5))
    with pytest.raises(ValueError, match="normalize"):
        layers.Dot(axes=1, normalize="yes")
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="`mask` should be a list"):
        layers.Add().compute_mask([x, x], x)
    with pytest.raises(ValueError, match="same length"):
        layers.Concatenate().compute_mask([x, x], [None])


# -- files -----------------------------------------------------------------------------------------
def masked_merging_model(lib: Any) -> Any:
    L = lib.layers
    a, b = L.Input((6, 3), name="a"), L.Input((6, 3), name="b")
    ma, mb = L.Masking(0.0, name="mask_a")(a), L.Masking(1.0, name="mask_b")(b)
    da, db = L.Dense(3, name="da")(ma), L.Dense(3, name="db")(mb)
    merged = [L.Add(name="add")([da, db]), L.Multiply(name="mul")([da, db]), L.Maximum(name="max")([da, db]),
              L.Minimum(name="min")([da, db]), L.Average(name="avg")([da, db]), L.Subtract(name="sub")([da, db])]
    joined = L.Concatenate(axis=-1, name="cat")(merged)
    pooled = L.GlobalAveragePooling1D(name="gap")(joined)
    dotted = L.Dot(axes=(1, 1), normalize=True, name="dot")([L.Dense(4, name="pa")(pooled), L.Dense(4, name="pb")(pooled)])
    return lib.Model([a, b], dotted, name="masked_merging")


def masked_merging_data() -> list[np.ndarray]:
    a, b = RNG.normal(size=(3, 6, 3)).astype("float32"), RNG.normal(size=(3, 6, 3)).astype("float32")
    a[0, 4:] = 0
    b[1, :2] = 1
    b[2, 3] = 1
    return [a, b]


def test_a_model_with_masking_and_merging_layers_moves_both_ways(tmp_path: Any) -> None:
    keras = keras_or_skip()
    data = masked_merging_data()
    theirs = masked_merging_model(keras)
    theirs.save(str(tmp_path / "theirs.keras"))
    ours = weightwise.models.load_model(str(tmp_path / "theirs.keras"))
    np.testing.assert_allclose(to_numpy(ours([torch.tensor(x) for x in data])),
                               to_numpy(theirs([torch.tensor(x) for x in data])), atol=1e-5)
    ours.save(str(tmp_path / "ours.keras"))
    back = keras.models.load_model(str(tmp_path / "ours.keras"))
    np.testing.assert_allclose(to_numpy(back([torch.tensor(x) for x in data])),
                               to_numpy(theirs([torch.tensor(x) for x in data])), atol=1e-5)
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in theirs.layers]


# -- with the layers that make and use masks -------------------------------------------------------
def embedding_lstm_model(lib: Any) -> Any:
    L = lib.layers
    tokens = L.Input((7,), dtype="int32", name="tokens")
    embedded = L.Embedding(10, 4, mask_zero=True, name="embed")(tokens)
    hidden = L.LSTM(5, return_sequences=True, name="lstm")(embedded)
    joined = L.Add(name="add")([hidden, L.Dense(5, name="side")(hidden)])
    return lib.Model(tokens, L.Dense(2, name="out")(joined), name="tagger")


def token_data() -> tuple[np.ndarray, np.ndarray]:
    tokens = RNG.integers(1, 9, size=(6, 7))
    tokens[0, 4:] = 0
    tokens[2, 2:] = 0
    tokens[5, :] = 0
    return tokens, RNG.normal(size=(6, 7, 2)).astype("float32")


def test_embedding_masks_reach_lstm_merge_and_loss_as_in_keras(tmp_path: Any) -> None:
    keras = keras_or_skip()
    tokens, targets = token_data()
    theirs, ours = embedding_lstm_model(keras), embedding_lstm_model(weightwise)
    ours.set_weights(theirs.get_weights())
    expected, got = theirs(torch.tensor(tokens)), ours(torch.tensor(tokens))
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-6)
    np.testing.assert_array_equal(mask_of(got), mask_of(expected))
    assert ours.outputs[0]._keras_mask.shape == theirs.outputs[0]._keras_mask.shape
    histories = []
    for model in (theirs, ours):
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        histories.append(model.fit(tokens, targets, batch_size=4, epochs=3, verbose=0, shuffle=False).history)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-5)
    for want, have in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(have, want, atol=1e-5)
    # Keras's file records the masks it passed to the LSTM and the Add, with the ops that made them.
    theirs.save(str(tmp_path / "theirs.keras"))
    loaded = weightwise.models.load_model(str(tmp_path / "theirs.keras"))
    np.testing.assert_allclose(to_numpy(loaded(torch.tensor(tokens))), to_numpy(theirs(torch.tensor(tokens))), atol=1e-5)
    loaded.save(str(tmp_path / "ours.keras"))
    back = keras.models.load_model(str(tmp_path / "ours.keras"))
    np.testing.assert_allclose(to_numpy(back(torch.tensor(tokens))), to_numpy(theirs(torch.tensor(tokens))), atol=1e-5)
    np.testing.assert_array_equal(mask_of(back(torch.tensor(tokens))), mask_of(expected))


def test_propagated_masks_are_left_out_of_loaded_calls_but_other_mask_arguments_stay() -> None:
    from weightwise.models.graph_config import _without_propagated_masks

    def ref(name: str) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}

    class Attention(layers.Layer):
        def call(self, query, value, query_mask=None, value_mask=None, attention_mask=None):
            return query

    node = {"args": [ref("q"), ref("v")], "kwargs": {"query_mask": ref("m"), "attention_mask": ref("a")}}
    assert _without_propagated_masks(Attention(), node)["kwargs"] == {"attention_mask": ref("a")}
    single = {"args": [ref("x")], "kwargs": {"mask": ref("m"), "training": False}}
    assert _without_propagated_masks(layers.GlobalAveragePooling1D(), single)["kwargs"] == {"training": False}


@pytest.mark.filterwarnings("ignore:.*does not support masking")
def test_dict_inputs_keep_their_own_masks_and_dict_masks_go_by_key() -> None:
    first, second = layers.Input((3, 2), name="z_first"), layers.Input((3, 2), name="a_second")
    consumers = [consumer_layer(weightwise)(), consumer_layer(weightwise)()]
    model = weightwise.Model({"zz": first, "aa": second}, [consumers[0](first), consumers[1](second)])
    given = np.array([[True, False, True]])
    model({"zz": torch.ones(1, 3, 2), "aa": with_mask(np.ones((1, 3, 2), "float32"), given)})
    assert consumers[0].seen[-1] is None
    np.testing.assert_array_equal(to_numpy(consumers[1].seen[-1]), given)
    model({"zz": torch.ones(1, 3, 2), "aa": torch.ones(1, 3, 2)}, mask={"aa": torch.tensor(~given)})
    assert consumers[0].seen[-1] is None
    np.testing.assert_array_equal(to_numpy(consumers[1].seen[-1]), ~given)
