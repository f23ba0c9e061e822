"""TimeDistributed and Bidirectional against Keras 3: weights copied from Keras, then outputs,
``losses`` and gradients (of the weights and the inputs) compared to 1e-5, in training and
inference mode; rules reaching the wrapped layers; configs and ``.keras`` files both ways."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, run_layer_test, to_numpy

import weightwise
from weightwise import binding, constraints, layers, regularizers
from weightwise.layers import TimeDistributed

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _flat(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _run(layer: Any, weights: list[Any], x: np.ndarray, kwargs: dict[str, Any]) -> tuple[list, list, list]:
    """Outputs, losses, and the gradients of sum(outputs * fixed weights) + sum(losses) w.r.t. weights and input."""
    inputs = torch.tensor(x, requires_grad=True)
    outputs = _flat(layer(inputs, **kwargs))
    losses = list(layer.losses)
    total = sum((out * torch.from_numpy(rand(*out.shape, seed=7 + i))).sum() for i, out in enumerate(outputs))
    total = total + sum(losses)
    grads = torch.autograd.grad(total, [*weights, inputs])
    return [to_numpy(o) for o in outputs], [float(loss.detach()) for loss in losses], [to_numpy(g) for g in grads]


def assert_matches_keras(keras: Any, make: Callable[[Any], Any], x: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
    """Build ``make(keras.layers)`` and ``make(weightwise.layers)``, copy Keras's weights into ours, and compare."""
    keras.utils.set_random_seed(0)
    theirs = make(keras.layers)
    ours = make(layers)
    theirs(x)
    ours(x)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [w.path.split("/", 1)[1] for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    for training in (False, True):
        call = {**kwargs, "training": training}
        k_out, k_losses, k_grads = _run(theirs, [w.value for w in theirs.trainable_weights], x, call)
        o_out, o_losses, o_grads = _run(ours, ours.trainable_weights, x, call)
        assert len(o_out) == len(k_out)
        for ours_value, keras_value in zip(o_out, k_out):
            np.testing.assert_allclose(ours_value, keras_value, **TOL)
        np.testing.assert_allclose(sorted(o_losses), sorted(k_losses), **TOL)
        assert len(o_grads) == len(k_grads)
        for ours_value, keras_value in zip(o_grads, k_grads):
            np.testing.assert_allclose(ours_value, keras_value, **TOL)
    return theirs, ours


# --------------------------------------------------------------------------------------
# TimeDistributed
# --------------------------------------------------------------------------------------
TD_CASES = {
    "dense": (lambda L: L.TimeDistributed(L.Dense(4, activation="tanh", kernel_regularizer=l2_config(0.02),
                                                  bias_regularizer=l1_config(0.03))), (3, 5, 6)),
    "dense_4d": (lambda L: L.TimeDistributed(L.Dense(2, use_bias=False, kernel_regularizer="l1")), (2, 3, 4, 5)),
    "dense_activity": (lambda L: L.TimeDistributed(L.Dense(3, activity_regularizer="l2"),
                                                   activity_regularizer=l1_config(0.05)), (2, 4, 3)),
    "conv2d": (lambda L: L.TimeDistributed(L.Conv2D(3, 2, strides=2, padding="same", kernel_regularizer="l2")),
               (2, 3, 6, 6, 2)),
    "conv2d_channels_first": (lambda L: L.TimeDistributed(L.Conv2D(2, 3, data_format="channels_first",
                                                                   bias_regularizer="l1")), (2, 4, 3, 5, 5)),
    "conv1d": (lambda L: L.TimeDistributed(L.Conv1D(2, 2, dilation_rate=2)), (2, 3, 7, 2)),
}


def l1_config(value: float) -> Any:
    return {"class_name": "L1", "config": {"l1": value}}


def l2_config(value: float) -> Any:
    return {"class_name": "L2", "config": {"l2": value}}


@pytest.mark.parametrize("case", list(TD_CASES))
def test_time_distributed_matches_keras(keras, case):
    make, shape = TD_CASES[case]
    assert_matches_keras(keras, make, rand(*shape))


def test_time_distributed_config_is_keras(keras):
    make, shape = TD_CASES["dense"]
    theirs, ours = make(keras.layers), make(layers)
    theirs(rand(*shape))
    ours(rand(*shape))
    mine, reference = json.loads(json.dumps(ours.get_config())), json.loads(json.dumps(theirs.get_config()))
    assert set(mine) == set(reference)
    assert set(mine["layer"]["config"]) == set(reference["layer"]["config"]) - {"quantization_config"}
    assert mine["layer"]["build_config"] == reference["layer"]["build_config"] == {"input_shape": [3, 6]}
    rebuilt = keras.layers.TimeDistributed.from_config(mine)
    assert rebuilt.layer.kernel_regularizer.l2 == pytest.approx(0.02)
    again = TimeDistributed.from_config(reference)
    assert again.layer.get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.02)


def test_time_distributed_layer_checker():
    layer = run_layer_test(TimeDistributed, {"layer": layers.Dense(3)}, (2, 4, 5), expected_output_shape=(2, 4, 3),
                           expected_num_weights=2)
    assert [w.path for w in layer.weights] == [f"{layer.name}/{layer.layer.name}/kernel",
                                               f"{layer.name}/{layer.layer.name}/bias"]


def test_time_distributed_passes_rules_through_and_training_keeps_them():
    inner = layers.Dense(3, kernel_regularizer=regularizers.L2(0.1), bias_regularizer="l1",
                         kernel_constraint=constraints.MaxNorm(0.2), bias_constraint="non_neg")
    wrapper = TimeDistributed(inner)
    x = torch.from_numpy(rand(4, 5, 2))
    wrapper(x)
    kernel, bias = inner.kernel, inner.bias
    assert binding.rule_of(inner, "kernel").regularizer is inner.kernel_regularizer
    assert wrapper.weights == [kernel, bias]
    expected = 0.1 * kernel.detach().pow(2).sum() + 0.01 * bias.detach().abs().sum()
    torch.testing.assert_close(sum(wrapper.losses), expected)
    # A rule set on the inner layer after build takes effect through the wrapper too.
    inner.bias_regularizer = None
    assert len(wrapper.losses) == 1
    model = weightwise.Sequential([weightwise.Input((5, 2)), wrapper])
    model.compile(optimizer=weightwise.optimizers.SGD(1.0), loss="mse")
    model.fit(to_numpy(x), 10 * rand(4, 5, 3, seed=1), epochs=2, verbose=0)
    assert float(kernel.detach().norm(dim=0).max()) <= 0.2 + 1e-6
    assert float(bias.detach().min()) >= 0.0


class _StepMask(layers.Layer):
    """Records the mask and training flag each step receives; scales each row by its mask."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[Any, Any]] = []

    def call(self, inputs, training=None, mask=None):
        self.seen.append((None if mask is None else mask.clone(), training))
        return inputs if mask is None else inputs * mask.to(inputs.dtype)[:, None]


def test_time_distributed_gives_each_step_its_mask_and_the_training_flag():
    inner = _StepMask()
    wrapper = TimeDistributed(inner)
    x = torch.from_numpy(rand(3, 2, 4))
    mask = np.array([[False, True], [True, False], [True, True]])
    out = wrapper(x, mask=mask, training=True)
    assert [training for _, training in inner.seen] == [True, True]
    for step, (step_mask, _) in enumerate(inner.seen):
        assert step_mask.tolist() == mask[:, step].tolist()
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x) * mask[..., None])
    assert wrapper.supports_masking
    assert wrapper.compute_mask(x, torch.from_numpy(mask)).tolist() == mask.tolist()
    inner.seen.clear()
    wrapper(x)
    assert [seen for seen, _ in inner.seen] == [None, None]


def test_time_distributed_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"`layer`.*Received: layer=3"):
        TimeDistributed(3)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        TimeDistributed(layers.Dense(2))(torch.ones(2, 3))
    wrapper = TimeDistributed(layers.Dense(2))
    x = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match=r"has a shape \(2, 4\) that is incompatible.*\(2, 3\)"):
        wrapper(x, mask=np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="at least 2D"):
        wrapper(x, mask=np.ones((2,), dtype=bool))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        wrapper(torch.ones(2, 4))


def test_time_distributed_output_shape_and_symbolic_call():
    wrapper = TimeDistributed(layers.Conv2D(4, 3))
    assert wrapper.compute_output_shape((None, 10, 8, 8, 3)) == (None, 10, 6, 6, 4)
    out = wrapper(layers.Input(shape=(10, 8, 8, 3), batch_size=2))
    assert tuple(out.shape) == (2, 10, 6, 6, 4)


def _model(lib: Any, wrapper: Callable[[Any], Any], shape: tuple[int, ...]) -> Any:
    return lib.Sequential([lib.Input(shape=shape), wrapper(lib.layers), lib.layers.Activation("linear")])


SAVE_CASES = {
    "time_distributed_dense": (lambda L: L.TimeDistributed(L.Dense(3, kernel_regularizer="l1",
                                                                   bias_constraint="non_neg")), (4, 5)),
    "time_distributed_conv2d": (lambda L: L.TimeDistributed(L.Conv2D(2, 2, kernel_constraint="unit_norm")),
                                (3, 5, 5, 2)),
}


@pytest.mark.parametrize("case", list(SAVE_CASES))
def test_keras_files_move_both_ways(keras, tmp_path, case):
    make, shape = SAVE_CASES[case]
    data = rand(3, *shape, seed=5)
    keras.utils.set_random_seed(0)
    theirs = _model(keras, make, shape)
    theirs.save(tmp_path / "keras.keras")
    ours = weightwise.models.load_model(tmp_path / "keras.keras")
    assert type(ours.layers[0]).__name__ == type(theirs.layers[0]).__name__
    np.testing.assert_allclose(ours.predict(data, verbose=0), to_numpy(theirs.predict(data, verbose=0)), **TOL)
    assert [to_numpy(w).tolist() for w in ours.weights] == [to_numpy(w).tolist() for w in theirs.weights]
    mine = _model(weightwise, make, shape)
    mine.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(to_numpy(back.predict(data, verbose=0)), mine.predict(data, verbose=0), **TOL)
    assert type(back.layers[0].layer).__name__ == type(mine.layers[0].layer).__name__
